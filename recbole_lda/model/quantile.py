"""D2Q's duration-debiased label: the quantile of a watch time within its duration group.

Zhan et al., "Deconfounding Duration Bias in Watch-time Prediction for Video
Recommendation", KDD 2022. Training durations are cut into G equal-frequency groups; per
group a table of the watch time at levels 0, 1/P, ..., 1 is the group's empirical quantile
function F_g^{-1} (piecewise linear between the points), and F_g its inverse. Used by the
D2Q baseline (baselines/d2q.py) and by LDA's `regression_target: quantile` (anchors over
this label, g predicting it, the table mapping it back to seconds).

Where the table is flat (many rows share one watch time, e.g. 0 s or a complete play), the
CDF is a range of levels; we take the middle of the range, so that the inverse returns
exactly that watch time. Everything comes from the training split.
"""

import numpy as np
import torch


def quantile_table(values, points):
    """Watch time at levels 0, 1/points, ..., 1 of `values` (numpy, float64): (points + 1,)."""
    return np.quantile(values, np.linspace(0.0, 1.0, points + 1))


def duration_groups(labels, durations, groups, points):
    """(interior cut points (G_eff - 1,), quantile tables (G_eff, points + 1)) from training rows.

    The cut points are observed durations at levels 1/G, ..., (G-1)/G (inverted CDF); after
    dropping repeats and the minimum every group [cut_{g-1}, cut_g) holds at least the rows
    at its lower cut, so no group is empty (G_eff <= G)."""
    if groups < 1 or points < 1:
        raise ValueError(f"duration_groups and quantile_points must be >= 1, got {groups} and {points}")
    cuts = np.quantile(durations, np.linspace(0.0, 1.0, groups + 1)[1:-1], method="inverted_cdf")
    cuts = np.unique(cuts)
    cuts = cuts[cuts > durations.min()]
    group = np.searchsorted(cuts, durations, side="right")  # the rule of `group_of`
    table = np.stack([quantile_table(labels[group == g], points) for g in range(len(cuts) + 1)])
    return cuts, table


def group_of(edges, duration):
    """Duration group index of each row: (B,) long. A duration equal to a cut point goes up."""
    return torch.searchsorted(edges, duration.float().contiguous(), right=True)


def to_quantile(table, levels, watch_time):
    """F_g(watch time) in [0, 1], (B,), with `table` the rows' group tables (B, P+1)."""
    y = watch_time.float().unsqueeze(-1)  # (B, 1)
    last = table.shape[1] - 1
    lo = torch.searchsorted(table, y, right=False).squeeze(-1)  # first knot >= y
    hi = torch.searchsorted(table, y, right=True).squeeze(-1)  # first knot > y
    # y sits on one or more knots (lo < hi): the middle of the flat run of levels.
    on_knot = (levels[lo.clamp(max=last)] + levels[(hi - 1).clamp(min=0)]) / 2
    # y lies strictly between knots lo-1 and lo: linear interpolation of the level.
    left, right = (lo - 1).clamp(0, last), lo.clamp(0, last)
    v_left = table.gather(1, left.unsqueeze(-1)).squeeze(-1)
    v_right = table.gather(1, right.unsqueeze(-1)).squeeze(-1)
    frac = ((y.squeeze(-1) - v_left) / (v_right - v_left).clamp_min(1e-12)).clamp(0.0, 1.0)
    between = levels[left] + frac * (levels[right] - levels[left])
    q = torch.where(lo < hi, on_knot, between)
    q = torch.where(lo > last, torch.ones_like(q), q)  # above the group's maximum
    return torch.where(hi == 0, torch.zeros_like(q), q)  # below the group's minimum


def to_watch_time(table, q):
    """F_g^{-1}(q) in seconds, (B,), with `table` (B, P+1); q is clipped to [0, 1]. Linear
    between knots, so a gradient reaches q inside (0, 1)."""
    points = table.shape[1] - 1
    pos = q.float().clamp(0.0, 1.0) * points  # (B,) position on the level grid
    k = pos.floor().long().clamp(max=points - 1)
    frac = (pos - k).unsqueeze(-1)  # (B, 1)
    v = table.gather(1, torch.stack([k, k + 1], dim=-1))  # (B, 2) knots around q
    return (v[:, :1] + frac * (v[:, 1:] - v[:, :1])).squeeze(-1)
