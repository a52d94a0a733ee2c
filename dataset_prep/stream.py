"""Streaming conversion with memory bounded by a chunk size, not by the row count: the
first two passes, for every raw format (dataset_prep/stream_formats.py reads the formats;
dataset_prep/stream_split.py does the split and writes the partitions).

Pass 1 (`bucket_rows`): the interaction file(s) are read in chunks of about
    `stream_chunk_rows` rows (dataset_prep/stream_read.py, with raw.read_csv's checks and
    missing-value counts). Each row gets its global position (`row`: its place in the files
    read one after the other, as the in-memory converter concatenates them) and the code of
    the first row rule it fails (`code`: 0 = none; the converter's rules in their order,
    duplicates aside), and goes to one of `buckets` temporary Arrow files chosen by a hash
    of its user id, so that the duplicates of a row (same user) share a bucket.
Pass 2 (`clean_bucket`): in each bucket, the duplicates (same key, DUPLICATE_KEY; the first
    by `row` is kept) are found by sorting; the rows each rule drops are counted exactly as
    the in-memory converter counts them (duplicates have the same key columns, so they fail
    the same row rule as the row they repeat), and the kept rows are written in file order.

The counts in meta.json (rows read, dropped per rule, kept, missing values, users, items)
are therefore those of the in-memory conversion (tests/test_stream.py checks it).
"""

import logging
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataset_prep.common import splitmix64

logger = logging.getLogger(__name__)

# The columns of a bucket file (pass 1): nullable hour and tab are null where unknown. The
# duplicate key is (user_id, item_id, play_time_ms, duration_ms, time_key, key_a, key_b):
# KuaiRand's time_ms (-1 where missing) is time_key; KuaiRec's timestamp and watch_ratio
# are key_a and key_b (NaN where missing, equal to NaN as in pandas' duplicated).
BUCKET_SCHEMA = pa.schema([
    ("row", pa.int64()), ("user_id", pa.int64()), ("item_id", pa.int64()), ("day", pa.int32()),
    ("play_time_ms", pa.int64()), ("duration_ms", pa.int64()), ("time_key", pa.int64()), ("key_a", pa.float64()),
    ("key_b", pa.float64()), ("code", pa.int8()), ("hour", pa.int8()), ("tab", pa.int16()), ("is_rand", pa.int8()),
])
DUPLICATE_KEY = ("key_b", "key_a", "time_key", "duration_ms", "play_time_ms", "item_id", "user_id")
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


def bucket_of(user_id, buckets):
    """The bucket (0..buckets-1) of each user id: a hash, so that buckets get similar row counts."""
    return (splitmix64(np.asarray(user_id).astype(np.uint64)) % np.uint64(buckets)).astype(np.int64)


def bucket_rows(batches, buckets, folder):
    """Pass 1: record batches of BUCKET_SCHEMA into `buckets` Arrow files
    `folder/bucket-NNNNN.arrow` by user; returns the rows written."""
    paths = [os.path.join(folder, f"bucket-{b:05d}.arrow") for b in range(buckets)]
    sinks = [pa.OSFile(p, "wb") for p in paths]
    writers = [pa.ipc.new_file(s, BUCKET_SCHEMA, options=IPC_OPTIONS) for s in sinks]
    rows = 0
    try:
        for batch in batches:
            rows += batch.num_rows
            bucket = bucket_of(batch.column("user_id").to_numpy(), buckets)
            order = np.argsort(bucket, kind="stable")  # stable: rows stay in file order within a bucket
            cuts = np.searchsorted(bucket[order], np.arange(buckets + 1))
            for b in np.flatnonzero(np.diff(cuts)):
                writers[b].write_batch(batch.take(pa.array(order[cuts[b]:cuts[b + 1]])))
    finally:
        for w, s in zip(writers, sinks):
            w.close()
            s.close()
    return rows


def read_arrow(path):
    """An Arrow file written by this module, as one table."""
    with pa.memory_map(path) as source:
        return pa.ipc.open_file(source).read_all()


def duplicates(table):
    """Mask of the rows that repeat an earlier row (by `row`) on the duplicate key (NaN equal
    to NaN, as pandas' duplicated has it)."""
    key = [table.column("row").to_numpy()] + [table.column(c).to_numpy() for c in DUPLICATE_KEY]
    order = np.lexsort(key)  # the last key sorts first (NaN last); `row` breaks ties, so the first stays first
    same = np.ones(max(len(order) - 1, 0), dtype=bool)
    for values in key[1:]:
        v = values[order]
        equal = v[1:] == v[:-1]
        if v.dtype.kind == "f":
            equal |= np.isnan(v[1:]) & np.isnan(v[:-1])
        same &= equal
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


