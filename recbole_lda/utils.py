"""Model and trainer lookup, evaluation batches, logging, and resource measurement."""

import importlib
import logging
import os
import resource
import sys

from recbole.utils import get_model as recbole_get_model
from recbole.utils import get_trainer as recbole_get_trainer

# Where each plugin model lives. Models not listed here are looked up in RecBole.
MODEL_MODULES = {
    "LDA": "recbole_lda.model.lda",
    "VR": "baselines.vr",
    "WLR": "baselines.wlr",
    "D2Q": "baselines.d2q",
    "OR": "baselines.ordinal",
    "CWM": "baselines.cwm",
    "TPM": "baselines.tpm",
}

WATCH_TIME_MODELS = tuple(MODEL_MODULES)


def get_model(model_name):
    """The model class for `model_name`: a recbole-lda model, else one of RecBole's."""
    module_path = MODEL_MODULES.get(model_name)
    if module_path is None:
        return recbole_get_model(model_name)
    try:
        module = importlib.import_module(module_path)
    except ModuleNotFoundError as err:
        if err.name != module_path:
            raise
        raise ValueError(f"model {model_name} is registered but {module_path} is not implemented yet") from err
    return getattr(module, model_name)


def get_trainer(model_type, model_name):
    """The model's own trainer when it names one (`trainer_class`), else RecBole's choice."""
    model_class = get_model(model_name)
    return getattr(model_class, "trainer_class", None) or recbole_get_trainer(model_type, model_name)


def interactions(data_loader, device):
    """The Interaction of each batch of an evaluation loader, on `device` (RecBole's full-sort
    loaders yield tuples whose first element is the Interaction)."""
    for batch in data_loader:
        yield (batch[0] if isinstance(batch, tuple) else batch).to(device)


def init_logger(config):
    """Log to the console and to `<log_dir>/<model>-<dataset>.log` (RecBole's own
    init_logger writes to a fixed ./log/ folder)."""
    level = getattr(logging, str(config["state"] or "INFO").upper(), logging.INFO)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_recbole_lda", False):
            root.removeHandler(handler)
    handlers = [logging.StreamHandler(sys.stdout)]
    if config["log_dir"]:
        os.makedirs(config["log_dir"], exist_ok=True)
        handlers.append(logging.FileHandler(os.path.join(config["log_dir"], f"{config['model']}-{config['dataset']}.log")))
    for handler in handlers:
        handler.setFormatter(fmt)
        handler._recbole_lda = True
        root.addHandler(handler)
    root.setLevel(level)


def peak_memory_mb():
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
