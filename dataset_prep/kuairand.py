"""KuaiRand converter (Gao et al., CIKM 2022): watch time of Kuaishou short videos.

Reads, from one folder (the `data/` folder of an official archive, e.g.
`KuaiRand-Pure/data/` inside KuaiRand-Pure.tar.gz, or the folder of a subset in the same
format; `python -m recbole_lda download kuairand-pure --dest DIR` fetches and unpacks one):
    log_standard_*.csv, every one of them (27K ships each period in parts, each with its
        own header), required. Columns read: user_id, video_id, date (YYYYMMDD),
        play_time_ms, duration_ms (all required, no missing value); time_ms (Unix ms),
        hourmin and tab when the header has them. The other columns (is_click, is_like,
        long_view, comment_stay_time, profile_stay_time, ...) are never read: they are
        outcomes of the play (long_view is derived from the play time itself), so as
        features they would leak the label.
    log_random_*.csv (`kuairand_random_logs`): the randomly exposed videos, same columns.
    user_features*.csv (`add_user_features`, when present): the 31 columns of KuaiRec's
        user_features.csv, read by the KuaiRec converter's reader.
    video_features_basic*.csv (`add_item_features` or `kuairand_impute_duration`, when
        present): video_id, author_id, video_type, upload_type, visible_status, music_id,
        music_type, tag ("12,65", comma-separated without brackets), video_duration (ms).
    video_features_statistic*.csv is never read: its figures average over a month that
        includes the test days.
A folder must hold one variant (Pure, 1K, 27K or a subset): files of two variants, or two
user or video feature files, are an error.

Writes (through dataset_prep.common): `{dataset}.{train,valid,test}.inter` with user_id,
item_id, label = play_time_ms / 1000 (watch time, seconds), duration = duration_ms / 1000
(seconds) and, with `add_context_features`, the tokens hour (local hour, UTC+8, of
time_ms; hourmin // 100 where time_ms is absent), tab (when the logs have it) and is_rand
(1 for rows of log_random_*.csv, only with `kuairand_random_logs`); `{dataset}.user` with
the user features as in KuaiRec (tokens and 4 floats); `{dataset}.item` with author_id,
video_type, upload_type, visible_status, music_id, music_type (tokens) and tag
(token_seq). Only users and videos that keep at least one interaction are written. The
interaction day is `date`; it is used by `split: time` and not written.

Filtering rules, applied in this order, each logged with the rows it drops and reported
in meta.json (`rows_dropped`):
    1. `drop_duplicates`: duplicate rows, compared on (user_id, video_id, time_ms,
       play_time_ms, duration_ms) (without time_ms where the logs lack it); the first is
       kept. The 27K subset has 82, which differ only in hourmin.
    2. duration_ms == 0 (always): the duration is unknown (8.5% of 27K's standard rows,
       18% of the subset's). With `kuairand_impute_duration` the video's video_duration
       from video_features_basic*.csv fills it first where that is positive; the rows
       filled are logged.
    3. duration_ms < 0 (always: an impossible duration).
    4. play_time_ms < 0 (always: an impossible watch time).
    5. `max_plausible_duration` (always): duration_ms / 1000 above it (the 27K subset's
       longest video lasts 1,338 s; the default, 3600 s, catches corrupt or mis-scaled values).
    6. `drop_zero_play`: play_time_ms == 0.
    7. `min_duration` / `max_duration`: video duration outside [min, max] seconds.
    8. `max_watch_ratio`: play_time_ms / duration_ms above this value.
Values read as missing (empty fields, 'n/a', 'NaN' and pyarrow's other null spellings in
numeric columns; empty fields in string columns) are counted per file and column, logged
and reported in meta.json (`missing_values`).

Bad input (a missing file or column, a file not separated by commas, a non-numeric value,
a missing value in a required column, a date that is not YYYYMMDD, an empty file, a
truncated line, a video or user listed twice in a feature file) raises RawDataError
naming the file, column, line and what was expected.
"""

import glob
import logging
import os
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from dataset_prep import kuairec  # its user_features.csv reader: KuaiRand's file has the same columns
from dataset_prep.common import RawDataError, RawDataMissing, Tables
from dataset_prep.raw import (
    RowFilter, bool_option, bound_options, check_unique, check_yyyymmdd, drop_by_options, int_tokens, read_csv,
    str_tokens,
)

