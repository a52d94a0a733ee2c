"""The raw formats that the streaming conversion reads (dataset_prep/stream_prepare.py):
for each, the chunks of its interaction file(s) as bucket-file record batches
(stream.BUCKET_SCHEMA: global row position, ids, day, play, duration, the duplicate key,
the code of the first row rule the row fails), the rule names, the context columns and
the feature tables, each as its in-memory converter has them.

- KuaiRand (kuairand, synthetic_kuairand): log_standard_*.csv (+ log_random_*.csv), the
  rules of kuairand.convert, hour/tab/is_rand, user_features and video_features_basic
  (read in chunks; kuairand_impute_duration reads video_duration first).
- KuaiRec (kuairec, synthetic): {kuairec_matrix}_matrix.csv, the rules of kuairec.convert,
  user_features.csv and the item tables (item_categories.csv, item_daily_features.csv),
  which are read whole: KuaiRec has 10,728 videos.
"""

import logging
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dataset_prep import kuairand, kuairec
from dataset_prep import stream_split as ss
from dataset_prep.common import RawDataError
from dataset_prep.raw import check_yyyymmdd, drop_by_options
from dataset_prep.stream import BUCKET_SCHEMA, RuleCodes
from dataset_prep.stream_read import csv_chunks

logger = logging.getLogger(__name__)

# item.parquet's columns (fixed, so that every chunk has the same types, whatever it holds)
ITEM_SCHEMA = pa.schema([("item_id", pa.int64())] + [(c, pa.string() if t == "str" else pa.int64())
                                                    for c, t in kuairand.VIDEO_COLUMNS.items()] + [("tag", pa.string())])


def kuairand_rules(duration, play, options):
    """RuleCodes of kuairand.convert's row rules (all but duplicates), in its order."""
    rules = RuleCodes(len(duration))
    rules.drop("duration_ms == 0 (unknown duration)", duration == 0)
    rules.drop("duration_ms < 0", duration < 0)
    rules.drop("play_time_ms < 0", play < 0)
    drop_by_options(rules, play / 1000.0, duration / 1000.0, options, "play_time_ms == 0")
    return rules


def _nullable(table, column, arrow_type):
    """An optional column as a nullable array of `arrow_type` (all null when absent)."""
    if column not in table.column_names:
        return pa.nulls(table.num_rows, arrow_type)
    return pc.cast(table.column(column), arrow_type).combine_chunks()


