"""RecBole's Config with the plugin's models, YAML defaults and option checks.

Precedence, lowest first: RecBole's overall.yaml, dataset defaults and its quick-start
defaults for context models; then our `properties/overall.yaml`,
`properties/model/<model>.yaml` (a plug-in's `<Class>.yaml` beside its module),
`properties/dataset/<dataset>.yaml`, then
`properties/protocol/<protocol>.yaml` (the `protocol` key, from the command line, config
dict, config files or overall.yaml; its reserved `per_dataset: {<dataset>: {...}}` block
applies to the run's dataset only) (all shipped inside the package as
`recbole_lda.properties`); then config files, the config dict, and the
command-line overrides.

Unlike RecBole's, this Config refuses, before any work: an unknown model or dataset, a
key that no YAML defines (with the closest known keys), and a value of the wrong type or
out of its declared range (`recbole_lda.config.options`). Command-line values are parsed as
literals, never evaluated (`recbole_lda.config.options.parse_value`).
"""

import os
from functools import lru_cache

import yaml
from recbole.config import Config as RecBoleConfig

from recbole_lda.config.options import (OptionError, check_known, check_values, merged_specs, parse_value, properties_dir,
                                        yaml_files)
from recbole_lda.config.registry import check_dataset_name, defaults_file, get_model
from recbole_lda.utils.errors import did_you_mean

# Keys that are names rather than configuration (RecBole takes them from the same dicts).
NAME_KEYS = ("model", "dataset", "config_files")
# Reserved top-level key of a protocol YAML: {dataset: {key: value}} applied to that dataset only.
PER_DATASET_KEY = "per_dataset"


@lru_cache(maxsize=None)
def known_keys(model, dataset):
    """Every key a run of `model` on `dataset` accepts (RecBole's YAML and ours)."""
    from recbole_lda import compat

    compat.apply()  # our metrics must be registered for the default valid_metric check
    return frozenset(Config(model, dataset, config_dict={"state": "WARNING"}).internal_config_dict) | set(NAME_KEYS)


def keys_for_runs(common, runs):
    """Shared `--key=value` pairs of a command that starts several runs (compare, tune): a
    key applies to every run whose model and dataset define it (e.g. --vq_steps to LDA's
    runs only), and a key that no run defines is refused. Returns {(model, dataset): keys}.

    Args:
        common (dict): key -> value (strings) given once for all runs.
        runs (iterable of (model, dataset)).
    """
    runs = list(dict.fromkeys(runs))
    known = {run: known_keys(*run) for run in runs}
    everywhere = set().union(*known.values()) if known else set()
    check_known(common, everywhere, lambda key: f"--{key}", "--")
    return {run: {k: v for k, v in common.items() if k in known[run]} for run in runs}


