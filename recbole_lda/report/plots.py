"""Pictures of what LDA learned (`anchor_plot_file`): numpy arrays in, a PNG out; the run
layer (`recbole_lda.quick_start`) takes the arrays from a trained model."""

import numpy as np

from recbole_lda.utils.fileio import atomic_output

# What the anchors are, per LDA's regression_target: how a value of the anchors' space is
# drawn (the data are drawn through the same map), the y axis and the figure's title.
ANCHOR_SPACES = {
    # anchors in log(1 + watch ratio): drawn as watch ratios
    "ratio": (np.expm1, "watch ratio", "Watch-ratio quantile functions per duration bucket: data and LDA anchors"),
    # anchors of D2Q's label (the quantile of the watch time within its duration group): as they are
    "quantile": (
        lambda v: np.asarray(v, dtype=np.float64),
        "D2Q quantile label (watch time's level in its duration group)",
        "D2Q quantile-label quantile functions per duration bucket: data and LDA anchors",
    ),
}


def anchor_space(target):
    """The anchors' space of an LDA `regression_target`: `quantile`, else `ratio` (the
    targets ratio and watch_time both keep anchors over log(1 + watch ratio))."""
    return "quantile" if target == "quantile" else "ratio"


def plot_anchors(values, buckets, edges, anchors, path, space="ratio"):
    """For each duration bucket, the empirical quantile function of the training labels
    (black) with the bucket's anchors (coloured), both in the anchors' space: one panel per
    bucket, PNG.

    Args:
        values: (N,) training labels in the anchors' space (log(1 + watch ratio), or D2Q's
            quantile label); buckets: (N,) their bucket.
        edges: (D + 1,) bucket edges in seconds.
        anchors: (D, K, n) anchors in the same space.
        space: `ratio` (values and anchors in log(1 + ratio), drawn as watch ratios) or
            `quantile` (D2Q's label in [0, 1], drawn as it is).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if space not in ANCHOR_SPACES:
        raise ValueError(f"space must be one of {sorted(ANCHOR_SPACES)}, got {space!r}")
    shown, ylabel, title = ANCHOR_SPACES[space]
    data = shown(np.asarray(values, dtype=np.float64))
    num_buckets, _, length = anchors.shape
    cols = min(4, num_buckets)
    rows = int(np.ceil(num_buckets / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    levels = (np.arange(length) + 0.5) / length
    grid = np.linspace(0.005, 0.995, 199)
    for b in range(num_buckets):
        ax = axes[b // cols][b % cols]
        ax.plot(grid, np.quantile(data[buckets == b], grid), color="black", lw=2.5, label="training data")
        for k, anchor in enumerate(shown(np.asarray(anchors[b], dtype=np.float64))):
            ax.plot(levels, anchor, lw=1.2, alpha=0.85, label="anchors" if k == 0 else None)
        ax.set_title(f"duration {edges[b]:.1f}-{edges[b + 1]:.1f} s (n={int((buckets == b).sum()):,})", fontsize=9)
        if space == "ratio":  # the replay tail would flatten the rest
            ax.set_ylim(0, 1.15 * np.quantile(data[buckets == b], 0.98))
        else:
            ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("quantile level")
        ax.set_ylabel(ylabel)
    for b in range(num_buckets, rows * cols):
        axes[b // cols][b % cols].axis("off")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
