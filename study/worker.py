"""What runs in a worker process (joblib/loky or a Dask worker): one task of the plan, never raising.

`execute_user` runs one seed of a user experiment (study.experiment); the built-in experiment's
task is study.notebook.runner.execute. Both return (arm, [(seed, outcome or failure dict)],
"host:pid"), and the orchestrator in study.run records them.
"""

from __future__ import annotations

import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

from study.claims import worker_id
from study.experiment import check_metric
from study.lifeline import TimedOut
from study.provenance import run_code


def failure(e: BaseException) -> dict[str, str]:
    """A run's recorded failure: the error in one line (with a hint where there is one), the
    traceback of the exception being handled, and its `cause`: the error without what differs
    from run to run (a command's log path), which study.dispatch compares to fail fast."""
    error = str(e) if isinstance(e, TimedOut) else f"{type(e).__name__}: {e}"
    if type(e).__name__ == "OutOfMemoryError":  # torch.cuda's (no torch import for user runs)
        error += " (even one seed per step: lower --jobs, or free the GPU)"
    cause = getattr(e, "cause", None) or error.splitlines()[0]
    return {"error": error, "traceback": traceback.format_exc(), "cause": cause}


def execute_user(arm: str, seed: int, config: dict[str, Any], experiment, metric: str, device: str,
                 threads: int, log_path: str | None, timeout: float | None = None) -> tuple[str, list[tuple[int, Any]], str]:
    """Run one seed of a user experiment (study.experiment.Experiment); never raise. A run that
    returns no `metric` (the analysis plan's) is a failed run: the study could not use it; one
    over `timeout` seconds is killed and failed."""
    import os
    import sys

    # The worker's share of the cores, for libraries the experiment imports later (OpenMP reads
    # this when it starts) and for torch if this process already has it.
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    try:
        outcome = experiment.run(config, seed, device=device, log_path=Path(log_path) if log_path else None,
                                 timeout=timeout)
        check_metric(outcome.metrics, metric)
        # A timed function run recorded its code in the child that ran it (lazy imports happen there).
        result: Any = outcome if outcome.code else replace(outcome, code=run_code(experiment.folder, experiment.command))
    except Exception as e:  # a failing run is recorded, not fatal to the study
        result = failure(e)
    return arm, [(seed, result)], worker_id()
