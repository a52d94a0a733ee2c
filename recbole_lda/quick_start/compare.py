"""Compare models at fixed settings over several seeds (the library behind `compare`).

A model entry is a model name, optionally with overrides in brackets (`;`-separated),
which makes ablations one more column; a dataset entry takes overrides the same way.
Every run goes through `recbole_lda.quick_start.run` and writes its results JSON (and its
log, beside it) under OUTPUT_DIR/runs/. Shared `--key=value` pairs apply to every run whose
model and dataset define the key. Written: OUTPUT_DIR/summary.csv, summary.md and
summary.json (`recbole_lda.report.tables`).

Stored runs. A run already in OUTPUT_DIR/runs/ is reused (an interrupted comparison
resumes) only when it is the run this command would make: the same resolved configuration
(every key of its results file's `hyperparameters`, except those that only name output
files or the log or set progress display: `NOT_SETTINGS`), the same data (the prepared
split's key: converter, options, raw files, split; `data.prepared_key`) and the same code
(`environment.code_sha256`). Every stored run is checked before any run starts; if one
differs, or cannot be read (a truncated file), the command stops, naming the file and the
differing keys, and nothing is trained. Then either pass `rerun=True` (`--rerun`): those
runs are made again and replace the stored ones, the others are still reused; or write
to a new OUTPUT_DIR. A summary therefore never mixes runs of different settings.
"""

import os
import sys

from recbole_lda.utils.fileio import atomic_output, atomic_write_text, check_folder, json_safe, read_json, write_json
from recbole_lda.config.options import OptionError
from recbole_lda.config.configurator import Config, keys_for_runs
from recbole_lda.config.entries import check_unique, find_entry, parse_entry
from recbole_lda.config.output_dir import run_file, runs_dir
from recbole_lda.config.registry import check_dataset_name
from recbole_lda.quick_start import provenance
from recbole_lda.quick_start.quick_start import hyperparameters, run
from recbole_lda.report.tables import run_record, summarise, to_markdown

# Files a run writes: shared by every run of a comparison they would be overwritten.
PER_RUN_KEYS = ("results_file", "predictions_file", "save_model_dir", "anchor_plot_file", "keep_checkpoint")
# Keys that only name a run's output files and log, or set how much it prints: a stored run
# made with other values of these is the same run. The data's location (data_path,
# raw_data_path) is compared through the data's identity instead.
NOT_SETTINGS = (*PER_RUN_KEYS, "checkpoint_dir", "log_dir", "show_progress", "state", "data_path", "raw_data_path")


def job_overrides(job, shared, common, output_dir):
    """(model, the cmd_overrides of the run of `job`) as `run_jobs` makes it."""
    (dataset, data_overrides), entry, seed = job
    model, overrides = parse_entry(entry)
    return model, {**shared[(model, dataset)], **dict(data_overrides), **overrides, "seed": str(seed),
                   "show_progress": common.get("show_progress", "False"),
                   "results_file": run_file(output_dir, entry, dataset, seed)}


def check_runs(jobs, common):
    """Build the configuration of every (dataset, entry) once, before any run starts: an
    unknown key or a bad value anywhere fails the whole comparison now, not hours in.
    Returns the shared keys that apply to each (model, dataset) (`keys_for_runs`)."""
    pairs = dict.fromkeys((d, e) for d, e, _ in jobs)
    for dataset, _ in pairs:
        check_dataset_name(dataset[0])
    shared = keys_for_runs(common, [(parse_entry(e)[0], d[0]) for d, e in pairs])
    for (dataset, data_overrides), entry in pairs:
        model, overrides = parse_entry(entry)
        try:
            Config(model, dataset, cmd_overrides={**shared[(model, dataset)], **dict(data_overrides), **overrides})
        except OptionError as err:
            raise OptionError(f"{entry} on {dataset}: {err}") from None
    return shared


def _settings(hyper):
    return {k: v for k, v in json_safe(hyper or {}).items() if k not in NOT_SETTINGS}


def _short(value):
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def stored_differences(stored, config, data_key):
    """What makes the stored results dict `stored` another run than the one `config` would
    make on the data `data_key`: a list of short texts (empty: the same run)."""
    found = []
    before, now = _settings(stored.get("hyperparameters")), _settings(hyperparameters(config))
    if not before:
        found.append("no recorded configuration (hyperparameters)")
    else:
        for key in sorted(set(before) | set(now)):
            if before.get(key, "(unset)") != now.get(key, "(unset)"):
                found.append(f"{key}: stored {_short(before.get(key, '(unset)'))}, now {_short(now.get(key, '(unset)'))}")
    stored_key = (stored.get("data") or {}).get("prepared_key")
    if stored_key != data_key:
        found.append(f"the data (prepared split {stored_key or 'not recorded'}, now {data_key}: other raw files, "
                     "options or split)")
    stored_code = (stored.get("environment") or {}).get("code_sha256")
    if stored_code != provenance.code_sha256():
        found.append(f"the code (sha256 {(stored_code or 'not recorded')[:12]}, now {provenance.code_sha256()[:12]})")
    return found


