"""The tuner (`python -m study.tune`) with a tiny smoke config: its objective on the tests'
synthetic data, its command line on the real CIFAR-10 copy.

The machine has 2 cores: every run here trains a width-4 net on a few hundred images."""

import dataclasses
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
from conftest import data_source
from optuna.trial import TrialState

from study import tune
from study.cifar import experiment as cifar_experiment
from study.cifar.config import apply_overrides, preset_config
from study.cifar.train import train_one
from study.experiment import Experiment
from study.plan import UsageError
from study.spec import BUILTIN_EXPERIMENT, load_spec

needs_cifar = pytest.mark.skipif(data_source() is None, reason="no CIFAR-10 source (set SEEDWISE_DATA)")

TINY = {"width": 4, "train_size": 200, "val_size": 200, "test_size": 200}
TINY_ARGS = ["--preset", "smoke", "--device", "cpu"] + [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]


class Forbidden:
    """Stands in for the test tensors: any use at all fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"the test set was touched (.{name})")

    def __getitem__(self, key):
        raise AssertionError("the test set was indexed")

    def __len__(self):
        raise AssertionError("the test set was measured")


@pytest.fixture
def tiny():
    return apply_overrides(preset_config("smoke"), TINY)


@pytest.fixture
def no_test_set(synthetic_cifar):
    """The built-in experiment trains on synthetic data whose test tensors may not be touched."""
    data = dataclasses.replace(synthetic_cifar, test_x=Forbidden(), test_y=Forbidden())
    cifar_experiment.use_data(data)
    yield data
    cifar_experiment.use_source()  # forget the installed data: later tests load their own


BUILTIN = Experiment(reference=BUILTIN_EXPERIMENT)


def builtin_objective(config, space, **options):
    """The one tuning objective, on the built-in experiment through its contract."""
    return tune.make_objective(BUILTIN, config.to_dict(), space, "val_acc", device="cpu", test_metric="test_acc",
                               **options)


def space_of(config, also=()):
    return tune.search_space(config.to_dict(), load_spec(None).tune.ranges, also)


def test_objective_never_reads_the_test_set(tiny, no_test_set):
    objective = builtin_objective(tiny, space_of(tiny), attrs={"git_commit": "abc"})
    trial = optuna.trial.FixedTrial({"lr": 0.05, "step_size": 1}, number=3)
    value = objective(trial)
    assert 0.0 <= value <= 100.0
    assert trial.user_attrs["seed"] == tune.TUNE_SEED_OFFSET + 3  # disjoint from evaluation seeds 0..N-1
    assert trial.user_attrs["status"] == "complete" and trial.user_attrs["git_commit"] == "abc"
    assert value == trial.user_attrs["metrics"]["val_acc"] and "test_acc" not in trial.user_attrs["metrics"]
    assert trial.user_attrs["metrics"]["lr_final"] == 0.025  # StepLR(1, 0.5) from 0.05, two epochs
    assert {"code_hash", "code_files", "config_hash", "worker"} <= set(trial.user_attrs)
    result = train_one(tiny, 0, no_test_set, device="cpu", score_test=False)
    assert result.test_acc is None and result.test_predictions is None
    assert all(e.test_acc is None for e in result.epochs) and all(e.val_acc is not None for e in result.epochs)


def test_search_space_is_the_spec_s(tiny):
    space = space_of(tiny)
    assert set(space) == {"lr", "step_size"}
    assert (space["lr"].low, space["lr"].high, space["lr"].log) == (1e-3, 1.0, True)
    assert (space["step_size"].low, space["step_size"].high) == (1, tiny.epochs)
    gamma = space_of(tiny, also=("gamma",))["gamma"]  # declared optional: only when asked for
    assert (gamma.low, gamma.high) == (0.1, 0.9)
    with pytest.raises(UsageError, match="--tune-also lr: not an optional range of \\[tune\\]; its optional ranges: gamma"):
        space_of(tiny, also=("lr",))


@pytest.mark.filterwarnings("ignore:.*out of.*range:UserWarning")  # lr=1e6 on purpose
def test_diverging_trial_is_pruned_not_fatal(tiny, no_test_set):
    objective = builtin_objective(tiny, space_of(tiny))
    fixed = optuna.trial.FixedTrial({"lr": 1e6, "step_size": 2})  # far outside the space: NaN loss
    with pytest.raises(optuna.TrialPruned, match="diverged"):
        objective(fixed)
    assert fixed.user_attrs["status"] == "diverged" and fixed.user_attrs["diverged_epoch"] in (1, 2)

    # In a real study the diverged trial is PRUNED and the study goes on.
    study = optuna.create_study(direction="maximize", sampler=tune.TrialSeededTPE(seed=0))
    study.enqueue_trial({"lr": 1e6, "step_size": 2})
    study.enqueue_trial({"lr": 0.05, "step_size": 1})
    study.optimize(objective, n_trials=2)
    diverged, ok = study.trials
    assert diverged.state == TrialState.PRUNED and diverged.user_attrs["status"] == "diverged"
    assert ok.state == TrialState.COMPLETE and ok.user_attrs["status"] == "complete"


def test_pruner_stops_a_trial_from_the_epoch_callback(tiny, no_test_set):
    objective = builtin_objective(tiny, space_of(tiny))
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=101.0))
    study.optimize(objective, n_trials=1)
    (t,) = study.trials
    assert t.state == TrialState.PRUNED and t.user_attrs["status"] == "pruned"
    assert list(t.intermediate_values) == [1]  # reported after epoch 1, pruned before epoch 2


def test_a_failing_trial_keeps_its_traceback(tiny, no_test_set):
    """A run that raises fails its trial with the error and traceback recorded on it."""
    objective = tune.make_objective(BUILTIN, {**tiny.to_dict(), "width": -3}, space_of(tiny), "val_acc")
    trial = optuna.trial.FixedTrial({"lr": 0.05, "step_size": 1})
    with pytest.raises(ValueError, match="width"):  # the built-in Config's own validation
        objective(trial)
    assert trial.user_attrs["status"] == "failed" and "width" in trial.user_attrs["error"]
    assert "Traceback" in trial.user_attrs["traceback"]


def test_trial_seeded_sampler_is_reproducible_and_distinct_per_trial():
    def draws(seed, n):
        study = optuna.create_study(sampler=tune.TrialSeededTPE(seed=seed))
        study.optimize(lambda t: t.suggest_float("lr", 1e-3, 1, log=True), n_trials=n)
        return [t.params["lr"] for t in study.trials]

    first = draws(0, 3)
    assert first == draws(0, 3) and len(set(first)) == 3 and first != draws(1, 3)


@needs_cifar
def test_bad_input_exits_2(tmp_path, capsys):
    common = [*TINY_ARGS, "--results", str(tmp_path)]
    assert tune.main([*common, "--trials", "1", "--arm", "no_bnn"]) == 2
    assert "did you mean 'no_bn'" in capsys.readouterr().err
    assert tune.main([*common, "--trials", "0"]) == 2
    assert "--trials must be a positive integer" in capsys.readouterr().err
    assert tune.main([*common, "--confirm", "2"]) == 2
    assert "seedwise tune --trials N" in capsys.readouterr().err
    assert tune.main(common) == 2
    assert "nothing to do" in capsys.readouterr().err
    assert not list(tmp_path.rglob("selection.json"))


def trials_of(db: Path, name: str):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{db}").get_trials(deepcopy=False)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """Tune to 2 trials, resume to 4, then --confirm 2 --top-k 2: one storage for all."""
    root = tmp_path_factory.mktemp("tune")
    common = [*TINY_ARGS, "--results", str(root)]
    os.environ.setdefault("SEEDWISE_DATA", data_source())
    assert tune.main([*common, "--trials", "2"]) == 0
    (study_dir,) = [p for p in root.iterdir() if p.is_dir()]
    name = f"{study_dir.name}-tune-baseline"
    after_first = len(trials_of(study_dir / "study.db", name))
    assert tune.main([*common, "--trials", "4"]) == 0
    assert tune.main([*common, "--trials", "4"]) == 0  # the target is reached: nothing to do
    code = tune.main([*common, "--confirm", "2", "--top-k", "2"])
    return {"root": root, "dir": study_dir, "name": name, "after_first": after_first, "confirm_code": code}


@needs_cifar
def test_resume_reaches_exactly_n_trials(tuned):
    trials = trials_of(tuned["dir"] / "study.db", tuned["name"])
    assert tuned["after_first"] == 2 and len(trials) == 4
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert [t.user_attrs["seed"] for t in trials] == [100_000, 100_001, 100_002, 100_003]
    study = optuna.load_study(study_name=tuned["name"], storage=f"sqlite:///{tuned['dir'] / 'study.db'}")
    attrs = study.user_attrs
    assert attrs["kind"] == "seedwise-tuning" and attrs["arm"] == "baseline" and attrs["preset"] == "smoke"
    assert attrs["objective"] == "val_acc" and attrs["ablation_study"] == tuned["dir"].name and attrs["identity"]


@needs_cifar
def test_confirm_adds_a_paired_tuned_study(tuned):
    assert tuned["confirm_code"] == 0
    out = tuned["root"] / f"{tuned['dir'].name}-tuned"
    runs = pd.read_csv(out / "runs.csv")
    assert set(runs["arm"]) == {"baseline", "tuned", "tuned_2"}
    assert sorted(runs[runs["arm"] == "tuned"]["seed"]) == [0, 1]
    assert sorted(runs[runs["arm"] == "baseline"]["seed"]) == [0, 1]
    assert (out / "spec.toml").exists()
    # the confirm study is in the *same* storage as the tuning study
    names = {s.study_name for s in optuna.get_all_study_summaries(f"sqlite:///{tuned['dir'] / 'study.db'}")}
    assert {tuned["name"], out.name} <= names
    sel = json.loads((out / "selection.json").read_text())
    rows = {r["arm"]: r for r in sel["rows"]}
    best = sorted((t for t in trials_of(tuned["dir"] / "study.db", tuned["name"])
                   if t.state == TrialState.COMPLETE), key=lambda t: -t.value)
    assert rows["tuned"]["trial"] == best[0].number and rows["tuned"]["selected_val"] == best[0].value
    assert rows["tuned"]["params"] == best[0].params and sel["seeds"] == [0, 1]
    for r in (rows["tuned"], rows["tuned_2"]):
        assert r["n"] == 2 and r["fresh_test_mean"] is not None
        assert r["selection_gap"] == pytest.approx(r["selected_val"] - r["fresh_val_mean"])
    tuned_runs = runs[runs["arm"] == "tuned"]
    assert tuned_runs["lr_final"].notna().all()


@needs_cifar
def test_two_concurrent_tuners_lose_no_trial(tmp_path, cifar):
    cmd = [sys.executable, "-m", "study.tune", *TINY_ARGS, "--results", str(tmp_path), "--trials", "4"]
    env = {**os.environ, "SEEDWISE_DATA": data_source(), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    (study_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    trials = trials_of(study_dir / "study.db", f"{study_dir.name}-tune-baseline")
    # they share the target of 4; each may finish the trial it was in when the other reached it
    assert len(trials) in (4, 5) and sorted(t.number for t in trials) == list(range(len(trials)))
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert len({t.params["lr"] for t in trials}) == len(trials)  # workers do not replay each other's draws
    assert {t.user_attrs["worker"].split(":")[1] for t in trials} == {str(p.pid) for p in procs}
    for err in (o[1] for o in outs):  # a progress line per finished trial
        assert err.count("trial ") >= 1 and "val " in err


@needs_cifar
def test_report_shows_tuning_and_the_confirmed_verdict(tuned, tmp_path):
    """The ablation's report gains the tuning figures, the selection table and tuned vs baseline."""
    from analysis.report import write_report
    from study.run import main as run_main

    common = [*TINY_ARGS, "--results", str(tuned["root"])]
    assert run_main([*common, "--seeds", "2", "--arms", "baseline,no_bn", "--jobs", "1"]) == 0
    out = tmp_path / "report"
    write_report(tuned["dir"], out, note=False)
    text = (out / "report.md").read_text()
    assert "## Tuning (Optuna)" in text and "never scored during tuning" in text
    for fig in ("tuning_history_baseline", "tuning_space_baseline", "tuning_importance_baseline"):
        assert (out / "figures" / f"{fig}.png").exists()
    assert "Confirmation on fresh seeds" in text and (out / "tables" / "selection.md").exists()
    assert "`tuned` vs `baseline` on fresh seeds" in text


