"""Duration buckets, label sequences and anchor generation (step 1 of LDA).

Everything here is computed from the TRAINING split only:
- D equal-frequency buckets of video duration (edges at training quantiles; tied
  quantiles are merged, so a duration with many ties can give fewer buckets);
- per bucket, L label sequences: each is n watch ratios drawn from the bucket, sorted,
  in log(1 + ratio) space. Where the n draws come from is `sequence_sampling`:
  `random` (the whole bucket: every sequence estimates the same distribution),
  `user` or `item` (the views of one user, or of one video, inside the bucket: sequences
  then differ the way users or videos differ, which is what anchors can tell apart);
- per bucket, K anchors, each a quantile function of n values: the decoded codebook of a
  VQ-VAE (`vqvae`, the method), k-means centroids of the sequences (`kmeans`), or K random
  sequences (`random`); the last two are ablations.
"""

import logging
from dataclasses import dataclass

import numpy as np
import torch

from recbole_lda.model.vq import SequenceVQVAE, train_vqvae

logger = logging.getLogger(__name__)

# The VQ-VAE settings of step 1 (LDA.yaml's vq_<key>).
VQ_KEYS = ("hidden_size", "code_dim", "beta", "steps", "batch_size", "learning_rate", "dead_code_reset_every")


def duration_bucket_edges(durations, num_buckets):
    """Equal-frequency bucket edges (D_eff + 1,) of the training durations; D_eff <= D."""
    edges = np.quantile(np.asarray(durations, dtype=np.float64), np.linspace(0, 1, num_buckets + 1))
    return np.unique(edges)


def assign_buckets(durations, edges):
    """Bucket index in [0, len(edges) - 2] of each duration; out-of-range values go to the
    first or last bucket. Works on numpy arrays and torch tensors."""
    inner = edges[1:-1]
    if isinstance(durations, torch.Tensor):
        return torch.bucketize(durations, inner, right=True)
    return np.searchsorted(inner, durations, side="right")


def sample_sequences(ratios, buckets, sources, num_buckets, num_sequences, length, min_source_size, rng, log_space=True):
    """Sorted label sequences per bucket: a float32 array (D, L, n) in log(1 + ratio) space
    (or, with log_space False, in the space of `ratios` as given: D2Q's quantile label).

    Args:
        ratios: (N,) training watch ratios (or labels in the anchors' space).
        buckets: (N,) bucket of each row.
        sources: (N,) id of the user or item of each row, or None to draw from the bucket.
        min_source_size: a user/item needs this many rows in a bucket to be a source.
        rng: numpy Generator.
    """
    values = np.log1p(np.clip(ratios, 0.0, None)) if log_space else np.asarray(ratios, dtype=np.float64)
    out = np.empty((num_buckets, num_sequences, length), dtype=np.float32)
    for b in range(num_buckets):
        rows = np.flatnonzero(buckets == b)
        if len(rows) == 0:
            raise ValueError(f"duration bucket {b} has no training rows")
        if sources is None:
            draws = rows[rng.integers(len(rows), size=(num_sequences, length))]
        else:
            ids, inverse, counts = np.unique(sources[rows], return_inverse=True, return_counts=True)
            eligible = np.flatnonzero(counts >= min_source_size)
            if len(eligible) == 0:  # too sparse to group: fall back to the whole bucket
                draws = rows[rng.integers(len(rows), size=(num_sequences, length))]
            else:
                order = np.argsort(inverse, kind="stable")
                starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
                chosen = eligible[rng.integers(len(eligible), size=num_sequences)]  # (L,)
                offsets = (rng.random((num_sequences, length)) * counts[chosen, None]).astype(np.int64)
                draws = rows[order[starts[chosen, None] + offsets]]
        out[b] = np.sort(values[draws], axis=1)
    return out


def kmeans(x, k, iters, rng):
    """Lloyd's k-means with k-means++ seeding on rows of x (N, n); returns centroids (k, n).
    Means of sorted vectors are sorted, so centroids are quantile functions too."""
    centers = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        d2 = np.min(((x[:, None, :] - np.array(centers)[None]) ** 2).sum(-1), axis=1)
        centers.append(x[rng.choice(len(x), p=d2 / d2.sum())] if d2.sum() > 0 else x[rng.integers(len(x))])
    centers = np.array(centers)
    for _ in range(iters):
        assign = ((x[:, None, :] - centers[None]) ** 2).sum(-1).argmin(1)
        for j in range(k):
            if np.any(assign == j):
                centers[j] = x[assign == j].mean(0)
    return centers


