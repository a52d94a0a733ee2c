"""The leaderboard of a tuning output folder (`python -m recbole_lda tune`), built from the
stored results alone: no training, no Ray.

    python -m recbole_lda leaderboard --output_dir=DIR [--proposed=LDA]
    (the same as python -m recbole_lda tune --leaderboard_only --output_dir=DIR)

Reads DIR/tuning/<METHOD>__<DATASET>.json (finished studies) and the final runs
DIR/runs/<METHOD>__<DATASET>__seed<k>.json made with each study's best configuration, and
writes DIR/leaderboard.md, .csv, .tex and .png:
- methods x datasets, test MAE (seconds, lower is better) and XAUC (higher is better) as
  mean ± sample std (ddof 1) over seeds, the best mean per column in bold;
- the relative improvement of the proposed method (LDA) over the best baseline of each
  column (the best mean among methods of another model; LDA[...] variants are not
  baselines), positive when the proposed method is better;
- Welch's t-test (two-sided, unequal variances, scipy.stats.ttest_ind) between the per-seed
  test scores of the two. The runs are not paired: a seed fixes initialisation and batch
  order, which mean different things for different models. The split is the same for
  every seed, so the test measures training noise only, not data noise; with 3 seeds it
  detects only large differences.
The CSV has one row per method and dataset: mean and std of MAE, XAUC, RMSE and XGAUC, the
best-per-column flags, the comparison columns (on the proposed method's rows), the
tuning budget (`rungs`, `rung_trials`: how many trials ran at least each ASHA rung's epochs)
and the chosen configuration.
"""

import glob
import json
import logging
import os
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recbole_lda.config.entries import parse_entry, run_label
from recbole_lda.config.output_dir import finished_study_files, manifest_file, runs_dir
from recbole_lda.report.tables import run_record, summarise, welch_p
from recbole_lda.utils.fileio import atomic_output, atomic_write_text, read_json
from recbole_lda.report.rungs import rung_counts, rung_epochs, rung_text

logger = logging.getLogger(__name__)

# (metric, label, True when higher is better)
BOARD_METRICS = (("mae", "MAE", False), ("xauc", "XAUC", True))
# XAUC conventions a board can show (--xauc=KEY), each a test_result key of every run
# (recbole_lda.evaluator.xauc.all_conventions), with what the Markdown says about it.
XAUC_CONVENTIONS = {
    "xauc": "ours: exact, all pairs with unequal labels, prediction ties 1/2",
    "xauc_dadf": "DADF: pairs strictly ordered the same way / all n(n-1)/2 pairs (label ties in the denominator, prediction ties 0)",
    "xauc_cwm": "CWM: exact, prediction ties broken by sort order",
    "xauc_blocks": "HEGM: inside consecutive blocks of xauc_block_size test rows in the predictions file's order, label ties excluded, prediction ties 1/2, pooled",
}


def board_metrics(xauc="xauc"):
    """(metric, label, higher is better) of the board's columns: MAE and the XAUC convention `xauc`."""
    if xauc not in XAUC_CONVENTIONS:
        raise ValueError(f"--xauc={xauc}: expected one of {', '.join(XAUC_CONVENTIONS)}")
    label = "XAUC" if xauc == "xauc" else f"XAUC ({xauc.split('_', 1)[1]})"
    return (("mae", "MAE", False), (xauc, label, True))
ALPHA = 0.05  # significance level of the marks


@dataclass
class Board:
    table: pd.DataFrame  # the CSV's rows
    markdown: str
    paths: dict


def collect(output_dir):
    """(finished studies, per-seed records) stored under `output_dir`, in the order of the
    manifest (the last command's methods and datasets), then by name."""
    studies = [read_json(p) for p in finished_study_files(output_dir)]
    manifest_path = manifest_file(output_dir)
    manifest = read_json(manifest_path) if os.path.exists(manifest_path) else {}
    methods, datasets = manifest.get("methods", []), manifest.get("datasets", [])

    def rank(study):
        m, d = study["method"], study["dataset"]
        return (datasets.index(d) if d in datasets else len(datasets), d,
                methods.index(m) if m in methods else len(methods), m)

    studies.sort(key=rank)
    records = []
    for study in studies:
        prefix = run_label(study["method"], study["dataset"], "")
        for path in sorted(glob.glob(os.path.join(runs_dir(output_dir), f"{glob.escape(prefix)}*.json"))):
            match = re.fullmatch(re.escape(prefix) + r"(\d+)\.json", os.path.basename(path))
            if not match:
                continue
            run = read_json(path)
            if run.get("tuned_params") != study["best"]["params"]:
                logger.warning(f"{path}: not made with the study's best configuration; left out")
                continue
            records.append(run_record(run, study["dataset"], study["method"], int(match.group(1))))
    return studies, records, manifest


