"""Watch-time baselines (WLR, D2Q, OR, CWM, TPM): label transforms, losses and prediction
rules against hand-computed values, invariants, no leakage of valid/test labels, and an
end-to-end run of each model on a small synthetic dataset.

The unit tests build each model against a tiny RecBole dataset written to a temporary
folder: watch times with ties at 0 s and at complete plays, replays above the duration, and
durations shared by many rows, so that the tie rules of the label transforms are exercised.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import recbole_lda  # noqa: F401  (applies the compat patches)
from recbole.data import create_dataset, data_preparation
from recbole.data.interaction import Interaction
from recbole_lda.config.configurator import Config
from recbole_lda.config.registry import WATCH_TIME_MODELS, get_model

BASELINES = [m for m in WATCH_TIME_MODELS if m not in ("LDA", "VR")]  # every registered baseline
HEADER = "user_id:token\titem_id:token\tlabel:float\tduration:float\n"


def toy_rows(n, seed):
    """n rows of (user, item, watch time, duration): 20 users, 30 items, item durations 5-34 s."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        user, item = int(rng.integers(20)), int(rng.integers(30))
        duration = float(5 + item)
        kind = rng.random()
        if kind < 0.1:
            watch = 0.0  # quick skip
        elif kind < 0.35:
            watch = duration  # complete play
        elif kind < 0.45:
            watch = round(duration * (1 + rng.random()), 2)  # replay
        else:
            watch = round(min(duration, rng.exponential(duration / 3)), 2)
        rows.append((user, item, watch, duration))
    return rows


def write_toy(root, eval_seed=1):
    """toy.{train,valid,test}.inter under root/toy; the training rows never depend on eval_seed."""
    folder = root / "toy"
    folder.mkdir(parents=True, exist_ok=True)
    splits = {"train": toy_rows(400, seed=0), "valid": toy_rows(60, eval_seed), "test": toy_rows(60, eval_seed + 1)}
    for split, rows in splits.items():
        lines = [f"{u}\t{i}\t{w}\t{d}\n" for u, i, w, d in rows]
        (folder / f"toy.{split}.inter").write_text(HEADER + "".join(lines))
    return root


def build(name, root, **overrides):
    """(model, train dataset, test dataset) of `name` on the toy data under root."""
    config = Config(
        name,
        "toy",
        config_dict={
            "data_path": str(root),
            "benchmark_filename": ["train", "valid", "test"],
            "show_progress": False,
            "log_dir": None,
            **overrides,
        },
    )
    train_data, _, test_data = data_preparation(config, create_dataset(config))
    torch.manual_seed(0)
    model = get_model(name)(config, train_data._dataset)
    return model, train_data._dataset, test_data._dataset


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toy(tmp_path_factory.mktemp("data"))


def batch(**columns):
    return Interaction({k: torch.as_tensor(v, dtype=torch.float32) for k, v in columns.items()})


# WLR ---------------------------------------------------------------------------------


def test_wlr_prediction_is_the_odds_of_its_logit(toy):
    model, train, test = build("WLR", toy)
    with torch.no_grad():
        logit = model.forward(test.inter_feat)
        torch.testing.assert_close(model.predict(test.inter_feat), torch.exp(logit))
    # the bias starts at log(training mean): the untrained odds are near the training mean
    assert model.head.bias.item() == pytest.approx(math.log(train.inter_feat["label"].double().mean().item()), rel=1e-6)


def test_wlr_loss_hand_computed_and_minimised_at_log_mean(toy):
    model, train, _ = build("WLR", toy)
    mean = train.inter_feat["label"].double().mean().item()
    assert model.label_mean.item() == pytest.approx(mean, rel=1e-6)
    # the loss of a constant logit z on watch times w: mean(w softplus(-z)) and mean(softplus(z)), / training mean
    w = torch.tensor([0.0, 2.0, 10.0])
    z = torch.tensor(0.7, requires_grad=True)
    model.forward = lambda interaction: z.expand(len(w))
    positive, negative = model.calculate_loss(batch(label=w))
    expected_positive = (0.0 + 2.0 + 10.0) / 3 * math.log1p(math.exp(-0.7)) / mean
    assert positive.item() == pytest.approx(expected_positive, rel=1e-5)
    assert negative.item() == pytest.approx(math.log1p(math.exp(0.7)) / mean, rel=1e-5)
    # its minimum is where the odds equal the mean watch time: exp(z) = 4
    z.data.fill_(math.log(4.0))
    sum(model.calculate_loss(batch(label=w))).backward()
    assert abs(z.grad.item()) < 1e-6


