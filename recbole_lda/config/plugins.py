"""Models from other packages: plug-ins found through the entry-point group
`recbole_lda.models` (name -> `module:Class`), or named directly as `--model=package.module:Class`,
and the checks that a class keeps the contract of `recbole_lda.model.WatchTimeRecommender`.

A plug-in is found without being imported: only the plug-in a run names is loaded, so one
that fails to import is named in that run's error and never breaks the others. A plug-in
whose name is also one of ours is refused (the run could not say which model it trained).

A plug-in model's files sit beside its module, named after its class:

    mypkg/lognormal.py          class LogNormal(WatchTimeRecommender)
    mypkg/LogNormal.yaml        its keys and defaults, each with a `# (type, range) meaning` comment
    mypkg/LogNormal.tune.yaml   its search space for `tune` (the format of properties/tune/)
"""

import importlib
import inspect
import os
import re
from importlib.metadata import entry_points

from recbole_lda.config.options import read_specs
from recbole_lda.utils.errors import UsageError

ENTRY_POINT_GROUP = "recbole_lda.models"

# `package.module:Class` (dotted module, one class name).
_SPEC = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
_TOP_KEY = re.compile(r"^(?P<key>[A-Za-z_]\w*):")


class PluginError(UsageError):
    """A plug-in model that cannot be used: not found, failed to load, or breaks the contract."""


def is_class_spec(name):
    """True for `package.module:Class`."""
    return bool(_SPEC.match(name))


def installed():
    """{name: [entry point, ...]} of the installed plug-in models (none is imported here)."""
    found = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if all(ep.value != other.value for other in found.get(ep.name, [])):  # the same one on two paths
            found.setdefault(ep.name, []).append(ep)
    return found


def _origin(ep):
    dist = getattr(ep, "dist", None)
    return f"entry point {ep.name} = {ep.value}" + (f" of {dist.name}" if dist is not None else "")


def load_entry_point(name, eps, ours):
    """The class of the plug-in `name` (its entry points `eps`); PluginError naming it otherwise."""
    if name in ours:
        raise PluginError(
            f"model name {name!r} is both ours ({ours[name]}) and a plug-in ({'; '.join(map(_origin, eps))}): "
            f"refused; rename the plug-in's entry point"
        )
    if len(eps) > 1:
        raise PluginError(f"model name {name!r} is given by several plug-ins ({'; '.join(map(_origin, eps))}): refused")
    try:
        cls = eps[0].load()
    except Exception as err:  # noqa: BLE001 -- any failure of someone else's import is reported, with its cause
        raise PluginError(f"plug-in model {name!r} ({_origin(eps[0])}) failed to load: {type(err).__name__}: {err}") \
            from None
    return check_contract(cls, name)


def load_class_spec(spec):
    """The class named by `package.module:Class`; PluginError if it cannot be imported."""
    module_name, _, class_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # noqa: BLE001 -- as above
        raise PluginError(f"model {spec!r}: module {module_name!r} failed to import: {type(err).__name__}: {err}") \
            from None
    if not hasattr(module, class_name):
        raise PluginError(f"model {spec!r}: module {module_name} ({module.__file__}) has no {class_name!r}")
    return check_contract(getattr(module, class_name), spec)


def files_of(cls):
    """(defaults YAML, search-space YAML) of a plug-in class: beside its module, named after it."""
    folder = os.path.dirname(os.path.abspath(inspect.getfile(cls)))
    return os.path.join(folder, f"{cls.__name__}.yaml"), os.path.join(folder, f"{cls.__name__}.tune.yaml")


def check_contract(cls, name):
    """`cls` if it is a usable watch-time model; else PluginError saying what is missing."""
    from recbole.model.abstract_recommender import AbstractRecommender

    from recbole_lda.model import WatchTimeRecommender

    what = f"model {name!r}"
    if not (inspect.isclass(cls) and issubclass(cls, WatchTimeRecommender)):
        raise PluginError(f"{what}: {cls!r} is not a subclass of recbole_lda.model.WatchTimeRecommender")
    missing = [m for m in ("calculate_loss", "predict") if getattr(cls, m) is getattr(AbstractRecommender, m)]
    if missing:
        raise PluginError(f"{what}: class {cls.__name__} does not define {' and '.join(missing)} "
                          f"(see recbole_lda.model.WatchTimeRecommender)")
    try:
        inspect.signature(cls).bind("config", "dataset")
    except TypeError:
        raise PluginError(f"{what}: {cls.__name__}(config, dataset) must build the model "
                          f"(its signature is {inspect.signature(cls)})") from None
    if not (isinstance(cls.loss_names, tuple) and cls.loss_names and all(isinstance(n, str) for n in cls.loss_names)):
        raise PluginError(f"{what}: {cls.__name__}.loss_names must be a non-empty tuple of names")
    check_defaults_file(files_of(cls)[0], what)
    return cls


def check_defaults_file(path, what):
    """The plug-in's YAML of defaults exists and declares every key's type (as ours do)."""
    if not os.path.isfile(path):
        raise PluginError(f"{what}: its defaults file {path} is missing (one `key: value  # (type, range) meaning` "
                          f"line per key of the model; an empty file if it has none)")
    specs = read_specs(path)
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            match = _TOP_KEY.match(line)
            if match and match.group("key") not in specs:
                raise PluginError(f"{what}: {path}, line {number}: key {match.group('key')!r} has no "
                                  f"`# (type[, range]) meaning` comment")
