"""One comparison's path through the looks of a sequential plan, before any decision: the
paired t and equivalence p-values at each look, the nominal levels the spending function
allows there, and the repeated (sequential) p-value. `analysis.sequential.decide` walks these paths
and decides; the method and its references are in its docstring.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize, stats

from analysis._checks import note_text
from analysis.sequential.boundaries import nominal_levels
from analysis.sequential.plan import SequentialPlan
from analysis.stats.paired_tests import min_attainable_p
from analysis.stats.skew_guard import guarded_t, skewness


@dataclass
class LookPath:
    """Per-look summaries of one comparison, before any decision."""

    seeds: list[int]
    n: np.ndarray
    info: tuple[float, ...]
    mean: np.ndarray
    sd: np.ndarray
    p: np.ndarray  # two-sided p-value of the skew-guarded paired t at each look
    p_eq: np.ndarray  # equivalence: 2 * P(T >= (margin - |mean|) / se), 1 when <= 0
    notes: list[str]
    # Sample skewness of the differences at each look (analysis.stats.skew_guard), and the
    # guarded t (the paired t, shrunk in the tail the skewness fakes).
    skew: np.ndarray = field(default_factory=lambda: np.zeros(0))
    statistic: np.ndarray = field(default_factory=lambda: np.zeros(0))


def look_path(plan: SequentialPlan, d: np.ndarray, upto: int) -> LookPath:
    """The per-look summaries of differences `d` (seed order) over the first `upto` looks;
    a look that adds no pair is skipped (the spending waits), except the last one."""
    seeds: list[int] = []
    n: list[int] = []
    mean: list[float] = []
    sd: list[float] = []
    skew: list[float] = []
    notes: list[str] = []
    for s in plan.looks()[:upto]:
        x = d[:s][~np.isnan(d[:s])]
        if x.size < 2 or (n and x.size == n[-1] and s != plan.max_seeds):
            continue  # no new information: not a look (the spending waits)
        seeds.append(s)
        n.append(x.size)
        mean.append(float(x.mean()))
        sd.append(float(x.std(ddof=1)))
        skew.append(float(skewness(x)))
    n_arr, mean_arr, sd_arr = np.array(n, dtype=int), np.array(mean), np.array(sd)
    degenerate = sd_arr == 0
    if degenerate.any():
        note_text("zero sd of paired differences at a look (identical differences, e.g. two arms "
             "that compute the same thing): the t-test is undefined there, so the exact "
             "sign-flip test decides that look (p = 1 for no difference, else its floor 2/2^n)",
             notes)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = sd_arr / np.sqrt(n_arr)
        t = np.where(sd_arr > 0, mean_arr / se, np.where(mean_arr == 0, 0.0, np.inf))
        e = np.where(sd_arr > 0, (plan.margin - np.abs(mean_arr)) / se,
                     np.where(np.abs(mean_arr) < plan.margin, np.inf, -np.inf))
    g = np.array(skew, dtype=float)
    if plan.skew_guard:
        t = guarded_t(t, g, n_arr)  # the t-test, shrunk in the tail the skew fakes
    p = 2 * stats.t.sf(np.abs(t), np.maximum(n_arr - 1, 1))
    p_eq = np.where(e > 0, 2 * stats.t.sf(e, np.maximum(n_arr - 1, 1)), 1.0)
    # With zero sd the t statistic is +-inf and would give p = 0 at any n ("equivalent,
    # p = 0" after 5 seeds of a no-op ablation). n identical differences are no more
    # evidence than the exact sign-flip test can give: its smallest p is 2/2^n.
    floor = np.array([min_attainable_p(int(k), paired=True) for k in n_arr])
    p = np.where(degenerate, np.where(mean_arr == 0, 1.0, floor), p)
    p_eq = np.where(degenerate, np.where(np.abs(mean_arr) < plan.margin, floor, 1.0), p_eq)
    info = tuple(1.0 if s == plan.max_seeds else k / plan.max_seeds
                 for s, k in zip(seeds, n, strict=True))
    return LookPath(seeds, n_arr, info, mean_arr, sd_arr, p, p_eq, notes, skew=g, statistic=t)


def nominal_at(plan: SequentialPlan, info: tuple[float, ...], level: float) -> np.ndarray:
    """The nominal p-value level of each look at information fractions `info`."""
    if not info:
        return np.zeros(0)
    return nominal_levels(plan.spending, plan.spending_param, level, info)


def first_crossing(p: np.ndarray, nominal: np.ndarray, upto: int) -> int | None:
    """Index of the first of the first `upto` looks whose p is at or below its level."""
    hit = np.flatnonzero(p[:upto] <= nominal[:upto])
    return int(hit[0]) if hit.size else None


def sequential_p(plan: SequentialPlan, path: LookPath, upto: int, *, alpha_factor: int) -> float:
    """Smallest level at which the comparison's test crossed at a look < `upto`.

    `alpha_factor` 2 gives the equivalence p-value (RCIs at 1 - 2 level); its largest
    meaningful value is 0.5, and 1 is returned when the RCI never fit even then.
    """
    if upto == 0:
        return 1.0
    p = path.p if alpha_factor == 1 else path.p_eq
    if (p[:upto] == 0).any():
        return 0.0
    info = path.info[:upto]
    hi = 1.0 / alpha_factor

    def gap(log_level):  # > 0 while no look crosses at this level; decreasing
        nominal = nominal_at(plan, info, alpha_factor * math.exp(log_level))
        return float(np.min(np.log(p[:upto]) - np.log(np.maximum(nominal, 1e-300))))

    top = math.log(hi * (1 - 1e-9))
    if gap(top) > 0:
        return 1.0
    lo = math.log(1e-12)
    if gap(lo) <= 0:
        return 1e-12
    return float(math.exp(optimize.brentq(gap, lo, top, xtol=1e-7)))


def t_statistic(path: LookPath, k: int) -> float:
    """The skew-guarded paired t at look `k` (±inf for a non-zero mean with zero sd)."""
    return float(path.statistic[k])


def equivalence_statistic(plan: SequentialPlan, path: LookPath, k: int) -> float:
    """(margin - |mean|) / se at look `k`: equivalent when it clears the bound."""
    sd, n, mean = path.sd[k], path.n[k], path.mean[k]
    gap = plan.margin - abs(mean)
    return float(gap / (sd / math.sqrt(n))) if sd > 0 else math.copysign(math.inf, gap)
