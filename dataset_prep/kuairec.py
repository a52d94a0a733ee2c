"""KuaiRec 2.0 converter (Gao et al., CIKM 2022): watch time of Kuaishou short videos.

Reads, from the `data/` folder of the official archive (`KuaiRec 2.0/data/` inside
KuaiRec.zip; `python -m recbole_lda download kuairec --dest DEST` fetches and unzips it):
    big_matrix.csv or small_matrix.csv (`kuairec_matrix`), required:
        user_id, video_id, play_duration (ms), video_duration (ms), time, date, timestamp,
        watch_ratio.
    user_features.csv (`add_user_features`, when present): user features.
    item_categories.csv (`add_item_features`, when present): video tags, a list literal
        such as "[27, 9]", parsed without eval.
    item_daily_features.csv (`add_item_features`, when present): only static per-video
        attributes, from each video's earliest row; its daily statistics are never read
        (they would leak information from after the interaction).

Writes (through dataset_prep.common): `{dataset}.{train,valid,test}.inter` with
user_id, item_id, label = play_duration / 1000 (watch time, seconds) and
duration = video_duration / 1000 (seconds); `{dataset}.user` with
user_active_degree, is_lowactive_period, is_live_streamer, is_video_author, the four
*_range columns and onehot_feat0..17 as tokens, follow_user_num, fans_user_num,
friend_user_num, register_days as floats; `{dataset}.item` with tags (token_seq) and
author_id, video_type, upload_type, music_id, video_tag_id (tokens). Only users and videos
that keep at least one interaction are written. Missing feature values are written as
empty fields, which RecBole reads as [PAD] (tokens) or the column mean (floats).
The interaction day is `date` (0 where small_matrix has none); it is used by
`split: time` and not written.

Filtering rules, applied in this order, each logged with the rows it drops and reported
in meta.json (`rows_dropped`):
    1. `drop_duplicates`: exact duplicate rows, compared on (user_id, video_id,
       play_duration, video_duration, timestamp, watch_ratio); the first is kept.
       big_matrix has 968,004 of them.
    2. video_duration <= 0 (always: no watch ratio exists).
    3. play_duration < 0 (always: an impossible watch time).
    4. `max_plausible_duration` (always): video_duration / 1000 above it (KuaiRec's videos
       last 0.14 to 315 s; the default, 3600 s, only catches corrupt or mis-scaled values).
    5. `drop_zero_play`: play_duration == 0 (public ports drop play <= 0).
    6. `min_duration` / `max_duration`: video duration outside [min, max] seconds.
    7. `max_watch_ratio`: play_duration / video_duration above this value.
Values read as missing (empty fields, 'n/a', 'NaN' and pyarrow's other null spellings in
numeric columns; empty fields in string columns) are counted per file and column, logged
and reported in meta.json (`missing_values`).

Bad input (missing file or column, a file not separated by commas, non-numeric value,
missing value in user_id, video_id, play_duration or video_duration, a date that is not
YYYYMMDD, an empty file, a truncated line, a user or video listed twice in a feature
file) raises RawDataError naming the file, column, line and what was expected.
"""

import logging
import os
import re

import numpy as np
import pandas as pd

from dataset_prep.common import RawDataError, RawDataMissing, Tables, require
from dataset_prep.raw import (
    RowFilter, bool_option, bound_options, check_unique, check_yyyymmdd, drop_by_options, int_tokens, read_csv,
    str_tokens,
)

logger = logging.getLogger(__name__)

VERSION = 2  # 2: max_plausible_duration, missing_values

DOWNLOAD_URL = "https://zenodo.org/records/18164998/files/KuaiRec.zip"

MATRIX_COLUMNS = {
    "user_id": "int",
    "video_id": "int",
    "play_duration": "int",
    "video_duration": "int",
    "date": "float",  # small_matrix writes 20200705.0 and leaves some dates empty
    "timestamp": "float",
    "watch_ratio": "float",
}
DUPLICATE_KEY = ["user_id", "video_id", "play_duration", "video_duration", "timestamp", "watch_ratio"]

# user_features.csv columns in file order: "str" and "int" are tokens (strings, integer ids), "float" floats.
USER_COLUMNS = {
    "user_active_degree": "str",
    "is_lowactive_period": "int",
    "is_live_streamer": "int",
    "is_video_author": "int",
    "follow_user_num": "float",
    "follow_user_num_range": "str",
    "fans_user_num": "float",
    "fans_user_num_range": "str",
    "friend_user_num": "float",
    "friend_user_num_range": "str",
    "register_days": "float",
    "register_days_range": "str",
}
USER_COLUMNS.update({f"onehot_feat{k}": "int" for k in range(18)})

