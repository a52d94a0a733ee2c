"""The preparation pipeline shared by every dataset: convert, cache, split, write atomic files.

`prepare(config)` turns a dataset's raw files into the folder RecBole reads:

1. The dataset's converter (a module registered in `common.CONVERTERS`) checks that its
   raw files exist (fail fast, before any heavy work) and converts them into a canonical
   `Tables` set: interactions with watch time and duration in seconds, optional user and
   item feature tables, the RecBole type of every feature column, the rows each rule
   dropped and the values taken as missing.
2. The converted tables are cached as parquet under
   `data_path/converted/<key>/`, keyed on the converter's version and options and on the
   (path, size, mtime_ns) of every raw file it reads: a different raw folder, a changed
   file or a changed option converts again.
3. The interactions are split (dataset_prep/split.py: `split: random` by `split_ratio`
   and `split_seed`, or `split: time` by `split_dates`) and written as RecBole atomic files
   into `data_path/prepared/<split>-<key>/`, keyed on the conversion key and the split
   options: `{dataset}.train.inter`, `{dataset}.valid.inter`, `{dataset}.test.inter`, and
   `{dataset}.user` / `{dataset}.item` when the dataset has such features, plus
   `meta.json` (row counts, drop counts per rule, values taken as missing, files, timings).

Every folder is written under a temporary name and renamed into place, so a run that
dies half-way never leaves a folder that a later run takes as complete. Each folder's
record (`tables.json`, `meta.json`) lists its files and their sizes: a folder damaged
later (a deleted record, a missing or truncated file, an unreadable parquet file) is
reported in one warning line, removed and built again.
"""

import dataclasses
import logging
import os
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dataset_prep.common import (
    DamagedCache, PreparedDataset, Tables, atomic_dir, config_get, converter, discard_damaged, file_signature,
    read_record, require, short_hash,
)
from dataset_prep.split import read_split_options, split_rows, write_atomic_files
from recbole_lda.utils.fileio import read_json, write_json

logger = logging.getLogger(__name__)

# Bump when the split or the atomic file format changes, so that old prepared folders are not reused.
PREPARED_VERSION = 2  # 2: meta.json lists the files (sizes) and missing_values
FIELD_TYPES = ("token", "float", "token_seq")
TABLE_NAMES = ("inter", "user", "item")


def _check_tables(tables):
    """Clear errors for a converter that breaks the Tables contract."""
    needed = ["user_id", "item_id", "label", "duration", "day"]
    missing = [c for c in needed if c not in tables.inter.columns]
    if missing:
        raise ValueError(f"converter output lacks inter column(s) {missing}")
    for name, ftype in tables.field_types.items():
        if ftype not in FIELD_TYPES:
            raise ValueError(f"field {name!r} has type {ftype!r}; expected one of {FIELD_TYPES}")


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
        return read_json(meta_file)["raw_dir"]
    return module.default_raw_dir(data_path, options)


def _load_cached(cache_dir):
    """The converted tables and tables.json of a conversion cache; DamagedCache when
    anything is missing, truncated or unreadable."""
    info = read_record(cache_dir, "tables.json")
    frames = {}
    for name in TABLE_NAMES:
        if f"{name}.parquet" in info["files"]:
            try:
                frames[name] = pd.read_parquet(os.path.join(cache_dir, f"{name}.parquet"))
            except (OSError, ValueError, pa.ArrowException) as err:
                raise DamagedCache(f"{name}.parquet is unreadable ({err})") from None
    if "inter" not in frames or len(frames["inter"]) != info.get("rows_kept"):
        raise DamagedCache(f"inter.parquet does not hold the {info.get('rows_kept')} rows written")
    tables = Tables(
        frames["inter"], info["field_types"], frames.get("user"), frames.get("item"),
        info["rows_read"], info["rows_dropped"], info["missing_values"],
    )
    return tables, info


