"""The shared backbone f(x) and the base class of every watch-time model.

Every model in this project (LDA and the baselines) turns an interaction into a vector
with the same `Backbone`, so that a comparison differs only in the head and the loss:

    f(x) = MLP([ emb(token fields) ; mean emb(token-seq fields) ; standardised floats ])

Token fields are the user, the item and every other categorical feature in the
interaction, user and item atomic files; token-seq fields (tags, keywords) are averaged
over their non-padding entries; float fields (video duration always among them) are
mapped by sign(x) log(1 + |x|) and standardised with the TRAINING split's mean and std,
which are stored as buffers so that prediction uses the same statistics.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from recbole.model.abstract_recommender import AbstractRecommender
from recbole.model.layers import MLPLayers
from recbole.utils import FeatureType, InputType, ModelType

from recbole_lda.trainer.trainer import WatchTimeTrainer

# Regression losses a model may name in its `regression_loss` key (VR, LDA).
REGRESSION_LOSSES = {"mse": F.mse_loss, "l1": F.l1_loss, "huber": F.smooth_l1_loss}


def signed_log1p(x):
    return torch.sign(x) * torch.log1p(torch.abs(x))


def transformed_mean_std(values):
    """(mean, std) of signed_log1p(values), with one transformed copy of the column in memory
    (the ray engine's driver computes it over every training row): log1p(|x|) with x's sign
    is signed_log1p's value exactly."""
    transformed = values.abs().log1p_().copysign_(values)
    return transformed.mean().item(), transformed.std().item()


def training_statistics(dataset):
    """The one-pass statistics of the training split (dataset_prep/label_statistics.py
    TrainingStatistics) where the dataset carries them instead of rows (the ray engine's
    driver), else None: a constructor then takes its statistics from them, not from
    `training_values`, and the driver never holds the training columns."""
    return getattr(dataset, "training_statistics", None)


def training_values(dataset, field):
    """All values of `field` in the training split, as a float64 tensor, whichever atomic
    file (inter, user or item) the field comes from."""
    for feat in (dataset.inter_feat, dataset.user_feat, dataset.item_feat):
        if feat is not None and field in feat.columns:
            return feat[field].double()
    raise KeyError(field)


class Backbone(nn.Module):
    """Interaction -> (batch, output_dim) vector. See the module docstring."""

    def __init__(self, config, dataset):
        super().__init__()
        excluded = {config["LABEL_FIELD"], *(config["backbone_exclude_fields"] or [])}
        duration = config["DURATION_FIELD"]
        if dataset.field2type.get(duration) != FeatureType.FLOAT:
            raise ValueError(
                f"the duration field '{duration}' (DURATION_FIELD) must be a float field of the dataset; "
                f"fields are {sorted(dataset.field2type)}"
            )
        fields = sorted(f for f in dataset.field2type if f not in excluded)
        self.token_fields = [f for f in fields if dataset.field2type[f] == FeatureType.TOKEN]
        self.token_seq_fields = [f for f in fields if dataset.field2type[f] == FeatureType.TOKEN_SEQ]
        self.float_fields = [f for f in fields if dataset.field2type[f] == FeatureType.FLOAT]

        size = config["embedding_size"]
        self.embeddings = nn.ModuleDict({f: nn.Embedding(dataset.num(f), size) for f in self.token_fields})
        self.seq_embeddings = nn.ModuleDict(
            {f: nn.Embedding(dataset.num(f), size, padding_idx=0) for f in self.token_seq_fields}
        )
        statistics = training_statistics(dataset)
        stats = [statistics.duration_normalisation() if statistics is not None and f == duration
                 else transformed_mean_std(training_values(dataset, f)) for f in self.float_fields]
        self.register_buffer("float_mean", torch.tensor([m for m, _ in stats]).float())
        self.register_buffer("float_std", torch.tensor([max(sd, 1e-6) for _, sd in stats]).float())

        input_dim = size * (len(self.token_fields) + len(self.token_seq_fields)) + len(self.float_fields)
        hidden = list(config["mlp_hidden_size"])
        self.mlp = MLPLayers([input_dim] + hidden, dropout=config["dropout_prob"], activation="relu")
        self.output_dim = hidden[-1]
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Embedding, nn.Linear)):
            nn.init.xavier_normal_(module.weight)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, interaction):
        parts = [self.embeddings[f](interaction[f]) for f in self.token_fields]
        for f in self.token_seq_fields:
            seq = interaction[f]  # (B, L), 0 = padding
            mask = (seq > 0).unsqueeze(-1).float()
            parts.append((self.seq_embeddings[f](seq) * mask).sum(1) / mask.sum(1).clamp_min(1.0))
        if self.float_fields:
            floats = torch.stack([interaction[f].float() for f in self.float_fields], dim=-1)  # (B, F)
            parts.append((signed_log1p(floats) - self.float_mean) / self.float_std)
        return self.mlp(torch.cat(parts, dim=-1))


class WatchTimeRecommender(AbstractRecommender):
    """Base of all watch-time models: a RecBole context model with the shared backbone.

    The contract of a model (ours, and plug-ins: docs/extending.md; checked when a plug-in
    is loaded, recbole_lda.config.plugins):

    - Must define `__init__(config, dataset)` (call this one first: it builds `self.backbone`,
      whose vector has `self.backbone.output_dim` entries), `calculate_loss(interaction)` (a
      tensor, or a tuple of parts named by `loss_names`) and `predict(interaction)`, which
      returns watch time in SECONDS: the evaluator compares it with the label as it is.
    - May override `loss_names`, `report()`, `split_report(data_loader)`, `trainer_class`,
      and `from_saved(config, dataset, state_dict)` (to skip costly set-up on loading).
    - Statistics taken from the training split (`train_labels(dataset)`: labels and
      durations) must be registered buffers: a saved model's state dict carries them, and
      on loading the constructor sees a stand-in sample (recbole_lda.inference.stand_in)
      whose statistics the saved buffers replace.
    - Keys: each key the model reads from `config` is declared, with its default, in
      `properties/model/<NAME>.yaml` (a plug-in: `<Class>.yaml` beside its module) with a
      `# (type, range) meaning` comment; its search space for `tune` in
      `properties/tune/<NAME>.yaml` (a plug-in: `<Class>.tune.yaml` beside its module).
    """

    type = ModelType.CONTEXT
    input_type = InputType.POINTWISE
    trainer_class = WatchTimeTrainer
    loss_names = ("loss",)

    def __init__(self, config, dataset):
        super().__init__()
        self.device = config["device"]
        self.LABEL = config["LABEL_FIELD"]
        self.DURATION = config["DURATION_FIELD"]
        self.backbone = Backbone(config, dataset)

    def report(self):
        """What the model learned from the training split that a reader may want in the
        results file (JSON-able); none by default."""
        return {}

    def split_report(self, data_loader):
        """Diagnostics of the trained model on an evaluation split (JSON-able); none by default."""
        return {}

    def train_labels(self, dataset):
        """Training-split labels (watch time, seconds) and durations (seconds), float64."""
        return training_values(dataset, self.LABEL), training_values(dataset, self.DURATION)
