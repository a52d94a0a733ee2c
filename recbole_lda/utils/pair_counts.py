"""Value counts of pairs of float64 values, merged from pieces: D2Co fits its mixtures from
them (baselines/d2co.py), and the ray engine's driver counts the same pairs over the training
partitions (dataset_prep/label_statistics.d2co_sample). Here, below both, so that a model and
the data layer share one definition (pyproject.toml's import contracts)."""

import numpy as np


class PairCounts:
    """Sorted distinct (first, second) pairs of float64 values and their counts, merged from
    pieces (`add`); memory grows with the distinct pairs, not with the rows. Pieces wait in a
    list and are merged when they outnumber the merged pairs (each row is sorted O(log) times)."""

    MERGE_ROWS = 1 << 20  # pieces wait until they hold more rows than this and than the merged pairs

    def __init__(self):
        self._merged = (np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64))
        self._pending, self._pending_rows = [], 0

    def add(self, first, second, counts=None):
        first, second = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
        counts = np.ones(len(first), dtype=np.int64) if counts is None else np.asarray(counts, dtype=np.int64)
        self._pending.append(_distinct_pairs(first, second, counts))
        self._pending_rows += len(first)
        if self._pending_rows > max(len(self._merged[0]), self.MERGE_ROWS):
            self._merge()
        return self

    def _merge(self):
        if self._pending:
            self._merged = _distinct_pairs(*(np.concatenate(a) for a in zip(self._merged, *self._pending)))
            self._pending, self._pending_rows = [], 0

    @property
    def pairs(self):
        """(first, second, counts): the distinct pairs sorted by first, then second."""
        self._merge()
        return self._merged


def _distinct_pairs(first, second, counts):
    order = np.lexsort((second, first))
    first, second, counts = first[order], second[order], counts[order]
    new = np.ones(len(first), dtype=bool)
    new[1:] = (first[1:] != first[:-1]) | (second[1:] != second[:-1])
    starts = np.flatnonzero(new)
    summed = np.add.reduceat(counts, starts) if len(starts) else counts
    return first[starts], second[starts], summed.astype(np.int64)
