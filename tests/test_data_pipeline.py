"""The preparation pipeline: splits, caches, atomic writes, and the atomic files RecBole reads."""

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import dataset_prep
from dataset_prep import pipeline, prepare, split

ROOT = Path(__file__).resolve().parents[1]
N = 1000
DAYS = [20200705 + d for d in range(20)]  # 2020-07-05 .. 2020-07-24


def write_raw(folder, rows=N):
    """A KuaiRec-format big_matrix.csv whose video_id is the row number (so rows can be traced)
    and whose date cycles over DAYS; play = video_id + 1 ms, duration 10 s."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["user_id,video_id,play_duration,video_duration,time,date,timestamp,watch_ratio"]
    for i in range(rows):
        day = DAYS[i % len(DAYS)]
        ts = 1593878400 + (day - 20200705) * 86400 + i
        time = pd.Timestamp(ts + 8 * 3600, unit="s").strftime("%Y-%m-%d %H:%M:%S.000")
        lines.append(f"{i % 37},{i},{i + 1},10000,{time},{day},{ts}.0,{(i + 1) / 10000:.6f}")
    (folder / "big_matrix.csv").write_text("\n".join(lines) + "\n")
    return folder


def make_config(tmp_path, **overrides):
    config = yaml.safe_load((ROOT / "properties/dataset/kuairec.yaml").read_text())
    config.update(
        dataset="kuairec", data_path=str(tmp_path / "kuairec"), raw_data_path=str(tmp_path / "raw"),
        split="random", split_ratio=[0.8, 0.1, 0.1], split_seed=7, split_dates=None,
    )
    config.update(overrides)
    return config


def read_split(prepared, part, dataset="kuairec"):
    return pd.read_csv(os.path.join(prepared.path, f"{dataset}.{part}.inter"), sep="\t")


def test_random_split(tmp_path):
    write_raw(tmp_path / "raw")
    prepared = prepare(make_config(tmp_path))
    parts = {p: read_split(prepared, p) for p in split.SPLITS}
    assert {p: len(f) for p, f in parts.items()} == {"train": 800, "valid": 100, "test": 100}
    assert prepared.meta["rows_per_split"] == {"train": 800, "valid": 100, "test": 100}
    ids = np.concatenate([f["item_id:token"].to_numpy() for f in parts.values()])
    assert sorted(ids) == list(range(N))  # disjoint and complete
    assert list(parts["train"].columns) == ["user_id:token", "item_id:token", "label:float", "duration:float"]
    np.testing.assert_allclose(parts["train"]["label:float"], (parts["train"]["item_id:token"] + 1) / 1000)

    again = prepare(make_config(tmp_path / "elsewhere", raw_data_path=str(tmp_path / "raw")))
    assert read_split(again, "valid").equals(parts["valid"])  # same split_seed, same split
    other = prepare(make_config(tmp_path, split_seed=8))
    assert not set(read_split(other, "test")["item_id:token"]) == set(parts["test"]["item_id:token"])


def test_time_split(tmp_path):
    write_raw(tmp_path / "raw")
    prepared = prepare(make_config(tmp_path, split="time", split_dates=[20200715, 20200720]))
    day_of = {i: DAYS[i % len(DAYS)] for i in range(N)}
    days = {p: {day_of[i] for i in read_split(prepared, p)["item_id:token"]} for p in split.SPLITS}
    assert days["train"] == set(DAYS[:10])  # 0705..0714
    assert days["valid"] == set(DAYS[10:15])  # 0715..0719
    assert days["test"] == set(DAYS[15:])  # 0720..0724
    assert prepared.meta["rows_per_split"] == {"train": 500, "valid": 250, "test": 250}


def test_split_validation(tmp_path):
    write_raw(tmp_path / "raw")
    bad = [
        ({"split_ratio": [0.8, 0.1, 0.2]}, "summing to 1"),
        ({"split_ratio": [0.9, 0.1]}, "three non-negative shares"),
        ({"split": "user"}, "split must be 'random' or 'time'"),
        ({"split": "time", "split_dates": [20200720, 20200715]}, "must be increasing"),
        ({"split": "time", "split_dates": [20201340, 20201350]}, "is not a YYYYMMDD date"),
        ({"split": "time"}, "'split_dates' is not set"),
        ({"split": "time", "split_dates": [20200801, 20200802]}, "the valid split is empty"),
        ({"split_ratio": [1.0, 0.0, 0.0]}, "the valid split is empty"),
    ]
    for overrides, message in bad:
        with pytest.raises(ValueError, match=message):
            prepare(make_config(tmp_path, **overrides))


def test_caches(tmp_path):
    raw = write_raw(tmp_path / "raw")
    first = prepare(make_config(tmp_path))
    assert first.meta["conversion_cache_hit"] is False and first.meta["prepared_cache_hit"] is False
    assert json.loads((Path(first.path) / "meta.json").read_text())["rows_kept"] == N

    hit = prepare(make_config(tmp_path))
    assert hit.path == first.path and hit.meta["prepared_cache_hit"] is True

    resplit = prepare(make_config(tmp_path, split_seed=99))
    assert resplit.path != first.path and resplit.meta["conversion_cache_hit"] is True

    option = prepare(make_config(tmp_path, max_watch_ratio=0.05))
    assert option.meta["conversion_cache_hit"] is False and option.meta["rows_kept"] == 500

    copy = shutil.copytree(raw, tmp_path / "raw2")
    moved = prepare(make_config(tmp_path, raw_data_path=str(copy)))
    assert moved.meta["conversion_cache_hit"] is False and moved.path != first.path

    write_raw(raw, rows=N - 10)
    os.utime(raw / "big_matrix.csv", ns=(1, 1))  # an edited file (its size changed), even with an old mtime
    changed = prepare(make_config(tmp_path))
    assert changed.meta["conversion_cache_hit"] is False and changed.meta["rows_kept"] == N - 10


def test_no_half_written_folders(tmp_path, monkeypatch):
    write_raw(tmp_path / "raw")
    data = tmp_path / "kuairec"
    real_write = split.write_atomic_file
    calls = []

    def failing_write(path, table, types):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        real_write(path, table, types)

    monkeypatch.setattr(split, "write_atomic_file", failing_write)
    with pytest.raises(OSError, match="disk full"):
        prepare(make_config(tmp_path))
    assert os.listdir(data / "prepared") == []  # the temporary folder was removed, nothing looks complete
    monkeypatch.setattr(split, "write_atomic_file", real_write)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    shutil.rmtree(data / "converted")
    monkeypatch.setattr(pipeline.pq, "write_table", interrupted)  # while writing the conversion cache
    with pytest.raises(KeyboardInterrupt):
        prepare(make_config(tmp_path))
    assert os.listdir(data / "converted") == []
    monkeypatch.undo()

    # A run killed outright leaves `<folder>.tmp-<pid>`: never taken as complete, removed later.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    prepared = prepare(make_config(tmp_path))
    stale = Path(f"{prepared.path}.tmp-{dead.stdout.strip()}")
    shutil.rmtree(prepared.path)
    stale.mkdir()
    (stale / "kuairec.train.inter").write_text("half")
    again = prepare(make_config(tmp_path))
    assert again.meta["prepared_cache_hit"] is False and not stale.exists()
    assert len(read_split(again, "train")) == 800


def test_implausible_durations_are_dropped_and_counted_in_meta(tmp_path, caplog):
    """100 rows whose video lasts 10^12 ms (a corrupt value) never reach the split files."""
    raw = write_raw(tmp_path / "raw")
    path = raw / "big_matrix.csv"
    lines = path.read_text().splitlines()
    for k in range(1, 101):
        fields = lines[k].split(",")
        fields[3] = str(10**12)
        lines[k] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    with caplog.at_level(logging.INFO):
        prepared = prepare(make_config(tmp_path))
    rule = "duration > 3600.0 s (max_plausible_duration)"
    meta = json.loads((Path(prepared.path) / "meta.json").read_text())
    assert meta["rows_dropped"][rule] == 100 and meta["rows_kept"] == N - 100
    assert sum(meta["rows_dropped"].values()) == 100
    parts = [read_split(prepared, p) for p in split.SPLITS]
    assert max(part["duration:float"].max() for part in parts) == 10.0
    assert min(part["item_id:token"].min() for part in parts) == 100  # video_id = row: rows 0..99 went
    assert [r.levelname for r in caplog.records if r.name == "dataset_prep.raw" and rule in r.getMessage()] == ["WARNING"]


def damage(folder, name, how):
    path = folder / name
    if how == "delete":
        path.unlink()
    elif how == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:  # corrupt: same size, unreadable (parquet's closing magic bytes overwritten)
        data = path.read_bytes()
        path.write_bytes(data[:-4] + b"XXXX")


@pytest.mark.parametrize(
    "converted, prepared, lines",
    [
        (("inter.parquet", "truncate"), ("meta.json", "delete"), 2),  # the case: both caches damaged
        (None, ("meta.json", "delete"), 1),
        (None, ("kuairec.valid.inter", "delete"), 1),
        (None, ("kuairec.train.inter", "truncate"), 1),
        (("inter.parquet", "corrupt"), ("meta.json", "delete"), 2),
        (("tables.json", "delete"), ("meta.json", "delete"), 2),
        (("inter.parquet", "delete"), ("meta.json", "truncate"), 2),
    ],
    ids=["truncated-parquet", "deleted-meta", "missing-file", "truncated-file", "corrupt-parquet", "deleted-tables-json",
         "deleted-parquet"],
)
def test_damaged_cache_is_logged_and_rebuilt(tmp_path, caplog, converted, prepared, lines):
    write_raw(tmp_path / "raw")
    first = prepare(make_config(tmp_path))
    before = {p: read_split(first, p) for p in split.SPLITS}
    cache = next((tmp_path / "kuairec" / "converted").iterdir())
    if converted:
        damage(cache, *converted)
    damage(Path(first.path), *prepared)

    with caplog.at_level(logging.INFO):
        again = prepare(make_config(tmp_path))
    warnings = [r.getMessage() for r in caplog.records if r.getMessage().startswith("damaged cache")]
    assert len(warnings) == lines and all(m.startswith("damaged cache ") and "building it again" in m for m in warnings)
    assert warnings[0].startswith(f"damaged cache {first.path}: {prepared[0]}")
    if converted:
        assert warnings[1].startswith(f"damaged cache {cache}: {converted[0]}")
    assert again.path == first.path and not again.meta["prepared_cache_hit"]
    assert again.meta["conversion_cache_hit"] is (converted is None)
    assert all(read_split(again, p).equals(before[p]) for p in split.SPLITS)
    assert sorted(os.listdir(tmp_path / "kuairec" / "prepared")) == [Path(first.path).name]  # nothing left aside

    caplog.clear()
    with caplog.at_level(logging.INFO):
        third = prepare(make_config(tmp_path))  # whole again: a plain cache hit
    assert third.meta["prepared_cache_hit"] and not [r for r in caplog.records if r.getMessage().startswith("damaged cache")]
    assert prepare(make_config(tmp_path, split_seed=8)).meta["conversion_cache_hit"]


def test_recbole_reads_prepared_folder(tmp_path):
    from recbole.config import Config
    from recbole.data import create_dataset

    from test_data_kuairec import write_item_features, write_matrix, write_user_features

    raw = tmp_path / "raw"
    rows = [(u, v, 1000 + 37 * u + v, 5000 + 100 * v, 20200705 + (u + v) % 5) for u in range(3) for v in (10, 11, 12)]
    write_matrix(raw, rows=rows * 4)  # repeated rows are duplicates: 9 kept
    write_user_features(raw)
    write_item_features(raw)
    prepared = prepare(make_config(tmp_path, split_ratio=[0.6, 0.2, 0.2]))
    assert prepared.meta["rows_dropped"]["duplicate row"] == 27
    assert sorted(os.listdir(prepared.path)) == [
        "kuairec.item", "kuairec.test.inter", "kuairec.train.inter", "kuairec.user", "kuairec.valid.inter", "meta.json"
    ]

    config = Config(
        model="FM", dataset="kuairec",
        config_dict={
            "data_path": str(tmp_path), "benchmark_filename": ["train", "valid", "test"], "load_col": None,
            "threshold": None, "LABEL_FIELD": "label", "train_neg_sample_args": None, "show_progress": False,
            "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "RO", "group_by": None, "mode": "labeled"},
        },
    )
    config["data_path"] = prepared.path
    dataset = create_dataset(config)
    train, valid, test = dataset.build()
    assert (len(train), len(valid), len(test)) == (5, 2, 2)
    inter = dataset.inter_feat
    users = dataset.id2token("user_id", inter["user_id"].numpy()).astype(int)
    items = dataset.id2token("item_id", inter["item_id"].numpy()).astype(int)
    np.testing.assert_allclose(inter["label"].numpy(), (1000 + 37 * users + items) / 1000, rtol=1e-6)
    np.testing.assert_allclose(inter["duration"].numpy(), (5000 + 100 * items) / 1000, rtol=1e-6)
    assert dataset.field2type["tags"].value == "token_seq" and dataset.field2seqlen["tags"] == 2
    tags = dataset.item_feat["tags"][dataset.token2id("item_id", "10")].tolist()
    assert [dataset.id2token("tags", t) for t in tags] == ["27", "9"]
    assert dataset.field2type["fans_user_num"].value == "float"
    assert set(dataset.field2id_token["user_active_degree"]) >= {"high_active", "full_active", "UNKNOWN"}


def test_unknown_dataset_and_registry():
    assert set(dataset_prep.CONVERTERS) >= {"synthetic", "kuairec"}
    with pytest.raises(ValueError, match="no converter for dataset 'nope'"):
        prepare({"dataset": "nope"})
    assert dataset_prep.oracle_predictions({"dataset": "kuairec"}, [0], [0]) is None
