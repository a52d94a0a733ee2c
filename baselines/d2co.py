"""D2Co: watch time mapped by per-duration two-component Gaussian mixtures.

Zhao, Zhang, Xu, Cai, Dong and Wen, "Uncovering User Interest from Biased and Noised Watch
Time in Video Recommendation", RecSys 2023 (code: hyz20/D2Co; the D2Co baseline of the same
group's CWM code, hyz20/CWM, `src/preprocessing/cal_baseline_label.py` and
`src/utils/evaluate.py`). Inside one video duration, watch times are bimodal: a negative
peak (the user did not like the video, plays end early) and a positive one (plays near the
end). D2Co fits a 2-component Gaussian mixture to the training watch times of every
duration bin, smooths the two means across neighbouring bins, and regresses the watch time
measured between the bin's two means:

    x           = min(wt, d)                      (watch time truncated at the duration)
    bin(d)      = round(d / duration_bin_width)   (the references: whole seconds)
    mu-, mu+    = sorted means of the bin's 2-Gaussian mixture, then a moving average over
                  the 2w - 1 neighbouring bins weighted by their row counts (w = smoothing_window)
    label       u = (x - mu-) / (mu+ - mu-)                              (label_alpha = 0)
                u = (e^{a x} - e^{a mu-}) / (e^{a mu+} - e^{a mu-})      (label_alpha = a > 0)
                clipped to [0, 1] when clip_label
    loss        MSE(f, u)   (d2co_loss: mse)  or  BCE(sigmoid(f), u)  (d2co_loss: bce)
    prediction  clip(u^{-1}(f), 0, d); for a = 0 that is clip(f (mu+ - mu-) + mu-, 0, d)

The mixture per bin is fitted by EM (1-D, one variance per component, as scikit-learn's
`GaussianMixture(n_components=2, covariance_type='spherical')` of the references), started
from the exact 2-means split of the bin's values; all bins are fitted together with
vectorised numpy over the distinct (bin, watch time) pairs and their row counts
(`duration_bin_sample`; the ray engine's driver counts the same pairs in passes over the
training partitions, so both engines fit the same mixtures, bit for bit, and the driver's
memory grows with the distinct pairs, not with the rows). A bin needs `min_bin_rows` training rows to get its own mixture; rows
of other durations (sparse bins, or durations not seen in training) use the nearest fitted
bin. The fitted bins, their smoothed means and the row counts come from the training split
only and are buffers (saved in checkpoints).

Defaults: the D2Co baseline of hyz20/CWM (the prediction rule named in the issue): linear
label (its `alpha` argument is unused), not clipped, window 3 (its `run.sh`), bins of one
second. The D2Co repository's own label is `label_alpha: 0.3`, `clip_label: True`,
`smoothing_window: 10`, trained with `d2co_loss: bce` on a sigmoid output; all are keys.

Where ours differs from the reference code, and why:
- EM starts from the exact 2-means split of each bin (the 1-D optimum, found by prefix
  sums over the sorted values) instead of scikit-learn's k-means with k-means++ seeding and
  a fixed random state: deterministic, and the same fit where k-means finds the optimum.
  Convergence uses scikit-learn's rule (change of the mean log-likelihood below
  `gmm_tol`, at most `gmm_max_iter` iterations, `gmm_reg_covar` added to variances).
- The moving average weighs each fitted bin by its own row count. The references pass
  the counts of every duration in the range, including durations without a fit (fewer
  than 3 rows), so their weights shift against the bins they average whenever a duration
  is skipped.
- mu+ - mu- is floored at `min_mean_gap` seconds: the linear label divides by it (the CWM
  code adds 1e-6, which lets a bin with one peak produce labels of order 1e6).
- The label maps in float64 and its inverse uses log1p/expm1 (e^{a x} overflows float32
  for a x > 88, e.g. a = 0.3 and plays over 290 s).
- Rows keep their untruncated watch time as the evaluated label (the project's metric);
  the references evaluate against the truncated time. `truncate_at_duration: False` fits
  and trains on the untruncated time instead; the prediction is clipped at the duration
  either way, as in the CWM code.
"""

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from recbole_lda.utils.pair_counts import PairCounts
from recbole_lda.model import WatchTimeRecommender, training_statistics


