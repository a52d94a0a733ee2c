"""What a tuning command runs, without Ray: the search spaces (YAML), the studies (one per
method and dataset: fixed keys, searched keys, budget, the keys of each run), and the
files a tuning output folder holds. `recbole_lda.tuning.tune` runs the studies on Ray.
"""

import hashlib
import logging
import math
import os
import re
from dataclasses import asdict, dataclass, field

import yaml

from recbole_lda.config.entries import check_unique, parse_entry, split_entries
from recbole_lda.config.options import OptionError, parse_key_values, properties_dir
from recbole_lda.config.output_dir import run_file, study_file
from recbole_lda.report.rungs import asha_reports, rung_epochs
from recbole_lda.tuning.budget import ASHA_KEYS, HARNESS_FILE, dataset_budget, files_set, read_harness, split_asha_keys
from recbole_lda.utils.fileio import json_safe, read_json, write_json

logger = logging.getLogger(__name__)

SPACE_DIR = os.path.join(properties_dir(), "tune")

# Distributions of a search-space YAML entry and the number of their arguments.
DISTRIBUTIONS = {"uniform": 2, "loguniform": 2, "quniform": 3, "qloguniform": 3, "randint": 2, "lograndint": 2}

# Keys the harness sets for every run; the command line must not set them.
HARNESS_KEYS = ("torch_num_threads", "gpu_id", "keep_checkpoint", "results_file", "predictions_file",
                "save_model_dir", "anchor_plot_file")

# Display keys the harness sets for every run unless the command line does.
QUIET_KEYS = {"state": "WARNING", "show_progress": "False"}



# ---------------------------------------------------------------------------------------
# Search spaces


def parse_distribution(spec, where):
    """One YAML entry, e.g. {loguniform: [1.0e-4, 1.0e-2]}, checked -> {"loguniform": [0.0001, 0.01]}."""
    if not (isinstance(spec, dict) and len(spec) == 1):
        raise ValueError(f"{where}: expected one distribution such as {{loguniform: [1.0e-4, 1.0e-2]}}, got {spec!r}")
    (name, args), = spec.items()
    if name == "choice":
        if not isinstance(args, list) or not args:
            raise ValueError(f"{where}: choice takes a non-empty list of values, got {args!r}")
        return {"choice": args}
    if name not in DISTRIBUTIONS:
        raise ValueError(f"{where}: unknown distribution {name!r}; known: {['choice', *DISTRIBUTIONS]}")
    if not isinstance(args, list) or len(args) != DISTRIBUTIONS[name]:
        raise ValueError(f"{where}: {name} takes a list of {DISTRIBUTIONS[name]} numbers, got {args!r}")
    numbers = []
    for value in args:
        if isinstance(value, str):  # YAML reads 1e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise ValueError(f"{where}: {value!r} is not a number") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where}: {value!r} is not a number")
        numbers.append(value)
    low, high = numbers[:2]
    if name in ("randint", "lograndint") and not all(float(v).is_integer() for v in numbers):
        raise ValueError(f"{where}: {name} takes integer bounds, got {args!r}")
    if not low < high:
        raise ValueError(f"{where}: the lower bound must be below the upper bound, got {args!r}")
    if name.startswith(("log", "qlog")) and low <= 0:
        raise ValueError(f"{where}: {name} needs a positive lower bound, got {args!r}")
    if name.startswith("q") and numbers[2] <= 0:
        raise ValueError(f"{where}: the step q must be positive, got {args!r}")
    if name in ("randint", "lograndint"):
        numbers = [int(v) for v in numbers]
    return {name: numbers}


def read_search_space(model, space_dir=SPACE_DIR):
    """The search space of `model`: `overall.yaml`'s keys, then `<model>.yaml`'s (a plug-in's
    `<Class>.tune.yaml` beside its module, unless `space_dir` has `<model>.yaml`), as
    {key: {distribution: arguments}}. `<model>.yaml` must exist (it may hold no key)."""
    from recbole_lda.config.registry import search_space_file

    model_file = search_space_file(model, space_dir)  # a plug-in's: <Class>.tune.yaml beside its module
    if not os.path.isfile(model_file):
        raise FileNotFoundError(
            f"no search space for {model}: write {model_file} (an empty file tunes only the keys of overall.yaml)"
        )
    space = {}
    for path in (os.path.join(space_dir, "overall.yaml"), model_file):
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8") as f:
            loaded = yaml.safe_load(f) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping of configuration keys to distributions")
        for key, spec in loaded.items():
            space[key] = parse_distribution(spec, f"{path}: {key}")
    return space


