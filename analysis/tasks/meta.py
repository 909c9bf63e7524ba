"""Across tasks: a ranking of the arms (Friedman with Nemenyi's post-hoc test, Demsar 2006) and
a random-effects meta-analysis of each arm's per-task paired effect against the baseline.

Both take the tidy runs frame of `analysis.tasks.aggregates` (``task, arm, seed, score``, failures
filled by `fill_failures`, so a failed run counts at the worst value of its task).

* Ranking: each task is a block; the arms are ranked by their mean score on it (1 = best, ties
  share the average rank). Friedman's test asks whether the average ranks differ more than
  chance would make them; Nemenyi's test compares every pair, and two arms whose average ranks
  differ by less than the critical difference CD = q_alpha sqrt(k(k+1) / 6N) are not told
  apart (q_alpha: the studentized range quantile for k arms over sqrt 2). It assumes the tasks
  are independent and exchangeable; it uses only the order within a task, not by how much.
* Meta-analysis: on each task, the effect is the Hodges-Lehmann estimate of the paired
  differences arm - baseline over the seeds both arms ran (the median of the Walsh averages,
  the signed-rank test's estimate, in metric units): a failed run counts as one bad pair, by
  its rank, not by its 50-point size, so one failure in eight seeds does not make its task's
  effect (and its standard error) large together. Its standard error is from the normal-scaled
  MAD of the differences (HL's asymptotic SE, sigma sqrt(pi / 3n)).
  The verdict's test is a t-test over tasks of the per-task effects, each task weighing alike
  (the Hartung-Knapp test with equal weights): the pooled effect is their mean, its CI and p
  from t on k-1 df. It tests "the per-task effects have mean 0" and assumes the tasks are
  independent and their effects roughly normal about that mean (symmetric heavier tails make
  it conservative). Inverse-variance weights are not used for the test: with 8 seeds a task's
  estimated SE is too noisy, and the weighted test rejected up to 0.13 at alpha 0.05
  (benchmarks/across_tasks_sim.py, docs/statistics.md).
  Heterogeneity is described by DerSimonian-Laird on the same effects and SEs: tau^2 (the
  variance of the true effect across tasks), I^2 (the share of the spread that is not seed
  noise), Cochran's Q, and the 95% prediction interval for the effect on a new task like these
  (Higgins et al. 2009: pooled +- t(k-2) sqrt(tau^2 + SE^2)).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy import stats

from analysis._checks import holm
from analysis.stats.direction import sign


@dataclass(frozen=True)
class Ranking:
    arms: tuple[str, ...]
    tasks: int
    average_rank: dict[str, float]  # 1 = best
    statistic: float | None  # Friedman chi-square
    pvalue: float | None
    critical_difference: float | None  # Nemenyi, at alpha
    nemenyi: pd.DataFrame | None  # pairwise p-values, arms x arms
    alpha: float
    cannot: str | None = None  # why the test was not run (the ranks are still given)


def task_means(runs: pd.DataFrame, arms: Sequence[str] | None = None) -> pd.DataFrame:
    """tasks x arms table of mean scores (a NaN: the arm did not run on that task)."""
    table = runs.groupby(["task", "arm"], sort=False)["score"].mean().unstack("arm")
    return table[list(arms)] if arms is not None else table


def rank_arms(runs: pd.DataFrame, *, direction: str = "maximize", alpha: float = 0.05,
              arms: Sequence[str] | None = None) -> Ranking:
    means = task_means(runs, arms)
    names = tuple(map(str, means.columns))
    complete = means.dropna()
    n, k = complete.shape
    ranks = (-sign(direction) * complete).rank(axis=1, method="average")  # 1 = best
    avg = {a: float(ranks[a].mean()) if n else math.nan for a in names}
    base = dict(arms=names, tasks=n, average_rank=avg, alpha=alpha)
    cannot = None
    if k < 3:
        cannot = "Friedman's test needs 3 or more arms; with 2, read the meta-analysis"
    elif n < 2:
        cannot = f"{n} task(s) on which every arm ran: Friedman's test needs 2 or more"
    elif (complete.nunique(axis=1) == 1).all():
        cannot = "every task ties all arms: no ranking to test"
    if cannot:
        return Ranking(statistic=None, pvalue=None, critical_difference=None, nemenyi=None,
                       cannot=cannot, **base)
    res = stats.friedmanchisquare(*complete.to_numpy().T)
    se = math.sqrt(k * (k + 1) / (6 * n))
    q = float(stats.studentized_range.ppf(1 - alpha, k, np.inf)) / math.sqrt(2)
    r = np.array([avg[a] for a in names])
    z = np.abs(r[:, None] - r[None, :]) / se
    p = stats.studentized_range.sf(z * math.sqrt(2), k, np.inf)
    np.fill_diagonal(p, 1.0)
    return Ranking(statistic=float(res.statistic), pvalue=float(res.pvalue),
                   critical_difference=q * se,
                   nemenyi=pd.DataFrame(np.minimum(p, 1.0), index=list(names), columns=list(names)),
                   **base)


# ---- random-effects meta-analysis -------------------------------------------------------------

@dataclass(frozen=True)
class TaskEffect:
    task: str
    n: int  # seeds both arms ran
    effect: float  # Hodges-Lehmann estimate of the paired differences arm - baseline, metric units
    se: float  # from the MAD of the differences


@dataclass(frozen=True)
class MetaAnalysis:
    """One arm's per-task effects vs the baseline, pooled (equal-weight t over tasks) and their
    heterogeneity (DerSimonian-Laird)."""

    arm: str
    baseline: str
    effects: tuple[TaskEffect, ...]
    pooled: float | None  # mean over tasks of the per-task effects (metric units)
    ci: tuple[float, float] | None  # t(k-1) over tasks
    pvalue: float | None  # of the pooled effect, same t: the verdict's test
    p_adjusted: float | None  # Holm over the arms
    tau2: float | None
    i2: float | None
    q: float | None  # Cochran's Q, and its p (heterogeneity test, low power at few tasks)
    q_pvalue: float | None
    prediction: tuple[float, float] | None  # 95% prediction interval for a new task
    direction: str
    cannot: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def k(self) -> int:
        return len(self.effects)


HL_SE = math.sqrt(math.pi / 3)  # HL's SE is sigma sqrt(pi / 3n) at the normal (efficiency 3/pi)


def hodges_lehmann(d: np.ndarray) -> np.ndarray:
    """Median of the Walsh averages (d_i + d_j) / 2, i <= j, over the last axis."""
    i, j = np.triu_indices(d.shape[-1])
    return np.median((d[..., i] + d[..., j]) / 2, axis=-1)


def robust_se(d: np.ndarray) -> np.ndarray:
    """Standard error of `hodges_lehmann` over the last axis, from the normal-scaled MAD (a
    failure among the differences moves it by one rank, as it does the estimate)."""
    mad = stats.median_abs_deviation(d, axis=-1, scale="normal")
    return mad * HL_SE / np.sqrt(d.shape[-1])


@dataclass(frozen=True)
class PooledT:
    estimate: np.ndarray  # mean over tasks (last axis)
    se: np.ndarray
    pvalue: np.ndarray  # two-sided, t on k-1 df
    df: int


def pooled_t(y: np.ndarray) -> PooledT:
    """The verdict's test: a one-sample t over the last axis (tasks), each task weighing alike.
    Effects that are all equal give se 0 and p 1 (at 0) or 0 (elsewhere)."""
    k = y.shape[-1]
    est = y.mean(axis=-1)
    se = y.std(axis=-1, ddof=1) / math.sqrt(k)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(se > 0, np.abs(est) / se, np.where(est == 0, 0.0, np.inf))
    return PooledT(estimate=est, se=se, pvalue=2 * stats.t.sf(t, k - 1), df=k - 1)


def task_effects(runs: pd.DataFrame, arm: str, baseline: str) -> tuple[list[TaskEffect], list[str]]:
    """Per task, the Hodges-Lehmann estimate of the paired differences arm - baseline over
    shared seeds and its SE; the tasks that give none, with why."""
    out, skipped = [], []
    for task, g in runs.groupby("task", sort=False):
        a = g[g["arm"] == arm].groupby("seed")["score"].mean()
        b = g[g["arm"] == baseline].groupby("seed")["score"].mean()
        d = (a - b).dropna().to_numpy()
        if len(d) < 2:
            skipped.append(f"{task}: {len(d)} seed(s) shared by {arm} and {baseline}, 2 needed")
            continue
        se = float(robust_se(d))
        if se == 0:  # more than half the differences equal: the plain SE is the fallback
            se = float(d.std(ddof=1) / math.sqrt(len(d)))
        if se == 0:
            skipped.append(f"{task}: every seed gives the same difference ({float(d[0]):g}), "
                           "so its standard error is 0 and heterogeneity cannot be weighed")
            continue
        out.append(TaskEffect(task=str(task), n=len(d), effect=float(hodges_lehmann(d)), se=se))
    return out, skipped


def dersimonian_laird(y: np.ndarray, v: np.ndarray) -> tuple[float, float, float, float, float]:
    """(pooled, var_pooled, tau2, Q, I^2) of effects `y` with within-task variances `v`."""
    w = 1 / v
    fixed = np.sum(w * y) / np.sum(w)
    q = float(np.sum(w * (y - fixed) ** 2))
    k = y.size
    c = np.sum(w) - np.sum(w**2) / np.sum(w)
    tau2 = max(0.0, (q - (k - 1)) / c)
    wr = 1 / (v + tau2)
    pooled = float(np.sum(wr * y) / np.sum(wr))
    i2 = max(0.0, (q - (k - 1)) / q) if q > 0 else 0.0
    return pooled, float(1 / np.sum(wr)), tau2, q, i2


def meta_analysis(runs: pd.DataFrame, arm: str, baseline: str, *, direction: str = "maximize",
                  confidence: float = 0.95) -> MetaAnalysis:
    effects, skipped = task_effects(runs, arm, baseline)
    notes = tuple(f"task left out of the meta-analysis: {s}" for s in skipped)
    empty = dict(pooled=None, ci=None, pvalue=None, p_adjusted=None, tau2=None, i2=None, q=None,
                 q_pvalue=None, prediction=None)
    if len(effects) < 2:
        return MetaAnalysis(arm=arm, baseline=baseline, effects=tuple(effects), direction=direction,
                            cannot=f"{len(effects)} task(s) with a paired effect: pooling needs 2",
                            notes=notes, **empty)
    y = np.array([e.effect for e in effects])
    v = np.array([e.se for e in effects]) ** 2
    k = y.size
    test = pooled_t(y)
    pooled, se, p = float(test.estimate), float(test.se), float(test.pvalue)
    _, _, tau2, q, i2 = dersimonian_laird(y, v)
    t = stats.t.ppf((1 + confidence) / 2, k - 1)
    prediction = None
    if k >= 3:
        half = stats.t.ppf((1 + confidence) / 2, k - 2) * math.sqrt(tau2 + se**2)
        prediction = (float(pooled - half), float(pooled + half))
    else:
        notes += ("a prediction interval needs 3 or more tasks (t with k-2 df)",)
    if k < 5:
        notes += (f"{k} tasks: tau^2 and I^2 are very imprecise, and the heterogeneity test has "
                  "little power; a non-significant Q is not evidence that the effect is constant",)
    return MetaAnalysis(arm=arm, baseline=baseline, effects=tuple(effects), pooled=pooled,
                        ci=(float(pooled - t * se), float(pooled + t * se)), pvalue=p, p_adjusted=p,
                        tau2=tau2, i2=i2, q=q, q_pvalue=float(stats.chi2.sf(q, k - 1)),
                        prediction=prediction, direction=direction, notes=notes)


def meta_family(runs: pd.DataFrame, arms: Sequence[str], baseline: str, *,
                direction: str = "maximize") -> list[MetaAnalysis]:
    """`meta_analysis` of each arm vs the baseline, pooled p-values Holm-adjusted over the arms."""
    metas = [meta_analysis(runs, a, baseline, direction=direction) for a in arms if a != baseline]
    done = [m for m in metas if m.pvalue is not None]
    adj = dict(zip([m.arm for m in done], holm([m.pvalue for m in done]), strict=True)) if done else {}
    return [m if m.arm not in adj else replace(m, p_adjusted=float(adj[m.arm])) for m in metas]


def generalises(m: MetaAnalysis, alpha: float = 0.05) -> str:
    """One-line across-task verdict of a meta-analysis: does the effect hold across tasks?"""
    if m.cannot or m.pooled is None or m.ci is None:
        return f"cannot pool: {m.cannot}"
    s = sign(m.direction)
    better = s * m.pooled > 0
    word = "better" if better else "worse"
    if m.p_adjusted is not None and m.p_adjusted >= alpha:
        spread = (f"; the effect varies by task (tau {math.sqrt(m.tau2 or 0):.3g}, I^2 "
                  f"{100 * (m.i2 or 0):.0f}%)" if (m.i2 or 0) > 0.5 else "")
        return "no clear effect across tasks (not significant is not no effect)" + spread
    lo, hi = sorted(s * x for x in m.prediction) if m.prediction is not None else (0.0, 0.0)
    if m.prediction is not None and (lo > 0 if better else hi < 0):
        return f"{word} across tasks, and expected {word} on a new task like these"
    return (f"{word} on average across tasks, but it varies by task: the prediction interval "
            "for a new task includes no effect" if m.prediction is not None else
            f"{word} on average across these {m.k} tasks (too few for a prediction interval)")
