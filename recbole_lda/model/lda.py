"""LDA: Leveraging label Distributions as Anchors (Xu, Cui, Tang, Li, Han, Cao, Gao, Chen,
"Leveraging Label Distributions as Anchors to Enhance Video Recommendation").

Claim: watch-time errors come mostly from poor instance representations. Fix: learn
discrete anchors that summarise the label distribution and pull instance representations
towards them.

1. Anchors (recbole_lda/model/anchors.py, vq.py). Training durations are cut into D
   equal-frequency buckets; per bucket a VQ-VAE over sorted label sequences learns K
   anchors, each a quantile function of watch ratios. Pre-trained before the main model
   (default) or trained jointly with it (`anchor_training: joint`).
2. Alignment (recbole_lda/model/ot.py). Instances h_i = phi_x(f(x_i)) (f the shared
   backbone) and anchors p_k = phi_a(anchor_k) share one space; C_ik = 1 - cos(h_i, p_k);
   entropy-regularised unbalanced OT gives Q*, whose rows (no gradient) are the targets of
   a cross-entropy on beta_i (SwAV-style).
3. Prediction. beta_ik = softmax_k(cos(h_i, p_k) / temperature) over the anchors in scope;
   y_i = duration_i * g(sum_k beta_ik p_k), g a small MLP giving a non-negative watch ratio.

Loss = regression + lambda_ot * alignment (+ lambda_vq * VQ-VAE loss when joint); the trainer
logs the three parts under their `loss_names`.

Unpublished details and our choices (all YAML keys, properties/model/LDA.yaml): D, K, n,
L and how sequences are drawn; phi_a acts on an anchor's decoded quantile function (so
that k-means and random anchors, the ablations, enter exactly where VQ-VAE anchors do);
cosine similarity with a temperature in beta; marginals of the OT problem (uniform over
the batch; uniform over the anchors in scope: solved per bucket with row-normalised targets,
a bucket's total share would change nothing); the regression loss; and what g
sees (`predictor_input`: the anchor mixture alone, as in the paper, or with h_i).

Second round (docs/results.md, "LDA, second round"): what g predicts (`regression_target`:
the watch ratio times the duration, as in the paper, or the watch time), a learning rate of
its own for the anchor path (`anchor_lr_scale`: phi_x, phi_a and g learn only through beta
and were the slow part), and, off by default and measured as ablations: a bucket-mean start
of g (`predictor_init`), a temperature schedule (`temperature_start`), an auxiliary head
reading f(x) (`lambda_direct`), and ProWTP's semi-relaxed OT (`ot_relaxation: anchors`) and
compactness loss (`lambda_compact`).
"""

import logging
from typing import NamedTuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from recbole.model.layers import MLPLayers

from recbole_lda.model.backbone import REGRESSION_LOSSES, WatchTimeRecommender
from recbole_lda.model.anchors import AnchorFit, assign_buckets, fit_anchors
from recbole_lda.model.ot import alignment_targets
from recbole_lda.model.vq import SequenceVQVAE, sample_batch
from recbole_lda.trainer.trainer import interactions

logger = logging.getLogger(__name__)

# Modules of the anchor path (anchor_lr_scale).
ANCHOR_PATH = ("phi_x", "phi_a", "g", "g_out", "bucket_offset")


class Outputs(NamedTuple):
    pred: torch.Tensor  # (B,) watch time
    cos: torch.Tensor  # (B, D*K) cos(h_i, p_k)
    log_beta: torch.Tensor  # (B, D*K)
    bucket: torch.Tensor  # (B,) duration bucket
    h: torch.Tensor  # (B, m) phi_x(f(x)), normalised
    p: torch.Tensor  # (D*K, m) phi_a(anchors), normalised
    features: torch.Tensor  # (B, d) f(x)


def inverse_softplus(y):
    return y + torch.log(-torch.expm1(-y))


