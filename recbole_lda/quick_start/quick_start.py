"""Train, evaluate and report one model on one dataset: the library behind run_recbole_lda.py.

`run` prepares the dataset (conversion and split, cached), builds RecBole's dataset and
data loaders, trains with RecBole's trainer (early stopping on `valid_metric`), evaluates
the best checkpoint on the test split, and returns (and optionally writes) a results
dictionary. Reference figures measured on the same test split go with it: the MAE of
predicting the training mean, and for the synthetic dataset the best achievable MAE.
"""

import logging
import os
import platform
import sys
import time
import uuid
from contextlib import contextmanager
from time import perf_counter

import numpy as np
import pandas as pd
import torch
from threadpoolctl import threadpool_limits
from recbole.data import create_dataset, data_preparation
from recbole.utils import init_seed

import dataset_prep
from recbole_lda import compat
from recbole_lda.quick_start import provenance
from recbole_lda.inference import saved_model
from recbole_lda.config.configurator import Config
from recbole_lda.config.registry import check_dataset_name, get_trainer, requested_converter
from recbole_lda.config.options import OptionError
from recbole_lda.utils.fileio import atomic_output, check_distinct_paths, check_writable, json_safe, write_json
from recbole_lda.utils.memory import peak_memory_mb
from recbole_lda.evaluator.metrics import xauc
from recbole_lda.evaluator.xauc import all_conventions
from recbole_lda.model.anchors import assign_buckets
from recbole_lda.model.backbone import training_values
from recbole_lda.report.plots import anchor_space, plot_anchors
from recbole_lda.trainer.trainer import interactions

logger = logging.getLogger(__name__)

# Files a run writes, checked before any work (a bad path must not cost a whole run).
OUTPUT_KEYS = ("results_file", "predictions_file", "anchor_plot_file")


def log_path(config):
    """The run's own log file, or None (console only). With `log_dir: DIR`, a file of its own
    in DIR (`<model>-<dataset>-<time>-<pid>-<random>.log`, like a kept checkpoint: two runs
    never share one); with `log_dir: ~` (the default), beside the results file (`r.json` ->
    `r.log`); with neither, none. Chosen once per config."""
    if hasattr(config, "_log_file"):
        return config._log_file
    path = None
    if config["log_dir"]:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = os.path.join(config["log_dir"], f"{config['model']}-{config['dataset']}-{stamp}-{os.getpid()}-"
                                               f"{uuid.uuid4().hex[:8]}.log")
    elif config["results_file"]:
        stem, ext = os.path.splitext(config["results_file"])
        path = (stem if ext != ".log" else config["results_file"]) + ".log"
    path = os.path.abspath(path) if path else None
    config._log_file = path
    return path


def init_logger(config):
    """Log to the console and to the run's own log file (`log_path`; RecBole's own
    init_logger writes to a fixed ./log/ folder shared by every run in the working folder)."""
    level = getattr(logging, str(config["state"] or "INFO").upper(), logging.INFO)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_recbole_lda", False):
            root.removeHandler(handler)
            handler.close()
    handlers = [logging.StreamHandler(sys.stdout)]
    path = log_path(config)
    if path:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        handlers.append(logging.FileHandler(path, mode="w"))
    for handler in handlers:
        handler.setFormatter(fmt)
        handler._recbole_lda = True
        root.addHandler(handler)
    root.setLevel(level)


@torch.no_grad()
def predict_split(model, data_loader):
    """Predictions on every row of an evaluation loader, as a DataFrame with original ids
    and times in seconds: user_id, item_id, duration, label, prediction."""
    model.eval()
    dataset, config = data_loader._dataset, data_loader.config
    uid, iid = config["USER_ID_FIELD"], config["ITEM_ID_FIELD"]
    cols = {k: [] for k in ("user_id", "item_id", "duration", "label", "prediction")}
    for interaction in interactions(data_loader, model.device):
        cols["user_id"].append(interaction[uid].cpu().numpy())
        cols["item_id"].append(interaction[iid].cpu().numpy())
        cols["duration"].append(interaction[config["DURATION_FIELD"]].cpu().numpy())
        cols["label"].append(interaction[config["LABEL_FIELD"]].cpu().numpy())
        cols["prediction"].append(model.predict(interaction).cpu().numpy())
    frame = pd.DataFrame({k: np.concatenate(v) for k, v in cols.items()})
    frame["user_id"] = dataset.id2token(uid, frame["user_id"].to_numpy())
    frame["item_id"] = dataset.id2token(iid, frame["item_id"].to_numpy())
    return frame


