"""WeChat (wechat_algo_data1) converter: the join, values in seconds, filtering rules with
counts, day indices as dates, keyword and tag lists, missing files, and a short end-to-end
run. The raw files are small CSVs in the format of user_action.csv and feed_info.csv."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from dataset_prep import RawDataError, RawDataMissing, common, prepare, wechat

ROOT = Path(__file__).resolve().parents[1]
ACTION_HEADER = "userid,feedid,date_,device,read_comment,comment,like,play,stay,click_avatar,forward,follow,favorite"
FEED_HEADER = (
    "feedid,authorid,videoplayseconds,description,ocr,asr,bgm_song_id,bgm_singer_id,manual_keyword_list,"
    "machine_keyword_list,manual_tag_list,machine_tag_list,description_char,ocr_char,asr_char"
)
FEED_LINES = [
    '1,10,12,2 32 100,5 6,7 8 9,25158,17499,1;2;3,4;5,11;12,"1025 0.32657512;2034 0.87653981;35 0.47265462",2 32,5,7',
    "2,11,0,3,,,,,,,,,3,,",  # zero duration
    "3,12,70,4,,,1,1,6,,13,13 0.9,4,,",  # 70 s
    "4,12,3,4,,,2,1,7,,14,14 0.9,4,,",  # 3 s
    "5,13,30,,,,,,,,,,,,",  # no bgm, no lists
    "6,14,20,,,,,,8,,,,,,",  # never watched
]
# (userid, feedid, date_, device, play ms, stay ms)
ACTIONS = [
    (0, 1, 1, 1, 15000, 16000),  # kept: 15 s of a 12 s video
    (0, 1, 1, 1, 15000, 16000),  # exact duplicate
    (0, 9, 1, 1, 1000, 2000),  # feed 9 is not in feed_info.csv
    (1, 2, 2, 2, 3000, 4000),  # zero duration
    (1, 1, 3, 2, -5, 100),  # negative play
    (1, 5, 3, 2, 0, 500),  # zero play
    (2, 3, 11, 1, 5000, 6000),  # 70 s video
    (2, 4, 12, 1, 2000, 3000),  # 3 s video
    (2, 5, 13, 1, 30000, 31000),  # kept
    (3, 1, 14, 2, 6000, 7000),  # kept
    (0, 1, 1, 1, 15000, 17000),  # a repeat view (another stay): kept
]


def action_line(user, feed, day, device, play, stay):
    return f"{user},{feed},{day},{device},0,0,1,{play},{stay},0,0,0,0"


def write_raw(folder, actions=ACTIONS, feed_lines=FEED_LINES):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "user_action.csv").write_text("\n".join([ACTION_HEADER] + [action_line(*a) for a in actions]) + "\n")
    (folder / "feed_info.csv").write_text("\n".join([FEED_HEADER] + feed_lines) + "\n")
    return folder


def options(**overrides):
    """The converter options of properties/dataset/wechat.yaml, with overrides."""
    config = yaml.safe_load((ROOT / "properties/dataset/wechat.yaml").read_text())
    config.update(overrides)
    return wechat.read_options(config)


def test_join_values_in_seconds_and_default_rules(tmp_path):
    tables = wechat.convert(str(write_raw(tmp_path)), options(add_item_features=False))
    assert tables.rows_read == len(ACTIONS)
    assert tables.rows_dropped == {
        "duplicate row": 1,
        "feedid not in feed_info.csv": 1,
        "videoplayseconds <= 0": 1,
        "play < 0": 1,
        "duration > 3600.0 s (max_plausible_duration)": 0,
        "play == 0": 1,
        "duration < 5.0 s": 1,
        "duration > 60.0 s": 1,
    }
    inter = tables.inter
    assert inter[["user_id", "item_id"]].values.tolist() == [[0, 1], [2, 5], [3, 1], [0, 1]]
    np.testing.assert_allclose(inter["label"], [15.0, 30.0, 6.0, 15.0])
    np.testing.assert_allclose(inter["duration"], [12.0, 30.0, 12.0, 12.0])
    assert inter["day"].tolist() == [20210601, 20210613, 20210614, 20210601]
    assert inter["device"].tolist() == [1, 1, 2, 1]
    assert tables.field_types == {"device": "token"} and tables.user is None and tables.item is None


def test_optional_rules(tmp_path):
    write_raw(tmp_path)
    tables = wechat.convert(
        str(tmp_path),
        options(drop_duplicates=False, drop_zero_play=False, min_duration=None, max_duration=None, max_watch_ratio=1.1,
                add_context_features=False, add_item_features=False),
    )
    assert tables.rows_dropped == {
        "feedid not in feed_info.csv": 1, "videoplayseconds <= 0": 1, "play < 0": 1,
        "duration > 3600.0 s (max_plausible_duration)": 0, "watch ratio > 1.1": 3,
    }
    assert sorted(tables.inter["item_id"]) == [1, 3, 4, 5, 5]  # the three 15 s plays of 12 s videos went
    assert "device" not in tables.inter.columns


def test_missing_device_keeps_integer_tokens(tmp_path):
    write_raw(tmp_path)
    path = tmp_path / "user_action.csv"
    path.write_text(path.read_text().replace("\n3,1,14,2,", "\n3,1,14,n/a,"))
    tables = wechat.convert(str(tmp_path), options(add_item_features=False))
    assert tables.missing_values["user_action.csv"] == {"device": 1}
    assert tables.inter["device"].astype(object).where(tables.inter["device"].notna(), None).tolist() == [1, 1, None, 1]


def test_day_index_to_date():
    assert wechat.day_to_date(np.array([1, 10, 14, 30, 31, 1])).tolist() == [
        20210601, 20210610, 20210614, 20210630, 20210701, 20210601
    ]


def test_item_features(tmp_path):
    write_raw(tmp_path)
    tables = wechat.convert(str(tmp_path), options())
    item = tables.item.set_index("item_id")
    assert sorted(item.index) == [1, 5]  # videos with a kept row
    assert item.loc[1, "author_id"] == 10 and item.loc[1, "bgm_song_id"] == 25158 and item.loc[1, "bgm_singer_id"] == 17499
    assert item.loc[1, "manual_keywords"] == "1 2 3" and item.loc[1, "machine_keywords"] == "4 5"
    assert item.loc[1, "manual_tags"] == "11 12" and item.loc[1, "machine_tags"] == "1025 2034 35"
    assert item.loc[5, "manual_keywords"] == "" and item.loc[5, "machine_tags"] == ""
    assert item.loc[5, "bgm_song_id"] is not None and np.isnan(float(item["bgm_song_id"].astype(float).loc[5]))
    assert tables.field_types["manual_keywords"] == "token_seq" and tables.field_types["author_id"] == "token"
    assert "videoplayseconds" not in item.columns and "description" not in item.columns

    confident = wechat.convert(str(tmp_path), options(wechat_machine_tag_min_prob=0.4))
    assert confident.item.set_index("item_id").loc[1, "machine_tags"] == "2034 35"


def test_bad_feed_info(tmp_path):
    bad = FEED_LINES[:1] + ["5,13,30,,,,,,1;x;3,,,,,,"]
    write_raw(tmp_path, feed_lines=bad)
    with pytest.raises(RawDataError, match=r"feed_info.csv: column 'manual_keyword_list', line 3: expected a list like '1;2;3'"):
        wechat.convert(str(tmp_path), options())
    write_raw(tmp_path, feed_lines=FEED_LINES[:1] + ["5,13,30,,,,,,,,,13;14,,,"])
    with pytest.raises(RawDataError, match=r"column 'machine_tag_list', line 3: expected a list like '1025 0.32;35 0.47'"):
        wechat.convert(str(tmp_path), options())
    write_raw(tmp_path, feed_lines=FEED_LINES + ["1,10,13,,,,,,,,,,,,"])
    with pytest.raises(RawDataError, match=r"column 'feedid', line 8: 1 appears twice"):
        wechat.convert(str(tmp_path), options())
    write_raw(tmp_path, actions=[(0, 1, 0, 1, 1000, 2000)])
    with pytest.raises(RawDataError, match=r"user_action.csv: column 'date_', line 2: expected a day index >= 1, got 0"):
        wechat.convert(str(tmp_path), options())


def test_missing_raw_files_say_where_the_data_come_from(tmp_path):
    config = yaml.safe_load((ROOT / "properties/dataset/wechat.yaml").read_text())
    config.update(dataset="wechat", data_path=str(tmp_path / "wechat"), split="random",
                  split_ratio=[0.8, 0.1, 0.1], split_seed=1)
    with pytest.raises(RawDataMissing) as error:
        prepare(config)
    message = str(error.value)
    for text in [
        "['user_action.csv', 'feed_info.csv'] not found",
        "WeChat Big Data Challenge 2021",
        "wechat_algo_data1",
        "not redistributable",
        "--raw_data_path=DIR",
        str((tmp_path / "wechat" / "raw").resolve()),
    ]:
        assert text in message
    assert not (tmp_path / "wechat").exists()

    (tmp_path / "data" / "wechat_algo_data1").mkdir(parents=True)
    (tmp_path / "data" / "user_action.csv").write_text(ACTION_HEADER + "\n")
    config["raw_data_path"] = str(tmp_path / "data")
    with pytest.raises(RawDataMissing, match=r"\['feed_info.csv'\] not found .*has a wechat_algo_data1/ subfolder"):
        prepare(config)


def test_option_validation():
    with pytest.raises(ValueError, match=r"wechat_machine_tag_min_prob must be a number in \[0, 1\]"):
        options(wechat_machine_tag_min_prob=2)
    with pytest.raises(ValueError, match="add_item_features must be True or False"):
        options(add_item_features=1)
    with pytest.raises(ValueError, match="min_duration 61.0 exceeds max_duration 60.0"):
        options(min_duration=61)


def generated_actions(rows=1400, users=30, feeds=5, seed=0):
    """Random views of feeds 1 and 5 (the kept durations) over days 1..14."""
    rng = np.random.default_rng(seed)
    feed = rng.choice([1, 5], rows)
    play = (np.where(feed == 1, 12000, 30000) * rng.lognormal(-0.4, 0.7, rows)).astype(int) + 1
    return [(int(u), int(f), int(d), int(d % 2 + 1), int(p), int(p + 500))
            for u, f, d, p in zip(rng.integers(0, users, rows), feed, 1 + np.arange(rows) % 14, play)]


def test_time_split_of_day_indices(tmp_path):
    """wechat.yaml's split_dates give CWM's split: days 1-10 train, 11-12 valid, 13-14 test."""
    write_raw(tmp_path / "raw", actions=generated_actions())
    config = yaml.safe_load((ROOT / "properties/dataset/wechat.yaml").read_text())
    config.update(dataset="wechat", data_path=str(tmp_path / "wechat"), raw_data_path=str(tmp_path / "raw"),
                  split="time")
    prepared = prepare(config)
    assert prepared.meta["rows_per_split"] == {"train": 1000, "valid": 200, "test": 200}
    assert sorted(Path(prepared.path).iterdir()) == sorted(
        Path(prepared.path) / f for f in ["meta.json", "wechat.item", "wechat.test.inter", "wechat.train.inter", "wechat.valid.inter"]
    )
    header = (Path(prepared.path) / "wechat.item").read_text().splitlines()[0]
    assert "manual_keywords:token_seq" in header and "author_id:token" in header
    assert common.config_get(config, "split_dates") == [20210611, 20210613]


def test_end_to_end(tmp_path):
    """run() on WeChat-format raw files: RecBole reads the token sequences."""
    from recbole_lda.quick_start.quick_start import run

    write_raw(tmp_path / "raw", actions=generated_actions())
    results = run(
        "VR", "wechat",
        config_dict={
            "data_path": str(tmp_path / "data"), "raw_data_path": str(tmp_path / "raw"), "epochs": 1,
            "show_progress": False, "log_dir": None, "checkpoint_dir": str(tmp_path / "saved"), "state": "WARNING",
            "torch_num_threads": 1,
        },
    )
    assert results["data"]["rows_kept"] == 1400
    assert results["rows"] == {"train": 1120, "valid": 140, "test": 140}
    assert np.isfinite(results["test_result"]["mae"])
