"""A variant matrix of the training step on one device: what makes the full-width model fast.

    python benchmarks/gpu_matrix.py --json /tmp/matrix.json            # ~3 min on an H100
    python benchmarks/gpu_matrix.py --only 'group|bf16' --steps 100    # a subset
    python benchmarks/gpu_matrix.py --device cpu --width 8 --steps 3   # CPU smoke test

Every variant trains the same model (full preset, `--width` to shrink it) on the same data and
recipe, and is timed over the same `--steps` optimizer steps after `--warmup` steps (the device
synchronised around the timed part). Variants:
  precision   bf16 autocast | TF32 (fp32 with TF32 matmuls/convs) | plain fp32, channels_last
  layout      channels_last off (NCHW), bf16
  group       k seeds per vmapped step (study.cifar.group.GroupedModels), k = 1, 4, 8, 16
  procs       n independent processes on the device at once (aggregate img/s = sum of theirs)
  compile     torch.compile(mode="reduce-overhead") (CUDA graphs) of the step, one model and 8
The engines are seedwise's own (SingleModel, GroupedModels); only the NCHW variant swaps the
one line of SingleModel.step that puts the batch in channels_last. Each variant is independent:
one that fails (OOM, compile error) is recorded with its one-line reason and the rest run.
The notebook's loop (benchmarks/notebook_vs_engine.py) is timed in the same script, same steps,
as the reference of the `vs notebook` column. Prints one table; --json writes it all.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from study.cifar.config import apply_overrides, preset_config
from study.cifar.data import DataError, load_cifar10
from study.cifar.group import GroupedModels
from study.cifar.model import init_model, train_flops_per_image
from study.cifar.train import SingleModel, device_data, device_name, resolve_device, train_batch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from notebook_vs_engine import PEAKS, notebook_loop  # noqa: E402  (a sibling script, not a package)


@dataclass(frozen=True)
class Variant:
    name: str
    precision: str = "bf16"  # "bf16" | "tf32" | "fp32"
    channels_last: bool = True  # single-model engine only; GroupedModels runs NCHW
    group: int = 1  # seeds per step
    vmapped: bool = False  # GroupedModels (vmap over stacked weights) instead of SingleModel
    procs: int = 1  # concurrent processes
    compile: bool = False  # torch.compile(mode="reduce-overhead")
    cuda_only: bool = False


VARIANTS = [
    Variant("bf16"),
    Variant("tf32", precision="tf32", cuda_only=True),  # TF32 is a CUDA tensor-core mode
    Variant("fp32", precision="fp32"),
    Variant("bf16-nchw", channels_last=False),
    *(Variant(f"group{k}", group=k, vmapped=True) for k in (1, 4, 8, 16)),
    *(Variant(f"procs{n}", procs=n) for n in (4, 8)),  # procs1 is "bf16"
    Variant("compile-graphs", compile=True, cuda_only=True),
    Variant("compile-graphs-group8", group=8, vmapped=True, compile=True, cuda_only=True),
]


class NchwModel(SingleModel):
    """SingleModel with the model and batches left in the default NCHW layout."""

    def __init__(self, models, config, dev, autocast):
        super().__init__(models, config, dev, autocast)
        self.model = self.model.to(memory_format=torch.contiguous_format)

    def step(self, xb, yb):
        with self.autocast():
            out = self.model(xb[0])
            loss = F.cross_entropy(out, yb[0])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss[None], out[None]


def build_engine(v: Variant, config, dev: torch.device):
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = v.precision == "tf32"
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as run_epochs does

    def autocast():
        return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=v.precision == "bf16")

    models = [init_model(config, seed) for seed in range(v.group)]
    if v.vmapped:
        engine = GroupedModels(models, config, dev, autocast)
        if v.compile:  # GroupedModels' own compile is the default mode; this asks for CUDA graphs
            engine.step_fn, engine.compiled = torch.compile(engine.eager_step, mode="reduce-overhead"), True
        return engine
    engine = (SingleModel if v.channels_last else NchwModel)(models, config, dev, autocast)
    if v.compile:
        engine.model = torch.compile(engine.model, mode="reduce-overhead")
    return engine


def time_steps(engine, config, data, dev: torch.device, k: int, warmup: int, steps: int,
               ready=None, graphs: bool = False) -> float:
    """Seconds for `steps` engine steps after `warmup` ones, as run_epochs steps (device-side
    loss/accuracy sums, no per-step host sync). `ready()` is called between the two (barrier)."""
    x, y = device_data(config, data, dev, score_test=False)[:2]
    n, bs = len(x), config.batch_size
    g = torch.Generator().manual_seed(0)
    perms = torch.stack([torch.randperm(n, generator=g) for _ in range(k)]).to(dev)
    flips = (torch.rand(k, n, generator=g) < 0.5).to(dev)
    loss_sum = torch.zeros(k, device=dev)
    correct = torch.zeros(k, device=dev, dtype=torch.long)
    engine.train()

    def run(count: int, offset: int) -> None:
        nonlocal loss_sum, correct
        for i in range(offset, offset + count):
            start = (i * bs) % (n - bs + 1)
            xb, yb = train_batch(x, y, perms, flips, start, bs)
            if graphs:  # one training step per CUDA-graph tree iteration (torch's advice for loops)
                torch.compiler.cudagraph_mark_step_begin()
            losses, out = engine.step(xb, yb)
            loss_sum += losses.detach().float()
            correct += (out.argmax(-1) == yb).sum(-1)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    run(warmup, 0)
    sync()
    if ready is not None:
        ready()
    t0 = time.perf_counter()
    run(steps, warmup)
    sync()
    seconds = time.perf_counter() - t0
    if not torch.isfinite(loss_sum).all():
        raise FloatingPointError("non-finite training loss")
    return seconds


def measure_in_process(v: Variant, config, data, dev, warmup: int, steps: int, ready=None) -> dict:
    skips_before = cudagraph_skips() if v.compile else 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        engine = build_engine(v, config, dev)
        graphs = v.compile and dev.type == "cuda"
        seconds = time_steps(engine, config, data, dev, v.group, warmup, steps, ready, graphs)
    if v.compile and not engine.compiled:  # GroupedModels fell back to eager: not what we timed
        reason = next((str(w.message) for w in caught if "torch.compile" in str(w.message)), "fell back")
        raise RuntimeError(reason)
    images = steps * config.batch_size
    r = {"seconds": seconds, "img_per_s_model": images / seconds, "img_per_s": v.group * images / seconds}
    if v.compile:  # inductor may compile yet skip CUDA graphs (e.g. for mutated BN buffers): say so
        r["cudagraph_skips"] = cudagraph_skips() - skips_before
    return r


def cudagraph_skips() -> int:
    """Inductor's process-wide count of graphs it ran without CUDA graphs."""
    from torch._dynamo.utils import counters

    return counters["inductor"].get("cudagraph_skips", 0)


