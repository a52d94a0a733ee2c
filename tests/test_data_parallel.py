"""Data-parallel training (recbole_lda/quick_start/data_parallel.py): one optimisation step of 2
workers on half batches equals one step of 1 worker on the whole batch, and the shares and
batches of the partitioned training data (the sparse id tables and their optimisers:
test_sparse_tables.py)."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from recbole_lda import compat
from recbole_lda.config.registry import WATCH_TIME_MODELS
from recbole_lda.quick_start import partitions as parts
from recbole_lda.quick_start import stream_model as sm
from recbole.utils import init_seed
from stream_helpers import case, run_steps, write_streamed

# Every model whose loss is a mean over rows (the rest: LDA, below).
MEAN_LOSS_MODELS = [m for m in WATCH_TIME_MODELS if m != "LDA"]


def test_two_workers_on_half_batches_take_the_step_of_one_on_the_whole(tmp_path):
    folder = write_streamed(str(tmp_path / "data"), rows=800, users=30, items=40)
    cases = {m: case(folder, m) for m in MEAN_LOSS_MODELS}
    # LDA: its OT targets are computed on each worker's own rows, a different problem than on the
    # whole batch; without the OT term (lambda_ot=0) the rest of its loss is a mean over rows.
    cases["LDA-no-OT"] = case(folder, "LDA", lambda_ot=0.0, epochs=1)
    batch = parts.read_piece(parts.pieces(folder, "train")[0], list(sm.INPUT_COLUMNS))
    batch = {c: v[:64] for c, v in batch.items()}
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one = run_steps(1, cases, batch, tmp_path / "one")
    two = run_steps(2, cases, batch, tmp_path / "two")
    for name in cases:
        initial, whole, = cases[name][3], one[name][0]
        moved = [k for k in whole if whole[k].is_floating_point() and not torch.equal(whole[k], initial[k])]
        assert moved, f"{name}: the step changed no parameter"
        for rank in range(2):
            for key, value in whole.items():
                assert torch.allclose(two[name][rank][key].double(), value.double(), rtol=0, atol=1e-6), (name, rank, key)


def test_compare_passes_the_ray_engine_and_its_keys_to_every_run(tmp_path):
    """compare with --engine=ray: each run goes through the engine it is given (here one worker in
    this process, no Ray), with the engine's keys; the records carry the engine."""
    from recbole_lda.quick_start.compare import compare
    from stream_helpers import InProcessEngine

    folder = write_streamed(str(tmp_path / "data"), rows=1500, users=50, items=60)
    engine = InProcessEngine()
    common = {"engine": "ray", "num_workers": "1", "max_failures": "0", "streamed_data_path": folder, "epochs": "2",
              "train_batch_size": "128", "log_dir": "None", "torch_num_threads": "1",
              "ray_run_dir": str(tmp_path / "runs")}
    table = compare(["VR", "VR[learning_rate=0.01]"], ["synthetic"], 1, str(tmp_path / "out"), common, engine=engine)
    assert len(engine.calls) == 2 and all(c == {"num_workers": 1, "address": None, "max_failures": 0} for c in engine.calls)
    assert len(table) == 2

    runs = sorted((tmp_path / "out" / "runs").glob("*.json"))
    results = [json.loads(p.read_text()) for p in runs]
    assert [(r["engine"], r["workers"], r["epochs_run"], r["rows"]["train"]) for r in results] == [("ray", 1, 2, 1200)] * 2
    assert {r["hyperparameters"]["learning_rate"] for r in results} == {0.001, 0.01}


