"""Reading a raw CSV file in chunks of about `chunk_rows` rows, with the checks and counts
of dataset_prep.raw.read_csv (header, types, required columns, values taken as missing).

`csv_chunks` yields each chunk with the file line of its first row, so that errors name
the right line. On a value of the wrong type or a row with the wrong number of fields, the
file is read again whole by raw.read_csv to give today's exact error (file, column, line):
that error path needs the memory of the file, the normal path only a chunk's.
"""

import os

import pyarrow as pa
import pyarrow.csv as pcsv

from dataset_prep.common import RawDataError
from dataset_prep.raw import _ARROW_TYPES, _check_header, _check_required, count_missing, read_csv

SAMPLE_BYTES = 1 << 16  # bytes read to estimate a line's length
READAHEAD_SHARE = 16  # blocks per chunk (see csv_chunks)


def average_line_bytes(path):
    """Mean length of the first data lines (bytes, newline included), at least 1."""
    with open(path, "rb") as f:
        f.readline()  # the header
        sample = f.read(SAMPLE_BYTES)
    lines = sample.count(b"\n")
    return max(1, len(sample) // lines) if lines else max(1, len(sample))


def estimate_rows(paths):
    """Data rows of the files, estimated from their sizes and their first lines."""
    return sum(os.path.getsize(p) // average_line_bytes(p) for p in paths)


def csv_chunks(path, columns, chunk_rows, required=(), optional=None, missing=None):
    """Yield (first_line, pyarrow.Table) for chunks of about `chunk_rows` rows of `path`.

    Same arguments and checks as raw.read_csv (columns: name -> "int"|"float"|"str");
    the values taken as missing are added up over the chunks into
    missing[file name][column]."""
    wanted = _check_header(path, columns, optional)
    bad_rows = []

    def on_bad_row(row):
        bad_rows.append(row)
        return "skip"

    # pyarrow's streaming reader reads up to 32 blocks ahead in a background thread
    # (arrow's kDefaultBackgroundMaxQ): blocks of 1/READAHEAD_SHARE of a chunk bound that
    # read-ahead to about two chunks of raw bytes, whatever the file's size; the blocks'
    # batches are put together into chunks of about chunk_rows rows.
    block = max(1 << 12, chunk_rows * average_line_bytes(path) // READAHEAD_SHARE)
    reader = pcsv.open_csv(
        path,
        read_options=pcsv.ReadOptions(block_size=block),
        parse_options=pcsv.ParseOptions(invalid_row_handler=on_bad_row),
        convert_options=pcsv.ConvertOptions(
            include_columns=list(wanted), column_types={c: _ARROW_TYPES[t] for c, t in wanted.items()}),
    )
    line = 2
    for batches in _grouped(reader, chunk_rows, path, columns, required, optional, bad_rows):
        table = pa.Table.from_batches(batches)
        _check_required(table, path, required, first_line=line)
        _add_missing(missing, path, count_missing(table, path, wanted))
        yield line, table
        line += table.num_rows
    if line == 2:
        raise RawDataError(f"{path}: the file has a header but no data rows")


def _grouped(reader, chunk_rows, path, columns, required, optional, bad_rows):
    """Lists of the reader's batches holding about chunk_rows rows each; on a parse error,
    today's error (raw.read_csv on the whole file)."""
    group, rows = [], 0
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            break
        except pa.ArrowInvalid as err:
            read_csv(path, columns, required, optional)  # raises today's error naming the line
            raise RawDataError(f"{path}: cannot be parsed as CSV: {err}") from err
        if bad_rows:
            read_csv(path, columns, required, optional)
            raise RawDataError(f"{path}: a row has {bad_rows[0].actual_columns} field(s), expected {bad_rows[0].expected_columns}")
        group.append(batch)
        rows += batch.num_rows
        if rows >= chunk_rows:
            yield group
            group, rows = [], 0
    if group:
        yield group


def _add_missing(missing, path, counts):
    if missing is not None and counts:
        mine = missing.setdefault(os.path.basename(path), {})
        for column, n in counts.items():
            mine[column] = mine.get(column, 0) + n
