"""Exact pair counting for the XAUC conventions (recbole_lda.evaluator.xauc): inversion counts
per segment (users, blocks, buckets) by a vectorised bottom-up merge sort, O(n log n), numpy
only, on the label codes, ranks and tie runs of recbole_lda/evaluator/ranks.py. The
algorithm is described in recbole_lda/evaluator/xauc.py's docstring; `Prepared` holds the
sorts that every convention of one evaluation shares."""

import sys

import numpy as np

from recbole_lda.evaluator.ranks import argsort_dense, index_dtype, label_codes, pair_total, ranges, sum_by, tie_runs

_LITTLE = sys.byteorder == "little"
_ALONE = 1 << 16  # segments larger than this are merged on their own, unpadded


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
    dest = np.repeat((off_in - starts).astype(index_dtype(layout.total)), sizes)
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
    return sum_by(pair_total(run_len[real]), segment, len(layout.off))


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
    e = sum_by(e_run, tie_segment, nseg)
    return {"T": pair_total(sizes), "Ty": ty, "Tp": sum_by(pair_total(tie_sizes), tie_segment, nseg),
            "Typ": sum_by(typ_run, tie_segment, nseg), "D": inv - e, "E": e}


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
        self.yr = label_codes(y, 62 if families == 1 else 30) if self.n else None
        if self.yr is None:  # dense ranks
            order_y, rank_y = argsort_dense(y)
            self.yr = np.empty(self.n, dtype=rank_y.dtype)
            self.yr[order_y] = rank_y
        self.vbits = max(int(self.yr.max(initial=0)).bit_length(), 1)
        self.order, self.pr_sorted = argsort_dense(p)
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
