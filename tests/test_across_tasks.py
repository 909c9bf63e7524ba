"""Across-task aggregates (analysis.tasks.aggregates, analysis.tasks.meta): the same numbers as the
references on the same data (rliable, scipy's bootstrap, scikit-posthocs, Demsar's CD table,
statsmodels), degenerate inputs named, and planted effects found."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.tasks.aggregates import (
    aggregates,
    check_tasks,
    fill_failures,
    improvement,
    normalise,
    profile,
)
from analysis.tasks.meta import generalises, meta_analysis, meta_family, rank_arms, task_effects


def skewed_runs(effects: dict[str, list[float]], *, seeds: int = 10, seed: int = 0,
                fail: float = 0.0, chance: float = 10.0) -> pd.DataFrame:
    """Accuracy-like runs: per task a level, per seed a shared offset (pairing), a right-skewed
    gamma noise, and a `fail` share of runs scored at chance (did not learn / diverged)."""
    gen = np.random.default_rng(seed)
    n_tasks = len(next(iter(effects.values())))
    rows = []
    for t in range(n_tasks):
        level = 60 + 8 * t
        shared = gen.normal(0, 1.5, seeds)
        for arm, eff in effects.items():
            noise = -gen.gamma(1.5, 1.2, seeds)  # long left tail: bad seeds
            score = level + eff[t] + shared + noise
            score = np.where(gen.random(seeds) < fail, chance, score)
            rows += [{"task": f"task{t}", "arm": arm, "seed": s, "score": float(v)}
                     for s, v in enumerate(score)]
    return pd.DataFrame(rows)


def matrix(norm: pd.DataFrame, arm: str) -> np.ndarray:
    """rliable's layout: runs x tasks."""
    tasks = list(dict.fromkeys(norm["task"]))
    return np.stack([norm[(norm["arm"] == arm) & (norm["task"] == t)]["norm"].to_numpy()
                     for t in tasks], axis=1)


@pytest.fixture(scope="module")
def three_arms():
    runs = skewed_runs({"base": [0] * 5, "better": [2] * 5, "worse": [-1.5] * 5}, seeds=8,
                       fail=0.1)
    return runs, normalise(runs, baseline="base", chance=10.0)


# ---- against the references --------------------------------------------------------------------

def test_point_estimates_match_rliable(three_arms):
    metrics = pytest.importorskip("rliable.metrics")
    _, n = three_arms
    for agg in aggregates(n, n_boot=50):
        m = matrix(n.frame, agg.arm)
        assert agg.mean == pytest.approx(metrics.aggregate_mean(m), rel=1e-12)
        assert agg.iqm == pytest.approx(metrics.aggregate_iqm(m), rel=1e-12)
    imp = improvement(n, "better", "base", n_boot=50)
    assert imp.probability == pytest.approx(
        metrics.probability_of_improvement(matrix(n.frame, "better"), matrix(n.frame, "base")))
    prof = profile(n, ["better"], taus=np.array([0.9, 1.0, 1.05]), n_boot=20)
    want = [np.mean(matrix(n.frame, "better") > tau) for tau in (0.9, 1.0, 1.05)]
    np.testing.assert_allclose(prof.fraction["better"], want)


def _iqm_of(*samples, axis=-1):
    return stats.trim_mean(np.concatenate(samples, axis=axis), 0.25, axis=axis)


def test_stratified_bootstrap_matches_scipy(three_arms):
    """scipy.stats.bootstrap resamples each of several samples on its own: with one sample per
    task that is the stratified bootstrap. Seeds 0 (ours) and 1 (scipy), 4000 resamples each:
    the percentile bounds' Monte-Carlo sd is ~0.06 of a bootstrap sd, ~1.5% of the CI width, so
    10% of the width is > 4 MC sds of the difference."""
    _, n = three_arms
    agg = {a.arm: a for a in aggregates(n, n_boot=4000, rng=0)}
    tasks = list(dict.fromkeys(n.frame["task"]))
    for arm in ("base", "better"):
        samples = [n.frame[(n.frame["arm"] == arm) & (n.frame["task"] == t)]["norm"].to_numpy()
                   for t in tasks]
        ref = stats.bootstrap(samples, _iqm_of, n_resamples=4000, method="percentile",
                              vectorized=True, rng=np.random.default_rng(1)).confidence_interval
        lo, hi = agg[arm].iqm_ci
        width = hi - lo
        assert abs(lo - ref.low) < 0.1 * width and abs(hi - ref.high) < 0.1 * width


