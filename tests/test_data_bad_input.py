"""Bad raw input, the same cases for the three real-data converters (kuairec, wechat,
kuairand): each gets a clear error (file, column, line, what was expected) or a documented
repair counted in rows_dropped and in the log; implausible durations are dropped and
counted, values taken as missing are counted per file and column; and no failed or
interrupted conversion leaves a folder that a later run would take as complete."""

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

import test_data_kuairand
import test_data_kuairec
import test_data_wechat
from dataset_prep import RawDataError, RawDataMissing, kuairand, kuairec, pipeline, prepare, split, wechat

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Spec:
    """A converter with a clean raw folder and where its play and duration values live."""

    name: str
    module: object
    write: object  # folder -> writes a clean raw folder (all rows kept)
    main: str  # the interaction file
    play: str  # play column of the main file
    duration_file: str
    duration: str  # duration column of duration_file; line 2 of it belongs to exactly one kept row
    huge: str  # 10^12 ms in the unit of the duration column
    optional: str  # a column of the main file whose values may be missing
    rules: dict = field(default_factory=dict)  # case -> the rule that drops its row

    def options(self, **overrides):
        config = yaml.safe_load((ROOT / f"properties/dataset/{self.name}.yaml").read_text())
        config.update(overrides)
        return self.module.read_options(config)


KUAIREC_ROWS = [(0, 10, 13838, 10867, 20200705), (1, 11, 2500, 5000, 20200706), (2, 12, 1000, 7000, 20200707),
                (2, 11, 3000, 5000, 20200708)]
KUAIRAND_ROWS = [(0, 100, 15000, 10000, 20220408, 10), (1, 101, 2500, 5000, 20220409, 23),
                 (2, 103, 8000, 8000, 20220410, 0), (2, 101, 900, 5000, 20220410, 1)]
WECHAT_ACTIONS = [(0, 1, 1, 1, 15000, 16000), (1, 5, 2, 2, 3000, 4000), (2, 5, 13, 1, 30000, 31000),
                  (3, 5, 14, 2, 6000, 7000)]

SPECS = [
    Spec("kuairec", kuairec, lambda d: test_data_kuairec.write_matrix(d, rows=KUAIREC_ROWS), "big_matrix.csv",
         "play_duration", "big_matrix.csv", "video_duration", "1000000000000", "timestamp",
         {"negative play": "play_duration < 0", "zero duration": "video_duration <= 0",
          "negative duration": "video_duration <= 0"}),
    Spec("wechat", wechat, lambda d: test_data_wechat.write_raw(d, actions=WECHAT_ACTIONS), "user_action.csv",
         "play", "feed_info.csv", "videoplayseconds", "1000000000", "device",  # feed 1 (line 2) has one view
         {"negative play": "play < 0", "zero duration": "videoplayseconds <= 0",
          "negative duration": "videoplayseconds <= 0"}),
    Spec("kuairand", kuairand,
         lambda d: test_data_kuairand.write_log(d / "log_standard_4_08_to_4_21_pure.csv", KUAIRAND_ROWS),
         "log_standard_4_08_to_4_21_pure.csv", "play_time_ms", "log_standard_4_08_to_4_21_pure.csv", "duration_ms",
         "1000000000000", "tab",
         {"negative play": "play_time_ms < 0", "zero duration": "duration_ms == 0 (unknown duration)",
          "negative duration": "duration_ms < 0"}),
]


@pytest.fixture(params=SPECS, ids=[s.name for s in SPECS])
def spec(request):
    return request.param


def lines(path):
    return path.read_text().splitlines()


def set_field(path, line_no, column, value):
    """Replace one field (lines count from 1 = the header; fields hold no quoted commas)."""
    text = lines(path)
    index = text[0].split(",").index(column)
    fields = text[line_no - 1].split(",")
    fields[index] = value
    text[line_no - 1] = ",".join(fields)
    path.write_text("\n".join(text) + "\n")


def convert(spec, folder, **overrides):
    options = spec.options(**overrides)
    spec.module.raw_files(str(folder), options)
    return spec.module.convert(str(folder), options)


def test_clean_files_keep_every_row(spec, tmp_path):
    spec.write(tmp_path)
    tables = convert(spec, tmp_path)
    assert len(tables.inter) == 4 and sum(tables.rows_dropped.values()) == 0


def test_missing_file(spec, tmp_path):
    spec.write(tmp_path)
    (tmp_path / spec.main).unlink()
    with pytest.raises(RawDataMissing, match="--raw_data_path"):
        convert(spec, tmp_path)


