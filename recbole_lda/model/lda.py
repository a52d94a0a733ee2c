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

Third round (docs/lda.md): readings of the seed that were never run, as keys: one phi for
instances and anchors (`phi_shared`), phi on the codebook vectors a_k instead of the
decoded anchors (`anchor_input: codebook`), beta = softmax(h^T p) without normalisation or
temperature (`similarity: dot`), mu_2 from code usage (`anchor_mass: usage`), a linear g
(`predictor_hidden_size: []`); the `anchor_label_match` diagnostic (split_report); and our
extension, anchors over D2Q's duration-debiased quantile label with g predicting it and
D2Q's table mapping it back to seconds (`regression_target: quantile`, module `quantile`).
"""

from typing import NamedTuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from recbole.model.layers import MLPLayers

from recbole_lda.model.anchor_label import anchor_label_agreement, anchor_masses, label_cost, nearest_anchor_counts
from recbole_lda.model.anchors import AnchorFit, assign_buckets, fit_from_config
from recbole_lda.model.backbone import REGRESSION_LOSSES, WatchTimeRecommender, training_statistics
from recbole_lda.model.ot import alignment_targets
from recbole_lda.model.quantile import duration_groups, group_of, to_quantile, to_watch_time
from recbole_lda.model.vq import SequenceVQVAE, sample_batch
from recbole_lda.trainer.trainer import interactions

# Modules of the anchor path (anchor_lr_scale).
ANCHOR_PATH = ("phi_x", "phi_a", "g", "g_out", "bucket_offset")

# Attribute <- LDA.yaml key: the settings the model reads while training.
SETTINGS = {
    "lambda_ot": "lambda_ot", "lambda_vq": "lambda_vq", "lambda_compact": "lambda_compact",
    "lambda_direct": "lambda_direct", "temperature": "temperature", "temperature_start": "temperature_start",
    "temperature_epochs": "temperature_anneal_epochs", "scope": "anchor_scope", "predictor_input": "predictor_input",
    "target": "regression_target", "anchor_lr_scale": "anchor_lr_scale", "ot_batch_fraction": "ot_batch_fraction",
    "label_weight": "ot_label_weight", "label_bandwidth": "ot_label_bandwidth", "similarity": "similarity",
    "anchor_input": "anchor_input",
}


class Outputs(NamedTuple):
    pred: torch.Tensor  # (B,) watch time
    cos: torch.Tensor  # (B, D*K) cos(h_i, p_k)
    log_beta: torch.Tensor  # (B, D*K)
    bucket: torch.Tensor  # (B,) duration bucket
    h: torch.Tensor  # (B, m) phi_x(f(x)), normalised unless similarity: dot
    p: torch.Tensor  # (D*K, m) phi_a(anchors), normalised unless similarity: dot
    features: torch.Tensor  # (B, d) f(x)
    out: torch.Tensor  # (B,) g's output: the ratio, watch time / label_scale, or the quantile


def inverse_softplus(y):
    return y + torch.log(-torch.expm1(-y))


class LDA(WatchTimeRecommender):
    loss_names = ("regression", "alignment", "vq")

    def __init__(self, config, dataset, anchor_fit=None):
        """`anchor_fit` (AnchorFit): step 1's result, given instead of fitted (see `from_saved`)."""
        super().__init__(config, dataset)
        self.read_settings(config)
        statistics = training_statistics(dataset) if self.takes_statistics(config) else None
        labels = durations = None  # with the one-pass statistics, no training column is read
        if statistics is None:
            labels, durations = (t.numpy() for t in self.train_labels(dataset))
        self.label_table(config, labels, durations, statistics)
        fit = anchor_fit if anchor_fit is not None else self.fit_anchors(config, dataset, labels, durations, statistics)
        self.keep_anchors(config, fit, durations, statistics)
        self.build_projections(config)
        self.build_predictor(config, labels, durations, fit, fresh=anchor_fit is None, statistics=statistics)
        # a buffer, so that the best model and a saved one keep the temperature they were evaluated at
        self.register_buffer("current_temperature", torch.tensor(float(self.temperature)))
        self.set_epoch(0)

    def read_settings(self, config):
        """Copy the training-time settings (SETTINGS) and check the combinations."""
        for attribute, key in SETTINGS.items():
            setattr(self, attribute, config[key])
        self.regression_loss = REGRESSION_LOSSES[config["regression_loss"]]
        self.joint = config["anchor_training"] == "joint"
        if self.joint and config["anchor_source"] != "vqvae":
            raise ValueError("anchor_training: joint needs anchor_source: vqvae")
        if self.anchor_input == "codebook" and config["anchor_source"] != "vqvae":
            raise ValueError("anchor_input: codebook needs anchor_source: vqvae (k-means and random anchors have no codes)")
        if self.target == "quantile" and config["predictor_init"] == "bucket_mean":
            raise ValueError("predictor_init: bucket_mean needs regression_target ratio or watch_time")
        # semi-relaxed (ProWTP): the instance marginal is exact (rho = inf), the anchors' relaxed
        reg_m = config["ot_reg_m"] if config["ot_relaxation"] == "both" else (float("inf"), config["ot_reg_m"])
        self.ot_args = dict(reg=config["ot_reg"], reg_m=reg_m, max_iter=config["ot_max_iter"], stop_threshold=config["ot_stop_threshold"])

    @staticmethod
    def takes_statistics(config):
        """Whether the one-pass statistics of the training partitions (the ray engine's driver,
        `training_statistics`) cover this configuration: sequences drawn at random or per user
        (every target, mu_2 and direct head). Otherwise (`item` sampling: counts per video and
        bucket) the model reads the training columns, as in memory."""
        return config["sequence_sampling"] in ("random", "user")

    def label_table(self, config, labels, durations, statistics=None):
        """regression_target: quantile: D2Q's duration groups and quantile tables (buffers), from
        the training columns or from `statistics`."""
        if self.target != "quantile":
            return
        if statistics is not None:
            cuts, table = statistics.d2q_tables(config["duration_groups"], config["quantile_points"])
        else:
            cuts, table = duration_groups(labels, durations, config["duration_groups"], config["quantile_points"])
        self.register_buffer("quantile_edges", torch.tensor(cuts, dtype=torch.float32))  # (G-1,)
        self.register_buffer("quantile_table", torch.tensor(table, dtype=torch.float32))  # (G, P+1)
        self.register_buffer("levels", torch.linspace(0.0, 1.0, table.shape[1]), persistent=False)

    def anchor_value(self, label, duration):
        """A label in the anchors' space: log(1 + watch ratio), or D2Q's quantile."""
        if self.target == "quantile":
            return to_quantile(self.quantile_table[group_of(self.quantile_edges, duration)], self.levels, label)
        return torch.log1p((label / duration.clamp_min(1e-6)).clamp_min(0))

    def fit_anchors(self, config, dataset, labels, durations, statistics=None):
        """Step 1 from the training split: buckets, label sequences, anchors."""
        if statistics is not None:  # the same buckets and sequences, from passes over the partitions
            edges = statistics.bucket_edges(config["num_buckets"])
            value = None  # log(1 + watch ratio); D2Q's quantile label with regression_target: quantile
            if self.target == "quantile":
                value = lambda label, duration: self.anchor_value(torch.as_tensor(label), torch.as_tensor(duration)).numpy()  # noqa: E731
            drawn = (edges, statistics.label_sequences(edges, config["sequence_sampling"], config["num_sequences"],
                                                       config["sequence_length"], config["min_source_size"], config["seed"],
                                                       value))
            return fit_from_config(config, None, None, None, drawn=drawn)
        source_field = {"user": config["USER_ID_FIELD"], "item": config["ITEM_ID_FIELD"]}.get(config["sequence_sampling"])
        sources = dataset.inter_feat[source_field].numpy() if source_field else None
        if self.target == "quantile":  # sequences of D2Q's quantile label, as they are
            values = self.anchor_value(torch.as_tensor(labels), torch.as_tensor(durations)).numpy()
            return fit_from_config(config, values, durations, sources, log_space=False)
        return fit_from_config(config, labels / np.maximum(durations, 1e-6), durations, sources)

    def keep_anchors(self, config, fit, durations, statistics=None):
        """Buffers of step 1's result: bucket edges, anchors (or the sequences and VQ-VAE when
        joint), the codebook (anchor_input: codebook) and mu_2 (anchor_mass: usage; the rows per
        bucket from the training durations or from `statistics`)."""
        self.register_buffer("bucket_edges", torch.tensor(fit.edges, dtype=torch.float32))
        self.num_buckets = len(fit.edges) - 1
        self.anchor_reports = fit.reports
        self.num_anchors = fit.anchors.shape[1]
        self.register_buffer("anchor_bucket", torch.arange(self.num_buckets).repeat_interleave(self.num_anchors))
        if self.joint:
            self.vqvae = fit.vqvae
            self.register_buffer("sequences", torch.from_numpy(fit.sequences))  # (D, L, n), drawn per batch
            self.vq_batch_size = config["vq_batch_size"]
        else:
            self.register_buffer("anchor_quantiles", fit.anchors)  # (D, K, n), fixed
            if self.anchor_input == "codebook":
                self.register_buffer("anchor_codes", fit.vqvae.quantizer.codebook.detach().clone())  # (D, K, e)
        self.register_buffer("anchor_mass", None)  # uniform mu_2
        if config["anchor_mass"] == "usage":
            counts = [r["code_counts"] for r in fit.reports if "code_counts" in r] or nearest_anchor_counts(fit.sequences, fit.anchors)
            if statistics is not None:
                rows = statistics.bucket_rows(fit.edges)
            else:
                rows = np.bincount(assign_buckets(durations, fit.edges), minlength=self.num_buckets)
            self.register_buffer("anchor_mass", anchor_masses(counts, rows).float())  # (D*K,), sums to 1

    def build_projections(self, config):
        """phi_x on f(x) and phi_a on the anchors (decoded sequences or codebook vectors), or
        one phi for both (phi_shared: the inputs must then have one size)."""
        dim = config["projection_dim"]
        anchor_dim = config["vq_code_dim"] if self.anchor_input == "codebook" else config["sequence_length"]
        self.phi_x = nn.Linear(self.backbone.output_dim, dim)
        if config["phi_shared"]:
            if anchor_dim != self.backbone.output_dim:
                raise ValueError(
                    f"phi_shared needs anchors of the instance vector's size {self.backbone.output_dim} (mlp_hidden_size[-1]), "
                    f"got {anchor_dim}: set vq_code_dim (anchor_input: codebook) or sequence_length to it"
                )
            self.phi_a = None  # phi_x projects both
        else:
            self.phi_a = nn.Sequential(nn.Linear(anchor_dim, dim), nn.ReLU(), nn.Linear(dim, dim))

    def build_predictor(self, config, labels, durations, fit, fresh, statistics=None):
        """g (an MLP, or linear with predictor_hidden_size: []), its per-bucket offset, the
        training std of the labels, and the auxiliary direct head (lambda_direct > 0); from the
        training columns, or from `statistics` (takes_statistics)."""
        dim, hidden = config["projection_dim"], list(config["predictor_hidden_size"])
        g_in = dim * (2 if self.predictor_input == "anchors+instance" else 1)
        self.g = MLPLayers([g_in] + hidden, activation="relu") if hidden else nn.Identity()
        self.g_out = nn.Linear(hidden[-1] if hidden else g_in, 1)
        std = statistics.label_std(ddof=0) if statistics is not None else float(labels.std())  # numpy's std: ddof 0
        self.register_buffer("label_scale", torch.tensor(std or 1.0))
        # g's output offset per duration bucket: 0, or (predictor_init: bucket_mean) the inverse
        # softplus of the bucket's mean training target, with g_out's weight at 0, so that
        # every instance starts at its bucket's mean watch ratio (or watch time)
        offset = torch.zeros(self.num_buckets)
        if config["predictor_init"] == "bucket_mean" and fresh:
            offset = inverse_softplus(self.bucket_means(labels, durations, fit.edges, statistics))
            nn.init.zeros_(self.g_out.weight)
            nn.init.zeros_(self.g_out.bias)
        self.bucket_offset = nn.Parameter(offset, requires_grad=config["predictor_init"] == "bucket_mean")
        # an auxiliary head reading f(x) directly (lambda_direct > 0): training signal only
        self.direct = None
        if self.lambda_direct > 0:  # starting at the mean training watch ratio
            self.direct = nn.Linear(self.backbone.output_dim, 1)
            if statistics is not None:
                mean_ratio = statistics.mean_ratio()
            else:
                mean_ratio = float(np.mean(labels / np.maximum(durations, 1e-6)))
            nn.init.constant_(self.direct.bias, float(inverse_softplus(torch.tensor(max(mean_ratio, 1e-3)))))

    def bucket_means(self, labels, durations, edges, statistics=None):
        """Mean training target per duration bucket: watch ratio, or watch time / label_scale;
        from the training columns, or from a pass over the partitions (`statistics`)."""
        if statistics is not None:
            means = statistics.bucket_means(edges, self.target, float(self.label_scale))
        else:
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
        if config["anchor_training"] == "joint" or config["anchor_input"] == "codebook":
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
        """On a split: how concentrated beta is (mean entropy in nats, mean effective number
        of anchors exp(entropy) out of the anchors in scope, mean largest weight, share of
        rows whose largest weight exceeds 0.9), and whether the anchor with the largest beta
        is the one that best explains the row's label (`anchor_label_agreement`)."""
        self.eval()
        entropy, top, chosen, best, buckets = [], [], [], [], []
        for interaction in interactions(data_loader, self.device):
            out = self.forward(interaction)
            beta = out.log_beta.exp()
            entropy.append(-torch.where(beta > 0, beta * out.log_beta, torch.zeros_like(beta)).sum(1).cpu())
            top.append(beta.max(1).values.cpu())
            value = self.anchor_value(interaction[self.LABEL], interaction[self.DURATION])
            chosen.append(beta.argmax(1).cpu())
            best.append(self.label_cost(value, out.bucket).argmin(1).cpu())
            buckets.append(out.bucket.cpu())
        entropy, top = torch.cat(entropy).double(), torch.cat(top).double()
        return {
            "beta_entropy": float(entropy.mean()),
            "beta_effective_anchors": float(entropy.exp().mean()),
            "anchors_in_scope": self.num_anchors if self.scope == "bucket" else self.num_anchors * self.num_buckets,
            "beta_max_mean": float(top.mean()),
            "beta_max_over_0.9": float((top > 0.9).double().mean()),
            **anchor_label_agreement(torch.cat(chosen), torch.cat(best), torch.cat(buckets), self.num_buckets,
                                     self.num_anchors, self.scope),
        }

    def anchor_table(self):
        """Current anchors (D*K, n) in the label space (log(1 + ratio), or D2Q's quantile);
        decoded codebooks when joint."""
        anchors = self.vqvae.anchors() if self.joint else self.anchor_quantiles
        return anchors.flatten(0, 1)

    def anchor_inputs(self):
        """What phi_a sees: the decoded anchors (D*K, n), or the codebook vectors a_k (D*K, e)."""
        if self.anchor_input == "codebook":
            return (self.vqvae.quantizer.codebook if self.joint else self.anchor_codes).flatten(0, 1)
        return self.anchor_table()

    def forward(self, interaction):
        """Returns `Outputs` (watch time first)."""
        duration = interaction[self.DURATION]
        bucket = assign_buckets(duration, self.bucket_edges)
        features = self.backbone(interaction)
        h = self.phi_x(features)  # (B, m)
        p = (self.phi_x if self.phi_a is None else self.phi_a)(self.anchor_inputs())  # (D*K, m)
        if self.similarity == "dot":  # beta = softmax(h^T p) as the seed writes it; the OT cost stays 1 - cos
            cos = F.normalize(h, dim=-1) @ F.normalize(p, dim=-1).T  # (B, D*K)
            logits = h @ p.T
        else:  # (one normalisation feeding both cos and the mixture: the graph, and so the runs, of round 2)
            h, p = F.normalize(h, dim=-1), F.normalize(p, dim=-1)
            cos = h @ p.T  # (B, D*K)
            logits = cos / self.current_temperature
        if self.scope == "bucket":
            logits = logits.masked_fill(bucket[:, None] != self.anchor_bucket[None, :], float("-inf"))
        log_beta = F.log_softmax(logits, dim=-1)
        mixture = log_beta.exp() @ p  # (B, m): sum_k beta_ik p_k
        g_in = torch.cat([mixture, h], dim=-1) if self.predictor_input == "anchors+instance" else mixture
        out = self.g_out(self.g(g_in)).squeeze(-1) + self.bucket_offset[bucket]
        if self.target == "quantile":  # linear, clipped to [0, 1] by the map back (as D2Q)
            pred = to_watch_time(self.quantile_table[group_of(self.quantile_edges, duration)], out)
        else:
            out = F.softplus(out)
            pred = out * duration if self.target == "ratio" else out * self.label_scale
        return Outputs(pred, cos, log_beta, bucket, h, p, features, out)

    def label_cost(self, value, bucket):
        """How badly each anchor's distribution explains each observed label `value` (in the
        anchors' space, `anchor_value`): recbole_lda.model.anchor_label.label_cost. (B,) -> (B, D*K)."""
        return label_cost(self.anchor_table().detach(), value, bucket, self.num_anchors, self.scope, self.label_bandwidth)

    def alignment_loss(self, cos, log_beta, bucket, value, h, p):
        """On a share of the batch: the cross-entropy between the OT targets (no gradient)
        and beta (ProWTP's assignment loss), and the compactness term: 1 - cos between h_i
        and its target mixture of anchors sum_k T_ik p_k (our reading of ProWTP's
        compactness loss; 0 when lambda_compact is 0). `value`: the labels in the anchors'
        space (for the label cost). Returns (alignment, compactness)."""
        if self.ot_batch_fraction < 1.0:
            keep = max(1, int(round(self.ot_batch_fraction * len(cos))))
            rows = torch.randperm(len(cos), device=cos.device)[:keep]
            cos, log_beta, bucket, value, h = cos[rows], log_beta[rows], bucket[rows], value[rows], h[rows]
        cost = 1.0 - cos.detach()
        if self.label_weight > 0:
            cost = cost + self.label_weight * self.label_cost(value, bucket)
        targets = alignment_targets(cost, bucket, self.anchor_bucket, self.scope, **self.ot_args, anchor_mass=self.anchor_mass)
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
        """(regression, alignment, vq). The regression is on g's target: the watch time
        scaled by the training std, or (regression_target: quantile) D2Q's quantile."""
        pred, cos, log_beta, bucket, h, p, features, out = self.forward(interaction)
        label, duration = interaction[self.LABEL], interaction[self.DURATION]
        if self.target == "quantile":
            regression = self.regression_loss(out, self.anchor_value(label, duration))
        else:
            regression = self.regression_loss(pred / self.label_scale, label / self.label_scale)
        if self.direct is not None:  # the backbone's auxiliary head (lambda_direct)
            direct = F.softplus(self.direct(features).squeeze(-1)) * duration
            regression = regression + self.lambda_direct * self.regression_loss(direct / self.label_scale, label / self.label_scale)
        zero = torch.zeros((), device=pred.device)
        alignment = zero
        if self.lambda_ot > 0 or self.lambda_compact > 0:
            assign, compact = self.alignment_loss(cos, log_beta, bucket, self.anchor_value(label, duration), h, p)
            alignment = self.lambda_ot * assign + self.lambda_compact * compact
        vq = self.lambda_vq * self.vq_loss() if self.joint else zero
        return regression, alignment, vq

    def predict(self, interaction):
        return self.forward(interaction)[0]
