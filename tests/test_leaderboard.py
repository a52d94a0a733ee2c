"""The leaderboard (recbole_lda.report.leaderboard) on hand-made stored results: exact means and
spreads, best marks, LDA's improvement over the best baseline, Welch's p, the file formats."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from recbole_lda.report import leaderboard
from recbole_lda.config.entries import run_label

FAKE = {  # (method, dataset) -> per-seed (mae, xauc)
    ("VR", "d1"): [(5.0, 0.60), (5.2, 0.61), (5.1, 0.62)],
    ("TPM", "d1"): [(4.6, 0.64), (4.8, 0.63), (4.7, 0.65)],
    ("LDA", "d1"): [(4.4, 0.63), (4.5, 0.64), (4.3, 0.62)],
    ("VR", "d2"): [(9.0, 0.55), (9.1, 0.56), (9.2, 0.57)],
    ("TPM", "d2"): [(9.5, 0.58), (9.4, 0.59), (9.6, 0.60)],
    ("LDA", "d2"): [(9.3, 0.61), (9.2, 0.60), (9.4, 0.62)],
}


def write_fake_results(out):
    for (method, dataset), scores in FAKE.items():
        params = {"learning_rate": 0.001 if method != "LDA" else 0.002}
        tuning = {
            "settings": {"metric": "mae"}, "method": method, "model": method, "dataset": dataset,
            "budget": {"num_samples": 4, "max_epochs": 10, "scheduler": "FIFO"},
            "trials_completed": 4, "trials_errored": 0, "best": {"params": params, "valid_score": 1.0},
            "wall_time_s": 60.0,
        }
        (out / "tuning").mkdir(parents=True, exist_ok=True)
        (out / "tuning" / f"{method}__{dataset}.json").write_text(json.dumps(tuning))
        (out / "runs").mkdir(exist_ok=True)
        for seed, (mae, xauc) in enumerate(scores):
            run = {"test_result": {"mae": mae, "xauc": xauc, "rmse": 2 * mae, "xgauc": xauc - 0.1},
                   "reference": {"train_mean": {"test_mae": 12.0}}, "train_time_per_epoch_s": 1.5, "epochs_run": 10,
                   "tuned_params": params}
            (out / "runs" / f"{run_label(method, dataset, seed)}.json").write_text(json.dumps(run))
    # a stale run (other configuration) is left out
    stale = {"test_result": {"mae": 0.0, "xauc": 1.0}, "tuned_params": {"learning_rate": 9.0}}
    (out / "runs" / f"{run_label('LDA', 'd1', 7)}.json").write_text(json.dumps(stale))
    (out / "manifest.json").write_text(json.dumps({"methods": ["VR", "TPM", "LDA"], "datasets": ["d1", "d2"],
                                                    "proposed": "LDA", "command": "python -m recbole_lda tune ..."}))


def test_leaderboard_numbers_best_marks_improvement_and_welch(tmp_path):
    write_fake_results(tmp_path)
    board = leaderboard.build(str(tmp_path))
    table = pd.read_csv(tmp_path / "leaderboard.csv")
    assert list(table["model"]) == ["VR", "TPM", "LDA"] * 2 and list(table["dataset"]) == ["d1"] * 3 + ["d2"] * 3
    for row in table.itertuples():
        mae, xauc = np.array(FAKE[(row.model, row.dataset)]).T
        assert row.seeds == 3
        assert row.mae_mean == pytest.approx(mae.mean(), abs=1e-12)
        assert row.mae_std == pytest.approx(mae.std(ddof=1), abs=1e-12)
        assert row.xauc_mean == pytest.approx(xauc.mean(), abs=1e-12)
        assert row.xauc_std == pytest.approx(xauc.std(ddof=1), abs=1e-12)
        assert f"{mae.mean():.4f} ± {mae.std(ddof=1):.4f}" in board.markdown
    best = table.set_index(["dataset", "model"])
    assert best.loc[("d1", "LDA"), "mae_best"] and best.loc[("d1", "TPM"), "xauc_best"]
    assert best.loc[("d2", "VR"), "mae_best"] and best.loc[("d2", "LDA"), "xauc_best"]
    assert best[["mae_best", "xauc_best"]].sum().tolist() == [2, 2]
    # LDA vs the best baseline of each column
    d1 = best.loc[("d1", "LDA")]
    assert d1.mae_best_baseline == "TPM" and d1.mae_improvement_pct == pytest.approx(100 * (4.7 - 4.4) / 4.7)
    lda, tpm = np.array(FAKE[("LDA", "d1")]).T, np.array(FAKE[("TPM", "d1")]).T
    assert d1.mae_welch_p == pytest.approx(stats.ttest_ind(lda[0], tpm[0], equal_var=False).pvalue)
    assert d1.xauc_best_baseline == "TPM" and d1.xauc_improvement_pct == pytest.approx(100 * (0.63 - 0.64) / 0.64)
    d2 = best.loc[("d2", "LDA")]
    assert d2.mae_best_baseline == "VR" and d2.mae_improvement_pct == pytest.approx(100 * (9.1 - 9.3) / 9.1)
    assert np.isnan(best.loc[("d1", "VR"), "mae_improvement_pct"])
    assert "| LDA vs best baseline | +6.4% vs TPM (p=" in board.markdown and "**4.4000 ± 0.1000**" in board.markdown
    tex = (tmp_path / "leaderboard.tex").read_text()
    assert "$\\mathbf{4.4000} \\pm 0.1000$" in tex and "\\multicolumn{2}{c}{d1}" in tex
    assert (tmp_path / "leaderboard.png").stat().st_size > 10_000
