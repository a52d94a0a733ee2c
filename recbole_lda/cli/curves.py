"""`curves`: learning curves (validation MAE per epoch) of compare folders.

    python -m recbole_lda curves --runs=results/compare-kuairand,results/lda-kuairand \
        --models="VR,VR[regression_loss=l1],D2Q,LDA" --output=docs/img/curves-kuairand

What the table holds: `recbole_lda.report.curves`.
"""

import argparse
from pathlib import Path

from recbole_lda.config.entries import split_entries
from recbole_lda.report import curves as report_curves
from recbole_lda.report.curves import curve_table, load_curves, plot_curves, to_markdown
from recbole_lda.utils.errors import UsageError
from recbole_lda.utils.fileio import atomic_output, check_distinct_paths


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__ + report_curves.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", required=True, help="comma-separated folders written by python -m recbole_lda.quick_start.compare")
    p.add_argument("--models", help="entries to show, in this order (default: all)")
    p.add_argument("--within", type=float, default=0.05, help="share of the best validation MAE (default 0.05)")
    p.add_argument("--output", required=True, help="path prefix of the .csv, .md and .png written")
    args = p.parse_args(argv)
    if not 0 < args.within < 1:
        raise UsageError(f"--within={args.within}: expected a share in (0, 1)")
    models = split_entries(args.models) if args.models else None
    folders = [f for f in args.runs.split(",") if f]
    out = Path(args.output)
    written = [("--output", out.with_suffix(ext)) for ext in (".csv", ".md", ".png")]
    compare_files = [("the compare folder's file", Path(folder) / name) for folder in folders
                     for name in ("summary.json", "summary.csv", "summary.md")]
    try:  # never over a compare folder's own files or its runs
        check_distinct_paths(written, inputs=compare_files,
                             input_folders=[("the compare folder's runs", Path(folder) / "runs") for folder in folders])
    except ValueError as err:
        raise UsageError(str(err)) from None
    curves = load_curves(folders, models)
    table = curve_table(curves, args.within)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(out.with_suffix(".csv")) as tmp:
        table.to_csv(tmp, index=False)
    with atomic_output(out.with_suffix(".md")) as tmp:
        Path(tmp).write_text(to_markdown(table, args.within))
    plot_curves(curves, out.with_suffix(".png"))
    print(to_markdown(table, args.within), end="")
