"""A trained model saved as a folder, and loaded back without the training data and
without ever unpickling anything.

A run with `save_model_dir: DIR` writes, at its end (recbole_lda.quick_start.run):

    DIR/manifest.json         format and version, model, dataset, versions, the input
                              columns a prediction needs, the model's report, and the size
                              and SHA-256 of every other file (a damaged or mixed folder is refused)
    DIR/config.json           the run's resolved configuration (quick_start.hyperparameters)
    DIR/fields.json           every field of the dataset: RecBole type, source (inter, user_id,
                              item_id, user, item), for token fields the id map (tokens in id
                              order; id 0 is RecBole's '[PAD]'), for token sequences the length
    DIR/model.safetensors     the state dict: parameters and buffers, among them everything the
                              model derived from the training split (bucket edges, quantile
                              tables, anchors, float standardisation). `model.pt` (torch's
                              weights-only format) instead when asked for.
    DIR/features.safetensors  the per-user and per-video feature tables the model reads
                              (`user.<field>`, `item.<field>`), row = internal id, row 0 = the
                              padding row (RecBole's user_feat / item_feat, missing values filled)

The folder is written under a temporary name next to DIR and renamed into place: a reader
sees the old saved model or the new one, never part of one.

`load(DIR)` rebuilds the model from these files alone. A model's constructor needs a RecBole
dataset: it gets a stand-in (`StandInDataset`) with the saved field types and id-map sizes
and a fixed, made-up training sample, so that constructors that derive statistics from
training labels run (quickly) and build every module; the saved state dict then replaces
every one of those statistics. Where a statistic's SIZE depends on the data (OR's distinct
thresholds, D2Q's duration groups, D2Co's duration bins), the module takes the saved
tensor's shape (never for the backbone, whose sizes come from the id maps and the
configuration). A model class may instead define `from_saved(config, dataset, state_dict)`:
LDA does, to skip its anchor pre-training.

Loading never unpickles: safetensors holds tensors only, and a `model.pt` is read with
`torch.load(weights_only=True)` and must be a flat name -> tensor mapping; a pickle in place of
the weights, or anything but tensors, is refused with a message (`SavedModelError`).
"""

import hashlib
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field

import pandas as pd
import torch
from recbole.utils import FeatureType

import recbole_lda
from recbole_lda.utils.fileio import atomic_output, json_safe, read_json, write_json
from recbole_lda.utils.errors import UsageError
from recbole_lda.config.registry import check_model_name, get_model
from recbole_lda.inference.stand_in import SavedConfig, StandInDataset

FORMAT = "recbole-lda saved model"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CONFIG_FILE = "config.json"
FIELDS_FILE = "fields.json"
FEATURES_FILE = "features.safetensors"
WEIGHTS_FILES = {"safetensors": "model.safetensors", "torch": "model.pt"}

# A zip archive (torch.save's format since 1.6) or a pickle stream (protocol 2 and later).
PICKLE_MAGIC = (b"PK\x03\x04", b"\x80")


class SavedModelError(ValueError):
    """A folder that is not a loadable saved model (missing, damaged, mixed, unsafe)."""


# ----------------------------------------------------------------------------- saving


def check_target(path):
    """Fail now, before a run's work, if a model cannot be saved to folder `path` at its end:
    `path` is a file, or a folder holding other files than a saved model (which would be
    replaced), or its parent cannot be written. Writes nothing (a probe folder, removed)."""
    path = os.fspath(path)
    try:
        import safetensors  # noqa: F401
    except ImportError:
        raise UsageError("save_model_dir needs the safetensors package: pip install safetensors") from None
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"save_model_dir {path!r} is a file; give a folder")
    if os.path.isdir(path) and os.listdir(path) and not os.path.isfile(os.path.join(path, MANIFEST)):
        raise UsageError(
            f"save_model_dir {path!r} holds other files and no saved model; give a new or empty folder "
            "(a saved model's folder is replaced)"
        )
    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
        os.rmdir(tempfile.mkdtemp(prefix=".write-check.", dir=parent))
    except OSError as err:
        raise UsageError(f"save_model_dir {path!r}: its folder {parent!r} is not writable ({err.strerror})") from None


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _field_table(dataset):
    """fields.json's content for a RecBole dataset."""
    fields = {}
    for name, ftype in dataset.field2type.items():
        entry = {"type": ftype.value, "source": dataset.field2source[name].value}
        if ftype in (FeatureType.TOKEN, FeatureType.TOKEN_SEQ):
            entry["tokens"] = [str(t) for t in dataset.field2id_token[name]]
        if ftype in (FeatureType.TOKEN_SEQ, FeatureType.FLOAT_SEQ):
            entry["seqlen"] = int(dataset.field2seqlen[name])
        fields[name] = entry
    return fields


