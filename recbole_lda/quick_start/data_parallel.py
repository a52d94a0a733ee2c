"""The training loop of one data-parallel worker, engine-agnostic: it runs inside Ray Train
(recbole_lda/distributed/ray_train.py) and, in tests, inside plain torch.distributed processes.

A worker gets a `job` (dict: the model name, the resolved configuration, the fields, the
initial state dict, the data folder, the run folder, steps per epoch and its batch size)
and a `session` that the engine provides:
    session.rank, session.world_size
    session.restored()                the last checkpoint (a dict) or None
    session.report(metrics, checkpoint)   every worker calls it once per epoch, with a
                                      checkpoint (a dict; rank 0's is kept, the others send {})
When world_size > 1 the torch.distributed process group is up (gloo on CPUs) and the model
is wrapped in DistributedDataParallel: every step averages the gradients of the workers,
so N workers on batches of B/N rows take the step of one process on B rows whenever the
loss is a mean over rows (tests/test_data_parallel.py; LDA's OT targets are computed on
each worker's own rows, see docs/scale.md).

Each epoch: `steps` batches of the worker's own share of train/ (quick_start/partitions.py),
then every worker predicts its share of valid/ into `<run>/valid-<epoch>/part-<rank>.parquet`;
rank 0 scores the folder (`score_folder`: the exact metrics over partitions of
recbole_lda/evaluator/partitioned.py, one task's rows in memory at a time), and its decision
(best so far, stop) goes to every worker; each keeps its own copy of the best weights (the
workers' weights are equal). At the end the best weights predict test/ into `<run>/test/`,
which rank 0 scores.
"""

import os
import shutil
import time
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.distributed as dist
from recbole.utils import init_seed

from recbole_lda.quick_start import partitions as parts
from recbole_lda.quick_start.lazy_adam import coalesce
from recbole_lda.quick_start import stream_model as sm
from recbole_lda.utils.fileio import atomic_output, json_safe
from recbole_lda.utils.memory import peak_memory_mb
from recbole_lda.evaluator import partitioned

SMALLER_IS_BETTER = {"mae", "rmse"}
PREDICTION_COLUMNS = ("user_id", "item_id", "duration", "label", "user_index", "item_index")


def train_step(wrapped, optimizer, interaction):
    """One optimisation step; the loss (a float)."""
    optimizer.zero_grad()
    loss = wrapped(interaction)
    loss.backward()
    if getattr(wrapped, "sparse_params", None):
        average_sparse_grads(wrapped.sparse_params)
    optimizer.step()
    return float(loss.detach())


def average_sparse_grads(params):
    """The mean over the workers of each parameter's sparse gradient, as one coalesced sparse
    tensor on every worker. Each worker packs the rows of all its sparse gradients (the values,
    then the bytes of the row index as extra columns) into one dense tensor; the workers
    exchange their row counts, then their packed rows (`gather_from_workers`). DDP's own sparse
    all-reduce (gloo) corrupted the heap of a worker after about 1,000 steps at 10M rows
    (malloc: unaligned tcache chunk, reproduced twice), so the id tables are left out of DDP
    and averaged here."""
    world, dtype = dist.get_world_size(), params[0].dtype
    index_width = torch.zeros(1, dtype=torch.long).view(dtype).numel()  # columns of one int64 index
    widths = [param[0].numel() + index_width for param in params]
    packed, counts = [], []
    for param, width in zip(params, widths):
        grad = coalesce(param.grad) if param.grad is not None else None  # fewer rows to send
        index = grad._indices()[0] if grad is not None else torch.zeros(0, dtype=torch.long)
        values = grad._values().reshape(len(index), -1) if grad is not None else param.new_zeros((0, width - index_width))
        packed.append(torch.cat([values, index.view(dtype).reshape(len(index), index_width)], dim=1).reshape(-1))
        counts.append(len(index))
    counts = torch.tensor(counts, dtype=torch.long)
    every_count = [c.tolist() for c in gather_from_workers(counts, [len(counts)] * world)]
    buffers = gather_from_workers(torch.cat(packed), [sum(n * w for n, w in zip(c, widths)) for c in every_count])
    starts = [0] * world  # where the next parameter's rows begin in each worker's buffer
    for k, (param, width) in enumerate(zip(params, widths)):
        blocks = []
        for worker in range(world):
            rows = every_count[worker][k]
            blocks.append(buffers[worker][starts[worker]:starts[worker] + rows * width].reshape(rows, width))
            starts[worker] += rows * width
        block = torch.cat(blocks)
        index = block[:, width - index_width:].contiguous().view(torch.long).reshape(-1)
        values = block[:, :width - index_width].reshape(-1, *param.shape[1:]) / world
        param.grad = coalesce(torch.sparse_coo_tensor(index.unsqueeze(0), values, param.shape, check_invariants=False))


