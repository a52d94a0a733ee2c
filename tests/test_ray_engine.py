"""`--engine=ray` (recbole_lda/quick_start/streamed.py, recbole_lda/distributed/ray_train.py): the
refusals before any work, and a run on 2 local Ray workers end to end (a local Ray start costs
about 3 s and 1 GB: these tests are few)."""

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from stream_helpers import write_streamed

ROOT = Path(__file__).resolve().parents[1]
COMMON = ["--dataset=synthetic", "--engine=ray", "--log_dir=None", "--show_progress=False", "--torch_num_threads=1"]


def cli(*args, cwd, module=None, timeout=600):
    head = ["-m", *module.split()] if module else [str(ROOT / "run_recbole_lda.py")]
    return subprocess.run([sys.executable, *head, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket is: nothing listens there


def test_refusals_before_any_work(tmp_path):
    data = write_streamed(str(tmp_path / "data"), rows=400, users=20, items=30)
    base = ["--model=VR", *COMMON, "--results_file=r.json"]
    cases = [
        (["--num_workers=0"], "num_workers"),
        (["--num_workers=3", "--train_batch_size=256"], "--train_batch_size=256 is the global batch: it must be a multiple of --num_workers=3"),
        ([f"--ray_address=127.0.0.1:{closed_port()}"], "no Ray cluster answers there"),
        (["--ray_address=nowhere"], "expected HOST:PORT"),
    ]
    if torch.cuda.device_count() == 0:
        cases.append((["--use_gpu=True"], "--use_gpu=True: no GPU on this machine"))
    cases = [(extra + [f"--streamed_data_path={data}"], message) for extra, message in cases]
    cases.append(([f"--streamed_data_path={tmp_path}"], "expected a folder of partitioned Parquet"))
    one_group = write_streamed(str(tmp_path / "one"), rows=400, users=20, items=30, files=1)
    cases.append(([f"--streamed_data_path={one_group}", "--num_workers=2"], "has 1 Parquet row group(s); use at most"))
    for extra, message in cases:
        start = time.perf_counter()
        done = cli(*base, *extra, cwd=tmp_path)
        assert done.returncode == 2, (extra, done.stderr[-1500:])
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (extra, done.stderr)
        assert time.perf_counter() - start < 60, extra
    # no results, no run folder, nothing started; the last case is refused after its data were
    # read (more workers than row groups), so the run's log of that reading stays beside r.json
    assert sorted(os.listdir(tmp_path)) == ["data", "one", "r.log"]


def test_two_workers_end_to_end(tmp_path):
    data = write_streamed(str(tmp_path / "data"), rows=3000, users=120, items=150)
    done = cli("--model=VR", *COMMON, f"--streamed_data_path={data}", "--num_workers=2", "--epochs=2",
               "--train_batch_size=256", "--max_failures=0", "--results_file=r.json", "--predictions_file=pred",
               "--save_model_dir=model", f"--ray_run_dir={tmp_path / 'runs'}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "r.json").read_text())
    assert (results["engine"], results["workers"], results["restarts"], results["epochs_run"]) == ("ray", 2, 0, 2)
    assert results["rows"] == {"train": 2400, "valid": 300, "test": 300}
    assert len(results["worker_peak_memory_mb"]) == 2 and all(m > 50 for m in results["worker_peak_memory_mb"])
    assert [h["epoch"] for h in results["valid_history"]] == [0, 1]
    assert results["best_valid_score"] == min(h["mae"] for h in results["valid_history"])
    # the predictions folder: one file per worker, every test row once; the metrics are of these rows
    files = sorted(os.listdir(tmp_path / "pred"))
    assert files == ["part-00000.parquet", "part-00001.parquet"]
    pred = pd.concat([pq.read_table(tmp_path / "pred" / f).to_pandas() for f in files])
    test = pd.concat([pq.read_table(os.path.join(data, "test", f)).to_pandas() for f in sorted(os.listdir(os.path.join(data, "test")))])
    assert sorted(zip(pred.user_id, pred.item_id, pred.label)) == sorted(zip(test.user_id, test.item_id, test.label))
    assert results["test_result"]["mae"] == pytest.approx(np.mean(np.abs(pred.prediction - pred.label)), abs=1e-12)
    assert os.listdir(tmp_path / "runs") == []  # the run's folder is removed (no keep_checkpoint)
    # the saved model scores the same rows as the run did
    pred[["user_id", "item_id", "duration"]].to_csv(tmp_path / "in.csv", index=False)
    scored = cli("--model_dir=model", "--input=in.csv", "--output=out.csv", module="recbole_lda predict", cwd=tmp_path)
    assert scored.returncode == 0, scored.stderr[-2000:]
    again = pd.read_csv(tmp_path / "out.csv")
    assert np.allclose(again.prediction, pred.prediction, rtol=1e-5, atol=1e-4)


def _start_node(env, *args):
    done = subprocess.run([str(Path(sys.executable).parent / "ray"), "start", *args, "--num-cpus=1",
                           "--disable-usage-stats"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def _stop_nodes(marker, port=None):
    """SIGKILL exactly the processes of our nodes: those whose command line names our own
    temporary folder, and the head's Ray client server, which names only the head's address
    (`--address=IP:PORT`) (never `ray stop`, which stops every Ray instance of the machine)."""
    import signal

    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        ours = marker in cmdline or (port is not None and "ray.util.client.server" in cmdline
                                     and f":{port}\x00" in cmdline.replace(" ", "\x00") + "\x00")
        if ours:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass


def _wait_for(predicate, seconds, proc):
    end = time.time() + seconds
    while time.time() < end and proc.poll() is None:
        found = predicate()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out (run exit status {proc.poll()}): {proc.stderr.read()[-2000:] if proc.poll() is not None else ''}")


@contextlib.contextmanager
def _loopback_cluster(prefix):
    """A 2-node Ray cluster on the loopback address (1 CPU each), started here and stopped (every
    process of it) on leaving; yields (env for the run, the head's port, Ray's temporary folder)."""
    import tempfile

    ray_tmp = tempfile.mkdtemp(prefix=prefix, dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "RAY_USAGE_STATS_ENABLED": "0"}
    port = closed_port()
    try:
        _start_node(env, "--head", f"--port={port}", f"--temp-dir={ray_tmp}", "--include-dashboard=false")
        _start_node(env, f"--address=127.0.0.1:{port}")
        yield env, port, ray_tmp
    finally:
        _stop_nodes(ray_tmp, port)
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_two_node_cluster_survives_a_killed_worker(tmp_path):
    """A 2-node Ray cluster on the loopback address (1 CPU each: one worker per node); a worker is
    SIGKILLed mid-epoch; the run resumes from the last checkpoint, completes and records the restart."""
    import signal

    data = write_streamed(str(tmp_path / "data"), rows=6000, users=200, items=150)
    with _loopback_cluster("rl23-") as (env, port, _):
        runs = tmp_path / "runs"
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "run_recbole_lda.py"), "--model=VR", *COMMON, f"--streamed_data_path={data}",
             f"--ray_address=127.0.0.1:{port}", "--num_workers=2", "--epochs=3", "--train_batch_size=16",
             "--max_failures=2", "--embedding_min_count=30", "--results_file=r.json", f"--ray_run_dir={runs}"],
            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        checkpoint = _wait_for(lambda: list(runs.glob("*/train/*/checkpoint_000000")), 400, proc)
        assert checkpoint
        rank1 = list(runs.glob("*/attempts/rank1-*"))
        assert len(rank1) == 1
        os.kill(int(rank1[0].read_text()), signal.SIGKILL)  # a worker of this run, in epoch 1 or later
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["restarts"] == 1 and results["workers"] == 2 and results["epochs_run"] == 3
    assert [h["epoch"] for h in results["valid_history"]] == [0, 1, 2]  # resumed, not restarted from scratch
    assert results["rows"]["test"] == 600 and results["test_result"]["rows"] == 600
    train = pd.concat([pq.read_table(f).to_pandas() for f in sorted((Path(data) / "train").glob("*.parquet"))])
    counts = np.bincount(train.item_index, minlength=150)
    item = results["data"]["embedding_vocabulary"]["item"]
    assert item["rare_ids"] == int((counts < 30).sum()) > 0 and item["rare_training_rows"] == int(counts[counts < 30].sum())
    assert item["rows"] == 1 + int((counts >= 30).sum()) + 1 and item["hashed"] is False


def test_a_run_whose_cluster_disappears_stops_with_one_line_and_writes_nothing(tmp_path):
    """Both nodes of the run's cluster are SIGKILLed mid-run: the run ends within the watch's grace
    (ray_engine.ClusterWatch, 10 s; Ray alone would end the process 60 s later without a word and
    leave the run folder), exit status 1, its last line `error: ...` naming the address; no results,
    predictions or model, and the run folder is gone."""
    data = write_streamed(str(tmp_path / "data"), rows=6000, users=200, items=150)
    with _loopback_cluster("rl23g-") as (env, port, ray_tmp):
        runs = tmp_path / "runs"
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "run_recbole_lda.py"), "--model=VR", *COMMON, f"--streamed_data_path={data}",
             f"--ray_address=127.0.0.1:{port}", "--num_workers=2", "--epochs=200", "--train_batch_size=16",
             "--max_failures=2", "--results_file=r.json", "--predictions_file=pred", "--save_model_dir=model",
             f"--ray_run_dir={runs}"],
            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert _wait_for(lambda: list(runs.glob("*/train/*/checkpoint_000000")), 400, proc)
        _stop_nodes(ray_tmp, port)
        killed = time.monotonic()
        _, err = proc.communicate(timeout=120)
        ended_after = time.monotonic() - killed
    assert proc.returncode == 1, err[-3000:]
    assert err.strip().splitlines()[-1] == (f"error: ray engine: the Ray cluster at 127.0.0.1:{port} stopped answering for "
                                            "10 s; the run stopped and wrote no results, predictions or model")
    assert ended_after < 45, ended_after
    assert sorted(os.listdir(tmp_path)) == ["data", "r.log", "runs"] and os.listdir(runs) == []
