"""Training runs: `run_epochs`, the epoch loop for k >= 1 seeds over an engine that steps and
scores their models, and `train_one(config, seed, data) -> RunResult`, its one-seed case on the
plain model (study.cifar.group supplies the engine of several seeds in one vmapped step).
No file I/O in here.

The recipe is the notebook's, with its bug made impossible: the StepLR scheduler is built on
the very optimizer that steps, and the learning rate recorded for each epoch is read back from
that optimizer. Data live on the device as uint8 tensors; flips and normalisation happen there
too (no PIL per image, no DataLoader workers).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from analysis.contract import COMPLETE, DIVERGED
from study.cifar.config import Config
from study.cifar.data import Cifar10, split_indices, test_indices
from study.cifar.model import count_bn, init_model, weights_hash
from study.seeds import generator, stream_seeds

EVAL_BATCH = 1000  # evaluation batch: large for speed; BN uses running stats in eval mode


@dataclass(frozen=True)
class EpochRecord:
    epoch: int  # 1-based
    lr: float  # read from the optimizer that stepped during this epoch
    train_loss: float  # mean over the epoch's batches
    train_acc: float  # percent, on the augmented training batches as seen in training
    val_acc: float | None  # percent
    test_acc: float | None  # percent; None when the test set is scored only after the last epoch
    train_seconds: float = 0.0  # wall time of this epoch's training steps (not evaluation)


@dataclass(frozen=True)
class RunResult:
    status: str  # "complete" or "diverged"
    epochs: tuple[EpochRecord, ...]
    test_acc: float | None  # percent, after the last epoch (None when diverged)
    val_acc: float | None
    diverged_epoch: int | None
    test_predictions: np.ndarray | None = field(repr=False)  # uint8 class per test image
    streams: dict[str, int]  # the seed of every random stream
    init_hash: str  # equal in two runs <=> equal initial weights
    bn_layers: tuple[int, ...]
    n_bn: int
    device: str
    precision: str
    threads: int
    wall_time_s: float  # of the whole call: with seeds batched, the group's shared wall time
    # The seeds trained in the same steps as this one (study.cifar.group.train_group), () when it
    # trained alone. Grouping changes speed, not the numbers a seed draws (see study.seeds).
    group: tuple[int, ...] = ()
    compiled: bool = False  # whether the training step ran through torch.compile


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def cpu_arithmetic() -> str:
    """The CPU's matmul path, which decides both speed and the exact numbers a run produces:
    "amx" (bf16 tiles), "avx512_bf16" (bf16 vector dot products, no AMX), or torch's vector
    capability ("avx512", "avx2", ...). Recorded with every run, so that runs from machines
    with different arithmetic are never mixed or compared as if reproducible."""
    try:
        if torch.cpu._is_amx_tile_supported():
            return "amx"
        if torch.cpu._is_avx512_bf16_supported():
            return "avx512_bf16"
    except AttributeError:  # older torch without these probes
        pass
    return torch.backends.cpu.get_cpu_capability().lower()


def cpu_has_native_bf16() -> bool:
    """bf16 autocast pays off on a CPU only with AMX: measured on this project's machines, AMX
    made bf16 ~4x faster than fp32, while AVX512-BF16 without AMX made it 1.5-1.7x *slower*
    (width 16: 867 vs 1,262 img/s; width 100: 27 vs 46 img/s, one thread), and without either
    bf16 is emulated."""
    return cpu_arithmetic() == "amx"


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def device_name(device: torch.device) -> str:
    """What ran the run: the GPU's name, or the CPU's model with its arithmetic path (two
    "Intel(R) Xeon(R) Processor" machines, one with AMX, give different numbers)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    if model is None:
        import platform

        model = platform.processor() or platform.machine()
    return f"cpu: {model} ({cpu_arithmetic()})"


def make_optimizer(model: nn.Module | list[torch.Tensor], config: Config):
    """SGD and (optionally) StepLR on that same optimizer: the notebook's bug, made impossible."""
    params = model.parameters() if isinstance(model, nn.Module) else model
    optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    scheduler = None
    if config.scheduler == "step":
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_size, gamma=config.gamma)
    return optimizer, scheduler


def normalize(x: torch.Tensor) -> torch.Tensor:
    """uint8 -> ToTensor() + Normalize(0.5, 0.5), i.e. x/255 in [0,1] mapped to [-1, 1]."""
    return (x.float() / 255.0 - 0.5) / 0.5


def device_data(config: Config, data: Cifar10, dev: torch.device, score_test: bool):
    """(x_train, y_train, x_val, y_val, x_test, y_test) on `dev` as uint8 images and int64
    labels; the test tensors are None unless `score_test` (the tuner never sees them). The split
    is of the images `data` holds (CIFAR-10's 50k/10k, or the tests' small synthetic set)."""
    train_idx, val_idx = (torch.from_numpy(i) for i in split_indices(config, len(data.train_y)))
    out = [data.train_x[train_idx].to(dev), data.train_y[train_idx].to(dev),
           data.train_x[val_idx].to(dev), data.train_y[val_idx].to(dev), None, None]
    if score_test:
        tidx = torch.from_numpy(test_indices(config, len(data.test_y)))
        out[4:] = data.test_x[tidx].to(dev), data.test_y[tidx].to(dev)
    return tuple(out)


