"""compare (recbole_lda.cli.compare, recbole_lda.quick_start.compare): entry parsing, the summary table's statistics, resuming."""

import json

import numpy as np
import pandas as pd
import pytest

from recbole_lda.cli.compare import main
from recbole_lda.config.entries import parse_entry, split_entries
from recbole_lda.report.tables import summarise, to_markdown


def test_entries_parse_with_nested_brackets():
    assert split_entries("VR, LDA[lambda_ot=0;ot_reg=0.1],kuairand[split_dates=[20220416,20220417]]") == [
        "VR", "LDA[lambda_ot=0;ot_reg=0.1]", "kuairand[split_dates=[20220416,20220417]]"]
    assert parse_entry("LDA[lambda_ot=0; ot_reg=0.1]") == ("LDA", {"lambda_ot": "0", "ot_reg": "0.1"})
    assert parse_entry("kuairand[split_dates=[1,2]]") == ("kuairand", {"split_dates": "[1,2]"})
    with pytest.raises(ValueError, match=r"unrecognised override in 'LDA\[lambda_ot\]' '--lambda_ot'"):
        parse_entry("LDA[lambda_ot]")
    with pytest.raises(ValueError, match="bad entry"):
        parse_entry("LDA lambda")


def _record(entry, seed, mae, xauc, epoch_s, beta=np.nan, dataset="d"):
    return {"dataset": dataset, "entry": entry, "seed": seed, "mae": mae, "xauc": xauc, "xgauc": 0.5, "rmse": 1.0,
            "epoch_s": epoch_s, "epochs": 3, "train_mean_mae": 9.0, "oracle_mae": np.nan, "beta_effective_anchors": beta}


def test_summary_mean_std_and_time_relative_to_vr():
    table = summarise([
        _record("VR", 0, 6.0, 0.60, 2.0), _record("VR", 1, 7.0, 0.70, 4.0),
        _record("LDA", 0, 5.0, 0.75, 3.0, beta=2.0), _record("LDA", 1, 5.5, 0.65, 6.0, beta=3.0),
        _record("D2Q", 0, 4.0, 0.8, 1.0, dataset="e"),
    ]).set_index(["dataset", "model"])
    assert table.loc[("d", "VR"), "mae_mean"] == 6.5
    assert table.loc[("d", "VR"), "mae_std"] == pytest.approx(np.std([6.0, 7.0], ddof=1))
    assert table.loc[("d", "LDA"), "xauc_std"] == pytest.approx(np.std([0.75, 0.65], ddof=1))
    assert table.loc[("d", "LDA"), "epoch_time_vs_VR"] == pytest.approx(4.5 / 3.0)
    assert table.loc[("d", "LDA"), "beta_effective_anchors"] == 2.5
    assert np.isnan(table.loc[("d", "LDA"), "anchor_label_match"])  # records without the diagnostic
    assert np.isnan(table.loc[("e", "D2Q"), "epoch_time_vs_VR"])  # no VR on that dataset
    assert np.isnan(table.loc[("e", "D2Q"), "mae_std"])  # one seed: the sample std is undefined
    text = to_markdown(table.reset_index())
    assert "| LDA | 2 | nan | 5.2500 ± 0.3536 | 0.7000 ± 0.0707 |" in text  # records without valid_mae
    assert "| 1.50x | 2.50 |" in text and "n/a (no VR) | - |" in text


def test_summary_means_the_anchor_label_diagnostic():
    records = [_record("LDA", 0, 5.0, 0.7, 3.0), _record("LDA", 1, 5.5, 0.7, 3.0)]
    for r, match in zip(records, (0.2, 0.3)):
        r.update(anchor_label_match=match, anchor_label_chance=0.125, anchor_label_majority=0.4)
    row = summarise(records).iloc[0]
    assert row["anchor_label_match"] == pytest.approx(0.25) and row["anchor_label_chance"] == 0.125
    assert row["anchor_label_majority"] == pytest.approx(0.4)


