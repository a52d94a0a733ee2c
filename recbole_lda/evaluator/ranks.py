"""Ranks and runs of values, the sorting half of exact pair counting
(recbole_lda/evaluator/pair_counts.py): unsigned sort keys of any numeric dtype, label codes
without a sort where the values allow, stable argsorts with dense ranks, runs of equal values,
and sums per segment. numpy only."""

import numpy as np


def as_array(x, name):
    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"{name} must be a 1-d array, got shape {x.shape}")
    return x


def _sortable(x):
    """Unsigned keys (uint32 for 32-bit floats, else uint64) with the order of `x`; -0.0 == 0.0."""
    if x.dtype == np.uint64 or x.dtype == np.uint32:
        return x
    if x.dtype == bool or np.issubdtype(x.dtype, np.integer):
        return x.astype(np.int64).view(np.uint64) ^ np.uint64(1 << 63)
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"cannot rank values of dtype {x.dtype}")
    if np.isnan(x).any():
        raise ValueError("NaN among the values to rank")
    small = x.dtype.itemsize <= 4
    x = x.astype(np.float32 if small else np.float64) + (np.float32(0) if small else 0.0)
    u = x.view(np.uint32 if small else np.uint64)
    sign = u.dtype.type(1 << (u.dtype.itemsize * 8 - 1))
    return np.where(u & sign, ~u, u | sign)


def label_codes(x, bits=30):
    """Integer codes < 2^bits in the order of `x` (equal values, equal codes) without sorting, or None.

    Integers in a range under 2^bits shift to 0. Floats keep their mantissa under a dense
    rank of the sign-and-exponent prefix of their sortable key: 23 + 7 bits for 32-bit
    floats (and float64 arrays of float32 numbers) when at most 128 prefixes occur; with
    bits > 30, 52 + (bits - 52) for float64.
    """
    if x.dtype.kind not in "biuf":
        return None
    if x.dtype.kind in "biu":
        if len(x) and int(x.max()) - int(x.min()) < 1 << bits:
            return np.subtract(x, int(x.min()), dtype=np.int64).astype(np.uint32 if bits <= 32 else np.uint64)
        return None
    if x.dtype.itemsize > 4:
        with np.errstate(over="ignore"):
            narrow = x.astype(np.float32)
        if not np.array_equal(narrow, x):
            return _float64_codes(x, bits) if bits > 52 else None
        x = narrow
    key = _sortable(x.astype(np.float32, copy=False))
    prefix = key >> np.uint32(23)
    rank = np.cumsum(np.bincount(prefix, minlength=512) > 0) - 1
    if rank[-1] >= 128:
        return None
    return (rank.astype(np.uint32)[prefix] << np.uint32(23)) | (key & np.uint32((1 << 23) - 1))


def _float64_codes(x, bits):
    key = _sortable(x)
    prefix = (key >> np.uint64(52)).astype(np.int64)
    rank = np.cumsum(np.bincount(prefix, minlength=4096) > 0) - 1
    if rank[-1] >= 1 << (bits - 52):
        return None
    key &= np.uint64((1 << 52) - 1)
    key |= rank.astype(np.uint64)[prefix] << np.uint64(52)
    return key


def index_dtype(n):
    return np.int32 if n < 1 << 31 else np.int64