def measure_procs(v: Variant, args, warmup: int, steps: int) -> dict:
    """`v.procs` copies of the one-model bf16 variant, timed together: each warms up, says it is
    ready, waits for the go, then times its steps; the aggregate is the sum of their img/s."""
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as files:
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", tmp, "--device", args.device,
               "--width", str(args.width), "--steps", str(steps), "--warmup", str(warmup)]
        if args.data:
            cmd += ["--data", args.data]
        # stderr to files: a pipe nobody reads yet can fill and block its worker
        errs = [files.enter_context(open(os.path.join(tmp, f"stderr{i}"), "w+")) for i in range(v.procs)]
        workers = [subprocess.Popen(cmd + ["--worker-id", str(i)], stdout=subprocess.PIPE, stderr=errs[i],
                                    text=True) for i in range(v.procs)]
        try:  # a worker must never outlive this call (a failure, or SIGINT at the step's cap)
            deadline = time.monotonic() + 300
            while sum(f.startswith("ready") for f in os.listdir(tmp)) < v.procs:
                if any(w.poll() not in (None, 0) for w in workers) or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            open(os.path.join(tmp, "go"), "w").close()
            results = []
            for w, err in zip(workers, errs, strict=True):
                out, _ = w.communicate()
                if w.returncode != 0:
                    err.seek(0)
                    lines = [line for line in err.read().splitlines() if line.strip()]
                    raise RuntimeError(f"worker exited {w.returncode}: {lines[-1] if lines else 'no output'}")
                results.append(json.loads(out.strip().splitlines()[-1]))
        finally:
            for w in workers:
                if w.poll() is None:
                    w.kill()
                    w.wait()
    per = [r["img_per_s"] for r in results]
    return {"seconds": max(r["seconds"] for r in results), "img_per_s_model": sum(per) / len(per),
            "img_per_s": sum(per), "per_process": per}


def worker(args) -> None:
    dev = resolve_device(args.device)
    config = matrix_config(args.width)
    data = load_cifar10(args.data)

    def ready():
        open(os.path.join(args.worker, f"ready{args.worker_id}"), "w").close()
        while not os.path.exists(os.path.join(args.worker, "go")):
            time.sleep(0.01)

    r = measure_in_process(Variant("bf16"), config, data, dev, args.warmup, args.steps, ready)
    print(json.dumps(r))


def matrix_config(width: int):
    return apply_overrides(preset_config("full"), {"width": width})