def _load_or_convert(module, raw_dir, options, cache_dir):
    """The converted tables and their stats, from the cache or by converting now."""
    if os.path.isdir(cache_dir):
        try:
            tables, info = _load_cached(cache_dir)
            logger.info(f"conversion cache hit: {cache_dir}")
            return tables, info["conversion_seconds"], True
        except DamagedCache as err:
            discard_damaged(cache_dir, err)

    logger.info(f"converting raw files in {raw_dir}")
    start = time.perf_counter()
    tables = module.convert(raw_dir, options)
    _check_tables(tables)
    seconds = time.perf_counter() - start
    logger.info(
        f"converted {tables.rows_read} rows -> {len(tables.inter)} kept in {seconds:.1f} s; "
        f"dropped: {tables.rows_dropped}; values taken as missing: {tables.missing_values or 'none'}"
    )
    with atomic_dir(cache_dir) as tmp:
        files = {}
        for name in TABLE_NAMES:
            frame = getattr(tables, name)
            if frame is not None:
                path = os.path.join(tmp, f"{name}.parquet")
                pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
                files[f"{name}.parquet"] = os.path.getsize(path)
        write_json(os.path.join(tmp, "tables.json"), {
            "field_types": tables.field_types,
            "rows_read": tables.rows_read,
            "rows_kept": len(tables.inter),
            "rows_dropped": tables.rows_dropped,
            "missing_values": tables.missing_values,
            "conversion_seconds": seconds,
            "raw_dir": os.path.abspath(raw_dir),
            "options": options,
            "files": files,
        })
    return tables, seconds, False


def _load_prepared(prepared_dir):
    """meta.json of a prepared folder whose files are all there, or None (a damaged
    folder is logged and removed, to be written again)."""
    if not os.path.isdir(prepared_dir):
        return None
    try:
        return read_record(prepared_dir, "meta.json")
    except DamagedCache as err:
        discard_damaged(prepared_dir, err)
        return None


def read_label_clip(config):
    """Validated label clipping options: {label_clip, label_clip_quantile} (quantile None unless used)."""
    kind = config_get(config, "label_clip")
    if kind not in (None, "duration", "duration_quantile"):
        raise ValueError(f"label_clip must be ~, 'duration' or 'duration_quantile', got {kind!r}")
    q = None
    if kind == "duration_quantile":
        q = float(require(config, "label_clip_quantile"))
        if not 0 < q <= 1:
            raise ValueError(f"label_clip_quantile must be in (0, 1], got {q}")
    return {"label_clip": kind, "label_clip_quantile": q}


def clip_labels(tables, parts, clip):
    """Clip the label of every split's rows (a protocol's target truncation).

    duration: at each row's duration (CWM); duration_quantile: at the label_clip_quantile
    quantile of the training split's durations (HEGM's 99th percentile, from training rows
    only). Returns (tables with a clipped copy of inter, {"label_clip_at": bound or None,
    "label_clipped": {split: rows clipped}}); tables unchanged when label_clip is ~.
    """
    kind = clip["label_clip"]
    if kind is None:
        return tables, {}
    inter = tables.inter
    label = inter["label"].to_numpy(dtype=np.float64)
    duration = inter["duration"].to_numpy(dtype=np.float64)
    if kind == "duration":
        bound, at = duration, None
    else:
        train = duration[parts["train"]]
        if len(train) == 0:
            raise ValueError("label_clip: duration_quantile needs training rows")
        at = float(np.quantile(train, clip["label_clip_quantile"]))
        bound = np.full(len(label), at)
    over = label > bound
    counts = {name: int(over[rows].sum()) for name, rows in parts.items()}
    logger.info(f"label_clip {kind}{'' if at is None else f' at {at:g} s'}: labels clipped per split {counts}")
    inter = inter.copy()
    inter["label"] = np.where(over, bound, label).astype(inter["label"].dtype)
    return dataclasses.replace(tables, inter=inter), {"label_clip_at": at, "label_clipped": counts}


@dataclasses.dataclass
class Location:
    """Where a dataset's prepared files are and what identifies them (`locate`)."""

    name: str
    module: object
    split: dict
    options: dict
    data_path: str
    raw_dir: str
    files: list
    clip: dict
    conversion_key: str  # the converter, its options and the raw files (real path, size, mtime)
    prepared_key: str  # the conversion key, the split and label clipping: the data's identity
    prepared_dir: str


def locate(config):
    """The keys and folder of the dataset `prepare(config)` would return, without converting
    or splitting anything (the synthetic generator still writes its raw files on first use)."""
    name = require(config, "dataset")
    module = converter(name, config_get(config, "converter"))
    split = read_split_options(config)
    options = module.read_options(config)
    data_path = require(config, "data_path")
    raw_dir = config_get(config, "raw_data_path") or module.default_raw_dir(data_path, options)
    files = module.raw_files(raw_dir, options)
    key = {"dataset": name, "version": module.VERSION, "options": options, "files": file_signature(files)}
    if config_get(config, "converter"):  # a dataset of one's own (the built-in ones keep their keys)
        key["converter"] = config_get(config, "converter")
    conversion_key = short_hash(key)
    clip = read_label_clip(config)
    prepared_key = _prepared_key(conversion_key, split, clip)
    prepared_dir = os.path.join(data_path, "prepared", f"{split['split']}-{prepared_key}")
    return Location(name, module, split, options, data_path, raw_dir, files, clip, conversion_key, prepared_key,
                    prepared_dir)


