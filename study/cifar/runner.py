"""The built-in experiment in the runner and the tuner: what `study.run` and `study.tune` call
for a spec without `experiment` or `command`.

Orchestrator side: `NotebookRunner` (data, tasks of grouped seeds, recording). Worker side: `execute` (one task in a joblib or
Dask worker, never raising), training through study.cifar.experiment.train_seeds. (The
tuner runs the built-in experiment through its contract: study.search.make_objective.)
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from analysis.contract import COMPLETE
from study.cifar.config import CUDA_GROUP
from study.cifar.experiment import train_seeds
from study.cifar.records import record_run
from study.claims import worker_id
from study.worker import failure


class NotebookRunner:
    """Runs the built-in experiment for study.run: CIFAR-10 decoded once in this process (workers
    load its cache), up to `group` seeds of an arm per task, results stored by `records`."""

    def __init__(self, plan, args, device: str, threads: int, jobs: int):
        from study.cifar.data import load_cifar10, test_indices
        from study.dispatch import save_labels

        self.plan, self.device, self.threads, self.jobs = plan, device, threads, jobs
        self.compile = bool(getattr(args, "compile", False))
        self.group = getattr(args, "group", None) or (CUDA_GROUP if device.startswith("cuda") else 1)
        self.data = load_cifar10(args.data, args.data_root)
        self.what = f"data: {self.data.source}"
        if self.group > 1 or self.compile:
            self.what += f"; engine: up to {self.group} seed(s) per step{', torch.compile' if self.compile else ''}"
        labels = plan.results_dir / "test_labels.npy"
        if not labels.exists():
            test_y = self.data.test_y[test_indices(plan.configs[plan.arms[0]])]
            save_labels(labels, test_y.numpy().astype(np.uint8))
        self.progress = sys.stderr.isatty()
        self.attrs = {"data_fingerprint": self.data.fingerprint, "data_source": self.data.source,
                      "preset": plan.preset}

    def task(self, i: int, arm: str, seeds: list[int]):
        from joblib import delayed

        return delayed(execute)(arm, seeds, self.plan.configs[arm], self.data.cache_path, self.device,
                                self.threads, 1 + i % self.jobs, self.progress, self.compile)

    def record(self, store, arm: str, seed: int, outcome, attrs) -> str:
        record_run(store, arm, seed, outcome, attrs)
        if outcome.status == COMPLETE:
            return f"{arm} seed {seed}: test {outcome.test_acc:.2f}% ({outcome.wall_time_s:.0f}s)"
        return f"{arm} seed {seed}: DIVERGED at epoch {outcome.diverged_epoch}"


# ---- worker side ----------------------------------------------------------------------
_DATA: dict[str, Any] = {}  # decoded data per cache path, loaded once per worker process


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
            from study.cifar.data import load_cache

            _DATA[cache_path] = load_cache(cache_path)
        bar = tqdm(total=config.epochs, desc=f"{arm} {label}", unit="epoch", position=position,
                   leave=False, disable=None if progress else True, dynamic_ncols=True)
        with bar:
            def on_epoch(seed, rec):
                if seed == seeds[0]:  # one bar per task: it follows the first seed
                    bar.set_postfix(val=f"{rec.val_acc:.1f}", lr=f"{rec.lr:.3g}")
                    bar.update(1)

            results = train_seeds(config, list(seeds), _DATA[cache_path], device, compile, on_epoch)
        outcomes = [(seed, failure(r) if isinstance(r, Exception) else r) for seed, r in zip(seeds, results, strict=True)]
    except Exception as e:  # a failing run is recorded, not fatal to the study
        outcomes = [(seed, failure(e)) for seed in seeds]
    return arm, outcomes, worker_id()
