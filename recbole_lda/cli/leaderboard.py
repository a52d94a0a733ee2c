"""`leaderboard`: the leaderboard of a tuning output folder, from its stored results alone.

    python -m recbole_lda leaderboard --output_dir=DIR [--proposed=LDA] [--xauc=xauc]
    (the same as python -m recbole_lda tune --leaderboard_only --output_dir=DIR)

What it reads and writes: `recbole_lda.report.leaderboard`.
"""

import argparse
import os
import sys

from recbole_lda.report import leaderboard as report_leaderboard
from recbole_lda.report.leaderboard import XAUC_CONVENTIONS, build


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__ + report_leaderboard.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--output_dir", required=True, help="a tuning output folder (python -m recbole_lda.tuning.tune)")
    parser.add_argument("--proposed", default=None, help="the method compared with the best baseline")
    parser.add_argument("--xauc", default="xauc", choices=list(XAUC_CONVENTIONS),
                        help="the XAUC convention shown (default: ours)")
    parser.add_argument("--strict", action="store_true",
                        help="an expected entry without a complete usable result is an error (default: a warning and a note)")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.output_dir):
        raise FileNotFoundError(f"--output_dir={args.output_dir}: no such folder")
    board = build(args.output_dir, proposed=args.proposed, xauc=args.xauc, strict=args.strict)
    print_warnings(board)
    print(board.markdown)


def print_warnings(board):
    """One line `warning: ...` on stderr per missing or partial result and per file left out."""
    for line in [*board.problems, *board.warnings]:
        print(f"warning: {line}", file=sys.stderr)