def two_means_split(values, starts, sizes, counts=None):
    """Exact 1-D 2-means of every segment, its rows given as value counts: `values` are sorted
    within each segment [starts[b], starts[b] + sizes[b]), each value standing for `counts`
    rows (default 1). Returns the number of rows in each segment's lower cluster.

    Splitting after i rows leaves the within-cluster sum of squares
    sum x^2 - S_l^2 / i - S_r^2 / (n - i) (S_l, S_r the sums of the two sides), so the best
    split maximises S_l^2 / i + S_r^2 / (n - i); every split between two entries is scored
    with prefix sums (rows of one value need not be split: an optimum keeps them together).
    Ties: the smaller i. A segment of one entry (all its rows one value) gets i = 1."""
    weights = np.ones(len(values)) if counts is None else np.asarray(counts, dtype=np.float64)
    seg = np.repeat(np.arange(len(starts)), sizes)  # segment of every entry
    ends = starts + sizes - 1
    rows, mass = np.cumsum(weights), np.cumsum(values * weights)
    rows_before = np.where(starts > 0, rows[np.maximum(starts - 1, 0)], 0.0)
    mass_before = np.where(starts > 0, mass[np.maximum(starts - 1, 0)], 0.0)
    n, total = rows[ends] - rows_before, mass[ends] - mass_before
    i = rows - rows_before[seg]  # lower-cluster rows if the split follows this entry
    left = mass - mass_before[seg]
    n_right = n[seg] - i
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.where(n_right > 0, left**2 / i + (total[seg] - left) ** 2 / n_right, -np.inf)
    order = np.lexsort((-score, seg))  # per segment, best score first (ties: the smaller i)
    first = np.searchsorted(seg[order], np.arange(len(starts)))
    return np.where(sizes > 1, i[order[first]], 1.0).astype(np.int64)


FIT_CHUNK_ROWS = 1 << 20  # distinct (group, value) entries per EM fit: bounds its temporaries (~200 B each)


def fit_two_gaussians(values, groups, max_iter, tol, reg_covar, counts=None):
    """EM fit of a 2-component 1-D Gaussian mixture in every group, from rows or from value
    counts: row k stands for counts[k] rows of (groups[k], values[k]) (default 1; rows of
    equal (group, value) are merged first, so both forms give the same fit, bit for bit).
    Groups are independent: they are fitted in chunks of whole groups of at most
    FIT_CHUNK_ROWS entries (a larger group alone).

    values: (N,) float64; groups: (N,) int in [0, G), every group non-empty. Returns
    weights, means, variances, each (G, 2), components sorted by mean."""
    g, x, w = PairCounts().add(groups, values, counts).pairs
    g = g.astype(np.int64)
    ends = np.searchsorted(g, np.arange(1, int(g.max()) + 2))  # end of each group's entries
    fits, first = [], 0
    while first < len(ends):
        begin = ends[first - 1] if first else 0
        last = max(int(np.searchsorted(ends, begin + FIT_CHUNK_ROWS, side="right")), first + 1)
        mine = slice(begin, ends[last - 1])
        fits.append(_fit_chunk(x[mine], g[mine] - first, w[mine].astype(np.float64), last - first, max_iter, tol, reg_covar))
        first = last
    return tuple(np.concatenate(parts) for parts in zip(*fits))


