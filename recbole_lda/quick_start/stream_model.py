"""A model of any registered class, built for data-parallel training on partitioned data
without a RecBole dataset of the full data (recbole_lda/inference/stand_in.py does the same
for a saved model).

- `streamed_fields(folder)`: the fields a model sees: user_id and item_id (tokens; id 0 is
  the padding, so a row's id is its `user_index` / `item_index` + 1, or its row in a bounded
  table: quick_start/vocabulary.py), duration and label
  (floats, seconds), and the interaction's context tokens that the conversion wrote (hour,
  tab, is_rand: `context_tokens`). The user and video feature tables of the folder are not
  inputs of this engine yet (docs/scale.md, "Training on a cluster").
- `initial_state(...)`: on the driver, once: the model built from the TRAINING statistics
  (its constructor sees the one-pass statistics of the training split, and the training
  labels and durations, through `TrainingStandIn`: every model takes the
  statistics and holds no column (LDA where LDA.takes_statistics; with item sampling it
  reads the columns);
  LDA pre-trains its anchors here) and initialised with the run's seed; its state dict is
  what every worker starts from.
- `worker_model(...)`: in a worker: the same class built from the stand-in sample, then
  the driver's state dict loaded (as saved_model.load does), so every worker starts with
  the same parameters and statistics.
- `LossOf`, `make_optimizer`, `to_interaction`: the pieces of one optimisation step.
"""

import numpy as np
import pyarrow.parquet as pq
import torch
import torch.nn as nn
from recbole.data.interaction import Interaction
from recbole.utils import init_seed

from recbole_lda.config.registry import get_model
from recbole_lda.inference.saved_model import build_for_state
from recbole_lda.inference.stand_in import SavedConfig, StandInDataset
from recbole_lda.quick_start.lazy_adam import LazyAdam
from recbole_lda.quick_start.partitions import split_files

# Columns of the partitions a batch reads (plus the context columns of the folder).
INPUT_COLUMNS = ("user_index", "item_index", "duration", "label")
# The interaction's context tokens the conversions write where the raw logs have them
# (dataset_prep/kuairand.py, dataset_prep/stream.py), fields of the same name in memory.
CONTEXT_COLUMNS = ("hour", "tab", "is_rand")


def context_tokens(folder):
    """{column: sorted distinct values in the training split} of each context column of the
    folder's partitions that has any (one pass, one partition at a time); nulls are not values."""
    import pyarrow.compute as pc

    files = split_files(folder, "train")
    names = [c for c in CONTEXT_COLUMNS if c in pq.ParquetFile(files[0]).schema_arrow.names]
    values = {c: np.empty(0, dtype=np.float64) for c in names}
    for path in files:
        table = pq.read_table(path, columns=names)
        for c in names:
            found = pc.unique(table.column(c).drop_null()).to_numpy().astype(np.float64)
            values[c] = np.union1d(values[c], found)
    return {c: v for c, v in values.items() if len(v)}  # a column that is null everywhere is no input


def context_rows(values, column):
    """Embedding rows of a context column: a value's position in `values` + 1; 0 for a null
    or a value never seen in training."""
    x = np.asarray(column, dtype=np.float64)  # nulls arrive as NaN
    if len(values) == 0:
        return np.zeros(len(x), dtype=np.int64)
    pos = np.minimum(np.searchsorted(values, x), len(values) - 1)
    return np.where(values[pos] == x, pos + 1, 0).astype(np.int64)


def batch_columns(context=None):
    """The partition columns a batch reads."""
    return list(INPUT_COLUMNS) + list(context or {})


def id_count(folder, name):
    """Rows of user_ids.parquet / item_ids.parquet (the distinct ids of the folder)."""
    return pq.ParquetFile(f"{folder}/{name}_ids.parquet").metadata.num_rows


def streamed_fields(folder, config, vocab=None, context=None):
    """fields.json's content (saved_model) for the fields this engine feeds a model; `vocab`
    ({"user", "item"}: quick_start/vocabulary.Vocabulary) bounds the id tables; `context`
    (context_tokens) adds the context token fields."""
    uid, iid = config["USER_ID_FIELD"], config["ITEM_ID_FIELD"]
    rows = {kind: vocab[kind].size if vocab else id_count(folder, kind) + 1 for kind in ("user", "item")}
    return {
        uid: {"type": "token", "source": "user_id", "tokens": range(rows["user"])},
        iid: {"type": "token", "source": "item_id", "tokens": range(rows["item"])},
        config["DURATION_FIELD"]: {"type": "float", "source": "inter"},
        config["LABEL_FIELD"]: {"type": "float", "source": "inter"},
        **{name: {"type": "token", "source": "inter", "tokens": range(len(values) + 1)}
           for name, values in (context or {}).items()},
    }


