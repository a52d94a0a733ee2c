"""D2Co (newer baselines, see test_new_baselines.py): its per-duration two-Gaussian mixture,
smoothing, label transform, prediction and loss against hand-computed values."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from baselines.d2co import (
    count_weighted_moving_average, duration_bin_means, duration_bin_sample, fit_two_gaussians, two_means_split)
from baselines import d2co
from recbole_lda.utils.pair_counts import PairCounts
from test_new_baselines import batch, build


def test_d2co_two_means_split_is_the_exact_optimum():
    rng = np.random.default_rng(0)
    segments = [np.sort(rng.normal(0, 1, n) + rng.integers(0, 2, n) * 4) for n in (2, 5, 9, 30)]
    segments.append(np.full(4, 3.0))  # all equal: the first split
    values = np.concatenate(segments)
    counts = np.array([len(s) for s in segments])
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    best = two_means_split(values, starts, counts)
    for seg, i in zip(segments, best):
        sse = [((seg[:k] - seg[:k].mean()) ** 2).sum() + ((seg[k:] - seg[k:].mean()) ** 2).sum() for k in range(1, len(seg))]
        assert sse[i - 1] == pytest.approx(min(sse))
    assert best[-1] == 1


def test_d2co_two_means_split_of_value_counts_counts_rows():
    # one segment [1 x3, 2 x1, 10 x2]: rows 1,1,1,2,10,10; the best split keeps the 10s apart (4 rows below)
    values, counts = np.array([1.0, 2.0, 10.0]), np.array([3, 1, 2])
    assert two_means_split(values, np.array([0]), np.array([3]), counts).tolist() == [4]
    # one entry of 5 equal rows: one row below, as the row form's first split
    assert two_means_split(np.array([7.0]), np.array([0]), np.array([1]), np.array([5])).tolist() == [1]


def test_d2co_mixture_fit_from_value_counts_equals_the_fit_from_rows(monkeypatch):
    """Rows and their value counts (in any order, in pieces) give the same mixtures, bit for bit."""
    rng = np.random.default_rng(3)
    values = np.round(np.concatenate([rng.normal(3.0, 1.0, 900), rng.normal(15.0, 2.0, 600)]), 1)  # many repeats
    groups = rng.integers(0, 4, len(values))
    from_rows = fit_two_gaussians(values, groups, 300, 1e-4, 1e-6)
    pairs = PairCounts()
    for piece in np.array_split(rng.permutation(len(values)), 5):
        pairs.add(groups[piece], values[piece])
    g, x, c = pairs.pairs
    assert c.sum() == len(values) and len(x) < len(values) / 2
    from_counts = fit_two_gaussians(x, g.astype(np.int64), 300, 1e-4, 1e-6, c)
    for a, b in zip(from_rows, from_counts):
        assert np.array_equal(a, b)
    # fitted in chunks of whole groups (106 to 119 entries a group: chunks of 250 hold two), the same mixtures
    monkeypatch.setattr(d2co, "FIT_CHUNK_ROWS", 250)
    for a, b in zip(from_rows, fit_two_gaussians(x, g.astype(np.int64), 300, 1e-4, 1e-6, c)):
        np.testing.assert_allclose(a, b, rtol=1e-9)
    # a group of one value: both components at that value, the weights 1 row and the rest
    weights, means, _ = fit_two_gaussians(np.full(4, 2.5), np.zeros(4, dtype=np.int64), 50, 1e-4, 1e-6)
    np.testing.assert_allclose(means, [[2.5, 2.5]])
    np.testing.assert_allclose(weights, [[0.25, 0.75]])


def test_d2co_mixture_fit_recovers_the_peaks_of_a_two_peak_sample():
    rng = np.random.default_rng(0)
    # bin 0: 70% near 2 s, 30% near 12 s; bin 1: 40% near 5 s, 60% near 30 s
    x0 = np.concatenate([rng.normal(2.0, 0.7, 1400), rng.normal(12.0, 1.5, 600)])
    x1 = np.concatenate([rng.normal(5.0, 2.0, 800), rng.normal(30.0, 3.0, 1200)])
    values, groups = np.concatenate([x1, x0]), np.repeat([1, 0], 2000)  # groups need not be sorted
    weights, means, var = fit_two_gaussians(values, groups, 500, 1e-3, 1e-6)
    np.testing.assert_allclose(means, [[2.0, 12.0], [5.0, 30.0]], atol=0.15)
    np.testing.assert_allclose(weights, [[0.7, 0.3], [0.4, 0.6]], atol=0.02)
    np.testing.assert_allclose(np.sqrt(var), [[0.7, 1.5], [2.0, 3.0]], rtol=0.1)
    mixture = pytest.importorskip("sklearn.mixture")  # the references' fit, where installed
    for g, x in ((0, x0), (1, x1)):
        gm = mixture.GaussianMixture(2, covariance_type="spherical", max_iter=500, random_state=61).fit(x.reshape(-1, 1))
        np.testing.assert_allclose(means[g], np.sort(gm.means_[:, 0]), atol=1e-2)


def test_d2co_count_weighted_moving_average_hand_computed():
    v, n = np.array([1.0, 2.0, 4.0, 8.0]), np.array([1, 3, 1, 1])
    # window 2: each bin with its two neighbours, weighted by counts
    expected = [(1 + 6) / 4, (1 + 6 + 4) / 5, (6 + 4 + 8) / 5, (4 + 8) / 2]
    np.testing.assert_allclose(count_weighted_moving_average(v, n, 2), expected)
    np.testing.assert_allclose(count_weighted_moving_average(v, n, 1), v)


def test_d2co_bins_skip_sparse_durations_and_floor_the_gap():
    rng = np.random.default_rng(1)
    durations = np.concatenate([np.full(400, 10.2), np.full(2, 15.0), np.full(400, 20.4)])
    watch = np.concatenate([np.where(rng.random(400) < 0.5, 1.0, 9.0), [3.0, 4.0], np.full(400, 7.0)])
    sample = duration_bin_sample(watch + rng.normal(0, 0.1, 802), durations, 1.0, True)
    keys, lo, hi, counts = duration_bin_means(*sample, 3, 1, 500, 1e-3, 1e-6, 0.5)
    assert keys.tolist() == [10.0, 20.0] and counts.tolist() == [400, 400]  # 15 s has 2 rows < 3
    np.testing.assert_allclose([lo[0], hi[0]], [1.0, 9.0], atol=0.05)
    assert hi[1] - lo[1] == pytest.approx(0.5)  # one peak: the gap is floored


def test_d2co_label_and_prediction_hand_computed(toy_root):
    model, _ = build("D2Co", toy_root)
    model.bin_keys, model.mu_minus, model.mu_plus = torch.tensor([10.0, 20.0]), torch.tensor([2.0, 4.0]), torch.tensor([8.0, 16.0])
    d = torch.tensor([10.0, 10.4, 19.0, 25.0, 60.0])  # bins 10, 10, 19 -> 20, 25 -> 20, 60 -> 20
    wt = torch.tensor([5.0, 12.0, 10.0, 4.0, 100.0])  # 12 s and 100 s are truncated at the duration
    u = model.watch_time_to_label(wt, d)
    torch.testing.assert_close(u, torch.tensor([0.5, (10.4 - 2) / 6, 0.5, 0.0, (60 - 4) / 12]))
    # the prediction rule: f (mu+ - mu-) + mu-, clipped to [0, d]
    f = torch.tensor([0.5, 2.0, -1.0, 0.25, 1.0])
    torch.testing.assert_close(model.label_to_watch_time(f, d), torch.tensor([5.0, 10.4, 0.0, 7.0, 16.0]))
    # round trip inside [0, d]
    torch.testing.assert_close(model.label_to_watch_time(u, d), torch.minimum(wt, d), rtol=1e-5, atol=1e-5)


def test_d2co_exponential_label_hand_computed_and_clipped(toy_root):
    model, _ = build("D2Co", toy_root, label_alpha=0.3, clip_label=True)
    model.bin_keys, model.mu_minus, model.mu_plus = torch.tensor([30.0]), torch.tensor([2.0]), torch.tensor([20.0])
    d = torch.full((4,), 30.0)
    u = model.watch_time_to_label(torch.tensor([1.0, 10.0, 25.0, 2.0]), d)
    mid = (math.exp(3.0) - math.exp(0.6)) / (math.exp(6.0) - math.exp(0.6))
    torch.testing.assert_close(u, torch.tensor([0.0, mid, 1.0, 0.0]))  # below mu- and above mu+: clipped
    torch.testing.assert_close(model.label_to_watch_time(torch.tensor([mid]), d[:1]), torch.tensor([10.0]), rtol=1e-5, atol=1e-5)


def test_d2co_predictions_stay_within_zero_and_the_duration(toy_root):
    gen = torch.Generator().manual_seed(0)
    f = torch.cat([torch.randn(300, generator=gen) * 5, torch.tensor([1e6, -1e6, 1e30, -1e30])])
    d = torch.rand(len(f), generator=gen) * 100 + 0.5
    for overrides in ({}, {"label_alpha": 0.3, "clip_label": True}, {"label_alpha": 0.3, "clip_label": True, "d2co_loss": "bce"}):
        model, _ = build("D2Co", toy_root, **overrides)
        pred = model.label_to_watch_time(torch.sigmoid(f) if overrides.get("d2co_loss") == "bce" else f, d)
        assert pred.isfinite().all() and torch.all(pred >= 0) and torch.all(pred <= d)
        for out in (1e4, -1e4):  # a saturated head: still seconds inside [0, d]
            model.forward = lambda interaction, out=out: torch.full((2,), out)
            pred = model.predict(batch(duration=[3.0, 40.0]))
            assert torch.all(pred >= 0) and torch.all(pred <= torch.tensor([3.0, 40.0]))


def test_d2co_loss_hand_computed(toy_root):
    model, _ = build("D2Co", toy_root)
    model.bin_keys, model.mu_minus, model.mu_plus = torch.tensor([10.0]), torch.tensor([2.0]), torch.tensor([8.0])
    f = torch.tensor([0.1, 0.9])
    model.forward = lambda interaction: f
    loss = model.calculate_loss(batch(label=[5.0, 2.0], duration=[10.0, 10.0]))  # labels 0.5, 0.0
    assert loss.item() == pytest.approx(((0.1 - 0.5) ** 2 + 0.9**2) / 2, rel=1e-6)
    bce_model, _ = build("D2Co", toy_root, label_alpha=0.3, clip_label=True, d2co_loss="bce")
    bce_model.bin_keys, bce_model.mu_minus, bce_model.mu_plus = model.bin_keys, model.mu_minus, model.mu_plus
    bce_model.forward = lambda interaction: f
    u = (math.exp(0.3 * 5) - math.exp(0.6)) / (math.exp(2.4) - math.exp(0.6))
    expected = F.binary_cross_entropy_with_logits(f, torch.tensor([u, 0.0])).item()
    assert bce_model.calculate_loss(batch(label=[5.0, 2.0], duration=[10.0, 10.0])).item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="clip_label"):
        build("D2Co", toy_root, d2co_loss="bce")


def test_pair_counts_merged_as_pieces_come_equal_the_counts_of_all_rows(monkeypatch):
    """Pieces merged along the way (a threshold of 50 rows: many merges) and at the end give
    the distinct pairs of all rows, sorted, with their counts; given counts add up."""
    monkeypatch.setattr(PairCounts, "MERGE_ROWS", 50)
    rng = np.random.default_rng(7)
    first, second = rng.integers(0, 5, 1000).astype(float), np.round(rng.random(1000), 1)
    pairs = PairCounts()
    merges = []
    for piece in np.array_split(np.arange(1000), 37):
        pairs.add(first[piece], second[piece])
        merges.append(len(pairs._pending) == 0)
    assert sum(merges) > 5  # merged along the way, not only at the end
    keys, counts = np.unique(np.stack([first, second], 1), axis=0, return_counts=True)
    f, s, c = pairs.pairs
    assert np.array_equal(np.stack([f, s], 1), keys) and np.array_equal(c, counts)
    again = PairCounts().add(f, s, c).add(f[:3], s[:3], [10, 10, 10]).pairs
    assert again[2][:3].tolist() == (c[:3] + 10).tolist() and again[2].sum() == 1030


@pytest.mark.parametrize("seed", range(12))
def test_d2co_two_means_split_of_counts_against_brute_force(seed):
    """200 random segments of tied values with row counts (the first of one entry and values
    far from 0, or of several and values in [0, 1)): the split is at a boundary between two entries and its within-cluster
    sum of squares over the rows is the least of all such boundaries; one entry: i = 1."""
    rng = np.random.default_rng(seed)
    sizes = np.concatenate([[1 if seed % 2 else 6], rng.integers(1, 9, 199)])
    values = np.concatenate([np.sort(rng.choice(20, n, replace=False)).astype(float) for n in sizes])
    values = values + 5.0 if seed % 2 else values / 20  # far from 0, or in [0, 1)
    counts = rng.integers(1, 5, len(values))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    best = two_means_split(values, starts, sizes, counts)
    sse = lambda a: ((a - a.mean()) ** 2).sum() if len(a) else 0.0  # noqa: E731
    for s, n, i in zip(starts, sizes, best):
        rows = np.repeat(values[s:s + n], counts[s:s + n])
        if n == 1:
            assert i == 1
            continue
        boundaries = np.cumsum(counts[s:s + n])[:-1]
        assert i in boundaries
        assert sse(rows[:i]) + sse(rows[i:]) == pytest.approx(min(sse(rows[:k]) + sse(rows[k:]) for k in boundaries))


def plain_em(rows, max_iter, tol, reg_covar):
    """A reference EM on one group's rows, written plainly: the 2-means start over splits
    between distinct values, then sklearn's stopping rule on the mean log-likelihood."""
    x = np.sort(rows)
    splits = [k for k in range(1, len(x)) if x[k] != x[k - 1]]
    sse = lambda a: ((a - a.mean()) ** 2).sum()  # noqa: E731
    i = min(splits, key=lambda k: (sse(x[:k]) + sse(x[k:]), k)) if splits else 1
    resp = np.zeros((len(x), 2))
    resp[:i, 0], resp[i:, 1] = 1.0, 1.0

    def m_step(resp):
        nk = resp.sum(0) + 10 * np.finfo(float).eps
        mean = (resp * x[:, None]).sum(0) / nk
        return nk / len(x), mean, (resp * (x[:, None] - mean) ** 2).sum(0) / nk + reg_covar

    weight, mean, var = m_step(resp)
    previous = -np.inf
    for _ in range(max_iter):
        log_p = np.log(weight) - 0.5 * np.log(2 * np.pi * var) - 0.5 * (x[:, None] - mean) ** 2 / var
        norm = np.logaddexp(log_p[:, 0], log_p[:, 1])
        if abs(norm.mean() - previous) < tol:
            break
        previous = norm.mean()
        weight, mean, var = m_step(np.exp(log_p - norm[:, None]))
    order = np.argsort(mean, kind="stable")
    return weight[order], mean[order], var[order]


