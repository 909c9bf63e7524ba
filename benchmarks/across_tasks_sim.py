"""Size and power of the across-task verdict's test (`analysis.tasks.meta`) on runs shaped like
real ones: right-skewed seed noise, bad seeds, failed runs, tasks that differ in noise.

    python benchmarks/across_tasks_sim.py            # 10000 replications per row (~2 min)
    python benchmarks/across_tasks_sim.py --quick    # 2000 replications

Each replication is one study of two arms on k tasks, 8 seeds each. On task t (level 60 + 3t,
noise scale s_t ~ lognormal(0, 0.5): some tasks are noisier than others) seed i gives both
arms a shared offset s_t N(0, 1.5^2), 6 s_t lower on a bad seed (10% of seeds, both arms: the
pairing cancels it); each run adds its own -s_t Gamma(1.5, 1.2) (a long lower tail). The arm's
true effect on task t is `effect` + N(0, tau^2) (the random-effects model; `effect` 0 is the
null "no effect on average"). A run fails with probability `fail`, either arm, independently:
scored at chance (10, some 50 points down) or, with no chance level, at the worst score of its
task (`analysis.tasks.aggregates.fill_failures`).

Columns: the rejection rate at alpha 0.05 of the verdict's test (`pooled_t` of the per-task
Hodges-Lehmann effects), and of the previous test (per-task mean differences pooled by
DerSimonian-Laird, modified Hartung-Knapp-Sidik-Jonkman, t on k-1 df), each with its
Monte-Carlo standard error sqrt(p (1 - p) / reps).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis.tasks.meta import hodges_lehmann, pooled_t  # noqa: E402

SEEDS = 8
ALPHA = 0.05
CHANCE = 10.0
SIZE_ROWS = [(k, tau, fail, fill) for k in (3, 5, 8, 12) for tau in (0.0, 1.0, 2.0)
             for fail, fill in ((0.0, "chance"), (0.1, "chance"), (0.2, "chance"),
                                (0.1, "worst"), (0.2, "worst"))]
POWER_ROWS = [(k, tau, fail, effect) for k in (3, 5, 8, 12) for tau in (0.0, 0.5)
              for fail in (0.0, 0.1) for effect in (1.0, 2.0)]


def simulate(gen: np.random.Generator, reps: int, k: int, *, tau: float, fail: float,
             fill: str = "chance", effect: float = 0.0, seeds: int = SEEDS) -> np.ndarray:
    """Paired differences arm - baseline, (reps, k, seeds), under the law of the docstring."""
    shape = (reps, k, seeds)
    scale = np.exp(gen.normal(0.0, 0.5, (reps, k, 1)))
    level = 60.0 + 3.0 * np.arange(k)[None, :, None]
    shared = scale * (gen.normal(0.0, 1.5, shape) - 6.0 * (gen.random(shape) < 0.1))
    base = level + shared - scale * gen.gamma(1.5, 1.2, shape)
    theta = effect + gen.normal(0.0, tau, (reps, k, 1))
    arm = level + theta + shared - scale * gen.gamma(1.5, 1.2, shape)
    failed_a, failed_b = gen.random(shape) < fail, gen.random(shape) < fail
    if fill == "chance":
        return np.where(failed_a, CHANCE, arm) - np.where(failed_b, CHANCE, base)
    a, b = np.where(failed_a, np.nan, arm), np.where(failed_b, np.nan, base)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # every run of a task failed: NaN worst
        worst = np.fmin(np.nanmin(a, axis=2, keepdims=True), np.nanmin(b, axis=2, keepdims=True))
    return np.where(failed_a, worst, a) - np.where(failed_b, worst, b)


def verdict_p(d: np.ndarray) -> np.ndarray:
    """p-value of the verdict's test: t over tasks of the per-task Hodges-Lehmann effects."""
    return pooled_t(hodges_lehmann(d)).pvalue


def previous_p(d: np.ndarray) -> np.ndarray:
    """p-value of the previous test: mean differences, DL weights, modified HKSJ, t(k-1)."""
    n, k = d.shape[-1], d.shape[-2]
    y, v = d.mean(-1), d.var(-1, ddof=1) / n
    w = 1 / v
    fixed = (w * y).sum(-1, keepdims=True) / w.sum(-1, keepdims=True)
    q = (w * (y - fixed) ** 2).sum(-1)
    c = w.sum(-1) - (w**2).sum(-1) / w.sum(-1)
    wr = 1 / (v + np.maximum(0.0, (q - (k - 1)) / c)[..., None])
    mu = (wr * y).sum(-1) / wr.sum(-1)
    hksj = (wr * (y - mu[..., None]) ** 2).sum(-1) / ((k - 1) * wr.sum(-1))
    se = np.sqrt(np.maximum(1 / wr.sum(-1), hksj))
    return 2 * stats.t.sf(np.abs(mu) / se, k - 1)


def rate(p: np.ndarray) -> tuple[float, float]:
    """Rejection rate at ALPHA (a NaN p, a task where every run failed, counts as no rejection)
    and its Monte-Carlo standard error."""
    r = float(np.mean(p < ALPHA))
    return r, float(np.sqrt(r * (1 - r) / p.size))


def fmt(r: tuple[float, float]) -> str:
    return f"{r[0]:.3f} ({r[1]:.3f})"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2000 replications per row")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args(argv)
    reps = args.reps or (2000 if args.quick else 10000)
    gen = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    print(f"Size at alpha {ALPHA} (no effect on average), {reps} replications per row, "
          f"{SEEDS} seeds per task\n")
    print("| tasks | tau | failed runs | filled at | verdict's test | previous test |")
    print("|---|---|---|---|---|---|")
    for k, tau, fail, fill in SIZE_ROWS:
        d = simulate(gen, reps, k, tau=tau, fail=fail, fill=fill)
        print(f"| {k} | {tau:g} | {fail:.0%} | {fill if fail else '-'} | "
              f"{fmt(rate(verdict_p(d)))} | {fmt(rate(previous_p(d)))} |", flush=True)
    print(f"\nPower at alpha {ALPHA}: the effect on every task (plus N(0, tau^2)), failures at "
          "chance\n")
    print("| tasks | effect | tau | failed runs | verdict's test | previous test |")
    print("|---|---|---|---|---|---|")
    for k, tau, fail, effect in POWER_ROWS:
        d = simulate(gen, reps, k, tau=tau, fail=fail, effect=effect)
        print(f"| {k} | {effect:g} | {tau:g} | {fail:.0%} | {fmt(rate(verdict_p(d)))} | "
              f"{fmt(rate(previous_p(d)))} |", flush=True)
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
