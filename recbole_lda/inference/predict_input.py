"""Reading the rows a saved model scores (recbole_lda.inference.predict): column names of atomic
headers, token columns as RecBole reads them, line numbers for errors, row counts."""

import csv

import numpy as np
import pandas as pd

RECBOLE_TYPES = ("token", "float", "token_seq", "float_seq")


class InputError(ValueError):
    """Rows a saved model cannot score: a missing or foreign column, a bad value (exit status 1)."""


def column_name(header):
    """A column's field name: RecBole's atomic headers carry a type suffix (`duration:float`)."""
    name, sep, kind = header.rpartition(":")
    return name if sep and kind in RECBOLE_TYPES else header


def as_tokens(series):
    """Token strings of a column as RecBole reads them from a file (str; missing -> '')."""
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_integer_dtype(series):
        return series.astype(str).to_numpy(dtype=object)
    if pd.api.types.is_float_dtype(series):  # ids read as floats (e.g. a column with gaps): 12.0 -> '12'
        values = series.to_numpy(np.float64)
        out = np.full(len(values), "", dtype=object)
        whole = np.isfinite(values) & (values == np.round(values))
        out[whole] = values[whole].astype(np.int64).astype(str)
        other = np.isfinite(values) & ~whole
        out[other] = values[other].astype(str)
        return out
    return series.fillna("").astype(str).to_numpy(dtype=object)


def first_line_with_more_fields(path, sep, fields):
    """The number of the first line of a CSV file with more than `fields` fields (error path only)."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter=sep)
        for row in reader:
            if len(row) > fields:
                return reader.line_num, len(row)
    return "?", "more"


def count_rows(path):
    """Data lines of a file (lines after the header), for the progress bar's total."""
    lines, last = 0, b"\n"
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            lines += block.count(b"\n")
            last = block[-1:]
    return max(lines + (last != b"\n") - 1, 0)
