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

import numpy as np

from recbole_lda.evaluator import exact_sum
from recbole_lda.evaluator.pair_counts import Prepared, pair_counts
from recbole_lda.evaluator.ranks import as_array, dense_ranks, ranges, tie_runs

DADF_EDGES = (6.0, 10.0, 18.0, 32.0, 120.0)
"""DADF's duration bucket edges in seconds: [0, 6), [6, 10), [10, 18), [18, 32), [32, 120), [120, inf)."""

HEGM_BLOCK_SIZE = 4096
DADF_MIN_ROWS = 10
_BLOCK_ROWS = 1 << 16  # blocks up to this size are sorted as the rows of a 2-D view


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
    return global_scores(prep.counts())


def global_scores(c):
    """xauc, xauc_dadf and xauc_cwm from the pair counts of all rows (arrays of one entry)."""
    num2, den, conc, _ = _figures(c)
    return {"xauc": _ratio(num2[0] / 2, den[0]), "xauc_dadf": _ratio(conc[0], c["T"][0]),
            "xauc_cwm": float(_cwm(c)[0])}


def concordance(labels, preds, groups=None):
    """Exact pair counts for XAUC per group: (C - D, pairs with unequal labels), int64 arrays.

    `groups`: (n,) group ids (e.g. users), or None for one group; groups are numbered by
    sorted id. Refuses NaN.
    """
    prep = Prepared(labels, preds)
    if prep.nan:
        raise ValueError("NaN in labels or predictions: no pair counts")
    if prep.n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if groups is None:
        c = prep.counts()
    else:
        ids = dense_ranks(as_array(groups, "groups"))
        c = prep.counts(ids, int(ids.max()) + 1)
    both = c["T"] - c["Ty"] - c["Tp"] + c["Typ"]
    return both - 2 * c["D"], c["T"] - c["Ty"]


def xauc(labels, preds):
    """Ours: (C + (Tp - Typ)/2) / (T - Ty): pairs with unequal labels, prediction ties 1/2.

    NaN when no pair has unequal labels, or when a label or prediction is NaN.
    """
    return _or_nan(_global(Prepared(labels, preds))["xauc"])


def xauc_dadf(labels, preds):
    """DADF: C / T, strictly concordant pairs over all n(n-1)/2 pairs; NaN when n < 2 (or NaN in)."""
    return _or_nan(_global(Prepared(labels, preds))["xauc_dadf"])


def xauc_cwm(labels, preds):
    """CWM: (C + Ty + E) / T; 1 when n < 2 (NaN when NaN in).

    Rows are ordered by descending prediction, equal predictions in input order (a stable
    sort, as Python's `sorted(reverse=True)` is); a pair counts 1 when its earlier row
    has a label >= the later one's. So equal labels always count 1, and equal predictions
    count 1 exactly when the row that comes first in the input has the label >= the other.
    """
    return _or_nan(_global(Prepared(labels, preds))["xauc_cwm"])


def xauc_blocks(labels, preds, block_size=HEGM_BLOCK_SIZE):
    """HEGM: ours inside consecutive blocks of `block_size` rows in input order, pooled.

    sum over blocks of (C_b + (Tp_b - Typ_b)/2) / sum over blocks of (T_b - Ty_b); the last
    block may be shorter. NaN when no block has a pair with unequal labels (HEGM: 0.0).
    """
    return _or_nan(_blocks(Prepared(labels, preds), block_size))


def _blocks(prep, block_size):
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    if prep.n == 0 or prep.nan:
        return None
    num2, den, _, _ = _figures(block_counts(prep, block_size))
    return _ratio(num2.sum() / 2, den.sum())