def test_stratified_bootstrap_matches_rliable_library(three_arms):
    # rliable 1.2.0's bootstrap needs `arch` < 8, and arch 7.2 does not import under pandas 3
    # (pandas' deprecate_kwarg changed): where it imports, check it too.
    try:
        from rliable import library, metrics
    except Exception as exc:  # noqa: BLE001 -- any import failure of the optional reference
        pytest.skip(f"rliable.library does not import here: {type(exc).__name__}")
    _, n = three_arms
    np.random.seed(3)  # rliable draws from numpy's global state
    _, ci = library.get_interval_estimates({"b": matrix(n.frame, "better")},
                                           lambda x: np.array([metrics.aggregate_iqm(x)]), reps=4000)
    lo, hi = next(a for a in aggregates(n, n_boot=4000) if a.arm == "better").iqm_ci
    assert abs(lo - ci["b"][0, 0]) < 0.1 * (hi - lo) and abs(hi - ci["b"][1, 0]) < 0.1 * (hi - lo)


def test_nemenyi_and_cd_match_scikit_posthocs_and_demsars_table(three_arms):
    sp = pytest.importorskip("scikit_posthocs")
    runs, _ = three_arms
    r = rank_arms(runs)
    means = runs.groupby(["task", "arm"])["score"].mean().unstack()[list(r.arms)]
    ref = sp.posthoc_nemenyi_friedman(means.to_numpy())
    np.testing.assert_allclose(r.nemenyi.to_numpy(), ref.to_numpy(), rtol=1e-6, atol=1e-9)
    assert r.statistic == pytest.approx(stats.friedmanchisquare(*means.to_numpy().T).statistic)
    # Demsar (2006), table 5(a): q_0.05 = 2.343 for 3 classifiers; CD = q sqrt(k(k+1) / 6N).
    # (autorank computes the same CD, but it installs a top-level `tests` package that shadows
    # this folder's, so it is not a dev dependency.)
    k, n_tasks = len(r.arms), means.shape[0]
    assert k == 3
    # the table gives q to 3 decimals (the exact value is 2.3437), hence rel=5e-4
    assert r.critical_difference == pytest.approx(2.343 * math.sqrt(k * (k + 1) / (6 * n_tasks)), rel=5e-4)
    # mean ranks count from the best (rank 1 = the largest mean on a task)
    want = means.rank(axis=1, ascending=False).mean()
    for arm in r.arms:
        assert r.average_rank[arm] == pytest.approx(want[arm])


def test_meta_analysis_matches_statsmodels_and_scipy():
    from statsmodels.stats.meta_analysis import combine_effects

    runs = skewed_runs({"base": [0] * 6, "b": [0.5, 3, 1, 4, -0.5, 2]}, seeds=10, seed=4)
    m = meta_analysis(runs, "b", "base")
    eff, skipped = task_effects(runs, "b", "base")
    assert not skipped
    # per task: Hodges-Lehmann of the paired differences (median of the Walsh averages)
    g = runs[runs["task"] == "task2"].pivot(index="seed", columns="arm", values="score")
    d = (g["b"] - g["base"]).to_numpy()
    walsh = [(d[i] + d[j]) / 2 for i in range(d.size) for j in range(i, d.size)]
    assert eff[2].effect == pytest.approx(np.median(walsh))
    y = np.array([e.effect for e in eff])
    v = np.array([e.se for e in eff]) ** 2
    # heterogeneity: DerSimonian-Laird on the same effects and SEs
    ref = combine_effects(y, v, method_re="dl")
    assert m.tau2 == pytest.approx(ref.tau2)
    assert m.i2 == pytest.approx(ref.i2)
    assert m.q == pytest.approx(ref.q)
    # the verdict's test: a one-sample t over tasks, each task weighing alike
    t = stats.ttest_1samp(y, 0.0)
    assert m.pooled == pytest.approx(y.mean())
    assert m.pvalue == pytest.approx(t.pvalue)
    ci = t.confidence_interval(0.95)
    assert m.ci == pytest.approx((ci.low, ci.high))
    assert m.tau2 > 0 and m.prediction is not None
    assert m.prediction[1] - m.prediction[0] > m.ci[1] - m.ci[0]


