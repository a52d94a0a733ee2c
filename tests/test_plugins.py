"""Plug-in models (recbole_lda.config.plugins, the registry): the example of docs/extending.md
(docs/examples/lognormal_watch) installed into a temporary folder outside the repository,
found through its entry point or as `package.module:Class`; the contract checks; and the
plug-in through compare, tune and its leaderboard, save and predict.

A temporary "installed" package is a folder holding the package and a
`<name>-0.1.dist-info/{METADATA,entry_points.txt}`, put first on sys.path (and on PYTHONPATH
for the commands run as subprocesses), which is where importlib.metadata looks.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from recbole_lda.config import registry
from recbole_lda.config.configurator import Config
from recbole_lda.config.options import OptionError, parse_key_values
from recbole_lda.config.plugins import PluginError
from recbole_lda.tuning.studies import read_search_space, SPACE_DIR
from recbole_lda.utils.errors import UnknownNameError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "lognormal_watch"
SMALL = ["--synthetic_rows=4000", "--synthetic_users=150", "--synthetic_items=200", "--log_dir=None",
         "--show_progress=False", "--epochs=1", "--train_batch_size=512"]
GOOD_YAML = "scale: 1.0   # (float, > 0) A key of the model.\n"
MODEL_SOURCE = '''
from recbole_lda.model import WatchTimeRecommender
import torch.nn as nn

class Good(WatchTimeRecommender):
    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.head = nn.Linear(self.backbone.output_dim, 1)
    def calculate_loss(self, interaction):
        return (self.head(self.backbone(interaction)).squeeze(-1) - interaction[self.LABEL]).abs().mean()
    def predict(self, interaction):
        return self.head(self.backbone(interaction)).squeeze(-1)

class NoPredict(WatchTimeRecommender):
    def calculate_loss(self, interaction):
        return 0

class NotAModel:
    pass

class BadSignature(Good):
    def __init__(self, config):
        pass

NoYaml = type("NoYaml", (Good,), {})
Untyped = type("Untyped", (Good,), {})
'''


def install(site, package, source_dir=None, files=None, entry_points=()):
    """A package in folder `site` with a dist-info declaring `entry_points` (name, value) of
    group recbole_lda.models; `source_dir` is copied, or `files` {name: text} written."""
    target = site / package
    if source_dir is not None:
        shutil.copytree(source_dir, target)
    else:
        target.mkdir(parents=True)
        for name, text in (files or {}).items():
            (target / name).write_text(text)
    info = site / f"{package}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1\n")
    lines = "".join(f"{name} = {value}\n" for name, value in entry_points)
    (info / "entry_points.txt").write_text(f"[recbole_lda.models]\n{lines}")
    return site


@pytest.fixture(autouse=True)
def forget_plugin_modules():
    """Each test imports its own temporary packages afresh (not a module another test's folder gave)."""
    yield
    for name in [m for m in sys.modules if m.split(".")[0] in ("lognormal_watch", "plugpkg")]:
        del sys.modules[name]


@pytest.fixture
def example(tmp_path, monkeypatch):
    site = install(tmp_path / "site", "lognormal_watch", EXAMPLE,
                   entry_points=[("LogNormal", "lognormal_watch.lognormal:LogNormal")])
    monkeypatch.syspath_prepend(str(site))
    return site


def test_entry_point_and_class_spec_name_the_same_checked_class(example):
    by_name = registry.get_model("LogNormal")
    assert by_name is registry.get_model("lognormal_watch.lognormal:LogNormal")
    assert by_name.__module__ == "lognormal_watch.lognormal"
    assert registry.model_names()[-1] == "LogNormal" and registry.model_names()[:2] == ("LDA", "VR")
    assert registry.defaults_file("LogNormal") == str(example / "lognormal_watch" / "LogNormal.yaml")
    with pytest.raises(UnknownNameError, match=r"unknown model 'LogNormall'; did you mean LogNormal\?"):
        registry.get_model("LogNormall")
    # the search space: overall.yaml's keys, then LogNormal.tune.yaml's beside the module
    space = read_search_space("LogNormal", SPACE_DIR)
    assert space["min_sigma"] == {"choice": [0.01, 0.05, 0.2]} and "learning_rate" in space


def test_plugin_keys_are_checked_like_ours(example):
    config = Config("LogNormal", "synthetic", config_dict={"state": "WARNING"})
    assert (config["point"], config["min_sigma"]) == ("median", 0.05)
    with pytest.raises(OptionError, match=r"unknown option --min_sigmaa; did you mean --min_sigma\?"):
        Config("LogNormal", "synthetic", cmd_overrides={"min_sigmaa": "0.1"})
    with pytest.raises(OptionError, match=r"--point='mode': expected one of median, mean"):
        Config("LogNormal", "synthetic", cmd_overrides={"point": "mode"})
    with pytest.raises(OptionError, match=r"--min_sigma=0: expected a number > 0"):
        Config("LogNormal", "synthetic", cmd_overrides={"min_sigma": "0"})


def broken_site(tmp_path):
    files = {"__init__.py": "", "models.py": MODEL_SOURCE, "Good.yaml": GOOD_YAML, "NoPredict.yaml": GOOD_YAML,
             "BadSignature.yaml": GOOD_YAML, "Untyped.yaml": "scale: 1.0\n",
             "failing.py": "raise ImportError('needs a package that is not installed')\n"}
    entries = [(name, f"plugpkg.models:{name}") for name in ("Good", "NoPredict", "NotAModel", "BadSignature",
                                                            "NoYaml", "Untyped")]
    entries += [("VR", "plugpkg.models:Good"), ("Failing", "plugpkg.failing:Model")]
    return install(tmp_path / "site", "plugpkg", files=files, entry_points=entries)


CONTRACT = [
    ("NoPredict", r"model 'NoPredict': class NoPredict does not define predict \(see"),
    ("NotAModel", r"model 'NotAModel': <class 'plugpkg.models.NotAModel'> is not a subclass of "
                  r"recbole_lda.model.WatchTimeRecommender"),
    ("BadSignature", r"BadSignature\(config, dataset\) must build the model \(its signature is \(config\)\)"),
    ("NoYaml", r"its defaults file .*plugpkg/NoYaml.yaml is missing"),
    ("Untyped", r"Untyped.yaml, line 1: key 'scale' has no `# \(type\[, range\]\) meaning` comment"),
    ("VR", r"model name 'VR' is both ours \(baselines.vr\) and a plug-in \(entry point VR = plugpkg.models:Good "
           r"of plugpkg\): refused"),
    ("Failing", r"plug-in model 'Failing' \(entry point Failing = plugpkg.failing:Model of plugpkg\) failed to "
                r"load: ImportError: needs a package that is not installed"),
    ("plugpkg.models:Nothing", r"module plugpkg.models \(.*\) has no 'Nothing'"),
    ("plugpkg.absent:Good", r"module 'plugpkg.absent' failed to import: ModuleNotFoundError"),
]


@pytest.mark.parametrize("name,message", CONTRACT, ids=[c[0] for c in CONTRACT])
def test_a_broken_plugin_is_refused_with_what_is_wrong_and_breaks_no_other(tmp_path, monkeypatch, name, message):
    monkeypatch.syspath_prepend(str(broken_site(tmp_path)))
    with pytest.raises(PluginError, match=message):
        registry.get_model(name)
    assert registry.get_model("Good").__name__ == "Good" and registry.get_model("LDA").__name__ == "LDA"


def command(*args, cwd, site, timeout=400):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), "PYTHONWARNINGS": "ignore",
           "RAY_USAGE_STATS_ENABLED": "0"}
    proc = subprocess.run([sys.executable, "-m", "recbole_lda", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def test_plugin_through_compare_tune_leaderboard_save_and_predict(example, tmp_path):
    from recbole_lda.quick_start import run
    from recbole_lda.quick_start.compare import compare

    data = ["--dataset=synthetic", f"--data_path={tmp_path / 'data'}", *SMALL]
    keys = {**parse_key_values(data[1:]), "torch_num_threads": "1"}  # tune sets threads from --cpus_per_trial
    # compare (in this process), with the class named as package.module:Class and an override in brackets
    summary = compare(["lognormal_watch.lognormal:LogNormal[point=mean]"], ["synthetic"], 1, str(tmp_path / "cmp"),
                      keys)
    assert list(summary["model"]) == ["lognormal_watch.lognormal:LogNormal[point=mean]"]
    result = json.loads(next((tmp_path / "cmp" / "runs").glob("*.json")).read_text())
    assert result["hyperparameters"]["point"] == "mean" and summary["mae_mean"][0] == result["test_result"]["mae"]

    # tune: the plug-in (by its entry-point name) beside VR, on the same budget; the leaderboard
    command("tune", "--models=VR,LogNormal", "--datasets=synthetic", "--num_samples=1", "--seeds=1",
            "--output_dir=tuned", "--num_cpus=2", "--scheduler=fifo", *data[1:], cwd=tmp_path, site=example)
    board = pd.read_csv(tmp_path / "tuned" / "leaderboard.csv")
    assert sorted(board["model"]) == ["LogNormal", "VR"]
    study = json.loads((tmp_path / "tuned" / "tuning" / "LogNormal__synthetic.json").read_text())
    assert study["settings"]["space"]["min_sigma"] == {"choice": [0.01, 0.05, 0.2]}
    assert study["best"]["params"]["min_sigma"] in (0.01, 0.05, 0.2)

    # save, then predict the run's own test rows in a new process: the same predictions
    run("LogNormal", "synthetic", cmd_overrides={**keys, "save_model_dir": str(tmp_path / "model"),
                                                 "predictions_file": str(tmp_path / "test_pred.csv")})
    test_pred = pd.read_csv(tmp_path / "test_pred.csv")
    rows = test_pred[["user_id", "item_id", "duration"]]
    rows.to_csv(tmp_path / "rows.csv", index=False)
    command("predict", "--model_dir=model", "--input=rows.csv", "--output=out.csv", cwd=tmp_path, site=example)
    out = pd.read_csv(tmp_path / "out.csv")
    assert len(out) == len(test_pred) > 0
    assert (out["prediction"] - test_pred["prediction"]).abs().max() < 1e-4
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert manifest["model"] == "LogNormal"
