"""Error rates, power and seeds used of sequential studies, by simulation (run by hand).

    python benchmarks/sequential_sim.py            # 20000 replications per row (~1 min)
    python benchmarks/sequential_sim.py --quick    # 2000 replications
    python benchmarks/sequential_sim.py --margin 1 --known-variance   # other margin; z limits

Seed noise is estimated from results/notebook-ablation-quick (arms baseline and
no_scheduler share 32 seeds): per-arm sd and the correlation between arms of the same seed.
Prints Markdown tables: A/A error (sequential vs naive repeated testing), power and mean
seeds per arm at planted effects next to two fixed-n paired t-tests (sized for the margin,
and the oracle sized for the true effect, both 80% power), and the familywise error with
four arms against one baseline.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis.sequential.boundaries import z_boundaries, z_power  # noqa: E402
from analysis.sequential.decide import SequentialPlan  # noqa: E402
from analysis.sequential.simulate import (  # noqa: E402
    BETTER,
    EQUIVALENT,
    WORSE,
    run_fixed,
    run_naive,
    run_sequential,
    simulate_differences,
    size_max_seeds,
)
from analysis.stats.power import seeds_needed  # noqa: E402

RUNS = ROOT / "results" / "notebook-ablation-quick" / "runs.csv"
# max_seeds of each design is sized by simulation (`size_max_seeds`): the smallest reaching
# 80% power at effect = margin, as the fixed design sized for the margin does.
DESIGNS = {
    "default (power rho=1, looks 5,10,..)": dict(spending="power", spending_param=1.0,
                                                 first_look=5, look_every=5),
    "tuned (power rho=0.75, looks 3,5,7,..)": dict(spending="power", spending_param=0.75,
                                                   first_look=3, look_every=2),
    "O'Brien-Fleming-type, looks 5,10,..": dict(spending="obrien-fleming", spending_param=None,
                                                first_look=5, look_every=5),
}


def _matched(effect: float, sd_diff: float, power: float) -> str:
    """Seeds of a fixed design with the sequential design's power (capped at 99.9%)."""
    target = min(power, 0.999)
    if target <= 0.05:
        return "-"
    return f"{seeds_needed(effect, sd_diff, paired=True, power=target)} ({target:.1%})"


def known_variance_limits(margin: float, sd_diff: float, rng) -> None:
    """What spending design could achieve without the small-n t penalty (z, known sd)."""
    d = margin / sd_diff
    n_fix = ((stats.norm.isf(0.025) + stats.norm.isf(0.2)) / d) ** 2
    print(f"\nKnown-variance z design (no t penalty), power family, sized for 80% power at "
          f"the margin; fixed z design: {n_fix:.1f} seeds. Mean seeds (change vs fixed):\n")
    print("| rho | looks | max seeds | effect 0.5 | effect 1 | effect 2 |")
    print("|---|---|---|---|---|---|")
    for rho in (0.5, 0.75, 1.0, 2.0, 3.0):
        for every, first in ((1, 2), (5, 5)):
            for n_max in range(int(n_fix), 300):
                looks = np.array([*range(first, n_max, every), n_max])
                info = (*(looks[:-1] / n_max), 1.0)
                if z_power("power", rho, 0.05, info, d * np.sqrt(n_max)) >= 0.8:
                    break
            bound = np.array(z_boundaries("power", rho, 0.05, info))
            cells = []
            for effect in (0.5, 1.0, 2.0):
                path = rng.normal(effect / sd_diff, 1, (20000, n_max)).cumsum(axis=1)
                z = np.abs(path[:, looks - 1]) / np.sqrt(looks)
                hit = z >= bound
                stop = looks[np.where(hit.any(axis=1), hit.argmax(axis=1), looks.size - 1)]
                cells.append(f"{stop.mean():.1f} ({stop.mean() / n_fix - 1:+.0%})")
            print(f"| {rho:g} | every {every} from {first} | {n_max} | " + " | ".join(cells) + " |")


