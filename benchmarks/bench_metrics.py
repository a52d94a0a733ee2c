"""Benchmark of the exact XAUC conventions (recbole_lda.evaluator.xauc) on one core.

Generates --rows rows (labels: watch times in seconds rounded to 1 ms; predictions: the
labels plus Gaussian noise; users with skewed row counts; durations in seconds rounded to
1 ms), then times, for each dtype in --dtypes, every convention on its own (each call does
its own sorts) and `all_conventions` (every convention on the same rows, sharing the
sorts). Each figure is the minimum over --repeat runs of the process CPU time (user +
system, both also given; system time is mostly page faults on fresh large arrays) and of
the wall time (on a busy machine CPU time is the steadier one). With --kendalltau it also
times scipy.stats.kendalltau on the same arrays, a reference point for the machine's
speed. Writes the figures, the values and the machine as JSON to --output.

    OMP_NUM_THREADS=1 python benchmarks/bench_metrics.py --rows 10000000 --output results/bench_metrics.json
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core, before numpy starts its pools

import argparse  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recbole_lda.evaluator import xauc as X  # noqa: E402
from recbole_lda.utils.fileio import write_json  # noqa: E402


def make_data(rows, users, seed):
    """Labels, predictions, users and durations as numpy arrays (float64, int64)."""
    rng = np.random.default_rng(seed)
    labels = np.round(rng.gamma(1.0, 12.0, rows), 3)  # watch time, 1 ms resolution
    preds = labels + rng.normal(0.0, 8.0, rows)  # noisy predictions
    weights = rng.gamma(0.7, 1.0, users)
    user = np.searchsorted(np.cumsum(weights / weights.sum()), rng.random(rows), side="right")
    user = np.minimum(user, users - 1)
    durations = np.round(rng.gamma(2.0, 12.0, rows), 3)
    return labels, preds, user, durations


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def timed(fn, repeat):
    """(result, figures): over `repeat` runs, the run with the least CPU time (user + system)
    with its user and system seconds and minor page faults, and the minimum and median wall time."""
    runs, wall = [], []
    for _ in range(repeat):
        r0, w0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        result = fn()
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        wall.append(time.perf_counter() - w0)
        user, system = r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime
        runs.append((user + system, user, system, r1.ru_minflt - r0.ru_minflt))
    cpu, user, system, faults = min(runs)
    return result, {"cpu_s": round(cpu, 3), "user_s": round(user, 3), "sys_s": round(system, 3),
                    "minor_faults": faults, "wall_s": round(min(wall), 3),
                    "wall_s_median": round(statistics.median(wall), 3)}


def run(labels, preds, users, durations, args):
    cases = {
        "xauc": lambda: X.xauc(labels, preds),
        "xauc_dadf": lambda: X.xauc_dadf(labels, preds),
        "xauc_cwm": lambda: X.xauc_cwm(labels, preds),
        "xauc_blocks": lambda: X.xauc_blocks(labels, preds, args.block_size),
        "xgauc": lambda: X.xgauc(labels, preds, users),
        "xgauc_cwm": lambda: X.xgauc_cwm(labels, preds, users),
        "bucket_metrics": lambda: X.bucket_metrics(labels, preds, durations),
        "all_conventions": lambda: X.all_conventions(labels, preds, users, durations, block_size=args.block_size),
    }
    timings, values = {}, {}
    for name, fn in cases.items():
        if args.only and name not in args.only:
            continue
        values[name], timings[name] = timed(fn, args.repeat)
        print(f"  {name}: {timings[name]}", flush=True)
    if "all_conventions" in values:  # the shared computation gives the same figures
        together = values["all_conventions"]
        for name in ("xauc", "xauc_dadf", "xauc_cwm", "xauc_blocks", "xgauc", "xgauc_cwm"):
            if name in values and not np.isclose(together[name], values[name], rtol=0, atol=1e-12):
                raise AssertionError(f"{name}: {values[name]} alone, {together[name]} in all_conventions")
    if args.kendalltau:
        from scipy.stats import kendalltau

        _, timings["scipy_kendalltau"] = timed(lambda: kendalltau(labels, preds), 1)
        print(f"  scipy_kendalltau: {timings['scipy_kendalltau']}", flush=True)
    return timings, values


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--users", type=int, default=7176, help="users (KuaiRec big_matrix: 7176)")
    parser.add_argument("--block_size", type=int, default=X.HEGM_BLOCK_SIZE)
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"],
                        help="dtype of labels and predictions (RecBole's evaluator hands over float32)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=None, help="time only these names")
    parser.add_argument("--kendalltau", action="store_true", help="also time scipy.stats.kendalltau")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="results/bench_metrics.json")
    args = parser.parse_args()

    labels, preds, users, durations = make_data(args.rows, args.users, args.seed)
    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
                    "platform": platform.platform(), "processor": cpu_model(),
                    "load_average_start": os.getloadavg()},
        "rows": args.rows, "users": int(len(np.unique(users))), "block_size": args.block_size,
        "repeat": args.repeat, "threads": os.environ["OMP_NUM_THREADS"], "runs": {},
    }
    for dtype in args.dtypes:
        print(f"{args.rows} rows, {dtype}", flush=True)
        timings, values = run(labels.astype(dtype), preds.astype(dtype), users, durations, args)
        report["runs"][dtype] = {"timings": timings, "values": values}
    report["machine"]["load_average_end"] = os.getloadavg()
    report["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    write_json(args.output, report)  # strict JSON, written atomically
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