def test_missing_column(spec, tmp_path):
    spec.write(tmp_path)
    path = tmp_path / spec.main
    text = lines(path)
    index = text[0].split(",").index(spec.play)
    path.write_text("\n".join(",".join(f for k, f in enumerate(line.split(",")) if k != index) for line in text) + "\n")
    with pytest.raises(RawDataError, match=rf"{spec.main}: missing column\(s\) \['{spec.play}'\]; the header has"):
        convert(spec, tmp_path)


@pytest.mark.parametrize("sep, name", [(";", "semicolons"), ("\t", "tabs")])
def test_wrong_delimiter(spec, tmp_path, sep, name):
    spec.write(tmp_path)
    path = tmp_path / spec.main
    path.write_text(path.read_text().replace(",", sep))
    with pytest.raises(RawDataError, match=rf"{spec.main}: the header is separated by {name}, expected commas"):
        convert(spec, tmp_path)


def test_non_numeric_value(spec, tmp_path):
    spec.write(tmp_path)
    set_field(tmp_path / spec.main, 3, spec.play, "12x")
    with pytest.raises(RawDataError, match=rf"{spec.main}: column '{spec.play}', line 3: expected an integer, got '12x'"):
        convert(spec, tmp_path)


@pytest.mark.parametrize("value", ["NaN", ""])
@pytest.mark.parametrize("column", ["play", "duration"])
def test_missing_value(spec, tmp_path, value, column):
    spec.write(tmp_path)
    path, name = (spec.main, spec.play) if column == "play" else (spec.duration_file, spec.duration)
    set_field(tmp_path / path, 4, name, value)
    with pytest.raises(RawDataError, match=rf"{path}: column '{name}', line 4: missing value .*required"):
        convert(spec, tmp_path)


@pytest.mark.parametrize(
    "case, column, value",
    [("negative play", "play", "-5"), ("zero duration", "duration", "0"), ("negative duration", "duration", "-5")],
)
def test_impossible_values_are_dropped_and_counted(spec, tmp_path, caplog, case, column, value):
    spec.write(tmp_path)
    if column == "play":
        set_field(tmp_path / spec.main, 2, spec.play, value)
    else:
        set_field(tmp_path / spec.duration_file, 2, spec.duration, value)
    with caplog.at_level(logging.INFO):
        tables = convert(spec, tmp_path)
    rule = spec.rules[case]
    assert tables.rows_dropped[rule] == 1 and sum(tables.rows_dropped.values()) == 1
    assert len(tables.inter) == 3
    assert any(rule in r.getMessage() and "dropped 1 " in r.getMessage() for r in caplog.records)


PLAUSIBLE_RULE = "duration > 3600.0 s (max_plausible_duration)"


def test_implausible_duration_is_dropped_counted_and_warned(spec, tmp_path, caplog):
    spec.write(tmp_path)
    set_field(tmp_path / spec.duration_file, 2, spec.duration, spec.huge)  # 10^12 ms
    with caplog.at_level(logging.INFO):
        tables = convert(spec, tmp_path)
    assert tables.rows_dropped[PLAUSIBLE_RULE] == 1 and sum(tables.rows_dropped.values()) == 1
    assert len(tables.inter) == 3 and tables.inter["duration"].max() < 3600
    logged = [(r.levelno, r.getMessage().split(": ", 1)[1]) for r in caplog.records if PLAUSIBLE_RULE in r.getMessage()]
    assert logged == [(logging.WARNING, f"rule '{PLAUSIBLE_RULE}' dropped 1 of 4 rows")]

    raised = convert(spec, tmp_path, max_plausible_duration=1e10, max_duration=None)  # the bound is an option
    assert len(raised.inter) == 4 and raised.rows_dropped["duration > 10000000000.0 s (max_plausible_duration)"] == 0


@pytest.mark.parametrize("value, message", [
    (0, "max_plausible_duration must be a positive number of seconds, got 0"),
    (-1, "must be a positive number"),
    (True, "must be a positive number"),
    ("1h", "must be a positive number"),
    (None, "'max_plausible_duration' is not set"),
])
def test_max_plausible_duration_validation(spec, value, message):
    with pytest.raises(ValueError, match=message):
        spec.options(max_plausible_duration=value)


