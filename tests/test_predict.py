"""Saved models (recbole_lda.inference.saved_model) and prediction for new rows (recbole_lda.inference.predict).

A run saves its model (--save_model_dir); a fresh process loads it and predicts the test
split from its rows, equal to the run's own predictions file. Every registered model
round-trips (save, load, identical predictions), including models whose statistics have
data-dependent sizes. Bad input is refused with the column and the line, and leaves no
output; a pickled weights file is refused without being unpickled; a folder that mixes two
saved models is refused.
"""

import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pinning_helpers import LDA_SMALL, build, write_toy
from recbole_lda.cli import predict as predict_cli
from recbole_lda.inference import saved_model
from recbole_lda.config.configurator import Config
from recbole_lda.utils.errors import UsageError, guarded
from recbole_lda.inference.predict import InputError, predict_file, predict_frame
from recbole_lda.quick_start.quick_start import hyperparameters
from recbole_lda.config.registry import WATCH_TIME_MODELS
from recbole_lda.inference.saved_model import SavedModelError

REPO = Path(__file__).resolve().parents[1]
SMALL = ["--synthetic_rows=4000", "--synthetic_users=150", "--synthetic_items=200", "--epochs=2",
         "--torch_num_threads=1", "--num_buckets=3", "--num_anchors=4", "--vq_steps=50", "--num_sequences=64"]


def env():
    return {**os.environ, "PYTHONWARNINGS": "ignore"}


@pytest.fixture(scope="module")
def lda_run(tmp_path_factory):
    """LDA trained on small synthetic data through the command line, saved with --save_model_dir."""
    tmp = tmp_path_factory.mktemp("predict_run")
    args = [sys.executable, str(REPO / "run_recbole_lda.py"), "--model=LDA", "--dataset=synthetic", *SMALL,
            f"--data_path={tmp / 'data'}", "--log_dir=None", "--show_progress=False",
            f"--results_file={tmp / 'results.json'}", f"--predictions_file={tmp / 'test.csv'}",
            f"--save_model_dir={tmp / 'model'}"]
    proc = subprocess.run(args, cwd=tmp, env=env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp / "results.json").read_text())
    test_inter = Path(glob.glob(str(tmp / "data" / "synthetic" / "prepared" / "*" / "synthetic.test.inter"))[0])
    return tmp, results, test_inter


