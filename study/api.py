"""seedwise from Python (a notebook, a script): run a whole study and get its results back.

    from study import run_study
    result = run_study("examples/digits/spec.toml", seeds=5)
    result.runs            # one row per run (runs.csv), result.epochs the curves (epochs.csv)
    result.path            # results/<study>/: study.json, study.db, predictions

It is `python -m study.run` with the options as keywords: rerunning the same call resumes (only
runs not yet stored are trained), several processes may share the study, bad input raises.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.contract import read_table
from study.options import options
from study.plan import Plan
from study.run import execute, interruptible
from study.spec import StudySpec


@dataclass(frozen=True)
class StudyResult:
    study: str  # the study's name
    path: Path  # results/<study>/
    exit_code: int  # as the command line's: 0 done, 1 some run failed (recorded), 130 interrupted
    runs: pd.DataFrame = field(repr=False)
    epochs: pd.DataFrame = field(repr=False)


def run_study(spec: str | Path | StudySpec | None = None, seeds: int | None = None, **kwargs: Any) -> StudyResult:
    """Run every arm of `spec` (a spec file, a parsed StudySpec, or None for the built-in study)
    over `seeds` seeds (default: the spec's), then return its tables. Other keywords are the
    command line's options: arms, results, study, storage, set (a dict), preset, device, jobs,
    backend, scheduler, dry_run, ... (see `python -m study.run --help`)."""
    opts = options(spec, seeds=seeds, **kwargs)
    plans: list[Plan] = []
    code = interruptible(lambda: execute(opts, raise_errors=True, plans=plans), "runs")
    (plan,) = plans
    runs = plan.results_dir / "runs.csv"
    if not runs.exists():  # a dry run, or nothing stored yet
        return StudyResult(plan.study_name, plan.results_dir, code, pd.DataFrame(), pd.DataFrame())
    epochs = plan.results_dir / "epochs.csv"
    return StudyResult(plan.study_name, plan.results_dir, code, read_table(runs),
                       read_table(epochs) if epochs.exists() else pd.DataFrame())