def test_missing_values_are_counted_per_file_and_column(spec, tmp_path, caplog):
    spec.write(tmp_path)
    for line, value in zip((2, 3, 4, 5), ("n/a", "", "null", "#N/A")):  # pyarrow's null spellings
        set_field(tmp_path / spec.main, line, spec.optional, value)
    with caplog.at_level(logging.INFO):
        tables = convert(spec, tmp_path)
    assert tables.missing_values[spec.main] == {spec.optional: 4}
    assert len(tables.inter) == 4  # taken as missing, not dropped
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith(str(tmp_path / spec.main))]
    assert logged == [f"{tmp_path / spec.main}: values taken as missing (of 4 rows): {{'{spec.optional}': 4}}"]
    spec.write(tmp_path)
    assert spec.main not in convert(spec, tmp_path).missing_values


def test_duplicate_rows_are_dropped_and_counted(spec, tmp_path):
    spec.write(tmp_path)
    path = tmp_path / spec.main
    text = lines(path)
    path.write_text("\n".join(text + [text[2]]) + "\n")
    tables = convert(spec, tmp_path)
    assert tables.rows_dropped["duplicate row"] == 1 and len(tables.inter) == 4
    assert len(convert(spec, tmp_path, drop_duplicates=False).inter) == 5


def test_empty_file(spec, tmp_path):
    spec.write(tmp_path)
    (tmp_path / spec.main).write_text("")
    with pytest.raises(RawDataError, match=rf"{spec.main}: the file is empty"):
        convert(spec, tmp_path)
    spec.write(tmp_path)
    (tmp_path / spec.main).write_text(lines(tmp_path / spec.main)[0] + "\n")
    with pytest.raises(RawDataError, match=rf"{spec.main}: the file has a header but no data rows"):
        convert(spec, tmp_path)


def test_truncated_last_line(spec, tmp_path):
    spec.write(tmp_path)
    path = tmp_path / spec.main
    width = len(lines(path)[0].split(","))
    path.write_text(path.read_text().rstrip("\n").rsplit(",", 3)[0])  # cut mid-row, no final newline
    with pytest.raises(RawDataError, match=rf"{spec.main}: line 5 has {width - 3} field\(s\), expected {width}"):
        convert(spec, tmp_path)


def test_no_rows_left(spec, tmp_path):
    spec.write(tmp_path)
    with pytest.raises(RawDataError, match="no rows left after filtering"):
        convert(spec, tmp_path, max_watch_ratio=0.0)


# ---------------------------------------------------------------------------------------
# Nothing half-written


def make_config(spec, tmp_path):
    config = yaml.safe_load((ROOT / f"properties/dataset/{spec.name}.yaml").read_text())
    config.update(dataset=spec.name, data_path=str(tmp_path / "data"), raw_data_path=str(tmp_path / "raw"),
                  split="random", split_ratio=[0.5, 0.25, 0.25], split_seed=1)
    return config


def complete_folders(data):
    """Folders under data/converted and data/prepared that a later run would reuse."""
    found = []
    for kind in ("converted", "prepared"):
        if (data / kind).is_dir():
            found += [f"{kind}/{e}" for e in os.listdir(data / kind) if ".tmp-" not in e]
    return found


def test_failed_conversion_leaves_nothing_to_reuse(spec, tmp_path, monkeypatch):
    spec.write(tmp_path / "raw")
    config = make_config(spec, tmp_path)
    data = tmp_path / "data"
    real_read = spec.module.read_csv

    def read_then_interrupt(*args, **kwargs):  # the converter is stopped midway, after a first read
        real_read(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(spec.module, "read_csv", read_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        prepare(config)
    assert complete_folders(data) == []
    monkeypatch.undo()

    def interrupted_cache(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline.pq, "write_table", interrupted_cache)  # while writing the conversion cache
    with pytest.raises(KeyboardInterrupt):
        prepare(config)
    assert complete_folders(data) == []
    monkeypatch.undo()

    real_write = split.write_atomic_file
    calls = []

    def failing_write(path, table, types):  # the disk fills up after the first atomic file
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        real_write(path, table, types)

    monkeypatch.setattr(split, "write_atomic_file", failing_write)
    with pytest.raises(OSError, match="disk full"):
        prepare(config)
    assert not [f for f in complete_folders(data) if f.startswith("prepared/")]
    assert os.listdir(data / "prepared") == []
    monkeypatch.undo()

    prepared = prepare(config)  # a later run does the work again and completes
    assert prepared.meta["prepared_cache_hit"] is False and prepared.meta["rows_kept"] == 4
    assert sorted(prepared.meta["rows_per_split"].values()) == [1, 1, 2]
