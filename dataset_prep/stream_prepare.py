"""`prepare_stream(config)`: raw files to partitioned Parquet, with memory bounded by
`stream_chunk_rows` (properties/overall.yaml), not by the row count. Datasets: kuairand,
synthetic_kuairand (KuaiRand's format), kuairec and synthetic (KuaiRec's format); see
dataset_prep/stream_formats.py. WeChat is not streamed.

Writes `data_path/streamed/<split>-<key>/` (key: the raw files' conversion key as in
dataset_prep.pipeline, the split, the label clip, the chunk size), under a temporary name
renamed into place when complete (a run killed midway leaves nothing that a later run
takes as complete; the next run removes it and starts again, and writes the same files):
    train/, valid/, test/: part-NNNNN.parquet, one per user bucket that has rows in that
        split (a user's rows of one split are in one file): user_id, item_id (raw ids),
        label (watch time, s), duration (s), day (YYYYMMDD), the context tokens hour, tab,
        is_rand that the in-memory conversion writes, user_index and item_index (dense,
        0-based positions in user_ids.parquet / item_ids.parquet).
    user_ids.parquet, item_ids.parquet: the sorted raw ids of the kept rows.
    user.parquet, item.parquet: the feature tables, as the in-memory conversion makes them
        (KuaiRand's video features are read in chunks; KuaiRec's item tables whole).
    meta.json (written last): the counts of pipeline.prepare's meta.json (rows read, kept,
        dropped per rule, missing values, rows per split, users, items) and the files.
The passes are in dataset_prep/stream.py, stream_formats.py and stream_split.py; which rows are kept, the
counts and the time split equal the in-memory conversion's; the random split keeps its
proportions but assigns rows by a hash of their position (stream_split.py).
RecBole's in-memory runs do not use this folder (they use pipeline.prepare's).
"""

import logging
import math
import os
import shutil
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dataset_prep import stream
from dataset_prep import stream_split as ss
from dataset_prep.common import (
    DamagedCache, PreparedDataset, RawDataError, atomic_dir, config_get, converter, discard_damaged, file_signature,
    read_record, require, short_hash,
)
from dataset_prep.pipeline import read_label_clip
from dataset_prep.split import FIXED_FIELDS, read_split_options
from dataset_prep.statistics import ValueCounts
from dataset_prep.stream_formats import FORMATS
from dataset_prep.stream_read import estimate_rows
from recbole_lda.utils.fileio import write_json

logger = logging.getLogger(__name__)

STREAMED_VERSION = 2  # 2: partitions in row groups of ROW_GROUP_ROWS rows (1: one row group per partition)
STREAMING_DATASETS = tuple(FORMATS)
MAX_BUCKETS = 1000  # open files of pass 1
# Rows per Parquet row group of the partitions. A row group is the unit the ray engine's
# workers read and shuffle (recbole_lda/quick_start/partitions.py): a partition holds the rows
# of about 85 users (KuaiRand-27K, default stream_chunk_rows), so small row groups let one
# shuffle window mix rows of many partitions, i.e. of many users.
ROW_GROUP_ROWS = 65_536


def read_chunk_rows(config):
    value = require(config, "stream_chunk_rows")
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"stream_chunk_rows must be a positive integer (rows per chunk), got {value!r}")
    return int(value)