def prepare(config):
    """Convert (cached), split and write the dataset `config['dataset']` for RecBole.

    Config keys: dataset, data_path (this dataset's folder: caches live under it),
    raw_data_path (None -> the converter's default folder under data_path), split,
    split_ratio, split_seed, split_dates, and the converter's options (see its dataset YAML).

    Returns:
        PreparedDataset: path of the prepared folder and meta (also in path/meta.json).
    """
    start = time.perf_counter()
    where = locate(config)
    name, module, split, options = where.name, where.module, where.split, where.options
    raw_dir, files, clip = where.raw_dir, where.files, where.clip
    data_path, conversion_key, prepared_key, prepared_dir = (where.data_path, where.conversion_key,
                                                             where.prepared_key, where.prepared_dir)
    meta = _load_prepared(prepared_dir)
    if meta is not None:
        meta.update(prepared_cache_hit=True, prepare_seconds=time.perf_counter() - start)
        logger.info(f"prepared cache hit: {prepared_dir}")
        return PreparedDataset(prepared_dir, meta)

    cache_dir = os.path.join(data_path, "converted", conversion_key)
    tables, conversion_seconds, conversion_hit = _load_or_convert(module, raw_dir, options, cache_dir)
    parts = split_rows(tables.inter, split)
    tables, clipped = clip_labels(tables, parts, clip)

    write_start = time.perf_counter()
    with atomic_dir(prepared_dir) as tmp:
        types, written = write_atomic_files(tmp, name, tables, parts)
        meta = {
            "dataset": name,
            "raw_dir": os.path.abspath(raw_dir),
            "raw_files": [os.path.basename(p) for p in files],
            "options": options,
            "split_options": split,
            "conversion_key": conversion_key,
            "prepared_key": prepared_key,
            **_table_counts(tables, parts),
            "label_clip": {**clip, **clipped},
            "fields": types,
            "files": written,
            "conversion_seconds": conversion_seconds,
            "conversion_cache_hit": conversion_hit,
            "write_seconds": time.perf_counter() - write_start,
        }
        write_json(os.path.join(tmp, "meta.json"), meta)
    logger.info(f"prepared {prepared_dir}: rows per split {meta['rows_per_split']}")
    meta.update(prepared_cache_hit=False, prepare_seconds=time.perf_counter() - start)
    return PreparedDataset(prepared_dir, meta)



def _prepared_key(conversion_key, split, clip):
    """The prepared folder's key: the conversion, the split options and the label clip."""
    key_parts = {"conversion": conversion_key, "split": split, "version": PREPARED_VERSION}
    if clip["label_clip"] is not None:  # unclipped runs keep their old prepared folders
        key_parts["label_clip"] = clip
    return short_hash(key_parts)


def _table_counts(tables, parts):
    """Rows read, kept and dropped (per rule), missing values, rows per split, users, items."""
    return {
        "rows_read": tables.rows_read,
        "rows_kept": len(tables.inter),
        "rows_dropped": tables.rows_dropped,
        "missing_values": tables.missing_values,
        "rows_per_split": {k: len(v) for k, v in parts.items()},
        "users": int(tables.inter["user_id"].nunique()),
        "items": int(tables.inter["item_id"].nunique()),
    }


def oracle_predictions(config, user_ids, item_ids):
    """Best achievable watch-time predictions (seconds) for (user, item) raw-id rows.

    Only datasets whose generating distribution is known have them (synthetic: the true
    conditional median, which minimises expected absolute error); others return None.
    """
    module = converter(require(config, "dataset"), config_get(config, "converter"))
    if not hasattr(module, "oracle"):
        return None
    options = module.read_options(config)
    raw_dir = _resolve_raw_dir(config, module, options)
    module.raw_files(raw_dir, options)
    return module.oracle(raw_dir, np.asarray(user_ids, dtype=np.int64), np.asarray(item_ids, dtype=np.int64))
