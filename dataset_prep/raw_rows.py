"""Rows to predict in a dataset's RAW format, through the same row rules as its converter.

A saved model scores rows named as the prepared atomic files (user_id, item_id, duration
in seconds). `prediction_rows` takes instead the columns of the raw files the dataset was
converted from, and applies what the converter applies to a row before it becomes an
interaction: the id columns, the units, the context fields it derives, and every rule
that needs no watch time (impossible and implausible durations, the duration bounds), with
the converter's rule names. A row a rule would drop gets that rule as its reason.

    dataset (converter)     user      item      duration (unit)        context fields
    kuairec, synthetic      user_id   video_id  video_duration (ms)    -
    kuairand                user_id   video_id  duration_ms (ms)       hour (time_ms at UTC+8, else hourmin // 100), tab, is_rand
    (synthetic_kuairand: as kuairand)
    wechat                  userid    feedid    videoplayseconds (s)   device
    generic                 its column map (`columns`, `units`)        -

Not applied: the rules on the watch time (none is given), duplicates, and KuaiRand's
`kuairand_impute_duration` (the saved model has no table of video durations): a KuaiRand
row without a duration (duration_ms == 0) is not scored.
"""

import numpy as np
import pandas as pd

from dataset_prep.raw import RowFilter, drop_by_options

# converter module -> (user column, item column, duration column, duration unit, rules on the duration)
FORMATS = {
    "dataset_prep.kuairec": ("user_id", "video_id", "video_duration", "ms", (("video_duration <= 0", "<=0"),)),
    "dataset_prep.synthetic": ("user_id", "video_id", "video_duration", "ms", (("video_duration <= 0", "<=0"),)),
    "dataset_prep.kuairand": ("user_id", "video_id", "duration_ms", "ms",
                              (("duration_ms == 0 (unknown duration)", "==0"), ("duration_ms < 0", "<0"))),
    "dataset_prep.synthetic_kuairand": ("user_id", "video_id", "duration_ms", "ms",  # KuaiRand's raw format
                                        (("duration_ms == 0 (unknown duration)", "==0"), ("duration_ms < 0", "<0"))),
    "dataset_prep.wechat": ("userid", "feedid", "videoplayseconds", "s", (("videoplayseconds <= 0", "<=0"),)),
    "dataset_prep.generic": (None, None, None, None, (("duration <= 0", "<=0"),)),
}
KUAIRAND_LOCAL_OFFSET_MS = 8 * 3_600_000  # as dataset_prep.kuairand: times are local at UTC+8


class RowValueError(ValueError):
    """A value a converter would refuse; `column` and `position` (row in the frame) say where."""

    def __init__(self, column, position, value, expected):
        super().__init__(f"column {column!r}: {value!r} is not {expected}")
        self.column, self.position = column, position


class _Reasons(RowFilter):
    """A RowFilter that remembers, per row, the first rule that dropped it."""

    def __init__(self, n, source):
        super().__init__(n, source)
        self.reason = np.full(n, "", dtype=object)

    def drop(self, rule, mask, warn=False):
        self.reason[np.asarray(mask, dtype=bool) & self.keep] = rule
        super().drop(rule, mask, warn)


def raw_columns(module_name, options):
    """(user, item, duration column, duration unit) of the raw format of a converter."""
    user, item, duration, unit, _ = FORMATS[module_name]
    if module_name == "dataset_prep.generic":
        cols = options["columns"]
        return cols["user"], cols["item"], cols["duration"], options["units"]["duration"]
    return user, item, duration, unit


def _numbers(frame, column):
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise RowValueError(column, pos, frame[column].iloc[pos], "a number")
    return values


def _kuairand_context(frame, out):
    """hour, tab, is_rand as dataset_prep.kuairand derives them (where the input has their source)."""
    if "time_ms" in frame.columns or "hourmin" in frame.columns:
        time_ms = pd.to_numeric(frame.get("time_ms"), errors="coerce") if "time_ms" in frame.columns else None
        hourmin = pd.to_numeric(frame.get("hourmin"), errors="coerce") if "hourmin" in frame.columns else None
        hour = pd.Series(np.nan, index=frame.index)
        if hourmin is not None:
            hour = hourmin // 100
        if time_ms is not None:
            hour = ((time_ms + KUAIRAND_LOCAL_OFFSET_MS) // 3_600_000 % 24).where(time_ms.notna(), hour)
        out["hour"] = hour.astype("Int64")
    for name in ("tab", "is_rand"):
        if name in frame.columns:
            out[name] = frame[name]


def prediction_rows(module_name, frame, options):
    """(rows, reason): `frame`'s rows as prepared fields (user_id, item_id, duration in
    seconds, the context fields the converter derives, the other columns as they are),
    and per row the converter rule that drops it ('' = scored). RowValueError for a
    duration that is not a number."""
    user, item, duration_column, unit, rules = (*raw_columns(module_name, options), FORMATS[module_name][4])
    raw = _numbers(frame, duration_column)
    seconds = raw / 1000.0 if unit == "ms" else raw
    rows = _Reasons(len(frame), "prediction rows")
    for rule, test in rules:
        rows.drop(rule, {"<=0": raw <= 0, "==0": raw == 0, "<0": raw < 0}[test])
    bounds = {**options, "drop_zero_play": False, "max_watch_ratio": None}  # no watch time here
    drop_by_options(rows, np.zeros(len(frame)), seconds, bounds, "")
    mapped = {user: "user_id", item: "item_id", duration_column: "duration"}
    out = frame.drop(columns=list(mapped)).copy()
    out.insert(0, "user_id", frame[user].to_numpy())
    out.insert(1, "item_id", frame[item].to_numpy())
    out.insert(2, "duration", seconds)
    if module_name in ("dataset_prep.kuairand", "dataset_prep.synthetic_kuairand") and options.get("add_context_features"):
        _kuairand_context(frame, out)
    return out, rows.reason


def is_raw_format(module_name, options, columns):
    """True when `columns` name the raw format's item column and not the prepared `item_id`."""
    _, item, duration, _ = raw_columns(module_name, options)
    return item in columns and duration in columns and (item, duration) != ("item_id", "duration")
