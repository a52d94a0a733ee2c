"""The command-line tools (console scripts of pyproject.toml): each parses its arguments
and hands over to the library; `recbole_lda.errors.guarded` reports failures in one line.
No library module imports this one."""

import sys

from recbole_lda.errors import guarded
from recbole_lda.options import OptionError, parse_key_values

RUN_USAGE = """usage: recbole-lda --model=NAME --dataset=NAME [--key=value ...] [--debug]
       (or: python run_recbole_lda.py ...)

Train and evaluate one watch-time model on one dataset. Every --key=value overrides a
configuration key (defaults: recbole_lda/properties, the repository's properties/). Useful
keys: --raw_data_path=DIR, --results_file=PATH (JSON), --predictions_file=PATH (CSV),
--config_files="a.yaml b.yaml", --epochs=N, --seed=N, --keep_checkpoint=True.
Unknown keys and bad values are refused before any work. --debug shows tracebacks."""


def _run(argv):
    if any(a in ("-h", "--help") for a in argv):
        print(RUN_USAGE)
        return
    overrides = parse_key_values(argv)
    for required in ("model", "dataset"):
        if required not in overrides:
            raise OptionError(f"--{required}=NAME is required\n{RUN_USAGE}")
    from recbole_lda.quick_start import run  # heavy imports after the argument checks

    config_files = overrides.pop("config_files", "").split() or None
    run(overrides.pop("model"), overrides.pop("dataset"), config_file_list=config_files, cmd_overrides=overrides)


def run_main(argv=None):
    guarded(_run, argv)


def compare_main(argv=None):
    from recbole_lda import compare

    guarded(compare.main, argv)


def tune_main(argv=None):
    from recbole_lda import tune

    guarded(tune.main, argv)


def leaderboard_main(argv=None):
    from recbole_lda import leaderboard

    guarded(leaderboard.main, argv)


def predict_main(argv=None):
    from recbole_lda import predict

    guarded(predict.main, argv)


def curves_main(argv=None):
    from recbole_lda import curves

    guarded(curves.main, argv)


def download_main(argv=None):
    from dataset_prep import download

    guarded(download.main, argv)


if __name__ == "__main__":
    sys.exit(run_main())
