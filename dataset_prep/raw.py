"""Reading the raw CSV files of every converter, with clear errors and counted repairs.

`read_csv` reads the listed columns with pyarrow and turns every problem (missing file
or column, wrong delimiter, non-numeric value, truncated last line) into a RawDataError
naming the file, the column and the line; it also counts, per column, the values it
takes as missing (for `meta.json`'s `missing_values`). `int_tokens`, `check_unique` and
`check_yyyymmdd` check feature and date columns the same way. `RowFilter` and
`drop_by_options` apply a converter's documented repairs (duplicates, impossible or
implausible durations, duration ranges) and count the rows each rule drops, for the log
and `meta.json`. `bool_option` and `bound_options` validate the options every converter
shares.
"""

import csv
import logging
import os
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from dataset_prep.common import RawDataError, config_get, require

logger = logging.getLogger(__name__)


_ARROW_TYPES = {"int": pa.int64(), "float": pa.float64(), "str": pa.string()}
# What pyarrow reads as missing in a numeric column: '', 'NA', 'n/a', 'NaN', 'null', ... .
NULL_SPELLINGS = tuple(pcsv.ConvertOptions().null_values)


def read_csv(path, columns, required=(), optional=None, missing=None):
    """Read the named columns of a headered, comma-separated file with pyarrow.

    Args:
        path (str): the CSV file.
        columns (dict[str, str]): column -> "int", "float" or "str"; other columns are skipped.
        required (iterable[str]): columns that must have no missing value.
        optional (dict[str, str]): columns read only when the header has them (same types).
        missing (dict or None): where to record the values taken as missing, as
            missing[file name][column] = count (see `count_missing`); also logged.

    Returns:
        pyarrow.Table with the columns in the given order (then the optional ones present).

    Raises:
        RawDataError naming the file, column, line and expectation for: an empty file,
        a header without rows, a header separated by something else than commas, a missing
        column, a row with the wrong number of fields (e.g. a truncated last line), a value
        that is not of the column's type, or a missing value in a required column. Lines
        count from 1 = the header.
    """
    columns = _check_header(path, columns, optional)
    table = _read_table(path, columns)
    _check_required(table, path, required)
    count_missing(table, path, columns, missing)
    return table


def _check_header(path, columns, optional):
    """The columns to read (`columns`, then the optional ones the header has), after checking
    the header: not empty, comma-separated, every column of `columns` present."""
    with open(path, "r", encoding="utf-8-sig", newline="") as f:
        first = f.readline()
    if not first.strip():
        raise RawDataError(f"{path}: the file is empty (expected a header line and rows)")
    header = [c.strip() for c in next(csv.reader([first]))]
    wanted = dict(columns) | {c: t for c, t in (optional or {}).items() if c in header and c not in columns}
    if len(header) == 1 and len(wanted) > 1:
        for sep, name in (("\t", "tabs"), (";", "semicolons"), ("|", "vertical bars"), (" ", "spaces")):
            if sep in first.strip():
                raise RawDataError(
                    f"{path}: the header is separated by {name}, expected commas "
                    f"(a comma-separated file with a header line): {first.strip()[:200]!r}"
                )
    absent = [c for c in columns if c not in header]
    if absent:
        raise RawDataError(f"{path}: missing column(s) {absent}; the header has {header}")
    return wanted


def _read_table(path, columns):
    """The typed columns with pyarrow; RawDataError naming the line of the first value of
    the wrong type or of the first row with the wrong number of fields."""
    bad_rows = []

    def on_bad_row(row):
        bad_rows.append(row)
        return "skip"

    try:
        table = pcsv.read_csv(
            path,
            parse_options=pcsv.ParseOptions(invalid_row_handler=on_bad_row),
            convert_options=pcsv.ConvertOptions(
                include_columns=list(columns), column_types={c: _ARROW_TYPES[t] for c, t in columns.items()}
            ),
        )
    except pa.ArrowInvalid as e:
        m = re.search(r"CSV column #(\d+)", str(e))
        if not m:
            raise RawDataError(f"{path}: cannot be parsed as CSV: {e}") from e
        with open(path, "r", encoding="utf-8-sig", newline="") as f:
            column = [c.strip() for c in next(csv.reader([f.readline()]))][int(m.group(1))]
        line, value = _first_bad_value(path, column, columns[column])
        raise RawDataError(
            f"{path}: column {column!r}, line {line}: expected {'an integer' if columns[column] == 'int' else 'a number'}, "
            f"got {value!r}"
        ) from e
    if bad_rows:
        line = _bad_row_line(path)
        row = bad_rows[0]
        raise RawDataError(
            f"{path}: line {line} has {row.actual_columns} field(s), expected {row.expected_columns} "
            f"(a truncated or corrupt file? re-extract it): {row.text[:200]!r}"
        )
    if table.num_rows == 0:
        raise RawDataError(f"{path}: the file has a header but no data rows")
    return table