def epoch_draws(config: Config, n: int, g_order: torch.Generator, g_aug: torch.Generator,
                dev: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One epoch's data order and flip decisions, drawn on the CPU from the seed's own streams:
    a seed sees the same numbers on any device and in any group of seeds."""
    perm = torch.randperm(n, generator=g_order).to(dev)
    flips = (torch.rand(n, generator=g_aug) < 0.5).to(dev) if config.flip else None
    return perm, flips


def train_batch(x: torch.Tensor, y: torch.Tensor, perm: torch.Tensor, flips: torch.Tensor | None,
                start: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch `perm[start:start+size]`, flipped where drawn, normalised: the notebook's
    RandomHorizontalFlip + ToTensor + Normalize(0.5, 0.5), done on the device."""
    batch = perm[..., start:start + size]  # perm may be (n,) or (models, n): then (models, size, ...)
    xb, yb = x[batch], y[batch]
    if flips is not None:
        xb = torch.where(flips[..., start:start + size, None, None, None], xb.flip(-1), xb)
    return normalize(xb), yb


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, autocast) -> torch.Tensor:
    model.eval()
    out = []
    for i in range(0, len(x), EVAL_BATCH):
        xb = normalize(x[i:i + EVAL_BATCH]).contiguous(memory_format=torch.channels_last)
        with autocast():
            out.append(model(xb).argmax(1))
    return torch.cat(out)


class Engine(Protocol):
    """The models of k >= 1 seeds as one trainable thing: what `run_epochs` steps and scores.
    Shapes carry the model dimension first: batches (k, B, 3, 32, 32), losses (k,)."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    compiled: bool  # whether the step runs through torch.compile (may turn False on a fallback)

    def train(self) -> None: ...

    def step(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step on each model's own batch; returns (losses (k,), logits (k, B, 10))."""

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """(k, len(x)) predicted classes, every model on the same images, in eval mode."""

    def mean_loss(self, loss_sum: torch.Tensor, steps: int) -> list[float]:
        """The epoch's mean loss per model from the (k,) sum on the device."""


Autocast = Callable[[], torch.autocast]
MakeEngine = Callable[[list[nn.Module], Config, torch.device, Autocast], Engine]


