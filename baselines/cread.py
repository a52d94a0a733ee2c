"""CREAD: classification-restoration with error-adaptive discretisation.

Sun, Ding, Chen, Chen, Wang, Zhan and Wang, "CREAD: A Classification-Restoration Framework
with Error Adaptive Discretization for Watch Time Prediction in Video Recommender Systems",
AAAI 2024. Like OR (baselines/ordinal.py), the watch time is cut by M split points
t_1 < ... < t_M, one binary head per point estimates P(y > t_m), and the value is restored
from the head probabilities; CREAD adds how the points are placed (error-adaptive
discretisation) and two extra losses:

    gamma(z)    = (1 - exp(-alpha z)) / (1 - exp(-alpha)),        z = m / M, m = 1..M
    t_m         = training watch-time quantile at level gamma(m / M)
    labels      b_m = 1[wt > t_m]
    restore     y_hat = sum_m P(y > t_m) (t_m - t_{m-1}),           t_0 = 0
    loss        = mean_m BCE(p_m, b_m)                                          (classification)
                + lambda_restore * Huber_delta((y_hat - wt) / s)                (restore)
                + lambda_monotone * sum_m relu(p_{m+1} - p_m)                   (monotonicity)

with s the training watch-time standard deviation. alpha > 0 puts the levels closer
together near 1, so the split points are denser in the upper quantiles than
equal-frequency ones (alpha -> 0 gives the equal-frequency grid m / M of OR).
alpha trades two errors of the discretisation (CREAD's analysis): with level gaps
dg_m = gamma_m - gamma_{m-1} and point gaps dt_m = t_m - t_{m-1},

    A_w = (sum_m dg_m^2) * (sum_m dt_m^2 / dg_m)     (learning error: few rows per bucket)
    A_b = (sum_m dg_m^2) * (sum_m dt_m^2)            (restore error: wide buckets)

and alpha is the grid value that minimises A_w + beta * A_b (`alpha_search_beta`) unless
`split_alpha` fixes it. A_w and A_b both scale with the square of the time unit, so the
choice does not depend on the unit. The split points, the chosen alpha and the scale s
come from the training split only and are buffers (saved in checkpoints); `report()`
puts alpha and the points in the results file.

Public code: the authors did not release theirs; liuzhao09/DADF has a port
(`model/cread.py`, `model/framework_utils.py` and its `run_cread.py`): M = 50, alpha searched
over np.arange(0.001, 5.0, 0.1) with beta = 50, BCE + 1.0 * Huber(delta 1) of the restored
value + 2e-5 * the monotonicity penalty summed over the batch (batch 2048), labels divided
by the training maximum. Where ours differs, and why:
- The heads are one linear layer on the shared backbone (as in OR); the port gives every
  head its own MLP tower (32 or 64-32 units). The shared backbone is the project's rule (a
  comparison differs only in head and loss), and M towers would make an epoch several
  times slower than VR's.
- Repeated split points and points <= 0 are dropped (ties at 0 s or at complete plays make
  quantiles repeat): their gap t_m - t_{m-1} is 0, so their head would not move the
  restored value, and two heads at one point would learn one probability. The number of
  heads is the number of distinct positive points (<= M). The alpha search uses all M
  levels, as the port does.
- The restore loss is on watch time divided by the training std, where the port divides by
  the training maximum. On the maximum's scale every error is below the Huber delta of 1,
  so the port's term is 0.5 * MSE, (std / max)^2 times its size on the std's scale: with
  heavy-tailed watch times it is tiny next to the BCE term. On the std's scale it is a real
  Huber loss of a size comparable with the BCE. `huber_delta` is in std units.
- The monotonicity penalty is summed over adjacent heads and averaged over rows; the port
  sums over rows too, so its weight depends on the batch size. The default weight 0.04 is
  the port's 2e-5 times its batch size of 2048.
- The heads output logits and the BCE is computed from them (numerically stable); the port
  applies BCELoss to sigmoid outputs. Same loss.
- The heads' biases start at the logits of the training split's survival P(y > t_m), so the
  untrained model restores the training mean of the restore rule's values (each watch time
  rounded down to a split point); the port starts every head near 0.5, i.e. at half the
  training maximum (t_M is the maximum), far above nearly every watch time. Only
  the start of training changes (the biases are trained): on 16k synthetic training rows
  and 3 epochs, the 0.5 start left CREAD at test MAE 7.34 s (XAUC 0.516) against 6.85 s for
  VR; it caught up only after about 12 epochs.
"""

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from recbole_lda.model import WatchTimeRecommender, training_statistics


def warped_levels(alpha, m):
    """gamma(k / m) for k = 1..m: (m,) float64 in (0, 1], the last level exactly 1."""
    z = np.arange(1, m + 1) / m
    if abs(alpha) < 1e-12:
        return z  # the limit alpha -> 0: equal-frequency levels
    return np.expm1(-alpha * z) / np.expm1(-alpha)


def discretisation_errors(points, levels):
    """CREAD's (A_w, A_b) of split points at the given levels; t_0 = 0 and gamma_0 = 0."""
    dt = np.diff(points, prepend=0.0)
    dg = np.diff(levels, prepend=0.0)
    spread = np.sum(dg**2)
    return spread * np.sum(dt**2 / dg), spread * np.sum(dt**2)