# D2Q ---------------------------------------------------------------------------------


def test_d2q_groups_and_tables_come_from_training_durations_and_labels(toy):
    model, train, _ = build("D2Q", toy, duration_groups=5, quantile_points=10)
    labels = train.inter_feat["label"].double().numpy()
    durations = train.inter_feat["duration"].double().numpy()
    cuts = np.unique(np.quantile(durations, [0.2, 0.4, 0.6, 0.8], method="inverted_cdf"))
    np.testing.assert_array_equal(model.group_edges.numpy(), cuts[cuts > durations.min()].astype(np.float32))
    group = np.searchsorted(model.group_edges.numpy(), durations.astype(np.float32), side="right")
    assert len(np.unique(group)) == len(model.group_edges) + 1  # every group has rows
    for g in range(len(model.group_edges) + 1):
        expected = np.quantile(labels[group == g], np.linspace(0, 1, 11))
        np.testing.assert_allclose(model.group_quantiles[g].numpy(), expected, rtol=1e-6)


def test_d2q_transform_hand_computed(toy):
    model, _, _ = build("D2Q", toy, quantile_points=4)
    # one group with quantile table [0, 0, 2, 4, 10] at levels 0, .25, .5, .75, 1
    model.group_edges = torch.zeros(0)
    model.group_quantiles = torch.tensor([[0.0, 0.0, 2.0, 4.0, 10.0]])
    wt = torch.tensor([0.0, 1.0, 3.0, 4.0, 10.0, 12.0])
    d = torch.full_like(wt, 30.0)
    q = model.watch_time_to_quantile(wt, d)
    # 0 s spans levels 0-.25 (middle .125); 1 s is halfway from 0 (.25) to 2 (.5); above the max: 1
    torch.testing.assert_close(q, torch.tensor([0.125, 0.375, 0.625, 0.75, 1.0, 1.0]))
    back = model.quantile_to_watch_time(torch.tensor([0.125, 0.375, 0.625, 0.75, 1.0, -0.3, 1.4]), d[:1].expand(7))
    torch.testing.assert_close(back, torch.tensor([0.0, 1.0, 3.0, 4.0, 10.0, 0.0, 10.0]))


def test_d2q_quantile_label_round_trips_on_training_data(toy):
    model, train, _ = build("D2Q", toy)
    wt, d = train.inter_feat["label"], train.inter_feat["duration"]
    q = model.watch_time_to_quantile(wt, d)
    assert q.min() >= 0 and q.max() <= 1
    torch.testing.assert_close(model.quantile_to_watch_time(q, d), wt, rtol=1e-5, atol=1e-4)
    # within a duration group the label is increasing in watch time
    group = model.group_of(d)
    for g in group.unique():
        order = torch.argsort(wt[group == g])
        assert torch.all(torch.diff(q[group == g][order]) >= 0)


# OR ----------------------------------------------------------------------------------


def test_or_thresholds_are_distinct_training_quantiles(toy):
    model, train, _ = build("OR", toy, num_thresholds=49)
    labels = train.inter_feat["label"].double().numpy()
    expected = np.unique(np.quantile(labels, np.arange(1, 50) / 50))
    np.testing.assert_allclose(model.thresholds.numpy(), expected, rtol=1e-6)
    assert expected[0] == 0 and model.head.out_features == len(expected) < 49  # the 10% of 0 s plays share one threshold
    torch.testing.assert_close(model.gaps, torch.diff(model.thresholds, prepend=torch.zeros(1)))


