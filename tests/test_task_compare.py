"""`seedwise compare` on a tidy CSV with a `task` column: per-task verdicts with Holm over arms
x tasks, then the across-task block, in text and --json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.compare import main


def tidy_csv(path, effects: dict[str, list[float]], *, seeds: int = 10, seed: int = 0) -> None:
    """An export from another tracker: task, arm, seed, test_acc, status; skewed noise, seeds
    shared within a task, one diverged run (no value)."""
    gen = np.random.default_rng(seed)
    rows = []
    for t in range(len(next(iter(effects.values())))):
        shared = gen.normal(0, 1.0, seeds)
        for arm, eff in effects.items():
            acc = 70 + 5 * t + eff[t] + shared - gen.gamma(1.5, 0.8, seeds)
            rows += [{"task": f"d{t}", "arm": arm, "seed": s, "test_acc": float(v),
                      "status": "complete"} for s, v in enumerate(acc)]
    df = pd.DataFrame(rows)
    df.loc[(df["arm"] == "baseline") & (df["task"] == "d0") & (df["seed"] == 0),
           ["test_acc", "status"]] = [np.nan, "diverged"]
    df.to_csv(path, index=False)


def run(capsys, *args):
    assert main([*map(str, args)]) == 0
    return capsys.readouterr()


def test_effect_on_some_tasks_found_per_task_and_heterogeneous(tmp_path, capsys):
    csv = tmp_path / "export.csv"
    tidy_csv(csv, {"baseline": [0] * 5, "wide": [4, 4, 4, 0, 0]}, seed=1)
    out = run(capsys, csv, "--metric", "test_acc", "--chance", "10").out
    assert "Holm over the 5 primary-test p-values of all arms x tasks" in out
    blocks = {b.split(":")[0].strip(): b for b in out.split("== task ")[1:]}
    for task in ("d0", "d1", "d2"):
        assert "verdict: BETTER" in blocks[task]
    for task in ("d3", "d4"):
        assert "verdict: BETTER" not in blocks[task].split("== Across")[0]
    assert "varies by task" in out
    records = [json.loads(line) for line in
               run(capsys, csv, "--metric", "test_acc", "--chance", "10", "--json").out.splitlines()]
    per_task = [r for r in records if "task" in r and not r.get("across_tasks")]
    assert {r["task"] for r in per_task} == {f"d{t}" for t in range(5)}
    assert all(r["family_judged"] == 1 for r in per_task)  # each task's own family ...
    assert all("all arms x tasks" in r["correction"] for r in per_task)  # ... Holm over all
    across = next(r for r in records if r.get("across_tasks") and r["arm"] == "wide")
    assert across["i2"] > 0.5 and across["prediction"][0] < 0 < across["prediction"][1]
    assert across["failures"] == 1


def test_effect_on_every_task_generalises(tmp_path, capsys):
    csv = tmp_path / "export.csv"
    tidy_csv(csv, {"baseline": [0] * 5, "wide": [3] * 5, "deep": [0] * 5}, seed=2)
    out = run(capsys, csv, "--metric", "test_acc")
    assert "across tasks: better across tasks, and expected better on a new task" in out.out
    assert "Ranking over 5 tasks: Friedman" in out.out
    assert "relative improvement over the mean of 'baseline'" in out.out


def test_one_task_column_value_is_an_ordinary_study(tmp_path, capsys):
    csv = tmp_path / "export.csv"
    tidy_csv(csv, {"baseline": [0], "wide": [3]}, seed=3)
    out = run(capsys, csv, "--metric", "test_acc").out
    assert "Across" not in out and "verdict: BETTER" in out


def test_a_task_that_cannot_be_compared_is_named(tmp_path, capsys):
    csv = tmp_path / "export.csv"
    tidy_csv(csv, {"baseline": [0] * 2, "wide": [3] * 2}, seed=4)
    df = pd.read_csv(csv)
    df = df[~((df["task"] == "d1") & (df["arm"] == "baseline"))]
    df.to_csv(csv, index=False)
    assert main([str(csv), "--metric", "test_acc"]) == 2
    assert "task 'd1'" in capsys.readouterr().err


def test_report_section_only_with_tasks(tmp_path):
    from analysis.load import load_study
    from analysis.report.blocks import Heading, Report
    from analysis.report.tasks import across_tasks_section, note_line

    csv = tmp_path / "export.csv"
    tidy_csv(csv, {"baseline": [0] * 4, "wide": [3] * 4, "deep": [1, 1, 0, 0]}, seed=5)
    rep = Report(study="export", title="t")
    ts = across_tasks_section(rep, load_study(csv))
    assert any(isinstance(b, Heading) and b.text == "Across tasks" for b in rep.blocks)
    table, _ = rep.tables["across_tasks"]
    assert list(table["arm"]) == ["baseline", "wide", "deep"]
    for name in ("performance_profile", "critical_difference"):
        rep.figures[name][0].savefig(tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
    assert note_line(ts).startswith("Across 4 tasks: wide: better")
    plain = tmp_path / "plain.csv"
    pd.read_csv(csv).query("task == 'd0'").drop(columns="task").to_csv(plain, index=False)
    rep = Report(study="plain", title="t")
    assert across_tasks_section(rep, load_study(plain)) is None and not rep.blocks


def test_report_of_a_task_csv_has_per_task_verdicts_then_across_tasks(tmp_path):
    """`python -m analysis.report` on a tidy CSV with tasks: the per-task verdict table (Holm over
    arms x tasks) and the across-task section, never the single-task analysis (which would
    see each (arm, seed) once per task) nor a traceback; the note summarises across tasks."""
    from analysis.load import load_study
    from analysis.report import build_report
    from analysis.report import main as report_main

    csv = tmp_path / "wandb_export.csv"
    tidy_csv(csv, {"baseline": [0] * 4, "wide": [3] * 4, "deep": [1, 1, 0, 0]}, seed=5)
    assert report_main([str(csv), "--out", str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "report.md").read_text()
    assert text.index("## Per-task verdicts") < text.index("## Across tasks")
    per_task, _ = build_report(load_study(csv)).tables["per_task"]
    assert len(per_task) == 8 and set(per_task["task"]) == {"d0", "d1", "d2", "d3"}
    assert set(per_task.loc[per_task["arm"] == "wide", "verdict"]) == {"better"}
    assert "Across 4 tasks: wide: better" in build_report(load_study(csv)).note


def late_arm_csv(path) -> None:
    """Three tasks; `deep` was added later and ran seeds 0-5 only, and on `d2` a single run."""
    tidy_csv(path, {"baseline": [0] * 3, "wide": [3] * 3, "deep": [1] * 3}, seed=5)
    df = pd.read_csv(path)
    late = (df["arm"] == "deep") & ((df["seed"] >= 6) | ((df["task"] == "d2") & (df["seed"] >= 1)))
    df[~late].to_csv(path, index=False)


def test_notes_are_data_and_name_the_tasks_that_raised_them(tmp_path, capsys):
    """Each task's notes are kept as `Note`s with their fields; the CLI says which tasks raised
    a note, and a comparison not judged is said once, in its task's block, not again as a
    warning."""
    from analysis.load import load_study
    from analysis.tasks.compare import compare_tasks

    csv = tmp_path / "wandb_export.csv"
    late_arm_csv(csv)
    ts = compare_tasks(load_study(csv), metric="test_acc", chance=10)
    pairing = [n for n in ts.notes["d0"] if n.kind == "pairing"]
    assert [(n.arms, n.seeds, n.dropped, n.missing) for n in pairing] == [
        (("deep", "baseline"), (0, 1, 2, 3, 4, 5), (6, 7, 8, 9), ("deep",))]
    assert [n.arms for n in ts.notes["d2"] if n.kind == "pairing"] == []
    assert [n.kind for n in ts.notes["d2"]].count("not_judged") == 1
    out = run(capsys, csv, "--metric", "test_acc", "--chance", "10")
    warned = [line for line in out.err.splitlines() if line.startswith("warning: ")]
    assert any(line.startswith("warning: tasks d0, d1: deep vs baseline: paired on seeds")
               for line in warned), warned
    assert not any("not judged" in line for line in warned)
    assert "deep - baseline: not judged" in out.out


def test_report_notes_name_their_tasks(tmp_path):
    from analysis.load import load_study
    from analysis.report import build_report

    csv = tmp_path / "wandb_export.csv"
    late_arm_csv(csv)
    rep = build_report(load_study(csv), plan={"metric": "test_acc", "chance": 10})
    text = " ".join(getattr(b, "text", "") for b in rep.blocks)
    assert "Note: tasks d0, d1: deep vs baseline: paired on seeds" in text


@pytest.mark.slow
def test_sklearn_example_end_to_end(tmp_path):
    """examples/tasks/sklearn_tasks.py writes a tidy CSV that `python -m analysis.compare` reads:
    per-task blocks and the across-task block, exit 0, no traceback."""
    pytest.importorskip("sklearn")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    csv = tmp_path / "tasks.csv"
    made = subprocess.run([sys.executable, str(root / "examples/tasks/sklearn_tasks.py"),
                           "--out", str(csv), "--seeds", "2"], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=600)
    assert made.returncode == 0, made.stderr
    assert len(pd.read_csv(csv)) == 4 * 3 * 2
    out = subprocess.run([sys.executable, "-m", "analysis.compare", str(csv), "--metric",
                          "test_acc", "--baseline", "logreg"], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    for task in ("iris", "wine", "breast_cancer", "digits"):
        assert f"== task {task}" in out.stdout
    assert "== Across 4 tasks" in out.stdout
    for arm in ("forest", "mlp"):
        assert f"{arm}: mean" in out.stdout
    assert out.stdout.count("across tasks:") == 2  # one verdict per arm vs the baseline
