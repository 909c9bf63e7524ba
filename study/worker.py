"""What runs in a worker process (joblib/loky or a Dask worker): one task of the plan, never raising.

Two kinds of task: `execute` trains seeds of the built-in notebook experiment on the cached
CIFAR-10 tensors; `execute_user` runs one seed of a user experiment (study.experiment). Both
return (arm, [(seed, outcome or failure dict)], "host:pid"), and the orchestrator in study.run
records them.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

from study.claims import worker_id

_DATA: dict[str, Any] = {}


def failure(e: BaseException) -> dict[str, str]:
    """A run's recorded failure: the error in one line (with a hint where there is one) and
    the traceback of the exception being handled."""
    error = f"{type(e).__name__}: {e}"
    if type(e).__name__ == "OutOfMemoryError":  # torch.cuda's (no torch import for user runs)
        error += " (even one seed per step: lower --jobs, or free the GPU)"
    return {"error": error, "traceback": traceback.format_exc()}


def train_seeds(config, seeds: list[int], data, device: str, compile: bool, on_epoch) -> list[Any]:
    """Train `seeds` of `config`: alone with `train_one` (the reference path), or together with
    `train_group`. One outcome per seed: a RunResult, or a failure dict. A group that runs out
    of GPU memory is split in halves and retried, down to single seeds; only a single seed's
    OOM is that run's failure, and the other seeds' results are kept."""
    import gc

    import torch

    from study.group import train_group
    from study.train import train_one

    try:
        if len(seeds) == 1 and not compile:
            return [train_one(config, seeds[0], data, device=device, on_epoch=lambda rec: on_epoch(seeds[0], rec))]
        return train_group(config, seeds, data, device=device, on_epoch=on_epoch, compile=compile)
    except torch.cuda.OutOfMemoryError as e:
        if len(seeds) == 1:
            return [failure(e)]
    # Outside the `except`: the failed attempt's tensors die with its traceback before the retry.
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    half = len(seeds) // 2
    return (train_seeds(config, seeds[:half], data, device, compile, on_epoch)
            + train_seeds(config, seeds[half:], data, device, compile, on_epoch))


def execute(arm: str, seeds: list[int], config, cache_path: str, device: str, threads: int,
            position: int, progress: bool, compile: bool = False) -> tuple[str, list[tuple[int, Any]], str]:
    """Run in a joblib worker: load the cached data once per process, train, never raise.
    Returns (arm, [(seed, RunResult or failure dict)], "host:pid" of the process that ran it)."""
    import torch
    from tqdm import tqdm

    torch.set_num_threads(threads)
    label = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {','.join(map(str, seeds))}"
    try:
        if cache_path not in _DATA:
            from study.data import load_cache

            _DATA[cache_path] = load_cache(cache_path)
        bar = tqdm(total=config.epochs, desc=f"{arm} {label}", unit="epoch", position=position,
                   leave=False, disable=None if progress else True, dynamic_ncols=True)
        with bar:
            def on_epoch(seed, rec):
                if seed == seeds[0]:  # one bar per task: it follows the first seed
                    bar.set_postfix(val=f"{rec.val_acc:.1f}", lr=f"{rec.lr:.3g}")
                    bar.update(1)

            results = train_seeds(config, list(seeds), _DATA[cache_path], device, compile, on_epoch)
        outcomes = list(zip(seeds, results, strict=True))
    except Exception as e:  # a failing run is recorded, not fatal to the study
        outcomes = [(seed, failure(e)) for seed in seeds]
    return arm, outcomes, worker_id()




def execute_user(arm: str, seed: int, config: dict[str, Any], experiment, metric: str, device: str,
                 threads: int, log_path: str | None) -> tuple[str, list[tuple[int, Any]], str]:
    """Run one seed of a user experiment (study.experiment.Experiment); never raise. A run that
    returns no `metric` (the analysis plan's) is a failed run: the study could not use it."""
    import os
    import sys

    # The worker's share of the cores, for libraries the experiment imports later (OpenMP reads
    # this when it starts) and for torch if this process already has it.
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    try:
        outcome = experiment.run(config, seed, device=device, log_path=Path(log_path) if log_path else None)
        if metric not in outcome.metrics:
            raise KeyError(f"the experiment returned no {metric!r} ([analysis] metric); it returned: "
                           f"{', '.join(outcome.metrics)}")
        result: Any = outcome
    except Exception as e:  # a failing run is recorded, not fatal to the study
        result = failure(e)
    return arm, [(seed, result)], worker_id()