# Static video attributes taken from item_daily_features.csv (tokens), in file order.
ITEM_COLUMNS = {"author_id": "int", "video_type": "str", "upload_type": "str", "music_id": "int", "video_tag_id": "int"}

TAG_LIST = re.compile(r"\[\s*(\d+(\s*,\s*\d+)*)?\s*\]")
OPTION_KEYS = ("drop_duplicates", "drop_zero_play", "add_user_features", "add_item_features")


def read_options(config):
    """The converter options, validated (keys documented in properties/dataset/kuairec.yaml)."""
    options = {"kuairec_matrix": require(config, "kuairec_matrix")}
    if options["kuairec_matrix"] not in ("big", "small"):
        raise ValueError(f"kuairec_matrix must be 'big' or 'small', got {options['kuairec_matrix']!r}")
    options.update({key: bool_option(config, key) for key in OPTION_KEYS})
    options.update(bound_options(config))
    return options


def default_raw_dir(data_path, options):
    """`data_path/raw`: put the CSVs of `KuaiRec 2.0/data/` there."""
    return os.path.join(data_path, "raw")


def raw_files(raw_dir, options):
    """The files `convert` reads; RawDataMissing (saying what to download) if the matrix is absent."""
    matrix = os.path.join(raw_dir, f"{options['kuairec_matrix']}_matrix.csv")
    if not os.path.isfile(matrix):
        hint = ""
        if os.path.isdir(os.path.join(raw_dir, "data")) or os.path.isdir(os.path.join(raw_dir, "KuaiRec 2.0")):
            hint = " (this folder has a data/ or 'KuaiRec 2.0/' subfolder: point raw_data_path at the data folder itself)"
        raise RawDataMissing(
            f"KuaiRec raw file not found: {os.path.abspath(matrix)}{hint}.\n"
            f"Run\n    python -m recbole_lda download kuairec --dest DEST\nwhich downloads the archive, checks it, "
            f"unzips it and prints the --raw_data_path=... to use (DEST/KuaiRec 2.0/data). Or by hand: "
            f"download {DOWNLOAD_URL} (431,964,858 bytes; md5 261550d472c48eff4990fb13c0e5bcf7 "
            f"according to a third party, the README gives none) and unzip it. The CSVs are in the "
            f"zip under 'KuaiRec 2.0/data/'. Either pass --raw_data_path=DIR with DIR that data "
            f"folder, or put its files (at least {os.path.basename(matrix)}; also user_features.csv, "
            f"item_categories.csv, item_daily_features.csv for features) in the default folder "
            f"{os.path.abspath(raw_dir)}"
        )
    files = [matrix]
    wanted = []
    if options["add_user_features"]:
        wanted.append("user_features.csv")
    if options["add_item_features"]:
        wanted += ["item_categories.csv", "item_daily_features.csv"]
    for name in wanted:
        path = os.path.join(raw_dir, name)
        if os.path.isfile(path):
            files.append(path)
        else:
            logger.warning(f"{path} not found: converting without its features")
    return files


def convert(raw_dir, options):
    """Read the raw files of `raw_dir` and return the canonical Tables (see module docstring)."""
    missing = {}
    path = os.path.join(raw_dir, f"{options['kuairec_matrix']}_matrix.csv")
    table = read_csv(path, MATRIX_COLUMNS, required=["user_id", "video_id", "play_duration", "video_duration"],
                     missing=missing)
    n = table.num_rows
    logger.info(f"read {n:,} rows from {path}")
    col = {c: table.column(c).to_numpy() for c in MATRIX_COLUMNS}
    del table

    date = col["date"]
    known = ~np.isnan(date)
    check_yyyymmdd(date, path, "date", known=known)
    if (~known).any():
        logger.info(f"{int((~known).sum()):,} rows have no date (day 0: only split: time leaves them out)")

    play, vdur = col["play_duration"], col["video_duration"]
    rows = RowFilter(n, f"KuaiRec {path}")
    if options["drop_duplicates"]:
        rows.drop("duplicate row", pd.DataFrame({c: col[c] for c in DUPLICATE_KEY}).duplicated().to_numpy())
    rows.drop("video_duration <= 0", vdur <= 0)
    rows.drop("play_duration < 0", play < 0)
    seconds = vdur / 1000.0
    drop_by_options(rows, play / 1000.0, seconds, options, "play_duration == 0")
    inter = rows.interactions(col["user_id"], col["video_id"], play, seconds, np.where(known, date, 0),
                              timestamp=col["timestamp"])

    field_types = {}
    user = item = None
    user_path = os.path.join(raw_dir, "user_features.csv")
    if options["add_user_features"] and os.path.isfile(user_path):
        user = read_user_features(user_path, missing)
        user = user[user["user_id"].isin(inter["user_id"].unique())].reset_index(drop=True)
        field_types.update({c: "float" if t == "float" else "token" for c, t in USER_COLUMNS.items()})
    if options["add_item_features"]:
        item = read_item_features(raw_dir, missing)
        if item is not None:
            item = item[item["item_id"].isin(inter["item_id"].unique())].reset_index(drop=True)
            field_types.update({c: "token" for c in item.columns if c != "item_id"})
            if "tags" in item.columns:
                field_types["tags"] = "token_seq"
    return Tables(inter, field_types, user, item, rows_read=n, rows_dropped=rows.dropped, missing_values=missing)


