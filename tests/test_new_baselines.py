"""The newer baselines (CREAD, EGMN with HEGM's variant, CQE, D2Co): their label transforms,
heads and losses against hand-computed values and invariants, and a short end-to-end run of
the variants that the all-baselines test of test_baselines.py does not cover.

Unit tests build each model on conftest's toy dataset (multi-peaked watch ratios over 80
videos); the statistics code (split points, mixtures, smoothing) is tested on hand-made
arrays; D2Co's cases are in test_new_baselines_d2co.py. Training-only statistics,
checkpoints, finite losses and beating the training mean at default settings are covered
for every registered model by test_baselines.py.
"""

import math

import numpy as np
import pytest
import torch
from conftest import build as conftest_build
from recbole.data.interaction import Interaction

from baselines.cread import discretisation_errors, split_points, warped_levels

HEGM = {"skip_gate": True, "mean_shift": False, "truncated_gaussians": False, "lambda_entropy": 0.0, "structured_init": True}


def build(name, root, **overrides):
    """(model, training dataset) of `name` on conftest's toy data."""
    _, train, _, _, model = conftest_build(name, root, log_dir=str(root / "log"), **overrides)
    return model, train._dataset


def batch(**columns):
    return Interaction({k: torch.as_tensor(v, dtype=torch.float32) for k, v in columns.items()})


def training_labels(train):
    return train.inter_feat["label"].double().numpy()


# CREAD -------------------------------------------------------------------------------


def test_cread_warped_levels_hand_computed():
    np.testing.assert_allclose(warped_levels(0.0, 4), [0.25, 0.5, 0.75, 1.0])  # alpha -> 0: equal frequency
    z = np.array([0.5, 1.0])
    np.testing.assert_allclose(warped_levels(2.0, 2), (1 - np.exp(-2.0 * z)) / (1 - np.exp(-2.0)))
    assert np.all(np.diff(warped_levels(3.0, 10)) > 0) and warped_levels(3.0, 10)[-1] == pytest.approx(1.0)
    # alpha > 0 puts the levels closer together near 1
    assert np.all(np.diff(np.diff(warped_levels(3.0, 10))) < 0)


def test_cread_discretisation_errors_hand_computed():
    # points 1, 3 at levels 0.5, 1: dt = (1, 2), dg = (0.5, 0.5)
    a_w, a_b = discretisation_errors(np.array([1.0, 3.0]), np.array([0.5, 1.0]))
    assert a_w == pytest.approx(0.5 * (1 / 0.5 + 4 / 0.5)) and a_b == pytest.approx(0.5 * 5)


def test_cread_split_points_are_monotone_and_span_the_training_range():
    rng = np.random.default_rng(0)
    labels = np.concatenate([np.zeros(200), np.full(300, 15.0), rng.exponential(10.0, 1500)])  # ties at 0 and 15 s
    grid = np.arange(0.001, 5.0, 0.1)
    alpha, points = split_points(labels, 50, None, grid, 50.0)
    assert np.all(np.diff(points) > 0) and points[0] > 0  # strictly increasing, positive: no zero gap
    assert points[-1] == labels.max()  # gamma(1) = 1: the last point is the training maximum
    levels = warped_levels(alpha, 50)
    expected = np.unique(np.quantile(labels, levels))
    np.testing.assert_allclose(points, expected[expected > 0])
    assert len(points) < 50  # the 10% of zeros and the 15% at 15 s each collapse several levels
    # the chosen alpha minimises A_w + 50 A_b over the grid (on all M levels, repeats included)
    def objective(a):
        a_w, a_b = discretisation_errors(np.quantile(labels, warped_levels(a, 50)), warped_levels(a, 50))
        return a_w + 50.0 * a_b

    assert objective(alpha) == pytest.approx(min(objective(a) for a in grid))
    # a fixed alpha skips the search
    assert split_points(labels, 50, 2.5, grid, 50.0)[0] == 2.5


