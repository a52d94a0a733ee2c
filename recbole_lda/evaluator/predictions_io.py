"""Reading predictions files (the format of a run's `--predictions_file`) with pyarrow.

Columns: user_id, item_id, duration, label, prediction (more are ignored); CSV (with a
header) or Parquet; a folder stands for its .csv and .parquet files in name order. Rows
are taken in the order of the files as given, then in file order: that is the input
order that xauc_blocks and CWM's tie rule follow. duration, label and prediction are
read as float64 (an empty label or prediction is NaN, which makes every figure None, as in
`all_conventions`); user_id as int64 when a file's ids are integers, else as text (every
file must then have text ids). Bad input raises `PredictionsError` naming the file and
column.
"""

import os

import numpy as np

from recbole_lda.utils.errors import UsageError

COLUMNS = ("user_id", "item_id", "duration", "label", "prediction")
NUMBERS = ("duration", "label", "prediction")
SUFFIXES = (".csv", ".parquet")


class PredictionsError(UsageError):
    """A predictions file that cannot be scored: missing, unreadable, or a bad column."""


def input_files(paths):
    """The files that `paths` (files or folders) stand for, in order; PredictionsError when none."""
    files = []
    for path in paths:
        if os.path.isdir(path):
            inside = sorted(f for f in os.listdir(path) if f.endswith(SUFFIXES) and not f.startswith("."))
            if not inside:
                raise PredictionsError(f"{path}: no .csv or .parquet file in this folder")
            files += [os.path.join(path, f) for f in inside]
        elif os.path.isfile(path):
            if not path.endswith(SUFFIXES):
                raise PredictionsError(f"{path}: expected a .csv or .parquet file (or a folder of them)")
            files.append(path)
        else:
            raise PredictionsError(f"{path}: no such file or folder")
    if not files:
        raise PredictionsError("no input: give --input=FILE_OR_FOLDER")
    return files


def input_parts(files, part_rows=None):
    """(path, row groups) per part of the input, in order: a Parquet file in runs of whole row
    groups of about `part_rows` rows (a task then reads one run, not the whole file); a CSV
    file, or any file when part_rows is None, whole (row groups None)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = []
    for path in files:
        if not part_rows or not path.endswith(".parquet"):
            parts.append((path, None))
            continue
        try:
            meta = pq.ParquetFile(path).metadata
        except (pa.ArrowInvalid, OSError) as err:
            raise PredictionsError(f"{path}: cannot read predictions: {str(err).splitlines()[0]}") from None
        run, rows, first = [], 0, len(parts)
        for group in range(meta.num_row_groups):
            run.append(group)
            rows += meta.row_group(group).num_rows
            if rows >= part_rows:
                parts.append((path, tuple(run)))
                run, rows = [], 0
        if run or len(parts) == first:
            parts.append((path, tuple(run) if run else None))
    return parts


def _read_table(path, columns, row_groups=None):
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    try:
        if path.endswith(".parquet"):
            present = pq.read_schema(path).names
            missing = [c for c in COLUMNS if c not in present]
            if missing:
                return missing, None
            if row_groups is None:
                return missing, pq.read_table(path, columns=list(columns))
            return missing, pq.ParquetFile(path).read_row_groups(list(row_groups), columns=list(columns))
        types = {c: pa.float64() for c in NUMBERS}
        table = pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(
            column_types=types, include_columns=list(columns), include_missing_columns=True))
        with open(path, encoding="utf-8") as f:
            present = [c.strip().strip("\"") for c in f.readline().strip().split(",")]
        return [c for c in COLUMNS if c not in present], table
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as err:
        raise PredictionsError(f"{path}: cannot read predictions: {str(err).splitlines()[0]}") from None


def read_columns(path, columns, row_groups=None):
    """{column: numpy array} of the named columns of one predictions file, or of the given row
    groups of a Parquet file (see the module docstring)."""
    import pyarrow as pa

    missing, table = _read_table(path, columns, row_groups)
    if missing:
        raise PredictionsError(f"{path}: missing column(s) {', '.join(missing)} (expected {', '.join(COLUMNS)})")
    out = {}
    for name in columns:
        column = table.column(name)
        if column.null_count and name in ("label", "prediction"):  # an empty cell or "nan": NaN, as pandas reads it
            column = column.cast(pa.float64()).fill_null(float("nan"))
        if column.null_count:
            raise PredictionsError(f"{path}: column {name} has {column.null_count} empty value(s)")
        if name in NUMBERS:
            if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)):
                raise PredictionsError(f"{path}: column {name} must hold numbers, found {column.type}")
            out[name] = column.to_numpy().astype(np.float64, copy=False)
        elif name == "user_id":
            integer = pa.types.is_integer(column.type)
            out[name] = column.to_numpy().astype(np.int64) if integer else column.cast(pa.string()).to_numpy(
                zero_copy_only=False).astype(str)
        else:
            out[name] = column.to_numpy(zero_copy_only=False)
    return out


def read_all(files, columns=COLUMNS):
    """The named columns of every file, concatenated in input order (one process)."""
    parts = [read_columns(path, columns) for path in files]
    parts = [p for p in parts if len(p[columns[0]])] or parts[:1]  # an empty file has no types to go by
    kinds = {p["user_id"].dtype.kind for p in parts} if "user_id" in columns else set()
    if len(kinds) > 1:
        raise PredictionsError("user_id is integer in some files and text in others: give every file the same kind")
    return {c: np.concatenate([p[c] for p in parts]) for c in columns}
