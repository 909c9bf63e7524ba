"""How seedwise calls a function experiment (the contract: study.experiment's docstring): the
keywords it passes only when the function names them (`report`, `device`, `evaluate_test`), the
`report` callbacks that collect per-epoch rows, one `train` or `train_many` call turned into
Outcomes; and the environment variables every run sees (--data, --data-root, --compile, a tuning
run's SEEDWISE_EVALUATE_TEST=0), with InputError for what an experiment needs that is missing."""

from __future__ import annotations

import contextlib
import inspect
import os
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from study.experiment_loader import MANY, ExperimentError, load_function, load_many
from study.experiment_outcome import ContractError, Outcome, finish, metric_value

# Where a module experiment finds its data: the runner's --data / --data-root, set in every
# worker's environment (joblib processes, forked timeout children, Dask workers, commands).
DATA_ENV, DATA_ROOT_ENV = "SEEDWISE_DATA", "SEEDWISE_DATA_ROOT"
COMPILE_ENV = "SEEDWISE_COMPILE"  # "1" with --compile: the experiment may compile its training step
# A tuning run: the keyword a function may take, and the variable every tuning run sees ("0").
EVALUATE_TEST, EVALUATE_TEST_ENV = "evaluate_test", "SEEDWISE_EVALUATE_TEST"



class InputError(Exception):
    """What an experiment needs to run is missing or unusable (its data): the command says so
    in one line and exits 2 before anything is trained, whichever experiment raised it."""


def data_environment(data: str | None, data_root: str | None) -> dict[str, str]:
    """The variables that carry --data / --data-root to the workers, as absolute paths (a
    command runs in the spec's folder, a Dask worker wherever it started). A --data that does
    not exist is an InputError, before anything is stored."""
    env: dict[str, str] = {}
    if data is not None:
        path = Path(data).expanduser().resolve()
        if not path.exists():
            raise InputError(f"--data points to {str(path)!r}, which does not exist")
        env[DATA_ENV] = str(path)
    if data_root is not None:
        env[DATA_ROOT_ENV] = str(Path(data_root).expanduser().resolve())
    return env


@contextlib.contextmanager
def environment(env: Mapping[str, str]):
    """`env` set in os.environ while a run executes, the previous values restored after (with
    --jobs 1 the worker is the runner's own process, which may start another study)."""
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def reporter(epochs: list[dict[str, Any]], on_report):
    """The `report(epoch, **metrics)` an experiment calls: each row checked and kept in `epochs`,
    then passed to `on_report` (if any)."""
    def report(epoch: int, **metrics: float) -> None:
        import numpy as np

        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)):
            raise TypeError(f"report(epoch, ...): epoch must be an integer, got {epoch!r}")
        row = {k: metric_value(k, v) for k, v in metrics.items()}
        epochs.append({"epoch": int(epoch), **row})
        if on_report is not None:
            on_report(int(epoch), row)  # the tuner may raise optuna.TrialPruned from here
    return report


def call_function(reference: str, folder: str | None, config: Mapping[str, Any], seed: int, *,
                  device: str = "cpu", on_report=None, evaluate_test: bool = True) -> Outcome:
    fn = load_function(reference, folder)
    wanted = inspect.signature(fn).parameters
    epochs: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {}
    if "report" in wanted:
        kwargs["report"] = reporter(epochs, on_report)
    if "device" in wanted:
        kwargs["device"] = device
    if not evaluate_test and EVALUATE_TEST in wanted:  # only a tuning run passes it: older functions run as ever
        kwargs[EVALUATE_TEST] = False
    started = time.perf_counter()
    returned = fn(dict(config), seed, **kwargs)  # a copy: the run cannot change the arm's config
    return finish(returned, epochs, started, device)


def call_many(reference: str, folder: str | None, config: Mapping[str, Any], seeds: Sequence[int], *,
              device: str = "cpu") -> list[Outcome | Exception]:
    """One `train_many` call for `seeds`: each seed's result checked on its own, so one seed's
    bad result (or the exception it returned in its place) fails that seed alone. The group's
    wall time is every seed's: study.console divides it by the group's size."""
    fn = load_many(reference, folder)
    if fn is None:
        raise ExperimentError(f"experiment {reference!r}: its module has no function {MANY!r}")
    wanted = inspect.signature(fn).parameters
    seeds = list(seeds)
    epochs: dict[int, list[dict[str, Any]]] = {seed: [] for seed in seeds}
    kwargs: dict[str, Any] = {}
    if "report" in wanted:
        reporters = {seed: reporter(epochs[seed], None) for seed in seeds}

        def report(seed: int, epoch: int, **metrics: float) -> None:
            if seed not in reporters:
                raise ValueError(f"report(seed, epoch, ...): seed {seed!r} is not one of this call's seeds {seeds}")
            reporters[seed](epoch, **metrics)
        kwargs["report"] = report
    if "device" in wanted:
        kwargs["device"] = device
    started = time.perf_counter()
    returned = fn(dict(config), list(seeds), **kwargs)
    if isinstance(returned, (str, bytes, Mapping)) or not isinstance(returned, Sequence) or len(returned) != len(seeds):
        got = f"{len(returned)} item(s)" if isinstance(returned, Sequence) else type(returned).__name__
        raise ContractError(f"{MANY} must return a list with one result per seed ({len(seeds)}), got {got}")
    outcomes: list[Outcome | Exception] = []
    for seed, item in zip(seeds, returned, strict=True):
        try:
            if isinstance(item, Exception):
                if item.__traceback__ is None:  # returned, never raised: say where it came from
                    item.seedwise_traceback = (f"{type(item).__name__}: {item}\n(returned by {MANY} "  # type: ignore[attr-defined]
                                               f"for seed {seed} of {seeds})\n")
                    outcomes.append(item)
                    continue
                raise item
            outcomes.append(replace(finish(item, epochs[seed], started, device), group=tuple(map(int, seeds))))
        except Exception as e:  # this seed's failure: its traceback kept as text (it crosses processes)
            e.seedwise_traceback = traceback.format_exc()  # type: ignore[attr-defined]
            outcomes.append(e)
    return outcomes

