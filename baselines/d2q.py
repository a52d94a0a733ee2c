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
- The transform itself is `recbole_lda/model/quantile.py` (shared with LDA's
  `regression_target: quantile`).
- The head is linear and the predicted quantile is clipped to [0, 1] only when mapping back
  (a sigmoid would slow learning near complete plays and quick skips, where much mass lies).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from recbole_lda.model import WatchTimeRecommender, training_statistics
from recbole_lda.model.quantile import duration_groups, group_of, to_quantile, to_watch_time


class D2Q(WatchTimeRecommender):
    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        statistics = training_statistics(dataset)
        if statistics is not None:  # the ray engine's driver: passes over the partitions
            cuts, table = statistics.d2q_tables(config["duration_groups"], config["quantile_points"])
        else:
            labels, durations = (t.numpy() for t in self.train_labels(dataset))
            cuts, table = duration_groups(labels, durations, config["duration_groups"], config["quantile_points"])
        self.register_buffer("group_edges", torch.tensor(cuts, dtype=torch.float32))  # (G-1,)
        self.register_buffer("group_quantiles", torch.tensor(table, dtype=torch.float32))  # (G, P+1)
        self.register_buffer("levels", torch.linspace(0.0, 1.0, table.shape[1]), persistent=False)  # (P+1,)
        self.head = nn.Linear(self.backbone.output_dim, 1)

    def group_of(self, duration):
        """Duration group index of each row: (B,) long. A duration equal to a cut point goes up."""
        return group_of(self.group_edges, duration)

    def watch_time_to_quantile(self, watch_time, duration):
        """The label transform: F_g(watch time) in [0, 1], (B,)."""
        return to_quantile(self.group_quantiles[self.group_of(duration)], self.levels, watch_time)

    def quantile_to_watch_time(self, q, duration):
        """The inverse transform: F_g^{-1}(q) in seconds, (B,); q is clipped to [0, 1]."""
        return to_watch_time(self.group_quantiles[self.group_of(duration)], q)

    def forward(self, interaction):
        return self.head(self.backbone(interaction)).squeeze(-1)  # (B,) predicted quantile

    def calculate_loss(self, interaction):
        target = self.watch_time_to_quantile(interaction[self.LABEL], interaction[self.DURATION])
        return F.mse_loss(self.forward(interaction), target)

    def predict(self, interaction):
        return self.quantile_to_watch_time(self.forward(interaction), interaction[self.DURATION])
