"""Files written whole or not at all, and strict JSON: the one place for both.

Every file this project writes (results, predictions, summaries, leaderboards, plots,
caches) goes through `atomic_output`: the content goes to a temporary file in the target
folder, which is flushed, synced and renamed over the target only when writing
succeeded. A reader therefore sees the old file or the new one, never half of one, and a
failure leaves no temporary file behind. Temporary names are unique per call (not only
per process), so two runs or threads writing next to each other never share one.

JSON is strict (RFC 8259): NaN and infinities, which Python's json module would write as
the non-standard `NaN`/`Infinity`, are written as null, and reading refuses them.
"""

import json
import math
import os
import tempfile
from contextlib import contextmanager


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates files readable by their owner only; a finished file gets the usual mode
FILE_MODE = 0o666 & ~_umask()


@contextmanager
def atomic_output(path, mode="w", encoding="utf-8"):
    """Yield a temporary path next to `path`; on success rename it to `path`.

    The caller writes the temporary path itself (useful for writers that take a path,
    e.g. pandas' to_csv or matplotlib's savefig). Creates the parent folder. On any error
    the temporary file is removed and the error propagates; `path` is left as it was.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    base = os.path.basename(path)
    stem, ext = os.path.splitext(base)
    # keep the extension last: some writers (savefig, to_parquet) pick the format from it
    fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".tmp{ext}", dir=folder)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_text(path, text):
    """Write `text` (str) to `path` atomically (see `atomic_output`)."""
    with atomic_output(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


def json_safe(obj):
    """`obj` with every non-finite float replaced by None and numpy scalars and arrays
    turned into Python values; anything else unknown becomes its str()."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "tolist"):  # numpy scalars and arrays, torch tensors
        return json_safe(obj.tolist())
    return str(obj)


def dumps(obj):
    """Strict JSON text of `obj` (see `json_safe`), indented."""
    return json.dumps(json_safe(obj), indent=2, allow_nan=False)


def write_json(path, obj):
    """Write `obj` as strict JSON to `path`, atomically."""
    atomic_write_text(path, dumps(obj) + "\n")


def _refuse_constant(name):
    raise ValueError(f"not strict JSON: {name}")


def read_json(path):
    """The object in the JSON file `path`; ValueError naming the file if it is not strict JSON."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err


def check_writable(path, what="output file"):
    """Fail now, before any long work, if `path` cannot be written later: it is a folder,
    or its folder cannot be created or written to. Creates the folder; writes nothing."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"{what} {path!r} is a folder; give a file path")
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise ValueError(f"{what} {path!r}: cannot create its folder ({err.strerror})") from err
    try:  # a real probe: permission bits say nothing for root or on a read-only mount
        fd, probe = tempfile.mkstemp(prefix=".write-check.", dir=folder)
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        raise ValueError(f"{what} {path!r}: its folder {folder!r} is not writable ({err.strerror})") from err


def check_folder(path, what):
    """Fail now if folder `path` cannot be made or used: it (or a folder above it) is a file,
    or it cannot be created. Creates nothing; ValueError naming `what` (the option) and what
    is expected."""
    path = os.fspath(path)
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise ValueError(f"{what}={path}: is a file; expected a folder (created if missing)")
        return
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ValueError(f"{what}={path}: {parent} is a file, so no folder can be created under it; "
                         "expected a folder (created if missing)")


def _inside(path, folder):
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _named(label, given):
    """`--option=path` for an option, `what path` for anything else."""
    return f"{label}={given}" if label.startswith("--") else f"{label} {given}"


def check_distinct_paths(outputs, inputs=(), output_folders=(), input_folders=()):
    """Refuse outputs that would overwrite each other or what a command reads, comparing real
    paths (`os.path.realpath`: `./a.json`, `a.json` and a link to it are one file).

    Args:
        outputs: (label, path) of every file the command writes (None paths are skipped);
            a label is an option (`--results_file`) or a few words (`the run's log`).
        inputs: (label, path) of every file it reads: no output may be one of them.
        output_folders: (label, path) of folders it replaces whole: no other output inside.
        input_folders: (label, path) of folders it reads (a saved model): no output inside.
    Raises ValueError naming both and the file.
    """
    def real(items):
        return [(_named(label, p), os.path.realpath(os.fspath(p))) for label, p in items if p]

    outs = real(outputs)
    for k, (name, path) in enumerate(outs):
        for other, other_path in outs[:k]:
            if path == other_path:
                raise ValueError(f"{other} and {name} are the same file ({path}): give each output a file of its own")
        for other, other_path in real(inputs):
            if path == other_path:
                raise ValueError(f"{name} would replace {other}, which the command reads: choose another file")
        for other, folder in real(output_folders):
            if _inside(path, folder):
                raise ValueError(f"{name} is inside {other}, which is replaced whole: choose a file outside it")
        for other, folder in real(input_folders):
            if _inside(path, folder):
                raise ValueError(f"{name} is inside {other}, which the command reads: choose a file outside it")