def convention_scores(config, test_frame, test_result):
    """Every XAUC convention and the per-duration-bucket table (`recbole_lda.evaluator.xauc.all_conventions`)
    on the test predictions in the predictions file's order (xauc_blocks follows it), for
    test_result. RecBole's own keys (xauc, xgauc) are kept: ours must agree with them
    (logged when they do not, beyond the reported decimals)."""
    frame = test_frame
    scores = all_conventions(
        frame["label"].to_numpy(),
        frame["prediction"].to_numpy(),
        users=frame["user_id"].to_numpy(),
        durations=frame["duration"].to_numpy(),
        edges=tuple(float(e) for e in config["metric_bucket_edges"]),
        block_size=int(config["xauc_block_size"]),
    )
    tolerance = 10.0 ** -int(config["metric_decimal_place"])
    for key in ("xauc", "xgauc"):
        theirs, ours = test_result.get(key), scores.get(key)
        if theirs is not None and ours is not None and abs(float(theirs) - ours) > tolerance:
            logging.getLogger(__name__).warning(f"test {key}: RecBole's {theirs} differs from recbole_lda.evaluator.xauc's {ours}")
    return {k: v for k, v in scores.items() if k not in test_result}


def reference_scores(config, train_dataset, test_frame):
    """Test MAE/XAUC of reference predictors on the same rows: the training mean, and the
    true conditional median where the dataset's generating distribution is known."""
    labels = test_frame["label"].to_numpy(np.float64)
    train_mean = float(train_dataset.inter_feat[config["LABEL_FIELD"]].double().mean())
    refs = {"train_mean": {"prediction": train_mean, "test_mae": float(np.mean(np.abs(labels - train_mean)))}}
    oracle = dataset_prep.oracle_predictions(
        config, test_frame["user_id"].astype(np.int64).to_numpy(), test_frame["item_id"].astype(np.int64).to_numpy()
    )
    if oracle is not None:
        refs["oracle_median"] = {
            "test_mae": float(np.mean(np.abs(labels - oracle))),
            "test_xauc": xauc(labels, oracle),
        }
    return refs


def plot_model_anchors(model, dataset, path):
    """`plot_anchors` for a built LDA model and its training dataset: the training labels
    are put in the anchors' space by the model's own map (`anchor_value`: log(1 + watch
    ratio), or D2Q's quantile label with `regression_target: quantile`)."""
    labels = training_values(dataset, model.LABEL)
    durations = training_values(dataset, model.DURATION)
    with torch.no_grad():
        values = model.anchor_value(labels.to(model.bucket_edges.device), durations.to(model.bucket_edges.device))
        anchors = model.anchor_table().detach().cpu().reshape(model.num_buckets, model.num_anchors, -1).numpy()
    edges = model.bucket_edges.cpu().numpy().astype(np.float64)
    buckets = assign_buckets(durations.numpy(), edges)
    plot_anchors(values.cpu().numpy(), buckets, edges, anchors, path, space=anchor_space(model.target))


@contextmanager
def timed(timings, key):
    """Add the wall time of the `with` block to timings[key] (seconds)."""
    mark = perf_counter()
    try:
        yield
    finally:
        timings[key] = perf_counter() - mark


def check_output(config, key):
    """OptionError now if output `key` cannot be written at the end (the ray engine's predictions
    are a folder of files, one per worker: its parent must be writable)."""
    path = config[key]
    try:
        if key == "predictions_file" and config["engine"] == "ray":
            if os.path.isfile(path):
                raise ValueError(f"{key} {path!r} is a file; the ray engine writes a folder of Parquet files there")
            path = os.path.join(os.path.dirname(os.path.abspath(path)), ".write-check")
        check_writable(path, key)
    except ValueError as err:
        raise OptionError(str(err)) from None


def check_run(model, dataset, config_file_list, config_dict, cmd_overrides):
    """The run's Config, after every check that can fail before any work: the code is the
    one imported, the names, every key and value, every output path."""
    provenance.check_code_unchanged()
    compat.apply()
    check_dataset_name(dataset, requested_converter(config_file_list, config_dict, cmd_overrides))
    config = Config(model, dataset, config_file_list, config_dict, cmd_overrides)  # checks every key and value
    try:
        check_distinct_paths(
            [(f"--{key}", config[key]) for key in OUTPUT_KEYS] + [("the run's log", log_path(config))],
            inputs=[("the config file", path) for path in config_file_list or []] + raw_inputs(config),
            output_folders=[("--save_model_dir", config["save_model_dir"])])
    except ValueError as err:
        raise OptionError(str(err)) from None
    for key in OUTPUT_KEYS:  # (creates their folders)
        if config[key]:
            check_output(config, key)
    if config["save_model_dir"]:
        saved_model.check_target(config["save_model_dir"])
    return config