def test_shares_and_batches(tmp_path):
    folder = write_streamed(str(tmp_path / "data"), rows=1000, users=40, items=50, files=3, row_group_rows=100)
    all_pieces = parts.pieces(folder, "train")
    shares = [parts.share(all_pieces, r, 2) for r in range(2)]
    assert sorted(shares[0] + shares[1], key=all_pieces.index) == all_pieces and not set(shares[0]) & set(shares[1])
    loads = [sum(p.rows for p in s) for s in shares]
    assert abs(loads[0] - loads[1]) <= max(p.rows for p in all_pieces)  # greedy: within one row group
    rows = loads[0]
    batch = next(b for b in range(7, rows) if rows % b == 0)  # batches that cover the share exactly
    cols = ["user_index", "item_index", "label"]
    mine = sorted(k for p in shares[0] for k in zip(*(parts.read_piece(p, cols)[c].tolist() for c in cols)))
    epochs = []
    for epoch in range(2):  # every row of the share exactly once, in a new order each epoch
        got = list(parts.batches(shares[0], cols, batch, rows // batch, seed=1, epoch=epoch, rank=0))
        assert [len(b["label"]) for b in got] == [batch] * (rows // batch)
        epochs.append([k for b in got for k in zip(*(b[c].tolist() for c in cols))])
        assert sorted(epochs[-1]) == mine
    assert epochs[0] != epochs[1]
    again = list(parts.batches(shares[0], cols, batch, rows // batch, seed=1, epoch=1, rank=0))
    assert [k for b in again for k in zip(*(b[c].tolist() for c in cols))] == epochs[1]  # (seed, epoch, rank) fix it
    longer = list(parts.batches(shares[0], cols, batch, rows // batch + 3, seed=1, epoch=0, rank=0))
    assert len(longer) == rows // batch + 3  # a short share starts again (every worker takes the same steps)


def test_the_driver_reads_only_the_training_columns_a_constructor_asks_for(tmp_path):
    """The driver's stand-in: every model (LDA where LDA.takes_statistics) takes the
    one-pass statistics of the training partitions and reads no column; LDA with D2Q's quantile
    target reads labels, durations and users (TrainingColumns; values are the partitions':
    float32 -> float64, index + 1). Every model's initial state is the one it gets from the
    columns alone, exactly."""
    import pandas as pd
    import pyarrow.parquet as pq

    from recbole_lda.config.registry import get_model

    folder = write_streamed(str(tmp_path / "data"), rows=1200, users=30, items=40, files=4)
    train = pd.concat([pq.read_table(f).to_pandas() for f in parts.split_files(folder, "train")])
    lda = {"num_sequences": 64, "sequence_length": 8, "num_anchors": 4, "vq_steps": 20, "min_source_size": 2}
    entries = [(m, {}, None) for m in WATCH_TIME_MODELS if m != "LDA"] + [
        ("TPM", {"leaf_value": "midpoint"}, set()), ("CREAD", {"split_alpha": 2.0}, set()),
        ("D2Co", {"truncate_at_duration": False, "label_alpha": 0.3, "min_bin_rows": 2}, set()),
        ("LDA", lda, set()), ("LDA", {**lda, "sequence_sampling": "random", "predictor_init": "bucket_mean"}, set()),
        ("LDA", {**lda, "regression_target": "ratio", "predictor_init": "bucket_mean"}, set()),
        ("LDA", {**lda, "regression_target": "quantile"}, set()),
        ("LDA", {**lda, "anchor_mass": "usage", "lambda_direct": 0.5}, set()),
        ("LDA", {**lda, "sequence_sampling": "item"}, {"label", "duration", "item_id"})]
    read = {m: set() for m in WATCH_TIME_MODELS if m != "LDA"}  # the statistics cover them
    for model_name, overrides, expected in entries:
        model_name, hyper, fields, _ = case(folder, model_name, **overrides)
        config = sm.worker_config(hyper)
        states, columns = [], None
        for statistics in (sm.one_pass_statistics(folder), None):
            columns = sm.TrainingColumns(folder, config)
            init_seed(config["seed"], config["reproducibility"])
            model = get_model(model_name)(config, sm.TrainingStandIn(fields, config, columns, statistics))
            states.append(model.state_dict())
            expected = read.get(model_name) if expected is None else expected
            if statistics is not None and expected is not None:
                assert set(columns) == expected, (model_name, overrides)
        assert states[0].keys() == states[1].keys()
        assert all(torch.equal(states[0][k], states[1][k]) for k in states[0]), (model_name, overrides)
    assert torch.equal(columns["label"], torch.from_numpy(train.label.to_numpy().astype(np.float32).astype(np.float64)))
    assert columns["user_id"].tolist() == (train.user_index + 1).tolist()


def test_the_ray_engine_records_the_models_test_diagnostics(tmp_path):
    """LDA's split_report (beta's concentration, anchor_label_match) on the test rows is in the ray
    engine's test_report as in the in-memory engine's; a model without diagnostics records {}."""

    from recbole_lda.quick_start.compare import compare
    from stream_helpers import InProcessEngine

    folder = write_streamed(str(tmp_path / "data"), rows=1500, users=50, items=60)
    common = {"engine": "ray", "num_workers": "1", "max_failures": "0", "streamed_data_path": folder, "epochs": "1",
              "train_batch_size": "128", "log_dir": "None", "torch_num_threads": "1",
              "ray_run_dir": str(tmp_path / "runs")}
    compare(["VR", "LDA"], ["synthetic"], 1, str(tmp_path / "out"), common, engine=InProcessEngine())
    records = {json.loads(p.read_text())["model"]: json.loads(p.read_text()) for p in (tmp_path / "out" / "runs").glob("*.json")}
    assert records["VR"]["test_report"] == {}
    report = records["LDA"]["test_report"]
    assert report["rows"] == records["LDA"]["rows"]["test"] == 150
    assert report["anchors_in_scope"] == 8 and report["anchor_label_chance"] == 0.125
    assert 1.0 <= report["beta_effective_anchors"] <= 8.0 and 0.0 <= report["anchor_label_match"] <= 1.0


def test_context_tokens_of_the_partitions_are_model_inputs(tmp_path):
    """hour and tab, where the partitions have them, are token fields of the ray engine (values seen
    in training get rows 1.., a null or an unseen value row 0); on data whose watch ratio is 4x in
    the evening, VR with the hour learns it: its test MAE is well under VR's on the same rows
    without the context columns; a saved model takes hour and tab as inputs and predicts the same."""

    import pandas as pd
    import pyarrow.parquet as pq

    from recbole_lda.inference import predict_frame
    from recbole_lda.quick_start.quick_start import run
    from stream_helpers import InProcessEngine

    values = np.array([0.0, 2.0, 5.0])
    assert sm.context_rows(values, np.array([5, 0, 3, np.nan, 2, 9])).tolist() == [3, 1, 0, 0, 2, 0]
    with_context = write_streamed(str(tmp_path / "ctx"), rows=6000, users=60, items=80, context=True)
    tokens = sm.context_tokens(with_context)
    assert {k: v.tolist() for k, v in tokens.items()} == {"hour": list(map(float, range(24))), "tab": [0.0, 1.0, 2.0, 3.0]}
    without = str(tmp_path / "plain")
    shutil.copytree(with_context, without)
    for path in sorted(Path(without).glob("*/part-*.parquet")):
        pq.write_table(pq.read_table(path).drop(["hour", "tab"]), path)
    assert sm.context_tokens(without) == {}
    results = {}
    for name, folder in (("ctx", with_context), ("plain", without)):
        keys = {"engine": "ray", "num_workers": "1", "max_failures": "0", "streamed_data_path": folder, "epochs": "8",
                "train_batch_size": "256", "learning_rate": "0.01", "log_dir": "None", "torch_num_threads": "1",
                "show_progress": "False", "ray_run_dir": str(tmp_path / "runs")}
        if name == "ctx":
            keys["save_model_dir"] = str(tmp_path / "model")
        results[name] = run("VR", "synthetic", cmd_overrides=keys, engine=InProcessEngine())
    assert results["ctx"]["test_result"]["mae"] < 0.8 * results["plain"]["test_result"]["mae"], results
    fields = json.loads((tmp_path / "model" / "fields.json").read_text())
    assert fields["hour"]["type"] == "token" and fields["tab"]["type"] == "token"
    test = pd.concat([pq.read_table(p).to_pandas() for p in sorted(Path(with_context).glob("test/part-*.parquet"))])
    rows = test[["user_id", "item_id", "duration", "hour", "tab"]].astype({"tab": "Int64"})
    evening = rows.assign(hour=20)["user_id item_id duration hour tab".split()]
    morning = rows.assign(hour=8)["user_id item_id duration hour tab".split()]
    late, early = predict_frame(str(tmp_path / "model"), evening), predict_frame(str(tmp_path / "model"), morning)
    assert np.median(late["prediction"] / early["prediction"]) > 2.0  # the hour moves the prediction as in the data


def test_a_shuffle_window_mixes_the_users_of_many_partitions(tmp_path):
    """Each partition holds a set of users; pieces are row groups, and a window of 32 pieces in a
    random order mixes many partitions: the first batch of an epoch holds users of most of the 16
    partitions (with one row group per partition and windows of 4, as before, at most 4)."""
    folder = write_streamed(str(tmp_path / "data"), rows=16000, users=320, items=50, files=16, row_group_rows=100)
    mine = parts.pieces(folder, "train")
    assert len(mine) >= 16 * 8
    first = next(parts.batches(mine, ["user_index"], 512, 1, seed=0, epoch=0, rank=0))
    assert len(set(first["user_index"] % 16)) >= 12  # write_streamed puts user u in partition u % 16
    with_large_groups = write_streamed(str(tmp_path / "large"), rows=16000, users=320, items=50, files=16)
    first = next(parts.batches(parts.pieces(with_large_groups, "train"), ["user_index"], 512, 1, 0, 0, 0, shuffle_pieces=4))
    assert len(set(first["user_index"] % 16)) <= 4


def test_the_streaming_conversion_writes_small_row_groups(tmp_path):
    """dataset_prep/stream_prepare.py writes each partition in row groups of ROW_GROUP_ROWS rows."""
    import pyarrow.parquet as pq

    from dataset_prep import stream_prepare

    assert stream_prepare.ROW_GROUP_ROWS == 65_536
    from recbole_lda.config.configurator import Config

    compat.apply()
    config = Config("VR", "synthetic_kuairand", config_dict={"synthetic_rows": 3000, "synthetic_items": 500,
                                                              "data_path": str(tmp_path), "log_dir": None})
    old = stream_prepare.ROW_GROUP_ROWS
    stream_prepare.ROW_GROUP_ROWS = 100
    try:
        folder = stream_prepare.prepare_stream(config).path
    finally:
        stream_prepare.ROW_GROUP_ROWS = old
    for path in parts.split_files(folder, "train"):
        meta = pq.ParquetFile(path).metadata
        sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
        assert all(n == 100 for n in sizes[:-1]) and 0 < sizes[-1] <= 100, sizes


def test_a_worker_writes_its_predictions_a_row_group_at_a_time_and_rank_0_scores_them_exactly(tmp_path):
    """predict_share writes one row group per piece read (so a worker holds one piece's rows,
    not its share of the split), with the rows of its pieces in order and the model's
    predictions; score_folder (SpillingExecutor, ranges of SCORE_PART_ROWS rows) gives every
    figure of the one-process evaluation and removes its spill folder."""
    import pyarrow.parquet as pq

    from recbole_lda.evaluator import partitioned
    from recbole_lda.quick_start import data_parallel as dp
    from recbole_lda.utils.fileio import json_safe

    folder = write_streamed(str(tmp_path / "data"), rows=3000, users=60, items=80, row_group_rows=40)
    model_name, hyper, fields, state = case(folder, "VR")
    config = sm.worker_config(hyper)
    model = sm.worker_model(model_name, hyper, fields, state)
    mine = parts.share(parts.pieces(folder, "test"), 0, 2)
    out = tmp_path / "valid-0" / "part-00000.parquet"
    dp.predict_share(model, mine, {**hyper, "eval_batch_size": 16}, str(out))
    written = pq.ParquetFile(out)
    assert written.metadata.num_row_groups == len(mine) > 1
    assert [written.metadata.row_group(g).num_rows for g in range(len(mine))] == [p.rows for p in mine]
    table = written.read().to_pandas()
    data = [parts.read_piece(p, ["user_id", "item_id", "label"] + list(sm.INPUT_COLUMNS)) for p in mine]
    assert table["user_id"].tolist() == np.concatenate([d["user_id"] for d in data]).tolist()
    assert table["label"].tolist() == np.concatenate([d["label"] for d in data]).astype(np.float64).tolist()
    model.eval()
    with torch.no_grad():
        expected = np.concatenate([model.predict(sm.to_interaction(d, config)).double().numpy() for d in data])
    assert np.allclose(table["prediction"].to_numpy(), expected, rtol=0, atol=1e-6)
    dp.predict_share(model, parts.share(parts.pieces(folder, "test"), 1, 2), hyper, str(tmp_path / "valid-0" / "part-00001.parquet"))
    old_rows, dp.SCORE_PART_ROWS = dp.SCORE_PART_ROWS, 70  # several ranges and parts on 300 rows
    try:
        scores = dp.score_folder(str(tmp_path / "valid-0"), hyper)
    finally:
        dp.SCORE_PART_ROWS = old_rows
    reference = partitioned.single_process([str(tmp_path / "valid-0")], edges=tuple(hyper["metric_bucket_edges"]),
                                           block_size=int(hyper["xauc_block_size"]))
    assert scores["rows"] == 300 and scores == json_safe(reference)
    assert sorted(os.listdir(tmp_path)) == ["data", "valid-0"]  # valid-0.scoring is gone
