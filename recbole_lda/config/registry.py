"""The models and datasets a run can name, looked up by name (the config layer owns this table).

Models are imported only when asked for, so that naming one does not load the others.
Only watch-time models are listed: RecBole's own models predict click scores, not
seconds, which is what every run here evaluates. A dataset is a name with defaults in
`properties/dataset/<name>.yaml`; its converter (raw files -> tables) is named in
`dataset_prep.common.CONVERTERS`.
"""

import importlib

from recbole_lda.config.options import yaml_files
from recbole_lda.utils.errors import UnknownNameError, did_you_mean

# Where each model lives: name -> module (the class in it has the same name).
MODEL_MODULES = {
    "LDA": "recbole_lda.model.lda",
    "VR": "baselines.vr",
    "WLR": "baselines.wlr",
    "D2Q": "baselines.d2q",
    "OR": "baselines.ordinal",
    "CWM": "baselines.cwm",
    "TPM": "baselines.tpm",
    "CREAD": "baselines.cread",
    "EGMN": "baselines.egmn",
    "CQE": "baselines.cqe",
    "D2Co": "baselines.d2co",
}

WATCH_TIME_MODELS = tuple(MODEL_MODULES)


def check_model_name(name):
    if name not in MODEL_MODULES:
        raise UnknownNameError(
            f"unknown model {name!r}{did_you_mean(name, MODEL_MODULES)} (models: {', '.join(WATCH_TIME_MODELS)})"
        )


def get_model(name):
    """The model class registered as `name`; UnknownNameError (with the closest names) otherwise."""
    check_model_name(name)
    return getattr(importlib.import_module(MODEL_MODULES[name]), name)


def get_trainer(model_class):
    """The trainer class a model runs with (every watch-time model names its own)."""
    return model_class.trainer_class


def known_datasets():
    """Every dataset name: one YAML file of defaults each under properties/dataset/."""
    return tuple(yaml_files("dataset"))


def check_dataset_name(name):
    datasets = known_datasets()
    if name not in datasets:
        raise UnknownNameError(f"unknown dataset {name!r}{did_you_mean(name, datasets)} (datasets: {', '.join(datasets)})")