# ---------------------------------------------------------------------------------------
# Studies: one (method, dataset) each


@dataclass
class Study:
    """What one tuning job runs. Fields travel to the Ray workers."""

    entry: str  # the method as listed: MODEL or MODEL[key=value;...]
    model: str
    dataset: str
    config_files: list  # absolute paths
    overrides: dict  # {key: str}: the fixed keys of every run, paths absolute
    space: dict  # the searched keys: {key: {distribution: arguments}}
    metric: str = ""  # validation metric key in RecBole's results (e.g. "mae")
    mode: str = ""  # "min" or "max"
    max_epochs: int = 0
    eval_step: int = 1
    budget: dict = field(default_factory=dict)  # num_samples, search and scheduler settings
    resources: dict = field(default_factory=dict)  # {"cpu": n, "gpu": g}: not part of the settings
    schedule: dict = field(default_factory=dict)  # ASHA's grace_period, reduction_factor (harness.yaml): into budget

    @property
    def label(self):
        return re.sub(r"[^\w.=-]+", "_", f"{self.entry}__{self.dataset}")

    @property
    def score_key(self):
        """The trial's score reported to Tune: its best validation score so far."""
        return f"best_valid_{self.metric}"

    def settings(self):
        """Everything that decides the study's results (a finished study with other
        settings cannot be resumed or reused)."""
        out = {k: v for k, v in asdict(self).items() if k not in ("resources", "config_files", "schedule")}
        out["config_files"] = [{"path": p, "sha256": file_sha256(p)} for p in self.config_files]
        return out


def file_sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def parse_command_overrides(rest, datasets):
    """Trailing `--key=value` -> (common {key: value}, per dataset {dataset: {key: value}},
    per-dataset config files {dataset: [paths]}). `--key.DATASET=value` applies to DATASET only."""
    common, per_dataset, files = {}, {d: {} for d in datasets}, {d: [] for d in datasets}
    for key, value in parse_key_values(rest).items():
        base, dot, target = key.rpartition(".")
        if not dot:
            common[key] = value
            continue
        if target not in per_dataset:
            raise OptionError(f"--{key}: {target!r} is not one of the datasets {list(per_dataset)}")
        if base == "config_files":
            files[target] += [os.path.abspath(p) for p in value.split()]
        else:
            per_dataset[target][base] = value
    return common, per_dataset, files


