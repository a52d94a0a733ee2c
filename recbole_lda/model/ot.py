"""Instance/anchor alignment by entropy-regularised unbalanced optimal transport (step 2).

For a batch of B instances and A anchors with cost C (B, A), POT solves

    Q* = argmin_Q  <C, Q> + eps KL(Q || mu_1 mu_2^T) + rho KL(Q 1 || mu_1) + rho KL(Q^T 1 || mu_2)

(Chizat et al., 2018, "Scaling algorithms for unbalanced optimal transport problems"),
with eps = `ot_reg` and rho = `ot_reg_m`. The soft marginal penalties let the plan
leave mass where the instances and the anchors disagree, instead of forcing every anchor
to take the same share. LDA uses the row-normalised plan, without gradient, as a soft
pseudo-label: which anchors instance i should sit near.

Scope. With `anchor_scope: bucket` an instance may only be matched to the anchors of its
own duration bucket: we solve one problem per batch over the anchors of the buckets present,
with the off-bucket entries of the kernel set to exactly zero (a cost penalty that
underflows exp(-C / eps)). Sinkhorn's updates then never mix buckets, so this single solve
is the same as one solve per bucket, at the cost of one. mu_1 is uniform over the batch;
mu_2 gives each bucket's anchors the bucket's share of the batch, split evenly.
"""

import ot
import torch

# Added to off-scope costs: exp(-(C + OFF_SCOPE) / eps) is exactly 0 in float64 for eps <= 1.
OFF_SCOPE = 1e4


def unbalanced_plan(cost, row_mass, col_mass, reg, reg_m, max_iter, stop_threshold):
    """Q* of the problem above with POT's Sinkhorn-Knopp solver, in float64.

    On a GPU, POT runs on the torch tensors themselves. On the CPU we hand it numpy arrays:
    same solver, same numbers, but POT's per-iteration overhead is several times smaller
    with its numpy backend than with its torch backend at batch sizes like ours (measured
    about 6x for 2048 x 64). No gradient is needed: the plan is a fixed pseudo-label.

    Args:
        cost: (B, A) tensor.
        row_mass: (B,) mu_1, positive.
        col_mass: (A,) mu_2, positive.
    Returns:
        (B, A) float64 tensor on cost's device.
    """
    args = [row_mass.double(), col_mass.double(), cost.double()]
    on_cpu = cost.device.type == "cpu"
    if on_cpu:
        args = [x.numpy() for x in args]
    plan = ot.unbalanced.sinkhorn_unbalanced(*args, reg, reg_m, numItermax=max_iter, stopThr=stop_threshold)
    return torch.from_numpy(plan) if on_cpu else plan


@torch.no_grad()
def alignment_targets(cost, instance_bucket, anchor_bucket, scope, reg, reg_m, max_iter, stop_threshold):
    """Row-normalised OT plan over the anchors in scope.

    Args:
        cost: (B, A) cost 1 - cos(h_i, p_k) over all A = D*K anchors.
        instance_bucket: (B,) duration bucket of each instance.
        anchor_bucket: (A,) bucket of each anchor.
        scope: "bucket" (own bucket's anchors only) or "all".
    Returns:
        (B, A) float32 targets: each row sums to 1; zero outside the instance's scope and
        on anchors of buckets absent from the batch.
    """
    batch = cost.shape[0]
    present = torch.unique(instance_bucket)
    cols = torch.nonzero(torch.isin(anchor_bucket, present)).flatten()  # anchors with mass
    c = cost[:, cols].double()
    row_mass = torch.full((batch,), 1.0 / batch, dtype=torch.float64, device=cost.device)
    if scope == "bucket":
        in_scope = instance_bucket[:, None] == anchor_bucket[cols][None, :]
        c = torch.where(in_scope, c, c + OFF_SCOPE)
        share = torch.bincount(instance_bucket, minlength=int(anchor_bucket.max()) + 1).double() / batch
        per_bucket = torch.bincount(anchor_bucket[cols], minlength=len(share)).double()
        col_mass = (share / per_bucket.clamp_min(1))[anchor_bucket[cols]]
    elif scope == "all":
        col_mass = torch.full((len(cols),), 1.0 / len(cols), dtype=torch.float64, device=cost.device)
    else:
        raise ValueError(f"anchor_scope must be bucket or all, got {scope!r}")
    plan = unbalanced_plan(c, row_mass, col_mass, reg, reg_m, max_iter, stop_threshold)
    plan = plan / plan.sum(dim=1, keepdim=True).clamp_min(1e-300)
    targets = torch.zeros_like(cost)
    targets[:, cols] = plan.float()
    return targets