logger = logging.getLogger(__name__)

VERSION = 2  # 2: max_plausible_duration, missing_values

DOWNLOAD_PAGE = "https://zenodo.org/records/10439422"
DOWNLOAD_URL = "https://zenodo.org/records/10439422/files/KuaiRand-Pure.tar.gz"

LOG_COLUMNS = {"user_id": "int", "video_id": "int", "date": "int", "play_time_ms": "int", "duration_ms": "int"}
LOG_OPTIONAL = {"time_ms": "int", "hourmin": "int", "tab": "int"}
LOCAL_OFFSET_MS = 8 * 3_600_000  # KuaiRand's times are local at UTC+8

# video_features_basic columns read as features: "int" are integer tokens (read as floats:
# 27K has missing values), "str" string tokens.
VIDEO_COLUMNS = {
    "author_id": "int",
    "video_type": "str",
    "upload_type": "str",
    "visible_status": "int",
    "music_id": "int",
    "music_type": "int",
}
TAG_LIST = r"\s*\d+(\s*,\s*\d+)*\s*"
# What read_video_features reads: integer tokens as floats (27K has missing values).
VIDEO_READ_COLUMNS = ({"video_id": "int"} | {c: "float" if t == "int" else t for c, t in VIDEO_COLUMNS.items()}
                      | {"tag": "str", "video_duration": "float"})
# log_standard_4_08_to_4_21_pure.csv, log_standard_4_22_to_5_08_27k_part1.csv -> variant "pure", "27k".
LOG_NAME = re.compile(r"log_(?:standard|random)_\d+_\d+_to_\d+_\d+_(?P<variant>.+?)(?:_part\d+)?\.csv")

OPTION_KEYS = ("kuairand_random_logs", "drop_duplicates", "kuairand_impute_duration", "drop_zero_play",
               "add_context_features", "add_user_features", "add_item_features")


def read_options(config):
    """The converter options, validated (keys documented in properties/dataset/kuairand.yaml)."""
    options = {key: bool_option(config, key) for key in OPTION_KEYS}
    options.update(bound_options(config))
    return options


def default_raw_dir(data_path, options):
    """`data_path/raw`: put the CSVs of an archive's `data/` folder there."""
    return os.path.join(data_path, "raw")


def find_files(raw_dir, options):
    """{"logs": [(path, is_random)], "user": path or None, "video": path or None}.

    Raises RawDataMissing (saying what to download) when there is no log file, and
    RawDataError when the folder mixes variants.
    """
    standard = sorted(glob.glob(os.path.join(glob.escape(raw_dir), "log_standard_*.csv")))
    if not standard:
        hint = ""
        subfolders = [d for d in ("data", "KuaiRand-Pure", "KuaiRand-1K", "KuaiRand-27K")
                      if os.path.isdir(os.path.join(raw_dir, d))]
        if subfolders:
            hint = f" (this folder has a {subfolders[0]}/ subfolder: point raw_data_path at the folder that holds the CSVs)"
        raise RawDataMissing(
            f"KuaiRand raw files not found: no log_standard_*.csv in {os.path.abspath(raw_dir)}{hint}.\n"
            f"KuaiRand is on Zenodo ({DOWNLOAD_PAGE}; KuaiRand-Pure.tar.gz, KuaiRand-1K.tar.gz, KuaiRand-27K.tar.gz). "
            f"Run\n    python -m recbole_lda download kuairand-pure --dest DEST\n(or kuairand-1k, kuairand-27k): it "
            f"downloads {DOWNLOAD_URL}, checks its md5, unpacks it and prints the --raw_data_path=... to use "
            f"(DEST/KuaiRand-Pure/data). Or unpack an archive yourself and pass --raw_data_path=its data folder, "
            f"or put the CSVs in the default folder {os.path.abspath(raw_dir)}"
        )
    logs = [(p, False) for p in standard]
    if options["kuairand_random_logs"]:
        random = sorted(glob.glob(os.path.join(glob.escape(raw_dir), "log_random_*.csv")))
        if not random:
            raise RawDataMissing(
                f"kuairand_random_logs is True but {os.path.abspath(raw_dir)} has no log_random_*.csv "
                f"(the official archives have one; subsets may not): set kuairand_random_logs: False"
            )
        logs += [(p, True) for p in random]
    variants = {m.group("variant") for p, _ in logs if (m := LOG_NAME.fullmatch(os.path.basename(p)))}
    if len(variants) > 1:
        raise RawDataError(
            f"{raw_dir} holds log files of several KuaiRand variants {sorted(variants)}: "
            f"{[os.path.basename(p) for p, _ in logs]}; keep one variant per folder"
        )
    variant = variants.pop() if variants else None
    return {
        "logs": logs,
        "user": _feature_file(raw_dir, "user_features", variant),
        "video": _feature_file(raw_dir, "video_features_basic", variant),
    }


