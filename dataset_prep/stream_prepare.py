"""`prepare_stream(config)`: raw KuaiRand-format files to partitioned Parquet, with memory
bounded by `stream_chunk_rows` (properties/overall.yaml), not by the row count.

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
    user.parquet, item.parquet: the feature tables, as the in-memory conversion makes them.
    meta.json (written last): the counts of pipeline.prepare's meta.json (rows read, kept,
        dropped per rule, missing values, rows per split, users, items) and the files.
The passes are in dataset_prep/stream.py and stream_split.py; which rows are kept, the
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

from dataset_prep import kuairand, kuairec, stream
from dataset_prep import stream_split as ss
from dataset_prep.common import (
    DamagedCache, PreparedDataset, RawDataError, atomic_dir, config_get, converter, discard_damaged, file_signature,
    read_record, require, short_hash,
)
from dataset_prep.pipeline import read_label_clip
from dataset_prep.split import FIXED_FIELDS, read_split_options
from dataset_prep.statistics import ValueCounts
from dataset_prep.stream_read import csv_chunks, estimate_rows
from recbole_lda.utils.fileio import write_json

logger = logging.getLogger(__name__)

STREAMED_VERSION = 1
STREAMING_DATASETS = ("kuairand", "synthetic_kuairand")  # datasets whose converter is kuairand's
MAX_BUCKETS = 1000  # open files of pass 1
# item.parquet's columns (fixed, so that every chunk has the same types, whatever it holds)
ITEM_SCHEMA = pa.schema([("item_id", pa.int64())] + [(c, pa.string() if t == "str" else pa.int64())
                                                    for c, t in kuairand.VIDEO_COLUMNS.items()] + [("tag", pa.string())])


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
        meta = convert_into(tmp, raw_dir, options, split, clip, chunk_rows)
        meta.update(dataset=name, raw_dir=os.path.abspath(raw_dir), raw_files=[os.path.basename(p) for p in files],
                    options=options, split_options=split, conversion_key=conversion_key, streamed_key=key,
                    stream_chunk_rows=chunk_rows, seconds=time.perf_counter() - start)
        write_json(os.path.join(tmp, "meta.json"), meta)
    logger.info(f"streamed {folder}: rows per split {meta['rows_per_split']}")
    return PreparedDataset(folder, meta | {"cache_hit": False})


def convert_into(folder, raw_dir, options, split, clip, chunk_rows):
    """All passes into `folder`; returns meta.json's counts, fields and files."""
    found = kuairand.find_files(raw_dir, options)
    missing = {}
    buckets = min(MAX_BUCKETS, max(1, math.ceil(estimate_rows([p for p, _ in found["logs"]]) / chunk_rows)))
    work = os.path.join(folder, "work")
    os.makedirs(work)
    video_path = found["video"] if (options["add_item_features"] or options["kuairand_impute_duration"]) else None
    known = None
    if options["kuairand_impute_duration"] and video_path:
        known = stream.known_video_durations(video_path, chunk_rows, None)
    rows_read, present = stream.bucket_logs(found, options, chunk_rows, buckets, work, missing, known)
    names = stream.rule_names(options)
    dropped, users, items, histogram = clean_all(work, buckets, options, split, names)
    kept = int(histogram.sum())
    if kept == 0:
        raise RawDataError(f"KuaiRand logs in {raw_dir}: no rows left after filtering ({dict(zip(names, dropped))})")
    cuts = random_cuts(work, buckets, split, histogram, kept) if split["split"] == "random" else None
    columns = output_columns(options, present)
    clip_at = clip_bound(work, buckets, split, cuts, clip)
    rows_per_split, clipped = write_partitions(folder, work, buckets, split, cuts, columns, (users, items), (clip, clip_at))
    shutil.rmtree(work)
    types = dict(FIXED_FIELDS, **{c: "token" for c in columns})
    types |= write_features(folder, found, options, users, items, chunk_rows, missing, video_path)
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


def output_columns(options, present):
    """The context tokens written, as the in-memory conversion writes them."""
    if not options["add_context_features"]:
        return []
    columns = [c for c, there in (("hour", present["time_ms"] or present["hourmin"]), ("tab", present["tab"])) if there]
    return columns + (["is_rand"] if options["kuairand_random_logs"] else [])


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
                pq.write_table(part, os.path.join(folder, s, f"part-{b:05d}.parquet"))
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


def write_features(folder, found, options, users, items, chunk_rows, missing, video_path):
    """user.parquet and item.parquet of the kept users and videos; returns their field types.
    Reads video_features_basic in chunks whenever the in-memory converter reads it (its
    missing values are counted the same way)."""
    types = {}
    if options["add_user_features"] and found["user"]:
        user = kuairec.read_user_features(found["user"], missing)  # one row per user: small
        user = user[user["user_id"].isin(users)].reset_index(drop=True)
        pq.write_table(pa.Table.from_pandas(user, preserve_index=False), os.path.join(folder, "user.parquet"))
        types |= {c: "float" if t == "float" else "token" for c, t in kuairec.USER_COLUMNS.items()}
    if video_path:
        write_items(video_path, items, chunk_rows, missing, os.path.join(folder, "item.parquet") if options["add_item_features"] else None)
        if options["add_item_features"]:
            types |= {c: "token" for c in kuairand.VIDEO_COLUMNS} | {"tag": "token_seq"}
    return types


def write_items(path, items, chunk_rows, missing, target):
    """The video features of `items`, chunk by chunk (kuairand.video_frame on each), into `target`
    (None: only count the missing values); RawDataError for a video listed twice."""
    writer, seen = None, ss.IdSet()
    written = 0
    for line, table in csv_chunks(path, kuairand.VIDEO_READ_COLUMNS, chunk_rows, required=["video_id"], missing=missing):
        ids = table.column("video_id").to_numpy()
        at = np.minimum(np.searchsorted(items, ids), max(len(items) - 1, 0))
        wanted = items[at] == ids
        if target is None or not wanted.any():
            continue
        frame = kuairand.video_frame(table.filter(pa.array(wanted)), path, np.flatnonzero(wanted) + line)
        frame = frame.drop(columns="video_duration")
        seen.add(frame["item_id"].to_numpy())
        written += len(frame)
        writer = writer or pq.ParquetWriter(target, ITEM_SCHEMA)
        writer.write_table(pa.Table.from_pandas(frame, schema=ITEM_SCHEMA, preserve_index=False))
    if writer:
        writer.close()
    if target and written != len(seen.merge()):
        raise RawDataError(f"{path}: column 'video_id': a video appears twice in different chunks; expected one row per id")
