"""WeChat Big Data Challenge 2021 converter (wechat_algo_data1): watch time of WeChat Channels videos.

The data are not redistributable: they were released to the participants of the WeChat
Big Data Challenge 2021 (微信大数据挑战赛, algo.weixin.qq.com) as the folder
`wechat_algo_data1`, which the official baseline (WeChat-Big-Data-Challenge-2021/
WeChat_Big_Data_Challenge) reads as `data/wechat_algo_data1/`. Point `raw_data_path` at it.

Reads, from that folder:
    user_action.csv, required. Columns read: userid, feedid, date_ (day index 1..14),
        play (ms) (all required, no missing value); device and stay (ms) when present.
        The behaviour columns (read_comment, like, click_avatar, forward, ...) are never
        read: they are outcomes of the view, so as features they would leak the label.
    feed_info.csv, required. Columns read: feedid, videoplayseconds (seconds) (required,
        no missing value); authorid, bgm_song_id, bgm_singer_id, manual_keyword_list,
        machine_keyword_list, manual_tag_list (ids joined by ';'), machine_tag_list
        ('tag prob' pairs joined by ';') when `add_item_features`. description, ocr, asr
        and feed_embeddings.csv, test_a.csv are not read.

Writes (through dataset_prep.common): `{dataset}.{train,valid,test}.inter` with user_id
(userid), item_id (feedid), label = play / 1000 (watch time, seconds), duration =
videoplayseconds (seconds) and, with `add_context_features`, device (token);
`{dataset}.item` with author_id, bgm_song_id, bgm_singer_id (tokens) and
manual_keywords, machine_keywords, manual_tags, machine_tags (token_seq; machine tags
whose probability is below `wechat_machine_tag_min_prob` are left out). Only videos that
keep at least one interaction are written; there is no user feature file.

Days. user_action.csv has no timestamp, only the day index date_ (rows of a user are in
time order). For `split: time` day d is mapped to the date 2021-06-01 + (d - 1) days as a
YYYYMMDD integer, i.e. 20210600 + d for d = 1..30: split_dates [20210611, 20210613]
gives days 1-10 train, 11-12 valid, 13-14 test (CWM's split). The calendar dates are
nominal; only their order matters.

Filtering rules, applied in this order, each logged with the rows it drops and reported
in meta.json (`rows_dropped`):
    1. `drop_duplicates`: duplicate rows, compared on (userid, feedid, date_, device, play,
       stay) (those present); the first is kept. A real repeat view differs in play or stay.
    2. feedid not in feed_info.csv (always: no duration).
    3. videoplayseconds <= 0 (always: no watch ratio exists).
    4. play < 0 (always: an impossible watch time).
    5. `max_plausible_duration` (always): videoplayseconds above it (the default, 3600 s,
       catches corrupt or mis-scaled values, e.g. milliseconds, not long videos).
    6. `drop_zero_play`: play == 0.
    7. `min_duration` / `max_duration`: video duration outside [min, max] seconds
       (CWM kept 5-60 s).
    8. `max_watch_ratio`: play / 1000 / videoplayseconds above this value.
Values read as missing (empty fields, 'n/a', 'NaN' and pyarrow's other null spellings in
numeric columns; empty fields in string columns such as an empty keyword list) are
counted per file and column, logged and reported in meta.json (`missing_values`).

Bad input (a missing file or column, a file not separated by commas, a non-numeric value,
a missing value in a required column, a day index below 1, an empty file, a truncated
line, a feedid listed twice in feed_info.csv, a malformed keyword or tag list) raises
RawDataError naming the file, column, line and what was expected.
"""

import logging
import os

import numpy as np
import pandas as pd

from dataset_prep.common import RawDataError, RawDataMissing, Tables, config_get
from dataset_prep.raw import RowFilter, bool_option, bound_options, check_unique, drop_by_options, int_tokens, read_csv

logger = logging.getLogger(__name__)

VERSION = 2  # 2: max_plausible_duration, missing_values