def log_batch(table, first_row, is_random, options, known_durations):
    """One chunk of a log file as a BUCKET_SCHEMA record batch (rule codes, hour, imputation)."""
    n = table.num_rows
    col = {c: table.column(c).to_numpy() for c in kuairand.LOG_COLUMNS}
    time_ms, has_time = kuairand._nullable_ints(table, "time_ms")
    duration = col["duration_ms"]
    if known_durations is not None:  # kuairand_impute_duration: the video's positive video_duration
        ids, values = known_durations
        at = np.minimum(np.searchsorted(ids, col["video_id"]), max(len(ids) - 1, 0))
        found = (ids[at] == col["video_id"]) if len(ids) else np.zeros(n, dtype=bool)
        use = (duration == 0) & found
        duration = np.where(use, np.rint(values[at]), duration).astype(np.int64)
    hourmin, has_hourmin = kuairand._nullable_ints(table, "hourmin")
    hour = np.where(has_time, (time_ms + kuairand.LOCAL_OFFSET_MS) // 3_600_000 % 24, hourmin // 100)
    tab = _nullable(table, "tab", pa.int16())
    return pa.record_batch([
        pa.array(np.arange(first_row, first_row + n, dtype=np.int64)), pa.array(col["user_id"]),
        pa.array(col["video_id"]), pa.array(col["date"].astype(np.int32)), pa.array(col["play_time_ms"]),
        pa.array(duration), pa.array(np.where(has_time, time_ms, -1)), pa.array(np.zeros(n)), pa.array(np.zeros(n)),
        pa.array(kuairand_rules(duration, col["play_time_ms"], options).code),
        pa.array(hour.astype(np.int8), mask=~(has_time | has_hourmin)), tab,
        pa.array(np.full(n, int(is_random), dtype=np.int8)),
    ], schema=BUCKET_SCHEMA)


def known_video_durations(path, chunk_rows):
    """(sorted video ids, durations in ms) of the videos with a positive video_duration in
    video_features_basic (kuairand_impute_duration); RawDataError for a video listed twice."""
    ids, values = [], []
    for _, table in csv_chunks(path, {"video_id": "int", "video_duration": "float"}, chunk_rows,
                               required=["video_id"], missing=None):
        d = table.column("video_duration").to_numpy(zero_copy_only=False)
        good = d > 0  # NaN compares False
        ids.append(table.column("video_id").to_numpy()[good])
        values.append(d[good])
    ids, values = np.concatenate(ids), np.concatenate(values)
    order = np.argsort(ids, kind="stable")
    ids, values = ids[order], values[order]
    if len(ids) > 1 and (ids[1:] == ids[:-1]).any():
        raise RawDataError(f"{path}: column 'video_id': {ids[1:][ids[1:] == ids[:-1]][0]} appears twice; expected one row per id")
    return ids, values


def output_columns(options, present):
    """The context tokens written, as the in-memory conversion writes them."""
    if not options["add_context_features"]:
        return []
    columns = [c for c, there in (("hour", present["time_ms"] or present["hourmin"]), ("tab", present["tab"])) if there]
    return columns + (["is_rand"] if options["kuairand_random_logs"] else [])


def kuairand_features(folder, found, options, users, items, chunk_rows, missing, video_path):
    """user.parquet and item.parquet of the kept users and videos; returns their field types.
    Reads video_features_basic in chunks whenever the in-memory converter reads it (its
    missing values are counted the same way)."""
    types = {}
    if options["add_user_features"] and found["user"]:
        write_users(folder, found["user"], users, missing)
        types |= {c: "float" if t == "float" else "token" for c, t in kuairec.USER_COLUMNS.items()}
    if video_path:
        write_items(video_path, items, chunk_rows, missing, os.path.join(folder, "item.parquet") if options["add_item_features"] else None)
        if options["add_item_features"]:
            types |= {c: "token" for c in kuairand.VIDEO_COLUMNS} | {"tag": "token_seq"}
    return types


def write_items(path, items, chunk_rows, missing, target):
    """The video features of `items`, chunk by chunk (kuairand.video_frame on each), into `target`
    (None: only count the missing values); RawDataError for a video listed twice."""
    writer, seen = None, ss.IdSet()
    written = 0
    for line, table in csv_chunks(path, kuairand.VIDEO_READ_COLUMNS, chunk_rows, required=["video_id"], missing=missing):
        ids = table.column("video_id").to_numpy()
        at = np.minimum(np.searchsorted(items, ids), max(len(items) - 1, 0))
        wanted = items[at] == ids
        if target is None or not wanted.any():
            continue
        frame = kuairand.video_frame(table.filter(pa.array(wanted)), path, np.flatnonzero(wanted) + line)
        frame = frame.drop(columns="video_duration")
        seen.add(frame["item_id"].to_numpy())
        written += len(frame)
        writer = writer or pq.ParquetWriter(target, ITEM_SCHEMA)
        writer.write_table(pa.Table.from_pandas(frame, schema=ITEM_SCHEMA, preserve_index=False))
    if writer:
        writer.close()
    if target and written != len(seen.merge()):
        raise RawDataError(f"{path}: column 'video_id': a video appears twice in different chunks; expected one row per id")


class KuaiRandFormat:
    """log_standard_*.csv (+ log_random_*.csv), read as kuairand.convert reads them."""

    def __init__(self, raw_dir, options, chunk_rows):
        self.found = kuairand.find_files(raw_dir, options)
        self.options, self.chunk_rows = options, chunk_rows
        self.present = {"time_ms": False, "hourmin": False, "tab": False}
        wants_video = options["add_item_features"] or options["kuairand_impute_duration"]
        self.video_path = self.found["video"] if wants_video else None

    def interaction_files(self):
        return [p for p, _ in self.found["logs"]]

    def rule_names(self):
        """Every rule name in the order kuairand.convert applies them (meta.json's rows_dropped)."""
        names = ["duplicate row"] if self.options["drop_duplicates"] else []
        return names + kuairand_rules(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), self.options).rules

    def batches(self, missing):
        """The log files' chunks as BUCKET_SCHEMA batches (rows numbered across the files)."""
        known = None
        if self.options["kuairand_impute_duration"] and self.video_path:
            known = known_video_durations(self.video_path, self.chunk_rows)
        rows = 0
        for path, is_random in self.found["logs"]:
            for line, table in csv_chunks(path, kuairand.LOG_COLUMNS, self.chunk_rows, required=list(kuairand.LOG_COLUMNS),
                                          optional=kuairand.LOG_OPTIONAL, missing=missing):
                check_yyyymmdd(table.column("date").to_numpy(), path, "date", first_line=line)
                for c in self.present:
                    self.present[c] |= c in table.column_names and table.column(c).null_count < table.num_rows
                yield log_batch(table, rows, is_random, self.options, known)
                rows += table.num_rows
            logger.info(f"read {path}: {rows:,} log rows so far")

    def output_columns(self):
        return output_columns(self.options, self.present)

    def write_features(self, folder, users, items, missing):
        return kuairand_features(folder, self.found, self.options, users, items, self.chunk_rows, missing, self.video_path)