@pytest.mark.parametrize("max_iter,tol,reg_covar", [(500, 1e-8, 1e-6), (3, 1e-8, 0.5), (500, 1e-2, 1e-3)])
def test_d2co_mixture_fit_from_counts_equals_a_plain_em_on_the_rows(monkeypatch, max_iter, tol, reg_covar):
    """Groups of tied values given as value counts (one group of one value; groups stopping
    at different iterations): the fit equals a plain EM over each group's rows; in chunks
    smaller than a group too."""
    rng = np.random.default_rng(4)
    groups, values, counts = [], [], []
    for g, (a, b, n) in enumerate([(2.0, 9.0, 40), (0.0, 3.0, 25), (5.0, 5.0, 1), (1.0, 30.0, 60)]):
        v = np.unique(np.round(np.concatenate([rng.normal(a, 1.0, n), rng.normal(b, 2.0, n)]) * 2) / 2)
        groups.append(np.full(len(v), g))
        values.append(v)
        counts.append(rng.integers(1, 6, len(v)))
    groups, values, counts = (np.concatenate(a) for a in (groups, values, counts))
    for chunk in (1 << 20, 20):
        monkeypatch.setattr(d2co, "FIT_CHUNK_ROWS", chunk)
        ours = fit_two_gaussians(values, groups, max_iter, tol, reg_covar, counts)
        assert all(np.isfinite(p).all() for p in ours)
        for g in range(4):
            rows = np.repeat(values[groups == g], counts[groups == g])
            for a, b in zip(ours, plain_em(rows, max_iter, tol, reg_covar)):
                np.testing.assert_allclose(a[g], b, rtol=1e-9, atol=1e-12)