def _check_required(table, path, required, first_line=2):
    """RawDataError at the first missing value of a required column (`first_line`: the file
    line of the table's first row, for a chunk of a file)."""
    for c in required:
        col = table.column(c)
        if col.null_count:
            first_null = pc.index(pc.is_null(col), True).as_py()
            raise RawDataError(
                f"{path}: column {c!r}, line {first_null + first_line}: missing value "
                f"({col.null_count} missing in {'all' if first_line == 2 else 'this chunk'}); this column is required"
            )


def count_missing(table, path, columns, missing=None):
    """Count, per column, the values the converters take as missing, log them in one line
    and record them in `missing[file name][column]` (columns without any are left out).

    Missing values are those of NULL_SPELLINGS in numeric columns (pyarrow reads them as
    null) and empty or blank fields in string columns (the converters write them as empty
    fields, which RecBole reads as missing: [PAD] for tokens, an empty token sequence).
    """
    counts = {}
    for name, kind in columns.items():
        col = table.column(name)
        n = col.null_count
        if kind == "str":
            n += pc.sum(pc.equal(pc.utf8_trim_whitespace(col), "")).as_py() or 0
        if n:
            counts[name] = int(n)
    if counts:
        logger.info(f"{path}: values taken as missing (of {table.num_rows:,} rows): {counts}")
        if missing is not None:
            missing.setdefault(os.path.basename(path), {}).update(counts)
    return counts


def _first_bad_value(path, column, kind):
    """(line, value) of the first value of `column` that does not parse as `kind`."""
    values = pcsv.read_csv(
        path, convert_options=pcsv.ConvertOptions(include_columns=[column], column_types={column: pa.string()})
    ).column(0)
    s = values.to_pandas()
    present = s.notna() & ~s.str.strip().isin(NULL_SPELLINGS)  # what pyarrow reads as missing
    if kind == "int":
        ok = s.str.fullmatch(r"\s*[+-]?\d+\s*").fillna(False).astype(bool)
    else:
        ok = pd.to_numeric(s, errors="coerce").notna()
    bad = np.flatnonzero((present & ~ok).to_numpy())
    if len(bad) == 0:
        return "?", None
    return int(bad[0]) + 2, s.iloc[bad[0]]


def _bad_row_line(path):
    """Line number of the first row with a wrong field count (single-threaded pass)."""
    lines = []

    def record(row):
        lines.append(row.number)
        return "skip"

    pcsv.read_csv(
        path,
        read_options=pcsv.ReadOptions(use_threads=False),
        parse_options=pcsv.ParseOptions(invalid_row_handler=record),
    )
    return lines[0] if lines else "?"


class RowFilter:
    """Rules that drop rows of a raw table, applied in order, each logged with its count.

    keep: boolean mask of the rows still kept. dropped: rule -> rows that rule dropped
    (rows an earlier rule dropped are not counted again), as Tables.rows_dropped wants it.
    """

    def __init__(self, n, source):
        self.keep = np.ones(n, dtype=bool)
        self.dropped = {}
        self.n = n
        self.source = source

    def drop(self, rule, mask, warn=False):
        """Drop the kept rows where `mask` is true, recording them under `rule`; `warn`:
        log a warning instead of an info line when the rule drops any row."""
        mask = np.asarray(mask, dtype=bool) & self.keep
        count = int(mask.sum())
        self.dropped[rule] = count
        self.keep[mask] = False
        level = logging.WARNING if warn and count else logging.INFO
        logger.log(level, f"{self.source}: rule '{rule}' dropped {count:,} of {self.n:,} rows")

    def interactions(self, user, item, play_ms, duration_s, day, **extra):
        """The kept rows as the canonical interaction table (see common.Tables): user_id,
        item_id, label = play_ms / 1000 (seconds), duration (seconds), day (YYYYMMDD, 0 =
        unknown) and the `extra` columns; RawDataError when no row is left."""
        keep = self.keep
        if not keep.any():
            raise RawDataError(f"{self.source}: no rows left after filtering ({self.dropped})")
        columns = {"user_id": user, "item_id": item, "label": play_ms, "duration": duration_s, "day": day} | extra
        inter = pd.DataFrame({name: np.asarray(values)[keep] for name, values in columns.items()})
        inter["label"] = inter["label"] / 1000.0
        inter["day"] = inter["day"].astype(np.int32)
        logger.info(f"{self.source}: kept {len(inter):,} of {self.n:,} rows")
        return inter


