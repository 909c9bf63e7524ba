"""Toy races for checking the racing rules by simulation (benchmarks/race_explore_sim.py and
tests/test_racing.py): the race is driven by analysis.tuning.racing's own `replay`,
`next_round` and `winner`, candidates are drawn log-uniform over the search range (a random
sampler stands in for TPE), and each run's score comes from a landscape of lr.

Runs are shaped like the paper's CIFAR races (percent accuracy, chance 10): a configuration
that learns scores chance + its effect + a seed effect shared by every configuration - skewed
per-run noise (a bad seed is worse than a good one is good), and now and then a run of it stays
at chance anyway (`bad_seed`); a configuration that never learns scores chance + small noise
(the no_bn runs sat between 9.3 and 10.9). The tolerance is the failures rule's on 5000
validation examples (3 binomial sds of 10%: 1.27 points).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from analysis.tuning.racing import Retire, next_round, replay, winner

CHANCE = 10.0
TOLERANCE = 3 * 100 * math.sqrt(0.1 * 0.9 / 5000)  # failures.noise_tolerance at 5000 examples
CHANCE_SD = 0.4  # a never-learning run's spread around chance
SHARED_SD = 2.0  # seed effect shared by every configuration that learns
NOISE_SD = 1.5  # per-run noise (gamma, skewed to the bad side)
BAD_SEED = 0.15  # a learning configuration's run that stays at chance anyway


@dataclass(frozen=True)
class Landscape:
    """Mean accuracy above chance as a function of log10 lr (0: never learns), the default's
    log10 lr and the search range."""
    name: str
    effect: Callable[[np.ndarray], np.ndarray]
    default: float
    low: float
    high: float


def narrow_band(log_lr: np.ndarray) -> np.ndarray:
    """Only lr 1e-4 to 3.2e-4 learns (+25 points): an eighth of the range, the default outside."""
    x = np.asarray(log_lr, dtype=float)
    return np.where((x >= -4.0) & (x <= -3.5), 25.0, 0.0)


def default_best(log_lr: np.ndarray) -> np.ndarray:
    """Peaked at the default lr 0.05 (+30 points), falling to chance two decades away."""
    x = np.asarray(log_lr, dtype=float)
    return np.maximum(0.0, 30.0 - 7.5 * (x - math.log10(0.05)) ** 2)


BAND = Landscape("narrow band", narrow_band, default=-1.0, low=-4.0, high=0.0)
DEFAULT_BEST = Landscape("default is best", default_best, default=math.log10(0.05), low=-4.0, high=0.0)


def run_score(effect: float, seed_effect: float, rng: np.random.Generator) -> float:
    if effect <= 0 or rng.random() < BAD_SEED:
        return CHANCE + rng.normal(0.0, CHANCE_SD)
    skew = rng.gamma(2.0, NOISE_SD / math.sqrt(2.0)) - NOISE_SD * math.sqrt(2.0)
    return CHANCE + effect + seed_effect - skew


@dataclass(frozen=True)
class RaceOutcome:
    explored: int  # distinct candidates that ran at least one seed
    learner_tried: bool  # some candidate tried learns (effect > 0)
    winner_effect: float  # the winner's true effect over chance
    winner_is_default: bool
    best_effect: float  # the best true effect among the candidates tried
    runs: int


def simulate_race(rng: np.random.Generator, land: Landscape, *, retire: bool, budget: int = 30,
                  size: int = 4) -> RaceOutcome:
    """One race of `budget` runs on `land`; `retire`: with the never-learned rule (else the
    race as it was). The default is candidate "0"."""
    seeds = rng.normal(0.0, SHARED_SD, budget + 1)
    logs = [land.default]
    rule = Retire(CHANCE, TOLERANCE, keep="0") if retire else None
    table = np.full((1, 0), np.nan)
    entered = {"0": 0}
    runs = 0
    while True:
        names = [str(i) for i in range(len(logs))]
        step = next_round(replay(table, names, entered, "maximize", retire=rule), size=size,
                          budget_left=budget - runs)
        for _ in range(step.newcomers):
            logs.append(rng.uniform(land.low, land.high))
            entered[str(len(logs) - 1)] = step.round
            table = np.vstack([table, np.full(table.shape[1], np.nan)])
        names = [str(i) for i in range(len(logs))]
        state = replay(table, names, entered, "maximize", retire=rule)
        todo = state.waiting or tuple((c, state.rounds) for c in state.live)
        if not todo or runs >= budget or not step.runs and not step.newcomers:
            break
        c, j = todo[0]  # one run at a time, as a worker does: a retirement frees its slot at once
        if j >= table.shape[1]:
            table = np.hstack([table, np.full((len(logs), j + 1 - table.shape[1]), np.nan)])
        table[int(c), j] = run_score(float(land.effect(np.array(logs[int(c)]))), seeds[j], rng)
        runs += 1
    final = replay(table, names, entered, "maximize", retire=rule)
    chosen = winner(table, names, final, "0", "maximize")
    effects = land.effect(np.array(logs))
    ran = np.isfinite(table).any(axis=1)
    return RaceOutcome(int(ran.sum()), bool((effects[ran] > 0).any()), float(effects[int(chosen.candidate)]),
                       chosen.candidate == "0", float(effects[ran].max()), runs)


@dataclass(frozen=True)
class Rate:
    value: float
    se: float  # Monte-Carlo standard error

    def __str__(self) -> str:
        return f"{self.value:.3f} (MC SE {self.se:.3f})"


def rate(hits: np.ndarray) -> Rate:
    h = np.asarray(hits, dtype=bool)
    p = float(h.mean()) if h.size else float("nan")
    return Rate(p, math.sqrt(p * (1 - p) / h.size) if h.size else float("nan"))


def mean(values: np.ndarray) -> Rate:
    v = np.asarray(values, dtype=float)
    return Rate(float(v.mean()), float(v.std(ddof=1) / math.sqrt(v.size)))
