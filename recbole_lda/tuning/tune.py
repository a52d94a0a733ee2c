"""Tune every method with the same budget, re-run its best configuration over seeds, and
build the leaderboard (the library behind `python -m recbole_lda tune`; its usage:
`recbole_lda.cli.tune`).

One study per (method, dataset), in the order given:
1. Tuning: random search (Ray Tune) over the method's space, `properties/tune/overall.yaml`
   plus `properties/tune/<MODEL>.yaml` (distributions in YAML, see overall.yaml), with the
   same number of trials (`--num_samples`) for every method. Each trial is one
   `recbole_lda.quick_start.run` with the configured `seed`; it reports the validation
   metric (`valid_metric`, MAE by default) after every epoch, and ASHA stops the trials that
   are behind (`--scheduler=fifo` lets every trial run to the end). A trial's score is its
   best validation score (what RecBole's early stopping keeps); selection uses nothing else.
   Each dataset's budget, the same for every method: the epoch cap `epochs` and ASHA's
   `grace_period` and `reduction_factor`, from `properties/tune/harness.yaml` (defaults and a
   `per_dataset:` block; `recbole_lda.tuning.budget`), overridden by `--epochs=N`,
   `--grace_period=N`, `--reduction_factor=N` (every dataset) and `--KEY.DATASET=N` (one).
2. Final runs: the best configuration is run again with seeds 0..S-1 (as in
   `recbole_lda.quick_start.compare`), each evaluated once on the test split.
3. The leaderboard (`recbole_lda.report.leaderboard`) is built from the stored results.

This module runs the studies on Ray;
`recbole_lda.tuning.studies` defines them (search spaces, keys, budget) and their files.

Methods: `--models` entries are model names or, as in compare, `NAME[key=value;...]` (fixed
keys, e.g. VR[regression_loss=l1]; a fixed key is left out of the search). Datasets:
`--datasets` entries take fixed keys the same way (`kuairand[split=time]`).

Configuration of every run, lowest precedence first: the YAML defaults, `--config_files`
(space-separated, for every dataset), `--config_files.DATASET=...`, the sampled values, then
trailing `--key=value` (every run), `--key.DATASET=value` (that dataset's runs only, e.g.
`--raw_data_path.kuairand=DIR`), the dataset's and the method's bracketed keys. `data_path`
and `raw_data_path` are resolved against the current folder at launch and handed to
trials as absolute paths; every dataset is prepared (converted, split) once, here, before
its trials start. The harness sets, for every run: `torch_num_threads` (= --cpus_per_trial),
`gpu_id` (the GPU Ray assigned, or none), `checkpoint_dir`, `results_file`,
`predictions_file`, and by default `state: WARNING` and `show_progress: False` (override
with --state=INFO).

Resources: locally `ray.init` with this machine's cores (`--num_cpus`); with
`--ray_address=HOST:PORT` the runs go to that cluster, whose nodes need this package (the
repository at the same path, or `pip install -e .`) and `data_path` on a shared file
system. Each trial and final run takes `--cpus_per_trial` CPUs and `--gpus_per_trial` GPUs.

Fault tolerance: a trial whose worker dies (or that raises) is retried up to
`--max_failures` times; a training that diverges (NaN loss) is a finished trial, not a
failure to retry, and is never selected. An interrupted command (Ctrl+C, a killed driver) resumes when
run again with the same arguments: Ray Tune restores an unfinished study (finished trials
are not run again), and finished studies and final runs are read from their files. Every
file is written through a temporary file and a rename; a finished study or run is never
written again, and a command whose settings differ from the stored ones stops.

Output (OUTPUT_DIR):
    tuning/<METHOD>__<DATASET>.study.json   what the study searches, fixed keys, budget
    tuning/<METHOD>__<DATASET>.json         finished study: budget (with ASHA's rung epochs), every
                                            trial (its epochs run), the best configuration
    runs/<METHOD>__<DATASET>__seed<k>.json  final runs (recbole_lda.quick_start.run's results)
    ray/<METHOD>__<DATASET>/                Ray Tune's experiment (trial logs, restore state)
    progress.json                           what runs now: study, trials done and left, best so far
    manifest.json                           the last command, its order of methods and datasets
    leaderboard.md, .csv, .tex, .png        the comparison table (recbole_lda.report.leaderboard); an
                                            expected entry without a complete result is a warning and
                                            a note there (--strict: an error)
"""

import logging
import os
import shlex
import sys
import time

import recbole_lda