class KuaiRecFormat:
    """{kuairec_matrix}_matrix.csv, read as kuairec.convert reads it."""

    def __init__(self, raw_dir, options, chunk_rows):
        self.raw_dir, self.options, self.chunk_rows = raw_dir, options, chunk_rows
        self.path = os.path.join(raw_dir, f"{options['kuairec_matrix']}_matrix.csv")

    def interaction_files(self):
        return [self.path]

    def rule_names(self):
        names = ["duplicate row"] if self.options["drop_duplicates"] else []
        return names + kuairec_rules(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), self.options).rules

    def batches(self, missing):
        rows = 0
        required = ["user_id", "video_id", "play_duration", "video_duration"]
        for line, table in csv_chunks(self.path, kuairec.MATRIX_COLUMNS, self.chunk_rows, required=required, missing=missing):
            col = {c: table.column(c).to_numpy(zero_copy_only=False) for c in kuairec.MATRIX_COLUMNS}
            date, n = col["date"], table.num_rows
            known = ~np.isnan(date)
            check_yyyymmdd(date, self.path, "date", known=known, first_line=line)
            play, vdur = col["play_duration"], col["video_duration"]
            yield pa.record_batch([
                pa.array(np.arange(rows, rows + n, dtype=np.int64)), pa.array(col["user_id"]), pa.array(col["video_id"]),
                pa.array(np.where(known, date, 0).astype(np.int32)), pa.array(play), pa.array(vdur),
                pa.array(np.zeros(n, dtype=np.int64)), pa.array(col["timestamp"]), pa.array(col["watch_ratio"]),
                pa.array(kuairec_rules(vdur, play, self.options).code), pa.nulls(n, pa.int8()), pa.nulls(n, pa.int16()),
                pa.array(np.zeros(n, dtype=np.int8)),
            ], schema=BUCKET_SCHEMA)
            rows += n
        logger.info(f"read {self.path}: {rows:,} rows")

    def output_columns(self):
        return []

    def write_features(self, folder, users, items, missing):
        """user.parquet and item.parquet as kuairec.convert makes them (read whole: small)."""
        types = {}
        user_path = os.path.join(self.raw_dir, "user_features.csv")
        if self.options["add_user_features"] and os.path.isfile(user_path):
            write_users(folder, user_path, users, missing)
            types |= {c: "float" if t == "float" else "token" for c, t in kuairec.USER_COLUMNS.items()}
        if self.options["add_item_features"]:
            item = kuairec.read_item_features(self.raw_dir, missing)
            if item is not None:
                item = item[item["item_id"].isin(items)].reset_index(drop=True)
                pq.write_table(pa.Table.from_pandas(item, preserve_index=False), os.path.join(folder, "item.parquet"))
                types |= {c: "token" for c in item.columns if c != "item_id"}
                if "tags" in item.columns:
                    types["tags"] = "token_seq"
        return types


def kuairec_rules(vdur, play, options):
    """RuleCodes of kuairec.convert's row rules (all but duplicates), in its order."""
    rules = RuleCodes(len(vdur))
    rules.drop("video_duration <= 0", vdur <= 0)
    rules.drop("play_duration < 0", play < 0)
    drop_by_options(rules, play / 1000.0, vdur / 1000.0, options, "play_duration == 0")
    return rules


def write_users(folder, path, users, missing):
    """user.parquet: the user features of the kept users (one row per user: read whole)."""
    user = kuairec.read_user_features(path, missing)
    user = user[user["user_id"].isin(users)].reset_index(drop=True)
    pq.write_table(pa.Table.from_pandas(user, preserve_index=False), os.path.join(folder, "user.parquet"))


# dataset -> its raw format
FORMATS = {"kuairand": KuaiRandFormat, "synthetic_kuairand": KuaiRandFormat, "kuairec": KuaiRecFormat,
           "synthetic": KuaiRecFormat}
