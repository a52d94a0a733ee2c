"""Every metric of `all_conventions`, MAE and RMSE over predictions spread across files and
tasks, without gathering the predictions in one process; exactly equal to the
single-process functions (the pair counts as integers).

The rows form a grid: K label ranges ("rows" of the grid) by P prediction ranges
("columns"), split at sampled quantiles. A range is a half-open interval of values, so
equal labels never straddle two label ranges and equal predictions never straddle two
prediction ranges. For the pairs (i, j) with y_i < y_j and p_i > p_j (discordant, D):

    same column        counted inside the column's task (pair_counts on its rows)
    same label range,  counted inside the label range's task as the discordant pairs of
    other column       (label, column number): across columns, p_i > p_j <=> col_i > col_j
    both different     sum over ranges a < b, columns u > v of H[a, u] * H[b, v], from
                       the grid's cell counts H (every such pair is strictly ordered)

Equal labels (Ty) lie in one label range; equal predictions (Tp), both equal (Typ) and
CWM's tie rule (E: equal predictions, the earlier row has the larger label) lie in one
column, whose task sees its rows in input order. Each figure is also kept per duration
bucket (the same grid restricted to a bucket). HEGM's blocks are consecutive rows: each
file counts the blocks inside it and hands the pieces of the blocks it shares with its
neighbours to the driver. XGAUC is per user: a third split by a hash of the user id; the
driver gets a few figures per user (users, not rows), sorted by id as in one process.
MAE, RMSE and the bucket MAE are exact sums (`exact_sum`).

Work goes through an executor (`submit(fn, *args, num_returns=1)`, `get(handles)`):
`SerialExecutor` and `SpillingExecutor` here, Ray in `recbole_lda.distributed`. Passes: scan (counts, samples,
sums), grid (blocks, cells), users; each reads the files again with pyarrow, so that no
process holds more than one file or one range.
"""

import os
import pickle

import numpy as np

from recbole_lda.evaluator import exact_sum, xauc
from recbole_lda.evaluator.pair_counts import Prepared
from recbole_lda.evaluator.ranks import dense_ranks
from recbole_lda.evaluator.predictions_io import PredictionsError, input_files, input_parts, read_all, read_columns

PARTITION_ROWS = 4_000_000  # default rows per range: bounds the memory of a task
SAMPLE_ROWS = 4096  # sampled labels and predictions per file, for the range bounds
KEYS = ("T", "Ty", "Tp", "Typ", "D", "E")


class SerialExecutor:
    """Runs every task at once in this process (tests, and the reference for Ray's)."""

    def submit(self, fn, *args, num_returns=1):
        return fn(*args)

    def get(self, handles):
        return handles


class Spilled:
    """A task result that `SpillingExecutor` keeps in a file."""

    def __init__(self, path):
        self.path = path


class SpillingExecutor:
    """Runs each task when it is submitted, in this process, like SerialExecutor, but keeps
    every result in a file of `folder` (pickled) instead of in memory, and reads a task's
    inputs back only when the task runs: the process holds one task's inputs and outputs at a
    time (rows of one part or one range), not the whole input. The ray engine's rank 0 scores
    a split this way; the caller removes `folder`."""

    def __init__(self, folder):
        self.folder, self.written = folder, 0
        os.makedirs(folder, exist_ok=True)

    def _save(self, value):
        path = os.path.join(self.folder, f"result-{self.written:06d}.pkl")
        self.written += 1
        with open(path, "wb") as f:
            pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
        return Spilled(path)

    @staticmethod
    def _load(value):
        if not isinstance(value, Spilled):
            return value
        with open(value.path, "rb") as f:
            return pickle.load(f)  # noqa: S301 -- this executor's own files, written above

    def submit(self, fn, *args, num_returns=1):
        out = fn(*[self._load(a) for a in args])
        return self._save(out) if num_returns == 1 else [self._save(o) for o in out]

    def get(self, handles):
        return [self._load(h) for h in handles]


def single_process(paths, edges=xauc.DADF_EDGES, block_size=xauc.HEGM_BLOCK_SIZE, min_rows=xauc.DADF_MIN_ROWS):
    """All metrics of every row in one process: `all_conventions`, plus MAE and RMSE."""
    data = read_all(input_files(paths))
    if not len(data["label"]):
        raise PredictionsError("the input has no rows")
    scores = xauc.all_conventions(data["label"], data["prediction"], users=data["user_id"],
                                  durations=data["duration"], edges=edges, block_size=block_size, min_rows=min_rows)
    return {**mae_rmse(data["label"], data["prediction"]), **scores}


