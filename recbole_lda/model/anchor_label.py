"""How LDA's anchors relate to the observed label (no gradient anywhere here).

- `label_cost`: how badly each anchor's distribution explains an observed label (the
  optional label term of the OT cost, `ot_label_weight`);
- `anchor_label_agreement`: the `anchor_label_match` diagnostic: how often the anchor with
  the largest beta is the one that best explains the observed label;
- `anchor_masses`: mu_2 from code usage (`anchor_mass: usage`), each anchor's share of
  the training label distribution.

Labels are in the anchors' space: log(1 + watch ratio), or D2Q's quantile with
`regression_target: quantile`.
"""

import numpy as np
import torch

# The cap of the label cost: the range of the cosine cost 1 - cos; larger values would
# only underflow the OT kernel.
LABEL_COST_CAP = 2.0


def in_scope_anchors(bucket, num_anchors, total, scope):
    """Indices (B, K') of the anchors each row sees: its bucket's K, or all `total`."""
    if scope == "bucket":
        return bucket[:, None] * num_anchors + torch.arange(num_anchors, device=bucket.device)
    return torch.arange(total, device=bucket.device).expand(len(bucket), -1)


def label_cost(table, value, bucket, num_anchors, scope, bandwidth):
    """The negative log of a Gaussian kernel density (bandwidth in the anchors' space) of
    each row's label `value` under each anchor's n quantile values, minus its row minimum,
    capped at LABEL_COST_CAP. Computed for the anchors in scope only; others get the cap.

    table (A, n), value (B,), bucket (B,) -> (B, A)."""
    with torch.no_grad():
        idx = in_scope_anchors(bucket, num_anchors, len(table), scope)
        z = (value[:, None, None] - table[idx]) / bandwidth  # (B, K', n)
        nll = -torch.logsumexp(-0.5 * z**2, dim=-1)
        nll = (nll - nll.min(dim=1, keepdim=True).values).clamp_max(LABEL_COST_CAP)
        return torch.full((len(value), len(table)), LABEL_COST_CAP, device=value.device).scatter_(1, idx, nll)


def anchor_label_agreement(chosen, best, bucket, num_buckets, num_anchors, scope):
    """Does the anchor an instance leans on (largest beta, `chosen`) explain its label best
    (lowest label cost, `best`)? Both (B,) anchor indices in 0..D*K-1. Returns

    - anchor_label_match: share of rows where the two are the same anchor;
    - anchor_label_chance: 1 / (anchors in scope), the match of a uniform random pick;
    - anchor_label_majority: the match of always picking, per bucket (one group with
      scope all), the anchor most often best on these rows: what a model that ignores
      the instance reaches, a stronger reference than chance."""
    group = bucket if scope == "bucket" else torch.zeros_like(bucket)
    counts = torch.zeros(num_buckets, num_buckets * num_anchors, dtype=torch.long)
    counts.index_put_((group, best), torch.ones(len(best), dtype=torch.long), accumulate=True)
    in_scope = num_anchors if scope == "bucket" else num_anchors * num_buckets
    return {
        "anchor_label_match": float((chosen == best).double().mean()),
        "anchor_label_chance": 1.0 / in_scope,
        "anchor_label_majority": counts.max(1).values.sum().item() / max(len(best), 1),
    }


def anchor_masses(counts, bucket_rows):
    """mu_2 from code usage: anchor k of bucket d gets (share of training rows in bucket d)
    x (share of bucket d's sequences that code k serves), with one pseudo-count per code so
    that an unused code keeps a little mass (the unbalanced solver needs positive masses).

    counts (D, K) sequences per code, bucket_rows (D,) training rows per bucket -> (D*K,)
    float64 tensor summing to 1."""
    counts = np.asarray(counts, dtype=np.float64) + 1.0
    rows = np.asarray(bucket_rows, dtype=np.float64)
    mass = (rows / rows.sum())[:, None] * counts / counts.sum(1, keepdims=True)
    return torch.tensor(mass.reshape(-1), dtype=torch.float64)


def nearest_anchor_counts(sequences, anchors):
    """Sequences per anchor when each goes to its nearest anchor (squared distance): code
    usage for anchors that have no VQ-VAE codes (k-means, random). (D, L, n), (D, K, n) -> (D, K)."""
    nearest = torch.cdist(torch.as_tensor(sequences, dtype=torch.float32), anchors.float()).argmin(-1)  # (D, L)
    return torch.zeros(anchors.shape[:2]).scatter_add_(1, nearest, torch.ones(nearest.shape)).numpy()
