"""Result tables shared by compare, tune and the leaderboard (pandas only).

A run's results dict (`recbole_lda.quick_start.run`) becomes one record; records become a
table of mean and std over seeds, with Welch's test between two entries.
"""

import numpy as np
import pandas as pd

# LDA's anchor diagnostics of test_report (recbole_lda.model.anchor_label): means over seeds in summary.csv
ANCHOR_DIAGNOSTICS = ("beta_effective_anchors", "anchor_label_match", "anchor_label_majority", "anchor_label_chance")
METRICS = ("mae", "xauc", "xgauc", "rmse", "xauc_dadf", "xauc_cwm", "xauc_blocks", "xgauc_cwm")  # every XAUC convention of test_result (older results: NaN)


def run_record(result, dataset, entry, seed):
    """The figures of one run (a quick_start.run results dict) that a summary table uses."""
    test, reference = result["test_result"], result["reference"]
    return {
        "dataset": dataset,
        "entry": entry,
        "seed": seed,
        **{m: test.get(m, np.nan) for m in METRICS},
        "valid_mae": (result.get("best_valid_result") or {}).get("mae", np.nan),
        "epoch_s": result.get("train_time_per_epoch_s"),
        "epochs": result.get("epochs_run"),
        "train_mean_mae": reference["train_mean"]["test_mae"],
        "oracle_mae": reference.get("oracle_median", {}).get("test_mae", np.nan),
        # LDA on test: mean effective number of anchors exp(entropy of beta), and how often the
        # anchor with the largest beta is the one that best explains the label
        **{key: result.get("test_report", {}).get(key, np.nan) for key in ANCHOR_DIAGNOSTICS},
    }


def welch_p(a, b):
    """Two-sided Welch's t-test p-value (scipy) between two samples of per-seed values;
    NaN with fewer than 2 values on a side or no variance on either."""
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or len(b) < 2 or (np.std(a) == 0 and np.std(b) == 0):
        return np.nan
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def summarise(records, versus=None):
    """One row per (dataset, entry): mean and std over seeds, time relative to VR, and with
    `versus` (an entry) Welch's p-values of test MAE and XAUC against that entry's seeds."""
    frame = pd.DataFrame(records)
    rows = []
    for (dataset, entry), group in frame.groupby(["dataset", "entry"], sort=False):
        row = {"dataset": dataset, "model": entry, "seeds": len(group)}
        for m in METRICS:
            values = group[m] if m in group else pd.Series(np.nan, index=group.index)  # records of older runs
            # skipna=False: a mean over only the seeds that have a metric would pass for all of them
            row[f"{m}_mean"] = values.mean(skipna=False)
            # one seed: the sample std is undefined (NaN, shown as n=1), not 0
            row[f"{m}_std"] = values.std(ddof=1, skipna=False) if len(group) > 1 else np.nan
        row["valid_mae_mean"] = group["valid_mae"].mean() if "valid_mae" in group else np.nan
        if versus is not None:
            other = frame[(frame["dataset"] == dataset) & (frame["entry"] == versus)]
            for m in ("mae", "xauc"):
                row[f"{m}_p_vs"] = welch_p(group[m], other[m]) if entry != versus else np.nan
        row["epoch_s_mean"] = group["epoch_s"].mean()
        row["epochs_mean"] = group["epochs"].mean()
        row["train_mean_mae"] = group["train_mean_mae"].mean()
        row["oracle_mae"] = group["oracle_mae"].mean()
        for key in ANCHOR_DIAGNOSTICS:  # records written before a diagnostic existed lack it
            row[key] = group[key].mean() if key in group else np.nan
        rows.append(row)
    table = pd.DataFrame(rows)
    vr_time = table[table["model"] == "VR"].set_index("dataset")["epoch_s_mean"]
    table["epoch_time_vs_VR"] = [
        r.epoch_s_mean / vr_time[r.dataset] if r.dataset in vr_time.index else np.nan for r in table.itertuples()
    ]
    return table


def mean_std(mean, std, seeds, digits=4):
    """`mean ± std`; `mean (n=1)` for a single seed, whose sample std is undefined."""
    if not np.isfinite(mean):
        return "—"
    if seeds == 1 or not np.isfinite(std):
        return f"{mean:.{digits}f} (n={seeds})"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _ratio(value):
    return f"{value:.2f}x" if np.isfinite(value) else "n/a (no VR)"


def _anchors(value):
    return f"{value:.2f}" if np.isfinite(value) else "-"


def _p(value):
    return f"{value:.3g}" if np.isfinite(value) else "-"


def to_markdown(table, versus=None):
    lines = []
    p_head = f" p MAE vs {versus} | p XAUC vs {versus} |" if versus else ""
    for dataset, group in table.groupby("dataset", sort=False):
        ref = group.iloc[0]
        lines.append(f"### {dataset}")
        lines.append("")
        lines.append(
            f"Predict-the-training-mean test MAE: {ref.train_mean_mae:.4f}"
            + (f"; best achievable (true conditional median): {ref.oracle_mae:.4f}" if np.isfinite(ref.oracle_mae) else "")
        )
        lines.append("")
        lines.append("| model | seeds | valid MAE | MAE | XAUC | XGAUC | epochs | s/epoch | vs VR | beta eff. anchors |" + p_head)
        lines.append("|---|---|---|---|---|---|---|---|---|---|" + ("---|---|" if versus else ""))
        for r in group.itertuples():
            lines.append(
                f"| {r.model} | {r.seeds} | {r.valid_mae_mean:.4f} | {mean_std(r.mae_mean, r.mae_std, r.seeds)} "
                f"| {mean_std(r.xauc_mean, r.xauc_std, r.seeds)} "
                f"| {mean_std(r.xgauc_mean, r.xgauc_std, r.seeds)} | {r.epochs_mean:.1f} | {r.epoch_s_mean:.2f} | {_ratio(r.epoch_time_vs_VR)} "
                f"| {_anchors(r.beta_effective_anchors)} |"
                + (f" {_p(r.mae_p_vs)} | {_p(r.xauc_p_vs)} |" if versus else "")
            )
        lines.append("")
    return "\n".join(lines)
