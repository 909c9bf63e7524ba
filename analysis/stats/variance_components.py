"""Variance components net of the per-run residual, their shares, and the additivity check.

Model. A run's score is an effect of each source's seed plus a per-run residual e: the
part of a score that changes even at identical seeds (numerical nondeterminism, variance
`nondet`) and, on a fixed test set, the runs' unshared test-set noise (variance `tn`,
`analysis.stats.variance._pairwise_test_noise`). A one-source group varies its source AND
carries the residual: E[s2_s] = sigma2_s + tn_s + nondet. The all-sources group likewise:
E[s2_all] = sigma2_all + tn_all + nondet, and if the sources are additive (no interaction),
sigma2_all = sum_s sigma2_s. Interactions (one source's effect depending on the others'
seeds, as in chaotic training) appear in every group that varies a source taking part in
them, so they push the sum of the one-source components ABOVE sigma2_all.

Estimands (each is reported, with its interval):
  net_s      = sigma2_s = var(group s) - tn_s - nondet: what varying s alone adds, per run.
  residual   = tn_all + nondet: what a run carries whatever its seeds.
  share_s    = net_s / var(all): the part of the all-sources variance (of the score as
               measured) that source s alone accounts for; residual share likewise.
  sum        = (sum_s net_s + residual) / var(all): 1 for additive sources, above 1 when
               they interact. This is the additivity check: its interval either holds 1
               (the data do not reject additivity) or lies above it (interaction).
When nondet is unknown (no replicate group and no declared determinism) net_s is an upper
bound, "source + nondeterminism", and the sum is not computed: (S-1) * nondet and an
interaction would be indistinguishable.

Small k. E[1 / s2_all] = (k-1)/(k-3) / sigma2_all for normal scores, so s2_s / s2_all
overstates a share by that factor (x2 at k = 5). Shares and the sum are multiplied by
(k-3)/(k-1), which makes them unbiased (the groups are independent: disjoint seeds); at
k_all <= 3 the mean does not exist and no share is given.

Intervals: generalized pivotal quantities (Weerahandi 1993, "Generalized confidence
intervals", JASA 88; Krishnamoorthy & Mathew 2009, "Statistical Tolerance Regions", ch. 1):
each group's variance is replaced by (k-1) s2 / chi2_{k-1} draws, and any function of the
variances (a difference, a ratio, a sum over groups) by the same function of the draws; its
quantiles are the interval. For one variance this is exactly the chi-square interval and for
a ratio the F interval; for the differences above it covers about nominally (checked by
benchmarks/variance_coverage.py). The test noise is a plug-in (it comes from thousands of
test examples, and its error is small beside a variance from k runs). The draws come from a
fixed seed, so a study's numbers are reproducible.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from analysis.types import Interval

N_DRAWS = 20_000
DRAW_SEED = 20261203


@dataclass(frozen=True, kw_only=True)
class GroupStats:
    """A group's sample variance of k runs and its test noise (0 when unknown)."""

    s2: float
    k: int
    test_noise: float = 0.0


@dataclass(frozen=True, kw_only=True)
class NetComponents:
    """What `net_components` finds: per source its net variance and share, the residual,
    and the sum of shares (None where it cannot be estimated; `notes` say why)."""

    net: dict[str, Interval]  # sources and "all"; estimate floored at 0
    share: dict[str, Interval]  # sources and "residual"
    residual: Interval | None  # tn_all + nondet; None when nondet is unknown
    total: Interval | None  # sum of the shares, residual included
    bounds: bool  # True: nondet unknown, so `net` values are upper bounds (source + nondet)
    notes: tuple[str, ...] = ()


def bias_factor(k_all: int) -> float | None:
    """(k-3)/(k-1): removes 1/s2_all's upward bias from a share; None where k <= 3."""
    return (k_all - 3) / (k_all - 1) if k_all > 3 else None


def pivot_draws(g: GroupStats, rng: np.random.Generator, n: int = N_DRAWS) -> np.ndarray:
    """Generalized pivotal quantity of a normal variance: (k-1) s2 / chi2_{k-1}."""
    return (g.k - 1) * g.s2 / rng.chisquare(g.k - 1, n)


def draw_interval(estimate: float, draws: np.ndarray, confidence: float, method: str,
                  floor: float | None = 0.0) -> Interval:
    """The central `confidence` interval of `draws`, ends floored (a variance is >= 0)."""
    a = 1 - confidence
    low, high = np.quantile(draws, [a / 2, 1 - a / 2])
    if floor is not None:
        low, high = max(low, floor), max(high, floor)
    return Interval(estimate=float(estimate), low=float(low), high=float(high),
                    confidence=confidence, method=method)