def _fit_chunk(x, g, w, num, max_iter, tol, reg_covar):
    """fit_two_gaussians on entries sorted by (group, value), groups 0..num-1."""
    sizes = np.bincount(g, minlength=num)  # distinct values per group
    rows = np.bincount(g, w, minlength=num)  # rows per group
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    lower = two_means_split(x, starts, sizes, w)
    below = np.cumsum(w) - w - np.repeat(np.cumsum(w)[starts] - w[starts], sizes)  # rows before each entry, in its group
    in_lower = np.clip(lower[g] - below, 0.0, w) / w  # share of each entry's rows in the lower cluster (0 or 1 but one)
    resp = np.stack([in_lower, 1.0 - in_lower], axis=1)  # (N, 2) the 2-means split as responsibilities to start

    def m_step(resp):
        mass = resp * w[:, None]  # rows of each entry per component
        nk = np.stack([np.bincount(g, mass[:, c], num) for c in range(2)], 1) + 10 * np.finfo(float).eps
        means = np.stack([np.bincount(g, mass[:, c] * x, num) for c in range(2)], 1) / nk
        var = np.stack([np.bincount(g, mass[:, c] * (x - np.take(means[:, c], g)) ** 2, num) for c in range(2)], 1) / nk
        return nk / rows[:, None], means, var + reg_covar

    weights, means, var = m_step(resp)
    previous = np.full(num, -np.inf)
    active = np.ones(num, dtype=bool)
    for _ in range(max_iter):
        const = np.log(weights) - 0.5 * np.log(2 * np.pi * var)  # (G, 2): per-bin terms
        row = lambda a: np.take(a, g, axis=0)  # noqa: E731  (G, 2) -> (N, 2); np.take: ~30x faster than a[g]
        log_p = row(const) - 0.5 * (x[:, None] - row(means)) ** 2 * row(1.0 / var)  # (N, 2): log w_k N(x; m_k, v_k)
        norm = np.logaddexp(log_p[:, 0], log_p[:, 1])
        mean_loglik = np.bincount(g, w * norm, num) / rows
        active &= np.abs(mean_loglik - previous) >= tol
        previous = mean_loglik
        if not active.any():
            break
        new = m_step(np.exp(log_p - norm[:, None]))
        keep = ~active[:, None]  # converged groups keep their parameters
        weights, means, var = (np.where(keep, old, upd) for old, upd in zip((weights, means, var), new))
    swap = means[:, 0] > means[:, 1]
    return tuple(np.where(swap[:, None], p[:, ::-1], p) for p in (weights, means, var))


def count_weighted_moving_average(values, counts, window):
    """Centred moving average over 2 * window - 1 neighbours (fewer at the ends), each
    value weighted by its count: (G,) -> (G,)."""
    half = window - 1
    padded = lambda a: np.concatenate([[0.0], np.cumsum(a)])  # noqa: E731
    num, den = padded(values * counts), padded(counts.astype(float))
    idx = np.arange(len(values))
    lo, hi = np.maximum(idx - half, 0), np.minimum(idx + half + 1, len(values))
    return (num[hi] - num[lo]) / (den[hi] - den[lo])


def duration_bin_sample(watch_time, duration, width, truncate):
    """D2Co's training sample as value counts (keys, x, counts): the distinct pairs of bin key
    round(d / width) and x (min(wt, d) when `truncate`, else wt), sorted, and their rows.
    The ray engine's driver gets the same arrays from passes over the training partitions
    (dataset_prep/label_statistics.d2co_sample)."""
    watch_time, duration = np.asarray(watch_time, dtype=np.float64), np.asarray(duration, dtype=np.float64)
    x = np.minimum(watch_time, duration) if truncate else watch_time
    return PairCounts().add(np.round(duration / width), x).pairs


def duration_bin_means(keys, x, counts, min_rows, window, max_iter, tol, reg_covar, min_gap):
    """D2Co's per-duration-bin statistics from its training sample (duration_bin_sample):
    fitted bin keys (increasing), smoothed mu- and mu+ (seconds) and the row count of each
    fitted bin. See the module docstring."""
    fitted, inverse = np.unique(keys, return_inverse=True)
    rows = np.bincount(inverse, counts).astype(np.int64)
    enough = rows >= min_rows
    if not enough.any():
        raise ValueError(f"D2Co: no duration bin has min_bin_rows={min_rows} training rows")
    mine = enough[inverse]
    group = np.cumsum(enough)[inverse[mine]] - 1  # index among the fitted bins
    _, means, _ = fit_two_gaussians(x[mine], group, max_iter, tol, reg_covar, counts[mine])
    rows = rows[enough]
    mu_minus = count_weighted_moving_average(means[:, 0], rows, window)
    mu_plus = count_weighted_moving_average(means[:, 1], rows, window)
    return fitted[enough], mu_minus, np.maximum(mu_plus, mu_minus + min_gap), rows


