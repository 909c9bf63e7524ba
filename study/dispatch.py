"""Executing a plan: runs dispatched to joblib (local processes or a Dask cluster) as tasks,
each claimed just before it starts (several workers may share one study), each outcome
recorded as it arrives; Ctrl-C or SIGTERM stops cleanly, keeping every finished run; when the
first runs all fail the same way, the rest are cancelled (`FailFast`).

`UserRunner` runs every experiment's tasks, the built-in one's included (study.worker.execute_user,
or execute_many for a group of seeds). A runner has `group` (seeds per task), `what` (one line
for the log), `attrs` (stored with every run), `task(...)` and `record(...)`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from analysis.contract import COMPLETE, config_hash
from study.experiment import Outcome
from study.lifeline import watch_parent
from study.plan import Plan, UsageError
from study.provenance import provenance
from study.store import RunStore
from study.worker import execute_many, execute_user


def _terminate(signum, frame):
    raise KeyboardInterrupt  # SIGTERM (kill, job schedulers) stops as cleanly as Ctrl-C


def interruptible(body: Callable[[], int], kept: str) -> int:
    """Run a command's body so that SIGTERM stops it as cleanly as Ctrl-C, at any point
    (imports, data decoding, export included): one line saying what is kept, exit 130.
    Shared by `study.run` and `study.tune`."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    try:
        return body()
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished {kept} are stored; rerun the same command to continue", file=sys.stderr)
        return 130


def save_labels(path: Path, labels: np.ndarray) -> None:
    """test_labels.npy: with each run's stored predictions, gives per-example correctness."""
    tmp = path.with_name(f".test_labels.{os.getpid()}.npy")  # written aside: never half a file
    try:
        np.save(tmp, labels)
        tmp.replace(path)
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror or e}; free space or choose another --results") from None
    finally:
        tmp.unlink(missing_ok=True)


class UserRunner:
    """An experiment: one seed per task, or with `group` > 1 and a module that defines
    `train_many`, up to `group` seeds of an arm per task in one call; a command's output kept in
    logs/<arm>-seed<N>.log; a task over `timeout` seconds killed with its process tree and failed;
    `env` set in every task's environment (study.experiment.data_environment: --data, --data-root)."""

    def __init__(self, plan: Plan, device: str, threads: int, timeout: float | None = None, group: int | None = None,
                 env: dict[str, str] | None = None):
        self.plan, self.device, self.threads, self.timeout = plan, device, threads, timeout
        self.env = dict(env or {})
        self.experiment = plan.experiment
        self.metric = plan.spec.analysis.metric
        self.what = f"experiment: {plan.experiment.label}"
        many = self.experiment.trains_many()
        self.group = (group or 1) if many else 1  # without train_many a seed is a task: more parallel
        if self.group > 1:
            self.what += f"; up to {self.group} seed(s) per train_many call"
        elif (group or 1) > 1:
            self.what += f"; --group {group}: the experiment defines no train_many, so seed by seed"
        self.logs = None
        if plan.experiment.command:
            self.logs = plan.results_dir / "logs"
            self.logs.mkdir(exist_ok=True)
        self.attrs = {"experiment": plan.experiment.label}

    def task(self, i: int, arm: str, seeds: list[int]):
        from joblib import delayed

        if len(seeds) > 1:
            return delayed(execute_many)(arm, seeds, self.plan.configs[arm], self.experiment, self.metric,
                                         self.device, self.threads, self.timeout, self.env)
        (seed,) = seeds
        log = str(self.logs / f"{arm}-seed{seed}.log") if self.logs else None
        return delayed(execute_user)(arm, seed, self.plan.configs[arm], self.experiment, self.metric,
                                     self.device, self.threads, log, self.timeout, self.env)

    def record(self, store: RunStore, arm: str, seed: int, outcome: Outcome, attrs) -> str:
        if outcome.labels is not None and outcome.predictions is not None:
            path = store.results_dir / "test_labels.npy"
            if not path.exists():
                save_labels(path, outcome.labels)
            elif not np.array_equal(np.load(path, allow_pickle=False), outcome.labels):
                raise ValueError(f"the run's 'labels' differ from {path} (every run must score the same "
                                 "examples, or per-example comparisons are meaningless)")
        store.record_outcome(arm, seed, outcome, attrs, self.metric)
        value = outcome.metrics[self.metric]
        if outcome.status == COMPLETE:
            return f"{arm} seed {seed}: {self.metric} {value:.4g} ({outcome.wall_time_s:.1f}s)"
        return f"{arm} seed {seed}: DIVERGED ({self.metric} {value})"


