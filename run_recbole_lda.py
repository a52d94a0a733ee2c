"""Train and evaluate one watch-time model on one dataset.

    python run_recbole_lda.py --model=LDA --dataset=synthetic [--key=value ...] [--debug]

The same as the `recbole-lda` command (recbole_lda/cli/__init__.py); --help lists the useful keys.
"""

from recbole_lda.cli import run_main

if __name__ == "__main__":
    run_main()