def argsort_dense(x):
    """Stable argsort of `x` (equal values keep input order) and the dense rank of each sorted value.

    One `np.sort` of uint64 words (key << index bits | index); keys too wide for the word
    are cut, and the few runs whose cut keys collide are re-sorted on the full key.
    """
    n = len(x)
    if x.dtype.kind not in "biuf":
        _, inverse = np.unique(x, return_inverse=True)
        x = inverse.ravel()
    if x.dtype.kind in "biu" and n and int(x.max()) - int(x.min()) < 1 << 16:
        return _argsort_small(x)
    key = _sortable(x)
    ib = max(int(n - 1).bit_length(), 1)
    shift = 0
    if n and key.dtype.itemsize * 8 + ib > 64:
        key = key - key.min()
        shift = max(int(key.max()).bit_length() - (64 - ib), 0)
    packed = key.astype(np.uint64)  # (few large temporaries: each costs page faults)
    packed >>= np.uint64(shift)
    packed <<= np.uint64(ib)
    packed |= np.arange(n, dtype=np.uint64)
    packed.sort()
    new = np.bitwise_xor(packed[1:], packed[:-1]) >= np.uint64(1 << ib)  # the cut keys differ
    packed &= np.uint64((1 << ib) - 1)
    order = packed.view(np.int64).astype(np.intp, copy=False)
    same = np.flatnonzero(~new) if shift else ()
    if len(same) > n // 8:  # many equal cut keys (tied labels): compare the full keys in one pass
        full = key[order]
        if np.array_equal(new, full[1:] != full[:-1]):
            same = ()
    if len(same) and (key[order[same]] != key[order[same + 1]]).any():
        run = np.concatenate(([0], np.cumsum(new, dtype=np.int64)))  # run of equal cut keys
        bad = np.zeros(int(run[-1]) + 1, dtype=bool)
        bad[run[same][key[order[same]] != key[order[same + 1]]]] = True  # runs of unequal keys
        pos = np.flatnonzero(bad[run])
        sub = order[pos]
        order[pos] = sub[np.lexsort((sub, key[sub], run[pos]))]
        same = same[bad[run[same]]]
        new[same] = key[order[same]] != key[order[same + 1]]
    ranks = np.zeros(n, dtype=index_dtype(n))
    np.cumsum(new, dtype=ranks.dtype, out=ranks[1:])
    return order, ranks


def _argsort_small(x):
    """`argsort_dense` of integers in a range under 2^16: numpy's stable sort of uint16 is a radix sort."""
    shifted = np.subtract(x, int(x.min()), dtype=np.int64).astype(np.uint16)
    order = np.argsort(shifted, kind="stable")
    ranks = np.zeros(len(x), dtype=index_dtype(len(x)))
    sorted_values = shifted[order]
    np.cumsum(sorted_values[1:] != sorted_values[:-1], dtype=ranks.dtype, out=ranks[1:])
    return order, ranks


def dense_ranks(x):
    """Dense ids 0..k-1 of `x` in input order (integers in a small range without sorting)."""
    if x.dtype.kind in "iub" and len(x):
        lo, hi = int(x.min()), int(x.max())
        if hi - lo <= 4 * len(x):
            shifted = np.subtract(x, lo, dtype=np.int64)
            table = np.cumsum(np.bincount(shifted) > 0, dtype=index_dtype(len(x))) - 1
            return table[shifted]
    order, ranks = argsort_dense(x)
    ids = np.empty(len(x), dtype=ranks.dtype)
    ids[order] = ranks
    return ids


def pair_total(c):
    c = np.asarray(c, dtype=np.int64)
    return c * (c - 1) // 2


def tie_runs(eq):
    """Start and length of every run of >= 2 equal neighbours, from eq[i]: element i+1 equals i."""
    k = np.count_nonzero(eq)
    if k == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if k <= len(eq) // 2:  # few ties: work on the equal links only
        e = np.flatnonzero(eq)
        first = np.flatnonzero(np.concatenate(([True], e[1:] != e[:-1] + 1)))
        return e[first], np.diff(np.append(first, k)) + 1
    starts = np.flatnonzero(np.concatenate(([True], ~eq)))
    lengths = np.diff(np.append(starts, len(eq) + 1))
    return starts[lengths >= 2], lengths[lengths >= 2]


def ranges(starts, lengths):
    """Concatenated index ranges [start, start + length)."""
    total = int(lengths.sum())
    return np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths) + np.arange(total)


def sum_by(values, ids, n):
    """Exact int64 sums of `values` per id; `ids` sorted ascending."""
    out = np.zeros(n, dtype=np.int64)
    if len(ids):
        first = np.flatnonzero(np.concatenate(([True], ids[1:] != ids[:-1])))
        out[ids[first]] = np.add.reduceat(np.asarray(values, dtype=np.int64), first)
    return out