def test_or_restore_hand_computed_and_monotone(toy):
    model, _, _ = build("OR", toy)
    model.thresholds = torch.tensor([1.0, 3.0, 6.0])
    model.gaps = torch.tensor([1.0, 2.0, 3.0])
    probs = torch.tensor([[1.0, 0.5, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.9, 0.6, 0.2]])
    torch.testing.assert_close(model.restore(probs), torch.tensor([2.0, 6.0, 0.0, 0.9 + 1.2 + 0.6]))


def test_or_restore_is_monotone_in_head_probabilities(toy):
    model, _, _ = build("OR", toy)
    gen = torch.Generator().manual_seed(0)
    probs = torch.rand(200, model.head.out_features, generator=gen)
    base = model.restore(probs)
    for m in range(model.head.out_features):
        raised = probs.clone()
        raised[:, m] = (raised[:, m] + torch.rand(200, generator=gen) * (1 - raised[:, m])).clamp(max=1.0)
        assert torch.all(model.restore(raised) >= base - 1e-5)
    assert torch.all(model.gaps >= 0) and model.restore(torch.ones(1, len(model.gaps))).item() == pytest.approx(
        model.thresholds[-1].item(), rel=1e-6
    )


def test_or_loss_is_bce_against_threshold_indicators(toy):
    model, _, _ = build("OR", toy)
    model.thresholds = torch.tensor([1.0, 3.0])
    logits = torch.tensor([[0.3, -1.2], [2.0, 0.1]])
    model.forward = lambda interaction: logits
    loss = model.calculate_loss(batch(label=[2.0, 3.5]))
    targets = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # 2 s > 1 but not > 3; 3.5 s > both
    assert loss.item() == pytest.approx(F.binary_cross_entropy(torch.sigmoid(logits), targets).item(), rel=1e-5)


# CWM ---------------------------------------------------------------------------------


def logit(p):
    return math.log(p / (1 - p))


