"""Every model's loss parts against hand computation on a tiny batch, with NON-default
weights and settings, so that a setting that never reaches the code, a part with the wrong
weight or scale, or a flipped sign fails here (in seconds, not in an end-to-end run).

The model's head output is fixed by replacing `forward` where the loss only depends on it;
the expected values are written out with numpy/math from the formulas in each model's
docstring, with the training statistics read from the training split itself.
"""

import math

import numpy as np
import ot as pot
import pytest
import torch
import torch.nn.functional as F

from pinning_helpers import LDA_SMALL, batch, build, write_toy
from recbole_lda.model import lda as lda_module
from recbole_lda.model.ot import alignment_targets


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toy(tmp_path_factory.mktemp("loss_values"))


def train_labels(train):
    return train.inter_feat["label"].double().numpy()


def softplus(x):
    return math.log1p(math.exp(-abs(x))) + max(x, 0.0)


def bce(z, t):
    return softplus(z) - t * z  # -[t log s(z) + (1 - t) log(1 - s(z))]


# VR ----------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["huber", "l1", "mse"])
def test_vr_loss_is_the_configured_loss_on_standardised_watch_time(toy, loss):
    model, train, _ = build("VR", toy, regression_loss=loss)
    labels = train_labels(train)
    mean, std = labels.mean(), labels.std(ddof=1)
    f = torch.tensor([0.3, -1.2, 2.5, 0.0])
    y = np.array([3.0, 0.0, 40.0, 12.5])
    model.forward = lambda interaction: f
    d = f.double().numpy() - (y - mean) / std
    expected = {"mse": np.mean(d**2), "l1": np.mean(np.abs(d)),
                "huber": np.mean(np.where(np.abs(d) < 1, 0.5 * d**2, np.abs(d) - 0.5))}[loss]
    assert model.calculate_loss(batch(label=torch.tensor(y, dtype=torch.float32))).item() == pytest.approx(expected, rel=1e-5)
    pred = model.predict(batch(label=torch.zeros(4)))
    np.testing.assert_allclose(pred.numpy(), np.maximum(mean + std * f.double().numpy(), 0.0), rtol=1e-5)


# WLR ---------------------------------------------------------------------------------


def test_wlr_parts_hand_computed_per_row(toy):
    model, train, _ = build("WLR", toy)
    mean = train_labels(train).mean()
    z = torch.tensor([0.5, -2.0, 3.0, 1.0])
    w = [4.0, 0.0, 30.0, -2.0]  # a negative label counts as 0 s
    model.forward = lambda interaction: z
    positive, negative = model.calculate_loss(batch(label=torch.tensor(w)))
    zs = z.tolist()
    assert positive.item() == pytest.approx(np.mean([max(wi, 0) * softplus(-zi) for wi, zi in zip(w, zs)]) / mean, rel=1e-5)
    assert negative.item() == pytest.approx(np.mean([softplus(zi) for zi in zs]) / mean, rel=1e-5)


# D2Q ---------------------------------------------------------------------------------


def test_d2q_loss_is_mse_on_the_group_quantile(toy):
    model, _, _ = build("D2Q", toy, duration_groups=7, quantile_points=4)
    model.group_edges = torch.tensor([10.0])
    model.group_quantiles = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0], [0.0, 10.0, 20.0, 30.0, 40.0]])
    f = torch.tensor([0.2, 0.9, -0.1, 0.5])
    wt, d = torch.tensor([1.5, 30.0, 5.0, 15.0]), torch.tensor([5.0, 12.0, 9.0, 10.0])
    q = [1.5 / 4, 0.75, 1.0, 1.5 / 4]  # groups 0, 1, 0 (above its max), 1 (duration on the cut goes up)
    model.forward = lambda interaction: f
    loss = model.calculate_loss(batch(label=wt, duration=d))
    assert loss.item() == pytest.approx(np.mean((f.numpy() - np.array(q)) ** 2), rel=1e-5)


# OR ----------------------------------------------------------------------------------


def test_or_loss_hand_computed(toy):
    model, _, _ = build("OR", toy, num_thresholds=5)
    model.thresholds = torch.tensor([0.0, 2.0, 5.0])
    logits = torch.tensor([[1.0, -0.5, 0.2], [0.3, 2.0, -1.0]])
    model.forward = lambda interaction: logits
    labels = [0.5, 7.0]  # 0.5 > 0 only; 7 > all
    targets = [[1, 0, 0], [1, 1, 1]]
    expected = np.mean([bce(z, t) for zr, tr in zip(logits.tolist(), targets) for z, t in zip(zr, tr)])
    assert model.calculate_loss(batch(label=torch.tensor(labels))).item() == pytest.approx(expected, rel=1e-5)


