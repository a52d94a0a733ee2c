"""LogNormal: log(1 + watch time) ~ Normal(mu(x), sigma(x)), an example plug-in model.

The shared backbone's vector goes through a linear head with two outputs, the mean and
(through a softplus) the standard deviation of the standardised log watch time; the loss is
the negative log-likelihood. The prediction is the distribution's median or mean, in seconds.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from recbole_lda.model import WatchTimeRecommender


class LogNormal(WatchTimeRecommender):
    loss_names = ("nll",)

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.point = config["point"]  # checked by the Config against LogNormal.yaml: (str: median|mean)
        self.min_sigma = config["min_sigma"]
        labels, _ = self.train_labels(dataset)  # the training split's watch times, seconds
        logs = torch.log1p(labels)
        # Statistics of the training split are buffers: a saved model keeps them.
        self.register_buffer("log_mean", logs.mean().float())
        self.register_buffer("log_std", logs.std().clamp_min(1e-6).float())
        self.head = nn.Linear(self.backbone.output_dim, 2)

    def forward(self, interaction):
        mu, raw = self.head(self.backbone(interaction)).unbind(-1)
        return mu, F.softplus(raw) + self.min_sigma  # of the standardised log1p(watch time)

    def calculate_loss(self, interaction):
        mu, sigma = self.forward(interaction)
        target = (torch.log1p(interaction[self.LABEL]) - self.log_mean) / self.log_std
        return -torch.distributions.Normal(mu, sigma).log_prob(target).mean()

    def predict(self, interaction):
        mu, sigma = self.forward(interaction)
        log_watch = self.log_mean + self.log_std * mu
        if self.point == "mean":  # E[exp(X)] = exp(m + s^2 / 2) for X ~ Normal(m, s)
            log_watch = log_watch + 0.5 * (self.log_std * sigma) ** 2
        return torch.expm1(log_watch).clamp_min(0.0)  # seconds
