"""Every XAUC convention of recbole_lda.evaluator.xauc against O(n^2) brute force and hand-worked cases.

The brute forces below are written from each convention's definition (see the module
docstring of recbole_lda.evaluator.xauc for the reference code each one was read from):
    ours   pairs with unequal labels; concordant 1, equal predictions 1/2
    DADF   strictly concordant pairs / all n(n-1)/2 pairs
    CWM    order rows by descending prediction, equal predictions in input order; a pair
           counts 1 when its earlier row's label is >= the later one's; / n(n-1)/2 (1 if n < 2)
    HEGM   ours inside consecutive blocks of block_size rows (input order), pooled
    XGAUC  ours per user pooled by pairs; CWM's: CWM per user weighted by rows, users whose
           labels sum to > 0
"""

import json
import math

import numpy as np
import pytest
import torch

from recbole.evaluator.collector import DataStruct
from recbole_lda.evaluator import pair_counts as P
from recbole_lda.evaluator import ranks as R
from recbole_lda.evaluator import xauc as X
from recbole_lda.evaluator.metrics import XAUC, XGAUC


# ------------------------------------------------------------------ brute force

def brute_ours_counts(y, p):
    num = den = 0.0
    for i in range(len(y)):
        for j in range(len(y)):
            if y[i] < y[j]:
                den += 1
                num += 1.0 if p[i] < p[j] else 0.5 if p[i] == p[j] else 0.0
    return num, den


def brute_ours(y, p):
    num, den = brute_ours_counts(y, p)
    return num / den if den else math.nan


def brute_dadf(y, p):
    n = len(y)
    concordant = sum(1 for i in range(n) for j in range(i + 1, n) if (y[i] - y[j]) * (p[i] - p[j]) > 0)
    return concordant / (n * (n - 1) / 2) if n >= 2 else math.nan


def brute_cwm(y, p):
    n = len(y)
    order = sorted(range(n), key=lambda i: (-p[i], i))
    count = sum(1 for a in range(n) for b in range(a + 1, n) if y[order[a]] >= y[order[b]])
    return count / (n * (n - 1) / 2) if n >= 2 else 1.0


def brute_blocks(y, p, block_size):
    num = den = 0.0
    for start in range(0, len(y), block_size):
        a, b = brute_ours_counts(y[start:start + block_size], p[start:start + block_size])
        num, den = num + a, den + b
    return num / den if den else math.nan


def brute_xgauc(y, p, users):
    num = den = 0.0
    for u in np.unique(users):
        a, b = brute_ours_counts(y[users == u], p[users == u])
        num, den = num + a, den + b
    return num / den if den else math.nan


def brute_xgauc_cwm(y, p, users):
    num = den = 0.0
    for u in np.unique(users):
        m = users == u
        if y[m].sum() > 0:
            num += m.sum() * brute_cwm(y[m], p[m])
            den += m.sum()
    return num / den if den else math.nan


def brute_buckets(y, p, d, edges, min_rows):
    bounds = [-math.inf, *edges, math.inf]
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        m = (d >= lo) & (d < hi)  # left-closed [lo, hi)
        ok = m.sum() >= max(min_rows, 1)
        out.append({"rows": int(m.sum()),
                    "mae": float(np.abs(y[m] - p[m]).mean()) if ok else None,
                    "xauc": brute_ours(y[m], p[m]) if ok else None,
                    "xauc_dadf": brute_dadf(y[m], p[m]) if ok else None})
    return out


def same(got, expected):
    if expected is None or (isinstance(expected, float) and math.isnan(expected)):
        return got is None or (isinstance(got, float) and math.isnan(got))
    return got is not None and got == pytest.approx(expected, abs=1e-12)


def tie_heavy(rng, n):
    """Labels, predictions, users, durations with many ties in labels and in predictions."""
    y = rng.integers(0, int(rng.integers(1, 7)), n) + rng.choice([0.0, 0.1])  # 0.1: not a float32 number
    if rng.random() < 0.5:
        p = rng.integers(0, int(rng.integers(1, 6)), n).astype(np.float32)
    else:
        p = np.round(rng.normal(size=n), int(rng.integers(0, 2)))
    users = rng.integers(0, int(rng.integers(1, 8)), n)
    durations = rng.choice([0.0, 3.0, 6.0, 8.0, 10.0, 15.0, 18.0, 40.0, 120.0, 300.0], n)
    return y, p, users, durations


# ------------------------------------------------------------ against brute force

