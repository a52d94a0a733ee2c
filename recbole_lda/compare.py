"""Compare models at fixed settings over several seeds, and write a table.

    python -m recbole_lda.compare --models="VR,VR[regression_loss=l1],LDA,LDA[lambda_ot=0]" \
        --datasets="synthetic,kuairand[raw_data_path=DIR;split=time;split_dates=[20220416,20220417]]" \
        --seeds=3 --output_dir=results/compare [--key=value ...]

A model entry is a model name, optionally with overrides in brackets (`;`-separated),
which makes ablations one more column; a dataset entry takes overrides the same way (list
each dataset once: rows are labelled by its name). Every run goes through `recbole_lda.quick_start.run`
and writes its results JSON under OUTPUT_DIR/runs/; runs already there are reused, so an
interrupted comparison resumes. Trailing `--key=value` pairs apply to every run whose model
and dataset define the key (`--vq_steps=100` to LDA's runs only; a key that no run defines is
refused, like any misspelt key). Written:
OUTPUT_DIR/summary.csv, summary.md (mean and std over seeds of test MAE, XAUC, XGAUC, and
the training time per epoch relative to VR's on the same dataset, and for LDA the mean
effective number of anchors exp(entropy of beta) on test; the mean best validation MAE,
the score early stopping and any choice of settings may use; with `--versus=ENTRY`
Welch's p-values of test MAE and XAUC against ENTRY's seeds) and summary.json.
No tuning happens here: for tuned comparisons use `python -m recbole_lda.tune`.
"""

import argparse
import os
import sys

from recbole_lda.fileio import atomic_output, atomic_write_text, read_json, write_json
from recbole_lda.options import OptionError, parse_key_values
from recbole_lda.summary import parse_entry, run_label, run_record, split_entries, summarise, to_markdown

# Files a run writes: shared by every run of a comparison they would be overwritten.
PER_RUN_KEYS = ("results_file", "predictions_file", "save_model_dir", "anchor_plot_file", "keep_checkpoint")


def check_runs(jobs, common):
    """Build the configuration of every (dataset, entry) once, before any run starts: an
    unknown key or a bad value anywhere fails the whole comparison now, not hours in.
    Returns the shared keys that apply to each (model, dataset) (`keys_for_runs`)."""
    from recbole_lda.config import Config, check_dataset_name, keys_for_runs
    from recbole_lda.options import OptionError

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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--models", required=True, help="comma-separated entries: NAME or NAME[key=value;...]")
    parser.add_argument("--datasets", default="synthetic")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..S-1 (model init and batch order)")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--versus", help="an entry of --models: add Welch's p-values of test MAE and XAUC against its seeds")
    args, rest = parser.parse_known_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    common = parse_key_values(rest)
    owned = sorted(set(common) & set(PER_RUN_KEYS))
    if owned:
        raise OptionError(f"compare writes each run's files itself (OUTPUT_DIR/runs/): do not set {owned}")

    from recbole_lda import compat
    from recbole_lda.quick_start import run

    compat.apply()
    entries = split_entries(args.models)
    if args.versus is not None and args.versus.strip() not in entries:
        raise OptionError(f"--versus={args.versus}: not an entry of --models ({', '.join(entries)})")
    datasets = [(name, tuple(overrides.items())) for name, overrides in map(parse_entry, split_entries(args.datasets))]
    jobs = [(d, e, s) for d in datasets for e in entries for s in range(args.seeds)]
    shared = check_runs(jobs, common)
    runs_dir = os.path.join(args.output_dir, "runs")
    os.makedirs(runs_dir, exist_ok=True)
    records = []
    for n, ((dataset, data_overrides), entry, seed) in enumerate(jobs, 1):
        model, overrides = parse_entry(entry)
        overrides = {**dict(data_overrides), **overrides}
        path = os.path.join(runs_dir, run_label(entry, dataset, seed) + ".json")
        if os.path.exists(path):
            print(f"[{n}/{len(jobs)}] {entry} on {dataset}, seed {seed}: reusing {path}", file=sys.stderr)
            result = read_json(path)
        else:
            print(f"[{n}/{len(jobs)}] {entry} on {dataset}, seed {seed}", file=sys.stderr)
            cmd = {**shared[(model, dataset)], **overrides, "seed": str(seed),
                   "show_progress": common.get("show_progress", "False")}
            result = run(model, dataset, cmd_overrides=cmd)
            write_json(path, result)
        records.append(run_record(result, dataset, entry.strip(), seed))
    table = summarise(records, args.versus)
    with atomic_output(os.path.join(args.output_dir, "summary.csv")) as tmp:
        table.to_csv(tmp, index=False)
    atomic_write_text(os.path.join(args.output_dir, "summary.md"), to_markdown(table, args.versus))
    command = ["python", "-m", "recbole_lda.compare", *(sys.argv[1:] if argv is None else argv)]
    write_json(os.path.join(args.output_dir, "summary.json"),
               {"command": command, "runs": records, "summary": table.to_dict("records")})
    print(to_markdown(table, args.versus))


if __name__ == "__main__":
    from recbole_lda.errors import guarded

    guarded(main)
