"""Tasks in the spec ([tasks.NAME], study.tasks): parsed and validated, run as arms x tasks x
seeds on real scikit-learn data with planted effects, resumed, compared per task and across tasks,
decided per task with --until-decided, tuned per task."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import replace

import pandas as pd
import pytest

from analysis.load import load_study
from analysis.report import build_report
from analysis.report.render import render_markdown
from analysis.tasks.compare import compare_tasks
from study.run import run_plan
from study.spec import SpecError, parse_spec
from study.tasks import spec_with_tasks, task_spec

# A logistic regression on a scikit-learn dataset; the score is its test accuracy plus noise of
# its own (each task, arm and seed: seeded by the config and seed) minus a planted harm.
EXPERIMENT = '''
import json, zlib
import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

LOAD = {"iris": load_iris, "wine": load_wine, "breast_cancer": load_breast_cancer, "digits": load_digits}


def train(config, seed, report=None):
    x, y = LOAD[config["dataset"]](return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, stratify=y, random_state=seed)
    acc = 100 * make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(xtr, ytr).score(xte, yte)
    noise = np.random.default_rng([seed, zlib.crc32(json.dumps(config, sort_keys=True).encode())])
    harm = config["harm_all"] + config["harm_some"] * config["sensitive"]
    return {"score": acc + noise.normal(0, 1.0) - harm}
'''

SPEC = '''
experiment = "planted:train"
name = "planted"
seeds = {seeds}

[base]
dataset = "iris"
sensitive = 0.0
harm_some = 0.0
harm_all = 0.0

[arms.baseline]
{arms}

[analysis]
metric = "score"
direction = "maximize"
margin = {margin}
{tasks}
'''


def write_study(tmp_path, tasks: dict[str, dict], arms: str, seeds: int = 6, margin: float = 1.0):
    (tmp_path / "planted.py").write_text(EXPERIMENT)
    blocks = ""
    for name, keys in tasks.items():
        blocks += f"\n[tasks.{name}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items())
    path = tmp_path / "spec.toml"
    path.write_text(SPEC.format(seeds=seeds, arms=arms, margin=margin, tasks=blocks))
    return path


FOUR = {"iris": {"dataset": "iris"}, "wine": {"dataset": "wine", "sensitive": 1.0},
        "breast_cancer": {"dataset": "breast_cancer", "sensitive": 1.0}, "digits": {"dataset": "digits"}}
PLANTED = "[arms.harm_some]\nharm_some = 4.0\n[arms.harm_all]\nharm_all = 4.0\n"


def digest(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.*"))}


# ---- the spec ---------------------------------------------------------------------------------

def raw(tasks, **extra) -> dict:
    return {"name": "t", "experiment": "m:train", "base": {"dataset": "iris", "lr": 0.1, "epochs": 2},
            "arms": {"baseline": {}, "small": {"lr": 0.01}}, "analysis": {"metric": "val_acc"},
            "presets": {"quick": {"epochs": 1, "lr": 0.5}}, "tasks": tasks, **extra}


def test_tasks_layer_between_preset_and_set_and_arm():
    spec = parse_spec(raw({"a": {"dataset": "wine", "lr": 0.2}, "b": {"dataset": "digits",
                                                                   "analysis": {"chance": 10}}}))
    assert list(spec.tasks) == ["a", "b"] and spec.tasks["b"].chance == 10
    a = task_spec(spec, "a")
    # the task overrides the preset; --set overrides the task; the arm comes last
    assert a.config("baseline", "quick") == {"dataset": "wine", "lr": 0.2, "epochs": 1}
    assert a.config("baseline", "quick", {"lr": 0.3}) == {"dataset": "wine", "lr": 0.3, "epochs": 1}
    assert a.config("small", "quick", {"lr": 0.3})["lr"] == 0.01
    assert task_spec(spec, "b").analysis.chance == 10 and a.analysis.chance is None
    # a task's runs are its own: its identity differs from every other task's and the study's
    assert len({spec.identity(None), a.identity(None), task_spec(spec, "b").identity(None)}) == 3
    assert spec_with_tasks(spec) is spec and spec_with_tasks(a) is None
    assert spec_with_tasks(replace(spec, tasks={})) is None


@pytest.mark.parametrize("tasks, message", [
    ({"a": {"dataset": "wine"}, "b": {"datset": "x"}},
     "unknown config key 'datset' in [tasks.b] of <memory> (did you mean 'dataset'?)"),
    ({"a": {"dataset": "wine"}, "b": {"lr": "fast"}}, "[tasks.b]"),
    ({"a": {"dataset": "wine"}}, "[tasks] must hold two or more tables"),
    ({"a": {"dataset": "wine"}, "b": {"analysis": {"chanse": 10}}},
     "[tasks.b].analysis: unknown key 'chanse' (did you mean 'chance'?)"),
    ({"a": {"analysis": {"chance": "ten"}}, "b": {}}, "chance must be a number"),
    ({"a": {"analysis": {"chance": 1, "reference": 90}}, "b": {"analysis": {"chance": 1}}},
     "reference is declared for a only"),
    ({"a": {"analysis": {"reference": 90}}, "b": {"analysis": {"chance": 1, "reference": 80}}},
     "tasks without one: a"),
    ({"a/x": {}, "b": {}}, "a task's name must be a plain word"),
])
def test_bad_tasks_fail_in_one_line_naming_the_table(tasks, message):
    with pytest.raises(SpecError) as e:
        parse_spec(raw(tasks))
    assert message in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(SpecError, match="unknown task 'c'"):
        task_spec(parse_spec(raw({"a": {}, "b": {}})), "c")


# ---- running a study of several tasks ---------------------------------------------------------

@pytest.mark.slow
def test_planted_effects_found_per_task_and_across_tasks(tmp_path, capsys):
    spec = write_study(tmp_path, FOUR, PLANTED)
    assert run_plan(spec, results=tmp_path / "results", jobs=2) == 0
    out = capsys.readouterr()
    top = tmp_path / "results" / "planted"
    runs = pd.read_csv(top / "runs.csv")
    assert list(runs.columns[:3]) == ["task", "arm", "seed"] and len(runs) == 4 * 3 * 6
    assert set(runs["task"]) == set(FOUR) and (runs["status"] == "complete").all()
    assert all((top / "tasks" / t / "study.db").exists() for t in FOUR)
    meta = json.loads((top / "study.json").read_text())
    assert list(meta["tasks"]) == list(FOUR) and meta["tasks"]["wine"]["overrides"]["sensitive"] == 1.0
    # the end of the run prints the per-task verdicts and the across-task block
    assert "== task wine" in out.out and "== Across 4 tasks" in out.out

    ts = compare_tasks(load_study(top))
    verdict = {(t, c.arm_name): c.verdict.label for t, f in ts.families.items() for c in f.comparisons}
    for task in FOUR:  # harm_all: worse on every task
        assert verdict[(task, "harm_all")] == "worse"
    assert verdict[("wine", "harm_some")] == verdict[("breast_cancer", "harm_some")] == "worse"
    assert verdict[("iris", "harm_some")] != "worse" and verdict[("digits", "harm_some")] != "worse"
    assert ts.across is not None
    some = next(m for m in ts.across.metas if m.arm == "harm_some")
    every = next(m for m in ts.across.metas if m.arm == "harm_all")
    assert some.i2 is not None and some.i2 > 0.5 and some.tau2 is not None and some.tau2 > 1  # heterogeneity
    assert every.pooled is not None and -5 < every.pooled < -3 and every.p_adjusted is not None and every.p_adjusted < 0.05
    assert ts.across.verdict("harm_all") == "worse across tasks, and expected worse on a new task like these"
    assert "varies by task" in ts.across.verdict("harm_some") or "no clear effect" in ts.across.verdict("harm_some")
    rep = build_report(load_study(top))
    text = render_markdown(rep)
    assert "== task" not in text and "harm_some" in text and "I^2" in text and "wine" in text

    # the dashboard opens a task's storage; the study of all tasks names one to open
    from study.cli import storage_of

    assert storage_of(str(top / "tasks" / "iris")).endswith("tasks/iris/study.db")
    with pytest.raises(ValueError, match="several tasks"):
        storage_of(str(top))

    # a rerun trains nothing new and leaves the combined tables byte for byte
    before = digest(top)
    assert run_plan(spec, results=tmp_path / "results", jobs=2) == 0
    assert capsys.readouterr().err.count("nothing to do") == 4
    assert digest(top) == before


@pytest.mark.slow
def test_until_decided_decides_per_task(tmp_path, capsys):
    tasks = {"iris": {"dataset": "iris", "sensitive": 1.0}, "wine": {"dataset": "wine"}}
    spec = write_study(tmp_path, tasks, "[arms.harm]\nharm_some = 8.0\n", seeds=3, margin=0.2)
    code = run_plan(spec, results=tmp_path / "results", until_decided=True, look_every=2, max_seeds=7, jobs=2)
    assert code == 0
    runs = pd.read_csv(tmp_path / "results" / "planted" / "runs.csv")
    seeds = runs.groupby("task")["seed"].nunique()
    # iris: a harm of 8 points decided at the first look; wine: no effect, undecided, seeds to the last look
    assert seeds["iris"] == 3 and seeds["wine"] == 7
    assert "sequential: harm vs baseline: " in capsys.readouterr().err


def test_tuning_is_per_task_and_pooled_is_refused(tmp_path):
    from study.tune import main as tune

    spec = write_study(tmp_path, {"a": {"dataset": "iris"}, "b": {"dataset": "wine"}}, "")
    assert tune(["--spec", str(spec), "--trials", "1", "--results", str(tmp_path)]) == 2
    assert tune(["--spec", str(spec), "--task", "c", "--trials", "1", "--results", str(tmp_path)]) == 2


def test_a_tasks_confirmation_spec_trains_on_that_task(tmp_path):
    """`seedwise tune --task wine --confirm N` writes a spec without tasks: its [base] must hold
    the task's overrides, or the confirmation trains on [base]'s dataset (iris) and says wine."""
    import tomllib

    from study.confirm import _spec_head
    from study.spec import load_spec

    spec = write_study(tmp_path, {"a": {"dataset": "iris"}, "b": {"dataset": "wine", "sensitive": 1.0}}, "")
    text = "\n".join(_spec_head(task_spec(load_spec(spec), "b"), "planted-tuned", "confirm", 2, "baseline"))
    base = tomllib.loads(text)["base"]
    assert base["dataset"] == "wine" and base["sensitive"] == 1.0 and base["harm_all"] == 0.0


def stored_studies(db) -> dict[str, int]:
    """Each Optuna study in a SQLite storage and its number of trials."""
    import sqlite3

    with sqlite3.connect(db) as con:
        return dict(con.execute("select s.study_name, count(t.trial_id) from studies s left join trials t "
                                "on t.study_id = s.study_id group by s.study_name").fetchall())


@pytest.mark.slow
def test_two_studies_with_the_same_tasks_share_one_storage(tmp_path, capsys):
    from study.cli import storage_of

    db = tmp_path / "shared.db"
    url = f"sqlite:///{db}"
    tasks = {"a": {"dataset": "iris"}, "b": {"dataset": "wine"}}
    first = write_study(tmp_path, tasks, "[arms.harm]\nharm_all = 4.0\n", seeds=2)
    other = tmp_path / "other.toml"
    other.write_text(first.read_text().replace('name = "planted"', 'name = "other"'))
    for spec in (first, other):
        assert run_plan(spec, results=tmp_path / "results", storage=url, jobs=1) == 0
    # each task's runs are an Optuna study of their own, named <study>/<task>: none clash
    assert stored_studies(db) == {"planted/a": 4, "planted/b": 4, "other/a": 4, "other/b": 4}
    assert not list((tmp_path / "results").rglob("study.db"))  # nothing in the folders' own files
    top = tmp_path / "results" / "planted"
    runs = pd.read_csv(top / "runs.csv")
    assert len(runs) == 8 and (runs["status"] == "complete").all()
    # the dashboard of the study's folder opens the shared storage, as does a task's
    assert storage_of(str(top)) == storage_of(str(top / "tasks" / "a")) == url
    assert "harm" in render_markdown(build_report(load_study(top)))
    capsys.readouterr()
    before = digest(top)
    assert run_plan(first, results=tmp_path / "results", storage=url, jobs=1) == 0
    assert capsys.readouterr().err.count("nothing to do") == 2 and digest(top) == before


@pytest.mark.slow
def test_two_processes_on_one_storage_split_the_runs(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    tasks = {"a": {"dataset": "iris"}, "b": {"dataset": "wine"}}
    spec = write_study(tmp_path, tasks, "[arms.harm]\nharm_all = 4.0\n", seeds=5)
    # each run takes a while, so that two processes started together both find runs to claim
    slow = EXPERIMENT.replace("    x, y = LOAD", "    import time; time.sleep(0.4)\n    x, y = LOAD")
    (tmp_path / "planted.py").write_text(slow)
    db = tmp_path / "shared.db"
    cmd = [sys.executable, "-m", "study.run", "--spec", str(spec), "--results", str(tmp_path / "results"),
           "--storage", f"sqlite:///{db}", "--jobs", "1"]
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-1500:] for o in outs]
    trained = [len(re.findall(r"seed \d+: score ", o[1])) for o in outs]
    assert sum(trained) == 2 * 2 * 5, trained  # every run trained exactly once across the two
    assert min(trained) > 0, trained  # and the work was really shared
    assert stored_studies(db) == {"planted/a": 10, "planted/b": 10}
    import sqlite3

    with sqlite3.connect(db) as con:
        claims = dict(con.execute("select owner = 'done', count(*) from seedwise_claims group by 1").fetchall())
    assert claims == {1: 20}  # every claim released as done, none left behind
    rerun = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert rerun.returncode == 0 and rerun.stderr.count("nothing to do") == 2
    runs = pd.read_csv(tmp_path / "results" / "planted" / "runs.csv")
    assert len(runs) == 20 and not runs.duplicated(["task", "arm", "seed"]).any()


# ---- the header of the verdicts ---------------------------------------------------------------

def tasks_folder(tmp_path, chances: dict[str, float | None], study_chance: float | None = None):
    """A study of several tasks as `seedwise run` leaves it (runs.csv with a task column,
    study.json with each task's declarations); skewed scores, seeds shared within a task."""
    import numpy as np

    gen = np.random.default_rng(3)
    rows = []
    for t, task in enumerate(chances):
        shared = gen.normal(0, 1.0, 8)
        for arm, harm in (("baseline", 0.0), ("worse", 3.0)):
            acc = 60 + 10 * t - harm + shared - gen.gamma(1.5, 0.8, 8)
            rows += [{"task": task, "arm": arm, "seed": s, "status": "complete", "test_acc": float(v)}
                     for s, v in enumerate(acc)]
    folder = tmp_path / "tasked"
    folder.mkdir()
    pd.DataFrame(rows).to_csv(folder / "runs.csv", index=False)
    analysis = {"metric": "test_acc", "baseline": "baseline", **({} if study_chance is None else {"chance": study_chance})}
    meta = {"study": "tasked", "analysis": analysis, "arms": {"baseline": {}, "worse": {}},
            "tasks": {t: {"analysis": {} if c is None else {"chance": c}} for t, c in chances.items()}}
    (folder / "study.json").write_text(json.dumps(meta))
    return folder


@pytest.mark.parametrize("chances, study_chance, said", [
    ({"iris": 33.3, "wine": 33.3, "breast_cancer": 50.0, "digits": 10.0}, None,
     "chance per task (iris 33.3, wine 33.3, breast_cancer 50, digits 10)"),
    ({"a": 10.0, "b": None}, None, "chance per task (a 10, b unknown)"),
    ({"a": 10.0, "b": None}, 50.0, "chance per task (a 10, b 50)"),  # b: the study's own
    ({"a": 10.0, "b": 10.0}, None, "chance 10 ("),  # one level for all: said once
])
def test_header_says_each_tasks_chance_level_when_they_differ(tmp_path, capsys, chances, study_chance, said):
    from analysis.compare import main as compare

    folder = tasks_folder(tmp_path, chances, study_chance)
    assert compare([str(folder)]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert header.startswith("tasked: test_acc over ") and said in header
    levels = {t: study_chance if c is None else c for t, c in chances.items()}
    assert ("per task" in header) == (len(set(levels.values())) > 1)
    # the report's across-task paragraph lists every task's level, the same or not
    listed = ", ".join(f"{t} {'unknown' if c is None else f'{c:g}'}" for t, c in levels.items())
    assert f"at chance ({listed})" in render_markdown(build_report(load_study(folder)))