def connect_backend(backend: str, scheduler: str | None):
    """A context in which joblib runs the study: local processes, or a Dask cluster.

    Local worker processes watch this one from the moment they start (study.lifeline), so that
    they and everything they started die with it, whatever kills it.

    With Dask, each worker loads the decoded data from the cache path this process built, so
    workers must see the same file system (one machine, or a shared cache via $SEEDWISE_CACHE).
    """
    from study.options import check_backend

    check_backend(backend, scheduler)
    if backend == "local":
        import joblib

        return joblib.parallel_config(backend="loky", initializer=watch_parent, initargs=(os.getpid(),))
    try:
        from dask.distributed import Client
    except ImportError:
        raise UsageError("--backend dask needs dask.distributed: pip install -e '.[cluster]'") from None
    import joblib

    try:
        client = Client(scheduler, timeout=20)
    except (OSError, TimeoutError) as e:
        raise UsageError(f"cannot reach the Dask scheduler at {scheduler}: {e}") from None
    stack = contextlib.ExitStack()
    stack.callback(client.close)
    stack.enter_context(joblib.parallel_config(backend="dask"))
    return stack


def groups_of(todo: list[tuple[str, int]], seeds: tuple[int, ...], group: int) -> list[tuple[str, list[int]]]:
    """The plan's runs as (arm, seeds) tasks of at most `group` seeds each: seeds are taken in
    blocks of `group`, and within a block every arm's runs still to do form one task."""
    todo_set, tasks = set(todo), []
    for b in range(0, len(seeds), group):
        block = seeds[b:b + group]
        for arm in dict.fromkeys(a for a, _ in todo):
            mine = [s for s in block if (arm, s) in todo_set]
            if mine:
                tasks.append((arm, mine))
    return tasks


def record(store: RunStore, runner, arm: str, seed: int, outcome: Any,
           attrs: dict[str, Any]) -> tuple[str | None, str]:
    """Store one run's outcome (or its failure: a dict from the worker, or an error while
    storing it). Returns (the failure's cause in one line, None if a result was stored; the
    run's line for the log)."""
    if isinstance(outcome, dict):
        store.record_failure(arm, seed, outcome["error"], outcome["traceback"], attrs)
        first = outcome["error"].splitlines()[0]
        return outcome.get("cause") or first, f"{arm} seed {seed}: FAILED {first}"
    try:
        return None, runner.record(store, arm, seed, outcome, attrs)
    except (OSError, ValueError, UsageError) as e:  # e.g. disk full writing predictions
        error = f"{type(e).__name__} while storing the run: {e}"
        if isinstance(e, OSError):
            error += f" (its predictions go to {store.results_dir / 'artifacts'}; free space and rerun to redo it)"
        store.record_failure(arm, seed, error, traceback.format_exc(), attrs)
        return error, f"{arm} seed {seed}: FAILED {error}"


class FailedFast(Exception):
    """The first runs all failed with the same error; the rest were cancelled (exit 1)."""


class FailFast:
    """Stop a study whose first finished runs all failed the same way (a missing data file, a
    wrong metric name): every other run would train into the same error. The first
    min(jobs + 1, 3) finished runs decide: each worker's first run and one more, so one bad
    arm among several good ones does not stop the study (a run that succeeded never does)."""

    def __init__(self, jobs: int, runs: int):
        self.needed = max(1, min(jobs + 1, 3, runs))
        self.causes: list[str | None] = []

    def stop(self, cause: str | None) -> bool:
        """Record a finished run's failure cause (None: it succeeded); True once it is time to stop."""
        if len(self.causes) == self.needed:
            return False  # decided: the study goes on
        self.causes.append(cause)
        return len(self.causes) == self.needed and cause is not None and len(set(self.causes)) == 1

    def message(self, runs: int, results_dir: Path) -> str:
        n, rest = self.needed, runs - self.needed
        not_started = f"; the other {rest} were cancelled" if rest > 0 else ""
        return (f"the first {n} run(s) all failed with the same error{not_started}: {self.causes[0]} "
                f"(each failure is in {results_dir / 'runs.csv'}, column error, with its traceback in "
                "the Optuna trial; fix the cause and rerun the same command)")


