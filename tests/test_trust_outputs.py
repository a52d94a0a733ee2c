"""Trust, second round (issue 26): compare, the leaderboard and predict never show stale, doubled
or partial numbers as whole; no output overwrites another output or an input; every failure
is one line naming the option or file and what is expected.

Through the real command line (`python -m recbole_lda COMMAND`), except where a case needs a
patched network (download), which calls the same entry point in this process."""

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest

from test_trust import SMALL, one_line_error

ROOT = Path(__file__).resolve().parents[1]
TINY = [a for a in SMALL if not a.startswith(("--dataset=", "--log_dir="))] + ["--epochs=1"]


def cmd(command, *args, cwd, timeout=600):
    """`python -m recbole_lda COMMAND ARGS...` in `cwd`; CompletedProcess."""
    return subprocess.run([sys.executable, "-m", "recbole_lda", command, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def in_process(command, *args, cwd, monkeypatch, capsys):
    """The same command through `recbole_lda.cli.main` (what `python -m recbole_lda` calls) in this
    process: no interpreter start, for the cases that need no process of their own."""
    from recbole_lda.cli import main

    monkeypatch.chdir(cwd)
    capsys.readouterr()
    try:
        code = main([command, *args]) or 0
    except SystemExit as stop:
        code = stop.code
    out = capsys.readouterr()
    return subprocess.CompletedProcess([command, *args], code, out.out, out.err)


def sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """One compare folder (VR, one seed, one epoch) and one saved model, made once."""
    root = tmp_path_factory.mktemp("trust_outputs")
    proc = cmd("compare", "--models=VR", "--datasets=synthetic", "--seeds=1", "--output_dir=cmp", "--data_path=data",
               *TINY, cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = cmd("run", "--model=VR", "--dataset=synthetic", "--data_path=data", *TINY, "--save_model_dir=model",
               "--results_file=r.json", cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (root / "rows.csv").write_text("user_id,item_id,duration\n0,1,31.5\n1,2,12.0\n")
    return root


def compare_again(work, tmp_path, *args):
    """The fixture's compare command (or with `args` instead of --epochs=1) on a copy of its folder."""
    shutil.copytree(work / "cmp", tmp_path / "cmp")
    base = [a for a in TINY if not (args and a == "--epochs=1")]
    return cmd("compare", "--models=VR", "--datasets=synthetic", "--seeds=1", "--output_dir=cmp",
               f"--data_path={work / 'data'}", *base, *args, cwd=tmp_path)


# --- 1. compare reuses a stored run only when it is the same run


def test_compare_refuses_stored_runs_of_other_settings_and_reruns_them_on_request(work, tmp_path, monkeypatch, capsys):
    here = {"cwd": tmp_path, "monkeypatch": monkeypatch, "capsys": capsys}
    stored = tmp_path / "cmp" / "runs" / "VR__synthetic__seed0.json"
    proc = compare_again(work, tmp_path, "--epochs=2")
    line = one_line_error(proc, 2, str(Path("cmp") / "runs" / "VR__synthetic__seed0.json"), "epochs: stored 1, now 2",
                          "--rerun", "new --output_dir")
    assert "reusing" not in proc.stderr and sha(stored) == sha(work / "cmp" / "runs" / stored.name), line
    proc = in_process("compare", "--models=VR", "--datasets=synthetic[split_ratio=[0.7,0.15,0.15]]", "--seeds=1",
                      "--output_dir=cmp", f"--data_path={work / 'data'}", *TINY, **here)
    one_line_error(proc, 2, "split_ratio: stored [0.8, 0.1, 0.1], now [0.7, 0.15, 0.15]", "the data (prepared split")

    proc = cmd("compare", "--models=VR", "--datasets=synthetic", "--seeds=1", "--output_dir=cmp",
               f"--data_path={work / 'data'}", *TINY, cwd=tmp_path)
    assert proc.returncode == 0 and "reusing" in proc.stderr, proc.stderr[-2000:]  # the same run: reused

    shutil.copytree(work / "cmp", tmp_path / "rerun" / "cmp")
    here["cwd"] = tmp_path / "rerun"
    proc = in_process("compare", "--models=VR", "--datasets=synthetic", "--seeds=1", "--output_dir=cmp",
                      f"--data_path={work / 'data'}", *TINY[:-1], "--epochs=2", "--rerun", **here)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = json.loads((tmp_path / "rerun" / "cmp" / "runs" / stored.name).read_text())
    assert run["hyperparameters"]["epochs"] == 2 and run["epochs_run"] == 2
    summary = json.loads((tmp_path / "rerun" / "cmp" / "summary.json").read_text())
    assert [r["epochs"] for r in summary["runs"]] == [2]


def test_compare_refuses_a_stored_run_of_other_code_or_without_a_record(work, tmp_path, monkeypatch, capsys):
    here = {"cwd": tmp_path, "monkeypatch": monkeypatch, "capsys": capsys}
    shutil.copytree(work / "cmp", tmp_path / "cmp")
    path = tmp_path / "cmp" / "runs" / "VR__synthetic__seed0.json"
    run = json.loads(path.read_text())
    run["environment"]["code_sha256"] = "0" * 64
    path.write_text(json.dumps(run))
    args = ["--models=VR", "--datasets=synthetic", "--seeds=1", "--output_dir=cmp", f"--data_path={work / 'data'}"]
    one_line_error(in_process("compare", *args, *TINY, **here), 2, "the code (sha256 000000000000, now")
    del run["hyperparameters"]
    path.write_text(json.dumps(run))
    one_line_error(in_process("compare", *args, *TINY, **here), 2, "no recorded configuration")


# --- 2. an entry listed twice


@pytest.mark.parametrize("option, fragments", [
    ("--models=VR,VR", ["--models lists the same entry twice ('VR' and 'VR')"]),
    ("--models=LDA[lambda_ot=0;ot_reg=0.1],LDA[ ot_reg = 0.1 ; lambda_ot=0.0 ]",
     ["same entry twice", "'LDA[lambda_ot=0;ot_reg=0.1]'", "'LDA[ ot_reg = 0.1 ; lambda_ot=0.0 ]'"]),
    ("--datasets=synthetic,synthetic[split_seed=1]", ["--datasets lists the same name twice"]),
])
def test_compare_refuses_an_entry_listed_twice(tmp_path, option, fragments):
    args = [option] + (["--datasets=synthetic"] if option.startswith("--models") else ["--models=VR"])
    proc = cmd("compare", *args, "--seeds=1", "--output_dir=out", "--data_path=data", *TINY, cwd=tmp_path, timeout=120)
    one_line_error(proc, 2, *fragments)
    assert not (tmp_path / "out").exists()


def test_tune_refuses_an_entry_listed_twice(tmp_path):
    proc = cmd("tune", "--models=VR,VR[]", "--num_samples=1", "--output_dir=out", cwd=tmp_path)
    one_line_error(proc, 2, "--models lists the same entry twice ('VR' and 'VR[]')")
    assert not (tmp_path / "out").exists()


# --- 3. two outputs of a run that are one file, an output that is an input


def test_run_refuses_two_outputs_that_are_one_file(tmp_path):
    proc = cmd("run", "--model=VR", "--dataset=synthetic", "--data_path=data", "--results_file=same.json",
               "--predictions_file=./same.json", cwd=tmp_path)
    one_line_error(proc, 2, "--results_file=same.json and --predictions_file=./same.json are the same file")
    assert os.listdir(tmp_path) == []  # nothing written, no data prepared


@pytest.mark.parametrize("args, fragments", [
    (["--config_files=mine.yaml", "--results_file=mine.yaml"], ["--results_file=mine.yaml would replace the config file mine.yaml, which the command reads"]),
    (["--save_model_dir=m", "--predictions_file=m/p.csv"], ["--predictions_file=m/p.csv is inside --save_model_dir=m, which is replaced whole"]),
    (["--results_file=r.log", "--predictions_file=r.log.log"], ["--predictions_file=r.log.log and the run's log"]),
])
def test_run_refuses_an_output_over_an_input_or_inside_the_model_folder(tmp_path, monkeypatch, capsys, args, fragments):
    (tmp_path / "mine.yaml").write_text("epochs: 1\n")
    proc = in_process("run", "--model=VR", "--dataset=synthetic", "--data_path=data", *args, cwd=tmp_path,
                      monkeypatch=monkeypatch, capsys=capsys)
    one_line_error(proc, 2, *fragments)
    assert sorted(os.listdir(tmp_path)) == ["mine.yaml"] and (tmp_path / "mine.yaml").read_text() == "epochs: 1\n"


# --- 4. predict never writes over its input, its other output or the model


@pytest.mark.parametrize("args, fragments", [
    (["--output=pred.csv", "--summary_file=pred.csv"], ["--output=pred.csv and --summary_file=pred.csv are the same file"]),
    (["--output=pred.csv", "--summary_file=rows.csv"], ["--summary_file=rows.csv would replace --input=rows.csv, which the command reads"]),
    (["--output=model/model.safetensors"], ["--output=model/model.safetensors is inside --model_dir=model, which the command reads"]),
    (["--output=rows.csv"], ["--output=rows.csv would replace --input=rows.csv"]),
])
def test_predict_refuses_outputs_over_inputs_outputs_or_the_model(work, monkeypatch, capsys, args, fragments):
    before = {p: sha(work / p) for p in ("rows.csv", "model/model.safetensors", "model/manifest.json")}
    argv = ["predict", "--model_dir=model", "--input=rows.csv", *args]
    proc = (cmd(*argv, cwd=work) if args[1:] == ["--summary_file=pred.csv"]
            else in_process(*argv, cwd=work, monkeypatch=monkeypatch, capsys=capsys))
    one_line_error(proc, 2, *fragments)
    assert {p: sha(work / p) for p in before} == before and not (work / "pred.csv").exists()


def test_evaluate_refuses_an_output_over_its_input(tmp_path):
    (tmp_path / "preds").mkdir()
    rows = "user_id,item_id,duration,label,prediction\n0,1,10.0,5.0,4.0\n1,2,20.0,3.0,6.0\n"
    (tmp_path / "preds" / "a.csv").write_text(rows)
    one_line_error(cmd("evaluate", "--input=preds/a.csv", "--output=preds/a.csv", cwd=tmp_path), 2,
                   "--output=preds/a.csv would replace --input=preds/a.csv")
    one_line_error(cmd("evaluate", "--input=preds", "--output=preds/metrics.json", cwd=tmp_path), 2,
                   "--output=preds/metrics.json is inside --input=preds, which the command reads")
    assert os.listdir(tmp_path / "preds") == ["a.csv"] and (tmp_path / "preds" / "a.csv").read_text() == rows


# --- 5. an unknown --proposed


def write_board(out, seeds=3, drop=()):
    from test_leaderboard import write_fake_results

    write_fake_results(out)
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "seeds": seeds}))
    for path in drop:
        (out / path).unlink()


def test_leaderboard_refuses_an_unknown_proposed_method(tmp_path):
    write_board(tmp_path)
    proc = cmd("leaderboard", f"--output_dir={tmp_path}", "--proposed=LDa", cwd=tmp_path)
    one_line_error(proc, 2, "--proposed=LDa: not a method of this folder; did you mean LDA?", "methods: VR, TPM, LDA")
    assert not (tmp_path / "leaderboard.md").exists()
    proc = cmd("tune", "--models=VR,LDA", "--num_samples=1", "--output_dir=out", "--proposed=NOPE", cwd=tmp_path)
    one_line_error(proc, 2, "--proposed=NOPE: not an entry of --models", "models: VR, LDA")
    assert not (tmp_path / "out").exists()


# --- 6. missing or unreadable inputs of the leaderboard


def test_leaderboard_names_missing_results_and_bolds_only_whole_columns(tmp_path):
    write_board(tmp_path, drop=["tuning/LDA__d1.json"])
    proc = cmd("leaderboard", f"--output_dir={tmp_path}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    warning = "LDA on d1: no result: tuning/LDA__d1.json is missing (no finished study)"
    assert f"warning: {warning}" in proc.stderr.splitlines()
    markdown = (tmp_path / "leaderboard.md").read_text()
    d1_rows = [line for line in markdown.splitlines() if line.startswith("| VR |") or line.startswith("| TPM |")]
    assert all("**" not in row.split(" | ")[1] + row.split(" | ")[2] for row in d1_rows)  # no best in d1's columns
    assert "| LDA | — | — |" in markdown and f"- {warning}" in markdown
    assert "No best is marked in d1 MAE, d1 XAUC" in markdown and "**9.1000 ± 0.1000**" in markdown  # d2 is whole

    proc = cmd("leaderboard", f"--output_dir={tmp_path}", "--strict", cwd=tmp_path)
    one_line_error(proc, 1, "1 expected result(s) missing or partial (--strict)", warning)


def test_leaderboard_names_a_run_file_of_the_wrong_schema_and_shows_the_seed_count(tmp_path):
    write_board(tmp_path)
    (tmp_path / "runs" / "TPM__d2__seed1.json").write_text('{"mae": 1}')
    (tmp_path / "runs" / "VR__d2__seed2.json").write_text('{"test_result": {"mae": 9.2')  # truncated
    proc = cmd("leaderboard", f"--output_dir={tmp_path}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert ("warning: TPM on d2: 2 of 3 seeds: runs/TPM__d2__seed1.json has no 'test_result.mae'; expected the "
            "results of a final run written by python -m recbole_lda tune") in proc.stderr
    assert "VR on d2: 2 of 3 seeds: runs/VR__d2__seed2.json cannot be read" in proc.stderr
    markdown = (tmp_path / "leaderboard.md").read_text()
    assert "(n=2 of 3)" in markdown and "No best is marked in d2 MAE, d2 XAUC" in markdown


# --- messages that name the option or file and what is expected


def test_compare_without_entries_names_the_option(tmp_path):
    for models in ("--models=", "--models=,"):
        proc = cmd("compare", models, "--datasets=synthetic", "--output_dir=out", cwd=tmp_path)
        one_line_error(proc, 2, "--models: no entry given; expected comma-separated NAME or NAME[key=value;...]")
    assert os.listdir(tmp_path) == []


def write_compare_folder(folder, histories):
    (folder / "runs").mkdir(parents=True)
    runs = []
    for seed, history in enumerate(histories):
        runs.append({"entry": "VR", "dataset": "d", "seed": seed})
        result = {} if history is None else {"valid_history": [{"epoch": e, "mae": m} for e, m in enumerate(history)]}
        (folder / "runs" / f"VR__d__seed{seed}.json").write_text(json.dumps(result))
    (folder / "summary.json").write_text(json.dumps({"runs": runs}))


@pytest.mark.parametrize("histories, remove_runs, fragments", [
    ([None], False, ["VR__d__seed0.json has no valid_history", "expected the results of python -m recbole_lda run"]),
    ([[], []], False, ["--runs: no run in", "has a validation history (2 runs never validated)"]),
    ([[5.0, 4.0]], True, ["VR__d__seed0.json is missing, although summary.json lists it", "compare command"]),
])
def test_curves_names_the_run_file_and_what_is_expected(tmp_path, histories, remove_runs, fragments):
    write_compare_folder(tmp_path / "cmp", histories)
    if remove_runs:
        shutil.rmtree(tmp_path / "cmp" / "runs")
    one_line_error_or_warned(cmd("curves", "--runs=cmp", "--output=out/c", cwd=tmp_path), *fragments)
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")


def one_line_error_or_warned(proc, *fragments):
    """The failure's last line is `error: ...` naming `fragments`; any line before it is a warning."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and lines[-1].startswith("error: "), proc.stderr
    assert all(line.startswith("warning: ") for line in lines[:-1]), proc.stderr
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]


def test_curves_never_writes_over_a_compare_folders_files(tmp_path):
    write_compare_folder(tmp_path / "cmp", [[5.0, 4.0]])
    proc = cmd("curves", "--runs=cmp", "--output=cmp/summary", cwd=tmp_path)
    one_line_error(proc, 2, "--output=cmp/summary.csv would replace the compare folder's file cmp/summary.csv")
    assert sorted(os.listdir(tmp_path / "cmp")) == ["runs", "summary.json"]


def test_leaderboard_names_a_tuning_file_without_the_keys_of_a_study(tmp_path):
    (tmp_path / "tuning").mkdir()
    (tmp_path / "tuning" / "X__d.json").write_text('{"foo": 1}')
    one_line_error(cmd("leaderboard", f"--output_dir={tmp_path}", cwd=tmp_path), 1,
                   "tuning/X__d.json has no 'method'; expected a finished study written by python -m recbole_lda tune")
    write_board(tmp_path)  # beside readable studies: a warning, and the board is made
    proc = cmd("leaderboard", f"--output_dir={tmp_path}", cwd=tmp_path)
    assert proc.returncode == 0 and "warning: tuning/X__d.json has no 'method'" in proc.stderr, proc.stderr


def test_output_folders_under_a_file_are_named(tmp_path):
    (tmp_path / "afile").write_text("")
    one_line_error(cmd("compare", "--models=VR", "--output_dir=afile", cwd=tmp_path), 2,
                   "--output_dir=afile: is a file; expected a folder")
    one_line_error(cmd("compare", "--models=VR", "--output_dir=afile/cmp", cwd=tmp_path), 2,
                   "--output_dir=afile/cmp:", "afile is a file, so no folder can be created under it")
    one_line_error(cmd("download", "kuairec", "--dest", "afile/raw", cwd=tmp_path), 2,
                   "--dest=afile/raw:", "afile is a file, so no folder can be created under it")


def test_predict_input_device_and_tune_sample_messages(work, tmp_path, monkeypatch, capsys):
    here = {"cwd": work, "monkeypatch": monkeypatch, "capsys": capsys}
    one_line_error(cmd("predict", "--model_dir=model", "--input=model", "--output=p.csv", cwd=work), 2,
                   "--input=model: is a folder; expected a CSV file of rows to score")
    import torch

    if not torch.cuda.is_available():
        one_line_error(in_process("predict", "--model_dir=model", "--input=rows.csv", "--output=p.csv", "--device=cuda",
                                  **here), 2, "--device=cuda: no CUDA device here", "use --device=cpu")
    one_line_error(in_process("predict", "--model_dir=model", "--input=rows.csv", "--output=p.csv", "--device=gpu",
                              **here), 2, "--device=gpu: expected cpu, cuda or cuda:N")
    assert not (work / "p.csv").exists()
    one_line_error(cmd("tune", "--models=VR", "--num_samples=0", "--output_dir=out", cwd=tmp_path), 2,
                   "--num_samples=0: expected an integer >= 1")


def test_a_truncated_run_file_says_what_to_do(work, tmp_path, monkeypatch, capsys):
    here = {"cwd": tmp_path, "monkeypatch": monkeypatch, "capsys": capsys}
    shutil.copytree(work / "cmp", tmp_path / "cmp")
    path = tmp_path / "cmp" / "runs" / "VR__synthetic__seed0.json"
    path.write_text(path.read_text()[:100])
    args = ["--models=VR", "--datasets=synthetic", "--seeds=1", "--output_dir=cmp", f"--data_path={work / 'data'}",
            *TINY]
    one_line_error(in_process("compare", *args, **here), 2, "VR__synthetic__seed0.json cannot be read",
                   "delete it or pass --rerun")
    proc = in_process("compare", *args, "--rerun", **here)
    assert proc.returncode == 0 and json.loads(path.read_text())["test_result"], proc.stderr[-2000:]


def test_download_fails_at_once_on_a_name_that_does_not_resolve(tmp_path, monkeypatch, capsys):
    from dataset_prep import download
    from recbole_lda.cli import main

    def no_dns(*args, **kwargs):
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    monkeypatch.setattr(download.urllib.request, "urlopen", no_dns)
    monkeypatch.setattr(download.time, "sleep", lambda s: pytest.fail("retried a name that does not resolve"))
    with pytest.raises(SystemExit) as stop:
        main(["download", "kuairec", "--dest", str(tmp_path / "raw"), "--url", "https://nowhere.invalid/KuaiRec.zip"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert stop.value.code == 1 and "cannot resolve the host name 'nowhere.invalid'" in err and ".part" not in err
    # a transfer that keeps failing with nothing received does not speak of a .part file either
    monkeypatch.setattr(download.urllib.request, "urlopen", lambda *a, **k: (_ for _ in ()).throw(ConnectionError("reset")))
    with pytest.raises(download.DownloadError, match="gave up after 1 attempt.*nothing was downloaded") as failed:
        download.download("https://example.invalid/x.zip", str(tmp_path / "x.zip"), retries=0)
    assert ".part" not in str(failed.value)


# --- small things


def test_a_single_seed_has_no_std(work, tmp_path):
    summary = (work / "cmp" / "summary.md").read_text()
    assert "(n=1)" in summary and "± 0.0000" not in summary
    write_board(tmp_path, seeds=1, drop=[f"runs/{m}__{d}__seed{s}.json" for m in ("VR", "TPM", "LDA")
                                           for d in ("d1", "d2") for s in (1, 2)])
    proc = cmd("leaderboard", f"--output_dir={tmp_path}", cwd=tmp_path)
    assert proc.returncode == 0 and "5.0000 (n=1)" in proc.stdout and "± 0.0000" not in proc.stdout, proc.stderr


def test_results_record_absolute_paths_and_runs_leave_nothing_they_do_not_use(work, tmp_path, monkeypatch, capsys):
    results = json.loads((work / "r.json").read_text())
    for key in ("saved_model_dir", "results_file", "log_file"):
        assert results[key] == str(work / Path(key.replace("saved_model_dir", "model").replace("results_file", "r.json")
                                               .replace("log_file", "r.log"))), key
    assert all(os.path.isabs(results["hyperparameters"][k]) for k in ("data_path", "checkpoint_dir", "results_file"))
    assert results["environment"]["working_dir"] == str(work)
    assert not (work / "log").exists() and not (work / "saved").exists()  # nothing the runs did not use
    assert (work / "r.log").is_file() and (work / "cmp" / "runs" / "VR__synthetic__seed0.log").is_file()
    assert "VR on synthetic" in (work / "r.log").read_text()
    # --log_dir: a file per run, never one shared by two runs (of one model and dataset, in one process even)
    for seed in (1, 2):
        proc = in_process("run", "--model=VR", "--dataset=synthetic", f"--data_path={work / 'data'}", *TINY,
                          "--log_dir=logs", f"--seed={seed}", cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
        assert proc.returncode == 0, proc.stderr[-2000:]
    logs = sorted(os.listdir(tmp_path / "logs"))
    assert len(logs) == 2 and all(n.startswith("VR-synthetic-") and n.endswith(".log") for n in logs)
    assert sorted(os.listdir(tmp_path)) == ["logs"]  # no ./log/, no ./saved/


def test_docs_name_no_folder_of_one_machine():
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            assert "/work/" not in line and "/home/" not in line, f"{path.name}:{number}: {line}"
