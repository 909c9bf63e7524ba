"""The built-in experiment through the user's contract (docs/experiments.md): `train` one seed,
`train_many` a group of seeds in one vmapped step, both returning what a user's `train` returns.

    train(config: dict, seed, *, report=None, device=None, evaluate_test=True) -> dict
    train_many(config: dict, seeds, *, report=None, device=None, evaluate_test=True) -> list[dict]

The dict holds the run's final metrics as runs.csv has them (test_acc, val_acc, train_acc,
train_loss, lr_final) and what this experiment knows beyond them as numbers (n_bn: how many
BatchNorm layers the model had) and as `info` (init_hash, bn_layers, precision, data_fingerprint,
data_source: the built-in layout's columns), plus `predictions` / `labels` of the scored test images;
`report(epoch, ...)` gets each epoch's lr, losses and accuracies (the effective-lr curve). A
diverged run returns a non-finite `train_loss`, which the contract reads as diverged.
`evaluate_test=False` (what the tuner passes: docs/experiments.md) never reads the test tensors:
no test_acc, predictions or labels.

CIFAR-10 is loaded once per process and source (`dataset`): from `use_source`'s --data / data
root, else $SEEDWISE_DATA / $SEEDWISE_DATA_ROOT (what `seedwise run --data / --data-root` sets in
every worker of a study naming this module), else ./data; `use_data` installs an already loaded
one (tests, the tuner).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from study.cifar.config import Config, apply_overrides

if TYPE_CHECKING:
    from study.cifar.data import Cifar10
    from study.cifar.train import EpochRecord, RunResult

BIT_EXACT = True  # on a CPU, alone, at one thread count: bit-exact at a fixed seed (tests/test_train_exact.py)
_SOURCE: dict[str, Any] = {"data": None, "data_root": None}
_DATA: dict[str, Any] = {}  # the dataset this process trains on, with the source it came from
INSTALLED = "installed"  # the source of a dataset `use_data` installed: whatever the environment says


def use_source(data: str | None = None, data_root: str | None = None) -> None:
    """Where `dataset` reads CIFAR-10 from in this process (None: the environment's, then ./data)."""
    _SOURCE.update(data=data, data_root=data_root)
    _DATA.clear()


def use_data(data: Cifar10) -> None:
    """Train on `data` (an already loaded Cifar10) in this process."""
    _DATA.update(data=data, source=INSTALLED)


def dataset() -> Cifar10:
    """CIFAR-10 for this process's runs, decoded (or read from its cache) on the first call for
    its source: a worker of another study, given another --data, loads that one."""
    from study.experiment import DATA_ENV, DATA_ROOT_ENV

    data = _SOURCE["data"] or os.environ.get(DATA_ENV) or None
    root = _SOURCE["data_root"] or os.environ.get(DATA_ROOT_ENV) or "./data"
    if _DATA.get("source") not in (INSTALLED, (data, root)):
        from study.cifar.data import load_cifar10

        _DATA.update(data=load_cifar10(data, root), source=(data, root))
    return _DATA["data"]


def as_config(config: Mapping[str, Any] | Config) -> Config:
    """The arm's config as the engine's Config (a plain dict is what the runner hands over)."""
    return config if isinstance(config, Config) else apply_overrides(Config(), config, where="the arm's config")


def prepare() -> None:
    """The contract's optional once-per-study step: decode CIFAR-10 (or read its cache) in the
    runner's process, so a bad --data is one line before any run, and the workers each read
    the cache rather than decoding it together."""
    dataset()


def check_config(config: Mapping[str, Any]) -> None:
    """The contract's optional config check (docs/experiments.md): `Config` validates every
    value (a bad one raises ConfigError naming the key); `bn` may be a name or a list of convs."""
    as_config(config)


def train(config: Mapping[str, Any], seed: int, *, report: Callable[..., None] | None = None,
          device: str | None = None, evaluate_test: bool = True) -> dict[str, Any]:
    """One seed on its plain model (the reference path)."""
    (result,) = train_many(config, [seed], report=None if report is None else (lambda _s, e, **m: report(e, **m)),
                           device=device, evaluate_test=evaluate_test)
    if isinstance(result, Exception):  # out of GPU memory even alone
        raise result
    return result


def train_many(config: Mapping[str, Any], seeds: Sequence[int], *, report: Callable[..., None] | None = None,
               device: str | None = None, evaluate_test: bool = True) -> list[dict[str, Any] | Exception]:
    """`seeds` of one arm: together in one vmapped step where their data match (study.cifar.group),
    one seed alone through `train_one`; a group out of GPU memory is split until it fits."""
    from study.cifar.data import test_indices

    cfg, data = as_config(config), dataset()

    def on_epoch(seed: int, rec: EpochRecord) -> None:
        if report is not None:
            report(seed, rec.epoch, **epoch_row(rec))

    from study.experiment import COMPILE_ENV

    compile = os.environ.get(COMPILE_ENV) == "1"  # --compile
    results = train_seeds(cfg, list(seeds), data, device or "cpu", compile, on_epoch, score_test=evaluate_test)
    for seed, r in zip(seeds, results, strict=True):  # the engine reports live epochs only:
        if report is not None and not isinstance(r, Exception) and r.status != "complete" and r.epochs:
            report(seed, r.epochs[-1].epoch, **epoch_row(r.epochs[-1]))  # the diverged one's row too
    # Without the test set (tuning), no labels either: the test tensors are never read.
    labels = (data.test_y[test_indices(cfg, len(data.test_y))].numpy().astype("uint8")  # as test_labels.npy has them
              if evaluate_test else None)
    return [r if isinstance(r, Exception) else as_returned(r, labels, data) for r in results]


def epoch_row(rec: EpochRecord) -> dict[str, float]:
    """One epoch's numbers (accuracies not measured that epoch left out)."""
    row = {"lr": rec.lr, "train_loss": rec.train_loss, "train_acc": rec.train_acc, "val_acc": rec.val_acc,
           "test_acc": rec.test_acc, "train_seconds": rec.train_seconds}
    return {k: float(v) for k, v in row.items() if v is not None}


def as_returned(result: RunResult, labels, data: Cifar10) -> dict[str, Any]:
    """A RunResult as the contract's dict: metrics, n_bn, its facts as `info` (the columns the
    built-in layout wrote: analysis.report.integrity and the report read them), and the test
    predictions with labels."""
    last = result.epochs[-1] if result.epochs else None
    out: dict[str, Any] = {"test_acc": result.test_acc, "val_acc": result.val_acc,
                           "train_acc": last.train_acc if last else None,
                           "train_loss": last.train_loss if last else None,
                           "lr_final": last.lr if last else None, "n_bn": result.n_bn}
    out = {k: float(v) for k, v in out.items() if v is not None}
    out["info"] = {"init_hash": result.init_hash, "bn_layers": " ".join(map(str, result.bn_layers)),
                   "precision": result.precision, "data_fingerprint": data.fingerprint,
                   "data_source": data.source}
    if result.status != "complete":
        # diverged: non-finite metrics, as the contract says (the accuracies were never scored)
        out.update({k: math.nan for k in ("train_loss", "test_acc", "val_acc") if k not in out or k == "train_loss"})
        return out
    return {**out, "predictions": result.test_predictions, "labels": labels}


def train_seeds(config: Config, seeds: list[int], data: Cifar10, device: str, compile: bool, on_epoch,
                score_test: bool = True) -> list[Any]:
    """Train `seeds` of `config`: alone with `train_one` (the reference path), or together with
    `train_group`. One outcome per seed: a RunResult, or that seed's exception. A group that runs out
    of GPU memory is split in halves and retried, down to single seeds; only a single seed's
    OOM is that run's failure, and the other seeds' results are kept."""
    import gc
    import traceback

    import torch

    from study.cifar.group import train_group
    from study.cifar.train import train_one

    by_split = split_groups(config, seeds)
    if len(by_split) > 1:  # a per-seed split: seeds train together only where their data match
        done: dict[int, Any] = {}
        for run_config, same in by_split.items():
            done.update(zip(same, train_seeds(run_config, same, data, device, compile, on_epoch, score_test),
                            strict=True))
        return [done[s] for s in seeds]
    config = next(iter(by_split))
    try:
        if len(seeds) == 1 and not compile:
            return [train_one(config, seeds[0], data, device=device, on_epoch=lambda rec: on_epoch(seeds[0], rec),
                              score_test=score_test)]
        return train_group(config, seeds, data, device=device, on_epoch=on_epoch, compile=compile,
                           score_test=score_test)
    except torch.cuda.OutOfMemoryError as e:
        if len(seeds) == 1:  # the seed's failure; its traceback as text, not its frames' tensors
            e.seedwise_traceback = traceback.format_exc()  # type: ignore[attr-defined]
            return [e.with_traceback(None)]
    # Outside the `except`: the failed attempt's tensors die with its traceback before the retry.
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    half = len(seeds) // 2
    return (train_seeds(config, seeds[:half], data, device, compile, on_epoch, score_test)
            + train_seeds(config, seeds[half:], data, device, compile, on_epoch, score_test))


def split_groups(config: Config, seeds: list[int]) -> dict[Config, list[int]]:
    """The seeds by the config each run trains (`Config.for_run`: one per split, with a
    per-seed split), in order."""
    groups: dict[Config, list[int]] = {}
    for seed in seeds:
        groups.setdefault(config.for_run(seed), []).append(seed)
    return groups
