"""Compare models at fixed settings over several seeds, and write a table.

    python -m recbole_lda.compare --models="VR,VR[regression_loss=l1],LDA,LDA[lambda_ot=0]" \
        --datasets="synthetic,kuairand[raw_data_path=DIR;split=time;split_dates=[20220416,20220417]]" \
        --seeds=3 --output_dir=results/compare [--key=value ...]

A model entry is a model name, optionally with overrides in brackets (`;`-separated),
which makes ablations one more column; a dataset entry takes overrides the same way (list
each dataset once: rows are labelled by its name). Every run goes through `recbole_lda.quick_start.run`
and writes its results JSON under OUTPUT_DIR/runs/; runs already there are reused, so an
interrupted comparison resumes. Trailing `--key=value` pairs apply to every run. Written:
OUTPUT_DIR/summary.csv, summary.md (mean and std over seeds of test MAE, XAUC, XGAUC, and
the training time per epoch relative to VR's on the same dataset, and for LDA the mean
effective number of anchors exp(entropy of beta) on test) and summary.json.
No tuning happens here: for tuned comparisons use `python -m recbole_lda.tune`.
"""

import argparse
import os
import re
import sys

import numpy as np
import pandas as pd

from recbole_lda.fileio import atomic_output, atomic_write_text, read_json, write_json
from recbole_lda.options import OptionError, parse_key_values

METRICS = ("mae", "xauc", "xgauc", "rmse")


def parse_entry(entry):
    """`LDA[lambda_ot=0;temperature=0.5]` -> ("LDA", {"lambda_ot": "0", "temperature": "0.5"})."""
    match = re.fullmatch(r"\s*([\w-]+)\s*(?:\[(.*)\])?\s*", entry)
    if not match:
        raise OptionError(f"bad entry {entry!r}: expected NAME or NAME[key=value;...]")
    pairs = [f"--{pair.strip()}" for pair in (match.group(2) or "").split(";") if pair.strip()]
    return match.group(1), parse_key_values(pairs, what=f"override in {entry!r}")


def split_entries(text):
    """Split on commas outside brackets (brackets may nest: `d[split_dates=[1,2]],e`)."""
    entries, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            entries.append(current)
            current = ""
        else:
            current += char
    return [e.strip() for e in entries + [current] if e.strip()]


def run_label(entry, dataset, seed):
    return re.sub(r"[^\w.=-]+", "_", f"{entry.strip()}__{dataset}__seed{seed}")


def run_record(result, dataset, entry, seed):
    """The figures of one run (a quick_start.run results dict) that a summary table uses."""
    test, reference = result["test_result"], result["reference"]
    return {
        "dataset": dataset,
        "entry": entry,
        "seed": seed,
        **{m: test.get(m, np.nan) for m in METRICS},
        "epoch_s": result.get("train_time_per_epoch_s"),
        "epochs": result.get("epochs_run"),
        "train_mean_mae": reference["train_mean"]["test_mae"],
        "oracle_mae": reference.get("oracle_median", {}).get("test_mae", np.nan),
        # LDA: mean effective number of anchors exp(entropy of beta) on test
        "beta_effective_anchors": result.get("test_report", {}).get("beta_effective_anchors", np.nan),
    }


def summarise(records):
    """One row per (dataset, entry): mean and std over seeds, and time relative to VR."""
    frame = pd.DataFrame(records)
    rows = []
    for (dataset, entry), group in frame.groupby(["dataset", "entry"], sort=False):
        row = {"dataset": dataset, "model": entry, "seeds": len(group)}
        for m in METRICS:
            row[f"{m}_mean"], row[f"{m}_std"] = group[m].mean(), group[m].std(ddof=1) if len(group) > 1 else 0.0
        row["epoch_s_mean"] = group["epoch_s"].mean()
        row["epochs_mean"] = group["epochs"].mean()
        row["train_mean_mae"] = group["train_mean_mae"].mean()
        row["oracle_mae"] = group["oracle_mae"].mean()
        row["beta_effective_anchors"] = group["beta_effective_anchors"].mean()
        rows.append(row)
    table = pd.DataFrame(rows)
    vr_time = table[table["model"] == "VR"].set_index("dataset")["epoch_s_mean"]
    table["epoch_time_vs_VR"] = [
        r.epoch_s_mean / vr_time[r.dataset] if r.dataset in vr_time.index else np.nan for r in table.itertuples()
    ]
    return table