def build_anchors(seqs, source, num_anchors, seed, vq=None, kmeans_iters=30):
    """K anchors per bucket from sequences (D, L, n).

    Args:
        seqs: (D, L, n) sorted label sequences, log(1 + ratio).
        source: vqvae (the method), kmeans or random (ablations).
        num_anchors: K.
        seed: seed of the VQ-VAE initialisation and batches, or of k-means / the draw.
        vq: for vqvae, dict of hidden_size, code_dim, beta, steps, batch_size,
            learning_rate, dead_code_reset_every (properties/model/LDA.yaml's vq_* keys).
        kmeans_iters: Lloyd iterations for kmeans.

    Returns (anchors (D, K, n) float32 tensor in log(1 + ratio) space, per-bucket reports,
    the trained VQ-VAE or None).
    """
    rng = np.random.default_rng(seed)
    if source == "vqvae":
        gen = torch.Generator().manual_seed(seed)
        model = SequenceVQVAE(seqs.shape[0], seqs.shape[2], vq["hidden_size"], vq["code_dim"], num_anchors, vq["beta"])
        reports = train_vqvae(
            model,
            torch.from_numpy(seqs),
            steps=vq["steps"],
            batch_size=vq["batch_size"],
            lr=vq["learning_rate"],
            reset_every=vq["dead_code_reset_every"],
            generator=gen,
        )
        with torch.no_grad():
            return model.anchors(), reports, model
    if source == "kmeans":
        anchors = np.stack([kmeans(s, num_anchors, kmeans_iters, rng) for s in seqs])
    elif source == "random":
        anchors = np.stack([s[rng.choice(len(s), num_anchors, replace=False)] for s in seqs])
    else:
        raise ValueError(f"anchor_source must be vqvae, kmeans or random, got {source!r}")
    return torch.tensor(anchors, dtype=torch.float32), [{"bucket": b} for b in range(len(seqs))], None


@dataclass
class AnchorFit:
    """Step 1's result, all from the training split."""

    edges: np.ndarray  # (D_eff + 1,) duration bucket edges, seconds
    sequences: np.ndarray  # (D_eff, L, n) label sequences, log(1 + ratio)
    anchors: torch.Tensor  # (D_eff, K, n) anchors, log(1 + ratio)
    reports: list  # per bucket: codebook usage etc.
    vqvae: object  # the trained SequenceVQVAE (anchor_source: vqvae), else None


def fit_anchors(ratios, durations, sources, *, num_buckets, num_anchors, num_sequences, sequence_length,
                min_source_size, anchor_source, seed, vq=None, kmeans_iters=30, log_space=True, drawn=None):
    """Step 1 of LDA: duration buckets, label sequences per bucket, K anchors per bucket.

    Args:
        ratios, durations: (N,) training watch ratios and durations (seconds).
        log_space: sequences of log(1 + ratio) (True) or of `ratios` as given.
        sources: (N,) user or item ids that sequences are drawn from, or None (whole bucket).
        num_buckets: D (fewer when durations have tied quantiles).
        drawn: (edges, sequences) already computed from the training split (the ray engine's
            driver: dataset_prep/label_statistics.py, the same values); ratios, durations and
            sources are then not used.
        the rest: see `sample_sequences` and `build_anchors`.
    """
    if drawn is not None:
        edges, seqs = drawn
    else:
        edges = duration_bucket_edges(durations, num_buckets)
        buckets = assign_buckets(durations, edges)
        rng = np.random.default_rng(seed)
        seqs = sample_sequences(
            ratios, buckets, sources, len(edges) - 1, num_sequences, sequence_length, min_source_size, rng, log_space
        )
    anchors, reports, vqvae = build_anchors(seqs, anchor_source, num_anchors, seed, vq, kmeans_iters)
    return AnchorFit(edges, seqs, anchors, reports, vqvae)


def fit_from_config(config, values, durations, sources, log_space=True, drawn=None):
    """`fit_anchors` with LDA.yaml's settings; `values` are the training watch ratios (or,
    log_space False, labels already in the anchors' space); `drawn`: see fit_anchors."""
    fit = fit_anchors(
        values, durations, sources, drawn=drawn,
        num_buckets=config["num_buckets"],
        num_anchors=config["num_anchors"],
        num_sequences=config["num_sequences"],
        sequence_length=config["sequence_length"],
        min_source_size=config["min_source_size"],
        anchor_source=config["anchor_source"],
        seed=config["seed"],
        vq={key: config[f"vq_{key}"] for key in VQ_KEYS},
        kmeans_iters=config["kmeans_iters"],
        log_space=log_space,
    )
    if len(fit.edges) - 1 < config["num_buckets"]:
        logger.warning(f"durations have tied quantiles: {len(fit.edges) - 1} buckets instead of {config['num_buckets']}")
    vq_reports = [r for r in fit.reports if "codes_used" in r]
    if vq_reports:  # one line for all buckets; every figure is in the results file (model_report)
        logger.info(
            f"anchors: {len(fit.edges) - 1} buckets x {config['num_anchors']} codes; codes used per bucket "
            f"{[r['codes_used'] for r in vq_reports]}, perplexity {[round(r['perplexity'], 2) for r in vq_reports]}, "
            f"mean reconstruction mse {np.mean([r['reconstruction_mse'] for r in vq_reports]):.4f}, "
            f"dead-code restarts {sum(r['dead_code_restarts'] for r in vq_reports)}"
        )
    return fit