def id_rows(batch, kind, vocab):
    """Embedding rows of a batch's `<kind>_index` column (index + 1 without a bound)."""
    index = batch[f"{kind}_index"]
    return vocab[kind].rows(index) if vocab else index.astype(np.int64) + 1


class TrainingColumns(dict):
    """The training split's columns that a model's constructor reads (`dataset.inter_feat[field]`),
    each read from the partitions when first asked for, one file at a time: labels and durations
    as float64 tensors of float32 values (as RecBole holds them), user and item ids as embedding
    rows (id_rows). A model that never reads the ids (every model but LDA with user or item
    sampling) costs the driver 16 bytes per training row; all four columns, 32."""

    def __init__(self, folder, config, vocab=None):
        super().__init__()
        self.folder, self.vocab = folder, vocab
        self.sources = {config["LABEL_FIELD"]: "label", config["DURATION_FIELD"]: "duration",
                        config["USER_ID_FIELD"]: "user", config["ITEM_ID_FIELD"]: "item"}

    @property
    def columns(self):
        return list(self.sources)

    def __contains__(self, field):
        return field in self.sources

    def __missing__(self, field):
        kind = self.sources[field]
        column = f"{kind}_index" if kind in ("user", "item") else kind
        files = split_files(self.folder, "train")
        out = np.empty(sum(pq.ParquetFile(p).metadata.num_rows for p in files),
                       dtype=np.int64 if kind in ("user", "item") else np.float64)
        at = 0  # filled in place, one file at a time: the column once in memory, not twice
        for path in files:
            values = pq.read_table(path, columns=[column]).column(column).to_numpy()
            out[at:at + len(values)] = (id_rows({column: values}, kind, self.vocab) if kind in ("user", "item")
                                        else values.astype(np.float32))
            at += len(values)
        self[field] = torch.from_numpy(out)
        return self[field]


class TrainingStandIn(StandInDataset):
    """A StandInDataset whose training columns are the real training rows' (TrainingColumns),
    and, with `statistics`, the one-pass statistics of those rows (`training_statistics`,
    dataset_prep/label_statistics.TrainingStatistics): a model that takes its statistics
    from them (recbole_lda.model.training_statistics: every model, LDA where
    LDA.takes_statistics) never reads the columns."""

    def __init__(self, fields, config, columns, statistics=None):
        super().__init__(fields, config["USER_ID_FIELD"], config["ITEM_ID_FIELD"], config["LABEL_FIELD"],
                         config["DURATION_FIELD"])
        self.inter_feat = columns
        self.training_statistics = statistics


def one_pass_statistics(folder):
    """TrainingStatistics of the folder's training split, or None where dataset_prep is not
    installed (the models then read the training columns)."""
    try:
        from dataset_prep.label_statistics import TrainingStatistics
    except ImportError:
        return None
    return TrainingStatistics(folder)


def worker_config(hyper):
    """A model's configuration in a worker: the run's resolved keys (JSON-able), on the CPU."""
    config = SavedConfig(hyper)
    config["device"] = torch.device("cpu")
    return config


def initial_state(model_name, hyper, fields, folder, vocab=None):
    """The state dict every worker starts from (module docstring)."""
    config = worker_config(hyper)
    columns = TrainingColumns(folder, config, vocab)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(model_name)(config, TrainingStandIn(fields, config, columns, one_pass_statistics(folder)))
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def worker_model(model_name, hyper, fields, state):
    """The model in a worker, with `state` loaded."""
    config = worker_config(hyper)
    dataset = StandInDataset(fields, config["USER_ID_FIELD"], config["ITEM_ID_FIELD"], config["LABEL_FIELD"],
                             config["DURATION_FIELD"])
    model = build_for_state(get_model(model_name), config, dataset, state)
    model.load_state_dict(state, strict=True)
    return model


def to_interaction(batch, config, vocab=None, context=None):
    """A RecBole Interaction of a batch of partition columns ({column: numpy array})."""
    return Interaction({
        config["USER_ID_FIELD"]: torch.from_numpy(id_rows(batch, "user", vocab)),
        config["ITEM_ID_FIELD"]: torch.from_numpy(id_rows(batch, "item", vocab)),
        config["DURATION_FIELD"]: torch.from_numpy(batch["duration"].astype(np.float32)),
        config["LABEL_FIELD"]: torch.from_numpy(batch["label"].astype(np.float32)),
        **{name: torch.from_numpy(context_rows(values, batch[name])) for name, values in (context or {}).items()},
    })


