"""Several tasks in one study: `[tasks.NAME]` tables of a spec, each run as a study of its own.

A spec with two or more `[tasks.NAME]` tables (study.spec) is one study of arms x tasks x seeds:

    results/<study>/tasks/<task>/   each task's study, made and resumed by the single-task runner
                                    (its own study.db, runs.csv, claims, --until-decided looks)
    results/<study>/runs.csv        every task's runs with a `task` column (epochs.csv likewise)
    results/<study>/study.json      the study of all tasks: its arms, analysis plan and tasks

A run is (task, arm, seed); seeds pair within a task. The task's overrides are a layer of their
own: defaults -> [base] -> preset -> task -> --set -> arm. `seedwise compare` and `seedwise report`
read the study's folder like any runs table with a `task` column (analysis.tasks.compare): per-task
verdicts, Holm over arms x tasks, then the across-task block. `--until-decided` decides per task
(each task's study looks on its own; a decided task gets no more seeds), each task's plan spending
alpha / tasks (analysis.sequential.plan.task_share) so the error over arms x tasks stays <= alpha.
With --storage every task's study is in that one database, named `<study>/<task>` (storage_name).
Tuning is per task (`seedwise tune --task NAME`); tuning pooled over tasks is refused
(docs/experiments.md).
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analysis.contract import stable_hash
from study.spec import SpecError, StudySpec, load_spec

if TYPE_CHECKING:
    from study.options import RunOptions
    from study.plan import Plan
    from study.store import RunStore

TASKS_DIR = "tasks"  # <study>/tasks/<task>/: each task's own study
COMBINED = ("runs.csv", "epochs.csv")


def spec_with_tasks(spec: str | Path | StudySpec | None) -> StudySpec | None:
    """The spec, loaded, when it declares [tasks.NAME] and is not already one task's; else None."""
    if spec is None:
        return None  # the built-in default study has no tasks
    loaded = spec if isinstance(spec, StudySpec) else load_spec(spec)
    return loaded if loaded.tasks and loaded.task is None else None


def task_spec(spec: StudySpec, task: str) -> StudySpec:
    """The spec of one task's study: its runs take the task's overrides, and its analysis plan the
    task's declared chance level (the per-task comparisons score diverged runs at it)."""
    if task not in spec.tasks:
        from study.params import suggest

        raise SpecError(f"unknown task {task!r}{suggest(task, spec.tasks)}; tasks in {spec.source}: "
                        f"{', '.join(spec.tasks)}")
    chance = spec.tasks[task].chance
    analysis = spec.analysis if chance is None else replace(spec.analysis, chance=chance)
    return replace(spec, task=task, analysis=analysis)


def task_options(opts: RunOptions, spec: StudySpec, top: Path, task: str) -> RunOptions:
    """`opts` for one task's study: its spec, and its folder <study>/tasks/<task>/."""
    return replace(opts, spec=task_spec(spec, task), results=top / TASKS_DIR, study=task)


def study_folder(spec: StudySpec, opts: Any) -> Path:
    """RESULTS/<study>/ of the study of all tasks (--study, else the spec's name, preset and
    --set, as for one task), checked with the first task's plan: a bad option fails here."""
    from study.plan import plan_and_device

    plan, _ = plan_and_device(task_spec(spec, next(iter(spec.tasks))), opts.device, preset=opts.preset,
                              overrides=opts.set, study=opts.study, results=opts.results)
    return plan.results_dir


def run_tasks(spec: StudySpec, opts: RunOptions, *, raise_errors: bool = False) -> int:
    """Every task's study in turn (each resumable, with --jobs workers and, with --until-decided,
    its own looks), then the combined tables and the verdicts per task and across tasks."""
    from study.run import execute

    top = study_folder(spec, opts)
    code = 0
    for i, task in enumerate(spec.tasks, 1):
        print(f"task {task} ({i} of {len(spec.tasks)}): {top / TASKS_DIR / task}", file=sys.stderr)
        code = max(code, execute(task_options(opts, spec, top, task), raise_errors=raise_errors, summary=False))
        if code == 2:  # bad input: nothing more is trained
            return code
    if opts.dry_run:
        return code
    combine(spec, top)
    print_answer(top)
    return code


def storage_name(plan: Plan) -> str:
    """The Optuna study a plan's runs are stored in. A task's is `<study>/<task>`: with a shared
    --storage, two studies with the same task names (and the tasks of one study) never meet in
    one Optuna study. Its folder is RESULTS/<study>/tasks/<task>/ (task_options), hence the
    study's name two folders up."""
    if plan.spec.task is None:
        return plan.study_name
    return f"{plan.results_dir.parent.parent.name}/{plan.study_name}"


