"""Streaming conversion of KuaiRand logs (and synthetic_kuairand's) with memory bounded by
a chunk size, not by the row count: the first two passes (dataset_prep/stream_split.py
does the split and writes the partitions).

Pass 1 (`bucket_logs`): every log file is read in chunks of about `stream_chunk_rows`
    rows (dataset_prep/stream_read.py, with raw.read_csv's checks and missing-value
    counts). Each row gets its global position (`row`: its place in the files read one
    after the other, as the in-memory converter concatenates them) and the code of the
    first row rule it fails (`code`: 0 = none; the rules of kuairand.convert in their
    order, duplicates aside), and goes to one of `buckets` temporary Arrow files chosen by
    a hash of its user id, so that the duplicates of a row (same user) share a bucket.
Pass 2 (`clean_bucket`): in each bucket, the duplicates (same user_id, video_id, time_ms,
    play_time_ms, duration_ms; the first by `row` is kept) are found by sorting; the rows
    each rule drops are counted exactly as kuairand.convert counts them (duplicates have
    the same key columns, so they fail the same row rule as the row they repeat), and the
    kept rows are written in their file order.

The counts in meta.json (rows read, dropped per rule, kept, missing values, users, items)
are therefore those of the in-memory conversion (tests/test_stream.py checks it).
"""

import logging
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataset_prep import kuairand
from dataset_prep.common import RawDataError, splitmix64
from dataset_prep.raw import check_yyyymmdd, drop_by_options
from dataset_prep.stream_read import csv_chunks

logger = logging.getLogger(__name__)

# The columns of a bucket file (pass 1): nullable hour and tab are null where unknown.
BUCKET_SCHEMA = pa.schema([
    ("row", pa.int64()), ("user_id", pa.int64()), ("item_id", pa.int64()), ("day", pa.int32()),
    ("play_time_ms", pa.int64()), ("duration_ms", pa.int64()), ("time_key", pa.int64()), ("code", pa.int8()),
    ("hour", pa.int8()), ("tab", pa.int16()), ("is_rand", pa.int8()),
])
IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")


class RuleCodes:
    """Records, per row, the first rule that drops it (1, 2, ... in the order the rules are
    applied; 0 = kept); the same interface as raw.RowFilter.drop, without logging per chunk."""

    def __init__(self, n):
        self.code = np.zeros(n, dtype=np.int8)
        self.rules = []

    def drop(self, rule, mask, warn=False):
        self.rules.append(rule)
        self.code[np.asarray(mask, dtype=bool) & (self.code == 0)] = len(self.rules)


def row_rules(duration, play, options):
    """RuleCodes of kuairand.convert's row rules (all but duplicates), in its order."""
    rules = RuleCodes(len(duration))
    rules.drop("duration_ms == 0 (unknown duration)", duration == 0)
    rules.drop("duration_ms < 0", duration < 0)
    rules.drop("play_time_ms < 0", play < 0)
    drop_by_options(rules, play / 1000.0, duration / 1000.0, options, "play_time_ms == 0")
    return rules


def rule_names(options):
    """Every rule name in the order kuairand.convert applies them (meta.json's rows_dropped)."""
    names = ["duplicate row"] if options["drop_duplicates"] else []
    return names + row_rules(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), options).rules


def bucket_of(user_id, buckets):
    """The bucket (0..buckets-1) of each user id: a hash, so that buckets get similar row counts."""
    return (splitmix64(np.asarray(user_id).astype(np.uint64)) % np.uint64(buckets)).astype(np.int64)


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
        pa.array(duration), pa.array(np.where(has_time, time_ms, -1)),
        pa.array(row_rules(duration, col["play_time_ms"], options).code),
        pa.array(hour.astype(np.int8), mask=~(has_time | has_hourmin)), tab,
        pa.array(np.full(n, int(is_random), dtype=np.int8)),
    ], schema=BUCKET_SCHEMA)


