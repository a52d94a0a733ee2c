"""The outputs of a run on the ray engine (quick_start/streamed.py): the results file (the
schema of quick_start.results_record, plus `engine`, `workers`, `restarts` and
`worker_peak_memory_mb`), the test predictions as a folder of Parquet files (one per worker;
`python -m recbole_lda evaluate` and pyarrow read it), and the saved model."""

import os
import platform
import shutil
import uuid
from time import perf_counter

import numpy as np
import pyarrow.parquet as pq
import torch

from recbole_lda.inference import saved_model
from recbole_lda.quick_start import partitions as parts
from recbole_lda.quick_start import provenance
from recbole_lda.quick_start import stream_model as sm
from recbole_lda.utils.memory import peak_memory_mb
from recbole_lda.utils.fileio import json_safe, write_json


class StreamedDataset:
    """What saved_model.save reads from a RecBole dataset, for the fields of a streamed folder:
    id maps (id 0 is '[PAD]', then the raw ids of user_ids.parquet / item_ids.parquet)."""

    def __init__(self, folder, fields, config, context=None):
        from recbole.utils import FeatureSource, FeatureType

        self.uid_field, self.iid_field = config["USER_ID_FIELD"], config["ITEM_ID_FIELD"]
        self.field2type = {name: FeatureType(f["type"]) for name, f in fields.items()}
        self.field2source = {name: FeatureSource(f["source"]) for name, f in fields.items()}
        self.field2seqlen = {}
        self.field2id_token = {}
        for field, kind in ((self.uid_field, "user"), (self.iid_field, "item")):
            ids = pq.read_table(os.path.join(folder, f"{kind}_ids.parquet")).column(0).to_numpy()
            self.field2id_token[field] = np.concatenate([["[PAD]"], ids.astype(str)])
        for name, values in (context or {}).items():  # tokens as the in-memory conversion writes them
            self.field2id_token[name] = np.array(["[PAD]", *(str(int(v)) for v in values)])
        self.user_feat = self.item_feat = None


def move_folder(source, target):
    """Put folder `source` at `target`, replacing a folder there (never half of one)."""
    target = os.path.abspath(target)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    staged = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.{uuid.uuid4().hex}.tmp")
    shutil.copytree(source, staged)
    old = None
    if os.path.exists(target):
        old = f"{staged}.old"
        os.replace(target, old)
    os.replace(staged, target)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def save_model(config, job, model, best):
    """The best weights as a saved-model folder (`predict --model_dir` loads it)."""
    dataset = StreamedDataset(job["folder"], job["fields"], config, job.get("context"))
    saved_model.save(config["save_model_dir"], model, dataset, job["config"], best)


# Test rows of the model's diagnostics (split_report: LDA's beta and anchor_label_match), the
# first ones in file order: the report holds a few numbers per row in memory.
TEST_REPORT_ROWS = 1_000_000


def test_batches(job, config, limit=TEST_REPORT_ROWS):
    """Interactions of the first `limit` test rows, one evaluation batch at a time."""
    batch_rows, left = int(config["eval_batch_size"]), limit
    for piece in parts.pieces(job["folder"], "test"):
        data = parts.read_piece(piece, sm.batch_columns(job.get("context")))
        for start in range(0, min(piece.rows, left), batch_rows):
            stop = min(start + batch_rows, left)
            yield sm.to_interaction({c: v[start:stop] for c, v in data.items()}, config, job.get("vocab"),
                                    job.get("context"))
        left -= min(piece.rows, left)
        if left == 0:
            return


def test_report(model, job, config):
    """The model's split_report on the test rows (test_batches), with the rows it saw."""
    report = model.split_report(test_batches(job, config))
    return {**report, "rows": min(job["rows"]["test"], TEST_REPORT_ROWS)} if report else {}


def restarts(run_dir):
    """Starts of the worker group beyond the first (data_parallel.train_worker counts them)."""
    folder = os.path.join(run_dir, "attempts")
    return sum(name.startswith("rank0-") for name in os.listdir(folder)) - 1 if os.path.isdir(folder) else 0


def finish(config, job, final, meta, timings, start):
    """Predictions, saved model and the results file; the results dictionary."""
    from recbole_lda.quick_start.streamed import train_mean_reference

    test_dir = os.path.join(job["run_dir"], "test")
    reference = train_mean_reference(job["folder"], test_dir)
    if config["predictions_file"]:
        move_folder(test_dir, config["predictions_file"])
    model = sm.worker_model(job["model"], job["config"], job["fields"], final["best"])
    if config["save_model_dir"]:
        save_model(config, job, model, final["best"])
    extra = {"meta": meta, "reference": reference, "report": model.report(),
             "test_report": test_report(model, job, sm.worker_config(job["config"]))}
    results = record(config, job, final, extra, timings, start)
    if config["results_file"]:
        write_json(config["results_file"], results)
    return results


def record(config, job, final, extra, timings, start):
    """The results dictionary (strict JSON)."""
    progress, rows = final["progress"], job["rows"]
    best = next((h for h in progress["history"] if h["epoch"] == progress["best_epoch"]), {})
    times = progress["epoch_times"]
    mean_epoch = float(np.mean(times)) if times else None
    return json_safe({
        "model": config["model"], "dataset": config["dataset"], "seed": config["seed"],
        "engine": "ray", "workers": int(config["num_workers"]), "restarts": restarts(job["run_dir"]),
        "sparse_embeddings": job["sparse"],
        "best_valid_score": progress["best_score"],
        "best_valid_result": {k: v for k, v in best.items() if k not in ("epoch", "valid_score")},
        "test_result": final["test_result"], "reference": extra["reference"], "rows": rows,
        "epochs_run": len(times), "best_epoch": progress["best_epoch"],
        "valid_history": progress["history"],
        "checkpoint": job["run_dir"] if config["keep_checkpoint"] else None,
        "saved_model_dir": config["save_model_dir"], "predictions_dir": config["predictions_file"],
        "train_time_per_epoch_s": mean_epoch, "epoch_times_s": times,
        "train_interactions_per_s": job["steps"] * int(config["train_batch_size"]) / mean_epoch if mean_epoch else None,
        "timings_s": timings, "model_report": extra["report"], "test_report": extra["test_report"],
        "peak_memory_mb": peak_memory_mb(), "worker_peak_memory_mb": final["worker_peak_memory_mb"],
        "peak_gpu_memory_mb": None, "total_time_s": perf_counter() - start,
        "data": {**extra["meta"], "embedding_vocabulary": {k: v.report for k, v in job["vocab"].items()}},
        "hyperparameters": job["config"],
        "environment": {"python": platform.python_version(), "torch": torch.__version__, "device": "cpu",
                        "code_sha256": provenance.code_sha256()},
    })
