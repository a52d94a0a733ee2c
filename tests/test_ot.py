"""The OT alignment targets (recbole_lda/model/ot.py): what the marginals and the penalty do.

POT-style invariants of the unbalanced Sinkhorn plan: with a large marginal penalty and
balanced masses both marginals are met; the plan of a block-diagonal kernel does not depend
on each block's total column mass once rows are normalised (why mu_2 needs no per-bucket
share); and the targets move with what matters: the cost, eps, rho and the relative masses
inside a bucket. Also: the arguments reach POT as given.
"""

import numpy as np
import ot as pot
import pytest
import torch

from recbole_lda.model import ot as lda_ot
from recbole_lda.model.ot import OFF_SCOPE, alignment_targets, unbalanced_plan

F64 = torch.float64


def rows(plan):
    plan = plan.double()
    return plan / plan.sum(1, keepdim=True)


def block_problem(seed=0, sizes=((5, 3), (7, 4))):
    """A cost over two buckets (instances x anchors per bucket) with off-bucket entries priced out."""
    gen = torch.Generator().manual_seed(seed)
    n, a = sum(s[0] for s in sizes), sum(s[1] for s in sizes)
    inst = torch.cat([torch.full((s[0],), b) for b, s in enumerate(sizes)])
    anch = torch.cat([torch.full((s[1],), b) for b, s in enumerate(sizes)])
    cost = torch.rand(n, a, generator=gen, dtype=F64) * 2
    return torch.where(inst[:, None] == anch[None, :], cost, cost + OFF_SCOPE), inst, anch


def test_arguments_reach_pot_unchanged(monkeypatch):
    calls = []
    real = pot.unbalanced.sinkhorn_unbalanced

    def spy(a, b, M, reg, reg_m, **kw):
        calls.append((a, b, M, reg, reg_m, kw))
        return real(a, b, M, reg, reg_m, **kw)

    monkeypatch.setattr(pot.unbalanced, "sinkhorn_unbalanced", spy)
    cost = torch.rand(4, 3, dtype=F64)
    a, b = torch.full((4,), 0.25, dtype=F64), torch.tensor([0.2, 0.3, 0.5], dtype=F64)
    unbalanced_plan(cost, a, b, reg=0.37, reg_m=2.5, max_iter=13, stop_threshold=1e-5, dtype=F64)
    (ga, gb, gM, reg, reg_m, kw), = calls
    assert all(isinstance(x, np.ndarray) for x in (ga, gb, gM))  # on the CPU, POT's numpy backend (faster)
    np.testing.assert_array_equal(ga, a.numpy())
    np.testing.assert_array_equal(gb, b.numpy())
    np.testing.assert_array_equal(gM, cost.numpy())
    assert (reg, reg_m, kw) == (0.37, 2.5, {"numItermax": 13, "stopThr": 1e-5})


def test_large_penalty_matches_both_marginals_with_unequal_masses():
    gen = torch.Generator().manual_seed(3)
    cost = torch.rand(6, 4, generator=gen, dtype=F64)
    a = torch.tensor([0.1, 0.2, 0.1, 0.3, 0.2, 0.1], dtype=F64)
    b = torch.tensor([0.4, 0.1, 0.3, 0.2], dtype=F64)
    plan = unbalanced_plan(cost, a, b, reg=0.1, reg_m=1e5, max_iter=20000, stop_threshold=1e-13, dtype=F64)
    torch.testing.assert_close(plan.sum(1), a, atol=2e-4, rtol=0)
    torch.testing.assert_close(plan.sum(0), b, atol=2e-4, rtol=0)
    # a small penalty lets the plan drop mass: total mass well below 1
    loose = unbalanced_plan(cost, a, b, reg=0.1, reg_m=0.05, max_iter=2000, stop_threshold=1e-13, dtype=F64)
    assert loose.sum() < 0.9


