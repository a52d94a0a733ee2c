"""KuaiRand converter: values in seconds, filtering rules with counts, log parts and variants,
optional columns, features, duration imputation, missing files, and a short end-to-end run.
The raw files are small CSVs in KuaiRand's format (official 19-column logs, and the 16-column
logs of the shared 27K subset)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from dataset_prep import RawDataError, RawDataMissing, kuairand, prepare

ROOT = Path(__file__).resolve().parents[1]
HEADER = (
    "user_id,video_id,date,hourmin,time_ms,is_click,is_like,is_follow,is_comment,is_forward,is_hate,long_view,"
    "play_time_ms,duration_ms,profile_stay_time,comment_stay_time,is_profile_enter,is_rand,tab"
)
# The shared 27K subset lacks profile_stay_time, is_rand and tab.
SUBSET_HEADER = (
    "user_id,video_id,date,hourmin,time_ms,is_click,is_like,is_follow,is_comment,is_forward,is_hate,long_view,"
    "play_time_ms,duration_ms,comment_stay_time,is_profile_enter"
)
VIDEO_HEADER = (
    "video_id,author_id,video_type,upload_dt,upload_type,visible_status,video_duration,server_width,server_height,"
    "music_id,music_type,tag"
)

# (user, video, play ms, duration ms, date, local hour)
PART1 = [
    (0, 100, 15000, 10000, 20220408, 10),  # kept: 15 s of a 10 s video
    (0, 101, 5000, 0, 20220408, 11),  # unknown duration
    (1, 100, 3000, -5, 20220408, 12),  # negative duration
    (1, 102, -1, 8000, 20220409, 13),  # negative play
]
PART2 = [
    (1, 103, 0, 8000, 20220409, 14),  # zero play
    (2, 101, 2500, 5000, 20220409, 23),  # kept
    (0, 100, 15000, 10000, 20220408, 10),  # duplicate of the first row of part 1
    (2, 103, 8000, 8000, 20220410, 0),  # kept
]


def log_line(user, video, play, duration, date, hour, header=HEADER, tab=3, minute=17):
    """One log row: time_ms is `hour:minute` local time (UTC+8) on `date`."""
    midnight_ms = int(pd.Timestamp(str(date)).timestamp() * 1000) - 8 * 3_600_000
    values = {
        "user_id": user, "video_id": video, "date": date, "hourmin": hour * 100,
        "time_ms": midnight_ms + (hour * 60 + minute) * 60_000 + 123, "is_click": 1, "is_like": 0, "is_follow": 0,
        "is_comment": 0, "is_forward": 0, "is_hate": 0, "long_view": int(duration > 0 and play >= duration),
        "play_time_ms": play, "duration_ms": duration, "profile_stay_time": 0, "comment_stay_time": 0,
        "is_profile_enter": 0, "is_rand": 0, "tab": tab,
    }
    return ",".join(str(values[c]) for c in header.split(","))


def write_log(path, rows, header=HEADER):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header] + [log_line(*row, header=header) for row in rows]) + "\n")
    return path


def write_27k(folder):
    """Two parts of the early standard log, each with its header, as KuaiRand-27K ships them."""
    write_log(folder / "log_standard_4_08_to_4_21_27k_part1.csv", PART1)
    write_log(folder / "log_standard_4_08_to_4_21_27k_part2.csv", PART2)
    return folder


def write_video_features(path):
    lines = [
        VIDEO_HEADER,
        '100,5,NORMAL,2022-01-03,ShortImport,1,10000.0,720,1280,77,9,"12,65"',
        "101,6,AD,2022-01-04,LongImport,1,5000.0,720,1280,,,",
        "102,7,NORMAL,2022-02-01,ShortCamera,,8000.0,,,78,1.0,8",
        '103,7,NORMAL,2022-02-01,ShortCamera,1,,720,1280,79,2.0,"1, 2 ,3"',
        "999,8,NORMAL,2022-02-01,ShortCamera,1,3000.0,720,1280,80,2.0,4",  # never watched
    ]
    path.write_text("\n".join(lines) + "\n")


def write_user_features(path):
    from test_data_kuairec import write_user_features as write_kuairec_users

    write_kuairec_users(path.parent)  # KuaiRand's user_features has KuaiRec's 31 columns
    (path.parent / "user_features.csv").rename(path)


def options(**overrides):
    """The converter options of properties/dataset/kuairand.yaml, with overrides."""
    config = yaml.safe_load((ROOT / "properties/dataset/kuairand.yaml").read_text())
    config.update(overrides)
    return kuairand.read_options(config)


def test_values_in_seconds_and_default_rules(tmp_path):
    tables = kuairand.convert(str(write_27k(tmp_path)), options())
    assert tables.rows_read == 8
    assert tables.rows_dropped == {
        "duplicate row": 1,
        "duration_ms == 0 (unknown duration)": 1,
        "duration_ms < 0": 1,
        "play_time_ms < 0": 1,
        "duration > 3600.0 s (max_plausible_duration)": 0,
        "play_time_ms == 0": 1,
    }
    inter = tables.inter
    assert inter[["user_id", "item_id"]].values.tolist() == [[0, 100], [2, 101], [2, 103]]
    np.testing.assert_allclose(inter["label"], [15.0, 2.5, 8.0])
    np.testing.assert_allclose(inter["duration"], [10.0, 5.0, 8.0])
    assert inter["day"].tolist() == [20220408, 20220409, 20220410]
    assert inter["hour"].tolist() == [10, 23, 0]  # local hour of time_ms
    assert inter["tab"].tolist() == [3, 3, 3]
    assert tables.field_types == {"hour": "token", "tab": "token"}
    assert tables.user is None and tables.item is None


def test_optional_rules_and_options(tmp_path):
    write_27k(tmp_path)
    tables = kuairand.convert(
        str(tmp_path),
        options(drop_duplicates=False, drop_zero_play=False, min_duration=6, max_duration=9.5, max_watch_ratio=1.2,
                add_context_features=False),
    )
    assert tables.rows_dropped == {
        "duration_ms == 0 (unknown duration)": 1,
        "duration_ms < 0": 1,
        "play_time_ms < 0": 1,
        "duration > 3600.0 s (max_plausible_duration)": 0,
        "duration < 6.0 s": 1,  # the 5 s video
        "duration > 9.5 s": 2,  # both copies of the 10 s row
        "watch ratio > 1.2": 0,
    }
    assert tables.inter[["item_id", "label"]].values.tolist() == [[103, 0.0], [103, 8.0]]
    assert tables.field_types == {} and list(tables.inter.columns) == ["user_id", "item_id", "label", "duration", "day", "timestamp"]


def test_subset_format_without_optional_columns(tmp_path):
    """The shared 27K subset: 16 columns (no profile_stay_time, is_rand, tab)."""
    write_log(tmp_path / "log_standard_4_08_to_4_17_subset.csv", PART1 + PART2, header=SUBSET_HEADER)
    tables = kuairand.convert(str(tmp_path), options())
    assert len(tables.inter) == 3 and "tab" not in tables.inter.columns
    assert tables.field_types == {"hour": "token"}

    # hourmin stands in for the hour where time_ms is absent too
    frame = pd.read_csv(tmp_path / "log_standard_4_08_to_4_17_subset.csv").drop(columns="time_ms")
    frame.to_csv(tmp_path / "log_standard_4_08_to_4_17_subset.csv", index=False)
    tables = kuairand.convert(str(tmp_path), options())
    assert tables.inter["hour"].tolist() == [10, 23, 0]
    assert tables.inter["timestamp"].isna().all()


def test_random_logs(tmp_path):
    write_27k(tmp_path)
    with pytest.raises(RawDataMissing, match="no log_random_"):
        kuairand.raw_files(str(tmp_path), options(kuairand_random_logs=True))
    write_log(tmp_path / "log_random_4_22_to_5_08_27k.csv", [(3, 104, 1000, 4000, 20220422, 9)])
    assert len(kuairand.convert(str(tmp_path), options()).inter) == 3  # off by default
    tables = kuairand.convert(str(tmp_path), options(kuairand_random_logs=True))
    assert tables.inter["is_rand"].tolist() == [0, 0, 0, 1]
    assert tables.field_types["is_rand"] == "token"


def test_features_and_imputed_durations(tmp_path):
    write_27k(tmp_path)
    write_user_features(tmp_path / "user_features_27k.csv")
    write_video_features(tmp_path / "video_features_basic_27k.csv")
    (tmp_path / "video_features_statistic_27k_part1.csv").write_text("video_id,counts\n100,1\n")  # never read
    files = kuairand.raw_files(str(tmp_path), options())
    assert [Path(f).name for f in files] == [
        "log_standard_4_08_to_4_21_27k_part1.csv", "log_standard_4_08_to_4_21_27k_part2.csv",
        "user_features_27k.csv", "video_features_basic_27k.csv",
    ]
    tables = kuairand.convert(str(tmp_path), options())
    assert sorted(tables.user["user_id"]) == [0, 2]  # users with a kept row
    assert tables.field_types["fans_user_num"] == "float" and tables.field_types["onehot_feat3"] == "token"
    item = tables.item.set_index("item_id")
    assert sorted(item.index) == [100, 101, 103]
    assert item.loc[100, "tag"] == "12 65" and item.loc[101, "tag"] == "" and item.loc[103, "tag"] == "1 2 3"
    assert item.loc[100, "author_id"] == 5 and item.loc[100, "video_type"] == "NORMAL" and item.loc[100, "music_type"] == 9
    assert pd.isna(item.loc[101, "music_id"]) and "video_duration" not in item.columns
    assert tables.field_types["tag"] == "token_seq" and tables.field_types["upload_type"] == "token"

    imputed = kuairand.convert(str(tmp_path), options(kuairand_impute_duration=True, add_item_features=False))
    assert imputed.rows_dropped["duration_ms == 0 (unknown duration)"] == 0
    row = imputed.inter[(imputed.inter["user_id"] == 0) & (imputed.inter["item_id"] == 101)]
    assert row[["label", "duration"]].values.tolist() == [[5.0, 5.0]]  # video_duration 5000.0 ms
    assert imputed.item is None


def test_bad_feature_files(tmp_path):
    write_27k(tmp_path)
    write_video_features(tmp_path / "video_features_basic_27k.csv")
    path = tmp_path / "video_features_basic_27k.csv"
    path.write_text(path.read_text().replace('"12,65"', '"12;65"'))
    with pytest.raises(RawDataError, match=r"video_features_basic_27k.csv: column 'tag', line 2: expected integers separated by commas"):
        kuairand.convert(str(tmp_path), options())
    write_video_features(path)
    path.write_text(path.read_text().replace("\n103,7", "\n101,7"))
    with pytest.raises(RawDataError, match=r"column 'video_id', line 5: 101 appears twice"):
        kuairand.convert(str(tmp_path), options())
    write_video_features(path)
    path.write_text(path.read_text().replace(",77,9,", ",77,9.5,"))
    with pytest.raises(RawDataError, match=r"column 'music_type', line 2: expected an integer id, got 9.5"):
        kuairand.convert(str(tmp_path), options())


def test_one_variant_per_folder(tmp_path):
    write_27k(tmp_path)
    write_log(tmp_path / "log_standard_4_08_to_4_21_pure.csv", PART1)
    with pytest.raises(RawDataError, match=r"several KuaiRand variants \['27k', 'pure'\]"):
        kuairand.raw_files(str(tmp_path), options())
    (tmp_path / "log_standard_4_08_to_4_21_pure.csv").unlink()
    write_user_features(tmp_path / "user_features_27k.csv")
    write_user_features(tmp_path / "user_features_pure.csv")
    assert Path(kuairand.raw_files(str(tmp_path), options())[2]).name == "user_features_27k.csv"  # the variant's own
    write_user_features(tmp_path / "user_features_1k.csv")
    (tmp_path / "user_features_27k.csv").unlink()
    with pytest.raises(RawDataError, match="several user_features files"):
        kuairand.raw_files(str(tmp_path), options())


def test_missing_raw_files_say_what_to_download(tmp_path):
    config = yaml.safe_load((ROOT / "properties/dataset/kuairand.yaml").read_text())
    config.update(dataset="kuairand", data_path=str(tmp_path / "kuairand"), split="random",
                  split_ratio=[0.8, 0.1, 0.1], split_seed=1)
    with pytest.raises(RawDataMissing) as error:
        prepare(config)
    message = str(error.value)
    for text in [
        "no log_standard_*.csv",
        "python -m recbole_lda download kuairand-pure --dest DEST",
        "https://zenodo.org/records/10439422/files/KuaiRand-Pure.tar.gz",
        "--raw_data_path",
        str((tmp_path / "kuairand" / "raw").resolve()),
    ]:
        assert text in message
    assert not (tmp_path / "kuairand").exists()  # failed before doing anything

    (tmp_path / "unpacked" / "KuaiRand-Pure" / "data").mkdir(parents=True)
    config["raw_data_path"] = str(tmp_path / "unpacked")
    with pytest.raises(RawDataMissing, match="has a KuaiRand-Pure/ subfolder"):
        prepare(config)


def test_option_validation():
    with pytest.raises(ValueError, match="kuairand_random_logs must be True or False"):
        options(kuairand_random_logs="yes")
    with pytest.raises(ValueError, match="min_duration 10.0 exceeds max_duration 5.0"):
        options(min_duration=10, max_duration=5)
    with pytest.raises(ValueError, match="max_watch_ratio must be a non-negative number"):
        options(max_watch_ratio=-1)
    with pytest.raises(ValueError, match="'drop_duplicates' is not set"):
        options(drop_duplicates=None)


def write_generated(folder, rows=1500, users=40, videos=60, seed=0):
    """A random log in the subset's format over 2022-04-08..04-17 (10% unknown durations)."""
    rng = np.random.default_rng(seed)
    duration = rng.integers(3000, 60000, videos)
    duration[rng.random(videos) < 0.1] = 0
    v = rng.integers(0, videos, rows)
    play = (duration[v] * rng.lognormal(-0.5, 0.8, rows)).astype(int) + 1
    days = 20220408 + rng.integers(0, 10, rows)
    lines = [log_line(int(u), int(i), int(p), int(duration[i]), int(d), int(h), header=SUBSET_HEADER)
             for u, i, p, d, h in zip(rng.integers(0, users, rows), v, play, days, rng.integers(0, 24, rows))]
    (folder / "log_standard_4_08_to_4_17_subset.csv").parent.mkdir(parents=True, exist_ok=True)
    (folder / "log_standard_4_08_to_4_17_subset.csv").write_text("\n".join([SUBSET_HEADER] + lines) + "\n")
    write_user_features(folder / "user_features_subset.csv")
    return folder


def test_end_to_end_time_split(tmp_path):
    """run() on KuaiRand-format raw files with split: time (valid = 04-16, test = 04-17)."""
    from recbole_lda.quick_start.quick_start import run

    raw = write_generated(tmp_path / "raw")
    results = run(
        "VR", "kuairand",
        config_dict={
            "data_path": str(tmp_path / "data"), "raw_data_path": str(raw), "split": "time",
            "split_dates": [20220416, 20220417], "epochs": 1, "show_progress": False, "log_dir": None,
            "checkpoint_dir": str(tmp_path / "saved"), "state": "WARNING", "torch_num_threads": 1,
        },
    )
    meta = results["data"]
    assert meta["rows_read"] == 1500 and meta["rows_kept"] + sum(meta["rows_dropped"].values()) == 1500
    assert meta["rows_dropped"]["duration_ms == 0 (unknown duration)"] > 0
    assert results["rows"] == {k: meta["rows_per_split"][k] for k in ("train", "valid", "test")}
    assert np.isfinite(results["test_result"]["mae"]) and 0 <= results["test_result"]["xauc"] <= 1