def mae_rmse(labels, preds):
    """mae and rmse in float64, exact means correctly rounded (None with NaN in)."""
    y, p = np.asarray(labels, dtype=np.float64), np.asarray(preds, dtype=np.float64)
    if np.isnan(y).any() or np.isnan(p).any():
        return {"mae": None, "rmse": None}
    err = y - p
    return {"mae": exact_sum.exact_mean(np.abs(err)), "rmse": float(np.sqrt(exact_sum.exact_mean(err * err)))}


# --------------------------------------------------------------------------- pass 1: scan

def scan_file(part, index, edges):
    """Rows, NaN, a sample of labels and predictions, exact error sums per bucket, id kind.
    `part`: (path, Parquet row groups or None for the whole file), as every pass takes it."""
    path = part[0]
    data = read_columns(path, ("user_id", "duration", "label", "prediction"), part[1])
    y, p, d = data["label"], data["prediction"], data["duration"]
    if np.isnan(d).any():
        raise PredictionsError(f"{path}: column duration has NaN")
    bucket = xauc.duration_buckets(d, np.asarray(edges, dtype=np.float64))
    nb = len(edges) + 1
    out = {"rows": len(y), "bucket_rows": np.bincount(bucket, minlength=nb), "user_kind": data["user_id"].dtype.kind,
           "nan": bool(np.isnan(y).any() or np.isnan(p).any())}
    if out["nan"]:
        return out
    pick = np.random.default_rng(index).integers(0, len(y), min(len(y), SAMPLE_ROWS))  # with replacement: cheap
    out["sample"] = (y[pick], p[pick], np.full(len(pick), len(y) / max(len(pick), 1)))
    err = y - p
    out["abs"] = exact_sum.sum_state(np.abs(err), bucket, nb)
    out["square"] = exact_sum.sum_state(err * err)[0]
    return out


def _bounds(values, weights, parts):
    """Up to parts - 1 increasing range bounds at weighted quantiles of the sample."""
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order])
    at = np.searchsorted(cum, cum[-1] * np.arange(1, parts) / parts) if len(cum) else []
    return np.unique(values[order][np.minimum(at, len(cum) - 1)]) if len(cum) else np.zeros(0)


def plan(scans, partitions, edges, block_size):
    """Where each file starts, and the label and prediction range bounds."""
    rows = np.array([s["rows"] for s in scans], dtype=np.int64)
    y, p, w = (np.concatenate([s["sample"][k] for s in scans]) for k in range(3))
    return {"offsets": np.concatenate(([0], np.cumsum(rows)[:-1])), "label_bounds": _bounds(y, w, partitions),
            "pred_bounds": _bounds(p, w, partitions), "edges": np.asarray(edges, dtype=np.float64),
            "block_size": int(block_size)}


# --------------------------------------------------------------------------- pass 2: grid

def _block_figures(y, p, block_size):
    """(sum of 2 * ours' numerators, sum of denominators) over consecutive blocks of y, p."""
    if not len(y):
        return 0, 0
    num2, den, _, _ = xauc._figures(xauc.block_counts(Prepared(y, p, families=2), block_size))
    return int(num2.sum()), int(den.sum())


