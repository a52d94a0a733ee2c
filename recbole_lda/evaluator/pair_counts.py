"""Exact pair counting for the XAUC conventions (recbole_lda.evaluator.xauc): dense ranks, tie runs
and inversion counts per segment (users, blocks, buckets) by a vectorised bottom-up merge
sort, O(n log n), numpy only. The algorithm is described in recbole_lda/evaluator/xauc.py's
docstring; `Prepared` holds the sorts that every convention of one evaluation shares."""

import sys

import numpy as np

_LITTLE = sys.byteorder == "little"
_ALONE = 1 << 16  # segments larger than this are merged on their own, unpadded


# ----------------------------------------------------------------------------- sorting

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


def _label_codes(x, bits=30):
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


def _index_dtype(n):
    return np.int32 if n < 1 << 31 else np.int64


def _argsort_dense(x):
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
    ranks = np.zeros(n, dtype=_index_dtype(n))
    np.cumsum(new, dtype=ranks.dtype, out=ranks[1:])
    return order, ranks


def _argsort_small(x):
    """`_argsort_dense` of integers in a range under 2^16: numpy's stable sort of uint16 is a radix sort."""
    shifted = np.subtract(x, int(x.min()), dtype=np.int64).astype(np.uint16)
    order = np.argsort(shifted, kind="stable")
    ranks = np.zeros(len(x), dtype=_index_dtype(len(x)))
    sorted_values = shifted[order]
    np.cumsum(sorted_values[1:] != sorted_values[:-1], dtype=ranks.dtype, out=ranks[1:])
    return order, ranks


def dense_ranks(x):
    """Dense ids 0..k-1 of `x` in input order (integers in a small range without sorting)."""
    if x.dtype.kind in "iub" and len(x):
        lo, hi = int(x.min()), int(x.max())
        if hi - lo <= 4 * len(x):
            shifted = np.subtract(x, lo, dtype=np.int64)
            table = np.cumsum(np.bincount(shifted) > 0, dtype=_index_dtype(len(x))) - 1
            return table[shifted]
    order, ranks = _argsort_dense(x)
    ids = np.empty(len(x), dtype=ranks.dtype)
    ids[order] = ranks
    return ids


def _pairs(c):
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


def _sum_by(values, ids, n):
    """Exact int64 sums of `values` per id; `ids` sorted ascending."""
    out = np.zeros(n, dtype=np.int64)
    if len(ids):
        first = np.flatnonzero(np.concatenate(([True], ids[1:] != ids[:-1])))
        out[ids[first]] = np.add.reduceat(np.asarray(values, dtype=np.int64), first)
    return out


# ------------------------------------------------------------------ inversion counting