ACTION_COLUMNS = {"userid": "int", "feedid": "int", "date_": "int", "play": "int"}
ACTION_OPTIONAL = {"device": "int", "stay": "int"}
FEED_COLUMNS = {"feedid": "int", "videoplayseconds": "float"}
# Feature columns of feed_info.csv: integer tokens (read as floats: the bgm ids are nullable).
FEED_TOKENS = {"authorid": "author_id", "bgm_song_id": "bgm_song_id", "bgm_singer_id": "bgm_singer_id"}
# ';'-joined id lists -> token_seq fields.
FEED_LISTS = {
    "manual_keyword_list": "manual_keywords",
    "machine_keyword_list": "machine_keywords",
    "manual_tag_list": "manual_tags",
    "machine_tag_list": "machine_tags",
}
ID_LIST = r"\d+(;\d+)*"
TAG_PROB_LIST = r"\d+ [0-9.eE+-]+(;\d+ [0-9.eE+-]+)*"
DAY_ORIGIN = np.datetime64("2021-06-01")  # the date of day 1 (nominal, see the module docstring)

OPTION_KEYS = ("drop_duplicates", "drop_zero_play", "add_context_features", "add_item_features")


def read_options(config):
    """The converter options, validated (keys documented in properties/dataset/wechat.yaml)."""
    options = {key: bool_option(config, key) for key in OPTION_KEYS}
    options.update(bound_options(config))
    value = config_get(config, "wechat_machine_tag_min_prob")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"wechat_machine_tag_min_prob must be a number in [0, 1], got {value!r}")
    options["wechat_machine_tag_min_prob"] = float(value)
    return options


def default_raw_dir(data_path, options):
    """`data_path/raw`: put user_action.csv and feed_info.csv of wechat_algo_data1 there."""
    return os.path.join(data_path, "raw")


def raw_files(raw_dir, options):
    """The files `convert` reads; RawDataMissing (saying where the data come from) if one is absent."""
    files = [os.path.join(raw_dir, name) for name in ("user_action.csv", "feed_info.csv")]
    missing = [os.path.basename(p) for p in files if not os.path.isfile(p)]
    if missing:
        hint = ""
        if os.path.isdir(os.path.join(raw_dir, "wechat_algo_data1")):
            hint = " (this folder has a wechat_algo_data1/ subfolder: point raw_data_path at it)"
        raise RawDataMissing(
            f"WeChat raw file(s) {missing} not found in {os.path.abspath(raw_dir)}{hint}.\n"
            f"These are the files of wechat_algo_data1, the data of the WeChat Big Data Challenge 2021 "
            f"(微信大数据挑战赛, algo.weixin.qq.com). They are not redistributable and cannot be downloaded "
            f"by this project: get the folder wechat_algo_data1 from the competition (it holds user_action.csv, "
            f"feed_info.csv, feed_embeddings.csv, test_a.csv), then pass --raw_data_path=DIR with DIR that "
            f"folder, or put user_action.csv and feed_info.csv in the default folder {os.path.abspath(raw_dir)}"
        )
    return files


def day_to_date(day):
    """Day index d (1 = first day) -> YYYYMMDD integer of 2021-06-01 + (d - 1) days."""
    values, inverse = np.unique(day, return_inverse=True)
    dates = pd.DatetimeIndex(DAY_ORIGIN + (values - 1).astype("timedelta64[D]"))
    return (dates.year * 10000 + dates.month * 100 + dates.day).to_numpy(np.int32)[inverse]


