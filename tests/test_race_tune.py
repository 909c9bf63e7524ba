"""`study.tune --race` end to end on a user experiment written into tmp_path (issue 26): a toy
whose default lr is the true optimum and whose seeds carry large shared noise; the race keeps
the default, stores every (candidate, seed) run as an Optuna trial, resumes after kill -9 without
running anything twice, and two workers share one race."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
    [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}

TOY = """
import math
import time

import numpy as np


def train(config, seed, report=None):
    # the default lr (0.05) is the true optimum; each seed shifts every config alike (sd 5)
    time.sleep(config["sleep"])
    shared = np.random.default_rng([seed, 1]).normal(0, 5)
    own = np.random.default_rng([seed, int(config["lr"] * 1e9) % 2**32]).normal(0, 0.2)
    val = -(math.log(config["lr"]) - math.log(0.05)) ** 2 + shared + own
    return {"val": float(val), "score": float(val)}
"""

SPEC = """experiment = "racetoy:train"
name = "racetoy"
seeds = 3
[base]
lr = 0.05
sleep = 0.0
[analysis]
metric = "score"
direction = "maximize"
[arms.baseline]
[tune]
metric = "val"
direction = "maximize"
lr = {low = 0.0005, high = 5.0, log = true}
"""
NAME = "racetoy-tune-baseline-race"


@pytest.fixture
def spec(tmp_path):
    (tmp_path / "racetoy.py").write_text(TOY)
    path = tmp_path / "racetoy.toml"
    path.write_text(SPEC)
    return path


def cli(*args, timeout=240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "study.tune", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=ENV, cwd=ROOT)


def race_runs(db: Path | None) -> list[tuple[str, int]]:
    """(candidate, seed) of every finished race run, read straight from the SQLite file."""
    if db is None or not db.exists():
        return []
    with sqlite3.connect(db, timeout=30) as con:
        if not con.execute("select 1 from sqlite_master where name = 'trial_user_attributes'").fetchone():
            return []
        rows = con.execute("select c.value_json, s.value_json from trials t join trial_user_attributes c "
                           "on c.trial_id = t.trial_id join trial_user_attributes s on s.trial_id = t.trial_id "
                           "where c.key = 'race_candidate' and s.key = 'seed' and t.state in ('COMPLETE', 'PRUNED')"
                           ).fetchall()
    return [(json.loads(c), json.loads(s)) for c, s in rows]


@pytest.mark.slow
def test_a_race_keeps_the_optimal_default_and_confirms_it_on_fresh_seeds(spec, tmp_path):
    res = cli("--spec", spec, "--results", tmp_path, "--race", "--budget", 30, "--confirm", 3)
    assert res.returncode == 0, res.stderr[-3000:]
    db = tmp_path / "racetoy" / "study.db"
    runs = race_runs(db)
    assert len(runs) == 30 and len(set(runs)) == 30  # the budget in runs, nothing run twice
    assert all(s >= 100_000 for _, s in runs)  # tuning seeds: disjoint from evaluation seeds 0..2
    study = optuna.load_study(study_name=NAME, storage=f"sqlite:///{db}")
    assert study.user_attrs["race"]["default"] == "default" and study.user_attrs["kind"] == "seedwise-tuning"
    seeds = Counter(c for c, _ in runs)
    assert seeds["default"] == max(seeds.values()) and len(seeds) > 2  # sampled candidates raced it
    # paired: every candidate's seeds are the first k tuning seeds, from 100000 on
    for cand in seeds:
        assert sorted(s for c, s in runs if c == cand) == list(range(100_000, 100_000 + seeds[cand]))
    assert "winner default" in res.stdout
    sel = json.loads((tmp_path / "racetoy-tuned" / "selection.json").read_text())
    assert sel["winner_is_default"] and [r["arm"] for r in sel["rows"]] == ["baseline"]  # no `tuned` rerun
    assert sel["rows"][0]["params"] == {"lr": 0.05}  # on fresh seeds: the default itself, never worse
    assert sel["rows"][0]["trial"] == "default"  # named as the race names it, not by its first stored run
    fresh = pd.read_csv(tmp_path / "racetoy-tuned" / "runs.csv")
    assert sorted(fresh["seed"]) == [0, 1, 2] and set(fresh["arm"]) == {"baseline"}
    # the ablation's report shows the race: finalists with their seeds, drops, gap, budget curve
    run = subprocess.run([sys.executable, "-m", "study.run", "--spec", str(spec), "--results", str(tmp_path),
                          "--jobs", "1"], capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=240)
    assert run.returncode == 0, run.stderr[-2000:]
    rep = subprocess.run([sys.executable, "-m", "analysis.report", str(tmp_path / "racetoy"), "--out",
                          str(tmp_path / "report")], capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=240)
    assert rep.returncode == 0, rep.stderr[-2000:]
    text = (tmp_path / "report" / "report.md").read_text()
    assert f"`{NAME}` raced `baseline`" in text and "**winner: `default`**" in text
    assert "The winner is the default configuration: nothing to compare." in text
    assert "on fresh seeds** (study" not in text  # no Δ of a configuration against itself
    assert "race_finalists_baseline" in text and "100000–" in text
    assert "race_dropped_baseline" in text and "paired t (one-sided)" in text
    assert "Expected best validation score against budget" in text and "| baseline (race) |" in text
    assert (tmp_path / "report" / "figures" / "tuning_budget.png").exists()
    assert not (tmp_path / "report" / "figures" / "tuning_history_baseline_race.png").exists()


def test_a_default_winner_is_confirmed_once_on_the_fresh_seeds_and_said_so(spec, tmp_path):
    res = cli("--spec", spec, "--results", tmp_path, "--race", "--budget", 12, "--confirm", 3)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "winner default" in res.stdout
    assert "the winner is the default configuration: nothing to compare" in res.stdout
    fresh = pd.read_csv(tmp_path / "racetoy-tuned" / "runs.csv")
    assert len(fresh) == 3 and set(fresh["arm"]) == {"baseline"}  # N runs, not 2N
    sel = json.loads((tmp_path / "racetoy-tuned" / "selection.json").read_text())
    (row,) = sel["rows"]
    assert sel["winner_is_default"] and row["trial"] == "default" and row["n"] == 3
    # the fresh seeds still measure what the race's selection overstated
    assert row["selection_gap"] == pytest.approx(row["selected_val"] - fresh["val"].mean())
    # a rerun resumes the same confirmation (same spec): nothing trained again
    again = cli("--spec", spec, "--results", tmp_path, "--race", "--confirm", 3)
    assert again.returncode == 0, again.stderr[-2000:]
    assert len(pd.read_csv(tmp_path / "racetoy-tuned" / "runs.csv")) == 3
    # a confirmation begun before (the default also run as `tuned`, like results/*-race-tuned)
    # resumes as it began, rather than being refused as if the tuning had moved on
    folder, url = tmp_path / "racetoy-tuned", f"sqlite:///{tmp_path / 'racetoy' / 'study.db'}"
    legacy = (folder / "spec.toml").read_text() + '\n[arms."tuned"]\ndescription = "the default"\n"lr" = 0.05\n'
    optuna.delete_study(study_name="racetoy-tuned", storage=url)
    shutil.rmtree(folder)
    folder.mkdir()
    (folder / "spec.toml").write_text(legacy)
    old = subprocess.run([sys.executable, "-m", "study.run", "--spec", str(folder / "spec.toml"), "--study",
                          "racetoy-tuned", "--results", str(tmp_path), "--storage", url, "--jobs", "1"],
                         capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=240)
    assert old.returncode == 0, old.stderr[-2000:]
    resumed = cli("--spec", spec, "--results", tmp_path, "--race", "--confirm", 3)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    sel = json.loads((folder / "selection.json").read_text())
    assert [r["arm"] for r in sel["rows"]] == ["baseline", "tuned"] and "winner_is_default" not in sel
    assert len(pd.read_csv(folder / "runs.csv")) == 6  # its runs, none trained again


def test_a_tuning_whose_best_trial_is_the_default_confirms_it_once(spec, tmp_path):
    # without racing: a trial that drew the untuned lr and scored best is the default, not a `tuned` arm
    spec.write_text(SPEC.replace("lr = {low = 0.0005, high = 5.0, log = true}", "lr = {choices = [0.05, 5.0]}"))
    res = cli("--spec", spec, "--results", tmp_path, "--trials", 4, "--confirm", 2)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "the winner is the default configuration: nothing to compare" in res.stdout
    fresh = pd.read_csv(tmp_path / "racetoy-tuned" / "runs.csv")
    assert len(fresh) == 2 and set(fresh["arm"]) == {"baseline"}
    (row,) = json.loads((tmp_path / "racetoy-tuned" / "selection.json").read_text())["rows"]
    assert isinstance(row["trial"], int) and row["params"] == {"lr": 0.05} and row["selection_gap"] is not None


def test_race_flags_are_checked_before_anything_runs(spec, tmp_path):
    for args, words in ((["--budget", 5], "give --race"), (["--race", "--trials", 5], "not --trials"),
                        (["--race", "--budget", 0], "--budget must be a positive")):
        res = cli("--spec", spec, "--results", tmp_path, *args)
        assert res.returncode == 2 and words in res.stderr, res.stderr[-1500:]
    assert not (tmp_path / "racetoy" / "study.db").exists()


def storage(root: Path) -> Path | None:
    """The study's SQLite file: with --set, the study is `racetoy-set-<hash>`."""
    return next(root.glob("racetoy*/study.db"), None)


