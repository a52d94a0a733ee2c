"""Generic converter: any watch-time log, as CSV or Parquet files, with a column map in YAML.

A dataset of one's own runs with `--dataset=NAME --config_files=mydata.yaml`, where
mydata.yaml says (keys documented in properties/converter/generic.yaml):

    converter: generic
    raw_data_path: logs/          # a CSV or Parquet file, or a folder of them (read in name order)
    columns: {user: uid, item: vid, watch_time: play_ms, duration: dur_ms, time: ts}
    units: {watch_time: ms, duration: ms, time: s}   # time: s or ms since the epoch, or date (YYYYMMDD)
    user_features: {age_group: token}                # optional: columns of the log, per user
    item_features: {tags: token_seq, brightness: float}  # optional: per video

Reads: every `*.csv` and `*.parquet` file of `raw_data_path` (or that one file): the mapped
columns only. `user` and `item` are integer ids; `watch_time` and `duration` are numbers
in `units` (s or ms); `time` (optional) gives each row's day for `split: time` (`s` or `ms`:
Unix time, its day taken at `utc_offset_hours`; `date`: YYYYMMDD). A feature column keeps
one value per user (video): the value of its first row, and a user (video) whose rows
disagree is an error. token_seq values are space-separated tokens.

Writes the canonical Tables as every converter does: label = watch time (s), duration (s),
day (YYYYMMDD, 0 without `time`), the feature tables; cached and split by the pipeline.

Filtering rules, in this order, each counted in meta.json (`rows_dropped`), as the KuaiRec
converter's: 1. `drop_duplicates`: rows equal in every column read; 2. duration <= 0;
3. watch_time < 0; 4. duration above `max_plausible_duration` (always); 5. `drop_zero_play`:
watch_time == 0; 6. `min_duration` / `max_duration`; 7. `max_watch_ratio`.

Bad input (no file, a missing column, a value of the wrong type, a missing id, watch time
or duration, a date that is not YYYYMMDD, a feature with two values for one id) raises
RawDataError naming the file, column and line (Parquet: row, from 1).
"""

import glob
import logging
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dataset_prep.common import RawDataError, RawDataMissing, Tables, config_get, require
from dataset_prep.raw import (
    RowFilter, bool_option, bound_options, check_yyyymmdd, count_missing, drop_by_options, read_csv,
)

logger = logging.getLogger(__name__)

VERSION = 1

REQUIRED = ("user", "item", "watch_time", "duration")
UNITS = {"watch_time": ("s", "ms"), "duration": ("s", "ms"), "time": ("s", "ms", "date")}
FEATURE_TYPES = {"token": "str", "float": "float", "token_seq": "str"}
OPTION_KEYS = ("drop_duplicates", "drop_zero_play")


def read_options(config):
    """The column map, units and rules, validated (keys documented in properties/converter/generic.yaml)."""
    columns = require(config, "columns")
    if not isinstance(columns, dict) or not set(REQUIRED) <= set(columns) or not set(columns) <= {*REQUIRED, "time"}:
        raise ValueError(f"columns must map {', '.join(REQUIRED)} (and optionally time) to column names of the raw "
                         f"files, got {columns!r}")
    units = config_get(config, "units") or {}
    wanted = [k for k in UNITS if k in columns]
    for key in wanted:
        if units.get(key) not in UNITS[key]:
            raise ValueError(f"units: {key} must be one of {'|'.join(UNITS[key])}, got {units.get(key)!r}")
    if set(units) - set(wanted):
        raise ValueError(f"units: {sorted(set(units) - set(wanted))} name no mapped time column (known: {wanted})")
    options = {"columns": dict(columns), "units": {k: units[k] for k in wanted}}
    for kind in ("user_features", "item_features"):
        features = config_get(config, kind) or {}
        bad = {c: t for c, t in features.items() if t not in FEATURE_TYPES} if isinstance(features, dict) else features
        if bad:
            raise ValueError(f"{kind} must map column names to {'|'.join(FEATURE_TYPES)}, got {bad!r}")
        options[kind] = dict(features)
    options.update({key: bool_option(config, key) for key in OPTION_KEYS})
    options["utc_offset_hours"] = float(config_get(config, "utc_offset_hours") or 0.0)
    options.update(bound_options(config))
    return options


def default_raw_dir(data_path, options):
    return os.path.join(data_path, "raw")


def raw_files(raw_dir, options):
    """The CSV and Parquet files of `raw_dir` (a folder, in name order, or one file)."""
    if os.path.isfile(raw_dir):
        files = [raw_dir]
    else:
        files = sorted(glob.glob(os.path.join(raw_dir, "*.csv")) + glob.glob(os.path.join(raw_dir, "*.parquet")))
    if not files:
        raise RawDataMissing(f"no .csv or .parquet file at {os.path.abspath(raw_dir)} (raw_data_path: a file of the "
                             f"watch-time log, or a folder of them)")
    return files


def _kinds(options):
    """Raw column name -> "int", "float" or "str", for every column read."""
    cols, units = options["columns"], options["units"]
    kinds = {cols["user"]: "int", cols["item"]: "int", cols["watch_time"]: "float", cols["duration"]: "float"}
    if "time" in cols:
        kinds[cols["time"]] = "float"
    for kind in ("user_features", "item_features"):
        for column, ftype in options[kind].items():
            kinds[column] = FEATURE_TYPES[ftype]
    return kinds


