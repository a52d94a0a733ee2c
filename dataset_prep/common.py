"""What the converters and the preparation pipeline share: the converter registry and
interface, errors, the canonical `Tables`, config helpers, cache keys, and cache folders
that are written whole (`atomic_dir`) and checked when read again (`read_record`).

The pipeline itself (`prepare`) is dataset_prep/pipeline.py; the split and the RecBole
atomic files are dataset_prep/split.py; reading raw CSV files is dataset_prep/raw.py.

A converter module (registered in `CONVERTERS`) provides:
    VERSION (int): bumped when its output changes, so that old caches are not reused.
    read_options(config) -> dict: its validated, JSON-serialisable options.
    default_raw_dir(data_path, options) -> str: where raw files go when
        `raw_data_path` is not set.
    raw_files(raw_dir, options) -> list[str]: the files `convert` will read (a converter
        may create them, as the synthetic one does); raises RawDataMissing.
    convert(raw_dir, options) -> Tables.
    oracle(raw_dir, user_ids, item_ids) -> ndarray (optional): best achievable predictions.
"""

import hashlib
import importlib
import json
import logging
import os
import re
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from recbole_lda.utils.fileio import read_json

logger = logging.getLogger(__name__)

# Dataset name -> converter module. Add a dataset by adding its module here.
CONVERTERS = {
    "synthetic": "dataset_prep.synthetic",
    "kuairec": "dataset_prep.kuairec",
    "wechat": "dataset_prep.wechat",
    "kuairand": "dataset_prep.kuairand",
    "synthetic_kuairand": "dataset_prep.synthetic_kuairand",
}
# Converters a dataset of one's own names with the `converter` key (no dataset YAML needed).
NAMED_CONVERTERS = {"generic": "dataset_prep.generic"}



class RawDataMissing(FileNotFoundError):
    """A raw file that the conversion needs is not there; the message says what to get."""


class RawDataError(ValueError):
    """A raw file is malformed; the message names the file, column, line and expectation."""


class DamagedCache(Exception):
    """A cache folder that is incomplete or unreadable; the message says what is wrong."""


@dataclass
class Tables:
    """The canonical table set a converter returns.

    inter: one row per kept interaction: user_id (int raw id), item_id (int raw id),
        label (float, watch time in seconds), duration (float, video duration in seconds),
        day (int YYYYMMDD, 0 where unknown), optionally timestamp (float Unix seconds), and
        the extra per-interaction feature columns named in field_types.
    field_types: RecBole type (token, float, token_seq) of every feature column of inter,
        user and item, ids excluded. token_seq values are space-separated strings.
    user / item: feature tables keyed by user_id / item_id, or None.
    rows_read: raw interaction rows read.
    rows_dropped: rule description -> rows dropped by it (rules apply in order).
    missing_values: raw file name -> column -> values read as missing (raw.read_csv).
    """

    inter: pd.DataFrame
    field_types: dict
    user: pd.DataFrame = None
    item: pd.DataFrame = None
    rows_read: int = 0
    rows_dropped: dict = field(default_factory=dict)
    missing_values: dict = field(default_factory=dict)


@dataclass
class PreparedDataset:
    """path: the folder RecBole reads (set config['data_path'] to it); meta: what was done."""

    path: str
    meta: dict


def config_get(config, key):
    """config[key], or None when absent (a RecBole Config returns None; a dict raises)."""
    try:
        return config[key]
    except KeyError:
        return None


def require(config, key):
    """config[key]; a clear error if the key is not set."""
    value = config_get(config, key)
    if value is None:
        raise ValueError(
            f"config key {key!r} is not set; it is defined in properties/dataset/{config_get(config, 'dataset')}.yaml"
        )
    return value


def converter(name, kind=None):
    """The converter module of dataset `name`: the one its configuration names (`kind`, a
    key of NAMED_CONVERTERS), else the one registered for the name."""
    if kind is not None:
        if kind not in NAMED_CONVERTERS:
            raise ValueError(f"unknown converter {kind!r}; known: {sorted(NAMED_CONVERTERS)}")
        return importlib.import_module(NAMED_CONVERTERS[kind])
    if name not in CONVERTERS:
        raise ValueError(f"no converter for dataset {name!r}; known datasets: {sorted(CONVERTERS)}")
    return importlib.import_module(CONVERTERS[name])


def short_hash(obj):
    """A 16-hex-digit digest of a JSON-serialisable object."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def splitmix64(x):
    """SplitMix64's finaliser on a uint64 array: a bijection that mixes every bit (so
    distinct inputs give distinct outputs; wrapping arithmetic is intended)."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def file_signature(paths):
    """(real path, size, mtime_ns) of each file: changes when a file is replaced or edited."""
    sig = []
    for path in paths:
        st = os.stat(path)
        sig.append([os.path.realpath(path), st.st_size, st.st_mtime_ns])
    return sig


# ---------------------------------------------------------------------------------------
# Atomic folders


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def atomic_dir(final):
    """Yield a temporary folder `final.tmp-<pid>`; on success rename it to `final`.

    On an exception the temporary folder is removed. Temporary folders left by dead
    processes (killed runs) are removed first. If another process completed `final` in
    the meantime, its folder is kept and ours is discarded.
    """
    parent, base = os.path.split(os.path.abspath(final))
    os.makedirs(parent, exist_ok=True)
    for entry in os.listdir(parent):
        m = re.fullmatch(re.escape(base) + r"\.tmp-(\d+)", entry)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            logger.info(f"removing {entry}, left by a run that did not finish")
            shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)
    tmp = f"{os.path.abspath(final)}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        os.replace(tmp, final)
    except OSError:
        if not os.path.isdir(final):
            raise
        shutil.rmtree(tmp, ignore_errors=True)
        logger.info(f"{final} was completed by another process; using it")


# ---------------------------------------------------------------------------------------
# Damaged cache folders


def check_files(folder, files):
    """DamagedCache unless each file of `files` (name -> size in bytes) is in `folder` with that size."""
    for name, size in files.items():
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            raise DamagedCache(f"{name} is missing")
        if os.path.getsize(path) != size:
            raise DamagedCache(f"{name} has {os.path.getsize(path):,} bytes, {size:,} were written")


def read_record(folder, name):
    """The JSON record `name` (tables.json, meta.json) of a cache folder, after checking
    the files it lists; DamagedCache when the record or a file is missing or unreadable."""
    try:
        record = read_json(os.path.join(folder, name))
    except FileNotFoundError:
        raise DamagedCache(f"{name} is missing") from None
    except (OSError, ValueError) as err:
        raise DamagedCache(f"{name} is unreadable ({err})") from None
    if not isinstance(record, dict) or not isinstance(record.get("files"), dict):
        raise DamagedCache(f"{name} does not list the folder's files")
    check_files(folder, record["files"])
    return record


def discard_damaged(folder, reason):
    """Log one line about the damaged cache `folder` and remove it (to be built again)."""
    reason = " ".join(str(reason).split())  # one line, whatever the error text
    logger.warning(f"damaged cache {folder}: {reason}; removing it and building it again")
    aside = f"{folder}.tmp-{os.getpid()}"  # atomic_dir's temporary name: removed later if we die now
    shutil.rmtree(aside, ignore_errors=True)
    try:
        os.replace(folder, aside)  # out of the way at once: no run takes it as complete any more
    except FileNotFoundError:
        return  # another run removed it first
    shutil.rmtree(aside, ignore_errors=True)
