"""Entries: a model or dataset named with overrides, as compare, tune and the leaderboard
take them: `LDA[lambda_ot=0;temperature=0.5]`, several separated by commas
(`VR,LDA[lambda_ot=0]`); and the label of one run of an entry.
"""

import re

from recbole_lda.config.options import OptionError, parse_key_values


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


def run_label(entry, dataset, seed):
    return re.sub(r"[^\w.=-]+", "_", f"{entry.strip()}__{dataset}__seed{seed}")