from recbole_lda.utils.fileio import read_json, write_json
from recbole_lda.config.options import OptionError
from recbole_lda.config.output_dir import manifest_file, progress_file, ray_dir, study_settings_file
from recbole_lda.config.cluster import check_ray_address
from recbole_lda.tuning.studies import (asha_settings, budget, build_studies, check_settings,
                                 check_studies, finite_or_none, read_tail, resolve_study, run_path, select_best,
                                 set_budget, tuning_path)
from recbole_lda.tuning.trials import final_run, fmt_duration, progress_callback, ray_search_space, tune_trial

logger = logging.getLogger(__name__)

# Experiment state is saved at most this often (Ray's default is 10 s): a killed driver then
# loses at most this much of the record of finished trials.
os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")


class Interrupted(RuntimeError):
    """The command stopped before a study finished; running it again resumes."""


class StudyFailed(RuntimeError):
    """No trial of a study can be selected (every one diverged or errored)."""


# ---------------------------------------------------------------------------------------
# Tuning


def tune_study(study, args, position):
    """Tune `study` with Ray Tune (restoring an interrupted experiment) and write its
    tuning file; return the finished study record."""
    from ray import air, tune
    from ray.tune.analysis import ExperimentAnalysis
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    storage = os.path.abspath(ray_dir(args.output_dir))
    exp_dir = os.path.join(storage, study.label)
    trainable = tune.with_resources(
        tune.with_parameters(tune_trial, study=study), {"cpu": args.cpus_per_trial, "gpu": args.gpus_per_trial}
    )
    start = time.time()
    print(f"[study {position[0]}/{position[1]}] {study.entry} on {study.dataset}: {study.budget['num_samples']} trials "
          f"over {sorted(study.space)}; Ray Tune experiment {exp_dir}", file=sys.stderr, flush=True)
    resumed = tune.Tuner.can_restore(exp_dir)
    if resumed:
        print(f"[study {position[0]}/{position[1]}] {study.entry} on {study.dataset}: resuming {exp_dir}",
              file=sys.stderr, flush=True)
        tuner = tune.Tuner.restore(exp_dir, trainable=trainable, resume_unfinished=True, resume_errored=True)
    else:
        # ASHA counts validation reports (one every eval_step epochs); grace capped at max_t
        scheduler = (ASHAScheduler(time_attr="training_iteration", **asha_settings(study))
                     if args.scheduler == "asha" else FIFOScheduler())
        tuner = tune.Tuner(
            trainable,
            param_space=ray_search_space(study.space),
            tune_config=tune.TuneConfig(
                metric=study.score_key, mode=study.mode, num_samples=args.num_samples, scheduler=scheduler,
                search_alg=BasicVariantGenerator(random_state=args.search_seed),
            ),
            run_config=air.RunConfig(
                name=study.label, storage_path=storage, verbose=0,
                failure_config=air.FailureConfig(max_failures=args.max_failures),
                callbacks=[progress_callback(study, position, os.path.abspath(args.output_dir))],
            ),
        )
    tuner.fit()

    trials = ExperimentAnalysis(exp_dir).trials
    unfinished = [t.trial_id for t in trials if t.status not in ("TERMINATED", "ERROR")]
    if unfinished or len(trials) < args.num_samples:
        raise Interrupted(f"{study.entry} on {study.dataset}: {len(trials) - len(unfinished)}/{args.num_samples} "
                          f"trials finished; run the same command again to resume")
    return write_tuning(study, trials, args, time.time() - start, resumed)