def gather_from_workers(mine, lengths):
    """Every worker's 1-D tensor, this worker's `mine` included (worker r's has lengths[r]
    values): each worker sends its tensor to every other worker and receives theirs, all at
    once (isend / irecv). On 2 workers over gloo this takes about half the time of
    dist.all_gather for the 1 to 8 MB of a step's sparse rows (benchmarks/bench_ray_step.py,
    `transport`), and needs no padding to the longest tensor."""
    rank, world = dist.get_rank(), dist.get_world_size()
    out = [mine if worker == rank else mine.new_empty(int(lengths[worker])) for worker in range(world)]
    pending = []
    for worker in range(world):
        if worker != rank:
            if len(mine):
                pending.append(dist.isend(mine, worker))
            if lengths[worker]:
                pending.append(dist.irecv(out[worker], worker))
    for request in pending:
        request.wait()
    return out


def wrap(model, world_size):
    """LossOf(model), in DistributedDataParallel when there are several workers."""
    loss = sm.LossOf(model)
    if world_size == 1:
        return loss
    # broadcast_buffers=False: DDP's default re-sends rank 0's buffers before every forward, one
    # more blocking collective per step; every model's buffers are training statistics set at
    # construction (equal on every worker from the driver's state) or set identically on every
    # worker (LDA's temperature by set_epoch), so there is nothing to re-send.
    sparse = [(f"model.{name}.weight", m.weight) for name, m in model.named_modules()
              if isinstance(m, torch.nn.Embedding) and m.sparse]
    torch.nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(loss, [n for n, _ in sparse])
    wrapped = torch.nn.parallel.DistributedDataParallel(loss, find_unused_parameters=True, broadcast_buffers=False)
    wrapped.sparse_params = [p for _, p in sparse]  # averaged by train_step (average_sparse_grads)
    return wrapped


