"""Benchmark of data beyond memory: generation and streaming conversion of KuaiRand-format rows.

For each size in --rows: the synthetic_kuairand generator writes a KuaiRand-27K-format raw
folder (27,285 users as in 27K; videos scaled with the rows at 27K's ratio, 32,038,725
per 322,278,385 rows), then the streaming conversion (dataset_prep.stream_prepare, random
80/10/10 split, stream_chunk_rows = --chunk_rows) writes the partitioned Parquet folder,
and the label statistics of VR, D2Q and LDA (dataset_prep.label_statistics, the models'
defaults) are computed from its training partitions; stage `d2co`: D2Co's (its sample of
distinct (duration bin, watch time) pairs, then its mixtures), in a process of its own. With --train_workers N (stage `train`),
VR then trains one epoch on the ray engine with N workers (one torch thread each, a local Ray
instance, the default vocabulary bound) on that folder and is evaluated on valid and test:
the driver's wall time, CPU time and peak memory, and from the results file each worker's
peak memory, the epoch time and the test metrics.
Each stage runs in its own subprocess; the report has its wall time and peak resident
memory (os.wait4's ru_maxrss of that child) and the disk used. Target: peak under 2 GiB
per process at every size, flat in rows. Run it with `nice` on a shared machine:

    nice python benchmarks/bench_stream.py --rows 10000000 --output results/bench_stream.json
"""

import argparse
import os
import sys
from pathlib import Path

from bench_data import folder_bytes, machine, remove, scratch_folder, write_report

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

USERS_27K, VIDEOS_27K, ROWS_27K = 27_285, 32_038_725, 322_278_385
STAGES = ("generate", "convert", "statistics", "d2co", "train")


