"""Protocols (issue 14): properties/protocol/<name>.yaml through Config for every dataset,
their split, filters and label clipping applied and counted in meta.json, every XAUC
convention and the per-bucket table in the results file, keys overridable one by one."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from dataset_prep.common import Tables
from dataset_prep.pipeline import clip_labels, read_label_clip
from recbole_lda.config.configurator import Config
from recbole_lda.config.registry import known_datasets
from recbole_lda.config.options import OptionError, yaml_files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["--synthetic_rows=4000", "--synthetic_users=150", "--synthetic_items=200", "--epochs=1",
         "--torch_num_threads=1", "--show_progress=False"]
CONVENTIONS = {"mae", "rmse", "xauc", "xgauc", "rows", "xauc_dadf", "xauc_cwm", "xauc_blocks", "xgauc_cwm"}
BUCKETS = ["0-6", "6-10", "10-18", "18-32", "32-120", "120+"]


def config(dataset, **overrides):
    cmd = {"state": "WARNING", **{k: str(v) for k, v in overrides.items()}}
    return Config("D2Q", dataset, cmd_overrides=cmd)


def test_the_four_protocols_are_shipped():
    assert set(yaml_files("protocol")) == {"ours", "dadf", "cwm", "hegm"}


@pytest.mark.parametrize("protocol", ["ours", "dadf", "cwm", "hegm"])
@pytest.mark.parametrize("dataset", known_datasets())
def test_each_protocol_loads_for_each_dataset(protocol, dataset):
    cfg = config(dataset, protocol=protocol)
    assert cfg["protocol"] == protocol
    assert "per_dataset" not in cfg.final_config_dict


def test_protocol_values_and_per_dataset_blocks():
    dadf = config("kuairand", protocol="dadf")
    assert (dadf["split"], dadf["split_ratio"], dadf["split_seed"]) == ("random", [0.8, 0.1, 0.1], 1234)
    assert dadf["max_watch_ratio"] == 10.0 and dadf["drop_zero_play"] is True
    # DADF has no 5-60 s filter on WeChat: its per_dataset block lifts the dataset YAML's
    wechat = config("wechat", protocol="dadf")
    assert wechat["min_duration"] is None and wechat["max_duration"] is None
    cwm = config("kuairand", protocol="cwm")
    assert (cwm["split"], cwm["split_dates"], cwm["label_clip"]) == ("time", [20220422, 20220429], "duration")
    assert (cwm["min_duration"], cwm["max_duration"]) == (5, 400)
    # a per_dataset block applies to its dataset only
    assert config("synthetic", protocol="cwm")["min_duration"] is None
    hegm = config("kuairand", protocol="hegm")
    assert (hegm["label_clip"], hegm["label_clip_quantile"]) == ("duration_quantile", 0.99)
    ours = config("kuairand")
    assert ours["protocol"] == "ours" and ours["split"] == "random" and ours["label_clip"] is None


def test_protocol_keys_are_overridden_one_by_one():
    cfg = config("kuairand", protocol="cwm", split_dates="[20220416,20220417]", label_clip="~")
    assert cfg["split_dates"] == [20220416, 20220417] and cfg["label_clip"] is None
    assert cfg["split"] == "time" and cfg["min_duration"] == 5  # the rest of the protocol stays


def test_unknown_protocol_and_bad_values_are_refused():
    with pytest.raises(OptionError, match="unknown protocol 'dadff'.*dadf"):
        config("synthetic", protocol="dadff")
    with pytest.raises(OptionError, match="label_clip"):
        config("synthetic", label_clip="quantile")


def test_a_protocol_setting_an_unknown_key_is_refused(tmp_path, monkeypatch):
    import recbole_lda.config.configurator as config_module

    bad = tmp_path / "bad.yaml"
    bad.write_text("per_dataset:\n  synthetic:\n    max_watch_ration: 10\n")
    real = config_module.yaml_files
    monkeypatch.setattr(config_module, "yaml_files",
                        lambda sub: {**real(sub), "bad": str(bad)} if sub == "protocol" else real(sub))
    with pytest.raises(OptionError, match="sets 'max_watch_ration'"):
        Config("D2Q", "synthetic", cmd_overrides={"protocol": "bad", "state": "WARNING"})
    # on another dataset the block is not read (the name is then refused as not a shipped protocol)
    with pytest.raises(OptionError, match="expected one of ours, dadf, cwm, hegm"):
        Config("D2Q", "kuairand", cmd_overrides={"protocol": "bad", "state": "WARNING"})


def test_label_clip_at_the_duration_and_at_a_training_quantile():
    inter = pd.DataFrame({"label": [1.0, 12.0, 30.0, 5.0, 50.0, 2.0], "duration": [10.0, 10.0, 20.0, 40.0, 100.0, 1.0]})
    tables = Tables(inter=inter, field_types={})
    parts = {"train": np.array([0, 1, 2, 3]), "valid": np.array([4]), "test": np.array([5])}
    out, counts = clip_labels(tables, parts, read_label_clip({"label_clip": "duration"}))
    assert out.inter["label"].tolist() == [1.0, 10.0, 20.0, 5.0, 50.0, 1.0]
    assert counts == {"label_clip_at": None, "label_clipped": {"train": 2, "valid": 0, "test": 1}}
    assert inter["label"].tolist() == [1.0, 12.0, 30.0, 5.0, 50.0, 2.0]  # the cached table is untouched
    # the quantile comes from the training rows' durations only (10, 10, 20, 40 -> median 15)
    out, counts = clip_labels(tables, parts, read_label_clip({"label_clip": "duration_quantile", "label_clip_quantile": 0.5}))
    assert counts["label_clip_at"] == 15.0
    assert out.inter["label"].tolist() == [1.0, 12.0, 15.0, 5.0, 15.0, 2.0]
    assert counts["label_clipped"] == {"train": 1, "valid": 1, "test": 0}
    assert clip_labels(tables, parts, read_label_clip({"label_clip": None})) == (tables, {})


def cli(tmp, *args):
    proc = subprocess.run([sys.executable, os.path.join(REPO, "run_recbole_lda.py"), "--model=D2Q", "--dataset=synthetic",
                           *SMALL, f"--data_path={tmp / 'data'}", "--log_dir=~", *args],
                          cwd=tmp, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("protocols")
    out = {}
    for protocol, extra in (("dadf", []), ("hegm", ["--max_watch_ratio=3"])):
        cli(tmp, f"--protocol={protocol}", *extra, f"--results_file={tmp / protocol}.json",
            f"--predictions_file={tmp / protocol}.csv")
        out[protocol] = (json.loads((tmp / f"{protocol}.json").read_text()), pd.read_csv(tmp / f"{protocol}.csv"))
    return out


def test_a_dadf_run_applies_its_split_and_filters(runs):
    results, _ = runs["dadf"]
    data = results["data"]
    assert data["split_options"] == {"split": "random", "split_ratio": [0.8, 0.1, 0.1], "split_seed": 1234}
    assert "watch ratio > 10.0" in data["rows_dropped"] and data["options"]["max_watch_ratio"] == 10.0
    assert data["label_clip"]["label_clip"] is None
    assert results["hyperparameters"]["protocol"] == "dadf"


def test_a_hegm_run_splits_by_date_clips_and_counts(runs):
    results, pred = runs["hegm"]
    data = results["data"]
    assert data["split_options"] == {"split": "time", "split_dates": [20200820, 20200830]}
    assert data["rows_dropped"]["watch ratio > 3.0"] > 0  # a filter overridden on the command line
    clip = data["label_clip"]
    assert clip["label_clip"] == "duration_quantile" and clip["label_clip_quantile"] == 0.99
    assert clip["label_clipped"]["train"] > 0 and set(clip["label_clipped"]) >= {"train", "valid", "test"}
    assert pred["label"].max() <= clip["label_clip_at"] + 1e-3


@pytest.mark.parametrize("protocol", ["dadf", "hegm"])
def test_results_file_has_every_convention_and_the_bucket_table(runs, protocol):
    from recbole_lda.evaluator.xauc import all_conventions

    results, pred = runs[protocol]
    test = results["test_result"]
    assert CONVENTIONS <= set(test)
    for name in BUCKETS:
        assert {f"bucket_{name}_{k}" for k in ("rows", "mae", "xauc", "xauc_dadf")} <= set(test)
    assert sum(test[f"bucket_{name}_rows"] for name in BUCKETS) == test["rows"] == len(pred) == results["rows"]["test"]
    # RecBole's XAUC and XGAUC agree with ours on the same predictions
    again = all_conventions(pred["label"], pred["prediction"], users=pred["user_id"], durations=pred["duration"])
    assert test["xauc"] == pytest.approx(again["xauc"], abs=2e-6)
    assert test["xgauc"] == pytest.approx(again["xgauc"], abs=2e-6)
    # the block convention follows the predictions file's order
    assert test["xauc_blocks"] == pytest.approx(again["xauc_blocks"], abs=1e-4)


def test_leaderboard_shows_the_chosen_xauc_convention(tmp_path):
    from recbole_lda.cli import leaderboard as leaderboard_cli
    from recbole_lda.cli import tune
    from recbole_lda.report import leaderboard
    from tests.test_leaderboard import write_fake_results

    write_fake_results(tmp_path)
    plain = leaderboard.build(str(tmp_path)).markdown
    assert "XAUC: ours: exact" in plain
    # the fake runs carry only RecBole's keys: the DADF column is empty but labelled
    dadf = leaderboard.build(str(tmp_path), xauc="xauc_dadf")
    assert "XAUC (dadf): DADF:" in dadf.markdown and "XAUC (dadf) |" in dadf.markdown
    assert "xauc_dadf_mean" in dadf.table
    with pytest.raises(ValueError, match="--xauc=auc"):
        leaderboard.build(str(tmp_path), xauc="auc")
    with pytest.raises(SystemExit):
        leaderboard_cli.main(["--output_dir", str(tmp_path), "--xauc=auc"])
    with pytest.raises(SystemExit):
        tune.main(["--leaderboard_only", f"--output_dir={tmp_path}", "--xauc=auc"])
    assert tune.main(["--leaderboard_only", f"--output_dir={tmp_path}", "--xauc=xauc_blocks"]) == 0


def test_summary_records_carry_every_convention(runs):
    from recbole_lda.report.tables import run_record, summarise

    results, _ = runs["dadf"]
    record = run_record(results, "synthetic", "D2Q", 0)
    for key in ("xauc", "xauc_dadf", "xauc_cwm", "xauc_blocks", "xgauc", "xgauc_cwm"):
        assert record[key] == results["test_result"][key]
    assert summarise([record])["xauc_dadf_mean"].iloc[0] == results["test_result"]["xauc_dadf"]
