"""Entries: a model or dataset named with overrides, as compare, tune and the leaderboard
take them: `LDA[lambda_ot=0;temperature=0.5]`, several separated by commas
(`VR,LDA[lambda_ot=0]`); and the label of one run of an entry.
"""

import re

from recbole_lda.config.options import OptionError, parse_key_values, parse_value


def parse_entry(entry):
    """`LDA[lambda_ot=0;temperature=0.5]` -> ("LDA", {"lambda_ot": "0", "temperature": "0.5"})."""
    match = re.fullmatch(r"\s*([\w.:-]+)\s*(?:\[(.*)\])?\s*", entry)  # NAME or package.module:Class
    if not match:
        raise OptionError(f"bad entry {entry!r}: expected NAME or NAME[key=value;...]")
    pairs = ["--" + "=".join(part.strip() for part in pair.split("=", 1)) for pair in (match.group(2) or "").split(";")
             if pair.strip()]
    return match.group(1), parse_key_values(pairs, what=f"override in {entry!r}")


def split_entries(text):
    """Split on commas outside brackets (brackets may nest: `d[split_dates=[1,2]],e`)."""
    entries, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            entries.append(current)
            current = ""
        else:
            current += char
    return [e.strip() for e in entries + [current] if e.strip()]


def _canonical(value):
    """A hashable form of a parsed value in which equal values are equal (1 and 1.0 too)."""
    if isinstance(value, bool) or value is None:
        return ("const", repr(value))  # tagged: True == 1 in Python, not here
    if isinstance(value, (int, float)):
        return ("number", float(value))
    if isinstance(value, (list, tuple)):
        return ("list", tuple(_canonical(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple(sorted((str(k), _canonical(v)) for k, v in value.items())))
    return ("text", str(value))


def entry_key(entry):
    """What an entry means, whatever its spelling: (name, sorted (key, value) pairs), values
    parsed as literals (`LDA[b=2; a=1.0]` and `LDA[a=1;b=2]` are one entry)."""
    name, overrides = parse_entry(entry)
    return name, tuple(sorted((k, _canonical(parse_value(v))) for k, v in overrides.items()))


def check_unique(entries, option, by_name=False):
    """OptionError naming the entries of `option` (e.g. '--models') that are listed twice,
    after normalising the `NAME[k=v;...]` form; `by_name`: two entries with the same name are
    one too (datasets: rows and run files are labelled by the name alone). Also refuses two
    entries whose run files would have the same name."""
    if not entries:
        raise OptionError(f"{option}: no entry given; expected comma-separated NAME or NAME[key=value;...]")
    seen, labels = {}, {}
    for entry in entries:
        key = parse_entry(entry)[0] if by_name else entry_key(entry)
        if key in seen:
            same = "name" if by_name else "entry"
            raise OptionError(f"{option} lists the same {same} twice ({seen[key]!r} and {entry!r}): list each once "
                              "(a run is counted once per seed; --seeds sets how many)")
        seen[key] = entry
        label = run_label(entry, "", "")
        if label in labels:
            raise OptionError(f"{option}: {labels[label]!r} and {entry!r} would share run files ({label}...); "
                              "write one of them differently")
        labels[label] = entry


def find_entry(entry, entries):
    """The entry of `entries` that means the same as `entry` (see entry_key), or None."""
    key = entry_key(entry)
    return next((e for e in entries if entry_key(e) == key), None)


def run_label(entry, dataset, seed):
    return re.sub(r"[^\w.=-]+", "_", f"{entry.strip()}__{dataset}__seed{seed}")