def test_summary_p_values_against_an_entry():
    """Welch's test by hand: t = (mean_a - mean_b) / sqrt(va/na + vb/nb), Welch-Satterthwaite df."""
    from scipy import stats

    records = [_record("VR", 0, 6.0, 0.60, 2.0), _record("VR", 1, 7.0, 0.70, 4.0), _record("VR", 2, 6.8, 0.66, 4.0),
               _record("LDA", 0, 5.0, 0.75, 3.0), _record("LDA", 1, 5.5, 0.65, 6.0), _record("LDA", 2, 5.1, 0.71, 6.0)]
    for r in records:
        r["valid_mae"] = r["mae"] - 1
    table = summarise(records, versus="VR").set_index("model")
    a, b = np.array([5.0, 5.5, 5.1]), np.array([6.0, 7.0, 6.8])
    va, vb = a.var(ddof=1) / 3, b.var(ddof=1) / 3
    t = (a.mean() - b.mean()) / np.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 2)
    assert table.loc["LDA", "mae_p_vs"] == pytest.approx(2 * stats.t.sf(abs(t), df), rel=1e-9)
    assert np.isnan(table.loc["VR", "mae_p_vs"])  # not against itself
    assert table.loc["LDA", "valid_mae_mean"] == pytest.approx(a.mean() - 1)
    text = to_markdown(table.reset_index(), versus="VR")
    assert "p MAE vs VR | p XAUC vs VR |" in text
    assert f"| {table.loc['LDA', 'mae_p_vs']:.3g} | {table.loc['LDA', 'xauc_p_vs']:.3g} |" in text


def test_versus_must_be_an_entry(tmp_path):
    from recbole_lda.config.options import OptionError

    with pytest.raises(OptionError, match="--versus=D2Q: not an entry of --models"):
        main(["--models=VR,LDA", "--versus=D2Q", f"--output_dir={tmp_path}"])
    assert not any(tmp_path.iterdir())


def test_compare_runs_summarises_and_resumes(tmp_path, capsys):
    out = tmp_path / "cmp"
    args = ["--models=VR,VR[regression_loss=l1]", "--datasets=synthetic", "--seeds=2", f"--output_dir={out}",
            "--synthetic_rows=6000", "--synthetic_users=80", "--synthetic_items=120", "--epochs=2",
            f"--data_path={tmp_path / 'data'}", f"--checkpoint_dir={tmp_path / 'saved'}", "--log_dir=None",
            "--state=WARNING", "--train_batch_size=512"]
    main(args)
    runs = sorted((out / "runs").glob("*.json"))
    assert [p.name for p in runs] == ["VR__synthetic__seed0.json", "VR__synthetic__seed1.json",
                                      "VR_regression_loss=l1___synthetic__seed0.json",
                                      "VR_regression_loss=l1___synthetic__seed1.json"]
    summary = pd.read_csv(out / "summary.csv").set_index("model")
    for entry, prefix in (("VR", "VR__"), ("VR[regression_loss=l1]", "VR_regression_loss=l1___")):
        maes = [json.loads(p.read_text())["test_result"]["mae"] for p in runs if p.name.startswith(prefix)]
        assert summary.loc[entry, "mae_mean"] == pytest.approx(np.mean(maes))
        assert summary.loc[entry, "mae_std"] == pytest.approx(np.std(maes, ddof=1))
    stamps = [p.stat().st_mtime_ns for p in runs]
    capsys.readouterr()
    main(args)  # everything is stored: nothing is trained again
    assert capsys.readouterr().err.count("reusing") == 4
    assert [p.stat().st_mtime_ns for p in runs] == stamps
    assert json.loads((out / "summary.json").read_text())["command"][:4] == ["python", "-m", "recbole_lda", "compare"]


def test_a_metric_some_seeds_lack_gives_no_mean():
    """Older results files lack the newer XAUC conventions: a mean over the seeds that have
    one would be printed as a mean over all of them, so it is NaN instead."""
    old, new = _record("VR", 0, 6.0, 0.6, 2.0), _record("VR", 1, 7.0, 0.7, 2.0)
    new["xauc_dadf"] = 0.69
    table = summarise([old, new]).set_index("model")
    assert np.isnan(table.loc["VR", "xauc_dadf_mean"]) and table.loc["VR", "mae_mean"] == 6.5