def run_stage_process(command, label):
    """Run one stage in a subprocess: its wall time, CPU time (user + system: the machine
    may be shared), peak resident memory (os.wait4's ru_maxrss) and its last JSON line."""
    import json
    import subprocess
    import time

    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise RuntimeError(f"{label} failed with exit code {os.waitstatus_to_exitcode(status)}")
    result = {"wall_s": round(time.perf_counter() - start, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
              "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}
    result.update(json.loads(out.strip().splitlines()[-1]))
    print(f"  {label}: {result}", flush=True)
    return result


def videos_for(rows):
    return max(1, round(VIDEOS_27K * rows / ROWS_27K))


def stage_config(args):
    """synthetic_kuairand.yaml with this size, the raw folder and the chunk size."""
    import yaml

    config = yaml.safe_load((ROOT / "properties/dataset/synthetic_kuairand.yaml").read_text())
    config.update(dataset="synthetic_kuairand", data_path=args.data, raw_data_path=args.raw, split="random",
                  split_ratio=[0.8, 0.1, 0.1], split_seed=2020, label_clip=None, stream_chunk_rows=args.chunk_rows,
                  synthetic_rows=args.size, synthetic_users=USERS_27K, synthetic_items=videos_for(args.size),
                  synthetic_seed=args.seed)
    return config


def run_stage(args):
    """Child process: one stage; prints a JSON line with what it produced."""
    import json

    if args.stage == "generate":
        from dataset_prep import synthetic_kuairand

        synthetic_kuairand.generate(args.raw, rows=args.size, users=USERS_27K, items=videos_for(args.size), seed=args.seed)
        print(json.dumps({"raw_bytes": folder_bytes(args.raw)}))
    elif args.stage == "statistics":
        print(json.dumps(label_statistics(args)))
    elif args.stage == "d2co":
        print(json.dumps(d2co_statistics(args)))
    elif args.stage == "train":
        print(json.dumps(train(args)))
    else:
        from dataset_prep.stream_prepare import prepare_stream

        prepared = prepare_stream(stage_config(args))
        meta = prepared.meta
        print(json.dumps({"streamed_bytes": folder_bytes(prepared.path), "rows_kept": meta["rows_kept"],
                          "rows_per_split": meta["rows_per_split"], "users": meta["users"], "items": meta["items"],
                          "partitions": meta["partitions"], "rows_dropped": meta["rows_dropped"]}))


def label_statistics(args):
    """Child process: the label statistics of VR, D2Q and LDA from the training partitions
    (the folder is the cache of the convert stage), with the time of each."""
    import time

    from dataset_prep import label_statistics as ls
    from dataset_prep.stream_prepare import prepare_stream

    files = ls.train_files(prepare_stream(stage_config(args)).path)
    seconds = {}
    start = time.perf_counter()
    stats = ls.summary(files)
    ls.vr_normalisation(stats)
    seconds["summary_and_normalisation_s"] = time.perf_counter() - start
    start = time.perf_counter()
    ls.d2q_tables(files, stats, 50, 100)
    seconds["d2q_tables_s"] = time.perf_counter() - start
    start = time.perf_counter()
    edges = ls.bucket_edges(stats, 8)
    ls.label_sequences(files, edges, "user", 2048, 32, 3, 2020)  # LDA's defaults
    seconds["lda_edges_and_sequences_s"] = time.perf_counter() - start
    return {k: round(v, 2) for k, v in seconds.items()} | {"distinct_labels": len(stats["labels"].values),
                                                            "train_partitions": len(files)}


def d2co_statistics(args):
    """Child process: D2Co's statistics as the ray engine's driver computes them (its own
    process, so that its peak memory is its own): the distinct (duration bin, watch time)
    pairs counted over the training partitions, then the mixtures fitted from them, at the
    defaults of properties/model/D2Co.yaml."""
    import time

    import yaml

    from baselines.d2co import duration_bin_means
    from dataset_prep import label_statistics as ls
    from dataset_prep.stream_prepare import prepare_stream

    d2co = yaml.safe_load((ROOT / "properties/model/D2Co.yaml").read_text())
    files = ls.train_files(prepare_stream(stage_config(args)).path)
    start = time.perf_counter()
    keys, x, counts = ls.d2co_sample(files, float(d2co["duration_bin_width"]), bool(d2co["truncate_at_duration"]))
    middle = time.perf_counter()
    fitted = duration_bin_means(keys, x, counts, d2co["min_bin_rows"], d2co["smoothing_window"], d2co["gmm_max_iter"],
                                float(d2co["gmm_tol"]), float(d2co["gmm_reg_covar"]), float(d2co["min_mean_gap"]))
    return {"training_rows": int(counts.sum()), "distinct_pairs": len(keys), "fitted_bins": len(fitted[0]),
            "sample_s": round(middle - start, 2), "fit_s": round(time.perf_counter() - middle, 2)}


def train(args):
    """Child process: VR, one epoch on the ray engine (its own subprocess: run_recbole_lda.py);
    what its results file says about time and memory."""
    import json
    import subprocess

    from dataset_prep.stream_prepare import prepare_stream

    folder = prepare_stream(stage_config(args)).path  # the convert stage's folder (cached)
    results_file = os.path.join(args.data, "train-results.json")
    command = [sys.executable, str(ROOT / "run_recbole_lda.py"), "--model=VR", "--dataset=synthetic_kuairand",
               "--engine=ray", f"--streamed_data_path={folder}", f"--num_workers={args.train_workers}",
               "--torch_num_threads=1", "--epochs=1", "--max_failures=0", "--log_dir=None", "--show_progress=False",
               f"--results_file={results_file}", f"--ray_run_dir={args.data}"]
    subprocess.run(command, check=True)
    results = json.loads(open(results_file).read())
    keep = ("workers", "sparse_embeddings", "rows", "train_time_per_epoch_s", "train_interactions_per_s", "timings_s",
            "peak_memory_mb", "worker_peak_memory_mb", "total_time_s")
    return {k: results[k] for k in keep} | {
        "test_mae": results["test_result"]["mae"], "test_xauc": results["test_result"]["xauc"],
        "train_mean_test_mae": results["reference"]["train_mean"]["test_mae"],
        "embedding_vocabulary": results["data"]["embedding_vocabulary"], "command": " ".join(command[1:])}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000_000])
    parser.add_argument("--chunk_rows", type=int, default=1_000_000, help="stream_chunk_rows")
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--workdir", default=None, help="scratch folder (default: a temporary one, removed after)")
    parser.add_argument("--keep", action="store_true", help="keep the generated and converted data")
    parser.add_argument("--output", default="results/bench_stream.json")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES[:4]),
                        help="stages to run (train needs --train_workers); without generate, the raw and converted "
                             "data of an earlier run with --workdir and --keep are used")
    parser.add_argument("--train_workers", type=int, default=2, help="ray engine workers of the train stage")
    for hidden in ("--stage", "--raw", "--data"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        return run_stage(args)
    report = {"machine": machine(), "chunk_rows": args.chunk_rows, "sizes": []}
    with scratch_folder(args.workdir, "bench_stream_") as work:
        for rows in args.rows:
            raw, data = os.path.join(work, f"raw-{rows}"), os.path.join(work, f"data-{rows}")
            if "generate" in args.stages:
                remove(raw, data)
            entry = {"rows": rows, "users": USERS_27K, "videos": videos_for(rows)}
            for stage in (s for s in STAGES if s in args.stages):
                command = [sys.executable, __file__, "--stage", stage, "--raw", raw, "--data", data, "--size", str(rows),
                           "--seed", str(args.seed), "--chunk_rows", str(args.chunk_rows),
                           "--train_workers", str(args.train_workers)]
                entry[stage] = run_stage_process(command, f"{stage} {rows:,} rows")
            report["sizes"].append(entry)
            write_report(args.output, report)  # after each size: a long run keeps what it measured
            if not args.keep:
                remove(raw, data)


if __name__ == "__main__":
    main()
