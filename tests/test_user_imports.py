"""A researcher's folder whose files have seedwise's names (issue 22): `analysis.py`, a `study/`
package. Their experiment runs in every worker; where their code needs its own `analysis`, one
line before anything is stored says what to rename. What seedwise prints to run next is a
`seedwise ...` command, `--help` imports nothing heavy, and a numpy experiment never imports torch.

Every command starts with `python -P` (Python does not put the working directory on the path)
from the user's folder, as the `seedwise` console script runs there."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
    [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
HEAVY = ("torch", "scipy", "pandas", "optuna", "numpy", "sqlalchemy", "statsmodels", "matplotlib")

# The experiment reports, with its metrics, whether torch is loaded in the process running it
# (a joblib worker), and imports a sibling helper and a module of its own package.
TRAIN = '''
import sys

import numpy as np

from features.scaling import standardize
from metrics import accuracy


def train(config, seed):
    rng = np.random.default_rng(seed)
    x = standardize(rng.normal(size=(200, 4)))
    w = rng.normal(size=4) * (1.0 - config["dropout"])
    acc = accuracy(x @ w > 0, x[:, 0] > 0)
    return {"val_acc": acc, "test_acc": acc, "torch_loaded": float("torch" in sys.modules)}
'''
SPEC = '''experiment = "train_resnet:train"
name = "resnet-dropout"
seeds = 2
[base]
dropout = 0.1
[arms.baseline]
[arms.no_dropout]
dropout = 0.0
[analysis]
metric = "test_acc"
direction = "maximize"
[tune]
metric = "val_acc"
dropout = {low = 0.0, high = 0.5}
'''


def seedwise(folder: Path, *args, report_modules: bool = False, timeout=240) -> subprocess.CompletedProcess:
    """`seedwise ARGS` run from `folder`; with `report_modules`, the last stdout line is the
    heavy modules the command's own process had imported when it ended."""
    code = ("import json, sys\nfrom study.cli import main\ntry:\n    code = main(sys.argv[1:])\n"
            "except SystemExit as e:  # argparse, after --help\n    code = e.code\n"
            + (f"print(json.dumps(sorted(set({HEAVY!r}) & set(sys.modules))))\n" if report_modules else "")
            + "sys.exit(code)")
    return subprocess.run([sys.executable, "-P", "-c", code, *map(str, args)], cwd=folder, env=ENV,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def research_folder(tmp_path) -> Path:
    """A folder as research code has it: its own analysis.py and study/ package beside the
    training module, a helper module and a package of its own."""
    (tmp_path / "train_resnet.py").write_text(TRAIN)
    (tmp_path / "metrics.py").write_text("def accuracy(pred, truth):\n    return float((pred == truth).mean() * 100)\n")
    (tmp_path / "features").mkdir()
    (tmp_path / "features" / "__init__.py").write_text("")
    (tmp_path / "features" / "scaling.py").write_text("def standardize(x):\n    return (x - x.mean(0)) / x.std(0)\n")
    (tmp_path / "analysis.py").write_text("def plot_curves(runs):\n    raise NotImplementedError\n")
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "__init__.py").write_text("RESULTS = 'my notes'\n")
    (tmp_path / "sweep.toml").write_text(SPEC)
    return tmp_path


def test_own_analysis_and_study_do_not_shadow_seedwise_in_workers(research_folder):
    res = seedwise(research_folder, "run", "--spec", "sweep.toml", "--results", "results", "--jobs", 2,
                   report_modules=True)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "BrokenProcessPool" not in res.stderr and "Traceback" not in res.stderr
    runs = pd.read_csv(research_folder / "results" / "resnet-dropout" / "runs.csv")
    assert len(runs) == 4 and set(runs["status"]) == {"complete"}
    assert (runs["torch_loaded"] == 0).all()  # no worker imported torch for a numpy experiment
    assert "torch" not in json.loads(res.stdout.splitlines()[-1])  # nor did the parent
    # the follow-up commands are seedwise's, with no built-in-CIFAR option
    printed = res.stdout + res.stderr
    assert "report: seedwise report results/resnet-dropout" in printed and "seedwise compare" in printed
    assert "dashboard: seedwise dashboard results/resnet-dropout" in printed
    assert "python -m" not in printed and "--data-root" not in printed


