"""Statistics that models take from the training labels, computed from the training
partitions of a streamed folder (dataset_prep/stream_prepare.py) without loading the
training split into one process: each pass reads one partition at a time.

The values are those a model computes in memory from the same training rows in the same
order (the partitions in name order, then their rows): RecBole holds labels and durations
as float32, so every value here is first rounded to float32 (`model_floats`).
- Quantile-based statistics are exact (merged value counts, statistics.ValueCounts):
  LDA's duration bucket edges (model/anchors.duration_bucket_edges), D2Q's duration cut
  points and per-group quantile tables (recbole_lda/model/quantile.duration_groups).
- LDA's sampled label sequences (anchors.sample_sequences, `random` and `user` sampling)
  are exact: the same generator draws the same ranks, and the rows at those ranks are
  fetched in a last pass (a user's rows may lie in several partitions).
- Means and standard deviations (VR's label_mean / label_std, LDA's label_scale and
  bucket means, the backbone's standardisation of the duration field) are sums in
  float64 (math.fsum per partition, then over partitions): they agree with the in-memory
  figures to a relative 1e-12 (tests/test_label_statistics.py), so the float32 buffers
  that models keep are equal.
- D2Co's sample (its distinct (duration bin, watch time) pairs and their row counts) is
  exact: the model fits its mixtures from the same pairs in memory.
Passes: `summary` (one pass: label and duration value counts), then one pass each for
D2Q's tables, D2Co's sample, LDA's bucket means and LDA's sequences (two: counts, then the
draws).
Not covered: see docs/scale.md ("Label statistics").
"""

import glob
import math
import os

import numpy as np
import pyarrow.parquet as pq

from dataset_prep.statistics import ValueCounts
from recbole_lda.utils.pair_counts import PairCounts


def train_files(folder):
    """The training partitions of a streamed folder, in their order."""
    files = sorted(glob.glob(os.path.join(glob.escape(folder), "train", "part-*.parquet")))
    if not files:
        raise FileNotFoundError(f"no train/part-*.parquet in {folder}: not a streamed folder")
    return files


def model_floats(values):
    """Values as a model sees them: float32 in RecBole's dataset, then float64."""
    return np.asarray(values, dtype=np.float64).astype(np.float32).astype(np.float64)


def read(path, columns):
    """{column: array} of one partition (label and duration as model_floats)."""
    table = pq.read_table(path, columns=columns)
    return {c: model_floats(table.column(c).to_numpy()) if c in ("label", "duration") else table.column(c).to_numpy()
            for c in columns}


def summary(files):
    """One pass: value counts of the labels and of the durations."""
    labels, durations = ValueCounts(), ValueCounts()
    for path in files:
        part = read(path, ["label", "duration"])
        labels.add(part["label"])
        durations.add(part["duration"])
    return {"labels": labels, "durations": durations}


def mean_std(counts, transform=None, ddof=1):
    """(mean, standard deviation with `ddof`: 1 as torch's std, 0 as numpy's) of the sample
    held by `counts`, after `transform`."""
    values = counts.values if transform is None else transform(counts.values)
    n = counts.n
    mean = math.fsum(values * counts.counts) / n
    std = math.sqrt(math.fsum(counts.counts * (values - mean) ** 2) / (n - ddof)) if n > ddof else float("nan")
    return mean, std


def signed_log1p(x):
    """The backbone's transform of float fields (recbole_lda/model/backbone.py)."""
    return np.sign(x) * np.log1p(np.abs(x))


def vr_normalisation(stats):
    """VR's (label_mean, label_std before its clamp at 1e-6); LDA's label_scale is the std."""
    return mean_std(stats["labels"])


def duration_normalisation(stats):
    """The backbone's (mean, std before its floor at 1e-6) of signed_log1p(duration)."""
    return mean_std(stats["durations"], signed_log1p)


