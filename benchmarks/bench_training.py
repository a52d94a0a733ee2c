"""Benchmark of training: time per epoch, interactions per second and peak memory.

For each size in --rows and each model in --models, runs
`run_recbole_lda.py --model=M --dataset=synthetic --synthetic_rows=N ...` in its own
subprocess (data generated and prepared on the first model of a size, then cached) and
records, from the run's results JSON and the child's resource usage: wall time, peak RSS,
the time per training epoch, training interactions per second, and the time spent in each
stage (prepare, RecBole loading, model init, fit, test). Writes JSON to --output.

    python benchmarks/bench_training.py --rows 1000000 12530806 --models VR --epochs 1 \
        --output results/bench_training.json

Run it on a quiet machine: other busy processes slow torch's CPU threads down a lot.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_data import machine  # same folder: run as a script
from recbole_lda.utils.fileio import read_json, write_json

ROOT = Path(__file__).resolve().parents[1]


def measure(command):
    """Run `command`; return (wall seconds, peak RSS MiB, CPU seconds: user + system)."""
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise RuntimeError(f"{' '.join(command)} failed:\n{err[-3000:]}")
    return time.perf_counter() - start, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def parse_with_outputs(parser, name, workdir_holds, extra_help):
    """Add --workdir, --output (results/<name>.json) and trailing run overrides; parse."""
    parser.add_argument("--workdir", default=None, help=f"{workdir_holds} (default: a temporary folder)")
    parser.add_argument("--output", default=f"results/{name}.json")
    parser.add_argument("extra", nargs="*", help=extra_help)
    return parser.parse_args()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 12_530_806])
    parser.add_argument("--models", nargs="+", default=["VR"])
    parser.add_argument("--users", type=int, default=7176, help="users (big_matrix: 7176)")
    parser.add_argument("--items", type=int, default=10728, help="videos (big_matrix: 10728)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch_num_threads of each run")
    args = parse_with_outputs(parser, "bench_training", "data and checkpoints", "--key=value overrides for every run")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_training-"))
    report = {"machine": machine(),
              "threads": args.threads, "epochs": args.epochs, "users": args.users, "items": args.items, "runs": []}
    for rows in args.rows:
        for model in args.models:
            out = work / f"{model}-{rows}.json"
            command = [sys.executable, str(ROOT / "run_recbole_lda.py"), f"--model={model}", "--dataset=synthetic",
                       f"--synthetic_rows={rows}", f"--synthetic_users={args.users}", f"--synthetic_items={args.items}",
                       f"--epochs={args.epochs}", f"--torch_num_threads={args.threads}", "--show_progress=False",
                       f"--data_path={work / 'data'}", f"--checkpoint_dir={work / 'saved'}", "--log_dir=None",
                       f"--results_file={out}", *args.extra]
            print(f"{model} on {rows:,} rows ...", flush=True)
            wall, peak, _ = measure(command)
            res = read_json(out)
            run = {
                "model": model, "rows": rows, "train_rows": res["rows"]["train"], "wall_s": round(wall, 1),
                "peak_rss_mib": round(peak), "train_time_per_epoch_s": round(res["train_time_per_epoch_s"], 2),
                "train_interactions_per_s": round(res["train_interactions_per_s"]),
                "timings_s": {k: round(v, 1) for k, v in res["timings_s"].items()},
                "prepare_cache_hit": res["data"].get("prepared_cache_hit"), "test_result": res["test_result"],
            }
            print(f"  {run}", flush=True)
            report["runs"].append(run)
    write_json(args.output, report)
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
