"""What Ray runs for the tuner (recbole_lda.tuning.tune): the trainable of a trial, the task of a
final run, the conversion of our YAML search spaces to Ray's, and the progress callback.
Ray itself is imported inside the functions, so that importing this module stays light."""

import math
import sys
import time

from recbole_lda.config.output_dir import progress_file
from recbole_lda.utils.fileio import write_json
from recbole_lda.tuning.studies import finite_or_none, run_overrides, study_budget


# ---------------------------------------------------------------------------------------
# Search spaces


def ray_search_space(space):
    """The Ray Tune sampling objects of a parsed search space."""
    from ray import tune

    return {key: getattr(tune, name)(args) if name == "choice" else getattr(tune, name)(*args)
            for key, (name, args) in ((k, next(iter(v.items()))) for k, v in space.items())}


# ---------------------------------------------------------------------------------------
# What runs on the workers


def _is_divergence(err):
    return isinstance(err, ValueError) and "loss is nan" in str(err).lower()


def tune_trial(params, study):
    """Ray Tune trainable: one training run with the sampled `params`, reporting after
    every validation the score so far (running best) to the scheduler."""
    from ray.air import session

    from recbole_lda.quick_start.quick_start import run

    worst = math.inf if study.mode == "min" else -math.inf
    state = {"best": worst, "epoch": 0}
    better = min if study.mode == "min" else max

    def report(epoch_idx, valid_score):
        score = float(valid_score)
        state["best"] = better(state["best"], score) if math.isfinite(score) else state["best"]
        state["epoch"] = epoch_idx + 1
        session.report({f"valid_{study.metric}": score, study.score_key: state["best"], "epoch": epoch_idx + 1,
                        "diverged": 0})

    workdir = session.get_trial_dir()
    overrides = run_overrides(study)
    overrides.setdefault("log_dir", workdir)
    try:
        run(study.model, study.dataset, study.config_files or None, dict(params), overrides, saved=False,
            callback_fn=report, evaluate_test=False)
    except ValueError as err:
        if not _is_divergence(err):
            raise
        # A configuration whose training diverges is a bad configuration, not a fault to retry.
        session.report({f"valid_{study.metric}": worst, study.score_key: state["best"],
                        "epoch": state["epoch"] + 1, "diverged": 1})


def final_run(study, params, seed):
    """Ray task: the best configuration with one seed, evaluated on test; the results dict
    (the best model stays in the task's memory: no checkpoint file is shared or left)."""
    from recbole_lda.quick_start.quick_start import run

    overrides = run_overrides(study, seed=seed)
    overrides.setdefault("log_dir", "None")
    return run(study.model, study.dataset, study.config_files or None, dict(params), overrides, saved=True)


# ---------------------------------------------------------------------------------------
# Progress


def fmt_duration(seconds):
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def progress_callback(study, position, output_dir):
    """A Tune callback printing a line (and rewriting OUTPUT_DIR/progress.json) whenever a
    trial finishes or the best score changes, and at least every minute."""
    from ray import tune

    class Progress(tune.Callback):
        def __init__(self):
            self.start = time.time()
            self.last = None
            self.last_print = 0.0

        def on_step_end(self, iteration, trials, **info):
            done = [t for t in trials if t.status in ("TERMINATED", "ERROR")]
            running = sum(t.status == "RUNNING" for t in trials)
            scored = [(t.last_result.get(study.score_key), t) for t in trials
                      if finite_or_none((t.last_result or {}).get(study.score_key)) is not None]
            best = (min if study.mode == "min" else max)(scored, key=lambda s: s[0]) if scored else None
            state = (len(done), running, best[0] if best else None)
            if state == self.last:
                return
            # progress.json follows every change; the console gets a line when a trial
            # finishes or the best score changes, and at least every minute.
            printed = state[::2] != (self.last or (None, None, None))[::2] or time.time() - self.last_print > 60
            self.last = state
            progress = {
                "phase": "tuning", "study": study.label, "method": study.entry, "dataset": study.dataset,
                "study_index": position[0], "studies": position[1], "trials_total": study_budget(study),
                "trials_done": len(done), "trials_errored": sum(t.status == "ERROR" for t in trials),
                "trials_running": running, "trials_left": study_budget(study) - len(done),
                "best_valid": None if best is None else {
                    study.metric: best[0], "trial": best[1].trial_id, "epoch": best[1].last_result.get("epoch"),
                    "params": {k: best[1].config.get(k) for k in study.space}},
                "elapsed_s": time.time() - self.start, "updated": time.strftime("%Y-%m-%d %H:%M:%S"),
                "done_trial_ids": sorted(t.trial_id for t in done),
            }
            write_json(progress_file(output_dir), progress)
            if not printed:
                return
            self.last_print = time.time()
            best_text = f"best valid {study.metric.upper()} {best[0]:.4f}" if best else "no score yet"
            print(f"[study {position[0]}/{position[1]}] {study.entry} on {study.dataset}: "
                  f"{len(done)}/{study_budget(study)} trials done, {running} running; {best_text}; "
                  f"{fmt_duration(time.time() - self.start)}", file=sys.stderr, flush=True)

    return Progress()


