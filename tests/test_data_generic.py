"""The generic converter (dataset_prep/generic.py): any watch-time log with a column map.

The same rows as the KuaiRec converter on the same data (renamed columns, times in ms):
the same prepared files and the same metrics; a folder of Parquet files in seconds gives
the same rows; the plausibility rule and errors that name the file, column and line.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import dataset_prep
from recbole_lda.config.configurator import Config
from recbole_lda.config.options import OptionError
from recbole_lda.config.registry import check_dataset_name, requested_converter
from recbole_lda.quick_start import run
from recbole_lda.utils.errors import UnknownNameError

TINY = {"synthetic_rows": "3000", "synthetic_users": "100", "synthetic_items": "150"}
RUN = {"torch_num_threads": "1", "log_dir": "None", "show_progress": "False", "epochs": "1", "seed": "3",
       "state": "WARNING"}
RENAME = {"user_id": "uid", "video_id": "vid", "play_duration": "play_ms", "video_duration": "dur_ms", "timestamp": "ts"}
MY_DATA = """converter: generic
raw_data_path: {raw}
columns: {{user: uid, item: vid, watch_time: play_ms, duration: dur_ms, time: ts}}
units: {{watch_time: ms, duration: ms, time: s}}
utc_offset_hours: 8
"""


@pytest.fixture(scope="module")
def synthetic_raw(tmp_path_factory):
    """A tiny synthetic raw folder (KuaiRec's format) and its big_matrix.csv as a DataFrame."""
    data = tmp_path_factory.mktemp("generic") / "data"
    prepared = dataset_prep.prepare(Config("VR", "synthetic", cmd_overrides={**TINY, "data_path": str(data)}))
    raw = Path(prepared.meta["raw_dir"])
    return raw, pd.read_csv(raw / "big_matrix.csv")


def prepared_files(prepared, name):
    return {part: (Path(prepared.path) / f"{name}.{part}.inter").read_bytes() for part in ("train", "valid", "test")}


def test_a_renamed_csv_in_ms_gives_the_kuairec_converters_rows_and_metrics(synthetic_raw, tmp_path):
    raw, matrix = synthetic_raw
    matrix.rename(columns=RENAME)[list(RENAME.values())].to_csv(tmp_path / "mylog.csv", index=False)
    (tmp_path / "mydata.yaml").write_text(MY_DATA.format(raw=tmp_path / "mylog.csv"))
    files = [str(tmp_path / "mydata.yaml")]
    kuairec = {"raw_data_path": str(raw), "add_user_features": "False", "add_item_features": "False",
               "data_path": str(tmp_path / "data")}
    mine = {"data_path": str(tmp_path / "data")}
    for split in ({}, {"split": "time", "split_dates": "[20200720,20200725]"}):  # time: days from ts at UTC+8
        a = dataset_prep.prepare(Config("VR", "kuairec", cmd_overrides={**kuairec, **split}))
        b = dataset_prep.prepare(Config("VR", "mylog", files, cmd_overrides={**mine, **split}))
        assert prepared_files(a, "kuairec") == prepared_files(b, "mylog")
        assert a.meta["rows_per_split"] == b.meta["rows_per_split"] and b.meta["rows_read"] == len(matrix)
    assert b.meta["rows_per_split"]["test"] > 0 and b.meta["rows_per_split"]["valid"] > 0
    ran = [run("VR", "kuairec", cmd_overrides={**kuairec, **RUN}), run("VR", "mylog", files, cmd_overrides={**mine, **RUN})]
    assert ran[0]["test_result"] == ran[1]["test_result"] and ran[0]["rows"] == ran[1]["rows"]


def test_a_parquet_folder_in_seconds_with_dates_and_features(synthetic_raw, tmp_path):
    raw, matrix = synthetic_raw
    log = pd.DataFrame({"u": matrix["user_id"], "v": matrix["video_id"], "watch": matrix["play_duration"] / 1000,
                        "dur": matrix["video_duration"] / 1000, "day": matrix["date"],
                        "genre": (matrix["video_id"] % 3).astype(str)})
    log.loc[5, "dur"] = 1e30  # implausible: dropped and counted
    folder = tmp_path / "logs"
    folder.mkdir()
    log.iloc[:1000].to_parquet(folder / "a.parquet")
    log.iloc[1000:].to_parquet(folder / "b.parquet")
    config = {"converter": "generic", "raw_data_path": str(folder), "data_path": str(tmp_path / "data"),
              "columns": "{'user': 'u', 'item': 'v', 'watch_time': 'watch', 'duration': 'dur', 'time': 'day'}",
              "units": "{'watch_time': 's', 'duration': 's', 'time': 'date'}", "item_features": "{'genre': 'token'}"}
    prepared = dataset_prep.prepare(Config("VR", "mine", cmd_overrides=config))
    meta = prepared.meta
    assert meta["rows_read"] == len(log) and meta["rows_dropped"]["duration > 3600.0 s (max_plausible_duration)"] == 1
    assert meta["rows_kept"] == len(log) - 1 - sum(v for k, v in meta["rows_dropped"].items() if "3600" not in k)
    assert meta["fields"]["genre"] == "token"
    item = pd.read_csv(Path(prepared.path) / "mine.item", sep="\t")
    assert list(item.columns) == ["item_id:token", "genre:token"]
    assert (item["genre:token"].astype(int) == item["item_id:token"] % 3).all()
    tables = dataset_prep.generic.convert(str(folder), dataset_prep.generic.read_options(
        Config("VR", "mine", cmd_overrides=config)))
    kept = log.drop(index=5)
    kept = kept[kept["watch"] > 0]
    assert np.array_equal(tables.inter["label"], kept["watch"]) and np.array_equal(tables.inter["day"], kept["day"])


def write_csv(path, text):
    path.write_text(text)
    return path


BAD = [
    ("uid,vid,play_ms\n1,2,3\n", "mylog.csv: missing column(s) ['dur_ms']"),
    ("uid,vid,play_ms,dur_ms\n1,2,3,4\n1,x,3,4\n", "mylog.csv: column 'vid', line 3: expected an integer, got 'x'"),
    ("uid,vid,play_ms,dur_ms\n1,2,3,4\n1,2,,4\n", "mylog.csv: column 'play_ms', line 3: missing value"),
]


@pytest.mark.parametrize("text,message", BAD, ids=["column", "value", "missing"])
def test_bad_input_names_file_column_and_line(tmp_path, text, message):
    write_csv(tmp_path / "mylog.csv", text)
    options = {"converter": "generic", "raw_data_path": str(tmp_path / "mylog.csv"), "data_path": str(tmp_path),
               "columns": "{'user': 'uid', 'item': 'vid', 'watch_time': 'play_ms', 'duration': 'dur_ms'}",
               "units": "{'watch_time': 'ms', 'duration': 'ms'}"}
    with pytest.raises(dataset_prep.RawDataError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):
        dataset_prep.prepare(Config("VR", "mine", cmd_overrides=options))


def test_a_feature_with_two_values_for_one_id_and_bad_maps_are_refused(tmp_path):
    write_csv(tmp_path / "log.csv", "u,v,w,d,g\n1,2,3,4,a\n1,3,3,4,a\n2,2,3,4,b\n")
    base = {"converter": "generic", "raw_data_path": str(tmp_path / "log.csv"), "data_path": str(tmp_path),
            "columns": "{'user': 'u', 'item': 'v', 'watch_time': 'w', 'duration': 'd'}",
            "units": "{'watch_time': 's', 'duration': 's'}"}
    with pytest.raises(dataset_prep.RawDataError, match=r"log.csv: column 'g', line 4: item 2 has another value \('b'\) "
                                                        r"than on its first row \('a'\)"):
        dataset_prep.prepare(Config("VR", "mine", cmd_overrides={**base, "item_features": "{'g': 'token'}"}))
    with pytest.raises(ValueError, match=r"units: duration must be one of s\|ms, got 'h'"):
        dataset_prep.prepare(Config("VR", "mine", cmd_overrides={**base, "units": "{'watch_time': 's', 'duration': 'h'}"}))
    with pytest.raises(ValueError, match=r"columns must map user, item, watch_time, duration"):
        dataset_prep.prepare(Config("VR", "mine", cmd_overrides={**base, "columns": "{'user': 'u'}"}))
    with pytest.raises(UnknownNameError, match=r"unknown converter 'generc'; did you mean generic\?"):
        Config("VR", "mine", cmd_overrides={**base, "converter": "generc"})
    with pytest.raises(OptionError, match=r"--converter='generc': expected one of generic"):  # a dataset of ours
        Config("VR", "synthetic", cmd_overrides={"converter": "generc"})


def test_a_dataset_of_ones_own_needs_a_converter(tmp_path):
    (tmp_path / "mine.yaml").write_text("converter: generic\n")
    assert requested_converter([str(tmp_path / "mine.yaml")], None, {}) == "generic"
    assert requested_converter([str(tmp_path / "mine.yaml")], None, {"converter": "x"}) == "x"
    check_dataset_name("mine", "generic")
    with pytest.raises(UnknownNameError, match=r"unknown dataset 'mine'.*or a log of your own with converter: generic"):
        check_dataset_name("mine")
    with pytest.raises(UnknownNameError, match=r"unknown converter 'generc'; did you mean generic\?"):
        check_dataset_name("mine", "generc")