def _feature_file(raw_dir, prefix, variant):
    """The one `{prefix}*.csv` of the folder (the variant's one if there are several), or None."""
    found = sorted(glob.glob(os.path.join(glob.escape(raw_dir), f"{prefix}*.csv")))
    if len(found) > 1:
        mine = os.path.join(raw_dir, f"{prefix}_{variant}.csv")
        if variant and os.path.isfile(mine):
            return mine
        raise RawDataError(f"{raw_dir} holds several {prefix} files {[os.path.basename(p) for p in found]}; keep one")
    return found[0] if found else None


def raw_files(raw_dir, options):
    """The files `convert` reads; RawDataMissing (saying what to download) if there is no log."""
    found = find_files(raw_dir, options)
    files = [p for p, _ in found["logs"]]
    if options["add_user_features"]:
        if found["user"]:
            files.append(found["user"])
        else:
            logger.warning(f"no user_features*.csv in {raw_dir}: converting without user features")
    if options["add_item_features"] or options["kuairand_impute_duration"]:
        if found["video"]:
            files.append(found["video"])
        else:
            logger.warning(f"no video_features_basic*.csv in {raw_dir}: converting without video features")
    return files


def read_logs(logs, with_random, missing=None):
    """The log files as one pyarrow table (optional columns null in files that lack them);
    values taken as missing are counted into `missing` (see raw.read_csv)."""
    parts = []
    for path, is_random in logs:
        table = read_csv(path, LOG_COLUMNS, required=list(LOG_COLUMNS), optional=LOG_OPTIONAL, missing=missing)
        check_yyyymmdd(table.column("date").to_numpy(), path, "date")
        if with_random:
            table = table.append_column("is_rand", pa.array(np.full(table.num_rows, int(is_random), dtype=np.int64)))
        logger.info(f"read {table.num_rows:,} rows from {path}")
        parts.append(table)
    return pa.concat_tables(parts, promote_options="default") if len(parts) > 1 else parts[0]


def _nullable_ints(table, column):
    """A column as (int64 values, present mask); absent column -> all missing."""
    if column not in table.column_names:
        return np.zeros(table.num_rows, dtype=np.int64), np.zeros(table.num_rows, dtype=bool)
    col = table.column(column)
    present = pc.is_valid(col).to_numpy(zero_copy_only=False)
    return pc.fill_null(col, 0).to_numpy(), present


