"""Helpers of the data-parallel tests: a tiny partitioned (streamed) data folder in the layout of
dataset_prep/stream_prepare.py, a model's initial state on it (`case`), and one optimisation
step in each of N torch.distributed processes (gloo: `run_steps`), for comparison with one
process on the whole batch; a free port of 127.0.0.1."""

import os
import socket

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def write_streamed(folder, rows=3000, users=60, items=80, seed=0, files=3, row_group_rows=None, context=False):
    """train/, valid/, test/ (80/10/10 of the rows, `files` partitions each, by user), user_ids and
    item_ids; labels: watch ratios of a few modes times the duration (seconds). With `context`,
    columns hour (0-23) and tab (0-3, a tenth null) as the conversion writes them, and the
    watch ratio 4 times larger in the evening (hour >= 18)."""
    rng = np.random.default_rng(seed)
    u, i = rng.integers(0, users, rows), rng.integers(0, items, rows)
    duration = np.round(np.clip(np.exp(rng.normal(2.26, 0.9, items)), 0.5, 300.0), 3)[i]
    score = rng.normal(0, 1, users)[u] + rng.normal(0, 1, items)[i] - 0.3 * np.log(duration)
    ratio = np.exp(np.where(score > 0, 0.0, -1.5) + 0.3 * rng.normal(size=rows))
    hour, tab = rng.integers(0, 24, rows).astype(np.int8), rng.integers(0, 4, rows).astype(np.int16)
    if context:
        ratio = ratio * np.where(hour >= 18, 4.0, 1.0)
    label = np.round(ratio * duration, 3)
    tab_null = rng.random(rows) < 0.1
    raw_users, raw_items = np.arange(users) * 7 + 100, np.arange(items) * 3 + 5000
    cut = [0, int(0.8 * rows), int(0.9 * rows), rows]
    os.makedirs(folder, exist_ok=True)
    for k, split in enumerate(("train", "valid", "test")):
        os.makedirs(os.path.join(folder, split))
        sl = slice(cut[k], cut[k + 1])
        for f in range(files):
            mine = np.flatnonzero(u[sl] % files == f)
            columns = {"user_id": raw_users[u[sl][mine]], "item_id": raw_items[i[sl][mine]],
                       "label": label[sl][mine], "duration": duration[sl][mine]}
            if context:
                columns.update(hour=hour[sl][mine], tab=pa.array(tab[sl][mine], mask=tab_null[sl][mine]))
            table = pa.table({**columns, "user_index": u[sl][mine].astype(np.int32),
                              "item_index": i[sl][mine].astype(np.int32)})
            pq.write_table(table, os.path.join(folder, split, f"part-{f:05d}.parquet"), row_group_size=row_group_rows)
    pq.write_table(pa.table({"user_id": raw_users}), os.path.join(folder, "user_ids.parquet"))
    pq.write_table(pa.table({"item_id": raw_items}), os.path.join(folder, "item_ids.parquet"))
    return folder


def step_in_process(rank, world, port, cases, batch, out_dir):
    """One step of every case (model name, hyperparameters, fields, state[, sparse id tables]) on this rank's
    rows of `batch`; the parameters after it into out_dir/<case>-<rank>.pt."""
    import torch
    import torch.distributed as dist

    from recbole_lda import compat
    from recbole_lda.quick_start import data_parallel as dp
    from recbole_lda.quick_start import stream_model as sm

    compat.apply()
    torch.set_num_threads(1)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    rows = len(batch["label"]) // world
    mine = {c: v[rank * rows:(rank + 1) * rows] for c, v in batch.items()}
    for name, (model_name, hyper, fields, state, *sparse) in cases.items():
        torch.manual_seed(0)
        model = sm.worker_model(model_name, hyper, fields, state)
        optimizer = sm.make_optimizer(model, sm.worker_config(hyper), sparse=bool(sparse and sparse[0]))
        dp.train_step(dp.wrap(model, world), optimizer, sm.to_interaction(mine, sm.worker_config(hyper)))
        torch.save({k: v.detach().clone() for k, v in model.state_dict().items()},
                   os.path.join(out_dir, f"{name}-{rank}.pt"))
    if world > 1:
        dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def case(folder, model, **overrides):
    """(model name, hyperparameters, fields, initial state) of `model` on a streamed folder."""
    from recbole_lda import compat
    from recbole_lda.config.configurator import Config
    from recbole_lda.quick_start import stream_model as sm
    from recbole_lda.quick_start.quick_start import hyperparameters

    compat.apply()
    # SGD: Adam's first step is lr * g / (|g| + eps), which turns float32 rounding of gradients
    # near zero (the order of the sums differs) into differences of a few 1e-6 (measured: OR, TPM,
    # EGMN, CQE up to 5.6e-6 with learning_rate 0.01); SGD's step shows the gradients themselves.
    config = Config(model, "synthetic", config_dict={"dropout_prob": 0.0, "learning_rate": 0.1, "learner": "sgd",
                                                      "seed": 3, "log_dir": None, **overrides})
    hyper = hyperparameters(config)
    fields = sm.streamed_fields(folder, config)
    return model, hyper, fields, sm.initial_state(model, hyper, fields, folder)


def run_steps(world, cases, batch, out_dir):
    """One step of every case in `world` processes (step_in_process); each rank's parameters."""
    import torch
    import torch.multiprocessing as mp

    port = free_port()
    if world == 1:
        step_in_process(0, 1, port, cases, batch, str(out_dir))
    else:
        mp.spawn(step_in_process, args=(world, port, cases, batch, str(out_dir)), nprocs=world, join=True)
    return {name: [torch.load(out_dir / f"{name}-{r}.pt") for r in range(world)] for name in cases}


class InProcessSession:
    """data_parallel's session for one worker in this process; keeps the last checkpoint."""

    rank, world_size = 0, 1

    def __init__(self, engine):
        self.engine = engine

    def restored(self):
        return self.engine.checkpoint

    def report(self, metrics, checkpoint=None):
        self.engine.reports.append(metrics)
        if checkpoint is not None:
            self.engine.checkpoint = checkpoint


class InProcessEngine:
    """The `engine` of quick_start.run without Ray: one worker, in this process (tests)."""

    def __init__(self):
        self.checkpoint, self.reports, self.calls = None, [], []

    def fit(self, worker, job, num_workers, address=None, use_gpu=False, max_failures=0, storage=None, on_cluster_lost=None):
        self.calls.append({"num_workers": num_workers, "address": address, "max_failures": max_failures})
        self.checkpoint = None
        worker(job, InProcessSession(self))
        return self.checkpoint

    def gpus_available(self, address=None):
        return 0