@pytest.mark.slow
def test_a_race_killed_with_sigkill_resumes_without_running_anything_twice(spec, tmp_path):
    cmd = [sys.executable, "-m", "study.tune", "--spec", str(spec), "--results", str(tmp_path), "--race",
           "--budget", "16", "--set", "sleep=0.3"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and len(race_runs(storage(tmp_path))) < 5:
        time.sleep(0.1)
    db = storage(tmp_path)
    assert proc.poll() is None, "the race finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    before = race_runs(db)
    assert 5 <= len(before) < 16
    rerun = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=240)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    after = race_runs(db)
    assert len(after) == 16 and len(set(after)) == 16  # the rest, each (candidate, seed) once
    assert set(before) <= set(after)
    rerun_lines = [line for line in rerun.stderr.splitlines() if line.startswith("race baseline: ") and " on seed " in line]
    assert len(rerun_lines) == 16 - len(before)


@pytest.mark.slow
def test_two_workers_share_one_race(spec, tmp_path):
    cmd = [sys.executable, "-m", "study.tune", "--spec", str(spec), "--results", str(tmp_path), "--race",
           "--budget", "20", "--set", "sleep=0.2"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
             for _ in range(2)]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-1500:] for o in outs]
    runs = race_runs(storage(tmp_path))
    # each (candidate, seed) once; a worker may finish one run past the budget (like --trials)
    assert 20 <= len(runs) <= 21 and len(set(runs)) == len(runs)
    ran = [sum(1 for line in o[1].splitlines() if " on seed " in line) for o in outs]
    assert sum(ran) == len(runs)


