"""A run's limits (issue 22): `--timeout` kills a run with its process tree, nothing outlives
a killed study, a study whose first runs all fail the same way stops with that error in one
line, and the end-of-study table copes with failures (counted per seed, never a KeyError).

Each test writes a researcher's experiment into tmp_path: a training function or script that
can hang, start a helper process (a data loader, a logger) and write that helper's pid down,
so the test can check that it was killed. Module names differ from test to test: the tests
that run in this process import them."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from analysis.contract import COMPLETE, FAILED
from study import run_study
from study.plan import UsageError
from study.spec import SpecError, load_spec
from study.summary import render, summarize

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
    [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")

# A training function that, when told to hang, starts a helper process, writes its pid to
# `pid_dir` and sleeps; otherwise it returns its metrics at once.
TRAIN = '''
import os, subprocess, sys, time
from pathlib import Path

def train(config, seed):
    if config["hang_s"] > 0:
        helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        Path(config["pid_dir"], f"{os.getpid()}-{seed}").write_text(str(helper.pid))
        time.sleep(config["hang_s"])
    return {"val_loss": 1.0 / (seed + 2), "val_acc": 0.8 + seed / 100}
'''
# The same as a script printing its metrics as a JSON line.
TRAIN_CLI = '''
import argparse, json, os, subprocess, sys, time
from pathlib import Path

p = argparse.ArgumentParser()
p.add_argument("--hang-s", type=float)
p.add_argument("--pid-dir")
p.add_argument("--seed", type=int)
args = p.parse_args()
if args.hang_s > 0:
    helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    Path(args.pid_dir, f"{os.getpid()}-{args.seed}").write_text(str(helper.pid))
    print("epoch 1 started", flush=True)
    time.sleep(args.hang_s)
print(json.dumps({"val_loss": 1.0 / (args.seed + 2), "val_acc": 0.8}))
'''
ARMS = '[arms.baseline]\n[arms.no_dropout]\nhang_s = {hang}\n'


def function_spec(folder: Path, module: str, hang: float, extra: str = "", seeds: int = 2) -> Path:
    (folder / f"{module}.py").write_text(TRAIN)
    (folder / "pids").mkdir()
    spec = folder / "sweep.toml"
    spec.write_text(f'experiment = "{module}:train"\nname = "sweep"\nseeds = {seeds}\n{extra}\n'
                    f'[base]\nhang_s = 0.0\npid_dir = "{folder / "pids"}"\n'
                    f'[analysis]\nmetric = "val_loss"\ndirection = "minimize"\nmargin = 0.01\n'
                    + ARMS.format(hang=hang))
    return spec


def command_spec(folder: Path, hang: float, seeds: int = 2) -> Path:
    (folder / "train_cli.py").write_text(TRAIN_CLI)
    (folder / "pids").mkdir()
    spec = folder / "sweep.toml"
    spec.write_text('command = "python train_cli.py --hang-s {hang_s} --pid-dir {pid_dir} --seed {seed}"\n'
                    f'name = "sweep-cli"\nseeds = {seeds}\n[base]\nhang_s = 0.0\npid_dir = "{folder / "pids"}"\n'
                    '[analysis]\nmetric = "val_loss"\ndirection = "minimize"\nmargin = 0.01\n'
                    + ARMS.format(hang=hang))
    return spec


def seedwise_run(*args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "study.run", *map(str, args)], capture_output=True,
                          text=True, env=ENV, cwd=ROOT, timeout=timeout)


def alive(pid: int) -> bool:
    """Running (a zombie waiting for a parent that never reaps it is dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def descendants(pid: int) -> set[int]:
    parent_of = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent_of[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError):
                continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parent_of.items() if parent in frontier} - found
        found |= frontier
    return found


def helper_pids(pid_dir: Path) -> list[int]:
    return [int(f.read_text()) for f in pid_dir.iterdir() if f.read_text()]