def compare_with_baselines(table, records, proposed, metrics=BOARD_METRICS):
    """Best-per-column flags, and on the proposed method's rows its relative improvement
    over the best baseline and Welch's p-value, per dataset and metric."""
    frame = pd.DataFrame(records)
    proposed_model = parse_entry(proposed)[0]
    table = table.copy()
    for metric, _, higher in metrics:
        table[f"{metric}_best"] = False
        for col in ("best_baseline", "improvement_pct", "welch_p"):
            table[f"{metric}_{col}"] = np.nan if col != "best_baseline" else None
    for dataset, rows in table.groupby("dataset", sort=False):
        for metric, _, higher in metrics:
            means = rows[f"{metric}_mean"]
            if means.notna().any():
                table.loc[means.idxmax() if higher else means.idxmin(), f"{metric}_best"] = True
            is_baseline = rows["model"].map(lambda e: parse_entry(e)[0] != proposed_model)
            baselines, mine = rows[is_baseline & means.notna()], rows[rows["model"] == proposed]
            if baselines.empty or mine.empty:
                continue
            base = baselines.loc[baselines[f"{metric}_mean"].idxmax() if higher else baselines[f"{metric}_mean"].idxmin()]
            idx = mine.index[0]
            ours, theirs = mine.loc[idx, f"{metric}_mean"], base[f"{metric}_mean"]
            gain = (ours - theirs) / theirs if higher else (theirs - ours) / theirs
            seeds = lambda entry: frame[(frame.dataset == dataset) & (frame.entry == entry)][metric].dropna()  # noqa: E731
            table.loc[idx, f"{metric}_best_baseline"] = base["model"]
            table.loc[idx, f"{metric}_improvement_pct"] = 100 * gain
            table.loc[idx, f"{metric}_welch_p"] = welch_p(seeds(proposed), seeds(base["model"]))
    return table


def study_rungs(study):
    """(text, {rung epoch: trials}) for a stored study: how many of its trials ran at least
    each rung's epochs (ASHA's rungs, then the epoch cap; FIFO: the cap only), from the
    trial records; ("—", {}) when the study stored no trials or no epoch cap."""
    stored, settings = study.get("budget", {}), study.get("settings", {})
    rungs = stored.get("rung_epochs")
    if rungs is None and stored.get("max_epochs"):  # a study stored before rung_epochs were
        asha = settings.get("budget", {})
        rungs = (rung_epochs(asha["grace_period"], asha["reduction_factor"], stored["max_epochs"],
                             settings.get("eval_step", 1)) if "grace_period" in asha else [stored["max_epochs"]])
    if not rungs or not study.get("trials"):
        return "—", {}
    epochs = [t.get("epochs") for t in study["trials"]]
    return rung_text(epochs, rungs), rung_counts(epochs, rungs)


def build_table(studies, records, proposed, metrics=BOARD_METRICS):
    if not records:
        raise ValueError("no final run is stored yet: nothing to put on the leaderboard")
    table = summarise(records)
    info = {(s["dataset"], s["method"]): s for s in studies}
    extra = []
    for row in table.itertuples():
        s = info[(row.dataset, row.model)]
        rungs, reached = study_rungs(s)
        extra.append({
            "num_samples": s["budget"]["num_samples"], "trials_completed": s["trials_completed"],
            "trials_errored": s["trials_errored"], "max_epochs": s["budget"]["max_epochs"],
            "scheduler": s["budget"]["scheduler"], "rungs": rungs, "rung_trials": json.dumps(reached),
            "best_valid_score": s["best"]["valid_score"],
            "valid_metric": s["settings"]["metric"], "best_params": json.dumps(s["best"]["params"], sort_keys=True),
            "tuning_wall_s": s["wall_time_s"],
        })
    table = pd.concat([table, pd.DataFrame(extra, index=table.index)], axis=1)
    return compare_with_baselines(table, records, proposed, metrics)


def _cell(row, metric, bold):
    mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
    if not np.isfinite(mean):
        return "—"
    text = f"{mean:.4f} ± {std:.4f}"
    return f"**{text}**" if bold and row[f"{metric}_best"] else text