def test_jobs_2_shares_one_race_between_two_workers_and_confirms_once(spec, tmp_path):
    res = cli("--spec", spec, "--results", tmp_path, "--race", "--budget", 14, "--set", "sleep=0.2", "--jobs", 2,
              "--confirm", 2)
    assert res.returncode == 0, res.stderr[-3000:]
    runs = race_runs(storage(tmp_path))
    # the budget, each (candidate, seed) once; a worker may finish one run past it (like --trials)
    assert 14 <= len(runs) <= 15 and len(set(runs)) == len(runs)
    ran = [sum(1 for line in res.stderr.splitlines() if line.startswith(f"[w{k}] ") and " on seed " in line)
           for k in (1, 2)]
    assert sum(ran) == len(runs) and min(ran) > 0  # both workers ran some
    assert "2 worker processes x " in res.stderr
    # the summary once, from the command itself (unprefixed), then the one confirmation
    assert sum(1 for line in res.stdout.splitlines() if line.startswith("race baseline: ")) == 1
    fresh = pd.read_csv(next(tmp_path.glob("racetoy*-tuned")) / "runs.csv")
    assert len(fresh) == 2


CRASHER = """
import os
import re
import shutil
import signal
from pathlib import Path


def train(config, seed):
    marker = Path(__file__).with_name("crashed")
    if seed == 100002 and not marker.exists():  # one worker dies, once, as a segfault or the OOM killer would
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return {"val": -abs(config["lr"] - 0.05) + seed % 7, "score": 0.0}
"""


