"""CWM: the counterfactual watch model.

Zhao, Cai, Zhu, Dong, Xu and Wen, "Counteracting Duration Bias in Video Recommendation via
Counterfactual Watch Time", KDD 2024. The counterfactual watch time (CWT) is how long a user
would watch if the video were long enough. A user keeps watching while the benefit exceeds
a per-second cost c, which ties the CWT to the user's relevance r in (0, 1):

    r = exp(-c / (CWT + 1)),     so    CWT = c / (-log r) - 1.

The model outputs a relevance logit f (r = sigmoid(f)). A row's observed watch time wt maps
to tau = logit(exp(-c / (wt + 1))), the logit of the relevance at which the CWT equals wt.
A play that reaches the duration (wt >= d) is CENSORED: the CWT is at least wt, not equal to
it. The counterfactual likelihood, with noise scale sigma, gives one loss per kind of row:

    uncensored (wt < d)    (f - tau)^2 / (2 sigma^2)          Gaussian: CWT observed
    censored   (wt >= d)   -log sigmoid((f - tau) / sigma)    logistic survival: CWT >= wt
    prediction             clip(c / (-log sigmoid(f)) - 1, 0, d)

Censoring is decided per row from its own label and duration: nothing is derived from the
label distribution, so no statistic needs to be stored (the training split alone is used
in training, as for every model). c and sigma are YAML keys; their defaults, c = 40 and
sigma = 2, are those of the authors' public code (as summarised in docs/method.md; that code
is not in our reference index, so the loss forms above are taken from that summary).

Where ours differs, and why:
- tau is computed as -a - log(-expm1(-a)) with a = c / (wt + 1), which is logit(exp(-a))
  without forming 1 - exp(-a) in floating point (that difference is 0 for long plays when
  a is small and exp(-a) rounds to 1, and logit would be infinite).
- -log sigmoid(f) is softplus(-f); when it underflows to 0 the CWT is infinite and the clip
  returns the duration, which is the limit of the formula.
- The two parts are returned separately (`loss_names`), each summed over its rows and
  divided by the batch size, so that their sum is the batch mean of the per-row loss.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from recbole_lda.model import WatchTimeRecommender


class CWM(WatchTimeRecommender):
    loss_names = ("uncensored", "censored")

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.cost, self.sigma = float(config["cwm_cost"]), float(config["cwm_sigma"])
        if self.cost <= 0 or self.sigma <= 0:
            raise ValueError(f"cwm_cost and cwm_sigma must be > 0, got {self.cost} and {self.sigma}")
        self.head = nn.Linear(self.backbone.output_dim, 1)

    def relevance_logit(self, watch_time):
        """tau = logit(exp(-c / (wt + 1))): the relevance logit whose CWT is wt. (B,) -> (B,)."""
        a = self.cost / (watch_time.float().clamp_min(0.0) + 1.0)
        return -a - torch.log(-torch.expm1(-a))

    def row_losses(self, f, watch_time, duration):
        """Per-row uncensored and censored losses, zero where the other kind applies: 2 x (B,)."""
        z = f - self.relevance_logit(watch_time)  # (B,)
        censored = watch_time >= duration  # the play reached the end of the video
        uncensored_loss = torch.where(censored, torch.zeros_like(z), z.pow(2) / (2 * self.sigma**2))
        censored_loss = torch.where(censored, -F.logsigmoid(z / self.sigma), torch.zeros_like(z))
        return uncensored_loss, censored_loss

    def watch_time(self, f, duration):
        """The prediction rule: clip(c / (-log sigmoid(f)) - 1, 0, d) in seconds. (B,) -> (B,)."""
        cwt = self.cost / F.softplus(-f) - 1.0
        return torch.minimum(cwt.clamp_min(0.0), duration.float())

    def forward(self, interaction):
        return self.head(self.backbone(interaction)).squeeze(-1)  # (B,) relevance logit f

    def calculate_loss(self, interaction):
        parts = self.row_losses(self.forward(interaction), interaction[self.LABEL], interaction[self.DURATION])
        return tuple(p.mean() for p in parts)

    def predict(self, interaction):
        return self.watch_time(self.forward(interaction), interaction[self.DURATION])