def net_components(groups: Mapping[str, GroupStats], all_group: GroupStats | None,
                   nondet: GroupStats | float | None, *, confidence: float) -> NetComponents:
    """Net variances, shares and their sum from one-source `groups` and the all-sources group.

    `nondet`: the replicate group's stats, 0.0 when the runs are bit-deterministic, or None
    when unknown. Needs `all_group` with k >= 2 (else only the net variances are given)."""
    rng = np.random.default_rng(DRAW_SEED)
    notes: list[str] = []
    bounds = nondet is None
    if isinstance(nondet, GroupStats):
        nd_hat, nd_draws = nondet.s2, pivot_draws(nondet, rng)
        how = f"minus the replicates' variance ({nondet.k} runs)"
    else:
        nd_hat, nd_draws = 0.0, np.zeros(N_DRAWS)
        how = "nondeterminism unknown: an upper bound" if bounds else "runs bit-deterministic"
    method = f"generalized pivotal interval, group variance minus its test noise, {how}"
    net, net_draws = {}, {}
    every = {**groups, **({"all": all_group} if all_group is not None else {})}
    for name, g in every.items():
        raw = g.s2 - g.test_noise - nd_hat
        net_draws[name] = pivot_draws(g, rng) - g.test_noise - nd_draws
        net[name] = draw_interval(max(raw, 0.0), net_draws[name], confidence, method)
        if raw < 0:
            notes.append(f"group {name!r}: variance below its residual; its net variance is set to 0")
    residual = None if bounds or all_group is None else draw_interval(
        all_group.test_noise + nd_hat, all_group.test_noise + nd_draws, confidence,
        "test noise of the all-sources group plus nondeterminism, generalized pivotal interval")
    if all_group is None or all_group.s2 == 0:
        return NetComponents(net=net, share={}, residual=residual, total=None, bounds=bounds, notes=tuple(notes))
    factor = bias_factor(all_group.k)
    if factor is None:
        notes.append(f"the all-sources group has {all_group.k} runs: a share needs at least 4 "
                     "(below that its estimate has no finite mean); no shares")
        return NetComponents(net=net, share={}, residual=residual, total=None, bounds=bounds, notes=tuple(notes))
    all_draws = pivot_draws(all_group, rng)
    share_method = (f"over the all-sources variance, times (k-3)/(k-1) = {factor:.2f} for the bias of "
                    "1/s2 at small k; generalized pivotal interval")
    share = {}
    for name, g in groups.items():
        raw = g.s2 - g.test_noise - nd_hat
        share[name] = draw_interval(max(factor * raw / all_group.s2, 0.0), net_draws[name] / all_draws,
                                    confidence, share_method)
    total = None
    if bounds:
        notes.append("no replicate runs and no declared determinism: each net variance still holds the "
                     "nondeterminism (an upper bound), and the sum of shares (the additivity check) is not computed")
    else:
        resid_draws = all_group.test_noise + nd_draws
        share["residual"] = draw_interval(factor * (all_group.test_noise + nd_hat) / all_group.s2,
                                          resid_draws / all_draws, confidence, share_method)
        raw_sum = sum(g.s2 - g.test_noise - nd_hat for g in groups.values()) + all_group.test_noise + nd_hat
        sum_draws = sum(net_draws[name] for name in groups) + resid_draws
        total = draw_interval(factor * raw_sum / all_group.s2, sum_draws / all_draws, confidence,
                              "sum of the sources' and the residual's shares; 100% if the sources are "
                              "additive; generalized pivotal interval", floor=None)
    return NetComponents(net=net, share=share, residual=residual, total=total, bounds=bounds, notes=tuple(notes))


def additivity_reading(total: Interval | None, why_missing: str = "") -> str:
    """What the sum of shares says about additivity, from its interval only (`why_missing`:
    why there is no sum, when `total` is None)."""
    if total is None:
        return f"not checked: {why_missing or 'no sum of shares'}"
    level = f"{100 * total.confidence:g}%"
    if total.low > 1:
        return (f"above 100% (its {level} interval excludes 100%): the sources interact, "
                "one source's effect depends on the others' seeds")
    if total.high < 1:
        return (f"below 100% (its {level} interval excludes 100%): the all-sources group varied more "
                "than its parts, which no random-effects model predicts; check the residual")
    return (f"its {level} interval holds 100%: the data do not reject additive sources "
            "(nor, if the interval is wide, show them)")
