"""`tune`: tune every method with the same budget, re-run each best configuration over
seeds, and build the leaderboard (methods x datasets, test MAE and XAUC), the way the
paper's table is made. Runs on this machine or on an existing Ray cluster, unchanged.

    python -m recbole_lda tune --models=VR,WLR,D2Q,OR,CWM,TPM,LDA --datasets=synthetic,kuairand \
        --num_samples=8 --seeds=3 --output_dir=results/tune \
        --raw_data_path.kuairand=../shared/data/kuairand-27k-subset \
        --split.kuairand=time --split_dates.kuairand=[20220416,20220417]

    python -m recbole_lda tune --leaderboard_only --output_dir=results/tune
"""

import argparse
import logging
import sys

from recbole_lda.cli.leaderboard import print_warnings
from recbole_lda.config.entries import check_unique, find_entry, split_entries
from recbole_lda.config.options import OptionError
from recbole_lda.tuning import tune as tuning
from recbole_lda.tuning.studies import SPACE_DIR
from recbole_lda.utils.errors import UnknownNameError, did_you_mean


def parser():
    p = argparse.ArgumentParser(prog="python -m recbole_lda tune", description=__doc__ + tuning.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)  # --seed=N is a config key, not --seeds
    p.add_argument("--models", help="comma-separated methods: NAME or NAME[key=value;...]")
    p.add_argument("--datasets", default="synthetic", help="comma-separated datasets: NAME or NAME[key=value;...]")
    p.add_argument("--num_samples", type=int, help="trials per method and dataset (the same for every method)")
    p.add_argument("--seeds", type=int, default=3, help="final runs of each best configuration: seeds 0..S-1")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--config_files", default="", help="space-separated YAML files for every run")
    p.add_argument("--ray_address", default=None, help="HOST:PORT of a running Ray cluster; default: start one here")
    p.add_argument("--num_cpus", type=int, default=None, help="CPUs of the local Ray instance (default: all cores)")
    p.add_argument("--num_gpus", type=int, default=None, help="GPUs of the local Ray instance (default: detected)")
    p.add_argument("--cpus_per_trial", type=int, default=1, help="CPUs per trial and final run (= torch_num_threads)")
    p.add_argument("--gpus_per_trial", type=float, default=0, help="GPUs per trial and final run")
    p.add_argument("--scheduler", choices=("asha", "fifo"), default="asha")
    p.add_argument("--grace_period", type=int, default=None, help="ASHA: epochs before a trial can be stopped, for "
                   "every dataset (--grace_period.DATASET=N: one); default: properties/tune/harness.yaml")
    p.add_argument("--reduction_factor", type=int, default=None, help="ASHA: keep about 1/this of trials per rung "
                   "(--reduction_factor.DATASET=N: one dataset); default: properties/tune/harness.yaml")
    p.add_argument("--search_seed", type=int, default=0, help="seed of the random search")
    p.add_argument("--max_failures", type=int, default=2, help="retries of a trial or final run whose worker fails")
    p.add_argument("--search_spaces", default=SPACE_DIR, help="folder of <MODEL>.yaml search spaces and overall.yaml")
    p.add_argument("--proposed", default=None,
                   help="the method compared with the best baseline in the leaderboard (default: LDA, or the stored one)")
    p.add_argument("--leaderboard_only", action="store_true", help="rebuild the leaderboard from OUTPUT_DIR; no training")
    p.add_argument("--strict", action="store_true",
                   help="the leaderboard refuses an expected entry without a complete usable result (default: a warning)")
    p.add_argument("--xauc", default="xauc",
                   help="the XAUC convention the leaderboard shows: xauc (ours), xauc_dadf, xauc_cwm or xauc_blocks")
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    p = parser()
    args, rest = p.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    from recbole_lda.report import leaderboard

    if args.xauc not in leaderboard.XAUC_CONVENTIONS:  # before any tuning
        p.error(f"--xauc={args.xauc}: expected one of {', '.join(leaderboard.XAUC_CONVENTIONS)}")
    if args.leaderboard_only:
        if rest:
            p.error(f"--leaderboard_only takes no run keys, got {rest}")
        board = leaderboard.build(args.output_dir, proposed=args.proposed, xauc=args.xauc, strict=args.strict)
        print_warnings(board)
        print(board.markdown)
        return 0
    if args.models is None or args.num_samples is None:
        p.error("--models and --num_samples are required (or --leaderboard_only)")
    for key in ("num_samples", "seeds", "cpus_per_trial"):
        if getattr(args, key) < 1:
            raise OptionError(f"--{key}={getattr(args, key)}: expected an integer >= 1")
    models = split_entries(args.models)
    check_unique(models, "--models")
    check_unique(split_entries(args.datasets), "--datasets", by_name=True)
    if args.proposed is not None and find_entry(args.proposed, models) is None:
        raise UnknownNameError(f"--proposed={args.proposed}: not an entry of --models"
                               f"{did_you_mean(args.proposed, models)} (models: {', '.join(models)})")
    return tuning.tune(args, rest, argv)
