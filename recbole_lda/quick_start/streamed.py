"""One run on the data-parallel engine (`engine: ray`): the driver's side.

`run(config, engine, start)` is called by quick_start.run after its checks. `engine` is the
module that starts the workers (recbole_lda/distributed/ray_train.py, handed in by the command
line, the only layer that imports Ray): `engine.fit(worker, job, ...)` and
`engine.gpus_available(address)`. The steps:

1. check_engine: refusals before any work (workers, batch, GPU, the cluster's address);
2. the partitioned data (streamed_data_path, or the streaming conversion of the dataset);
3. the initial state (stream_model.initial_state: statistics of the training split);
4. `engine.fit(data_parallel.train_worker, job)` in a run folder of its own;
5. the outputs: results file (the in-memory schema plus engine, workers, restarts, each
   worker's peak memory), predictions (a FOLDER of Parquet files, one per worker), saved model.
"""

import logging
import os
import shutil
import time
import uuid
from time import perf_counter

import numpy as np
import pyarrow.parquet as pq

from recbole_lda.config.cluster import check_ray_address
from recbole_lda.config.options import OptionError
from recbole_lda.quick_start import data_parallel, partitions, vocabulary
from recbole_lda.quick_start import stream_model as sm

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
ADDRESS_TIMEOUT_S = 30.0
SAVE_FOLDED = ("--save_model_dir with {key} (ids sharing embedding rows) is not supported yet: a saved model maps "
               "each id to its own row; use --embedding_min_count=1 and --embedding_max_rows=None to save")


def check_saveable(config, folder):
    """Before training: a saved model cannot hold hashed ids (more ids than embedding_max_rows)."""
    bound = config["embedding_max_rows"]
    if config["save_model_dir"] and bound is not None:
        for kind in ("user", "item"):
            if sm.id_count(folder, kind) + 1 > int(bound):
                raise OptionError(SAVE_FOLDED.format(key=f"--embedding_max_rows={bound} < the {kind} ids"))


def check_engine(config, engine):
    """Every refusal of the ray engine, before any work."""
    workers, batch = int(config["num_workers"]), int(config["train_batch_size"])
    if batch % workers:
        raise OptionError(f"--train_batch_size={batch} is the global batch: it must be a multiple of "
                          f"--num_workers={workers} (each worker takes an equal share)")
    if config["ray_address"]:
        check_ray_address(config["ray_address"], timeout=ADDRESS_TIMEOUT_S)
    if config["use_gpu"] and engine.gpus_available(config["ray_address"]) < 1:
        where = f"on the cluster at {config['ray_address']}" if config["ray_address"] else "on this machine"
        raise OptionError(f"--use_gpu=True: no GPU {where}; use --use_gpu=False (CPU workers, gloo)")
    try:
        sm.sparse_embeddings(config)
    except ValueError as err:
        raise OptionError(str(err)) from None
    if config["save_model_dir"] and int(config["embedding_min_count"]) > 1:
        raise OptionError(SAVE_FOLDED.format(key="--embedding_min_count > 1"))
    if config["streamed_data_path"] and not os.path.isdir(os.path.join(config["streamed_data_path"], "train")):
        raise OptionError(f"--streamed_data_path={config['streamed_data_path']}: expected a folder of partitioned "
                          "Parquet with train/, valid/ and test/ (python -m recbole_lda prepare writes one)")


def streamed_folder(config):
    """(folder, meta) of the run's partitioned data."""
    if config["streamed_data_path"]:  # absolute: Ray's workers run in folders of their own
        return os.path.abspath(config["streamed_data_path"]), {"streamed_data_path": config["streamed_data_path"]}
    try:
        from dataset_prep.stream_prepare import prepare_stream
    except ImportError:
        raise OptionError("engine: ray needs --streamed_data_path=DIR (partitioned Parquet) on this version") from None
    prepared = prepare_stream(config)
    return os.path.abspath(prepared.path), prepared.meta