def wait_until(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


# --- --timeout ---------------------------------------------------------------------------------
@needs_proc
def test_a_function_run_over_the_specs_timeout_is_killed_with_its_helper_and_failed(tmp_path):
    spec = function_spec(tmp_path, "train_resnet", hang=60, extra="timeout = 1.5")
    started = time.monotonic()
    result = run_study(spec, results=tmp_path / "results", jobs=1)
    assert time.monotonic() - started < 30  # two hung runs of 60 s each, cut at 1.5 s
    assert result.exit_code == 1
    runs = result.runs.set_index(["arm", "seed"])
    assert set(runs.loc["baseline", "status"]) == {COMPLETE}
    assert set(runs.loc["no_dropout", "status"]) == {FAILED}
    assert list(runs.loc["no_dropout", "error"]) == ["timed out after 1.5 s"] * 2
    helpers = helper_pids(tmp_path / "pids")
    assert len(helpers) == 2 and not any(alive(p) for p in helpers)


@needs_proc
def test_a_function_run_with_a_timeout_in_loky_workers_trains_and_a_hung_one_is_killed(tmp_path):
    # --jobs 2: each run's fork-server child was told to use the loky worker's start method,
    # which it cannot resolve, and died before training: every timed run failed.
    spec = function_spec(tmp_path, "train_mlp", hang=60)
    res = seedwise_run("--spec", spec, "--results", tmp_path / "results", "--jobs", 2, "--timeout", 3)
    assert res.returncode == 1, res.stderr[-2000:]
    assert "cannot find context" not in res.stderr
    runs = pd.read_csv(tmp_path / "results" / "sweep" / "runs.csv").set_index(["arm", "seed"])
    assert set(runs.loc["baseline", "status"]) == {COMPLETE}
    assert list(runs.loc["no_dropout", "error"]) == ["timed out after 3 s"] * 2
    helpers = helper_pids(tmp_path / "pids")
    assert len(helpers) == 2 and wait_until(lambda: not any(alive(p) for p in helpers), 3)


@needs_proc
def test_a_command_over_timeout_is_killed_with_its_process_group_in_a_worker(tmp_path):
    spec = command_spec(tmp_path, hang=60)
    res = seedwise_run("--spec", spec, "--results", tmp_path / "results", "--jobs", 2, "--timeout", 2)
    assert res.returncode == 1, res.stderr[-2000:]
    assert "no_dropout seed 0: FAILED timed out after 2 s (log: " in res.stderr
    runs = pd.read_csv(tmp_path / "results" / "sweep-cli" / "runs.csv").set_index(["arm", "seed"])
    assert set(runs.loc["baseline", "status"]) == {COMPLETE}
    assert all(e.startswith("timed out after 2 s") for e in runs.loc["no_dropout", "error"])
    log = (tmp_path / "results" / "sweep-cli" / "logs" / "no_dropout-seed1.log").read_text()
    assert "epoch 1 started" in log  # what the run printed before it was killed is kept
    helpers = helper_pids(tmp_path / "pids")
    assert len(helpers) == 2 and wait_until(lambda: not any(alive(p) for p in helpers), 3)


def test_a_timeout_that_is_not_a_positive_number_is_refused_before_anything_is_stored(tmp_path):
    spec = function_spec(tmp_path, "train_unet", hang=0)
    for bad in (0, -5, float("nan")):
        with pytest.raises(UsageError, match="--timeout must be a positive number of seconds"):
            run_study(spec, results=tmp_path / "results", timeout=bad)
    assert not (tmp_path / "results").exists()
    spec.write_text(spec.read_text().replace('name = "sweep"', 'name = "sweep"\ntimeout = "1h"'))
    with pytest.raises(SpecError, match="`timeout` must be a positive number of seconds"):
        load_spec(spec)
    # the built-in experiment's runs have a limit too: it runs as any experiment does
    assert run_study(None, results=tmp_path / "results", timeout=60, dry_run=True, preset="smoke").exit_code == 0


# --- no orphans ------------------------------------------------------------------------------
@needs_proc
@pytest.mark.parametrize(("form", "jobs", "timeout"), [
    ("function", 2, None), ("command", 2, None),  # loky workers, each watching the study
    # --jobs 1: the runs' own processes (a function's with a timeout, a command) and what runs
    # in the study's process itself started, killed by the timed child's watch or the guardian
    ("function", 1, None), ("function", 1, 60), ("command", 1, None),
])
def test_kill_9_of_the_study_leaves_no_worker_and_no_child_behind(tmp_path, form, jobs, timeout):
    spec = (function_spec(tmp_path, "train_vit", hang=60) if form == "function"
            else command_spec(tmp_path, hang=60))
    limit = ["--timeout", str(timeout)] if timeout else []
    study = subprocess.Popen([sys.executable, "-m", "study.run", "--spec", str(spec), "--results",
                              str(tmp_path / "results"), "--jobs", str(jobs), "--arms", "no_dropout", *limit],
                             env=ENV, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: len(helper_pids(tmp_path / "pids")) == jobs, 60), "the runs never started"
        time.sleep(1)  # the guardian (--jobs 1) records what appeared within a poll
        tree = descendants(study.pid)  # workers and trackers, fork servers, the runs, their helpers
        assert set(helper_pids(tmp_path / "pids")) <= tree and len(tree) >= 2 * jobs
        study.send_signal(signal.SIGKILL)
        study.wait()
        assert wait_until(lambda: not any(alive(p) for p in tree), 5), \
            [Path(f"/proc/{p}/cmdline").read_text() for p in tree if alive(p)]
    finally:
        study.kill()
        for pid in descendants(study.pid):
            os.kill(pid, signal.SIGKILL)


# A run in the study's own process (--jobs 1) that forks a helper, as a data loader's workers
# are forked on Linux: the fork inherits every descriptor of the study, the guardian's pipe too.
FORKING_STUDY = """
import multiprocessing, sys, time
from pathlib import Path
from study.lifeline import guarded

with guarded():
    helper = multiprocessing.get_context("fork").Process(target=time.sleep, args=(120,))
    helper.start()
    Path(sys.argv[1]).write_text(str(helper.pid))
    time.sleep(120)
"""


@needs_proc
def test_kill_9_of_the_study_kills_a_forked_helper_that_holds_the_guardians_pipe(tmp_path):
    pid_file = tmp_path / "helper.pid"
    study = subprocess.Popen([sys.executable, "-c", FORKING_STUDY, str(pid_file)], env=ENV, cwd=ROOT)
    try:
        assert wait_until(lambda: pid_file.exists() and pid_file.read_text(), 60), "the run never started"
        helper = int(pid_file.read_text())
        time.sleep(1.5)  # the guardian records what appeared within a poll
        study.send_signal(signal.SIGKILL)
        study.wait()
        assert wait_until(lambda: not alive(helper), 5), "the forked helper outlived the study"
    finally:
        study.kill()
        with contextlib.suppress(ValueError, OSError):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


# Runs guarded at once from threads (a Dask worker's): each "+" and "-" must reach the one
# guardian, which counts the runs in flight.
THREADED_STUDY = """
import os, threading, time
from study.lifeline import descendants, guarded

barrier = threading.Barrier(4)

def run():
    barrier.wait()
    with guarded():
        time.sleep(1)

threads = [threading.Thread(target=run) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(sum(b"guard()" in open(f"/proc/{p}/cmdline", "rb").read() for p in descendants(os.getpid())))
"""


@needs_proc
def test_runs_guarded_at_once_from_threads_share_one_guardian(tmp_path):
    out = subprocess.run([sys.executable, "-c", THREADED_STUDY], env=ENV, cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"


# A run that leaves a forked daemon running (a data loader's persistent workers), then the
# study ends normally: the forked daemon holds the guardian's pipe open.
ENDING_STUDY = """
import multiprocessing, sys, time
from pathlib import Path
from study.lifeline import guarded

with guarded():
    helper = multiprocessing.get_context("fork").Process(target=time.sleep, args=(120,), daemon=True)
    helper.start()
    Path(sys.argv[1]).write_text(str(helper.pid))
    time.sleep(1)  # the guardian records it
"""


@needs_proc
def test_a_study_that_ends_normally_exits_at_once_and_leaves_no_forked_helper(tmp_path):
    pid_file = tmp_path / "helper.pid"
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-c", ENDING_STUDY, str(pid_file)], env=ENV, cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    took = time.monotonic() - start
    try:
        assert out.returncode == 0, out.stderr
        assert took < 6, f"the study took {took:.1f} s to exit"  # not the guardian's 10 s wait
        assert wait_until(lambda: not alive(int(pid_file.read_text())), 5)
    finally:
        with contextlib.suppress(ValueError, OSError):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


# --- fail fast, once --------------------------------------------------------------------------
LOADER = '''
import numpy as np

def train(config, seed):
    data = np.loadtxt(config["train_csv"], delimiter=",")  # the file was never copied here
    return {"val_acc": float(data.mean())}
'''


def test_every_run_failing_the_same_way_stops_after_the_first_with_one_line(tmp_path, capsys):
    (tmp_path / "train_tabular.py").write_text(LOADER)
    spec = tmp_path / "ablation.toml"
    spec.write_text('experiment = "train_tabular:train"\nname = "tabular"\nseeds = 4\n'
                    f'[base]\ntrain_csv = "{tmp_path / "data" / "train.csv"}"\nwidth = 64\n'
                    '[analysis]\nmetric = "val_acc"\nmargin = 0.01\n'
                    '[arms.baseline]\n[arms.narrow]\nwidth = 16\n[arms.wide]\nwidth = 256\n')
    result = run_study(spec, results=tmp_path / "results", jobs=1)
    err = capsys.readouterr().err
    assert result.exit_code == 1 and "Traceback" not in err
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, err
    assert "the first 2 run(s) all failed with the same error; the other 10 were cancelled" in error_lines[0]
    assert "FileNotFoundError" in error_lines[0] and "train.csv not found" in error_lines[0]
    assert len(result.runs) == 2 and set(result.runs["status"]) == {FAILED}  # recorded, then stopped
    assert result.runs["error"].str.contains("train.csv not found").all()


WRONG_METRIC = '''
def train(config, seed):
    return {"val_loss": 0.3 + seed / 100, "val_accuracy": 0.9, "n_params": 1.2e6}
'''


@pytest.mark.parametrize(("metric", "expected"), [
    ("val_acc", "the experiment returned no 'val_acc' ([analysis] metric); it returned: "
                "val_loss, val_accuracy, n_params"),
    ("val_loss", "metric 'notes' must be a number, got 'converged' (str); the experiment returned: "
                 "val_loss, val_accuracy, n_params, notes"),
])
def test_a_contract_error_stops_the_study_and_names_what_the_function_returned(tmp_path, capsys, metric,
                                                                                expected):
    module = f"train_mlp_{metric}"
    code = WRONG_METRIC if metric == "val_acc" else WRONG_METRIC.replace('1.2e6', '1.2e6, "notes": "converged"')
    (tmp_path / f"{module}.py").write_text(code)
    spec = tmp_path / "mlp.toml"
    spec.write_text(f'experiment = "{module}:train"\nname = "mlp"\nseeds = 3\n[base]\ndropout = 0.1\n'
                    f'[analysis]\nmetric = "{metric}"\nmargin = 0.01\n[arms.baseline]\n[arms.no_dropout]\ndropout = 0.0\n')
    result = run_study(spec, results=tmp_path / "results", jobs=1)
    err = capsys.readouterr().err
    assert result.exit_code == 1 and "Traceback" not in err and expected in err
    assert f"ContractError: {expected}" in result.runs["error"].iloc[0]


DIFFERENT_ERRORS = '''
def train(config, seed):
    raise RuntimeError(f"CUDA error on seed {seed}, arm lr={config['lr']}")
'''


def test_every_run_failing_differently_runs_them_all_and_the_summary_says_so(tmp_path, capsys):
    (tmp_path / "train_gan.py").write_text(DIFFERENT_ERRORS)
    spec = tmp_path / "gan.toml"
    spec.write_text('experiment = "train_gan:train"\nname = "gan"\nseeds = 2\n[base]\nlr = 0.001\n'
                    '[analysis]\nmetric = "fid"\ndirection = "minimize"\nmargin = 1.0\n'
                    '[arms.baseline]\n[arms.high_lr]\nlr = 0.01\n')
    result = run_study(spec, results=tmp_path / "results", jobs=1)
    out, err = capsys.readouterr()
    assert result.exit_code == 1 and "Traceback" not in err + out
    assert len(result.runs) == 4 and "4 run(s) failed" in err
    for arm in ("baseline", "high_lr"):  # n = 0 complete seeds, fail = 2 seeds
        assert f"{arm:<16}{0:>3}{2:>5}" in out


# --- the end-of-study table and a command's error -------------------------------------------------
def test_the_fail_column_counts_seeds_not_attempts_and_a_missing_metric_column_is_no_error():
    attempts = pd.DataFrame({  # seed 0: failed twice then complete; seed 1: failed three times
        "arm": ["baseline"] * 3 + ["augment"] * 6,
        "seed": [0, 1, 2, 0, 0, 0, 1, 1, 1],
        "status": [COMPLETE] * 3 + [FAILED, FAILED, COMPLETE, FAILED, FAILED, FAILED],
        "top1": [71.0, 72.5, 70.9, None, None, 73.0, None, None, None],
    })
    table = summarize(attempts, ["baseline", "augment"], "baseline", "top1").set_index("arm")
    assert table.loc["augment", "failed"] == 1 and table.loc["augment", "n"] == 1
    assert table.loc["baseline", "failed"] == 0
    text = render(table.reset_index(), "baseline", "top1")
    assert "seeds that diverged, or failed with no stored run since" in text
    nothing = summarize(attempts[attempts["status"] == FAILED].drop(columns="top1"), ["baseline", "augment"],
                        "baseline", "top1").set_index("arm")
    assert nothing.loc["augment", "failed"] == 2 and nothing.loc["augment", "n"] == 0


def test_a_command_that_printed_nothing_says_so_instead_of_an_empty_last_lines(tmp_path, capsys):
    (tmp_path / "train.sh").write_text("exit 3\n")
    spec = tmp_path / "sweep.toml"
    spec.write_text('command = "sh train.sh {lr} {seed}"\nname = "silent"\nseeds = 1\n[base]\nlr = 0.1\n'
                    '[analysis]\nmetric = "val_acc"\nmargin = 0.01\n[arms.baseline]\n')
    result = run_study(spec, results=tmp_path / "results", jobs=1)
    err = capsys.readouterr().err
    error = result.runs["error"].iloc[0]
    assert "command exited with status 3" in error and error.endswith("; it printed nothing")
    assert "last lines:" not in error
    assert "all failed with the same error" in err and "command exited with status 3: (no output)" in err
