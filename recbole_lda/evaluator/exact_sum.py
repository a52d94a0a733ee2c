"""Exact sums of float64 values, mergeable across partitions (numpy only).

A mean computed in float64 depends on the order of the additions, so a sum over
partitions would differ from a sum over all rows in the last bits. Here a sum is kept
exactly as integers: every finite value is m * 2^(e - 53) with an integer mantissa
m < 2^53 (`np.frexp`), split into a high and a low part (< 2^26 and < 2^27) and added
per exponent. Each part is added by `np.bincount` in float64, exact because every
partial sum stays an integer under 2^53 (at most `_CHUNK` rows per call); the chunks add
up in int64. The state is an int64 array, so states of partitions merge by addition, and
`mean` turns a state into the correctly rounded float of the exact mean (Fraction).
Negative values are kept in a second state and subtracted exactly.
"""

from fractions import Fraction

import numpy as np

_OFFSET = 1100  # exponents of frexp run from -1073 (subnormals) to 1024
_NEXP = 2200
_CHUNK = 1 << 25  # 2^25 rows of parts < 2^27: partial sums < 2^52, exact in float64
_LOW = 27


def empty_state(ngroups=1):
    """The state of an empty sum per group: int64 (ngroups, 2 signs, 2 parts, exponents)."""
    return np.zeros((ngroups, 2, 2, _NEXP), dtype=np.int64)


def sum_state(values, groups=None, ngroups=1):
    """Exact sums of `values` (float64, finite) per group (`groups`: ids 0..ngroups-1 per row)."""
    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).all():
        raise ValueError("exact sums need finite values (no NaN or infinity)")
    state = empty_state(ngroups)
    for c0 in range(0, len(values), _CHUNK):
        chunk = values[c0:c0 + _CHUNK]
        group = np.zeros(len(chunk), dtype=np.int64) if groups is None else np.asarray(groups[c0:c0 + _CHUNK], np.int64)
        fraction, exponent = np.frexp(np.abs(chunk))
        mantissa = np.ldexp(fraction, 53).astype(np.int64)  # exact: fraction has at most 53 bits
        sign = (chunk < 0).astype(np.int64)
        index = (group * 2 + sign) * 2 * _NEXP + exponent + _OFFSET
        size = ngroups * 2 * 2 * _NEXP
        high = np.bincount(index, weights=mantissa >> _LOW, minlength=size)
        low = np.bincount(index + _NEXP, weights=mantissa & ((1 << _LOW) - 1), minlength=size)
        state += (high + low).astype(np.int64).reshape(state.shape)
    return state


def exact_value(state):
    """The exact sum of one group's state (its [sign, part, exponent] array) as a Fraction."""
    total = Fraction(0)
    for sign, factor in ((0, 1), (1, -1)):
        for part, shift in ((0, _LOW), (1, 0)):
            counts = state[sign, part]
            for e in np.flatnonzero(counts):
                total += factor * Fraction(int(counts[e]) << shift) * Fraction(2) ** int(e - _OFFSET - 53)
    return total


def mean(state, count):
    """The correctly rounded float64 of the exact mean (None when count is 0)."""
    return float(exact_value(state) / int(count)) if count else None


def exact_mean(values):
    """Single-process: the correctly rounded mean of float64 `values` (None when empty)."""
    values = np.asarray(values, dtype=np.float64)
    return mean(sum_state(values)[0], len(values))
