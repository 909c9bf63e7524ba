"""A/A error and power of the sequential and fixed-n verdicts on skewed data and bad seeds.

    python benchmarks/robustness_sim.py            # 20000 replications per row (~2 min)
    python benchmarks/robustness_sim.py --quick    # 2000 replications

Laws of the paired differences d (arm - baseline), all with mean 0 under A/A (issue 23):

* normal:   d ~ N(0, 1.5^2)
* t3:       d = 1.5 T / sqrt(3), T ~ Student t, 3 df (sd 1.5)
* bad-seed: d = e + 0.5 - 10 B, e ~ N(0, 1.5^2), B ~ Bernoulli(0.05): 5% of the arm's seeds
            10 points lower, the others 0.5 higher, so E[d] = 0 (sd 2.65: a bad seed alone
            has sd 10 sqrt(0.05 0.95) = 2.18, so the total cannot be 1.5)
* lognormal sigma s: d = 1.5 (exp(s Z) - exp(s^2/2)) / sqrt((exp(s^2) - 1) exp(s^2)),
            Z ~ N(0, 1): right-skewed, mean 0, sd 1.5 (skewness 1.75 at s = 0.5, 6.2 at s = 1)

Sequential: the public plan (looks every 5 seeds up to 40, margin 0.5, alpha 0.05) through
`analysis.sequential_sim.run_sequential`, which makes `decide`'s decisions (a test checks
it). Fixed n: the paired t-test at n = 10 and 40 (`analysis.comparison.primary_test`'s test).
Rates are of any better/worse verdict, with Monte Carlo standard errors
sqrt(p (1 - p) / reps); for the sequential design also the part of it that carries the
skew guard's note, and the part reached at looks where no bad seed had been drawn yet.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis.sequential import SequentialPlan  # noqa: E402
from analysis.sequential_sim import BETTER, WORSE, run_sequential  # noqa: E402

SD = 1.5
LAWS = ("normal", "t3", "bad-seed", "lognormal 0.5", "lognormal 1")


def draw(law: str, rng: np.random.Generator, reps: int, n: int, effect: float = 0.0
         ) -> np.ndarray:
    """Paired differences (reps, 1, n) of `law` (module docstring), plus `effect`."""
    shape = (reps, 1, n)
    if law == "normal":
        d = rng.normal(0.0, SD, shape)
    elif law == "t3":
        d = rng.standard_t(3, shape) * SD / np.sqrt(3)
    elif law == "bad-seed":
        d = rng.normal(0.0, SD, shape) + 0.5 - 10.0 * (rng.random(shape) < 0.05)
    elif law.startswith("lognormal"):
        s = float(law.split()[1])
        z = np.exp(s * rng.normal(size=shape))
        d = (z - np.exp(s * s / 2)) / np.sqrt((np.exp(s * s) - 1) * np.exp(s * s)) * SD
    else:
        raise ValueError(f"`law` must be one of {LAWS}, got {law!r}")
    return d + effect


def rate(x: np.ndarray) -> str:
    p = float(np.mean(x))
    return f"{p:.3f} ({np.sqrt(p * (1 - p) / x.size):.3f})"


def fixed_verdict(d: np.ndarray, n: int, alpha: float = 0.05) -> np.ndarray:
    """Any better/worse of the fixed-n paired t-test on the first n differences."""
    return stats.ttest_1samp(d[:, 0, :n], 0.0, axis=1).pvalue < alpha


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2000 replications instead of 20000")
    ap.add_argument("--seed", type=int, default=20261203)
    args = ap.parse_args()
    reps = 2000 if args.quick else 20000
    rng = np.random.default_rng(args.seed)
    plan = SequentialPlan(baseline="base", arms=("a",), margin=0.5, max_seeds=40)
    print(f"{reps} replications per row; rate (Monte Carlo SE)\n")
    print("| law | sequential: any better/worse | of which noted | of which before any bad "
          "seed | fixed n=10 | fixed n=40 |")
    print("|---|---|---|---|---|---|")
    for law in LAWS:
        d = draw(law, rng, reps, plan.max_seeds)
        out = run_sequential(plan, d)
        verdict = np.isin(out.decision[:, 0], [BETTER, WORSE])
        noted = verdict & out.noted[:, 0]
        bad = d[:, 0, :] < -5 if law == "bad-seed" else np.zeros((reps, plan.max_seeds), bool)
        seen = np.array([bad[i, :s].any() for i, s in enumerate(out.seeds[:, 0])])
        print(f"| {law} | {rate(verdict)} | {rate(noted)} | {rate(verdict & ~seen)} | "
              f"{rate(fixed_verdict(d, 10))} | {rate(fixed_verdict(d, 40))} |")
    d = draw("normal", rng, reps, plan.max_seeds, effect=SD)
    out = run_sequential(plan, d)
    print(f"\nPower at a 1-sd effect (normal, +{SD:g}): sequential {rate(out.decision == BETTER)}"
          f", mean seeds {out.seeds.mean():.2f} ({out.seeds.std() / np.sqrt(reps):.2f}); "
          f"fixed n=10 {rate(fixed_verdict(d, 10) & (d[:, 0, :10].mean(1) > 0))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
