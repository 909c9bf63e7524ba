"""Never-learned retirement in a race, by simulation (run by hand; analysis/tuning/race_sim.py).

    python benchmarks/race_explore_sim.py              # 500 races per row (~5 min on one core)
    python benchmarks/race_explore_sim.py --reps 100   # quicker

Two toy landscapes of lr, runs shaped like the paper's CIFAR races (chance 10%, skewed noise,
15% bad seeds): "narrow band" (only lr 1e-4..3.2e-4 learns, the default lr 0.1 never does;
budget 30 runs, as the paper's no_bn race) and "default is best" (budget 60). Each row is the
race as it was (old) or with the never-learned rule (new). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis.tuning.race_sim import BAND, DEFAULT_BEST, mean, rate, simulate_race  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=500)
    ap.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    print("| landscape | rule | candidates explored | learning winner | winner at chance, a learner tried "
          "| never-learning winner other than the default | moved off the default |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for land, budget in ((BAND, 30), (DEFAULT_BEST, 60)):
        for retire in (False, True):
            out = [simulate_race(rng, land, retire=retire, budget=budget) for _ in range(args.reps)]
            eff = np.array([o.winner_effect for o in out])
            tried = np.array([o.learner_tried for o in out])
            off = np.array([not o.winner_is_default for o in out])
            print(f"| {land.name} ({budget} runs) | {'new' if retire else 'old'} "
                  f"| {mean(np.array([o.explored for o in out]))} | {rate(eff > 0)} | {rate(eff[tried] == 0)} "
                  f"| {rate((eff == 0) & off)} | {rate(off)} |", flush=True)


if __name__ == "__main__":
    main()