# CWM ---------------------------------------------------------------------------------


def test_cwm_parts_with_non_default_cost_and_sigma(toy):
    model, _, _ = build("CWM", toy, cwm_cost=25.0, cwm_sigma=1.5)
    assert (model.cost, model.sigma) == (25.0, 1.5)
    f = torch.tensor([0.5, -1.0, 2.0, 0.0])
    wt, d = torch.tensor([3.0, 10.0, 0.0, 12.0]), torch.tensor([10.0, 10.0, 5.0, 8.0])  # rows 2 and 4 censored
    model.forward = lambda interaction: f
    unc, cen = model.calculate_loss(batch(label=wt, duration=d))
    tau = [math.log(math.exp(-25 / (w + 1)) / (1 - math.exp(-25 / (w + 1)))) for w in wt.tolist()]
    z = [fi - ti for fi, ti in zip(f.tolist(), tau)]
    exp_unc = (z[0] ** 2 + z[2] ** 2) / (2 * 1.5**2) / 4
    exp_cen = (softplus(-z[1] / 1.5) + softplus(-z[3] / 1.5)) / 4
    assert unc.item() == pytest.approx(exp_unc, rel=1e-5)
    assert cen.item() == pytest.approx(exp_cen, rel=1e-5)
    pred = model.predict(batch(label=wt, duration=d))
    expected = [min(max(25 / softplus(-fi) - 1, 0.0), di) for fi, di in zip(f.tolist(), d.tolist())]
    np.testing.assert_allclose(pred.numpy(), expected, rtol=1e-5)


# TPM ---------------------------------------------------------------------------------


def test_tpm_parts_with_non_default_weights(toy):
    model, _, _ = build("TPM", toy, tree_height=2, lambda_mse=0.7, lambda_var=0.3)
    model.edges = torch.tensor([0.0, 1.0, 3.0, 6.0, 10.0])
    model.leaf_values = torch.tensor([0.5, 2.0, 4.5, 8.0])
    model.label_var = torch.tensor(4.0)
    logits = torch.tensor([[0.4, -1.0, 2.0], [-0.3, 0.8, -0.2], [1.5, 0.1, 0.7]])
    labels = [0.5, 3.0, 9.0]  # leaves 0, 2 (on the edge 3: goes up), 3
    model.forward = lambda interaction: logits
    tree, mse, variance = model.calculate_loss(batch(label=torch.tensor(labels)))

    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    leaf_of = [0, 2, 3]
    bces, means, variances = [], [], []
    for (root, left, right), k, y in zip(logits.tolist(), leaf_of, labels):
        node = left if k < 2 else right
        bces += [bce(root, float(k >= 2)), bce(node, float(k % 2))]
        p = [(1 - sig(root)) * (1 - sig(left)), (1 - sig(root)) * sig(left), sig(root) * (1 - sig(right)), sig(root) * sig(right)]
        v = [0.5, 2.0, 4.5, 8.0]
        m = sum(pi * vi for pi, vi in zip(p, v))
        means.append((m - y) ** 2)
        variances.append(sum(pi * (vi - m) ** 2 for pi, vi in zip(p, v)))
    assert tree.item() == pytest.approx(np.mean(bces), rel=1e-5)
    assert mse.item() == pytest.approx(0.7 * np.mean(means) / 4.0, rel=1e-5)
    assert variance.item() == pytest.approx(0.3 * np.mean(variances) / 4.0, rel=1e-5)


def test_tpm_scale_is_the_training_variance_even_below_one(tmp_path):
    """Watch times in hours rather than seconds: a variance far below 1 is used as it is (the
    floor only guards against 0)."""
    model, train, _ = build("TPM", write_toy(tmp_path, label_scale=0.01))
    var = train_labels(train).var()
    assert var < 0.1 and model.label_var.item() == pytest.approx(var, rel=1e-5)


# LDA ---------------------------------------------------------------------------------

OT_SETTINGS = dict(ot_reg=0.3, ot_reg_m=2.5, ot_max_iter=7, ot_stop_threshold=1e-4)


@pytest.fixture(scope="module")
def lda(toy):
    model, train, test = build("LDA", toy, lambda_ot=0.37, temperature=0.25, regression_loss="mse", regression_target="ratio",
                               **OT_SETTINGS, **LDA_SMALL)
    model.eval()  # no dropout: forward is deterministic
    with torch.no_grad():  # distinct anchors (a 5-step VQ-VAE leaves nearly equal ones): beta is far from uniform
        gen = torch.Generator().manual_seed(0)
        model.anchor_quantiles.copy_(torch.sort(torch.rand(model.anchor_quantiles.shape, generator=gen) * 3, -1).values)
    return model, train, test