def grid_file(part, offset, the_plan):
    """Pass 2 for one file: (summary, label-range pieces..., column pieces...).

    summary: the blocks inside the file (pooled figures), the pieces of blocks it shares
    (block id, labels, predictions), and the cell counts H per bucket. A label-range piece
    holds (labels, column, bucket) of its rows; a column piece (labels, predictions,
    bucket) in input order."""
    data = read_columns(part[0], ("duration", "label", "prediction"), part[1])
    y, p, b = data["label"], data["prediction"], xauc.duration_buckets(data["duration"], the_plan["edges"])
    b = b.astype(np.uint8)
    size, n = the_plan["block_size"], len(y)
    head = min(-offset % size, n)
    inner = head + (n - head) // size * size
    fragments = [(offset // size, y[:head], p[:head])] if head else []
    if inner < n:
        fragments.append(((offset + inner) // size, y[inner:], p[inner:]))
    row = np.searchsorted(the_plan["label_bounds"], y, side="right")
    col = np.searchsorted(the_plan["pred_bounds"], p, side="right").astype(np.int32)
    nk, npart, nb = len(the_plan["label_bounds"]) + 1, len(the_plan["pred_bounds"]) + 1, len(the_plan["edges"]) + 1
    cells = np.bincount((b.astype(np.int64) * nk + row) * npart + col, minlength=nb * nk * npart)
    summary = {"blocks": _block_figures(y[head:inner], p[head:inner], size), "fragments": fragments,
               "cells": cells.reshape(nb, nk, npart)}
    by_row = [np.flatnonzero(row == a) for a in range(nk)]
    by_col = [np.flatnonzero(col == v) for v in range(npart)]
    return (summary, *[(y[i], col[i], b[i]) for i in by_row], *[(y[i], p[i], b[i]) for i in by_col])


def _counts_by_bucket(prep, bucket, nb, keys):
    """{key: int64 array [all rows, bucket 0, ..., bucket nb-1]} of the pair counts."""
    every, per = prep.counts(), prep.counts(bucket, nb)
    return {k: np.concatenate((every[k], per[k])) for k in keys}


def _joined(pieces, nb, keys):
    y, v, b = (np.concatenate([piece[k] for piece in pieces]) for k in range(3))
    if not len(y):
        return {k: np.zeros(nb + 1, dtype=np.int64) for k in keys}
    return _counts_by_bucket(Prepared(y, v, families=2), b, nb, keys)


def label_range_counts(nb, *pieces):
    """A label range: equal-label pairs, and its discordant pairs across columns."""
    return _joined(pieces, nb, ("Ty", "D"))


def column_counts(nb, *pieces):
    """A prediction range (rows in input order): Tp, Typ, E and its discordant pairs."""
    return _joined(pieces, nb, ("Tp", "Typ", "D", "E"))


def _across(cells):
    """sum over label ranges a < b and columns u > v of H[a, u] * H[b, v] (Python ints)."""
    h = cells.astype(object)
    # above[a, v]: rows of label ranges < a in columns > v
    above = np.cumsum(np.vstack([np.zeros((1, h.shape[1]), dtype=object), h[:-1]]), axis=0)
    right = np.hstack([np.cumsum(above[:, ::-1], axis=1)[:, ::-1][:, 1:], np.zeros((h.shape[0], 1), dtype=object)])
    return int((h * right).sum())


# -------------------------------------------------------------------------- pass 3: users

def _user_groups(users, groups):
    """A group per row from a hash of the user id (the same user, the same group, in every file)."""
    if users.dtype.kind in "iu":
        mixed = users.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing
        return ((mixed >> np.uint64(33)) % np.uint64(groups)).astype(np.int64)
    import zlib

    return np.fromiter((zlib.crc32(u.encode()) % groups for u in users), dtype=np.int64, count=len(users))


def user_file(part, groups):
    """Pass 3 for one file: (labels, predictions, users) of each user group, in input order
    (one piece itself when groups is 1)."""
    data = read_columns(part[0], ("user_id", "label", "prediction"), part[1])
    y, p, u = data["label"], data["prediction"], data["user_id"]
    group = _user_groups(u, groups)
    pieces = tuple((y[i], p[i], u[i]) for i in (np.flatnonzero(group == g) for g in range(groups)))
    return pieces if groups > 1 else pieces[0]


def user_counts(*pieces):
    """A user group: its users in sorted order and `xauc.user_figures` of each."""
    y, p, u = (np.concatenate([piece[k] for piece in pieces]) for k in range(3))
    if not len(y):
        return (u, *(np.zeros(0, dtype=t) for t in (np.int64, np.int64, np.int64, np.float64, bool)))
    ids = dense_ranks(u)
    users = np.empty(int(ids.max()) + 1, dtype=u.dtype)
    users[ids] = u  # the users in sorted order (dense ranks number them so)
    return (users, *xauc.user_figures(Prepared(y, p, families=2), ids))


# ------------------------------------------------------------------------------- combining

def _grid_totals(scans, summaries, ranges, columns):
    """{key: int64 array [all rows, bucket 0, ...]} of the pair counts of every row."""
    rows = np.concatenate(([sum(s["rows"] for s in scans)], sum(s["bucket_rows"] for s in scans))).astype(np.int64)
    cells = sum(s["cells"] for s in summaries)  # [bucket, label range, column]
    across = np.array([_across(cells.sum(axis=0))] + [_across(c) for c in cells], dtype=np.int64)
    c = {"T": rows * (rows - 1) // 2, "Ty": sum(r["Ty"] for r in ranges)}
    c.update({k: sum(col[k] for col in columns) for k in ("Tp", "Typ", "E")})
    c["D"] = sum(r["D"] for r in ranges) + sum(col["D"] for col in columns) + across
    return rows, c


def _blocks(summaries, block_size):
    """xauc_blocks: the blocks inside files, and the blocks pieced together from neighbours."""
    num2, den = sum(s["blocks"][0] for s in summaries), sum(s["blocks"][1] for s in summaries)
    shared = {}
    for s in summaries:  # in input order
        for block, y, p in s["fragments"]:
            shared.setdefault(block, []).append((y, p))
    for parts in shared.values():
        n2, d = _block_figures(np.concatenate([y for y, _ in parts]), np.concatenate([p for _, p in parts]), block_size)
        num2, den = num2 + n2, den + d
    return xauc._ratio(np.int64(num2) / 2, np.int64(den))


def _users(results):
    users = np.concatenate([r[0] for r in results])
    order = np.argsort(users, kind="stable")  # sorted ids, as one process numbers them
    return xauc.user_scores(*(np.concatenate([r[k] for r in results])[order] for k in range(1, 6)))


def _check_scans(files, scans):
    kinds = {s["user_kind"] for s in scans if s["rows"]}  # an empty file has no types to go by
    if len(kinds) > 1:
        raise PredictionsError("user_id is integer in some files and text in others: give every file the same kind")
    if not sum(s["rows"] for s in scans):
        raise PredictionsError(f"the input has no rows ({len(files)} file(s))")


def evaluate(paths, executor, partitions=None, edges=xauc.DADF_EDGES, block_size=xauc.HEGM_BLOCK_SIZE,
             min_rows=xauc.DADF_MIN_ROWS, counts=None, part_rows=PARTITION_ROWS):
    """Every metric of `single_process`, over `partitions` label ranges, prediction ranges and
    user groups, each pass a set of tasks of `executor`; the same dict, exactly. `counts`, a
    dict, receives the pooled integer pair counts (for tests). A Parquet file is read in runs
    of row groups of about `part_rows` rows (`input_parts`). partitions=None: enough for
    about `part_rows` rows each, and at least one per worker of the executor."""
    files, nb = input_parts(input_files(paths), part_rows), len(edges) + 1
    scans = executor.get([executor.submit(scan_file, f, i, edges) for i, f in enumerate(files)])
    _check_scans(files, scans)
    bucket_rows = sum(s["bucket_rows"] for s in scans)
    if any(s["nan"] for s in scans):  # NaN in, None out (as all_conventions)
        table = xauc.bucket_table(edges, bucket_rows, None, None, min_rows)
        return {"mae": None, "rmse": None, "rows": int(bucket_rows.sum()), "xauc": None, "xauc_dadf": None,
                "xauc_cwm": None, "xauc_blocks": None, "xgauc": None, "xgauc_cwm": None,
                **{f"bucket_{name}_{k}": v for name, stats in table.items() for k, v in stats.items()}}
    if partitions is None:
        partitions = max(getattr(executor, "workers", 1), -(-int(bucket_rows.sum()) // part_rows))
    the_plan = plan(scans, partitions, edges, block_size)
    nk, npart = len(the_plan["label_bounds"]) + 1, len(the_plan["pred_bounds"]) + 1
    grid = [executor.submit(grid_file, f, off, the_plan, num_returns=1 + nk + npart)
            for f, off in zip(files, the_plan["offsets"])]
    ranges = [executor.submit(label_range_counts, nb, *[g[1 + a] for g in grid]) for a in range(nk)]
    columns = [executor.submit(column_counts, nb, *[g[1 + nk + v] for g in grid]) for v in range(npart)]
    summaries, ranges, columns = executor.get([g[0] for g in grid]), executor.get(ranges), executor.get(columns)
    del grid  # frees the pieces
    rows, c = _grid_totals(scans, summaries, ranges, columns)
    if counts is not None:
        counts.update(c)
    abs_state = sum(s["abs"] for s in scans)
    out = {"mae": exact_sum.mean(abs_state.sum(axis=0), rows[0]),
           "rmse": float(np.sqrt(exact_sum.mean(sum(s["square"] for s in scans), rows[0]))),
           "rows": int(rows[0]), **xauc.global_scores({k: v[:1] for k, v in c.items()}),
           "xauc_blocks": _blocks(summaries, block_size)}
    groups = [executor.submit(user_file, f, partitions, num_returns=partitions) for f in files]
    groups = [g if partitions > 1 else [g] for g in groups]
    users = executor.get([executor.submit(user_counts, *[g[k] for g in groups]) for k in range(partitions)])
    out["xgauc"], out["xgauc_cwm"] = _users(users)
    mae = [exact_sum.mean(state, count) for state, count in zip(abs_state, bucket_rows)]
    table = xauc.bucket_table(edges, bucket_rows, mae, {k: v[1:] for k, v in c.items()}, min_rows)
    out.update({f"bucket_{name}_{k}": v for name, stats in table.items() for k, v in stats.items()})
    return out
