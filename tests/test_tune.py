"""The tuning harness (recbole_lda.tuning.tune, recbole_lda.tuning.studies); the leaderboard's own tests
are in test_leaderboard.py.

Fast tests: search-space parsing, command-line keys, studies. Ray tests, on tiny data: an
end-to-end run on local Ray (two methods, two datasets, two seeds) whose leaderboard
matches the stored results; a run against a real local cluster (`ray start --head`) in
which a worker is killed mid-trial and the trial is retried; and a run interrupted after
some trials that resumes without running finished trials again.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from recbole_lda.tuning.studies import (
    build_studies,
    parse_command_overrides,
    parse_distribution,
    read_search_space,
)
from recbole_lda.cli.tune import parser
from recbole_lda.config.registry import WATCH_TIME_MODELS
from stream_helpers import free_port

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_SYNTHETIC = ["--synthetic_rows=4000", "--synthetic_users=100", "--synthetic_items=150"]
FAST = ["--train_batch_size=512", "--epochs=3", "--vq_steps=30", "--num_sequences=256"]

# ---------------------------------------------------------------------------------------
# Search spaces and command line


def test_every_model_has_a_search_space_that_parses():
    for model in WATCH_TIME_MODELS:
        space = read_search_space(model)
        assert {"learning_rate", "weight_decay", "dropout_prob"} <= set(space), model
    assert set(read_search_space("LDA")) >= {"num_buckets", "num_anchors", "temperature", "lambda_ot"}


def test_distributions_are_checked():
    assert parse_distribution({"loguniform": ["1e-4", 1.0e-2]}, "x") == {"loguniform": [1e-4, 1e-2]}
    assert parse_distribution({"randint": [2, 9]}, "x") == {"randint": [2, 9]}
    assert parse_distribution({"choice": [[64, 32], [128]]}, "x") == {"choice": [[64, 32], [128]]}
    for bad, message in [
        ({"loguniform": [0, 1]}, "positive lower bound"),
        ({"uniform": [2, 1]}, "lower bound must be below"),
        ({"normal": [0, 1]}, "unknown distribution"),
        ({"choice": []}, "non-empty list"),
        ({"randint": [1.5, 4]}, "integer bounds"),
        ({"quniform": [0, 1]}, "list of 3 numbers"),
        (0.001, "expected one distribution"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_distribution(bad, "learning_rate")


def test_model_file_overrides_overall_and_missing_file_is_an_error(tmp_path):
    (tmp_path / "overall.yaml").write_text("learning_rate: {loguniform: [1.0e-4, 1.0e-2]}\nweight_decay: {choice: [0.0]}\n")
    (tmp_path / "M.yaml").write_text("learning_rate: {choice: [0.1]}\nk: {randint: [1, 4]}\n")
    assert read_search_space("M", str(tmp_path)) == {
        "learning_rate": {"choice": [0.1]}, "weight_decay": {"choice": [0.0]}, "k": {"randint": [1, 4]}}
    with pytest.raises(FileNotFoundError, match="no search space for N"):
        read_search_space("N", str(tmp_path))


def test_per_dataset_keys():
    common, per, files = parse_command_overrides(
        ["--epochs=5", "--raw_data_path.kuairand=raw/k", "--split_dates.kuairand=[20220416,20220417]",
         "--config_files.synthetic=a.yaml b.yaml"], ["synthetic", "kuairand"])
    assert common == {"epochs": "5"}
    assert per == {"synthetic": {}, "kuairand": {"raw_data_path": "raw/k", "split_dates": "[20220416,20220417]"}}
    assert files["synthetic"] == [os.path.abspath("a.yaml"), os.path.abspath("b.yaml")] and files["kuairand"] == []
    with pytest.raises(ValueError, match="'kuairec' is not one of the datasets"):
        parse_command_overrides(["--raw_data_path.kuairec=x"], ["synthetic"])
    with pytest.raises(ValueError, match="expected --key=value"):
        parse_command_overrides(["--epochs"], ["synthetic"])


def test_studies_precedence_fixed_keys_and_harness_keys():
    args, rest = parser().parse_known_args([
        "--models=VR,VR[learning_rate=0.01]", "--datasets=synthetic,kuairand[split=time]", "--num_samples=2",
        "--output_dir=x", "--epochs=4", "--split=random", "--epochs.kuairand=2", "--seed=7"])
    assert args.seeds == 3  # --seed is a configuration key, not an abbreviation of --seeds
    studies = build_studies(args, rest)
    assert [(s.entry, s.dataset) for s in studies] == [
        ("VR", "synthetic"), ("VR[learning_rate=0.01]", "synthetic"), ("VR", "kuairand"),
        ("VR[learning_rate=0.01]", "kuairand")]
    by = {(s.entry, s.dataset): s for s in studies}
    assert by[("VR", "synthetic")].overrides == {"epochs": "4", "split": "random", "seed": "7",
                                                 "state": "WARNING", "show_progress": "False"}
    kuairand = by[("VR[learning_rate=0.01]", "kuairand")]
    assert kuairand.overrides["epochs"] == "2" and kuairand.overrides["split"] == "time"
    assert kuairand.overrides["learning_rate"] == "0.01" and "learning_rate" not in kuairand.space
    assert "learning_rate" in by[("VR", "kuairand")].space
    assert by[("VR", "synthetic")].label == "VR__synthetic"
    args, rest = parser().parse_known_args(["--models=VR", "--num_samples=1", "--output_dir=x", "--torch_num_threads=4"])
    with pytest.raises(ValueError, match="the harness sets"):
        build_studies(args, rest)


def test_run_keys_set_by_the_harness(monkeypatch):
    from recbole_lda.tuning.studies import Study, run_overrides

    study = Study("VR", "VR", "synthetic", [], {"epochs": "3"}, {}, resources={"cpu": 3, "gpu": 0})
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5")
    keys = run_overrides(study, seed=2)
    assert keys == {"epochs": "3", "torch_num_threads": "3", "gpu_id": "", "keep_checkpoint": "False",
                    "results_file": "None", "predictions_file": "None", "seed": "2"}
    study.resources = {"cpu": 1, "gpu": 1}  # RecBole sets CUDA_VISIBLE_DEVICES from gpu_id: keep Ray's choice
    assert run_overrides(study)["gpu_id"] == "5" and "seed" not in run_overrides(study)


def test_missing_raw_files_stop_the_command_before_any_trial(tmp_path):
    env = {**os.environ, "PYTHONPATH": REPO, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-m", "recbole_lda", "tune", "--models=VR", "--datasets=kuairec",
                           "--num_samples=1", "--output_dir=out", "--raw_data_path.kuairec=nowhere"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "error:" in proc.stderr and str(tmp_path / "nowhere") in proc.stderr  # a data error
    assert "[ray]" not in proc.stderr and not (tmp_path / "out" / "ray").exists()


# ---------------------------------------------------------------------------------------
# Ray runs on tiny data


def write_tiny_kuairand(folder, rows=2500, users=60, videos=80, seed=0):
    """A KuaiRand-format log (the columns the converter reads) over 2022-04-08..04-17."""
    rng = np.random.default_rng(seed)
    duration = rng.integers(3000, 60000, videos)
    u, v = rng.integers(0, users, rows), rng.integers(0, videos, rows)
    taste = rng.normal(0, 0.5, users)
    play = (duration[v] * np.exp(taste[u] + rng.normal(-0.5, 0.6, rows))).astype(int) + 1
    date = 20220408 + rng.integers(0, 10, rows)
    hour = rng.integers(0, 24, rows)
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"user_id": u, "video_id": v, "date": date, "hourmin": hour * 100, "play_time_ms": play,
                  "duration_ms": duration[v]}).to_csv(folder / "log_standard_4_08_to_4_17_tiny.csv", index=False)
    return folder


def harness(args, cwd, timeout=240, wait=True):
    env = {**os.environ, "PYTHONPATH": REPO, "PYTHONWARNINGS": "ignore", "RAY_USAGE_STATS_ENABLED": "0"}
    cmd = [sys.executable, "-m", "recbole_lda", "tune", *args]
    if not wait:
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def stored_runs(out):
    return {p: json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))}


def test_end_to_end_two_methods_two_datasets(tmp_path):
    raw = write_tiny_kuairand(tmp_path / "kuairand-raw")
    args = ["--models=VR,LDA", "--datasets=synthetic,kuairand", "--num_samples=2", "--seeds=2", "--output_dir=out",
            "--num_cpus=2", "--data_path=data", *TINY_SYNTHETIC, *FAST, "--raw_data_path.kuairand=kuairand-raw",
            "--split.kuairand=time", "--split_dates.kuairand=[20220416,20220417]"]
    proc = harness(args, tmp_path)
    out = tmp_path / "out"
    assert "[study 4/4] LDA on kuairand: 2/2 trials done" in proc.stderr
    table = pd.read_csv(out / "leaderboard.csv")
    assert sorted(zip(table["dataset"], table["model"])) == sorted(
        [(d, m) for d in ("synthetic", "kuairand") for m in ("VR", "LDA")])
    runs = stored_runs(out)
    assert len(runs) == 8
    for row in table.itertuples():
        tuning = json.loads((out / "tuning" / f"{row.model}__{row.dataset}.json").read_text())
        assert tuning["budget"]["num_samples"] == 2 and len(tuning["trials"]) == 2
        # --epochs=3 wins over harness.yaml; each dataset's grace period (4, 8) is capped at it
        assert tuning["budget"]["max_epochs"] == 3 and tuning["budget"]["grace_period"] == 3
        assert tuning["budget"]["rung_epochs"] == [3] and row.rungs == f"{sum((t['epochs'] or 0) >= 3 for t in tuning['trials'])}/2 ≥3 ep"
        assert tuning["settings"]["overrides"]["data_path"] == str(tmp_path / "data")
        mine = [r for r in runs.values() if r["method"] == row.model and r["dataset"] == row.dataset]
        assert sorted(r["seed"] for r in mine) == [0, 1]
        assert all(r["tuned_params"] == tuning["best"]["params"] for r in mine)
        assert all(r["hyperparameters"][k] == v for r in mine for k, v in tuning["best"]["params"].items())
        for metric in ("mae", "xauc", "rmse", "xgauc"):
            values = np.array([r["test_result"][metric] for r in mine])
            assert getattr(row, f"{metric}_mean") == pytest.approx(values.mean(), abs=1e-9)
            assert getattr(row, f"{metric}_std") == pytest.approx(values.std(ddof=1), abs=1e-9)
    markdown = (out / "leaderboard.md").read_text()
    assert "| LDA vs best baseline |" in markdown and "kuairand MAE" in markdown
    for ext in ("tex", "png"):
        assert (out / f"leaderboard.{ext}").stat().st_size > 0
    # the kuairand runs read the raw folder given relative to the launch folder, split by time
    kuairand = next(r for r in runs.values() if r["dataset"] == "kuairand")
    assert kuairand["data"]["raw_dir"] == str(raw) and kuairand["data"]["split_options"]["split"] == "time"

    # Run again: everything is read back, nothing is trained or rewritten.
    stamps = {p: p.stat().st_mtime_ns for p in list((out / "runs").glob("*")) + list((out / "tuning").glob("*"))}
    proc = harness(args, tmp_path)
    assert "finished, reading" in proc.stderr and "[final runs" not in proc.stderr
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    # The leaderboard alone, from the stored results.
    csv = (out / "leaderboard.csv").read_text()
    (out / "leaderboard.csv").unlink()
    harness(["--leaderboard_only", "--output_dir=out"], tmp_path)
    assert (out / "leaderboard.csv").read_text() == csv
    # Other settings on the same folder stop the command instead of mixing budgets.
    env = {**os.environ, "PYTHONPATH": REPO, "PYTHONWARNINGS": "ignore"}
    changed = [a if a != "--num_samples=2" else "--num_samples=3" for a in args]
    bad = subprocess.run([sys.executable, "-m", "recbole_lda", "tune", *changed], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "was made with other settings (differences in ['budget'])" in bad.stderr


@pytest.fixture
def ray_cluster():
    """A one-node Ray cluster started with `ray start --head --block` on 127.0.0.1 (free ports,
    a temporary folder); stopped at the end by the ids of the processes it started."""
    import psutil

    temp_dir = tempfile.mkdtemp(prefix="rt")  # short: Ray's socket paths must stay under 108 characters
    port = free_port()
    ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
    cmd = [ray_bin, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
           "--num-gpus=0", "--include-dashboard=false", f"--temp-dir={temp_dir}", "--disable-usage-stats",
           f"--ray-client-server-port={free_port()}", f"--node-manager-port={free_port()}",
           f"--object-manager-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
           f"--dashboard-agent-grpc-port={free_port()}", f"--metrics-export-port={free_port()}"]
    env = {**os.environ, "PYTHONPATH": REPO, "PYTHONWARNINGS": "ignore", "RAY_USAGE_STATS_ENABLED": "0"}
    head = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = psutil.Process(head.pid)
    deadline = time.time() + 60
    while not any("raylet" in " ".join(p.cmdline()) for p in _alive(started.children(recursive=True))):
        assert head.poll() is None and time.time() < deadline, "ray start --head failed"
        time.sleep(0.5)
    time.sleep(2)
    try:
        yield SimpleNamespace(address=f"127.0.0.1:{port}", process=started)
    finally:
        family = _alive(started.children(recursive=True))
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=20)
        except subprocess.TimeoutExpired:
            head.kill()
        _, left = psutil.wait_procs(_alive(family), timeout=10)
        for p in left:
            p.kill()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _alive(processes):
    import psutil

    alive = []
    for p in processes:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                p.cmdline()
                alive.append(p)
        except psutil.Error:
            pass
    return alive


def test_cluster_worker_killed_mid_trial_is_retried(tmp_path, ray_cluster):
    args = ["--models=VR", "--datasets=synthetic", "--num_samples=2", "--seeds=2", "--output_dir=out",
            f"--ray_address={ray_cluster.address}", "--cpus_per_trial=2", "--scheduler=fifo", "--data_path=data",
            *TINY_SYNTHETIC, "--train_batch_size=256", "--epochs=4"]
    proc = harness(args, tmp_path, wait=False)
    out = tmp_path / "out"
    killed, deadline = None, time.time() + 180
    while killed is None and time.time() < deadline and proc.poll() is None:
        # kill the trial's worker once it has reported a first epoch
        reported = [p for p in (out / "ray" / "VR__synthetic").glob("*/result.json") if p.stat().st_size > 0]
        workers = [p for p in _alive(ray_cluster.process.children(recursive=True))
                   if "ImplicitFunc" in " ".join(p.cmdline())]
        if reported and workers:
            killed = workers[0].pid
            workers[0].kill()
        time.sleep(0.1)
    stdout, _ = proc.communicate(timeout=240)
    assert killed is not None, stdout[-3000:]
    assert proc.returncode == 0, stdout[-5000:]
    tuning = json.loads((out / "tuning" / "VR__synthetic.json").read_text())
    assert tuning["trial_failures"] == 1 and tuning["trials_completed"] == 2 and tuning["trials_errored"] == 0
    assert sorted(t["failures"] for t in tuning["trials"]) == [0, 1]
    assert all(t["epochs"] == 4 for t in tuning["trials"])  # the retried trial ran to the end
    table = pd.read_csv(out / "leaderboard.csv")
    assert len(table) == 1 and table["seeds"].iloc[0] == 2 and np.isfinite(table["mae_mean"].iloc[0])
    assert f"[ray] cluster {ray_cluster.address}" in stdout


def test_interrupted_run_resumes_without_repeating_finished_trials(tmp_path):
    args = ["--models=VR", "--datasets=synthetic", "--num_samples=6", "--seeds=1", "--output_dir=out", "--num_cpus=2",
            "--scheduler=fifo", "--data_path=data", *TINY_SYNTHETIC, "--train_batch_size=256", "--epochs=4"]
    proc = harness(args, tmp_path, wait=False)
    out = tmp_path / "out"
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        progress = out / "progress.json"
        if progress.exists() and json.loads(progress.read_text()).get("trials_done", 0) >= 1:
            break
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGINT)  # Ctrl+C
    stdout, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, stdout[-5000:]
    assert not (out / "tuning" / "VR__synthetic.json").exists() and not (out / "runs").exists()
    exp = out / "ray" / "VR__synthetic"
    state = json.loads(max(exp.glob("experiment_state-*.json")).read_text())
    done = {}
    for trial_json in state["checkpoints"]:  # Ray 2.6's record of every trial
        trial = json.loads(trial_json)
        if trial["status"] == "TERMINATED":
            result = next(exp.glob(f"*{trial['trial_id']}*/result.json"))
            done[trial["trial_id"]] = (result.stat().st_mtime_ns, result.read_text())
    assert 1 <= len(done) < 6

    proc = harness(args, tmp_path)
    assert "resuming" in proc.stderr
    tuning = json.loads((out / "tuning" / "VR__synthetic.json").read_text())
    assert tuning["trials_completed"] == 6 and len({t["trial_id"] for t in tuning["trials"]}) == 6
    for trial_id, (mtime, text) in done.items():  # finished trials were not run again
        result = next(exp.glob(f"*{trial_id}*/result.json"))
        assert result.stat().st_mtime_ns == mtime and result.read_text() == text
    assert len(list(exp.glob("*/result.json"))) == 6
    assert (out / "leaderboard.csv").exists()