def write_tuning(study, trials, args, wall_s, resumed):
    records = []
    for t in sorted(trials, key=lambda t: t.trial_id):
        last = t.last_result or {}
        records.append({
            "trial_id": t.trial_id,
            "status": t.status,
            "params": {k: t.config.get(k) for k in study.space},
            "valid_score": finite_or_none(last.get(study.score_key)),
            "epochs": last.get("epoch"),
            "diverged": bool(last.get("diverged", 0)),
            "failures": t.num_failures,
            "time_s": finite_or_none(last.get("time_total_s")),
            "error": read_tail(t.error_file) if t.status == "ERROR" else None,
        })
    best = select_best(records, study.mode)
    if best is None:
        errors = [r["error"] for r in records if r["error"]]
        raise StudyFailed(
            f"{study.entry} on {study.dataset}: no trial gave a validation score "
            f"({sum(r['diverged'] for r in records)} diverged, {len(errors)} errored)"
            + (f"; first error:\n{errors[0]}" if errors else ""))
    tuning = {
        "settings": study.settings(),
        "method": study.entry,
        "model": study.model,
        "dataset": study.dataset,
        "budget": budget(study, args),
        "resources": {"cpus_per_trial": args.cpus_per_trial, "gpus_per_trial": args.gpus_per_trial},
        "trials_completed": sum(r["status"] == "TERMINATED" for r in records),
        "trials_errored": sum(r["status"] == "ERROR" for r in records),
        "trials_diverged": sum(r["diverged"] for r in records),
        "trial_failures": sum(r["failures"] for r in records),
        "best": best,
        "trials": records,
        "wall_time_s": wall_s,  # of this command's part (a resumed study ran before too)
        "resumed": resumed,
        "trial_time_s": sum(r["time_s"] or 0.0 for r in records),  # training time of all trials, resumes aside
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    write_json(tuning_path(args.output_dir, study), tuning)
    return tuning


# ---------------------------------------------------------------------------------------
# Final runs


def run_final(studies, tunings, args):
    """Run every missing (study, seed) with the study's best configuration, in parallel on
    Ray; write each result as it arrives. Returns the failures."""
    import ray

    jobs = [(study, seed) for study in studies for seed in range(args.seeds)
            if not os.path.exists(run_path(args.output_dir, study, seed))]
    total = len(studies) * args.seeds
    if not jobs:
        return []
    remote = ray.remote(final_run).options(num_cpus=args.cpus_per_trial, num_gpus=args.gpus_per_trial,
                                            max_retries=args.max_failures)
    pending = {remote.remote(study, tunings[study.label]["best"]["params"], seed): (study, seed)
               for study, seed in jobs}
    done, failures, start = total - len(jobs), [], time.time()
    print(f"[final runs] {len(jobs)} to run ({done}/{total} stored), {args.seeds} seeds per method",
          file=sys.stderr, flush=True)
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        study, seed = pending.pop(ready[0])
        try:
            result = ray.get(ready[0])
        except Exception as err:  # noqa: BLE001 - reported, the other runs go on
            failures.append(f"{study.entry} on {study.dataset}, seed {seed}: {err}")
            print(f"[final runs] FAILED {failures[-1]}", file=sys.stderr, flush=True)
            continue
        tuning = tunings[study.label]
        result.update(method=study.entry, study=study.label, tuned_params=tuning["best"]["params"],
                      tuning_valid_score=tuning["best"]["valid_score"])
        write_json(run_path(args.output_dir, study, seed), result)
        done += 1
        test = result["test_result"]
        print(f"[final runs {done}/{total}] {study.entry} on {study.dataset}, seed {seed}: test MAE {test['mae']:.4f}, "
              f"XAUC {test['xauc']:.4f}; {fmt_duration(time.time() - start)}", file=sys.stderr, flush=True)
        write_json(progress_file(args.output_dir), {
            "phase": "final runs", "runs_done": done, "runs_total": total, "runs_failed": len(failures),
            "last": {"method": study.entry, "dataset": study.dataset, "seed": seed, "test": test},
            "updated": time.strftime("%Y-%m-%d %H:%M:%S")})
    return failures


# ---------------------------------------------------------------------------------------
# Command line


def init_ray(args):
    # Ray Tune's own console tables: off (this harness prints one line per event instead).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    import ray

    # Trials and tasks import this package: on this machine (and on a cluster that shares
    # the path) from this checkout; elsewhere it must be installed on the nodes.
    repo = os.path.dirname(os.path.dirname(os.path.abspath(recbole_lda.__file__)))
    pythonpath = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p)
    runtime_env = {"env_vars": {"PYTHONPATH": pythonpath, "PYTHONWARNINGS": "ignore"}}
    if args.ray_address:
        ray.init(address=args.ray_address, runtime_env=runtime_env, logging_level=logging.WARNING)
    else:
        ray.init(address="local", num_cpus=args.num_cpus or os.cpu_count(), num_gpus=args.num_gpus,
                 include_dashboard=False, runtime_env=runtime_env, logging_level=logging.WARNING)
    resources = ray.cluster_resources()
    print(f"[ray] {'cluster ' + args.ray_address if args.ray_address else 'local'}: {resources.get('CPU', 0):g} CPUs, "
          f"{resources.get('GPU', 0):g} GPUs; {args.cpus_per_trial} CPU(s) and {args.gpus_per_trial} GPU(s) per run",
          file=sys.stderr, flush=True)
    if resources.get("CPU", 0) < args.cpus_per_trial or resources.get("GPU", 0) < args.gpus_per_trial:
        raise ValueError(f"a run needs {args.cpus_per_trial} CPUs and {args.gpus_per_trial} GPUs; the cluster has "
                         f"{resources.get('CPU', 0):g} and {resources.get('GPU', 0):g}")


