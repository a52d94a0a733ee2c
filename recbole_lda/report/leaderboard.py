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
Missing or partial results are never shown as whole (`recbole_lda.report.board_inputs`): every
entry the manifest expects (methods x datasets, seeds 0..S-1) that lacks a usable study or
final run is named in a warning line and in the Markdown's notes, and shown as `—` or with
its seed count; a column's best mean is bolded only when every expected entry of it has
a complete result; `strict=True` (`--strict`) makes any such problem an error. A single
seed has no std: its cell reads `mean (n=1)`.
The CSV has one row per method and dataset: mean and std of MAE, XAUC, RMSE and XGAUC, the
best-per-column flags, the comparison columns (on the proposed method's rows), the
tuning budget (`rungs`, `rung_trials`: how many trials ran at least each ASHA rung's epochs)
and the chosen configuration.
"""

import json
import os
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from recbole_lda.config.entries import find_entry, parse_entry
from recbole_lda.report.board_inputs import collect
from recbole_lda.report.tables import mean_std, summarise, welch_p
from recbole_lda.utils.errors import UnknownNameError, did_you_mean
from recbole_lda.utils.fileio import atomic_output, atomic_write_text
from recbole_lda.report.rungs import rung_counts, rung_epochs, rung_text


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
    problems: list = field(default_factory=list)  # expected entries without a (complete) usable result
    warnings: list = field(default_factory=list)  # files left out that no expected entry needed


def complete_column(table, dataset, metric, methods, incomplete):
    """Whether every expected method has a complete result in the column (dataset, metric)."""
    rows = table[table["dataset"] == dataset].set_index("model")[f"{metric}_mean"]
    return all(m in rows.index and np.isfinite(rows[m]) and (dataset, m) not in incomplete for m in methods)


def compare_with_baselines(table, records, proposed, metrics=BOARD_METRICS, methods=None, incomplete=()):
    """Best-per-column flags (only for a column where each of `methods` has a complete result:
    not in `incomplete`), and on the proposed method's rows its relative improvement over the
    best baseline and Welch's p-value, per dataset and metric."""
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
            whole = complete_column(table, dataset, metric, methods if methods is not None else list(rows["model"]),
                                    incomplete)
            if means.notna().any() and whole:
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


def build_table(studies, records, proposed, metrics=BOARD_METRICS, methods=None, incomplete=()):
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
    return compare_with_baselines(table, records, proposed, metrics, methods, incomplete)


def _cell(row, metric, bold, expected_seeds=None):
    mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
    if not np.isfinite(mean):
        return "—"
    text = mean_std(mean, std, row["seeds"])
    if expected_seeds and row["seeds"] < expected_seeds:  # partial: says so in the cell
        text = text.replace(f" (n={row['seeds']})", "") + f" (n={row['seeds']} of {expected_seeds})"
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


def _grid(table, inputs=None):
    """datasets in order, methods in order (with `inputs`: every expected one, results or
    not), and {(method, dataset): row}."""
    datasets = list(dict.fromkeys([*(inputs.datasets if inputs else []), *table["dataset"]]))
    methods = list(dict.fromkeys([*(inputs.methods if inputs else []), *table["model"]]))
    rows = {(r["model"], r["dataset"]): r for _, r in table.iterrows()}
    return datasets, methods, rows


def _notes(table, inputs, metrics):
    """The Markdown notes on missing or partial results (none when every entry is whole)."""
    if not inputs or not inputs.problems:
        return []
    unmarked = [f"{d} {label}" for d in inputs.datasets for metric, label, _ in metrics
                if not complete_column(table, d, metric, inputs.methods, inputs.incomplete)]
    lines = ["", "Notes: some expected results are missing or partial (`—`: none; `n=k of S`: k of the S seeds); "
             "they are not whole and are not compared as such."]
    lines += [f"- {problem}" for problem in inputs.problems]
    if unmarked:
        lines.append(f"- No best is marked in {', '.join(unmarked)}: not every method has a complete result there.")
    return lines


def to_markdown(table, studies, manifest, proposed, metrics=BOARD_METRICS, inputs=None):
    datasets, methods, rows = _grid(table, inputs)
    expected_seeds = manifest.get("seeds") if isinstance(manifest.get("seeds"), int) else None
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
        cells = [_cell(rows[(m, d)], metric, True, expected_seeds) if (m, d) in rows else "—"
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
    lines += _notes(table, inputs, metrics)
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


def to_latex(table, proposed, metrics=BOARD_METRICS, inputs=None):
    datasets, methods, rows = _grid(table, inputs)
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
                std = r[f"{metric}_std"]
                cells.append(f"${mean} \\pm {std:.4f}$" if np.isfinite(std) else f"${mean}$ (n={r['seeds']})")
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


def check_proposed(proposed, methods):
    """The method of `methods` that `proposed` names (spelt any way, see entries.find_entry);
    UnknownNameError with the closest methods otherwise."""
    found = find_entry(proposed, methods) if methods else None
    if found is None:
        raise UnknownNameError(f"--proposed={proposed}: not a method of this folder{did_you_mean(proposed, methods)} "
                               f"(methods: {', '.join(methods) or 'none'})")
    return found


def build(output_dir, proposed=None, xauc="xauc", strict=False):
    """Write DIR/leaderboard.{md,csv,tex,png} from the stored results; return the Board.
    `proposed`: the method compared with the best baseline (default: the manifest's, else LDA;
    given explicitly, it must be a method of the folder); `xauc`: the XAUC convention shown
    (a key of XAUC_CONVENTIONS); `strict`: any missing or partial expected result is an error
    (ValueError naming them), and nothing is written."""
    metrics = board_metrics(xauc)
    inputs = collect(output_dir)
    if proposed is not None:
        proposed = check_proposed(proposed, inputs.methods)
    proposed = proposed or inputs.manifest.get("proposed") or "LDA"
    if inputs.problems and (strict or not inputs.records):
        raise ValueError(f"{output_dir}: " + ("no usable final run: nothing to put on the leaderboard" if not inputs.records
                                              else f"{len(inputs.problems)} expected result(s) missing or partial (--strict)")
                         + ": " + " | ".join(inputs.problems))
    table = build_table(inputs.studies, inputs.records, proposed, metrics, inputs.methods, inputs.incomplete)
    markdown = to_markdown(table, inputs.studies, inputs.manifest, proposed, metrics, inputs)
    paths = {ext: os.path.join(output_dir, f"leaderboard.{ext}") for ext in ("md", "csv", "tex", "png")}
    atomic_write_text(paths["md"], markdown)
    with atomic_output(paths["csv"]) as tmp:
        table.to_csv(tmp, index=False)
    atomic_write_text(paths["tex"], to_latex(table, proposed, metrics, inputs))
    plot(table, paths["png"], proposed, metrics)
    return Board(table, markdown, paths, list(inputs.problems), list(inputs.warnings))
