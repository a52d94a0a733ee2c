"""Predict watch time for new rows with a saved model (recbole_lda.inference.saved_model).

    python -m recbole_lda predict --model_dir=DIR --input=rows.csv --output=pred.csv

Input: a CSV file (a tab-separated file such as a prepared `<dataset>.test.inter` works too;
`:token`/`:float` suffixes of its header are dropped) whose columns are named as in the
prepared atomic files of the dataset the model was trained on: the user id, the video id
(`item_id`), the duration in seconds and any other interaction field the model reads
(`input.required` in the folder's manifest.json). The user and video features the model
reads are joined in from the saved tables; a feature column given in the input is used
instead for its rows (e.g. the attributes of a new video). A label column may be present
(carried through, never read). A column that is no field of the model's dataset is refused
(a file of another dataset) unless named in --keep_columns.

Users, videos and other tokens the model has never seen get id 0 (RecBole's padding id), so
the model uses its padding / unknown-id embedding for them; they are counted in the
summary. A missing required column, a non-numeric or negative duration, a foreign column,
a line with more fields than the header, or a file whose first 10 rows name no known user
and no known video gives an error naming the column and the line (the header is line 1),
and no output file.

Output: CSV with the input's columns (values as read, rows in the input's order) and
`prediction` (watch time in seconds). Large inputs are read in chunks (--chunk_rows) with a
progress bar on a terminal; the output is written to a temporary file and renamed into
place only when every row was scored.

Raw rows: the rows of the raw files the model's dataset was converted from (KuaiRec's
`video_id`, `video_duration` in ms, ...) are read too, through the converter's row rules;
a row the converter would drop is kept with an empty prediction and the rule in a
`dropped_by` column (recbole_lda.inference.raw_input).

The same from Python, on a DataFrame: `predict_frame(model_dir, frame)`.
"""

import csv
import os
import re
import sys
import warnings
from time import perf_counter

import numpy as np
import pandas as pd
import torch
from recbole.data.interaction import Interaction

from recbole_lda.utils.errors import UsageError
from recbole_lda.utils.fileio import atomic_output, check_distinct_paths, check_writable, write_json
from recbole_lda.inference.predict_input import InputError, as_tokens, column_name, count_rows, first_line_with_more_fields
from recbole_lda.inference.raw_input import RawInput
from recbole_lda.inference.saved_model import SavedModel, load

PREDICTION = "prediction"
# An input whose first this many rows name no known user and no known video is refused as a
# file of another dataset (fewer rows: new users and videos, scored with the unknown-id embeddings).
FOREIGN_CHECK_ROWS = 10