def test_scaling_one_blocks_column_mass_leaves_row_normalised_plan_unchanged():
    cost, inst, anch = block_problem()
    a = torch.full((len(inst),), 1 / len(inst), dtype=F64)
    uniform = torch.full((len(anch),), 1 / len(anch), dtype=F64)
    share = torch.bincount(inst).double()[anch] / len(inst) / torch.bincount(anch).double()[anch]  # the old mu_2
    for iters in (1, 3, 20):  # at every Sinkhorn iterate, not only at convergence
        p1 = unbalanced_plan(cost, a, uniform, reg=0.2, reg_m=1.0, max_iter=iters, stop_threshold=0.0, dtype=F64)
        p2 = unbalanced_plan(cost, a, share, reg=0.2, reg_m=1.0, max_iter=iters, stop_threshold=0.0, dtype=F64)
        torch.testing.assert_close(rows(p1), rows(p2), atol=1e-12, rtol=0)
    # but the relative masses INSIDE a block do matter
    tilted = uniform.clone()
    tilted[0] *= 4
    p3 = unbalanced_plan(cost, a, tilted, reg=0.2, reg_m=1.0, max_iter=20, stop_threshold=0.0, dtype=F64)
    assert (rows(p3)[:5, 0] > rows(p1)[:5, 0] + 0.05).all()


def test_targets_pass_uniform_marginals_and_only_present_anchors(monkeypatch):
    seen = {}
    real = lda_ot.unbalanced_plan

    def spy(cost, row_mass, col_mass, reg, reg_m, max_iter, stop_threshold, max_cost=None, dtype=None):
        seen.update(cost=cost, row_mass=row_mass, col_mass=col_mass, args=(reg, reg_m, max_iter, stop_threshold),
                    max_cost=max_cost)
        return real(cost, row_mass, col_mass, reg, reg_m, max_iter, stop_threshold, max_cost, dtype)

    monkeypatch.setattr(lda_ot, "unbalanced_plan", spy)
    anchor_bucket = torch.arange(3).repeat_interleave(2)  # buckets 0, 1, 2; 2 anchors each
    inst = torch.tensor([0, 0, 0, 2])  # bucket 1 absent
    cost = torch.tensor([[0.1, 0.9, 0.5, 0.5, 1.9, 1.8]] * 3 + [[1.7, 1.6, 0.5, 0.5, 0.2, 0.4]])
    alignment_targets(cost, inst, anchor_bucket, "bucket", reg=0.3, reg_m=2.0, max_iter=9, stop_threshold=1e-7)
    assert seen["args"] == (0.3, 2.0, 9, 1e-7)
    assert seen["cost"].shape == (4, 4)  # the anchors of bucket 1 take no part
    torch.testing.assert_close(seen["row_mass"], torch.full((4,), 0.25, dtype=F64))
    torch.testing.assert_close(seen["col_mass"], torch.full((4,), 0.25, dtype=F64))
    # in-scope costs as given, off-scope ones priced out; float32 decided on in-scope costs only
    expected = torch.tensor([[0.1, 0.9, 1.9, 1.8]] * 3 + [[1.7, 1.6, 0.2, 0.4]], dtype=F64)
    off = torch.tensor([[0, 0, 1, 1]] * 3 + [[1, 1, 0, 0]], dtype=torch.bool)
    torch.testing.assert_close(seen["cost"], torch.where(off, expected + OFF_SCOPE, expected))
    assert float(seen["max_cost"]) == pytest.approx(0.9)
    alignment_targets(cost, inst, anchor_bucket, "all", reg=0.3, reg_m=2.0, max_iter=9, stop_threshold=1e-7)
    torch.testing.assert_close(seen["cost"], expected)  # scope all: nothing priced out
    assert float(seen["max_cost"]) == pytest.approx(1.9)


def test_targets_equal_a_per_bucket_solve():
    """One solve over all present buckets equals one solve per bucket (row-normalised)."""
    cost, inst, anch = block_problem(seed=4)
    plain = torch.where(cost > OFF_SCOPE, cost - OFF_SCOPE, cost)
    targets = alignment_targets(plain.float(), inst, anch, "bucket", reg=0.2, reg_m=1.0, max_iter=50, stop_threshold=0.0)
    for b in (0, 1):
        r, c = inst == b, anch == b
        sub = plain[r][:, c]
        a = torch.full((int(r.sum()),), 1 / int(r.sum()), dtype=F64)
        m = torch.full((int(c.sum()),), 1 / int(c.sum()), dtype=F64)
        alone = unbalanced_plan(sub, a, m, reg=0.2, reg_m=1.0, max_iter=50, stop_threshold=0.0, dtype=F64)
        torch.testing.assert_close(targets[r][:, c].double(), rows(alone), atol=1e-6, rtol=0)
        assert (targets[r][:, ~c] == 0).all()