def _ratio(value):
    return f"{value:.2f}x" if np.isfinite(value) else "n/a (no VR)"


def _anchors(value):
    return f"{value:.2f}" if np.isfinite(value) else "-"


def to_markdown(table):
    lines = []
    for dataset, group in table.groupby("dataset", sort=False):
        ref = group.iloc[0]
        lines.append(f"### {dataset}")
        lines.append("")
        lines.append(
            f"Predict-the-training-mean test MAE: {ref.train_mean_mae:.4f}"
            + (f"; best achievable (true conditional median): {ref.oracle_mae:.4f}" if np.isfinite(ref.oracle_mae) else "")
        )
        lines.append("")
        lines.append("| model | seeds | MAE | XAUC | XGAUC | epochs | s/epoch | vs VR | beta eff. anchors |")
        lines.append("|---|---|---|---|---|---|---|---|---|")
        for r in group.itertuples():
            lines.append(
                f"| {r.model} | {r.seeds} | {r.mae_mean:.4f} ± {r.mae_std:.4f} | {r.xauc_mean:.4f} ± {r.xauc_std:.4f} "
                f"| {r.xgauc_mean:.4f} ± {r.xgauc_std:.4f} | {r.epochs_mean:.1f} | {r.epoch_s_mean:.2f} | {_ratio(r.epoch_time_vs_VR)} "
                f"| {_anchors(r.beta_effective_anchors)} |"
            )
        lines.append("")
    return "\n".join(lines)


def check_runs(jobs, common):
    """Build the configuration of every (dataset, entry) once, before any run starts: an
    unknown key or a bad value anywhere fails the whole comparison now, not hours in."""
    from recbole_lda.config import Config, check_dataset_name
    from recbole_lda.options import OptionError

    for (dataset, data_overrides), entry in dict.fromkeys((d, e) for d, e, _ in jobs):
        model, overrides = parse_entry(entry)
        check_dataset_name(dataset)
        try:
            Config(model, dataset, cmd_overrides={**common, **dict(data_overrides), **overrides})
        except OptionError as err:
            raise OptionError(f"{entry} on {dataset}: {err}") from None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--models", required=True, help="comma-separated entries: NAME or NAME[key=value;...]")
    parser.add_argument("--datasets", default="synthetic")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..S-1 (model init and batch order)")
    parser.add_argument("--output_dir", required=True)
    args, rest = parser.parse_known_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    common = parse_key_values(rest)

    from recbole_lda import compat
    from recbole_lda.quick_start import run

    compat.apply()
    entries = split_entries(args.models)
    datasets = [(name, tuple(overrides.items())) for name, overrides in map(parse_entry, split_entries(args.datasets))]
    jobs = [(d, e, s) for d in datasets for e in entries for s in range(args.seeds)]
    check_runs(jobs, common)
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
            cmd = {**common, **overrides, "seed": str(seed), "show_progress": common.get("show_progress", "False")}
            result = run(model, dataset, cmd_overrides=cmd)
            write_json(path, result)
        records.append(run_record(result, dataset, entry.strip(), seed))
    table = summarise(records)
    with atomic_output(os.path.join(args.output_dir, "summary.csv")) as tmp:
        table.to_csv(tmp, index=False)
    atomic_write_text(os.path.join(args.output_dir, "summary.md"), to_markdown(table))
    command = ["python", "-m", "recbole_lda.compare", *(sys.argv[1:] if argv is None else argv)]
    write_json(os.path.join(args.output_dir, "summary.json"),
               {"command": command, "runs": records, "summary": table.to_dict("records")})
    print(to_markdown(table))


if __name__ == "__main__":
    from recbole_lda.errors import guarded

    guarded(main)
