"""Exact metrics over partitioned predictions (recbole_lda.evaluator.partitioned, the Ray
executor, `python -m recbole_lda evaluate`).

Tie-heavy predictions (few label values, few prediction values, durations on the bucket
edges) spread over CSV and Parquet files of uneven sizes (one of a single row, an empty one, several
shorter than a block, so that blocks straddle files) are scored over 1, 2 and 7
partitions: in this process, on a local Ray instance, and on a 2-node Ray cluster started
here on 127.0.0.1 (`ray start --head` and `ray start --address`). Every figure must equal
the single-process functions exactly, and the pair counts as integers.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from recbole_lda.evaluator import exact_sum, partitioned, xauc
from recbole_lda.evaluator.pair_counts import Prepared
from recbole_lda.evaluator.predictions_io import PredictionsError
from recbole_lda.utils.fileio import read_json
from stream_helpers import free_port

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCK = 64
CUTS = [0, 1, 40, 40, 100, 700, 1500, 1530, 2400]  # file bounds: a 1-row file, an empty one, files shorter than a block


def tie_heavy(n=2400, seed=3):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "user_id": rng.integers(0, 37, n),
        "item_id": rng.integers(0, 50, n),
        "duration": rng.choice([0.0, 3.0, 6.0, 9.5, 10.0, 18.0, 31.9, 32.0, 120.0, 200.0], n),
        "label": rng.integers(0, 9, n) * 2.5,  # 9 values: about 270 rows per value
        "prediction": rng.integers(0, 6, n) * 1.5 + 1.0,  # 6 values
    })


def write_parts(frame, folder):
    """The frame in files of CUTS (CSV and Parquet alternating); their paths in order."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for k, (a, b) in enumerate(zip(CUTS[:-1], CUTS[1:])):
        path = os.path.join(folder, f"part{k}.{'parquet' if k % 2 else 'csv'}")
        part = frame.iloc[a:b]
        part.to_parquet(path, index=False, row_group_size=100) if k % 2 else part.to_csv(path, index=False)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    frame = tie_heavy()
    folder = str(tmp_path_factory.mktemp("predictions"))
    return frame, write_parts(frame, folder), folder


def reference_counts(frame):
    """Pair counts of all rows and per duration bucket, in one process (int64 arrays)."""
    prep = Prepared(frame["label"].to_numpy(), frame["prediction"].to_numpy(), families=2)
    bucket = xauc.duration_buckets(frame["duration"].to_numpy(), np.array(xauc.DADF_EDGES))
    every, per = prep.counts(), prep.counts(bucket, len(xauc.DADF_EDGES) + 1)
    return {k: np.concatenate((every[k], per[k])) for k in partitioned.KEYS}


def check_equal(got, expected):
    assert list(got) == list(expected)
    different = {k: (got[k], expected[k]) for k in expected if got[k] != expected[k]}
    assert not different


def test_exact_sums_are_the_exact_mean_and_merge():
    rng = np.random.default_rng(0)
    values = rng.normal(size=3000) * 10.0 ** rng.integers(-300, 300, 3000)
    values[:5] = [5e-324, -5e-324, 0.0, 1e308, -1e308]
    exact = float(sum(Fraction(v) for v in values) / len(values))
    assert exact_sum.exact_mean(values) == exact
    merged = sum(exact_sum.sum_state(part) for part in np.array_split(values, 7))
    assert exact_sum.mean(merged[0], len(values)) == exact
    assert exact_sum.mean(exact_sum.sum_state([0.1, 0.2, 0.3])[0], 3) == float(Fraction(0.1) / 3 + Fraction(0.2) / 3
                                                                                + Fraction(0.3) / 3)
    with pytest.raises(ValueError, match="finite"):
        exact_sum.sum_state([1.0, np.inf])


def test_bucket_mae_is_the_exact_mean():
    labels, preds = np.array([1.0, 2.0, 3.0, 0.1, 0.2, 0.7]), np.zeros(6)
    table = xauc.bucket_metrics(labels, preds, np.array([1.0, 1, 1, 7, 7, 7]), edges=(6.0,), min_rows=1)
    assert table["0-6"]["mae"] == 2.0
    assert table["6+"]["mae"] == float((Fraction(0.1) + Fraction(0.2) + Fraction(0.7)) / 3)


@pytest.mark.parametrize("partitions", [1, 2, 7])
def test_partitions_in_this_process_equal_one_process(data, partitions):
    frame, paths, folder = data
    expected = partitioned.single_process([folder], block_size=BLOCK)
    assert expected == partitioned.single_process(paths, block_size=BLOCK)  # a folder is its files in name order
    counts = {}
    got = partitioned.evaluate(paths, partitioned.SerialExecutor(), partitions, block_size=BLOCK, counts=counts)
    check_equal(got, expected)
    reference = reference_counts(frame)
    for key in partitioned.KEYS:  # pair counts of all rows and of every bucket, as integers
        assert counts[key].tolist() == reference[key].tolist(), key
    assert counts["Ty"][0] > 0 and counts["Tp"][0] > 0 and counts["E"][0] > 0  # ties of every kind occur
    scans = [partitioned.scan_file((p, None), i, xauc.DADF_EDGES) for i, p in enumerate(paths)]
    the_plan = partitioned.plan(scans, partitions, xauc.DADF_EDGES, BLOCK)
    # the rows really fall into that many label ranges and prediction ranges
    used = [len(np.unique(np.searchsorted(the_plan[k], frame[c], side="right")))
            for k, c in (("label_bounds", "label"), ("pred_bounds", "prediction"))]
    assert used == [min(partitions, 9), min(partitions, 6)]


