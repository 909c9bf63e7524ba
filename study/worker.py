"""What runs in a worker process (joblib/loky or a Dask worker): one task of the plan, never raising.

`execute_user` runs one seed of an experiment (study.experiment), `execute_many` a group of
seeds in one `train_many` call (the built-in experiment's included). Both return (arm, [(seed, outcome or failure dict)], "host:pid"), and the orchestrator in
study.run records them.
"""

from __future__ import annotations

import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

from study.claims import worker_id
from study.experiment import check_metric, environment
from study.lifeline import TimedOut
from study.provenance import run_code


def failure(e: BaseException) -> dict[str, str]:
    """A run's recorded failure: the error in one line (with a hint where there is one), the
    traceback of the exception being handled, and its `cause`: the error without what differs
    from run to run (a command's log path), which study.dispatch compares to fail fast."""
    name = getattr(e, "type_name", type(e).__name__)  # a timed run's child's exception (RunError) names its own
    error = str(e) if isinstance(e, TimedOut) else f"{name}: {e}"
    if name == "OutOfMemoryError":  # torch.cuda's (no torch import for user runs)
        error += " (even one seed per step: lower --jobs, or free the GPU)"
    cause = getattr(e, "cause", None) or error.splitlines()[0]
    # A seed's failure inside a group was caught (and its traceback kept as text) where it happened.
    trace = getattr(e, "seedwise_traceback", None) or "".join(traceback.format_exception(e))
    return {"error": error, "traceback": trace, "cause": cause}


def execute_user(arm: str, seed: int, config: dict[str, Any], experiment, metric: str, device: str,
                 threads: int, log_path: str | None, timeout: float | None = None,
                 env: dict[str, str] | None = None) -> tuple[str, list[tuple[int, Any]], str]:
    """Run one seed of a user experiment (study.experiment.Experiment) with `env` in its
    environment (--data as $SEEDWISE_DATA); never raise. A run that returns no `metric` (the
    analysis plan's) is a failed run: the study could not use it; one over `timeout` seconds is
    killed and failed."""
    use_threads(threads)
    try:
        with environment(env or {}):
            outcome = experiment.run(config, seed, device=device, log_path=Path(log_path) if log_path else None,
                                     timeout=timeout)
        result = checked(outcome, metric, experiment)
    except Exception as e:  # a failing run is recorded, not fatal to the study
        result = failure(e)
    return arm, [(seed, result)], worker_id()


def execute_many(arm: str, seeds: list[int], config: dict[str, Any], experiment, metric: str, device: str,
                 threads: int, timeout: float | None = None,
                 env: dict[str, str] | None = None) -> tuple[str, list[tuple[int, Any]], str]:
    """Run a group of seeds of a user experiment in one `train_many` call; never raise. Each
    seed's outcome stands alone (one seed's failure or divergence is that run's); an exception
    out of the call itself, or the group's `timeout`, fails every seed of the group."""
    use_threads(threads)
    try:
        with environment(env or {}):
            results = experiment.run_many(config, seeds, device=device, timeout=timeout)
        outcomes: list[tuple[int, Any]] = []
        for seed, result in zip(seeds, results, strict=True):
            try:
                if isinstance(result, Exception):
                    raise result
                outcomes.append((seed, checked(result, metric, experiment)))
            except Exception as e:  # this seed's failure alone
                outcomes.append((seed, failure(e)))
    except Exception as e:  # the whole call failed: so did each of its seeds
        outcomes = [(seed, failure(e)) for seed in seeds]
    return arm, outcomes, worker_id()


def use_threads(threads: int) -> None:
    """The worker's share of the cores, for libraries the experiment imports later (OpenMP reads
    this when it starts) and for torch if this process already has it."""
    import os
    import sys

    os.environ["OMP_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def checked(outcome, metric: str, experiment) -> Any:
    """A run's outcome with the analysed metric present and its code recorded (a timed function
    run recorded its code in the child that ran it: lazy imports happen there)."""
    check_metric(outcome.metrics, metric)
    return outcome if outcome.code else replace(outcome, code=run_code(experiment.folder, experiment.command))