def first_rows(dataset, n=40):
    return dataset.inter_feat[torch.arange(n)]


def test_lda_regression_part_is_the_configured_loss_on_scaled_watch_time(lda):
    model, train, _ = lda
    scale = train_labels(train).std()
    assert model.label_scale.item() == pytest.approx(scale, rel=1e-6)
    inter = first_rows(train)
    pred = model.predict(inter).double().detach().numpy()
    y = inter["label"].double().numpy()
    regression = model.calculate_loss(inter)[0]
    assert regression.item() == pytest.approx(np.mean(((pred - y) / scale) ** 2), rel=1e-4)


def test_lda_beta_and_prediction_follow_the_formula(lda):
    """beta = softmax(cos / temperature) over the row's own bucket; y = duration * softplus(g(beta p)).
    A uniform beta (or one over every anchor, or without the temperature) fails here."""
    model, train, _ = lda
    inter = first_rows(train)
    with torch.no_grad():
        pred, cos, log_beta, bucket = model.forward(inter)[:4]
        h = F.normalize(model.phi_x(model.backbone(inter)), dim=-1)
        p = F.normalize(model.phi_a(model.anchor_table()), dim=-1)
        torch.testing.assert_close(cos, h @ p.T)
        own = bucket[:, None] == model.anchor_bucket[None, :]
        assert own.sum(1).eq(4).all()
        expected = torch.where(own, torch.exp(cos / 0.25), torch.zeros_like(cos))
        expected = expected / expected.sum(1, keepdim=True)
        torch.testing.assert_close(log_beta.exp(), expected, atol=1e-6, rtol=1e-5)
        assert (expected.max(1).values - expected.where(own, torch.full_like(expected, 1.0)).min(1).values > 0.01).all()
        torch.testing.assert_close(pred, F.softplus(model.g_out(model.g(expected @ p))).squeeze(-1) * inter["duration"],
                                   atol=1e-5, rtol=1e-5)
        edges = model.bucket_edges
        torch.testing.assert_close(bucket, torch.clamp(torch.searchsorted(edges[1:-1], inter["duration"], right=True), 0, 2))


def test_lda_watch_time_target_scales_by_the_training_std(toy):
    """regression_target: watch_time: y = std of training labels (population) * softplus(g(beta p)), no duration factor."""
    model, train, _ = build("LDA", toy, regression_target="watch_time", **LDA_SMALL)
    model.eval()
    inter = first_rows(train)
    with torch.no_grad():
        out = model.forward(inter)
        expected = F.softplus(model.g_out(model.g(out.log_beta.exp() @ out.p))).squeeze(-1)
        torch.testing.assert_close(out.pred, expected * float(train.inter_feat["label"].double().std(correction=0)), rtol=1e-5, atol=1e-4)


def test_lda_alignment_is_cross_entropy_with_the_configured_ot(lda, monkeypatch):
    model, train, _ = lda
    calls = []
    real = pot.unbalanced.sinkhorn_unbalanced

    def spy(a, b, M, reg, reg_m, **kw):
        calls.append((reg, reg_m, kw))
        return real(a, b, M, reg, reg_m, **kw)

    monkeypatch.setattr(pot.unbalanced, "sinkhorn_unbalanced", spy)

    def no_label_cost(*args):
        raise AssertionError("label_cost computed with ot_label_weight = 0")

    monkeypatch.setattr(model, "label_cost", no_label_cost)
    inter = first_rows(train)
    alignment = model.calculate_loss(inter)[1]
    assert calls and all(c == (0.3, 2.5, {"numItermax": 7, "stopThr": 1e-4}) for c in calls)

    with torch.no_grad():
        _, cos, log_beta, bucket = model.forward(inter)[:4]
    def ce(**ot):  # noqa: E306
        t = alignment_targets(1 - cos, bucket, model.anchor_bucket, "bucket", **ot)
        return -torch.where(t > 0, t * log_beta, torch.zeros_like(log_beta)).sum(1).mean().item()
    expected = ce(reg=0.3, reg_m=2.5, max_iter=7, stop_threshold=1e-4)
    assert alignment.item() == pytest.approx(0.37 * expected, rel=1e-5)
    assert expected > 0  # a cross-entropy: a flipped sign fails
    # the settings matter for the value, so a setting that does not reach the solver fails too
    assert abs(ce(reg=0.2, reg_m=1.0, max_iter=20, stop_threshold=1e-6) - expected) > 1e-3


