"""Where does run-to-run variance come from? One source of randomness at a time, with CIs.

Design. A training run draws randomness from four sources: weight init, data order,
augmentation and the train/validation split; its score is then measured on a finite test
set. Following Bouthillier et al. (2021, "Accounting for variance in machine learning
benchmarks", MLSys), `variance_design` varies ONE source at a time over k fresh seeds while
the others stay at a reference seed, plus an "all sources vary" group (the variance a
conclusion over seeds must cover). Optionally a "none" group repeats the reference run, to
measure numerical nondeterminism (GPU kernels), which every other group contains too.

Estimate. In each group every run has its own level of the varied factor, so the group is a
one-way random-effects layout with one observation per level: the sample variance s^2 of
its k scores estimates that factor's variance component PLUS the per-run residual (the
unshared test-set noise below, and numerical nondeterminism), which one observation per
level cannot separate (Searle, Casella & McCulloch 1992, "Variance Components", ch. 3). The
confidence interval of s^2 is the chi-square interval (k-1)s^2 / chi2_{1-a/2, k-1} ..
(k-1)s^2 / chi2_{a/2, k-1}: exact when the scores are normal, and at the k of 5-20 runs one
can afford it is the better choice: a bootstrap of a variance from 10 values undercovers
badly (its resamples have at most 10 distinct values, and the bootstrap variance of s^2 is
biased low), while the chi-square interval's only weakness is heavy tails (excess kurtosis
widens the true sampling distribution of s^2; a run that diverges is such a tail, and should
be reported as a divergence rate, not folded into a variance). The residual is then taken
out of every group (`analysis.stats.variance_components`: the net component, its share of the
all-sources variance with the small-k bias removed, and the sum of shares, which is 100% for
additive sources), from the replicate group `none` when the design has one, as 0 when the
runs are declared bit-deterministic, and otherwise left in (net components are then upper
bounds and additivity is not checked).

Test set. With a fixed test set of N examples a score is the model's population accuracy
plus a sampling error. Most of that error is SHARED by all runs (they are scored on the
same examples), so it adds no between-run variance, but it is there in every score as an
estimate of the population accuracy: the test-set component p(1-p)/N (binomial; for 0/1
correctness the bootstrap over test examples estimates the same number, plus Monte Carlo
noise, so the exact binomial is used). Its CI maps the Wilson interval of p through
p(1-p)/N. The part of the test-set error that is NOT shared, because two models disagree on
some examples, is in each group's s^2; given per-example correctness it is estimated per
group as half the mean over run pairs of the McNemar variance of their score difference,
(discordance - difference^2) / (2N), and reported as `test_noise` beside the component.
The test-set share is p(1-p)/N / (sigma2_all + p(1-p)/N): how much of a fresh study's score
variance (new seeds AND a new test sample) comes from the test sample.

Units: the metric's; with `percent=True` (seedwise's accuracies are in points) the
binomial terms are scaled by 100^2.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy import stats

from analysis._checks import check_count, check_probability, note_text
from analysis.contract import SOURCES, seed_column
from analysis.stats.variance_components import GroupStats, additivity_reading, net_components
from analysis.types import Interval

ALL, NONE, TEST, RESIDUAL = "all", "none", "test", "residual"


def _check_sources(sources: Sequence[str]) -> tuple[str, ...]:
    sources = tuple(sources)
    unknown = [s for s in sources if s not in SOURCES]
    if unknown or len(set(sources)) != len(sources) or len(sources) < 2:
        raise ValueError(f"`sources` must be at least two distinct names of {', '.join(SOURCES)}, "
                         f"got {list(sources)}")
    return sources


def _reference(reference: int | Mapping[str, int]) -> dict[str, int]:
    if isinstance(reference, Mapping):
        missing = [s for s in SOURCES if s not in reference]
        if missing:
            raise ValueError(f"`reference` must give a seed for every source; missing {', '.join(missing)}")
        ref = {s: reference[s] for s in SOURCES}
    else:
        ref = dict.fromkeys(SOURCES, reference)
    for s, v in ref.items():
        check_count(v, f"reference[{s!r}]", minimum=0)
    return {s: int(v) for s, v in ref.items()}


def variance_design(k: int, *, reference: int | Mapping[str, int] = 0,
                    sources: Sequence[str] = SOURCES, k_all: int | None = None,
                    replicates: int = 0) -> pd.DataFrame:
    """The runs of a one-source-at-a-time variance study, one row per run.

    Columns: `group` (a source name, "all" or "none"), `run` (0.. within the group) and
    `init_seed`, `order_seed`, `augment_seed`, `split_seed`. Group s has `k` runs in which
    only s's seed differs from `reference` (an int for every source, or a mapping per
    source); "all" has `k_all` (default `k`) runs in which every source in `sources`
    differs; "none" has `replicates` runs at the reference seeds (only worth running where
    training is not bit-deterministic). Sources not in `sources` stay at the reference in
    every run. Every fresh seed is a new integer, used once in the whole design, so no two
    groups share a level and the groups are independent even if a runner used one integer
    directly for several sources; pass each through the runner's stream-seed helper
    (study.seeds.stream_seed(seed, source)) to get a stream.
    """
    k = check_count(k, "k", minimum=2)
    k_all = k if k_all is None else check_count(k_all, "k_all", minimum=2)
    replicates = check_count(replicates, "replicates", minimum=0)
    sources = _check_sources(sources)
    ref = _reference(reference)
    fresh = iter(range(max(ref.values()) + 1, 2**62))
    rows = []
    plan = [(s, (s,), k) for s in sources] + [(ALL, sources, k_all), (NONE, (), replicates)]
    for group, varied, n in plan:
        for j in range(n):
            seeds = {seed_column(s): next(fresh) if s in varied else ref[s] for s in SOURCES}
            rows.append({"group": group, "run": j, **seeds})
    return pd.DataFrame(rows)


@dataclass(frozen=True, kw_only=True)
class Component:
    """One variance component, in the metric's units squared.

    `variance` is the group's sample variance (source + per-run residual), None when it
    cannot be estimated (fewer than 2 runs). `net` is the source's own component, the
    residual taken out (an upper bound when the decomposition's `bounds` is True). `share`
    is `net` over the all-sources variance, small-k bias removed (for "test": the binomial
    term over all-sources + test). `test_noise` is the part of `variance` that comes from
    the runs' disagreement on the fixed test set (None without per-example correctness)."""

    source: str
    n_runs: int
    variance: float | None
    ci: Interval | None
    net: float | None = None
    net_ci: Interval | None = None
    share: float | None = None
    share_ci: Interval | None = None
    test_noise: float | None = None
    notes: tuple[str, ...] = ()

    @property
    def sd(self) -> float | None:
        return None if self.variance is None else float(np.sqrt(self.variance))


@dataclass(frozen=True, kw_only=True)
class VarianceDecomposition:
    metric: str
    reference: dict[str, int]
    confidence: float
    sources: tuple[Component, ...]  # one per source present, in SOURCES order
    all_sources: Component
    test_set: Component | None  # None without `correct` or `n_test`
    nondeterminism: Component | None  # the "none" group, when the design had one
    residual: Component | None = None  # test noise + nondeterminism of a run; None when unknown
    shares_total: Interval | None = None  # sum of the sources' and the residual's shares
    deterministic: bool = False  # declared: nondeterminism is 0 without replicates
    bounds: bool = True  # nondeterminism unknown: net components are upper bounds
    notes: tuple[str, ...] = ()

    def component(self, name: str) -> Component:
        for c in self.components():
            if c.source == name:
                return c
        raise KeyError(f"no component {name!r}; have {', '.join(c.source for c in self.components())}")

    def components(self) -> list[Component]:
        extra = [c for c in (self.residual, self.nondeterminism, self.test_set) if c is not None]
        return [*self.sources, self.all_sources, *extra]

    @property
    def sum_of_shares(self) -> float | None:
        """Sum of the sources' and the residual's shares: 1 for additive sources, above 1
        when they interact; None when the residual is unknown or k_all <= 3."""
        return None if self.shares_total is None else self.shares_total.estimate

    @property
    def additivity(self) -> str:
        """What the sum of shares' interval says about additivity, in words."""
        if self.bounds:
            why = "the residual is unknown (no replicate runs, determinism not declared)"
        elif not self.all_sources.variance:
            why = "no usable all-sources variance"
        else:
            why = f"the all-sources group has {self.all_sources.n_runs} runs, and a share needs at least 4"
        return additivity_reading(self.shares_total, why)

    def frame(self) -> pd.DataFrame:
        """One row per component (the tidy form a report or the runner prints)."""
        def bounds(iv):
            return (None, None) if iv is None else (iv.low, iv.high)
        rows = []
        for c in self.components():
            lo, hi = bounds(c.ci)
            nlo, nhi = bounds(c.net_ci)
            slo, shi = bounds(c.share_ci)
            rows.append({"source": c.source, "n_runs": c.n_runs, "variance": c.variance,
                         "ci_low": lo, "ci_high": hi, "sd": c.sd, "net": c.net, "net_low": nlo,
                         "net_high": nhi, "share": c.share,
                         "share_low": slo, "share_high": shi, "test_noise": c.test_noise})
        return pd.DataFrame(rows)


def variance_ci(values: np.ndarray, confidence: float) -> Interval:
    """Chi-square interval for a normal variance from the sample `values` (>= 2)."""
    k = len(values)
    s2 = float(np.var(values, ddof=1))
    a = 1 - confidence
    return Interval(estimate=s2, low=(k - 1) * s2 / stats.chi2.ppf(1 - a / 2, k - 1),
                    high=(k - 1) * s2 / stats.chi2.ppf(a / 2, k - 1), confidence=confidence,
                    method=f"chi-square interval, {k - 1} df (assumes normal scores)")


def _groups(runs: pd.DataFrame, sources: tuple[str, ...], ref: dict[str, int]) -> np.ndarray:
    """Each run's group, read from which of its seeds differ from the reference."""
    varied = np.column_stack([runs[seed_column(s)].to_numpy() != ref[s] for s in sources])
    count = varied.sum(axis=1)
    bad = np.flatnonzero((count > 1) & (count < len(sources)))
    if bad.size:
        names = [s for s, v in zip(sources, varied[bad[0]], strict=True) if v]
        raise ValueError(f"`runs` row {runs.index[bad[0]]} varies {', '.join(names)} at once: a "
                         f"variance design varies one source or all of them (see variance_design)")
    one = np.array(sources, dtype=object)[varied.argmax(axis=1)]
    return np.where(count == 0, NONE, np.where(count == len(sources), ALL, one))


def _pairwise_test_noise(correct: np.ndarray, scale: float) -> float:
    """Half the mean McNemar variance of two runs' score difference on the same examples:
    the test-set noise the runs do NOT share, which a fixed test set leaves in s^2."""
    c = correct.astype(float)
    n = c.shape[1]
    p = c.mean(axis=1)
    disagree = (c @ (1 - c).T + (1 - c) @ c.T) / n
    var_diff = (disagree - (p[:, None] - p[None, :]) ** 2) / n
    iu = np.triu_indices(len(c), 1)
    return float(scale**2 * var_diff[iu].mean() / 2)


def binomial_component(accuracy: float, n_test: int, *, confidence: float = 0.95,
                       percent: bool = True) -> Component:
    """Binomial sampling variance p(1-p)/N of a score as an estimate of the population
    accuracy, with the Wilson interval of p mapped through p(1-p)/N."""
    n_test = check_count(n_test, "n_test")
    scale = 100.0 if percent else 1.0
    p = accuracy / scale
    if not 0 <= p <= 1:
        raise ValueError(f"`accuracy` must lie in [0, {scale:g}], got {accuracy!r}")
    ci = stats.binomtest(round(p * n_test), n_test).proportion_ci(confidence, method="wilson")

    def var(q):
        return scale**2 * q * (1 - q) / n_test
    ends = [var(ci.low), var(ci.high)]
    high = var(0.5) if ci.low < 0.5 < ci.high else max(ends)
    v = var(p)
    return Component(source=TEST, n_runs=0, variance=v,
                     ci=Interval(estimate=v, low=min(ends), high=high, confidence=confidence,
                                 method=f"binomial p(1-p)/N, N = {n_test:,}; Wilson interval of p"))


def _validate(runs, metric, correct, percent):
    if not isinstance(runs, pd.DataFrame):
        raise ValueError("`runs` must be a pandas DataFrame, one row per run")
    if metric not in runs.columns:
        raise ValueError(f"`metric` {metric!r} is not a column of `runs`")
    sources = tuple(s for s in SOURCES if seed_column(s) in runs.columns)
    if len(sources) < 2:
        raise ValueError(f"`runs` needs seed columns for at least two sources "
                         f"({', '.join(map(seed_column, SOURCES))}); found {list(sources)}")
    if correct is None:
        return sources, None
    correct = np.asarray(correct)
    if correct.ndim != 2 or correct.shape[0] != len(runs) or not np.isin(correct, (0, 1)).all():
        raise ValueError(f"`correct` must be a 0/1 matrix with one row per row of `runs` "
                         f"({len(runs)}), got shape {correct.shape}")
    scale = 100.0 if percent else 1.0
    off = np.abs(scale * correct.mean(axis=1) - runs[metric].to_numpy(float))
    if np.nanmax(off) > 0.01 * scale:
        raise ValueError(f"`correct` row {int(np.nanargmax(off))} does not give that run's "
                         f"`{metric}`: rows must be aligned with `runs` (percent={percent})")
    return sources, correct.astype(bool)


def decompose_variance(runs: pd.DataFrame, *, metric: str = "test_acc",
                       reference: int | Mapping[str, int] | None = None, correct=None,
                       n_test: int | None = None, confidence: float = 0.95,
                       percent: bool = True, deterministic: bool = False) -> VarianceDecomposition:
    """Variance components of `metric` from the runs of a `variance_design`.

    Parameters
    ----------
    runs : DataFrame
        One row per run: `metric` and a `<source>_seed` column for each source the design
        covered (at least two of init, order, augment, split). A run's group is read from
        its seeds: which differ from the reference. Runs whose metric is NaN (failed) are
        dropped with a warning.
    reference : int or mapping, optional
        The reference seeds; by default each column's most frequent seed (the reference
        appears in every group but the source's own and "all").
    correct : bool array (runs x test examples), optional
        Per-example correctness, rows aligned with `runs`: gives the test-set component
        from the runs' own accuracies and each group's `test_noise`.
    n_test : int, optional
        Test-set size, for the test-set component when `correct` is not given (the
        accuracy is then the mean of `metric`).
    deterministic : bool
        The runs are bit-deterministic at fixed seeds (CPU training at a fixed thread
        count), so without a replicate group the nondeterminism is 0, not unknown. A
        replicate group, when present, is used either way.
    """
    confidence = check_probability(confidence, "confidence")
    sources, correct = _validate(runs, metric, correct, percent)
    notes: list[str] = []
    values = runs[metric].to_numpy(float)
    ok = ~np.isnan(values)
    if not ok.all():
        note_text(f"dropped {int((~ok).sum())} runs whose `{metric}` is NaN (failed runs)", notes)
    runs = runs[ok]
    correct = None if correct is None else correct[ok]
    if reference is None:
        ref = {s: int(runs[seed_column(s)].mode().min()) if s in sources else 0 for s in SOURCES}
    else:
        ref = _reference(reference)
    groups = _groups(runs, sources, ref)
    scale = 100.0 if percent else 1.0

    def member(name):
        mask = groups == name
        return runs[metric].to_numpy(float)[mask], None if correct is None else correct[mask]

    def component(name: str) -> Component:
        vals, corr = member(name)
        cnotes: list[str] = []
        if len(vals) < 2:
            note_text(f"group {name!r} has {len(vals)} run(s); its variance needs at least 2", cnotes)
            return Component(source=name, n_runs=len(vals), variance=None, ci=None, notes=tuple(cnotes))
        ci = variance_ci(vals, confidence)
        if ci.estimate == 0 and name != NONE:  # identical replicates are bit-determinism, not a fault
            note_text(f"group {name!r}: all {len(vals)} runs scored the same; check that its seeds "
                 f"reach the runs (a source that truly has no effect also looks like this)", cnotes)
        noise = None if corr is None else _pairwise_test_noise(corr, scale)
        return Component(source=name, n_runs=len(vals), variance=ci.estimate, ci=ci,
                         test_noise=noise, notes=tuple(cnotes))

    all_c = component(ALL)
    by_source = [component(s) for s in sources]
    nondet = component(NONE) if (groups == NONE).sum() > 1 else None
    if nondet is None and (groups == NONE).sum() == 1:
        note_text("group 'none' has 1 run; the nondeterminism needs at least 2 replicates", notes)
    if all_c.variance is None or all_c.variance == 0:
        note_text("no usable all-sources variance: shares are not computed", notes)
    by_source, all_c, residual, total, bounds = _net(by_source, all_c, nondet, deterministic,
                                                     confidence, notes)
    test = _test_component(runs[metric].to_numpy(float), correct, n_test, all_c, confidence, percent)
    return VarianceDecomposition(metric=metric, reference=ref, confidence=confidence,
                                 sources=tuple(by_source), all_sources=all_c, test_set=test,
                                 nondeterminism=nondet, residual=residual, shares_total=total,
                                 deterministic=deterministic, bounds=bounds, notes=tuple(notes))


def _stats(c: Component) -> GroupStats | None:
    if c.variance is None:
        return None
    return GroupStats(s2=c.variance, k=c.n_runs, test_noise=c.test_noise or 0.0)


def _net(by_source: list[Component], all_c: Component, nondet: Component | None,
         deterministic: bool, confidence: float, notes: list[str]):
    """The components with their net variances and shares, the residual row, the sum of
    shares and whether the nets are upper bounds (analysis.stats.variance_components)."""
    nd: GroupStats | float | None = (_stats(nondet) if nondet is not None
                                     else 0.0 if deterministic else None)
    groups = {c.source: g for c in by_source if (g := _stats(c)) is not None}
    found = net_components(groups, _stats(all_c), nd, confidence=confidence)
    for text in found.notes:
        note_text(text, notes, stacklevel=4)

    def fill(c: Component) -> Component:
        net, share = found.net.get(c.source), found.share.get(c.source)
        return replace(c, net=None if net is None else net.estimate, net_ci=net,
                       share=None if share is None else share.estimate, share_ci=share)

    residual = None
    if found.residual is not None:
        r, share = found.residual, found.share.get(RESIDUAL)
        ci = r if nondet is not None else None  # without replicates: a plug-in, no interval
        residual = Component(source=RESIDUAL, n_runs=0 if nondet is None else nondet.n_runs,
                             variance=r.estimate, ci=ci, net=r.estimate, net_ci=ci,
                             share=None if share is None else share.estimate, share_ci=share)
    return [fill(c) for c in by_source], fill(all_c), residual, found.total, found.bounds


def declared_deterministic(runs: pd.DataFrame, bit_exact: bool) -> tuple[bool, str]:
    """Are these runs bit-deterministic at fixed seeds, so that a repeat of any run would score
    the same (nondeterminism 0 without replicates)? Only when the experiment is known to train
    bit-exactly on a CPU (`bit_exact`, the caller's knowledge of its experiment: the built-in
    engine's results are pinned bit for bit by tests/test_train_exact.py) and the runs show
    that every one ran alone (not vmapped with others) on a CPU at one thread count. Anything
    else: unknown (a GPU's kernels, or an experiment not known to be exact, may not repeat),
    and a study should run --replicates to measure it."""
    if not bit_exact:
        return False, "the experiment is not known to train bit-exactly: nondeterminism unknown"
    if not {"device", "threads", "group"} <= set(runs.columns) or runs["device"].isna().any():
        return False, "the runs do not record their device, threads and grouping: nondeterminism unknown"
    on_cpu = runs["device"].astype(str).str.startswith("cpu").all()
    grouped = (runs["group"].notna() & runs["group"].astype(str).str.strip().ne("")).any()
    if on_cpu and runs["threads"].nunique(dropna=False) == 1 and not grouped:
        return True, ("nondeterminism taken as 0: every run trained alone on a CPU at one thread count, "
                      "where training at fixed seeds is bit-deterministic (tests/test_train_exact.py)")
    return False, "runs not all trained alone on a CPU at one thread count: nondeterminism unknown"


def _test_component(values, correct, n_test, all_c, confidence, percent) -> Component | None:
    if correct is not None:
        n_test = correct.shape[1]
        accuracy = (100.0 if percent else 1.0) * float(correct.mean())
    elif n_test is not None:
        accuracy = float(np.mean(values))
    else:
        return None
    c = binomial_component(accuracy, n_test, confidence=confidence, percent=percent)
    if not all_c.variance:
        return c
    t = c.variance
    share = Interval(estimate=t / (t + all_c.variance), low=t / (t + all_c.ci.high),
                     high=t / (t + all_c.ci.low), confidence=confidence,
                     method="p(1-p)/N over (all-sources + p(1-p)/N), from the all-sources CI")
    return replace(c, share=share.estimate, share_ci=share)
