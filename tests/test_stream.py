"""Streaming conversion (dataset_prep/stream*.py) against today's in-memory conversion on the
same raw files, with chunks small enough to make many chunks and buckets; the random split's
exact proportions; a conversion killed midway (SIGKILL) and rerun; the prepare command.
Set KUAIRAND_SUBSET_DIR to the real 27K subset's folder to compare on it too."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import dataset_prep
from dataset_prep import stream_split
from dataset_prep.stream_formats import ITEM_SCHEMA
from dataset_prep.stream_prepare import prepare_stream
from recbole_lda.cli.prepare import dataset_config
from test_data_kuairand import write_27k, write_log, write_user_features, write_video_features

COUNTS = ("rows_read", "rows_kept", "rows_dropped", "missing_values", "users", "items", "fields")
GENERATED = dict(synthetic_rows=20_000, synthetic_users=120, synthetic_items=3000, synthetic_seed=7)
TIME_SPLIT = dict(split="time", split_dates=[20220501, 20220505])


def configs(tmp_path, dataset="synthetic_kuairand", **overrides):
    """The config of a run (as the prepare command builds it) with a small chunk."""
    overrides = {"data_path": str(tmp_path), "stream_chunk_rows": 300} | overrides  # data in tmp_path/<dataset>
    return dataset_config(dataset, overrides)


def streamed_split(folder, split):
    files = sorted((Path(folder) / split).glob("part-*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files]).to_pandas()


def atomic_split(folder, dataset, split):
    frame = pd.read_csv(Path(folder) / f"{dataset}.{split}.inter", sep="\t")
    return frame.rename(columns=lambda c: c.split(":")[0])


def sorted_rows(frame, columns):
    return frame[columns].sort_values(columns, kind="stable").reset_index(drop=True).astype("float64")


def both(config):
    return dataset_prep.prepare(config), prepare_stream(config)


def test_same_rows_counts_and_time_split_as_in_memory(tmp_path):
    config = configs(tmp_path, **GENERATED, **TIME_SPLIT)
    memory, streamed = both(config)
    assert streamed.meta["partitions"] > 10  # many buckets, many chunks per file
    for key in COUNTS + ("rows_per_split",):
        assert streamed.meta[key] == memory.meta[key], key
    assert streamed.meta["rows_dropped"]["duplicate row"] > 0
    columns = ["user_id", "item_id", "label", "duration", "hour", "tab"]
    for split in ("train", "valid", "test"):
        ours = streamed_split(streamed.path, split)
        pd.testing.assert_frame_equal(sorted_rows(ours, columns), sorted_rows(atomic_split(memory.path, "synthetic_kuairand", split), columns))
        day = ours["day"]
        assert {"train": day < 20220501, "valid": (day >= 20220501) & (day < 20220505), "test": day >= 20220505}[split].all()
    # id maps: the sorted raw ids; each row's index is its id's position
    users = pq.read_table(Path(streamed.path) / "user_ids.parquet").column(0).to_numpy()
    train = streamed_split(streamed.path, "train")
    assert np.all(np.diff(users) > 0) and len(users) == memory.meta["users"]
    assert (users[train["user_index"]] == train["user_id"]).all()
    cache = Path(config["data_path"]) / "converted" / memory.meta["conversion_key"]
    for name in ("user", "item"):
        ours, theirs = pq.read_table(Path(streamed.path) / f"{name}.parquet"), pq.read_table(cache / f"{name}.parquet")
        if name == "item":
            theirs = theirs.cast(ITEM_SCHEMA)
        assert ours.to_pydict() == theirs.select(ours.column_names).to_pydict(), name


def test_random_split_keeps_proportions_and_rows(tmp_path):
    config = configs(tmp_path, **GENERATED)
    memory, streamed = both(config)
    assert streamed.meta["rows_per_split"] == memory.meta["rows_per_split"]  # round(0.8 n), round(0.9 n) - ...
    columns = ["user_id", "item_id", "label", "duration", "hour", "tab"]
    ours = pd.concat([streamed_split(streamed.path, s) for s in ("train", "valid", "test")])
    theirs = pd.concat([atomic_split(memory.path, "synthetic_kuairand", s) for s in ("train", "valid", "test")])
    pd.testing.assert_frame_equal(sorted_rows(ours, columns), sorted_rows(theirs, columns))
    other = prepare_stream(dict(config, split_seed=1))
    assert other.meta["rows_per_split"] == streamed.meta["rows_per_split"]
    assert not streamed_split(other.path, "test").equals(streamed_split(streamed.path, "test"))


def test_exact_cuts_from_the_histogram():
    """The cut keys leave exactly k keys below, also when a cut falls inside a crowded bin."""
    rng = np.random.default_rng(0)
    keys = np.unique(np.concatenate([rng.integers(0, 2**63, 5000, dtype=np.int64).astype(np.uint64),
                                     np.uint64(7 << 48) + np.arange(3000, dtype=np.uint64)]))  # 3000 keys in one bin
    histogram = stream_split.top_histogram(keys)
    for cuts in ([0, len(keys)], [1234, 4321], [len(keys) - 1, len(keys)]):
        bins = stream_split.cut_bins(histogram, cuts)
        values = stream_split.cut_values(bins, {b: keys[(keys >> np.uint64(48)) == b] for b, _ in filter(None, bins)})
        assert [len(keys) if v is None else int((keys < v).sum()) for v in values] == cuts


def test_handmade_rules_duplicates_across_files_and_features(tmp_path):
    """Duplicates across two parts (the first kept), every rule, random logs, user and video
    features, imputed durations: the same as the in-memory converter, one bucket per row."""
    raw = write_27k(tmp_path / "raw")
    write_log(raw / "log_random_4_22_to_5_08_27k.csv", [(3, 104, 1000, 4000, 20220422, 9), (2, 101, 900, 0, 20220423, 9)])
    write_user_features(raw / "user_features_27k.csv")
    write_video_features(raw / "video_features_basic_27k.csv")
    for impute in (False, True):
        config = configs(tmp_path, "kuairand", raw_data_path=str(raw), stream_chunk_rows=1, split_ratio=[0.4, 0.3, 0.3],
                         kuairand_random_logs=True, kuairand_impute_duration=impute)
        memory, streamed = both(config)
        for key in COUNTS + ("rows_per_split",):
            assert streamed.meta[key] == memory.meta[key], key
        columns = ["user_id", "item_id", "label", "duration", "hour", "tab", "is_rand"]
        ours = pd.concat([streamed_split(streamed.path, s) for s in ("train", "valid", "test")])
        theirs = pd.concat([atomic_split(memory.path, "kuairand", s) for s in ("train", "valid", "test")])
        pd.testing.assert_frame_equal(sorted_rows(ours, columns), sorted_rows(theirs, columns))
        # video 101's rows without a duration (one per log kind) are kept only when imputed (5 s)
        assert sorted(ours["is_rand"]) == ([0, 0, 0, 0, 1, 1] if impute else [0, 0, 0, 1])
    assert streamed.meta["rows_dropped"]["duplicate row"] == 1


def test_bad_chunk_names_its_line(tmp_path):
    raw = tmp_path / "raw"
    lines = [(0, 100 + i, 1000, 2000, 20220408, 10) for i in range(200)]
    path = write_log(raw / "log_standard_4_08_to_4_21_27k_part1.csv", lines)
    text = path.read_text().splitlines()
    text[150] = text[150].replace(",20220408,", ",20221308,")
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(dataset_prep.RawDataError, match=r"column 'date', line 151: expected a YYYYMMDD date"):
        prepare_stream(configs(tmp_path, "kuairand", raw_data_path=str(raw), stream_chunk_rows=20))


def folder_bytes(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(Path(folder).rglob("*.parquet"))}


def test_killed_midway_and_rerun_gives_the_same_files(tmp_path):
    generated = dict(GENERATED, synthetic_rows=60_000)
    clean = prepare_stream(configs(tmp_path / "clean", **generated, stream_chunk_rows=500))
    raw = clean.meta["raw_dir"]
    command = [sys.executable, "-m", "recbole_lda", "prepare", "--dataset=synthetic_kuairand",
               f"--data_path={tmp_path / 'killed'}", f"--raw_data_path={raw}", "--stream_chunk_rows=500",
               *(f"--{k}={v}" for k, v in generated.items())]
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    streamed = tmp_path / "killed" / "synthetic_kuairand" / "streamed"
    deadline = time.monotonic() + 60
    while not list(streamed.glob("*.tmp-*/work/kept-*.arrow")) and time.monotonic() < deadline:
        time.sleep(0.005)  # kill it once pass 2 has begun
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL and list(streamed.glob("*.tmp-*"))  # it died half-way
    rerun = prepare_stream(configs(tmp_path / "killed", **generated, raw_data_path=raw, stream_chunk_rows=500))
    assert not list(streamed.glob("*.tmp-*"))  # the dead run's folder is removed
    assert folder_bytes(rerun.path) == folder_bytes(clean.path) and len(folder_bytes(clean.path)) > 10


def test_prepare_command_prints_the_folder(tmp_path):
    command = [sys.executable, "-m", "recbole_lda", "prepare", "--dataset=synthetic_kuairand",
               f"--data_path={tmp_path}", "--synthetic_rows=3000", "--synthetic_users=30", "--stream_chunk_rows=500"]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()
    assert (Path(out) / "meta.json").is_file() and Path(out).parent.name == "streamed"
    again = subprocess.run(command, capture_output=True, text=True, check=True)
    assert again.stdout.strip() == out and "streamed cache hit" in again.stderr
    bad = subprocess.run(command[:-1] + ["--stream_chunk_rows=0"], capture_output=True, text=True)
    assert bad.returncode != 0 and "--stream_chunk_rows=0: expected an integer >= 1" in bad.stderr


def test_kuairec_format_synthetic_same_as_in_memory(tmp_path):
    """The default synthetic dataset (KuaiRec's format, kuairec.convert's rules): same rows,
    counts, time split and features."""
    config = configs(tmp_path, "synthetic", synthetic_rows=20_000, synthetic_users=150, synthetic_items=600,
                     split="time", split_dates=[20200820, 20200830])
    memory, streamed = both(config)
    assert streamed.meta["partitions"] > 10
    for key in COUNTS + ("rows_per_split",):
        assert streamed.meta[key] == memory.meta[key], key
    for split in ("train", "valid", "test"):
        columns = ["user_id", "item_id", "label", "duration"]
        pd.testing.assert_frame_equal(sorted_rows(streamed_split(streamed.path, split), columns),
                                      sorted_rows(atomic_split(memory.path, "synthetic", split), columns))
    cache = Path(config["data_path"]) / "converted" / memory.meta["conversion_key"]
    for name in ("user", "item"):
        assert pq.read_table(Path(streamed.path) / f"{name}.parquet").equals(pq.read_table(cache / f"{name}.parquet"))


def test_kuairec_duplicates_with_missing_timestamps(tmp_path):
    """small_matrix's rows without date and timestamp: duplicates among them are found (NaN
    equals NaN, as in pandas), and they keep day 0 (left out by a time split)."""
    from test_data_kuairec import HEADER as KUAIREC_HEADER, ROWS, matrix_line

    lines = [KUAIREC_HEADER] + [matrix_line(*row) for row in ROWS] + [
        "14,149,1000,2000,,,,0.5", "14,149,1000,2000,,,,0.5", "14,149,1000,2000,,,,", "14,150,1000,2000,,,,0.5"]
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "small_matrix.csv").write_text("\n".join(lines) + "\n")
    config = configs(tmp_path, "kuairec", raw_data_path=str(raw), kuairec_matrix="small", stream_chunk_rows=1,
                     split_ratio=[0.5, 0.25, 0.25])
    memory, streamed = both(config)
    for key in COUNTS + ("rows_per_split",):
        assert streamed.meta[key] == memory.meta[key], key
    assert streamed.meta["rows_dropped"]["duplicate row"] == 2 and streamed.meta["partitions"] > 1
    days = pd.concat([streamed_split(streamed.path, s) for s in ("train", "valid", "test")])["day"]
    assert (days == 0).sum() == 3


@pytest.mark.skipif(not os.environ.get("KUAIRAND_SUBSET_DIR"), reason="KUAIRAND_SUBSET_DIR not set")
def test_real_subset(tmp_path):
    config = configs(tmp_path, "kuairand", raw_data_path=os.environ["KUAIRAND_SUBSET_DIR"], stream_chunk_rows=2000,
                     split="time", split_dates=[20220416, 20220417])
    memory, streamed = both(config)
    for key in COUNTS + ("rows_per_split",):
        assert streamed.meta[key] == memory.meta[key], key


def test_id_set_merges_to_sorted_unique_ids():
    ids = stream_split.IdSet()
    rng = np.random.default_rng(0)
    parts = [rng.integers(0, 3_000_000, 100_000) for _ in range(30)]  # several merges (pending > 2**20)
    for part in parts:
        ids.add(part)
    merged = ids.merge()
    assert merged.dtype == np.int32 and np.array_equal(merged, np.unique(np.concatenate(parts)))
    wide = stream_split.IdSet()
    wide.add(np.array([5, 2**40]))
    wide.add(np.array([3, 5]))
    assert wide.merge().tolist() == [3, 5, 2**40] and wide.ids.dtype == np.int64
