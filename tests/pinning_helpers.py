"""Helpers of the value-pinning tests (test_loss_values, test_edges, test_checkpoints):
a tiny RecBole dataset with tied watch times, and model builders. Not a test module."""

import numpy as np
import torch
from recbole.data import create_dataset, data_preparation
from recbole.data.interaction import Interaction
from recbole.utils import init_seed

from recbole_lda import compat
from recbole_lda.config.configurator import Config

try:
    from recbole_lda.config.registry import get_model
except ImportError:  # before the registry moved out of utils
    from recbole_lda.utils import get_model

compat.apply()  # what every run does first
torch.set_num_threads(1)

HEADER = "user_id:token\titem_id:token\tlabel:float\tduration:float\n"
# small LDA settings: 3 buckets of 4 anchors, short sequences, a few VQ-VAE steps
LDA_SMALL = dict(num_buckets=3, num_anchors=4, sequence_length=8, num_sequences=32, vq_steps=5,
                 sequence_sampling="random", projection_dim=8, predictor_hidden_size=[8])


def toy_rows(n, seed, label_scale=1.0, duration_scale=1.0):
    """n rows of (user, item, watch time, duration): 20 users, 30 items with durations 5-34 s
    (times duration_scale); quick skips (0 s), complete plays (= duration), replays, partial plays."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        user, item = int(rng.integers(20)), int(rng.integers(30))
        duration = float(5 + item)
        kind = rng.random()
        if kind < 0.1:
            watch = 0.0
        elif kind < 0.35:
            watch = duration
        elif kind < 0.45:
            watch = round(duration * (1 + rng.random()), 2)
        else:
            watch = round(min(duration, rng.exponential(duration / 3)), 2)
        rows.append((user, item, watch * label_scale, duration * duration_scale))
    return rows


def write_toy(root, label_scale=1.0, duration_scale=1.0):
    """toy.{train,valid,test}.inter under root/toy. Scaling labels and durations changes every
    statistic a model derives from the training split but none of their shapes."""
    folder = root / "toy"
    folder.mkdir(parents=True, exist_ok=True)
    for split, (n, seed) in {"train": (400, 0), "valid": (60, 1), "test": (60, 2)}.items():
        rows = toy_rows(n, seed, label_scale, duration_scale)
        (folder / f"toy.{split}.inter").write_text(HEADER + "".join(f"{u}\t{i}\t{w}\t{d}\n" for u, i, w, d in rows))
    return root


def build(name, root, **overrides):
    """(model, training dataset, test dataset) of model `name` on the toy data under root."""
    config = Config(name, "toy", config_dict={
        "data_path": str(root), "benchmark_filename": ["train", "valid", "test"], "show_progress": False,
        "state": "WARNING", "log_dir": str(root / "log"), "checkpoint_dir": str(root / "saved"), **overrides})
    init_seed(config["seed"], config["reproducibility"])
    train, _, test = data_preparation(config, create_dataset(config))
    init_seed(config["seed"], config["reproducibility"])
    return get_model(name)(config, train._dataset), train._dataset, test._dataset


def batch(**columns):
    return Interaction({k: torch.as_tensor(v) for k, v in columns.items()})