def run_all(plan: Plan, store: RunStore, todo: list[tuple[str, int]], runner, jobs: int) -> int:
    """Dispatch the runs still to do as the runner's tasks (`runner.group` seeds of an arm per
    task), record each outcome as it arrives; returns how many failed."""
    from joblib import Parallel
    from tqdm import tqdm

    from study.console import RunClock  # here: study.console imports this module

    attrs_common = {**runner.attrs, "study_identity": plan.identity, **provenance()}
    progress = sys.stderr.isatty()
    bar = tqdm(total=len(todo), desc=plan.study_name, unit="run", disable=None if progress else True,
               position=0, dynamic_ncols=True)
    claims = store.claims()
    elsewhere = 0
    hashes = {arm: config_hash(plan.config_dict(arm)) for arm in plan.arms}

    def tasks():
        """Claim each run just before it is dispatched, so workers sharing the study split the
        plan between them; skip runs another live worker holds or has finished meanwhile."""
        nonlocal elsewhere
        for i, (arm, seeds) in enumerate(groups_of(todo, plan.seeds, runner.group)):
            mine = []
            for seed in seeds:
                claim = claims.claim_run(arm, seed)
                if claim == "mine":
                    mine.append(seed)
                else:  # "busy": another live worker trains it; "done": one finished it since the plan
                    elsewhere += claim == "busy"
                    bar.update(1)
            if mine:
                yield runner.task(i, arm, mine)

    failed, clock = 0, RunClock(len(todo))
    started = time.time()
    fail_fast = FailFast(jobs, len(todo))
    stop = False
    try:
        with bar:
            results = Parallel(n_jobs=jobs, return_as="generator_unordered")(tasks())
            for arm, outcomes, worker in results:
                attrs = {**attrs_common, "config": plan.config_dict(arm), "config_hash": hashes[arm],
                         "worker": worker}
                for seed, outcome in outcomes:
                    cause, line = record(store, runner, arm, seed, outcome, attrs)
                    stored = cause is None
                    failed += not stored
                    stop = fail_fast.stop(cause) or stop
                    # After the trial is stored: no gap another worker could use. A stored result is
                    # marked done; a failure is released, to be retried.
                    (claims.finish if stored else claims.release)(arm, seed)
                    if progress:
                        bar.write(line, file=sys.stderr)
                    else:
                        print(f"{line}; {clock.tick()}", file=sys.stderr, flush=True)
                    bar.update(1)
                if stop:
                    with warnings.catch_warnings():  # joblib's "tasks ... cancelled": intended here
                        warnings.simplefilter("ignore")
                        results.close()  # cancels the runs not started, kills those in flight
                    break
    except KeyboardInterrupt:
        claims.close()
        export(store)
        print(f"\ninterrupted after {time.time() - started:.0f}s: finished runs are stored in "
              f"{plan.results_dir}; rerun the same command to continue", file=sys.stderr)
        raise SystemExit(130) from None
    claims.close()
    if stop:
        export(store)
        raise FailedFast(fail_fast.message(len(todo), plan.results_dir))
    if elsewhere:
        print(f"{elsewhere} run(s) were claimed by other workers on this study; their results appear "
              "when those workers finish (rerun to pick up any they abandon)", file=sys.stderr)
    return failed


def export(store: RunStore, tables=None) -> bool:
    """Write runs.csv / epochs.csv; on a full or read-only disk say so instead of crashing
    (every run is already in the storage, and the next invocation exports again)."""
    try:
        store.export(tables)
        return True
    except OSError as e:
        print(f"warning: could not write runs.csv / epochs.csv in {store.results_dir}: {e.strerror or e}; "
              "every run is in the storage, rerun the same command to export them", file=sys.stderr)
        return False