def tuning_study_exists(db: Path) -> bool:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            return bool(con.execute("select 1 from studies where study_name like '%-tune-baseline'").fetchone())
    except sqlite3.Error:  # not created yet
        return False


@needs_cifar
# SIGKILL (nothing cleans up) in the default suite; the graceful signals take minutes more.
@pytest.mark.parametrize("sig", [pytest.param(signal.SIGINT, marks=pytest.mark.slow),
                                 pytest.param(signal.SIGTERM, marks=pytest.mark.slow), signal.SIGKILL],
                         ids=["SIGINT", "SIGTERM", "SIGKILL"])
def test_killed_tuner_then_rerun_ends_with_exactly_n_trials(tmp_path, sig):
    """Kill the tuner while a trial runs, rerun the same command: the trials finished before
    the kill are untouched, the interrupted one is failed (at once, not after the heartbeat
    grace period: its process is gone), and the study ends with exactly --trials finished."""
    # trials of a few seconds (not TINY's 0.2 s), so that there is a trial to interrupt
    cmd = [sys.executable, "-m", "study.tune", *TINY_ARGS, "--set", "train_size=6000", "--results", str(tmp_path),
           "--trials", "3"]
    env = {**os.environ, "SEEDWISE_DATA": data_source(), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline, before = time.time() + 240, None
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
        dbs = list(tmp_path.glob("*/study.db"))
        if not dbs or not tuning_study_exists(dbs[0]):  # never race the tuner's schema creation
            continue
        trials = trials_of(dbs[0], f"{dbs[0].parent.name}-tune-baseline")
        done = {t.number: (t.state, t.value, t.params) for t in trials if t.state.is_finished()}
        # a trial that is training (its objective has started: it says which process runs it)
        if done and any(t.state == TrialState.RUNNING and "worker" in t.user_attrs for t in trials):
            before = done
            proc.send_signal(sig)
            break
    out, err = proc.communicate(timeout=120)
    assert before is not None, f"never saw a running trial after a finished one: {err[-2000:]}"
    assert proc.returncode == (-9 if sig == signal.SIGKILL else 130), err[-2000:]
    if sig != signal.SIGKILL:
        assert "Traceback" not in err and "rerun the same command" in err

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    (db,) = tmp_path.glob("*/study.db")
    trials = trials_of(db, f"{db.parent.name}-tune-baseline")
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    interrupted = [t for t in trials if t.state == TrialState.FAIL]
    assert len(finished) == 3 and len(interrupted) <= 1
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert {t.number: (t.state, t.value, t.params) for t in trials if t.number in before} == before
    seeds = [t.user_attrs["seed"] for t in trials if "seed" in t.user_attrs]  # none if killed at its start
    assert len(set(seeds)) == len(seeds) and len(seeds) >= len(trials) - 1  # no seed trained twice


def test_the_builtin_study_is_tuned_and_raced_through_its_contract(tmp_path):
    """The default spec is accepted by --race as by --trials: one objective, the built-in
    experiment called like any module (its test metric never the objective)."""
    for flags in (["--race", "--budget", "1"], ["--trials", "1"]):
        tuning = tune.prepare(tune.parse_args([*TINY_ARGS, "--results", str(tmp_path), *flags]))
        assert tuning.experiment.reference == BUILTIN_EXPERIMENT and tuning.objective == "val_acc"
        assert tuning.test_metric == "test_acc" and set(tuning.space) == {"lr", "step_size"}
    assert tuning.name.endswith("-tune-baseline") and tuning.config["epochs"] == 2
    also = tune.prepare(tune.parse_args([*TINY_ARGS, "--results", str(tmp_path), "--study", "g", "--trials", "1",
                                         "--tune-also", "gamma"]))
    assert set(also.space) == {"lr", "step_size", "gamma"}
    assert tune.main([*TINY_ARGS, "--results", str(tmp_path), "--trials", "1", "--tune-also", "momentum"]) == 2


@needs_cifar
@pytest.mark.slow
def test_racing_the_builtin_study_at_smoke_size(tmp_path, monkeypatch):
    """`seedwise tune --race --budget N --confirm 2` on the default spec, on CIFAR-10: every race
    run a tuning seed, none scoring the test set, each with its code; the winner confirmed."""
    monkeypatch.setenv("SEEDWISE_DATA", data_source())
    common = [*TINY_ARGS, "--results", str(tmp_path)]
    assert tune.main([*common, "--race", "--budget", "6", "--confirm", "2"]) == 0
    (study_dir,) = [p for p in tmp_path.iterdir() if p.is_dir() and not p.name.endswith("-tuned")]
    trials = trials_of(study_dir / "study.db", f"{study_dir.name}-tune-baseline-race")
    done = [t for t in trials if t.state.is_finished()]
    assert len(done) == 6 and all(t.user_attrs["seed"] >= tune.TUNE_SEED_OFFSET for t in done)
    assert {t.user_attrs["race_candidate"] for t in done} >= {"default"}
    for t in done:
        assert "test_acc" not in t.user_attrs.get("metrics", {}) and "val_acc" in t.user_attrs["metrics"]
        assert t.user_attrs["git_commit"] and "code_hash" in t.user_attrs
    runs = pd.read_csv(tmp_path / f"{study_dir.name}-tuned" / "runs.csv")
    # a default winner runs once, as the untuned arm; another winner runs beside it as `tuned`
    selection = json.loads((tmp_path / f"{study_dir.name}-tuned" / "selection.json").read_text())
    arms = {"baseline"} if selection.get("winner_is_default") else {"baseline", "tuned"}
    assert set(runs["arm"]) == arms and sorted(set(runs["seed"])) == [0, 1]
    assert runs["test_acc"].notna().all()  # the confirmation, on evaluation seeds, is scored
