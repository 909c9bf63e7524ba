"""`python -m study.run`: every arm of a study over several seeds, resumable, with progress.

    python -m study.run --seeds 5                 # the default study, 5 seeds per arm
    python -m study.run --seeds 5 --dry-run       # the plan: arms x seeds, what is done, ETA
    python -m study.run --spec my.toml --seeds 10 --arms baseline,no_bn --set epochs=20

Exit status: 0 all planned runs done, 1 some run failed (recorded; rerun to retry),
2 bad input (nothing trained, nothing stored changed), 130 interrupted (rerun to continue).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from study.options import RunOptions, add_run_args, add_study_args, check_options, options

if TYPE_CHECKING:
    from analysis.sequential.plan import SequentialPlan
    from study.plan import Plan
    from study.spec import StudySpec
    from study.store import RunStore

# The runner's machinery (optuna, pandas, scipy through the summary; torch where the experiment
# uses it) is imported when a study runs, not to parse options: `--help` stays instant.
_LAZY = {"groups_of": "study.dispatch", "save_labels": "study.dispatch", "interruptible": "study.dispatch"}


def __getattr__(name: str):  # groups_of, save_labels, interruptible: imported from here elsewhere
    if name not in _LAZY:
        raise AttributeError(f"module 'study.run' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)


def bad_input() -> tuple[type[Exception], ...]:
    """The errors that mean bad input: exit 2, nothing trained."""
    from study.experiment import ExperimentError, InputError
    from study.plan import UsageError
    from study.spec import SpecError
    from study.store import StoreError

    return (SpecError, UsageError, InputError, StoreError, ExperimentError)


def parse_args(argv: list[str] | None) -> RunOptions:
    from analysis.invocation import usage_name

    p = argparse.ArgumentParser(prog=usage_name("study.run"), description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Exit status: 0 done, 1 a run failed, 2 bad input, 130 interrupted.")
    add_study_args(p)
    add_run_args(p)
    return RunOptions(**vars(p.parse_args(argv)))


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    from study.dispatch import interruptible

    return interruptible(lambda: execute(opts), "runs")


def run_plan(spec: str | Path | StudySpec | None = None, **values: Any) -> int:
    """The runner's Python API: `python -m study.run` with its options as keywords (see
    `study.options.RunOptions`). Returns the exit status; bad input raises (SpecError,
    UsageError, StoreError, ExperimentError, ...) instead of printing it and exiting 2."""
    from study.dispatch import interruptible

    opts = options(spec, **values)
    return interruptible(lambda: execute(opts, raise_errors=True), "runs")


def execute(opts: RunOptions, *, raise_errors: bool = False, plans: list[Plan] | None = None,
            summary: bool = True) -> int:
    """Plan, then train every run still to do; the exit status. `plans`, when given, gets the
    plan as soon as it is made (study.api reports the study's folder even after Ctrl-C).
    A spec with [tasks.NAME] runs each task as a study of its own (study.tasks), whose
    `summary` (the verdicts printed at the end) is left to the study of all tasks."""
    from analysis.contract import DB_FILE, default_storage, redact
    from study.console import finish, print_plan
    from study.dispatch import FailedFast, UserRunner, connect_backend, run_all
    from study.plan import plan_and_device
    from study.store import quiet_optuna
    from study.tasks import exported_only, run_tasks, spec_with_tasks

    quiet_optuna()
    # a task's study is exported only: its verdicts are printed with all tasks'
    end = finish if summary else exported_only
    try:
        if (several := spec_with_tasks(opts.spec)) is not None:
            return run_tasks(several, opts, raise_errors=raise_errors)
        check_options(opts)  # every option's value, then the spec's, before anything is stored
        plan, device = plan_and_device(opts.spec, opts.device, preset=opts.preset, overrides=opts.set,
                                       study=opts.study, results=opts.results, seeds=opts.seeds, arms=opts.arms)
        requested = requested_sequential(plan, opts)
        env = worker_environment(plan, opts)
        timeout = run_timeout(plan, opts.timeout)
        if plans is not None:
            plans.append(plan)
        check_layout(plan)
        url = opts.storage or default_storage(plan.results_dir)
        if opts.dry_run and opts.storage is None and not (plan.results_dir / DB_FILE).exists():
            store = None  # a dry run creates nothing
        else:
            store = open_store(plan, url, opts.storage)
        done = store.done() if store else set()
        todo = [(arm, seed) for seed in plan.seeds for arm in plan.arms if (arm, seed) not in done]
        jobs = opts.jobs or (1 if device.startswith("cuda") else max(1, min(os.cpu_count() or 1, len(todo))))
        threads = 1 if device.startswith("cuda") else max(1, (os.cpu_count() or 1) // jobs)
        if opts.dry_run:
            print_plan(plan, todo, jobs, threads, device, store, url)
            return 0
        assert store is not None
        code_attrs = checked_code(plan, store, bool(todo), opts)  # before anything is written
        write_description(plan, url, refresh=bool(todo))
        if not todo and requested is None:
            print(f"nothing to do: all {len(plan.arms) * len(plan.seeds)} runs of {plan.study_name} are done "
                  f"({plan.results_dir})", file=sys.stderr)
            return end(plan, store)
        cluster = connect_backend(opts.backend, opts.scheduler)  # before the data: a wrong address fails fast
        plan.experiment.prepare(env)  # e.g. the built-in one decodes CIFAR-10 once, for its workers' cache
        group = opts.group or plan.spec.default("group", device.startswith("cuda"))
        runner = UserRunner(plan, device, threads, timeout, group=group, env=env)
        runner.attrs.update(code_attrs)
    except bad_input() as e:
        if raise_errors:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"study {plan.study_name}: {len(todo)} runs to do ({len(done)} already done), "
          f"{jobs} worker(s) x {threads} thread(s) on {device}; {runner.what}; "
          f"storage: {redact(store.url)}", file=sys.stderr)
    with cluster:
        try:
            if requested is not None:
                try:
                    failed, plan = decide_look_by_look(plan, store, runner, jobs, opts, requested)
                except ValueError as e:
                    print(f"error: {e}", file=sys.stderr)
                    return 2
            else:
                failed = run_all(plan, store, todo, runner, jobs)
        except FailedFast as e:  # recorded and exported; the summary of no result would say nothing
            print(f"error: {e}", file=sys.stderr)
            return 1
    code = end(plan, store)
    if failed:
        print(f"{failed} run(s) failed (their tracebacks are in runs.csv 'error' and the Optuna trials); "
              "rerun the same command to retry them", file=sys.stderr)
        return 1
    return code


def requested_sequential(plan: Plan, opts: RunOptions) -> SequentialPlan | None:
    """--until-decided's plan as asked for (None without it), checked before anything is stored."""
    from study.plan import UsageError

    if not opts.until_decided and plan.spec.sequential is None:
        for name in ("look_every", "max_seeds"):
            if getattr(opts, name) is not None:
                raise UsageError(f"--{name.replace('_', '-')} applies only with --until-decided "
                                 "(or [analysis] sequential in the spec)")
        return None
    from study import until_decided as ud

    return ud.requested_plan(plan, len(plan.seeds), opts.look_every, opts.max_seeds)


def decide_look_by_look(plan: Plan, store: RunStore, runner, jobs: int, opts: RunOptions,
                        requested: SequentialPlan) -> tuple[int, Plan]:
    """--until-decided: the pre-registered sequential plan, then looks until decided. Returns
    the failed runs and the plan widened to every seed a look may have used (for the summary)."""
    from study import until_decided as ud
    from study.dispatch import export, run_all

    seq, deviations = ud.pre_register(store, requested, opts.replan)
    for d in deviations:
        print(f"warning: {'adopted' if opts.replan else 'ignored'} deviation from the pre-registered plan: {d}"
              + ("" if opts.replan else " (the stored plan is kept; --replan adopts the new one)"), file=sys.stderr)
    failed, result = ud.run_until_decided(plan, store, runner, jobs, seq, run_all, export)
    for c in result.comparisons:
        print(f"sequential: {c.arm} vs {c.baseline}: {c.decision} ({c.reason})", file=sys.stderr)
    for line in ud.alpha_lines(seq, requested):
        print(line, file=sys.stderr)
    first = plan.spec.first_seed
    return failed, replace(plan, seeds=tuple(range(first, first + seq.max_seeds)))


def worker_environment(plan: Plan, opts: RunOptions) -> dict[str, str]:
    """What the experiment's workers get in their environment: --data as $SEEDWISE_DATA,
    --data-root (when given) as $SEEDWISE_DATA_ROOT, --compile as $SEEDWISE_COMPILE=1."""
    from study.experiment import COMPILE_ENV, data_environment
    from study.options import DEFAULTS

    env = data_environment(opts.data, None if opts.data_root == DEFAULTS.data_root else opts.data_root)
    return {**env, COMPILE_ENV: "1"} if opts.compile else env


def checked_code(plan: Plan, store: RunStore, trains: bool, opts: RunOptions) -> dict[str, Any]:
    """An experiment about to train: its code checked against the stored runs' (a change
    is exit 2 unless accepted); returns what every run records about the experiment's code."""
    if not (trains or opts.until_decided or plan.spec.sequential is not None):
        return {}
    from study.provenance import check_code

    return check_code(plan.experiment, store, opts.accept_code_change)


def run_timeout(plan: Plan, option: float | None) -> float | None:
    """Seconds a run may take (--timeout, else the spec's `timeout`); None: no limit."""
    from study.plan import UsageError

    timeout = option if option is not None else plan.spec.timeout
    if timeout is None:
        return None
    if not 0 < timeout < float("inf"):
        raise UsageError(f"--timeout must be a positive number of seconds, got {timeout:g}")
    plan.experiment.check_timed()  # a function of the caller's own script or notebook cannot be timed
    return timeout


def check_layout(plan: Plan) -> None:
    """A study recorded in the built-in experiment's old layout resumes only once migrated."""
    from study.migrate import old_layout
    from study.plan import UsageError

    path = plan.results_dir / "study.json"
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    if old_layout(meta):
        raise UsageError(f"{plan.results_dir} was recorded in the built-in experiment's old layout; "
                         f"rewrite it in the contract's first (its runs are kept): python -m study.migrate {plan.results_dir}")


def open_store(plan: Plan, url: str, storage: str | None) -> RunStore:
    from study.plan import study_description
    from study.store import RunStore
    from study.tasks import storage_name

    return RunStore(plan.results_dir, storage_name(plan), plan.identity, plan.spec.arm_names,
                    study_description(plan, url), storage=storage, direction=plan.spec.analysis.direction_of())


def write_description(plan: Plan, url: str, *, refresh: bool) -> None:
    """study.json: written when missing, and when runs are to be done and it says something new;
    a rerun with nothing to do leaves it byte for byte (a committed study stays clean)."""
    from study.plan import UsageError, study_description
    from study.store import write_if_changed

    path = plan.results_dir / "study.json"
    try:
        if refresh or not path.exists():
            write_if_changed(path, (json.dumps(study_description(plan, url), indent=2) + "\n").encode())
    except OSError as e:
        raise UsageError(f"cannot write {plan.results_dir / 'study.json'}: {e.strerror or e}; "
                         "choose a writable --results directory") from None


if __name__ == "__main__":
    sys.exit(main())