# ---- failures and degenerate inputs -----------------------------------------------------------

def test_unscored_failures_rank_worst_and_are_counted():
    runs = skewed_runs({"base": [0] * 3, "b": [1] * 3}, seeds=5)
    runs.loc[(runs["arm"] == "b") & (runs["seed"] < 2), "score"] = np.nan
    filled, n = fill_failures(runs)
    assert n == 6
    for task, g in filled.groupby("task"):
        assert (g[g["score"].isna()]).empty
        nan_rows = runs[(runs["task"] == task) & runs["score"].isna()].index
        assert (filled.loc[nan_rows, "score"] == g["score"].min()).all()
    assert normalise(runs, baseline="base", chance=10.0).filled == 6


@pytest.mark.parametrize("effects, reason", [
    ({"base": [0], "b": [1]}, "1 task(s)"),
    ({"base": [0, 0]}, "a single arm"),
])
def test_degenerate_inputs_are_named(effects, reason):
    runs = skewed_runs(effects, seeds=4)
    assert reason in check_tasks(runs)


def test_two_tasks_pool_without_a_prediction_interval():
    runs = skewed_runs({"base": [0, 0], "b": [2, 2]}, seeds=6)
    m = meta_analysis(runs, "b", "base")
    assert m.prediction is None and any("prediction interval needs 3" in n for n in m.notes)
    # t on k-1 = 1 df: the pooled interval is honest about resting on two tasks
    assert m.ci is not None and "new task" not in generalises(m)
    r = rank_arms(runs)
    assert r.cannot and "3 or more arms" in r.cannot and r.average_rank["b"] < r.average_rank["base"]


def test_one_task_cannot_pool_and_ties_cannot_rank():
    runs = skewed_runs({"base": [0], "b": [1]}, seeds=6)
    m = meta_analysis(runs, "b", "base")
    assert m.cannot and m.pooled is None and generalises(m).startswith("cannot pool")
    tied = pd.DataFrame([{"task": t, "arm": a, "seed": s, "score": 1.0}
                         for t in "xyz" for a in "abc" for s in range(3)])
    r = rank_arms(tied)
    assert r.cannot == "every task ties all arms: no ranking to test"
    m = meta_analysis(tied, "b", "a")
    assert m.cannot and all("standard error is 0" in n for n in m.notes)


def test_constant_effect_gives_tau2_zero_and_no_traceback():
    runs = skewed_runs({"base": [0] * 4, "b": [2] * 4}, seeds=12, seed=2)
    m = meta_analysis(runs, "b", "base")
    assert m.tau2 is not None and m.tau2 >= 0 and 0 <= m.i2 < 1
    assert any("4 tasks" in n for n in m.notes)


def test_normalise_rejects_what_it_cannot_scale():
    runs = skewed_runs({"base": [0, 0], "b": [1, 1]}, seeds=3)
    with pytest.raises(ValueError, match="`chance` is required"):
        normalise(runs, baseline="base", reference={"task0": 90, "task1": 90})
    with pytest.raises(ValueError, match="no run on task"):
        normalise(runs[~((runs["arm"] == "base") & (runs["task"] == "task1"))], baseline="base")
    ref = normalise(runs, baseline="base", reference={"task0": 90, "task1": 90}, chance=10)
    assert ref.method == "reference" and "reference" in ref.description
    rel = normalise(runs, baseline="base")
    assert "relative improvement" in rel.description
    base = rel.frame[rel.frame["arm"] == "base"].groupby("task")["norm"].mean()
    np.testing.assert_allclose(base.to_numpy(), 1.0)


