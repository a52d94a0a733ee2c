"""Benchmark of the ray engine (`--engine=ray`): training throughput with 1 and 2 workers, and
each worker's peak memory at several training sizes. Writes one JSON file.

Data: generated partitioned Parquet in the layout of `python -m recbole_lda prepare`
(train/valid/test part-*.parquet, user_ids.parquet, item_ids.parquet), written one file at a
time: --users users, videos growing with the rows (rows / 10, popularity falling with the
id), durations and watch times of a few modes. Valid and test hold --eval_rows rows each, so
that the figures are of training.

    throughput: VR (--model), one epoch over --throughput_rows training rows, 1 worker then 2 workers,
        at each global batch of --throughput_batches (4096 and 32768), one torch thread each (train_interactions_per_s of the results file: training rows
        of the epoch / epoch time, evaluation excluded). Target: 2 workers >= 1.7x 1 worker.
    memory: VR at each of --memory_rows training rows, 2 workers, --memory_steps steps of one
        epoch (default vocabulary bound embedding_max_rows), each worker's peak resident memory
        (ru_maxrss) and the driver's. Target: flat (the larger under 1.2x the smaller) and under
        2 GiB per worker.

    python benchmarks/bench_ray_train.py --data_dir /tmp/bench-ray --output results/bench_ray_train.json
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
FILE_ROWS = 1_000_000
ROW_GROUP_ROWS = 131_072


def _part(rng, rows, users, items):
    user = rng.integers(0, users, rows)
    item = np.minimum((rng.pareto(1.2, rows) * items / 50).astype(np.int64), items - 1)
    duration = np.round(np.clip(np.exp(2.3 + 0.9 * np.sin(item * 0.37)), 1.0, 300.0), 3)
    ratio = np.exp(np.where(rng.random(rows) < 0.4, -1.5, 0.0) + 0.3 * rng.normal(size=rows))
    return pa.table({"user_id": user * 7 + 100, "item_id": item * 3 + 5000, "label": np.round(ratio * duration, 3),
                     "duration": duration, "user_index": user.astype(np.int32), "item_index": item.astype(np.int32)})


def generate(folder, train_rows, eval_rows, users, seed=0):
    """The data folder (reused when complete: `done` marker)."""
    folder = Path(folder)
    if (folder / "done").exists():
        return str(folder)
    items = max(1000, train_rows // 10)
    rng = np.random.default_rng(seed)
    for split, rows in (("train", train_rows), ("valid", eval_rows), ("test", eval_rows)):
        (folder / split).mkdir(parents=True, exist_ok=True)
        for f, start in enumerate(range(0, rows, FILE_ROWS)):
            table = _part(rng, min(FILE_ROWS, rows - start), users, items)
            pq.write_table(table, folder / split / f"part-{f:05d}.parquet", row_group_size=ROW_GROUP_ROWS)
    pq.write_table(pa.table({"user_id": np.arange(users) * 7 + 100}), folder / "user_ids.parquet")
    pq.write_table(pa.table({"item_id": np.arange(items) * 3 + 5000}), folder / "item_ids.parquet")
    (folder / "done").write_text("")
    return str(folder)


def run(folder, workers, out, *extra, batch=4096, model="VR"):
    """One run of run_recbole_lda.py on the ray engine; its results (and wall time)."""
    cmd = [sys.executable, str(ROOT / "run_recbole_lda.py"), f"--model={model}", "--dataset=synthetic", "--engine=ray",
           f"--streamed_data_path={folder}", f"--num_workers={workers}", "--torch_num_threads=1", "--epochs=1",
           "--eval_batch_size=65536", "--max_failures=0", "--log_dir=None", f"--train_batch_size={batch}",
           "--show_progress=False", f"--results_file={out}", *extra]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"run failed: {' '.join(cmd)}\n{done.stderr[-3000:]}")
    results = json.loads(Path(out).read_text())
    results["wall_s"] = time.perf_counter() - start
    results["command"] = " ".join(cmd[1:])
    return results


def summary(results):
    keys = ("workers", "train_interactions_per_s", "epoch_times_s", "worker_peak_memory_mb", "peak_memory_mb", "wall_s",
            "rows", "command")
    return {k: results[k] for k in keys} | {"embedding_vocabulary": results["data"]["embedding_vocabulary"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--users", type=int, default=27285)
    parser.add_argument("--eval_rows", type=int, default=50_000)
    parser.add_argument("--throughput_rows", type=int, default=1_000_000)
    parser.add_argument("--throughput_batches", type=int, nargs="+", default=[4096, 32768],
                        help="global train_batch_size of the throughput runs (each of 2 workers takes half)")
    parser.add_argument("--memory_rows", type=int, nargs="*", default=[10_000_000, 100_000_000])
    parser.add_argument("--memory_steps", type=int, default=200)
    parser.add_argument("--model", default="VR", help="the model of the throughput runs (memory runs: VR)")
    args = parser.parse_args()
    out = {"machine": {"cpus": os.cpu_count(), "load_1min_at_start": os.getloadavg()[0]}, "model": args.model,
           "throughput": {},
           "memory": {}}
    folder = generate(Path(args.data_dir) / f"rows-{args.throughput_rows}", args.throughput_rows, args.eval_rows,
                      args.users)
    for batch in args.throughput_batches:
        entry = out["throughput"][f"batch_{batch}"] = {}
        for workers in (1, 2):
            entry[f"workers_{workers}"] = summary(run(folder, workers, f"{args.output}.run.json", batch=batch,
                                                      model=args.model))
        one, two = (entry[f"workers_{w}"]["train_interactions_per_s"] for w in (1, 2))
        entry["speedup_2_vs_1"] = two / one
    for rows in args.memory_rows:
        folder = generate(Path(args.data_dir) / f"rows-{rows}", rows, args.eval_rows, args.users)
        out["memory"][f"rows_{rows}"] = summary(run(folder, 2, f"{args.output}.run.json",
                                                     f"--max_steps_per_epoch={args.memory_steps}"))
        Path(args.output).write_text(json.dumps(out, indent=2))
    if os.path.exists(f"{args.output}.run.json"):
        os.remove(f"{args.output}.run.json")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
