"""LDA's parts: VQ-VAE, OT alignment, buckets and anchors, and no leakage of eval labels."""

import math

import numpy as np
import pytest
import torch

from conftest import build, write_toy_atomic
from recbole_lda.model.anchors import assign_buckets, duration_bucket_edges, kmeans, sample_sequences
from recbole_lda.model.ot import alignment_targets, unbalanced_plan
from recbole_lda.model.vq import SequenceVQVAE, VectorQuantizer, train_vqvae


# ---------------------------------------------------------------- VQ-VAE
def test_indices_round_trip_to_codebook_rows():
    vq = VectorQuantizer(buckets=3, num_codes=5, dim=4, beta=0.25)
    codes = vq.codebook.detach()
    assert torch.equal(vq.indices(codes), torch.arange(5).expand(3, 5))
    assert torch.equal(vq.lookup(vq.indices(codes)), codes)
    z = torch.randn(3, 7, 4)
    quantized, idx, _ = vq(z)
    assert torch.allclose(quantized, vq.lookup(idx), atol=1e-6)  # forward value is the code (up to rounding)
    dist = torch.cdist(z, codes)
    assert torch.equal(idx, dist.argmin(-1))


def test_straight_through_gradient_reaches_encoder():
    model = SequenceVQVAE(buckets=2, length=6, hidden=8, code_dim=3, num_codes=4, beta=0.25)
    seqs = torch.sort(torch.rand(2, 10, 6), dim=-1).values
    recon, _, recon_loss, _ = model(seqs)
    recon_loss.backward()  # reconstruction only: reaches the encoder through the straight-through copy
    first_layer = model.encoder[0].weight
    assert first_layer.grad is not None and first_layer.grad.abs().sum() > 0
    assert model.quantizer.codebook.grad is None  # codes move only through the codebook loss


def test_vq_loss_moves_codes_and_commits_encoder():
    model = SequenceVQVAE(buckets=1, length=6, hidden=8, code_dim=3, num_codes=4, beta=0.25)
    _, _, _, vq_loss = model(torch.sort(torch.rand(1, 10, 6), dim=-1).values)
    vq_loss.backward()
    assert model.quantizer.codebook.grad.abs().sum() > 0
    assert model.encoder[2].weight.grad.abs().sum() > 0


def test_decoded_anchors_are_quantile_functions():
    model = SequenceVQVAE(buckets=3, length=16, hidden=8, code_dim=3, num_codes=5, beta=0.25)
    anchors = model.anchors()
    assert anchors.shape == (3, 5, 16)
    assert (anchors >= 0).all() and (anchors[..., 1:] >= anchors[..., :-1]).all()


def test_training_fits_sequences_and_uses_every_code():
    gen = torch.Generator().manual_seed(0)
    # two buckets, each a mix of 4 clearly different distributions
    base = torch.tensor([0.1, 0.5, 1.0, 2.0])
    scale = base[torch.randint(4, (2, 400, 1), generator=gen)]
    seqs = torch.log1p(torch.sort(scale * torch.rand(2, 400, 12, generator=gen) * 2, dim=-1).values)
    model = SequenceVQVAE(buckets=2, length=12, hidden=32, code_dim=4, num_codes=4, beta=0.25)
    reports = train_vqvae(model, seqs, steps=150, batch_size=64, lr=0.01, reset_every=25, generator=gen)
    spread = ((seqs - seqs.mean(1, keepdim=True)) ** 2).mean(dim=(1, 2))
    for report, var in zip(reports, spread):
        assert report["codes_used"] == 4 and sum(report["code_counts"]) == 400
        assert report["reconstruction_mse"] < 0.25 * float(var)  # the codes explain most of the spread
        assert 1.0 <= report["perplexity"] <= 4.0


