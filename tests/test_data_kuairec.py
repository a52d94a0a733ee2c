"""KuaiRec converter: values in seconds, filtering rules with counts, features, bad input,
and the message for missing raw files. The raw files are small CSVs in KuaiRec 2.0's format."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from dataset_prep import RawDataError, RawDataMissing, kuairec, prepare

ROOT = Path(__file__).resolve().parents[1]
HEADER = "user_id,video_id,play_duration,video_duration,time,date,timestamp,watch_ratio"

# (user, video, play ms, duration ms, date); time, timestamp and watch_ratio are derived.
ROWS = [
    (0, 10, 13838, 10867, 20200705),  # kept: 13.838 s of a 10.867 s video
    (0, 10, 13838, 10867, 20200705),  # exact duplicate of the row above
    (0, 11, 0, 5000, 20200706),  # zero play
    (1, 10, -5, 10867, 20200706),  # negative play
    (1, 12, 3000, 0, 20200707),  # zero duration
    (1, 11, 60000, 5000, 20200707),  # watch ratio 12
    (2, 12, 1000, 400000, 20200708),  # 400 s video
    (2, 11, 2500, 5000, 20200708),  # kept
]


def matrix_line(user, video, play, duration, date, second=0):
    ts = 1593878400 + (date - 20200705) * 86400 + second
    local = pd.Timestamp(ts + 8 * 3600, unit="s").strftime("%Y-%m-%d %H:%M:%S") + ".000"
    ratio = play / duration if duration else 0.0
    return f"{user},{video},{play},{duration},{local},{date},{ts}.0,{ratio:.6f}"


def write_matrix(folder, rows=ROWS, name="big_matrix.csv"):
    folder.mkdir(parents=True, exist_ok=True)
    lines = [HEADER] + [matrix_line(*row) for row in rows]
    (folder / name).write_text("\n".join(lines) + "\n")
    return folder / name


def write_user_features(folder):
    onehot = ",".join(str(k % 3) for k in range(12))
    lines = [
        "user_id,user_active_degree,is_lowactive_period,is_live_streamer,is_video_author,follow_user_num,"
        "follow_user_num_range,fans_user_num,fans_user_num_range,friend_user_num,friend_user_num_range,"
        "register_days,register_days_range," + ",".join(f"onehot_feat{k}" for k in range(18)),
        f'0,high_active,0,0,1,5,"(0,10]",3,"[1,10)",0,0,100,91-180,{onehot},0.0,1.0,2.0,0.0,1.0,3.0',
        f'1,full_active,0,1,0,600,500+,0,0,2,"[1,5)",800,730+,{onehot},,1.0,2.0,0.0,1.0,3.0',
        f'2,UNKNOWN,1,0,0,0,0,0,0,0,0,20,15-30,{onehot},1.0,1.0,2.0,0.0,1.0,3.0',
        f'9,middle_active,1,0,0,0,0,0,0,0,0,20,15-30,{onehot},1.0,1.0,2.0,0.0,1.0,3.0',  # no interactions
    ]
    (folder / "user_features.csv").write_text("\n".join(lines) + "\n")


def daily_line(video, date, author, upload_type="ShortImport"):
    head = [video, date, author, "NORMAL", "2020-03-30", upload_type, "public", 5966.0, 720, 1280, 77, 5, "美食"]
    return ",".join(map(str, head + [1] * 45))


def write_item_features(folder):
    (folder / "item_categories.csv").write_text('video_id,feat\n10,"[27, 9]"\n11,[8]\n12,[]\n13,"[1, 2, 3]"\n')
    stats = ",".join(f"stat{k}" for k in range(45))
    header = (
        "video_id,date,author_id,video_type,upload_dt,upload_type,visible_status,video_duration,video_width,"
        "video_height,music_id,video_tag_id,video_tag_name," + stats
    )
    lines = [header, daily_line(10, 20200706, 999, "LongImport"), daily_line(10, 20200705, 4), daily_line(11, 20200705, 6)]
    (folder / "item_daily_features.csv").write_text("\n".join(lines) + "\n")


def options(**overrides):
    """The converter options of properties/dataset/kuairec.yaml, with overrides."""
    config = yaml.safe_load((ROOT / "properties/dataset/kuairec.yaml").read_text())
    config.update(overrides)
    return kuairec.read_options(config)


def test_values_in_seconds_and_default_rules(tmp_path):
    write_matrix(tmp_path)
    tables = kuairec.convert(str(tmp_path), options())
    assert tables.rows_read == len(ROWS)
    assert tables.rows_dropped == {
        "duplicate row": 1,
        "video_duration <= 0": 1,
        "play_duration < 0": 1,
        "duration > 3600.0 s (max_plausible_duration)": 0,
        "play_duration == 0": 1,
    }
    inter = tables.inter
    assert inter[["user_id", "item_id"]].values.tolist() == [[0, 10], [1, 11], [2, 12], [2, 11]]
    np.testing.assert_allclose(inter["label"], [13.838, 60.0, 1.0, 2.5])
    np.testing.assert_allclose(inter["duration"], [10.867, 5.0, 400.0, 5.0])
    assert inter["day"].tolist() == [20200705, 20200707, 20200708, 20200708]
    assert tables.user is None and tables.item is None and tables.field_types == {}


def test_optional_rules(tmp_path):
    write_matrix(tmp_path)
    tables = kuairec.convert(
        str(tmp_path),
        options(drop_duplicates=False, drop_zero_play=False, max_watch_ratio=5, min_duration=1, max_duration=300),
    )
    assert tables.rows_dropped == {
        "video_duration <= 0": 1,
        "play_duration < 0": 1,
        "duration > 3600.0 s (max_plausible_duration)": 0,
        "duration < 1.0 s": 0,
        "duration > 300.0 s": 1,
        "watch ratio > 5.0": 1,
    }
    assert len(tables.inter) == 4  # both copies of the duplicate, the zero play, the last row
    assert (tables.inter["label"] == 0).sum() == 1


def test_small_matrix_float_and_missing_dates(tmp_path):
    lines = [
        HEADER,
        "14,148,4381,6067,2020-07-05 05:27:48.378,20200705.0,1593898068.378,0.722103",
        "14,149,1000,2000,,,,0.5",
    ]
    (tmp_path / "small_matrix.csv").write_text("\n".join(lines) + "\n")
    tables = kuairec.convert(str(tmp_path), options(kuairec_matrix="small"))
    assert tables.inter["day"].tolist() == [20200705, 0]
    assert np.isnan(tables.inter["timestamp"].iloc[1])


def test_features(tmp_path):
    write_matrix(tmp_path)
    write_user_features(tmp_path)
    write_item_features(tmp_path)
    tables = kuairec.convert(str(tmp_path), options())
    user = tables.user.set_index("user_id")
    assert sorted(user.index) == [0, 1, 2]  # user 9 has no interaction
    assert user.loc[0, "follow_user_num_range"] == "(0,10]"
    assert user.loc[0, "onehot_feat12"] == 0 and pd.isna(user.loc[1, "onehot_feat12"])
    assert user.loc[1, "follow_user_num"] == 600.0
    assert tables.field_types["user_active_degree"] == "token"
    assert tables.field_types["register_days"] == "float"
    assert len(user.columns) == 30  # every column of the file but user_id

    item = tables.item.set_index("item_id")
    assert sorted(item.index) == [10, 11, 12]  # video 13 has no interaction
    assert item.loc[10, "tags"] == "27 9" and item.loc[11, "tags"] == "8" and item.loc[12, "tags"] == ""
    assert item.loc[10, "author_id"] == 4 and item.loc[10, "upload_type"] == "ShortImport"  # earliest day's row
    assert pd.isna(item.loc[12, "author_id"])  # not in item_daily_features.csv
    assert tables.field_types["tags"] == "token_seq"
    assert not {"show_cnt", "play_cnt", "stat0"} & set(item.columns)  # no daily statistics

    without = kuairec.convert(str(tmp_path), options(add_user_features=False, add_item_features=False))
    assert without.user is None and without.item is None


def test_missing_feature_values_are_counted_in_meta(tmp_path, caplog):
    """'n/a' (and pyarrow's other null spellings, and empty fields) in feature columns are
    taken as missing: counted per file and column, logged, and recorded in meta.json."""
    import json
    import logging

    write_matrix(tmp_path / "raw")
    write_user_features(tmp_path / "raw")  # user 1 already has an empty onehot_feat12
    path = tmp_path / "raw" / "user_features.csv"
    path.write_text(path.read_text().replace("0,high_active,0,0,1,5,", "0,,0,0,1,n/a,").replace(",800,730+,", ",NaN,730+,"))
    config = yaml.safe_load((ROOT / "properties/dataset/kuairec.yaml").read_text())
    config.update(dataset="kuairec", data_path=str(tmp_path / "data"), raw_data_path=str(tmp_path / "raw"),
                  split="random", split_ratio=[0.5, 0.25, 0.25], split_seed=1, add_item_features=False)
    expected = {"user_features.csv": {"user_active_degree": 1, "follow_user_num": 1, "register_days": 1,
                                      "onehot_feat12": 1}}
    with caplog.at_level(logging.INFO):
        prepared = prepare(config)
    assert prepared.meta["missing_values"] == expected
    assert json.loads((Path(prepared.path) / "meta.json").read_text())["missing_values"] == expected
    assert any("user_features.csv: values taken as missing (of 4 rows)" in r.getMessage() for r in caplog.records)
    user = pd.read_csv(Path(prepared.path) / "kuairec.user", sep="\t", keep_default_na=False).set_index("user_id:token")
    assert user.loc[0, "user_active_degree:token"] == "" and user.loc[0, "follow_user_num:float"] == ""
    resplit = prepare(dict(config, split_seed=2))  # from the conversion cache: the counts are kept
    assert resplit.meta["conversion_cache_hit"] and resplit.meta["missing_values"] == expected


def test_parse_tags_without_eval():
    assert kuairec.parse_tags(["[27, 9]", "[8]", " [ 1,2 ] ", "[]"], "f.csv") == ["27 9", "8", "1 2", ""]
    for bad in ["[__import__('os')]", "27, 9", "[2.5]", None]:
        with pytest.raises(RawDataError, match=r"f.csv: column 'feat', line 2"):
            kuairec.parse_tags([bad], "f.csv")


def replace_line(path, line_no, text):
    lines = path.read_text().splitlines()
    lines[line_no - 1] = text
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda p: p.write_text(""), r"big_matrix.csv: the file is empty"),
        (lambda p: p.write_text(HEADER + "\n"), r"big_matrix.csv: the file has a header but no data rows"),
        (lambda p: p.write_text(p.read_text().replace(",watch_ratio", "", 1)), r"missing column\(s\) \['watch_ratio'\]"),
        (lambda p: replace_line(p, 3, "0,10,abc,10867,2020-07-05 00:00:00.000,20200705,1593878400.0,0.1"),
         r"column 'play_duration', line 3: expected an integer, got 'abc'"),
        (lambda p: replace_line(p, 4, "0,10,5,10867,2020-07-05 00:00:00.000,20200705,x1,0.1"),
         r"column 'timestamp', line 4: expected a number, got 'x1'"),
        (lambda p: replace_line(p, 5, ",10,5,10867,2020-07-05 00:00:00.000,20200705,1593878400.0,0.1"),
         r"column 'user_id', line 5: missing value"),
        (lambda p: p.write_text(p.read_text().rsplit(",", 3)[0]), r"line 9 has 5 field\(s\), expected 8"),
        (lambda p: replace_line(p, 2, "0,10,5,10867,2020-07-05 00:00:00.000,2020,1593878400.0,0.1"),
         r"column 'date', line 2: expected a YYYYMMDD date"),
        (lambda p: replace_line(p, 3, "0,10,5,10867,2020-07-05 00:00:00.000,20201305,1593878400.0,0.1"),
         r"big_matrix.csv: column 'date', line 3: expected a YYYYMMDD date, got 20201305.0"),
        (lambda p: replace_line(p, 4, "0,10,5,10867,2020-07-05 00:00:00.000,20200732.0,1593878400.0,0.1"),
         r"big_matrix.csv: column 'date', line 4: expected a YYYYMMDD date, got 20200732.0"),
    ],
    ids=["empty", "header-only", "missing-column", "non-integer", "non-number", "missing-id", "truncated", "bad-date",
         "bad-month", "bad-day"],
)
def test_bad_matrix(tmp_path, corrupt, message):
    corrupt(write_matrix(tmp_path))
    with pytest.raises(RawDataError, match=message):
        kuairec.convert(str(tmp_path), options())


def test_bad_feature_files(tmp_path):
    write_matrix(tmp_path)
    write_user_features(tmp_path)
    path = tmp_path / "user_features.csv"
    path.write_text(path.read_text().replace("\n1,full_active", "\n0,full_active"))
    with pytest.raises(RawDataError, match=r"user_features.csv: column 'user_id', line 3: 0 appears twice"):
        kuairec.convert(str(tmp_path), options())
    write_user_features(tmp_path)
    path.write_text(path.read_text().replace("0.0,1.0,2.0", "0.5,1.0,2.0", 1))
    with pytest.raises(RawDataError, match=r"column 'onehot_feat12', line 2: expected an integer id, got 0.5"):
        kuairec.convert(str(tmp_path), options())


def test_missing_raw_files_say_what_to_download(tmp_path):
    config = yaml.safe_load((ROOT / "properties/dataset/kuairec.yaml").read_text())
    config.update(dataset="kuairec", data_path=str(tmp_path / "kuairec"), split="random",
                  split_ratio=[0.8, 0.1, 0.1], split_seed=1)
    with pytest.raises(RawDataMissing) as error:
        prepare(config)
    message = str(error.value)
    for text in [
        "https://zenodo.org/records/18164998/files/KuaiRec.zip",
        "431,964,858 bytes",
        "261550d472c48eff4990fb13c0e5bcf7",
        "KuaiRec 2.0/data/",
        "--raw_data_path=DIR",
        str((tmp_path / "kuairec" / "raw").resolve()),
    ]:
        assert text in message
    assert isinstance(error.value, FileNotFoundError)
    assert not (tmp_path / "kuairec").exists()  # failed before doing anything

    (tmp_path / "unzipped" / "KuaiRec 2.0" / "data").mkdir(parents=True)
    config["raw_data_path"] = str(tmp_path / "unzipped")
    with pytest.raises(RawDataMissing, match="point raw_data_path at the data folder itself"):
        prepare(config)


def test_option_validation():
    with pytest.raises(ValueError, match="kuairec_matrix must be 'big' or 'small'"):
        options(kuairec_matrix="huge")
    with pytest.raises(ValueError, match="drop_zero_play must be True or False"):
        options(drop_zero_play="yes")
    with pytest.raises(ValueError, match="min_duration 10.0 exceeds max_duration 5.0"):
        options(min_duration=10, max_duration=5)
    with pytest.raises(ValueError, match="'drop_duplicates' is not set"):
        options(drop_duplicates=None)
    with pytest.raises(ValueError, match="max_watch_ratio must be a non-negative number"):
        options(max_watch_ratio=-1)
    with pytest.raises(ValueError, match="max_plausible_duration must be a positive number of seconds"):
        options(max_plausible_duration=0)
