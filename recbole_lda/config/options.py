"""Options of a run: `--key=value` parsing, the declared type of every key, and the checks
that refuse a misspelt key or a bad value before any work starts.

Every key of ours is declared in a YAML file under `recbole_lda/properties` (shipped with the
package; the `properties/` folder of the checkout) with a comment `# (type[, range]) meaning`:

    epochs: 30          # (int, >= 1) Maximum training epochs.
    learning_rate: 0.001  # (float, > 0) Learning rate.
    split: random       # (str: random|time) ...
    min_duration: ~     # (float, >= 0) ...; ~ = no bound.

Types: int, float (ints accepted), bool, str, list, dict. A range is one or more of
`>= x`, `> x`, `<= x`, `< x`; `str: a|b|c` lists the allowed values. `~` (None) is allowed
exactly where one of our YAML files has it as the default or its comment says what `~ =` means. Keys that only RecBole defines
(e.g. `gpu_id`, `state`) are known but checked by RecBole itself.
"""

import ast
import os
import re
from dataclasses import dataclass, field
from importlib import resources

import yaml

from recbole_lda.utils.errors import UnknownNameError, UsageError, did_you_mean


class OptionError(UsageError):
    """A usage error in the options of a run: unknown key, bad type or value."""


def properties_dir():
    """The folder of our YAML defaults, inside the installed package (never a checkout path)."""
    path = resources.files("recbole_lda.properties")
    return os.fspath(path)


def parse_key_values(args, what="argument"):
    """`--key=value` arguments -> {key: value (str)}; OptionError on anything else or on a
    key given twice with different values."""
    out = {}
    for arg in args:
        key, sep, value = arg[2:].partition("=")
        if not arg.startswith("--") or not sep or not key:
            raise OptionError(f"unrecognised {what} {arg!r}: expected --key=value")
        if key in out and out[key] != value:
            raise OptionError(f"--{key} given twice with different values ({out[key]!r}, {value!r})")
        out[key] = value
    return out


def parse_value(text):
    """A command-line or override value as a Python value, without running it.

    RecBole's Config turns every command-line value into Python with `eval()`, so that
    `--learning_rate="__import__('os').system(...)"` runs code. Here a value is a Python
    literal (`ast.literal_eval`: numbers, strings, lists, dicts, True/False/None), else a
    YAML scalar (`true`, `~`, `null`), else the text itself; nothing is evaluated. Types
    are then checked against the declared ones (recbole_lda.config.options)."""
    if not isinstance(text, str):
        return text
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if value is None or isinstance(value, (bool, int, float)) else text


_LINE = re.compile(r"^(?P<key>[A-Za-z_]\w*):(?P<value>[^#\n]*)#\s*\((?P<spec>[^)]*)\)")
_BOUND = re.compile(r"^(>=|>|<=|<)\s*(-?[\d.]+(?:e-?\d+)?)$")
_TYPES = {"int": int, "float": float, "bool": bool, "str": str, "list": list, "dict": dict}


@dataclass
class Spec:
    """The declared type of one key (see the module docstring)."""

    type: str
    bounds: list = field(default_factory=list)  # [(op, number)]
    choices: tuple = ()
    nullable: bool = False
    source: str = ""

    def problem(self, value):
        """None if `value` fits, else what is expected (a phrase)."""
        if value is None:
            return None if self.nullable else f"a {self.type} (this key cannot be ~/None)"
        if self.type == "float":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif self.type == "list":
            ok = isinstance(value, (list, tuple))
        else:
            ok = isinstance(value, _TYPES[self.type]) and not (self.type == "int" and isinstance(value, bool))
        if not ok:
            return {"int": "an integer", "float": "a number", "bool": "True or False"}.get(self.type, f"a {self.type}")
        if self.choices and value not in self.choices:
            return f"one of {', '.join(self.choices)}"
        for op, bound in self.bounds:
            if not {">=": value >= bound, ">": value > bound, "<=": value <= bound, "<": value < bound}[op]:
                name = {"int": "an integer", "float": "a number"}[self.type]
                return f"{name} {' and '.join(f'{o} {b:g}' for o, b in self.bounds)}"
        return None


def _parse_spec(spec, default_is_null, source):
    parts = [p.strip() for p in spec.split(",")]
    head, _, choices = parts[0].partition(":")
    head = head.strip()
    if head not in _TYPES:
        return None  # a comment in parentheses, not a type declaration
    bounds = []
    for part in parts[1:]:
        m = _BOUND.match(part)
        if not m:
            raise ValueError(f"{source}: bad range {part!r} in ({spec})")
        bounds.append((m.group(1), float(m.group(2))))
    choice_list = tuple(c.strip() for c in choices.split("|") if c.strip())
    return Spec(head, bounds, choice_list, default_is_null, source)


def read_specs(path):
    """{key: Spec} of the top-level keys declared in one YAML file of ours."""
    specs = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = _LINE.match(line)
            if m:
                nullable = m.group("value").strip() in ("~", "null") or "~ =" in line[m.end():]
                spec = _parse_spec(m.group("spec"), nullable, path)
                if spec is not None:
                    specs[m.group("key")] = spec
    return specs


def yaml_files(sub):
    """Our YAML files in properties/<sub>/ by name (without .yaml)."""
    folder = os.path.join(properties_dir(), sub)
    return {f[: -len(".yaml")]: os.path.join(folder, f) for f in sorted(os.listdir(folder)) if f.endswith(".yaml")}


def merged_specs(paths):
    """{key: Spec} over several files: the last declaration wins, but a key is nullable
    when any of them has ~ as its default (e.g. off in one dataset, set in another)."""
    specs = {}
    for path in paths:
        for key, spec in read_specs(path).items():
            if key in specs:
                spec.nullable = spec.nullable or specs[key].nullable
            specs[key] = spec
    return specs


def check_values(values, specs, where):
    """OptionError for the first value that does not fit its declared type.

    Args:
        values (dict): key -> parsed value.
        specs (dict): key -> Spec (keys without a spec are not checked here).
        where (callable): key -> how the key was given, for the message (e.g. "--epochs").
    """
    for key, value in values.items():
        spec = specs.get(key)
        problem = spec.problem(value) if spec else None
        if problem:
            raise OptionError(f"{where(key)}={value!r}: expected {problem}")


def check_known(keys, known, where, prefix=""):
    """OptionError for the first key that no YAML (ours or RecBole's) defines; `where(key)`
    says how the key was given, `prefix` goes before suggested keys (e.g. '--')."""
    for key in keys:
        if key not in known:
            raise OptionError(f"unknown option {where(key)}{did_you_mean(key, known, prefix)}")


__all__ = [
    "OptionError", "UnknownNameError", "Spec", "check_known", "check_values", "merged_specs", "parse_key_values",
    "properties_dir", "read_specs", "yaml_files",
]
