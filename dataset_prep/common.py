"""The preparation pipeline shared by every dataset: convert, cache, split, write atomic files.

`prepare(config)` turns a dataset's raw files into the folder RecBole reads:

1. The dataset's converter (a module registered in `CONVERTERS`) checks that its raw files
   exist (fail fast, before any heavy work) and converts them into a canonical `Tables`
   set: interactions with watch time and duration in seconds, optional user and item
   feature tables, and the RecBole type of every feature column.
2. The converted tables are cached as parquet under
   `data_path/converted/<key>/`, keyed on the converter's version and options and on the
   (path, size, mtime_ns) of every raw file it reads: a different raw folder, a changed
   file or a changed option converts again.
3. The interactions are split (`split: random` by `split_ratio` and `split_seed`, or
   `split: time` by `split_dates`) and written as RecBole atomic files into
   `data_path/prepared/<split>-<key>/`, keyed on the conversion key and the split options:
   `{dataset}.train.inter`, `{dataset}.valid.inter`, `{dataset}.test.inter`, and
   `{dataset}.user` / `{dataset}.item` when the dataset has such features, plus
   `meta.json` (row counts, drop counts per rule, timings).

Every folder is written under a temporary name and renamed into place, so a run that
dies half-way never leaves a folder that a later run takes as complete.

A converter module provides:
    VERSION (int): bumped when its output changes, so that old caches are not reused.
    read_options(config) -> dict: its validated, JSON-serialisable options.
    default_raw_dir(data_path, options) -> str: where raw files go when
        `raw_data_path` is not set.
    raw_files(raw_dir, options) -> list[str]: the files `convert` will read (a converter
        may create them, as the synthetic one does); raises RawDataMissing.
    convert(raw_dir, options) -> Tables.
    oracle(raw_dir, user_ids, item_ids) -> ndarray (optional): best achievable predictions.
"""

import hashlib
import importlib
import json
import logging
import os
import re
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

logger = logging.getLogger(__name__)

# Dataset name -> converter module. Add a dataset by adding its module here.
CONVERTERS = {
    "synthetic": "dataset_prep.synthetic",
    "kuairec": "dataset_prep.kuairec",
    "wechat": "dataset_prep.wechat",
    "kuairand": "dataset_prep.kuairand",
}

# Bump when the split or the atomic file format changes, so that old prepared folders are not reused.
PREPARED_VERSION = 1

# Fields every prepared dataset has, with their RecBole types.
FIXED_FIELDS = {"user_id": "token", "item_id": "token", "label": "float", "duration": "float"}
FIELD_TYPES = ("token", "float", "token_seq")
SPLITS = ("train", "valid", "test")


class RawDataMissing(FileNotFoundError):
    """A raw file that the conversion needs is not there; the message says what to get."""


class RawDataError(ValueError):
    """A raw file is malformed; the message names the file, column, line and expectation."""


@dataclass
class Tables:
    """The canonical table set a converter returns.

    inter: one row per kept interaction: user_id (int raw id), item_id (int raw id),
        label (float, watch time in seconds), duration (float, video duration in seconds),
        day (int YYYYMMDD, 0 where unknown), optionally timestamp (float Unix seconds), and
        the extra per-interaction feature columns named in field_types.
    field_types: RecBole type (token, float, token_seq) of every feature column of inter,
        user and item, ids excluded. token_seq values are space-separated strings.
    user / item: feature tables keyed by user_id / item_id, or None.
    rows_read: raw interaction rows read.
    rows_dropped: rule description -> rows dropped by it (rules apply in order).
    """

    inter: pd.DataFrame
    field_types: dict
    user: pd.DataFrame = None
    item: pd.DataFrame = None
    rows_read: int = 0
    rows_dropped: dict = field(default_factory=dict)


@dataclass
class PreparedDataset:
    """path: the folder RecBole reads (set config['data_path'] to it); meta: what was done."""

    path: str
    meta: dict


def config_get(config, key):
    """config[key], or None when absent (a RecBole Config returns None; a dict raises)."""
    try:
        return config[key]
    except KeyError:
        return None


