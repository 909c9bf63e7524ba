"""seedwise's own cost per run: a user experiment that does nothing, N runs on SQLite.

    python benchmarks/overhead.py                # 250, 500 and 1000 runs; then a rerun of 1000
    python benchmarks/overhead.py --runs 1000 --jobs 2
    python benchmarks/overhead.py --timeout 60   # each run in a forked child that can be killed

Everything measured is bookkeeping: claiming each run, storing its Optuna trial, marking it
done, dispatching through joblib, exporting runs.csv/epochs.csv, and the summary. The brief
asks for <= 0.1 s per run, growing linearly (the same per-run cost at 250 and at 1000 runs),
and a rerun with nothing to do that answers in seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

NOOP = "def train(config, seed):\n    return {'score': float(seed % 7) + config['shift']}\n"
ARMS = 10


def spec_file(folder: Path) -> Path:
    (folder / "noop_experiment.py").write_text(NOOP)
    arms = "".join(f"[arms.a{i}]\nshift = {float(i)}\n" for i in range(ARMS))
    path = folder / "noop.toml"
    path.write_text('experiment = "noop_experiment:train"\nname = "noop"\n[base]\nshift = 0.0\n'
                    f'[analysis]\nmetric = "score"\nbaseline = "a0"\n{arms}')
    return path


def timed_study(spec: Path, results: Path, runs: int, jobs: int, timeout: float | None) -> tuple[float, int]:
    from study import run_study

    quiet = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stderr(quiet), contextlib.redirect_stdout(quiet):
        result = run_study(spec, seeds=runs // ARMS, results=results, jobs=jobs, timeout=timeout)
    return time.perf_counter() - start, len(result.runs)


def cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, nargs="+", default=[250, 500, 1000], help="study sizes (multiples of 10)")
    p.add_argument("--jobs", type=int, default=1, help="joblib workers (1: in-process, no IPC)")
    p.add_argument("--timeout", type=float, help="the runner's --timeout (default: none)")
    args = p.parse_args(argv)
    print(f"cpu: {cpu_model()} ({os.cpu_count()} cores); python {sys.version.split()[0]}; jobs {args.jobs}; "
          f"timeout {args.timeout}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        spec = spec_file(tmp)
        sys.path.insert(0, str(tmp))
        timed_study(spec, tmp / "warm-up", ARMS, args.jobs, args.timeout)  # one-time imports (optuna, torch, pandas)
        for n in args.runs:
            seconds, stored = timed_study(spec, tmp / f"r{n}", n, args.jobs, args.timeout)
            print(f"{n:>5} runs: {seconds:7.1f} s, {1000 * seconds / n:6.1f} ms per run ({stored} stored)", flush=True)
        n = args.runs[-1]
        seconds, stored = timed_study(spec, tmp / f"r{n}", n, args.jobs, args.timeout)
        print(f"rerun of {n} with nothing to do: {seconds:.1f} s ({stored} runs exported)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
