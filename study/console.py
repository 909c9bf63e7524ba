"""What the runner prints about a study: the plan of a dry run with an ETA, and the answer at
the end of a run (per-arm means, then the verdicts of `analysis.compare`)."""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

from analysis.contract import DB_FILE, default_storage, redact
from study.dispatch import export
from study.plan import Plan
from study.store import RunStore
from study.summary import render, summarize


def finish(plan: Plan, store: RunStore) -> int:
    """The study's answer: per-arm means and the verdicts of `analysis.compare` (tests, Holm,
    equivalence, seeds needed) over every completed seed of the study, not only this command's."""
    runs, epochs = store.tables()
    exported = export(store, (runs, epochs))
    analysis = plan.spec.analysis
    arms = [a for a in plan.spec.arm_names if a in plan.arms or a == analysis.baseline]
    table = summarize(runs, arms, analysis.baseline, analysis.metric)
    print(render(table, analysis.baseline, analysis.metric, analysis.direction, percent=plan.experiment is None))
    if exported:
        print_verdicts(plan.results_dir)
    print(f"\nresults: {plan.results_dir}/ (runs.csv, epochs.csv, {DB_FILE})  "
          f"report: seedwise report {plan.results_dir}  "
          f"dashboard: {dashboard_command(plan.results_dir, store.url)}", file=sys.stderr)
    return 0 if exported else 1


def dashboard_command(results_dir: Path, url: str) -> str:
    """`seedwise dashboard` on the study's folder (whose study.json or study.db names its
    storage), or on the storage URL given with --storage (password redacted)."""
    return f"seedwise dashboard {results_dir if url == default_storage(results_dir) else redact(url)}"


def print_verdicts(results_dir: Path) -> None:
    """`python -m analysis.compare` on the exported study; when it cannot decide yet (one seed,
    one arm), one line says why instead of an error that would read as a failed study."""
    from analysis.compare import main as compare_main

    print(f"\nVerdicts (seedwise compare {results_dir}, every completed seed of the study):")
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors):
        code = compare_main([str(results_dir)])
    lines = [line.removeprefix("error: ") for line in errors.getvalue().splitlines()]
    if code != 0:
        print(f"  none yet: {' '.join(lines)}")
    elif lines:
        print("\n".join(lines), file=sys.stderr)


def seconds_per_run(store: RunStore | None) -> dict[str, list[float]]:
    """Each arm's finished runs' wall times (a group's runs share its wall time)."""
    history: dict[str, list[float]] = {}
    for t in store.trials() if store is not None else ():
        if t.user_attrs.get("wall_time_s"):
            per_run = t.user_attrs["wall_time_s"] / max(1, len(t.user_attrs.get("group") or ()))
            history.setdefault(t.user_attrs["arm"], []).append(per_run)
    return history


def print_plan(plan: Plan, todo: list[tuple[str, int]], jobs: int, threads: int, device: str,
               store: RunStore | None, url: str) -> None:
    """--dry-run: arms x seeds, what is done, and an ETA (from finished runs, else from FLOPs)."""
    from study.notebook.runner import estimate_seconds

    history = seconds_per_run(store)
    what = f"preset {plan.preset}" if plan.experiment is None else f"experiment {plan.experiment.label}"
    print(f"study {plan.study_name} ({what}, spec {plan.spec.source})")
    print(f"storage {redact(url)}; {len(plan.arms)} arms x {len(plan.seeds)} seeds "
          f"(seeds {plan.seeds[0]}..{plan.seeds[-1]}) = {len(plan.arms) * len(plan.seeds)} runs, "
          f"{len(plan.arms) * len(plan.seeds) - len(todo)} done, {len(todo)} to do")
    total: float | None = 0.0
    basis: set[str] = set()
    print(f"{'arm':<16}{'done':>5}{'todo':>5}  {'est. s/run':>10}  overrides")
    for arm in plan.arms:
        n_todo = sum(1 for a, _ in todo if a == arm)
        per_run: float | None
        if history.get(arm):
            per_run = sorted(history[arm])[len(history[arm]) // 2]
            basis.add("median of finished runs")
        else:
            per_run = None if plan.experiment else estimate_seconds(plan.configs[arm], device, threads)
            basis.add("FLOPs at a rough device rate" if per_run is not None else "nothing yet")
        total = None if per_run is None or total is None else total + per_run * n_todo
        overrides = dict(plan.spec.arm(arm).overrides)
        shown = "?" if per_run is None else f"{per_run:.0f}"
        print(f"{arm:<16}{len(plan.seeds) - n_todo:>5}{n_todo:>5}  {shown:>10}  {overrides or '(base)'}")
    if total is None:
        print(f"ETA unknown until a run has finished ({jobs} worker(s) x {threads} thread(s) on {device})")
        return
    eta = total / max(1, min(jobs, len(todo) or 1))
    print(f"ETA ~{eta / 60:.1f} min with {jobs} worker(s) x {threads} thread(s) on {device} "
          f"(estimate from {' and '.join(sorted(basis))})")
