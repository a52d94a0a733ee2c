"""Benchmark of data preparation: generate synthetic raw data, convert it, prepare it.

For each size in --rows, runs each stage in its own subprocess and records its wall time
and peak resident memory (os.wait4's ru_maxrss of that child):
    generate: write the KuaiRec-format synthetic raw folder (dataset_prep.synthetic.generate).
    convert: the KuaiRec converter alone (read, filter, features) on that folder.
    prepare: the whole pipeline from scratch (convert, parquet cache, random split, atomic files).
    prepare_cached: the same call again (prepared-folder cache hit).
Writes the figures as JSON to --output. bench_converters.py runs its stages with the
helpers defined here (add_common_arguments, run_stage_process, scratch_folder, machine,
write_report).

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
from contextlib import contextmanager
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


def add_common_arguments(parser, stages, output):
    """--seed, --workdir, --output (default `output`) and the hidden arguments of a stage's child process."""
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--workdir", default=None, help="scratch folder (default: a temporary one, removed after)")
    parser.add_argument("--output", default=output, help="JSON file of the figures")
    parser.add_argument("--stage", choices=stages, help=argparse.SUPPRESS)
    parser.add_argument("--raw", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)


def run_stage_process(command, label):
    """Run one stage as `command` in a subprocess; return its wall time, peak resident
    memory (os.wait4's ru_maxrss of that child) and the JSON of its last output line."""
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code:
        raise RuntimeError(f"{label} failed with exit code {code}")
    result = {"wall_s": round(wall, 2), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}
    result.update(json.loads(out.strip().splitlines()[-1]))
    print(f"  {label}: {result}", flush=True)
    return result


@contextmanager
def scratch_folder(workdir, prefix):
    """`workdir`, or a temporary folder that is removed afterwards."""
    work = workdir or tempfile.mkdtemp(prefix=prefix)
    try:
        yield work
    finally:
        if not workdir:
            shutil.rmtree(work, ignore_errors=True)


def remove(*paths):
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


def machine():
    """What the figures were measured on."""
    import pyarrow

    return {"cpus": os.cpu_count(), "python": platform.python_version(), "pyarrow": pyarrow.__version__,
            "platform": platform.platform(), "load_average": os.getloadavg()}


def write_report(path, report):
    """Write the figures as strict JSON, atomically."""
    from recbole_lda.utils.fileio import write_json

    write_json(path, report)
    print(f"written to {path}")


def measure(args, stage, raw, data):
    """Run `stage` in a subprocess; return its wall time, peak RSS and output."""
    command = [sys.executable, __file__, "--stage", stage, "--raw", raw, "--data", data,
               "--size", str(args.size), "--users", str(args.users), "--items", str(args.items), "--seed", str(args.seed)]
    return run_stage_process(command, f"stage {stage}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 12_530_806], help="sizes to run")
    parser.add_argument("--users", type=int, default=7176, help="users (big_matrix: 7176)")
    parser.add_argument("--items", type=int, default=10728, help="videos (big_matrix: 10728)")
    add_common_arguments(parser, STAGES, "results/bench_data.json")
    args = parser.parse_args()
    if args.stage:
        return run_stage(args)

    report = {"machine": machine(), "users": args.users, "items": args.items, "runs": []}
    with scratch_folder(args.workdir, "bench_data-") as work:
        for size in args.rows:
            args.size = size
            print(f"{size} rows", flush=True)
            raw, data = os.path.join(work, f"raw-{size}"), os.path.join(work, f"data-{size}")
            remove(raw, data)
            report["runs"].append({"rows": size} | {stage: measure(args, stage, raw, data) for stage in STAGES})
            remove(raw, data)
    write_report(args.output, report)


if __name__ == "__main__":
    main()
