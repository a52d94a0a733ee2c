"""XAUC under every published convention, exact, in O(n log n), numpy only.

Every convention is a ratio of integer pair counts. With T = n(n-1)/2 pairs and, over
unordered pairs {i, j}:

    C    pairs ordered strictly the same way by label and by prediction (concordant)
    D    pairs ordered strictly opposite ways (discordant)
    Ty   pairs with equal labels;  Tp   pairs with equal predictions;  Typ   both equal
    E    pairs with equal predictions whose earlier row (input order) has the larger label

(so C + D = T - Ty - Tp + Typ), the conventions are:

    xauc        (C + (Tp - Typ)/2) / (T - Ty)   ours: pairs with unequal labels, prediction
                                                ties 1/2 (Zhan et al., KDD 2022)
    xauc_dadf   C / T                           liuzhao09/DADF
    xauc_cwm    (C + Ty + E) / T, 1 if T = 0    hyz20/CWM
    xauc_blocks ours inside consecutive blocks of `block_size` rows (input order), the
                counts pooled over blocks       rw404/HEGM
    xgauc       ours per user, pooled: each user weighted by its pairs with unequal labels
    xgauc_cwm   xauc_cwm per user, averaged with weights = the user's rows, over the users
                whose labels sum to more than 0                              hyz20/CWM

Reference code, read to confirm each convention:

* DADF, `utils.py`, `eval_xauc` (version with the docstring "strict order agreement"):
  stable argsort by descending prediction, `InversePairsCalc` (merge sort; pops while
  `before <= after`, so it counts strictly decreasing label pairs), minus the same count
  inside every block of equal predictions, divided by n(n-1)//2; NaN when n < 2. Another
  stored version of that `utils.py` (the one with `eval_wxauc`) skips the subtraction, so
  equal predictions count by input order there: (C + E) / T, not reported here.
  `eval_by_duration_bucket`: `np.digitize(duration, [6, 10, 18, 32, 120] s)` (left-closed
  buckets [a, b)), names 0-6s ... 120s+, MAE in seconds and `eval_xauc` per bucket, and
  NaN for both when a bucket has fewer than 10 rows.
* CWM, `src/utils/evaluate.py`, `xauc_score`: Python's `sorted(..., key=prediction,
  reverse=True)`, which keeps input order among equal predictions, then its own
  `InversePairsCalc`, which pops while `before < after` and so counts pairs whose earlier
  label is >= the later one: equal labels always count 1, equal predictions count 1 when
  the earlier row (input order) has the label >= the later one. Divided by n(n-1)/2; 1
  when n < 2. `cal_reg_metric` (XGAUC): `groupby('user_id')` (rows keep input order),
  `_cal_one_usr_xauc` = rows * xauc_score when the user's labels sum > 0, else 0;
  `_cal_one_usr_weight2` = rows under the same condition; XGAUC = sum / sum.
* HEGM, `hegm/metrics.py`, `batch_roc_auc_consumptions`: pairs i < j with unequal
  targets; correct when the prediction difference is non-zero with the same sign, tie
  (1/2) when the predictions are equal; `evaluate.py` calls it on `range(0, n, 4096)`
  slices of the test file and pools: sum of (correct + ties/2) over sum of valid pairs
  (0.0 when there are none; here NaN).

What cannot be matched exactly: the references compare float32 values (DADF and HEGM
normalise labels and durations to float32 in [0, 1]; RecBole's scores are float32 too),
so two values that differ in float64 may tie there; pass the same dtype to get the same
ties. DADF's bucket thresholds are float64 `edge_ms / play_duration_max` against float32
normalised durations, so a duration exactly on an edge may fall either side there; here
edges are exact.

Algorithm: labels become order-preserving integer codes without sorting (30 bits for
float32 and integer labels; 62 for float64 when one family of counts is asked for),
else by their dense rank (one sort); rows are put in (prediction, input order)
by one `np.sort` of packed uint64 words (key << index bits | index), and in (segment,
prediction, input order) by a radix sort of the segment ids. The label codes in that
order are counted by a bottom-up merge sort whose merges are row sorts of a 2-D view:
each level tags the left and right runs in the lowest key bit, and the inversions
across a merge, sum over right-run rows r of (left-run rows that land after r), equal a
closed form of the positions minus the sum of the positions where right-run rows land;
so only the landing side per position is accumulated. Ties come from the final sorted
runs. Segments (users, blocks, buckets) are padded to powers of two and laid out by
decreasing size, so that no merge crosses a segment and small segments stop early.
"""