def test_a_worker_that_dies_fails_the_command_and_is_named(tmp_path):
    (tmp_path / "racetoy.py").write_text(CRASHER)
    spec = tmp_path / "racetoy.toml"
    spec.write_text(SPEC.replace("sleep = 0.0\n", ""))
    res = cli("--spec", spec, "--results", tmp_path, "--trials", 6, "--jobs", 2)
    assert (tmp_path / "crashed").exists()
    assert res.returncode == 1, res.stderr[-3000:]
    assert re.search(r"error: tuning worker [12] \(pid \d+\) was killed by SIGKILL", res.stderr), res.stderr[-3000:]
    study = optuna.load_study(study_name="racetoy-tune-baseline", storage=f"sqlite:///{tmp_path / 'racetoy' / 'study.db'}")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    # the other worker finished the target (one trial past it at most); no tuning seed ran twice
    seeds = [t.user_attrs["seed"] for t in done]
    assert 6 <= len(done) <= 7 and len(set(seeds)) == len(seeds)
    assert "best of racetoy-tune-baseline" not in res.stdout  # no summary as if all went well


def test_ctrl_c_stops_every_worker_cleanly(spec, tmp_path):
    from study.lifeline import descendants

    cmd = [sys.executable, "-m", "study.tune", "--spec", str(spec), "--results", str(tmp_path), "--race",
           "--budget", "40", "--set", "sleep=0.3", "--jobs", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and len(race_runs(storage(tmp_path))) < 4:
        time.sleep(0.1)
    assert proc.poll() is None, "the race finished before it could be interrupted"
    below = descendants(proc.pid)
    proc.send_signal(signal.SIGINT)  # the terminal's Ctrl-C reaches the command, not its workers' groups
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "\ninterrupted: finished trials are stored; rerun the same command to continue" in err, err[-2000:]
    # a worker still importing when the signal came has nothing to say; one that raced says what it kept
    assert any(line.startswith("[w") and "interrupted: finished runs are stored" in line
               for line in err.splitlines()), err[-2000:]
    alive = [pid for pid in below if os.path.exists(f"/proc/{pid}")]
    assert not alive, f"left running: {alive}"
    assert len(set(race_runs(storage(tmp_path)))) == len(race_runs(storage(tmp_path)))


def test_jobs_is_checked_before_anything_runs(spec, tmp_path):
    for args, words in ((["--jobs", 0, "--trials", 2], "--jobs must be a positive"),
                        (["--jobs", 2, "--confirm", 2], "give --trials N")):
        res = cli("--spec", spec, "--results", tmp_path, *args)
        assert res.returncode == 2 and words in res.stderr, res.stderr[-1500:]


def test_each_arm_races_with_its_own_range_sampler_and_the_same_budget(tmp_path):
    """Fair per-arm tuning: `--arm A,B` races each arm in its own study, on the same budget,
    with a sampler seed of its own and the range its [arms.X.tune] declares."""
    (tmp_path / "racetoy.py").write_text(TOY)
    spec = tmp_path / "racetoy.toml"
    spec.write_text(SPEC + '[arms.wide]\nlr = 0.01\n[arms.wide.tune]\nlr = {low = 0.0001, high = 0.5, log = true}\n')
    res = cli("--spec", spec, "--results", tmp_path, "--race", "--budget", 8, "--arm", "baseline,wide")
    assert res.returncode == 0, res.stderr[-3000:]
    url = f"sqlite:///{tmp_path / 'racetoy' / 'study.db'}"
    studies = {arm: optuna.load_study(study_name=f"racetoy-tune-{arm}-race", storage=url) for arm in ("baseline", "wide")}
    for arm, study in studies.items():
        done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
        assert len(done) == 8, arm
        sampled = [t for t in done if t.user_attrs["race_candidate"] != "default"]
        low = 0.0001 if arm == "wide" else 0.0005
        assert sampled and all(t.distributions["lr"].low == low for t in sampled)
        default = [t.params["lr"] for t in done if t.user_attrs["race_candidate"] == "default"]
        assert set(default) == {0.05 if arm == "baseline" else 0.01}  # the arm's own params first
    samplers = {s.user_attrs["race"]["sampler"] for s in studies.values()}
    assert len(samplers) == 2  # each arm its own sampler seed


def test_an_arms_own_range_is_checked_like_tune(tmp_path):
    from study.spec import SpecError, load_spec

    (tmp_path / "racetoy.py").write_text(TOY)
    spec = tmp_path / "racetoy.toml"
    spec.write_text(SPEC + '[arms.wide.tune]\nlrr = {low = 0.0001, high = 0.5}\n')
    with pytest.raises(SpecError, match=r"\[arms.wide.tune\] names 'lrr'.*did you mean 'lr'"):
        load_spec(spec)


@pytest.mark.slow
def test_the_papers_racing_script_runs_on_a_tiny_config(tmp_path):
    """paper/racing_study.sh, the one command of the paper's racing redo, on the toy: fixed-lr
    runs, each arm raced (the low-lr arm with its own range), both confirmations, the report."""
    (tmp_path / "racetoy.py").write_text(TOY)
    spec = tmp_path / "racetoy.toml"
    spec.write_text(SPEC + "[arms.wide]\nlr = 0.01\n")
    env = {**ENV, "PY": sys.executable, "SPEC": str(spec), "PRESET": "", "ARMS": "baseline,wide",
           "LOW_LR_ARMS": "wide", "BUDGET": "8", "SEEDS": "2", "RESULTS": str(tmp_path / "results"),
           "STUDY": "tiny", "OUT": str(tmp_path / "report")}
    res = subprocess.run(["bash", "paper/racing_study.sh"], capture_output=True, text=True, env=env, cwd=ROOT,
                         timeout=600)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    work = (tmp_path / "results" / "tiny" / "racing-spec.toml").read_text()
    assert "[arms.wide.tune]\nlr = {low = 1e-4, high = 1.0, log = true}" in work
    for study in ("tiny-tuned", "tiny-tuned-per-arm"):
        assert (tmp_path / "results" / study / "runs.csv").exists(), study
    text = (tmp_path / "report" / "report.md").read_text()
    assert "`tiny-tune-wide-race` raced `wide`" in text and "Every arm at its own tuned params" in text


PROBE = """
import os


def train(config, seed, evaluate_test=True):
    out = {"val": config["lr"], "asked_not_to": float(not evaluate_test),
           "env_says_not_to": float(os.environ.get("SEEDWISE_EVALUATE_TEST") == "0")}
    if config["sleep"]:
        import time
        time.sleep(config["sleep"])
    return {**out, "score": 1.0}  # scored anyway: the tuner must not keep it
"""


def probe_spec(tmp_path: Path, tune_metric: str = "val") -> Path:
    (tmp_path / "probe.py").write_text(PROBE)
    path = tmp_path / "probe.toml"
    path.write_text(SPEC.replace("racetoy:train", "probe:train").replace('metric = "val"', f'metric = "{tune_metric}"'))
    return path


def tuning_trials(root: Path, race: bool = False) -> list[optuna.trial.FrozenTrial]:
    """The tuning (or race) study's trials, in the one study folder under `root`."""
    (folder,) = [p for p in root.iterdir() if p.is_dir()]
    name = f"{folder.name}-tune-baseline" + ("-race" if race else "")
    return optuna.load_study(study_name=name, storage=f"sqlite:///{folder / 'study.db'}").trials


def test_a_tuning_run_is_asked_not_to_score_the_test_set_and_none_is_kept(tmp_path):
    """The contract's tuning part: `evaluate_test=False` and SEEDWISE_EVALUATE_TEST=0 reach the
    run; the [analysis] metric it returned anyway is not stored; the trial records its code."""
    spec = probe_spec(tmp_path)
    res = cli("--spec", spec, "--results", tmp_path / "results", "--trials", 2)
    assert res.returncode == 0, res.stderr[-2000:]
    res = cli("--spec", spec, "--results", tmp_path / "results", "--race", "--budget", 2)
    assert res.returncode == 0, res.stderr[-2000:]
    for race in (False, True):
        trials = tuning_trials(tmp_path / "results", race)
        assert len(trials) == 2
        for t in trials:
            m = t.user_attrs["metrics"]
            assert m["asked_not_to"] == 1.0 and m["env_says_not_to"] == 1.0 and "score" not in m, m
            assert t.user_attrs["code_files"] == {"probe.py": t.user_attrs["code_files"]["probe.py"]}
            assert t.user_attrs["code_hash"] and t.user_attrs["git_commit"] and "user_git_commit" in t.user_attrs


def test_tuning_on_the_test_metric_is_refused(tmp_path):
    res = cli("--spec", probe_spec(tmp_path, tune_metric="score"), "--results", tmp_path, "--trials", 2)
    assert res.returncode == 2 and "[tune] metric 'score' is the study's test metric" in res.stderr, res.stderr[-2000:]
    assert not (tmp_path / "racetoy" / "study.db").exists()


def test_timeout_limits_tuning_runs(tmp_path):
    """--timeout applies to a tuning run as to a study's: killed, recorded as failed, exit 1."""
    spec = probe_spec(tmp_path)
    for race in (False, True):
        args = ["--race", "--budget", 1] if race else ["--trials", 1]
        res = cli("--spec", spec, "--results", tmp_path / "results", *args, "--timeout", 0.5, "--set", "sleep=30",
                  timeout=120)
        assert res.returncode == 1, res.stderr[-2000:]
        (t,) = tuning_trials(tmp_path / "results", race)
        assert t.state.name == "FAIL" and "timed out after 0.5 s" in t.user_attrs["error"], t.user_attrs


FRAGILE = """
import math

import numpy as np


def train(config, seed):
    # a researcher's model: out of memory above width 200, diverges (NaN loss) at lr > 1
    if config["width"] > 200:
        raise RuntimeError("CUDA out of memory (width %d)" % config["width"])
    shared = np.random.default_rng([seed, 1]).normal(0, 0.5)
    if config["lr"] > 1.0:
        return {"val_loss": float("nan"), "test_loss": float("nan")}
    loss = (math.log10(config["lr"]) + 1.5) ** 2 + abs(config["width"] - 64) / 640 + shared
    return {"val_loss": float(loss), "test_loss": float(loss)}
"""

FRAGILE_SPEC = """experiment = "fragile:train"
name = "fragile"
seeds = 2
[base]
lr = 0.03
width = 64
[arms.baseline]
[arms."no BN"]
lr = 3.0                          # its own lr, outside the [tune] range, diverges
[analysis]
metric = "test_loss"
direction = "minimize"
margin = 0.05
[tune]
metric = "val_loss"
direction = "minimize"
lr = {low = 0.001, high = 1.0, log = true}
width = {low = 16, high = 256, int = true}
"""


@pytest.mark.slow
def test_a_race_survives_configs_that_raise_and_an_arm_whose_default_diverges(tmp_path):
    """A researcher's experiment that runs out of memory for wide configs, and an arm ("no BN")
    whose own lr diverges with no chance level: the race used to retry the same raising run on
    every rerun (never finishing) and to keep the diverging default as the winner."""
    (tmp_path / "fragile.py").write_text(FRAGILE)
    spec = tmp_path / "fragile.toml"
    spec.write_text(FRAGILE_SPEC)
    args = ("--spec", spec, "--results", tmp_path, "--race", "--budget", 16, "--arm", "baseline,no BN",
            "--confirm", 2)
    skipped = 0
    for _ in range(8):  # a first failure stops a run for a look; a rerun retries it, once
        res = cli(*args)
        if res.returncode == 0:
            break
        assert res.returncode == 1 and "CUDA out of memory" in res.stderr, res.stderr[-3000:]
        # a race cut short is no selection: its winner is not confirmed until the race is done
        assert "confirmation skipped: the tuning did not finish" in res.stderr
        assert not (tmp_path / "fragile-tuned-per-arm" / "runs.csv").exists()
        skipped += 1
    assert res.returncode == 0 and skipped >= 1, res.stderr[-3000:]  # the wide configs did raise
    url = f"sqlite:///{tmp_path / 'fragile' / 'study.db'}"
    for arm in ("baseline", "no BN"):
        trials = optuna.load_study(study_name=f"fragile-tune-{arm}-race", storage=url).get_trials()
        raised = Counter((t.user_attrs["race_candidate"], t.user_attrs["race_seed_index"])
                         for t in trials if t.state.name == "FAIL")
        assert max(raised.values(), default=0) <= 2, raised  # retried once, then dropped
    out = res.stdout + res.stderr
    assert "winner default (lr=3," not in out and "the default diverged on seed index 0" in out
    per_arm = json.loads((tmp_path / "fragile-tuned-per-arm" / "per_arm.json").read_text())
    no_bn = next(a for a in per_arm["arms"] if a["arm"] == "no BN")
    assert no_bn["params"]["lr"] <= 1.0 and no_bn["params"]["width"] <= 200
    runs = pd.read_csv(tmp_path / "fragile-tuned-per-arm" / "runs.csv")
    assert set(runs.loc[runs["arm"] == "no BN", "status"]) == {"complete"}


def test_a_budget_too_small_to_test_anything_says_so(spec, tmp_path):
    """`--budget 3` ends before any candidate has 3 seeds: no drop test can run, and "winner
    default: the default leads the race" alone would read as if racing had found it best."""
    res = cli("--spec", spec, "--results", tmp_path, "--race", "--budget", 3)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "--budget 3 is under 12 runs" in res.stderr and "winner default" in res.stdout
    res = cli("--spec", spec, "--results", tmp_path, "--race", "--budget", 12)
    assert res.returncode == 0 and "is under" not in res.stderr, res.stderr[-3000:]


def test_the_selection_table_names_the_metrics_it_shows_not_percent(capsys):
    """A loss confirmed after tuning: the table used to say "accuracies in %" over val_loss values."""
    from study.confirm import print_selection

    rows = [{"arm": "baseline", "trial": None, "params": {"lr": 0.03}, "selected_val": None,
             "fresh_val_mean": 0.20, "fresh_test_mean": 0.14, "selection_gap": None},
            {"arm": "tuned", "trial": 3, "params": {"lr": 0.01}, "selected_val": -0.05,
             "fresh_val_mean": 0.21, "fresh_test_mean": 0.15, "selection_gap": -0.26}]
    print_selection("toyloss-tuned", [0, 1, 2], rows, objective="val_loss", metric="test_loss")
    out = capsys.readouterr().out
    assert "%" not in out and "val_loss" in out and "test_loss" in out and "gap = selected - fresh" in out


BAD_DEFAULT = """
import math

import numpy as np


def train(config, seed):
    # the arm's own lr (5e-4) is far from the optimum (~0.05): racing on moves the winner
    shared = np.random.default_rng([seed, 1]).normal(0, 0.3)
    own = np.random.default_rng([seed, int(config["lr"] * 1e9) % 2**32]).gamma(2.0, 0.05)
    loss = (math.log10(config["lr"]) + 1.3) ** 2 + shared + own
    return {"val_loss": float(loss), "test_loss": float(loss + 0.01)}
"""


@pytest.mark.slow
def test_confirming_again_after_the_winner_changed_keeps_the_old_confirmation_and_says_how(tmp_path):
    """Race, confirm, race on with a larger budget (a new winner), confirm again: the second
    confirm overwrote the confirmation's spec.toml with the new winner, then stopped with "made
    from a different spec ... use --study NEW_NAME", which for `tune` would restart the race."""
    (tmp_path / "chg.py").write_text(BAD_DEFAULT)
    spec = tmp_path / "chg.toml"
    spec.write_text('experiment = "chg:train"\nname = "chg"\nseeds = 2\n[base]\nlr = 0.0005\n[arms.baseline]\n'
                    '[analysis]\nmetric = "test_loss"\nmargin = 0.05\n[tune]\nmetric = "val_loss"\n'
                    'lr = {low = 0.0001, high = 1.0, log = true}\n')
    first = cli("--spec", spec, "--results", tmp_path, "--race", "--budget", 12, "--confirm", 2)
    assert first.returncode == 0, first.stderr[-3000:]
    again = cli("--spec", spec, "--results", tmp_path, "--race", "--budget", 12, "--confirm", 3)
    assert again.returncode == 0, again.stderr[-3000:]  # the same winner, more seeds: resumes
    confirmed = (tmp_path / "chg-tuned" / "spec.toml").read_text()
    res = cli("--spec", spec, "--results", tmp_path, "--race", "--budget", 40, "--confirm", 2)
    out = res.stdout + res.stderr
    winners = [line for line in out.splitlines() if "winner t" in line]
    assert winners, out[-3000:]
    if res.returncode == 0:  # the winner did not change here: nothing to check
        pytest.skip("the larger budget kept the winner")
    assert res.returncode == 2 and "--study NEW_NAME" not in out, out[-3000:]
    assert "optuna delete-study --study-name chg-tuned" in out and "already confirms" in out
    assert (tmp_path / "chg-tuned" / "spec.toml").read_text() == confirmed  # the record is left as it ran
    # the way out the message gives works: the new winner is confirmed and its runs train
    recipe = out[out.index("optuna delete-study"):].splitlines()[0].split(" && ")
    optuna_cli = str(Path(sys.executable).parent / "optuna")
    subprocess.run([optuna_cli, *recipe[0].split()[1:]], check=True, capture_output=True, cwd=ROOT)
    subprocess.run(recipe[1].split(), check=True, cwd=ROOT)
    res = cli("--spec", spec, "--results", tmp_path, "--race", "--budget", 40, "--confirm", 2)
    assert res.returncode == 0, res.stderr[-3000:]
    runs = pd.read_csv(tmp_path / "chg-tuned" / "runs.csv")
    assert sorted(runs.loc[runs["arm"] == "tuned", "status"]) == ["complete", "complete"]


def test_a_tune_metric_the_function_never_returns_is_named_with_the_closest_it_does(spec, tmp_path):
    """`metric = "vall"` under [tune]: the race stops on its first run (exit 1) with one line naming
    what train() returned and the likely intended key, and no traceback."""
    spec.write_text(SPEC.replace('metric = "val"', 'metric = "vall"'))
    res = cli("--spec", spec, "--results", tmp_path, "--race", "--budget", 12)
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr[-3000:]
    assert "returned no 'vall' ([tune] metric); it returned: val, score (did you mean 'val'?)" in res.stderr


def test_a_default_winner_with_top_k_still_compares_the_runner_ups(tmp_path):
    """--top-k 2 whose winner is the default: the runner-up ran on the fresh seeds as tuned_2,
    and the report said "nothing to compare" before comparing it with anything."""
    from analysis.report.blocks import Report
    from analysis.report.tuning import _confirmation

    folder = tmp_path / "train_mlp-tuned"
    folder.mkdir()
    rows = [{"arm": arm, "seed": s, "status": "complete", "val": 90 + s + shift, "test_acc": 89 + s + shift}
            for arm, shift in (("baseline (ours)", 0.0), ("tuned_2", -1.5)) for s in range(4)]
    pd.DataFrame(rows).to_csv(folder / "runs.csv", index=False)
    (folder / "study.json").write_text(json.dumps({"study": "train_mlp-tuned", "analysis": {
        "metric": "test_acc", "baseline": "baseline (ours)", "margin": 0.5}}))
    (folder / "selection.json").write_text(json.dumps({"winner_is_default": True, "rows": [
        {"arm": "baseline (ours)", "trial": "default", "params": {"lr": 0.05}, "selected_val": 92.0, "n": 4},
        {"arm": "tuned_2", "trial": 7, "params": {"lr": 0.5}, "selected_val": 91.0, "n": 4}]}))
    rep = Report(study="train_mlp", title="t")
    _confirmation(rep, folder)
    text = " ".join(getattr(b, "text", "") for b in rep.blocks)
    assert "The winner is the default configuration: the other choices are compared with it" in text
    assert "`tuned_2` vs `baseline (ours)` on fresh seeds" in text


def test_a_worker_stopped_by_a_signal_from_elsewhere_fails_the_command(capsys):
    """Only this command's own Ctrl-C is an interrupt (exit 130, every worker stopped); a worker
    that exits 130 while this command runs on was stopped from elsewhere: a failure, named."""
    from study.tune_workers import Worker, _wait

    procs = [subprocess.Popen([sys.executable, "-c", f"import sys; sys.exit({code})"]) for code in (0, 130)]
    assert _wait([Worker(n, p) for n, p in enumerate(procs, 1)]) == 1
    assert re.search(r"worker 2 \(pid \d+\) exited with status 130", capsys.readouterr().err)
