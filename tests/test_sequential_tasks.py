"""`--until-decided` over several tasks: each task's plan spends alpha / tasks (Bonferroni,
`analysis.sequential.plan.task_share`), so the familywise error of the sequential claims over
arms x tasks stays <= alpha; the plan records the split, and a plan registered before it keeps
its whole alpha (a deviation said, never adopted silently)."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import optuna
import pytest

from analysis.load import load_study
from analysis.report import build_report
from analysis.report.render import render_markdown
from analysis.sequential.plan import SequentialPlan, plan_deviations, task_share
from analysis.sequential.simulate import BETTER, WORSE, run_sequential
from study.run import run_plan

ALPHA, TASKS = 0.05, 4


def task_plan(share, **kw) -> SequentialPlan:
    return SequentialPlan(baseline="base", arms=("a", "b"), metric="acc", margin=0.5, first_look=5,
                          look_every=5, max_seeds=20, alpha=share.alpha, tasks=share.tasks,
                          study_alpha=share.study_alpha, **kw)


# --- the plan --------------------------------------------------------------------------------

def test_each_task_spends_its_share_and_the_plan_says_so():
    share = task_share(ALPHA, TASKS)
    assert (share.alpha, share.tasks, share.study_alpha) == (0.0125, 4, 0.05)
    assert task_share(ALPHA, 1) == (0.05, 1, None)
    p = task_plan(share)
    assert SequentialPlan.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    assert p.alpha_text() == "alpha 0.05 split over 4 tasks: 0.0125 each"
    assert "alpha 0.05 split over 4 tasks: 0.0125 each (Bonferroni" in p.methods_text()
    assert "familywise error over arms x tasks and all looks is <= 0.05" in p.methods_text()
    assert task_plan(task_share(ALPHA, 1)).alpha_text() == "alpha 0.05"


@pytest.mark.parametrize(("fields", "name"), [
    (dict(alpha=0.05, tasks=4, study_alpha=0.05), "alpha"),  # the whole alpha claimed as a share
    (dict(alpha=0.05, tasks=1, study_alpha=0.05), "study_alpha"),
    (dict(alpha=0.05, tasks=0, study_alpha=None), "tasks"),
])
def test_a_share_that_does_not_add_up_is_refused_naming_the_parameter(fields, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        SequentialPlan(baseline="base", arms=("a",), **fields)
    with pytest.raises(ValueError, match="`tasks`"):
        task_share(ALPHA, 0)


def test_a_plan_stored_before_the_split_keeps_its_whole_alpha():
    stored = task_plan(task_share(ALPHA, 1)).to_dict()
    del stored["tasks"], stored["study_alpha"]  # as a version-2 plan was stored
    old = SequentialPlan.from_dict(stored)
    assert (old.alpha, old.tasks, old.study_alpha) == (0.05, 1, None)
    assert plan_deviations(old, task_plan(task_share(ALPHA, TASKS))) == [
        "alpha: pre-registered 0.05, now 0.0125", "tasks: pre-registered 1, now 4",
        "study_alpha: pre-registered None, now 0.05"]


# --- the familywise error over tasks, by simulation --------------------------------------------

def aa_runs(rng: np.random.Generator, law: str, reps: int, n: int) -> np.ndarray:
    """(reps, 3 arms, n) run values of an A/A task, arm 0 the baseline, every arm's mean the same:
    a seed effect shared by the arms (pairing) plus each run's own noise, of the task's law."""
    shared = rng.normal(0.0, 2.0, (reps, 1, n))
    own = rng.normal(0.0, 0.7, (reps, 3, n))
    if law == "bad seeds":  # a run that did not learn (8 points down), 1 in 10, in any arm
        own -= 8.0 * (rng.random((reps, 3, n)) < 0.1)
    elif law == "t3":  # heavy tails
        own = 0.7 * rng.standard_t(3, (reps, 3, n))
    elif law == "skewed":  # the compared arms' runs left-skewed (lognormal 0.5), same mean
        tail = rng.lognormal(0.0, 0.5, (reps, 3, n)) - np.exp(0.125)
        tail[:, 0] = 0.0
        own -= 1.5 * tail
    return 70.0 + shared + own


def familywise_error(share, reps: int, seed: int) -> float:
    """Rate of A/A studies of TASKS tasks x 2 arms (vs the baseline) with any better/worse claim,
    each task decided by its own plan (`run_sequential` makes `decide`'s decisions)."""
    rng = np.random.default_rng(seed)
    claimed = np.zeros(reps, dtype=bool)
    for law in ("normal", "bad seeds", "t3", "skewed"):  # one task each
        runs = aa_runs(rng, law, reps, 20)
        decision = run_sequential(task_plan(share), runs[:, 1:] - runs[:, :1]).decision
        claimed |= np.isin(decision, [BETTER, WORSE]).any(axis=1)
    return float(claimed.mean())


def test_familywise_error_over_tasks_is_controlled_only_with_the_split():
    reps = 4000
    split = familywise_error(task_share(ALPHA, TASKS), reps, seed=11)
    whole = familywise_error(task_share(ALPHA, 1), reps, seed=11)  # the old rule: each task at alpha
    se = np.sqrt(ALPHA * (1 - ALPHA) / reps)  # Monte-Carlo SE at alpha: 0.0034
    # measured: split 0.031 (SE 0.003), whole 0.122 (SE 0.005)
    assert split <= ALPHA + 2 * se
    assert whole > ALPHA + 10 * se


# --- end to end: study.run --until-decided on two tasks -----------------------------------------

EXPERIMENT = '''
import random


def train(config, seed):
    shared = random.Random(f"{seed}-{config['task']}").gauss(0, 2.0)  # the seed's luck: paired
    own = random.Random(f"{seed}-{config['task']}-{config['variant']}").gauss(0, 0.5)
    return {"acc": 70.0 + shared + own + config["effect"]}
'''

SPEC = '''
experiment = "exp:train"
name = "two"
seeds = 3
[base]
effect = 0.0
variant = 0
task = "x"
[arms.baseline]
[arms.big]
effect = 10.0
variant = 1
[analysis]
metric = "acc"
margin = 0.3
sequential = {look_every = 2, max_seeds = 5}
[tasks.x]
task = "x"
[tasks.y]
task = "y"
'''


def test_until_decided_records_each_tasks_share_and_the_report_says_it(tmp_path, capsys):
    (tmp_path / "exp.py").write_text(textwrap.dedent(EXPERIMENT))
    (tmp_path / "spec.toml").write_text(textwrap.dedent(SPEC))
    top = tmp_path / "results" / "two"
    code = run_plan(tmp_path / "spec.toml", results=tmp_path / "results", until_decided=True, jobs=1)
    assert code == 0
    err = capsys.readouterr().err
    assert "sequential: alpha 0.05 split over 2 tasks: 0.025 each" in err
    for task in ("x", "y"):
        record = json.loads((top / "tasks" / task / "sequential.json").read_text())
        assert (record["plan"]["alpha"], record["plan"]["tasks"], record["plan"]["study_alpha"]) == (0.025, 2, 0.05)
        assert "split over 2 tasks" in record["methods"]
        assert record["comparisons"][0]["decision"] == "better"
    assert "x: alpha 0.05 split over 2 tasks: 0.025 each; big better at " in err
    assert "familywise error of the sequential claims over arms x tasks <= 0.05" in err
    text = render_markdown(build_report(load_study(top)))
    assert "Seeds until decided, per task" in text and "y: alpha 0.05 split over 2 tasks: 0.025 each" in text


def test_a_task_registered_before_the_split_keeps_its_alpha_and_says_so(tmp_path, capsys):
    (tmp_path / "exp.py").write_text(textwrap.dedent(EXPERIMENT))
    (tmp_path / "spec.toml").write_text(textwrap.dedent(SPEC))
    top = tmp_path / "results" / "two"
    assert run_plan(tmp_path / "spec.toml", results=tmp_path / "results", until_decided=True, jobs=1) == 0
    # as if task y's study had been registered under the old rule (the whole alpha per task)
    old = json.loads((top / "tasks" / "y" / "sequential.json").read_text())["plan"]
    old.update(alpha=0.05, tasks=1, study_alpha=None)
    storage = f"sqlite:///{top / 'tasks' / 'y' / 'study.db'}"
    optuna.load_study(study_name="two/y", storage=storage).set_user_attr("sequential_plan", old)
    capsys.readouterr()
    assert run_plan(tmp_path / "spec.toml", results=tmp_path / "results", until_decided=True, jobs=1) == 0
    err = capsys.readouterr().err
    assert "ignored deviation from the pre-registered plan: alpha: pre-registered 0.05, now 0.025" in err
    assert "registered spending the whole alpha 0.05 (before alpha was split over tasks)" in err
    record = json.loads((top / "tasks" / "y" / "sequential.json").read_text())
    assert record["plan"]["alpha"] == 0.05  # kept: the task is not re-judged under the new rule
    assert "y: alpha 0.05 (registered before alpha was split over tasks)" in err
    assert "over arms x tasks <= 0.075" in err