def label_quantiles(stats, levels, method="linear"):
    """np.quantile(training labels, levels): EGMN's unit (one level), CREAD's split points
    (baselines/cread.split_points takes this as its `quantile`), CQE's starting quantiles."""
    return stats["labels"].quantiles(levels, method)


def or_thresholds(stats, m):
    """OR's thresholds: the distinct non-negative label quantiles at levels 1/(m+1) .. m/(m+1)."""
    thresholds = np.unique(label_quantiles(stats, np.arange(1, m + 1) / (m + 1)))
    return thresholds[thresholds >= 0.0]


def tpm_leaves(stats, num_leaves, leaf_value):
    """TPM's (edges, leaf values, label variance before its floor at 1e-12): label quantile
    edges; a leaf's value is its interval midpoint, or with leaf_value "mean" the mean of its
    training labels (where it has any); the variance is numpy's (ddof 0)."""
    labels = stats["labels"]
    edges = labels.quantiles(np.linspace(0.0, 1.0, num_leaves + 1))
    values = (edges[:-1] + edges[1:]) / 2
    if leaf_value == "mean":
        leaf = np.searchsorted(edges[1:-1], labels.values, side="right")
        for k in np.unique(leaf):
            mine = leaf == k
            values[k] = math.fsum(labels.values[mine] * labels.counts[mine]) / labels.counts[mine].sum()
    return edges, values, mean_std(labels, ddof=0)[1] ** 2


def cqe_start(stats, levels):
    """CQE's (label_scale before its floor at 1e-6, increments of the marginal quantiles / scale)."""
    scale = max(mean_std(stats["labels"], ddof=0)[1], 1e-6)
    return scale, np.diff(label_quantiles(stats, levels), prepend=0.0) / scale


def bucket_edges(stats, num_buckets):
    """LDA's equal-frequency duration bucket edges (anchors.duration_bucket_edges)."""
    return np.unique(stats["durations"].quantiles(np.linspace(0, 1, num_buckets + 1)))


def d2q_tables(files, stats, groups, points):
    """D2Q's (cuts, per-group label quantile tables), as recbole_lda/model/quantile.duration_groups."""
    durations = stats["durations"]
    cuts = np.unique(durations.quantiles(np.linspace(0.0, 1.0, groups + 1)[1:-1], method="inverted_cdf"))
    cuts = cuts[cuts > durations.values[0]]
    per_group = [ValueCounts() for _ in range(len(cuts) + 1)]
    for path in files:
        part = read(path, ["label", "duration"])
        group = np.searchsorted(cuts, part["duration"], side="right")
        order = np.argsort(group, kind="stable")
        bounds = np.searchsorted(group[order], np.arange(len(per_group) + 1))
        for g in np.flatnonzero(np.diff(bounds)):
            per_group[g].add(part["label"][order[bounds[g]:bounds[g + 1]]])
    levels = np.linspace(0.0, 1.0, points + 1)
    return cuts, np.stack([counts.quantiles(levels) for counts in per_group])


def bucket_rows(stats, edges):
    """Training rows per duration bucket (LDA's mu_2 with anchor_mass: usage)."""
    durations = stats["durations"]
    inner = np.asarray(edges)[1:-1]
    return np.bincount(np.searchsorted(inner, durations.values, side="right"), weights=durations.counts,
                       minlength=len(edges) - 1).astype(np.int64)


def mean_ratio(files):
    """The mean training watch ratio, label / max(duration, 1e-6) (LDA's direct head's start)."""
    sums, rows = [], 0
    for path in files:
        part = read(path, ["label", "duration"])
        sums.append(math.fsum(part["label"] / np.maximum(part["duration"], 1e-6)))
        rows += len(part["label"])
    return math.fsum(sums) / rows


