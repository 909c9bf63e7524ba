"""The notebook's 7-conv CIFAR-10 ConvNet, with BatchNorm placement and width as config.

Nothing else is changed: 3x3 then six 5x5 valid convs, ReLU after each, BatchNorm (when
placed) between conv and ReLU exactly as the notebook, then an MLP head 360-128-64-10.
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn

from study.cifar.config import N_CONVS, Config

KERNELS = (3, 5, 5, 5, 5, 5, 5)  # 32 -> 30 -> 26 -> 22 -> 18 -> 14 -> 10 -> 6


def build_model(config: Config) -> nn.Sequential:
    """Build the ConvNet. Layers that draw random numbers are created in the same order
    whatever the BN placement (BatchNorm draws none), so equal widths give equal inits."""
    width, bn = config.width, set(config.bn_layers)
    layers: list[nn.Module] = []
    in_ch = 3
    for i, k in enumerate(KERNELS, start=1):
        out_ch = 10 if i == N_CONVS else width
        layers.append(nn.Conv2d(in_ch, out_ch, k))
        if i in bn:
            layers.append(nn.BatchNorm2d(out_ch))
        layers.append(nn.ReLU())
        in_ch = out_ch
    layers += [nn.Flatten(), nn.Linear(360, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10)]
    return nn.Sequential(*layers)


def count_bn(model: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def weights_hash(model: nn.Module) -> str:
    """Hash of the conv and linear weights: equal hashes in two runs mean equal inits."""
    h = hashlib.sha256()
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            for p in (m.weight, m.bias):
                if p is None:  # a layer built with bias=False
                    continue
                h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def train_flops_per_image(config: Config) -> float:
    """Forward+backward FLOPs per training image (about 3x the forward MACs x 2)."""
    size, in_ch, macs = 32, 3, 0
    for i, k in enumerate(KERNELS, start=1):
        out_ch = 10 if i == N_CONVS else config.width
        size -= k - 1
        macs += size * size * out_ch * in_ch * k * k
        in_ch = out_ch
    macs += 360 * 128 + 128 * 64 + 64 * 10
    return 2 * macs * 3.0


@torch.no_grad()
def init_model(config: Config, init_seed: int) -> nn.Sequential:
    """Build the model with weights drawn from the `init` stream only."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        return build_model(config)
