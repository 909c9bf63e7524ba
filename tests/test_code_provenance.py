"""A user experiment's own code in the provenance (issue 22): each run records a hash of the
experiment's files, the user's git commit and the packages it imported; a rerun whose code
changed stops with exit 2 unless the change is accepted, and the report shows the versions.

Each test writes a researcher's experiment into tmp_path and runs it in this process (`--jobs 1`,
or loky workers for `--jobs 2`). Between invocations `fresh_process` forgets the experiment's
modules, as a new `seedwise run` process would start without them."""

import json
import shutil
import subprocess
import sys

import optuna
import pandas as pd
import pytest

from analysis.load import load_study
from analysis.report.provenance import provenance_table
from study.plan import make_plan, study_description
from study.provenance import CodeChangedError, command_files, run_code
from study.run import main, run_plan
from study.store import RunStore

TRAIN_MLP = """\
import numpy as np
from utils import noise

def train(config, seed):
    from metrics import rounded  # imported only when a run starts: recorded all the same
    rng = np.random.default_rng(seed)
    return {"val_loss": rounded(config["lr"] * 2 + noise(rng))}
"""
UTILS = "def noise(rng):\n    return rng.normal(0.0, 0.1)\n"
UTILS_EDITED = "def noise(rng):\n    return rng.normal(0.0, 0.25)  # wider\n"
METRICS = "def rounded(x):\n    return round(float(x), 6)\n"
SWEEP = """\
experiment = "train_mlp:train"
name = "mlp-lr"
seeds = 2
[base]
lr = 0.1
[arms.baseline]
[arms.high_lr]
lr = 0.3
[analysis]
metric = "val_loss"
direction = "minimize"
baseline = "baseline"
margin = 0.05
"""


@pytest.fixture
def fresh_process(tmp_path, monkeypatch):
    """Forget the modules loaded from tmp_path (and write no stale .pyc), as a new process would."""
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.setattr(sys, "path", list(sys.path))

    def forget():
        for name, module in list(sys.modules.items()):
            if str(getattr(module, "__file__", None) or "").startswith(str(tmp_path)):
                del sys.modules[name]
    yield forget
    forget()


def mlp_folder(tmp_path):
    folder = tmp_path / "mlp"
    folder.mkdir()
    for name, text in (("train_mlp.py", TRAIN_MLP), ("utils.py", UTILS), ("metrics.py", METRICS),
                       ("sweep.toml", SWEEP), ("plot_curves.py", "raise SystemExit('not imported')\n")):
        (folder / name).write_text(text)
    return folder


def stored(results, study="mlp-lr"):
    return optuna.load_study(study_name=study, storage=f"sqlite:///{results / study / 'study.db'}").get_trials()


def test_each_run_records_its_code_and_a_changed_rerun_stops(tmp_path, fresh_process, capsys):
    folder, results = mlp_folder(tmp_path), tmp_path / "results"
    assert run_plan(folder / "sweep.toml", results=results, jobs=2) == 0  # loky workers record it
    first = [t.user_attrs for t in stored(results)]
    files = first[0]["code_files"]
    assert set(files) == {"train_mlp.py", "utils.py", "metrics.py"}  # not plot_curves.py, nor seedwise
    assert len({a["code_hash"] for a in first}) == 1 and "numpy" in first[0]["packages"]
    assert first[0]["user_git_commit"] is None and first[0]["user_git_diff_hash"] is None  # no repository
    runs = pd.read_csv(results / "mlp-lr" / "runs.csv", dtype={"code_hash": str})
    assert set(runs["code_hash"]) == {first[0]["code_hash"]}

    (folder / "utils.py").write_text(UTILS_EDITED)
    fresh_process()
    description = (results / "mlp-lr" / "study.json").read_text()
    with pytest.raises(CodeChangedError, match=r"\(utils\.py changed\); nothing was run.*--accept-code-change"):
        run_plan(folder / "sweep.toml", results=results, seeds=3, jobs=1)
    assert main(["--spec", str(folder / "sweep.toml"), "--results", str(results), "--seeds", "3"]) == 2
    assert "--study NEW_NAME" in capsys.readouterr().err.splitlines()[-1]
    assert len(stored(results)) == 4 and (results / "mlp-lr" / "study.json").read_text() == description

    fresh_process()
    assert run_plan(folder / "sweep.toml", results=results, seeds=3, jobs=1, accept_code_change=True) == 0
    fresh_process()
    assert run_plan(folder / "sweep.toml", results=results, seeds=4, jobs=1) == 0  # the accepted code goes on
    later = [t.user_attrs for t in stored(results)][4:]
    assert len(later) == 4 and {a["code_hash"] for a in later} != {first[0]["code_hash"]}
    assert all(a["code_files"]["utils.py"] != files["utils.py"] for a in later)
    change = later[-1]["accepted_code_changes"]
    assert [c["files"] for c in change] == [["utils.py changed"]] and change[0]["from"] == first[0]["code_hash"]
    assert all(a["accepted_code_changes"] == change for a in later)

    table, _ = provenance_table(load_study(results / "mlp-lr"), ["baseline", "high_lr"])
    rows = dict(zip(table["item"], table["value"], strict=True))
    assert rows["experiment code (hash: its files) #1"].startswith(f"{first[0]['code_hash']} (4 runs): metrics.py")
    assert "(4 runs)" in rows["experiment code (hash: its files) #2"]
    assert "utils.py changed" in rows["accepted code changes (--accept-code-change)"]
    assert rows["experiment's git commit"] == "not in a git repository (all 8 runs)"
    assert any(k.startswith("packages the experiment") and "numpy" in v for k, v in rows.items())