@pytest.mark.parametrize("seed", range(6))
def test_every_convention_matches_brute_force_on_ties(seed):
    rng = np.random.default_rng(seed)
    for _ in range(25):
        n = int(rng.integers(0, 45))
        y, p, users, d = tie_heavy(rng, n)
        block = int(rng.integers(1, 12))
        assert same(X.xauc(y, p), brute_ours(y, p))
        assert same(X.xauc_dadf(y, p), brute_dadf(y, p))
        assert same(X.xauc_cwm(y, p), brute_cwm(y, p))
        assert same(X.xauc_blocks(y, p, block), brute_blocks(y, p, block))
        assert same(X.xgauc(y, p, users), brute_xgauc(y, p, users))
        assert same(X.xgauc_cwm(y, p, users), brute_xgauc_cwm(y, p, users))
        for got, expected in zip(X.bucket_metrics(y, p, d, min_rows=2).values(),
                                 brute_buckets(y, p, d, X.DADF_EDGES, 2)):
            assert got["rows"] == expected["rows"]
            assert all(same(got[k], expected[k]) for k in ("mae", "xauc", "xauc_dadf"))


@pytest.mark.parametrize("seed", range(3))
def test_all_conventions_is_each_function(seed):
    rng = np.random.default_rng(100 + seed)
    y, p, users, d = tie_heavy(rng, 60)
    got = X.all_conventions(y, p, users=users, durations=d, block_size=7, min_rows=3)
    json.dumps(got, allow_nan=False)  # JSON-able, no NaN
    assert got["rows"] == 60
    assert same(got["xauc"], brute_ours(y, p)) and same(got["xauc_dadf"], brute_dadf(y, p))
    assert same(got["xauc_cwm"], brute_cwm(y, p)) and same(got["xauc_blocks"], brute_blocks(y, p, 7))
    assert same(got["xgauc"], brute_xgauc(y, p, users))
    assert same(got["xgauc_cwm"], brute_xgauc_cwm(y, p, users))
    for name, expected in zip(X.bucket_names(), brute_buckets(y, p, d, X.DADF_EDGES, 3)):
        for k, v in expected.items():
            assert same(got[f"bucket_{name}_{k}"], v)


@pytest.mark.parametrize("seed", range(3))
def test_internal_paths_give_the_same_counts(seed, monkeypatch):
    # large segments merged alone vs padded together, blocks by the 2-D row sort vs the
    # generic layout: all must agree
    rng = np.random.default_rng(200 + seed)
    n = 260
    y = rng.integers(0, 30, n).astype(np.float64)
    p = np.round(rng.normal(size=n), 1)
    users = rng.integers(0, 5, n)
    expected = (brute_ours(y, p), brute_cwm(y, p), brute_blocks(y, p, 37), brute_xgauc_cwm(y, p, users))
    for alone, block_rows in ((1 << 16, 1 << 16), (40, 1), (3, 1 << 16)):
        monkeypatch.setattr(P, "_ALONE", alone)
        monkeypatch.setattr(X, "_BLOCK_ROWS", block_rows)
        got = (X.xauc(y, p), X.xauc_cwm(y, p), X.xauc_blocks(y, p, 37), X.xgauc_cwm(y, p, users))
        assert all(same(g, e) for g, e in zip(got, expected))


def test_label_codes_and_label_ranks_agree():
    # one convention codes float64 labels in 62 bits without sorting; all_conventions ranks
    # them (a sort) so that its merges stay 32-bit: the counts must be the same
    rng = np.random.default_rng(300)
    y = np.round(rng.gamma(1.0, 10.0, 500), 3)  # not float32 numbers
    p = np.round(y + rng.normal(0, 5, 500), 1)
    users = rng.integers(0, 9, 500)
    assert R.label_codes(y) is None and R.label_codes(y, 62) is not None
    together = X.all_conventions(y, p, users=users)
    for name in ("xauc", "xauc_dadf", "xauc_cwm", "xauc_blocks"):
        assert getattr(X, name)(y, p) == together[name]
    assert X.xgauc(y, p, users) == together["xgauc"] and X.xgauc_cwm(y, p, users) == together["xgauc_cwm"]
    assert X.xauc(y, p) == pytest.approx(brute_ours(y, p), abs=1e-12)


def test_values_one_ulp_apart_are_not_tied():
    # float64 keys are cut to fit the sort word; values that differ only in the cut bits
    # must still be ranked apart, and equal values kept in input order
    base = 1.0 + np.array([0, 3, 1, 2, 0, 1, 3, 2]) * np.spacing(1.0)
    y = np.concatenate([base, [-1e300, 0.0, -0.0, np.inf]])
    p = np.arange(len(y), dtype=np.float64)[::-1]
    order, ranks = R.argsort_dense(y)
    assert order.tolist() == np.argsort(y, kind="stable").tolist()
    assert ranks.tolist() == np.unique(y, return_inverse=True)[1][order].tolist()
    assert same(X.xauc(y, p), brute_ours(y, p)) and same(X.xauc_cwm(y, p), brute_cwm(y, p))