def test_package_reference_and_tuning_with_confirmation(research_folder):
    spec = research_folder / "sweep.toml"
    spec.write_text(SPEC.replace('"train_resnet:train"', '"features.model:train"'))
    (research_folder / "features" / "model.py").write_text(TRAIN.replace("from features.scaling", "from .scaling"))
    res = seedwise(research_folder, "tune", "--spec", "sweep.toml", "--results", "results", "--trials", 2,
                   "--confirm", 2)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "confirming the best trial" in res.stderr or "confirming" in res.stderr
    confirming = next(line for line in res.stderr.splitlines() if line.startswith("confirming"))
    assert ": seedwise run --spec " in confirming and "--data-root" not in confirming and "python -m" not in confirming
    runs = pd.read_csv(research_folder / "results" / "resnet-dropout-tuned" / "runs.csv")
    assert set(runs["status"]) == {"complete"} and len(runs) == 4


@pytest.mark.parametrize(("importer", "line"), [
    ("train_resnet.py", "from analysis import plot_curves\n"),  # the experiment module itself
    ("metrics.py", "import analysis\n"),  # a sibling it imports
])
def test_code_that_needs_its_own_analysis_stops_before_anything_is_stored(research_folder, importer, line):
    path = research_folder / importer
    path.write_text(line + path.read_text())
    res = seedwise(research_folder, "run", "--spec", "sweep.toml", "--results", "results")
    assert res.returncode == 2, res.stderr[-3000:]
    error = res.stderr.strip()
    assert len(error.splitlines()) == 1 and "Traceback" not in error
    assert f"{importer} imports 'analysis', meaning your analysis.py" in error
    assert "seedwise's analysis package: rename analysis.py" in error
    assert not (research_folder / "results").exists()  # no study.json, no study.db


def test_experiment_module_named_like_a_seedwise_package_is_refused(research_folder):
    (research_folder / "study" / "train.py").write_text(TRAIN)
    (research_folder / "sweep.toml").write_text(SPEC.replace('"train_resnet:train"', '"study.train:train"'))
    res = seedwise(research_folder, "tune", "--spec", "sweep.toml", "--results", "results", "--trials", 1)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert "'study' is your study/, but that name is seedwise's study package: rename study/" in res.stderr
    assert not (research_folder / "results").exists()


def test_a_command_experiment_keeps_its_own_analysis_module(tmp_path):
    """A command is its own process, started in the spec's folder: its `import analysis` is the
    folder's analysis.py, as when the researcher runs it by hand."""
    (tmp_path / "analysis.py").write_text("def summarize(x):\n    return {'val_loss': x}\n")
    (tmp_path / "train.py").write_text("import json, sys\nfrom analysis import summarize\n"
                                       "print(json.dumps(summarize(1.0 / (1 + int(sys.argv[1])))))\n")
    (tmp_path / "sweep.toml").write_text('command = "python train.py {seed}"\nname = "cmd"\nseeds = 2\n'
                                         '[base]\nlr = 0.1\n[arms.baseline]\n[arms.high_lr]\nlr = 0.3\n'
                                         '[analysis]\nmetric = "val_loss"\ndirection = "minimize"\n')
    res = seedwise(tmp_path, "run", "--spec", "sweep.toml", "--results", "results", "--jobs", 2)
    assert res.returncode == 0, res.stderr[-3000:]
    runs = pd.read_csv(tmp_path / "results" / "cmd" / "runs.csv")
    assert set(runs["status"]) == {"complete"} and sorted(runs["val_loss"]) == [0.5, 0.5, 1.0, 1.0]


@pytest.mark.parametrize("command", [[], ["run"], ["tune"], ["variance"], ["compare"], ["report"], ["dashboard"]])
def test_help_imports_nothing_heavy(tmp_path, command):
    res = seedwise(tmp_path, *command, "--help", report_modules=True)
    assert res.returncode == 0, res.stderr
    if not command:  # the first line names every subcommand
        assert res.stdout.startswith("`seedwise run | tune | variance | compare | report | dashboard`")
    else:
        assert res.stdout.startswith("usage: ")
    assert json.loads(res.stdout.splitlines()[-1]) == []
