"""Predict from the rows of a dataset's raw files (recbole_lda.inference.predict): a saved model
of KuaiRec takes KuaiRec's own rows (`video_id`, `video_duration` in ms), one of KuaiRand its
logs' rows, one of WeChat `userid`, `feedid`, `videoplayseconds`, one of a generic dataset the
columns of its column map. The rows pass through the converter's row rules
(dataset_prep.raw_rows: ids, units, derived context fields, implausible durations), so raw
rows and prepared rows give identical predictions.

A row the converter would drop is not scored: it stays in the output, in its place, with an
empty `prediction` and the rule in the `dropped_by` column (empty for scored rows), and is
counted per rule in the summary (`rows_not_scored`). The raw files' other columns (watch
time, dates, flags) are carried through as read; only fields of the model's dataset are read.
"""

import numpy as np

from dataset_prep import raw_rows
from dataset_prep.common import converter
from recbole_lda.inference.predict_input import InputError

DROPPED = "dropped_by"


class RawInput:
    """The raw format of a saved model's dataset, and the rows of it not scored so far."""

    def __init__(self, saved):
        module = converter(saved.config["dataset"], saved.config.get("converter"))
        self.module_name = module.__name__
        self.options = module.read_options(saved.config)  # the run's converter options (config.json)
        self.not_scored = {}  # rule -> rows

    @classmethod
    def detect(cls, saved, columns):
        """A RawInput when `columns` are the raw format of the model's dataset, else None."""
        try:
            raw = cls(saved)
        except (ValueError, KeyError):  # a dataset without a converter: prepared columns only
            return None
        if raw.module_name not in raw_rows.FORMATS:
            return None
        return raw if raw_rows.is_raw_format(raw.module_name, raw.options, columns) else None

    def columns(self, names):
        """The output's columns: the input's, the prediction, and why a row was not scored."""
        for name in ("prediction", DROPPED):
            if name in names:
                raise InputError(f"the input already has a column {name!r}: that is where the output goes")
        return [*names, "prediction", DROPPED]

    def score(self, predictor, chunk, where):
        """`chunk` (raw columns, values as read, index 0..n-1) with `prediction` (NaN where a
        rule drops the row) and `dropped_by`; `where(pos)` names a row in errors."""
        try:
            rows, reason = raw_rows.prediction_rows(self.module_name, chunk, self.options)
        except raw_rows.RowValueError as err:
            raise InputError(f"column {err.column!r}, {where(err.position)}: {str(err).split(': ', 1)[1]}") from None
        fields = [c for c in rows.columns if c in predictor.saved.fields]
        scored = np.flatnonzero(reason == "")
        prediction = np.full(len(chunk), np.nan, dtype=np.float32)
        if len(scored):
            picked = rows.iloc[scored][fields].reset_index(drop=True)
            prediction[scored] = predictor.predict(picked, lambda pos: where(int(scored[pos])))
        for rule, count in zip(*np.unique(reason[reason != ""].astype(str), return_counts=True)):
            self.not_scored[rule] = self.not_scored.get(rule, 0) + int(count)
        out = chunk.copy()
        out["prediction"], out[DROPPED] = prediction, reason
        return out