def test_float32_ties_are_ties():
    # 1 + 2^-30 equals 1 in float32: two tied predictions there, two different ones in float64
    y = np.array([1.0, 2.0])
    p64 = np.array([1.0 + 2.0 ** -30, 1.0])
    assert X.xauc(y, p64) == 0.0 and X.xauc(y, p64.astype(np.float32)) == 0.5


# ----------------------------------------------------------------------- by hand

def test_hand_case_every_convention():
    # rows 0..3: y = 1, 2, 2, 3; p = .2, .5, .5, .1; the 6 pairs:
    #   (0,1) (0,2): concordant; (0,3) (1,3) (2,3): discordant; (1,2): equal labels and predictions
    #   C = 2, D = 3, Ty = 1, Tp = 1, Typ = 1, T = 6
    y, p = [1, 2, 2, 3], [0.2, 0.5, 0.5, 0.1]
    assert X.xauc(y, p) == pytest.approx(2 / 5)  # (C + (Tp - Typ)/2) / (T - Ty) = 2 / 5
    assert X.xauc_dadf(y, p) == pytest.approx(2 / 6)  # C / T
    # CWM: by descending p, ties in input order: rows 1, 2, 0, 3, labels 2, 2, 1, 3; pairs
    # with earlier >= later: (2,2) (2,1) (2,1) = 3 of 6  (= C + Ty + E = 2 + 1 + 0)
    assert X.xauc_cwm(y, p) == pytest.approx(3 / 6)


def test_hand_case_cwm_prediction_ties_follow_input_order():
    # y = 3, 1, 2; p = .5, .5, .9. CWM order: row 2, row 0, row 1 -> labels 2, 3, 1;
    # pairs (2,3) no, (2,1) yes, (3,1) yes: 2 / 3.  Swap rows 0 and 1 in the input:
    # order row 2, row 0, row 1 -> labels 2, 1, 3: (2,1) yes, (2,3) no, (1,3) no: 1 / 3
    assert X.xauc_cwm([3, 1, 2], [0.5, 0.5, 0.9]) == pytest.approx(2 / 3)
    assert X.xauc_cwm([1, 3, 2], [0.5, 0.5, 0.9]) == pytest.approx(1 / 3)
    # ours gives the tie 1/2 either way: pairs (1,3) tie 1/2, (2,3) discordant 0, (1,2) concordant 1 -> 1.5 / 3
    assert X.xauc([3, 1, 2], [0.5, 0.5, 0.9]) == X.xauc([1, 3, 2], [0.5, 0.5, 0.9]) == pytest.approx(0.5)
    # DADF: C / T = 1 / 3 (the tie counts 0) in both orders
    assert X.xauc_dadf([3, 1, 2], [0.5, 0.5, 0.9]) == pytest.approx(1 / 3)
    assert X.xauc_cwm([5.0], [1.0]) == 1.0 and X.xauc_cwm([], []) == 1.0  # n < 2: CWM reports 1
    assert math.isnan(X.xauc_dadf([5.0], [1.0]))


def test_hand_case_blocks_with_a_size_that_does_not_divide_n():
    # block_size 3 over 7 rows: blocks rows 0-2, 3-5, 6
    #   block 1: y 1, 1, 2; p 5, 7, 7: (0,1) equal labels, out; (0,2) concordant 1; (1,2) p tie 1/2 -> 1.5 / 2
    #   block 2: y 3, 2, 1; p 1, 2, 3: all 3 pairs discordant -> 0 / 3
    #   block 3: one row, no pair
    #   pooled: (1.5 + 0) / (2 + 3) = 0.3
    y = [1, 1, 2, 3, 2, 1, 5]
    p = [5, 7, 7, 1, 2, 3, 0]
    assert X.xauc_blocks(y, p, 3) == pytest.approx(0.3)
    assert X.xauc_blocks(y, p, 7) == X.xauc_blocks(y, p, 100) == pytest.approx(X.xauc(y, p))  # one block
    assert math.isnan(X.xauc_blocks(y, p, 1))  # no block has a pair (HEGM would print 0.0)
    with pytest.raises(ValueError, match="block_size"):
        X.xauc_blocks(y, p, 0)


