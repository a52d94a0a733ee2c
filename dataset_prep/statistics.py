"""Exact statistics of values streamed in pieces: merged value counts (of values, and of
pairs of values) and numpy's quantiles from them.

A quantile of n values depends only on n and the values at one or two positions of the
sorted sample, which cumulative value counts give exactly; `quantiles` then applies
numpy's own interpolation (its virtual index, gamma and lerp for the method, numpy 1.x's
private helpers, pinned by pyproject's numpy < 2), so the result equals
np.quantile(all values, q, method=method) bit for bit (tests/test_statistics.py).
"""

import numpy as np
from numpy.lib import function_base as _fb


class ValueCounts:
    """Sorted distinct values and their counts, merged from pieces (`add`); memory grows
    with the distinct values, not with the rows."""

    def __init__(self, dtype=np.float64):
        self.values = np.zeros(0, dtype=dtype)
        self.counts = np.zeros(0, dtype=np.int64)

    def add(self, values, counts=None):
        values = np.asarray(values)
        if counts is None:
            values, counts = np.unique(values, return_counts=True)
        merged, inverse = np.unique(np.concatenate([self.values, values.astype(self.values.dtype)]), return_inverse=True)
        self.counts = np.bincount(inverse, weights=np.concatenate([self.counts, counts]), minlength=len(merged)).astype(np.int64)
        self.values = merged
        return self

    @property
    def n(self):
        return int(self.counts.sum())

    def at(self, positions):
        """The values at 0-based positions of the sorted sample (negative: from the end)."""
        positions = np.asarray(positions, dtype=np.int64)
        positions = np.where(positions < 0, self.n + positions, positions)
        return self.values[np.searchsorted(np.cumsum(self.counts), positions, side="right")]

    def quantiles(self, q, method="linear"):
        """np.quantile(sample, q, method=method) from the counts (q scalar or array)."""
        return quantiles(self, q, method)

    def sum(self):
        return float(np.sum(self.values.astype(np.float64) * self.counts))


class PairCounts:
    """Sorted distinct (first, second) pairs of float64 values and their counts, merged from
    pieces (`add`); memory grows with the distinct pairs, not with the rows. Pieces wait in a
    list and are merged when they outnumber the merged pairs (each row is sorted O(log) times)."""

    def __init__(self):
        self._merged = (np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64))
        self._pending, self._pending_rows = [], 0

    def add(self, first, second, counts=None):
        first, second = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
        counts = np.ones(len(first), dtype=np.int64) if counts is None else np.asarray(counts, dtype=np.int64)
        self._pending.append(_distinct_pairs(first, second, counts))
        self._pending_rows += len(first)
        if self._pending_rows > max(len(self._merged[0]), 1 << 20):
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


def quantiles(counts, q, method="linear"):
    """np.quantile of the sample held by `counts` (ValueCounts), exactly."""
    n = counts.n
    if n == 0:
        raise ValueError("quantiles of an empty sample")
    q = np.asanyarray(q, dtype=np.float64)
    scheme = _fb._QuantileMethods[method]
    virtual = np.asanyarray(scheme["get_virtual_index"](n, q))
    if np.issubdtype(virtual.dtype, np.integer):
        return counts.at(virtual)
    previous, following = _fb._get_indexes(counts.values, virtual, n)
    gamma = _fb._get_gamma(virtual, previous, scheme)
    return _fb._lerp(counts.at(previous), counts.at(following), gamma)
