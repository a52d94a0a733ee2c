"""LDA's third-round keys (properties/model/LDA.yaml): one phi for instances and anchors,
phi on the codebook, beta from the raw dot product, mu_2 from code usage, a linear g, the
quantile target over D2Q's label; and the anchor_label_match diagnostic."""

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from conftest import build
from recbole_lda.model.anchor_label import anchor_label_agreement, anchor_masses, nearest_anchor_counts
from recbole_lda.model.anchors import assign_buckets
from recbole_lda.model.backbone import training_values
from recbole_lda.model.ot import alignment_targets

SMALL = dict(vq_steps=5, num_buckets=3, num_anchors=4, num_sequences=32, sequence_length=8, projection_dim=8)


def rows(train, n=40):
    return train.dataset.inter_feat[torch.arange(n)]


# ---------------------------------------------------------------- phi_shared, anchor_input
def test_shared_phi_is_one_set_of_weights_for_instances_and_anchors(toy_root):
    _, train, _, _, model = build("LDA", toy_root, phi_shared=True, anchor_input="codebook", vq_code_dim=64, **SMALL)
    assert model.phi_a is None
    names = {name.split(".")[0] for name, _ in model.named_parameters()}
    assert "phi_x" in names and "phi_a" not in names
    model.eval()
    inter = rows(train)
    with torch.no_grad():
        out = model.forward(inter)
        codes = model.anchor_codes.flatten(0, 1)  # (D*K, 64): the codes, projected by phi_x
        torch.testing.assert_close(out.p, F.normalize(model.phi_x(codes), dim=-1))
        torch.testing.assert_close(out.h, F.normalize(model.phi_x(model.backbone(inter)), dim=-1))
        # one weight: moving phi_x moves the anchors too
        model.phi_x.weight.add_(0.5)
        assert (model.forward(inter).p - out.p).abs().max() > 1e-3


def test_shared_phi_refuses_inputs_of_another_size(toy_root):
    with pytest.raises(ValueError, match="phi_shared needs anchors of the instance vector's size 64"):
        build("LDA", toy_root, phi_shared=True, **SMALL)  # decoded anchors of 8 values


def test_codebook_input_has_the_codebooks_size(toy_root, monkeypatch):
    import recbole_lda.model.lda as lda_module

    fits = []
    real = lda_module.fit_from_config
    monkeypatch.setattr(lda_module, "fit_from_config", lambda *a, **kw: fits.append(real(*a, **kw)) or fits[-1])
    _, train, _, _, model = build("LDA", toy_root, anchor_input="codebook", vq_code_dim=5, **SMALL)
    codebook = fits[0].vqvae.quantizer.codebook  # the pre-trained VQ-VAE's codes
    assert model.anchor_codes.shape == codebook.shape == (3, 4, 5)
    torch.testing.assert_close(model.anchor_codes, codebook.detach())
    assert model.phi_a[0].in_features == 5  # not the 8 values of a decoded anchor
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.forward(rows(train)).p, F.normalize(model.phi_a(codebook.flatten(0, 1)), dim=-1))


def test_codebook_input_needs_vqvae_anchors(toy_root):
    with pytest.raises(ValueError, match="anchor_input: codebook needs anchor_source: vqvae"):
        build("LDA", toy_root, anchor_input="codebook", anchor_source="kmeans", **SMALL)


def test_joint_codebook_input_follows_the_live_codebook(toy_root):
    _, train, _, _, model = build("LDA", toy_root, anchor_input="codebook", anchor_training="joint", **SMALL)
    with torch.no_grad():
        model.vqvae.quantizer.codebook.mul_(2.0)
        torch.testing.assert_close(model.anchor_inputs(), model.vqvae.quantizer.codebook.flatten(0, 1))