def search_alpha(labels, m, grid, beta, quantile=None):
    """The alpha of `grid` that minimises A_w + beta * A_b on the training labels (first
    one on ties): returns (alpha, split points at its levels). `quantile(levels)`: the
    labels' quantiles (default np.quantile of `labels`; from partitions:
    dataset_prep.label_statistics.label_quantiles)."""
    quantile = quantile or (lambda levels: np.quantile(labels, levels))
    best = None
    for alpha in grid:
        points = quantile(warped_levels(alpha, m))
        a_w, a_b = discretisation_errors(points, warped_levels(alpha, m))
        if best is None or a_w + beta * a_b < best[0]:
            best = (a_w + beta * a_b, float(alpha), points)
    return best[1], best[2]


def split_points(labels, m, alpha, grid, beta, quantile=None):
    """CREAD's split points from training watch times: (alpha, points). alpha None: chosen
    on `grid` by `search_alpha`; points: the distinct positive quantiles at the warped
    levels, increasing (see the module docstring for why repeats and 0 are dropped)."""
    if alpha is None:
        if len(grid) == 0:
            raise ValueError("CREAD: the alpha search grid is empty (alpha_grid [start, stop, step])")
        alpha, points = search_alpha(labels, m, grid, beta, quantile)
    else:
        points = (quantile or (lambda levels: np.quantile(labels, levels)))(warped_levels(alpha, m))
    points = np.unique(points)  # sorted, repeats dropped
    points = points[points > 0.0]  # t_0 = 0: a point at 0 has a zero gap
    if len(points) == 0:
        raise ValueError("CREAD found no positive training watch-time quantile to use as split point")
    return float(alpha), points


class CREAD(WatchTimeRecommender):
    loss_names = ("classification", "restore", "monotone")

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        m = config["num_split_points"]  # ranges of every key: checked by the Config (properties/model/CREAD.yaml)
        self.lambda_restore = float(config["lambda_restore"])
        self.lambda_monotone = float(config["lambda_monotone"])
        self.huber_delta = float(config["huber_delta"])

        statistics = training_statistics(dataset)  # the ray engine's driver: passes over the partitions
        labels = None if statistics is not None else self.train_labels(dataset)[0].numpy()  # (N,), seconds
        start, stop, step = (float(v) for v in config["alpha_grid"])
        alpha = None if config["split_alpha"] is None else float(config["split_alpha"])
        grid, beta = np.arange(start, stop, step), float(config["alpha_search_beta"])
        if statistics is not None:
            alpha, points = split_points(None, m, alpha, grid, beta, quantile=statistics.label_quantiles)
        else:
            alpha, points = split_points(labels, m, alpha, grid, beta)
        self.register_buffer("alpha", torch.tensor(alpha, dtype=torch.float32))
        self.register_buffer("split_points", torch.tensor(points, dtype=torch.float32))  # (M,)
        self.register_buffer("gaps", torch.diff(self.split_points, prepend=self.split_points.new_zeros(1)))  # (M,)
        std = statistics.label_std(ddof=0) if statistics is not None else labels.std()  # numpy's std: ddof 0
        self.register_buffer("label_std", torch.tensor(max(std, 1e-6), dtype=torch.float32))
        self.head = nn.Linear(self.backbone.output_dim, len(points))
        # start at the training split's survival P(y > t_m): the untrained restore is then the
        # training mean of the largest split point below each watch time (the restore rule's
        # value for a row), instead of sum_m 0.5 gap_m = half the training maximum
        if statistics is not None:
            rows, share = statistics.label_share_above(points)
        else:
            rows, share = len(labels), (labels[:, None] > points).mean(0)
        share = share.clip(1 / (rows + 1), rows / (rows + 1))
        with torch.no_grad():
            self.head.bias.copy_(torch.tensor(np.log(share / (1 - share)), dtype=torch.float32))

    def report(self):
        return {"split_alpha": self.alpha.item(), "split_points_s": [round(v, 4) for v in self.split_points.tolist()]}

    def restore(self, probs):
        """Watch time in seconds from the head probabilities P(y > t_m): (B, M) -> (B,)."""
        return probs @ self.gaps

    def forward(self, interaction):
        return self.head(self.backbone(interaction))  # (B, M) logits of P(y > t_m)

    def losses(self, logits, watch_time):
        """The three weighted loss parts for head logits (B, M) and watch times (B,)."""
        watch_time = watch_time.float()
        targets = (watch_time.unsqueeze(-1) > self.split_points).float()  # (B, M)
        classification = F.binary_cross_entropy_with_logits(logits, targets)
        probs = torch.sigmoid(logits)
        restore = F.huber_loss(self.restore(probs) / self.label_std, watch_time / self.label_std, delta=self.huber_delta)
        monotone = F.relu(probs[:, 1:] - probs[:, :-1]).sum(-1).mean()  # P(y > t) must not grow with t
        return classification, self.lambda_restore * restore, self.lambda_monotone * monotone

    def calculate_loss(self, interaction):
        return self.losses(self.forward(interaction), interaction[self.LABEL])

    def predict(self, interaction):
        return self.restore(torch.sigmoid(self.forward(interaction)))
