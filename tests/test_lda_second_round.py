"""LDA's second-round keys (properties/model/LDA.yaml): ProWTP's semi-relaxed OT and
compactness loss, the bucket-mean start of g, the temperature schedule, the anchor path's
learning rate, the regression target and the auxiliary direct head."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import build
from recbole_lda.model.backbone import training_values
from recbole_lda.model.anchors import assign_buckets
from recbole_lda.model.lda import ANCHOR_PATH, inverse_softplus
from recbole_lda.model.ot import alignment_targets, unbalanced_plan
from recbole_lda.trainer.trainer import WatchTimeTrainer

SMALL = dict(vq_steps=5, num_buckets=3, num_anchors=4, num_sequences=32)


def small_problem(seed=0, batch=9, anchors=5):
    gen = torch.Generator().manual_seed(seed)
    cost = torch.rand(batch, anchors, generator=gen, dtype=torch.float64) * 2
    row = torch.full((batch,), 1 / batch, dtype=torch.float64)
    col = torch.rand(anchors, generator=gen, dtype=torch.float64) + 0.5
    return cost, row, col / col.sum()


# ---------------------------------------------------------------- semi-relaxed OT (ProWTP)
def test_semi_relaxed_plan_meets_the_instance_marginal_exactly():
    cost, row, col = small_problem()
    plan = unbalanced_plan(cost, row, col, reg=0.2, reg_m=(float("inf"), 1.0), max_iter=2000, stop_threshold=1e-12, dtype=torch.float64)
    assert torch.allclose(plan.sum(1), row, rtol=1e-9, atol=0)
    # the anchor side is relaxed: its masses are not met
    assert (plan.sum(0) - col).abs().max() > 1e-3


def test_fully_relaxed_plan_does_not_meet_the_instance_marginal():
    """The control: with both sides relaxed the same problem misses mu_1, so the test above
    tells the two problems apart."""
    cost, row, col = small_problem()
    plan = unbalanced_plan(cost, row, col, reg=0.2, reg_m=1.0, max_iter=2000, stop_threshold=1e-12, dtype=torch.float64)
    assert (plan.sum(1) - row).abs().max() > 1e-4


def test_semi_relaxed_targets_are_distributions_in_scope():
    cost, _, _ = small_problem(batch=6, anchors=6)
    inst = torch.tensor([0, 0, 0, 1, 1, 1])
    anch = torch.tensor([0, 0, 0, 1, 1, 1])
    targets = alignment_targets(cost.float(), inst, anch, "bucket", reg=0.2, reg_m=(float("inf"), 1.0), max_iter=50, stop_threshold=1e-9)
    assert torch.allclose(targets.sum(1), torch.ones(6), atol=1e-6)
    assert (targets[inst[:, None] != anch[None, :]] == 0).all()


# ---------------------------------------------------------------- the model's keys
def test_bucket_mean_start_predicts_each_buckets_mean_ratio(toy_root):
    _, train, _, _, model = build("LDA", toy_root, predictor_init="bucket_mean", regression_target="ratio", **SMALL)
    labels = training_values(train._dataset, "label").numpy()
    durations = training_values(train._dataset, "duration").numpy()
    bucket = assign_buckets(torch.as_tensor(durations), model.bucket_edges).numpy()
    ratio = labels / np.maximum(durations, 1e-6)
    batch = next(iter(train))
    pred = model.predict(batch).detach().double()
    b = assign_buckets(batch["duration"], model.bucket_edges).numpy()
    expected = torch.tensor([ratio[bucket == k].mean() for k in b]) * batch["duration"].double()
    assert torch.allclose(pred, expected, rtol=1e-5)


def test_bucket_mean_start_of_the_watch_time_target(toy_root):
    _, train, _, _, model = build("LDA", toy_root, predictor_init="bucket_mean", regression_target="watch_time", **SMALL)
    labels = training_values(train._dataset, "label").numpy()
    bucket = assign_buckets(training_values(train._dataset, "duration"), model.bucket_edges).numpy()
    batch = next(iter(train))
    b = assign_buckets(batch["duration"], model.bucket_edges).numpy()
    expected = torch.tensor([labels[bucket == k].mean() for k in b])
    assert torch.allclose(model.predict(batch).detach().double(), expected, rtol=1e-5)


def test_default_start_has_no_bucket_offset(toy_root):
    _, _, _, _, model = build("LDA", toy_root, **SMALL)
    assert torch.equal(model.bucket_offset, torch.zeros(model.num_buckets))
    assert not model.bucket_offset.requires_grad


def test_inverse_softplus_round_trips():
    y = torch.tensor([1e-3, 0.3, 1.0, 7.5])
    assert torch.allclose(F.softplus(inverse_softplus(y)), y, rtol=1e-5)


def test_temperature_schedule_is_geometric_and_saved(toy_root):
    _, _, _, _, model = build("LDA", toy_root, temperature=0.1, temperature_start=1.0, temperature_anneal_epochs=4, **SMALL)
    expected = {0: 1.0, 2: math.sqrt(0.1), 4: 0.1, 9: 0.1}
    for epoch, value in expected.items():
        model.set_epoch(epoch)
        assert float(model.current_temperature) == pytest.approx(value, rel=1e-6)
    model.set_epoch(1)
    assert float(model.state_dict()["current_temperature"]) == pytest.approx(10 ** -0.25, rel=1e-6)


def test_constant_temperature_without_a_start(toy_root):
    _, _, _, _, model = build("LDA", toy_root, temperature=0.3, **SMALL)
    for epoch in (0, 3, 50):
        model.set_epoch(epoch)
        assert float(model.current_temperature) == pytest.approx(0.3)


def test_anchor_path_gets_its_own_learning_rate(toy_root):
    config, _, _, _, model = build("LDA", toy_root, learning_rate=0.002, anchor_lr_scale=5.0, **SMALL)
    trainer = WatchTimeTrainer(config, model)
    groups = trainer.optimizer.param_groups
    assert [g["lr"] for g in groups] == [pytest.approx(0.002), pytest.approx(0.01)]
    names = {id(p): n for n, p in model.named_parameters()}
    fast = {names[id(p)].split(".")[0] for p in groups[1]["params"]}
    slow = {names[id(p)].split(".")[0] for p in groups[0]["params"]}
    assert fast == set(ANCHOR_PATH) and "backbone" in slow and not fast & slow
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_direct_head_trains_but_does_not_predict(toy_root):
    _, train, _, _, off = build("LDA", toy_root, lambda_ot=0.0, **SMALL)
    _, _, _, _, on = build("LDA", toy_root, lambda_ot=0.0, lambda_direct=1.0, **SMALL)
    batch = next(iter(train))
    on_state = {k: v for k, v in on.state_dict().items() if not k.startswith("direct.")}
    off.load_state_dict(on_state)
    assert torch.equal(off.predict(batch), on.predict(batch))
    assert on.calculate_loss(batch)[0] > off.calculate_loss(batch)[0]
    on.calculate_loss(batch)[0].backward()
    assert on.direct.weight.grad.abs().sum() > 0


def test_compactness_is_zero_when_h_sits_on_its_target_mixture(toy_root):
    _, train, _, _, model = build("LDA", toy_root, lambda_compact=1.0, **SMALL)
    out = model.forward(next(iter(train)))
    ratio = torch.rand(len(out.pred))
    _, compact = model.alignment_loss(out.cos, out.log_beta, out.bucket, ratio, out.h, out.p)
    assert 0 < float(compact.detach()) <= 2
    # h replaced by its own target mixture: the targets depend on cos only, so keep cos fixed
    targets = alignment_targets(1.0 - out.cos.detach(), out.bucket, model.anchor_bucket, model.scope, **model.ot_args)
    _, compact = model.alignment_loss(out.cos, out.log_beta, out.bucket, ratio, F.normalize(targets @ out.p, dim=-1), out.p)
    assert float(compact.detach()) == pytest.approx(0.0, abs=1e-6)


def test_semi_relaxed_key_reaches_the_solver(toy_root):
    _, _, _, _, both = build("LDA", toy_root, ot_reg_m=0.7, **SMALL)
    _, _, _, _, semi = build("LDA", toy_root, ot_reg_m=0.7, ot_relaxation="anchors", **SMALL)
    assert both.ot_args["reg_m"] == 0.7
    assert semi.ot_args["reg_m"] == (float("inf"), 0.7)
