"""VR: value regression, the plain baseline of watch-time prediction.

The backbone's vector goes through a linear head that regresses the watch time,
standardised with the training split's mean and std; the prediction is mapped back to
seconds and clipped at 0 (a negative watch time is never right). The literature's VR uses
the squared error; `regression_loss` also offers the absolute error and the Huber loss,
so that methods can be compared at equal loss (a loss change alone moves MAE a lot).
"""

import torch
import torch.nn as nn

from recbole_lda.model import REGRESSION_LOSSES, WatchTimeRecommender, training_statistics


class VR(WatchTimeRecommender):
    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.loss_fn = REGRESSION_LOSSES[config["regression_loss"]]  # checked by the Config: (str: mse|l1|huber)
        statistics = training_statistics(dataset)
        if statistics is not None:  # the ray engine's driver: one pass over the partitions
            mean, std = (torch.tensor(v, dtype=torch.float64) for v in statistics.vr_normalisation())
        else:
            labels, _ = self.train_labels(dataset)
            mean, std = labels.mean(), labels.std()
        self.register_buffer("label_mean", mean.float())
        self.register_buffer("label_std", std.clamp_min(1e-6).float())
        self.head = nn.Linear(self.backbone.output_dim, 1)

    def forward(self, interaction):
        return self.head(self.backbone(interaction)).squeeze(-1)  # standardised watch time

    def calculate_loss(self, interaction):
        target = (interaction[self.LABEL] - self.label_mean) / self.label_std
        return self.loss_fn(self.forward(interaction), target)

    def predict(self, interaction):
        return (self.label_mean + self.label_std * self.forward(interaction)).clamp_min(0.0)