def test_dead_codes_restart_at_encodings():
    model = SequenceVQVAE(buckets=2, length=6, hidden=8, code_dim=3, num_codes=4, beta=0.25)
    seqs = torch.sort(torch.rand(2, 30, 6), dim=-1).values
    with torch.no_grad():
        model.quantizer.codebook[:, 0] = 100.0  # unreachable: no sequence picks it
    _, idx, _, _ = model(seqs)
    assert not (idx == 0).any()
    dead = torch.zeros(2, 4, dtype=torch.bool)
    dead[:, 0] = True
    assert model.restart_codes(seqs, dead) == 2
    encodings = model.encoder(seqs).detach()
    for b in range(2):  # the restarted code is now one of the bucket's encodings
        assert torch.isclose(encodings[b], model.quantizer.codebook[b, 0].detach()).all(-1).any()
    assert (model.quantizer.codebook[:, 1:] != 100.0).all()


# ---------------------------------------------------------------- OT
def test_balanced_input_with_constant_cost_has_closed_form_plan():
    # Constant cost c: the plan is s * a b^T with s = exp(-c / (eps + 2 rho)) (KL terms of
    # the unbalanced problem, balanced input of mass 1 on both sides).
    a = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    b = torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64)
    c, eps, rho = 0.7, 0.1, 0.5
    plan = unbalanced_plan(torch.full((4, 3), c), a, b, eps, rho, max_iter=2000, stop_threshold=1e-12, dtype=torch.float64)
    s = math.exp(-c / (eps + 2 * rho))
    assert torch.allclose(plan, s * a[:, None] * b[None, :], atol=1e-9)
    assert torch.allclose(plan.sum(1), s * a, atol=1e-9) and torch.allclose(plan.sum(0), s * b, atol=1e-9)


def test_large_marginal_penalty_gives_balanced_marginals():
    gen = torch.Generator().manual_seed(0)
    cost = torch.rand(6, 4, generator=gen)
    a, b = torch.full((6,), 1 / 6, dtype=torch.float64), torch.full((4,), 1 / 4, dtype=torch.float64)
    plan = unbalanced_plan(cost, a, b, reg=0.1, reg_m=1e5, max_iter=5000, stop_threshold=1e-12, dtype=torch.float64)
    assert torch.allclose(plan.sum(1), a, atol=1e-4) and torch.allclose(plan.sum(0), b, atol=1e-4)


def test_float32_solve_matches_float64_and_small_eps_switches_to_float64():
    gen = torch.Generator().manual_seed(2)
    cost = torch.rand(256, 16, generator=gen) * 2
    a, b = torch.full((256,), 1 / 256), torch.full((16,), 1 / 16)
    auto = unbalanced_plan(cost, a, b, reg=0.05, reg_m=1.0, max_iter=20, stop_threshold=1e-6)
    exact = unbalanced_plan(cost, a, b, reg=0.05, reg_m=1.0, max_iter=20, stop_threshold=1e-6, dtype=torch.float64)
    assert auto.dtype == torch.float32  # max cost / eps = 40: float32 is safe
    rows = lambda p: p.double() / p.double().sum(1, keepdim=True)  # noqa: E731
    assert torch.allclose(rows(auto), rows(exact), atol=1e-5)
    # eps 0.01: exp(-2 / 0.01) underflows float32, so the solve runs in float64 and every
    # row keeps mass on its cheapest anchor.
    sharp = unbalanced_plan(cost, a, b, reg=0.01, reg_m=1.0, max_iter=20, stop_threshold=1e-6)
    assert sharp.dtype == torch.float64 and (sharp.sum(1) > 0).all() and not torch.isnan(sharp).any()


def test_plan_prefers_cheap_pairs():
    cost = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    targets = alignment_targets(cost, torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long), "bucket", 0.05, 1.0, 200, 1e-9)
    assert targets[0, 0] > 0.99 and targets[1, 1] > 0.99


def _targets(cost, inst_bucket, anchor_bucket, scope="bucket"):
    return alignment_targets(cost, inst_bucket, anchor_bucket, scope, reg=0.05, reg_m=1.0, max_iter=100, stop_threshold=1e-6)