def test_cread_model_stores_training_split_points_and_starts_at_the_training_survival(toy_root):
    model, train = build("CREAD", toy_root, split_alpha=1.5, num_split_points=20)
    labels = training_labels(train)
    _, expected = split_points(labels, 20, 1.5, [], 50.0)
    np.testing.assert_allclose(model.split_points.numpy(), expected, rtol=1e-6)
    assert model.split_points[-1].item() == pytest.approx(labels.max(), rel=1e-6)
    assert model.report()["split_alpha"] == 1.5
    # head biases = logit of the training share above each point: the untrained restore is the
    # training mean of the largest point below each watch time (0 below the first), plus the
    # last head's clipped share 1 / (n + 1) of its gap (no training row exceeds the maximum)
    points = model.split_points.double().numpy()
    below = np.searchsorted(points, labels, side="left")  # number of points < y
    lower_edge = np.where(below > 0, points[np.maximum(below - 1, 0)], 0.0)
    expected = lower_edge.mean() + (points[-1] - points[-2]) / (len(labels) + 1)
    restored = model.restore(torch.sigmoid(model.head.bias).unsqueeze(0)).item()
    assert restored == pytest.approx(expected, rel=1e-4)


def test_cread_restore_of_one_hot_heads_gives_the_interval_values(toy_root):
    model, _ = build("CREAD", toy_root)
    model.split_points = torch.tensor([1.0, 3.0, 6.0, 10.0])
    model.gaps = torch.tensor([1.0, 2.0, 3.0, 4.0])
    # one head on: that interval's width (its share of the restored value)
    torch.testing.assert_close(model.restore(torch.eye(4)), torch.tensor([1.0, 2.0, 3.0, 4.0]))
    # "y lies in interval m" (P(y > t_j) = 1 for j < m, else 0): the interval's lower edge t_{m-1}
    steps = torch.tensor([[0.0, 0, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]])
    torch.testing.assert_close(model.restore(steps), torch.tensor([0.0, 1.0, 3.0, 6.0, 10.0]))


def test_cread_loss_parts_hand_computed(toy_root):
    model, _ = build("CREAD", toy_root, lambda_restore=0.5, lambda_monotone=0.3, huber_delta=0.5)
    model.split_points = torch.tensor([1.0, 3.0, 6.0])
    model.gaps = torch.tensor([1.0, 2.0, 3.0])
    model.label_std = torch.tensor(2.0)
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 1.0, -3.0]])
    wt = torch.tensor([4.0, 0.5])
    model.forward = lambda interaction: logits
    classification, restore, monotone = model.calculate_loss(batch(label=wt))
    p = torch.sigmoid(logits).tolist()
    targets = [[1, 1, 0], [0, 0, 0]]  # 4 s > 1, 3 but not 6; 0.5 s above none
    bce = -sum(t * math.log(q) + (1 - t) * math.log(1 - q) for pr, tr in zip(p, targets) for q, t in zip(pr, tr)) / 6
    assert classification.item() == pytest.approx(bce, rel=1e-5)

    def huber(e, d=0.5):
        return 0.5 * e * e if abs(e) <= d else d * (abs(e) - 0.5 * d)

    y_hat = [pr[0] * 1 + pr[1] * 2 + pr[2] * 3 for pr in p]
    expected = 0.5 * sum(huber((yh - y) / 2.0) for yh, y in zip(y_hat, [4.0, 0.5])) / 2
    assert restore.item() == pytest.approx(expected, rel=1e-5)
    # monotonicity: only increases of P(y > t) along the heads count
    violations = [max(pr[1] - pr[0], 0) + max(pr[2] - pr[1], 0) for pr in p]
    assert violations[0] > 0 and violations[1] > 0
    assert monotone.item() == pytest.approx(0.3 * sum(violations) / 2, rel=1e-5)


# EGMN --------------------------------------------------------------------------------


def row_params(params, r, n):
    """Row r of mixture parameters, repeated n times."""
    return tuple(p[r : r + 1].expand(n, -1) for p in params)