def prepare_stream(config):
    """Convert and split `config['dataset']` into partitioned Parquet (module docstring);
    returns PreparedDataset(folder, meta), from the cache when the folder is complete."""
    start = time.perf_counter()
    name = require(config, "dataset")
    if name not in STREAMING_DATASETS:
        raise ValueError(f"the streaming conversion supports {', '.join(STREAMING_DATASETS)}, not {name!r}")
    module = converter(name)
    split, options = read_split_options(config), module.read_options(config)
    chunk_rows, clip = read_chunk_rows(config), read_label_clip(config)
    data_path = require(config, "data_path")
    raw_dir = config_get(config, "raw_data_path") or module.default_raw_dir(data_path, options)
    files = module.raw_files(raw_dir, options)
    conversion_key = short_hash({"dataset": name, "version": module.VERSION, "options": options,
                                 "files": file_signature(files)})
    key = short_hash({"conversion": conversion_key, "split": split, "label_clip": clip, "chunk_rows": chunk_rows,
                      "version": STREAMED_VERSION})
    folder = os.path.join(data_path, "streamed", f"{split['split']}-{key}")
    if os.path.isdir(folder):
        try:
            meta = read_record(folder, "meta.json")
            logger.info(f"streamed cache hit: {folder}")
            return PreparedDataset(folder, meta | {"cache_hit": True})
        except DamagedCache as err:
            discard_damaged(folder, err)
    with atomic_dir(folder) as tmp:
        meta = convert_into(tmp, raw_dir, options, split, clip, chunk_rows, name)
        meta.update(dataset=name, raw_dir=os.path.abspath(raw_dir), raw_files=[os.path.basename(p) for p in files],
                    options=options, split_options=split, conversion_key=conversion_key, streamed_key=key,
                    stream_chunk_rows=chunk_rows, seconds=time.perf_counter() - start)
        write_json(os.path.join(tmp, "meta.json"), meta)
    logger.info(f"streamed {folder}: rows per split {meta['rows_per_split']}")
    return PreparedDataset(folder, meta | {"cache_hit": False})


def convert_into(folder, raw_dir, options, split, clip, chunk_rows, dataset):
    """All passes into `folder`; returns meta.json's counts, fields and files."""
    fmt = FORMATS[dataset](raw_dir, options, chunk_rows)
    missing = {}
    buckets = min(MAX_BUCKETS, max(1, math.ceil(estimate_rows(fmt.interaction_files()) / chunk_rows)))
    work = os.path.join(folder, "work")
    os.makedirs(work)
    rows_read = stream.bucket_rows(fmt.batches(missing), buckets, work)
    names = fmt.rule_names()
    dropped, users, items, histogram = clean_all(work, buckets, options, split, names)
    kept = int(histogram.sum())
    if kept == 0:
        raise RawDataError(f"{dataset} raw files in {raw_dir}: no rows left after filtering ({dict(zip(names, dropped))})")
    cuts = random_cuts(work, buckets, split, histogram, kept) if split["split"] == "random" else None
    columns = fmt.output_columns()
    clip_at = clip_bound(work, buckets, split, cuts, clip)
    rows_per_split, clipped = write_partitions(folder, work, buckets, split, cuts, columns, (users, items), (clip, clip_at))
    shutil.rmtree(work)
    types = dict(FIXED_FIELDS, **{c: "token" for c in columns})
    types |= fmt.write_features(folder, users, items, missing)
    pq.write_table(pa.table({"user_id": users}), os.path.join(folder, "user_ids.parquet"))
    pq.write_table(pa.table({"item_id": items}), os.path.join(folder, "item_ids.parquet"))
    files = sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs)
    return {
        "rows_read": rows_read, "rows_kept": kept, "rows_dropped": dict(zip(names, (int(d) for d in dropped))),
        "missing_values": missing, "rows_per_split": rows_per_split, "users": len(users), "items": len(items),
        "label_clip": {**clip, **({"label_clip_at": clip_at, "label_clipped": clipped} if clip["label_clip"] else {})},
        "fields": types, "partitions": buckets, "files": {f: os.path.getsize(os.path.join(folder, f)) for f in files},
    }


