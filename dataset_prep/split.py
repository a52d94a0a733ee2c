"""Splitting the converted interactions and writing the RecBole atomic files of one split.

`read_split_options` validates the split keys (of properties/overall.yaml or the dataset
YAML); `split_rows` cuts the interactions into train, valid and test (`split: random` by
`split_ratio` and `split_seed`, or `split: time` by `split_dates`); `write_atomic_files` writes
`{dataset}.{train,valid,test}.inter` and, when the dataset has such features,
`{dataset}.user` / `{dataset}.item` into a (temporary) prepared folder.
"""

import logging
import os
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv

from dataset_prep.common import require

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
# Fields every prepared dataset has, with their RecBole types.
FIXED_FIELDS = {"user_id": "token", "item_id": "token", "label": "float", "duration": "float"}


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


def write_atomic_files(folder, name, tables, parts):
    """Write the atomic files of dataset `name` for the split `parts` (see `split_rows`)
    into `folder`.

    Args:
        tables (common.Tables): the converted tables.
        parts (dict): split name -> row positions of tables.inter.

    Returns:
        (types, files): RecBole type of every field written; file name -> size in bytes
        of every file written (meta.json records them, so that a damaged folder is noticed).
    """
    types = dict(FIXED_FIELDS, **tables.field_types)
    inter_cols = list(FIXED_FIELDS) + [c for c in tables.inter.columns if c in tables.field_types]
    inter = pa.Table.from_pandas(tables.inter[inter_cols], preserve_index=False)
    written = []
    for part in SPLITS:
        written.append(f"{name}.{part}.inter")
        write_atomic_file(os.path.join(folder, written[-1]), inter.take(parts[part]), types)
    for kind, frame in (("user", tables.user), ("item", tables.item)):
        if frame is not None:
            written.append(f"{name}.{kind}")
            write_atomic_file(os.path.join(folder, written[-1]), pa.Table.from_pandas(frame, preserve_index=False), types)
    return types, {f: os.path.getsize(os.path.join(folder, f)) for f in written}
