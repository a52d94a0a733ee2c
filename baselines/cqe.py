"""CQE: conditional quantile estimation of the watch time.

Lin, Liu, Wang and Liu, "Conditional Quantile Estimation for Uncertain Watch Time in
Short-Video Recommendation", arXiv 2407.12223 (code: justopit/CQE, whose README holds the
head and the loss, in TensorFlow and PyTorch). Instead of one value, the network predicts
the watch time's conditional quantiles at M levels tau_j = j / (M + 1), monotone in the
level by construction (cumulative sums of non-negative increments), trained with the
pinball loss; a point prediction is then read off the quantiles:

    q_j(x)      = s * sum_{i <= j} act(z_i(x)),     act = relu (reference) or softplus
    pinball     = mean_j rho_tau_j((wt - q_j) / s),  rho_tau(u) = max(tau u, (tau - 1) u)
    prediction  quantile:    Q(prediction_level), linear between the grid levels
                             (0.5: the median; a lower level: the paper's conservative estimate)
                expectation: mean_j q_j, i.e. integral_0^1 Q(tau) dtau on the grid
                             (the paper's conditional expectation)
                dynamic:     sum_j v_j(x) q_j with v(x) = softmax(linear(f(x))), a per-row
                             convex combination of the quantiles (our reading of the paper's
                             dynamic quantile combination, see below)

s is the training watch-time standard deviation (a buffer, saved in checkpoints). Because
every increment is >= 0 and the first quantile is act(z_1) >= 0, the quantiles are
non-decreasing in tau and non-negative for every input, which `test_cqe_quantiles_*`
checks on random inputs.

The CQE median is also the natural control for the question "does a label transform help
beyond the L1 loss?": CQE with `prediction: quantile` at level 0.5 and VR[regression_loss=l1]
both estimate the conditional median, on the same backbone.

Where ours differs from the reference code, and why:
- The increments come from one linear layer on the shared backbone; the reference's head
  is a dense network [128, M] with ReLU on both layers. The shared backbone is the
  project's rule (only head and loss differ between methods).
- The layer's bias starts at the increments of the training split's marginal quantiles at
  the levels (divided by s), so the untrained model predicts the marginal quantiles
  instead of quantiles near 0; the reference starts from a random head. Only the start of
  training changes (the bias is a trained parameter).
- The pinball loss is averaged over the levels (the reference sums them) and computed on
  watch time / s: a constant factor, which keeps the logged loss O(1) across datasets.
- `increment_activation: softplus` is offered because a ReLU increment whose input is
  negative for every row gets no gradient and stays 0 (two levels then share one quantile);
  the default is the reference's relu.
- The prediction strategies are not in the public code (its README has the head and the
  loss only) and the paper's formulas for them were not available to us beyond their names
  (conservative estimation, conditional expectation, dynamic quantile combination).
  `quantile` and `expectation` follow from their names. For `dynamic`, a second linear
  layer (zero-initialised: the start is the conditional expectation) maps the backbone's
  vector to weights over the levels, trained with the L1 loss of the combined prediction
  (`lambda_combination`) on detached inputs, so that it never changes the quantile model;
  it learns, per row, which part of the predicted distribution to report.
"""

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from recbole_lda.model import WatchTimeRecommender, training_statistics

ACTIVATIONS = {"relu": F.relu, "softplus": F.softplus}


def pinball(u, tau):
    """rho_tau(u) = max(tau u, (tau - 1) u) elementwise, u = label - quantile."""
    return torch.maximum(tau * u, (tau - 1) * u)


