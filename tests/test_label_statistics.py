"""Label statistics from training partitions (dataset_prep/label_statistics.py) equal the
models' in-memory statistics on the same training rows: quantile-based ones and LDA's
sampled sequences exactly, means and standard deviations to a relative 1e-12 (equal as the
float32 buffers the models keep)."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from recbole_lda.model.quantile import duration_groups as group_tables  # D2Q's statistics
from dataset_prep import label_statistics as ls
from dataset_prep.statistics import ValueCounts
from dataset_prep.stream_prepare import prepare_stream
from recbole_lda.cli.prepare import dataset_config
from recbole_lda.model.anchors import assign_buckets, duration_bucket_edges, sample_sequences
from recbole_lda.model.backbone import signed_log1p


@pytest.fixture(scope="module")
def streamed(tmp_path_factory):
    """A streamed folder with many training partitions, and its training rows as a model
    holds them (float32 labels and durations, in partition order)."""
    config = dataset_config("synthetic_kuairand", {
        "data_path": str(tmp_path_factory.mktemp("stats")), "stream_chunk_rows": 1000, "synthetic_rows": 30_000,
        "synthetic_users": 150, "synthetic_items": 4000, "split": "time", "split_dates": [20220501, 20220505]})
    folder = prepare_stream(config).path
    files = ls.train_files(folder)
    table = pa.concat_tables([pq.read_table(f) for f in files])
    memory = {
        "labels": torch.tensor(table.column("label").to_numpy().astype(np.float32)).double(),
        "durations": torch.tensor(table.column("duration").to_numpy().astype(np.float32)).double(),
        "users": table.column("user_index").to_numpy().astype(np.int64),
    }
    assert len(files) > 10
    return files, ls.summary(files), memory


def close_and_same_float32(ours, theirs):
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=0)
    assert np.array_equal(np.float32(ours), np.float32(theirs))


def test_value_counts_give_numpy_quantiles_exactly():
    rng = np.random.default_rng(3)
    for n in (1, 2, 5, 101, 2000):
        x = np.round(rng.lognormal(0, 1, n), 1)  # many ties
        counts = ValueCounts()
        for piece in np.array_split(x, 7):
            counts.add(piece)
        levels = np.linspace(0, 1, 41)
        for method in ("linear", "inverted_cdf"):
            assert np.array_equal(counts.quantiles(levels, method), np.quantile(x, levels, method=method))
    assert counts.n == 2000 and counts.values.tolist() == sorted(set(x.tolist()))


def test_normalisation_constants(streamed):
    files, stats, memory = streamed
    mean, std = ls.vr_normalisation(stats)  # VR: labels.mean(), labels.std(); LDA's label_scale
    close_and_same_float32(mean, memory["labels"].mean().item())
    close_and_same_float32(std, memory["labels"].std().item())
    mean, std = ls.duration_normalisation(stats)  # the backbone's float field standardisation
    transformed = signed_log1p(memory["durations"])
    close_and_same_float32(mean, transformed.mean().item())
    close_and_same_float32(std, transformed.std().item())


def test_lda_buckets_and_d2q_tables_exactly(streamed):
    files, stats, memory = streamed
    durations, labels = memory["durations"].numpy(), memory["labels"].numpy()
    for d in (1, 8, 13):
        assert np.array_equal(ls.bucket_edges(stats, d), duration_bucket_edges(durations, d))
    for groups, points in ((50, 100), (7, 3)):
        cuts, table = ls.d2q_tables(files, stats, groups, points)
        their_cuts, their_table = group_tables(labels, durations, groups, points)
        assert np.array_equal(cuts, their_cuts) and np.array_equal(table, their_table)
        assert table.shape == (len(cuts) + 1, points + 1)


def test_lda_bucket_means(streamed):
    files, stats, memory = streamed
    edges = ls.bucket_edges(stats, 8)
    labels, durations = memory["labels"].numpy(), memory["durations"].numpy()
    bucket = assign_buckets(memory["durations"], torch.as_tensor(edges, dtype=torch.float32)).numpy()  # as LDA.bucket_means
    ratio = labels / np.maximum(durations, 1e-6)
    close_and_same_float32(ls.bucket_means(files, edges), [ratio[bucket == b].mean() for b in range(len(edges) - 1)])
    scale = memory["labels"].std().item()
    close_and_same_float32(ls.bucket_means(files, edges, "watch_time", scale),
                           [(labels / scale)[bucket == b].mean() for b in range(len(edges) - 1)])


@pytest.mark.parametrize("sampling,min_source_size", [("random", 3), ("user", 3), ("user", 10**6)])
def test_lda_sequences_exactly(streamed, sampling, min_source_size):
    files, stats, memory = streamed
    edges = ls.bucket_edges(stats, 8)
    labels, durations = memory["labels"].numpy(), memory["durations"].numpy()
    theirs = sample_sequences(labels / np.maximum(durations, 1e-6), assign_buckets(durations, edges),
                              memory["users"] if sampling == "user" else None, len(edges) - 1, 64, 16, min_source_size,
                              np.random.default_rng(2020))
    ours = ls.label_sequences(files, edges, sampling, 64, 16, min_source_size, 2020)
    assert ours.dtype == np.float32 and np.array_equal(ours, theirs)


def test_user_sampling_where_users_span_partitions(tmp_path, streamed):
    """A folder whose users' rows lie in several partitions (the training rows dealt into 7
    files at random, not by user): the same user-sampled sequences as in memory, exactly."""
    files, _, memory = streamed
    table = pa.concat_tables([pq.read_table(f) for f in files])
    deal = np.random.default_rng(5).integers(0, 7, table.num_rows)
    dealt = []
    for k in range(7):
        dealt.append(str(tmp_path / f"part-{k}.parquet"))
        pq.write_table(table.filter(pa.array(deal == k)), dealt[-1])
    users = [set(pq.read_table(f, columns=["user_index"]).column(0).to_pylist()) for f in dealt]
    assert len(users[0] & users[1]) > 10  # users span partitions
    rows = pa.concat_tables([pq.read_table(f) for f in dealt])
    labels = rows.column("label").to_numpy().astype(np.float32).astype(np.float64)
    durations = rows.column("duration").to_numpy().astype(np.float32).astype(np.float64)
    edges = ls.bucket_edges(ls.summary(dealt), 8)
    theirs = sample_sequences(labels / np.maximum(durations, 1e-6), assign_buckets(durations, edges),
                              rows.column("user_index").to_numpy().astype(np.int64), len(edges) - 1, 64, 16, 3,
                              np.random.default_rng(2020))
    assert np.array_equal(ls.label_sequences(dealt, edges, "user", 64, 16, 3, 2020), theirs)
    assert not np.array_equal(theirs, ls.label_sequences(files, edges, "user", 64, 16, 3, 2020))  # other row order


def test_quantile_statistics_of_or_tpm_cread_egmn_cqe(streamed):
    """OR's thresholds, TPM's leaves, CREAD's split points, EGMN's unit and CQE's start: the
    quantile-based values exactly, the means and variances to a relative 1e-12."""
    from baselines.cread import split_points

    files, stats, memory = streamed
    labels = memory["labels"].numpy()
    for m in (1, 7, 40):
        theirs = np.unique(np.quantile(labels, np.arange(1, m + 1) / (m + 1)))  # baselines/ordinal.py
        assert np.array_equal(ls.or_thresholds(stats, m), theirs[theirs >= 0.0])
    for leaves, leaf_value in ((8, "mean"), (4, "midpoint")):  # baselines/tpm.py
        edges, values, var = ls.tpm_leaves(stats, leaves, leaf_value)
        their_edges = np.quantile(labels, np.linspace(0.0, 1.0, leaves + 1))
        leaf = np.searchsorted(their_edges[1:-1], labels, side="right")
        their_values = (their_edges[:-1] + their_edges[1:]) / 2
        if leaf_value == "mean":
            their_values = np.array([labels[leaf == k].mean() for k in range(leaves)])
        assert np.array_equal(edges, their_edges)
        close_and_same_float32(values, their_values)
        close_and_same_float32(var, labels.var())
    for alpha in (None, 2.0):  # CREAD, with its alpha search over a grid
        ours = split_points(None, 12, alpha, np.arange(0.0, 3.0, 0.5), 1.0, quantile=lambda lv: ls.label_quantiles(stats, lv))
        theirs = split_points(labels, 12, alpha, np.arange(0.0, 3.0, 0.5), 1.0)
        assert ours[0] == theirs[0] and np.array_equal(ours[1], theirs[1])
    assert ls.label_quantiles(stats, 0.99) == np.quantile(labels, 0.99)  # EGMN's unit
    levels = np.arange(1, 10) / 10
    scale, increments = ls.cqe_start(stats, levels)  # baselines/cqe.py
    close_and_same_float32(scale, labels.std())
    close_and_same_float32(increments, np.diff(np.quantile(labels, levels), prepend=0.0) / labels.std())


def test_d2co_sample_exactly(streamed):
    """D2Co's (bin, watch time) pairs and row counts from the partitions equal the model's from
    the rows; the pairs are fewer than the rows (the driver's memory grows with them)."""
    from baselines.d2co import duration_bin_sample

    files, _, memory = streamed
    labels, durations = memory["labels"].numpy(), memory["durations"].numpy()
    for width, truncate in ((1.0, True), (5.0, False)):
        ours, theirs = ls.d2co_sample(files, width, truncate), duration_bin_sample(labels, durations, width, truncate)
        assert all(np.array_equal(a, b) for a, b in zip(ours, theirs))
        assert ours[2].sum() == len(labels)
    assert len(ls.d2co_sample(files, 5.0, False)[0]) < len(labels)
