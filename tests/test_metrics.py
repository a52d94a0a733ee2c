"""Watch-time metrics: hand-computed cases, brute force with ties, RecBole registration."""

import math

import numpy as np
import pytest
import torch

import recbole_lda  # noqa: F401  (applies the compat patches)
from recbole.data.interaction import Interaction
from recbole.evaluator import Collector, Evaluator
from recbole.evaluator.collector import DataStruct
from recbole_lda.config.configurator import Config
from recbole_lda.evaluator.metrics import concordance, xauc, xgauc


def brute_xauc(labels, preds):
    num = den = 0.0
    for i in range(len(labels)):
        for j in range(len(labels)):
            if labels[i] < labels[j]:
                den += 1
                num += 1.0 if preds[i] < preds[j] else 0.5 if preds[i] == preds[j] else 0.0
    return num / den if den else math.nan


def brute_xgauc(labels, preds, users):
    num = den = 0.0
    for u in np.unique(users):
        m = users == u
        pairs = sum(1 for a in labels[m] for b in labels[m] if a < b)
        if pairs:
            num += brute_xauc(labels[m], preds[m]) * pairs
            den += pairs
    return num / den if den else math.nan


def test_xauc_hand_computed():
    # pairs (1,2) and (1,3) concordant, (2,3) discordant
    assert xauc([1, 2, 3], [0.1, 0.3, 0.2]) == pytest.approx(2 / 3)
    # label tie (a,b) excluded; (b,c) prediction tie counts 1/2; (a,c) discordant: 3.5 / 5
    assert xauc([1, 1, 2, 3], [0.5, 0.2, 0.2, 0.9]) == pytest.approx(0.7)
    assert xauc([1, 2, 3], [3, 2, 1]) == 0.0
    assert xauc([1, 2, 3], [5, 5, 5]) == 0.5
    assert math.isnan(xauc([4, 4], [1, 2]))  # no pair with different labels


def test_xgauc_hand_computed():
    labels = np.array([1, 2, 1, 2, 3, 5, 5])
    preds = np.array([1, 0, 1, 2, 3, 0, 9])
    users = np.array([7, 7, 8, 8, 8, 9, 9])  # user 7: 0/1 pair, user 8: 3/3, user 9: no pair
    assert xgauc(labels, preds, users) == pytest.approx(0.75)


@pytest.mark.parametrize("seed", range(5))
def test_xauc_and_xgauc_match_brute_force_with_ties(seed):
    rng = np.random.default_rng(seed)
    for _ in range(40):
        n = int(rng.integers(1, 60))
        labels = rng.integers(0, 6, n).astype(float)  # many label ties
        preds = rng.integers(0, 5, n).astype(np.float32)  # many prediction ties
        users = rng.integers(0, 5, n)
        expected = brute_xauc(labels, preds)
        got = xauc(labels, preds)
        assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected, abs=1e-12)
        expected = brute_xgauc(labels, preds, users)
        got = xgauc(labels, preds, users)
        assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected, abs=1e-12)


def test_xauc_continuous_values_match_brute_force():
    rng = np.random.default_rng(11)
    labels = rng.gamma(1.0, 10.0, 400).round(1)
    preds = labels + rng.normal(0, 5, 400)
    assert xauc(labels, preds) == pytest.approx(brute_xauc(labels, preds), abs=1e-12)


def test_concordance_counts_are_integers():
    c_minus_d, n_pairs = concordance([1, 2, 3, 3], [1, 3, 2, 2])
    assert c_minus_d.dtype == np.int64 and n_pairs.dtype == np.int64
    assert n_pairs.tolist() == [5] and c_minus_d.tolist() == [5 - 2 * 2]  # 3 conc., 2 disc.


def test_invariant_to_monotone_transform_of_predictions():
    rng = np.random.default_rng(3)
    labels, preds = rng.normal(size=300), rng.normal(size=300)
    assert xauc(labels, preds) == xauc(labels, np.exp(3 * preds))


@pytest.fixture(scope="module")
def config():
    return Config("VR", "synthetic", config_dict={"metrics": ["MAE", "RMSE", "XAUC", "XGAUC"], "valid_metric": "XAUC"})


def test_metrics_registered_in_recbole_evaluator(config):
    assert config["valid_metric_bigger"] is True  # XAUC: bigger is better
    struct = DataStruct()
    struct.set("rec.score", torch.tensor([12.0, 18.0, 33.0, 25.0]))
    struct.set("data.label", torch.tensor([10.0, 20.0, 30.0, 5.0]))
    struct.set("data.user_id", torch.tensor([1, 2, 1, 2]))
    result = Evaluator(config).evaluate(struct)
    assert result["mae"] == pytest.approx(27 / 4, abs=1e-6)
    assert result["rmse"] == pytest.approx(math.sqrt(417 / 4), abs=1e-6)
    # the label-5 row (prediction 25) is out of order against labels 10 and 20: 4 of 6 pairs
    assert result["xauc"] == pytest.approx(4 / 6, abs=1e-6)
    # user 1: (10, 30) in order; user 2: (20, 5) reversed; one pair each
    assert result["xgauc"] == pytest.approx(0.5, abs=1e-6)


def test_mae_is_smaller_is_better():
    assert Config("VR", "synthetic", config_dict={"valid_metric": "MAE"})["valid_metric_bigger"] is False


def test_collector_gathers_user_ids_and_resets_them(config):
    collector = Collector(config)
    for users in ([1, 2], [3]):
        inter = Interaction({"user_id": torch.tensor(users), "label": torch.ones(len(users))})
        collector.eval_batch_collect(torch.ones(len(users)), inter, None, None)
    assert collector.get_data_struct().get("data.user_id").tolist() == [1, 2, 3]
    assert "data.user_id" not in collector.data_struct  # fresh for the next evaluation
