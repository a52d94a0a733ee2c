"""What a model's constructor needs from a RecBole dataset, rebuilt from a saved model folder
(recbole_lda.inference.saved_model): a stand-in dataset with the saved field types and id-map sizes,
and a made-up training sample, so that a model is built at the saved shapes and its saved
state dict (every statistic of the training split) then replaces what was derived here."""

import numpy as np
import torch
from recbole.utils import FeatureSource, FeatureType

SOURCES = {s.value: s for s in FeatureSource}


class SavedConfig(dict):
    """The saved configuration, read like RecBole's Config: `config[key]`, None for an absent key."""

    def __getitem__(self, key):
        return self.get(key)


class _Columns(dict):
    """Columns by name, like the part of RecBole's Interaction that constructors read."""

    @property
    def columns(self):
        return list(self)


def stand_in_sample():
    """The made-up training sample a constructor sees on loading: 128 durations from 1 s to 600 s
    (log-spaced) x 64 watch ratios from 0.01 to 2 (labels = ratio x duration, seconds), no ties
    and no zeros, so that every statistic a constructor derives from labels is defined.
    Returns (labels, durations), float64 tensors of 8192 rows."""
    durations = np.repeat(np.geomspace(1.0, 600.0, 128), 64)
    ratios = np.tile(np.linspace(0.01, 2.0, 64), 128)
    return torch.from_numpy(ratios * durations), torch.from_numpy(durations)


class StandInDataset:
    """What a model's constructor reads from a RecBole dataset, rebuilt from a saved folder:
    `field2type`, `num(field)` (id-map sizes), `uid_field`/`iid_field`, and training columns
    (`inter_feat`): the stand-in sample for label and duration, a ramp for every other float
    field. The statistics computed from these are all replaced by the saved state dict."""

    def __init__(self, fields, uid, iid, label, duration):
        self.field2type = {name: FeatureType(f["type"]) for name, f in fields.items()}
        self._num = {name: len(f["tokens"]) if "tokens" in f else f.get("seqlen", 1) for name, f in fields.items()}
        self.field2source = {name: SOURCES[f["source"]] for name, f in fields.items()}
        self.uid_field, self.iid_field = uid, iid
        labels, durations = stand_in_sample()
        columns = _Columns({label: labels, duration: durations})
        for name, ftype in self.field2type.items():
            if ftype == FeatureType.FLOAT and name not in columns:
                columns[name] = torch.linspace(0.0, 1.0, len(labels), dtype=torch.float64)
        self.inter_feat, self.user_feat, self.item_feat = columns, None, None

    def num(self, name):
        if name not in self._num:
            raise ValueError(f"Field [{name}] not defined in dataset.")
        return self._num[name]
