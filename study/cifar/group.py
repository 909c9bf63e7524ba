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
import functools
import warnings
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from study.cifar.config import Config
from study.cifar.data import Cifar10
from study.cifar.train import (
    EVAL_BATCH,
    Autocast,
    EpochRecord,
    RunResult,
    make_optimizer,
    normalize,
    run_epochs,
)


class GroupedModels:
    """The engine of k seeds in one step: their models stacked and run as one vmapped function
    of the stacked weights, optionally through torch.compile with a fallback to eager."""

    def __init__(self, models: list[nn.Module], config: Config, dev: torch.device, autocast: Autocast,
                 compile: bool = False):
        self.params, self.buffers = stack_module_state([m.to(dev) for m in models])  # new leaves, (k, ...) each
        self.template = copy.deepcopy(models[0]).to("meta")  # architecture only; weights come from `params`
        self.optimizer, self.scheduler = make_optimizer(list(self.params.values()), config)
        self.autocast = autocast
        self.eager_step = vmap(self.loss_and_logits)
        self.step_fn, self.compiled = self.eager_step, False
        if compile:
            self.step_fn, self.compiled = torch.compile(self.eager_step), True
        self.compiled_shapes: set[torch.Size] = set()  # batch shapes the compiled step has run

    def loss_and_logits(self, p, b, x, y):
        out = functional_call(self.template, (p, b), (x,))
        return F.cross_entropy(out, y), out

    def train(self) -> None:
        self.template.train()

    def forward_backward(self, xb, yb):
        with self.autocast():
            losses, out = self.step_fn(self.params, self.buffers, xb, yb)
        self.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()  # d(sum)/d(model i) = d(loss i)/d(model i)
        return losses, out

    def step(self, xb, yb):
        if self.step_fn is self.eager_step or xb.shape in self.compiled_shapes:
            losses, out = self.forward_backward(xb, yb)
        else:  # (re)compiles: forward now, backward at its first call; either may fail
            saved = {name: b.clone() for name, b in self.buffers.items()}  # BN stats the attempt may touch
            try:
                losses, out = self.forward_backward(xb, yb)
                self.compiled_shapes.add(xb.shape)
            except torch.cuda.OutOfMemoryError:
                raise  # not a compiler problem: the runner splits the group
            except Exception as e:
                warnings.warn(f"torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                              "training this group eagerly", RuntimeWarning, stacklevel=2)
                for name, value in saved.items():
                    self.buffers[name].copy_(value)
                self.step_fn, self.compiled = self.eager_step, False
                losses, out = self.forward_backward(xb, yb)
        self.optimizer.step()
        return losses, out

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """(k, len(x)) predicted classes, every model on the same images, running BN stats."""
        self.template.eval()
        forward = vmap(lambda p, b, xb: functional_call(self.template, (p, b), (xb,)), in_dims=(0, 0, None))
        out = []
        for i in range(0, len(x), EVAL_BATCH):
            with self.autocast():
                out.append(forward(self.params, self.buffers, normalize(x[i:i + EVAL_BATCH])).argmax(-1))
        return torch.cat(out, dim=1)

    def mean_loss(self, loss_sum: torch.Tensor, steps: int) -> list[float]:
        return (loss_sum / steps).tolist()  # divided on the device, as the group always has


def train_group(config: Config, seeds: Sequence[int], data: Cifar10, *,
                device: str | torch.device | None = None,
                on_epoch: Callable[[int, EpochRecord], None] | None = None,
                score_test: bool = True, compile: bool = False) -> list[RunResult]:
    """Train one model per seed of `config` in shared steps; one RunResult per seed, in order.

    `run_epochs` on the grouped engine: the contract of `train_one` (pure, no file I/O; a
    non-finite epoch loss marks that seed's run "diverged" while the others go on).
    `on_epoch(seed, record)` is called for every seed still training. `compile=True` runs the
    step through `torch.compile`, falling back to eager (with a warning) where compilation fails.
    """
    engine = functools.partial(GroupedModels, compile=compile)
    return run_epochs(config, seeds, data, engine, device=device, on_epoch=on_epoch,
                      score_test=score_test, grouped=True)
