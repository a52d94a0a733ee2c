"""Benchmark of prediction with a saved model: time and peak memory to score N rows.

Trains a model on the synthetic dataset (KuaiRec's numbers of users and videos by default)
with --save_model_dir, or takes an existing saved model (--model_dir); writes an input of
--rows rows (user and video ids drawn from the model's id maps, a share of them unknown,
durations log-normal); then runs `python -m recbole_lda predict` on it in its own
subprocess and records the wall time, the child's peak RSS and the tool's own summary
(load and scoring time, unknown ids). A run on --small_rows rows gives the fixed cost
(imports, loading the model) to subtract. Writes JSON to --output. On a busy machine the
child's CPU time (`cpu_s`) varies less than its wall time.

    python benchmarks/bench_predict.py --rows 1000000 --model LDA --threads 1 \
        --output results/bench_predict.json

Run it on a quiet machine: other busy processes slow torch's CPU threads down a lot.
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from bench_data import machine  # same folder: run as a script
from bench_training import measure, parse_with_outputs
from recbole_lda.utils.fileio import atomic_output, read_json, write_json

ROOT = Path(__file__).resolve().parents[1]


def write_rows(model_dir, path, rows, unknown_share, seed):
    """An input of `rows` rows for the saved model in `model_dir` (user_id, item_id, duration)."""
    manifest = read_json(os.path.join(model_dir, "manifest.json"))
    fields = read_json(os.path.join(model_dir, "fields.json"))
    rng = np.random.default_rng(seed)
    columns = {}
    for key in ("user_id", "item_id"):
        tokens = np.array(fields[manifest["fields"][key]]["tokens"][1:], dtype=object)  # without '[PAD]'
        values = tokens[rng.integers(len(tokens), size=rows)]
        unknown = rng.random(rows) < unknown_share
        values[unknown] = np.char.add("new-", rng.integers(10**6, size=int(unknown.sum())).astype(str)).astype(object)
        columns[manifest["fields"][key]] = values
    columns[manifest["fields"]["duration"]] = np.round(np.exp(rng.normal(2.3, 0.9, rows)).clip(0.5, 300.0), 3)
    with atomic_output(path) as tmp:
        pd.DataFrame(columns).to_csv(tmp, index=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows to score")
    parser.add_argument("--small_rows", type=int, default=1000, help="rows of the fixed-cost run")
    parser.add_argument("--model", default="LDA")
    parser.add_argument("--model_dir", default=None, help="a saved model to use instead of training one")
    parser.add_argument("--train_rows", type=int, default=100_000, help="synthetic rows to train on")
    parser.add_argument("--users", type=int, default=7176, help="users (big_matrix: 7176)")
    parser.add_argument("--items", type=int, default=10728, help="videos (big_matrix: 10728)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--unknown_share", type=float, default=0.01, help="share of user and of video ids never seen")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="torch_num_threads of training and prediction")
    parser.add_argument("--chunk_rows", type=int, default=100_000)
    parser.add_argument("--batch_size", type=int, default=8192)
    args = parse_with_outputs(parser, "bench_predict", "data, model and inputs", "--key=value overrides for the training run")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_predict-"))
    report = {"machine": machine(),
              "threads": args.threads, "chunk_rows": args.chunk_rows, "batch_size": args.batch_size,
              "unknown_share": args.unknown_share}
    model_dir = args.model_dir
    if model_dir is None:
        model_dir = str(work / f"{args.model}-model")
        command = [sys.executable, str(ROOT / "run_recbole_lda.py"), f"--model={args.model}", "--dataset=synthetic",
                   f"--synthetic_rows={args.train_rows}", f"--synthetic_users={args.users}",
                   f"--synthetic_items={args.items}", f"--epochs={args.epochs}", f"--torch_num_threads={args.threads}",
                   "--show_progress=False", f"--data_path={work / 'data'}", "--log_dir=None",
                   f"--save_model_dir={model_dir}", *args.extra]
        print(f"training {args.model} on {args.train_rows:,} synthetic rows ...", flush=True)
        wall, _, _ = measure(command)
        report["training"] = {"model": args.model, "train_rows": args.train_rows, "users": args.users,
                              "items": args.items, "epochs": args.epochs, "wall_s": round(wall, 1)}
    manifest = read_json(os.path.join(model_dir, "manifest.json"))
    report["model"] = {"name": manifest["model"], "dataset": manifest["dataset"], "model_dir": model_dir,
                       "folder_mib": round(sum(f["bytes"] for f in manifest["files"].values()) / 2**20, 2)}
    runs = []
    for rows in (args.small_rows, args.rows):
        rows_file, out_file, summary_file = (work / f"rows-{rows}.csv", work / f"pred-{rows}.csv",
                                             work / f"summary-{rows}.json")
        write_rows(model_dir, rows_file, rows, args.unknown_share, seed=rows)
        command = [sys.executable, "-m", "recbole_lda", "predict", f"--model_dir={model_dir}", f"--input={rows_file}",
                   f"--output={out_file}", f"--summary_file={summary_file}", f"--torch_num_threads={args.threads}",
                   f"--chunk_rows={args.chunk_rows}", f"--batch_size={args.batch_size}", "--show_progress=False"]
        print(f"scoring {rows:,} rows ...", flush=True)
        wall, peak, cpu = measure(command)
        summary = read_json(summary_file)
        run = {"rows": rows, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "peak_rss_mib": round(peak),
               "tool_total_s": summary["total_s"],
               "scoring_s": summary["scoring_s"],
               "rows_per_s_scoring": round(rows / summary["scoring_s"]) if summary["scoring_s"] else None,
               "input_mib": round(rows_file.stat().st_size / 2**20, 1), "unknown_users": summary["unknown_users"],
               "unknown_items": summary["unknown_items"]}
        print(f"  {run}", flush=True)
        runs.append(run)
    report["runs"] = runs
    small, large = runs
    report["marginal"] = {  # the cost of the rows themselves, without imports and loading
        "rows": large["rows"] - small["rows"],
        "wall_s": round(large["wall_s"] - small["wall_s"], 2),
        "cpu_s": round(large["cpu_s"] - small["cpu_s"], 2),
        "peak_rss_mib": large["peak_rss_mib"] - small["peak_rss_mib"],
    }
    write_json(args.output, report)
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