def test_a_study_stored_before_code_was_recorded_resumes(tmp_path, fresh_process):
    """Runs without a code hash (stored by an older seedwise) are of unknown code, not of changed code."""
    folder, results = mlp_folder(tmp_path), tmp_path / "results"
    plan = make_plan(folder / "sweep.toml", has_cuda=False, results=results, seeds=1)
    store = RunStore(plan.results_dir, plan.study_name, plan.identity, plan.spec.arm_names,
                     study_description(plan, "sqlite"))
    for arm, loss in (("baseline", 0.21), ("high_lr", 0.58)):  # what seedwise stored before code was recorded
        store.add_run(True, loss, arm, 0, {"status": "complete", "metrics": {"val_loss": loss}, "epochs": [],
                                           "git_commit": "0123abcd"}, {}, None)
    (folder / "utils.py").write_text(UTILS_EDITED)
    fresh_process()
    assert run_plan(folder / "sweep.toml", results=results, seeds=2, jobs=1) == 0
    assert [("code_hash" in t.user_attrs) for t in stored(results)] == [False, False, True, True]


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_command_in_a_git_repository_records_commit_and_uncommitted_diff(tmp_path, fresh_process):
    folder, results = tmp_path / "svm", tmp_path / "results"
    (folder / "scripts").mkdir(parents=True)
    (folder / "train_svm.py").write_text(
        "import argparse, json\nfrom features import scale\np = argparse.ArgumentParser()\n"
        "p.add_argument('--c', type=float)\np.add_argument('--seed', type=int)\na = p.parse_args()\n"
        "print(json.dumps({'val_error': scale(a.c) + a.seed % 3}))\n")
    (folder / "features.py").write_text("def scale(c):\n    return 10.0 * c\n")
    (folder / "scripts" / "fetch_data.sh").write_text("#!/bin/sh\necho fetched\n")
    (folder / "sweep.toml").write_text(
        'command = "python train_svm.py --c {c} --seed {seed}"\nname = "svm-c"\nseeds = 2\n[base]\nc = 1.0\n'
        '[arms.baseline]\n[arms.small_c]\nc = 0.1\n[analysis]\nmetric = "val_error"\ndirection = "minimize"\n'
        'baseline = "baseline"\nmargin = 0.5\n')
    git = ["git", "-c", "user.name=Ada", "-c", "user.email=ada@lab.example"]
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "svm sweep"]):
        subprocess.run([*git, *args], cwd=folder, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True).stdout.strip()
    assert run_plan(folder / "sweep.toml", results=results, jobs=1) == 0
    clean = stored(results, "svm-c")[0].user_attrs
    assert clean["user_git_commit"] == head and clean["user_git_diff_hash"] is None
    assert set(clean["code_files"]) == {"train_svm.py", "features.py"} and "packages" not in clean

    (folder / "features.py").write_text("def scale(c):\n    return 20.0 * c\n")
    with pytest.raises(CodeChangedError, match=r"\(features\.py changed\)"):
        run_plan(folder / "sweep.toml", results=results, seeds=3, jobs=1)
    assert run_plan(folder / "sweep.toml", results=results, seeds=3, jobs=1, accept_code_change=True) == 0
    dirty = stored(results, "svm-c")[-1].user_attrs
    assert dirty["user_git_commit"] == head and len(dirty["user_git_diff_hash"]) == 12
    table, _ = provenance_table(load_study(results / "svm-c"), ["baseline", "small_c"])
    git_row = table.set_index("item")["value"]["experiment's git commit"]
    assert f"{head[:12]} (clean) (4 runs)" in git_row and "+ uncommitted changes (diff " in git_row


def test_the_files_that_count_as_the_experiments_code(tmp_path, fresh_process):
    """A command's files: those it names and the folder's .py files, never an environment or a cache."""
    for path in ("train.py", "lib/augment.py", "run.sh", "notes.txt", ".venv/lib/site-packages/numpy/core.py",
                 "env/pyvenv.cfg", "env/lib/helper.py", "__pycache__/train.cpython-311.py"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x = 1\n")
    found = command_files("sh run.sh python train.py --lr {lr}", str(tmp_path))
    assert [p[len(str(tmp_path)) + 1:] for p in found] == ["lib/augment.py", "run.sh", "train.py"]
    before = run_code(str(tmp_path), "sh run.sh")
    (tmp_path / "lib" / "augment.py").write_text("x = 2  # flips now\n")
    after = run_code(str(tmp_path), "sh run.sh")
    assert before["code_hash"] != after["code_hash"]
    assert {k for k in before["code_files"] if before["code_files"][k] != after["code_files"][k]} == {"lib/augment.py"}
    assert json.dumps(after)  # stored as an Optuna user attribute: JSON as it is


def test_a_timed_run_records_the_helpers_its_forked_child_imported(tmp_path, fresh_process):
    """With --timeout a function runs in a forked child: the lazily imported metrics.py is
    loaded there, not in the worker, and must still be part of the run's code."""
    folder, results = mlp_folder(tmp_path), tmp_path / "results"
    assert run_plan(folder / "sweep.toml", results=results, jobs=1, timeout=60) == 0
    files = [t.user_attrs["code_files"] for t in stored(results)]
    assert all(set(f) == {"train_mlp.py", "utils.py", "metrics.py"} for f in files)
