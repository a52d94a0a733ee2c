"""Benchmark of data preparation: generate synthetic raw data, convert it, prepare it.

For each size in --rows, runs each stage in its own subprocess and records its wall time
and peak resident memory (os.wait4's ru_maxrss of that child):
    generate: write the KuaiRec-format synthetic raw folder (dataset_prep.synthetic.generate).
    convert: the KuaiRec converter alone (read, filter, features) on that folder.
    prepare: the whole pipeline from scratch (convert, parquet cache, random split, atomic files).
    prepare_cached: the same call again (prepared-folder cache hit).
Writes the figures as JSON to --output.

    python benchmarks/bench_data.py --rows 1000000 12530806 --output results/bench_data.json
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STAGES = ("generate", "convert", "prepare", "prepare_cached")


def folder_bytes(path):
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def stage_config(args, data_path):
    """Dataset options for the prepare stages: synthetic.yaml with this size and the raw folder."""
    import yaml

    config = yaml.safe_load((ROOT / "properties/dataset/synthetic.yaml").read_text())
    config.update(
        dataset="synthetic", data_path=data_path, raw_data_path=args.raw, split="random",
        split_ratio=[0.8, 0.1, 0.1], split_seed=2020, split_dates=None,
        synthetic_rows=args.size, synthetic_users=args.users, synthetic_items=args.items, synthetic_seed=args.seed,
    )
    return config


def run_stage(args):
    """Child process: run one stage and print a JSON line with what it produced."""
    import logging

    logging.basicConfig(level=logging.WARNING)
    from dataset_prep import kuairec, prepare, synthetic

    if args.stage == "generate":
        synthetic.generate(args.raw, rows=args.size, users=args.users, items=args.items, seed=args.seed)
        print(json.dumps({"raw_bytes": folder_bytes(args.raw)}))
    elif args.stage == "convert":
        config = stage_config(args, args.data)
        tables = kuairec.convert(args.raw, synthetic.read_options(config))
        print(json.dumps({"rows_read": tables.rows_read, "rows_kept": len(tables.inter)}))
    else:
        prepared = prepare(stage_config(args, args.data))
        print(json.dumps({k: prepared.meta[k] for k in ("rows_kept", "rows_per_split", "prepared_cache_hit")}
                         | {"prepared_bytes": folder_bytes(prepared.path)}))


def measure(args, stage, raw, data):
    """Run `stage` in a subprocess; return its wall time, peak RSS and output."""
    command = [sys.executable, __file__, "--stage", stage, "--raw", raw, "--data", data,
               "--size", str(args.size), "--users", str(args.users), "--items", str(args.items), "--seed", str(args.seed)]
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise RuntimeError(f"stage {stage} failed with exit code {child.returncode}")
    result = {"wall_s": round(wall, 2), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}
    result.update(json.loads(out.strip().splitlines()[-1]))
    print(f"  {stage}: {result}", flush=True)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 12_530_806], help="sizes to run")
    parser.add_argument("--users", type=int, default=7176, help="users (big_matrix: 7176)")
    parser.add_argument("--items", type=int, default=10728, help="videos (big_matrix: 10728)")
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--workdir", default=None, help="scratch folder (default: a temporary one, removed after)")
    parser.add_argument("--output", default="results/bench_data.json", help="JSON file of the figures")
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--raw", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        return run_stage(args)

    import pyarrow

    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "pyarrow": pyarrow.__version__,
                    "platform": platform.platform()},
        "users": args.users, "items": args.items, "runs": [],
    }
    work = args.workdir or tempfile.mkdtemp(prefix="bench_data-")
    try:
        for size in args.rows:
            args.size = size
            print(f"{size} rows", flush=True)
            raw, data = os.path.join(work, f"raw-{size}"), os.path.join(work, f"data-{size}")
            shutil.rmtree(raw, ignore_errors=True)
            shutil.rmtree(data, ignore_errors=True)
            run = {"rows": size}
            for stage in STAGES:
                run[stage] = measure(args, stage, raw, data)
            report["runs"].append(run)
            shutil.rmtree(raw, ignore_errors=True)
            shutil.rmtree(data, ignore_errors=True)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(report, f, indent=2)
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
