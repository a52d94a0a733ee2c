"""docs/lda.md's tables from a compare folder: one markdown row per entry, with Welch's p of
VALIDATION MAE (the figure every choice is made on) beside compare's test p-values.

    python tools/lda_table.py results/lda25-kr3                       # p vs D2Q, valid p vs D2Q and LDA
    python tools/lda_table.py results/lda25-syn --test_versus=D2Q --valid_versus=D2Q,LDA

Reads OUTPUT_DIR/summary.json (compare's per-seed records: `runs`), one dataset at a time
(`--dataset`, default: every dataset in the folder). Columns: entry, seeds, mean best
validation MAE, test MAE and XAUC (mean ± sample std over seeds), Welch's p of test MAE and
XAUC against `--test_versus`, Welch's p of validation MAE against each `--valid_versus`
entry, and LDA's test diagnostics (means over seeds): anchor_label_match,
anchor_label_majority, exp(entropy of beta). Rows keep the order of the runs in the file,
or sorted by validation MAE with `--sort`. Not part of the package (no effect on a run's
code fingerprint); reads only.
"""

import argparse
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recbole_lda.report.tables import mean_std, welch_p  # noqa: E402


def fmt_p(p):
    return "-" if p is None or not math.isfinite(p) else f"{p:.3g}"


def fmt(value, digits):
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def table(records, dataset, test_versus, valid_versus, sort=False):
    """Markdown lines of `dataset`'s entries (records: compare's summary.json `runs`)."""
    rows = [r for r in records if r["dataset"] == dataset]
    entries = list(dict.fromkeys(r["entry"] for r in rows))
    seeds = {e: [r for r in rows if r["entry"] == e] for e in entries}

    def values(entry, key):
        return np.array([np.nan if r.get(key) is None else float(r[key]) for r in seeds.get(entry, [])], dtype=float)

    def mean(entry, key):
        v = values(entry, key)
        return float(v.mean()) if len(v) else float("nan")

    def p(entry, other, key):
        if other not in seeds or entry == other:
            return None
        return welch_p(values(entry, key), values(other, key))

    head = ["entry", "seeds", "valid MAE", "test MAE", "test XAUC", f"p MAE vs {test_versus}",
            f"p XAUC vs {test_versus}", *[f"p valid MAE vs {v}" for v in valid_versus], "match", "majority",
            "eff. anchors"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    order = sorted(entries, key=lambda e: mean(e, "valid_mae")) if sort else entries
    for e in order:
        n = len(seeds[e])
        mae, xauc = values(e, "mae"), values(e, "xauc")
        std = (lambda v: float(v.std(ddof=1)) if n > 1 else float("nan"))
        cells = [f"`{e}`", str(n), fmt(mean(e, "valid_mae"), 4),
                 mean_std(float(mae.mean()), std(mae), n), mean_std(float(xauc.mean()), std(xauc), n),
                 fmt_p(p(e, test_versus, "mae")), fmt_p(p(e, test_versus, "xauc")),
                 *[fmt_p(p(e, v, "valid_mae")) for v in valid_versus],
                 fmt(mean(e, "anchor_label_match"), 3), fmt(mean(e, "anchor_label_majority"), 3),
                 fmt(mean(e, "beta_effective_anchors"), 2)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output_dir", help="a compare --output_dir (reads its summary.json)")
    parser.add_argument("--dataset", default=None, help="one dataset of the folder (default: each)")
    parser.add_argument("--test_versus", default="D2Q", help="entry for the p of test MAE and XAUC")
    parser.add_argument("--valid_versus", default="D2Q,LDA", help="comma-separated entries for the p of validation MAE")
    parser.add_argument("--sort", action="store_true", help="rows by validation MAE")
    args = parser.parse_args(argv)
    with open(os.path.join(args.output_dir, "summary.json")) as f:
        records = json.load(f)["runs"]
    datasets = [args.dataset] if args.dataset else list(dict.fromkeys(r["dataset"] for r in records))
    valid_versus = [v.strip() for v in args.valid_versus.split(",") if v.strip()]
    for d in datasets:
        print(f"### {d}\n")
        print("\n".join(table(records, d, args.test_versus, valid_versus, args.sort)))
        print()


if __name__ == "__main__":
    main()