def share_all(value, rank, world_size):
    """Rank 0's `value` on every worker."""
    if world_size == 1:
        return value
    box = [value if rank == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_all(value, world_size):
    """[value of rank 0, value of rank 1, ...] on every worker."""
    if world_size == 1:
        return [value]
    out = [None] * world_size
    dist.all_gather_object(out, value)
    return out


PREDICTION_SCHEMA = pa.schema([("user_id", pa.int64()), ("item_id", pa.int64()), ("duration", pa.float64()),
                               ("label", pa.float64()), ("prediction", pa.float64())])


@torch.no_grad()
def predict_share(model, my_pieces, config, path, vocab=None, context=None):
    """Predictions of the worker's pieces of a split into one Parquet file (written atomically,
    one row group per piece, so that one piece's rows are in memory at a time): user_id,
    item_id (raw ids), duration, label, prediction."""
    model.eval()
    batch_rows = int(config["eval_batch_size"])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with atomic_output(path, mode="wb") as tmp, pq.ParquetWriter(tmp, PREDICTION_SCHEMA) as writer:
        for piece in my_pieces:
            data = parts.read_piece(piece, list(PREDICTION_COLUMNS) + list(context or {}))
            pred = np.concatenate([np.zeros(0)] + [
                model.predict(sm.to_interaction({c: v[start:start + batch_rows] for c, v in data.items()},
                                                config, vocab, context)).double().numpy()
                for start in range(0, piece.rows, batch_rows)])
            writer.write_table(pa.table({"user_id": data["user_id"], "item_id": data["item_id"],
                                         "duration": data["duration"].astype(np.float64),
                                         "label": data["label"].astype(np.float64), "prediction": pred},
                                        schema=PREDICTION_SCHEMA))
    model.train()


SCORE_PART_ROWS = 1_000_000  # rows of a scoring task: rank 0 holds about this many rows at a time


def score_folder(folder, config):
    """Every metric of a run's test_result over the prediction files in `folder`, exactly, without
    holding them in one process (recbole_lda/evaluator/partitioned.py): its tasks run here in turn
    and keep their results in files of `<folder>.scoring/` (removed after), so that memory holds
    the rows of one task (about SCORE_PART_ROWS), whatever the size of the split."""
    spill = folder.rstrip(os.sep) + ".scoring"
    try:
        scores = partitioned.evaluate([folder], partitioned.SpillingExecutor(spill),
                                      edges=tuple(float(e) for e in config["metric_bucket_edges"]),
                                      block_size=int(config["xauc_block_size"]), part_rows=SCORE_PART_ROWS)
    finally:
        shutil.rmtree(spill, ignore_errors=True)
    return json_safe(scores)


def evaluate_split(model, job, session, split, name):
    """Every worker predicts its share of `split` into `<run>/<name>/`; rank 0's scores, on every worker."""
    my_pieces = parts.share(parts.pieces(job["folder"], split), session.rank, session.world_size)
    folder = os.path.join(job["run_dir"], name)
    predict_share(model, my_pieces, job["config"], os.path.join(folder, f"part-{session.rank:05d}.parquet"),
                  job.get("vocab"), job.get("context"))
    if session.world_size > 1:
        dist.barrier()
    scores = score_folder(folder, job["config"]) if session.rank == 0 else None
    return share_all(scores, session.rank, session.world_size)


def fresh_progress():
    return {"next_epoch": 0, "best_score": None, "best_epoch": None, "bad": 0, "stop": False, "history": [],
            "epoch_times": []}


def resume(session, model, optimizer):
    """(progress, best weights) from the session's last checkpoint (weights and optimiser state
    loaded into `model` and `optimizer`), or a fresh start."""
    checkpoint = session.restored()
    if checkpoint is None:
        return fresh_progress(), None
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    return checkpoint["progress"], checkpoint["best"]


def train_epoch(epoch, model, wrapped, optimizer, my_pieces, job, session):
    """One epoch of the worker's share; (mean training loss over the workers, seconds)."""
    config = job["config"]
    if hasattr(model, "set_epoch"):  # epoch-dependent settings (LDA's temperature schedule)
        model.set_epoch(epoch)
    start = time.perf_counter()
    losses = [train_step(wrapped, optimizer, sm.to_interaction(batch, config, job.get("vocab"), job.get("context")))
              for batch in parts.batches(my_pieces, sm.batch_columns(job.get("context")), job["batch_rows"], job["steps"],
                                         int(config["seed"]), epoch, session.rank)]
    seconds = time.perf_counter() - start
    return float(np.mean(gather_all(float(np.mean(losses)), session.world_size))), seconds


def validate(epoch, model, job, session, progress, best):
    """Score valid/ and update progress (best score and epoch, early stopping); the best weights."""
    from recbole.utils import early_stopping

    config = job["config"]
    scores = evaluate_split(model, job, session, "valid", f"valid-{epoch}")
    score = scores[str(config["valid_metric"]).lower()]
    bigger = bool(config["valid_metric_bigger"])
    previous = progress["best_score"] if progress["best_score"] is not None else (-np.inf if bigger else np.inf)
    progress["best_score"], progress["bad"], progress["stop"], improved = early_stopping(
        score, previous, progress["bad"], int(config["stopping_step"]), bigger)
    if improved:
        progress["best_epoch"] = epoch
        best = {k: v.detach().clone() for k, v in model.state_dict().items()}
    progress["history"].append({"epoch": epoch, "valid_score": score, **scores})
    if session.rank == 0:
        shutil.rmtree(os.path.join(job["run_dir"], f"valid-{epoch}"), ignore_errors=True)
    return best


def train_worker(job, session):
    """The whole loop of one worker (module docstring); rank 0's last report holds the results."""
    config = job["config"]
    attempts = os.path.join(job["run_dir"], "attempts")  # a file per worker start (the driver counts restarts)
    os.makedirs(attempts, exist_ok=True)
    with open(os.path.join(attempts, f"rank{session.rank}-{uuid.uuid4().hex}"), "w") as f:
        f.write(str(os.getpid()))
    torch.set_num_threads(int(config["torch_num_threads"] or 1))
    init_seed(int(config["seed"]) + session.rank, bool(config["reproducibility"]))
    model = sm.worker_model(job["model"], config, job["fields"], job["state"])
    optimizer = sm.make_optimizer(model, config, job.get("sparse", False))
    progress, best = resume(session, model, optimizer)
    wrapped = wrap(model, session.world_size)
    my_pieces = parts.share(parts.pieces(job["folder"], "train"), session.rank, session.world_size)
    for epoch in range(progress["next_epoch"], int(config["epochs"])):
        loss, seconds = train_epoch(epoch, model, wrapped, optimizer, my_pieces, job, session)
        progress["epoch_times"].append(seconds)
        if (epoch + 1) % int(config["eval_step"]) == 0:
            best = validate(epoch, model, job, session, progress, best)
        progress["next_epoch"] = epoch + 1
        checkpoint = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "progress": progress,
                      "best": best} if session.rank == 0 else {}
        session.report({"epoch": epoch, "train_loss": loss, "epoch_s": seconds, "done": False}, checkpoint)
        if progress["stop"]:
            break
    finish(model, job, session, progress, best)


def finish(model, job, session, progress, best):
    """The best weights on test/ (into `<run>/test/`); the final report (every worker's peak memory)."""
    if best is None:
        raise RuntimeError("no best model: the run never validated (check epochs and eval_step)")
    model.load_state_dict(best)
    test_result = evaluate_split(model, job, session, "test", "test")
    memory = gather_all(peak_memory_mb(), session.world_size)
    final = {"best": best, "progress": progress, "test_result": test_result, "worker_peak_memory_mb": memory}
    session.report({"epoch": progress["next_epoch"] - 1, "done": True}, final if session.rank == 0 else {})