class Predictor:
    """A loaded model that scores DataFrames and keeps count of what it has seen.

    Args:
        model_dir: a saved model folder (or a SavedModel already loaded).
        device: where the model runs.
        batch_size: rows per forward pass.
        keep_columns: columns to carry through although no field of the model's dataset.
        allow_all_unknown: score an input whose first FOREIGN_CHECK_ROWS rows name no known user
            and no known video (refused by default: such a file is usually one of another dataset).
    """

    def __init__(self, model_dir, device="cpu", batch_size=8192, keep_columns=(), allow_all_unknown=False):
        self.saved = model_dir if isinstance(model_dir, SavedModel) else load(model_dir, device)
        self.batch_size = int(batch_size)
        self.keep_columns = tuple(keep_columns)
        self.allow_all_unknown = allow_all_unknown
        manifest = self.saved.manifest
        self.model_name, self.dataset = manifest["model"], manifest["dataset"]
        self.uid, self.iid = self.saved.uid_field, self.saved.iid_field
        self.inputs = manifest["input"]
        inputs = self.inputs
        self.reads = list(dict.fromkeys([*inputs["required"], *inputs["user_features"], *inputs["item_features"]]))
        self.rows = 0
        self.any_known = False  # a known user or video seen so far
        self.unknown_rows = {}  # token field -> rows with an unknown token (id 0)
        self.unknown_ids = {self.uid: set(), self.iid: set()}
        self.seconds = 0.0
        if PREDICTION in self.keep_columns or PREDICTION in self.saved.fields:
            raise InputError(f"column {PREDICTION!r} is where predictions go: it cannot be an input column")

    # --- columns
    def check_columns(self, names, where):
        """The field names of input columns `names`; InputError for a duplicate, a missing
        required column or a column that is no field of the model's dataset."""
        fields = self.saved.fields
        cleaned = [column_name(str(n)) for n in names]
        for k, name in enumerate(cleaned):
            if name in cleaned[:k]:
                raise InputError(f"column {name!r} appears twice ({where})")
        missing = [c for c in self.inputs["required"] if c not in cleaned]
        if missing:
            raise InputError(
                f"the input lacks column {missing[0]!r} ({where}: {', '.join(cleaned) or 'no columns'}); "
                f"{self.model_name} trained on dataset {self.dataset!r} needs {', '.join(self.inputs['required'])} "
                "(user and video features are joined from the saved model)"
            )
        for name in cleaned:
            if name == PREDICTION:
                raise InputError(
                    f"the input already has a column {PREDICTION!r} ({where}): that is where predictions go"
                )
            if name not in fields and name not in self.keep_columns:
                raise InputError(
                    f"column {name!r} ({where}) is no field of dataset {self.dataset!r}, which {self.model_name} was "
                    f"trained on (fields: {', '.join(fields)}): is this a file of another dataset? "
                    f"(--keep_columns={name} carries it through)"
                )
        return cleaned

    # --- values
    def _token_ids(self, name, series):
        tokens = as_tokens(series)
        ids = self.saved.token_index(name).get_indexer(tokens)
        ids[ids < 0] = 0  # unknown -> RecBole's padding id ('[PAD]' itself is 0 too)
        unknown = ids == 0
        self.unknown_rows[name] = self.unknown_rows.get(name, 0) + int(unknown.sum())
        if name in self.unknown_ids and unknown.any():
            self.unknown_ids[name].update(tokens[unknown].tolist())
        return ids.astype(np.int64)

    def _token_seq_ids(self, name, series):
        sep = self.saved.manifest["fields"]["seq_separator"]
        index = self.saved.token_index(name)
        length = self.saved.fields[name].get("seqlen") or 1
        out = np.zeros((len(series), length), dtype=np.int64)
        unknown = 0
        for row, text in enumerate(as_tokens(series)):
            tokens = [t for t in text.split(sep) if t != ""][:length]
            if tokens:
                ids = index.get_indexer(tokens)
                unknown += int((ids < 0).sum())
                out[row, : len(ids)] = np.where(ids < 0, 0, ids)
        self.unknown_rows[name] = self.unknown_rows.get(name, 0) + unknown
        return out

    @staticmethod
    def _floats(name, series, where, non_negative):
        if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
            values = series.to_numpy(np.float64)
        else:
            values = pd.to_numeric(series, errors="coerce").to_numpy(np.float64)
        bad = ~np.isfinite(values)
        if non_negative:
            bad |= values < 0
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            raw = series.iloc[pos]
            expected = "a non-negative number (seconds)" if non_negative else "a number"
            raise InputError(f"column {name!r}, {where(pos)}: {raw!r} is not {expected}")
        return values.astype(np.float32)

    # --- scoring
    @torch.no_grad()
    def predict(self, frame, where=None):
        """Watch-time predictions (seconds, float32 array) for the rows of `frame`, whose
        columns have passed `check_columns` (field names). `where(pos)` names a row in error
        messages (default: 'row <index label>')."""
        where = where or (lambda pos: f"row {frame.index[pos]!r}")
        start = perf_counter()
        fields, features, device = self.saved.fields, self.saved.features, self.saved.config["device"]
        n = len(frame)
        uids, iids = self._token_ids(self.uid, frame[self.uid]), self._token_ids(self.iid, frame[self.iid])
        self.any_known = self.any_known or bool(uids.any() or iids.any())
        if not self.any_known and not self.allow_all_unknown and self.rows + n >= FOREIGN_CHECK_ROWS:
            raise InputError(
                f"none of the users and videos in the first {self.rows + n:,} rows (to {where(n - 1)}) is known to "
                f"{self.model_name} (trained on dataset {self.dataset!r}): is this a file of another dataset? "
                "(--allow_all_unknown=True scores it anyway)"
            )
        keys = {self.uid: torch.from_numpy(uids).to(device), self.iid: torch.from_numpy(iids).to(device)}
        data = dict(keys)
        for name in self.reads:
            if name in data:
                continue
            kind = fields[name]["type"]
            if name in frame.columns:
                if kind == "token":
                    values = torch.from_numpy(self._token_ids(name, frame[name]))
                elif kind == "token_seq":
                    values = torch.from_numpy(self._token_seq_ids(name, frame[name]))
                else:
                    values = torch.from_numpy(self._floats(name, frame[name], where, name == self.saved.duration_field))
                data[name] = values.to(device)
            else:
                table = "user" if name in features["user"] else "item" if name in features["item"] else None
                if table is None:
                    raise InputError(
                        f"the input lacks column {name!r}, which {self.model_name} reads and the saved model has no "
                        "table for"
                    )
                data[name] = features[table][name][keys[self.uid if table == "user" else self.iid]]
        out = np.empty(n, dtype=np.float32)
        model = self.saved.model
        for lo in range(0, n, self.batch_size):
            batch = Interaction({k: v[lo : lo + self.batch_size] for k, v in data.items()})
            out[lo : lo + self.batch_size] = model.predict(batch).float().cpu().numpy()
        self.rows += n
        self.seconds += perf_counter() - start
        return out

    def summary(self):
        """What was scored so far: rows, and rows with unknown ids (and distinct unknown ids)."""
        return {
            "model": self.model_name,
            "dataset": self.dataset,
            "model_dir": self.saved.path,
            "rows": self.rows,
            "unknown_users": self.unknown_rows.get(self.uid, 0),
            "unknown_user_ids": len(self.unknown_ids[self.uid]),
            "unknown_items": self.unknown_rows.get(self.iid, 0),
            "unknown_item_ids": len(self.unknown_ids[self.iid]),
            "unknown_tokens": {k: v for k, v in self.unknown_rows.items() if k not in (self.uid, self.iid)},
            "scoring_s": round(self.seconds, 3),
        }


