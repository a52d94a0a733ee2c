"""Lazy Adam for the sparse id tables of the ray engine: torch.optim.SparseAdam's update, made
with dense index operations.

torch.optim.SparseAdam (torch 2.x, CPU) builds three sparse tensors per table and step and adds
them to dense ones; on a 2M-row video table it took 23 ms for the 30K rows of a 32,768-row
batch (1 thread), about as long as the model's forward and backward. `LazyAdam` takes the
same step with index_select / index_copy_ / index_add_ on the batch's rows, a few times
faster, and keeps SparseAdam's constructor, defaults and state (`step`, `exp_avg`,
`exp_avg_sq` per table), so checkpoints look the same. tests/test_sparse_tables.py checks
that both take the same steps.

`coalesce(grad)`: the sum of a sparse gradient's duplicate rows, sorted by row, as a
coalesced sparse tensor (torch.unique and index_add_, faster than Tensor.coalesce on CPU).
"""

import math

import torch


def coalesce(grad):
    """`grad` (a sparse COO gradient of a 2-D table) with each row once (duplicates summed)."""
    if grad.is_coalesced():
        return grad
    rows, where = torch.unique(grad._indices()[0], return_inverse=True)
    values = grad._values()
    summed = values.new_zeros((len(rows), *values.shape[1:])).index_add_(0, where, values)
    return torch.sparse_coo_tensor(rows.unsqueeze(0), summed, grad.shape, is_coalesced=True,
                                   check_invariants=False)


class LazyAdam(torch.optim.SparseAdam):
    """torch.optim.SparseAdam's step (module docstring): a row's moments and weights move only
    on steps whose gradient holds the row."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                if not param.grad.is_sparse:
                    raise RuntimeError("LazyAdam takes sparse gradients (the id tables' embeddings with sparse=True)")
                state = self.state[param]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                state["step"] += 1
                grad = coalesce(param.grad)
                rows, values = grad._indices()[0], grad._values()
                if values.numel() == 0:
                    continue
                # SparseAdam's arithmetic, in its order: old += (1 - b) * (new - old)
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                old_avg, old_sq = exp_avg.index_select(0, rows), exp_avg_sq.index_select(0, rows)
                numer = values.sub(old_avg).mul_(1 - beta1).add_(old_avg)
                exp_avg.index_copy_(0, rows, numer)
                sq = values.pow(2).sub_(old_sq).mul_(1 - beta2).add_(old_sq)
                exp_avg_sq.index_copy_(0, rows, sq)
                denom = sq.sqrt_().add_(group["eps"])
                step = state["step"]
                step_size = group["lr"] * math.sqrt(1 - beta2**step) / (1 - beta1**step)
                param.index_add_(0, rows, -step_size * numer.div_(denom))
        return loss
