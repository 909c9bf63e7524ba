"""Vectorised simulation of `analysis.sequential.decide` designs (for the benchmark and the tests).

`run_sequential` applies the same rule as `sequential.decide` (same boundaries, Holm
step-down at every look, stopping, final Holm) to thousands of simulated studies at once,
assuming every planned run succeeds; a test checks that both give the same decisions.
Seed noise model: run value = arm effect + seed effect shared by all arms (same init and
data order: correlation ``rho`` between arms) + arm-specific noise, per-arm sd ``sd``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from analysis.formatting import percent
from analysis.sequential.boundaries import nominal_levels, t_boundaries
from analysis.sequential.decide import SequentialPlan
from analysis.stats import direction
from analysis.stats.skew_guard import caution, guarded_t, skewness

# Decision codes of the simulated studies.
CONTINUE, BETTER, WORSE, EQUIVALENT, INCONCLUSIVE = 0, 1, 2, 3, 4


def simulate_differences(rng: np.random.Generator, reps: int, n: int, effects, *,
                         sd: float, rho: float) -> np.ndarray:
    """Paired differences ``arm_i - baseline``, shape (reps, len(effects), n).

    The shared seed effect cancels in the differences; what is left is each arm's own noise
    minus the baseline's, sd ``sd * sqrt(2 (1 - rho))``, correlated 0.5 across arms.
    """
    effects = np.asarray(effects, dtype=float)
    own = sd * np.sqrt(1 - rho)
    base = rng.normal(0.0, own, size=(reps, 1, n))
    arms = rng.normal(0.0, own, size=(reps, effects.size, n))
    return effects[None, :, None] + arms - base


@dataclass(frozen=True)
class SimOutcome:
    decision: np.ndarray  # (reps, m) decision codes
    seeds: np.ndarray  # (reps, m) seeds per arm when the comparison stopped
    baseline_seeds: np.ndarray  # (reps,)
    noted: np.ndarray  # (reps, m) better/worse verdicts that carry the skew guard's note


def _bounds(plan: SequentialPlan, level: float) -> np.ndarray:
    looks = np.array(plan.looks())
    info = tuple(float(x) for x in looks[:-1] / plan.max_seeds) + (1.0,)
    return t_boundaries(nominal_levels(plan.spending, plan.spending_param, level, info), looks)


def _holm(crossed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """crossed (reps, m, m): [.., i, r-1] = comparison i crossed at alpha/r.

    Returns rejected (reps, m) and the divisor r each rejection used (0 if none).
    """
    reps, m, _ = crossed.shape
    rejected = np.zeros((reps, m), dtype=bool)
    divisor = np.zeros((reps, m), dtype=int)
    for _ in range(m):
        r = m - rejected.sum(axis=1)  # (reps,)
        idx = np.clip(r - 1, 0, m - 1)[:, None, None].repeat(m, axis=1)
        at_level = np.take_along_axis(crossed, idx, axis=2)[:, :, 0]
        new = at_level & ~rejected & (r[:, None] > 0)
        divisor[new] = np.broadcast_to(r[:, None], new.shape)[new]
        rejected |= new
    return rejected, divisor


def run_sequential(plan: SequentialPlan, diffs: np.ndarray) -> SimOutcome:
    """The decisions `sequential.decide` makes on each simulated study (no failed runs),
    skew guard included (`analysis.stats.skew_guard`)."""
    reps, m, n_max = diffs.shape
    if m != len(plan.arms) or n_max < plan.max_seeds:
        raise ValueError(f"`diffs` must have shape (reps, {len(plan.arms)}, >= {plan.max_seeds})")
    looks = plan.looks()
    sup = np.stack([_bounds(plan, plan.alpha / r) for r in range(1, m + 1)])  # (m, K)
    equ = np.stack([_bounds(plan, 2 * plan.alpha / r) for r in range(1, m + 1)])
    csum, csq = np.cumsum(diffs, axis=2), np.cumsum(diffs ** 2, axis=2)
    cross_s = np.zeros((reps, m, m), dtype=bool)
    cross_e = np.zeros((reps, m, m), dtype=bool)
    sign = np.zeros((reps, m, m))  # sign of the mean at the first crossing, per level
    decision = np.zeros((reps, m), dtype=int)
    seeds = np.zeros((reps, m), dtype=int)
    noted = np.zeros((reps, m), dtype=bool)
    for k, n in enumerate(looks):
        open_ = decision == CONTINUE
        mean = csum[:, :, n - 1] / n
        sd = np.sqrt(np.maximum(csq[:, :, n - 1] - n * mean ** 2, 0) / (n - 1))
        se = sd / np.sqrt(n)
        g = skewness(diffs[:, :, :n], axis=2)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.abs(guarded_t(mean / se, g if plan.skew_guard else 0.0 * g, n))
            e = (plan.margin - np.abs(mean)) / se
        skewed = plan.skew_guard & caution(mean, g)
        hit_s = open_[:, :, None] & (t[:, :, None] >= sup[None, None, :, k])
        sign = np.where(hit_s & ~cross_s, np.sign(mean)[:, :, None], sign)
        cross_s |= hit_s
        cross_e |= open_[:, :, None] & (e[:, :, None] >= equ[None, None, :, k])
        rej_s, div_s = _holm(cross_s)
        rej_e, _ = _holm(cross_e)
        label = _labels(plan, rej_s, rej_e, div_s, sign, n == plan.max_seeds)
        decision = np.where(open_, label, decision)
        seeds = np.where(open_, n, seeds)
        noted = np.where(open_, skewed, noted)
        if not (decision == CONTINUE).any():
            break
    # Holm may move on after a comparison stopped (see sequential.decide).
    rej_s, div_s = _holm(cross_s)
    rej_e, _ = _holm(cross_e)
    final = _labels(plan, rej_s, rej_e, div_s, sign, True)
    upgrade = ((decision == EQUIVALENT) | (decision == INCONCLUSIVE)) & rej_s
    decision = np.where(upgrade, final, decision)
    decision = np.where((decision == INCONCLUSIVE) & rej_e, EQUIVALENT, decision)
    noted &= np.isin(decision, [BETTER, WORSE])
    return SimOutcome(decision=decision, seeds=seeds, baseline_seeds=seeds.max(axis=1),
                      noted=noted)


def _labels(plan, rej_s, rej_e, div_s, sign, final: bool) -> np.ndarray:
    idx = np.clip(div_s - 1, 0, None)[:, :, None]
    s = np.take_along_axis(sign, idx, axis=2)[:, :, 0]
    up = direction.sign(plan.direction) * s > 0
    out = np.full(rej_s.shape, INCONCLUSIVE if final else CONTINUE)
    out = np.where(rej_e, EQUIVALENT, out)
    return np.where(rej_s, np.where(up, BETTER, WORSE), out)


def run_naive(diffs: np.ndarray, looks, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Optional stopping: a plain paired t-test at every look, stop when p < alpha.

    Returns (rejected, seeds used), each (reps, m), one comparison at a time (no Holm).
    """
    reps, m, _ = diffs.shape
    rejected = np.zeros((reps, m), dtype=bool)
    seeds = np.zeros((reps, m), dtype=int)
    for n in looks:
        p = stats.ttest_1samp(diffs[:, :, :n], 0.0, axis=2).pvalue
        now = ~rejected & (p < alpha)
        seeds = np.where(rejected, seeds, n)
        rejected |= now
    return rejected, seeds


