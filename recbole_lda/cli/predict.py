"""`predict`: score rows with a saved model (`recbole_lda.inference.predict`).

    python -m recbole_lda predict --model_dir=DIR --input=rows.csv --output=pred.csv [--key=value ...]
"""

import re
import sys

import torch

from recbole_lda.config.options import OptionError, parse_key_values
from recbole_lda.inference.predict import predict_file
from recbole_lda.utils.errors import did_you_mean

USAGE = """usage: python -m recbole_lda predict --model_dir=DIR --input=rows.csv --output=pred.csv [--key=value ...]
       (or: recbole-lda-predict ...)

Score rows with a model saved by a run with --save_model_dir=DIR. --output and --summary_file
are two different files, neither of them the input nor inside the model folder. Options:
  --chunk_rows=N          rows read and scored at a time (default 100000)
  --batch_size=N          rows per forward pass (default 8192)
  --device=cpu|cuda|cuda:N  where the model runs (default cpu)
  --keep_columns=A,B      carry these columns through although they are no field of the dataset
  --allow_all_unknown=True  score a file whose first 10 rows name no known user and no known video
  --summary_file=PATH     write the summary (rows, unknown ids) as JSON
  --torch_num_threads=N   torch CPU threads
  --show_progress=False   no progress bar (default: one on a terminal)
  --debug                 show tracebacks"""


OPTIONS = {  # key -> (parser, default)
    "model_dir": (str, None),
    "input": (str, None),
    "output": (str, None),
    "chunk_rows": (int, 100_000),
    "batch_size": (int, 8192),
    "device": (str, "cpu"),
    "keep_columns": (lambda v: tuple(c.strip() for c in v.split(",") if c.strip()), ()),
    "allow_all_unknown": (bool, False),
    "summary_file": (str, None),
    "torch_num_threads": (int, None),
    "show_progress": (bool, None),
}


def _count(n, word):
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _summary_line(summary):
    return (
        f"{_count(summary['rows'], 'row')} scored with {summary['model']} (dataset {summary['dataset']}) in "
        f"{summary['total_s']:.1f} s; unknown users: {_count(summary['unknown_users'], 'row')} "
        f"({_count(summary['unknown_user_ids'], 'id')}), unknown videos: {_count(summary['unknown_items'], 'row')} "
        f"({_count(summary['unknown_item_ids'], 'id')})"
        + "".join(f", unknown {k}: {_count(v, 'row')}" for k, v in summary["unknown_tokens"].items() if v)
        + "".join(f"; not scored ({rule}): {_count(n, 'row')}" for rule, n in summary.get("rows_not_scored", {}).items())
        + f"; written to {summary['output']}"
    )


def _parse_bool(key, value):
    if value in ("True", "true", "1"):
        return True
    if value in ("False", "false", "0"):
        return False
    raise OptionError(f"--{key}={value!r}: expected True or False")


def parse_options(argv):
    """`--key=value` arguments -> the options of `predict_file` (OptionError on a bad one)."""
    given = parse_key_values(argv)
    options = {}
    for key, value in given.items():
        if key not in OPTIONS:
            raise OptionError(f"unknown option --{key}{did_you_mean(key, OPTIONS, '--')}\n{USAGE}")
        kind = OPTIONS[key][0]
        if kind is bool:
            options[key] = _parse_bool(key, value)
        elif kind is int:
            try:
                options[key] = int(value)
            except ValueError:
                raise OptionError(f"--{key}={value!r}: expected an integer") from None
            if options[key] < 1:
                raise OptionError(f"--{key}={value!r}: expected an integer >= 1")
        else:
            options[key] = kind(value)
    for key in ("model_dir", "input", "output"):
        if not options.get(key):
            raise OptionError(f"--{key}=... is required (--help shows the options)")
    if "device" in options:
        check_device(options["device"])
    return {key: options.get(key, default) for key, (_, default) in OPTIONS.items()}


def check_device(device):
    """OptionError unless `device` is cpu, or cuda / cuda:N with that GPU visible to this torch."""
    match = re.fullmatch(r"cuda(?::(\d+))?", device)
    if device == "cpu":
        return
    if not match:
        raise OptionError(f"--device={device}: expected cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        build = "a CPU-only torch build" if torch.version.cuda is None else "no visible GPU"
        raise OptionError(f"--device={device}: no CUDA device here ({build}, torch {torch.__version__}); "
                          "use --device=cpu (the default)")
    if match.group(1) is not None and int(match.group(1)) >= torch.cuda.device_count():
        raise OptionError(f"--device={device}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                          f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(USAGE)
        return
    options = parse_options(argv)
    threads = options.pop("torch_num_threads")
    if threads:
        torch.set_num_threads(threads)
    summary = predict_file(**options)
    print(_summary_line(summary))