def test_parquet_files_read_in_runs_of_row_groups(data):
    frame, paths, folder = data
    parts = partitioned.input_parts(paths, 150)
    assert [(os.path.basename(p), g) for p, g in parts if p.endswith("part5.parquet")] == [
        ("part5.parquet", (0, 1)), ("part5.parquet", (2, 3)), ("part5.parquet", (4, 5)), ("part5.parquet", (6, 7))]
    assert len(parts) == 15  # 4 CSV files whole; Parquet: 39 and 60 rows in one group each, 800 rows in 4 runs, 870 in 5
    expected = partitioned.single_process([folder], block_size=BLOCK)
    check_equal(partitioned.evaluate(paths, partitioned.SerialExecutor(), 3, block_size=BLOCK, part_rows=150), expected)


def test_spilling_executor_keeps_results_in_files_and_equals_one_process(data, tmp_path):
    """The ray engine's rank 0 scores with SpillingExecutor: task results go to files and come
    back only as a later task's inputs; partitions=None takes one range per part_rows rows."""
    frame, paths, folder = data
    expected = partitioned.single_process([folder], block_size=BLOCK)
    spill = partitioned.SpillingExecutor(str(tmp_path / "spill"))
    counts = {}
    check_equal(partitioned.evaluate(paths, spill, block_size=BLOCK, part_rows=150, counts=counts), expected)
    reference = reference_counts(frame)
    assert all(counts[k].tolist() == reference[k].tolist() for k in partitioned.KEYS)
    # 2,400 rows in ranges of 150: 16 user groups, and label and prediction ranges as the
    # plan draws them. Every task's result is a file: per part a scan, a grid summary with its
    # label-range and column pieces, 16 user-group pieces; then the ranges, columns and groups.
    files = partitioned.input_parts(paths, 150)
    scans = [partitioned.scan_file(f, i, xauc.DADF_EDGES) for i, f in enumerate(files)]
    the_plan = partitioned.plan(scans, 16, xauc.DADF_EDGES, BLOCK)
    nk, npart = len(the_plan["label_bounds"]) + 1, len(the_plan["pred_bounds"]) + 1
    assert (nk, npart) == (10, 7)  # one range per label or prediction value, and one below them
    assert spill.written == len(files) * (1 + 1 + nk + npart + 16) + nk + npart + 16
    assert len(os.listdir(tmp_path / "spill")) == spill.written
    handle = spill.submit(np.arange, 5)
    assert isinstance(handle, partitioned.Spilled) and spill.get([handle])[0].tolist() == [0, 1, 2, 3, 4]


def test_user_ids_as_text_and_other_edges(tmp_path):
    frame = tie_heavy(n=600, seed=5)
    frame["user_id"] = "u" + frame["user_id"].astype(str)
    paths = write_parts(frame.iloc[:600], str(tmp_path))[:6]  # rows 0..700 -> the first 600
    kw = {"edges": (5.0, 50.0), "block_size": 7, "min_rows": 3}
    expected = partitioned.single_process(paths, **kw)
    assert expected["bucket_50+_rows"] > 0 and expected["xgauc_cwm"] is not None
    check_equal(partitioned.evaluate(paths, partitioned.SerialExecutor(), 3, **kw), expected)


def test_nan_gives_none_as_in_one_process(tmp_path):
    frame = tie_heavy(n=300)
    frame.loc[150, "prediction"] = np.nan
    paths = write_parts(frame.iloc[:300], str(tmp_path))[:5]
    expected = partitioned.single_process(paths)
    assert expected["xauc"] is None and expected["mae"] is None and expected["bucket_0-6_rows"] > 0
    check_equal(partitioned.evaluate(paths, partitioned.SerialExecutor(), 2), expected)


def test_bad_input_is_one_error_naming_file_and_column(tmp_path):
    frame = tie_heavy(n=20)
    frame.drop(columns=["duration"]).to_csv(tmp_path / "a.csv", index=False)
    with pytest.raises(PredictionsError, match=r"a\.csv: missing column\(s\) duration"):
        partitioned.single_process([str(tmp_path / "a.csv")])
    frame.assign(label="x").to_parquet(tmp_path / "b.parquet", index=False)
    with pytest.raises(PredictionsError, match=r"b\.parquet: column label must hold numbers"):
        partitioned.evaluate([str(tmp_path / "b.parquet")], partitioned.SerialExecutor(), 2)
    os.makedirs(tmp_path / "empty")
    with pytest.raises(PredictionsError, match="no .csv or .parquet file"):
        partitioned.single_process([str(tmp_path / "empty")])


