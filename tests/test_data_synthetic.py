"""Synthetic generator: KuaiRec raw format, calibrated marginals, determinism, chunking, oracle."""

import filecmp
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import dataset_prep
from dataset_prep import synthetic

ROOT = Path(__file__).resolve().parents[1]


def config(tmp_path, **overrides):
    """properties/dataset/synthetic.yaml plus the split keys of properties/overall.yaml."""
    values = yaml.safe_load((ROOT / "properties/dataset/synthetic.yaml").read_text())
    values.update(dataset="synthetic", data_path=str(tmp_path / "synthetic"), split="random",
                  split_ratio=[0.8, 0.1, 0.1], split_seed=2020, split_dates=None)
    values.update(overrides)
    return values


@pytest.fixture(scope="module")
def large_raw(tmp_path_factory):
    """400,000 rows over 4,000 users and 8,000 videos: enough for the marginals."""
    folder = tmp_path_factory.mktemp("synthetic") / "raw"
    synthetic.generate(str(folder), rows=400_000, users=4000, items=8000, seed=2020)
    return folder


@pytest.fixture(scope="module")
def matrix(large_raw):
    return pd.read_csv(large_raw / "big_matrix.csv")


def test_marginals_match_kuairec(matrix):
    """Watch ratio mean 0.85, quartiles 0.31 / 0.72 / 1.16; duration median 9.6 s, mean 14.6 s,
    within 0.14 s .. 315.072 s. Tolerance 6% relative (finite users and videos: over seeds 0..4
    the largest deviation was 3.9%)."""
    ratio = matrix["play_duration"] / matrix["video_duration"]
    duration = matrix["video_duration"] / 1000
    measured = [ratio.mean(), *ratio.quantile([0.25, 0.5, 0.75]), duration.median(), duration.mean()]
    np.testing.assert_allclose(measured, [0.85, 0.31, 0.72, 1.16, 9.6, 14.6], rtol=0.06)
    assert duration.min() >= 0.14 and duration.max() <= 315.072


def test_watch_ratio_is_multi_peaked_and_depends_on_duration(matrix):
    ratio = matrix["play_duration"] / matrix["video_duration"]
    h, _ = np.histogram(ratio, bins=np.arange(0, 2.01, 0.1))
    assert h[0] > h[1]  # quick skips near 0
    assert h[3] > h[6] < h[9]  # a partial-watch bump, a dip, complete plays near 1
    assert h[9] > h[13] and (ratio > 1.5).mean() > 0.1  # replays above 1
    short, long = matrix["video_duration"] < 5000, matrix["video_duration"] > 30000
    assert ratio[short].mean() > ratio[long].mean() + 0.3


def test_raw_format_is_kuairec(large_raw, matrix):
    assert (large_raw / "big_matrix.csv").open().readline() == synthetic.MATRIX_HEADER
    sample = matrix.sample(1000, random_state=0)
    local = pd.to_datetime((sample["timestamp"] * 1000).round().astype(np.int64), unit="ms") + pd.Timedelta(hours=8)
    assert (local.dt.strftime("%Y-%m-%d %H:%M:%S.%f").str[:-3] == sample["time"]).all()
    assert (local.dt.strftime("%Y%m%d").astype(int) == sample["date"]).all()
    assert matrix["date"].between(20200705, 20200905).all()
    np.testing.assert_allclose(sample["watch_ratio"], sample["play_duration"] / sample["video_duration"], atol=1e-6)
    assert matrix[["play_duration", "video_duration"]].dtypes.tolist() == [np.int64, np.int64]
    order = matrix[["user_id", "timestamp"]]
    assert order.equals(order.sort_values(["user_id", "timestamp"], kind="stable"))

    user = pd.read_csv(large_raw / "user_features.csv")
    assert len(user.columns) == 31 and list(user.columns[-18:]) == [f"onehot_feat{k}" for k in range(18)]
    assert user["onehot_feat12"].dtype == float and user["onehot_feat12"].isna().any()
    daily = pd.read_csv(large_raw / "item_daily_features.csv")
    assert len(daily.columns) == 58 and daily.columns[-1] == "cancel_collect_user_num" and len(daily) == 8000
    tags = pd.read_csv(large_raw / "item_categories.csv")["feat"]
    assert tags.str.fullmatch(r"\[\d+(, \d+){0,3}\]").all()