def test_targets_rows_sum_to_one_and_stay_in_scope():
    gen = torch.Generator().manual_seed(1)
    anchor_bucket = torch.arange(3).repeat_interleave(4)
    inst_bucket = torch.tensor([0, 0, 2, 2, 2])
    t = _targets(torch.rand(5, 12, generator=gen) * 2, inst_bucket, anchor_bucket)
    assert torch.allclose(t.sum(1), torch.ones(5))
    off_scope = inst_bucket[:, None] != anchor_bucket[None, :]
    assert (t[off_scope] == 0).all() and (t[:, anchor_bucket == 1] == 0).all()  # bucket 1 absent


def test_no_nan_for_batch_of_one_equal_costs_and_empty_buckets():
    anchor_bucket = torch.arange(4).repeat_interleave(3)
    one = _targets(torch.rand(1, 12), torch.tensor([2]), anchor_bucket)
    assert not torch.isnan(one).any() and one.sum() == pytest.approx(1.0)
    equal = _targets(torch.full((6, 12), 0.3), torch.tensor([1, 1, 1, 3, 3, 3]), anchor_bucket)
    assert not torch.isnan(equal).any()
    assert torch.allclose(equal[:3, 3:6], torch.full((3, 3), 1 / 3))  # equal costs: uniform in scope
    every = _targets(torch.full((2, 12), 1.0), torch.tensor([0, 0]), anchor_bucket, scope="all")
    assert not torch.isnan(every).any() and torch.allclose(every.sum(1), torch.ones(2))


# ---------------------------------------------------------------- buckets and sequences
def test_bucket_edges_equal_frequency_and_assignment():
    durations = np.arange(1, 101, dtype=float)
    edges = duration_bucket_edges(durations, 4)
    assert edges.tolist() == [1.0, 25.75, 50.5, 75.25, 100.0]
    buckets = assign_buckets(durations, edges)
    assert np.bincount(buckets).tolist() == [25, 25, 25, 25]
    assert assign_buckets(np.array([-5.0, 1e6]), edges).tolist() == [0, 3]  # out of range: ends
    assert torch.equal(assign_buckets(torch.tensor(durations), torch.tensor(edges)), torch.tensor(buckets))
    tied = np.repeat([10.0, 20.0], 50)
    edges = duration_bucket_edges(tied, 8)  # tied quantiles merge: 2 buckets, not 8
    assert edges.tolist() == [10.0, 15.0, 20.0]
    assert np.bincount(assign_buckets(tied, edges)).tolist() == [50, 50]


def test_sequences_are_sorted_and_come_from_one_source():
    rng = np.random.default_rng(0)
    ratios = np.concatenate([np.full(50, 0.1), np.full(50, 2.0)])
    sources = np.repeat([7, 9], 50)
    seqs = sample_sequences(ratios, np.zeros(100, dtype=int), sources, 1, 20, 5, 3, rng)
    assert seqs.shape == (1, 20, 5) and (np.diff(seqs, axis=-1) >= 0).all()
    # each sequence holds the views of a single user: all values equal
    assert np.allclose(seqs.min(-1), seqs.max(-1))
    firsts = np.expm1(seqs[0, :, 0].astype(np.float64))
    assert np.all(np.isclose(firsts, 0.1, atol=1e-6) | np.isclose(firsts, 2.0, atol=1e-6))


def test_kmeans_separates_clusters():
    x = np.concatenate([np.zeros((30, 3)), np.ones((30, 3)) * 5])
    centers = kmeans(x, 2, 10, np.random.default_rng(0))
    assert sorted(centers[:, 0].tolist()) == [0.0, 5.0]


# ---------------------------------------------------------------- the model
@pytest.mark.parametrize("source", ["vqvae", "kmeans", "random"])
def test_lda_forward_loss_and_predict(toy_root, source):
    _, train, _, _, model = build("LDA", toy_root, anchor_source=source, vq_steps=20, num_buckets=4, num_sequences=64)
    batch = next(iter(train))
    losses = model.calculate_loss(batch)
    assert len(losses) == 3 and all(torch.isfinite(x) for x in losses)
    sum(losses).backward()
    assert model.phi_x.weight.grad.abs().sum() > 0
    pred = model.predict(batch)
    assert pred.shape == (len(batch),) and (pred >= 0).all()


