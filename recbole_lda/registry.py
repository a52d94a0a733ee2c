"""The models and datasets a run can name, looked up by name (the run layer owns this table).

Models are imported only when asked for, so that naming one does not load the others.
Only watch-time models are listed: RecBole's own models predict click scores, not
seconds, which is what every run here evaluates.
"""

import difflib
import importlib

from recbole_lda.errors import UsageError

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


class UnknownNameError(UsageError):
    """A model, dataset or option name that does not exist (a usage error)."""


def did_you_mean(name, known, prefix=""):
    """'; did you mean X?' for the closest names in `known` (case-insensitive), else ''.
    `prefix` goes before each suggested name (e.g. '--')."""
    by_lower = {k.lower(): k for k in known}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(prefix + by_lower[c] for c in close)}?" if close else ""


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
