"""`evaluate`: score predictions files (`recbole_lda.evaluator.partitioned`), in one process or
over Ray tasks, exactly.

    python -m recbole_lda evaluate --input=FILE_OR_FOLDER [more files or folders] --output=metrics.json
        [--engine=ray --num_workers=N --ray_address=HOST:PORT]
"""

import math
import os
import sys
import time

import yaml

from recbole_lda.config.options import OptionError, check_values, parse_key_values, properties_dir, read_specs
from recbole_lda.utils.errors import did_you_mean
from recbole_lda.utils.fileio import check_distinct_paths, check_writable, write_json

USAGE = """usage: python -m recbole_lda evaluate --input=FILE_OR_FOLDER [more ...] --output=metrics.json [--key=value ...]
       (or: recbole-lda-evaluate ...)

Every metric of a run's test_result (mae, rmse, rows, xauc, xauc_dadf, xauc_cwm, xauc_blocks,
xgauc, xgauc_cwm, bucket_<lo>-<hi>_{rows,mae,xauc,xauc_dadf}) on predictions files with the
columns user_id, item_id, duration, label, prediction (CSV or Parquet; a folder stands for
its files in name order; rows in the order given). Pair counts are exact. Options:
  --engine=local|ray        local: one process (default); ray: partitioned over Ray tasks
  --num_workers=N           ray without --ray_address: a local Ray instance of N CPUs (default 2)
  --ray_address=HOST:PORT   ray: a running cluster (`ray start --head`); its CPUs do the work
  --partitions=N            ray: label ranges, prediction ranges and user groups (default:
                            about 4M rows each, at least one per worker)
  --metric_bucket_edges=[6,10,18,32,120]  duration bucket edges (default: properties/overall.yaml)
  --xauc_block_size=N       rows per block of xauc_blocks (default: properties/overall.yaml)
  --debug                   show tracebacks"""

OPTIONS = ("input", "output", "engine", "num_workers", "ray_address", "partitions", "metric_bucket_edges",
           "xauc_block_size")


def _defaults():
    """metric_bucket_edges and xauc_block_size from properties/overall.yaml, with their specs."""
    path = os.path.join(properties_dir(), "overall.yaml")
    with open(path, encoding="utf-8") as f:
        values = yaml.safe_load(f)
    return {k: values[k] for k in ("metric_bucket_edges", "xauc_block_size")}, read_specs(path)


def _positive_int(options, key, default):
    value = options.get(key, default)
    try:
        value = None if value is None else int(value)
    except ValueError:
        raise OptionError(f"--{key}={value!r}: expected an integer >= 1") from None
    if value is not None and value < 1:
        raise OptionError(f"--{key}={value!r}: expected an integer >= 1")
    return value


def _edges(text):
    from recbole_lda.config.options import parse_value

    value = parse_value(text)
    ok = isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float)) for v in value)
    if not ok or any(b <= a for a, b in zip(value, value[1:])):
        raise OptionError(f"--metric_bucket_edges={text!r}: expected increasing numbers, e.g. [6,10,18,32,120]")
    return tuple(float(v) for v in value)


def parse_options(argv):
    """Arguments -> options (OptionError on a bad one); bare arguments are more inputs."""
    extra = [a for a in argv if not a.startswith("--")]
    given = parse_key_values([a for a in argv if a.startswith("--")])
    for key in given:
        if key not in OPTIONS:
            raise OptionError(f"unknown option --{key}{did_you_mean(key, OPTIONS, '--')}\n{USAGE}")
    if not given.get("input") or not given.get("output"):
        raise OptionError("--input=FILE_OR_FOLDER and --output=FILE are required (--help shows the options)")
    defaults, specs = _defaults()
    options = {"inputs": [given["input"], *extra], "output": given["output"],
               "engine": given.get("engine", "local"), "ray_address": given.get("ray_address"),
               "num_workers": _positive_int(given, "num_workers", 2), "partitions": _positive_int(given, "partitions", None),
               "edges": _edges(given["metric_bucket_edges"]) if "metric_bucket_edges" in given
               else tuple(float(e) for e in defaults["metric_bucket_edges"]),
               "block_size": _positive_int(given, "xauc_block_size", defaults["xauc_block_size"])}
    check_values({"xauc_block_size": options["block_size"]}, specs, lambda k: f"--{k}")
    if options["engine"] not in ("local", "ray"):
        raise OptionError(f"--engine={options['engine']!r}: expected local or ray")
    if options["engine"] == "local" and any(k in given for k in ("num_workers", "ray_address", "partitions")):
        raise OptionError("--num_workers, --ray_address and --partitions need --engine=ray")
    try:  # never over an input, nor inside an input folder (whose files it reads)
        check_distinct_paths([("--output", options["output"])],
                             inputs=[("--input", p) for p in options["inputs"] if not os.path.isdir(p)],
                             input_folders=[("--input", p) for p in options["inputs"] if os.path.isdir(p)])
        check_writable(options["output"], "--output")
    except ValueError as err:
        raise OptionError(str(err)) from None
    return options


def score(options):
    """The metrics dict of the inputs (see `parse_options`)."""
    from recbole_lda.evaluator import partitioned
    from recbole_lda.evaluator.predictions_io import input_files

    input_files(options["inputs"])  # a missing input stops the command before Ray starts
    settings = {"edges": options["edges"], "block_size": options["block_size"]}
    if options["engine"] == "local":
        return partitioned.single_process(options["inputs"], **settings)
    from recbole_lda.distributed.ray_engine import RayExecutor

    with RayExecutor(address=options["ray_address"], num_workers=options["num_workers"]) as executor:
        print(f"Ray: {executor.nodes} node(s), {executor.workers} CPU(s)", flush=True)
        return partitioned.evaluate(options["inputs"], executor, options["partitions"], **settings)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(USAGE)
        return
    options = parse_options(argv)
    start = time.perf_counter()
    metrics = score(options)
    write_json(options["output"], metrics)
    shown = ", ".join(f"{k} {metrics[k]:.6f}" for k in ("mae", "xauc", "xgauc") if isinstance(metrics[k], float)
                      and math.isfinite(metrics[k]))
    print(f"{metrics['rows']:,} rows scored ({options['engine']}) in {time.perf_counter() - start:.1f} s: "
          f"{shown}; written to {options['output']}")
