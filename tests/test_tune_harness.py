"""The tuning budget of each dataset (properties/tune/harness.yaml, recbole_lda.tuning.budget):
its values reach the studies' run keys and budgets, the command line wins, bad values and
misspelt keys stop the command, changes change the stored settings; ASHA's rungs and the
leaderboard's count of the trials that reached each. No Ray run (one test builds Ray's
ASHAScheduler, without starting Ray, to compare its rungs with ours)."""

import json
import re

import pandas as pd
import pytest

from recbole_lda.report import leaderboard
from recbole_lda.report.rungs import asha_reports, rung_counts, rung_epochs, rung_text
from recbole_lda.tuning.budget import HARNESS_FILE, dataset_budget, read_harness
from recbole_lda.config.options import OptionError
from recbole_lda.tuning.studies import asha_settings, budget, build_studies, check_settings, set_budget
from recbole_lda.config.entries import run_label
from recbole_lda.cli.tune import parser

HARNESS = """\
epochs: 30          # (int, >= 1) Maximum training epochs.
grace_period: 8     # (int, >= 1) ASHA: first rung.
reduction_factor: 3 # (int, >= 2) ASHA: rung ratio.
per_dataset:        # (dict) Values for one dataset.
"""


def studies_of(argv, harness_file=HARNESS_FILE):
    """build_studies, then what resolve_study and the command do without preparing data: the
    epoch cap read from the run keys, and the budget."""
    args, rest = parser().parse_known_args(["--models=VR,LDA", "--num_samples=8", "--output_dir=x", *argv])
    studies = build_studies(args, rest, harness_file=harness_file)
    for study in studies:
        study.max_epochs, study.metric, study.mode = int(study.overrides.get("epochs", 0)), "mae", "min"
        set_budget(study, args)
    return {(s.entry, s.dataset): s for s in studies}, args


def test_shipped_harness_values_reach_the_runs_and_the_study_budget():
    by, args = studies_of(["--datasets=synthetic,kuairand,kuairec"])
    expected = {"synthetic": ("8", 4, [4, 8]), "kuairand": ("30", 11, [11, 30]), "kuairec": ("30", 8, [8, 24, 30])}
    for (entry, dataset), study in by.items():
        epochs, grace, rungs = expected[dataset]
        assert study.overrides["epochs"] == epochs, (entry, dataset)
        assert study.budget == {"num_samples": 8, "search_seed": 0, "scheduler": "asha", "grace_period": grace,
                                "reduction_factor": 3}
        assert study.settings()["budget"] == study.budget and study.settings()["max_epochs"] == int(epochs)
        stored = budget(study, args)  # what the tuning JSON holds
        assert (stored["max_epochs"], stored["grace_period"], stored["reduction_factor"]) == (int(epochs), grace, 3)
        assert stored["rung_epochs"] == rungs
        assert stored["scheduler"].startswith(f"ASHA (grace_period={grace}, reduction_factor=3,")
    assert asha_settings(by[("LDA", "synthetic")]) == {"grace_period": 4, "max_t": 8, "reduction_factor": 3}
    # the epoch cap reaches RecBole's configuration of the runs
    from recbole_lda.config.configurator import Config

    study = by[("VR", "synthetic")]
    assert Config(study.model, study.dataset, None, None, dict(study.overrides))["epochs"] == 8


