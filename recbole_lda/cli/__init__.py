"""The command-line tools: each command's argument parsing and `main` (one module each), the
console scripts of pyproject.toml, and `python -m recbole_lda COMMAND [...]`.

A command parses and checks its arguments, then hands over to the library; heavy imports
(torch, RecBole, Ray) come after the checks. `recbole_lda.utils.errors.guarded` reports a
failure in one line. No library module imports this package.
"""

import importlib

from recbole_lda.utils.errors import UsageError, did_you_mean, guarded

# command -> (module of recbole_lda.cli, one line of help)
COMMANDS = {
    "run": ("run", "train and evaluate one model on one dataset (the same as run_recbole_lda.py)"),
    "compare": ("compare", "models at fixed settings over seeds, and a table"),
    "tune": ("tune", "tune every method on Ray Tune, final runs over seeds, the leaderboard"),
    "leaderboard": ("leaderboard", "rebuild the leaderboard of a tuning folder"),
    "curves": ("curves", "learning curves of compare folders"),
    "predict": ("predict", "score rows with a saved model"),
    "download": ("download", "fetch and unpack a public dataset's raw files"),
    "evaluate": ("evaluate", "every metric of predictions files, exact, in one process or over Ray"),
    "prepare": ("prepare", "convert and split a dataset without training; print the prepared folder"),
}

USAGE = "usage: python -m recbole_lda COMMAND [--key=value ...] [--debug]\n\ncommands:\n" + "\n".join(
    f"  {name:<12} {text}" for name, (_, text) in COMMANDS.items()
) + "\n\n`python -m recbole_lda COMMAND --help` shows a command's options."


def command_main(name):
    """The `main(argv)` of a command (its module is imported only now)."""
    return importlib.import_module(f"recbole_lda.cli.{COMMANDS[name][0]}").main


def dispatch(argv):
    """`python -m recbole_lda COMMAND ARGS...`."""
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        raise UsageError(f"unknown command {name!r}{did_you_mean(name, COMMANDS)} (commands: {', '.join(COMMANDS)})")
    return command_main(name)(rest)


def main(argv=None):
    return guarded(dispatch, argv)


# Console scripts (pyproject.toml): recbole-lda, recbole-lda-compare, ...
def run_main(argv=None):
    return guarded(command_main("run"), argv)


def compare_main(argv=None):
    return guarded(command_main("compare"), argv)


def tune_main(argv=None):
    return guarded(command_main("tune"), argv)


def leaderboard_main(argv=None):
    return guarded(command_main("leaderboard"), argv)


def predict_main(argv=None):
    return guarded(command_main("predict"), argv)


def curves_main(argv=None):
    return guarded(command_main("curves"), argv)


def download_main(argv=None):
    return guarded(command_main("download"), argv)


def evaluate_main(argv=None):
    return guarded(command_main("evaluate"), argv)


def prepare_main(argv=None):
    return guarded(command_main("prepare"), argv)
