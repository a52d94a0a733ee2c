"""WLR: weighted logistic regression for watch time.

Covington, Adams and Sargin, "Deep Neural Networks for YouTube Recommendations",
RecSys 2016, section 4.2 ("Modeling Expected Watch Time"): a logistic regression is
trained with the cross-entropy loss where positive (clicked) impressions are weighted by
their watch time and negative impressions get unit weight; the odds exp(z) it learns then
estimate the expected watch time, and exp(z) is what is served.

From watch-time-only data. Short-video feeds auto-play, so there is no unclicked
impression: every row was played. We follow the construction of the public ports (for
example the short-video notes in squidszyd/videoAndAdvertiserRecTip, which duplicate
every sample as a negative with weight 1 and keep it as a positive with weight = watch
time): each training row t with logit z contributes

    loss_t = w_t * softplus(-z)  +  1 * softplus(z)      (w_t = watch time, seconds)
           = positive part       +  negative part

Setting d loss / dz = 0 gives sigmoid(z) / sigmoid(-z) = w, i.e. exp(z) = w, and over the
rows that share a feature vector exp(z) = E[w | x]: the odds are an unbiased estimate of the
conditional MEAN watch time, not an approximation that needs a small click rate (YouTube's
derivation does). No threshold is involved, so nothing is derived from labels except the
loss scale below.

Where ours differs from the reference ports, and why:
- The loss is divided by the mean training watch time (a buffer). A constant factor does
  not move the optimum; it keeps the logged loss O(1) across datasets.
- The head's bias starts at log(mean training watch time), so the first prediction is the
  training mean rather than exp(0) = 1 second; this only shortens the start of training.
- The two parts are returned separately (`loss_names`) so that RecBole logs both.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from recbole_lda.model import WatchTimeRecommender, training_statistics


class WLR(WatchTimeRecommender):
    loss_names = ("positive", "negative")

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        statistics = training_statistics(dataset)  # the ray engine's driver: a pass over the partitions
        mean = statistics.label_mean() if statistics is not None else self.train_labels(dataset)[0].mean().item()
        if not mean > 0:
            raise ValueError(f"WLR needs a positive mean training watch time, got {mean}")
        self.register_buffer("label_mean", torch.tensor(mean, dtype=torch.float32))
        self.head = nn.Linear(self.backbone.output_dim, 1)
        nn.init.constant_(self.head.bias, math.log(mean))

    def forward(self, interaction):
        return self.head(self.backbone(interaction)).squeeze(-1)  # (B,) logit z

    def calculate_loss(self, interaction):
        z = self.forward(interaction)  # (B,)
        weight = interaction[self.LABEL].float().clamp_min(0.0)  # (B,) watch time as positive weight
        positive = (weight * F.softplus(-z)).mean() / self.label_mean  # -w log sigmoid(z)
        negative = F.softplus(z).mean() / self.label_mean  # -1 log(1 - sigmoid(z))
        return positive, negative

    def predict(self, interaction):
        return torch.exp(self.forward(interaction))  # the odds, an estimate of E[watch time | x]
