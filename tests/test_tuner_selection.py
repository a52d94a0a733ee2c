"""Best-trial selection of the tuner on fake trials, without running Ray: lowest score for a
smaller-is-better metric (MAE), highest for a bigger-is-better one (XAUC), diverged trials
and trials without a finite score never selected; the records built from Ray's trials; and
the running best that each trial reports to the scheduler."""

import math
import types

import pytest

from recbole_lda.tuning.studies import Study, select_best


def records(*rows):
    return [{"trial_id": f"t{i}", "valid_score": s, "diverged": d} for i, (s, d) in enumerate(rows)]


def test_min_for_mae_and_max_for_xauc():
    trials = records((5.2, False), (4.9, False), (6.0, False), (4.95, False))
    assert select_best(trials, "min")["trial_id"] == "t1"
    assert select_best(trials, "max")["trial_id"] == "t2"


def test_diverged_and_scoreless_trials_are_never_selected():
    trials = records((1.0, True), (None, False), (float("nan"), False), (float("-inf"), False), (3.0, False), (2.5, False))
    assert select_best(trials, "min")["trial_id"] == "t5"  # t0 has the best score but diverged
    trials = records((0.99, True), (float("inf"), False), (0.61, False), (0.64, False))
    assert select_best(trials, "max")["trial_id"] == "t3"


def test_no_selectable_trial_gives_none_and_ties_go_to_the_first():
    assert select_best(records((1.0, True), (None, False)), "min") is None
    assert select_best([], "max") is None
    assert select_best(records((2.0, False), (2.0, False)), "min")["trial_id"] == "t0"
    assert select_best(records((2.0, False), (2.0, False)), "max")["trial_id"] == "t0"


def study(mode, metric):
    return Study(entry="VR", model="VR", dataset="toy", config_files=[], overrides={},
                 space={"learning_rate": {"loguniform": [1e-4, 1e-2]}}, metric=metric, mode=mode,
                 budget={"num_samples": 4})


def fake_trial(trial_id, score_key, score, diverged=0, status="TERMINATED"):
    last = {score_key: score, "epoch": 3, "diverged": diverged, "time_total_s": 1.5}
    return types.SimpleNamespace(trial_id=trial_id, status=status, config={"learning_rate": 0.001 * (1 + len(trial_id))},
                                 last_result=last, num_failures=0, error_file=None)


@pytest.mark.parametrize("mode, metric, best", [("min", "mae", "b"), ("max", "xauc", "c")])
def test_write_tuning_selects_from_ray_trials(tmp_path, mode, metric, best):
    tune = pytest.importorskip("recbole_lda.tuning.tune")
    s = study(mode, metric)
    key = s.score_key
    trials = [fake_trial("a", key, 0.1 if mode == "min" else 0.9, diverged=1),  # best score, but diverged
              fake_trial("b", key, 0.3), fake_trial("c", key, 0.7), fake_trial("d", key, float("nan"))]
    args = types.SimpleNamespace(output_dir=str(tmp_path), cpus_per_trial=1, gpus_per_trial=0, num_samples=4,
                                 search_seed=0, scheduler="fifo", grace_period=1, reduction_factor=2, max_failures=0)
    tuning = tune.write_tuning(s, trials, args, wall_s=1.0, resumed=False)
    assert tuning["best"]["trial_id"] == best
    assert tuning["trials_diverged"] == 1
    assert [r["valid_score"] for r in tuning["trials"]][3] is None  # NaN stored as no score
    every_diverged = [fake_trial("a", key, 0.1, diverged=1), fake_trial("b", key, None)]
    with pytest.raises(tune.StudyFailed, match="no trial gave a validation score"):
        tune.write_tuning(s, every_diverged, args, wall_s=1.0, resumed=False)


@pytest.mark.parametrize("mode, scores, expected_best", [
    ("min", [5.0, 4.0, float("nan"), 4.5], [5.0, 4.0, 4.0, 4.0]),
    ("max", [0.5, 0.6, float("nan"), 0.55], [0.5, 0.6, 0.6, 0.6]),
])
def test_trial_reports_its_running_best_and_divergence(monkeypatch, mode, scores, expected_best):
    """What ASHA and the stored records see: the running best per epoch (NaN epochs ignored), and
    a diverged run reported as finished with diverged=1, its running best kept."""
    trials_module = pytest.importorskip("recbole_lda.tuning.trials")
    session = pytest.importorskip("ray.air.session")
    import recbole_lda.quick_start.quick_start as quick_start

    reports = []
    monkeypatch.setattr(session, "report", lambda metrics, **kw: reports.append(dict(metrics)))
    monkeypatch.setattr(session, "get_trial_dir", lambda: "/nonexistent")
    monkeypatch.setattr(trials_module, "run_overrides", lambda study: {}, raising=False)

    def fake_run(*args, callback_fn, **kwargs):
        for epoch, score in enumerate(scores):
            callback_fn(epoch, score)
        raise ValueError("Training loss is nan")

    monkeypatch.setattr(quick_start, "run", fake_run)
    s = study(mode, "mae" if mode == "min" else "xauc")
    trials_module.tune_trial({"learning_rate": 0.001}, s)
    assert [r[s.score_key] for r in reports[:-1]] == expected_best
    assert [r["diverged"] for r in reports] == [0, 0, 0, 0, 1]
    last = reports[-1]
    assert last[s.score_key] == expected_best[-1] and last["epoch"] == len(scores) + 1
    assert last[f"valid_{s.metric}"] == (math.inf if mode == "min" else -math.inf)