def test_command_line_overrides_win(tmp_path):
    by, args = studies_of(["--datasets=synthetic,kuairand", "--grace_period=5", "--reduction_factor=2",
                           "--grace_period.kuairand=3", "--epochs=6", "--epochs.kuairand=12"])
    synthetic, kuairand = by[("VR", "synthetic")], by[("LDA", "kuairand")]
    assert synthetic.overrides["epochs"] == "6" and synthetic.budget["grace_period"] == 5
    assert kuairand.overrides["epochs"] == "12" and kuairand.budget["grace_period"] == 3
    assert synthetic.budget["reduction_factor"] == kuairand.budget["reduction_factor"] == 2
    assert budget(kuairand, args)["rung_epochs"] == [3, 6, 12]
    assert "grace_period" not in kuairand.overrides  # a harness key, not a run key
    by, _ = studies_of(["--datasets=synthetic,kuairand[epochs=20]", "--reduction_factor.synthetic=4"])
    assert by[("VR", "kuairand")].overrides["epochs"] == "20" and by[("VR", "synthetic")].budget["reduction_factor"] == 4
    assert by[("VR", "kuairand")].budget["reduction_factor"] == 3
    # the grace period is capped at the epochs (ASHA needs grace <= max_t), and recorded so
    by, args = studies_of(["--datasets=kuairand", "--epochs=5"])
    assert by[("VR", "kuairand")].budget["grace_period"] == 5 and budget(by[("VR", "kuairand")], args)["rung_epochs"] == [5]
    # a config file that sets epochs wins over harness.yaml (and --epochs over the file)
    config = tmp_path / "c.yaml"
    config.write_text("epochs: 11\n")
    by, _ = studies_of(["--datasets=synthetic", f"--config_files={config}"])
    study = by[("VR", "synthetic")]
    assert "epochs" not in study.overrides
    from recbole_lda.config.configurator import Config

    assert Config(study.model, study.dataset, study.config_files, None, dict(study.overrides))["epochs"] == 11
    by, _ = studies_of(["--datasets=synthetic", f"--config_files={config}", "--epochs=2"])
    assert by[("VR", "synthetic")].overrides["epochs"] == "2"
    # FIFO: no ASHA settings in the budget; its only "rung" is the epoch cap
    by, args = studies_of(["--datasets=synthetic", "--scheduler=fifo"])
    assert by[("VR", "synthetic")].budget == {"num_samples": 8, "search_seed": 0, "scheduler": "fifo"}
    assert budget(by[("VR", "synthetic")], args)["rung_epochs"] == [8] and "grace_period" not in budget(by[("VR", "synthetic")], args)


def test_invalid_values_and_misspelt_keys_are_clear_errors(tmp_path):
    path = tmp_path / "harness.yaml"
    for text, message in [
        (HARNESS.replace("grace_period: 8 ", "grace_period: 0 "), r"harness.yaml: grace_period: 0: expected an integer >= 1"),
        (HARNESS.replace("reduction_factor: 3", "reduction_factor: 1"), r"reduction_factor: 1: expected an integer >= 2"),
        (HARNESS.replace("epochs: 30 ", "epochs: 2.5 "), r"epochs: 2.5: expected an integer"),
        (HARNESS + "  kuairand:\n    grace_perod: 4  # (int, >= 1) x\n",
         r"per_dataset: kuairand: unknown key 'grace_perod'; did you mean grace_period\?"),
        (HARNESS + "  kuairnd:\n    epochs: 4  # (int, >= 1) x\n",
         r"per_dataset: unknown dataset 'kuairnd'; did you mean kuairand or kuairec\? \(datasets: "),
        (HARNESS + "  kuairand:\n    grace_period: 0  # (int, >= 1) x\n", r"per_dataset: kuairand: grace_period: 0: expected"),
        (HARNESS + "grace_periods: 4  # (int, >= 1) x\n", r"harness.yaml: unknown key 'grace_periods'; did you mean grace_period\?"),
        (HARNESS.replace("reduction_factor: 3 # (int, >= 2) ASHA: rung ratio.\n", ""), r"\['reduction_factor'\] must be set"),
    ]:
        path.write_text(text)
        with pytest.raises(OptionError, match=message):
            read_harness(str(path))
    harness = read_harness(HARNESS_FILE)
    for common, own, message in [({"grace_period": 0}, {}, r"--grace_period=0: expected an integer >= 1"),
                                 ({}, {"grace_period": "0"}, r"--grace_period.kuairand='0': expected an integer >= 1"),
                                 ({}, {"reduction_factor": "x"}, r"--reduction_factor.kuairand='x': expected an integer")]:
        with pytest.raises(OptionError, match=message):
            dataset_budget(harness, "kuairand", common, own)
    with pytest.raises(OptionError, match="expected an integer >= 1"):
        studies_of(["--datasets=kuairand", "--grace_period.kuairand=0"])
    with pytest.raises(SystemExit):  # argparse: --grace_period takes an integer
        parser().parse_known_args(["--grace_period=1.5"])


