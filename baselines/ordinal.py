"""OR: ordinal regression of watch time with threshold classifiers.

The ordinal-regression baseline of watch-time papers (e.g. CREAD, Sun et al., AAAI 2024, and
the LDA paper's OR row) follows Niu, Zhou, Wang, Gao and Hua, "Ordinal Regression with
Multiple Output CNN for Age Estimation", CVPR 2016: the target range is cut by M ordered
thresholds t_1 < ... < t_M, one binary head per threshold estimates P(y > t_m) with binary
cross-entropy, and the value is restored by summing the head probabilities times the gaps:

    labels      b_m = 1[wt > t_m],                       m = 1..M
    loss        mean over m of BCE(sigmoid(z_m), b_m)
    prediction  sum_m P(y > t_m) * (t_m - t_{m-1}),      t_0 = 0

The restore rule is the survival-function form of the mean, E[y] = integral_0^inf P(y > t) dt,
evaluated at the thresholds. It increases with every head probability (all gaps are >= 0),
which `test_or_restore_is_monotone` checks.

Thresholds are the training split's watch-time quantiles at levels m / (M + 1), so they are
dense where watch times are common and no head is all-positive or all-negative on the
training data; they are computed once in `__init__` and stored as a buffer (saved in
checkpoints).
The file is `ordinal.py` because `or` is a Python keyword; the model name is OR.

Where ours differs from public ports, and why:
- Repeated thresholds (watch times tie at 0 s or at complete plays) are dropped: two heads
  with the same threshold would learn the same probability and the restore rule would give
  it a zero gap. So the number of heads is the number of distinct quantiles (<= M).
- The heads are independent sigmoids, as in Niu et al. and CREAD; their probabilities are
  not forced to decrease in m (CREAD adds a penalty for that; the plain OR baseline does not).
"""

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from recbole_lda.model import WatchTimeRecommender, training_statistics


class OR(WatchTimeRecommender):
    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        m = config["num_thresholds"]
        if m < 1:
            raise ValueError(f"num_thresholds must be >= 1, got {m}")
        statistics = training_statistics(dataset)  # the ray engine's driver: a pass over the partitions
        if statistics is not None:
            thresholds = statistics.or_thresholds(m)
        else:
            labels, _ = self.train_labels(dataset)
            thresholds = np.unique(np.quantile(labels.numpy(), np.arange(1, m + 1) / (m + 1)))
            thresholds = thresholds[thresholds >= 0.0]  # watch time is >= 0, and t_0 = 0
        if len(thresholds) == 0:
            raise ValueError("OR found no non-negative training watch-time quantile to use as threshold")
        self.register_buffer("thresholds", torch.tensor(thresholds, dtype=torch.float32))  # (M,)
        gaps = torch.diff(self.thresholds, prepend=self.thresholds.new_zeros(1))  # t_m - t_{m-1}
        self.register_buffer("gaps", gaps)  # (M,)
        self.head = nn.Linear(self.backbone.output_dim, len(thresholds))

    def forward(self, interaction):
        return self.head(self.backbone(interaction))  # (B, M) logits of P(y > t_m)

    def restore(self, probs):
        """Watch time in seconds from the head probabilities P(y > t_m): (B, M) -> (B,)."""
        return probs @ self.gaps

    def calculate_loss(self, interaction):
        targets = (interaction[self.LABEL].float().unsqueeze(-1) > self.thresholds).float()  # (B, M)
        return F.binary_cross_entropy_with_logits(self.forward(interaction), targets)

    def predict(self, interaction):
        return self.restore(torch.sigmoid(self.forward(interaction)))