def build_studies(args, rest, space_dir=SPACE_DIR, harness_file=HARNESS_FILE):
    """The studies of a command, in the order (dataset, method) given. Paths are made absolute.
    Each dataset's epochs, grace period and reduction factor: `harness_file`, then the command."""
    datasets = [parse_entry(d) for d in split_entries(args.datasets)]
    names = [d for d, _ in datasets]
    check_unique(split_entries(args.datasets), "--datasets", by_name=True)
    common, per_dataset, dataset_files = parse_command_overrides(rest, names)
    asha_common, asha_own = split_asha_keys(common, per_dataset)
    asha_common.update({k: getattr(args, k) for k in ASHA_KEYS if getattr(args, k, None) is not None})
    harness = read_harness(harness_file)
    global_files = [os.path.abspath(p) for p in (args.config_files or "").split()]
    entries = split_entries(args.models)
    check_unique(entries, "--models")
    from recbole_lda.config.configurator import keys_for_runs
    from recbole_lda.config.registry import check_dataset_name, requested_converter

    for name in names:  # a dataset of one's own names its converter in its config files (converter: generic)
        check_dataset_name(name, requested_converter(global_files + dataset_files[name], None,
                                                     {**common, **per_dataset[name]}))
    runs = [(parse_entry(e)[0], d) for d in names for e in entries]
    shared = keys_for_runs(common, runs)  # a shared key goes to the runs that define it
    for name in names:
        per_dataset[name] = keys_for_runs(per_dataset[name], [r for r in runs if r[1] == name])
    studies = []
    for dataset, bracket_keys in datasets:
        files = global_files + dataset_files[dataset]
        for path in files:
            if not os.path.isfile(path):
                raise FileNotFoundError(f"config file {path} does not exist")
        values = dataset_budget(harness, dataset, asha_common, asha_own[dataset])
        for entry in entries:
            model, entry_keys = parse_entry(entry)
            overrides = {**shared[(model, dataset)], **per_dataset[dataset][(model, dataset)], **bracket_keys,
                         **entry_keys}
            owned = sorted(set(overrides) & set(HARNESS_KEYS))
            if owned:
                raise ValueError(
                    f"the harness sets {owned} for every run (torch_num_threads = --cpus_per_trial, gpu_id from "
                    f"--gpus_per_trial, checkpoints and results in its own folders): do not set them"
                )
            if "epochs" not in overrides and not files_set(files, "epochs"):
                overrides["epochs"] = str(values["epochs"])  # harness.yaml's, below the command's
            for key, value in QUIET_KEYS.items():
                overrides.setdefault(key, value)
            space = read_search_space(model, space_dir)
            fixed = sorted(set(space) & set(overrides))
            if fixed:
                logger.info(f"{entry} on {dataset}: {fixed} fixed by the command, left out of the search")
            space = {k: v for k, v in space.items() if k not in overrides}
            studies.append(Study(entry.strip(), model, dataset, files, overrides, space,
                                 schedule={k: values[k] for k in ASHA_KEYS}))
    return studies


def resolve_study(study):
    """Make the study's paths absolute, read its metric and epoch cap, and prepare its
    dataset (convert and split, cached) so that trials never convert concurrently."""
    import dataset_prep
    from recbole_lda.config.configurator import Config

    cuda_env = os.environ.get("CUDA_VISIBLE_DEVICES")  # RecBole's Config sets it from gpu_id
    try:
        config = Config(study.model, study.dataset, study.config_files or None, None, dict(study.overrides))
        # RecBole joins data_path with the dataset name; trials get the absolute root.
        study.overrides["data_path"] = os.path.abspath(os.path.dirname(os.path.normpath(config["data_path"])))
        if config["raw_data_path"]:
            study.overrides["raw_data_path"] = os.path.abspath(config["raw_data_path"])
        config = Config(study.model, study.dataset, study.config_files or None, None, dict(study.overrides))
        prepared = dataset_prep.prepare(config)
    finally:
        if cuda_env is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = cuda_env
    study.metric = config["valid_metric"].lower()
    study.mode = "max" if config["valid_metric_bigger"] else "min"
    study.max_epochs = int(config["epochs"])
    study.eval_step = int(config["eval_step"])
    return prepared


def run_overrides(study, seed=None):
    """The command-line keys of one run: the study's fixed keys and the harness's."""
    gpus = study.resources.get("gpu", 0)
    overrides = dict(study.overrides)
    overrides.update(
        torch_num_threads=str(max(1, int(study.resources.get("cpu", 1)))),
        # RecBole sets CUDA_VISIBLE_DEVICES from gpu_id: hand it the GPU Ray assigned.
        gpu_id=os.environ.get("CUDA_VISIBLE_DEVICES", "") if gpus else "",
        keep_checkpoint="False",
        results_file="None",
        predictions_file="None",
    )
    if seed is not None:
        overrides["seed"] = str(seed)
    return overrides


def study_budget(study):
    return study.budget["num_samples"]


def set_budget(study, args):
    """The study's budget settings (after resolve_study, which reads its epoch cap): the
    command's trials and scheduler, and for ASHA this dataset's grace period (capped at the
    epochs, as ASHA gets it) and reduction factor."""
    study.budget = {"num_samples": args.num_samples, "search_seed": args.search_seed, "scheduler": args.scheduler}
    if args.scheduler == "asha":
        grace = asha_reports(study.schedule["grace_period"], study.max_epochs, study.eval_step)[0] * study.eval_step
        study.budget.update(grace_period=grace, reduction_factor=study.schedule["reduction_factor"])