class D2Co(WatchTimeRecommender):
    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.bin_width = float(config["duration_bin_width"])
        self.alpha = float(config["label_alpha"])
        self.clip_label = bool(config["clip_label"])
        self.truncate = bool(config["truncate_at_duration"])
        self.loss_type = config["d2co_loss"]
        window, min_rows = config["smoothing_window"], config["min_bin_rows"]  # ranges: checked by the Config
        if self.loss_type == "bce" and not self.clip_label:
            raise ValueError("d2co_loss: bce needs clip_label: True (BCE targets must lie in [0, 1])")

        statistics = training_statistics(dataset)  # the ray engine's driver: a pass over the partitions
        if statistics is not None:
            sample = statistics.d2co_sample(self.bin_width, self.truncate)
        else:
            sample = duration_bin_sample(*(t.numpy() for t in self.train_labels(dataset)), self.bin_width, self.truncate)
        keys, mu_minus, mu_plus, counts = duration_bin_means(
            *sample, min_rows, window, config["gmm_max_iter"], float(config["gmm_tol"]),
            float(config["gmm_reg_covar"]), float(config["min_mean_gap"]),
        )
        self.register_buffer("bin_keys", torch.tensor(keys, dtype=torch.float32))  # (G,) round(d / width)
        self.register_buffer("mu_minus", torch.tensor(mu_minus, dtype=torch.float32))  # (G,) seconds
        self.register_buffer("mu_plus", torch.tensor(mu_plus, dtype=torch.float32))  # (G,) seconds
        self.register_buffer("bin_rows", torch.tensor(counts, dtype=torch.float32))  # (G,) training rows per bin
        self.head = nn.Linear(self.backbone.output_dim, 1)

    def report(self):
        return {"duration_bins": len(self.bin_keys)}

    def bin_means(self, duration):
        """(mu-, mu+) of the nearest fitted duration bin of each row, float64 seconds: 2 x (B,)."""
        keys = self.bin_keys.double()
        key = torch.round(duration.double() / self.bin_width)
        hi = torch.searchsorted(keys, key.contiguous()).clamp(max=len(keys) - 1)
        lo = (hi - 1).clamp(min=0)
        nearest = torch.where((key - keys[lo]).abs() <= (keys[hi] - key).abs(), lo, hi)
        return self.mu_minus[nearest].double(), self.mu_plus[nearest].double()

    def watch_time_to_label(self, watch_time, duration):
        """The label transform u (B,), float32."""
        x = watch_time.double()
        if self.truncate:
            x = torch.minimum(x, duration.double())
        lo, hi = self.bin_means(duration)
        if self.alpha == 0:
            u = (x - lo) / (hi - lo)
        else:  # (e^{a x} - e^{a lo}) / (e^{a hi} - e^{a lo}), divided through by e^{a lo}
            u = torch.expm1(self.alpha * (x - lo)) / torch.expm1(self.alpha * (hi - lo))
        if self.clip_label:
            u = u.clamp(0.0, 1.0)
        return u.float()

    def label_to_watch_time(self, u, duration):
        """The prediction rule: the inverse transform, clipped to [0, duration]: (B,) seconds."""
        u = u.double()
        lo, hi = self.bin_means(duration)
        if self.alpha == 0:
            y = u * (hi - lo) + lo
        else:  # inverse of the exponential map; its argument is floored where u < -1 / expm1(a (hi - lo))
            y = lo + torch.log1p((u * torch.expm1(self.alpha * (hi - lo))).clamp_min(-1 + 1e-12)) / self.alpha
        return torch.minimum(y.clamp_min(0.0), duration.double()).float()

    def forward(self, interaction):
        return self.head(self.backbone(interaction)).squeeze(-1)  # (B,) f

    def calculate_loss(self, interaction):
        f = self.forward(interaction)
        target = self.watch_time_to_label(interaction[self.LABEL], interaction[self.DURATION])
        if self.loss_type == "bce":
            return F.binary_cross_entropy_with_logits(f, target)
        return F.mse_loss(f, target)

    def predict(self, interaction):
        f = self.forward(interaction)
        if self.loss_type == "bce":
            f = torch.sigmoid(f)
        return self.label_to_watch_time(f, interaction[self.DURATION])