def test_hand_case_per_user():
    # user 7: y 1, 2; p .3, .1: one pair, discordant. CWM order rows 0, 1 -> labels 1, 2: 1 >= 2 no -> 0 / 1
    # user 8: one row, label 4 > 0: CWM's xauc for one row is 1
    # user 9: labels 0, 0: no pair with unequal labels; labels sum to 0, so CWM leaves it out
    #   ours, pooled by pairs: (0) / (1) = 0;  CWM: (2 * 0 + 1 * 1) / (2 + 1) = 1 / 3
    y = np.array([1, 2, 4, 0, 0], dtype=float)
    p = np.array([0.3, 0.1, 1.0, 0.2, 0.4])
    users = np.array([7, 7, 8, 9, 9])
    assert X.xgauc(y, p, users) == 0.0
    assert X.xgauc_cwm(y, p, users) == pytest.approx(1 / 3)
    assert X.xgauc(y, p, np.array(["b", "b", "a", "c", "c"])) == 0.0  # any hashable-sortable ids


def test_hand_case_buckets_left_closed():
    # edges (6, 10): [0, 6), [6, 10), [10, inf). 6.0 and 10.0 sit on edges: they go right.
    #   [0,6):   row 0 (5.999): y 1, p 2: mae 1, no pair
    #   [6,10):  rows 1, 2 (6.0, 9.0): y 2, 3; p 2, 1: mae (0 + 2) / 2 = 1; the pair is discordant: xauc 0, dadf 0
    #   [10,inf): rows 3, 4 (10.0, 200): y 4, 5; p 4, 9: mae (0 + 4) / 2 = 2; concordant: 1, 1
    y, p = [1, 2, 3, 4, 5], [2, 2, 1, 4, 9]
    d = [5.999, 6.0, 9.0, 10.0, 200.0]
    got = X.bucket_metrics(y, p, d, edges=(6, 10), min_rows=1)
    assert list(got) == ["0-6", "6-10", "10+"]
    assert got["0-6"] == {"rows": 1, "mae": 1.0, "xauc": None, "xauc_dadf": None}
    assert got["6-10"] == {"rows": 2, "mae": 1.0, "xauc": 0.0, "xauc_dadf": 0.0}
    assert got["10+"] == {"rows": 2, "mae": 2.0, "xauc": 1.0, "xauc_dadf": 1.0}
    # DADF reports nothing for buckets under 10 rows (its default)
    assert all(v["mae"] is None and v["xauc"] is None for v in X.bucket_metrics(y, p, d, edges=(6, 10)).values())
    assert X.bucket_names() == ["0-6", "6-10", "10-18", "18-32", "32-120", "120+"]
    with pytest.raises(ValueError, match="increasing"):
        X.bucket_metrics(y, p, d, edges=(10, 6))


def test_nan_in_gives_nan_out():
    y, p, users = [1.0, 2.0, 3.0], [0.1, float("nan"), 0.3], [0, 0, 1]
    for value in (X.xauc(y, p), X.xauc_dadf(y, p), X.xauc_cwm(y, p), X.xauc_blocks(y, p),
                  X.xgauc(y, p, users), X.xgauc_cwm(y, p, users)):
        assert math.isnan(value)
    got = X.all_conventions(y, p, users=users, durations=[1.0, 7.0, 50.0])
    assert got["rows"] == 3 and all(v is None for k, v in got.items() if k != "rows" and not k.endswith("_rows"))
    with pytest.raises(ValueError, match="NaN"):
        X.concordance(y, p)


# ------------------------------------------------------- RecBole's metric classes

def test_metric_classes_take_labels_then_predictions():
    # tie-heavy labels: xauc(labels, preds) and xauc(preds, labels) differ, so a class that
    # swapped its arguments would fail here
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 3, 40).astype(np.float32)
    preds = np.round(rng.normal(size=40), 1).astype(np.float32)
    users = rng.integers(0, 4, 40)
    assert brute_ours(labels, preds) != pytest.approx(brute_ours(preds, labels), abs=1e-3)
    assert brute_xgauc(labels, preds, users) != pytest.approx(brute_xgauc(preds, labels, users), abs=1e-3)
    struct = DataStruct()
    struct.set("rec.score", torch.tensor(preds).unsqueeze(-1))
    struct.set("data.label", torch.tensor(labels).unsqueeze(-1))
    struct.set("data.user_id", torch.tensor(users))
    config = {"metric_decimal_place": 12}
    assert XAUC(config).calculate_metric(struct)["xauc"] == pytest.approx(brute_ours(labels, preds), abs=1e-11)
    assert XGAUC(config).calculate_metric(struct)["xgauc"] == pytest.approx(
        brute_xgauc(labels, preds, users), abs=1e-11)