def asha_settings(study):
    """ASHAScheduler's grace_period, max_t (validation reports) and reduction_factor."""
    grace, max_t = asha_reports(study.budget["grace_period"], study.max_epochs, study.eval_step)
    return {"grace_period": grace, "max_t": max_t, "reduction_factor": study.budget["reduction_factor"]}


def budget(study, args):
    """The budget stored with a finished study (and shown by the leaderboard)."""
    asha = args.scheduler == "asha"
    grace = study.budget["grace_period"] if asha else study.max_epochs
    out = {
        "num_samples": args.num_samples,
        "search": f"random (Ray Tune BasicVariantGenerator, random_state={args.search_seed})",
        "scheduler": (f"ASHA (grace_period={grace}, reduction_factor={study.budget['reduction_factor']}, "
                      f"on the running best valid {study.metric} per epoch)" if asha else "FIFO"),
        "max_epochs": study.max_epochs,
        "eval_step": study.eval_step,
        "stopping_step": study.overrides.get("stopping_step"),
        "selection": f"best valid {study.metric} ({study.mode}) over trials; test not used",
        "max_failures": args.max_failures,
    }
    if asha:
        out.update(grace_period=grace, reduction_factor=study.budget["reduction_factor"])
    out["rung_epochs"] = rung_epochs(grace, out.get("reduction_factor", 2), study.max_epochs, study.eval_step)
    return out


# ---------------------------------------------------------------------------------------
# Files


def finite_or_none(value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def read_tail(path, chars=2000):
    """The end of a text file (a trial's error), or None."""
    if not path or not os.path.exists(path):
        return None
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()[-chars:]


def check_settings(path, settings, has_results):
    """Stop if `path` (a study file) holds other settings and the study has results (a
    finished trial or run); otherwise (re)write it with these settings."""
    current = json_safe(settings)
    if os.path.exists(path):
        stored = read_json(path)["settings"]
        if stored == current:
            return  # a rerun rewrites nothing
        diff = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
        if has_results:
            raise OptionError(
                f"{path} was made with other settings (differences in {diff}); finished results are never "
                f"overwritten: use another --output_dir, or the original settings"
            )
        logger.info(f"{path}: no trial of the earlier settings finished; starting over with these")
    write_json(path, {"settings": current})


def check_studies(studies):
    """Every study's configuration and search-space keys, before any data is prepared or
    any trial runs: an unknown key or a bad value fails the command now."""
    from recbole_lda import compat
    from recbole_lda.config.configurator import Config
    from recbole_lda.config.registry import check_dataset_name, requested_converter

    compat.apply()  # our metrics (valid_metric: XAUC) must be registered before a Config is built
    for study in studies:
        check_dataset_name(study.dataset, requested_converter(study.config_files, None, study.overrides))
        try:
            config = Config(study.model, study.dataset, study.config_files or None, None, dict(study.overrides))
        except OptionError as err:
            raise OptionError(f"{study.entry} on {study.dataset}: {err}") from None
        unknown = sorted(k for k in study.space if k not in config.internal_config_dict)
        if unknown:
            raise OptionError(f"search space of {study.model}: unknown keys {unknown}")


def select_best(records, mode):
    """The trial record with the best `valid_score` (lowest for mode 'min', highest for
    'max'), among trials that gave a finite score and did not diverge (a diverged trial is
    not selected even on a score from before: its final runs would likely diverge too);
    None when no trial qualifies. Ties go to the first record."""
    scored = [r for r in records if finite_or_none(r.get("valid_score")) is not None and not r.get("diverged")]
    if not scored:
        return None
    sign = 1 if mode == "min" else -1
    return min(scored, key=lambda r: sign * r["valid_score"])


def tuning_path(output_dir, study):
    return study_file(output_dir, study.label)


def run_path(output_dir, study, seed):
    return run_file(output_dir, study.entry, study.dataset, seed)