class SingleModel:
    """The engine of one seed (`train_one`): the model itself, in channels_last."""

    compiled = False

    def __init__(self, models: list[nn.Module], config: Config, dev: torch.device, autocast: Autocast):
        (model,) = models
        self.model = model.to(dev, memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch accepts both
        self.optimizer, self.scheduler = make_optimizer(self.model, config)
        self.autocast = autocast

    def train(self) -> None:
        self.model.train()

    def step(self, xb, yb):
        xb = xb[0].contiguous(memory_format=torch.channels_last)
        with self.autocast():
            out = self.model(xb)
            loss = F.cross_entropy(out, yb[0])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss[None], out[None]

    def predict(self, x):
        return predict(self.model, x, self.autocast)[None]

    def mean_loss(self, loss_sum, steps):
        # Divided on the host in float64, as train_one always has: stored results reproduce bit
        # for bit (the grouped engine divides on the device, in float32).
        return [loss_sum.item() / steps]


def run_epochs(config: Config, seeds: Sequence[int], data: Cifar10, make_engine: MakeEngine, *,
               device: str | torch.device | None = None,
               on_epoch: Callable[[int, EpochRecord], None] | None = None,
               score_test: bool = True, grouped: bool = False) -> list[RunResult]:
    """Train one model per seed of `config` on `data` in shared steps of the engine that
    `make_engine` builds from their initial models; one RunResult per seed, in order. Pure: no
    file I/O. Each seed draws its init, data order and flips from its own streams (study.seeds).

    A non-finite epoch loss marks that seed's run "diverged" (not an exception) while the others
    go on. `on_epoch(seed, record)` is called for every seed still training. `score_test=False`
    (the tuner) never reads `data.test_x` / `data.test_y`: every test_acc is None and no test
    predictions are returned. `grouped` records the seeds as trained together (RunResult.group).
    """
    seeds = list(seeds)
    if not seeds:
        raise ValueError("`seeds` must name at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"`seeds` must be distinct, got {seeds}")
    start = time.perf_counter()
    dev = resolve_device(device)
    precision = resolve_precision(config.precision, dev)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # static shapes: pick the fastest conv algorithms once

    def autocast():
        return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    streams = [stream_seeds(s) for s in seeds]
    gens = [(generator(s, "order"), generator(s, "augment")) for s in seeds]
    models: list[nn.Module] = [init_model(config, st["init"]) for st in streams]
    init_hashes = [weights_hash(m) for m in models]
    n_bn = count_bn(models[0])
    engine = make_engine(models, config, dev, autocast)
    del models  # the engine owns the weights now

    x_train, y_train, x_val, y_val, x_test, y_test = device_data(config, data, dev, score_test)
    n, bs, k = len(x_train), config.batch_size, len(seeds)

    def accuracies(pred: torch.Tensor, y: torch.Tensor) -> list[float]:
        return [100.0 * c / len(y) for c in (pred == y).sum(-1).tolist()]

    records: list[list[EpochRecord]] = [[] for _ in seeds]
    diverged: list[int | None] = [None] * k
    test_pred: torch.Tensor | None = None
    for epoch in range(1, config.epochs + 1):
        lr = engine.optimizer.param_groups[0]["lr"]  # the lr this epoch's steps will use
        draws = [epoch_draws(config, n, g_order, g_aug, dev) for g_order, g_aug in gens]
        perms = torch.stack([perm for perm, _ in draws])  # (k, n): row i is seed i's order
        flips = torch.stack([f for _, f in draws]) if config.flip else None  # type: ignore[misc]  # drawn when config.flip
        engine.train()
        epoch_start = time.perf_counter()
        train_loss, train_acc = _train_epoch(engine, x_train, y_train, perms, flips, bs, k, dev)
        train_seconds = time.perf_counter() - epoch_start
        live = [i for i in range(k) if diverged[i] is None]
        for i in live:
            if not math.isfinite(train_loss[i]):
                diverged[i] = epoch
                records[i].append(EpochRecord(epoch, lr, train_loss[i], train_acc[i], None, None, train_seconds))
        live = [i for i in live if diverged[i] is None]
        if not live:
            break
        val_acc = accuracies(engine.predict(x_val), y_val)
        test_acc: Sequence[float | None] = [None] * k
        if score_test and (config.test_every_epoch or epoch == config.epochs):
            test_pred = engine.predict(x_test)
            test_acc = accuracies(test_pred, y_test)
        for i in live:
            record = EpochRecord(epoch, lr, train_loss[i], train_acc[i], val_acc[i], test_acc[i], train_seconds)
            records[i].append(record)
            if on_epoch is not None:
                on_epoch(seeds[i], record)

    wall = time.perf_counter() - start
    return [_run_result(config, records[i], diverged[i], test_pred[i] if test_pred is not None else None,
                        streams[i], init_hashes[i], n_bn=n_bn, device=device_name(dev), precision=precision,
                        wall=wall, group=tuple(seeds) if grouped else (), compiled=engine.compiled)
            for i in range(k)]


def _train_epoch(engine: Engine, x_train: torch.Tensor, y_train: torch.Tensor, perms: torch.Tensor,
                 flips: torch.Tensor | None, bs: int, k: int, dev: torch.device) -> tuple[list[float], list[float]]:
    """One epoch's steps for the k seeds at once, each in its own order, then the scheduler's
    step: each seed's mean train loss and train accuracy (%)."""
    n = len(x_train)
    loss_sum = torch.zeros(k, device=dev)
    correct = torch.zeros(k, device=dev, dtype=torch.long)
    steps = 0
    for s in range(0, n, bs):  # the last partial batch is kept, as DataLoader does
        xb, yb = train_batch(x_train, y_train, perms, flips, s, bs)  # (k, B, 3, 32, 32), (k, B)
        losses, out = engine.step(xb, yb)
        loss_sum += losses.detach().float()  # accumulated on the device: no per-step sync
        correct += (out.argmax(-1) == yb).sum(-1)
        steps += 1
    if engine.scheduler is not None:
        engine.scheduler.step()
    train_loss = engine.mean_loss(loss_sum, steps)  # the epoch's host syncs
    return train_loss, [100.0 * c / n for c in correct.tolist()]


def _run_result(config: Config, records: list[EpochRecord], diverged: int | None, test_pred: torch.Tensor | None,
                streams: dict[str, int], init_hash: str, *, n_bn: int, device: str, precision: str, wall: float,
                group: tuple[int, ...], compiled: bool) -> RunResult:
    """One seed's RunResult: its last epoch's accuracies and test predictions unless it diverged."""
    complete = diverged is None
    last = records[-1]
    preds = test_pred.to("cpu", torch.uint8).numpy() if complete and test_pred is not None else None
    return RunResult(
        status=COMPLETE if complete else DIVERGED, epochs=tuple(records),
        test_acc=last.test_acc if complete else None, val_acc=last.val_acc if complete else None,
        diverged_epoch=diverged, test_predictions=preds, streams=streams, init_hash=init_hash,
        bn_layers=config.bn_layers, n_bn=n_bn, device=device, precision=precision,
        threads=torch.get_num_threads(), wall_time_s=wall, group=group, compiled=compiled)


def train_one(config: Config, seed: int, data: Cifar10, *, device: str | torch.device | None = None,
              on_epoch: Callable[[EpochRecord], None] | None = None, score_test: bool = True) -> RunResult:
    """Train one model of `config` with `seed` on `data` and score it: `run_epochs` for one seed
    on its plain model (the reference path; study.cifar.group trains several in one step)."""
    report = None if on_epoch is None else (lambda _seed, record: on_epoch(record))
    (result,) = run_epochs(config, [seed], data, SingleModel, device=device, on_epoch=report,
                           score_test=score_test)
    return result