def require(config, key):
    """config[key]; a clear error if the key is not set."""
    value = config_get(config, key)
    if value is None:
        raise ValueError(
            f"config key {key!r} is not set; it is defined in properties/dataset/{config_get(config, 'dataset')}.yaml"
        )
    return value


def converter(name):
    """The converter module registered for dataset `name`."""
    if name not in CONVERTERS:
        raise ValueError(f"no converter for dataset {name!r}; known datasets: {sorted(CONVERTERS)}")
    return importlib.import_module(CONVERTERS[name])


def short_hash(obj):
    """A 16-hex-digit digest of a JSON-serialisable object."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def file_signature(paths):
    """(real path, size, mtime_ns) of each file: changes when a file is replaced or edited."""
    sig = []
    for path in paths:
        st = os.stat(path)
        sig.append([os.path.realpath(path), st.st_size, st.st_mtime_ns])
    return sig


# ---------------------------------------------------------------------------------------
# Atomic folders


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def atomic_dir(final):
    """Yield a temporary folder `final.tmp-<pid>`; on success rename it to `final`.

    On an exception the temporary folder is removed. Temporary folders left by dead
    processes (killed runs) are removed first. If another process completed `final` in
    the meantime, its folder is kept and ours is discarded.
    """
    parent, base = os.path.split(os.path.abspath(final))
    os.makedirs(parent, exist_ok=True)
    for entry in os.listdir(parent):
        m = re.fullmatch(re.escape(base) + r"\.tmp-(\d+)", entry)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            logger.info(f"removing {entry}, left by a run that did not finish")
            shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)
    tmp = f"{os.path.abspath(final)}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        os.replace(tmp, final)
    except OSError:
        if not os.path.isdir(final):
            raise
        shutil.rmtree(tmp, ignore_errors=True)
        logger.info(f"{final} was completed by another process; using it")


# ---------------------------------------------------------------------------------------
# Split


def read_split_options(config):
    """Validated split options: {split, split_ratio, split_seed} or {split, split_dates}."""
    kind = require(config, "split")
    if kind == "random":
        ratio = require(config, "split_ratio")
        if len(ratio) != 3 or any(r < 0 for r in ratio) or abs(sum(ratio) - 1) > 1e-6:
            raise ValueError(f"split_ratio must be three non-negative shares (train, valid, test) summing to 1, got {ratio}")
        seed = require(config, "split_seed")
        if not isinstance(seed, (int, np.integer)):
            raise ValueError(f"split_seed must be an integer, got {seed!r}")
        return {"split": "random", "split_ratio": [float(r) for r in ratio], "split_seed": int(seed)}
    if kind == "time":
        dates = require(config, "split_dates")
        if len(dates) != 2:
            raise ValueError(f"split_dates must be [VALID_START, TEST_START] (YYYYMMDD), got {dates}")
        for d in dates:
            try:
                datetime.strptime(str(int(d)), "%Y%m%d")
            except ValueError:
                raise ValueError(f"split_dates: {d!r} is not a YYYYMMDD date") from None
        if not int(dates[0]) < int(dates[1]):
            raise ValueError(f"split_dates must be increasing (VALID_START < TEST_START), got {dates}")
        return {"split": "time", "split_dates": [int(d) for d in dates]}
    raise ValueError(f"split must be 'random' or 'time', got {kind!r}")


def split_rows(inter, split):
    """Row positions of each split, each sorted, as {train, valid, test} -> int array.

    random: a permutation seeded by split_seed, cut at round(ratio * rows).
    time: day < VALID_START train, VALID_START <= day < TEST_START valid, day >= TEST_START
    test; rows whose day is unknown (0) are left out (reported as "unknown_day").
    """
    n = len(inter)
    if split["split"] == "random":
        perm = np.random.default_rng(split["split_seed"]).permutation(n)
        r = split["split_ratio"]
        cuts = [0, int(round(r[0] * n)), int(round((r[0] + r[1]) * n)), n]
        parts = {name: np.sort(perm[cuts[k] : cuts[k + 1]]) for k, name in enumerate(SPLITS)}
        detail = f"{r} of {n} rows"
    else:
        day = inter["day"].to_numpy()
        valid_start, test_start = split["split_dates"]
        known = day > 0
        parts = {
            "train": np.flatnonzero(known & (day < valid_start)),
            "valid": np.flatnonzero((day >= valid_start) & (day < test_start)),
            "test": np.flatnonzero(day >= test_start),
        }
        if (~known).any():
            parts["unknown_day"] = np.flatnonzero(~known)
            logger.info(f"time split: {int((~known).sum())} rows without a date left out")
        detail = f"dates {split['split_dates']}, days {day[known].min() if known.any() else None}..{day.max()}"
    for name in SPLITS:
        if len(parts[name]) == 0:
            raise ValueError(f"the {name} split is empty ({split['split']} split, {detail})")
    return parts


# ---------------------------------------------------------------------------------------
# Atomic files


def write_atomic_file(path, table, types):
    """Write a RecBole atomic file: tab-separated, header `name:type`, no quoting.

    Args:
        path (str): the file.
        table (pyarrow.Table): the columns to write; nulls are written as empty fields
            (RecBole reads them as missing: [PAD] for tokens, the mean for floats).
        types (dict[str, str]): column -> RecBole type.
    """
    header = "\t".join(f"{c}:{types[c]}" for c in table.column_names) + "\n"
    with open(path, "wb") as f:
        f.write(header.encode())
        pcsv.write_csv(table, f, pcsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none"))


def _check_tables(tables):
    """Clear errors for a converter that breaks the Tables contract."""
    needed = ["user_id", "item_id", "label", "duration", "day"]
    missing = [c for c in needed if c not in tables.inter.columns]
    if missing:
        raise ValueError(f"converter output lacks inter column(s) {missing}")
    for name, ftype in tables.field_types.items():
        if ftype not in FIELD_TYPES:
            raise ValueError(f"field {name!r} has type {ftype!r}; expected one of {FIELD_TYPES}")


# ---------------------------------------------------------------------------------------
# Pipeline


def _resolve_raw_dir(config, module, options):
    """raw_data_path, or the converter's default folder under data_path.

    config['data_path'] may also be a prepared folder (callers set it to
    PreparedDataset.path before asking for oracle predictions): its meta.json names the
    raw folder.
    """
    if config_get(config, "raw_data_path"):
        return config_get(config, "raw_data_path")
    data_path = require(config, "data_path")
    meta_file = os.path.join(data_path, "meta.json")
    if os.path.isfile(meta_file):
        with open(meta_file) as f:
            return json.load(f)["raw_dir"]
    return module.default_raw_dir(data_path, options)


def _load_or_convert(module, raw_dir, options, cache_dir):
    """The converted tables and their stats, from the cache or by converting now."""
    if os.path.isdir(cache_dir):
        logger.info(f"conversion cache hit: {cache_dir}")
        with open(os.path.join(cache_dir, "tables.json")) as f:
            info = json.load(f)
        frames = {
            name: pd.read_parquet(os.path.join(cache_dir, f"{name}.parquet"))
            for name in ("inter", "user", "item")
            if os.path.exists(os.path.join(cache_dir, f"{name}.parquet"))
        }
        tables = Tables(
            frames["inter"], info["field_types"], frames.get("user"), frames.get("item"),
            info["rows_read"], info["rows_dropped"],
        )
        return tables, info["conversion_seconds"], True

    logger.info(f"converting raw files in {raw_dir}")
    start = time.perf_counter()
    tables = module.convert(raw_dir, options)
    _check_tables(tables)
    seconds = time.perf_counter() - start
    logger.info(
        f"converted {tables.rows_read} rows -> {len(tables.inter)} kept in {seconds:.1f} s; "
        f"dropped: {tables.rows_dropped}"
    )
    with atomic_dir(cache_dir) as tmp:
        for name in ("inter", "user", "item"):
            frame = getattr(tables, name)
            if frame is not None:
                pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), os.path.join(tmp, f"{name}.parquet"))
        info = {
            "field_types": tables.field_types,
            "rows_read": tables.rows_read,
            "rows_dropped": tables.rows_dropped,
            "conversion_seconds": seconds,
            "raw_dir": os.path.abspath(raw_dir),
            "options": options,
        }
        with open(os.path.join(tmp, "tables.json"), "w") as f:
            json.dump(info, f, indent=2)
    return tables, seconds, False


def prepare(config):
    """Convert (cached), split and write the dataset `config['dataset']` for RecBole.

    Config keys: dataset, data_path (this dataset's folder: caches live under it),
    raw_data_path (None -> the converter's default folder under data_path), split,
    split_ratio, split_seed, split_dates, and the converter's options (see its dataset YAML).

    Returns:
        PreparedDataset: path of the prepared folder and meta (also in path/meta.json).
    """
    start = time.perf_counter()
    name = require(config, "dataset")
    module = converter(name)
    split = read_split_options(config)
    options = module.read_options(config)
    data_path = require(config, "data_path")
    raw_dir = config_get(config, "raw_data_path") or module.default_raw_dir(data_path, options)
    files = module.raw_files(raw_dir, options)

    conversion_key = short_hash(
        {"dataset": name, "version": module.VERSION, "options": options, "files": file_signature(files)}
    )
    prepared_key = short_hash({"conversion": conversion_key, "split": split, "version": PREPARED_VERSION})
    prepared_dir = os.path.join(data_path, "prepared", f"{split['split']}-{prepared_key}")
    if os.path.isdir(prepared_dir):
        with open(os.path.join(prepared_dir, "meta.json")) as f:
            meta = json.load(f)
        meta.update(prepared_cache_hit=True, prepare_seconds=time.perf_counter() - start)
        logger.info(f"prepared cache hit: {prepared_dir}")
        return PreparedDataset(prepared_dir, meta)

    cache_dir = os.path.join(data_path, "converted", conversion_key)
    tables, conversion_seconds, conversion_hit = _load_or_convert(module, raw_dir, options, cache_dir)
    parts = split_rows(tables.inter, split)

    types = dict(FIXED_FIELDS, **tables.field_types)
    inter_cols = ["user_id", "item_id", "label", "duration"] + [c for c in tables.inter.columns if c in tables.field_types]
    inter = pa.Table.from_pandas(tables.inter[inter_cols], preserve_index=False)
    write_start = time.perf_counter()
    with atomic_dir(prepared_dir) as tmp:
        for part in SPLITS:
            write_atomic_file(os.path.join(tmp, f"{name}.{part}.inter"), inter.take(parts[part]), types)
        for kind, frame in (("user", tables.user), ("item", tables.item)):
            if frame is not None:
                write_atomic_file(os.path.join(tmp, f"{name}.{kind}"), pa.Table.from_pandas(frame, preserve_index=False), types)
        meta = {
            "dataset": name,
            "raw_dir": os.path.abspath(raw_dir),
            "raw_files": [os.path.basename(p) for p in files],
            "options": options,
            "split_options": split,
            "conversion_key": conversion_key,
            "prepared_key": prepared_key,
            "rows_read": tables.rows_read,
            "rows_kept": len(tables.inter),
            "rows_dropped": tables.rows_dropped,
            "rows_per_split": {k: len(v) for k, v in parts.items()},
            "users": int(tables.inter["user_id"].nunique()),
            "items": int(tables.inter["item_id"].nunique()),
            "fields": types,
            "conversion_seconds": conversion_seconds,
            "conversion_cache_hit": conversion_hit,
            "write_seconds": time.perf_counter() - write_start,
        }
        with open(os.path.join(tmp, "meta.json"), "w") as f:
            json.dump(meta, f, indent=2)
    logger.info(f"prepared {prepared_dir}: rows per split {meta['rows_per_split']}")
    meta.update(prepared_cache_hit=False, prepare_seconds=time.perf_counter() - start)
    return PreparedDataset(prepared_dir, meta)


def oracle_predictions(config, user_ids, item_ids):
    """Best achievable watch-time predictions (seconds) for (user, item) raw-id rows.

    Only datasets whose generating distribution is known have them (synthetic: the true
    conditional median, which minimises expected absolute error); others return None.
    """
    module = converter(require(config, "dataset"))
    if not hasattr(module, "oracle"):
        return None
    options = module.read_options(config)
    raw_dir = _resolve_raw_dir(config, module, options)
    module.raw_files(raw_dir, options)
    return module.oracle(raw_dir, np.asarray(user_ids, dtype=np.int64), np.asarray(item_ids, dtype=np.int64))
