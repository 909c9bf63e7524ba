"""Across tasks, rliable-style: normalised scores, mean and IQM with stratified bootstrap CIs,
probability of improvement and performance profiles (Agarwal et al. 2021, "Deep RL at the edge
of the statistical precipice"; the numbers of the `rliable` package, checked in the tests).

Input is a tidy frame with one row per run: ``task, arm, seed, score`` where `score` is what
the per-task comparison uses (`analysis.stats.failures`: a run that did not learn at its final value,
a diverged run at the chance level). Failures are counted, not dropped: a diverged run that has
no score (no chance level declared) is scored at the worst value seen on its task, so it
ranks last there, and every result says how many runs were so filled (`fill_failures`).

Scores are normalised per task so that tasks weigh alike (`normalise`): against a declared
reference and chance level, or against the baseline arm. Normalised scores are "higher is
better" whatever the metric's direction. The bootstrap is stratified by task: each task's runs
are resampled within the task (rliable's ``StratifiedBootstrap``), so the intervals describe
the uncertainty from seeds on these tasks, not from the choice of tasks (the random-effects
meta-analysis in `analysis.tasks.meta` is the tool for "would it hold on another task").
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from analysis.stats.direction import sign

COLUMNS = ("task", "arm", "seed", "score")
N_BOOT = 2000  # percentile intervals: 2000 resamples give the 2.5% quantile to ~0.005 of a sd


@dataclass(frozen=True)
class Normalised:
    """Per-run normalised scores (higher is better) and how they were made."""

    frame: pd.DataFrame  # task, arm, seed, score (raw), norm
    method: str  # "reference" or "baseline"
    description: str  # one sentence for the output: what 0 and 1 mean
    filled: int  # failed runs without a score, set to the task's worst value


def fill_failures(runs: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """`runs` with NaN scores (diverged, no chance level to score them at) set to the worst
    finite score of their task, and how many were set. Failures rank last; never dropped."""
    _check_columns(runs)
    out = runs.copy()
    out["score"] = out["score"].astype(float)
    missing = ~np.isfinite(out["score"].to_numpy())
    if missing.any():
        worst = out.groupby("task")["score"].transform("min")
        out.loc[missing, "score"] = worst[missing]
    left = ~np.isfinite(out["score"].to_numpy())
    if left.any():
        tasks = sorted(map(str, set(out.loc[left, "task"])))
        raise ValueError(f"no run on task(s) {', '.join(tasks)} has a score: nothing to rank "
                         "the failures against")
    return out, int(missing.sum())


def normalise(runs: pd.DataFrame, *, baseline: str, direction: str = "maximize",
              reference: Mapping[str, float] | None = None,
              chance: Mapping[str, float] | float | None = None) -> Normalised:
    """Per-task normalised scores, higher is better.

    ``reference`` given (task -> value, with ``chance``): ``(x - chance) / (reference - chance)``,
    0 at chance, 1 at the reference (rliable's human-normalised score). Otherwise relative to
    the baseline arm's mean on the task: with a chance level ``(x - chance) / (base - chance)``
    (0 at chance, 1 at the baseline); without one ``1 + s (x - base) / |base|`` (s = +1 when
    larger is better, -1 when smaller is), the relative improvement over the baseline.
    """
    runs, filled = fill_failures(runs)
    tasks = list(dict.fromkeys(runs["task"]))
    chances = _per_task(chance, tasks, "chance")
    base = runs[runs["arm"] == baseline].groupby("task")["score"].mean()
    lacking = [t for t in tasks if t not in base.index]
    if lacking:
        raise ValueError(f"`baseline` {baseline!r} has no run on task(s) {lacking}")
    if reference is not None:
        refs = _per_task(reference, tasks, "reference")
        if chances is None:
            raise ValueError("`chance` is required with `reference` (0 = chance, 1 = reference)")
        method, low, high = "reference", dict(chances), dict(refs or {})
        text = "0 = chance, 1 = the declared reference score of each task"
    elif chances is not None:
        method, low, high = "baseline", dict(chances), {t: float(base[t]) for t in tasks}
        text = f"0 = chance, 1 = the mean of {baseline!r} on each task"
    else:
        method = "baseline"
        s = sign(direction)
        scale = {t: abs(float(base[t])) for t in tasks}
        zero = [t for t, v in scale.items() if v == 0]
        if zero:
            raise ValueError(f"the baseline's mean is 0 on task(s) {zero}: a relative score is "
                             "undefined; declare a chance level (--chance) or references")
        low = {t: float(base[t]) - s * scale[t] for t in tasks}
        high = {t: float(base[t]) for t in tasks}
        text = (f"1 + relative improvement over the mean of {baseline!r} on each task "
                f"(1 = the baseline; no chance level declared)")
    span = {t: high[t] - low[t] for t in tasks}
    flat = [t for t, v in span.items() if not np.isfinite(v) or v == 0]
    if flat:
        raise ValueError(f"cannot normalise task(s) {flat}: the reference (or baseline mean) "
                         "equals the chance level")
    out = runs.copy()
    lo = out["task"].map(low).astype(float)
    out["norm"] = (out["score"] - lo) / out["task"].map(span).astype(float)
    return Normalised(frame=out, method=method, description=text, filled=filled)


def _per_task(value, tasks: Sequence, name: str) -> dict | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        missing = [t for t in tasks if t not in value]
        if missing:
            raise ValueError(f"`{name}` has no value for task(s) {missing}")
        return {t: float(value[t]) for t in tasks}
    return dict.fromkeys(tasks, float(value))


def _check_columns(runs: pd.DataFrame) -> None:
    missing = [c for c in COLUMNS if c not in runs.columns]
    if missing:
        raise ValueError(f"`runs` lacks column(s) {missing}; expected {list(COLUMNS)}")


# ---- aggregates with stratified bootstrap intervals -------------------------------------------

@dataclass(frozen=True)
class Aggregate:
    """One arm's normalised performance across tasks, with percentile 95% intervals from the
    stratified bootstrap (runs resampled within each task)."""

    arm: str
    tasks: int
    runs: int
    mean: float  # mean over tasks of the task's mean (rliable `aggregate_mean`)
    mean_ci: tuple[float, float]
    iqm: float  # interquartile mean over all runs x tasks (rliable `aggregate_iqm`)
    iqm_ci: tuple[float, float]


def _task_arrays(norm: pd.DataFrame, arm: str, tasks: Sequence) -> list[np.ndarray]:
    sel = norm[norm["arm"] == arm]
    arrays = [sel.loc[sel["task"] == t, "norm"].to_numpy(dtype=float) for t in tasks]
    empty = [t for t, a in zip(tasks, arrays, strict=True) if a.size == 0]
    if empty:
        raise ValueError(f"arm {arm!r} has no run on task(s) {empty}")
    return arrays


def _resample(arrays: list[np.ndarray], n_boot: int, gen: np.random.Generator) -> list[np.ndarray]:
    """Per task, an (n_boot, n_task) array of runs drawn with replacement within the task."""
    return [a[gen.integers(0, a.size, size=(n_boot, a.size))] for a in arrays]


def _mean_of_means(per_task: list[np.ndarray]) -> np.ndarray:
    return np.mean([a.mean(axis=-1) for a in per_task], axis=0)


def _iqm(per_task: list[np.ndarray]) -> np.ndarray:
    return stats.trim_mean(np.concatenate(per_task, axis=-1), 0.25, axis=-1)


def aggregates(normalised: Normalised, arms: Sequence[str] | None = None, *, rng=0,
               n_boot: int = N_BOOT, confidence: float = 0.95) -> list[Aggregate]:
    """Mean and IQM of each arm's normalised scores, with stratified bootstrap CIs."""
    norm = normalised.frame
    tasks = list(dict.fromkeys(norm["task"]))
    arms = list(arms or dict.fromkeys(norm["arm"]))
    gen = np.random.default_rng(rng)
    q = [(1 - confidence) / 2, (1 + confidence) / 2]
    out = []
    for arm in arms:
        arrays = _task_arrays(norm, arm, tasks)
        boot = _resample(arrays, n_boot, gen)
        m, i = _mean_of_means(boot), _iqm(boot)
        out.append(Aggregate(
            arm=arm, tasks=len(tasks), runs=sum(a.size for a in arrays),
            mean=float(_mean_of_means(arrays)), mean_ci=tuple(np.quantile(m, q).tolist()),
            iqm=float(_iqm(arrays)), iqm_ci=tuple(np.quantile(i, q).tolist())))
    return out


# ---- probability of improvement ----------------------------------------------------------------

@dataclass(frozen=True)
class Improvement:
    """P(X > Y): the chance that a run of `arm` on a task picked at random beats a run of
    `other` on that task (ties count half), averaged over tasks (rliable's
    `probability_of_improvement`); 0.5 means no tendency either way."""

    arm: str
    other: str
    probability: float
    ci: tuple[float, float]  # stratified bootstrap, each arm resampled on its own per task


def _u(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mann-Whitney U / (n_x n_y) along the last axis (x, y: (..., n) arrays)."""
    gt = (x[..., :, None] > y[..., None, :]).mean(axis=(-2, -1))
    eq = (x[..., :, None] == y[..., None, :]).mean(axis=(-2, -1))
    return gt + 0.5 * eq


def improvement(normalised: Normalised, arm: str, other: str, *, rng=0, n_boot: int = N_BOOT,
                confidence: float = 0.95) -> Improvement:
    norm = normalised.frame
    tasks = list(dict.fromkeys(norm["task"]))
    xs, ys = _task_arrays(norm, arm, tasks), _task_arrays(norm, other, tasks)
    gen = np.random.default_rng(rng)
    point = float(np.mean([_u(x, y) for x, y in zip(xs, ys, strict=True)]))
    boot = np.mean([_u(bx, by) for bx, by in zip(_resample(xs, n_boot, gen),
                                                 _resample(ys, n_boot, gen), strict=True)], axis=0)
    q = [(1 - confidence) / 2, (1 + confidence) / 2]
    return Improvement(arm=arm, other=other, probability=point,
                       ci=tuple(np.quantile(boot, q).tolist()))


# ---- performance profiles -----------------------------------------------------------------------

@dataclass(frozen=True)
class Profile:
    """Score distribution of each arm: the fraction of runs (over all tasks) whose normalised
    score exceeds tau, for each tau, with stratified bootstrap bands (rliable
    `create_performance_profile`, run-score distributions)."""

    taus: np.ndarray
    fraction: dict[str, np.ndarray]
    low: dict[str, np.ndarray]
    high: dict[str, np.ndarray]
    description: str  # what the normalised score means


def profile(normalised: Normalised, arms: Sequence[str] | None = None, *,
            taus: np.ndarray | None = None, rng=0, n_boot: int = 500,
            confidence: float = 0.95) -> Profile:
    norm = normalised.frame
    tasks = list(dict.fromkeys(norm["task"]))
    arms = list(arms or dict.fromkeys(norm["arm"]))
    if taus is None:
        v = norm["norm"].to_numpy(dtype=float)
        taus = np.linspace(v.min(), v.max(), 81)
    taus = np.asarray(taus, dtype=float)
    gen = np.random.default_rng(rng)
    q = [(1 - confidence) / 2, (1 + confidence) / 2]
    frac, low, high = {}, {}, {}
    for arm in arms:
        arrays = _task_arrays(norm, arm, tasks)
        # rliable's score_distributions: np.mean(scores > tau) over the runs x tasks matrix
        frac[arm] = (np.concatenate(arrays)[None, :] > taus[:, None]).mean(axis=1)
        boot = np.concatenate(_resample(arrays, n_boot, gen), axis=1)  # (n_boot, runs)
        f = (boot[:, None, :] > taus[None, :, None]).mean(axis=2)  # (n_boot, taus)
        low[arm], high[arm] = np.quantile(f, q, axis=0)
    return Profile(taus=taus, fraction=frac, low=low, high=high,
                   description=normalised.description)


def check_tasks(runs: pd.DataFrame) -> str | None:
    """Why an across-task aggregate cannot be made from `runs` (None: it can)."""
    _check_columns(runs)
    tasks = runs["task"].nunique()
    if tasks < 2:
        return f"{tasks} task(s): an across-task aggregate needs at least 2"
    if runs["arm"].nunique() < 2:
        return "a single arm: nothing to compare across tasks"
    return None


def warn_few_tasks(n_tasks: int) -> None:
    if n_tasks < 5:
        warnings.warn(f"only {n_tasks} tasks: across-task intervals and rank tests rest on few "
                      "tasks; read them as descriptive", stacklevel=3)
