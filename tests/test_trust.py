"""Every run reports its own, correct numbers or stops with a clear message (issue: trust).

Through the real command line where the behaviour is the command line's: concurrent runs
in one folder, misspelt keys, bad values, bad paths, unsafe values, error format."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--dataset=synthetic", "--synthetic_rows=4000", "--synthetic_users=150", "--synthetic_items=200",
         "--torch_num_threads=1", "--log_dir=None", "--show_progress=False"]


def cli(*args, cwd, module=None, timeout=600):
    """Run run_recbole_lda.py (or `python -m module`) in `cwd`; CompletedProcess."""
    head = ["-m", *module.split()] if module else [str(ROOT / "run_recbole_lda.py")]
    return subprocess.run([sys.executable, *head, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def start(*args, cwd):
    return subprocess.Popen([sys.executable, str(ROOT / "run_recbole_lda.py"), *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def in_process(argv, monkeypatch, capsys, cwd):
    """The CLI's main function (what the console script calls) in this process: no
    interpreter start per case. Returns a CompletedProcess-like result."""
    from recbole_lda.cli import run_main

    monkeypatch.chdir(cwd)
    with pytest.raises(SystemExit) as stop:
        run_main(list(argv))
    return subprocess.CompletedProcess(argv, stop.value.code, "", capsys.readouterr().err)


def one_line_error(proc, code, *fragments):
    """The failure is one line `error: ...` on stderr with exit status `code`, naming `fragments`."""
    assert proc.returncode == code, (proc.returncode, proc.stderr[-2000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# --- 1. concurrent runs in one folder


def test_concurrent_runs_in_one_folder_each_report_their_own_model(tmp_path):
    """Two runs started together in the same folder, with different learning rates and
    seeds, each write exactly the test result of the same run made alone; kept checkpoints
    are two different files that load as weights only."""
    a = ["--model=VR", *SMALL, "--epochs=3", "--seed=1", "--learning_rate=0.01"]
    b = ["--model=VR", *SMALL, "--epochs=4", "--seed=2", "--learning_rate=0.002"]
    alone = cli(*a, "--results_file=alone.json", cwd=tmp_path)  # also prepares the shared data cache
    assert alone.returncode == 0, alone.stderr[-2000:]
    assert not (tmp_path / "saved").exists() or not os.listdir(tmp_path / "saved")  # nothing kept unless asked

    procs = [start(*a, "--results_file=a.json", "--keep_checkpoint=True", cwd=tmp_path),
             start(*b, "--results_file=b.json", "--keep_checkpoint=True", cwd=tmp_path)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-2000:]
    res = {k: json.loads((tmp_path / f"{k}.json").read_text()) for k in ("alone", "a", "b")}
    assert res["a"]["test_result"] == res["alone"]["test_result"]
    assert res["a"]["best_valid_result"] == res["alone"]["best_valid_result"]
    assert res["b"]["test_result"]["mae"] != res["a"]["test_result"]["mae"]
    assert res["alone"]["checkpoint"] is None
    paths = {res["a"]["checkpoint"], res["b"]["checkpoint"]}
    assert len(paths) == 2 and all(os.path.isfile(tmp_path / p) for p in paths)
    import torch

    for p in paths:
        state = torch.load(tmp_path / p, weights_only=True)
        assert set(state) == {"epoch", "best_valid_score", "state_dict"}
    assert not [f for f in os.listdir(tmp_path) if ".tmp" in f]


# --- 2, 4, 5, 10. names, keys and values, before any work


@pytest.mark.parametrize("args, code, fragments", [
    (["--model=VR", "--epoch=1"], 2, ["unknown option --epoch", "did you mean --epochs?"]),
    (["--model=VR", "--learning_rat=0.1"], 2, ["unknown option --learning_rat", "--learning_rate"]),
    (["--model=VR", "--temperature=0.5"], 2, ["--temperature", "a key of LDA"]),
    (["--model=VR", "--epochs=0"], 2, ["--epochs=0", "an integer >= 1"]),
    (["--model=VR", "--epochs=-1"], 2, ["--epochs=-1", "an integer >= 1"]),
    (["--model=VR", "--epochs=abc"], 2, ["--epochs='abc'", "an integer"]),
    (["--model=VR", "--learning_rate=abc"], 2, ["--learning_rate='abc'", "a number"]),
    (["--model=VR", "--seed=abc"], 2, ["--seed='abc'", "an integer"]),
    (["--model=VR", "--split=sometimes"], 2, ["--split='sometimes'", "one of random, time"]),
    (["--model=lda"], 2, ["unknown model 'lda'", "did you mean LDA?", "models: LDA, VR"]),
    (["--model=FOO"], 2, ["unknown model 'FOO'", "models: LDA, VR"]),
    (["--model=VR", "--dataset=kuairecc"], 2, ["unknown dataset 'kuairecc'", "did you mean kuairec"]),
    (["--model=VR", "--eval_step=5", "--epochs=2"], 2, ["eval_step=5 exceeds epochs=2"]),
    (["--model=VR", "--results_file=."], 2, ["results_file", "is a folder"]),
])
def test_bad_options_stop_before_any_work(tmp_path, monkeypatch, capsys, args, code, fragments):
    """In this process (the CLI's own main function); the real command line is checked below."""
    args = args if any(a.startswith("--dataset=") for a in args) else [*args, "--dataset=synthetic"]
    one_line_error(in_process([*args, "--data_path=data"], monkeypatch, capsys, tmp_path), code, *fragments)
    assert not (tmp_path / "data").exists()  # no data generated or converted


def test_a_misspelt_key_on_the_real_command_line(tmp_path):
    begin = time.time()
    proc = cli("--model=VR", "--dataset=synthetic", "--epoch=1", "--data_path=data", cwd=tmp_path)
    one_line_error(proc, 2, "unknown option --epoch; did you mean --epochs?")
    assert not (tmp_path / "data").exists() and time.time() - begin < 60


def test_values_are_parsed_as_literals_never_run(tmp_path):
    proc = cli("--model=VR", "--dataset=synthetic", "--data_path=data",
               "--learning_rate=__import__('pathlib').Path('pwned').touch() or 0.001", cwd=tmp_path)
    one_line_error(proc, 2, "--learning_rate=", "expected a number")
    assert not (tmp_path / "pwned").exists()
    from recbole_lda.config.options import parse_value

    assert parse_value("[20220416,20220417]") == [20220416, 20220417]
    assert parse_value("1e-3") == 0.001 and parse_value("true") is True and parse_value("~") is None
    assert parse_value("time") == "time" and parse_value("open('x','w')") == "open('x','w')"


def test_config_file_keys_are_checked_and_named(tmp_path, monkeypatch, capsys):
    (tmp_path / "mine.yaml").write_text("epoch: 1\n")
    proc = in_process(["--model=VR", "--dataset=synthetic", "--config_files=mine.yaml"], monkeypatch, capsys, tmp_path)
    one_line_error(proc, 2, "unknown option epoch", "mine.yaml", "did you mean epochs?")


def test_compare_checks_every_entry_before_the_first_run(tmp_path):
    proc = cli("--models=VR,LDA[temprature=0.5]", "--datasets=synthetic", "--seeds=1", "--output_dir=out",
               "--data_path=data", cwd=tmp_path, module="recbole_lda compare")
    one_line_error(proc, 2, "LDA[temprature=0.5] on synthetic", "unknown option --temprature", "temperature")
    assert not (tmp_path / "out" / "runs").exists() and not (tmp_path / "data").exists()


# --- 3. strict JSON


def test_results_are_strict_json(tmp_path):
    from recbole_lda.utils.fileio import json_safe, read_json, write_json

    write_json(tmp_path / "r.json", {"a": float("inf"), "b": [float("nan"), 1.5], "c": {"d": -float("inf")}})
    text = (tmp_path / "r.json").read_text()
    assert "Infinity" not in text and "NaN" not in text
    assert read_json(tmp_path / "r.json") == {"a": None, "b": [None, 1.5], "c": {"d": None}}
    (tmp_path / "bad.json").write_text('{"best_valid_score": Infinity}')
    with pytest.raises(ValueError, match="bad.json: not strict JSON: Infinity"):
        read_json(tmp_path / "bad.json")
    assert json_safe({"x": (1, 2)}) == {"x": [1, 2]}


# --- 6. output paths


def test_output_paths_are_checked_before_training_and_leave_nothing_behind(tmp_path, monkeypatch, capsys):
    (tmp_path / "afile").write_text("")
    proc = in_process(["--model=VR", "--dataset=synthetic", "--data_path=data", "--predictions_file=afile/p.csv"],
                      monkeypatch, capsys, tmp_path)
    one_line_error(proc, 2, "predictions_file", "afile/p.csv")
    assert not (tmp_path / "data").exists()

    from recbole_lda.utils.fileio import atomic_output

    target = tmp_path / "out" / "table.csv"
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            Path(tmp).write_text("half")
            raise RuntimeError("the writer failed")
    assert os.listdir(tmp_path / "out") == []  # neither the target nor a temporary file


# --- 7. an unreachable Ray cluster


def test_tune_with_an_unreachable_ray_address_fails_fast_and_can_be_rerun(tmp_path):
    args = ["--models=VR", "--datasets=synthetic", "--num_samples=1", "--seeds=1", "--output_dir=out",
            "--data_path=data", "--ray_address=127.0.0.1:1"]
    begin = time.time()
    proc = cli(*args, cwd=tmp_path, module="recbole_lda tune")
    one_line_error(proc, 2, "--ray_address=127.0.0.1:1", "no Ray cluster answers")
    assert time.time() - begin < 30
    assert not (tmp_path / "out" / "manifest.json").exists() and not (tmp_path / "data").exists()


def test_a_study_without_results_can_be_restarted_with_other_settings(tmp_path):
    from recbole_lda.config.options import OptionError
    from recbole_lda.tuning.studies import check_settings

    path = tmp_path / "s.study.json"
    check_settings(path, {"num_samples": 2}, has_results=False)
    check_settings(path, {"num_samples": 3}, has_results=False)  # nothing finished: starts over
    assert json.loads(path.read_text())["settings"] == {"num_samples": 3}
    with pytest.raises(OptionError, match="never overwritten"):
        check_settings(path, {"num_samples": 4}, has_results=True)


# --- 9. error format


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    from recbole_lda.cli import run_main
    from recbole_lda.config.options import OptionError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(OptionError, match="--epochs=0"):  # raised, not reported: Python prints the traceback
        run_main(["--model=VR", "--dataset=synthetic", "--epochs=0", "--debug"])


def test_missing_raw_data_is_a_data_error(tmp_path):
    proc = cli("--model=VR", "--dataset=kuairec", f"--raw_data_path={tmp_path / 'nowhere'}", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert proc.stderr.startswith("error: ") and "recbole_lda download kuairec" in proc.stderr
