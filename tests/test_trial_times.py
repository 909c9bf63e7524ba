"""Trials are stored once a run has finished; the dashboard's timeline and durations must still
show the training time, not a 0 ms insert (issue 16)."""

from __future__ import annotations

import textwrap

import optuna

from study.api import run_study

EXPERIMENT = '''
import time


def train(config, seed):
    time.sleep(config["sleep"])
    return {"score": float(seed)}
'''

SPEC = '''
experiment = "slow:train"
name = "timed"
[base]
sleep = 0.3
[arms.baseline]
[analysis]
metric = "score"
'''


def test_trials_carry_the_runs_real_start_and_duration(tmp_path):
    (tmp_path / "slow.py").write_text(textwrap.dedent(EXPERIMENT))
    (tmp_path / "spec.toml").write_text(textwrap.dedent(SPEC))
    run_study(tmp_path / "spec.toml", seeds=2, results=str(tmp_path / "r"), jobs=1)
    study = optuna.load_study(study_name="timed", storage=f"sqlite:///{tmp_path / 'r' / 'timed' / 'study.db'}")
    trials = study.get_trials()
    assert len(trials) == 2
    for t in trials:
        seconds = (t.datetime_complete - t.datetime_start).total_seconds()
        assert 0.3 <= seconds < 30, seconds
    assert trials[0].datetime_complete <= trials[1].datetime_start  # one worker: one after the other