def predict_frame(model_dir, frame, device="cpu", batch_size=8192, keep_columns=(), allow_all_unknown=False):
    """A copy of DataFrame `frame` with a `prediction` column (watch time, seconds).

    `frame` has the columns a file would have (see the module docstring; ids as strings or
    integers). `model_dir` is a saved model folder or a loaded SavedModel. The summary
    (rows, unknown users and videos) is in the result's `.attrs["summary"]`. InputError on a
    missing or foreign column or a bad value, naming the column and the row's index label.
    """
    predictor = Predictor(model_dir, device, batch_size, keep_columns, allow_all_unknown)
    raw = RawInput.detect(predictor.saved, [str(c) for c in frame.columns])  # the dataset's raw rows
    if raw is not None:
        raw.columns(list(frame.columns))
        out = raw.score(predictor, frame.reset_index(drop=True), lambda pos: f"row {frame.index[pos]!r}")
        out.index = frame.index
        out.attrs["summary"] = {**predictor.summary(), "rows_not_scored": raw.not_scored}
        return out
    renamed = frame.copy()
    renamed.columns = predictor.check_columns(frame.columns, "the DataFrame's columns")
    out = frame.copy()
    out[PREDICTION] = predictor.predict(renamed.reset_index(drop=True), lambda pos: f"row {frame.index[pos]!r}")
    out.attrs["summary"] = predictor.summary()
    return out