@pytest.mark.parametrize("variant", ["egmn", "hegm"])
def test_egmn_density_integrates_to_one_and_its_mean_is_the_closed_form(toy_root, variant):
    model, _ = build("EGMN", toy_root, num_gaussians=3, **(HEGM if variant == "hegm" else {}))
    gen = torch.Generator().manual_seed(0)
    raw = torch.randn(4, 3 * 3 + 2, generator=gen, dtype=torch.float64) * 1.5
    raw[0, 1:4] = -4.0  # row 0: Gaussians near 0 s, where truncation matters most
    params = model.mixture(raw)
    # HEGM's Gaussians are not truncated (some mass below 0 s); the exponential jumps at 0, so
    # the grid is cut there and each side integrated on its own
    pieces = [torch.linspace(0.0, 200.0, 2000001, dtype=torch.float64)]
    if variant == "hegm":
        pieces.insert(0, torch.linspace(-40.0, -1e-12, 400001, dtype=torch.float64))
    for r in range(len(raw)):
        mass = mean = 0.0
        for y in pieces:
            density = model.log_density(row_params(params, r, len(y)), y).exp()
            mass += torch.trapezoid(density, y).item()
            mean += torch.trapezoid(y * density, y).item()
        assert mass == pytest.approx(1.0, abs=1e-7)
        assert model.mixture_mean(tuple(p[r : r + 1] for p in params)).item() == pytest.approx(mean, rel=1e-6)
    # truncated Gaussians have no density below 0 s; the exponential never has
    below = model.log_density(row_params(params, 0, 1), torch.tensor([-1.0], dtype=torch.float64))
    assert (below.item() == -math.inf) == (variant == "egmn")


def test_egmn_truncated_mean_matches_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    from baselines.egmn import EGMN

    model = EGMN.__new__(EGMN)  # only the formulas: no dataset needed
    model.truncated = True
    mu, sigma, rate = torch.tensor([[0.3, 2.0]], dtype=torch.float64), torch.tensor([[1.0, 0.5]], dtype=torch.float64), torch.tensor([[4.0]], dtype=torch.float64)
    log_w = torch.log(torch.tensor([[0.2, 0.5, 0.3]], dtype=torch.float64))
    expected = 0.2 / 4.0 + sum(w * scipy_stats.truncnorm.mean(-m / s, np.inf, loc=m, scale=s) for w, m, s in [(0.5, 0.3, 1.0), (0.3, 2.0, 0.5)])
    assert model.mixture_mean((log_w, rate, mu, sigma)).item() == pytest.approx(expected, rel=1e-9)


