"""Watch-time ranking metrics: XAUC and XGAUC, exact, in O(n log n).

XAUC (Zhan et al., "Deconfounding Duration Bias in Watch-time Prediction for Video
Recommendation", KDD 2022) is the share of test pairs (i, j) with different watch times
whose predictions are ordered the same way:

    XAUC = ( #{y_i < y_j, p_i < p_j} + 1/2 #{y_i < y_j, p_i = p_j} ) / #{y_i < y_j}

Pairs with equal labels are excluded; pairs with equal predictions count 1/2. With C and
D the concordant and discordant pairs among the N pairs with different labels, this is

    XAUC = 1/2 + (C - D) / (2 N),

a Kendall-type statistic, which we count exactly (integers, no pair sampling, no
per-batch approximation). XGAUC is XAUC computed inside each user and averaged with
weights equal to each user's number of pairs with different labels, which reduces to
1/2 + sum_u (C_u - D_u) / (2 sum_u N_u). Users with no such pair do not count.

MAE and RMSE are RecBole's own metrics (`mae`, `rmse`): every model's `predict` returns
watch time in seconds, so they are in seconds (RMSE in seconds too).

The metric classes follow RecBole's `LossMetric` contract; `recbole_lda.compat` registers
them in RecBole's evaluator so that `metrics: [MAE, XAUC]` and `valid_metric: XAUC` work.
"""

import numpy as np
from recbole.evaluator.base_metric import AbstractMetric
from recbole.utils import EvaluatorType


def _tied_pairs(group, *keys):
    """Number of pairs inside each group whose `keys` are all equal, per group id."""
    n_groups = int(group.max()) + 1 if len(group) else 0
    if len(group) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort(tuple(reversed((group,) + keys)))
    cols = [c[order] for c in (group,) + keys]
    new_run = np.ones(len(group), dtype=bool)
    for c in cols:
        new_run[1:] &= c[1:] == c[:-1]
    new_run = ~new_run
    new_run[0] = True
    starts = np.flatnonzero(new_run)
    sizes = np.diff(np.append(starts, len(group))).astype(np.int64)
    return np.bincount(cols[0][starts], weights=sizes * (sizes - 1) // 2, minlength=n_groups).astype(np.int64)


def _increasing_pairs(seq, group):
    """Per group, the number of pairs i < j (positions in `seq`) with seq[i] < seq[j].

    `seq` holds non-negative integers (ranks); `group` is sorted (contiguous groups).
    Bit by bit from the most significant: a pair is increasing exactly when, at the
    highest bit where the two values differ, the earlier one has a 0 and the later one
    a 1. So for each bit we group positions by (group, higher bits), keep their order,
    and count, for every element with the bit set, the elements before it in its group
    with the bit clear. Each bit costs one stable sort: O(n log n) per bit.
    """
    n_groups = int(group.max()) + 1 if len(group) else 0
    counts = np.zeros(n_groups, dtype=np.int64)
    n_bits = max(int(seq.max()).bit_length(), 1) if len(seq) else 1
    for bit in range(n_bits - 1, -1, -1):
        # group and higher bits in one int64 key; groups are contiguous, so order is kept
        key = (group.astype(np.int64) << (n_bits - bit)) | (seq >> (bit + 1))
        order = np.argsort(key, kind="stable")
        key, is_one = key[order], ((seq[order] >> bit) & 1).astype(bool)
        zeros_so_far = np.cumsum(~is_one)
        run_start = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
        run_id = np.cumsum(np.r_[True, key[1:] != key[:-1]]) - 1
        zeros_before_run = zeros_so_far[run_start] - (~is_one[run_start])
        zeros_before = zeros_so_far - zeros_before_run[run_id] - (~is_one)
        counts += np.bincount(group[order][is_one], weights=zeros_before[is_one], minlength=n_groups).astype(np.int64)
    return counts


def concordance(labels, preds, groups=None):
    """Exact pair counts for XAUC, per group.

    Args:
        labels: (n,) watch times.
        preds: (n,) predictions.
        groups: (n,) integer group ids (e.g. users), or None for one group.

    Returns:
        (c_minus_d, n_pairs): two int64 arrays of shape (n_groups,): C - D (concordant
        minus discordant pairs) and N (pairs with different labels) inside each group.
    """
    labels, preds = np.asarray(labels), np.asarray(preds)
    if labels.shape != preds.shape or labels.ndim != 1:
        raise ValueError(f"labels and preds must be 1-d arrays of one shape, got {labels.shape} and {preds.shape}")
    groups = np.zeros(len(labels), dtype=np.int64) if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1]
    if len(labels) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    y = np.unique(labels, return_inverse=True)[1].astype(np.int64)  # dense ranks
    p = np.unique(preds, return_inverse=True)[1].astype(np.int64)
    order = np.lexsort((p, y, groups))  # by group, then label, then prediction
    y, p, g = y[order], p[order], groups[order]

    sizes = np.bincount(g).astype(np.int64)
    all_pairs = sizes * (sizes - 1) // 2
    tied_y, tied_p, tied_both = _tied_pairs(g, y), _tied_pairs(g, p), _tied_pairs(g, y, p)
    increasing = _increasing_pairs(p, g)
    # In (label, prediction) order every pair with y_i < y_j has i < j, so
    #   C - D = (increasing - decreasing) - (pairs with equal labels and different preds)
    # and decreasing = all_pairs - tied_p - increasing.
    c_minus_d = 2 * increasing - all_pairs + tied_p - (tied_y - tied_both)
    return c_minus_d, all_pairs - tied_y


def xauc(labels, preds):
    """Exact XAUC (see module docstring); NaN when no pair has different labels."""
    c_minus_d, n_pairs = concordance(labels, preds)
    total = n_pairs.sum()
    return float(0.5 + c_minus_d.sum() / (2 * total)) if total > 0 else float("nan")


def xgauc(labels, preds, users):
    """XAUC inside each user, averaged with weights = the user's pairs with different labels."""
    c_minus_d, n_pairs = concordance(labels, preds, users)
    total = n_pairs.sum()
    return float(0.5 + c_minus_d.sum() / (2 * total)) if total > 0 else float("nan")


class XAUC(AbstractMetric):
    """XAUC over all evaluated interactions (bigger is better)."""

    metric_type = EvaluatorType.VALUE
    metric_need = ["rec.score", "data.label"]
    smaller = False

    def calculate_metric(self, dataobject):
        preds = dataobject.get("rec.score").squeeze(-1).numpy()
        labels = dataobject.get("data.label").squeeze(-1).numpy()
        return {"xauc": round(xauc(labels, preds), self.decimal_place)}


class XGAUC(AbstractMetric):
    """XAUC per user, weighted by each user's pair count (bigger is better).

    Needs the user of every evaluated row: `data.user_id` is collected by the collector
    extension in `recbole_lda.compat`.
    """

    metric_type = EvaluatorType.VALUE
    metric_need = ["rec.score", "data.label", "data.user_id"]
    smaller = False

    def calculate_metric(self, dataobject):
        preds = dataobject.get("rec.score").squeeze(-1).numpy()
        labels = dataobject.get("data.label").squeeze(-1).numpy()
        users = dataobject.get("data.user_id").numpy()
        return {"xgauc": round(xgauc(labels, preds, users), self.decimal_place)}


WATCH_TIME_METRICS = (XAUC, XGAUC)
