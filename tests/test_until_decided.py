"""`python -m study.run --until-decided`: seeds only where the answer is open, the pre-registered
plan stored before the first run, and the same decisions however the study was interrupted or
split between workers (the decisions are a function of the stored runs alone)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]

EXPERIMENT = '''
import os
import random
import signal


def train(config, seed):
    shared = random.Random(seed).gauss(0, 2.0)  # the seed's luck, common to every arm: paired
    own = random.Random(f"{seed}-{config['variant']}").gauss(0, 0.7)
    if os.environ.get("KILL_AT") == f"{config['variant']}:{seed}" and not os.path.exists("killed"):
        open("killed", "w").close()
        os.kill(os.getpid(), signal.SIGKILL)  # the runner dies in the middle of a look
    return {"acc": 70.0 + shared + own + config["effect"]}
'''

SPEC = '''
experiment = "exp:train"
name = "seq"
seeds = 5
[base]
effect = 0.0
variant = 0
[arms.baseline]
[arms.big]
effect = 3.0
variant = 1
[arms.small]
effect = 1.5
variant = 2
[arms.same]
variant = 3
[analysis]
metric = "acc"
margin = 1.0
sequential = {look_every = 5, max_seeds = 20}
'''


@pytest.fixture
def study_dir(tmp_path):
    (tmp_path / "exp.py").write_text(textwrap.dedent(EXPERIMENT))
    (tmp_path / "spec.toml").write_text(textwrap.dedent(SPEC))
    return tmp_path


def run(folder: Path, results: Path, *extra: str, env: dict | None = None, wait: bool = True):
    cmd = [sys.executable, "-m", "study.run", "--spec", str(folder / "spec.toml"), "--results", str(results),
           "--jobs", "1", *extra]
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    if not wait:
        return subprocess.Popen(cmd, cwd=folder, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    return subprocess.run(cmd, cwd=folder, env=full_env, capture_output=True, text=True, timeout=300)


def decisions(results: Path) -> dict:
    record = json.loads((results / "seq" / "sequential.json").read_text())
    return {c["arm"]: (c["decision"], c["n"], round(c["p_adjusted"], 12), [k["n"] for k in c["looks"]])
            for c in record["comparisons"]}


def test_seeds_go_only_where_the_answer_is_open(study_dir):
    res = run(study_dir, study_dir / "r")
    assert res.returncode == 0, res.stderr[-3000:]
    got = decisions(study_dir / "r")
    assert got["big"][0] == "better" and got["small"][0] == "better"
    assert got["same"][0] == "equivalent"
    runs = pd.read_csv(study_dir / "r" / "seq" / "runs.csv")
    per_arm = runs.groupby("arm")["seed"].agg(["count", "max"])
    # a decided arm gets no more seeds; the baseline goes on while any comparison is open
    assert per_arm.loc["big", "count"] == got["big"][1]
    assert per_arm.loc["baseline", "count"] == max(v[1] for v in got.values())
    assert per_arm["count"].min() < per_arm["count"].max()  # not a fixed design in disguise
    record = json.loads((study_dir / "r" / "seq" / "sequential.json").read_text())
    assert record["plan"]["max_seeds"] == 20 and record["plan"]["look_every"] == 5
    assert "sequential: big vs baseline: better" in res.stderr
    # the end of every study.run prints the answer: analysis.compare's verdicts over all seeds
    assert "Verdicts (seedwise compare" in res.stdout and "verdict: BETTER" in res.stdout

    report = subprocess.run([sys.executable, "-m", "analysis.report", str(study_dir / "r" / "seq"), "--out",
                             str(study_dir / "report"), "--no-note"], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    text = (study_dir / "report" / "report.md").read_text()
    assert "Seeds until decided" in text and "| big vs baseline | 5 |" in text
    assert (study_dir / "report" / "figures" / "sequential.png").exists()

    again = run(study_dir, study_dir / "r")  # a rerun of a decided study trains nothing
    assert again.returncode == 0 and "acc" not in again.stderr.split("sequential:")[0].split("seed")[-1]
    assert len(pd.read_csv(study_dir / "r" / "seq" / "runs.csv")) == len(runs)


def test_killed_and_resumed_study_makes_the_same_decisions(study_dir):
    reference = run(study_dir, study_dir / "ref")
    assert reference.returncode == 0, reference.stderr[-3000:]
    killed = run(study_dir, study_dir / "k", env={"KILL_AT": "2:7"})  # `small`, seed 7: inside look 2
    assert killed.returncode == -9
    assert (study_dir / "killed").exists()
    resumed = run(study_dir, study_dir / "k")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert decisions(study_dir / "k") == decisions(study_dir / "ref")
    cols = ["arm", "seed", "acc"]
    a = pd.read_csv(study_dir / "k" / "seq" / "runs.csv")[cols].sort_values(cols[:2]).reset_index(drop=True)
    b = pd.read_csv(study_dir / "ref" / "seq" / "runs.csv")[cols].sort_values(cols[:2]).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


def test_two_workers_make_the_decisions_of_one(study_dir):
    reference = run(study_dir, study_dir / "ref")
    assert reference.returncode == 0, reference.stderr[-3000:]
    storage = f"sqlite:///{study_dir / 'shared.db'}"
    first = run(study_dir, study_dir / "w", "--storage", storage, wait=False)
    second = run(study_dir, study_dir / "w", "--storage", storage, wait=False)
    for p in (first, second):
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    assert decisions(study_dir / "w") == decisions(study_dir / "ref")
    runs = pd.read_csv(study_dir / "w" / "seq" / "runs.csv")
    assert not runs.duplicated(["arm", "seed"]).any()


def test_a_changed_plan_is_a_reported_deviation(study_dir):
    assert run(study_dir, study_dir / "r").returncode == 0
    kept = run(study_dir, study_dir / "r", "--max-seeds", "30")
    assert kept.returncode == 0
    assert "deviation from the pre-registered plan: max_seeds" in kept.stderr
    assert json.loads((study_dir / "r" / "seq" / "sequential.json").read_text())["plan"]["max_seeds"] == 20
    adopted = run(study_dir, study_dir / "r", "--max-seeds", "30", "--replan")
    assert adopted.returncode == 0
    record = json.loads((study_dir / "r" / "seq" / "sequential.json").read_text())
    assert record["plan"]["max_seeds"] == 30 and any("max_seeds" in d for d in record["deviations"])


def test_until_decided_needs_the_baseline(study_dir):
    res = run(study_dir, study_dir / "r", "--arms", "big,small")
    assert res.returncode == 2
    assert "baseline" in res.stderr.strip().splitlines()[-1]