def _read_parquet(path, kinds, required, missing):
    """The columns of a Parquet file, cast to their kinds; RawDataError naming the column and row."""
    schema = pq.read_schema(path)
    absent = [c for c in kinds if c not in schema.names]
    if absent:
        raise RawDataError(f"{path}: missing column(s) {absent}; the file has {schema.names}")
    table = pq.read_table(path, columns=list(kinds))
    arrow = {"int": pa.int64(), "float": pa.float64(), "str": pa.string()}
    cast = {}
    for name, kind in kinds.items():
        try:
            cast[name] = table.column(name).cast(arrow[kind])
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
            raise RawDataError(f"{path}: column {name!r} ({table.column(name).type}): expected "
                               f"{'integers' if kind == 'int' else 'numbers' if kind == 'float' else 'text'} ({err})") from None
    table = pa.table(cast)
    for name in required:
        if table.column(name).null_count:
            row = pc.index(pc.is_null(table.column(name)), True).as_py()
            raise RawDataError(f"{path}: column {name!r}, row {row + 1}: missing value; this column is required")
    count_missing(table, path, kinds, missing)
    return table


def read_log(files, options, missing):
    """Every file's mapped columns as one DataFrame, plus `_file` and `_line` (for errors)."""
    kinds = _kinds(options)
    required = [options["columns"][k] for k in REQUIRED]
    frames = []
    for index, path in enumerate(files):
        if path.endswith(".parquet"):
            table, first = _read_parquet(path, kinds, required, missing), 1
        else:
            table, first = read_csv(path, kinds, required=required, missing=missing), 2
        frame = pd.DataFrame({name: table.column(name).to_numpy(zero_copy_only=False) for name in kinds})
        frame["_file"], frame["_line"] = index, np.arange(first, first + len(frame))
        frames.append(frame)
        logger.info(f"read {len(frame):,} rows from {path}")
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def days(log, files, options):
    """(day YYYYMMDD, 0 = unknown; timestamp in s or None) of every row from the `time` column."""
    column = options["columns"].get("time")
    if column is None:
        return np.zeros(len(log), dtype=np.int64), None
    values = log[column].to_numpy(dtype=np.float64)
    known = ~np.isnan(values)
    if options["units"]["time"] == "date":
        for index, path in enumerate(files):
            rows = (log["_file"] == index).to_numpy()
            check_yyyymmdd(values[rows], path, column, known=known[rows])
        return np.where(known, values, 0).astype(np.int64), None
    seconds = values / (1000.0 if options["units"]["time"] == "ms" else 1.0)
    local = pd.to_datetime(np.where(known, seconds, 0) + 3600 * options["utc_offset_hours"], unit="s")
    day = (local.year * 10000 + local.month * 100 + local.day).to_numpy()
    return np.where(known, day, 0), seconds


def features(log, files, kind, id_column, id_name):
    """The per-id feature table of `kind` (user_features / item_features) from the log's rows,
    one row per id (its first row's values); RawDataError where one id's rows disagree."""
    columns = list(kind)
    if not columns:
        return None
    table = log[[id_column, *columns, "_file", "_line"]]
    for column in columns:
        values = table[column]
        first = table[id_column].map(table.drop_duplicates(id_column).set_index(id_column)[column])
        differs = ~((values == first) | (values.isna() & first.isna()))
        if differs.any():
            row = table[differs.to_numpy()].iloc[0]
            raise RawDataError(f"{files[int(row['_file'])]}: column {column!r}, line {int(row['_line'])}: "
                               f"{id_name} {row[id_column]} has another value ({row[column]!r}) than on its first "
                               f"row ({first[differs].iloc[0]!r}); expected one value per {id_name}")
    out = table.drop_duplicates(id_column)[[id_column, *columns]].rename(columns={id_column: f"{id_name}_id"})
    return out.reset_index(drop=True)


def convert(raw_dir, options):
    """Read the log's files and return the canonical Tables (see the module docstring)."""
    files = raw_files(raw_dir, options)
    missing = {}
    log = read_log(files, options, missing)
    cols, units = options["columns"], options["units"]
    scale = {"s": 1.0, "ms": 1000.0}
    watch = log[cols["watch_time"]].to_numpy(dtype=np.float64)
    duration = log[cols["duration"]].to_numpy(dtype=np.float64) / scale[units["duration"]]
    day, seconds = days(log, files, options)

    rows = RowFilter(len(log), f"generic log {raw_dir}")
    if options["drop_duplicates"]:
        rows.drop("duplicate row", log.drop(columns=["_file", "_line"]).duplicated().to_numpy())
    rows.drop("duration <= 0", duration <= 0)
    rows.drop("watch_time < 0", watch < 0)
    drop_by_options(rows, watch / scale[units["watch_time"]], duration, options, "watch_time == 0")
    extra = {} if seconds is None else {"timestamp": seconds}
    # RowFilter.interactions takes the watch time in ms (label = ms / 1000), as every converter reads it
    watch_ms = watch if units["watch_time"] == "ms" else watch * 1000.0
    inter = rows.interactions(log[cols["user"]].to_numpy(), log[cols["item"]].to_numpy(), watch_ms, duration, day,
                              **extra)
    if units["watch_time"] == "s":
        inter["label"] = watch[rows.keep]  # exactly the value read (no round trip through ms)
    kept = log[rows.keep]
    user = features(kept, files, options["user_features"], cols["user"], "user")
    item = features(kept, files, options["item_features"], cols["item"], "item")
    field_types = {**options["user_features"], **options["item_features"]}
    return Tables(inter, field_types, user, item, rows_read=len(log), rows_dropped=rows.dropped,
                  missing_values=missing)
