"""Labels and durations exactly on interval edges: TPM's leaves, D2Q's duration groups and
quantile knots, OR's thresholds, CWM's censoring point and LDA's duration buckets. Each
rule is "an edge belongs to the interval above it" (OR: "above a threshold" is strict), and
the statistics computed in __init__ follow the same rule as the transform used in training.
"""

import numpy as np
import pytest
import torch

from pinning_helpers import LDA_SMALL, batch, build, write_toy
from recbole_lda.model.anchors import assign_buckets


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toy(tmp_path_factory.mktemp("edges"))


def test_tpm_leaf_of_puts_edges_in_the_interval_above(toy):
    model, _, _ = build("TPM", toy, tree_height=2)
    model.edges = torch.tensor([0.0, 1.0, 3.0, 6.0, 10.0])
    wt = torch.tensor([0.0, 1.0, 3.0, 6.0, 10.0, 0.999, 2.999, 10.5, -1.0])
    assert model.leaf_of(wt).tolist() == [0, 1, 2, 3, 3, 0, 1, 3, 0]


@pytest.mark.parametrize("leaf_value", ["mean", "midpoint"])
def test_tpm_leaf_values_use_the_same_edge_rule_on_training_labels(toy, leaf_value):
    model, train, _ = build("TPM", toy, tree_height=3, leaf_value=leaf_value)
    labels = train.inter_feat["label"].double().numpy()
    edges = np.quantile(labels, np.linspace(0, 1, 9))
    np.testing.assert_allclose(model.edges.numpy(), edges, rtol=1e-6)
    on_edge = np.isin(labels, edges[1:-1])
    assert on_edge.any()  # ties (0 s, complete plays) put training labels exactly on edges
    leaf = np.searchsorted(edges[1:-1], labels, side="right")
    assert torch.equal(model.leaf_of(torch.tensor(labels, dtype=torch.float32)), torch.tensor(leaf))
    for k in range(8):
        inside = labels[leaf == k]
        expected = inside.mean() if leaf_value == "mean" and len(inside) else (edges[k] + edges[k + 1]) / 2
        assert model.leaf_values[k].item() == pytest.approx(expected, rel=1e-5), k


def test_d2q_duration_on_a_cut_goes_up_and_knots_map_exactly(toy):
    model, _, _ = build("D2Q", toy, quantile_points=4)
    model.group_edges = torch.tensor([10.0, 20.0])
    model.group_quantiles = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0],
                                          [0.0, 0.0, 5.0, 5.0, 8.0],
                                          [1.0, 2.0, 4.0, 8.0, 16.0]])
    d = torch.tensor([9.99, 10.0, 19.99, 20.0, 35.0, 0.0])
    assert model.group_of(d).tolist() == [0, 1, 1, 2, 2, 0]
    # knots of a strictly increasing table: their level; flat runs: the middle of the run
    wt = torch.tensor([2.0, 5.0, 0.0, 8.0, 16.0, 1.0])
    q = model.watch_time_to_quantile(wt, d)
    torch.testing.assert_close(q, torch.tensor([0.5, 0.625, 0.125, 0.75, 1.0, 0.25]))
    # at the group's minimum of a strictly increasing table: level 0; below it: 0; above the max: 1
    q = model.watch_time_to_quantile(torch.tensor([1.0, 0.5, 17.0]), torch.full((3,), 30.0))
    torch.testing.assert_close(q, torch.tensor([0.0, 0.0, 1.0]))
    # strictly between the two lowest or the two highest knots: interpolated, not clipped to 0 or 1
    q = model.watch_time_to_quantile(torch.tensor([1.5, 12.0, 15.0]), torch.full((3,), 30.0))
    torch.testing.assert_close(q, torch.tensor([0.125, 0.875, 0.96875]))
    # a flat run at the top (many complete plays share the maximum): the middle of the run, not 1
    model.group_quantiles[2] = torch.tensor([1.0, 2.0, 4.0, 9.0, 9.0])
    q = model.watch_time_to_quantile(torch.tensor([9.0, 6.5, 9.5]), torch.full((3,), 30.0))
    torch.testing.assert_close(q, torch.tensor([0.875, 0.625, 1.0]))
    model.group_quantiles[2] = torch.tensor([1.0, 2.0, 4.0, 8.0, 16.0])
    # back: a level on the grid gives its knot exactly; q = 1 gives the maximum
    back = model.quantile_to_watch_time(torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0, 0.625]), torch.full((6,), 20.0))
    torch.testing.assert_close(back, torch.tensor([1.0, 2.0, 4.0, 8.0, 16.0, 6.0]))