def test_lda_alignment_uses_the_configured_share_of_the_batch(toy, monkeypatch):
    model, train, _ = build("LDA", toy, ot_batch_fraction=0.3, **LDA_SMALL)
    seen = []
    real = lda_module.alignment_targets
    monkeypatch.setattr(lda_module, "alignment_targets", lambda cost, *a, **kw: seen.append(cost.shape) or real(cost, *a, **kw))
    model.calculate_loss(first_rows(train, 40))
    assert seen == [(12, 12)]  # round(0.3 * 40) rows, all 3 x 4 anchors
    model.ot_batch_fraction = 0.01  # round(0.4) = 0: still one row
    model.calculate_loss(first_rows(train, 40))
    assert seen[1] == (1, 12)


def test_lda_label_cost_reaches_the_ot_cost_with_its_weight(toy, monkeypatch):
    model, train, _ = build("LDA", toy, ot_label_weight=0.6, ot_label_bandwidth=0.2, **LDA_SMALL)
    model.eval()
    seen = {}
    real = lda_module.alignment_targets

    def spy(cost, instance_bucket, anchor_bucket, scope, **kw):
        seen.update(cost=cost, kw=kw)
        return real(cost, instance_bucket, anchor_bucket, scope, **kw)

    monkeypatch.setattr(lda_module, "alignment_targets", spy)
    inter = first_rows(train, 10)
    inter.interaction["duration"] = inter["duration"] * 0.05  # sub-second videos too: the ratio is not clipped
    model.calculate_loss(inter)
    with torch.no_grad():
        _, cos, _, bucket = model.forward(inter)[:4]
    assert (inter["duration"] < 1).any()
    ratio = inter["label"] / inter["duration"]
    torch.testing.assert_close(seen["cost"], 1 - cos + 0.6 * model.label_cost(torch.log1p(ratio), bucket))
    assert seen["kw"] == dict(reg=0.2, reg_m=1.0, max_iter=20, stop_threshold=1e-6, anchor_mass=None)  # LDA.yaml's defaults (uniform mu_2)

    # label_cost by hand: bandwidth 0.2, anchors of bucket 0 at constant ratios
    table = torch.log1p(torch.tensor([0.1, 0.5, 1.0, 3.0]))[:, None].expand(4, 8)
    with torch.no_grad():
        model.anchor_quantiles[0] = table
    r = 0.7
    nll = [0.5 * ((math.log1p(r) - math.log1p(a)) / 0.2) ** 2 - math.log(8) for a in (0.1, 0.5, 1.0, 3.0)]
    expected = [min(v - min(nll), 2.0) for v in nll] + [2.0] * 8
    torch.testing.assert_close(model.label_cost(torch.log1p(torch.tensor([r])), torch.tensor([0]))[0],
                               torch.tensor(expected), atol=1e-4, rtol=1e-4)


def test_lda_label_cost_over_every_anchor_with_scope_all(toy):
    model, _, _ = build("LDA", toy, anchor_scope="all", ot_label_bandwidth=0.5, **LDA_SMALL)
    values = torch.tensor([0.1, 0.3, 0.5, 0.8, 1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0])  # one ratio per anchor
    with torch.no_grad():
        model.anchor_quantiles.copy_(torch.log1p(values).view(3, 4, 1).expand(3, 4, 8))
    ratio = torch.tensor([1.1, 0.2])
    got = model.label_cost(torch.log1p(ratio), torch.tensor([0, 2]))  # the bucket does not restrict scope "all"
    for row, r in enumerate(ratio.tolist()):
        nll = [0.5 * ((math.log1p(r) - math.log1p(a)) / 0.5) ** 2 for a in values.tolist()]
        expected = [min(v - min(nll), 2.0) for v in nll]
        torch.testing.assert_close(got[row], torch.tensor(expected), atol=1e-4, rtol=1e-4)


def test_lda_without_ot_never_solves(toy, monkeypatch):
    """lambda_ot: 0 skips the alignment: no OT solve, not a solve multiplied by 0."""
    model, train, _ = build("LDA", toy, lambda_ot=0.0, **LDA_SMALL)

    def forbidden(*args, **kwargs):
        raise AssertionError("the alignment was computed with lambda_ot = 0")

    monkeypatch.setattr(pot.unbalanced, "sinkhorn_unbalanced", forbidden)
    monkeypatch.setattr(lda_module, "alignment_targets", forbidden)
    monkeypatch.setattr(model, "alignment_loss", forbidden)
    regression, alignment, vq = model.calculate_loss(first_rows(train))
    assert alignment.item() == 0 and vq.item() == 0 and regression.item() > 0


def test_lda_joint_vq_part_has_its_weight(toy, monkeypatch):
    model, train, _ = build("LDA", toy, anchor_training="joint", lambda_vq=0.3, lambda_ot=0.0, **LDA_SMALL)
    monkeypatch.setattr(model, "vq_loss", lambda: torch.tensor(2.0))
    assert model.calculate_loss(first_rows(train))[2].item() == pytest.approx(0.6)