def test_cwm_losses_hand_computed(toy):
    model, _, _ = build("CWM", toy)
    assert (model.cost, model.sigma) == (40.0, 2.0)  # the public-code defaults
    f = torch.tensor([0.5, 0.5, -1.0, 3.0])
    wt = torch.tensor([9.0, 20.0, 0.0, 25.0])
    d = torch.tensor([20.0, 20.0, 10.0, 20.0])  # rows 2 and 4 reached the end: censored
    uncensored, censored = model.row_losses(f, wt, d)
    tau = [logit(math.exp(-40 / (w + 1))) for w in (9.0, 20.0, 0.0, 25.0)]
    expected_unc = [(0.5 - tau[0]) ** 2 / 8, 0.0, (-1.0 - tau[2]) ** 2 / 8, 0.0]
    expected_cen = [0.0, math.log1p(math.exp(-(0.5 - tau[1]) / 2)), 0.0, math.log1p(math.exp(-(3.0 - tau[3]) / 2))]
    torch.testing.assert_close(uncensored, torch.tensor(expected_unc), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(censored, torch.tensor(expected_cen), rtol=1e-5, atol=1e-6)
    # tau of a zero-second play is logit(e^-40) = -40 - log(1 - e^-40): finite, no 1 - 1 cancellation
    assert model.relevance_logit(torch.tensor([0.0, 1e7])).isfinite().all()
    # calculate_loss: each part is summed over its rows and divided by the batch size
    model.forward = lambda interaction: f
    parts = model.calculate_loss(batch(label=wt, duration=d))
    assert parts[0].item() == pytest.approx(sum(expected_unc) / 4, rel=1e-5)
    assert parts[1].item() == pytest.approx(sum(expected_cen) / 4, rel=1e-5)


def test_cwm_prediction_hand_computed_and_within_duration(toy):
    model, _, _ = build("CWM", toy)
    f = torch.tensor([0.0, -3.0, 0.0])
    d = torch.tensor([100.0, 100.0, 30.0])
    expected = [40 / math.log(2) - 1, 40 / math.log1p(math.exp(3.0)) - 1, 30.0]
    expected[1] = max(expected[1], 0.0)
    torch.testing.assert_close(model.watch_time(f, d), torch.tensor(expected))
    f = torch.linspace(-200, 200, 401)
    d = torch.linspace(1, 60, 401)
    pred = model.watch_time(f, d)
    assert pred.isfinite().all() and torch.all(pred >= 0) and torch.all(pred <= d)
    assert torch.all(torch.diff(model.watch_time(f, torch.full_like(f, 1e9))) >= 0)  # increasing in f
    # the cost transform inverts the prediction rule: a logit of tau(wt) predicts wt
    wt = torch.tensor([0.5, 3.0, 17.0])
    torch.testing.assert_close(model.watch_time(model.relevance_logit(wt), torch.full_like(wt, 60.0)), wt, rtol=1e-4, atol=1e-4)


# TPM ---------------------------------------------------------------------------------


def test_tpm_tree_paths_and_leaf_probabilities_hand_computed(toy):
    model, _, _ = build("TPM", toy, tree_height=2)
    # heap order: root 0, children 1 (left) and 2 (right)
    assert model.path_nodes.tolist() == [[0, 1], [0, 1], [0, 2], [0, 2]]
    assert model.path_right.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    logits = torch.tensor([[0.4, -1.0, 2.0]])
    s = torch.sigmoid
    r, a, b = s(torch.tensor(0.4)), s(torch.tensor(-1.0)), s(torch.tensor(2.0))
    expected = torch.stack([(1 - r) * (1 - a), (1 - r) * a, r * (1 - b), r * b]).unsqueeze(0)
    torch.testing.assert_close(model.leaf_log_probs(logits).exp(), expected)


def test_tpm_leaf_probabilities_sum_to_one_and_prediction_within_range(toy):
    model, train, test = build("TPM", toy)
    gen = torch.Generator().manual_seed(0)
    logits = torch.cat([torch.randn(100, 15, generator=gen) * 5, torch.full((1, 15), 60.0), torch.full((1, 15), -60.0)])
    probs = model.leaf_log_probs(logits).exp()
    torch.testing.assert_close(probs.sum(-1), torch.ones(len(logits)))
    mean, var = model.expectation_and_variance(logits)
    lo, hi = model.edges[0].item(), model.edges[-1].item()
    assert torch.all(mean >= lo - 1e-4) and torch.all(mean <= hi + 1e-4) and torch.all(var >= 0)
    with torch.no_grad():
        pred = model.predict(test.inter_feat)
    assert torch.all(pred >= lo - 1e-4) and torch.all(pred <= hi + 1e-4)


def test_tpm_edges_and_leaf_values_from_training_labels(toy):
    labels_of = lambda ds: ds.inter_feat["label"].double().numpy()  # noqa: E731
    model, train, _ = build("TPM", toy, tree_height=2, leaf_value="midpoint")
    labels = labels_of(train)
    edges = np.quantile(labels, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(model.edges.numpy(), edges, rtol=1e-6)
    np.testing.assert_allclose(model.leaf_values.numpy(), (edges[:-1] + edges[1:]) / 2, rtol=1e-6)
    model, _, _ = build("TPM", toy, tree_height=2, leaf_value="mean")
    leaf = np.searchsorted(edges[1:-1], labels, side="right")
    means = [labels[leaf == k].mean() for k in range(4)]
    np.testing.assert_allclose(model.leaf_values.numpy(), means, rtol=1e-5)
    assert model.label_var.item() == pytest.approx(labels.var(), rel=1e-5)


def test_tpm_node_is_trained_only_on_rows_inside_its_range(toy):
    model, _, _ = build("TPM", toy, tree_height=2, lambda_mse=0.0, lambda_var=0.0)
    model.edges = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0])  # leaves [0,1) [1,2) [2,3) [3,4]
    logits = torch.zeros(4, 3, requires_grad=True)
    model.forward = lambda interaction: logits
    tree, mse, var = model.calculate_loss(batch(label=[0.5, 1.5, 2.5, 4.0]))
    assert mse.item() == 0 and var.item() == 0
    tree.backward()
    touched = logits.grad != 0  # (row, node)
    # every row updates the root; rows in leaves 0-1 update node 1 only, rows in leaves 2-3 node 2 only
    assert touched.tolist() == [[True, True, False], [True, True, False], [True, False, True], [True, False, True]]
    # all logits 0: each of the 2 path nodes costs log 2
    assert tree.item() == pytest.approx(math.log(2), rel=1e-6)