class CQE(WatchTimeRecommender):
    loss_names = ("pinball", "combination")

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        m = config["num_levels"]  # types, ranges and choices: checked by the Config (properties/model/CQE.yaml)
        self.prediction = config["prediction"]
        self.activation = config["increment_activation"]
        self.lambda_combination = float(config["lambda_combination"])
        levels = np.arange(1, m + 1) / (m + 1)
        self.prediction_level = float(config["prediction_level"])
        if self.prediction == "quantile" and not levels[0] <= self.prediction_level <= levels[-1]:
            raise ValueError(
                f"prediction_level must lie in [{levels[0]:.4g}, {levels[-1]:.4g}] (the levels j/(M+1) of "
                f"num_levels={m}), got {self.prediction_level}"
            )

        statistics = training_statistics(dataset)  # the ray engine's driver: a pass over the partitions
        if statistics is not None:
            scale, increments = statistics.cqe_start(levels)
        else:
            labels = self.train_labels(dataset)[0].numpy()
            scale = max(float(labels.std()), 1e-6)
            increments = np.diff(np.quantile(labels, levels), prepend=0.0) / scale  # marginal quantiles, first from 0
        self.register_buffer("levels", torch.tensor(levels, dtype=torch.float32), persistent=False)  # (M,)
        self.register_buffer("label_scale", torch.tensor(scale, dtype=torch.float32))
        self.head = nn.Linear(self.backbone.output_dim, m)
        with torch.no_grad():
            self.head.bias.copy_(torch.tensor(self._inverse_activation(increments), dtype=torch.float32))
        self.combiner = None
        if self.prediction == "dynamic":
            self.combiner = nn.Linear(self.backbone.output_dim, m)
            nn.init.zeros_(self.combiner.weight)
            nn.init.zeros_(self.combiner.bias)

    def _inverse_activation(self, increments):
        """Pre-activation values that give these increments (>= 0)."""
        increments = np.maximum(increments, 0.0)
        if self.activation == "relu":
            return increments
        return np.log(np.expm1(np.maximum(increments, 1e-4)))  # softplus^-1, floored: softplus never reaches 0

    def quantiles(self, z):
        """Quantiles in label-scale units at every level from the head output: (B, M) -> (B, M)."""
        return torch.cumsum(ACTIVATIONS[self.activation](z), dim=-1)

    def quantile_at(self, q, level):
        """Q(level) by linear interpolation between grid levels: (B, M) -> (B,)."""
        m = q.shape[1]
        pos = level * (m + 1) - 1  # position on the grid index 0..M-1
        lo = min(max(int(np.floor(pos)), 0), m - 1)
        hi = min(lo + 1, m - 1)
        frac = min(max(pos - lo, 0.0), 1.0)
        return q[:, lo] + frac * (q[:, hi] - q[:, lo])

    def combination_weights(self, h):
        """Per-row weights over the levels for prediction: dynamic: (B, M)."""
        return torch.softmax(self.combiner(h.detach()), dim=-1)

    def point(self, q, h):
        """The point prediction (label-scale units) from the quantiles q (B, M) and the
        backbone vector h (B, D), by the configured strategy: (B,)."""
        if self.prediction == "quantile":
            return self.quantile_at(q, self.prediction_level)
        if self.prediction == "expectation":
            return q.mean(-1)
        return (self.combination_weights(h) * q.detach()).sum(-1)

    def forward(self, interaction):
        h = self.backbone(interaction)
        return self.quantiles(self.head(h)), h  # (B, M), (B, D)

    def losses(self, q, h, watch_time):
        """The loss parts for quantiles q (B, M), backbone vectors h and watch times (B,), seconds."""
        y = watch_time.float().unsqueeze(-1) / self.label_scale  # (B, 1)
        loss = pinball(y - q, self.levels).mean()
        if self.combiner is None:
            return loss, loss.new_zeros(())
        combination = (self.point(q, h) - y.squeeze(-1)).abs().mean()
        return loss, self.lambda_combination * combination

    def calculate_loss(self, interaction):
        q, h = self.forward(interaction)
        return self.losses(q, h, interaction[self.LABEL])

    def predict(self, interaction):
        q, h = self.forward(interaction)
        return self.label_scale * self.point(q, h)