def test_egmn_parametrisation_and_hegm_structured_start(toy_root):
    model, train = build("EGMN", toy_root, num_gaussians=2)
    assert model.label_scale.item() == pytest.approx(training_labels(train).max(), rel=1e-6)  # the maximum by default
    raw = torch.tensor([[0.0, 0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0]])
    log_w, rate, mu, sigma = model.mixture(raw)
    r = 2 * math.log(2) + 1e-6  # softplus with beta 0.5 at 0
    assert rate.item() == pytest.approx(r)
    torch.testing.assert_close(mu, torch.tensor([[math.log(2) + 1 / r, math.log1p(math.e) + 1 / r]]))  # mean shift
    torch.testing.assert_close(sigma, torch.tensor([[math.log(2), math.log1p(math.exp(-1))]]) + 1e-6)
    torch.testing.assert_close(log_w.exp(), torch.full((1, 3), 1 / 3))

    hegm, train = build("EGMN", toy_root, num_gaussians=4, label_scale_quantile=0.99, **HEGM)
    assert hegm.label_scale.item() == pytest.approx(np.quantile(training_labels(train), 0.99), rel=1e-6)
    log_w, rate, mu, sigma = hegm.mixture(hegm.head(torch.zeros(1, hegm.backbone.output_dim)))
    assert rate.item() == pytest.approx(20.0, rel=1e-4)  # exponential mean 0.05
    torch.testing.assert_close(mu, torch.linspace(0.1, 0.9, 4).unsqueeze(0), rtol=1e-4, atol=1e-5)  # no mean shift
    torch.testing.assert_close(sigma, torch.full((1, 4), 1 / 6), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(log_w.exp(), torch.tensor([[0.5, 0.125, 0.125, 0.125, 0.125]]))  # the skip gate at 1/2


def test_egmn_loss_parts_hand_computed(toy_root):
    model, _ = build("EGMN", toy_root, num_gaussians=1, lambda_entropy=0.3, lambda_l1=2.0)
    model.label_scale = torch.tensor(10.0)
    w0, rate, mu, sigma = 0.4, 2.0, 1.5, 0.5
    params = (torch.log(torch.tensor([[w0, 1 - w0]] * 2)), torch.tensor([[rate]] * 2), torch.tensor([[mu]] * 2), torch.tensor([[sigma]] * 2))
    model.forward = lambda interaction: params
    nll, entropy, l1 = model.calculate_loss(batch(label=[5.0, 20.0]))  # 0.5 and 2.0 in label-scale units

    def phi_cdf(x):
        return 0.5 * (1 + math.erf(x / math.sqrt(2)))

    def density(y):
        gauss = math.exp(-0.5 * ((y - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi)) / phi_cdf(mu / sigma)
        return w0 * rate * math.exp(-rate * y) + (1 - w0) * gauss

    assert nll.item() == pytest.approx(-(math.log(density(0.5)) + math.log(density(2.0))) / 2, rel=1e-5)
    h = -(w0 * math.log(w0) + (1 - w0) * math.log(1 - w0))
    assert entropy.item() == pytest.approx(-0.3 * h, rel=1e-5)  # a bonus: entropy lowers the loss
    a = mu / sigma
    mean = w0 / rate + (1 - w0) * (mu + sigma * math.exp(-0.5 * a * a) / math.sqrt(2 * math.pi) / phi_cdf(a))
    assert l1.item() == pytest.approx(2.0 * (abs(mean - 0.5) + abs(mean - 2.0)) / 2, rel=1e-5)
    assert model.predict(batch(label=[0.0])).tolist() == pytest.approx([10.0 * mean] * 2, rel=1e-5)  # seconds


# CQE ---------------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ["relu", "softplus"])
def test_cqe_quantiles_are_monotone_and_non_negative_by_construction(toy_root, activation):
    model, _ = build("CQE", toy_root, increment_activation=activation, num_levels=9)
    torch.testing.assert_close(model.levels, torch.arange(1, 10) / 10.0)
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(500, 9, generator=gen) * 5  # any head output
    q = model.quantiles(z)
    assert torch.all(q >= 0) and torch.all(torch.diff(q, dim=-1) >= 0)
    # end to end, on any input features
    with torch.no_grad():
        q = model.quantiles(model.head(torch.randn(200, model.backbone.output_dim, generator=gen) * 10))
    assert torch.all(q >= 0) and torch.all(torch.diff(q, dim=-1) >= 0)


def test_cqe_starts_at_the_training_marginal_quantiles(toy_root):
    model, train = build("CQE", toy_root, num_levels=19)
    labels = training_labels(train)
    q = model.label_scale * model.quantiles(model.head.bias.unsqueeze(0))  # the head's output with zero weights
    np.testing.assert_allclose(q[0].detach().numpy(), np.quantile(labels, np.arange(1, 20) / 20), rtol=1e-4, atol=1e-4)
    assert model.label_scale.item() == pytest.approx(labels.std(), rel=1e-6)


def test_cqe_pinball_loss_hand_computed(toy_root):
    model, _ = build("CQE", toy_root, num_levels=3)
    model.label_scale = torch.tensor(2.0)
    q = torch.tensor([[0.5, 1.0, 2.0], [0.5, 1.0, 2.0]])  # 1, 2, 4 s at levels 1/4, 1/2, 3/4
    h = torch.zeros(2, model.backbone.output_dim)
    model.forward = lambda interaction: (q, h)
    pinball, combination = model.calculate_loss(batch(label=[3.0, 0.0]))
    # 3 s: errors +2, +1, -1 s -> 1/4*2, 1/2*1, 1/4*1; 0 s: errors -1, -2, -4 s -> 3/4*1, 1/2*2, 1/4*4 (in units of 2 s)
    row_3s = (0.25 * 1.0 + 0.5 * 0.5 + 0.25 * 0.5) / 3
    row_0s = (0.75 * 0.5 + 0.5 * 1.0 + 0.25 * 2.0) / 3
    assert pinball.item() == pytest.approx((row_3s + row_0s) / 2, rel=1e-6)
    assert combination.item() == 0.0  # no combination head unless prediction: dynamic


def test_cqe_prediction_strategies_hand_computed(toy_root):
    q = torch.tensor([[1.0, 2.0, 4.0]])  # levels 1/4, 1/2, 3/4
    h = torch.zeros(1, 64)
    median, _ = build("CQE", toy_root, num_levels=3)
    assert median.point(q, h).item() == pytest.approx(2.0)
    low, _ = build("CQE", toy_root, num_levels=3, prediction_level=0.375)  # between 1/4 and 1/2: conservative
    assert low.point(q, h).item() == pytest.approx(1.5)
    mean, _ = build("CQE", toy_root, num_levels=3, prediction="expectation")
    assert mean.point(q, h).item() == pytest.approx(7.0 / 3)
    dynamic, _ = build("CQE", toy_root, num_levels=3, prediction="dynamic", lambda_combination=0.5)
    assert dynamic.point(q, torch.zeros(1, dynamic.backbone.output_dim)).item() == pytest.approx(7.0 / 3)  # starts at the mean
    with pytest.raises(ValueError, match="prediction_level"):
        build("CQE", toy_root, num_levels=3, prediction_level=0.1)  # below the lowest level 1/4


def test_cqe_dynamic_combination_loss_trains_only_the_combiner(toy_root):
    model, _ = build("CQE", toy_root, num_levels=3, prediction="dynamic", lambda_combination=0.5)
    model.label_scale = torch.tensor(1.0)
    with torch.no_grad():
        model.combiner.bias.copy_(torch.log(torch.tensor([0.2, 0.3, 0.5])))
    z = torch.zeros(1, 3, requires_grad=True)
    h = torch.zeros(1, model.backbone.output_dim, requires_grad=True)
    q = model.quantiles(z) + torch.tensor([[1.0, 2.0, 4.0]])  # quantiles 1.69.., non-trivial graph
    pinball, combination = model.losses(q, h, torch.tensor([3.0]))
    combined = (torch.tensor([0.2, 0.3, 0.5]) * q.detach()).sum().item()
    assert combination.item() == pytest.approx(0.5 * abs(combined - 3.0), rel=1e-5)
    combination.backward()
    assert z.grad is None or torch.all(z.grad == 0)  # the quantiles are detached
    assert h.grad is None or torch.all(h.grad == 0)  # and so is the backbone
    assert model.combiner.bias.grad.abs().sum() > 0


# End to end: the variants (defaults are covered by test_baselines.py) ------------------


@pytest.mark.parametrize(
    "name, overrides",
    [("EGMN", HEGM), ("CQE", {"prediction": "dynamic"}), ("D2Co", {"label_alpha": 0.3, "clip_label": True, "smoothing_window": 10, "d2co_loss": "bce"})],
    ids=["HEGM", "CQE-dynamic", "D2Co-own-label"],
)
def test_variant_trains_and_beats_the_training_mean(name, overrides, tmp_path_factory):
    from recbole_lda.quick_start.quick_start import run

    root = tmp_path_factory.getbasetemp() / "new_baselines_synthetic"
    results = run(name, "synthetic", config_dict={
        "synthetic_rows": 20000, "synthetic_users": 300, "synthetic_items": 400, "epochs": 3, "train_batch_size": 512,
        "show_progress": False, "state": "WARNING", "data_path": str(root / "data"), "log_dir": str(root / "log"),
        "checkpoint_dir": str(root / "saved"),
        **overrides,
    })
    mae, baseline = results["test_result"]["mae"], results["reference"]["train_mean"]["test_mae"]
    assert np.isfinite(mae) and mae < baseline, (name, mae, baseline)