def bucket_logs(found, options, chunk_rows, buckets, folder, missing, known_durations=None):
    """Pass 1: the log files into `buckets` Arrow files `folder/bucket-NNNNN.arrow`.

    Returns (rows read, {"time_ms": any row has it, "hourmin": ..., "tab": ...})."""
    paths = [os.path.join(folder, f"bucket-{b:05d}.arrow") for b in range(buckets)]
    sinks = [pa.OSFile(p, "wb") for p in paths]
    writers = [pa.ipc.new_file(s, BUCKET_SCHEMA, options=IPC_OPTIONS) for s in sinks]
    rows, present = 0, {"time_ms": False, "hourmin": False, "tab": False}
    try:
        for path, is_random in found["logs"]:
            for line, table in csv_chunks(path, kuairand.LOG_COLUMNS, chunk_rows, required=list(kuairand.LOG_COLUMNS),
                                          optional=kuairand.LOG_OPTIONAL, missing=missing):
                check_yyyymmdd(table.column("date").to_numpy(), path, "date", first_line=line)
                for c in present:
                    present[c] |= c in table.column_names and table.column(c).null_count < table.num_rows
                batch = log_batch(table, rows, is_random, options, known_durations)
                rows += table.num_rows
                bucket = bucket_of(batch.column("user_id").to_numpy(), buckets)
                order = np.argsort(bucket, kind="stable")  # stable: rows stay in file order within a bucket
                cuts = np.searchsorted(bucket[order], np.arange(buckets + 1))
                for b in np.flatnonzero(np.diff(cuts)):
                    writers[b].write_batch(batch.take(pa.array(order[cuts[b]:cuts[b + 1]])))
            logger.info(f"read {path}: {rows:,} log rows so far")
    finally:
        for w, s in zip(writers, sinks):
            w.close()
            s.close()
    return rows, present


def read_arrow(path):
    """An Arrow file written by this module, as one table."""
    with pa.memory_map(path) as source:
        return pa.ipc.open_file(source).read_all()


def duplicates(table):
    """Mask of the rows that repeat an earlier row (by `row`) on kuairand's duplicate key."""
    key = [table.column(c).to_numpy() for c in ("row", "time_key", "duration_ms", "play_time_ms", "item_id", "user_id")]
    order = np.lexsort(key)  # the last key sorts first; `row` breaks ties, so the first stays first
    same = np.ones(max(len(order) - 1, 0), dtype=bool)
    for values in key[1:]:
        v = values[order]
        same &= v[1:] == v[:-1]
    dup = np.zeros(len(order), dtype=bool)
    dup[order[1:][same]] = True
    return dup


def clean_bucket(path, options, dropped):
    """Pass 2 for one bucket: add its drop counts per rule (code) to `dropped` and return the
    kept rows (in file order) as the canonical interaction columns."""
    table = read_arrow(path)
    dup = duplicates(table) if options["drop_duplicates"] else np.zeros(table.num_rows, dtype=bool)
    code = table.column("code").to_numpy()
    offset = 1 if options["drop_duplicates"] else 0
    dropped[0] += int(dup.sum()) if offset else 0
    counts = np.bincount(code[~dup], minlength=len(dropped) - offset + 1)
    dropped[offset:] += counts[1:]
    kept = table.filter(pa.array(~dup & (code == 0)))
    return pa.table({
        "row": kept.column("row"),
        "user_id": kept.column("user_id"),
        "item_id": kept.column("item_id"),
        "label": pc.divide(pc.cast(kept.column("play_time_ms"), pa.float64()), 1000.0),
        "duration": pc.divide(pc.cast(kept.column("duration_ms"), pa.float64()), 1000.0),
        "day": kept.column("day"),
        "hour": kept.column("hour"),
        "tab": kept.column("tab"),
        "is_rand": kept.column("is_rand"),
    })


def known_video_durations(path, chunk_rows, missing):
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