def observed_noise() -> tuple[float, float, float]:
    runs = pd.read_csv(RUNS)
    wide = runs[runs.status == "complete"].pivot(index="seed", columns="arm", values="test_acc")
    pair = wide[["baseline", "no_scheduler"]].dropna()
    sd = float(np.sqrt((pair.var(ddof=1)).mean()))
    rho = float(pair.corr().iloc[0, 1])
    sd_diff = float((pair.no_scheduler - pair.baseline).std(ddof=1))
    return sd, rho, sd_diff, len(pair)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2000 replications instead of 20000")
    ap.add_argument("--seed", type=int, default=20261127)
    ap.add_argument("--margin", type=float, default=0.5)
    ap.add_argument("--known-variance", action="store_true",
                    help="also show what a z design with known sd could achieve")
    args = ap.parse_args()
    reps = 2000 if args.quick else 20000
    rng = np.random.default_rng(args.seed)
    sd, rho, sd_diff_obs, n_pairs = observed_noise()
    sd_diff = sd * np.sqrt(2 * (1 - rho))
    print(f"noise from {RUNS.relative_to(ROOT)} ({n_pairs} paired seeds): per-arm sd "
          f"{sd:.2f}, correlation {rho:.2f}, sd of paired differences {sd_diff_obs:.2f} "
          f"(model: {sd_diff:.2f}); margin {args.margin:g}; {reps} replications per row\n")
    n_margin = seeds_needed(args.margin, sd_diff, paired=True)
    plans = {}
    for name, kw in DESIGNS.items():
        draft = SequentialPlan(baseline="base", arms=("a",), margin=args.margin, **kw)
        n_max = size_max_seeds(draft, sd_diff, seed=args.seed)
        plans[name] = SequentialPlan.from_dict(draft.to_dict() | {"max_seeds": n_max})

    print("| design | max seeds | A/A error (any better/worse) | naive repeated t-tests, same looks |")
    print("|---|---|---|---|")
    for name, plan in plans.items():
        d = simulate_differences(rng, reps, plan.max_seeds, [0.0], sd=sd, rho=rho)
        out = run_sequential(plan, d)
        naive, _ = run_naive(d, plan.looks(), plan.alpha)
        err = np.isin(out.decision, [BETTER, WORSE]).mean()
        eq = (out.decision == EQUIVALENT).mean()
        print(f"| {name} | {plan.max_seeds} | {err:.4f} (equivalent: {eq:.2f}, mean seeds "
              f"{out.seeds.mean():.1f}) | {naive.mean():.4f} |")

    print(f"\nFixed n sized for the margin ({args.margin:g}): {n_margin} seeds per arm.\n")
    print("| effect | design | power | mean seeds | fixed@margin: power, seeds | "
          "oracle: power, seeds | seeds vs fixed@margin | seeds vs oracle | "
          "oracle at the same power |")
    print("|---|---|---|---|---|---|---|---|---|")
    for effect in (0.5, 1.0, 2.0):
        n_oracle = seeds_needed(effect, sd_diff, paired=True)
        for name, plan in plans.items():
            n_sim = max(plan.max_seeds, n_margin, n_oracle)
            d = simulate_differences(rng, reps, n_sim, [effect], sd=sd, rho=rho)
            out = run_sequential(plan, d)
            power = (out.decision == BETTER).mean()
            asn = out.seeds.mean()
            p_margin = (run_fixed(d, n_margin, plan.alpha) > 0).mean()
            p_oracle = (run_fixed(d, n_oracle, plan.alpha) > 0).mean()
            print(f"| {effect:g} | {name} | {power:.3f} | {asn:.1f} | {p_margin:.3f}, "
                  f"{n_margin} | {p_oracle:.3f}, {n_oracle} | {asn / n_margin - 1:+.0%} | "
                  f"{asn / n_oracle - 1:+.0%} | {_matched(effect, sd_diff, power)} |")

    default = plans["default (power rho=1, looks 5,10,..)"]
    draft = SequentialPlan.from_dict(default.to_dict() | {
        "arms": ["null1", "null2", "plus1", "plus2"]})
    plan = SequentialPlan.from_dict(draft.to_dict() | {
        "max_seeds": size_max_seeds(draft, sd_diff, seed=args.seed)})
    print(f"\nFour arms vs one baseline, default design sized for alpha/4 "
          f"(max {plan.max_seeds} seeds):\n")
    for effects in ((0.0, 0.0, 0.0, 0.0), (0.0, 0.0, 1.0, 2.0)):
        d = simulate_differences(rng, reps, plan.max_seeds, list(effects), sd=sd, rho=rho)
        out = run_sequential(plan, d)
        null = np.array(effects) == 0
        fwer = np.isin(out.decision[:, null], [BETTER, WORSE]).any(axis=1).mean()
        power = [(out.decision[:, j] == BETTER).mean() for j in np.flatnonzero(~null)]
        naive, _ = run_naive(d, plan.looks(), plan.alpha)
        print(f"- effects {effects}: familywise error {fwer:.4f} (naive repeated tests without "
              f"Holm: {naive[:, null].any(axis=1).mean():.4f}); power of the real effects "
              f"{[round(float(x), 3) for x in power]}; mean seeds per arm "
              f"{[round(float(x), 1) for x in out.seeds.mean(axis=0)]}, baseline "
              f"{out.baseline_seeds.mean():.1f}")
    if args.known_variance:
        known_variance_limits(args.margin, sd_diff, rng)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