def check_paths(input, output, summary_file, chunk_rows, batch_size, model_dir=None):
    """Refuse, before loading the model, a missing input, an unwritable output, an output that
    is the input, the other output or a file of the model folder, or a bad size."""
    if os.path.isdir(input):
        raise UsageError(f"--input={input}: is a folder; expected a CSV file of rows to score")
    if not os.path.isfile(input):
        raise UsageError(f"--input={input}: no such file; expected a CSV file of rows to score")
    try:
        check_distinct_paths([("--output", output), ("--summary_file", summary_file)], inputs=[("--input", input)],
                             input_folders=[("--model_dir", model_dir if isinstance(model_dir, (str, os.PathLike))
                                             else getattr(model_dir, "path", None))])
        for key, path in (("--output", output), ("--summary_file", summary_file)):
            if path:
                check_writable(path, key)  # (creates its folder)
    except ValueError as err:
        raise UsageError(str(err)) from None
    if chunk_rows < 1 or batch_size < 1:
        raise UsageError("--chunk_rows and --batch_size must be >= 1")


def read_header(input):
    """(separator, column names) of the input's first line: tab-separated when the line has
    tabs and no comma, else comma-separated."""
    try:
        with open(input, encoding="utf-8-sig", newline="") as f:  # -sig: a byte-order mark is no part of a name
            header = f.readline()
    except UnicodeDecodeError as err:
        raise InputError(f"{input} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    if not header.strip():
        raise InputError(f"{input}: line 1 is empty; expected a header with the column names")
    sep = "\t" if "\t" in header and "," not in header else ","
    return sep, next(csv.reader([header.rstrip("\r\n")], delimiter=sep))


def predict_file(model_dir, input, output, chunk_rows=100_000, batch_size=8192, device="cpu", keep_columns=(),
                 allow_all_unknown=False, show_progress=None, summary_file=None):
    """Score every row of CSV file `input` and write `output` (see the module docstring);
    returns the summary (dict), also written to `summary_file` (JSON) when given."""
    check_paths(input, output, summary_file, chunk_rows, batch_size, model_dir)
    start = perf_counter()
    predictor = Predictor(model_dir, device, batch_size, keep_columns, allow_all_unknown)
    sep, names = read_header(input)
    raw = RawInput.detect(predictor.saved, names)  # the rows of the dataset's raw files (inference.raw_input)
    columns = names if raw else predictor.check_columns(names, f"line 1 of {input}")
    show = sys.stderr.isatty() if show_progress is None else show_progress
    from tqdm import tqdm

    bar = tqdm(total=count_rows(input) if show else None, unit="rows", unit_scale=True, disable=not show,
               desc=f"{predictor.model_name} predictions", file=sys.stderr)
    # index_col=False: a line with more fields than the header is an error, never a shifted row
    reader = pd.read_csv(input, sep=sep, dtype=str, keep_default_na=False, na_filter=False, chunksize=chunk_rows,
                         encoding="utf-8-sig", index_col=False)
    first_line = 2
    with atomic_output(output) as tmp, open(tmp, "w", encoding="utf-8", newline="") as out, bar, \
            warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.ParserWarning)
        header = raw.columns(columns) if raw else [*columns, PREDICTION]
        pd.DataFrame(columns=header).to_csv(out, index=False, lineterminator="\n")
        try:
            for chunk in reader:
                chunk.columns = columns
                where = lambda pos, base=first_line: f"line {base + pos}"  # noqa: E731
                if raw:
                    chunk = raw.score(predictor, chunk.reset_index(drop=True), where)
                else:
                    chunk[PREDICTION] = predictor.predict(chunk, where)
                chunk.to_csv(out, index=False, header=False, lineterminator="\n")
                first_line += len(chunk)
                bar.update(len(chunk))
        except pd.errors.ParserError as err:
            ragged = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(err))
            if ragged:
                expected, line, count = ragged.groups()
                raise InputError(f"{input}, line {line}: {count} fields, but line 1 names {expected} columns") from None
            raise InputError(f"{input}: {' '.join(str(err).split())}") from None
        except pd.errors.ParserWarning:  # the first data line has more fields than the header
            line, count = first_line_with_more_fields(input, sep, len(names))
            raise InputError(f"{input}, line {line}: {count} fields, but line 1 names {len(names)} columns") from None
        except UnicodeDecodeError as err:
            raise InputError(f"{input} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    summary = {**predictor.summary(), "input": input, "output": output, "total_s": round(perf_counter() - start, 3)}
    if raw:
        summary["rows_not_scored"] = raw.not_scored
    if summary_file:
        write_json(summary_file, summary)
    return summary