def test_tpm_variance_term_is_the_spread_of_the_leaf_distribution(toy):
    model, _, _ = build("TPM", toy, tree_height=1)
    model.leaf_values = torch.tensor([2.0, 6.0])
    logits = torch.tensor([[0.0], [100.0]])  # 50/50 between the leaves; all mass on the right leaf
    mean, var = model.expectation_and_variance(logits)
    torch.testing.assert_close(mean, torch.tensor([4.0, 6.0]))
    torch.testing.assert_close(var, torch.tensor([4.0, 0.0]))


# All baselines -----------------------------------------------------------------------


@pytest.mark.parametrize("name", BASELINES)
def test_label_statistics_ignore_valid_and_test_labels(name, tmp_path):
    """Two datasets with the same training rows and different valid/test rows give the same
    stored statistics: everything a model derives from labels comes from the training split."""
    first, _, first_test = build(name, write_toy(tmp_path / "a", eval_seed=1))
    second, _, second_test = build(name, write_toy(tmp_path / "b", eval_seed=7))
    assert not torch.equal(first_test.inter_feat["label"], second_test.inter_feat["label"])
    buffers = dict(first.named_buffers())
    assert buffers, "every model stores at least the backbone's training statistics"
    for key, value in second.named_buffers():
        assert torch.equal(value, buffers[key]), key


@pytest.mark.parametrize("name", BASELINES)
def test_stored_statistics_survive_a_checkpoint(name, toy):
    model, _, test = build(name, toy)
    fresh, _, _ = build(name, toy)
    parameters = dict(fresh.named_parameters())
    for key, value in fresh.state_dict().items():
        if key not in parameters:
            value.fill_(0)  # wipe every saved statistic: the checkpoint must restore it
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fresh.predict(test.inter_feat), model.predict(test.inter_feat))


@pytest.mark.parametrize("name", BASELINES)
def test_loss_is_finite_and_predictions_are_seconds(name, toy):
    model, train, test = build(name, toy)
    loss = model.calculate_loss(train.inter_feat)
    parts = loss if isinstance(loss, tuple) else (loss,)
    assert len(parts) == len(model.loss_names) and all(p.isfinite() for p in parts)
    sum(parts).backward()
    with torch.no_grad():
        pred = model.predict(test.inter_feat)
    assert pred.shape == test.inter_feat["label"].shape and pred.isfinite().all() and torch.all(pred >= 0)


# End to end --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    return tmp_path_factory.mktemp("synthetic")


@pytest.mark.parametrize("name", BASELINES)
def test_baseline_trains_and_beats_the_training_mean(name, synthetic_root):
    """Every baseline trains through RecBole's trainer on a small synthetic dataset (generated
    and prepared once per module) and beats predicting the training mean on test MAE."""
    from recbole_lda.quick_start.quick_start import run

    results = run(
        name,
        "synthetic",
        config_dict={
            "synthetic_rows": 20000,
            "synthetic_users": 300,
            "synthetic_items": 400,
            "epochs": 3,
            "train_batch_size": 512,
            "show_progress": False,
            "state": "WARNING",
            "data_path": str(synthetic_root / "data"),
            "checkpoint_dir": str(synthetic_root / "saved"),
            "log_dir": str(synthetic_root / "log"),
        },
    )
    mae, baseline = results["test_result"]["mae"], results["reference"]["train_mean"]["test_mae"]
    assert np.isfinite(mae) and mae < baseline, (name, mae, baseline)