def test_large_penalty_spreads_instances_evenly_over_a_buckets_anchors():
    """rho large: each anchor of a bucket gets the same total target mass (equipartition), even
    when every instance is cheapest on anchor 0; rho small: the targets follow the cost."""
    n, k = 12, 3
    gen = torch.Generator().manual_seed(5)
    cost = 0.5 + 0.05 * torch.rand(n, k, generator=gen)
    cost[:, 0] -= 0.3  # anchor 0 is everyone's cheapest
    inst, anch = torch.zeros(n, dtype=torch.long), torch.zeros(k, dtype=torch.long)
    even = alignment_targets(cost, inst, anch, "bucket", reg=0.05, reg_m=1e4, max_iter=5000, stop_threshold=1e-12)
    torch.testing.assert_close(even.sum(0), torch.full((k,), n / k), atol=1e-2, rtol=0)
    greedy = alignment_targets(cost, inst, anch, "bucket", reg=0.05, reg_m=1e-3, max_iter=5000, stop_threshold=1e-12)
    assert greedy[:, 0].min() > 0.9
    # eps: a larger eps gives flatter rows
    flat = alignment_targets(cost, inst, anch, "bucket", reg=5.0, reg_m=1e-3, max_iter=5000, stop_threshold=1e-12)
    entropy = lambda t: -(t * t.clamp_min(1e-30).log()).sum(1).mean()  # noqa: E731
    assert entropy(flat) > entropy(greedy) + 0.5


def test_targets_carry_no_gradient():
    cost = torch.rand(3, 2, requires_grad=True)
    t = alignment_targets(cost, torch.zeros(3, dtype=torch.long), torch.zeros(2, dtype=torch.long), "bucket",
                          reg=0.1, reg_m=1.0, max_iter=5, stop_threshold=1e-6)
    assert not t.requires_grad and t.grad_fn is None and t.dtype == torch.float32


def test_bad_scope_is_refused():
    with pytest.raises(ValueError, match="anchor_scope"):
        alignment_targets(torch.rand(2, 2), torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long),
                          "bucktes", reg=0.1, reg_m=1.0, max_iter=5, stop_threshold=1e-6)


def test_float32_is_chosen_from_the_in_scope_costs():
    cost = torch.tensor([[0.5, 3.0], [2.0, 0.1]])
    a, b = torch.full((2,), 0.5), torch.full((2,), 0.5)
    plan = lambda reg, **kw: unbalanced_plan(cost, a, b, reg=reg, reg_m=1.0, max_iter=5, stop_threshold=1e-6, **kw)  # noqa: E731
    assert plan(0.03).dtype == torch.float64  # 3 / 0.03 = 100 > 80
    assert plan(0.03, max_cost=2.0).dtype == torch.float32  # only costs up to 2 matter: 67
    assert plan(0.0625, max_cost=5.0).dtype == torch.float32  # exactly 80: still float32
    assert plan(0.0625, max_cost=5.5).dtype == torch.float64
    assert plan(0.5, dtype=torch.float64).dtype == torch.float64  # forced
    assert plan(0.03, dtype=torch.float32).dtype == torch.float32
    # every input is converted: float64 masses and cost still give a float32 solve when it is safe
    a64, b64 = a.double(), b.double()
    mixed = unbalanced_plan(cost.double(), a64, b64, reg=0.5, reg_m=1.0, max_iter=5, stop_threshold=1e-6)
    assert mixed.dtype == torch.float32
    assert unbalanced_plan(cost.double(), a64, b64, reg=0.5, reg_m=1.0, max_iter=5, stop_threshold=1e-6,
                           dtype=torch.float32).dtype == torch.float32