def test_fresh_process_predicts_the_runs_test_predictions(lda_run, tmp_path):
    tmp, results, test_inter = lda_run
    assert results["saved_model_dir"] == str(tmp / "model")
    assert sorted(os.listdir(tmp / "model")) == ["config.json", "features.safetensors", "fields.json", "manifest.json",
                                                 "model.safetensors"]
    rows = pd.read_csv(test_inter, sep="\t", dtype=str)
    rows.columns = [c.split(":")[0] for c in rows.columns]  # the raw columns: user_id,item_id,label,duration
    rows.to_csv(tmp_path / "rows.csv", index=False)
    proc = subprocess.run(
        [sys.executable, "-m", "recbole_lda", "predict", f"--model_dir={tmp / 'model'}",
         f"--input={tmp_path / 'rows.csv'}", f"--output={tmp_path / 'pred.csv'}",
         f"--summary_file={tmp_path / 'summary.json'}", "--torch_num_threads=1"],
        cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "unknown users: 0 rows" in proc.stdout
    expected, got = pd.read_csv(tmp / "test.csv"), pd.read_csv(tmp_path / "pred.csv")
    assert list(got.columns) == ["user_id", "item_id", "label", "duration", "prediction"]
    for ids in ("user_id", "item_id"):
        assert got[ids].tolist() == expected[ids].tolist()
    np.testing.assert_allclose(got["prediction"], expected["prediction"], rtol=0, atol=1e-5)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["rows"] == len(expected) == results["rows"]["test"]
    assert summary["unknown_users"] == summary["unknown_items"] == 0


def test_atomic_files_in_chunks_and_dataframes_give_the_same_predictions(lda_run, tmp_path):
    tmp, _, test_inter = lda_run
    expected = pd.read_csv(tmp / "test.csv")
    # the prepared tab-separated file itself (typed header), read 64 rows at a time
    summary = predict_file(tmp / "model", str(test_inter), str(tmp_path / "pred.csv"), chunk_rows=64, batch_size=50)
    got = pd.read_csv(tmp_path / "pred.csv")
    assert summary["rows"] == len(expected) and got["item_id"].tolist() == expected["item_id"].tolist()
    np.testing.assert_allclose(got["prediction"], expected["prediction"], rtol=0, atol=1e-5)
    # a DataFrame with integer ids, in another row order: predictions follow the rows
    frame = expected[["user_id", "item_id", "duration"]].iloc[::-1]
    out = predict_frame(tmp / "model", frame)
    assert out.index.tolist() == frame.index.tolist()
    assert list(out.columns) == ["user_id", "item_id", "duration", "prediction"]
    np.testing.assert_allclose(out["prediction"], expected["prediction"].iloc[::-1], rtol=0, atol=1e-5)


def test_unknown_users_and_videos_get_the_padding_id_and_are_counted(lda_run):
    tmp, _, _ = lda_run
    rows = pd.read_csv(tmp / "test.csv", dtype={"user_id": str, "item_id": str}).head(6)
    rows = rows[["user_id", "item_id", "duration"]]
    known = predict_frame(tmp / "model", rows)["prediction"].to_numpy()
    rows.loc[1, "user_id"] = "new-user"
    rows.loc[2, "item_id"] = "new-video"
    rows.loc[3, ["user_id", "item_id"]] = ["new-user", "another-video"]
    out = predict_frame(tmp / "model", rows)
    summary = out.attrs["summary"]
    assert (summary["unknown_users"], summary["unknown_user_ids"]) == (2, 1)
    assert (summary["unknown_items"], summary["unknown_item_ids"]) == (2, 2)
    assert np.isfinite(out["prediction"]).all() and (out["prediction"] >= 0).all()
    np.testing.assert_array_equal(out["prediction"].to_numpy()[[0, 4, 5]], known[[0, 4, 5]])
    # an unknown id is id 0, RecBole's '[PAD]': the same prediction as naming the padding token
    padded = rows.copy()
    padded.loc[1, "user_id"] = "[PAD]"
    assert predict_frame(tmp / "model", padded)["prediction"][1] == out["prediction"][1]
    # a file in which no user and no video is known is most likely of another dataset
    strangers = pd.DataFrame({"user_id": [f"x{i}" for i in range(10)], "item_id": "v", "duration": 10.0})
    with pytest.raises(InputError, match=r"none of the users and videos in the first 10 rows \(to row 9\) is known"):
        predict_frame(tmp / "model", strangers)
    assert predict_frame(tmp / "model", strangers, allow_all_unknown=True).attrs["summary"]["unknown_users"] == 10
    few = predict_frame(tmp / "model", strangers.head(9))  # fewer rows: new users and videos, scored
    assert few.attrs["summary"]["unknown_items"] == 9


def test_bad_input_names_column_and_line_and_leaves_no_output(lda_run, tmp_path):
    tmp, _, _ = lda_run
    rows = pd.read_csv(tmp / "test.csv", dtype=str).head(9).drop(columns="prediction")
    output = tmp_path / "pred.csv"
    output.write_text("earlier output\n")

    def refused(frame, pattern, **kwargs):
        frame.to_csv(tmp_path / "rows.csv", index=False)
        with pytest.raises(InputError, match=pattern):
            predict_file(tmp / "model", str(tmp_path / "rows.csv"), str(output), **kwargs)
        assert output.read_text() == "earlier output\n"  # untouched, no temporary file left
        assert sorted(os.listdir(tmp_path)) == ["pred.csv", "rows.csv"]

    refused(rows.drop(columns="duration"), r"lacks column 'duration' \(line 1 of .*rows.csv")
    bad = rows.copy()
    bad.loc[5, "duration"] = "12,5s"  # data row 5 is line 7; chunks of 2 rows: the third chunk
    refused(bad, r"column 'duration', line 7: '12,5s' is not a non-negative number", chunk_rows=2)
    bad.loc[5, "duration"] = "-3"
    refused(bad, r"column 'duration', line 7: '-3'", chunk_rows=2)
    bad.loc[5, "duration"] = ""
    refused(bad, r"column 'duration', line 7: ''")
    # files of other datasets: WeChat's raw rows, WeChat's device column (KuaiRec's raw rows are the
    # synthetic dataset's own raw format: scored, tests/test_predict_raw.py)
    wechat = rows.rename(columns={"user_id": "userid", "item_id": "feedid", "duration": "videoplayseconds"})
    refused(wechat, r"lacks column 'user_id' \(line 1 .*needs user_id, item_id, duration")
    refused(rows.assign(device="2"),
            r"column 'device' \(line 1 .*\) is no field of dataset 'synthetic'.*another dataset")
    # malformed lines: more fields than the header, a column twice
    lines = rows.to_csv(index=False).splitlines()
    for line in (2, 5):  # the first data line (pandas would take its first field as an index) or a later one
        ragged = lines[:line - 1] + [lines[line - 1] + ",7"] + lines[line:]
        (tmp_path / "rows.csv").write_text("\n".join(ragged) + "\n")
        with pytest.raises(InputError, match=rf"rows.csv, line {line}: 5 fields, but line 1 names 4 columns"):
            predict_file(tmp / "model", str(tmp_path / "rows.csv"), str(output))
    refused(rows.rename(columns={"label": "user_id"}), r"column 'user_id' appears twice \(line 1")
    frame = rows.assign(duration=["1"] * 8 + ["x"])
    frame.index = [f"r{i}" for i in range(9)]
    with pytest.raises(InputError, match="column 'duration', row 'r8': 'x'"):
        predict_frame(tmp / "model", frame)
    # a column carried through on request; the label is a field of the dataset
    out = predict_frame(tmp / "model", rows.assign(request="q"), keep_columns=["request"])
    assert list(out.columns) == ["user_id", "item_id", "duration", "label", "request", "prediction"]


def test_command_line_reports_one_line_errors(lda_run, tmp_path, capsys):
    tmp, _, _ = lda_run
    pd.DataFrame({"user_id": ["1"], "item_id": ["2"]}).to_csv(tmp_path / "rows.csv", index=False)
    args = [f"--model_dir={tmp / 'model'}", f"--input={tmp_path / 'rows.csv'}", f"--output={tmp_path / 'o.csv'}"]
    with pytest.raises(SystemExit) as exit_:
        guarded(predict_cli.main, args)
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and err.count("\n") == 1 and err.startswith("error: the input lacks column 'duration'")
    with pytest.raises(SystemExit) as exit_:
        guarded(predict_cli.main, [*args, "--modeldir=x"])
    assert exit_.value.code == 2 and "did you mean --model_dir?" in capsys.readouterr().err
    assert not (tmp_path / "o.csv").exists()


# ----------------------------------------------------------------- every model round-trips


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
    """Tiny data with tied watch times (0 s, complete plays): OR, D2Q, D2Co and CREAD get fewer
    thresholds, groups, bins and split points than on the stand-in sample used on loading."""
    return write_toy(tmp_path_factory.mktemp("predict_toy"))


def save_toy_model(name, root, folder, weights_format="safetensors", **extra):
    model, train, test = build(name, root, **extra)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # weights that no constructor would produce
        for param in model.parameters():
            param.add_(0.05 * torch.randn(param.shape, generator=generator))
    model.eval()
    config = Config(name, "toy", config_dict={"data_path": str(root), "state": "WARNING", "log_dir": None, **extra})
    saved_model.save(folder, model, train, hyperparameters(config), weights_format=weights_format)
    return model, test


CASES = [(m, LDA_SMALL if m == "LDA" else {}) for m in WATCH_TIME_MODELS]
CASES.append(("LDA", dict(LDA_SMALL, anchor_training="joint")))


@pytest.mark.parametrize("name,extra", CASES, ids=[m for m in WATCH_TIME_MODELS] + ["LDA-joint"])
def test_every_registered_model_round_trips(name, extra, toy_root, tmp_path):
    model, test = save_toy_model(name, toy_root, tmp_path / "model", **extra)
    loaded = saved_model.load(tmp_path / "model")
    assert type(loaded.model) is type(model) and not loaded.model.training
    with torch.no_grad():
        expected = model.predict(test.inter_feat)
        torch.testing.assert_close(loaded.model.predict(test.inter_feat), expected, rtol=0, atol=0)
    rows = pd.read_csv(toy_root / "toy" / "toy.test.inter", sep="\t")
    rows.columns = [c.split(":")[0] for c in rows.columns]
    np.testing.assert_array_equal(predict_frame(loaded, rows)["prediction"].to_numpy(), expected.numpy())


def test_torch_weights_only_format_round_trips(toy_root, tmp_path):
    model, test = save_toy_model("OR", toy_root, tmp_path / "model", weights_format="torch")
    assert (tmp_path / "model" / "model.pt").is_file() and not (tmp_path / "model" / "model.safetensors").exists()
    with torch.no_grad():
        torch.testing.assert_close(saved_model.load(tmp_path / "model").model.predict(test.inter_feat),
                                   model.predict(test.inter_feat), rtol=0, atol=0)


# ----------------------------------------------------------------- unsafe and mixed folders


class FileCreatingPayload:
    """Unpickling this creates a file: what a malicious checkpoint could do."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def rehash(folder):
    """Make manifest.json list the files as they are now (what someone who forges a folder does)."""
    manifest = json.loads((folder / "manifest.json").read_text())
    for name in list(manifest["files"]):
        if not (folder / name).exists():
            del manifest["files"][name]
    for name in ("config.json", "fields.json", "features.safetensors", manifest["weights"]):
        file = folder / name
        manifest["files"][name] = {"bytes": file.stat().st_size, "sha256": saved_model._sha256(file)}
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_pickled_weights_are_refused_without_unpickling(toy_root, tmp_path):
    save_toy_model("VR", toy_root, tmp_path / "model")
    marker = tmp_path / "created-by-pickle"
    pickled = tmp_path / "evil.pt"
    torch.save({"head.weight": FileCreatingPayload(str(marker))}, pickled)
    folder = tmp_path / "model"

    shutil.copy(pickled, folder / "model.safetensors")  # unchanged manifest: the file is not the one saved
    with pytest.raises(SavedModelError, match="not the file this model was saved with"):
        saved_model.load(folder)
    rehash(folder)  # a forged manifest: refused all the same, by format
    with pytest.raises(SavedModelError, match="is a pickle .* not safetensors: refused"):
        saved_model.load(folder)
    os.remove(folder / "model.safetensors")
    shutil.copy(pickled, folder / "model.pt")  # torch's format: read with weights_only=True
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "weights": "model.pt"}))
    rehash(folder)
    with pytest.raises(SavedModelError, match="holds objects other than tensors and was refused"):
        saved_model.load(folder)
    torch.save({"head.weight": torch.zeros(1), "epoch": 3}, folder / "model.pt")  # plain values: not a state dict
    rehash(folder)
    with pytest.raises(SavedModelError, match="flat mapping of names to tensors"):
        saved_model.load(folder)
    assert not marker.exists()
    # the payload is real: unpickling it (what loading must never do) creates the file
    torch.load(pickled, weights_only=False)["head.weight"].close()
    assert marker.exists()


def test_folders_that_mix_two_saved_models_are_refused(toy_root, tmp_path):
    save_toy_model("VR", toy_root, tmp_path / "vr")
    save_toy_model("LDA", toy_root, tmp_path / "lda", **LDA_SMALL)
    with pytest.raises(SavedModelError, match="has no manifest.json"):
        saved_model.load(toy_root)
    mixed = tmp_path / "mixed"
    shutil.copytree(tmp_path / "lda", mixed)
    shutil.copy(tmp_path / "vr" / "model.safetensors", mixed / "model.safetensors")
    with pytest.raises(SavedModelError, match="not the file this model was saved with"):
        saved_model.load(mixed)
    rehash(mixed)
    with pytest.raises(SavedModelError, match="weights do not fit a LDA built from its configuration"):
        saved_model.load(mixed)
    shutil.copy(tmp_path / "vr" / "config.json", mixed / "config.json")
    rehash(mixed)
    with pytest.raises(SavedModelError, match="config.json is of VR on toy but manifest.json of LDA on toy"):
        saved_model.load(mixed)


def test_save_model_dir_is_checked_before_any_work(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(UsageError, match="holds other files and no saved model"):
        saved_model.check_target(tmp_path / "notes")
    with pytest.raises(UsageError, match="is a file"):
        saved_model.check_target(tmp_path / "notes" / "todo.txt")
    from recbole_lda.quick_start.quick_start import run

    with pytest.raises(UsageError, match="holds other files"):
        overrides = {"save_model_dir": str(tmp_path / "notes"), "data_path": str(tmp_path / "d"), "log_dir": "None"}
        run("VR", "synthetic", cmd_overrides=overrides)
    assert not (tmp_path / "d").exists()  # refused before the data was generated


def test_saving_again_replaces_the_folder_whole(toy_root, tmp_path):
    save_toy_model("VR", toy_root, tmp_path / "model")
    model, test = save_toy_model("WLR", toy_root, tmp_path / "model", weights_format="torch")
    assert sorted(os.listdir(tmp_path)) == ["model"]  # no temporary or old folder left
    assert not (tmp_path / "model" / "model.safetensors").exists()  # nothing of the first model
    loaded = saved_model.load(tmp_path / "model")
    assert type(loaded.model).__name__ == "WLR"
    with torch.no_grad():
        expected = model.predict(test.inter_feat)
        torch.testing.assert_close(loaded.model.predict(test.inter_feat), expected, rtol=0, atol=0)