def bool_option(config, key):
    """config[key], which must be True or False."""
    value = require(config, key)
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be True or False, got {value!r}")
    return value


def bound_options(config):
    """The duration and watch-ratio options every converter shares, validated:
    max_plausible_duration (seconds, a positive number: always applied) and min_duration,
    max_duration (seconds), max_watch_ratio (non-negative numbers, or None = off)."""
    options = {}
    value = require(config, "max_plausible_duration")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"max_plausible_duration must be a positive number of seconds, got {value!r}")
    options["max_plausible_duration"] = float(value)
    for key in ("min_duration", "max_duration", "max_watch_ratio"):
        value = config_get(config, key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
            raise ValueError(f"{key} must be a non-negative number or ~ (off), got {value!r}")
        options[key] = None if value is None else float(value)
    if None not in (options["min_duration"], options["max_duration"]) and options["min_duration"] > options["max_duration"]:
        raise ValueError(f"min_duration {options['min_duration']} exceeds max_duration {options['max_duration']}")
    return options


def drop_by_options(rows, play_s, duration_s, options, zero_play_rule):
    """The rules shared by the converters, in this order: `max_plausible_duration`
    (always: a duration no video on these platforms has, i.e. a corrupt or mis-scaled
    value; logged as a warning when it drops rows), then the optional `drop_zero_play`
    (no watch time), `min_duration` / `max_duration` and `max_watch_ratio`.

    Args:
        rows (RowFilter): the filter to apply them to.
        play_s, duration_s (ndarray): watch time and video duration in seconds;
            `duration_s` is positive on every kept row.
        options (dict): drop_zero_play (bool) and the bound_options.
        zero_play_rule (str): the name of the zero-play rule (e.g. "play_time_ms == 0").
    """
    limit = options["max_plausible_duration"]
    rows.drop(f"duration > {limit} s (max_plausible_duration)", ~(duration_s <= limit), warn=True)
    if options["drop_zero_play"]:
        rows.drop(zero_play_rule, play_s == 0)
    if options["min_duration"] is not None:
        rows.drop(f"duration < {options['min_duration']} s", duration_s < options["min_duration"])
    if options["max_duration"] is not None:
        rows.drop(f"duration > {options['max_duration']} s", duration_s > options["max_duration"])
    if options["max_watch_ratio"] is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            rows.drop(f"watch ratio > {options['max_watch_ratio']}", play_s / duration_s > options["max_watch_ratio"])


def _line(row, lines):
    """File line of table row `row`: lines[row] when given, else row + 2 (1 = the header)."""
    return int(lines[row]) if lines is not None else row + 2


def int_tokens(values, path, column, lines=None):
    """Float values (NaN = missing) as a nullable integer column (integer ids read as
    floats because some are missing); RawDataError naming the line for a fraction.
    `lines`: the file line of each value, when the values are not the file's rows in order."""
    values = np.asarray(values, dtype=np.float64)
    frac = ~np.isnan(values) & (values % 1 != 0)
    if frac.any():
        row = int(np.flatnonzero(frac)[0])
        raise RawDataError(f"{path}: column {column!r}, line {_line(row, lines)}: expected an integer id, got {values[row]!r}")
    return pd.array(values, dtype="Int64")


def str_tokens(values):
    """A string column (pyarrow) as tokens: stripped, empty or blank = missing (None)."""
    strings = values.to_pandas().str.strip()
    return strings.where(strings != "")


def check_unique(ids, path, column, lines=None):
    """RawDataError naming the line of the first id that repeats in a feature table (one row per id)."""
    ids = pd.Series(np.asarray(ids))
    dup = ids.duplicated().to_numpy()
    if dup.any():
        row = int(np.flatnonzero(dup)[0])
        raise RawDataError(
            f"{path}: column {column!r}, line {_line(row, lines)}: {ids.iloc[row]} appears twice; expected one row per id"
        )


def check_yyyymmdd(values, path, column, known=None, first_line=2):
    """RawDataError at the first value that is not a YYYYMMDD date (an integer in
    1900..2999 with a month 1..12 and a day 1..31); `known`: mask of the values to check
    (missing dates, e.g. NaN, are left out); `first_line`: the file line of values[0]."""
    values = np.asarray(values)
    day, month = values % 100, values // 100 % 100
    with np.errstate(invalid="ignore"):
        bad = (values < 19000101) | (values > 29991231) | (day < 1) | (day > 31) | (month < 1) | (month > 12)
        if values.dtype.kind == "f":
            bad |= values % 1 != 0
    if known is not None:
        bad &= known
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise RawDataError(f"{path}: column {column!r}, line {row + first_line}: expected a YYYYMMDD date, got {values[row]!r}")