def convert(raw_dir, options):
    """Read the raw files of `raw_dir` and return the canonical Tables (see module docstring)."""
    found = find_files(raw_dir, options)
    missing = {}
    table = read_logs(found["logs"], options["kuairand_random_logs"], missing)
    n = table.num_rows
    source = f"KuaiRand logs in {raw_dir}"
    col = {c: table.column(c).to_numpy() for c in LOG_COLUMNS}
    time_ms, has_time = _nullable_ints(table, "time_ms")

    video_path = found["video"] if (options["add_item_features"] or options["kuairand_impute_duration"]) else None
    videos = read_video_features(video_path, np.unique(col["video_id"]), missing) if video_path else None

    rows = RowFilter(n, source)
    if options["drop_duplicates"]:
        key = {c: col[c] for c in ("user_id", "video_id", "play_time_ms", "duration_ms")}
        if has_time.any():
            key["time_ms"] = np.where(has_time, time_ms, -1)
        rows.drop("duplicate row", pd.DataFrame(key).duplicated().to_numpy())
    duration = col["duration_ms"]
    if options["kuairand_impute_duration"] and videos is not None:
        known = videos.set_index("item_id")["video_duration"]
        fill = known.reindex(col["video_id"]).to_numpy()
        use = rows.keep & (duration == 0) & (fill > 0)
        duration = np.where(use, np.rint(np.nan_to_num(fill)), duration).astype(np.int64)
        logger.info(f"{source}: filled {int(use.sum()):,} unknown durations (duration_ms == 0) from {video_path}")
    play = col["play_time_ms"]
    rows.drop("duration_ms == 0 (unknown duration)", duration == 0)
    rows.drop("duration_ms < 0", duration < 0)
    rows.drop("play_time_ms < 0", play < 0)
    seconds = duration / 1000.0
    drop_by_options(rows, play / 1000.0, seconds, options, "play_time_ms == 0")
    inter = rows.interactions(col["user_id"], col["video_id"], play, seconds, col["date"],
                              timestamp=np.where(has_time, time_ms / 1000.0, np.nan))
    keep = rows.keep
    field_types = {}
    if options["add_context_features"]:
        hourmin, has_hourmin = _nullable_ints(table, "hourmin")
        hour = np.where(has_time, (time_ms + LOCAL_OFFSET_MS) // 3_600_000 % 24, hourmin // 100)
        tab, has_tab = _nullable_ints(table, "tab")
        for name, values, present in (("hour", hour, has_time | has_hourmin), ("tab", tab, has_tab)):
            if present.any():
                inter[name] = pd.arrays.IntegerArray(values[keep], ~present[keep])
                field_types[name] = "token"
        if options["kuairand_random_logs"]:
            inter["is_rand"] = table.column("is_rand").to_numpy()[keep]
            field_types["is_rand"] = "token"
    del table

    user = item = None
    if options["add_user_features"] and found["user"]:
        user = kuairec.read_user_features(found["user"], missing)
        user = user[user["user_id"].isin(inter["user_id"].unique())].reset_index(drop=True)
        field_types.update({c: "float" if t == "float" else "token" for c, t in kuairec.USER_COLUMNS.items()})
    if options["add_item_features"] and videos is not None:
        item = videos.drop(columns="video_duration")
        item = item[item["item_id"].isin(inter["item_id"].unique())].reset_index(drop=True)
        field_types.update({c: "token" for c in VIDEO_COLUMNS})
        field_types["tag"] = "token_seq"
    return Tables(inter, field_types, user, item, rows_read=n, rows_dropped=rows.dropped, missing_values=missing)


def read_video_features(path, video_ids, missing=None):
    """video_features_basic rows of the given videos, keyed by item_id: the VIDEO_COLUMNS
    tokens, tag (space-separated token string) and video_duration (ms, float, NaN = missing);
    values taken as missing (in every row of the file) are counted into `missing`."""
    table = read_csv(path, VIDEO_READ_COLUMNS, required=["video_id"], missing=missing)
    total = table.num_rows
    wanted = pc.is_in(table.column("video_id"), value_set=pa.array(video_ids)).to_numpy(zero_copy_only=False)
    video = video_frame(table.filter(pa.array(wanted)), path, np.flatnonzero(wanted) + 2)  # file line of each kept row
    logger.info(f"read features of {len(video):,} of the logs' videos from {path} ({total:,} rows)")
    return video


def video_frame(table, path, lines):
    """Rows of video_features_basic (VIDEO_READ_COLUMNS, read by raw.read_csv) as the item
    table; `lines`: the file line of each row, for errors (a video listed twice, a bad tag)."""
    video = pd.DataFrame({"item_id": table.column("video_id").to_numpy()})
    check_unique(video["item_id"], path, "video_id", lines)
    for c, kind in VIDEO_COLUMNS.items():
        values = table.column(c)
        if kind == "str":
            video[c] = str_tokens(values)
        else:
            video[c] = int_tokens(values.to_numpy(zero_copy_only=False), path, c, lines)
    tags = table.column("tag").to_pandas().fillna("").str.strip()
    ok = (tags == "") | tags.str.fullmatch(TAG_LIST)
    if not ok.all():
        row = int(np.flatnonzero(~ok.to_numpy())[0])
        raise RawDataError(
            f"{path}: column 'tag', line {lines[row]}: expected integers separated by commas like 12,65, got {tags.iloc[row]!r}"
        )
    video["tag"] = tags.str.replace(r"\s*,\s*", " ", regex=True).to_numpy()
    video["video_duration"] = table.column("video_duration").to_numpy(zero_copy_only=False)
    return video