def check_stored(jobs, shared, common, output_dir, rerun=False):
    """Check every stored run of `jobs` before any run starts (see the module docstring).
    Returns the jobs to run (not stored, or stored but different with `rerun`); OptionError
    naming every stored run that differs or cannot be read, without `rerun`."""
    import dataset_prep

    to_run, problems, data_keys = set(), [], {}
    for job in jobs:
        (dataset, data_overrides), entry, seed = job
        model, cmd = job_overrides(job, shared, common, output_dir)
        path = cmd["results_file"]
        if not os.path.exists(path):
            to_run.add(job)
            continue
        try:
            stored = read_json(path)
            if not isinstance(stored, dict) or "test_result" not in stored:
                raise ValueError(f"{path}: not a results file (no test_result)")
        except (OSError, ValueError) as err:
            problems.append(f"{path} cannot be read ({str(err).replace(path + ': ', '')}): delete it or pass --rerun")
            to_run.add(job)
            continue
        config = Config(model, dataset, cmd_overrides=cmd)
        if (dataset, data_overrides) not in data_keys:
            data_keys[(dataset, data_overrides)] = dataset_prep.locate(config).prepared_key
        differences = stored_differences(stored, config, data_keys[(dataset, data_overrides)])
        if differences:
            problems.append(f"{path} is another run ({'; '.join(differences)})")
            to_run.add(job)
    if problems and not rerun:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise OptionError(f"{len(problems)} stored run(s) in {runs_dir(output_dir)} are not the runs of this command: {shown}. "
                          "Pass --rerun to run them again and replace them, or choose a new --output_dir "
                          "(a summary never mixes runs of different settings)")
    for problem in problems:
        print(f"rerun: {problem}", file=sys.stderr)
    return to_run


def run_jobs(jobs, shared, common, output_dir, to_run=None, engine=None):
    """Run every (dataset, entry, seed) job of `to_run` (default: those not stored) and reuse
    the others from OUTPUT_DIR/runs/ (checked by `check_stored`); return their records.
    `engine`: the module that starts workers for runs with `engine: ray` (quick_start.run)."""
    os.makedirs(runs_dir(output_dir), exist_ok=True)
    records = []
    for n, job in enumerate(jobs, 1):
        (dataset, _), entry, seed = job
        model, cmd = job_overrides(job, shared, common, output_dir)
        path = cmd["results_file"]
        if (job not in to_run) if to_run is not None else os.path.exists(path):
            print(f"[{n}/{len(jobs)}] {entry} on {dataset}, seed {seed}: reusing {path}", file=sys.stderr)
            result = read_json(path)
        else:
            print(f"[{n}/{len(jobs)}] {entry} on {dataset}, seed {seed}", file=sys.stderr)
            result = run(model, dataset, cmd_overrides=cmd, engine=engine)  # writes `path` and its log beside it
        records.append({**run_record(result, dataset, entry.strip(), seed), "file": os.path.abspath(path)})
    return records


def compare(entries, datasets, seeds, output_dir, common, versus=None, command=(), rerun=False, engine=None):
    """Run every entry on every dataset with seeds 0..seeds-1 and write the summary files.

    Args:
        entries (list[str]): model entries, `NAME` or `NAME[key=value;...]`, each once.
        datasets (list[str]): dataset entries, the same form, each dataset name once.
        common (dict[str, str]): `--key=value` pairs for every run that defines the key.
        versus (str): an entry: add Welch's p-values against its seeds.
        command (list[str]): the command line, recorded in summary.json.
        rerun (bool): run again (and replace) the stored runs that differ from this
            command's or cannot be read, instead of stopping (see the module docstring).
        engine: the module that starts workers for runs with `engine: ray` (quick_start.run).
    Returns the summary table (a DataFrame).
    """
    check_unique(entries, "--models")
    check_unique(datasets, "--datasets", by_name=True)
    try:
        check_folder(output_dir, "--output_dir")
    except ValueError as err:
        raise OptionError(str(err)) from None
    owned = sorted(set(common) & set(PER_RUN_KEYS))
    if owned:
        raise OptionError(f"compare writes each run's files itself (OUTPUT_DIR/runs/): do not set {owned}")
    if versus is not None:
        found = find_entry(versus, entries)
        if found is None:
            raise OptionError(f"--versus={versus}: not an entry of --models ({', '.join(entries)})")
        versus = found.strip()
    datasets = [(name, tuple(overrides.items())) for name, overrides in map(parse_entry, datasets)]
    jobs = [(d, e, s) for d in datasets for e in entries for s in range(seeds)]
    shared = check_runs(jobs, common)
    to_run = check_stored(jobs, shared, common, output_dir, rerun)
    records = run_jobs(jobs, shared, common, output_dir, to_run, engine)
    table = summarise(records, versus)
    with atomic_output(os.path.join(output_dir, "summary.csv")) as tmp:
        table.to_csv(tmp, index=False)
    atomic_write_text(os.path.join(output_dir, "summary.md"), to_markdown(table, versus))
    write_json(os.path.join(output_dir, "summary.json"),
               {"command": list(command), "code_sha256": provenance.code_sha256(), "runs": records,
                "summary": table.to_dict("records")})
    return table
