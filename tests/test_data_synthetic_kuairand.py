"""synthetic_kuairand: KuaiRand-27K's raw format at any size (files, headers, parts, periods),
determinism across chunkings, unknown durations and duplicates, and the oracle being the
true conditional median of the logged plays."""

import filecmp
import os

import numpy as np
import pandas as pd
import pytest

import dataset_prep
from dataset_prep import kuairand, synthetic_kuairand as sk
from recbole_lda.cli.prepare import dataset_config

LOG_HEADER = ("user_id,video_id,date,hourmin,time_ms,is_click,is_like,is_follow,is_comment,is_forward,is_hate,long_view,"
              "play_time_ms,duration_ms,profile_stay_time,comment_stay_time,is_profile_enter,is_rand,tab")
LOGS = ["log_standard_4_08_to_4_21_27k_part1.csv", "log_standard_4_08_to_4_21_27k_part2.csv",
        "log_standard_4_22_to_5_08_27k_part1.csv", "log_standard_4_22_to_5_08_27k_part2.csv"]


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sk") / "raw"
    sk.generate(str(folder), rows=40_000, users=200, items=5000, seed=3)
    return folder


@pytest.fixture(scope="module")
def logs(raw):
    return pd.concat([pd.read_csv(raw / name).assign(file=name) for name in LOGS], ignore_index=True)


def test_files_headers_parts_and_periods(raw, logs):
    assert sorted(os.listdir(raw)) == sorted(LOGS + ["generator.json", "latent.npz", "user_features_27k.csv",
                                                     "video_features_basic_27k.csv"])
    for name in LOGS:
        assert (raw / name).read_text().split("\n", 1)[0] == LOG_HEADER  # each part has its header
    assert len(logs) == 40_000
    early = logs["file"].str.contains("4_08_to_4_21")
    assert logs.loc[early, "date"].between(20220408, 20220421).all() and logs.loc[~early, "date"].between(20220422, 20220508).all()
    assert (logs.loc[logs["file"].str.endswith("part1.csv"), "user_id"] < 100).all()
    assert (logs.loc[logs["file"].str.endswith("part2.csv"), "user_id"] >= 100).all()
    local_hour = (logs["time_ms"] + 8 * 3_600_000) // 3_600_000 % 24
    assert (logs["hourmin"] == local_hour * 100).all() and logs["tab"].between(0, 14).all()
    users = pd.read_csv(raw / "user_features_27k.csv")
    videos = pd.read_csv(raw / "video_features_basic_27k.csv")
    assert users.shape == (200, 31) and list(users.columns[:2]) == ["user_id", "user_active_degree"]
    assert list(videos.columns) == sk.VIDEO_COLUMNS and videos["video_id"].tolist() == list(range(5000))
    # the logs' known durations are the videos' durations; 8.46% of the rows (by video) have none
    known = logs[logs["duration_ms"] > 0]
    assert (known["duration_ms"].to_numpy() == videos["video_duration"].to_numpy()[known["video_id"]]).all()
    assert (logs["duration_ms"] == 0).mean() == pytest.approx(sk.UNKNOWN_DURATION_SHARE, abs=0.03)
    assert logs.duplicated(["user_id", "video_id", "time_ms", "play_time_ms", "duration_ms"]).any()


def test_converter_reads_it(raw):
    tables = kuairand.convert(str(raw), kuairand.read_options(dataset_config("synthetic_kuairand", {})))
    assert tables.rows_read == 40_000 and tables.rows_dropped["duplicate row"] > 0
    assert tables.field_types["tag"] == "token_seq" and tables.item["tag"].str.fullmatch(r"\d+( \d+){0,2}").all()


def test_deterministic_across_chunkings(tmp_path, raw, monkeypatch):
    monkeypatch.setattr(sk, "CHUNK_ROWS", 3000)
    monkeypatch.setattr(sk, "VIDEO_CHUNK", 700)
    sk.generate(str(tmp_path / "a"), rows=40_000, users=200, items=5000, seed=3)
    files = LOGS + ["user_features_27k.csv", "video_features_basic_27k.csv"]
    match, _, _ = filecmp.cmpfiles(tmp_path / "a", raw, files, shallow=False)
    assert match[-2:] == files[-2:]  # the feature files do not depend on the chunking
    sk.generate(str(tmp_path / "b"), rows=40_000, users=200, items=5000, seed=3)
    assert filecmp.cmpfiles(tmp_path / "a", tmp_path / "b", files, shallow=False)[0] == files  # same seed, same bytes


def test_oracle_is_the_conditional_median(raw, logs):
    """Half of the plays fall below their row's oracle median (the probability integral
    transform of the generating distribution), and the oracle beats the best constant."""
    known = logs[logs["duration_ms"] > 0]
    oracle = sk.oracle(str(raw), known["user_id"].to_numpy(), known["video_id"].to_numpy())
    play = known["play_time_ms"].to_numpy() / 1000
    assert (play < oracle).mean() == pytest.approx(0.5, abs=0.015)
    assert np.abs(play - oracle).mean() < 0.8 * np.abs(play - np.median(play)).mean()
    with pytest.raises(ValueError, match="video ids must be in"):
        sk.oracle(str(raw), np.array([0]), np.array([5000]))


def test_dataset_runs_through_prepare_with_oracle(tmp_path):
    config = dataset_config("synthetic_kuairand", {"data_path": str(tmp_path), "synthetic_rows": 5000,
                                                   "synthetic_users": 50, "synthetic_items": 800})
    prepared = dataset_prep.prepare(config)
    test = pd.read_csv(os.path.join(prepared.path, "synthetic_kuairand.test.inter"), sep="\t")
    oracle = dataset_prep.oracle_predictions(dict(config, data_path=prepared.path), test["user_id:token"], test["item_id:token"])
    assert oracle.shape == (len(test),) and (oracle > 0).all()
    with pytest.raises(ValueError, match="generated with"):
        dataset_prep.prepare(config | {"raw_data_path": prepared.meta["raw_dir"], "synthetic_seed": 1})