def convert(raw_dir, options):
    """Read the raw files of `raw_dir` and return the canonical Tables (see module docstring)."""
    action_path, feed_path = raw_files(raw_dir, options)
    missing = {}
    table = read_csv(action_path, ACTION_COLUMNS, required=list(ACTION_COLUMNS), optional=ACTION_OPTIONAL,
                     missing=missing)
    n = table.num_rows
    logger.info(f"read {n:,} rows from {action_path}")
    col = {c: table.column(c).to_numpy(zero_copy_only=False) for c in table.column_names}
    del table
    day = col["date_"]
    if (day < 1).any():
        row = int(np.flatnonzero(day < 1)[0])
        raise RawDataError(f"{action_path}: column 'date_', line {row + 2}: expected a day index >= 1, got {day[row]}")

    feeds = read_feed_info(feed_path, options, missing)
    position = pd.Index(feeds["item_id"]).get_indexer(col["feedid"])
    seconds = np.where(position >= 0, feeds["videoplayseconds"].to_numpy()[position], np.nan)

    rows = RowFilter(n, f"WeChat {action_path}")
    if options["drop_duplicates"]:
        key = ["userid", "feedid", "date_", "device", "play", "stay"]
        rows.drop("duplicate row", pd.DataFrame({c: col[c] for c in key if c in col}).duplicated().to_numpy())
    rows.drop("feedid not in feed_info.csv", position < 0)
    rows.drop("videoplayseconds <= 0", ~(seconds > 0) & (position >= 0))
    play = col["play"]
    rows.drop("play < 0", play < 0)
    drop_by_options(rows, play / 1000.0, seconds, options, "play == 0")
    inter = rows.interactions(col["userid"], col["feedid"], play, seconds, day_to_date(day))
    field_types = {}
    if options["add_context_features"] and "device" in col:
        inter["device"] = int_tokens(col["device"], action_path, "device")[rows.keep]  # nullable: "1", never "1.0"
        field_types["device"] = "token"

    item = None
    if options["add_item_features"]:
        item = feeds.drop(columns="videoplayseconds")
        item = item[item["item_id"].isin(inter["item_id"].unique())].reset_index(drop=True)
        field_types.update({c: "token" for c in FEED_TOKENS.values()})
        field_types.update({c: "token_seq" for c in FEED_LISTS.values()})
    return Tables(inter, field_types, None, item, rows_read=n, rows_dropped=rows.dropped, missing_values=missing)


def read_feed_info(path, options, missing=None):
    """feed_info.csv keyed by item_id: videoplayseconds and, with `add_item_features`, the
    tokens of FEED_TOKENS and the token sequences of FEED_LISTS (space-separated strings);
    values taken as missing are counted into `missing` (see raw.read_csv)."""
    columns = dict(FEED_COLUMNS)
    if options["add_item_features"]:
        columns |= {c: "float" for c in FEED_TOKENS} | {c: "str" for c in FEED_LISTS}
    table = read_csv(path, columns, required=list(FEED_COLUMNS), missing=missing)
    feeds = pd.DataFrame(
        {"item_id": table.column("feedid").to_numpy(), "videoplayseconds": table.column("videoplayseconds").to_numpy()}
    )
    check_unique(feeds["item_id"], path, "feedid")
    if options["add_item_features"]:
        for raw, name in FEED_TOKENS.items():
            feeds[name] = int_tokens(table.column(raw).to_numpy(zero_copy_only=False), path, raw)
        for raw, name in FEED_LISTS.items():
            feeds[name] = parse_list(table.column(raw).to_pandas(), raw, path, options["wechat_machine_tag_min_prob"])
    logger.info(f"read {len(feeds):,} feeds from {path}")
    return feeds


def parse_list(values, column, path, min_prob):
    """';'-joined ids ("1;2;3") or, for machine_tag_list, 'tag prob' pairs
    ("1025 0.32;35 0.47") as space-separated token strings; missing -> ""."""
    text = values.fillna("").str.strip()
    pattern = TAG_PROB_LIST if column == "machine_tag_list" else ID_LIST
    ok = (text == "") | text.str.fullmatch(pattern)
    if not ok.all():
        row = int(np.flatnonzero(~ok.to_numpy())[0])
        example = "'1025 0.32;35 0.47' ('tag probability' pairs)" if column == "machine_tag_list" else "'1;2;3' (ids joined by ';')"
        raise RawDataError(f"{path}: column {column!r}, line {row + 2}: expected a list like {example}, got {text.iloc[row]!r}")
    if column != "machine_tag_list":
        return text.str.replace(";", " ", regex=False).to_numpy()
    out = []
    for entry in text:
        pairs = (p.split(" ") for p in entry.split(";")) if entry else ()
        out.append(" ".join(tag for tag, prob in pairs if float(prob) >= min_prob))
    return np.array(out, dtype=object)
