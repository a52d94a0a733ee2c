"""Benchmark of `python -m recbole_lda evaluate`: every metric (MAE, RMSE, every XAUC
convention, XGAUC both ways, the bucket table), exactly, in one process and over Ray.

Writes predictions files in the format of `--predictions_file` (Parquet, --file_rows rows
each, generated in chunks: labels are watch times rounded to 1 ms, predictions the labels
plus noise rounded to 1 ms, both float32 as a run's predictions are; skewed users,
durations), then runs the command as a child
process for each case: `local` (one process) on --single_rows rows, and `ray` (a local Ray
instance of --num_workers CPUs started by the command) on --rows rows. Per case: wall
time, and the peak resident memory of every process of the command's tree (the driver,
Ray's gcs_server and raylet, which holds the object store, and each worker), sampled
every 0.2 s with psutil (a spike shorter than that can be missed; shared object-store
pages count in every process that maps them, so the private part, resident minus shared,
is given too), and its CPU time (user + system, at the
last sample); os.wait4's ru_maxrss of the driver (which includes its reaped children) is
given too. On a shared machine CPU time is the steadier figure. Writes the figures as JSON to --output; the data are deleted unless --keep.

    python benchmarks/bench_partitioned_metrics.py --rows 100000000 --single_rows 10000000 \\
        --output results/bench_partitioned_metrics.json --workdir DIR
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from recbole_lda.utils.fileio import write_json

CHUNK = 5_000_000


def write_files(folder, rows, file_rows, users, seed):
    """Predictions files of `rows` rows in `folder` (Parquet), memory bounded by one file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    weights = rng.gamma(0.7, 1.0, users)
    cum = np.cumsum(weights / weights.sum())
    for index, start in enumerate(range(0, rows, file_rows)):
        n = min(file_rows, rows - start)
        labels = np.round(rng.gamma(1.0, 12.0, n), 3).astype(np.float32)  # float32, as a run writes them
        table = pa.table({
            "user_id": np.minimum(np.searchsorted(cum, rng.random(n), side="right"), users - 1).astype(np.int64),
            "item_id": rng.integers(0, 1_000_000, n),
            "duration": np.round(rng.gamma(2.0, 12.0, n), 3),
            "label": labels,
            "prediction": np.round(labels + rng.normal(0.0, 8.0, n), 3).astype(np.float32),
        })
        pq.write_table(table, os.path.join(folder, f"part-{index:05d}.parquet"))
        del table, labels


def _sample(root, peaks, stop):
    import psutil

    while not stop.is_set():
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            break
        for p in procs:
            try:
                memory, cpu = p.memory_info(), p.cpu_times()
                name = " ".join(p.cmdline()[:2])[:60]
            except psutil.Error:
                continue
            entry = peaks.setdefault(p.pid, {"names": set(), "rss": 0, "private": 0, "cpu": 0.0})
            entry["names"].add(name)
            entry["rss"], entry["cpu"] = max(entry["rss"], memory.rss), cpu.user + cpu.system
            entry["private"] = max(entry["private"], memory.rss - memory.shared)
        stop.wait(0.2)


def run_case(command, label):
    """Wall time, the driver's ru_maxrss and the sampled peak RSS of every process of the tree."""
    import psutil

    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    peaks, stop = {}, threading.Event()
    sampler = threading.Thread(target=_sample, args=(psutil.Process(child.pid), peaks, stop), daemon=True)
    sampler.start()
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    stop.set()
    sampler.join()
    if os.waitstatus_to_exitcode(status):
        raise RuntimeError(f"{label} failed:\n{out[-3000:]}")
    processes = [{"pid": pid, "names": sorted(e["names"]), "peak_rss_mib": round(e["rss"] / 2**20, 1),
                  "peak_private_mib": round(e["private"] / 2**20, 1), "cpu_s": round(e["cpu"], 1)}
                 for pid, e in sorted(peaks.items(), key=lambda kv: -kv[1]["rss"])]
    result = {"command": " ".join(command), "wall_s": round(wall, 2),
              "driver_and_reaped_children_ru_maxrss_mib": round(usage.ru_maxrss / 1024, 1),
              "driver_and_reaped_children_cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
              "max_process_peak_rss_mib": max((p["peak_rss_mib"] for p in processes), default=None),
              "max_process_peak_private_mib": max((p["peak_private_mib"] for p in processes), default=None),
              "cpu_s_all_processes": round(sum(p["cpu_s"] for p in processes), 1),
              "processes": processes, "output": out.strip().splitlines()[-1]}
    print(f"{label}: wall {result['wall_s']} s, cpu {result['cpu_s_all_processes']} s, largest process "
          f"{result['max_process_peak_rss_mib']} MiB resident, {result['max_process_peak_private_mib']} MiB private",
          flush=True)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000_000, help="rows of the Ray case")
    parser.add_argument("--single_rows", type=int, default=10_000_000, help="rows of the one-process case")
    parser.add_argument("--file_rows", type=int, default=CHUNK, help="rows per Parquet file")
    parser.add_argument("--users", type=int, default=27_285, help="users (KuaiRand-27K: 27,285)")
    parser.add_argument("--num_workers", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=None, help="--partitions of the Ray case (default: the command's)")
    parser.add_argument("--cases", nargs="+", default=["local", "ray"], choices=["local", "ray", "ray_small"],
                        help="ray_small: the Ray case on --single_rows rows")
    parser.add_argument("--workdir", default=None, help="where the data go (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the data")
    parser.add_argument("--output", default="results/bench_partitioned_metrics.json")
    args = parser.parse_args()

    work = args.workdir or tempfile.mkdtemp(prefix="bench-eval-")
    report = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                          "load_average_start": os.getloadavg()}, "users": args.users, "cases": {}}
    py = [sys.executable, "-m", "recbole_lda", "evaluate"]
    sizes = {"local": args.single_rows, "ray_small": args.single_rows, "ray": args.rows}
    try:
        for case in args.cases:
            rows = sizes[case]
            folder = os.path.join(work, f"rows{rows}")
            if not os.path.isdir(folder):
                t0 = time.perf_counter()
                write_files(folder, rows, args.file_rows, args.users, seed=rows)
                print(f"{rows} rows written in {time.perf_counter() - t0:.0f} s", flush=True)
            command = [*py, f"--input={folder}", f"--output={os.path.join(work, case + '.json')}"]
            if case != "local":
                command += ["--engine=ray", f"--num_workers={args.num_workers}"]
                command += [f"--partitions={args.partitions}"] if args.partitions else []
            report["cases"][case] = {"rows": rows, **run_case(command, f"{case} ({rows} rows)")}
            report["cases"][case]["metrics"] = json.loads(Path(work, case + ".json").read_text())
        if "local" in report["cases"] and "ray" in report["cases"]:
            ratio = report["cases"]["ray"]["wall_s"] / report["cases"]["local"]["wall_s"]
            report["ray_over_local_wall"] = round(ratio, 2)
            report["target_ray_over_local_wall"] = 15
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
        elif not args.keep:
            for case in ("local", "ray", "ray_small"):
                shutil.rmtree(os.path.join(work, f"rows{sizes.get(case, 0)}"), ignore_errors=True)
    report["machine"]["load_average_end"] = os.getloadavg()
    write_json(args.output, report)  # strict JSON, written atomically
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