def run_folder(config):
    """A fresh folder of this run's checkpoints and prediction files (never shared)."""
    root = config["ray_run_dir"] or config["checkpoint_dir"]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = os.path.join(root, f"ray-{config['model']}-{config['dataset']}-{stamp}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    os.makedirs(path)
    return os.path.abspath(path)


def make_job(config, folder, hyper, timings):
    """The job every worker gets (data_parallel's module docstring)."""
    start = perf_counter()
    vocab = vocabulary.build_all(folder, config, sm.id_count)
    context = sm.context_tokens(folder)
    fields = sm.streamed_fields(folder, config, vocab, context)
    state = sm.initial_state(config["model"], hyper, fields, folder, vocab)
    timings["model_init_s"] = perf_counter() - start
    rows = {s: partitions.split_rows(folder, s) for s in SPLITS}
    workers = int(config["num_workers"])
    groups = len(partitions.pieces(folder, "train"))
    if groups < workers:  # a row group is the unit a worker reads
        raise OptionError(f"--num_workers={workers}: the training split of {folder} has {groups} Parquet row group(s); "
                          "use at most that many workers (or a smaller stream_chunk_rows when preparing)")
    steps = max(1, rows["train"] // int(config["train_batch_size"]))
    if config["max_steps_per_epoch"]:
        steps = min(steps, int(config["max_steps_per_epoch"]))
    return {"model": config["model"], "config": hyper, "fields": fields, "state": state, "folder": folder, "vocab": vocab,
            "context": context,
            "steps": steps, "sparse": sm.sparse_embeddings(config),
            "batch_rows": int(config["train_batch_size"]) // workers, "rows": rows}


def train_mean_reference(folder, test_dir):
    """The training mean and its MAE on the test predictions (read one file at a time)."""
    total, n = 0.0, 0
    for path in partitions.split_files(folder, "train"):
        labels = pq.read_table(path, columns=["label"]).column("label").to_numpy().astype(np.float32)
        total, n = total + float(np.sum(labels, dtype=np.float64)), n + len(labels)
    mean, error, count = total / n, 0.0, 0
    for name in sorted(os.listdir(test_dir)):
        labels = pq.read_table(os.path.join(test_dir, name), columns=["label"]).column("label").to_numpy()
        error, count = error + float(np.abs(labels - mean).sum()), count + len(labels)
    return {"train_mean": {"prediction": mean, "test_mae": error / count}}


def run(config, engine, start):
    """Train and evaluate on the ray engine (module docstring); the results dictionary."""
    from recbole_lda.quick_start import stream_outputs
    from recbole_lda.quick_start.quick_start import hyperparameters, set_up_process

    check_engine(config, engine)
    set_up_process(config)
    timings = {}
    prepare_start = perf_counter()
    folder, meta = streamed_folder(config)
    timings["prepare_s"] = perf_counter() - prepare_start
    check_saveable(config, folder)
    hyper = hyperparameters(config)
    job = make_job(config, folder, hyper, timings)
    job["run_dir"] = run_folder(config)
    logger.info(f"{config['model']} on {config['dataset']} (ray engine, {config['num_workers']} workers): rows "
                f"{job['rows']}, {job['steps']} steps of {config['train_batch_size']} rows per epoch")
    try:
        fit_start = perf_counter()
        final = engine.fit(data_parallel.train_worker, job, int(config["num_workers"]), address=config["ray_address"],
                           use_gpu=bool(config["use_gpu"]), max_failures=int(config["max_failures"]),
                           storage=job["run_dir"], on_cluster_lost=lambda: remove_run_folder(config, job))
        timings["fit_s"] = perf_counter() - fit_start
        return stream_outputs.finish(config, job, final, meta, timings, start)
    finally:  # the run's own folder; its outputs are written whole or not at all
        remove_run_folder(config, job)


def remove_run_folder(config, job):
    """The run's folder of checkpoints and prediction files goes, unless keep_checkpoint."""
    if not config["keep_checkpoint"]:
        shutil.rmtree(job["run_dir"], ignore_errors=True)