def write_manifest(args, argv, studies):
    path = manifest_file(args.output_dir)
    previous = read_json(path) if os.path.exists(path) else {}
    methods = list(dict.fromkeys(previous.get("methods", []) + [s.entry for s in studies]))
    datasets = list(dict.fromkeys(previous.get("datasets", []) + [s.dataset for s in studies]))
    write_json(path, {
        "command": "python -m recbole_lda tune " + " ".join(shlex.quote(a) for a in argv),
        "methods": methods, "datasets": datasets, "seeds": args.seeds, "num_samples": args.num_samples,
        "proposed": args.proposed or previous.get("proposed") or "LDA", "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    })


def prepare_studies(studies, args):
    """Before any trial (fail fast): every dataset prepared, every stored study checked."""
    for study in studies:
        prepared = resolve_study(study)
        study.resources = {"cpu": args.cpus_per_trial, "gpu": args.gpus_per_trial}
        set_budget(study, args)  # this dataset's grace period and reduction factor (harness.yaml)
        has_results = os.path.exists(tuning_path(args.output_dir, study)) or os.path.isdir(
            ray_dir(args.output_dir, study.label))
        check_settings(study_settings_file(args.output_dir, study.label), study.settings(), has_results)
        logger.info(f"{study.entry} on {study.dataset}: data {prepared.path} "
                    f"({prepared.meta.get('rows_per_split')}), search over {sorted(study.space)}")


def tune_all(studies, args):
    """Run (or read back) every study on Ray, then the final runs of the finished ones.
    Returns the failures (one line each); Interrupted when the command is stopped."""
    import ray

    init_ray(args)
    failures, tunings = [], {}
    try:
        for n, study in enumerate(studies, 1):
            where = f"[study {n}/{len(studies)}]"
            path = tuning_path(args.output_dir, study)
            if os.path.exists(path):
                tunings[study.label] = read_json(path)
                print(f"{where} {study.entry} on {study.dataset}: finished, reading {path}", file=sys.stderr, flush=True)
                continue
            try:
                tunings[study.label] = tune_study(study, args, (n, len(studies)))
            except StudyFailed as err:  # the other studies go on; the leaderboard lacks this one
                failures.append(str(err))
                print(f"{where} FAILED {err}", file=sys.stderr, flush=True)
                continue
            best = tunings[study.label]["best"]
            print(f"{where} {study.entry} on {study.dataset}: done; best valid "
                  f"{study.metric.upper()} {best['valid_score']:.4f} with {best['params']}", file=sys.stderr, flush=True)
        failures += run_final([s for s in studies if s.label in tunings], tunings, args)
    finally:
        ray.shutdown()
    return failures


def tune(args, rest, argv):
    """The whole command (`recbole_lda.cli.tune` parses `args`; `rest`: the run keys): studies,
    final runs, leaderboard. Returns the exit status."""
    from recbole_lda.report import leaderboard

    studies = build_studies(args, rest, args.search_spaces)
    check_studies(studies)  # every key and value of every study, before any work
    if args.ray_address:
        check_ray_address(args.ray_address)
    os.makedirs(args.output_dir, exist_ok=True)
    start = time.time()
    try:
        prepare_studies(studies, args)
    except (ValueError, FileNotFoundError) as err:  # includes dataset_prep's RawDataMissing and RawDataError
        print(f"error: {err}", file=sys.stderr)
        return 2 if isinstance(err, OptionError) else 1
    write_manifest(args, argv, studies)
    try:
        failures = tune_all(studies, args)
    except Interrupted as err:
        print(f"interrupted: {err}", file=sys.stderr, flush=True)
        return 130
    if any(os.path.exists(run_path(args.output_dir, s, 0)) for s in studies):
        board = leaderboard.build(args.output_dir, proposed=args.proposed, xauc=args.xauc,
                                  strict=getattr(args, "strict", False))
        for line in [*board.problems, *board.warnings]:
            print(f"warning: {line}", file=sys.stderr)
        print(board.markdown)
    print(f"wall time {fmt_duration(time.time() - start)}; results in {args.output_dir}", file=sys.stderr)
    if failures:
        print("failed (a final run is retried when the command runs again):\n  " + "\n  ".join(failures),
              file=sys.stderr)
        return 1
    return 0
