"""`run`: train and evaluate one watch-time model on one dataset (`recbole_lda.quick_start.run`)."""

import sys

from recbole_lda.config.options import OptionError, parse_key_values

USAGE = """usage: recbole-lda --model=NAME --dataset=NAME [--key=value ...] [--debug]
       (or: python run_recbole_lda.py ..., python -m recbole_lda run ...)

Train and evaluate one watch-time model on one dataset. Every --key=value overrides a
configuration key (defaults: recbole_lda/properties, the repository's properties/). Useful
keys: --raw_data_path=DIR, --results_file=PATH (JSON), --predictions_file=PATH (CSV),
--config_files="a.yaml b.yaml", --epochs=N, --seed=N, --keep_checkpoint=True;
--engine=ray --num_workers=N [--ray_address=HOST:PORT] [--streamed_data_path=DIR]: data-parallel
training on Ray Train workers, each streaming its share of partitioned Parquet (docs/scale.md).
Unknown keys and bad values are refused before any work. --debug shows tracebacks."""


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(USAGE)
        return
    overrides = parse_key_values(argv)
    for required in ("model", "dataset"):
        if required not in overrides:
            raise OptionError(f"--{required}=NAME is required\n{USAGE}")
    from recbole_lda.distributed import ray_train  # imports Ray only when a run starts workers
    from recbole_lda.quick_start import run  # heavy imports after the argument checks

    config_files = overrides.pop("config_files", "").split() or None
    run(overrides.pop("model"), overrides.pop("dataset"), config_file_list=config_files, cmd_overrides=overrides,
        engine=ray_train)
