"""Mutation testing of the numerical core with mutmut (`make mutate`; not part of CI).

    python tools/mutate.py                               # every target, this working tree
    python tools/mutate.py --targets metrics ot          # some targets
    python tools/mutate.py --rev HEAD~3 --targets metrics  # the code and tests of a commit
    python tools/mutate.py --list                        # the targets

A mutant is a copy of the code with one small change (an operator swapped, a constant
changed, an argument dropped...). The fast unit tests should fail on every mutant that
changes behaviour; one they pass on "survives" and shows a bug the tests would miss.

How it runs. mutmut 3 mutates in place and reads its configuration from the folder it runs
in, so this script never touches the repository: it copies the tracked and untracked
(not ignored) files of the working tree, or `git archive` of `--rev`, to `--workdir`
(default /tmp/recbole-lda-mutate/<rev>), writes mutmut's `setup.cfg` there (nothing goes
into the project's pyproject.toml), and runs `mutmut run` once per target, restricted to
the target's functions by mutant-name patterns. Results are cached in the copy (`mutants/`):
running again resumes; `--fresh` starts over. Each target's tests are the fast unit tests
of its module only (no end-to-end training).

What is mutated (TARGETS below): recbole_lda/evaluator/metrics.py, recbole_lda/model/ot.py, LDA's loss
(`label_cost`, `alignment_loss`, `calculate_loss` of recbole_lda/model/lda.py) and every
baseline file in baselines/ (statistics from the training labels, label transform, loss,
prediction rule). Lines that only raise errors with a message or log are not mutated
(`do_not_mutate_patterns`): a changed message text is not a numerical bug.

Output: a report (default results/mutants.txt): per target the mutants killed, survived,
timed out and untested and the score killed / (killed + survived), then every survivor with
its diff (`mutmut show`). A survivor is either a gap in the tests or an equivalent mutant
(same behaviour, e.g. `clamp(0, last)` vs `clamp(None, last)` where the value is never
negative); docs/mutation.md lists the survivors of the last run with the reason for each.
"""

import argparse
import fnmatch
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BASELINE_TESTS = ["tests/test_baselines.py", "tests/test_loss_values.py", "tests/test_edges.py",
                  "tests/test_checkpoints.py", "-k", "not trains_and_beats"]  # no end-to-end training

# name: (files mutated, mutant-name patterns (None: every function of the files), test arguments)
TARGETS = {
    "metrics": (["recbole_lda/evaluator/metrics.py", "recbole_lda/evaluator/xauc.py", "recbole_lda/evaluator/pair_counts.py",
                 "recbole_lda/evaluator/ranks.py"], None,
                ["tests/test_metrics.py", "tests/test_metric_classes.py", "tests/test_metric_conventions.py"]),
    "ot": (["recbole_lda/model/ot.py"], None, ["tests/test_lda_parts.py", "tests/test_ot.py", "tests/test_loss_values.py"]),
    "lda_loss": (
        ["recbole_lda/model/lda.py"],
        ["*ǁLDAǁlabel_cost__mutmut_*", "*ǁLDAǁalignment_loss__mutmut_*", "*ǁLDAǁcalculate_loss__mutmut_*"],
        ["tests/test_lda_parts.py", "tests/test_loss_values.py", "tests/test_edges.py", "tests/test_checkpoints.py"],
    ),
    "vr": (["baselines/vr.py"], None, BASELINE_TESTS),
    "wlr": (["baselines/wlr.py"], None, BASELINE_TESTS),
    "d2q": (["baselines/d2q.py"], None, BASELINE_TESTS),
    "or": (["baselines/ordinal.py"], None, BASELINE_TESTS),
    "cwm": (["baselines/cwm.py"], None, BASELINE_TESTS),
    "tpm": (["baselines/tpm.py"], None, BASELINE_TESTS),
    "d2co": (["baselines/d2co.py", "recbole_lda/utils/pair_counts.py"], None,
             ["tests/test_new_baselines_d2co.py", "tests/test_label_statistics.py",
              "tests/test_data_parallel.py::test_the_driver_reads_only_the_training_columns_a_constructor_asks_for"]),
}
# Not mutated: lines that raise with a message, log, or warn.
DO_NOT_MUTATE_PATTERNS = [r"raise \w+\(", r"logger\.", r"warnings\.warn", r"^\s*f?\"[^\"]*\"\)?,?$"]
STATUS = {1: "killed", 3: "killed", 0: "survived", 33: "no tests", 34: "skipped", 35: "suspicious",
          36: "timeout", -24: "timeout", 24: "timeout", 152: "timeout", 37: "caught by type check",
          -11: "segfault", -9: "killed by signal", None: "not checked"}


def copy_tree(dest, rev):
    """The files of the working tree (rev None) or of a commit, copied to dest."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    if rev is None:
        files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                               capture_output=True).stdout.decode().split("\0")
        for name in filter(None, files):
            src = REPO / name
            if src.is_file():
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / name)
    else:
        archive = subprocess.run(["git", "archive", rev], cwd=REPO, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)


def write_setup_cfg(workdir, files, tests):
    lines = ["[mutmut]", "source_paths =", "    recbole_lda", "    baselines", "only_mutate ="]
    lines += [f"    {f}" for f in files]
    lines += ["also_copy =", "    properties", "    dataset_prep", "    tests"]
    lines += ["pytest_add_cli_args_test_selection ="] + [f"    {t}" for t in tests]
    lines += ["pytest_add_cli_args =", "    -p", "    no:cacheprovider", "    -W", "    ignore"]
    lines += ["do_not_mutate_patterns ="] + [f"    {p}" for p in DO_NOT_MUTATE_PATTERNS]
    lines += ["process_isolation = forkserver", "timeout_multiplier = 10.0", "timeout_constant = 20.0",
              "use_git_change_detection = false", "track_dependencies = false"]
    (workdir / "setup.cfg").write_text("\n".join(lines) + "\n")


def failing_tests(folder, tests, env):
    """Node ids of the tests that fail on the unmutated copy: mutmut refuses to start while any
    selected test fails, and a test that always fails kills no mutant. They are reported."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider", "-W", "ignore", *tests],
                          cwd=folder, env=env, capture_output=True, text=True)
    broken = []
    for line in proc.stdout.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            broken.append(line.split(" ", 1)[1].split(" - ", 1)[0].strip())
    return broken


