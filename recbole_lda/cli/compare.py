"""`compare`: models at fixed settings over several seeds, and a table.

    python -m recbole_lda compare --models="VR,VR[regression_loss=l1],LDA,LDA[lambda_ot=0]" \
        --datasets="synthetic,kuairand[raw_data_path=DIR;split=time;split_dates=[20220416,20220417]]" \
        --seeds=3 --output_dir=results/compare [--key=value ...]

A model entry is a model name, optionally with overrides in brackets (`;`-separated),
which makes ablations one more column; a dataset entry takes overrides the same way (list
each dataset once: rows are labelled by its name; an entry listed twice, however spelt, is
refused). Every run goes through `recbole_lda.quick_start.run` and writes its results JSON and
its log under OUTPUT_DIR/runs/. Trailing `--key=value` pairs apply to every run whose model
and dataset define the key (`--vq_steps=100` to LDA's runs only; a key that no run defines is
refused, like any misspelt key).

Runs already in OUTPUT_DIR/runs/ are reused, so an interrupted comparison resumes, but only
when each is the run this command would make: the same resolved configuration (every key
but those naming output files, the log or progress display), the same data (raw files,
options, split) and the same code (sha256 of the project's sources). All stored runs are
checked before any training; if one differs or cannot be read (a truncated file), the
command stops and names the file and the differing keys. Then pass --rerun to run those
again and replace them (the matching ones are still reused), or use a new --output_dir.
A summary never mixes runs of different settings. Written:
OUTPUT_DIR/summary.csv, summary.md (mean and std over seeds of test MAE, XAUC, XGAUC, and
the training time per epoch relative to VR's on the same dataset, and for LDA the mean
effective number of anchors exp(entropy of beta) on test; the mean best validation MAE,
the score early stopping and any choice of settings may use; with `--versus=ENTRY`
Welch's p-values of test MAE and XAUC against ENTRY's seeds; a single seed has no std: `n=1`)
and summary.json (the command, the code's sha256, each run's record and file).
With `--engine=ray` (and its keys: --num_workers, --ray_address, --streamed_data_path, ...) every
run trains on Ray Train workers (docs/scale.md, "Training on a cluster").
No tuning happens here: for tuned comparisons use `python -m recbole_lda tune`.
"""

import argparse
import sys

from recbole_lda.config.entries import check_unique, split_entries
from recbole_lda.config.options import OptionError, parse_key_values
from recbole_lda.utils.fileio import check_folder


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m recbole_lda compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("--models", required=True, help="comma-separated entries: NAME or NAME[key=value;...]")
    parser.add_argument("--datasets", default="synthetic")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..S-1 (model init and batch order)")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--versus", help="an entry of --models: add Welch's p-values of test MAE and XAUC against its seeds")
    parser.add_argument("--rerun", action="store_true",
                        help="run again, and replace, the stored runs that differ from this command or cannot be read")
    args, rest = parser.parse_known_args(argv)
    if args.seeds < 1:
        raise OptionError(f"--seeds={args.seeds}: expected an integer >= 1")
    common = parse_key_values(rest)
    models, datasets = split_entries(args.models), split_entries(args.datasets)
    check_unique(models, "--models")
    check_unique(datasets, "--datasets", by_name=True)
    try:
        check_folder(args.output_dir, "--output_dir")
    except ValueError as err:
        raise OptionError(str(err)) from None

    from recbole_lda import compat
    from recbole_lda.distributed import ray_train  # imports Ray only when a run with --engine=ray starts workers
    from recbole_lda.quick_start.compare import compare  # heavy imports after the argument checks
    from recbole_lda.report.tables import to_markdown

    compat.apply()
    table = compare(models, datasets, args.seeds, args.output_dir, common, versus=args.versus,
                    command=["python", "-m", "recbole_lda", "compare", *argv], rerun=args.rerun, engine=ray_train)
    print(to_markdown(table, args.versus))
