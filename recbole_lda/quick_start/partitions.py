"""Each worker's share of a split stored as partitioned Parquet (the layout of
dataset_prep/stream_prepare.py: `<folder>/<split>/part-NNNNN.parquet`), read with pyarrow
one row group at a time, so that no process holds a whole split.

- `pieces(folder, split)`: every (file, row group, rows) of a split, in file order.
- `share(pieces, rank, world)`: the pieces of worker `rank` of `world`: the largest piece
  first to the worker with the fewest rows so far (deterministic; every worker computes
  the same assignment without talking to the others).
- `batches(...)`: one epoch of a worker's training rows in batches of exactly `batch_rows`:
  the order of its pieces and the rows inside a window of `shuffle_pieces` pieces are drawn
  from (seed, epoch, rank), so every epoch is reshuffled. A partition holds the rows of a set
  of users (dataset_prep/stream_prepare.py writes it in row groups of 65,536 rows), so a
  window of 32 pieces in random order mixes rows of up to 32 partitions: a batch holds users
  of many partitions, not of one (about 2M rows, some 60 MB, per window); a worker whose share is shorter
  than `steps` batches starts its (reshuffled) share again, so that every worker takes the
  same number of steps (data-parallel steps must match).
"""

import glob
import os
from dataclasses import dataclass

import numpy as np
import pyarrow.parquet as pq


@dataclass(frozen=True)
class Piece:
    path: str
    row_group: int
    rows: int


def split_files(folder, split):
    """The partitions of one split, in name order; FileNotFoundError when there are none."""
    files = sorted(glob.glob(os.path.join(glob.escape(folder), split, "part-*.parquet")))
    if not files:
        raise FileNotFoundError(f"no {split}/part-*.parquet in {folder}: not a partitioned (streamed) data folder")
    return files


def pieces(folder, split):
    """Every row group of a split as a Piece, in file order (read from the Parquet footers only)."""
    out = []
    for path in split_files(folder, split):
        meta = pq.ParquetFile(path).metadata
        out.extend(Piece(path, g, meta.row_group(g).num_rows) for g in range(meta.num_row_groups))
    return out


def share(all_pieces, rank, world):
    """The pieces of worker `rank` (0-based) among `world` workers, in file order."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not in 0..{world - 1}")
    loads = np.zeros(world, dtype=np.int64)
    owner = {}
    for index in sorted(range(len(all_pieces)), key=lambda i: (-all_pieces[i].rows, i)):
        w = int(np.argmin(loads))  # the first of the least loaded
        owner[index] = w
        loads[w] += all_pieces[index].rows
    return [p for i, p in enumerate(all_pieces) if owner[i] == rank]


def read_piece(piece, columns):
    """{column: numpy array} of one row group."""
    table = pq.ParquetFile(piece.path).read_row_group(piece.row_group, columns=columns)
    return {c: table.column(c).to_numpy() for c in columns}


def _windows(my_pieces, columns, rng, shuffle_pieces):
    """The rows of the pieces in a random order: pieces shuffled, then rows shuffled inside
    each window of `shuffle_pieces` consecutive pieces (one window in memory at a time)."""
    order = rng.permutation(len(my_pieces))
    for start in range(0, len(order), shuffle_pieces):
        parts = [read_piece(my_pieces[i], columns) for i in order[start:start + shuffle_pieces]]
        window = {c: np.concatenate([p.pop(c) for p in parts]) for c in columns}
        del parts
        perm = rng.permutation(len(window[columns[0]]))
        for c in columns:  # one column at a time: the window and one column's copy in memory
            window[c] = window[c][perm]
        del perm
        yield window


def batches(my_pieces, columns, batch_rows, steps, seed, epoch, rank, shuffle_pieces=32):
    """`steps` batches ({column: array} of `batch_rows` rows each) of one epoch of a worker:
    consecutive slices of the shuffled windows (a batch that straddles two windows joins the
    rest of one to the start of the next)."""
    if not my_pieces or sum(p.rows for p in my_pieces) == 0:
        raise ValueError(f"worker {rank} has no training rows: fewer row groups than workers")
    if steps <= 0:
        return
    rng = np.random.default_rng([seed, epoch, rank])
    rest, done = None, 0  # rows of the previous window not yet in a batch (fewer than batch_rows)
    while True:
        for window in _windows(my_pieces, columns, rng, shuffle_pieces):
            if rest is not None:
                window = {c: np.concatenate([rest[c], window[c]]) for c in columns}
            held, at = len(window[columns[0]]), 0
            while held - at >= batch_rows:
                yield {c: v[at:at + batch_rows] for c, v in window.items()}
                at, done = at + batch_rows, done + 1
                if done == steps:
                    return
            rest = {c: v[at:] for c, v in window.items()}
            del window


def split_rows(folder, split):
    """Rows of a split (from the Parquet footers)."""
    return sum(p.rows for p in pieces(folder, split))
