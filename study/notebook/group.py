"""Several seeds of one config trained in the same steps: `train_group(config, seeds, data)`.

The seeds' models are stacked (`torch.func.stack_module_state`) and run as one function of the
stacked weights (`vmap` over `functional_call`): vmap folds the model dimension into grouped
convolutions and batched matmuls, so a step launches the kernels of one model, each N times
bigger. What each model sees is unchanged: its own init, data order and flips from its own seed's
streams (study.seeds), batches of `config.batch_size` images, its own BatchNorm batch statistics
and running statistics (stacked buffers, updated per model in train mode), and the gradient of
its own mean loss (the step minimises the *sum* of the per-model losses, whose gradient with
respect to one model's weights is that model's gradient). Grouping therefore changes speed, not
the experiment; tests/test_group.py checks it against `train_one` seed by seed.

Worth it on a GPU (bigger kernels, N times fewer launches per model). On a CPU a loop over models
was measured ~4x faster than vmap (shared/notes/performance-anchors.md section 6), so the runner
groups seeds only on CUDA unless told otherwise (`python -m study.run --group N`).
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from study.notebook.config import Config
from study.notebook.data import Cifar10
from study.notebook.model import count_bn, init_model, weights_hash
from study.notebook.train import (
    EVAL_BATCH,
    EpochRecord,
    RunResult,
    device_data,
    device_name,
    epoch_draws,
    make_optimizer,
    normalize,
    resolve_device,
    resolve_precision,
    train_batch,
)
from study.seeds import generator, stream_seeds


def train_group(config: Config, seeds: Sequence[int], data: Cifar10, *,
                device: str | torch.device | None = None,
                on_epoch: Callable[[int, EpochRecord], None] | None = None,
                score_test: bool = True, compile: bool = False) -> list[RunResult]:
    """Train one model per seed of `config` in shared steps; one RunResult per seed, in order.

    Same contract as `train_one` (pure, no file I/O; a non-finite epoch loss marks that seed's
    run "diverged" while the others go on). `on_epoch(seed, record)` is called for every seed
    still training. `compile=True` runs the step through `torch.compile`, falling back to eager
    (with a warning) where compilation fails.
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

    streams = [stream_seeds(s) for s in seeds]
    gens = [(generator(s, "order"), generator(s, "augment")) for s in seeds]
    models = [init_model(config, st["init"]) for st in streams]
    init_hashes = [weights_hash(m) for m in models]
    n_bn = count_bn(models[0])
    params, buffers = stack_module_state([m.to(dev) for m in models])  # new leaves, (N, ...) each
    template = copy.deepcopy(models[0]).to("meta")  # architecture only; weights come from `params`
    del models
    optimizer, scheduler = make_optimizer(list(params.values()), config)

    def loss_and_logits(p, b, x, y):
        out = functional_call(template, (p, b), (x,))
        return F.cross_entropy(out, y), out

    eager_step = vmap(loss_and_logits)
    step, compiled = eager_step, False
    if compile:
        step, compiled = torch.compile(eager_step), True

    def autocast():
        return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    def forward_backward(step_fn, xb, yb):
        with autocast():
            losses, out = step_fn(params, buffers, xb, yb)
        optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()  # d(sum)/d(model i) = d(loss i)/d(model i)
        return losses, out

    compiled_shapes: set[torch.Size] = set()  # batch shapes the compiled step has run

    @torch.no_grad()
    def predict(x: torch.Tensor) -> torch.Tensor:
        """(N, len(x)) predicted classes, every model on the same images, running BN stats."""
        template.eval()
        forward = vmap(lambda p, b, xb: functional_call(template, (p, b), (xb,)), in_dims=(0, 0, None))
        out = []
        for i in range(0, len(x), EVAL_BATCH):
            with autocast():
                out.append(forward(params, buffers, normalize(x[i:i + EVAL_BATCH])).argmax(-1))
        return torch.cat(out, dim=1)

    x_train, y_train, x_val, y_val, x_test, y_test = device_data(config, data, dev, score_test)
    n, bs, k = len(x_train), config.batch_size, len(seeds)
    records: list[list[EpochRecord]] = [[] for _ in seeds]
    diverged: list[int | None] = [None] * k
    test_pred: torch.Tensor | None = None
    for epoch in range(1, config.epochs + 1):
        lr = optimizer.param_groups[0]["lr"]
        draws = [epoch_draws(config, n, g_order, g_aug, dev) for g_order, g_aug in gens]
        perms = torch.stack([perm for perm, _ in draws])  # (N, n): row i is seed i's order
        flips = torch.stack([f for _, f in draws]) if config.flip else None
        template.train()
        epoch_start = time.perf_counter()
        loss_sum = torch.zeros(k, device=dev)
        correct = torch.zeros(k, device=dev, dtype=torch.long)
        steps = 0
        for s in range(0, n, bs):
            xb, yb = train_batch(x_train, y_train, perms, flips, s, bs)  # (N, B, 3, 32, 32), (N, B)
            if step is eager_step or xb.shape in compiled_shapes:
                losses, out = forward_backward(step, xb, yb)
            else:  # (re)compiles: forward now, backward at its first call; either may fail
                saved = {name: b.clone() for name, b in buffers.items()}  # BN stats the attempt may touch
                try:
                    losses, out = forward_backward(step, xb, yb)
                    compiled_shapes.add(xb.shape)
                except torch.cuda.OutOfMemoryError:
                    raise  # not a compiler problem: the runner splits the group
                except Exception as e:
                    warnings.warn(f"torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                                  "training this group eagerly", RuntimeWarning, stacklevel=2)
                    for name, value in saved.items():
                        buffers[name].copy_(value)
                    step, compiled = eager_step, False
                    losses, out = forward_backward(step, xb, yb)
            optimizer.step()
            loss_sum += losses.detach().float()
            correct += (out.argmax(-1) == yb).sum(-1)
            steps += 1
        if scheduler is not None:
            scheduler.step()
        train_loss = (loss_sum / steps).tolist()  # the epoch's host syncs
        train_acc = [100.0 * c / n for c in correct.tolist()]
        train_seconds = time.perf_counter() - epoch_start
        live = [i for i in range(k) if diverged[i] is None]
        for i in live:
            if not math.isfinite(train_loss[i]):
                diverged[i] = epoch
                records[i].append(EpochRecord(epoch, lr, train_loss[i], train_acc[i], None, None, train_seconds))
        live = [i for i in live if diverged[i] is None]
        if not live:
            break
        val_acc = [100.0 * c / len(y_val) for c in (predict(x_val) == y_val).sum(-1).tolist()]
        test_acc = [None] * k
        if score_test and (config.test_every_epoch or epoch == config.epochs):
            test_pred = predict(x_test)
            test_acc = [100.0 * c / len(y_test) for c in (test_pred == y_test).sum(-1).tolist()]
        for i in live:
            record = EpochRecord(epoch, lr, train_loss[i], train_acc[i], val_acc[i], test_acc[i], train_seconds)
            records[i].append(record)
            if on_epoch is not None:
                on_epoch(seeds[i], record)

    wall = time.perf_counter() - start
    results = []
    for i in range(k):
        complete = diverged[i] is None
        last = records[i][-1]
        preds = test_pred[i].to("cpu", torch.uint8).numpy() if complete and test_pred is not None else None
        results.append(RunResult(
            status="complete" if complete else "diverged", epochs=tuple(records[i]),
            test_acc=last.test_acc if complete else None, val_acc=last.val_acc if complete else None,
            diverged_epoch=diverged[i], test_predictions=preds, streams=streams[i], init_hash=init_hashes[i],
            bn_layers=config.bn_layers, n_bn=n_bn, device=device_name(dev), precision=precision,
            threads=torch.get_num_threads(), wall_time_s=wall, group=tuple(seeds), compiled=compiled))
    return results
