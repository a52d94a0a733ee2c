"""What a leaderboard is built from, read and checked: the finished studies and final runs of a
tuning folder (`python -m recbole_lda tune`), and every entry the folder's manifest expects
that has no usable result.

Expected entries: the manifest's methods x datasets (without a manifest: every method and
dataset of a readable study), each with final runs for seeds 0..S-1 (S: the manifest's
`seeds`; without it, at least one). A problem is one of: a tuning file that is missing, not
JSON or without the keys a finished study has; an expected seed whose run file is missing,
unreadable, without test results or not made with the study's best configuration. Each
problem names the entry and the file; the leaderboard shows them as warnings and in its
notes (`--strict` makes them an error).
"""

import glob
import os
import re
from dataclasses import dataclass, field

from recbole_lda.config.entries import run_label
from recbole_lda.config.output_dir import finished_study_files, manifest_file, runs_dir
from recbole_lda.report.tables import run_record
from recbole_lda.utils.fileio import read_json

# What the leaderboard reads of a finished study and of a final run (dotted paths).
STUDY_KEYS = ("method", "dataset", "best.params", "best.valid_score", "budget.num_samples", "budget.max_epochs",
              "budget.scheduler", "trials_completed", "trials_errored", "settings.metric", "wall_time_s")
RUN_KEYS = ("test_result.mae", "reference.train_mean.test_mae")
STUDY_WHAT = "a finished study written by python -m recbole_lda tune"
RUN_WHAT = "the results of a final run written by python -m recbole_lda tune"


@dataclass
class Inputs:
    studies: list  # readable finished studies, in the manifest's order
    records: list  # per-seed records of the usable final runs (recbole_lda.report.tables.run_record)
    manifest: dict
    methods: list  # expected methods, in order
    datasets: list  # expected datasets, in order
    problems: list = field(default_factory=list)  # entries without a (complete) usable result, one line each
    warnings: list = field(default_factory=list)  # files left out that no expected entry needed
    incomplete: set = field(default_factory=set)  # (dataset, method) whose numbers are missing or partial


def _missing_key(obj, paths):
    for path in paths:
        value = obj
        for part in path.split("."):
            if not isinstance(value, dict) or part not in value:
                return path
            value = value[part]
    return None


def read_checked(path, keys, what):
    """(the JSON object in `path`, None) or (None, why it cannot be used: one phrase)."""
    try:
        obj = read_json(path)
    except (OSError, ValueError) as err:
        return None, f"cannot be read ({str(err).replace(f'{path}: ', '')}); expected {what}"
    if not isinstance(obj, dict):
        return None, f"holds a {type(obj).__name__}, expected {what}"
    missing = _missing_key(obj, keys)
    if missing:
        return None, f"has no {missing!r}; expected {what}"
    return obj, None


def _relative(path, output_dir):
    return os.path.relpath(path, output_dir)


def read_studies(output_dir):
    """{(method, dataset): study} of the readable tuning files; the others become problems
    (named by their file: its name is `<METHOD>__<DATASET>.json`)."""
    studies, bad = {}, {}
    for path in finished_study_files(output_dir):
        study, why = read_checked(path, STUDY_KEYS, STUDY_WHAT)
        if study is None:
            bad[os.path.basename(path)[:-len(".json")]] = f"{_relative(path, output_dir)} {why}"
        else:
            studies[(study["method"], study["dataset"])] = study
    return studies, bad


def read_runs(output_dir, study, seeds, inputs):
    """The records of the usable final runs of `study`; the expected seeds (0..seeds-1, or any
    when None) that have none are returned as {seed: why}."""
    method, dataset = study["method"], study["dataset"]
    prefix = run_label(method, dataset, "")
    records, why_not = [], {}
    for path in sorted(glob.glob(os.path.join(glob.escape(runs_dir(output_dir)), f"{glob.escape(prefix)}*.json"))):
        match = re.fullmatch(re.escape(prefix) + r"(\d+)\.json", os.path.basename(path))
        if not match:
            continue
        seed, name = int(match.group(1)), _relative(path, output_dir)
        run, why = read_checked(path, RUN_KEYS, RUN_WHAT)
        if run is not None and run.get("tuned_params") != study["best"]["params"]:
            why = "was not made with the study's best configuration"
        if why is not None:
            why_not[seed] = f"{name} {why}"
            continue
        records.append(run_record(run, dataset, method, seed))
    have = {r["seed"] for r in records}
    if seeds:
        missing = {s: why_not.get(s, f"runs/{run_label(method, dataset, s)}.json is missing") for s in range(seeds)
                   if s not in have}
    else:
        missing = {} if records else (why_not or {None: f"runs/{prefix}<seed>.json: no final run is stored"})
    inputs.warnings += [f"{why}; left out" for seed, why in why_not.items() if seed not in missing]
    return records, missing


def collect(output_dir):
    """The `Inputs` of the tuning folder `output_dir`."""
    manifest_path = manifest_file(output_dir)
    manifest, problems = {}, []
    if os.path.exists(manifest_path):
        manifest, why = read_checked(manifest_path, (), "the manifest written by python -m recbole_lda tune")
        if manifest is None:
            manifest = {}
            problems.append(f"manifest.json {why}: the expected methods and seeds are unknown")
    inputs = Inputs([], [], manifest, [], [], problems)
    studies, bad = read_studies(output_dir)
    methods = list(dict.fromkeys(manifest.get("methods") or [m for m, _ in studies]))
    datasets = list(dict.fromkeys(manifest.get("datasets") or [d for _, d in studies]))
    methods += [m for m, _ in studies if m not in methods]
    datasets += [d for _, d in studies if d not in datasets]
    inputs.methods, inputs.datasets = methods, datasets
    seeds = manifest.get("seeds") if isinstance(manifest.get("seeds"), int) else None
    for dataset in datasets:
        for method in methods:
            study = studies.get((method, dataset))
            label = re.sub(r"[^\w.=-]+", "_", f"{method}__{dataset}")
            if study is None:
                why = bad.pop(label, f"tuning/{label}.json is missing (no finished study)")
                inputs.problems.append(f"{method} on {dataset}: no result: {why}")
                inputs.incomplete.add((dataset, method))
                continue
            inputs.studies.append(study)
            records, missing = read_runs(output_dir, study, seeds, inputs)
            inputs.records += records
            if missing:
                inputs.incomplete.add((dataset, method))
                count = (f"{len(records)} of {seeds} seeds" if seeds else "no seed")
                inputs.problems.append(f"{method} on {dataset}: {count}: " + "; ".join(missing.values()))
    inputs.problems += [f"{why}: left out" for why in bad.values()]  # named by no expected entry
    return inputs