def read_user_features(path, missing=None):
    """user_features.csv as a table keyed by user_id (tokens and floats as documented);
    values taken as missing are counted into `missing` (see raw.read_csv)."""
    # Integer tokens are read as floats: onehot_feat12..17 are written as 0.0 with some missing.
    columns = {"user_id": "int"} | {c: "float" if t == "int" else t for c, t in USER_COLUMNS.items()}
    table = read_csv(path, columns, required=["user_id"], missing=missing)
    user = pd.DataFrame({"user_id": table.column("user_id").to_numpy()})
    check_unique(user["user_id"], path, "user_id")
    for c, kind in USER_COLUMNS.items():
        user[c] = _column(table, c, kind, path)
    logger.info(f"read {len(user):,} users from {path}")
    return user


def _column(table, column, kind, path):
    """A feature column: "str" tokens (empty = missing), "int" tokens (nullable integers), or "float"."""
    values = table.column(column)
    if kind == "str":
        return str_tokens(values)
    if kind == "int":
        return int_tokens(values.to_numpy(zero_copy_only=False), path, column)
    return values.to_numpy(zero_copy_only=False)


def parse_tags(values, path):
    """List literals such as "[27, 9]" as space-separated token strings ("27 9"), without eval."""
    out = []
    for row, text in enumerate(values):
        text = "" if text is None else text.strip()
        if not TAG_LIST.fullmatch(text):
            raise RawDataError(f"{path}: column 'feat', line {row + 2}: expected a list of integers like [27, 9], got {text!r}")
        out.append(" ".join(re.findall(r"\d+", text)))
    return out


def read_item_features(raw_dir, missing=None):
    """Tags and static video attributes keyed by item_id, or None when neither file is there;
    values taken as missing are counted into `missing` (see raw.read_csv)."""
    parts = []
    cat_path = os.path.join(raw_dir, "item_categories.csv")
    if os.path.isfile(cat_path):
        table = read_csv(cat_path, {"video_id": "int", "feat": "str"}, required=["video_id"], missing=missing)
        tags = pd.DataFrame({"item_id": table.column("video_id").to_numpy()})
        check_unique(tags["item_id"], cat_path, "video_id")
        tags["tags"] = parse_tags(table.column("feat").to_pylist(), cat_path)
        parts.append(tags)
        logger.info(f"read tags of {len(tags)} videos from {cat_path}")
    daily_path = os.path.join(raw_dir, "item_daily_features.csv")
    if os.path.isfile(daily_path):
        columns = {"video_id": "int", "date": "float"} | {c: "float" if t == "int" else t for c, t in ITEM_COLUMNS.items()}
        table = read_csv(daily_path, columns, required=["video_id"], missing=missing)
        daily = pd.DataFrame({"item_id": table.column("video_id").to_numpy(), "date": table.column("date").to_numpy()})
        for c, kind in ITEM_COLUMNS.items():
            daily[c] = _column(table, c, kind, daily_path)
        static = (
            daily.sort_values(["item_id", "date"], kind="stable")
            .drop_duplicates("item_id")
            .drop(columns="date")
            .reset_index(drop=True)
        )
        parts.append(static)
        logger.info(f"read static attributes of {len(static)} videos from {daily_path} ({len(daily)} daily rows)")
    if not parts:
        return None
    item = parts[0]
    for part in parts[1:]:
        item = item.merge(part, on="item_id", how="outer")
    return item