class LossOf(nn.Module):
    """The model's training loss as `forward`, so that DistributedDataParallel (which hooks
    `forward`) synchronises its gradients; a tuple of loss parts is summed, as RecBole's
    trainer does."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, interaction):
        loss = self.model.calculate_loss(interaction)
        return sum(loss) if isinstance(loss, tuple) else loss


OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD, "adagrad": torch.optim.Adagrad,
              "rmsprop": torch.optim.RMSprop, "adamw": torch.optim.AdamW}
# The optimiser of the id tables when their gradients are sparse: SGD and Adagrad take sparse
# gradients and step exactly as on the dense ones (a row outside the batch has a zero gradient
# and does not move); Adam's sparse form is lazy Adam (torch.optim.SparseAdam's step, computed
# faster by quick_start/lazy_adam.LazyAdam): a row's moments move only on steps whose batch
# holds it, where dense Adam keeps moving every row by its momentum.
SPARSE_OPTIMIZERS = {"adam": LazyAdam, "sgd": torch.optim.SGD, "adagrad": torch.optim.Adagrad}
ID_TABLE_SUFFIXES = ("embeddings.{uid}", "embeddings.{iid}")


def sparse_refusal(config):
    """Why the id tables cannot take sparse gradients under this configuration (None if they can)."""
    learner = str(config["learner"]).lower()
    if config["use_gpu"]:
        return "use_gpu=True (NCCL has no sparse all-reduce)"
    if learner not in SPARSE_OPTIMIZERS:
        return f"learner={learner} (sparse gradients: {', '.join(SPARSE_OPTIMIZERS)})"
    if config["weight_decay"]:
        return f"weight_decay={config['weight_decay']} (the sparse optimisers take no weight decay)"
    return None


def sparse_embeddings(config):
    """Whether the id tables get sparse gradients: `sparse_embeddings` (~ = wherever possible)."""
    wanted, refusal = config["sparse_embeddings"], sparse_refusal(config)
    if wanted is None:
        return refusal is None
    if wanted and refusal:
        raise ValueError(f"--sparse_embeddings=True does not work with {refusal}; use --sparse_embeddings=False")
    return bool(wanted)


def id_tables(model, config):
    """The user and video embedding tables of every backbone of `model` (name -> nn.Embedding)."""
    suffixes = tuple(s.format(uid=config["USER_ID_FIELD"], iid=config["ITEM_ID_FIELD"]) for s in ID_TABLE_SUFFIXES)
    return {name: module for name, module in model.named_modules()
            if isinstance(module, nn.Embedding) and name.endswith(suffixes)}


class Optimizers:
    """Two optimisers stepped as one (the dense parameters' and the sparse id tables')."""

    def __init__(self, dense, sparse):
        self.parts = {"dense": dense, "sparse": sparse}

    def zero_grad(self):
        for optimizer in self.parts.values():
            optimizer.zero_grad(set_to_none=True)

    def step(self):
        for optimizer in self.parts.values():
            optimizer.step()

    def state_dict(self):
        return {name: optimizer.state_dict() for name, optimizer in self.parts.items()}

    def load_state_dict(self, state):
        for name, optimizer in self.parts.items():
            optimizer.load_state_dict(state[name])


def make_optimizer(model, config, sparse=False):
    """The optimiser of RecBole's trainer (`learner`, `learning_rate`, `weight_decay`), with the
    model's own parameter groups where it has them (as WatchTimeTrainer). With `sparse`, the id
    tables (id_tables) take sparse gradients and step with SPARSE_OPTIMIZERS[learner], each at the
    learning rate of its group."""
    learner = str(config["learner"]).lower()
    if learner not in OPTIMIZERS:
        raise ValueError(f"learner {config['learner']!r}: the ray engine takes {', '.join(OPTIMIZERS)}")
    lr, decay = config["learning_rate"], config["weight_decay"] or 0.0
    groups = model.optimizer_param_groups(lr) if hasattr(model, "optimizer_param_groups") else None
    groups = groups or [{"params": list(model.parameters())}]
    if not sparse:
        return OPTIMIZERS[learner](groups, lr=lr, weight_decay=decay)
    tables = id_tables(model, config)
    for table in tables.values():
        table.sparse = True
    table_ids = {id(t.weight) for t in tables.values()}
    dense = [{**g, "params": [p for p in g["params"] if id(p) not in table_ids]} for g in groups]
    sparse_groups = [{**g, "params": [p for p in g["params"] if id(p) in table_ids]} for g in groups]
    return Optimizers(OPTIMIZERS[learner]([g for g in dense if g["params"]], lr=lr, weight_decay=decay),
                      SPARSE_OPTIMIZERS[learner]([g for g in sparse_groups if g["params"]], lr=lr))
