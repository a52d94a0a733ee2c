"""Learning curves: validation MAE per epoch of the runs of `recbole_lda.quick_start.compare` folders.

    python -m recbole_lda curves --runs=results/compare-kuairand,results/lda-kuairand \
        --models="VR,VR[regression_loss=l1],D2Q,LDA" --output=docs/img/curves-kuairand

For every (dataset, model entry) the table gives, from the validation split only: the
best validation MAE (mean over seeds), the epoch it came at, and how many epochs a run
needed to get within `--within` (5%) of its own best validation MAE (mean and largest
over seeds). Epochs are counted from 1 (the first epoch trained). Written: OUTPUT.csv,
OUTPUT.md and OUTPUT.png (mean validation MAE per epoch over the seeds that ran that epoch;
one panel per dataset).
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from recbole_lda.utils.errors import UsageError
from recbole_lda.utils.fileio import atomic_output, read_json
from recbole_lda.config.output_dir import run_file


def epochs_to_within(history, within):
    """1-based epoch at which `history` (validation MAE per epoch, lower is better) first
    comes within `within` (a share) of its minimum."""
    best = min(history)
    return next(i for i, value in enumerate(history) if value <= best * (1 + within)) + 1


COMPARE = "a folder written by python -m recbole_lda compare"


def run_history(path):
    """The validation MAE per epoch in the results file `path` ([] when the run never
    validated); UsageError naming the file and what is expected."""
    if not path.is_file():
        raise UsageError(f"--runs: {path} is missing, although summary.json lists it; run the compare command "
                         "of that folder again (it reruns missing runs)")
    try:
        result = read_json(path)
    except ValueError as err:
        raise UsageError(f"--runs: {err}; expected a run's results JSON (delete it and run compare again)") from None
    history = result.get("valid_history") if isinstance(result, dict) else None
    if not isinstance(history, list) or any(not isinstance(step, dict) or "mae" not in step for step in history):
        raise UsageError(f"--runs: {path} has no valid_history with a validation 'mae' per epoch (expected the results "
                         "of python -m recbole_lda run or compare, which record it)")
    return [step["mae"] for step in history]


def load_curves(folders, models=None):
    """{(dataset, entry): [valid MAE history per seed]} from compare folders (their
    summary.json lists the runs; each run's results file has the history). With `models`,
    only those entries, in that order; a model missing from every folder is an error. A run
    that never validated (empty history) is left out with a warning line; none left is an error."""
    curves, empty = {}, []
    for folder in folders:
        summary = Path(folder) / "summary.json"
        if not summary.is_file():
            raise UsageError(f"--runs: {summary} does not exist ({COMPARE})")
        listed = read_json(summary)
        if not isinstance(listed, dict) or not isinstance(listed.get("runs"), list):
            raise UsageError(f"--runs: {summary} lists no runs ({COMPARE})")
        for run in listed["runs"]:
            if models is not None and run["entry"] not in models:
                continue
            path = Path(run_file(folder, run["entry"], run["dataset"], run["seed"]))
            history = run_history(path)
            if not history:
                empty.append(str(path))
                continue
            curves.setdefault((run["dataset"], run["entry"]), {})[run["seed"]] = history
    for path in empty:
        print(f"warning: {path}: empty valid_history (the run never validated); left out", file=sys.stderr)
    if not curves:
        raise UsageError(f"--runs: no run in {', '.join(map(str, folders))} has a validation history"
                         + (f" ({len(empty)} runs never validated)" if empty else ""))
    missing = [m for m in models or [] if not any(entry == m for _, entry in curves)]
    if missing:
        raise UsageError(f"--models: no runs of {', '.join(missing)} in {', '.join(map(str, folders))}")
    order = {m: i for i, m in enumerate(models or [])}
    keys = sorted(curves, key=lambda k: (k[0], order.get(k[1], len(order)), k[1]))
    return {k: [curves[k][s] for s in sorted(curves[k])] for k in keys}


def curve_table(curves, within=0.05):
    rows = []
    for (dataset, entry), histories in curves.items():
        reach = [epochs_to_within(h, within) for h in histories]
        rows.append({
            "dataset": dataset,
            "model": entry,
            "seeds": len(histories),
            "best_valid_mae": float(np.mean([min(h) for h in histories])),
            "best_epoch": float(np.mean([int(np.argmin(h)) + 1 for h in histories])),
            "epochs_to_within": float(np.mean(reach)),
            "epochs_to_within_max": max(reach),
            "first_epoch_valid_mae": float(np.mean([h[0] for h in histories])),
        })
    return pd.DataFrame(rows)


def to_markdown(table, within):
    pct = f"{within:.0%}"
    lines = [f"| dataset | model | seeds | first-epoch valid MAE | best valid MAE | best epoch | epochs to within {pct} (mean / max) |",
             "|---|---|---|---|---|---|---|"]
    for r in table.itertuples():
        lines.append(f"| {r.dataset} | {r.model} | {r.seeds} | {r.first_epoch_valid_mae:.3f} | {r.best_valid_mae:.3f} | "
                     f"{r.best_epoch:.1f} | {r.epochs_to_within:.1f} / {r.epochs_to_within_max} |")
    return "\n".join(lines) + "\n"


def plot_curves(curves, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({d for d, _ in curves})
    fig, axes = plt.subplots(1, len(datasets), figsize=(6.5 * len(datasets), 4.2), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        for (d, entry), histories in curves.items():
            if d != dataset:
                continue
            longest = max(map(len, histories))
            mean = [np.mean([h[e] for h in histories if len(h) > e]) for e in range(longest)]
            ax.plot(np.arange(1, longest + 1), mean, marker=".", label=entry)
        ax.set(title=f"{dataset}: validation MAE (mean over seeds)", xlabel="epoch", ylabel="valid MAE")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
