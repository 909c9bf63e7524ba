"""What the runner prints about a study: the plan of a dry run with an ETA, and the answer at
the end of a run (per-arm means, then the verdicts of `analysis.compare`, from the analysis API
and rendered by the same `verdict_lines` as the CLI)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from statistics import median
from typing import TYPE_CHECKING

from analysis.contract import DB_FILE, default_storage, redact
from study.dispatch import export
from study.plan import Plan
from study.store import RunStore
from study.summary import render, summarize

if TYPE_CHECKING:
    from analysis.stats.family import Family
    from analysis.types import Note


def finish(plan: Plan, store: RunStore) -> int:
    """The study's answer: per-arm means and the verdicts of `analysis.compare` (tests, Holm,
    equivalence, seeds needed) over every completed seed of the study, not only this command's."""
    runs, epochs = store.tables()
    exported = export(store, (runs, epochs))
    analysis = plan.spec.analysis
    arms = [a for a in plan.spec.arm_names if a in plan.arms or a == analysis.baseline]
    answer = study_answer(plan.results_dir) if exported else None
    # The differences from the baseline are the verdicts' own (one interval on screen).
    family = answer[1] if isinstance(answer, tuple) else None
    table = summarize(runs, arms, analysis.baseline, analysis.metric, family=family)
    print(render(table, analysis.baseline, analysis.metric, analysis.direction_of(), percent=plan.experiment is None))
    if answer is not None:
        print_verdicts(plan.results_dir, answer)
    print(f"\nresults: {plan.results_dir}/ (runs.csv, epochs.csv, {DB_FILE})  "
          f"report: seedwise report {plan.results_dir}  "
          f"dashboard: {dashboard_command(plan.results_dir, store.url)}", file=sys.stderr)
    return 0 if exported else 1


def dashboard_command(results_dir: Path, url: str) -> str:
    """`seedwise dashboard` on the study's folder (whose study.json or study.db names its
    storage), or on the storage URL given with --storage (password redacted)."""
    return f"seedwise dashboard {results_dir if url == default_storage(results_dir) else redact(url)}"


def study_answer(results_dir: Path) -> tuple[str, Family, list[Note]] | str:
    """The exported study's verdicts from the analysis API: (its name, the family, the notes
    raised), or why there are none yet (one seed, one arm, an unreadable table)."""
    from analysis.compare import study_family
    from analysis.load import StudyNotFound, load_study

    try:
        study = load_study(results_dir)
        family, notes = study_family(study)
    except (StudyNotFound, ValueError, KeyError, OSError) as e:
        return " ".join(str(e).split())
    return study.name, family, notes


def print_verdicts(results_dir: Path, answer: tuple[str, Family, list[Note]] | str | None = None) -> None:
    """The verdicts of `seedwise compare` on the exported study (`answer`: `study_answer`'s,
    computed here when not given); when it cannot decide yet, one line says why instead of an
    error that would read as a failed study. Its notes go to stderr, as the CLI's do."""
    from analysis.compare import verdict_lines, warning_lines
    from analysis.sequential.record import stopping_lines

    answer = study_answer(results_dir) if answer is None else answer
    print(f"\nVerdicts (seedwise compare {results_dir}, every completed seed of the study):")
    if isinstance(answer, str):
        print(f"  none yet: {answer}")
        return
    name, family, notes = answer
    for line in warning_lines(family, notes):
        print(line, file=sys.stderr)
    plan = family.plan
    print("\n".join([*stopping_lines(results_dir, plan.metric if plan else None, plan.baseline if plan else None),
                      *verdict_lines(name, family)]))


def seconds_per_run(store: RunStore | None) -> tuple[dict[str, list[float]], set[str]]:
    """Each arm's finished runs' wall times (a group's runs share its wall time), and the
    devices they ran on (another machine's times are shown as such)."""
    history: dict[str, list[float]] = {}
    devices: set[str] = set()
    for t in store.trials() if store is not None else ():
        if t.user_attrs.get("wall_time_s") is not None:
            per_run = t.user_attrs["wall_time_s"] / max(1, len(t.user_attrs.get("group") or ()))
            history.setdefault(t.user_attrs["arm"], []).append(per_run)
            devices.add(str(t.user_attrs.get("device") or "an unrecorded device"))
    return history, devices


def duration(seconds: float) -> str:
    """A time left as a person reads it: '40 s', '8 min', '1.5 h'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


class RunClock:
    """'12/25 done, ~8 min left' for the log line of each finished run, measured from this
    command's own runs on this machine, workers in parallel included (tqdm shows its own ETA
    on a terminal)."""

    def __init__(self, total: int):
        self.total, self.finished, self.started = total, 0, time.monotonic()

    def tick(self) -> str:
        self.finished += 1
        left = self.total - self.finished
        if left <= 0:
            return f"{self.finished}/{self.total} done"
        per_run = (time.monotonic() - self.started) / self.finished
        return f"{self.finished}/{self.total} done, ~{duration(per_run * left)} left"


def print_plan(plan: Plan, todo: list[tuple[str, int]], jobs: int, threads: int, device: str,
               store: RunStore | None, url: str) -> None:
    """--dry-run: arms x seeds, what is done, and an ETA measured from this study's finished
    runs (their stored wall times, on the machine that ran them); unknown before any."""
    history, devices = seconds_per_run(store)
    what = f"preset {plan.preset}" if plan.experiment is None else f"experiment {plan.experiment.label}"
    print(f"study {plan.study_name} ({what}, spec {plan.spec.source})")
    print(f"storage {redact(url)}; {len(plan.arms)} arms x {len(plan.seeds)} seeds "
          f"(seeds {plan.seeds[0]}..{plan.seeds[-1]}) = {len(plan.arms) * len(plan.seeds)} runs, "
          f"{len(plan.arms) * len(plan.seeds) - len(todo)} done, {len(todo)} to do")
    every_run = [s for times in history.values() for s in times]
    total = 0.0
    print(f"{'arm':<16}{'done':>5}{'todo':>5}  {'s/run':>10}  overrides")
    for arm in plan.arms:
        n_todo = sum(1 for a, _ in todo if a == arm)
        # an arm with no finished run yet is taken at the median of the study's other arms
        per_run = median(history.get(arm) or every_run) if every_run else None
        total += (per_run or 0.0) * n_todo
        overrides = dict(plan.spec.arm(arm).overrides)
        shown = "?" if per_run is None else f"{per_run:.3g}" + ("" if history.get(arm) else "*")
        print(f"{arm:<16}{len(plan.seeds) - n_todo:>5}{n_todo:>5}  {shown:>10}  {overrides or '(base)'}")
    workers = f"{jobs} worker(s) x {threads} thread(s) on {device}"
    if not every_run:
        print(f"ETA unknown until the first runs of this study finish ({workers}); each run's log line "
              "then shows the time left, measured on this machine")
        return
    eta = total / max(1, min(jobs, len(todo) or 1))
    others = ", * = the other arms' median" if any(a not in history for a in plan.arms) else ""
    print(f"ETA ~{duration(eta)} with {workers} (median wall time of this study's {len(every_run)} finished "
          f"run(s), measured on {'; '.join(sorted(devices))}{others})")