def bucket_means(files, edges, target="ratio", label_scale=1.0):
    """LDA's mean training target per duration bucket (before its floor at 1e-3): the watch
    ratio, or watch time / label_scale; a bucket without rows gets the overall mean."""
    sums, counts = [[] for _ in range(len(edges) - 1)], np.zeros(len(edges) - 1, dtype=np.int64)
    total = []
    inner = model_floats(edges)[1:-1]  # LDA assigns these buckets with its float32 edges
    for path in files:
        part = read(path, ["label", "duration"])
        bucket = np.searchsorted(inner, part["duration"], side="right")
        value = part["label"] / np.maximum(part["duration"], 1e-6) if target == "ratio" else part["label"] / float(label_scale)
        for b in range(len(counts)):
            mine = value[bucket == b]
            sums[b].append(math.fsum(mine))
            counts[b] += len(mine)
        total.append(math.fsum(value))
    overall = math.fsum(total) / counts.sum()
    return np.array([math.fsum(s) / c if c else overall for s, c in zip(sums, counts)])


def d2co_sample(files, width, truncate):
    """D2Co's training sample (baselines/d2co.duration_bin_sample): the distinct pairs of bin
    key round(duration / width) and watch time (truncated at the duration when `truncate`),
    sorted, with their row counts, merged over the partitions."""
    pairs = PairCounts()
    for path in files:
        part = read(path, ["label", "duration"])
        x = np.minimum(part["label"], part["duration"]) if truncate else part["label"]
        pairs.add(np.round(part["duration"] / width), x)
    return pairs.pairs


def label_sequences(files, edges, sampling, num_sequences, length, min_source_size, seed, value=None):
    """LDA's sorted label sequences (D, L, n), float32, in log(1 + ratio) space, as
    anchors.sample_sequences draws them with np.random.default_rng(seed) from the training
    rows in partition order; sampling: "random" (whole bucket) or "user" (user_index).
    `value(labels, durations)`: the anchors' values of a partition's rows instead (LDA's
    quantile target: D2Q's quantile label), as sample_sequences takes them with log_space False."""
    if sampling not in ("random", "user"):
        raise ValueError(f"label_sequences: sequence_sampling {sampling!r} is not covered (random or user)")
    inner = edges[1:-1]
    counts, sources = _bucket_counts(files, inner, len(edges) - 1, sampling == "user")
    rng = np.random.default_rng(seed)
    requests = []
    for b in range(len(edges) - 1):
        rows = int(counts[:, b].sum())
        if rows == 0:
            raise ValueError(f"duration bucket {b} has no training rows")
        eligible = np.flatnonzero(sources[b].counts >= min_source_size) if sampling == "user" else []
        if len(eligible) == 0:  # random sampling, or too sparse to group: the whole bucket
            requests.append(("rank", rng.integers(rows, size=(num_sequences, length))))
        else:
            chosen = eligible[rng.integers(len(eligible), size=num_sequences)]
            offsets = (rng.random((num_sequences, length)) * sources[b].counts[chosen, None]).astype(np.int64)
            users = np.broadcast_to(sources[b].values[chosen, None], offsets.shape)
            requests.append(("source", users, offsets, sources[b].values, np.zeros(len(sources[b].values), np.int64)))
    out = np.full((len(requests), num_sequences, length), np.nan)
    starts = np.cumsum(counts, axis=0) - counts  # rank of each partition's first row, per bucket
    for p, path in enumerate(files):
        _fetch(read(path, ["label", "duration", "user_index"]), inner, requests, starts[p], counts[p], out, value)
    return np.sort(out, axis=2).astype(np.float32)


def _bucket_counts(files, inner, num_buckets, by_user):
    """Rows per (partition, bucket), and per bucket the rows of each user (ValueCounts)."""
    counts = np.zeros((len(files), num_buckets), dtype=np.int64)
    sources = [ValueCounts(np.int64) for _ in range(num_buckets)]
    for p, path in enumerate(files):
        part = read(path, ["duration", "user_index"] if by_user else ["duration"])
        bucket = np.searchsorted(inner, part["duration"], side="right")
        counts[p] = np.bincount(bucket, minlength=num_buckets)
        if by_user:
            for b in np.flatnonzero(counts[p]):
                sources[b].add(part["user_index"][bucket == b])
    return counts, sources