import sys

import numpy as np

DADF_EDGES = (6.0, 10.0, 18.0, 32.0, 120.0)
"""DADF's duration bucket edges in seconds: [0, 6), [6, 10), [10, 18), [18, 32), [32, 120), [120, inf)."""

HEGM_BLOCK_SIZE = 4096
DADF_MIN_ROWS = 10
_LITTLE = sys.byteorder == "little"
_ALONE = 1 << 16  # segments larger than this are merged on their own, unpadded
_BLOCK_ROWS = 1 << 16  # blocks up to this size are sorted as the rows of a 2-D view


# ----------------------------------------------------------------------------- sorting

def _array(x, name):
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


def _dense(x):
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


def _tie_runs(eq):
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


def _ranges(starts, lengths):
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
    """(inversions, tied pairs) inside each contiguous segment of `seq` (all sizes >= 2)."""
    m = np.frexp(sizes - 1)[1].astype(np.int64)  # bit length of size - 1: sizes fit in 2^m
    by_size = np.argsort(-m, kind="stable")
    m_laid, s_laid = m[by_size], sizes[by_size]
    lens = np.int64(1) << m_laid
    lens[0] = -(-s_laid[0] // lens[1]) * lens[1] if len(lens) > 1 else s_laid[0]
    off = np.concatenate(([0], np.cumsum(lens)[:-1]))
    ends, total = off + lens, int(off[-1] + lens[-1])

    dtype = np.uint32 if vbits + 2 <= 32 else np.uint64
    one, step = dtype(1), np.dtype(dtype).itemsize
    sentinel = (1 << vbits) << 1
    values = seq.astype(dtype)
    values <<= one
    if len(sizes) == 1:
        A = values
    else:
        A = np.full(total, sentinel, dtype=dtype)
        off_in = np.empty(len(sizes), dtype=np.int64)
        off_in[by_size] = off
        starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        dest = np.repeat((off_in - starts).astype(_index_dtype(total)), sizes)
        dest += np.arange(len(seq), dtype=dest.dtype)
        A[dest] = values
        del dest
        del values
    acc, scratch = np.zeros(total, dtype=np.uint8), np.empty(total, dtype=np.uint8)

    def land(view, start, stop):  # add the side bit (lowest) of each position to acc
        bits = scratch[start:stop]
        np.bitwise_and(view.view(np.uint8)[::step] if _LITTLE else view, 1, out=bits, casting="unsafe")
        acc[start:stop] += bits

    for level in range(int(m_laid[0])):
        w = 1 << level
        end = int(ends[np.count_nonzero(m_laid > level) - 1])
        full = end // (2 * w) * (2 * w)
        if level == 0:
            a, b = A[0:full:2], A[1:full:2]
            b |= one
            swap = b < a
            lo = np.minimum(a, b)
            np.maximum(a, b, out=b)
            a[...] = lo
            del lo
            acc[0:full:2] = swap
            acc[1:full:2] = ~swap
            continue
        rows = A[:full].reshape(-1, 2 * w)
        if w < 64:  # tag the left run 0 and the right run 1 in the lowest bit
            rows &= ~one
            rows |= np.repeat(np.array([0, 1], dtype=dtype), w)
        else:
            rows[:, :w] &= ~one
            rows[:, w:] |= one
        if level == 1:  # merge two sorted pairs by a comparator network
            lo0, hi0 = np.minimum(rows[:, 0], rows[:, 2]), np.maximum(rows[:, 0], rows[:, 2])
            lo1, hi1 = np.minimum(rows[:, 1], rows[:, 3]), np.maximum(rows[:, 1], rows[:, 3])
            rows[:, 0], rows[:, 3] = lo0, hi1
            rows[:, 1], rows[:, 2] = np.minimum(hi0, lo1), np.maximum(hi0, lo1)
        else:
            rows.sort(axis=1, kind="quicksort" if level <= 6 else "stable")
        land(A[:full], 0, full)
        if end - full > w:  # the last, partial merge of the first segment
            tail = A[full:end]
            tail[:w] &= ~one
            tail[w:] |= one
            tail.sort(kind="stable")
            land(tail, full, end)

    # inversions = (what sorted data would accumulate) - (what this data accumulated)
    k_acc = np.zeros(len(off), dtype=np.int64)
    for c0 in range(0, total, 1 << 20):  # sum of position * acc per segment, in chunks
        c1 = min(c0 + (1 << 20), total)
        first = int(np.searchsorted(off, c0, side="right")) - 1
        cuts = np.concatenate(([c0], off[(off > c0) & (off < c1)])) - c0
        sums = np.add.reduceat(np.arange(c0, c1, dtype=np.int64) * acc[c0:c1], cuts)
        k_acc[first:first + len(sums)] += sums
    n_acc = np.add.reduceat(acc, off, dtype=np.int64)
    del acc, scratch
    pattern = lens * (lens - 1) * (m_laid + 1) // 4  # _pattern_sum of a power of two 2^m
    pattern[0] = _pattern_sum(int(lens[0]))
    inv_laid = pattern - (k_acc - off * n_acc)

    # every segment is now sorted, padding last: tied pairs from runs of equal values
    eq = np.bitwise_xor(A[1:], A[:-1]) <= one
    eq[off[1:] - 1] = False
    run_start, run_len = _tie_runs(eq)
    real = (A[run_start] >> one) != (sentinel >> 1)
    ties_laid = _sum_by(_pairs(run_len[real]), np.searchsorted(off, run_start[real], side="right") - 1, len(off))

    inv, ties = np.empty_like(inv_laid), np.empty_like(ties_laid)
    inv[by_size], ties[by_size] = inv_laid, ties_laid
    return inv, ties


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


def _counts(seq, sizes, vbits, tie_seq, tie_sizes, tie_segment):
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


class _Prepared:
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
            start, length = _tie_runs(self.pr_sorted[1:] == self.pr_sorted[:-1])
            return _counts(self.seq, [self.n], self.vbits, self.seq[_ranges(start, length)], length,
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
        start, length = _tie_runs(eq)
        return _counts(seq, sizes, self.vbits, seq[_ranges(start, length)], length,
                       np.searchsorted(ends, start, side="right"))

    def _packed_sort(self, seg_sorted, nseg):
        ib = max(int(self.n - 1).bit_length(), 1)
        if int(nseg - 1).bit_length() + ib > 64:
            return np.argsort(seg_sorted, kind="stable")
        packed = (seg_sorted.astype(np.uint64) << np.uint64(ib)) | np.arange(self.n, dtype=np.uint64)
        packed.sort()
        return (packed & np.uint64((1 << ib) - 1)).astype(np.intp)


# ----------------------------------------------------------------------- conventions

def _ratio(num, den):
    return float(num / den) if den > 0 else None


def _or_nan(x):
    return float("nan") if x is None else x


def _figures(c):
    """Per segment: 2 * ours' numerator, ours' denominator, DADF's numerator, CWM's numerator."""
    both = c["T"] - c["Ty"] - c["Tp"] + c["Typ"]  # pairs unequal in label and in prediction
    concordant = both - c["D"]
    return 2 * concordant + c["Tp"] - c["Typ"], c["T"] - c["Ty"], concordant, concordant + c["Ty"] + c["E"]


def _cwm(c):
    return np.where(c["T"] > 0, _figures(c)[3] / np.maximum(c["T"], 1), 1.0)


def _global(prep):
    if prep.nan:
        return {"xauc": None, "xauc_dadf": None, "xauc_cwm": None}
    c = prep.counts()
    num2, den, conc, _ = _figures(c)
    return {"xauc": _ratio(num2[0] / 2, den[0]), "xauc_dadf": _ratio(conc[0], c["T"][0]),
            "xauc_cwm": float(_cwm(c)[0])}


def concordance(labels, preds, groups=None):
    """Exact pair counts for XAUC per group: (C - D, pairs with unequal labels), int64 arrays.

    `groups`: (n,) group ids (e.g. users), or None for one group; groups are numbered by
    sorted id. Refuses NaN.
    """
    prep = _Prepared(labels, preds)
    if prep.nan:
        raise ValueError("NaN in labels or predictions: no pair counts")
    if prep.n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if groups is None:
        c = prep.counts()
    else:
        ids = _dense(_array(groups, "groups"))
        c = prep.counts(ids, int(ids.max()) + 1)
    both = c["T"] - c["Ty"] - c["Tp"] + c["Typ"]
    return both - 2 * c["D"], c["T"] - c["Ty"]


def xauc(labels, preds):
    """Ours: (C + (Tp - Typ)/2) / (T - Ty): pairs with unequal labels, prediction ties 1/2.

    NaN when no pair has unequal labels, or when a label or prediction is NaN.
    """
    return _or_nan(_global(_Prepared(labels, preds))["xauc"])


def xauc_dadf(labels, preds):
    """DADF: C / T, strictly concordant pairs over all n(n-1)/2 pairs; NaN when n < 2 (or NaN in)."""
    return _or_nan(_global(_Prepared(labels, preds))["xauc_dadf"])


def xauc_cwm(labels, preds):
    """CWM: (C + Ty + E) / T; 1 when n < 2 (NaN when NaN in).

    Rows are ordered by descending prediction, equal predictions in input order (a stable
    sort, as Python's `sorted(reverse=True)` is); a pair counts 1 when its earlier row
    has a label >= the later one's. So equal labels always count 1, and equal predictions
    count 1 exactly when the row that comes first in the input has the label >= the other.
    """
    return _or_nan(_global(_Prepared(labels, preds))["xauc_cwm"])


def xauc_blocks(labels, preds, block_size=HEGM_BLOCK_SIZE):
    """HEGM: ours inside consecutive blocks of `block_size` rows in input order, pooled.

    sum over blocks of (C_b + (Tp_b - Typ_b)/2) / sum over blocks of (T_b - Ty_b); the last
    block may be shorter. NaN when no block has a pair with unequal labels (HEGM: 0.0).
    """
    return _or_nan(_blocks(_Prepared(labels, preds), block_size))


def _blocks(prep, block_size):
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    n, nblocks = prep.n, -(-prep.n // block_size)
    if n == 0 or prep.nan:
        return None
    if block_size > _BLOCK_ROWS:
        c = prep.counts(np.arange(n) // block_size, nblocks)
    else:  # sort each block by (prediction rank, row) in a row of a 2-D view
        lb = max(int(block_size - 1).bit_length(), 1)
        keys = np.full(nblocks * block_size, np.iinfo(np.uint64).max, dtype=np.uint64)
        keys[:n][prep.order] = prep.pr_sorted  # prediction rank << bits | row in block
        keys[:n] <<= np.uint64(lb)
        rows = keys.reshape(nblocks, block_size)
        rows |= np.arange(block_size, dtype=np.uint64)
        rows.sort(axis=1)
        index = (keys & np.uint64((1 << lb) - 1)).view(np.int64)
        index.reshape(nblocks, block_size)[...] += (np.arange(nblocks, dtype=np.int64) * block_size)[:, None]
        seq = prep.yr[index[:n]]
        del index
        keys >>= np.uint64(lb)
        eq = keys[1:n] == keys[:n - 1]
        eq[block_size - 1::block_size] = False
        start, length = _tie_runs(eq)
        sizes = np.full(nblocks, block_size, dtype=np.int64)
        sizes[-1] = n - (nblocks - 1) * block_size
        c = _counts(seq, sizes, prep.vbits, seq[_ranges(start, length)], length, start // block_size)
    num2, den, _, _ = _figures(c)
    return _ratio(num2.sum() / 2, den.sum())


def xgauc(labels, preds, users):
    """Ours: XAUC per user, weighted by the user's pairs with unequal labels (pooled counts).

    = sum_u (C_u + (Tp_u - Typ_u)/2) / sum_u (T_u - Ty_u); users with no such pair do not
    count. NaN when no user has one (or NaN in).
    """
    return _or_nan(_users(_Prepared(labels, preds), users)[0])


def xgauc_cwm(labels, preds, users):
    """CWM: sum_u n_u xauc_cwm_u / sum_u n_u over the users whose labels sum to > 0.

    n_u is the user's number of rows; a user with one row has xauc_cwm 1. NaN when no user
    qualifies (or NaN in).
    """
    return _or_nan(_users(_Prepared(labels, preds), users)[1])


def _users(prep, users):
    users = _array(users, "users")
    if len(users) != len(prep.y):
        raise ValueError(f"users must have one entry per row, got {len(users)} for {len(prep.y)} rows")
    if prep.n == 0 or prep.nan:
        return None, None
    ids = _dense(users)
    nseg = int(ids.max()) + 1
    c = prep.counts(ids, nseg)
    num2, den, _, _ = _figures(c)
    rows = np.bincount(ids, minlength=nseg)
    keep = np.bincount(ids, weights=prep.y.astype(np.float64), minlength=nseg) > 0
    cwm = _ratio(float((rows * _cwm(c))[keep].sum()), float(rows[keep].sum()))
    return _ratio(num2.sum() / 2, den.sum()), cwm


def bucket_names(edges=DADF_EDGES):
    """Bucket names for edges (6, 10, ...): '0-6', '6-10', ..., '120+'."""
    bounds = [0, *edges]
    return [f"{a:g}-{b:g}" for a, b in zip(bounds[:-1], bounds[1:])] + [f"{bounds[-1]:g}+"]


def bucket_metrics(labels, preds, durations, edges=DADF_EDGES, min_rows=DADF_MIN_ROWS):
    """MAE and XAUC per duration bucket (DADF's `eval_by_duration_bucket`).

    Buckets are left-closed, [a, b): bucket i holds edges[i-1] <= duration < edges[i]; the
    first holds every duration below edges[0] (named from 0), the last every duration >=
    edges[-1]. Returns {name: {"rows", "mae", "xauc", "xauc_dadf"}}: mae = mean |label -
    pred| (in the labels' unit), xauc ours, xauc_dadf DADF's; None where a bucket has fewer
    than `min_rows` rows (DADF: 10), where a figure is undefined, or when NaN is in.
    """
    return _buckets(_Prepared(labels, preds), durations, edges, min_rows)


def _buckets(prep, durations, edges, min_rows):
    durations, edges = _array(durations, "durations"), np.asarray(edges, dtype=np.float64)
    if len(durations) != len(prep.y):
        raise ValueError(f"durations must have one entry per row, got {len(durations)} for {len(prep.y)} rows")
    if edges.ndim != 1 or len(edges) == 0 or np.any(np.diff(edges) <= 0):
        raise ValueError(f"bucket edges must be increasing, got {edges.tolist()}")
    if durations.dtype.kind not in "biuf" or np.isnan(durations.astype(np.float64)).any():
        raise ValueError("durations must be numbers, not NaN")
    bucket = np.searchsorted(edges, durations, side="right")  # = np.digitize(durations, edges)
    nb = len(edges) + 1
    rows = np.bincount(bucket, minlength=nb)
    if prep.nan:
        c = None
    else:
        err = np.abs(prep.y.astype(np.float64) - prep.p.astype(np.float64))
        mae = np.bincount(bucket, weights=err, minlength=nb) / np.maximum(rows, 1)
        c = prep.counts(bucket, nb) if prep.n else None
    out = {}
    for b, name in enumerate(bucket_names(edges)):
        out[name] = {"rows": int(rows[b]), "mae": None, "xauc": None, "xauc_dadf": None}
        if c is not None and rows[b] >= max(min_rows, 1):
            num2, den, conc, _ = _figures({k: v[b:b + 1] for k, v in c.items()})
            out[name].update(mae=float(mae[b]), xauc=_ratio(num2[0] / 2, den[0]),
                             xauc_dadf=_ratio(conc[0], c["T"][b]))
    return out


def all_conventions(labels, preds, users=None, durations=None, edges=DADF_EDGES,
                    block_size=HEGM_BLOCK_SIZE, min_rows=DADF_MIN_ROWS):
    """Every convention on the same rows, sharing the sorts; a flat JSON-able dict.

    Keys: rows, xauc, xauc_dadf, xauc_cwm, xauc_blocks; with `users`, xgauc and xgauc_cwm;
    with `durations`, for each bucket NAME of `bucket_names(edges)`: bucket_NAME_rows,
    bucket_NAME_mae, bucket_NAME_xauc, bucket_NAME_xauc_dadf. Figures that are undefined
    are None, never NaN (xauc_cwm is 1.0 for fewer than 2 rows, as CWM reports it); every
    figure is None when a label or prediction is NaN.
    """
    prep = _Prepared(labels, preds, families=2 + (users is not None) + (durations is not None))
    out = {"rows": len(prep.y), **_global(prep), "xauc_blocks": _blocks(prep, block_size)}
    if users is not None:
        out["xgauc"], out["xgauc_cwm"] = _users(prep, users)
    if durations is not None:
        for name, stats in _buckets(prep, durations, edges, min_rows).items():
            out.update({f"bucket_{name}_{k}": v for k, v in stats.items()})
    return out