def raw_inputs(config):
    """(label, path) of the files in the run's raw data folder (all it may read), when given."""
    folder = config["raw_data_path"]
    if not folder or not os.path.isdir(folder):
        return []
    return [("the raw data file", os.path.join(folder, name)) for name in sorted(os.listdir(folder))]


def set_up_process(config):
    """Threads, seeds and logging of this process for the run."""
    if config["torch_num_threads"]:
        torch.set_num_threads(config["torch_num_threads"])
    # numpy's BLAS on one thread: its only heavy user is POT's Sinkhorn solver on the CPU
    # (mat-vecs of a batch x anchors matrix, ~7 us each on one thread). BLAS threads there
    # compete with torch's OpenMP threads, still spinning after the previous torch op, and
    # made the solve ~6x slower on 2 cores (LDA's OT targets: 6.8 ms -> 2.6 ms per batch).
    threadpool_limits(1, user_api="blas")
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)


def load_data(config, timings):
    """Raw files -> prepared atomic files (dataset_prep, cached) -> RecBole's dataset and
    loaders. Returns (prepared, train_data, valid_data, test_data)."""
    with timed(timings, "prepare_s"):
        prepared = dataset_prep.prepare(config)
    config["data_path"] = prepared.path
    with timed(timings, "recbole_load_s"):
        data = create_dataset(config)
        logger.debug(data)
        train_data, valid_data, test_data = data_preparation(config, data)
    return prepared, train_data, valid_data, test_data


def build_model(config, train_data, timings):
    """The model, with its statistics taken from the training split (LDA: anchors pre-trained)."""
    init_seed(config["seed"], config["reproducibility"])
    with timed(timings, "model_init_s"):  # includes LDA's anchor pre-training
        net = config.model_class(config, train_data._dataset).to(config["device"])
    logger.debug(net)
    if config["anchor_plot_file"] and hasattr(net, "anchor_table"):
        plot_model_anchors(net, train_data._dataset, config["anchor_plot_file"])
    return net


def evaluate_on_test(config, trainer, net, train_data, test_data, saved, show_progress, timings):
    """Test metrics (RecBole's evaluator, then every XAUC convention), the test predictions,
    the reference predictors' scores and the model's own report on test."""
    with timed(timings, "test_s"):
        test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=show_progress)
    logger.info(f"test: {dict(test_result)}")
    test_frame = predict_split(net, test_data)
    test_result = {**dict(test_result), **convention_scores(config, test_frame, test_result)}
    reference = reference_scores(config, train_data._dataset, test_frame)
    return test_result, test_frame, reference, net.split_report(test_data)


def results_record(config, trainer, net, prepared, splits, outcome, timings, start):
    """The results dictionary of a run (strict JSON: NaN and infinities become null)."""
    train_data, valid_data, test_data = splits
    best_valid_score, best_valid_result, test_result, reference, test_report = outcome
    epoch_times = trainer.epoch_times
    n_train = len(train_data._dataset)
    mean_epoch = float(np.mean(epoch_times)) if epoch_times else None
    return json_safe({
        "model": config["model"],
        "dataset": config["dataset"],
        "seed": config["seed"],
        "best_valid_score": best_valid_score,
        "best_valid_result": dict(best_valid_result or {}),
        "test_result": dict(test_result),
        "reference": reference,
        "rows": {"train": n_train, "valid": len(valid_data._dataset), "test": len(test_data._dataset)},
        "epochs_run": len(epoch_times),
        "best_epoch": trainer.best_state["epoch"] if trainer.best_state else None,
        "valid_history": trainer.valid_history,
        "checkpoint": _absolute(trainer.checkpoint_path),
        "saved_model_dir": _absolute(config["save_model_dir"]),
        "results_file": _absolute(config["results_file"]),
        "predictions_file": _absolute(config["predictions_file"]),
        "log_file": log_path(config),
        "train_time_per_epoch_s": mean_epoch,
        "epoch_times_s": epoch_times,
        "train_interactions_per_s": n_train / mean_epoch if mean_epoch else None,
        "timings_s": timings,
        "model_report": net.report(),
        "test_report": test_report,
        "peak_memory_mb": peak_memory_mb(),
        "peak_gpu_memory_mb": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None,
        "total_time_s": perf_counter() - start,
        "data": prepared.meta,
        "hyperparameters": hyperparameters(config),
        "environment": {"python": platform.python_version(), "torch": torch.__version__, "device": str(config["device"]),
                        "code_sha256": provenance.code_sha256(), "working_dir": os.getcwd()},
    })