# ---------------------------------------------------------------- similarity: dot
def test_dot_similarity_is_the_raw_softmax_without_temperature(toy_root):
    _, train, _, _, model = build("LDA", toy_root, similarity="dot", temperature=0.37, **SMALL)
    model.eval()
    inter = rows(train)
    with torch.no_grad():
        out = model.forward(inter)
        h = model.phi_x(model.backbone(inter))
        p = model.phi_a(model.anchor_table())
        own = out.bucket[:, None] == model.anchor_bucket[None, :]
        expected = torch.where(own, torch.exp(h @ p.T), torch.zeros(()))
        torch.testing.assert_close(out.log_beta.exp(), expected / expected.sum(1, keepdim=True), atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(out.cos, F.normalize(h, dim=-1) @ F.normalize(p, dim=-1).T)  # the OT cost stays 1 - cos
        torch.testing.assert_close(out.p, p)  # the mixture is of the raw p
        model.current_temperature.fill_(5.0)  # no temperature in beta
        torch.testing.assert_close(model.forward(inter).log_beta, out.log_beta)


# ---------------------------------------------------------------- anchor_mass: usage
def test_anchor_masses_by_hand():
    counts = [[3, 0, 1], [1, 1, 1]]  # + one pseudo-count each: [4, 1, 2] / 7 and [2, 2, 2] / 6
    mass = anchor_masses(counts, bucket_rows=[30, 10])
    expected = [0.75 * 4 / 7, 0.75 / 7, 0.75 * 2 / 7, 0.25 / 3, 0.25 / 3, 0.25 / 3]
    torch.testing.assert_close(mass, torch.tensor(expected, dtype=torch.float64))
    assert mass.sum().item() == pytest.approx(1.0, abs=1e-12)


def test_usage_mass_sums_to_one_and_follows_code_usage(toy_root):
    _, train, _, _, model = build("LDA", toy_root, anchor_mass="usage", vq_steps=20, num_buckets=3, num_anchors=4, num_sequences=64)
    counts = np.array([r["code_counts"] for r in model.anchor_reports], dtype=float) + 1
    durations = training_values(train.dataset, "duration")
    share = np.bincount(assign_buckets(durations, model.bucket_edges.double()).numpy(), minlength=3) / len(durations)
    expected = (share[:, None] * counts / counts.sum(1, keepdims=True)).reshape(-1)
    assert model.anchor_mass.sum().item() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(model.anchor_mass.numpy(), expected, rtol=1e-5)
    assert len(set(np.round(expected, 6))) > 3  # not uniform on this data: the test tells them apart


def test_usage_mass_of_kmeans_anchors_counts_nearest_sequences():
    seqs = np.array([[[0.0, 0.0], [0.1, 0.1], [2.0, 2.0]]], dtype=np.float32)  # one bucket, 3 sequences
    anchors = torch.tensor([[[0.0, 0.0], [2.0, 2.1]]])
    np.testing.assert_array_equal(nearest_anchor_counts(seqs, anchors), [[2.0, 1.0]])


def test_usage_mass_reaches_the_ot_problem(toy_root, monkeypatch):
    import recbole_lda.model.lda as lda_module

    _, train, _, _, model = build("LDA", toy_root, anchor_mass="usage", **SMALL)
    seen = {}
    real = lda_module.alignment_targets
    monkeypatch.setattr(lda_module, "alignment_targets", lambda *a, **kw: seen.update(kw) or real(*a, **kw))
    model.calculate_loss(rows(train))
    assert seen["anchor_mass"] is model.anchor_mass


def test_skewed_anchor_mass_moves_the_plan_towards_the_heavy_anchor():
    gen = torch.Generator().manual_seed(0)
    cost = torch.rand(12, 3, generator=gen)
    zero = torch.zeros(12, dtype=torch.long)
    args = dict(reg=0.2, reg_m=10.0, max_iter=500, stop_threshold=1e-12)
    uniform = alignment_targets(cost, zero, torch.zeros(3, dtype=torch.long), "bucket", **args)
    same = alignment_targets(cost, zero, torch.zeros(3, dtype=torch.long), "bucket", **args, anchor_mass=torch.full((3,), 5.0))
    torch.testing.assert_close(same, uniform)  # only relative masses matter
    heavy = alignment_targets(cost, zero, torch.zeros(3, dtype=torch.long), "bucket", **args,
                              anchor_mass=torch.tensor([0.8, 0.1, 0.1]))
    assert heavy[:, 0].mean() > uniform[:, 0].mean() + 0.2
    assert torch.allclose(heavy.sum(1), torch.ones(12), atol=1e-6)


# ---------------------------------------------------------------- linear g
def test_empty_hidden_sizes_give_a_linear_g(toy_root):
    _, train, _, _, model = build("LDA", toy_root, predictor_hidden_size=[], **SMALL)
    assert isinstance(model.g, nn.Identity) and model.g_out.in_features == 8
    model.eval()
    with torch.no_grad():
        out = model.forward(rows(train))
        mixture = out.log_beta.exp() @ out.p
        expected = F.softplus(mixture @ model.g_out.weight[0] + model.g_out.bias) * model.label_scale
        torch.testing.assert_close(out.pred, expected)


# ---------------------------------------------------------------- regression_target: quantile
def test_quantile_target_uses_d2qs_label_and_table(toy_root):
    _, train, _, _, model = build("LDA", toy_root, regression_target="quantile", regression_loss="l1",
                                  duration_groups=5, quantile_points=20, **SMALL)
    _, _, _, _, d2q = build("D2Q", toy_root, duration_groups=5, quantile_points=20)
    torch.testing.assert_close(model.quantile_table, d2q.group_quantiles)
    inter = rows(train)
    label, duration = inter["label"], inter["duration"]
    q = model.anchor_value(label, duration)
    torch.testing.assert_close(q, d2q.watch_time_to_quantile(label, duration))
    # anchors are quantile functions of that label: inside [0, 1], not log(1 + ratio)
    table = model.anchor_table()
    assert table.min() >= -1e-6 and table.max() <= 1 + 1e-6
    model.eval()
    with torch.no_grad():
        out = model.forward(inter)
        torch.testing.assert_close(out.pred, d2q.quantile_to_watch_time(out.out, duration))
        regression = model.calculate_loss(inter)[0]
    assert regression.item() == pytest.approx((out.out - q).abs().mean().item(), rel=1e-5)


@pytest.mark.parametrize("target", ["ratio", "quantile"])
def test_anchor_plot_draws_data_and_anchors_in_the_anchors_space(toy_root, tmp_path, monkeypatch, target):
    """anchor_plot_file: with the quantile target the anchors are quantile functions of D2Q's
    label, so the black curve is that label's quantile function and the axis says so; with
    the ratio target both are watch ratios (expm1 of the log(1 + ratio) anchors)."""
    import matplotlib.figure

    from recbole_lda.quick_start.quick_start import plot_model_anchors

    figures = []
    real_savefig = matplotlib.figure.Figure.savefig
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, *a, **kw: figures.append(fig) or real_savefig(fig, *a, **kw))
    extra = dict(regression_target="quantile", duration_groups=5, quantile_points=20) if target == "quantile" else {}
    _, train, _, _, model = build("LDA", toy_root, **extra, **SMALL)
    path = tmp_path / f"anchors-{target}.png"
    plot_model_anchors(model, train._dataset, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and len(figures) == 1

    labels = training_values(train._dataset, "label")
    durations = training_values(train._dataset, "duration")
    with torch.no_grad():
        values = model.anchor_value(labels, durations).numpy().astype(np.float64)
    buckets = assign_buckets(durations.numpy(), model.bucket_edges.numpy().astype(np.float64))
    anchors = model.anchor_table().detach().reshape(3, 4, -1).numpy().astype(np.float64)
    if target == "quantile":
        shown_values, shown_anchors, ylabel = values, anchors, "D2Q quantile label"
        assert values.min() >= 0 and values.max() <= 1
    else:
        ratios = (labels / durations.clamp_min(1e-6)).numpy()
        np.testing.assert_allclose(np.expm1(values), ratios, rtol=1e-5, atol=1e-6)
        shown_values, shown_anchors, ylabel = ratios, np.expm1(anchors), "watch ratio"
    grid = np.linspace(0.005, 0.995, 199)
    axes = [ax for ax in figures[0].axes if ax.lines]
    assert len(axes) == 3
    for b, ax in enumerate(axes):
        assert ax.get_ylabel().startswith(ylabel)
        data, *drawn = ax.lines
        np.testing.assert_allclose(data.get_ydata(), np.quantile(shown_values[buckets == b], grid), rtol=1e-4, atol=1e-5)
        assert len(drawn) == 4
        for k, line in enumerate(drawn):
            np.testing.assert_allclose(line.get_ydata(), shown_anchors[b, k], rtol=1e-5, atol=1e-6)
        if target == "quantile":
            assert ax.get_ylim()[0] < 0 < 1 < ax.get_ylim()[1] < 1.1


# ---------------------------------------------------------------- anchor_label_match
def test_anchor_label_agreement_by_hand():
    # 2 buckets x 3 anchors; bucket 0 holds anchors 0-2, bucket 1 anchors 3-5
    chosen = torch.tensor([0, 1, 2, 0, 3, 4, 5])
    best = torch.tensor([0, 1, 1, 1, 3, 3, 3])
    bucket = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    got = anchor_label_agreement(chosen, best, bucket, num_buckets=2, num_anchors=3, scope="bucket")
    # matches: rows 0, 1, 4 -> 3/7; majority: bucket 0 best is anchor 1 (3 of 4), bucket 1 anchor 3 (3 of 3) -> 6/7
    assert got == {"anchor_label_match": pytest.approx(3 / 7), "anchor_label_chance": pytest.approx(1 / 3),
                   "anchor_label_majority": pytest.approx(6 / 7)}
    everywhere = anchor_label_agreement(chosen, best, bucket, num_buckets=2, num_anchors=3, scope="all")
    # one group: anchor 1 and anchor 3 are each best 3 times -> 3/7; chance 1/6
    assert everywhere["anchor_label_chance"] == pytest.approx(1 / 6)
    assert everywhere["anchor_label_majority"] == pytest.approx(3 / 7)


def test_split_report_gives_the_anchor_label_match(toy_root):
    """Anchors at constant ratios per bucket: the best anchor of a row is the one nearest its
    ratio. The report's match equals the count done here from beta and that rule."""
    _, _, _, test, model = build("LDA", toy_root, **SMALL)
    levels = torch.log1p(torch.tensor([0.05, 0.5, 1.0, 2.0]))
    with torch.no_grad():
        model.anchor_quantiles.copy_(levels.view(1, 4, 1).expand(3, 4, 8))
    report = model.split_report(test)
    model.eval()
    hits = total = 0
    with torch.no_grad():
        for batch in test:
            inter = batch[0] if isinstance(batch, tuple) else batch
            out = model.forward(inter)
            value = torch.log1p(inter["label"] / inter["duration"])
            best = out.bucket * 4 + (value[:, None] - levels[None]).abs().argmin(1)
            hits += int((out.log_beta.argmax(1) == best).sum())
            total += len(best)
    assert report["anchor_label_match"] == pytest.approx(hits / total)
    assert report["anchor_label_chance"] == 0.25
    assert 0.25 <= report["anchor_label_majority"] <= 1.0