def mutant_exit_codes(workdir):
    """{mutant name: exit code} from mutmut's per-file result files."""
    import json

    codes = {}
    for meta in (workdir / "mutants").rglob("*.py.meta"):
        codes.update(json.loads(meta.read_text())["exit_code_by_key"])
    return codes


def run_target(name, workdir, mutmut, max_children, limit_s):
    files, patterns, tests = TARGETS[name]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1"}
    target_dir = workdir / name
    if not target_dir.exists():
        shutil.copytree(workdir / "src", target_dir, symlinks=True)
    # test files that this revision does not have yet are left out
    tests = [t for t in tests if not t.startswith("tests/") or (target_dir / t).exists()]
    broken = failing_tests(target_dir, tests, env)
    if broken:
        print(f"[{name}] {len(broken)} tests fail on the unmutated code and are left out: {broken}", flush=True)
    write_setup_cfg(target_dir, files, tests + [arg for node in broken for arg in ("--deselect", node)])
    modules = [f[:-3].replace("/", ".") for f in files]
    patterns = patterns or [f"{m}.*__mutmut_*" for m in modules]
    cmd = [str(mutmut), "run", "--max-children", str(max_children), *patterns]
    start = time.time()
    print(f"[{name}] {' '.join(cmd)}  (in {target_dir})", flush=True)
    with open(target_dir / "mutmut.log", "w") as log:
        try:
            proc = subprocess.run(cmd, cwd=target_dir, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=limit_s)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    codes = {k: v for k, v in mutant_exit_codes(target_dir).items()
             if any(fnmatch.fnmatch(k, p) for p in patterns)}
    counts = {}
    for code in codes.values():
        counts[STATUS.get(code, f"exit {code}")] = counts.get(STATUS.get(code, f"exit {code}"), 0) + 1
    survivors = sorted(k for k, v in codes.items() if v == 0)
    diffs = []
    for key in survivors:
        shown = subprocess.run([str(mutmut), "show", key], cwd=target_dir, env=env, capture_output=True, text=True)
        diffs.append(shown.stdout.strip())
    killed, survived = counts.get("killed", 0), counts.get("survived", 0)
    score = killed / (killed + survived) if killed + survived else float("nan")
    print(f"[{name}] {time.time() - start:.0f} s, mutmut exit {rc}: {counts}; score {score:.3f}", flush=True)
    if rc not in (0, "timeout") and not codes:
        print((target_dir / "mutmut.log").read_text()[-3000:], file=sys.stderr)
    return {"name": name, "files": files, "tests": tests, "broken": broken, "counts": counts, "score": score, "survivors": diffs,
            "seconds": time.time() - start, "exit": rc}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--targets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    p.add_argument("--rev", default=None, help="a commit to test instead of the working tree")
    p.add_argument("--workdir", default=None, help="where the copy lives (default /tmp/recbole-lda-mutate/<rev>)")
    p.add_argument("--out", default=str(REPO / "results" / "mutants.txt"), help="the report")
    p.add_argument("--max_children", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    p.add_argument("--limit_s", type=int, default=1200, help="stop one target's run after this many seconds")
    p.add_argument("--fresh", action="store_true", help="start over instead of resuming a previous run's results")
    p.add_argument("--list", action="store_true", help="print the targets and exit")
    args = p.parse_args(argv)
    if args.list:
        for name, (files, patterns, tests) in TARGETS.items():
            print(f"{name}: {' '.join(files)} {patterns or ''} <- pytest {' '.join(tests)}")
        return 0
    mutmut = Path(sys.executable).parent / "mutmut"
    if not mutmut.exists():
        sys.exit(f"mutmut is not installed in this environment: {sys.executable} -m pip install mutmut==3.8.1")
    workdir = Path(args.workdir or f"/tmp/recbole-lda-mutate/{(args.rev or 'worktree').replace('/', '_')}")
    if args.fresh or not (workdir / "src").exists():
        copy_tree(workdir / "src", args.rev)
        for name in TARGETS:
            shutil.rmtree(workdir / name, ignore_errors=True)
    reports = [run_target(name, workdir, mutmut, args.max_children, args.limit_s) for name in args.targets]

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"# mutmut {' '.join(args.targets)} on {args.rev or 'the working tree'} "
             f"({time.strftime('%Y-%m-%d %H:%M')}); score = killed / (killed + survived)", ""]
    for r in reports:
        lines.append(f"{r['name']}: score {r['score']:.3f}  {r['counts']}  ({r['seconds']:.0f} s; "
                     f"{' '.join(r['files'])}; tests: {' '.join(r['tests'])})")
        if r["broken"]:
            lines.append(f"    left out, failing on the unmutated code: {' '.join(r['broken'])}")
    for r in reports:
        if r["survivors"]:
            lines += ["", f"## survivors of {r['name']} ({len(r['survivors'])})", ""]
            lines += [d + "\n" for d in r["survivors"]]
    out.write_text("\n".join(lines) + "\n")
    print(f"report: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