def clean_all(work, buckets, options, split, names):
    """Pass 2 over every bucket: drop counts, id sets and (random split) the key histogram
    (for a time split: the kept rows, as the histogram's sum)."""
    dropped = np.zeros(len(names), dtype=np.int64)
    users, items = ss.IdSet(), ss.IdSet()
    histogram = np.zeros(1 << ss.TOP_BITS, dtype=np.int64)
    for b in range(buckets):
        path = os.path.join(work, f"bucket-{b:05d}.arrow")
        kept = stream.clean_bucket(path, options, dropped)
        os.remove(path)
        with pa.OSFile(os.path.join(work, f"kept-{b:05d}.arrow"), "wb") as sink:
            with pa.ipc.new_file(sink, kept.schema, options=stream.IPC_OPTIONS) as writer:
                writer.write_table(kept)
        users.add(kept.column("user_id").to_numpy())
        items.add(kept.column("item_id").to_numpy())
        if split["split"] == "random":
            histogram += ss.top_histogram(ss.split_keys(kept.column("row").to_numpy(), split["split_seed"]))
        else:
            histogram[0] += kept.num_rows
    return dropped, users.merge(), items.merge(), histogram


def kept_tables(work, buckets):
    for b in range(buckets):
        yield b, stream.read_arrow(os.path.join(work, f"kept-{b:05d}.arrow"))


def random_cuts(work, buckets, split, histogram, kept):
    """The random split's two cut keys (exact counts: see stream_split)."""
    bins = ss.cut_bins(histogram, ss.cut_counts(kept, split["split_ratio"]))
    wanted = sorted({found[0] for found in bins if found is not None})
    keys = {b: [] for b in wanted}
    for _, table in kept_tables(work, buckets):
        for b, values in ss.keys_in(table, split["split_seed"], wanted).items():
            keys[b].append(values)
    return ss.cut_values(bins, {b: np.concatenate(v) for b, v in keys.items()})


def clip_bound(work, buckets, split, cuts, clip):
    """label_clip: duration_quantile's bound, the quantile of the training rows' durations
    (exact, from merged value counts); None otherwise."""
    if clip["label_clip"] != "duration_quantile":
        return None
    counts = ValueCounts()
    for _, table in kept_tables(work, buckets):
        train = ss.assign(table, split, cuts)["train"]
        counts.add(table.column("duration").to_numpy()[train])
    if counts.n == 0:
        raise ValueError("label_clip: duration_quantile needs training rows")
    return float(counts.quantiles(clip["label_clip_quantile"]))


def write_partitions(folder, work, buckets, split, cuts, columns, ids, clipping):
    """Pass 3: each bucket's kept rows into the split folders; (rows per split, clipped per split)."""
    clip, clip_at = clipping
    rows = {s: 0 for s in ss.SPLITS}
    clipped = {s: 0 for s in ss.SPLITS}
    for s in ss.SPLITS:
        os.makedirs(os.path.join(folder, s))
    for b, table in kept_tables(work, buckets):
        masks = ss.assign(table, split, cuts)
        if masks.get("unknown_day") is not None and masks["unknown_day"].any():
            rows["unknown_day"] = rows.get("unknown_day", 0) + int(masks["unknown_day"].sum())
        table = ss.with_indices(table, *ids).select(
            ["user_id", "item_id", "label", "duration", "day", *columns, "user_index", "item_index"])
        for s in ss.SPLITS:
            part = table.filter(pa.array(masks[s]))
            if clip["label_clip"]:
                part, n = clip_labels(part, clip, clip_at)
                clipped[s] += n
            rows[s] += part.num_rows
            if part.num_rows:
                pq.write_table(part, os.path.join(folder, s, f"part-{b:05d}.parquet"), row_group_size=ROW_GROUP_ROWS)
    for s in ss.SPLITS:
        if rows[s] == 0:
            raise ValueError(f"the {s} split is empty ({split['split']} split of {sum(rows.values())} rows)")
    return rows, (clipped if clip["label_clip"] else {})


def clip_labels(part, clip, clip_at):
    """pipeline.clip_labels for one partition: (clipped table, rows clipped)."""
    label = part.column("label").to_numpy()
    bound = part.column("duration").to_numpy() if clip["label_clip"] == "duration" else np.full(len(label), clip_at)
    over = label > bound
    index = part.column_names.index("label")
    return part.set_column(index, "label", pa.array(np.where(over, bound, label))), int(over.sum())