def run_variant(v: Variant, args, config, data, dev) -> dict:
    if v.cuda_only and dev.type != "cuda":
        return {"status": "skipped", "reason": "CUDA only"}
    t0 = time.perf_counter()
    try:
        if v.procs > 1:
            r = measure_procs(v, args, args.warmup, args.steps)
        else:
            r = measure_in_process(v, config, data, dev, args.warmup, args.steps)
        r["status"] = "ok"
    except Exception as e:  # noqa: BLE001  any failure is this variant's outcome, not the run's
        first = (str(e).strip().splitlines() or [""])[0][:200]
        r = {"status": "failed", "reason": f"{type(e).__name__}: {first}"}
    finally:
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    r["wall_s"] = time.perf_counter() - t0
    return r


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--data", default=None, help="CIFAR-10 source (default: $SEEDWISE_DATA)")
    p.add_argument("--width", type=int, default=100, help="model width (100 = the notebook's)")
    p.add_argument("--steps", type=int, default=200, help="timed steps per variant")
    p.add_argument("--warmup", type=int, default=20, help="untimed steps first (cuDNN autotune, compile)")
    p.add_argument("--only", default=None, help="regex: run the variants whose name matches")
    p.add_argument("--budget", type=float, default=None, help="seconds: skip variants that would not fit")
    p.add_argument("--json", default=None, help="write the results to this JSON file")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker-id", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for name in ("width", "steps"):
        if getattr(args, name) < 1:
            print(f"gpu_matrix: --{name} must be >= 1, got {getattr(args, name)}", file=sys.stderr)
            return 2
    if args.warmup < 0:
        print(f"gpu_matrix: --warmup must be >= 0, got {args.warmup}", file=sys.stderr)
        return 2
    try:
        only = re.compile(args.only) if args.only else None
    except re.error as e:
        print(f"gpu_matrix: --only is not a valid regex ({e})", file=sys.stderr)
        return 2
    if args.worker:
        worker(args)
        return 0

    start = time.perf_counter()
    dev = resolve_device(args.device)
    config = matrix_config(args.width)
    try:
        data = load_cifar10(args.data)
    except DataError as e:
        print(f"gpu_matrix: --data: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    name = device_name(dev)
    peak = next((v for k, v in PEAKS.items() if k in name), None)
    flops = train_flops_per_image(config)
    nb = notebook_loop(config, data, dev, max_steps=args.steps)  # 5 untimed steps, then `steps`
    results = {"notebook": {"status": "ok", "img_per_s_model": nb["img_per_s"], "img_per_s": nb["img_per_s"],
                            "seconds": nb["seconds"], "precision": "fp32", "vs_notebook": 1.0,
                            "fraction_of_peak": nb["img_per_s"] * flops / peak if peak else None}}
    meta = {"device": name, "width": args.width, "steps": args.steps, "warmup": args.warmup,
            "flops_per_image": flops, "peak_flops": peak, "torch": torch.__version__}
    try:
        for v in VARIANTS:
            if only and not only.search(v.name):
                results[v.name] = {"status": "skipped", "reason": "not selected by --only"}
                continue
            done = [r["wall_s"] for r in results.values() if "wall_s" in r]
            guess = max(done) * max(v.procs, v.group) / 4 if done else 0.0  # rough: bigger variants take longer
            if args.budget is not None and time.perf_counter() - start + guess > args.budget:
                results[v.name] = {"status": "skipped", "reason": f"budget ({args.budget:.0f} s) would be exceeded"}
                continue
            r = results[v.name] = {**v.__dict__, **run_variant(v, args, config, data, dev)}
            if r["status"] == "ok":
                r["fraction_of_peak"] = r["img_per_s"] * flops / peak if peak else None
                r["vs_notebook"] = r["img_per_s"] / nb["img_per_s"]
            if args.json:  # after every variant: a step stopped at its time cap keeps what ran
                write_json(args.json, meta, results)
    except KeyboardInterrupt:  # SIGINT at the cap of paper/gpu_full_study.sh
        print("interrupted: the variants not listed below did not run", file=sys.stderr)
    print_table(results, name, args)
    if args.json:
        write_json(args.json, meta, results)
    return 0


def write_json(path: str, meta: dict, results: dict) -> None:
    with open(path, "w") as f:
        json.dump({**meta, "variants": results}, f, indent=2, default=str)


def print_table(results: dict, device: str, args) -> None:
    print(f"{device}: width {args.width}, {args.steps} timed steps after {args.warmup} (batch 100 per model)")
    print(f"{'variant':<22} {'img/s/model':>12} {'aggregate':>11} {'% bf16 peak':>11} {'vs notebook':>11}")
    for key, r in results.items():
        if r["status"] != "ok":
            print(f"{key:<22} {r['status']}: {r['reason']}")
            continue
        frac = f"{100 * r['fraction_of_peak']:.1f}%" if r.get("fraction_of_peak") else "-"
        note = f"  ({r['cudagraph_skips']} graphs ran without CUDA graphs)" if r.get("cudagraph_skips") else ""
        print(f"{key:<22} {r['img_per_s_model']:12.0f} {r['img_per_s']:11.0f} {frac:>11} "
              f"{r['vs_notebook']:10.2f}x{note}")


if __name__ == "__main__":
    sys.exit(main())