class Config(RecBoleConfig):
    def __init__(self, model=None, dataset=None, config_file_list=None, config_dict=None, cmd_overrides=None):
        """Like RecBole's Config, but command-line values come from `cmd_overrides` (a dict
        of strings, as parsed from `--key=value`) instead of being read from sys.argv, so that
        a library call never picks up the arguments of whatever process runs it."""
        self._cmd_overrides = dict(cmd_overrides or {})
        self._file_of_key = {}
        super().__init__(model, dataset, config_file_list, config_dict)
        self._check_options()

    # --- where values come from
    def _convert_config_dict(self, config_dict):
        return {key: parse_value(value) for key, value in config_dict.items()}

    def _load_cmd_line(self):
        return self._convert_config_dict(self._cmd_overrides)

    def _load_config_files(self, file_list):
        merged = {}
        for path in file_list or []:
            if not os.path.isfile(path):
                raise OptionError(f"config file {path!r} not found")
            with open(path, encoding="utf-8") as f:
                loaded = yaml.load(f.read(), Loader=self.yaml_loader) or {}
            if not isinstance(loaded, dict):
                raise OptionError(f"config file {path!r}: expected key: value lines at the top level")
            self._file_of_key.update({key: path for key in loaded})
            merged.update(loaded)
        return merged

    def _get_model_and_dataset(self, model, dataset):
        model = model or self.external_config_dict.get("model")
        dataset = dataset or self.external_config_dict.get("dataset")
        if model is None:
            raise OptionError("the model must be given (--model=NAME, config file or config dict)")
        if dataset is None:
            raise OptionError("the dataset must be given (--dataset=NAME, config file or config dict)")
        if isinstance(model, str):
            return model, get_model(model), dataset
        return model.__name__, model, dataset

    def _load_internal_config_dict(self, model, model_class, dataset):
        super()._load_internal_config_dict(model, model_class, dataset)
        root = properties_dir()
        self._our_files = [
            os.path.join(root, "overall.yaml"),
            defaults_file(model),  # ours: properties/model/<model>.yaml; a plug-in's: beside its module
            self._dataset_file(root, dataset),
        ]
        for path in self._our_files:
            if not os.path.isfile(path):
                if path == self._our_files[-1]:
                    continue  # an atomic dataset of the user's own, without converter (run refuses those)
                # the package is broken: never fall back to RecBole's defaults
                raise FileNotFoundError(f"recbole-lda's default configuration {path} is missing; reinstall the package")
            loaded = self._update_internal_config_dict(path) or {}
            if path == self._our_files[-1]:
                self.parameters["Dataset"] += [k for k in loaded if k not in self.parameters["Dataset"]]
        self._load_protocol(dataset)

    def _dataset_file(self, root, dataset):
        """properties/dataset/<dataset>.yaml; for a dataset without one whose configuration
        names a converter (`converter: generic`), properties/converter/<converter>.yaml."""
        path = os.path.join(root, "dataset", f"{dataset}.yaml")
        converter = self.external_config_dict.get("converter")
        if not os.path.isfile(path) and converter:
            check_dataset_name(dataset, str(converter))  # an unknown converter, before its keys are refused
            return os.path.join(root, "converter", f"{converter}.yaml")
        return path

    def _load_protocol(self, dataset):
        """Overlay properties/protocol/<protocol>.yaml (after the dataset YAML, below config
        files, config dict and command line). Every key it sets must already be known."""
        name = self.external_config_dict.get("protocol", self.internal_config_dict.get("protocol"))
        protocols = yaml_files("protocol")
        if name not in protocols:
            raise OptionError(f"unknown protocol {name!r}{did_you_mean(str(name), protocols)} (protocols: {', '.join(protocols)})")
        path = protocols[name]
        with open(path, encoding="utf-8") as f:
            loaded = yaml.load(f.read(), Loader=self.yaml_loader) or {}
        per_dataset = loaded.pop(PER_DATASET_KEY, None) or {}
        if not isinstance(per_dataset, dict):
            raise OptionError(f"{path}: {PER_DATASET_KEY} must map dataset names to key: value blocks")
        values = {**loaded, **(per_dataset.get(dataset) or {})}
        unknown = [k for k in values if k not in self.internal_config_dict]
        if unknown:
            raise OptionError(f"protocol {name!r} ({path}) sets {unknown[0]!r}, which is not a key of {self.model} on {dataset}")
        self.internal_config_dict.update(values)
        self._protocol_values = values

    # --- checks
    def _where(self, key):
        if key in self.cmd_config_dict:
            return f"--{key}"
        if key in self.variable_config_dict:
            return f"{key} (config dict)"
        if key in self._file_of_key:
            return f"{key} (in {self._file_of_key[key]})"
        if key in getattr(self, "_protocol_values", {}):
            return f"{key} (protocol {self.final_config_dict.get('protocol')})"
        return f"{key} (default)"

    def _check_options(self):
        """Unknown keys and bad values, before any work (see the module docstring)."""
        known = set(self.internal_config_dict) | set(NAME_KEYS)
        given = [k for k in self.external_config_dict if k not in NAME_KEYS]
        prefix = "--" if any(k in self.cmd_config_dict for k in given) else ""
        unknown = [k for k in given if k not in known]
        owners = [m for m, path in yaml_files("model").items() if unknown and _declares(path, unknown[0])]
        if owners:
            raise OptionError(f"unknown option {self._where(unknown[0])} for {self.model}: it is a key of {', '.join(owners)}")
        check_known(given, known, self._where, prefix)
        # this run's files, plus every dataset's: a key that is off (~) in one dataset may be set in another
        specs = merged_specs([*yaml_files("dataset").values(), *(p for p in self._our_files if os.path.isfile(p))])
        check_values({k: self.final_config_dict.get(k) for k in specs if k in self.final_config_dict}, specs, self._where)
        epochs, eval_step = self.final_config_dict["epochs"], self.final_config_dict["eval_step"]
        if eval_step > epochs:
            raise OptionError(f"eval_step={eval_step} exceeds epochs={epochs}: the run would never validate")


def _declares(path, key):
    with open(path, encoding="utf-8") as f:
        return any(line.startswith(f"{key}:") for line in f)
