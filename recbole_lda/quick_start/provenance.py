"""Which code a run ran: a fingerprint of the project's Python sources, taken when this module
is first imported, and a check that they have not changed since.

A long command (compare, tune) runs many runs in one process. Python keeps the modules it
imported, but the YAML defaults are read again for every run: if someone edits the code
while such a command runs, its later runs would mix the old code with the new defaults, and
the results file would record settings the code never used (this happened: an LDA default
changed mid-comparison and three runs labelled with it ran the old model). So every run
checks, before any work, that the sources still match what this process imported, and
stops otherwise; its results file records the fingerprint (`environment.code_sha256`).
"""

import hashlib
from pathlib import Path

import baselines
import dataset_prep
import recbole_lda

PACKAGES = (recbole_lda, baselines, dataset_prep)


def source_files():
    """Every .py file of the project's packages, sorted (the installed copy or the checkout)."""
    files = []
    for package in PACKAGES:
        for folder in package.__path__:
            files.extend(Path(folder).rglob("*.py"))
    return sorted(set(files))


def fingerprint(files=None):
    """(sha256 over the files' paths and bytes, {path: sha256 of its bytes})."""
    total, per_file = hashlib.sha256(), {}
    for path in files if files is not None else source_files():
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        per_file[str(path)] = digest
        total.update(f"{path.name}\0{digest}\n".encode())
    return total.hexdigest(), per_file


_AT_IMPORT = fingerprint()


def code_sha256():
    return _AT_IMPORT[0]


def check_code_unchanged():
    """RuntimeError naming the changed files if the sources differ from those imported."""
    now, files = fingerprint()
    if now == _AT_IMPORT[0]:
        return
    before = _AT_IMPORT[1]
    changed = sorted(p for p in set(before) | set(files) if before.get(p) != files.get(p))
    shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
    raise RuntimeError(
        f"the project's code changed after this process started ({shown}): its runs would mix the code it "
        "imported with the current settings; start the command again (finished runs are reused)"
    )
