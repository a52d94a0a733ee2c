"""Bounded id embeddings for the ray engine: every worker holds every embedding table (and
Adam's two copies of it), so the rows of the user and video tables are bounded.

Per id field (user, video), from the training split's id counts (one pass, one partition at
a time):
1. `embedding_min_count: k`: ids seen fewer than k times in training share one row (as do ids
   never seen in training);
2. `embedding_max_rows: R`: if more than R rows remain, ids are hashed (splitmix64 of the id's
   index) into R rows; with R or fewer, every remaining id keeps its own row.
Row 0 stays the padding row. `Vocabulary.rows(index)` turns a partition's `*_index` column
into embedding rows; `report` gives the counts the results file records.
"""

from dataclasses import dataclass

import numpy as np
import pyarrow.parquet as pq

from recbole_lda.quick_start.partitions import split_files

GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def splitmix64(x):
    """A 64-bit mix of each value (uint64 in, uint64 out)."""
    with np.errstate(over="ignore"):
        z = np.asarray(x, dtype=np.uint64) + GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


@dataclass
class Vocabulary:
    size: int  # embedding rows, padding included
    table: np.ndarray = None  # index -> row (int32), or None
    hash_rows: int = 0  # > 0: rows = 1 + hash(index) % hash_rows, after `table` when there is one
    report: dict = None

    def rows(self, index):
        index = np.asarray(index, dtype=np.int64)
        if self.table is not None:
            index = self.table[index].astype(np.int64) - 1  # dense rows 1.. -> 0-based again
        if self.hash_rows:
            return (1 + splitmix64(index) % np.uint64(self.hash_rows)).astype(np.int64)
        return index + 1


def id_counts(folder, column, ids):
    """Training rows of each id (an `*_index` column), one partition at a time."""
    counts = np.zeros(ids, dtype=np.int64)
    for path in split_files(folder, "train"):
        counts += np.bincount(pq.read_table(path, columns=[column]).column(column).to_numpy(), minlength=ids)
    return counts


def build(counts, min_count, max_rows):
    """The Vocabulary of one field from its training counts (module docstring)."""
    ids = len(counts)
    report = {"ids": ids, "min_count": min_count, "max_rows": max_rows, "rare_ids": 0, "rare_training_rows": 0,
              "hashed": False}
    table, dense = None, ids
    if min_count > 1:
        rare = counts < min_count
        table = np.where(rare, 0, np.cumsum(~rare)).astype(np.int32)  # frequent ids: 1..F in index order
        dense = int((~rare).sum())
        table[rare] = dense + 1  # one shared row
        dense += int(rare.any())
        report.update(rare_ids=int(rare.sum()), rare_training_rows=int(counts[rare].sum()))
    hash_rows = max_rows if max_rows is not None and dense > max_rows else 0
    report["hashed"] = bool(hash_rows)
    size = 1 + (hash_rows or dense)
    report["rows"] = size
    return Vocabulary(size=size, table=table, hash_rows=hash_rows, report=report)


def build_all(folder, config, id_count):
    """{"user": Vocabulary, "item": Vocabulary} of a streamed folder."""
    min_count, max_rows = int(config["embedding_min_count"]), config["embedding_max_rows"]
    return {kind: build(id_counts(folder, f"{kind}_index", id_count(folder, kind)), min_count,
                        None if max_rows is None else int(max_rows))
            for kind in ("user", "item")}
