"""The package as a user gets it: import layers, light imports, no patching on import, and
a wheel installed in a fresh virtual environment that runs from a folder outside the checkout."""

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def python(code, cwd=ROOT, exe=sys.executable):
    out = subprocess.run([str(exe), "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_import_layers_hold():
    """The import-linter contracts of pyproject.toml (layers, models never import the run
    layer, dataset_prep stands alone, the leaderboard needs no torch)."""
    out = subprocess.run([str(BIN / "lint-imports")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


def test_light_modules_import_neither_torch_nor_recbole():
    loaded = python(
        "import sys, recbole_lda, recbole_lda.report.leaderboard, recbole_lda.report.tables, recbole_lda.utils.fileio, dataset_prep; "
        "print(sorted(m for m in ('torch', 'recbole', 'ray', 'ot') if m in sys.modules))"
    )
    assert loaded == "[]"


def test_importing_patches_nothing_until_a_run_applies_the_patches():
    out = python(
        "from recbole.evaluator import register; import recbole_lda.quick_start.quick_start, recbole_lda.config.configurator, "
        "recbole_lda.tuning.tune, baselines.vr, recbole_lda.model.lda; before = 'xauc' in register.metrics_dict; "
        "from recbole_lda import compat; compat.apply(); print(before, 'xauc' in register.metrics_dict)"
    )
    assert out == "False True"


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory):
    """Our wheel installed (without dependencies) into a fresh virtual environment that sees
    the test environment's third-party packages but not this checkout."""
    tmp = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp / "dist"), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )
    assert build.returncode == 0, build.stderr
    wheel = next((tmp / "dist").glob("recbole_lda-*.whl"))
    env = tmp / "venv"
    venv.EnvBuilder(with_pip=False).create(env)
    site = next((env / "lib").glob("python*/site-packages"))
    # third-party packages of the test environment, added after the new site (no .pth processing there,
    # so the checkout's editable install stays invisible)
    ours = next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    (site / "deps.pth").write_text(ours + "\n")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        capture_output=True, text=True, timeout=600,
    )
    assert install.returncode == 0, install.stderr
    (env / "bin" / "recbole-lda").write_text(
        f"#!{env / 'bin' / 'python'}\nfrom recbole_lda.cli import run_main\nrun_main()\n"
    )
    (env / "bin" / "recbole-lda").chmod(0o755)
    return env, wheel


def test_wheel_ships_the_yaml_defaults(installed_wheel):
    import zipfile

    _, wheel = installed_wheel
    names = zipfile.ZipFile(wheel).namelist()
    for required in ("recbole_lda/properties/overall.yaml", "recbole_lda/properties/model/LDA.yaml",
                     "recbole_lda/properties/dataset/synthetic.yaml", "recbole_lda/properties/tune/overall.yaml"):
        assert required in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    for script in ("recbole-lda =", "recbole-lda-compare =", "recbole-lda-tune =", "recbole-lda-leaderboard =",
                   "recbole-lda-download ="):
        assert script in text


def test_installed_package_runs_outside_the_checkout_with_our_defaults(installed_wheel, tmp_path):
    env, _ = installed_wheel
    exe = env / "bin" / "python"
    where = python("import recbole_lda; print(recbole_lda.__file__)", cwd=tmp_path, exe=exe)
    assert where.startswith(str(env)) and not where.startswith(str(ROOT))
    out = subprocess.run(
        [str(env / "bin" / "recbole-lda"), "--model=VR", "--dataset=synthetic", "--synthetic_rows=3000",
         "--synthetic_users=100", "--synthetic_items=150", "--epochs=1", "--torch_num_threads=1", "--data_path=data",
         "--log_dir=None", "--results_file=out/r.json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    results = json.loads((tmp_path / "out" / "r.json").read_text())
    hp = results["hyperparameters"]
    # ours, not RecBole's defaults (RecBole: MRR@10, epochs 300, stopping_step 10, embedding_size 64)
    assert hp["valid_metric"] == "MAE" and hp["stopping_step"] == 5 and hp["embedding_size"] == 16
    assert hp["regression_loss"] == "mse" and hp["split"] == "random"  # model and dataset YAML
    assert results["test_result"]["mae"] > 0
    assert not (tmp_path / "saved").exists() or not os.listdir(tmp_path / "saved")  # no checkpoint unless asked