def block_counts(prep, block_size):
    """Pair counts per block of `block_size` consecutive rows (the last may be shorter)."""
    n, nblocks = prep.n, -(-prep.n // block_size)
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
        start, length = tie_runs(eq)
        sizes = np.full(nblocks, block_size, dtype=np.int64)
        sizes[-1] = n - (nblocks - 1) * block_size
        c = pair_counts(seq, sizes, prep.vbits, seq[ranges(start, length)], length, start // block_size)
    return c


def xgauc(labels, preds, users):
    """Ours: XAUC per user, weighted by the user's pairs with unequal labels (pooled counts).

    = sum_u (C_u + (Tp_u - Typ_u)/2) / sum_u (T_u - Ty_u); users with no such pair do not
    count. NaN when no user has one (or NaN in).
    """
    return _or_nan(_users(Prepared(labels, preds), users)[0])


def xgauc_cwm(labels, preds, users):
    """CWM: sum_u n_u xauc_cwm_u / sum_u n_u over the users whose labels sum to > 0.

    n_u is the user's number of rows; a user with one row has xauc_cwm 1. NaN when no user
    qualifies (or NaN in).
    """
    return _or_nan(_users(Prepared(labels, preds), users)[1])


def _users(prep, users):
    users = as_array(users, "users")
    if len(users) != len(prep.y):
        raise ValueError(f"users must have one entry per row, got {len(users)} for {len(prep.y)} rows")
    if prep.n == 0 or prep.nan:
        return None, None
    return user_scores(*user_figures(prep, dense_ranks(users)))


def user_figures(prep, ids):
    """Per user (`ids`: dense ids 0..k-1 per row): 2 * ours' numerator, ours' denominator,
    rows, CWM's XAUC and whether the user's labels sum to more than 0."""
    nseg = int(ids.max()) + 1
    c = prep.counts(ids, nseg)
    num2, den, _, _ = _figures(c)
    rows = np.bincount(ids, minlength=nseg)
    keep = np.bincount(ids, weights=prep.y.astype(np.float64), minlength=nseg) > 0
    return num2, den, rows, _cwm(c), keep


def user_scores(num2, den, rows, cwm, keep):
    """(xgauc, xgauc_cwm) from the per-user figures of `user_figures`, users in sorted id order
    (CWM's average is a float sum, so the order fixes its last bits)."""
    return _ratio(num2.sum() / 2, den.sum()), _ratio(float((rows * cwm)[keep].sum()), float(rows[keep].sum()))


def bucket_names(edges=DADF_EDGES):
    """Bucket names for edges (6, 10, ...): '0-6', '6-10', ..., '120+'."""
    bounds = [0, *edges]
    return [f"{a:g}-{b:g}" for a, b in zip(bounds[:-1], bounds[1:])] + [f"{bounds[-1]:g}+"]


def bucket_metrics(labels, preds, durations, edges=DADF_EDGES, min_rows=DADF_MIN_ROWS):
    """MAE and XAUC per duration bucket (DADF's `eval_by_duration_bucket`).

    Buckets are left-closed, [a, b): bucket i holds edges[i-1] <= duration < edges[i]; the
    first holds every duration below edges[0] (named from 0), the last every duration >=
    edges[-1]. Returns {name: {"rows", "mae", "xauc", "xauc_dadf"}}: mae = mean |label -
    pred| in float64 (in the labels' unit; the exact mean, correctly rounded:
    `recbole_lda.evaluator.exact_sum`, so that partitions give the same), xauc ours, xauc_dadf DADF's; None where a bucket has fewer
    than `min_rows` rows (DADF: 10), where a figure is undefined, or when NaN is in.
    """
    return _buckets(Prepared(labels, preds), durations, edges, min_rows)


def _buckets(prep, durations, edges, min_rows):
    durations, edges = as_array(durations, "durations"), np.asarray(edges, dtype=np.float64)
    if len(durations) != len(prep.y):
        raise ValueError(f"durations must have one entry per row, got {len(durations)} for {len(prep.y)} rows")
    if edges.ndim != 1 or len(edges) == 0 or np.any(np.diff(edges) <= 0):
        raise ValueError(f"bucket edges must be increasing, got {edges.tolist()}")
    if durations.dtype.kind not in "biuf" or np.isnan(durations.astype(np.float64)).any():
        raise ValueError("durations must be numbers, not NaN")
    bucket = duration_buckets(durations, edges)
    nb = len(edges) + 1
    rows = np.bincount(bucket, minlength=nb)
    if prep.nan:
        return bucket_table(edges, rows, None, None, min_rows)
    err = np.abs(prep.y.astype(np.float64) - prep.p.astype(np.float64))
    mae = [exact_sum.mean(state, count) for state, count in zip(exact_sum.sum_state(err, bucket, nb), rows)]
    return bucket_table(edges, rows, mae, prep.counts(bucket, nb) if prep.n else None, min_rows)


def duration_buckets(durations, edges):
    """Bucket of every duration: i for edges[i-1] <= duration < edges[i] (= np.digitize)."""
    return np.searchsorted(edges, durations, side="right")


def bucket_table(edges, rows, mae, c, min_rows):
    """{bucket name: {rows, mae, xauc, xauc_dadf}} from rows, exact MAE and pair counts per bucket."""
    out = {}
    for b, name in enumerate(bucket_names(edges)):
        out[name] = {"rows": int(rows[b]), "mae": None, "xauc": None, "xauc_dadf": None}
        if c is not None and rows[b] >= max(min_rows, 1):
            num2, den, conc, _ = _figures({k: v[b:b + 1] for k, v in c.items()})
            out[name].update(mae=mae[b], xauc=_ratio(num2[0] / 2, den[0]),
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
    prep = Prepared(labels, preds, families=2 + (users is not None) + (durations is not None))
    out = {"rows": len(prep.y), **_global(prep), "xauc_blocks": _blocks(prep, block_size)}
    if users is not None:
        out["xgauc"], out["xgauc_cwm"] = _users(prep, users)
    if durations is not None:
        for name, stats in _buckets(prep, durations, edges, min_rows).items():
            out.update({f"bucket_{name}_{k}": v for k, v in stats.items()})
    return out