def _fetch(part, inner, requests, start, count, out, value=None):
    """Fill `out` with the requested rows' values that this partition holds. A "rank" request
    names rows by their rank in the bucket; a "source" request by (user, offset): the user's
    offset-th row in the bucket, counting in partition order (a user's rows may lie in several
    partitions: `before` counts, per user of the bucket, the rows of earlier partitions)."""
    bucket = np.searchsorted(inner, part["duration"], side="right")
    if value is None:
        values = np.log1p(np.clip(part["label"] / np.maximum(part["duration"], 1e-6), 0.0, None))
    else:
        values = np.asarray(value(part["label"], part["duration"]), dtype=np.float64)
    for b, request in enumerate(requests):
        rows = np.flatnonzero(bucket == b)
        if request[0] == "rank":
            ranks = request[1]
            mine = (ranks >= start[b]) & (ranks < start[b] + count[b])
            out[b][mine] = values[rows[ranks[mine] - start[b]]]
            continue
        _, users, offsets, bucket_users, before = request
        order = np.argsort(part["user_index"][rows], kind="stable")
        sorted_users = part["user_index"][rows][order]
        first, last = np.searchsorted(sorted_users, users), np.searchsorted(sorted_users, users, side="right")
        local = offsets - before[np.searchsorted(bucket_users, users)]  # the offset among this partition's rows
        mine = (local >= 0) & (local < last - first)
        out[b][mine] = values[rows[order[first[mine] + local[mine]]]]
        here, counts = np.unique(sorted_users, return_counts=True)
        before[np.searchsorted(bucket_users, here)] += counts


class TrainingStatistics:
    """The statistics above over the training partitions of a streamed `folder`, each computed
    when first asked for (the summary once): what a model's constructor takes on the ray
    engine's driver instead of the training columns (recbole_lda/quick_start/stream_model.py
    hands it to the models as `dataset.training_statistics`). A model that does not ask for it
    reads the columns as before."""

    def __init__(self, folder):
        self.files = train_files(folder)
        self._summary = None

    @property
    def summary(self):
        if self._summary is None:
            self._summary = summary(self.files)
        return self._summary

    def vr_normalisation(self):
        return vr_normalisation(self.summary)

    def duration_normalisation(self):
        return duration_normalisation(self.summary)

    def d2q_tables(self, groups, points):
        return d2q_tables(self.files, self.summary, groups, points)

    def label_mean(self):
        return mean_std(self.summary["labels"])[0]

    def label_std(self, ddof):
        return mean_std(self.summary["labels"], ddof=ddof)[1]

    def label_quantiles(self, levels, method="linear"):
        return label_quantiles(self.summary, levels, method)

    def label_share_above(self, points):
        """(training rows, the share of them with a label above each point) (CREAD's start)."""
        labels = self.summary["labels"]
        return labels.n, np.array([labels.counts[labels.values > p].sum() for p in points]) / labels.n

    def or_thresholds(self, m):
        return or_thresholds(self.summary, m)

    def tpm_leaves(self, num_leaves, leaf_value):
        return tpm_leaves(self.summary, num_leaves, leaf_value)

    def cqe_start(self, levels):
        return cqe_start(self.summary, levels)

    def bucket_edges(self, num_buckets):
        return bucket_edges(self.summary, num_buckets)

    def bucket_means(self, edges, target, label_scale):
        return bucket_means(self.files, edges, target, label_scale)

    def d2co_sample(self, width, truncate):
        return d2co_sample(self.files, width, truncate)

    def label_sequences(self, edges, sampling, num_sequences, length, min_source_size, seed, value=None):
        return label_sequences(self.files, edges, sampling, num_sequences, length, min_source_size, seed, value)

    def bucket_rows(self, edges):
        return bucket_rows(self.summary, edges)

    def mean_ratio(self):
        return mean_ratio(self.files)