# ---- planted effects ----------------------------------------------------------------------------

def test_effect_on_some_tasks_is_heterogeneous():
    # Over 30 data sets like this one (seeds 1000-1029), all 30 had I^2 > 50%, Q p < 0.05 and this verdict.
    runs = skewed_runs({"base": [0] * 6, "b": [5, 5, 5, 0, 0, 0]}, seeds=10, seed=1, fail=0.03)
    m = meta_analysis(runs, "b", "base")
    assert m.tau2 > 0 and m.i2 > 0.5 and m.q_pvalue < 0.05
    assert m.prediction[0] < 0 < m.prediction[1]
    assert "varies by task" in generalises(m)


def test_effect_on_every_task_generalises():
    # Over 30 data sets like this one (seeds 2000-2029), all 30 gave this verdict.
    runs = skewed_runs({"base": [0] * 6, "b": [3] * 6, "c": [0] * 6}, seeds=10, seed=6, fail=0.03)
    metas = {m.arm: m for m in meta_family(runs, ["base", "b", "c"], "base")}
    assert generalises(metas["b"]) == "better across tasks, and expected better on a new task like these"
    assert metas["c"].p_adjusted >= metas["c"].pvalue
    norm = normalise(runs, baseline="base", chance=10.0)
    imp = improvement(norm, "b", "base")
    assert imp.ci[0] > 0.5
    r = rank_arms(runs)
    assert min(r.average_rank, key=r.average_rank.get) == "b"


def _sim_module():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import across_tasks_sim

    return across_tasks_sim


def test_benchmark_measures_the_verdicts_test():
    """benchmarks/across_tasks_sim.py's vectorised p-value is meta_analysis' on the same runs."""
    sim = _sim_module()
    d = sim.simulate(np.random.default_rng(5), 3, 6, tau=1.0, fail=0.1)
    for rep in d:
        runs = pd.DataFrame([{"task": f"t{t}", "arm": arm, "seed": s, "score": v}
                             for t in range(rep.shape[0]) for s in range(rep.shape[1])
                             for arm, v in (("base", 0.0), ("b", rep[t, s]))])
        assert meta_analysis(runs, "b", "base").pvalue == pytest.approx(
            float(sim.verdict_p(rep[None])[0]), rel=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("k, tau, fail, fill", [
    (3, 2.0, 0.1, "worst"), (5, 1.0, 0.0, "chance"), (8, 1.0, 0.1, "chance"),
    (8, 2.0, 0.2, "worst"), (12, 2.0, 0.1, "chance"), (12, 1.0, 0.0, "chance"),
])
def test_verdicts_test_holds_alpha_on_runs_like_real_ones(k, tau, fail, fill):
    """No effect on average (each task's true effect from N(0, tau)), skewed noise, bad seeds,
    tasks of unequal noise and failed runs (benchmarks/across_tasks_sim.py's law). The previous
    inverse-variance test rejected 0.091 (0.003) at 8 tasks, tau 1, 10% at chance, and 0.127
    (0.003) at 12 tasks, tau 2 (10000 replications)."""
    sim = _sim_module()
    reps = 3000
    p = sim.verdict_p(sim.simulate(np.random.default_rng(k * 100 + int(10 * tau + 100 * fail)),
                                   reps, k, tau=tau, fail=fail, fill=fill))
    rate, _ = sim.rate(p)
    mcse = math.sqrt(0.05 * 0.95 / reps)
    assert rate <= 0.05 + 3 * mcse, (rate, mcse)


@pytest.mark.slow
def test_verdicts_test_finds_an_effect_on_every_task_despite_failures():
    """2 points on each of 5 tasks, 10% of runs at chance: measured power 0.57 (0.005) against
    0.29 for the previous test (benchmarks/across_tasks_sim.py); 1500 replications."""
    sim = _sim_module()
    reps = 1500
    d = sim.simulate(np.random.default_rng(9), reps, 5, tau=0.0, fail=0.1, effect=2.0)
    rate, _ = sim.rate(sim.verdict_p(d))
    assert rate > 0.57 - 4 * math.sqrt(0.57 * 0.43 / reps), rate