def exported_only(plan: Plan, store: RunStore) -> int:
    """A task's study at the end of its runs: runs.csv and epochs.csv written, no verdicts
    printed (they are the study of all tasks')."""
    from study.dispatch import export

    return 0 if export(store) else 1


def combine(spec: StudySpec, top: Path) -> None:
    """<study>/runs.csv and epochs.csv (every task's, with a `task` column first) and study.json,
    rewritten only when they change (a rerun with nothing to do leaves them byte for byte)."""
    import pandas as pd

    from study.store import write_if_changed

    for name in COMBINED:
        parts = []
        for task in spec.tasks:
            path = top / TASKS_DIR / task / name
            if path.exists() and path.stat().st_size > 0:
                try:
                    table = pd.read_csv(path)
                except pd.errors.EmptyDataError:  # an epochs.csv with no rows: a task of no epochs
                    continue
                parts.append(table.assign(task=task)[["task", *table.columns]])
        if parts:
            write_if_changed(top / name, pd.concat(parts, ignore_index=True).to_csv(index=False).encode())
    write_if_changed(top / "study.json", (json.dumps(description(spec, top), indent=2) + "\n").encode())


def description(spec: StudySpec, top: Path) -> dict[str, Any]:
    """study.json of the study of all tasks: the first task's, with what differs by task (the
    arms' resolved configs, the identity, the chance level) moved under "tasks"."""
    subs = {t: json.loads((top / TASKS_DIR / t / "study.json").read_text()) for t in spec.tasks}
    out = dict(next(iter(subs.values())))
    if len({d.get("storage") for d in subs.values()}) > 1:
        out.pop("storage", None)  # each task's study has its own (its folder's study.db)
    out.update(study=top.name, identity=stable_hash({t: d["identity"] for t, d in subs.items()}),
               analysis=spec.analysis.declared(),
               arms={a.name: {"description": a.description, "overrides": dict(a.overrides)} for a in spec.arms})
    out["tasks"] = {}
    for name, task in spec.tasks.items():
        declared = {k: v for k, v in (("chance", task.chance), ("reference", task.reference)) if v is not None}
        out["tasks"][name] = {"folder": f"{TASKS_DIR}/{name}", "description": task.description,
                              "overrides": dict(task.overrides), "analysis": declared,
                              "identity": subs[name]["identity"]}
    return out


def print_answer(top: Path) -> None:
    """The end of the run: `seedwise compare <study>`'s verdicts per task and across tasks."""
    from analysis.compare import parse_args
    from analysis.load import StudyNotFound, load_study
    from analysis.tasks.output import print_tasks

    try:
        print_tasks(load_study(top), parse_args([str(top)]))
    except (StudyNotFound, ValueError, KeyError, OSError) as e:
        print(f"no verdicts yet: {' '.join(str(e).split())}", file=sys.stderr)
    print_sequential(top)
    print(f"\nresults: {top}/ (runs.csv with a `task` column; each task's study in {top / TASKS_DIR}/<task>/)  "
          f"report: seedwise report {top}  dashboard: seedwise dashboard {top / TASKS_DIR}/<task>",
          file=sys.stderr)


def print_sequential(top: Path) -> None:
    """Each task run until decided: the alpha its plan spent (its share of the study's) and its
    decisions, then the bound on the familywise error over arms x tasks; nothing otherwise."""
    from analysis.report.sequential import task_records, tasks_alpha_lines

    try:
        meta = json.loads((top / "study.json").read_text())
    except (OSError, ValueError):
        return
    records = task_records(top, meta)
    lines = tasks_alpha_lines(records, len(meta.get("tasks") or {}))
    if lines:
        print("\nseeds until decided (each task's pre-registered plan):", file=sys.stderr)
    for line in lines:
        print(f"  {line}", file=sys.stderr)


def tuning_spec(args: Any) -> None:
    """`seedwise tune` on a spec with tasks: `--task NAME` tunes that task's study (in
    <study>/tasks/<task>/, where `seedwise run` puts it); without --task it is refused: the
    tasks' best settings differ, and tuning pooled over tasks is not supported."""
    from study.plan import UsageError

    task = getattr(args, "task", None)
    spec = spec_with_tasks(args.spec)
    if spec is None:
        if task is not None:
            raise UsageError(f"--task {task}: {args.spec or 'the default spec'} declares no [tasks.NAME]")
        return
    if task is None:
        raise UsageError(f"{spec.source} declares tasks ({', '.join(spec.tasks)}): tuning is per task, give "
                         "--task NAME (tuning pooled over tasks is not supported)")
    top = study_folder(spec, args)
    args.spec, args.results, args.study = task_spec(spec, task), top / TASKS_DIR, task
