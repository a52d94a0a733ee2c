"""Where the time of one data-parallel training step goes: the ray engine's worker loop
(recbole_lda/quick_start/data_parallel.py) timed in parts, in 1 and 2 torch.distributed
processes (gloo over 127.0.0.1, one torch thread each), without Ray. Writes one JSON file.

Parts of a step, in milliseconds per step (mean over --steps after 20 warm-up steps):
    data       the next batch of the worker's shuffled share, as a RecBole Interaction
    fwd_bwd    forward and backward (with 2 processes: DDP's all-reduce of the dense gradients)
    sparse     average_sparse_grads (the id tables' gradients: row counts, then rows, exchanged
               between the processes); 0 for 1 process
    optimiser  the optimiser's step (dense Adam + lazy Adam on the id tables)
Rows per second = global batch / step time. Data: the training split of a partitioned folder
(e.g. the one bench_ray_train.py generates); VR with the run's defaults, sparse id tables.
With --repeats R, 1 and 2 processes run in turn R times (the machine's load drifts); each
keeps the run of median speed, and every run's rows per second.
`transport`: moving the same tensor between the 2 processes (1 and 8 MB), with
dist.all_gather and with data_parallel.gather_from_workers (isend / irecv), in milliseconds.

    python benchmarks/bench_ray_step.py --data_dir /tmp/bench-ray/rows-4000000 --output results/bench_ray_step.json
"""

import argparse
import json
import os
import socket
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WARMUP = 20


def build(folder, model):
    from recbole_lda import compat
    from recbole_lda.config.configurator import Config
    from recbole_lda.quick_start import stream_model as sm
    from recbole_lda.quick_start.quick_start import hyperparameters

    compat.apply()
    config = Config(model, "synthetic", config_dict={"log_dir": None})
    hyper = hyperparameters(config)
    fields = sm.streamed_fields(folder, config)
    return hyper, fields, sm.initial_state(model, hyper, fields, folder)


def worker(rank, world, port, folder, model, built, batch, steps, out):
    from recbole_lda import compat
    from recbole_lda.quick_start import data_parallel as dp
    from recbole_lda.quick_start import partitions as parts
    from recbole_lda.quick_start import stream_model as sm

    compat.apply()
    torch.set_num_threads(1)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    hyper, fields, state = built
    config = sm.worker_config(hyper)
    net = sm.worker_model(model, hyper, fields, state)
    optimizer = sm.make_optimizer(net, config, sparse=True)
    wrapped = dp.wrap(net, world)
    mine = parts.share(parts.pieces(folder, "train"), rank, world)
    batches = parts.batches(mine, sm.batch_columns(), batch // world, steps + WARMUP, 0, 0, rank)
    spent = dict.fromkeys(("data", "fwd_bwd", "sparse", "optimiser"), 0.0)
    for step in range(steps + WARMUP):
        if step == WARMUP:
            spent, start = dict.fromkeys(spent, 0.0), time.perf_counter()
        t0 = time.perf_counter()
        interaction = sm.to_interaction(next(batches), config)
        t1 = time.perf_counter()
        optimizer.zero_grad()
        wrapped(interaction).backward()
        t2 = time.perf_counter()
        if getattr(wrapped, "sparse_params", None):
            dp.average_sparse_grads(wrapped.sparse_params)
        t3 = time.perf_counter()
        optimizer.step()
        t4 = time.perf_counter()
        for key, seconds in zip(spent, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            spent[key] += seconds
    total = time.perf_counter() - start
    if rank == 0:
        with open(out, "w") as f:
            json.dump({"ms_per_step": {k: round(v / steps * 1000, 2) for k, v in spent.items()},
                       "step_ms": round(total / steps * 1000, 2), "rows_per_s": round(steps * batch / total)}, f)
    if world > 1:
        dist.destroy_process_group()


def transport(rank, world, port, sizes, out):
    """Milliseconds per exchange of a tensor of each size (floats) between the 2 processes."""
    from recbole_lda.quick_start import data_parallel as dp

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    result = {}
    for size in sizes:
        mine = torch.randn(size)
        every = [torch.empty(size) for _ in range(world)]
        ways = {"all_gather": lambda: dist.all_gather(every, mine),
                "gather_from_workers": lambda: dp.gather_from_workers(mine, [size] * world)}
        for name, exchange in ways.items():
            for _ in range(5):
                exchange()
            start = time.perf_counter()
            for _ in range(30):
                exchange()
            result[f"{name}_{size * 4 / 1e6:g}MB_ms"] = round((time.perf_counter() - start) / 30 * 1000, 2)
    if rank == 0:
        with open(out, "w") as f:
            json.dump(result, f)
    dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(folder, model, built, world, batch, steps, scratch):
    out = os.path.join(scratch, f"step-{world}-{batch}.json")
    args = (world, free_port(), folder, model, built, batch, steps, out)
    if world == 1:
        worker(0, *args)
    else:
        mp.spawn(worker, args=args, nprocs=world, join=True)
    with open(out) as f:
        return json.load(f)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", required=True, help="a partitioned folder (train/part-*.parquet, ...)")
    parser.add_argument("--output", required=True)
    parser.add_argument("--model", default="VR")
    parser.add_argument("--batches", type=int, nargs="+", default=[4096, 32768], help="global batches")
    parser.add_argument("--steps", type=int, default=200, help="timed steps at the smallest batch (fewer at larger)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of 1 and 2 processes, in turn, per batch")
    args = parser.parse_args()
    import tempfile

    built = build(args.data_dir, args.model)
    result = {"machine": {"cpus": os.cpu_count(), "load_1min_at_start": os.getloadavg()[0]}, "model": args.model,
              "data_dir": args.data_dir, "command": " ".join(sys.argv), "batches": {}}
    with tempfile.TemporaryDirectory() as scratch:
        out = os.path.join(scratch, "transport.json")
        mp.spawn(transport, args=(2, free_port(), [250_000, 2_000_000], out), nprocs=2, join=True)
        with open(out) as f:
            result["transport"] = json.load(f)
        print("transport", result["transport"], flush=True)
        for batch in args.batches:
            steps = max(30, args.steps * min(args.batches) // batch)
            runs = {1: [], 2: []}
            for _ in range(args.repeats):
                for world in (1, 2):
                    runs[world].append(measure(args.data_dir, args.model, built, world, batch, steps, scratch))
            entry = {}
            for world, measured in runs.items():
                speeds = sorted(r["rows_per_s"] for r in measured)
                entry[f"workers_{world}"] = next(r for r in measured if r["rows_per_s"] == speeds[len(speeds) // 2])
                entry[f"workers_{world}"]["rows_per_s_every_run"] = [r["rows_per_s"] for r in measured]
            entry["speedup_2_vs_1"] = entry["workers_2"]["rows_per_s"] / entry["workers_1"]["rows_per_s"]
            result["batches"][f"batch_{batch}"] = entry
            print(batch, json.dumps(entry), flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    tmp = args.output + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=2)
    os.replace(tmp, args.output)


if __name__ == "__main__":
    main()
