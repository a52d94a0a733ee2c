"""The tuning budget of each dataset (`properties/tune/harness.yaml`): the epoch cap of every
run and ASHA's grace period and reduction factor, with the command line's overrides. ASHA's
rungs, whose trials the leaderboard counts, are in `recbole_lda.report.rungs`.

Precedence for one dataset, lowest first: harness.yaml's top-level values, its
`per_dataset: {DATASET: {...}}` block, `--key=N` (every dataset), `--key.DATASET=N`.
`epochs` is a configuration key: the command line's `--epochs` / `--epochs.DATASET` (and a
config file or bracketed key that sets it) reach the runs as before; harness.yaml's value
is used when none does (recbole_lda.tuning.studies.build_studies).
"""

import os

import yaml

from recbole_lda.config.options import OptionError, properties_dir, read_specs, yaml_files
from recbole_lda.utils.errors import did_you_mean

HARNESS_FILE = os.path.join(properties_dir(), "tune", "harness.yaml")
BUDGET_KEYS = ("epochs", "grace_period", "reduction_factor")
ASHA_KEYS = ("grace_period", "reduction_factor")  # not configuration keys: the harness's own


def read_harness(path=HARNESS_FILE):
    """harness.yaml, checked: {"defaults": {key: int}, "per_dataset": {dataset: {key: int}},
    "specs": {key: Spec}}. OptionError for a missing, unknown or misspelt key, an unknown
    dataset or a value out of its declared range."""
    with open(path, encoding="utf-8") as f:
        loaded = yaml.safe_load(f) or {}
    if not isinstance(loaded, dict):
        raise OptionError(f"{path}: expected a mapping of {', '.join(BUDGET_KEYS)} and per_dataset")
    specs = {k: s for k, s in read_specs(path).items() if k in BUDGET_KEYS}
    missing = [k for k in BUDGET_KEYS if k not in specs]
    if missing:
        raise OptionError(f"{path}: {missing} must be set at the top level, each with a comment '# (int, >= 1) ...'")
    per_dataset = loaded.pop("per_dataset", None) or {}
    _check_block(loaded, specs, f"{path}: ")
    if not isinstance(per_dataset, dict):
        raise OptionError(f"{path}: per_dataset: expected {{DATASET: {{key: value}}}}, got {per_dataset!r}")
    datasets = list(yaml_files("dataset"))
    for name, block in per_dataset.items():
        if name not in datasets:
            raise OptionError(f"{path}: per_dataset: unknown dataset {name!r}{did_you_mean(str(name), datasets)} "
                              f"(datasets: {', '.join(datasets)})")
        if not isinstance(block, dict):
            raise OptionError(f"{path}: per_dataset: {name}: expected {{key: value}}, got {block!r}")
        _check_block(block, specs, f"{path}: per_dataset: {name}: ")
    return {"defaults": loaded, "per_dataset": per_dataset, "specs": specs}


def _check_block(block, specs, where):
    for key, value in block.items():
        if key not in BUDGET_KEYS:
            raise OptionError(f"{where}unknown key {key!r}{did_you_mean(str(key), BUDGET_KEYS)} "
                              f"(keys: {', '.join(BUDGET_KEYS)})")
        problem = specs[key].problem(value)
        if problem:
            raise OptionError(f"{where}{key}: {value!r}: expected {problem}")


def split_asha_keys(common, per_dataset):
    """Take the ASHA keys out of a command's parsed `--key=value` and `--key.DATASET=value`
    pairs (recbole_lda.tuning.studies.parse_command_overrides): they are not run keys. Returns
    (common ASHA keys, {dataset: ASHA keys})."""
    take = lambda keys: {k: keys.pop(k) for k in ASHA_KEYS if k in keys}  # noqa: E731
    return take(common), {d: take(keys) for d, keys in per_dataset.items()}


def dataset_budget(harness, dataset, common=None, own=None):
    """{epochs, grace_period, reduction_factor} of `dataset`: harness.yaml's values, its
    per_dataset block, then `common` (`--key=N`) and `own` (`--key.DATASET=N`), each value
    an int or a string, checked against harness.yaml's declared range."""
    values = {**harness["defaults"], **harness["per_dataset"].get(dataset, {})}
    for suffix, given in (("", common or {}), (f".{dataset}", own or {})):
        for key, raw in given.items():
            option = f"--{key}{suffix}"
            try:
                value = int(raw) if isinstance(raw, str) else raw
            except ValueError:
                raise OptionError(f"{option}={raw!r}: expected an integer") from None
            problem = harness["specs"][key].problem(value)
            if problem:
                raise OptionError(f"{option}={raw!r}: expected {problem}")
            values[key] = value
    return values


def files_set(paths, key):
    """Whether one of the YAML config files `paths` sets `key`."""
    for path in paths:
        with open(path, encoding="utf-8") as f:
            loaded = yaml.safe_load(f)
        if isinstance(loaded, dict) and key in loaded:
            return True
    return False
