"""Compare models at fixed settings over several seeds (the library behind `compare`).

A model entry is a model name, optionally with overrides in brackets (`;`-separated),
which makes ablations one more column; a dataset entry takes overrides the same way.
Every run goes through `recbole_lda.quick_start.run` and writes its results JSON under
OUTPUT_DIR/runs/; runs already there are reused, so an interrupted comparison resumes.
Shared `--key=value` pairs apply to every run whose model and dataset define the key.
Written: OUTPUT_DIR/summary.csv, summary.md and summary.json (`recbole_lda.report.tables`).
"""

import os
import sys

from recbole_lda.utils.fileio import atomic_output, atomic_write_text, read_json, write_json
from recbole_lda.config.options import OptionError
from recbole_lda.config.configurator import Config, keys_for_runs
from recbole_lda.config.entries import parse_entry
from recbole_lda.config.output_dir import run_file, runs_dir
from recbole_lda.config.registry import check_dataset_name
from recbole_lda.quick_start.quick_start import run
from recbole_lda.report.tables import run_record, summarise, to_markdown

# Files a run writes: shared by every run of a comparison they would be overwritten.
PER_RUN_KEYS = ("results_file", "predictions_file", "save_model_dir", "anchor_plot_file", "keep_checkpoint")


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


def run_jobs(jobs, shared, common, output_dir, engine=None):
    """Run (or reuse from OUTPUT_DIR/runs/) every (dataset, entry, seed) job; return their records."""
    os.makedirs(runs_dir(output_dir), exist_ok=True)
    records = []
    for n, ((dataset, data_overrides), entry, seed) in enumerate(jobs, 1):
        model, overrides = parse_entry(entry)
        overrides = {**dict(data_overrides), **overrides}
        path = run_file(output_dir, entry, dataset, seed)
        if os.path.exists(path):
            print(f"[{n}/{len(jobs)}] {entry} on {dataset}, seed {seed}: reusing {path}", file=sys.stderr)
            result = read_json(path)
        else:
            print(f"[{n}/{len(jobs)}] {entry} on {dataset}, seed {seed}", file=sys.stderr)
            cmd = {**shared[(model, dataset)], **overrides, "seed": str(seed),
                   "show_progress": common.get("show_progress", "False")}
            result = run(model, dataset, cmd_overrides=cmd, engine=engine)
            write_json(path, result)
        records.append(run_record(result, dataset, entry.strip(), seed))
    return records


def compare(entries, datasets, seeds, output_dir, common, versus=None, command=(), engine=None):
    """Run every entry on every dataset with seeds 0..seeds-1 and write the summary files.

    Args:
        entries (list[str]): model entries, `NAME` or `NAME[key=value;...]`.
        datasets (list[str]): dataset entries, the same form.
        common (dict[str, str]): `--key=value` pairs for every run that defines the key.
        versus (str): an entry: add Welch's p-values against its seeds.
        command (list[str]): the command line, recorded in summary.json.
        engine: the module that starts workers for runs with `engine: ray` (quick_start.run).
    Returns the summary table (a DataFrame).
    """
    owned = sorted(set(common) & set(PER_RUN_KEYS))
    if owned:
        raise OptionError(f"compare writes each run's files itself (OUTPUT_DIR/runs/): do not set {owned}")
    if versus is not None and versus.strip() not in entries:
        raise OptionError(f"--versus={versus}: not an entry of --models ({', '.join(entries)})")
    datasets = [(name, tuple(overrides.items())) for name, overrides in map(parse_entry, datasets)]
    jobs = [(d, e, s) for d in datasets for e in entries for s in range(seeds)]
    shared = check_runs(jobs, common)
    records = run_jobs(jobs, shared, common, output_dir, engine)
    table = summarise(records, versus)
    with atomic_output(os.path.join(output_dir, "summary.csv")) as tmp:
        table.to_csv(tmp, index=False)
    atomic_write_text(os.path.join(output_dir, "summary.md"), to_markdown(table, versus))
    write_json(os.path.join(output_dir, "summary.json"),
               {"command": list(command), "runs": records, "summary": table.to_dict("records")})
    return table