def test_command_in_one_process_writes_every_metric(data, tmp_path):
    frame, paths, folder = data
    out = tmp_path / "metrics.json"
    proc = subprocess.run([sys.executable, "-m", "recbole_lda", "evaluate", f"--input={paths[0]}", *paths[1:],
                           f"--output={out}", f"--xauc_block_size={BLOCK}"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert read_json(out) == partitioned.single_process([folder], block_size=BLOCK)
    bad = subprocess.run([sys.executable, "-m", "recbole_lda", "evaluate", f"--input={tmp_path / 'nope'}",
                          f"--output={tmp_path / 'never.json'}"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "nope: no such file or folder" in bad.stderr
    assert not os.path.exists(tmp_path / "never.json")


# --------------------------------------------------------------------------------- Ray

def _ray_children():
    import psutil

    return [p for p in psutil.Process().children(recursive=True) if p.is_running()
            and p.status() != psutil.STATUS_ZOMBIE and "ray" in " ".join(p.cmdline())]


def test_local_ray_equals_one_process_and_stops(data):
    from recbole_lda.distributed.ray_engine import RayExecutor

    frame, paths, folder = data
    expected = partitioned.single_process([folder], block_size=BLOCK)
    reference = reference_counts(frame)
    with RayExecutor(num_workers=2) as executor:
        assert executor.workers == 2
        for partitions in (1, 2, 7):
            counts = {}
            check_equal(partitioned.evaluate(paths, executor, partitions, block_size=BLOCK, counts=counts), expected)
            assert all(counts[k].tolist() == reference[k].tolist() for k in partitioned.KEYS)
    time.sleep(1)
    assert not _ray_children()  # the local instance is gone


def _start_node(args, temp_dir):
    """`ray start ... --block` on 127.0.0.1 with free ports of its own."""
    ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
    ports = [f"--{name}-port={free_port()}" for name in ("node-manager", "object-manager", "metrics-export",
                                                        "dashboard-agent-listen", "dashboard-agent-grpc")]
    cmd = [ray_bin, "start", "--block", "--node-ip-address=127.0.0.1", "--num-cpus=1", "--num-gpus=0",
           "--disable-usage-stats", *ports, *args]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=temp_dir)


def _raylets(nodes):
    import psutil

    found = []
    for node in nodes:
        try:
            found += [p for p in psutil.Process(node.pid).children(recursive=True) if p.name() == "raylet"]
        except psutil.Error:
            pass
    return found


@pytest.fixture
def two_node_cluster():
    """A head node and a second node, one CPU each, on 127.0.0.1; stopped at the end by the
    ids of the processes they started (not `ray stop`, which would stop any Ray here)."""
    import psutil

    temp_dir = tempfile.mkdtemp(prefix="rp")  # short: Ray's socket paths must stay under 108 characters
    port = free_port()
    nodes = [_start_node(["--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={temp_dir}",
                          f"--ray-client-server-port={free_port()}"], temp_dir)]
    family = []
    try:
        deadline = time.time() + 90
        while len(_raylets(nodes)) < 1:
            assert nodes[0].poll() is None and time.time() < deadline, "ray start --head failed"
            time.sleep(0.5)
        nodes.append(_start_node([f"--address=127.0.0.1:{port}"], temp_dir))
        while len(_raylets(nodes)) < 2:
            assert nodes[1].poll() is None and time.time() < deadline, "ray start --address failed"
            time.sleep(0.5)
        time.sleep(2)
        family = [psutil.Process(n.pid) for n in nodes]
        yield f"127.0.0.1:{port}", nodes
    finally:
        family += [c for n in nodes for c in _children(n.pid)]
        for node in reversed(nodes):
            node.send_signal(signal.SIGTERM)
            try:
                node.wait(timeout=20)
            except subprocess.TimeoutExpired:
                node.kill()
        _, left = psutil.wait_procs(family, timeout=10)
        for p in left:
            p.kill()
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def _children(pid):
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def test_two_node_cluster_equals_one_process(data, tmp_path, two_node_cluster):
    address, nodes = two_node_cluster
    frame, paths, folder = data
    expected = partitioned.single_process([folder], block_size=BLOCK)
    for partitions in (2, 7):
        out = tmp_path / f"metrics{partitions}.json"
        proc = subprocess.run([sys.executable, "-m", "recbole_lda", "evaluate", f"--input={folder}", f"--output={out}",
                               "--engine=ray", f"--ray_address={address}", f"--partitions={partitions}",
                               f"--xauc_block_size={BLOCK}"], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTHONWARNINGS": "ignore"})
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert read_json(out) == expected
        assert "Ray: 2 node(s), 2 CPU(s)" in proc.stdout
    assert len(_raylets(nodes)) == 2  # both nodes were up throughout
