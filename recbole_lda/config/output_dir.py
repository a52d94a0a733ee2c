"""Where compare and tune keep their files inside an output folder: one place for every
path rule, so that the commands that write a folder and those that read it (leaderboard,
curves) agree.

    OUTPUT_DIR/runs/<ENTRY>__<DATASET>__seed<k>.json    one run's results (compare; tune's final runs)
    OUTPUT_DIR/tuning/<METHOD>__<DATASET>.json          a finished study (tune)
    OUTPUT_DIR/tuning/<METHOD>__<DATASET>.study.json    what a study searches, fixed keys, budget (tune)
    OUTPUT_DIR/ray/<METHOD>__<DATASET>/                 Ray Tune's experiment (tune)
    OUTPUT_DIR/progress.json, manifest.json             what runs now; the last command (tune)
"""

import os

from recbole_lda.config.entries import run_label

RUNS, TUNING, RAY = "runs", "tuning", "ray"
STUDY_SUFFIX = ".study.json"


def runs_dir(output_dir):
    return os.path.join(output_dir, RUNS)


def run_file(output_dir, entry, dataset, seed):
    """The results file of one run of `entry` on `dataset` with `seed`."""
    return os.path.join(output_dir, RUNS, run_label(entry, dataset, seed) + ".json")


def study_file(output_dir, label):
    """A finished study (`label`: METHOD__DATASET)."""
    return os.path.join(output_dir, TUNING, f"{label}.json")


def study_settings_file(output_dir, label):
    return os.path.join(output_dir, TUNING, f"{label}{STUDY_SUFFIX}")


def finished_study_files(output_dir):
    """Every finished study's file in the folder, sorted by name."""
    folder = os.path.join(output_dir, TUNING)
    names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    return [os.path.join(folder, n) for n in names if n.endswith(".json") and not n.endswith(STUDY_SUFFIX)]


def ray_dir(output_dir, label=None):
    """Ray Tune's storage folder, or one study's experiment in it."""
    return os.path.join(output_dir, RAY) if label is None else os.path.join(output_dir, RAY, label)


def progress_file(output_dir):
    return os.path.join(output_dir, "progress.json")


def manifest_file(output_dir):
    return os.path.join(output_dir, "manifest.json")
