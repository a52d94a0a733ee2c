"""Train and evaluate one watch-time model on one dataset.

    python run_recbole_lda.py --model=LDA --dataset=synthetic [--key=value ...]

Every `--key=value` overrides a configuration key (RecBole's convention; defaults in
properties/). Useful keys: --raw_data_path=DIR, --results_file=PATH (JSON),
--predictions_file=PATH (CSV), --config_files="a.yaml b.yaml", --epochs=N, --seed=N.
"""

import sys

USAGE = __doc__


def parse_args(argv):
    """`--key=value` pairs as a dict of strings; anything else is an error."""
    overrides = {}
    for arg in argv:
        if arg in ("-h", "--help"):
            print(USAGE)
            sys.exit(0)
        key, sep, value = arg[2:].partition("=")
        if not arg.startswith("--") or not sep or not key:
            sys.exit(f"error: expected --key=value, got {arg!r}\n{USAGE}")
        if key in overrides and overrides[key] != value:
            sys.exit(f"error: --{key} given twice with different values")
        overrides[key] = value
    for required in ("model", "dataset"):
        if required not in overrides:
            sys.exit(f"error: --{required}=NAME is required\n{USAGE}")
    return overrides


def main(argv=None):
    overrides = parse_args(sys.argv[1:] if argv is None else argv)
    from recbole_lda.quick_start import run  # heavy imports after argument checks

    config_files = overrides.pop("config_files", "").split() or None
    run(overrides.pop("model"), overrides.pop("dataset"), config_file_list=config_files, cmd_overrides=overrides)


if __name__ == "__main__":
    main()
