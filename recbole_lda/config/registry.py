"""The models and datasets a run can name, looked up by name (the config layer owns this table).

Models are imported only when asked for, so that naming one does not load the others.
Only watch-time models are listed: RecBole's own models predict click scores, not
seconds, which is what every run here evaluates. Besides ours (`MODEL_MODULES`), a run can
name a plug-in model: an entry point of the group `recbole_lda.models`, or
`package.module:Class` (`recbole_lda.config.plugins`, which checks the contract). A dataset is a name with defaults in
`properties/dataset/<name>.yaml`; its converter (raw files -> tables) is named in
`dataset_prep.common.CONVERTERS`.
"""

import importlib
import os

import yaml

from recbole_lda.config import plugins
from recbole_lda.config.options import properties_dir, yaml_files
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


def model_names():
    """Ours, then the installed plug-ins' names (not loaded)."""
    return (*WATCH_TIME_MODELS, *(n for n in plugins.installed() if n not in MODEL_MODULES))


def check_model_name(name):
    """UnknownNameError (with the closest names) unless `name` is ours, an installed plug-in
    or `package.module:Class`; the class itself is checked when loaded (get_model)."""
    if name in MODEL_MODULES or is_plugin(name):
        return
    names = model_names()
    raise UnknownNameError(
        f"unknown model {name!r}{did_you_mean(name, names)} (models: {', '.join(names)}; or package.module:Class)"
    )


def is_plugin(name):
    """True for an installed plug-in's name or `package.module:Class` (not loaded here)."""
    return name not in MODEL_MODULES and (plugins.is_class_spec(name) or name in plugins.installed())


def get_model(name):
    """The model class named `name`: ours, an installed plug-in, or `package.module:Class`.
    UnknownNameError (with the closest names) for an unknown name; PluginError for a plug-in
    that fails to load, collides with ours or breaks the contract."""
    check_model_name(name)
    found = plugins.installed()
    if name in MODEL_MODULES:
        if name in found:
            plugins.load_entry_point(name, found[name], MODEL_MODULES)  # refused: the name is ours
        return getattr(importlib.import_module(MODEL_MODULES[name]), name)
    if plugins.is_class_spec(name):
        return plugins.load_class_spec(name)
    return plugins.load_entry_point(name, found[name], MODEL_MODULES)


def defaults_file(name):
    """The YAML of the model's own keys: properties/model/<name>.yaml for ours, the file
    named after the class beside its module for a plug-in."""
    if is_plugin(name):
        return plugins.files_of(get_model(name))[0]
    return os.path.join(properties_dir(), "model", f"{name}.yaml")


def search_space_file(name, space_dir):
    """The YAML of the model's search space: <space_dir>/<name>.yaml, or for a plug-in without
    one there, `<Class>.tune.yaml` beside its module."""
    path = os.path.join(space_dir, f"{name}.yaml")
    if is_plugin(name) and not os.path.isfile(path):
        return plugins.files_of(get_model(name))[1]
    return path


def get_trainer(model_class):
    """The trainer class a model runs with (every watch-time model names its own)."""
    return model_class.trainer_class


def known_datasets():
    """Every dataset name: one YAML file of defaults each under properties/dataset/."""
    return tuple(yaml_files("dataset"))


def known_converters():
    """Converters a dataset without a YAML of its own can name (`converter: generic`): one
    YAML file of defaults each under properties/converter/."""
    return tuple(yaml_files("converter"))


def requested_converter(config_file_list=None, config_dict=None, cmd_overrides=None):
    """The `converter` a run's configuration names (command line, config dict, then config
    files, as the Config ranks them), read before the Config is built; None if none does."""
    for source in (cmd_overrides or {}, config_dict or {}):
        if source.get("converter") is not None:
            return str(source["converter"])
    found = None
    for path in config_file_list or []:
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                loaded = yaml.safe_load(f)
            if isinstance(loaded, dict) and loaded.get("converter") is not None:
                found = str(loaded["converter"])
    return found


def check_dataset_name(name, converter=None):
    """UnknownNameError unless `name` has a YAML under properties/dataset/ or its
    configuration names a converter (`converter`: one of known_converters())."""
    if converter is not None:
        if converter not in known_converters():
            raise UnknownNameError(f"unknown converter {converter!r}{did_you_mean(converter, known_converters())} "
                                   f"(converters: {', '.join(known_converters())})")
        return
    datasets = known_datasets()
    if name not in datasets:
        raise UnknownNameError(f"unknown dataset {name!r}{did_you_mean(name, datasets)} (datasets: {', '.join(datasets)}; "
                               f"or a log of your own with converter: generic)")
