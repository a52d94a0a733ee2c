"""The split and the partitions of a streaming conversion (after dataset_prep/stream.py's
passes), with memory bounded by a partition, and id maps without a Python object per id.

- `split: time` is today's rule, row by row: day < VALID_START train, < TEST_START valid,
  else test (rows without a day, 0, left out as "unknown_day").
- `split: random` keeps today's proportions exactly (train = round(r0 * n) rows, valid =
  round((r0 + r1) * n) - train, test the rest, n = rows kept) but assigns rows differently:
  each kept row gets the key u = splitmix64(row ^ hash(split_seed)), a bijection of its
  global position, so all keys differ; the train rows are the round(r0 * n) smallest keys,
  then valid, then test. The cut values are found exactly in two passes over the keys (a
  histogram of their top 16 bits, then the keys of the two bins that hold a cut), so no
  process holds all keys. The same raw files and split_seed give the same assignment.
- Id maps (`IdSet`): sorted unique raw ids, merged from each partition's np.unique;
  a row's dense index is its id's position (np.searchsorted), written as user_index and
  item_index (0-based; RecBole's own maps reserve 0 for padding, these do not).
"""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataset_prep.common import splitmix64

SPLITS = ("train", "valid", "test")
TOP_BITS = 16


class IdSet:
    """Sorted unique ids, grown by `add`: pending arrays are merged when they outgrow the
    merged set, so memory stays within a few times the final set (int32 when ids fit)."""

    def __init__(self):
        self.ids = np.zeros(0, dtype=np.int64)
        self.pending, self.pending_size = [], 0

    def add(self, ids):
        ids = np.unique(ids)
        self.pending.append(ids.astype(np.int32) if len(ids) and ids.min() >= 0 and ids.max() < 2**31 else ids)
        self.pending_size += len(ids)
        if self.pending_size > max(len(self.ids), 1 << 20):
            self.merge()

    def merge(self):
        if self.pending:
            parts = [self.ids] + self.pending
            small = all(p.dtype == np.int32 or len(p) == 0 for p in parts)  # int32 halves the merge's memory
            self.ids = np.unique(np.concatenate([p.astype(np.int32 if small else np.int64) for p in parts]))
            self.pending, self.pending_size = [], 0
        return self.ids


def split_keys(rows, seed):
    """The random split's key of each global row position (distinct for distinct rows)."""
    key = splitmix64(np.uint64(seed) ^ np.uint64(0x5EED5EED5EED5EED))
    return splitmix64(np.asarray(rows).astype(np.uint64) ^ key)


def cut_counts(n, ratio):
    """Rows of train, and of train + valid, as split.split_rows cuts them."""
    return int(round(ratio[0] * n)), int(round((ratio[0] + ratio[1]) * n))


def top_histogram(keys):
    """Counts of the keys' top TOP_BITS bits (one pass's share of the histogram)."""
    return np.bincount((keys >> np.uint64(64 - TOP_BITS)).astype(np.int64), minlength=1 << TOP_BITS)


def cut_bins(histogram, cuts):
    """For each cut k (0 <= k <= n): (bin of the k-th smallest key, 0-based; its position
    among that bin's sorted keys), or None when k == n (every key is below the cut)."""
    cumulative = np.cumsum(histogram)
    out = []
    for k in cuts:
        if k >= cumulative[-1]:
            out.append(None)
        else:
            b = int(np.searchsorted(cumulative, k, side="right"))
            out.append((b, k - (int(cumulative[b - 1]) if b else 0)))
    return out


def cut_values(bins, keys_in_bins):
    """The key value of each cut: exactly k keys are smaller; None = no cut (all rows below).

    keys_in_bins: bin -> every key of that bin (from all partitions)."""
    return [None if found is None else np.sort(keys_in_bins[found[0]])[found[1]] for found in bins]


def assign(table, split, cuts=None):
    """{split name: boolean mask} of a partition's rows (see the module docstring)."""
    if split["split"] == "time":
        day = table.column("day").to_numpy()
        valid_start, test_start = split["split_dates"]
        known = day > 0
        parts = {"train": known & (day < valid_start), "valid": (day >= valid_start) & (day < test_start),
                 "test": day >= test_start}
        parts["unknown_day"] = ~known
        return parts
    keys = split_keys(table.column("row").to_numpy(), split["split_seed"])
    below = [np.ones(len(keys), dtype=bool) if c is None else keys < c for c in cuts]
    return {"train": below[0], "valid": below[1] & ~below[0], "test": ~below[1]}


def with_indices(table, users, items):
    """The partition's columns for the output: dense user_index and item_index added, the
    global row position dropped."""
    user_index = np.searchsorted(users, table.column("user_id").to_numpy()).astype(np.int32)
    item_index = np.searchsorted(items, table.column("item_id").to_numpy()).astype(np.int32)
    table = table.drop(["row"])
    return table.append_column("user_index", pa.array(user_index)).append_column("item_index", pa.array(item_index))


def keys_in(table, seed, bins):
    """The split keys of a partition's rows that fall in the given bins."""
    keys = split_keys(table.column("row").to_numpy(), seed)
    top = (keys >> np.uint64(64 - TOP_BITS)).astype(np.int64)
    return {b: keys[top == b] for b in bins}