def test_d2co_bins_count_rows_not_pairs():
    """duration_bin_means on value counts: a bin's rows are the sum of its counts; a bin with
    exactly min_bin_rows rows is fitted; the fit weighs each value by its rows (as the same
    rows one by one)."""
    durations = np.array([10.0] * 4 + [20.0] * 2 + [30.0] * 2)
    watch = np.array([1.0, 2.0, 8.0, 9.0, 3.0, 4.0, 5.0, 6.0])
    counts = np.array([30, 10, 5, 15, 1, 2, 1, 1])  # bin 20: 3 rows (fitted), bin 30: 2 (not)
    keys, x, c = duration_bin_sample(np.repeat(watch, counts), np.repeat(durations, counts), 1.0, True)
    assert c.tolist() == counts.tolist()
    fitted, lo, hi, rows = duration_bin_means(keys, x, c, 3, 1, 500, 1e-6, 1e-6, 0.1)
    assert fitted.tolist() == [10.0, 20.0] and rows.tolist() == [60, 3]
    one_by_one = duration_bin_means(np.repeat(keys, c), np.repeat(x, c), np.ones(c.sum(), dtype=np.int64), 3, 1, 500,
                                    1e-6, 1e-6, 0.1)
    for a, b in zip((fitted, lo, hi, rows), one_by_one):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    weights, means, _ = fit_two_gaussians(x[:4], np.zeros(4, dtype=np.int64), 500, 1e-6, 1e-6, c[:4])
    np.testing.assert_allclose(means[0], [(30 * 1 + 10 * 2) / 40, (5 * 8 + 15 * 9) / 20], rtol=1e-6)
    np.testing.assert_allclose(weights[0], [40 / 60, 20 / 60], rtol=1e-6)