def model_fields(model):
    """The fields a model reads from an interaction: its backbone's and the duration."""
    backbone = model.backbone
    fields = [*backbone.token_fields, *backbone.token_seq_fields, *backbone.float_fields, model.DURATION]
    return list(dict.fromkeys(fields))


def input_columns(fields, used, uid, iid):
    """{required, user_features, item_features}: the interaction fields a prediction needs in its
    input, and the user and video fields joined from the saved tables (or given in the input)."""
    required = [uid, iid] + [f for f in used if fields[f]["source"] == "inter"]
    by_source = {s: [f for f in used if fields[f]["source"] == s] for s in ("user", "item")}
    return {"required": list(dict.fromkeys(required)), "user_features": by_source["user"],
            "item_features": by_source["item"]}


def _tensors_only(state):
    """A copy of a state dict that safetensors can write: contiguous tensors, no shared memory."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}


def _write_tensors(path, tensors, weights_format):
    with atomic_output(path, mode="wb") as tmp:
        if weights_format == "safetensors":
            from safetensors.torch import save_file

            save_file(tensors, tmp, metadata={"format": FORMAT})
        else:
            torch.save(tensors, tmp)


def save(path, model, dataset, config, state_dict=None, weights_format="safetensors"):
    """Save a trained model to folder `path` (see the module docstring); returns `path`.

    Args:
        model (WatchTimeRecommender): the trained model.
        dataset: the RecBole dataset it was trained on (the training split: id maps, field
            types and the user and item feature tables are shared by every split).
        config (dict): the resolved configuration as JSON-able values
            (recbole_lda.quick_start.quick_start.hyperparameters(config)); must name model and dataset.
        state_dict: the weights to save (e.g. the trainer's best); default: the model's own.
        weights_format: `safetensors` (default) or `torch` (torch's weights-only format).
    """
    if weights_format not in WEIGHTS_FILES:
        raise ValueError(f"weights_format must be one of {', '.join(WEIGHTS_FILES)}, got {weights_format!r}")
    path = os.fspath(path)
    check_target(path)
    state = _tensors_only(state_dict if state_dict is not None else model.state_dict())
    fields = _field_table(dataset)
    used = model_fields(model)
    uid, iid = dataset.uid_field, dataset.iid_field
    features = {}
    for kind, table in (("user", dataset.user_feat), ("item", dataset.item_feat)):
        for name in used:
            if table is not None and fields[name]["source"] == kind and name in table.columns:
                features[f"{kind}.{name}"] = table[name]
    features = _tensors_only(features)
    config = json_safe(dict(config))
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": config["model"],
        "dataset": config["dataset"],
        "weights": WEIGHTS_FILES[weights_format],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": {"recbole_lda": recbole_lda.__version__, "torch": torch.__version__},
        "fields": {"user_id": uid, "item_id": iid, "label": model.LABEL, "duration": model.DURATION,
                   "seq_separator": config.get("seq_separator") or " "},
        "input": input_columns(fields, used, uid, iid),
        "model_report": json_safe(model.report()),
    }

    parent, base = os.path.split(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{base}.{uuid.uuid4().hex}.tmp")  # unique per call; made with the umask
    os.makedirs(tmp)
    try:
        write_json(os.path.join(tmp, CONFIG_FILE), config)
        write_json(os.path.join(tmp, FIELDS_FILE), fields)
        _write_tensors(os.path.join(tmp, manifest["weights"]), state, weights_format)
        _write_tensors(os.path.join(tmp, FEATURES_FILE), features or {"empty": torch.zeros(0)}, "safetensors")
        names = [CONFIG_FILE, FIELDS_FILE, manifest["weights"], FEATURES_FILE]
        manifest["files"] = {
            n: {"bytes": os.path.getsize(os.path.join(tmp, n)), "sha256": _sha256(os.path.join(tmp, n))} for n in names
        }
        write_json(os.path.join(tmp, MANIFEST), manifest)  # last: a folder with a manifest is complete
        _replace_folder(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _replace_folder(tmp, path):
    """Rename the finished folder `tmp` to `path`; an existing (empty or saved-model) folder
    there is moved aside first and removed after."""
    try:
        os.replace(tmp, path)  # no folder, or an empty one
        return
    except OSError:
        if not os.path.isdir(path):
            raise
    parent, base = os.path.split(os.path.abspath(path))
    old = os.path.join(parent, f".{base}.{uuid.uuid4().hex}.old")
    os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------- loading


@dataclass
class SavedModel:
    """A loaded model folder: the model (eval mode, on its device) and what rebuilds its inputs."""

    path: str
    model: torch.nn.Module
    config: SavedConfig
    fields: dict  # name -> {type, source, tokens?, seqlen?}
    features: dict  # "user" / "item" -> {field: tensor indexed by internal id}
    manifest: dict
    _indexes: dict = field(default_factory=dict, repr=False)

    @property
    def uid_field(self):
        return self.manifest["fields"]["user_id"]

    @property
    def iid_field(self):
        return self.manifest["fields"]["item_id"]

    @property
    def duration_field(self):
        return self.manifest["fields"]["duration"]

    def token_index(self, name):
        """A pandas Index of field `name`'s tokens (position = internal id), built once."""
        if name not in self._indexes:
            self._indexes[name] = pd.Index(self.fields[name]["tokens"])
        return self._indexes[name]


def _read_manifest(path):
    manifest_file = os.path.join(path, MANIFEST)
    if not os.path.isdir(path):
        raise SavedModelError(f"model folder {path!r} does not exist")
    if not os.path.isfile(manifest_file):
        raise SavedModelError(
            f"{path!r} is not a saved model folder: it has no {MANIFEST} (save one with --save_model_dir=DIR)"
        )
    try:
        manifest = read_json(manifest_file)
    except ValueError as err:
        raise SavedModelError(f"{manifest_file}: not a valid manifest ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise SavedModelError(f"{manifest_file}: not a {FORMAT} manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise SavedModelError(
            f"{manifest_file}: format version {manifest.get('format_version')!r}; this recbole-lda reads version "
            f"{FORMAT_VERSION}"
        )
    if manifest.get("weights") not in WEIGHTS_FILES.values():
        raise SavedModelError(f"{manifest_file}: weights file must be one of {', '.join(WEIGHTS_FILES.values())}")
    try:
        check_model_name(str(manifest.get("model")))  # ours or a plug-in (loaded, and checked, by load)
    except UsageError as err:
        raise SavedModelError(f"{manifest_file}: {err}") from None
    files = manifest.get("files") or {}
    for name in (CONFIG_FILE, FIELDS_FILE, FEATURES_FILE, manifest["weights"]):
        file = os.path.join(path, name)
        if name not in files:
            raise SavedModelError(f"{manifest_file} does not list {name}")
        if not os.path.isfile(file):
            raise SavedModelError(f"model folder {path!r} lacks {name}")
        if os.path.getsize(file) != files[name].get("bytes") or _sha256(file) != files[name].get("sha256"):
            raise SavedModelError(
                f"{file} is not the file this model was saved with (size or SHA-256 differs from {MANIFEST}): "
                "the folder is damaged or mixes files of two saved models"
            )
    return manifest


def read_tensors(file):
    """The name -> tensor mapping in a weights file (`.safetensors`, or torch's format read with
    weights_only=True). Never unpickles: SavedModelError for a pickle in a safetensors file, a
    file torch's weights-only reader refuses, or content other than a flat mapping of tensors."""
    with open(file, "rb") as f:
        head = f.read(9)
    if file.endswith(".safetensors"):
        # safetensors: an 8-byte little-endian header length, then the JSON header
        size = os.path.getsize(file)
        header_fits = len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") <= size - 8
        if not header_fits and head.startswith(PICKLE_MAGIC):
            raise SavedModelError(f"{file} is a pickle (torch.save's format), not safetensors: refused, since loading "
                                  "a pickle can run any code")
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(file)
        except (SafetensorError, ValueError, OSError) as err:
            raise SavedModelError(f"{file} is not a valid safetensors file ({err})") from None
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 -- UnpicklingError, RuntimeError, ...: all mean refused
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SavedModelError(
            f"{file} holds objects other than tensors and was refused (it was not unpickled; torch's "
            f"weights-only reader says: {first})"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
        raise SavedModelError(f"{file} must hold a flat mapping of names to tensors (a state dict); refused")
    return state


def build_for_state(model_class, config, dataset, state):
    """The model with the modules of `state`, before loading it (see the module docstring)."""
    with torch.random.fork_rng(devices=[]):  # the caller's random state is left as it was
        torch.manual_seed(0)
        if hasattr(model_class, "from_saved"):
            return model_class.from_saved(config, dataset, state)
        model = model_class(config, dataset)
    for name, saved in state.items():
        if name.startswith("backbone."):
            continue  # its sizes come from the id maps and the configuration: must match as they are
        owner_name, _, attr = name.rpartition(".")
        try:
            owner = model.get_submodule(owner_name) if owner_name else model
        except AttributeError:
            continue  # reported by load_state_dict
        buffer, param = owner._buffers.get(attr), owner._parameters.get(attr)
        if buffer is not None and buffer.shape != saved.shape:
            owner._buffers[attr] = torch.empty_like(saved)
        elif param is not None and param.shape != saved.shape:
            owner._parameters[attr] = torch.nn.Parameter(torch.empty_like(saved), requires_grad=param.requires_grad)
    return model


def load(path, device="cpu"):
    """Load the saved model in folder `path` onto `device`; a SavedModel (model in eval mode)."""
    path = os.fspath(path)
    manifest = _read_manifest(path)
    config = SavedConfig(read_json(os.path.join(path, CONFIG_FILE)))
    fields = read_json(os.path.join(path, FIELDS_FILE))
    if config.get("model") != manifest["model"] or config.get("dataset") != manifest["dataset"]:
        raise SavedModelError(
            f"{path}: {CONFIG_FILE} is of {config.get('model')} on {config.get('dataset')} but {MANIFEST} of "
            f"{manifest['model']} on {manifest['dataset']}: the folder mixes two saved models"
        )
    state = read_tensors(os.path.join(path, manifest["weights"]))
    features = {"user": {}, "item": {}}
    for key, tensor in read_tensors(os.path.join(path, FEATURES_FILE)).items():
        kind, _, name = key.partition(".")
        if kind in features:
            features[kind][name] = tensor

    names = manifest["fields"]
    for name, entry in fields.items():
        weight = state.get(f"backbone.embeddings.{name}.weight", state.get(f"backbone.seq_embeddings.{name}.weight"))
        if weight is not None and "tokens" in entry and weight.shape[0] != len(entry["tokens"]):
            raise SavedModelError(
                f"{path}: the weights embed {weight.shape[0]} ids of field {name!r} but {FIELDS_FILE} maps "
                f"{len(entry['tokens'])}: the folder mixes two saved models"
            )
    config["device"] = torch.device(device)
    dataset = StandInDataset(fields, names["user_id"], names["item_id"], names["label"], names["duration"])
    model_class = get_model(manifest["model"])
    try:
        model = build_for_state(model_class, config, dataset, state)
        model.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError, ValueError) as err:
        raise SavedModelError(
            f"{path}: the weights do not fit a {manifest['model']} built from its configuration "
            f"(the folder mixes files of different models or settings): {' '.join(str(err).split())[:600]}"
        ) from None
    model.to(config["device"]).eval()
    features = {k: {n: t.to(config["device"]) for n, t in v.items()} for k, v in features.items()}
    return SavedModel(path, model, config, fields, features, manifest)
