"""D2Q: duration-deconfounded quantile regression of watch time.

Zhan, Pei, Luo, Liang, Wang, Zhang, Chen, Gai, "Deconfounding Duration Bias in Watch-time
Prediction for Video Recommendation", KDD 2022. Video duration confounds watch time (longer
videos get longer plays and are exposed differently). D2Q splits the interactions into G
equal-frequency duration groups and, inside each group, replaces the watch time by its
quantile under the group's empirical distribution. One model regresses that quantile (the
paper's backdoor adjustment: the label no longer carries the duration's direct effect), and
a prediction is turned back into seconds with the inverse CDF of the row's duration group:

    g(d)        = duration group of d            (G - 1 training duration quantiles as cut points)
    q           = F_g(wt)                        (training empirical CDF of group g)
    loss        = (q_hat - q)^2                  (MSE on the quantile, as in the paper)
    prediction  = F_g^{-1}(clip(q_hat, 0, 1))    (seconds)

Everything derived from labels comes from the training split and is stored as buffers
(saved in checkpoints): the duration cut points and, per group, the watch time at
`quantile_points + 1` evenly spaced levels 0, 1/P, ..., 1 (a table of the group's
empirical quantile function). F_g is the piecewise-linear interpolation through those
points and F_g^{-1} its inverse, so a label maps to a quantile and back to the same
seconds on the training data. Where the table is flat (many rows share one watch time,
e.g. 0 s or a complete play), the CDF is a range of levels; we take the middle of the range
so that the inverse returns exactly that watch time.

Public code. The authors did not release theirs; ports (e.g. the D2Q baseline in the EGMN
repository, rosefun/EGMN) group by duration with equal-frequency buckets, regress the
in-group quantile with an MSE loss and map back through the bucket's quantiles; they used
50-60 groups. Where ours differs, and why:
- Equal-frequency cut points on rows whose durations tie (every row of a video shares its
  duration) may coincide; repeated cut points are dropped, so there may be fewer than
  `duration_groups` groups (an empty group has no CDF to learn). The number used is
  len(`group_edges`) + 1.
- The CDF is a fixed table of quantile points rather than the full sorted sample, so the
  model stays small on 10M-row datasets; with the default 100 points the CDF is exact at
  every percentile and linear in between.
- The head is linear and the predicted quantile is clipped to [0, 1] only when mapping back
  (a sigmoid would slow learning near complete plays and quick skips, where much mass lies).
"""

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from recbole_lda.model import WatchTimeRecommender


def quantile_table(values, points):
    """Watch time at levels 0, 1/points, ..., 1 of `values` (numpy, float64): (points + 1,)."""
    return np.quantile(values, np.linspace(0.0, 1.0, points + 1))


class D2Q(WatchTimeRecommender):
    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        groups, points = config["duration_groups"], config["quantile_points"]
        if groups < 1 or points < 1:
            raise ValueError(f"duration_groups and quantile_points must be >= 1, got {groups} and {points}")
        labels, durations = (t.numpy() for t in self.train_labels(dataset))

        # G - 1 interior cut points: training durations at levels 1/G, ..., (G-1)/G. They are
        # observed values (inverted CDF), so after dropping repeats and the minimum every group
        # [cut_{g-1}, cut_g) holds at least the rows at its lower cut: no group is empty.
        cuts = np.quantile(durations, np.linspace(0.0, 1.0, groups + 1)[1:-1], method="inverted_cdf")
        cuts = np.unique(cuts)
        cuts = cuts[cuts > durations.min()]
        group = np.searchsorted(cuts, durations, side="right")  # the rule of `group_of`
        table = np.stack([quantile_table(labels[group == g], points) for g in range(len(cuts) + 1)])

        self.register_buffer("group_edges", torch.tensor(cuts, dtype=torch.float32))  # (G-1,)
        self.register_buffer("group_quantiles", torch.tensor(table, dtype=torch.float32))  # (G, P+1)
        self.register_buffer("levels", torch.linspace(0.0, 1.0, points + 1), persistent=False)  # (P+1,)
        self.head = nn.Linear(self.backbone.output_dim, 1)

    def group_of(self, duration):
        """Duration group index of each row: (B,) long. A duration equal to a cut point goes up."""
        return torch.searchsorted(self.group_edges, duration.float().contiguous(), right=True)

    def watch_time_to_quantile(self, watch_time, duration):
        """The label transform: F_g(watch time) in [0, 1], (B,)."""
        table = self.group_quantiles[self.group_of(duration)]  # (B, P+1), nondecreasing rows
        y = watch_time.float().unsqueeze(-1)  # (B, 1)
        last = table.shape[1] - 1
        lo = torch.searchsorted(table, y, right=False).squeeze(-1)  # first knot >= y
        hi = torch.searchsorted(table, y, right=True).squeeze(-1)  # first knot > y
        # y sits on one or more knots (lo < hi): the middle of the flat run of levels.
        on_knot = (self.levels[lo.clamp(max=last)] + self.levels[(hi - 1).clamp(min=0)]) / 2
        # y lies strictly between knots lo-1 and lo: linear interpolation of the level.
        left, right = (lo - 1).clamp(0, last), lo.clamp(0, last)
        v_left = table.gather(1, left.unsqueeze(-1)).squeeze(-1)
        v_right = table.gather(1, right.unsqueeze(-1)).squeeze(-1)
        frac = ((y.squeeze(-1) - v_left) / (v_right - v_left).clamp_min(1e-12)).clamp(0.0, 1.0)
        between = self.levels[left] + frac * (self.levels[right] - self.levels[left])
        q = torch.where(lo < hi, on_knot, between)
        q = torch.where(lo > last, torch.ones_like(q), q)  # above the group's maximum
        return torch.where(hi == 0, torch.zeros_like(q), q)  # below the group's minimum

    def quantile_to_watch_time(self, q, duration):
        """The inverse transform: F_g^{-1}(q) in seconds, (B,); q is clipped to [0, 1]."""
        table = self.group_quantiles[self.group_of(duration)]  # (B, P+1)
        points = table.shape[1] - 1
        pos = q.float().clamp(0.0, 1.0) * points  # (B,) position on the level grid
        k = pos.floor().long().clamp(max=points - 1)
        frac = (pos - k).unsqueeze(-1)  # (B, 1)
        v = table.gather(1, torch.stack([k, k + 1], dim=-1))  # (B, 2) knots around q
        return (v[:, :1] + frac * (v[:, 1:] - v[:, :1])).squeeze(-1)

    def forward(self, interaction):
        return self.head(self.backbone(interaction)).squeeze(-1)  # (B,) predicted quantile

    def calculate_loss(self, interaction):
        target = self.watch_time_to_quantile(interaction[self.LABEL], interaction[self.DURATION])
        return F.mse_loss(self.forward(interaction), target)

    def predict(self, interaction):
        return self.quantile_to_watch_time(self.forward(interaction), interaction[self.DURATION])