def test_lda_joint_training_updates_the_codebook(toy_root):
    _, train, _, _, model = build("LDA", toy_root, anchor_training="joint", vq_steps=10, num_buckets=3, num_sequences=32)
    regression, alignment, vq = model.calculate_loss(next(iter(train)))
    assert vq > 0
    (regression + alignment + vq).backward()
    assert model.vqvae.quantizer.codebook.grad.abs().sum() > 0


def test_lda_without_ot_skips_alignment(toy_root):
    _, train, _, _, model = build("LDA", toy_root, lambda_ot=0.0, vq_steps=5, num_sequences=32)
    assert model.calculate_loss(next(iter(train)))[1] == 0


def test_no_leakage_from_valid_and_test_labels(tmp_path):
    same = dict(vq_steps=30, num_buckets=4, num_sequences=64)
    _, _, _, _, a = build("LDA", write_toy_atomic(tmp_path / "a" / "toy").parent, **same)
    _, _, _, _, b = build("LDA", write_toy_atomic(tmp_path / "b" / "toy", label_shift=lambda y: y * 3 + 7).parent, **same)
    assert torch.equal(a.bucket_edges, b.bucket_edges)
    assert torch.equal(a.anchor_quantiles, b.anchor_quantiles)
    assert torch.equal(a.label_scale, b.label_scale)


def test_anchor_plot_is_written(toy_root, tmp_path):
    from recbole_lda.quick_start.quick_start import plot_model_anchors

    path = tmp_path / "anchors.png"
    _, train, _, _, model = build("LDA", toy_root, vq_steps=5, num_buckets=3, num_sequences=32)
    plot_model_anchors(model, train._dataset, str(path))
    assert path.stat().st_size > 10_000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_label_cost_favours_the_anchor_that_explains_the_label(toy_root):
    _, train, _, _, model = build("LDA", toy_root, vq_steps=5, num_buckets=2, num_anchors=3, num_sequences=32, sequence_length=4)
    with torch.no_grad():  # bucket 0: anchors concentrated at ratios 0.1, 1 and 3
        model.anchor_quantiles[0] = torch.log1p(torch.tensor([0.1, 1.0, 3.0]))[:, None].expand(3, 4)
    cost = model.label_cost(torch.log1p(torch.tensor([1.0, 3.0])), torch.tensor([0, 0]))
    assert cost.shape == (2, 6)
    assert cost[0].argmin() == 1 and cost[1].argmin() == 2 and cost[0, 1] == 0
    assert (cost[:, 3:] == 2.0).all()  # other bucket: out of scope, capped
    assert ((cost >= 0) & (cost <= 2.0)).all()


@pytest.mark.parametrize("scope", ["bucket", "all"])
def test_split_report_measures_how_concentrated_beta_is(toy_root, scope):
    """A huge temperature makes beta uniform over the anchors in scope (entropy log K, K
    effective anchors); a tiny one makes it one-hot (1 effective anchor)."""
    _, _, _, test, model = build("LDA", toy_root, vq_steps=5, num_buckets=3, num_anchors=4, num_sequences=32,
                                 anchor_scope=scope)
    in_scope = 4 if scope == "bucket" else 12
    with torch.no_grad():  # distinct anchors (a short VQ-VAE run may leave equal ones, which tie)
        model.anchor_quantiles.copy_(torch.rand(model.anchor_quantiles.shape, generator=torch.Generator().manual_seed(0)))
    model.temperature = 1e6
    model.set_epoch(0)
    flat = model.split_report(test)
    assert flat["anchors_in_scope"] == in_scope
    assert flat["beta_entropy"] == pytest.approx(np.log(in_scope), abs=1e-4)
    assert flat["beta_effective_anchors"] == pytest.approx(in_scope, abs=1e-3)
    assert flat["beta_max_mean"] == pytest.approx(1 / in_scope, abs=1e-5) and flat["beta_max_over_0.9"] == 0.0
    model.temperature = 1e-5
    model.set_epoch(0)
    sharp = model.split_report(test)
    assert sharp["beta_effective_anchors"] == pytest.approx(1.0, abs=1e-3)
    assert sharp["beta_max_over_0.9"] == 1.0
