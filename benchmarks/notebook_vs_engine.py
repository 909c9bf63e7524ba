"""Time the notebook's training loop against seedwise's engine, same model, recipe and device.

    python benchmarks/notebook_vs_engine.py            # full-size model, one epoch each
    python benchmarks/notebook_vs_engine.py --quick    # about a minute on a 2-core CPU

(a) a faithful reimplementation of the notebook loop: a torchvision-style Dataset that builds
    a PIL image per item (as torchvision.datasets.CIFAR10.__getitem__ does) + the notebook's
    transforms, DataLoader(batch 100, shuffle, num_workers=2), fp32 NCHW, `.item()` per step;
(b) seedwise's `train_one` (uint8 data on the device, on-device flip/normalise, channels_last,
    bf16 autocast where native, one host sync per epoch);
(c) with --group N (default 8 on CUDA, off on CPU): `train_group`, N seeds in one vmapped step
    (batch 100 per model, as the recipe says); its img/s counts every model's images, so it
    compares per-model throughput x N models with (a) and (b). --compile adds torch.compile.
Prints img/s, s/epoch, achieved TFLOP/s, fraction of the device's peak and the ratios to (a);
writes the same as JSON (--json PATH).
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch import nn

from study.cifar.config import apply_overrides, preset_config
from study.cifar.data import load_cifar10, split_indices
from study.cifar.model import build_model, train_flops_per_image
from study.cifar.train import device_name, resolve_device, train_one
from study.provenance import provenance

# Dense bf16 tensor-core peak from the vendor data sheets (FLOP/s); None where unknown.
PEAKS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


class NotebookCifar(torch.utils.data.Dataset):
    """What torchvision.datasets.CIFAR10 does per item: HWC uint8 -> PIL -> transform."""

    def __init__(self, x_chw: torch.Tensor, y: torch.Tensor, transform):
        self.data = x_chw.permute(0, 2, 3, 1).contiguous().numpy()
        self.targets = y.tolist()
        self.transform = transform

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.data[i])), self.targets[i]


def notebook_loop(config, data, device, max_steps: int | None) -> dict:
    import torchvision.transforms as T

    transform = T.Compose([T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize((0.5,) * 3, (0.5,) * 3)])
    train_idx, _ = split_indices(config)
    idx = torch.from_numpy(train_idx)
    loader = torch.utils.data.DataLoader(NotebookCifar(data.train_x[idx], data.train_y[idx], transform),
                                         batch_size=100, shuffle=True, num_workers=2)
    model = build_model(config).to(device)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=1e-4)
    model.train()
    images, start = 0, None
    for step, (inputs, labels) in enumerate(loader):
        if step == 5:  # after worker start-up and cuDNN warm-up
            if device.type == "cuda":
                torch.cuda.synchronize()
            start, images = time.perf_counter(), 0
        inputs, labels = inputs.to(device), labels.to(device)
        optimizer.zero_grad()
        outputs = model(inputs)
        loss = criterion(outputs, labels)
        loss.backward()
        optimizer.step()
        running = loss.item()  # noqa: F841  the notebook's per-step host sync
        _, predicted = outputs.max(1)
        predicted.eq(labels).sum().item()
        images += labels.size(0)
        if max_steps and step + 1 >= max_steps + 5:
            break
    seconds = time.perf_counter() - start
    return {"images": images, "seconds": seconds, "img_per_s": images / seconds, "precision": "fp32"}


def engine(config, data, device) -> dict:
    cfg = apply_overrides(config, {"epochs": 2, "test_every_epoch": False})
    result = train_one(cfg, 0, data, device=device)
    last = result.epochs[-1]  # the second epoch: warm-up (cuDNN autotune) excluded
    return {"images": cfg.train_size, "seconds": last.train_seconds,
            "img_per_s": cfg.train_size / last.train_seconds, "precision": result.precision}


def grouped(config, data, device, n: int, compile: bool) -> dict:
    from study.cifar.group import train_group

    cfg = apply_overrides(config, {"epochs": 2, "test_every_epoch": False})
    results = train_group(cfg, list(range(n)), data, device=device, compile=compile)
    last = results[0].epochs[-1]  # the second epoch: warm-up and compilation excluded
    return {"images": n * cfg.train_size, "seconds": last.train_seconds, "models": n,
            "img_per_s": n * cfg.train_size / last.train_seconds, "precision": results[0].precision,
            "compiled": results[0].compiled, "first_epoch_s": results[0].epochs[0].train_seconds}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small subset (2,000 images) for CPUs and CI")
    p.add_argument("--device", default="auto")
    p.add_argument("--data", default=None)
    p.add_argument("--json", default=None, help="write the results to this JSON file")
    p.add_argument("--group", type=int, default=None,
                   help="also time N seeds per vmapped step (default: 8 on CUDA, 0 = skip on CPU)")
    p.add_argument("--compile", action="store_true", help="torch.compile the grouped step")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    config = preset_config("full")
    if args.quick:
        # small subsets: the point is the ratio, not the absolute time
        config = apply_overrides(config, {"train_size": 2_000, "val_size": 500, "test_size": 1_000})
    data = load_cifar10(args.data)
    flops = train_flops_per_image(config)
    name = device_name(device)
    peak = next((v for k, v in PEAKS.items() if k in name), None)
    a = notebook_loop(config, data, device, max_steps=15 if args.quick else None)
    b = engine(config, data, device)
    group = args.group if args.group is not None else (8 if device.type == "cuda" else 0)
    c = grouped(config, data, device, group, args.compile) if group > 0 else None
    out = {"device": name, "precision_engine": b["precision"], "train_images": config.train_size,
           "flops_per_image": flops, "peak_flops": peak, **provenance()}
    loops = [("notebook", a), ("engine", b)] + ([(f"engine_group{group}", c)] if c else [])
    for key, r in loops:
        r["s_per_45k_epoch"] = 45_000 / r["img_per_s"]
        r["tflops"] = r["img_per_s"] * flops / 1e12
        r["fraction_of_peak"] = r["tflops"] * 1e12 / peak if peak else None
        out[key] = r
        r["vs_notebook"] = r["img_per_s"] / a["img_per_s"]
    out["speedup"] = b["img_per_s"] / a["img_per_s"]
    for key, r in loops:
        frac = f"{100 * r['fraction_of_peak']:.1f}% of peak" if r["fraction_of_peak"] else "peak unknown"
        print(f"{key:>14}: {r['img_per_s']:9.0f} img/s  {r['s_per_45k_epoch']:8.2f} s/epoch  "
              f"{r['tflops']:7.2f} TFLOP/s  {frac}  ({r['precision']})  {r['vs_notebook']:.2f}x notebook")
    print(f"engine / notebook = {out['speedup']:.2f}x on {name}")
    if c:
        print(f"engine, {group} seeds per step / notebook = {c['vs_notebook']:.2f}x "
              f"(per-model throughput x {group} models{', compiled' if c['compiled'] else ''})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2, default=str)


if __name__ == "__main__":
    main()