def _gain_text(row, metric, latex=False):
    base = row.get(f"{metric}_best_baseline")
    if not isinstance(base, str):
        return "—"
    p = row[f"{metric}_welch_p"]
    mark = ("$^\\dagger$" if latex else " †") if np.isfinite(p) and p < ALPHA else ""
    name = _tex(base) if latex else base
    pct = f"{row[f'{metric}_improvement_pct']:+.1f}" + ("\\%" if latex else "%")
    if not np.isfinite(p):
        return f"{pct} vs {name} (p n/a)"
    p_text = ("p$<$0.001" if latex else "p<0.001") if p < 0.001 else f"p={p:.3f}"
    return f"{pct} vs {name} ({p_text}){mark}"


def _grid(table):
    """datasets in order, methods in order, and {(method, dataset): row}."""
    datasets = list(dict.fromkeys(table["dataset"]))
    methods = list(dict.fromkeys(table["model"]))
    rows = {(r["model"], r["dataset"]): r for _, r in table.iterrows()}
    return datasets, methods, rows


def to_markdown(table, studies, manifest, proposed, metrics=BOARD_METRICS):
    datasets, methods, rows = _grid(table)
    seeds = sorted(set(table["seeds"]))
    lines = ["# Leaderboard", "",
             f"Test MAE (seconds, lower is better) and XAUC (higher is better) of each method's best "
             f"configuration, mean ± std over {'/'.join(map(str, seeds))} seed{'s' if seeds != [1] else ''}; **bold**: best mean per column.", ""]
    lines += [f"Conventions: MAE on the test labels in seconds; {label}: {XAUC_CONVENTIONS[metric]}."
              for metric, label, _ in metrics if metric in XAUC_CONVENTIONS]
    lines += [""]
    header = ["Method"] + [f"{d} {label}" for d in datasets for _, label, _ in metrics]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for m in methods:
        cells = [_cell(rows[(m, d)], metric, True) if (m, d) in rows else "—"
                 for d in datasets for metric, _, _ in metrics]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    if proposed in methods:
        cells = [_gain_text(rows[(proposed, d)], metric) if (proposed, d) in rows else "—"
                 for d in datasets for metric, _, _ in metrics]
        lines.append(f"| {proposed} vs best baseline | " + " | ".join(cells) + " |")
        lines += ["", f"Improvement: relative to the best baseline of the column (another model's best mean), "
                  f"positive when {proposed} is better. p: two-sided Welch's t-test (unequal variances) on the "
                  f"per-seed test scores; † marks p < {ALPHA} (a difference in the direction of the sign). Seeds vary initialisation and batch order on a fixed "
                  f"split, so the test covers training noise only."]
    lines += ["", "## Budget and selection", "",
              "Every method of a dataset gets the same number of trials; selection uses the validation metric "
              "only, and the chosen configuration is then run once per seed and evaluated once on test. Trials "
              "reaching each rung: how many of the study's trials ran at least that many epochs, at ASHA's rungs "
              "(grace_period × reduction_factor^k epochs) and the epoch cap; a trial stops before when ASHA stops it, "
              "when early stopping (stopping_step) ends it, or when it diverges or fails.", "",
              "| Dataset | Method | Trials (done / errored) | Max epochs | Scheduler | Trials reaching each rung | "
              "Best valid | Tuning wall time | s/epoch |",
              "|---|---|---|---|---|---|---|---|---|"]
    for _, r in table.iterrows():
        lines.append(f"| {r.dataset} | {r.model} | {r.num_samples} ({r.trials_completed} / {r.trials_errored}) | "
                     f"{r.max_epochs} | {r.scheduler} | {r.rungs} | {r.valid_metric.upper()} {r.best_valid_score:.4f} | "
                     f"{r.tuning_wall_s / 60:.1f} min | {r.epoch_s_mean:.2f} |")
    lines += ["", "## Chosen configurations", "", "| Dataset | Method | Configuration |", "|---|---|---|"]
    for _, r in table.iterrows():
        lines.append(f"| {r.dataset} | {r.model} | `{r.best_params}` |")
    lines += ["", "## References on the same test rows", "",
              "| Dataset | Predict the training mean: MAE | Best achievable MAE (true conditional median) |",
              "|---|---|---|"]
    for d in datasets:
        r = table[table["dataset"] == d].iloc[0]
        oracle = f"{r.oracle_mae:.4f}" if np.isfinite(r.oracle_mae) else "unknown"
        lines.append(f"| {d} | {r.train_mean_mae:.4f} | {oracle} |")
    if manifest.get("command"):
        lines += ["", "Command:", "", f"```\n{manifest['command']}\n```"]
    return "\n".join(lines) + "\n"