def _pattern_sum(n):
    """sum_{j < n} j * popcount(j), exactly (what a merge sort of sorted data would accumulate)."""
    total, base, ones = 0, 0, 0
    for b in range(int(n).bit_length() - 1, -1, -1):
        if n >> b & 1:
            size = 1 << b
            total += (base * ones * size + base * b * size // 2 + ones * size * (size - 1) // 2
                      + size * (size - 1) * (b + 1) // 4)
            base, ones = base + size, ones + 1
    return total


def _merge_count(seq, sizes, vbits):
    """(inversions, tied pairs) inside each contiguous segment of `seq` (all sizes >= 2).

    Every segment is padded to a power of two (the largest first, to a multiple of the
    next) and laid out side by side, so that one bottom-up merge sort sorts them all at
    once, level by level. Each merge records, per position, whether the value came from the
    right run (`_merge_levels`); the inversions follow from those records
    (`_inversions_from_sides`), the tied pairs from runs of equal values once sorted
    (`_tied_pairs`)."""
    layout = _Layout(sizes)
    dtype = np.uint32 if vbits + 2 <= 32 else np.uint64
    sentinel = (1 << vbits) << 1  # padding: above every value, never tied with one
    laid = _lay_out(seq, sizes, layout, dtype, sentinel)
    right_counts = _merge_levels(laid, layout, dtype)
    inv_laid = _inversions_from_sides(right_counts, layout)
    ties_laid = _tied_pairs(laid, layout, sentinel, dtype)
    inv, ties = np.empty_like(inv_laid), np.empty_like(ties_laid)
    inv[layout.by_size], ties[layout.by_size] = inv_laid, ties_laid
    return inv, ties


class _Layout:
    """Where each segment lies in the padded array, largest segment first."""

    def __init__(self, sizes):
        log_size = np.frexp(sizes - 1)[1].astype(np.int64)  # bit length of size - 1: sizes fit in 2^log_size
        self.by_size = np.argsort(-log_size, kind="stable")
        self.log_size, self.sizes = log_size[self.by_size], sizes[self.by_size]
        lens = np.int64(1) << self.log_size
        lens[0] = -(-self.sizes[0] // lens[1]) * lens[1] if len(lens) > 1 else self.sizes[0]
        self.lens = lens
        self.off = np.concatenate(([0], np.cumsum(lens)[:-1]))  # start of each padded segment
        self.ends = self.off + lens
        self.total = int(self.off[-1] + lens[-1])


def _lay_out(seq, sizes, layout, dtype, sentinel):
    """The values shifted left by one bit (the lowest bit will tag a run's side), each segment
    at its place in the layout, padding = sentinel."""
    values = seq.astype(dtype)
    values <<= dtype(1)
    if len(sizes) == 1:
        return values
    laid = np.full(layout.total, sentinel, dtype=dtype)
    off_in = np.empty(len(sizes), dtype=np.int64)
    off_in[layout.by_size] = layout.off
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    dest = np.repeat((off_in - starts).astype(_index_dtype(layout.total)), sizes)
    dest += np.arange(len(seq), dtype=dest.dtype)
    laid[dest] = values
    return laid


def _merge_levels(laid, layout, dtype):
    """Sort every segment of `laid` in place, bottom-up; return, per position, how many times
    a value that came from a right run landed there (uint8)."""
    one, step = dtype(1), np.dtype(dtype).itemsize
    counts, scratch = np.zeros(layout.total, dtype=np.uint8), np.empty(layout.total, dtype=np.uint8)

    def land(view, start, stop):  # add the side bit (lowest) of each position to counts
        bits = scratch[start:stop]
        np.bitwise_and(view.view(np.uint8)[::step] if _LITTLE else view, 1, out=bits, casting="unsafe")
        counts[start:stop] += bits

    for level in range(int(layout.log_size[0])):
        width = 1 << level  # merge runs of `width` into runs of 2 * width
        end = int(layout.ends[np.count_nonzero(layout.log_size > level) - 1])
        full = end // (2 * width) * (2 * width)
        if level == 0:
            _merge_pairs(laid[:full], counts[:full], one)
            continue
        rows = laid[:full].reshape(-1, 2 * width)
        if width < 64:  # tag the left run 0 and the right run 1 in the lowest bit
            rows &= ~one
            rows |= np.repeat(np.array([0, 1], dtype=dtype), width)
        else:
            rows[:, :width] &= ~one
            rows[:, width:] |= one
        if level == 1:
            _merge_two_pairs(rows)
        else:
            rows.sort(axis=1, kind="quicksort" if level <= 6 else "stable")
        land(laid[:full], 0, full)
        if end - full > width:  # the last, partial merge of the first segment
            tail = laid[full:end]
            tail[:width] &= ~one
            tail[width:] |= one
            tail.sort(kind="stable")
            land(tail, full, end)
    return counts


def _merge_pairs(values, counts, one):
    """Level 0: sort each pair (left, right) and record which side landed where."""
    left, right = values[0::2], values[1::2]
    right |= one
    swap = right < left
    low = np.minimum(left, right)
    np.maximum(left, right, out=right)
    left[...] = low
    counts[0::2] = swap
    counts[1::2] = ~swap


def _merge_two_pairs(rows):
    """Level 1: merge two sorted pairs per row (columns 0-1 and 2-3) by a comparator network."""
    lo0, hi0 = np.minimum(rows[:, 0], rows[:, 2]), np.maximum(rows[:, 0], rows[:, 2])
    lo1, hi1 = np.minimum(rows[:, 1], rows[:, 3]), np.maximum(rows[:, 1], rows[:, 3])
    rows[:, 0], rows[:, 3] = lo0, hi1
    rows[:, 1], rows[:, 2] = np.minimum(hi0, lo1), np.maximum(hi0, lo1)


def _inversions_from_sides(counts, layout):
    """Inversions per laid segment = (what sorted data would accumulate) - (what this data
    accumulated), where a segment accumulates sum(position within it * counts)."""
    off, chunk = layout.off, 1 << 20
    weighted = np.zeros(len(off), dtype=np.int64)
    for c0 in range(0, layout.total, chunk):  # sum of position * counts per segment, in chunks
        c1 = min(c0 + chunk, layout.total)
        first = int(np.searchsorted(off, c0, side="right")) - 1
        cuts = np.concatenate(([c0], off[(off > c0) & (off < c1)])) - c0
        sums = np.add.reduceat(np.arange(c0, c1, dtype=np.int64) * counts[c0:c1], cuts)
        weighted[first:first + len(sums)] += sums
    landed = np.add.reduceat(counts, off, dtype=np.int64)
    lens = layout.lens
    pattern = lens * (lens - 1) * (layout.log_size + 1) // 4  # _pattern_sum of a power of two
    pattern[0] = _pattern_sum(int(lens[0]))
    return pattern - (weighted - off * landed)


def _tied_pairs(laid, layout, sentinel, dtype):
    """Tied pairs per laid segment, from runs of equal values of the sorted segments
    (padding is last and never counted)."""
    one = dtype(1)
    eq = np.bitwise_xor(laid[1:], laid[:-1]) <= one  # equal but for the side bit
    eq[layout.off[1:] - 1] = False
    run_start, run_len = tie_runs(eq)
    real = (laid[run_start] >> one) != (sentinel >> 1)
    segment = np.searchsorted(layout.off, run_start[real], side="right") - 1
    return _sum_by(_pairs(run_len[real]), segment, len(layout.off))


def _inversions(seq, sizes, vbits):
    """Per contiguous segment of `seq`: pairs i < j with seq[i] > seq[j], and pairs with seq[i] == seq[j]."""
    sizes = np.asarray(sizes, dtype=np.int64)
    inv, ties = np.zeros(len(sizes), dtype=np.int64), np.zeros(len(sizes), dtype=np.int64)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
    for s in np.flatnonzero(sizes > _ALONE):
        inv[s], ties[s] = (c[0] for c in _merge_count(seq[starts[s]:starts[s] + sizes[s]], sizes[s:s + 1], vbits))
    small = (sizes >= 2) & (sizes <= _ALONE)
    if small.any():
        sub = seq if small.all() else seq[np.repeat(small, sizes)]
        inv[small], ties[small] = _merge_count(sub, sizes[small], vbits)
    return inv, ties


def pair_counts(seq, sizes, vbits, tie_seq, tie_sizes, tie_segment):
    """Pair counts per segment of rows laid out by (segment, prediction, input order).

    `seq`: label codes (integers in the labels' order) in that layout; `tie_seq`,
    `tie_sizes`, `tie_segment`: the label codes of the runs of equal predictions (>= 2 rows)
    inside segments, in layout order, each run's size and segment. Returns int64 arrays T, Ty, Tp, Typ, D (strictly
    discordant) and E (equal predictions, the earlier row with the larger label).
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    nseg = len(sizes)
    inv, ty = _inversions(seq, sizes, vbits)
    e_run, typ_run = _inversions(tie_seq, tie_sizes, vbits)
    e = _sum_by(e_run, tie_segment, nseg)
    return {"T": _pairs(sizes), "Ty": ty, "Tp": _sum_by(_pairs(tie_sizes), tie_segment, nseg),
            "Typ": _sum_by(typ_run, tie_segment, nseg), "D": inv - e, "E": e}


class Prepared:
    """What every convention shares: label codes, and the rows in (prediction, input order)."""

    def __init__(self, labels, preds, families=1):
        y, p = np.asarray(labels), np.asarray(preds)
        if y.ndim != 1 or y.shape != p.shape:
            raise ValueError(f"labels and preds must be 1-d arrays of one shape, got {y.shape} and {p.shape}")
        self.y, self.p, self.n = y, p, len(y)
        self.nan = any(x.dtype.kind == "f" and np.isnan(x).any() for x in (y, p))
        if self.nan:  # NaN in, NaN out (as RecBole's MAE): every figure is undefined
            return
        # label codes without a sort: 30 bits for float32 or integer labels; for one family of
        # counts, float64 codes of up to 62 bits (merging 64-bit words costs less than a sort)
        self.yr = _label_codes(y, 62 if families == 1 else 30) if self.n else None
        if self.yr is None:  # dense ranks
            order_y, rank_y = _argsort_dense(y)
            self.yr = np.empty(self.n, dtype=rank_y.dtype)
            self.yr[order_y] = rank_y
        self.vbits = max(int(self.yr.max(initial=0)).bit_length(), 1)
        self.order, self.pr_sorted = _argsort_dense(p)
        self.seq = self.yr[self.order]  # label codes in (prediction, input order)

    def counts(self, segment=None, nseg=None):
        """Pair counts per segment (`segment`: dense id per row), or for all rows as one segment."""
        if segment is None:
            start, length = tie_runs(self.pr_sorted[1:] == self.pr_sorted[:-1])
            return pair_counts(self.seq, [self.n], self.vbits, self.seq[ranges(start, length)], length,
                           np.zeros(len(length), dtype=np.int64))
        if nseg <= 1 << 16:  # numpy's stable sort of 8- and 16-bit integers is a radix sort
            seg_sorted = segment.astype(np.uint8 if nseg <= 1 << 8 else np.uint16)[self.order]
            pos = np.argsort(seg_sorted, kind="stable")
        else:
            pos = self._packed_sort(segment[self.order], nseg)
        sizes = np.bincount(segment, minlength=nseg)
        seq, pr = self.seq[pos], self.pr_sorted[pos]
        ends = np.cumsum(sizes)
        eq = pr[1:] == pr[:-1]  # runs of equal predictions inside segments
        eq[ends[(ends > 0) & (ends < self.n)] - 1] = False
        start, length = tie_runs(eq)
        return pair_counts(seq, sizes, self.vbits, seq[ranges(start, length)], length,
                       np.searchsorted(ends, start, side="right"))

    def _packed_sort(self, seg_sorted, nseg):
        ib = max(int(self.n - 1).bit_length(), 1)
        if int(nseg - 1).bit_length() + ib > 64:
            return np.argsort(seg_sorted, kind="stable")
        packed = (seg_sorted.astype(np.uint64) << np.uint64(ib)) | np.arange(self.n, dtype=np.uint64)
        packed.sort()
        return (packed & np.uint64((1 << ib) - 1)).astype(np.intp)