def test_features_carry_latent_signal(large_raw):
    params = synthetic.load_params(large_raw)
    user = pd.read_csv(large_raw / "user_features.csv")
    latent = pd.Series(params["user_factors"][:, 0]).groupby(user["onehot_feat0"]).mean()
    assert latent.is_monotonic_increasing and latent.iloc[-1] - latent.iloc[0] > 1
    daily = pd.read_csv(large_raw / "item_daily_features.csv")
    v = params["item_factors"][daily["video_id"]]
    by_author = pd.DataFrame(v).groupby(daily["author_id"]).transform("mean").to_numpy()
    assert np.corrcoef(v[:, 0], by_author[:, 0])[0, 1] > 0.7  # videos of an author are alike


def test_deterministic_and_chunked(tmp_path, monkeypatch):
    monkeypatch.setattr(synthetic, "CHUNK_ROWS", 3000)  # 7 chunks
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        synthetic.generate(str(tmp_path / name), rows=20_000, users=300, items=500, seed=seed)
    files = ["big_matrix.csv", "user_features.csv", "item_categories.csv", "item_daily_features.csv", "latent.npz"]
    match, mismatch, errors = filecmp.cmpfiles(tmp_path / "a", tmp_path / "b", files, shallow=False)
    assert match == files
    assert not filecmp.cmp(tmp_path / "a" / "big_matrix.csv", tmp_path / "c" / "big_matrix.csv", shallow=False)
    m = pd.read_csv(tmp_path / "a" / "big_matrix.csv")
    assert len(m) == 20_000 and m["user_id"].is_monotonic_increasing
    assert m.groupby("user_id")["timestamp"].apply(lambda t: t.is_monotonic_increasing).all()


def test_raw_folder_keyed_and_atomic(tmp_path, monkeypatch):
    small = config(tmp_path, synthetic_rows=5000, synthetic_users=100, synthetic_items=200)
    opts = synthetic.read_options(small)
    default = synthetic.default_raw_dir(small["data_path"], opts)
    assert default != synthetic.default_raw_dir(small["data_path"], opts | {"synthetic_seed": 1})

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic, "write_matrix", interrupted)
    with pytest.raises(KeyboardInterrupt):
        dataset_prep.prepare(small)
    assert not os.path.exists(default) and os.listdir(small["data_path"]) == []
    monkeypatch.undo()
    prepared = dataset_prep.prepare(small)
    assert prepared.meta["raw_dir"] == os.path.abspath(default) and prepared.meta["rows_read"] == 5000

    with pytest.raises(ValueError, match="generated with"):
        dataset_prep.prepare(small | {"raw_data_path": default, "synthetic_seed": 1})
    with pytest.raises(ValueError, match="synthetic_rows must be a positive integer"):
        synthetic.read_options(small | {"synthetic_rows": 0})


def test_median_minimises_absolute_error_on_draws():
    rng = np.random.default_rng(0)
    params = synthetic.draw_params(rng, n_users=50, n_items=50)
    users, items = rng.integers(0, 50, 6), rng.integers(0, 50, 6)
    weights, loc = synthetic.mixture(params, users, items)
    median = synthetic.median_ratio(weights, loc, params["log_ratio_sigma"])
    for k in range(6):
        draws = synthetic.sample_ratio(
            np.repeat(weights[k : k + 1], 40_000, axis=0), np.repeat(loc[k : k + 1], 40_000, axis=0),
            params["log_ratio_sigma"], rng,
        )
        assert np.median(draws) == pytest.approx(median[k], rel=0.03)
        mae = {c: np.abs(draws - c).mean() for c in (median[k], 0.9 * median[k], 1.1 * median[k], draws.mean())}
        assert min(mae, key=mae.get) == median[k]


def test_oracle_beats_mean_on_default_data(tmp_path):
    """On the default synthetic data, the oracle median is closer than the global mean, and
    closer than the best duration-only predictor (so users and videos matter)."""
    cfg = config(tmp_path)
    prepared = dataset_prep.prepare(cfg)
    test = pd.read_csv(os.path.join(prepared.path, "synthetic.test.inter"), sep="\t")
    label, duration = test["label:float"].to_numpy(), test["duration:float"].to_numpy()
    cfg["data_path"] = prepared.path  # as the training entry point does before asking
    oracle = dataset_prep.oracle_predictions(cfg, test["user_id:token"], test["item_id:token"])
    oracle_mae = np.abs(label - oracle).mean()
    mean_mae = np.abs(label - label.mean()).mean()
    duration_only_mae = np.abs(label - np.median(label / duration) * duration).mean()
    assert oracle_mae < 0.8 * mean_mae and oracle_mae < duration_only_mae
    with pytest.raises(ValueError, match="user ids must be in"):
        dataset_prep.oracle_predictions(cfg, [10**6], [0])