def test_every_value_of_the_shipped_file_says_its_type_and_meaning():
    values = [line for line in open(HARNESS_FILE, encoding="utf-8") if re.match(r"^\s*\w+:\s*[^#\s]", line)]
    assert len(values) == 7  # 3 defaults, 2 x 2 per dataset
    for line in values:
        assert re.search(r"# \(int, >= [12]\) \S", line), line
    assert read_harness()["per_dataset"] == {"synthetic": {"epochs": 8, "grace_period": 4},
                                             "kuairand": {"epochs": 30, "grace_period": 11}}


def test_budget_changes_change_the_stored_settings(tmp_path):
    path = str(tmp_path / "VR__synthetic.study.json")
    study = studies_of(["--datasets=synthetic"])[0][("VR", "synthetic")]
    check_settings(path, study.settings(), has_results=False)
    check_settings(path, study.settings(), has_results=True)  # the same settings: nothing to say
    other = studies_of(["--datasets=synthetic", "--grace_period.synthetic=2"])[0][("VR", "synthetic")]
    with pytest.raises(OptionError, match=r"differences in \['budget'\]"):
        check_settings(path, other.settings(), has_results=True)
    other = studies_of(["--datasets=synthetic", "--reduction_factor=2"])[0][("VR", "synthetic")]
    with pytest.raises(OptionError, match=r"differences in \['budget'\]"):
        check_settings(path, other.settings(), has_results=True)
    other = studies_of(["--datasets=synthetic", "--epochs.synthetic=10"])[0][("VR", "synthetic")]
    with pytest.raises(OptionError, match=r"differences in \['max_epochs', 'overrides'\]"):
        check_settings(path, other.settings(), has_results=True)


# ---------------------------------------------------------------------------------------
# Rungs


def test_rung_epochs():
    assert rung_epochs(4, 3, 30) == [4, 12, 30]
    assert rung_epochs(8, 3, 30) == [8, 24, 30]
    assert rung_epochs(4, 3, 8) == [4, 8]
    assert rung_epochs(1, 3, 9) == [1, 3, 9]
    assert rung_epochs(2, 2, 16) == [2, 4, 8, 16]
    assert rung_epochs(10, 3, 8) == [8]  # grace capped at the epochs
    assert rung_epochs(4, 3, 30, eval_step=2) == [4, 12, 30]  # ASHA counts reports: 2, 6, 15
    assert asha_reports(4, 30, eval_step=2) == (2, 15)


@pytest.mark.parametrize("grace, factor, epochs", [(4, 3, 30), (8, 3, 30), (4, 3, 8), (1, 3, 9), (2, 2, 16), (3, 4, 50)])
def test_our_rungs_are_ray_ashas(grace, factor, epochs):
    schedulers = pytest.importorskip("ray.tune.schedulers")
    asha = schedulers.ASHAScheduler(time_attr="training_iteration", max_t=epochs, grace_period=grace,
                                    reduction_factor=factor)
    milestones = {m for m, _ in asha._brackets[0]._rungs}
    assert milestones - {epochs} == set(rung_epochs(grace, factor, epochs)[:-1])


def test_rung_counts_of_hand_made_trials():
    epochs = [30, 12, 4, 4, 2, 1, None, 3]  # None: errored before its first report
    assert rung_counts(epochs, [4, 12, 30]) == {4: 4, 12: 2, 30: 1}
    assert rung_text(epochs, [4, 12, 30]) == "4/8 ≥4 ep, 2/8 ≥12 ep, 1/8 ≥30 ep"
    assert rung_text([8, 8, 5], [8]) == "2/3 ≥8 ep"


