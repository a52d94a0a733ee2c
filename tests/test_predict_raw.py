"""Predict from a dataset's raw rows (recbole_lda.inference.raw_input, dataset_prep.raw_rows):
a KuaiRec-trained model scores KuaiRec's own rows (video_id, video_duration in ms) exactly as
the prepared rows, and as the run predicted them; a row the converter would drop is kept in
the output, not scored, with its rule, and counted."""

import json

import numpy as np
import pandas as pd
import pytest

import dataset_prep
from dataset_prep import raw_rows
from recbole_lda.config.configurator import Config
from recbole_lda.inference.predict import predict_file, predict_frame
from recbole_lda.inference.predict_input import InputError
from recbole_lda.quick_start import run

TINY = {"synthetic_rows": "3000", "synthetic_users": "100", "synthetic_items": "150"}
RUN = {"torch_num_threads": "1", "log_dir": "None", "show_progress": "False", "epochs": "1", "state": "WARNING"}
PLAUSIBLE = "duration > 3600.0 s (max_plausible_duration)"


@pytest.fixture(scope="module")
def kuairec_model(tmp_path_factory):
    """A VR trained on the KuaiRec converter's output (synthetic raw files, with features),
    saved, and the run's test predictions."""
    tmp = tmp_path_factory.mktemp("rawpredict")
    data = str(tmp / "data")
    raw = dataset_prep.prepare(Config("VR", "synthetic", cmd_overrides={**TINY, "data_path": data})).meta["raw_dir"]
    run("VR", "kuairec", cmd_overrides={**RUN, "raw_data_path": raw, "data_path": data,
                                        "save_model_dir": str(tmp / "model"), "predictions_file": str(tmp / "test.csv")})
    return tmp, pd.read_csv(tmp / "test.csv")


def test_kuairec_raw_rows_give_the_prepared_rows_predictions(kuairec_model):
    tmp, test = kuairec_model
    raw = pd.DataFrame({"user_id": test["user_id"], "video_id": test["item_id"],
                        "video_duration": np.rint(test["duration"] * 1000).astype(np.int64),  # ms, as in the raw file
                        "play_duration": 1, "date": 20200710})  # raw columns the model never reads: carried through
    raw.to_csv(tmp / "raw.csv", index=False)
    test[["user_id", "item_id", "duration"]].to_csv(tmp / "prepared.csv", index=False)
    summary = predict_file(tmp / "model", str(tmp / "raw.csv"), str(tmp / "raw_out.csv"))
    predict_file(tmp / "model", str(tmp / "prepared.csv"), str(tmp / "prepared_out.csv"))
    from_raw, from_prepared = pd.read_csv(tmp / "raw_out.csv"), pd.read_csv(tmp / "prepared_out.csv")
    assert list(from_raw.columns) == [*raw.columns, "prediction", "dropped_by"]
    assert from_raw["prediction"].notna().all() and len(from_raw) == len(test) > 0
    assert from_raw["prediction"].tolist() == from_prepared["prediction"].tolist()  # identical
    assert np.abs(from_raw["prediction"] - test["prediction"]).max() < 1e-4  # the run's own predictions
    assert from_raw["dropped_by"].isna().all() and summary["rows_not_scored"] == {} and summary["rows"] == len(test)


def test_rows_the_converter_drops_are_reported_not_scored(kuairec_model):
    tmp, test = kuairec_model
    user, video = str(test["user_id"][0]), str(test["item_id"][0])
    frame = pd.DataFrame({"user_id": [user] * 4, "video_id": [video] * 4,
                          "video_duration": ["8000", "1e33", "0", "3600001"]}, index=[10, 11, 12, 13])
    out = predict_frame(tmp / "model", frame)
    assert out.index.tolist() == [10, 11, 12, 13]
    assert out["dropped_by"].tolist() == ["", PLAUSIBLE, "video_duration <= 0", PLAUSIBLE]
    assert np.isfinite(out["prediction"][10]) and out["prediction"][[11, 12, 13]].isna().all()
    assert out.attrs["summary"]["rows_not_scored"] == {PLAUSIBLE: 2, "video_duration <= 0": 1}
    assert out.attrs["summary"]["rows"] == 1
    prepared = predict_frame(tmp / "model", pd.DataFrame({"user_id": [user], "item_id": [video], "duration": [8.0]}))
    assert prepared["prediction"][0] == out["prediction"][10]
    with pytest.raises(InputError, match=r"column 'video_duration', row 11: 'long' is not a number"):
        predict_frame(tmp / "model", frame.assign(video_duration=["8000", "long", "1", "2"]))
    # the CLI's summary line names the rules
    frame.to_csv(tmp / "few.csv", index=False)
    summary = predict_file(tmp / "model", str(tmp / "few.csv"), str(tmp / "few_out.csv"),
                           summary_file=str(tmp / "summary.json"))
    assert json.loads((tmp / "summary.json").read_text())["rows_not_scored"] == summary["rows_not_scored"]
    written = pd.read_csv(tmp / "few_out.csv", keep_default_na=False)
    assert written["prediction"].tolist()[1:] == ["", "", ""] and written["dropped_by"][1] == PLAUSIBLE


def test_raw_formats_of_the_other_converters():
    frame = pd.DataFrame({"user_id": ["1", "2", "3"], "video_id": ["5", "6", "7"], "duration_ms": ["0", "-5", "12345"],
                          "time_ms": ["1649376000000", "", ""], "hourmin": ["", "", "1530"], "tab": ["1", "2", "3"]})
    options = {"max_plausible_duration": 3600.0, "min_duration": None, "max_duration": None,
               "add_context_features": True}
    rows, reason = raw_rows.prediction_rows("dataset_prep.kuairand", frame, options)
    assert reason.tolist() == ["duration_ms == 0 (unknown duration)", "duration_ms < 0", ""]
    assert rows["duration"][2] == 12.345 and rows["hour"].tolist()[0] == 8 and rows["hour"].tolist()[2] == 15
    assert rows["hour"].isna().tolist() == [False, True, False]  # 2022-04-08 00:00 UTC = 08:00 at UTC+8
    wechat = pd.DataFrame({"userid": [1, 2], "feedid": [3, 4], "videoplayseconds": [0, 12], "device": [1, 2]})
    rows, reason = raw_rows.prediction_rows("dataset_prep.wechat", wechat, {**options, "max_duration": 10.0})
    assert reason.tolist() == ["videoplayseconds <= 0", "duration > 10.0 s"]
    assert rows.columns.tolist() == ["user_id", "item_id", "duration", "device"]
    generic = {**options, "columns": {"user": "uid", "item": "vid", "watch_time": "w", "duration": "d"},
               "units": {"watch_time": "s", "duration": "ms"}}
    assert raw_rows.is_raw_format("dataset_prep.generic", generic, ["uid", "vid", "d"])
    assert not raw_rows.is_raw_format("dataset_prep.generic", generic, ["user_id", "item_id", "duration"])
    rows, reason = raw_rows.prediction_rows("dataset_prep.generic", pd.DataFrame({"uid": [1], "vid": [2], "d": [1500]}),
                                            generic)
    assert rows.to_dict("list") == {"user_id": [1], "item_id": [2], "duration": [1.5]} and reason.tolist() == [""]