def write_outputs(config, results, test_frame):
    """The results file and the test predictions, each written atomically."""
    if config["results_file"]:
        write_json(config["results_file"], results)
        logger.info(f"results written to {config['results_file']}")
    if config["predictions_file"] and test_frame is not None:
        with atomic_output(config["predictions_file"]) as tmp:
            test_frame.to_csv(tmp, index=False)
        logger.info(f"test predictions written to {config['predictions_file']}")


def run(model, dataset, config_file_list=None, config_dict=None, cmd_overrides=None, saved=True, callback_fn=None,
        evaluate_test=True, engine=None):
    """Train and evaluate `model` on `dataset`; return the results dictionary.

    Args:
        model (str): a registered watch-time model (recbole_lda.config.registry).
        dataset (str): a dataset name with a converter in dataset_prep (e.g. synthetic).
        config_file_list (list[str]): YAML files overlaid on the defaults.
        config_dict (dict): values overlaid on the files.
        cmd_overrides (dict[str, str]): `--key=value` pairs from a command line (top priority).
        saved (bool): keep the best weights (in memory; in a file too with keep_checkpoint)
            and evaluate them on test (RecBole's `saved`); off: the last weights.
        callback_fn (callable): called as callback_fn(epoch_idx, valid_score) after each
            validation (RecBole's hook), e.g. to report to a tuner.
        evaluate_test (bool): evaluate on the test split and write the predictions; a tuning
            trial, which selects on validation only, turns it off (no test figures at all).
        engine: the module that starts data-parallel workers for `engine: ray`
            (recbole_lda.distributed.ray_train, handed in by the command line).
    """
    start = perf_counter()
    config = check_run(model, dataset, config_file_list, config_dict, cmd_overrides)
    if config["engine"] == "ray":
        if engine is None or not saved or callback_fn is not None or not evaluate_test:
            raise OptionError("engine: ray runs from the run command only (not inside tune or compare trials yet)")
        from recbole_lda.quick_start import streamed

        return streamed.run(config, engine, start)
    set_up_process(config)
    timings = {}
    prepared, train_data, valid_data, test_data = load_data(config, timings)
    net = build_model(config, train_data, timings)
    logger.info(
        f"{config['model']} on {config['dataset']}: {sum(p.numel() for p in net.parameters() if p.requires_grad):,} "
        f"trainable parameters; rows train {len(train_data._dataset):,}, valid {len(valid_data._dataset):,}, "
        f"test {len(test_data._dataset):,}"
    )
    show_progress = bool(config["show_progress"]) and sys.stderr.isatty()  # bars only on a terminal
    trainer = get_trainer(config.model_class)(config, net)
    with timed(timings, "fit_s"):
        best_valid_score, best_valid_result = trainer.fit(
            train_data, valid_data, verbose=False, saved=saved, show_progress=show_progress, callback_fn=callback_fn
        )
    logger.info(f"best valid: {dict(best_valid_result or {})}")
    test_result, test_frame, reference, test_report = {}, None, {}, {}
    if evaluate_test:
        test_result, test_frame, reference, test_report = evaluate_on_test(
            config, trainer, net, train_data, test_data, saved, show_progress, timings)
    if config["save_model_dir"]:  # the best weights (the net holds the last ones when the test was skipped)
        best = trainer.best_state["state_dict"] if saved and trainer.best_state else None
        saved_model.save(config["save_model_dir"], net, train_data._dataset, hyperparameters(config), best)
        logger.info(f"model saved to {config['save_model_dir']}")
    outcome = (best_valid_score, best_valid_result, test_result, reference, test_report)
    results = results_record(config, trainer, net, prepared, (train_data, valid_data, test_data), outcome, timings,
                             start)
    write_outputs(config, results, test_frame)
    return results


# Keys whose value is a file or folder: recorded as absolute paths.
PATH_KEYS = ("data_path", "raw_data_path", "checkpoint_dir", "log_dir", "save_model_dir", *OUTPUT_KEYS)


def _absolute(path):
    return os.path.abspath(path) if isinstance(path, str) and path else path


def hyperparameters(config):
    """The configuration of a run as plain JSON-able values (what a reader needs to repeat it);
    paths made absolute."""
    skip = {"device", "eval_type", "MODEL_TYPE", "MODEL_INPUT_TYPE"}
    out = {}
    for key, value in config.final_config_dict.items():
        if key in skip:
            continue
        if key in PATH_KEYS:
            value = _absolute(value)
        if isinstance(value, (str, int, float, bool, type(None))):
            out[key] = value
        elif isinstance(value, (list, tuple, dict)):
            out[key] = json_safe(value)
    return out