def run_fixed(diffs: np.ndarray, n: int, alpha: float) -> np.ndarray:
    """Signed verdict of a fixed-n paired t-test: +1 / -1 significant, 0 not, (reps, m)."""
    x = diffs[:, :, :n]
    res = stats.ttest_1samp(x, 0.0, axis=2)
    return np.where(res.pvalue < alpha, np.sign(x.mean(axis=2)), 0).astype(int)


def size_max_seeds(plan: SequentialPlan, sd_diff: float, *, power: float = 0.8,
                   effect: float | None = None, reps: int = 4000, seed: int = 0,
                   limit: int = 1000) -> int:
    """Smallest ``max_seeds`` giving `plan` the `power` to find `effect` (default: margin).

    Simulated with `reps` studies (common random numbers, so the answer is deterministic)
    with paired-difference sd `sd_diff`. Several arms: sized for one comparison at Holm's
    first level alpha/m, a conservative plan as `analysis.stats.family` does for fixed n.
    """
    effect = plan.margin if effect is None else effect
    one = SequentialPlan.from_dict(plan.to_dict() | {  # a task's share of alpha stays its share
        "arms": [plan.arms[0]], "alpha": plan.alpha / len(plan.arms), "tasks": 1, "study_alpha": None})

    def powerful(n: int) -> bool:
        trial = SequentialPlan.from_dict(one.to_dict() | {"max_seeds": n})
        d = simulate_differences(np.random.default_rng(seed), reps, n, [effect],
                                 sd=sd_diff / np.sqrt(2), rho=0.0)
        return (run_sequential(trial, d).decision == BETTER).mean() >= power

    lo, hi = plan.first_look, plan.first_look
    while not powerful(hi):
        if hi >= limit:
            raise ValueError(f"`sd_diff` {sd_diff:g}: more than {limit} seeds would be needed "
                             f"for {percent(power)} power at an effect of {effect:g}")
        lo, hi = hi, min(2 * hi, limit)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if powerful(mid) else (mid, hi)
    return hi