def _tex(text):
    return re.sub(r"([_%&#$])", r"\\\1", str(text))


def to_latex(table, proposed, metrics=BOARD_METRICS):
    datasets, methods, rows = _grid(table)
    k = len(metrics)
    out = ["% Generated by recbole_lda.report.leaderboard. Needs \\usepackage{booktabs}.",
           "\\begin{tabular}{l" + "c" * (k * len(datasets)) + "}", "\\toprule",
           "Method & " + " & ".join(f"\\multicolumn{{{k}}}{{c}}{{{_tex(d)}}}" for d in datasets) + " \\\\",
           " & " + " & ".join(label + (" $\\uparrow$" if higher else " $\\downarrow$")
                              for _ in datasets for _, label, higher in metrics) + " \\\\", "\\midrule"]
    for m in methods:
        cells = []
        for d in datasets:
            for metric, _, _ in metrics:
                r = rows.get((m, d))
                if r is None or not np.isfinite(r[f"{metric}_mean"]):
                    cells.append("--")
                    continue
                mean = f"{r[f'{metric}_mean']:.4f}"
                mean = f"\\mathbf{{{mean}}}" if r[f"{metric}_best"] else mean
                cells.append(f"${mean} \\pm {r[f'{metric}_std']:.4f}$")
        out.append(f"{_tex(m)} & " + " & ".join(cells) + " \\\\")
    if proposed in methods:
        out.append("\\midrule")
        cells = [_gain_text(rows[(proposed, d)], metric, latex=True) if (proposed, d) in rows else "--"
                 for d in datasets for metric, _, _ in metrics]
        out.append(f"{_tex(proposed)} vs best baseline & " + " & ".join(cells) + " \\\\")
    out += ["\\bottomrule", "\\end{tabular}", ""]
    return "\n".join(out)


def plot(table, path, proposed, metrics=BOARD_METRICS):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets, methods, rows = _grid(table)
    fig, axes = plt.subplots(len(metrics), len(datasets), figsize=(1.2 + 0.55 * len(methods) * len(datasets) + 2,
                                                                          3.2 * len(metrics)), squeeze=False)
    for j, d in enumerate(datasets):
        for i, (metric, label, higher) in enumerate(metrics):
            ax = axes[i][j]
            for x, m in enumerate(methods):
                r = rows.get((m, d))
                if r is None:
                    continue
                color = "tab:red" if m == proposed else "tab:blue"
                ax.errorbar(x, r[f"{metric}_mean"], yerr=r[f"{metric}_std"], fmt="o", color=color, capsize=4,
                            markersize=7 if r[f"{metric}_best"] else 5)
            if metric == "mae":
                r = table[table["dataset"] == d].iloc[0]
                ax.axhline(r.train_mean_mae, ls="--", color="gray", lw=1, label="training mean")
                if np.isfinite(r.oracle_mae):
                    ax.axhline(r.oracle_mae, ls=":", color="green", lw=1, label="best achievable")
                ax.legend(fontsize=7, loc="best")
            ax.set_xticks(range(len(methods)))
            ax.set_xticklabels(methods, rotation=45, ha="right", fontsize=8)
            ax.set_title(f"{d}: {label} ({'higher' if higher else 'lower'} is better)", fontsize=9)
            ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Test scores of the tuned methods, mean ± std over seeds", fontsize=10)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def build(output_dir, proposed=None, xauc="xauc"):
    """Write DIR/leaderboard.{md,csv,tex,png} from the stored results; return the Board.
    `proposed`: the method compared with the best baseline (default: the manifest's, else LDA);
    `xauc`: the XAUC convention shown (a key of XAUC_CONVENTIONS)."""
    metrics = board_metrics(xauc)
    studies, records, manifest = collect(output_dir)
    proposed = proposed or manifest.get("proposed") or "LDA"
    table = build_table(studies, records, proposed, metrics)
    markdown = to_markdown(table, studies, manifest, proposed, metrics)
    paths = {ext: os.path.join(output_dir, f"leaderboard.{ext}") for ext in ("md", "csv", "tex", "png")}
    atomic_write_text(paths["md"], markdown)
    with atomic_output(paths["csv"]) as tmp:
        table.to_csv(tmp, index=False)
    atomic_write_text(paths["tex"], to_latex(table, proposed, metrics))
    plot(table, paths["png"], proposed, metrics)
    return Board(table, markdown, paths)