def test_d2q_smallest_settings_build_and_round_trip(toy):
    """One duration group and a two-point table (min and max) are valid settings."""
    model, train, _ = build("D2Q", toy, duration_groups=1, quantile_points=1)
    labels = train.inter_feat["label"]
    assert len(model.group_edges) == 0 and model.group_quantiles.shape == (1, 2)
    torch.testing.assert_close(model.group_quantiles[0], torch.stack([labels.min(), labels.max()]))
    wt = torch.tensor([0.0, float(labels.max()) / 2, float(labels.max())])
    q = model.watch_time_to_quantile(wt, torch.full((3,), 10.0))
    torch.testing.assert_close(model.quantile_to_watch_time(q, torch.full((3,), 10.0)), wt, rtol=1e-5, atol=1e-4)


def test_or_label_on_a_threshold_is_not_above_it(toy):
    model, _, _ = build("OR", toy)
    model.thresholds = torch.tensor([0.0, 2.0, 5.0])
    logits = torch.zeros(4, 3)  # BCE of logit 0 is log 2 whatever the target: use the targets' gradient
    logits.requires_grad_(True)
    model.forward = lambda interaction: logits
    model.calculate_loss(batch(label=torch.tensor([0.0, 2.0, 5.0, 5.001]))).backward()
    # d BCE / d z = (sigmoid(z) - t) / (4 * 3) = (0.5 - t) / 12
    targets = 0.5 - 12 * logits.grad
    assert targets.tolist() == [[0, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 1]]


def test_cwm_play_reaching_the_duration_exactly_is_censored(toy):
    model, _, _ = build("CWM", toy)
    f = torch.zeros(3)
    unc, cen = model.row_losses(f, torch.tensor([9.999, 10.0, 10.5]), torch.full((3,), 10.0))
    assert (unc[0] > 0) and (cen[0] == 0)
    assert (unc[1:] == 0).all() and (cen[1:] > 0).all()


def test_lda_duration_on_a_bucket_edge_goes_up(toy):
    model, train, _ = build("LDA", toy, **LDA_SMALL)
    durations = train.inter_feat["duration"].double().numpy()
    edges = model.bucket_edges
    np.testing.assert_allclose(edges.numpy(), np.unique(np.quantile(durations, np.linspace(0, 1, 4))), rtol=1e-6)
    d = torch.cat([edges, edges[1:-1] - 1e-3])
    expected = [0, 1, 2, 2, 0, 1]
    assert assign_buckets(d, edges).tolist() == expected
    assert assign_buckets(d.double().numpy(), edges.double().numpy()).tolist() == expected
    inter = train.inter_feat[torch.arange(len(d))]
    inter.interaction["duration"] = d
    with torch.no_grad():
        _, _, log_beta, bucket = model.forward(inter)[:4]
    assert bucket.tolist() == expected
    # beta lives on the row's own bucket's anchors only
    in_scope = log_beta.exp() > 0
    assert torch.equal(in_scope, torch.tensor(expected)[:, None] == model.anchor_bucket[None, :])


@pytest.mark.parametrize("m", [1, 5])
def test_or_thresholds_are_the_quantiles_at_m_over_m_plus_1(toy, m):
    """M = 5 on data with 10% quick skips: level 1/6 is above the tie at 0 s, so no threshold
    sits at the minimum; M = 1 (the median alone) is a valid setting."""
    model, train, _ = build("OR", toy, num_thresholds=m)
    labels = train.inter_feat["label"].double().numpy()
    expected = np.quantile(labels, np.arange(1, m + 1) / (m + 1))
    assert len(np.unique(expected)) == m and expected[0] > labels.min()
    np.testing.assert_allclose(model.thresholds.numpy(), expected, rtol=1e-6)
    assert model.head.out_features == m


@pytest.mark.parametrize("key", ["duration_groups", "quantile_points"])
def test_d2q_refuses_zero_groups_or_points(toy, key):
    with pytest.raises(ValueError, match="duration_groups and quantile_points must be >= 1"):
        build("D2Q", toy, **{key: 0})
