"""Shared test helpers: a tiny atomic dataset written by the tests, and model builders."""

import numpy as np
import pandas as pd
import pytest
import torch

from recbole.data import create_dataset, data_preparation
from recbole.utils import init_seed
from recbole_lda import compat
from recbole_lda.config.configurator import Config
from recbole_lda.config.registry import get_model

compat.apply()  # what every run does first (recbole_lda.quick_start.run)

# Tests use tiny tensors: one thread avoids intra-op spin overhead (and contention on 2 cores).
torch.set_num_threads(1)


def write_toy_atomic(folder, name="toy", rows=3000, users=60, items=80, seed=0, label_shift=None):
    """Write `{name}.{train,valid,test}.inter` (80/10/10) in RecBole's atomic format:
    multi-peaked watch ratios (skip / partial / complete / replay) that depend on the user,
    the video and the duration. `label_shift` (callable) changes valid/test labels only."""
    rng = np.random.default_rng(seed)
    u, i = rng.integers(0, users, rows), rng.integers(0, items, rows)
    duration = np.clip(np.exp(rng.normal(2.26, 0.9, items)), 0.5, 300.0)[i]
    score = rng.normal(0, 1, users)[u] + rng.normal(0, 1, items)[i] - 0.3 * np.log(duration)
    logits = np.stack([-score, np.zeros(rows), score + 0.5, score - 1.0], axis=1)
    weights = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    comp = (rng.random(rows)[:, None] > np.cumsum(weights, 1)).sum(1)
    mu = np.log([0.08, 0.5, 1.0, 2.0])[comp]
    sigma = np.array([0.6, 0.35, 0.05, 0.3])[comp]
    label = np.exp(mu + sigma * rng.normal(size=rows)) * duration
    cut = [0, int(0.8 * rows), int(0.9 * rows), rows]
    folder.mkdir(parents=True, exist_ok=True)
    for k, part in enumerate(("train", "valid", "test")):
        sl = slice(cut[k], cut[k + 1])
        lab = label[sl] if label_shift is None or part == "train" else label_shift(label[sl])
        frame = pd.DataFrame({"user_id:token": u[sl], "item_id:token": i[sl], "label:float": lab, "duration:float": duration[sl]})
        frame.to_csv(folder / f"{name}.{part}.inter", sep="\t", index=False)
    return folder


def build(model, data_root, dataset="toy", **overrides):
    """Config, data loaders and model for `model` on an atomic dataset under data_root."""
    config_dict = {
        "data_path": str(data_root),
        "show_progress": False,
        "log_dir": None,
        "checkpoint_dir": str(data_root / "saved"),
        "epochs": 1,
        "state": "WARNING",
        **overrides,
    }
    config = Config(model, dataset, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    train, valid, test = data_preparation(config, create_dataset(config))
    init_seed(config["seed"], config["reproducibility"])
    return config, train, valid, test, get_model(model)(config, train._dataset)


@pytest.fixture(scope="session")
def toy_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("atomic")
    write_toy_atomic(root / "toy")
    return root
