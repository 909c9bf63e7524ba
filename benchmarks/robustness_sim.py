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
`analysis.sequential.simulate.run_sequential`, which makes `decide`'s decisions (a test checks
it). Fixed n: the paired t-test at n = 10 and 40 (`analysis.stats.paired.primary_test`'s test).
Rates are of any better/worse verdict, with Monte Carlo standard errors
sqrt(p (1 - p) / reps); for the sequential design also the part of it that carries the
skew guard's note, and the part reached at looks where no bad seed had been drawn yet.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis.sequential.decide import SequentialPlan  # noqa: E402
from analysis.sequential.simulate import BETTER, WORSE, run_sequential  # noqa: E402
from analysis.stats.skew_guard import caution, guarded_paired_test  # noqa: E402

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
    """Mean of a 0/1 array with its Monte Carlo SE."""
    p = float(np.mean(x))
    return f"{p:.3f} ({np.sqrt(p * (1 - p) / x.size):.3f})"


def fixed_verdict(d: np.ndarray, n: int, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Signed verdict (+1 / -1 / 0) of the fixed-n paired test on the first n differences
    (`compare`'s primary test: the skew-guarded paired t), and whether it carries the note."""
    x = d[:, 0, :n]
    _, p, g = guarded_paired_test(x)
    mean = x.mean(axis=1)
    verdict = np.where(p < alpha, np.sign(mean), 0).astype(int)
    return verdict, (verdict != 0) & caution(mean, g)


def table(rng: np.random.Generator, reps: int, plan: SequentialPlan) -> dict[str, dict]:
    """Per law: 0/1 arrays of any better/worse verdict, with the part that carries the skew
    note and (sequential) the part reached before any bad seed was drawn."""
    out = {}
    for law in LAWS:
        d = draw(law, rng, reps, plan.max_seeds)
        sim = run_sequential(plan, d)
        verdict = np.isin(sim.decision[:, 0], [BETTER, WORSE])
        bad = d[:, 0, :] < -5 if law == "bad-seed" else np.zeros(d.shape[::2], dtype=bool)
        seen = (np.cumsum(bad, axis=1)[np.arange(reps), sim.seeds[:, 0] - 1]) > 0
        row = {"seq": verdict, "seq noted": verdict & sim.noted[:, 0],
               "seq clean": verdict & ~seen}
        for n in (10, 40):
            v, noted = fixed_verdict(d, n)
            row[f"fixed {n}"], row[f"fixed {n} noted"] = v != 0, noted
            row[f"fixed {n} clean"] = (v != 0) & ~bad[:, :n].any(axis=1)
        out[law] = row
    return out


def power(rng: np.random.Generator, reps: int, plan: SequentialPlan) -> dict[str, np.ndarray]:
    """Better verdicts and seeds used at a 1-sd effect (+1.5) on normal differences."""
    d = draw("normal", rng, reps, plan.max_seeds, effect=SD)
    sim = run_sequential(plan, d)
    return {"seq": sim.decision[:, 0] == BETTER, "seeds": sim.seeds[:, 0],
            "fixed 10": fixed_verdict(d, 10)[0] > 0, "fixed 40": fixed_verdict(d, 40)[0] > 0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2000 replications instead of 20000")
    ap.add_argument("--seed", type=int, default=20261203)
    args = ap.parse_args()
    reps = 2000 if args.quick else 20000
    rng = np.random.default_rng(args.seed)
    plan = SequentialPlan(baseline="base", arms=("a",), margin=0.5, max_seeds=40)
    rows = table(rng, reps, plan)
    print(f"{reps} replications per row; rate of any better/worse verdict (Monte Carlo SE); "
          "'no note': the part whose verdict carries no skew-guard caution\n")
    print("| law | sequential | no note | fixed n=10 | no note | fixed n=40 | no note |")
    print("|---|---|---|---|---|---|---|")
    for law, r in rows.items():
        cells = [f"{rate(r[c])} | {rate(r[c] & ~r[c + ' noted'])}"
                 for c in ("seq", "fixed 10", "fixed 40")]
        print(f"| {law} | " + " | ".join(cells) + " |")
    bad = rows["bad-seed"]
    print(f"\nBad seed, verdicts on samples without a bad seed (exact normal samples with mean "
          f"+0.5): sequential {rate(bad['seq clean'])}, fixed n=10 {rate(bad['fixed 10 clean'])}, "
          f"n=40 {rate(bad['fixed 40 clean'])}")
    pw = power(rng, reps, plan)
    seeds = pw["seeds"]
    print(f"\nPower at a 1-sd effect (normal, +{SD:g}): sequential {rate(pw['seq'])} with "
          f"{seeds.mean():.2f} ({seeds.std(ddof=1) / np.sqrt(reps):.2f}) seeds on average; "
          f"fixed n=10 {rate(pw['fixed 10'])}, n=40 {rate(pw['fixed 40'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