def write_study(out, method, tuning, maes):
    (out / "tuning").mkdir(parents=True, exist_ok=True)
    (out / "runs").mkdir(exist_ok=True)
    params = {"learning_rate": 0.001}
    base = {"settings": {"metric": "mae", "eval_step": 1}, "method": method, "model": method, "dataset": "d",
            "trials_completed": 8, "trials_errored": 1, "best": {"params": params, "valid_score": 1.0},
            "wall_time_s": 60.0}
    (out / "tuning" / f"{method}__d.json").write_text(json.dumps({**base, **tuning}))
    for seed, mae in enumerate(maes):
        run = {"test_result": {"mae": mae, "xauc": 0.6, "rmse": 2 * mae, "xgauc": 0.5},
               "reference": {"train_mean": {"test_mae": 12.0}}, "train_time_per_epoch_s": 1.0, "epochs_run": 8,
               "tuned_params": params}
        (out / "runs" / f"{run_label(method, 'd', seed)}.json").write_text(json.dumps(run))


def test_leaderboard_counts_the_trials_that_reached_each_rung(tmp_path):
    trials = [{"trial_id": str(i), "epochs": e} for i, e in enumerate([30, 12, 4, 4, 2, 1, None, 3])]
    asha = "ASHA (grace_period=4, reduction_factor=3, on the running best valid mae per epoch)"
    write_study(tmp_path, "VR", {"budget": {"num_samples": 8, "max_epochs": 30, "scheduler": asha, "grace_period": 4,
                                            "reduction_factor": 3, "rung_epochs": [4, 12, 30]},
                                 "trials": trials}, [5.0, 5.2])
    # stored before rung_epochs were: the rungs come from the study's settings
    write_study(tmp_path, "TPM", {"budget": {"num_samples": 8, "max_epochs": 30, "scheduler": asha}, "trials": trials,
                                  "settings": {"metric": "mae", "eval_step": 1,
                                               "budget": {"grace_period": 4, "reduction_factor": 3.0}}}, [4.6, 4.8])
    write_study(tmp_path, "WLR", {"budget": {"num_samples": 3, "max_epochs": 8, "scheduler": "FIFO"},
                                  "trials": [{"epochs": 8}, {"epochs": 8}, {"epochs": 5}]}, [5.5, 5.6])
    write_study(tmp_path, "LDA", {"budget": {"num_samples": 8, "max_epochs": 30, "scheduler": "FIFO"}}, [4.4, 4.5])
    board = leaderboard.build(str(tmp_path))
    assert "| Trials reaching each rung |" in board.markdown
    table = pd.read_csv(tmp_path / "leaderboard.csv").set_index("model")
    expected = {"VR": "4/8 ≥4 ep, 2/8 ≥12 ep, 1/8 ≥30 ep", "TPM": "4/8 ≥4 ep, 2/8 ≥12 ep, 1/8 ≥30 ep",
                "WLR": "2/3 ≥8 ep", "LDA": "—"}  # LDA's study stored no trials
    for method, text in expected.items():
        assert table.loc[method, "rungs"] == text
        assert f"| d | {method} | " in board.markdown and f"| {text} |" in board.markdown
    assert json.loads(table.loc["VR", "rung_trials"]) == {"4": 4, "12": 2, "30": 1}
    assert json.loads(table.loc["WLR", "rung_trials"]) == {"8": 2} and json.loads(table.loc["LDA", "rung_trials"]) == {}
    row = next(line for line in board.markdown.splitlines() if line.startswith("| d | VR |"))
    assert row.startswith(f"| d | VR | 8 (8 / 1) | 30 | {asha} | 4/8 ≥4 ep, 2/8 ≥12 ep, 1/8 ≥30 ep | MAE 1.0000 |")
