"""Pictures of what LDA learned (`anchor_plot_file`): numpy arrays in, a PNG out; the run
layer (`recbole_lda.quick_start`) takes the arrays from a trained model."""

import numpy as np

from recbole_lda.utils.fileio import atomic_output


def plot_anchors(ratios, buckets, edges, anchors, path):
    """For each duration bucket, the empirical watch-ratio quantile function of the training
    data (black) with the bucket's anchors decoded (coloured): one panel per bucket, PNG.

    Args:
        ratios: (N,) training watch ratios; buckets: (N,) their bucket.
        edges: (D + 1,) bucket edges in seconds.
        anchors: (D, K, n) anchors in log(1 + ratio) space.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    num_buckets, _, length = anchors.shape
    cols = min(4, num_buckets)
    rows = int(np.ceil(num_buckets / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    levels = (np.arange(length) + 0.5) / length
    grid = np.linspace(0.005, 0.995, 199)
    for b in range(num_buckets):
        ax = axes[b // cols][b % cols]
        ax.plot(grid, np.quantile(ratios[buckets == b], grid), color="black", lw=2.5, label="training data")
        for k, anchor in enumerate(np.expm1(anchors[b])):
            ax.plot(levels, anchor, lw=1.2, alpha=0.85, label="anchors" if k == 0 else None)
        ax.set_title(f"duration {edges[b]:.1f}-{edges[b + 1]:.1f} s (n={int((buckets == b).sum()):,})", fontsize=9)
        ax.set_ylim(0, 1.15 * np.quantile(ratios[buckets == b], 0.98))  # the replay tail would flatten the rest
        ax.set_xlabel("quantile level")
        ax.set_ylabel("watch ratio")
    for b in range(num_buckets, rows * cols):
        axes[b // cols][b % cols].axis("off")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Watch-ratio quantile functions per duration bucket: data and LDA anchors")
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
