"""`leaderboard`: the leaderboard of a tuning output folder, from its stored results alone.

    python -m recbole_lda leaderboard --output_dir=DIR [--proposed=LDA] [--xauc=xauc]
    (the same as python -m recbole_lda tune --leaderboard_only --output_dir=DIR)

What it reads and writes: `recbole_lda.report.leaderboard`.
"""

import argparse
import os

from recbole_lda.report import leaderboard as report_leaderboard
from recbole_lda.report.leaderboard import XAUC_CONVENTIONS, build

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__ + report_leaderboard.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--output_dir", required=True, help="a tuning output folder (python -m recbole_lda.tuning.tune)")
    parser.add_argument("--proposed", default=None, help="the method compared with the best baseline")
    parser.add_argument("--xauc", default="xauc", choices=list(XAUC_CONVENTIONS),
                        help="the XAUC convention shown (default: ours)")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.output_dir):
        raise FileNotFoundError(f"--output_dir={args.output_dir}: no such folder")
    print(build(args.output_dir, proposed=args.proposed, xauc=args.xauc).markdown)