def test_d2co_nearest_bin_with_wider_bins(toy_root):
    """Bins of 2 s (keys round(d / 2)): each row takes its nearest fitted bin, the lower on a tie."""
    model, _ = build("D2Co", toy_root, duration_bin_width=2.0)
    model.bin_keys = torch.tensor([2.0, 5.0, 9.0])
    model.mu_minus, model.mu_plus = torch.tensor([0.1, 0.2, 0.3]), torch.tensor([1.0, 2.0, 3.0])
    d = torch.tensor([14.0, 15.2, 13.2, 9.2, 1.0, 40.0])  # keys 7 (tie 5|9), 8, 7 (tie), 5, 0, 20
    lo, hi = model.bin_means(d)
    torch.testing.assert_close(lo.float(), torch.tensor([0.2, 0.3, 0.2, 0.2, 0.1, 0.3]))
    torch.testing.assert_close(hi.float(), torch.tensor([2.0, 3.0, 2.0, 2.0, 1.0, 3.0]))


def test_d2co_predicts_through_its_head_and_maps_bce_outputs_by_the_sigmoid(toy_root):
    model, train = build("D2Co", toy_root)
    rows = train.inter_feat[:8]
    assert model.predict(rows).shape == (8,) and model.calculate_loss(rows).dim() == 0
    for loss, f, u in (("mse", 0.5, 0.5), ("bce", 0.0, 0.5), ("bce", 2.0, 1 / (1 + math.exp(-2.0)))):
        overrides = {"d2co_loss": "bce", "clip_label": True} if loss == "bce" else {}
        model, _ = build("D2Co", toy_root, **overrides)
        model.bin_keys, model.mu_minus, model.mu_plus = torch.tensor([10.0]), torch.tensor([2.0]), torch.tensor([8.0])
        model.forward = lambda interaction, f=f: torch.tensor([f])
        assert model.predict(batch(duration=[10.0])).item() == pytest.approx(2.0 + u * 6.0, rel=1e-6)
