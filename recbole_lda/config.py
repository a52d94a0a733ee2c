"""RecBole's Config with the plugin's models and YAML defaults.

Precedence, lowest first: RecBole's overall.yaml, model and dataset YAML and its
quick-start defaults for context models; then this repository's `properties/overall.yaml`,
`properties/model/<model>.yaml` and `properties/dataset/<dataset>.yaml`; then config files,
the config dict, and the command-line overrides.
"""

import os

from recbole.config import Config as RecBoleConfig

from recbole_lda.utils import get_model

PROPERTIES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "properties")


class Config(RecBoleConfig):
    def __init__(self, model=None, dataset=None, config_file_list=None, config_dict=None, cmd_overrides=None):
        """Like RecBole's Config, but command-line values come from `cmd_overrides` (a dict
        of strings, as parsed from `--key=value`) instead of being read from sys.argv, so that
        a library call never picks up the arguments of whatever process runs it."""
        self._cmd_overrides = dict(cmd_overrides or {})
        super().__init__(model, dataset, config_file_list, config_dict)

    def _load_cmd_line(self):
        return self._convert_config_dict(dict(self._cmd_overrides))

    def _get_model_and_dataset(self, model, dataset):
        if model is None:
            model = self.external_config_dict.get("model")
            if model is None:
                raise KeyError("the model must be given (--model=NAME, config file or config dict)")
        if dataset is None:
            dataset = self.external_config_dict.get("dataset")
            if dataset is None:
                raise KeyError("the dataset must be given (--dataset=NAME, config file or config dict)")
        if isinstance(model, str):
            return model, get_model(model), dataset
        return model.__name__, model, dataset

    def _load_internal_config_dict(self, model, model_class, dataset):
        super()._load_internal_config_dict(model, model_class, dataset)
        for path in (
            os.path.join(PROPERTIES_DIR, "overall.yaml"),
            os.path.join(PROPERTIES_DIR, "model", f"{model}.yaml"),
            os.path.join(PROPERTIES_DIR, "dataset", f"{dataset}.yaml"),
        ):
            if os.path.isfile(path):
                loaded = self._update_internal_config_dict(path) or {}
                if "dataset" in os.path.basename(os.path.dirname(path)):
                    self.parameters["Dataset"] += [k for k in loaded if k not in self.parameters["Dataset"]]
