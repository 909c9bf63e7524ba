"""The runner's inputs and its bookkeeping (issue 22): a bad option or spec value is refused
before anything is stored; a rerun with nothing to do leaves every file as it was; the ETA is
measured from this study's own runs and updated as they finish."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from study.console import RunClock, duration
from study.run import execute, parse_args

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
    [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}

TRAIN = '''
import time

import numpy as np


def train(config, seed):
    """A logistic regression on a seeded toy problem; dropout on the inputs while fitting."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(300, 8))
    y = (x @ rng.normal(size=8) + rng.normal(scale=0.5, size=300)) > 0
    w = np.zeros(8)
    for _ in range(50):
        keep = rng.random(x.shape) >= config["dropout"]
        xd = x * keep / (1 - config["dropout"])
        w -= config["lr"] * xd[:200].T @ (1 / (1 + np.exp(-xd[:200] @ w)) - y[:200]) / 200
    time.sleep(0.3)  # the rest of a training loop's time: something for the ETA to measure
    return {"val_acc": float(np.mean((x[200:] @ w > 0) == y[200:]) * 100)}
'''

SWEEP = '''
experiment = "train_mlp:train"
name = "mlp-dropout"
seeds = 2
[base]
lr = 0.5
dropout = 0.2
[arms.baseline]
[arms.no_dropout]
dropout = 0.0
[analysis]
metric = "val_acc"
'''


@pytest.fixture
def experiment(tmp_path) -> Path:
    """A researcher's folder: train_mlp.py and sweep.toml, two arms."""
    (tmp_path / "train_mlp.py").write_text(TRAIN)
    (tmp_path / "sweep.toml").write_text(SWEEP)
    return tmp_path


def seedwise_run(folder: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "study.run", "--spec", str(folder / "sweep.toml"),
                           "--results", str(folder / "results"), *map(str, args)],
                          capture_output=True, text=True, timeout=240, env=ENV, cwd=folder)


def files(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `root`: its bytes and its modification time."""
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize(("args", "spec_line", "message"), [
    (["--until-decided", "--look-every", "-1"], "", "--look-every must be a positive integer, got -1"),
    (["--until-decided", "--look-every", "0"], "", "--look-every must be a positive integer, got 0"),
    (["--until-decided", "--seeds", "3", "--max-seeds", "2"], "", "--max-seeds must be an integer >= 3 (the first look's"),
    (["--max-seeds", "20"], "", "--max-seeds applies only with --until-decided"),
    (["--until-decided", "--seeds", "1"], "", "--seeds must be an integer >= 2 for --until-decided"),
    (["--until-decided", "--arms", "no_dropout"], "", "--until-decided needs the baseline 'baseline'"),
    (["--seeds", "0"], "", "--seeds must be a positive integer, got 0"),
    (["--jobs", "0"], "", "--jobs must be a positive integer, got 0"),
    (["--group", "-2"], "", "--group must be a positive integer, got -2"),
    (["--scheduler", "tcp://127.0.0.1:8786"], "", "--scheduler needs --backend dask"),
    (["--storage", "results/mlp.db"], "", "--storage 'results/mlp.db' is not a database URL"),
    ([], "sequential = {look_every = 0}", "sweep.toml: [analysis] sequential look_every must be an integer >= 1"),
    ([], 'sequential = {spending = "linear"}', "[analysis] sequential: `spending` must be one of"),
])
def test_a_bad_value_exits_2_before_anything_is_stored(experiment, capsys, args, spec_line, message):
    spec = experiment / "sweep.toml"
    spec.write_text(spec.read_text().replace('metric = "val_acc"', f'metric = "val_acc"\n{spec_line}'))
    code = execute(parse_args(["--spec", str(spec), "--results", str(experiment / "results"), *args]))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not (experiment / "results").exists()


def test_a_wrong_data_source_for_the_builtin_study_stores_nothing(tmp_path, capsys):
    code = execute(parse_args(["--results", str(tmp_path / "results"), "--data", str(tmp_path / "cifar.tar.gz")]))
    assert code == 2 and "error: --data points to" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


def test_the_command_line_refuses_a_negative_look_every_in_one_line(experiment):
    res = seedwise_run(experiment, "--until-decided", "--look-every", "-1")
    assert res.returncode == 2 and res.stderr == "error: --look-every must be a positive integer, got -1\n"
    assert not (experiment / "results").exists()


def test_a_rerun_with_nothing_to_do_writes_nothing(experiment):
    assert seedwise_run(experiment, "--jobs", 1).returncode == 0
    study = experiment / "results" / "mlp-dropout"
    described = json.loads((study / "study.json").read_text())
    old_format = {k: v for k, v in described.items() if k != "storage"}  # as an older seedwise wrote it
    (study / "study.json").write_text(json.dumps(old_format, indent=2) + "\n")
    before = files(experiment / "results")
    rerun = seedwise_run(experiment, "--jobs", 1)
    assert rerun.returncode == 0 and "nothing to do: all 4 runs of mlp-dropout are done" in rerun.stderr
    assert files(experiment / "results") == before  # study.json, runs.csv, epochs.csv, study.db: untouched
    # runs to do: study.json says what this seedwise knows again
    more = seedwise_run(experiment, "--jobs", 1, "--seeds", 3)
    assert more.returncode == 0 and "2 runs to do (4 already done)" in more.stderr, more.stderr[-2000:]
    assert json.loads((study / "study.json").read_text()) == described


def test_a_decided_sequential_study_rerun_writes_nothing(experiment):
    """--until-decided: the looks are replayed from the stored runs, sequential.json included."""
    spec = experiment / "sweep.toml"
    spec.write_text(spec.read_text().replace('metric = "val_acc"', 'metric = "val_acc"\nmargin = 2.0\n'
                                             "sequential = {look_every = 1, max_seeds = 3}"))
    first = seedwise_run(experiment, "--jobs", 1)
    assert first.returncode == 0 and "sequential: no_dropout vs baseline" in first.stderr, first.stderr[-2000:]
    before = files(experiment / "results")
    assert "mlp-dropout/sequential.json" in before
    again = seedwise_run(experiment, "--jobs", 1)
    assert again.returncode == 0 and files(experiment / "results") == before


def test_the_eta_is_measured_from_this_studys_runs(experiment):
    fresh = seedwise_run(experiment, "--dry-run")
    assert "ETA unknown until the first runs of this study finish" in fresh.stdout
    assert not (experiment / "results").exists()  # a dry run stores nothing
    res = seedwise_run(experiment, "--jobs", 1)
    progress = re.findall(r"seed \d: val_acc [\d.]+ \([\d.]+s\); (\d)/4 done(?:, ~(\d+) s left)?", res.stderr)
    assert [n for n, _ in progress] == ["1", "2", "3", "4"], res.stderr
    assert all(left != "" for n, left in progress[:3]) and progress[3][1] == ""
    assert 0 < int(progress[0][1]) < 60  # three runs of ~0.3 s each are left after the first
    planned = seedwise_run(experiment, "--dry-run", "--seeds", 12)
    eta = re.search(r"ETA ~(\d+) s with 2 worker\(s\) .* \(median wall time of this study's 4 finished run\(s\), "
                    r"measured on cpu", planned.stdout)
    assert eta, planned.stdout
    # 20 runs to do at ~0.3 s each over 2 workers: seconds, not the minutes a guess could say
    assert 2 <= int(eta.group(1)) <= 30


def test_time_left_reads_as_a_person_would_say_it():
    assert [duration(s) for s in (40, 480, 5400 * 1.5)] == ["40 s", "8 min", "2.2 h"]
    clock = RunClock(3)
    assert re.fullmatch(r"1/3 done, ~\d+ s left", clock.tick())
    clock.tick()
    assert clock.tick() == "3/3 done"