# The VQ-VAE settings of step 1 (LDA.yaml's vq_<key>).
VQ_KEYS = ("hidden_size", "code_dim", "beta", "steps", "batch_size", "learning_rate", "dead_code_reset_every")


class LDA(WatchTimeRecommender):
    loss_names = ("regression", "alignment", "vq")

    def __init__(self, config, dataset, anchor_fit=None):
        """`anchor_fit` (AnchorFit): step 1's result, given instead of fitted (see `from_saved`)."""
        super().__init__(config, dataset)
        self.regression_loss = REGRESSION_LOSSES[config["regression_loss"]]
        self.lambda_ot = config["lambda_ot"]
        self.lambda_vq = config["lambda_vq"]
        self.temperature = config["temperature"]
        self.scope = config["anchor_scope"]
        self.predictor_input = config["predictor_input"]
        self.joint = config["anchor_training"] == "joint"
        if self.joint and config["anchor_source"] != "vqvae":
            raise ValueError("anchor_training: joint needs anchor_source: vqvae")
        # semi-relaxed (ProWTP): the instance marginal is exact (rho = inf), the anchors' relaxed
        reg_m = config["ot_reg_m"] if config["ot_relaxation"] == "both" else (float("inf"), config["ot_reg_m"])
        self.ot_args = dict(reg=config["ot_reg"], reg_m=reg_m, max_iter=config["ot_max_iter"], stop_threshold=config["ot_stop_threshold"])
        self.lambda_compact = config["lambda_compact"]
        self.lambda_direct = config["lambda_direct"]
        self.target = config["regression_target"]
        self.temperature_start = config["temperature_start"]
        self.temperature_epochs = config["temperature_anneal_epochs"]
        self.anchor_lr_scale = config["anchor_lr_scale"]
        self.ot_batch_fraction = config["ot_batch_fraction"]
        self.label_weight = config["ot_label_weight"]
        self.label_bandwidth = config["ot_label_bandwidth"]

        # --- step 1: buckets and anchors, from the training split only
        labels, durations = (t.numpy() for t in self.train_labels(dataset))
        source_field = {"user": config["USER_ID_FIELD"], "item": config["ITEM_ID_FIELD"]}.get(config["sequence_sampling"])
        fit = anchor_fit if anchor_fit is not None else fit_anchors(
            labels / np.maximum(durations, 1e-6),
            durations,
            dataset.inter_feat[source_field].numpy() if source_field else None,
            num_buckets=config["num_buckets"],
            num_anchors=config["num_anchors"],
            num_sequences=config["num_sequences"],
            sequence_length=config["sequence_length"],
            min_source_size=config["min_source_size"],
            anchor_source=config["anchor_source"],
            seed=config["seed"],
            vq={key: config[f"vq_{key}"] for key in VQ_KEYS},
            kmeans_iters=config["kmeans_iters"],
        )
        self.register_buffer("bucket_edges", torch.tensor(fit.edges, dtype=torch.float32))
        self.num_buckets = len(fit.edges) - 1
        if self.num_buckets < config["num_buckets"] and anchor_fit is None:
            logger.warning(f"durations have tied quantiles: {self.num_buckets} buckets instead of {config['num_buckets']}")
        self.anchor_reports = fit.reports
        vq_reports = [r for r in fit.reports if "codes_used" in r]
        if vq_reports:  # one line for all buckets; every figure is in the results file (model_report)
            logger.info(
                f"anchors: {self.num_buckets} buckets x {config['num_anchors']} codes; codes used per bucket "
                f"{[r['codes_used'] for r in vq_reports]}, perplexity {[round(r['perplexity'], 2) for r in vq_reports]}, "
                f"mean reconstruction mse {np.mean([r['reconstruction_mse'] for r in vq_reports]):.4f}, "
                f"dead-code restarts {sum(r['dead_code_restarts'] for r in vq_reports)}"
            )
        self.num_anchors = fit.anchors.shape[1]
        self.register_buffer("anchor_bucket", torch.arange(self.num_buckets).repeat_interleave(self.num_anchors))
        if self.joint:
            self.vqvae = fit.vqvae
            self.register_buffer("sequences", torch.from_numpy(fit.sequences))  # (D, L, n), drawn per batch
            self.vq_batch_size = config["vq_batch_size"]
        else:
            self.register_buffer("anchor_quantiles", fit.anchors)  # (D, K, n), fixed

        # --- step 2 and 3: shared space, predictor
        dim = config["projection_dim"]
        self.phi_x = nn.Linear(self.backbone.output_dim, dim)
        self.phi_a = nn.Sequential(nn.Linear(config["sequence_length"], dim), nn.ReLU(), nn.Linear(dim, dim))
        g_in = dim * (2 if self.predictor_input == "anchors+instance" else 1)
        self.g = MLPLayers([g_in] + list(config["predictor_hidden_size"]), activation="relu")
        self.g_out = nn.Linear(config["predictor_hidden_size"][-1], 1)
        self.register_buffer("label_scale", torch.tensor(float(labels.std()) or 1.0))
        # g's output offset per duration bucket: 0, or (predictor_init: bucket_mean) the inverse
        # softplus of the bucket's mean training target, with g_out's weight at 0, so that
        # every instance starts at its bucket's mean watch ratio (or watch time)
        offset = torch.zeros(self.num_buckets)
        if config["predictor_init"] == "bucket_mean" and anchor_fit is None:
            offset = inverse_softplus(self.bucket_means(labels, durations, fit.edges))
            nn.init.zeros_(self.g_out.weight)
            nn.init.zeros_(self.g_out.bias)
        self.bucket_offset = nn.Parameter(offset, requires_grad=config["predictor_init"] == "bucket_mean")
        # an auxiliary head reading f(x) directly (lambda_direct > 0): training signal only
        self.direct = None
        if self.lambda_direct > 0:  # starting at the mean training watch ratio
            self.direct = nn.Linear(self.backbone.output_dim, 1)
            mean_ratio = float(np.mean(labels / np.maximum(durations, 1e-6)))
            nn.init.constant_(self.direct.bias, float(inverse_softplus(torch.tensor(max(mean_ratio, 1e-3)))))
        # a buffer, so that the best model and a saved one keep the temperature they were evaluated at
        self.register_buffer("current_temperature", torch.tensor(float(self.temperature)))
        self.set_epoch(0)

    def bucket_means(self, labels, durations, edges):
        """Mean training target per duration bucket: watch ratio, or watch time / label_scale."""
        bucket = assign_buckets(torch.as_tensor(durations), torch.as_tensor(edges, dtype=torch.float32)).numpy()
        target = labels / np.maximum(durations, 1e-6) if self.target == "ratio" else labels / float(self.label_scale)
        means = [target[bucket == b].mean() if (bucket == b).any() else target.mean() for b in range(self.num_buckets)]
        return torch.tensor(np.maximum(means, 1e-3), dtype=torch.float32)

    def set_epoch(self, epoch):
        """Temperature for this epoch (the trainer calls it first thing in every epoch):
        geometric from temperature_start to temperature over temperature_anneal_epochs."""
        value = self.temperature
        if self.temperature_start is not None and epoch < self.temperature_epochs:
            share = epoch / self.temperature_epochs
            value = self.temperature_start ** (1 - share) * self.temperature**share
        self.current_temperature.fill_(value)

    def optimizer_param_groups(self, learning_rate):
        """Adam parameter groups: the anchor path (phi_x, phi_a, g, the offsets) at
        anchor_lr_scale times the learning rate, the rest at the learning rate."""
        anchor_path = [p for name, p in self.named_parameters() if name.split(".")[0] in ANCHOR_PATH]
        ids = {id(p) for p in anchor_path}
        rest = [p for p in self.parameters() if id(p) not in ids]
        return [{"params": rest}, {"params": anchor_path, "lr": learning_rate * self.anchor_lr_scale}]

    @classmethod
    def from_saved(cls, config, dataset, state_dict):
        """An LDA with the shapes of a saved `state_dict` and step 1 skipped (no anchor
        training): buckets, anchors, sequences and the VQ-VAE are zeros or untrained here and
        come from `state_dict`, which the caller loads next (recbole_lda.inference.saved_model)."""
        buckets = state_dict["bucket_edges"].shape[0] - 1
        length, anchors = config["sequence_length"], config["num_anchors"]
        vqvae = None
        if config["anchor_training"] == "joint":
            vqvae = SequenceVQVAE(buckets, length, config["vq_hidden_size"], config["vq_code_dim"], anchors, config["vq_beta"])
        fit = AnchorFit(
            edges=np.zeros(buckets + 1),
            sequences=np.zeros((buckets, config["num_sequences"], length), dtype=np.float32),
            anchors=torch.zeros(buckets, anchors, length),
            reports=[],
            vqvae=vqvae,
        )
        return cls(config, dataset, anchor_fit=fit)

    def report(self):
        """Buckets and per-bucket codebook usage, for the results file."""
        return {"bucket_edges_s": self.bucket_edges.tolist(), "anchors": self.anchor_reports}

    @torch.no_grad()
    def split_report(self, data_loader):
        """How concentrated beta is on a split: mean entropy (nats), mean effective number of
        anchors exp(entropy) out of the anchors in scope, mean largest weight, and the share
        of rows whose largest weight exceeds 0.9 (a row that sees one anchor only)."""
        self.eval()
        entropy, top = [], []
        for interaction in interactions(data_loader, self.device):
            log_beta = self.forward(interaction)[2]
            beta = log_beta.exp()
            entropy.append(-torch.where(beta > 0, beta * log_beta, torch.zeros_like(beta)).sum(1).cpu())
            top.append(beta.max(1).values.cpu())
        entropy, top = torch.cat(entropy).double(), torch.cat(top).double()
        return {
            "beta_entropy": float(entropy.mean()),
            "beta_effective_anchors": float(entropy.exp().mean()),
            "anchors_in_scope": self.num_anchors if self.scope == "bucket" else self.num_anchors * self.num_buckets,
            "beta_max_mean": float(top.mean()),
            "beta_max_over_0.9": float((top > 0.9).double().mean()),
        }

    def anchor_table(self):
        """Current anchors (D*K, n) in log(1 + ratio) space (decoded codebooks when joint)."""
        anchors = self.vqvae.anchors() if self.joint else self.anchor_quantiles
        return anchors.flatten(0, 1)

    def forward(self, interaction):
        """Returns `Outputs` (watch time first)."""
        duration = interaction[self.DURATION]
        bucket = assign_buckets(duration, self.bucket_edges)
        features = self.backbone(interaction)
        h = F.normalize(self.phi_x(features), dim=-1)  # (B, m)
        p = F.normalize(self.phi_a(self.anchor_table()), dim=-1)  # (D*K, m)
        cos = h @ p.T  # (B, D*K)
        logits = cos / self.current_temperature
        if self.scope == "bucket":
            logits = logits.masked_fill(bucket[:, None] != self.anchor_bucket[None, :], float("-inf"))
        log_beta = F.log_softmax(logits, dim=-1)
        mixture = log_beta.exp() @ p  # (B, m): sum_k beta_ik p_k
        g_in = torch.cat([mixture, h], dim=-1) if self.predictor_input == "anchors+instance" else mixture
        out = F.softplus(self.g_out(self.g(g_in)).squeeze(-1) + self.bucket_offset[bucket])
        pred = out * duration if self.target == "ratio" else out * self.label_scale
        return Outputs(pred, cos, log_beta, bucket, h, p, features)

    def label_cost(self, ratio, bucket):
        """How badly each anchor's distribution explains each observed watch ratio: the
        negative log of a Gaussian kernel density over the anchor's n quantile values (in
        log(1 + ratio) space), minus its row minimum, capped at 2 (the range of the cosine
        cost: larger values would only underflow the OT kernel). Computed for the anchors
        in scope only; others get the cap. (B,) -> (B, D*K), no gradient."""
        with torch.no_grad():
            table = self.anchor_table()  # (A, n)
            if self.scope == "bucket":  # the K anchors of each instance's bucket
                idx = bucket[:, None] * self.num_anchors + torch.arange(self.num_anchors, device=bucket.device)
            else:
                idx = torch.arange(len(table), device=bucket.device).expand(len(bucket), -1)
            z = (torch.log1p(ratio.clamp_min(0))[:, None, None] - table[idx]) / self.label_bandwidth  # (B, K', n)
            nll = -torch.logsumexp(-0.5 * z**2, dim=-1)
            nll = (nll - nll.min(dim=1, keepdim=True).values).clamp_max(2.0)
            return torch.full((len(ratio), len(table)), 2.0, device=ratio.device).scatter_(1, idx, nll)

    def alignment_loss(self, cos, log_beta, bucket, ratio, h, p):
        """On a share of the batch: the cross-entropy between the OT targets (no gradient)
        and beta (ProWTP's assignment loss), and the compactness term: 1 - cos between h_i
        and its target mixture of anchors sum_k T_ik p_k (our reading of ProWTP's
        compactness loss; 0 when lambda_compact is 0). Returns (alignment, compactness)."""
        if self.ot_batch_fraction < 1.0:
            keep = max(1, int(round(self.ot_batch_fraction * len(cos))))
            rows = torch.randperm(len(cos), device=cos.device)[:keep]
            cos, log_beta, bucket, ratio, h = cos[rows], log_beta[rows], bucket[rows], ratio[rows], h[rows]
        cost = 1.0 - cos.detach()
        if self.label_weight > 0:
            cost = cost + self.label_weight * self.label_cost(ratio, bucket)
        targets = alignment_targets(cost, bucket, self.anchor_bucket, self.scope, **self.ot_args)
        # masked log_beta is -inf where targets are exactly 0: count those terms as 0
        alignment = -torch.where(targets > 0, targets * log_beta, torch.zeros_like(log_beta)).sum(1).mean()
        compact = torch.zeros((), device=cos.device)
        if self.lambda_compact > 0:
            compact = (1.0 - F.cosine_similarity(h, targets @ p, dim=-1)).mean()
        return alignment, compact

    def vq_loss(self):
        """VQ-VAE loss on fresh sequences of every bucket (joint training)."""
        _, _, recon_loss, vq_loss = self.vqvae(sample_batch(self.sequences, self.vq_batch_size))
        return recon_loss + vq_loss

    def calculate_loss(self, interaction):
        pred, cos, log_beta, bucket, h, p, features = self.forward(interaction)
        label, duration = interaction[self.LABEL], interaction[self.DURATION]
        regression = self.regression_loss(pred / self.label_scale, label / self.label_scale)
        if self.direct is not None:  # the backbone's auxiliary head (lambda_direct)
            direct = F.softplus(self.direct(features).squeeze(-1)) * duration
            regression = regression + self.lambda_direct * self.regression_loss(direct / self.label_scale, label / self.label_scale)
        zero = torch.zeros((), device=pred.device)
        alignment = zero
        if self.lambda_ot > 0 or self.lambda_compact > 0:
            assign, compact = self.alignment_loss(cos, log_beta, bucket, label / duration.clamp_min(1e-6), h, p)
            alignment = self.lambda_ot * assign + self.lambda_compact * compact
        vq = self.lambda_vq * self.vq_loss() if self.joint else zero
        return regression, alignment, vq

    def predict(self, interaction):
        return self.forward(interaction)[0]
