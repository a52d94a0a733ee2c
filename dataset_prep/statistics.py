"""Exact statistics of values streamed in pieces: merged value counts and numpy's quantiles
from them (value counts of pairs: recbole_lda/utils/pair_counts.py).

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
