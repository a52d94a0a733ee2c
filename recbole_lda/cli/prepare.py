"""`prepare`: convert and split a dataset without training, and print the prepared folder.

    python -m recbole_lda prepare --dataset=kuairand --raw_data_path=DIR [--split=time
        --split_dates="[20220501,20220505]"] [--stream_chunk_rows=1000000] [--format=parquet|atomic]
        [--data_path=dataset/] [--protocol=...] [any key of the dataset's YAML]

--format=parquet (the default for kuairand, synthetic_kuairand, kuairec and synthetic)
streams the raw files into partitioned Parquet with memory bounded by stream_chunk_rows
(dataset_prep/stream_prepare.py; docs/scale.md); --format=atomic (the default, and the
only format, for wechat) writes the RecBole atomic files that
`python run_recbole_lda.py` reads (dataset_prep/pipeline.py). Either way the folder is
cached: a second call with the same raw files and keys prints it at once. Keys and values
are checked as a run checks them: properties/overall.yaml, then the dataset's YAML, then
the protocol's, then the command line.
"""

import os

import yaml

from recbole_lda.config.options import (
    OptionError, check_known, check_values, merged_specs, parse_key_values, parse_value, properties_dir, yaml_files,
)
from recbole_lda.config.registry import check_dataset_name
from recbole_lda.utils.errors import UsageError

FORMATS = ("parquet", "atomic")
PER_DATASET_KEY = "per_dataset"


def dataset_config(dataset, overrides):
    """The dataset keys of a run on `dataset` (overall, dataset and protocol YAML, then
    `overrides`), checked; data_path is the dataset's own folder, as in a run."""
    root = properties_dir()
    paths = [os.path.join(root, "overall.yaml"), yaml_files("dataset")[dataset]]
    config = {}
    for path in paths:
        with open(path, encoding="utf-8") as f:
            config.update(yaml.safe_load(f) or {})
    protocol = overrides.get("protocol", config.get("protocol"))
    protocols = yaml_files("protocol")
    if protocol not in protocols:
        raise OptionError(f"--protocol={protocol!r}: expected one of {', '.join(protocols)}")
    with open(protocols[protocol], encoding="utf-8") as f:
        loaded = yaml.safe_load(f) or {}
    config.update({k: v for k, v in loaded.items() if k != PER_DATASET_KEY})
    config.update((loaded.get(PER_DATASET_KEY) or {}).get(dataset) or {})
    check_known(overrides, set(config), lambda key: f"--{key}", "--")
    config.update(overrides)
    specs = merged_specs([*yaml_files("dataset").values(), *paths])
    check_values({k: config[k] for k in specs if k in config}, specs, lambda key: f"--{key}")
    config["dataset"] = dataset
    config["data_path"] = os.path.join(config["data_path"], dataset)
    return config


def main(argv=None):
    argv = list(argv or [])
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    values = {k: parse_value(v) for k, v in parse_key_values(argv).items()}
    dataset = values.pop("dataset", None)
    if not dataset:
        raise UsageError("prepare needs --dataset=NAME (e.g. --dataset=kuairand --raw_data_path=DIR)")
    check_dataset_name(dataset)
    from dataset_prep.stream_prepare import STREAMING_DATASETS

    fmt = values.pop("format", "parquet" if dataset in STREAMING_DATASETS else "atomic")
    if fmt not in FORMATS or (fmt == "parquet" and dataset not in STREAMING_DATASETS):
        allowed = FORMATS if dataset in STREAMING_DATASETS else ("atomic",)
        raise OptionError(f"--format={fmt!r}: expected {' or '.join(allowed)} for {dataset}")
    config = dataset_config(dataset, values)
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if fmt == "parquet":
        from dataset_prep.stream_prepare import prepare_stream

        prepared = prepare_stream(config)
    else:
        import dataset_prep

        prepared = dataset_prep.prepare(config)
    print(prepared.path)
    return 0
