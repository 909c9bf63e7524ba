"""Several arms at once: Holm-corrected verdicts and an omnibus test."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats
from statsmodels.stats.oneway import anova_oneway

from analysis._checks import (
    NoteWarning,
    TooFewValues,
    as_float_1d,
    as_rng,
    check_bool,
    check_probability,
    clean_1d,
    holm,
    note,
)
from analysis.formatting import significant
from analysis.stats.paired import Comparison, compare, judged
from analysis.stats.power import seeds_needed
from analysis.types import Note, TestResult

if TYPE_CHECKING:  # for annotations only: plan needs pandas, which family does not
    from analysis.stats.metric_plan import MetricPlan


@dataclass(frozen=True)
class NotJudged:
    """A planned comparison that could not be made, and why: it gets no verdict and no place
    in the Holm family (docs/statistics.md, "Arms that cannot be judged")."""

    arm: str
    baseline: str
    reason: str

    def __str__(self) -> str:
        return f"{self.arm} vs {self.baseline}: not judged: {self.reason}"


@dataclass(frozen=True, kw_only=True)
class Family:
    """Comparisons whose verdicts were corrected together.

    ``correction`` describes exactly which p-values formed each Holm family.
    """

    comparisons: tuple[Comparison, ...]
    pairs: str  # "baseline" or "all"
    baseline: str | None
    paired: bool
    alpha: float
    margin: float
    correction: str
    not_judged: tuple[NotJudged, ...] = ()  # planned comparisons that could not be made
    plan: MetricPlan | None = None  # when made from a study
    outcomes: object | None = None  # the classified runs (`analysis.stats.failures.classify`)

    def __len__(self) -> int:
        return len(self.comparisons)

    @property
    def skipped(self) -> tuple[str, ...]:
        """The comparisons not judged, each with its reason, as one line of text."""
        return tuple(map(str, self.not_judged))

    @property
    def planned(self) -> int:
        """Comparisons the family was asked for: judged plus not judged."""
        return len(self.comparisons) + len(self.not_judged)

    def size_text(self) -> str:
        """How many of the planned comparisons were judged, and which family Holm ran over."""
        m = len(self.comparisons)
        if not self.not_judged:
            return f"{m} of {m} comparisons judged"
        return (f"{m} of {self.planned} comparisons judged; Holm over the {m} judged, "
                f"{len(self.not_judged)} not judged (no test, no verdict)")

    def get(self, arm: str, baseline: str | None = None) -> Comparison:
        """The comparison ``arm - baseline`` (``baseline`` defaults to the family's)."""
        baseline = self.baseline if baseline is None else baseline
        for c in self.comparisons:
            if (c.arm_name, c.baseline_name) == (arm, baseline):
                return c
        raise KeyError(f"no comparison of {arm!r} against {baseline!r} in this family")


def compare_family(
    arms: Mapping[str, object],
    baseline: str | None = None,
    *,
    paired: bool,
    rng,
    alpha: float = 0.05,
    margin: float = 0.5,
    pairs: str = "baseline",
    direction: str = "maximize",
    exact_arms: Sequence[str] = (),
    unjudged: Mapping[str, str] | None = None,
    **compare_kwargs,
) -> Family:
    """Compare several arms and set Holm-corrected verdicts.

    Parameters
    ----------
    arms : mapping name -> per-seed values
        Arrays (paired: aligned by position), or mappings seed -> value: then each paired
        comparison uses the seeds its *two* arms share, so one arm's missing seed costs
        only that arm's comparisons, and a pair sharing fewer than two seeds is compared
        unpaired (Welch) on its own, with ``unpaired_fallback`` set and said in its verdict.
    baseline : str
        Name of the reference arm. Required for ``pairs="baseline"``. With
        ``pairs="all"`` it only orients pairs (baseline always second).
    pairs : {"baseline", "all"}
        ``"baseline"``: every other arm vs the baseline (m = k-1 comparisons).
        ``"all"``: every unordered pair (m = k(k-1)/2), ordered as in `arms`.
    rng : numpy.random.Generator or int
        Spawned into one independent stream per comparison, so a comparison's
        Monte Carlo result does not depend on which other arms are present.
    exact_arms : sequence of str
        Arms whose values mix runs that learned with runs that did not: a comparison
        involving one uses the exact permutation test as its primary test (`compare`'s
        ``exact``), since a bimodal sample breaks the t-test's normality.
    unjudged : mapping arm -> reason
        Arms known not to be judgeable (e.g. every run failed): each of their comparisons is
        listed in ``Family.not_judged`` with the reason, and no test is run for it.
    **compare_kwargs
        Passed to `compare` (confidence, power, n_resamples, robustness).

    A comparison with too few values (an arm with a single run) is not judged either: it is
    named in ``Family.not_judged`` with a warning; the others are corrected among themselves
    (m = the judged comparisons; ``Family.size_text`` says how many of how many).

    Notes
    -----
    Two families are Holm-corrected separately (`analysis._checks.holm`, the numbers of
    statsmodels ``multipletests(method="holm")``), each controlling its familywise error at
    `alpha`: the m primary-test p-values (claims of a difference) and the m
    TOST p-values (claims of equivalence). Each comparison's ``p_adjusted``
    and ``equivalence.p_adjusted`` hold the adjusted values and its verdict
    uses them. ``seeds_needed`` is recomputed at alpha/m (Holm's first step,
    so a conservative plan). Confidence intervals are not adjusted. The robustness
    p-values are Holm-adjusted the same way, and the exact-test floor is checked against
    alpha/m, so "the exact test disagrees / cannot reach" is judged at the level the
    primary test really faces.
    """
    paired = check_bool(paired, "paired")
    alpha = check_probability(alpha, "alpha")
    planned, what = _planned_pairs(arms, baseline, pairs)
    unjudged = dict(unjudged or {})
    skipped = [NotJudged(a, b, unjudged[a] if a in unjudged else unjudged[b])
               for a, b in planned if a in unjudged or b in unjudged]
    todo = [(a, b) for a, b in planned if a not in unjudged and b not in unjudged]
    raw, too_few = _compare_pairs(arms, todo, paired=paired, rng=rng, alpha=alpha, margin=margin,
                                  direction=direction, exact_arms=exact_arms, compare_kwargs=compare_kwargs)
    skipped += too_few
    order = {pair: i for i, pair in enumerate(planned)}
    skipped.sort(key=lambda n: order[(n.arm, n.baseline)])
    for n in skipped:  # never dropped silently, for callers that only read `comparisons`
        warnings.warn(NoteWarning(Note(str(n), kind="not_judged")), stacklevel=2)
    if not raw:
        raise TooFewValues("no comparison could be judged: " + "; ".join(map(str, skipped)))
    done = _holm_judged(raw, alpha=alpha, margin=margin, planned=len(todo))
    correction = _correction_text(len(done), what, skipped, alpha)
    return Family(comparisons=tuple(done), pairs=pairs, baseline=baseline,
                  paired=all(c.paired for c in done), alpha=alpha, margin=margin,
                  correction=correction, not_judged=tuple(skipped))


def _compare_pairs(arms: Mapping[str, object], todo: list[tuple[str, str]], *, paired: bool, rng,
                   alpha: float, margin: float, direction: str, exact_arms: Sequence[str],
                   compare_kwargs: Mapping[str, Any]) -> tuple[list[Comparison], list[NotJudged]]:
    """`compare` of each judgeable pair (a, b), not yet Holm-corrected, and the pairs with too
    few values to judge (not an error: one degenerate arm must not take down the others)."""
    raw: list[Comparison] = []
    too_few: list[NotJudged] = []
    # One stream per judgeable comparison: an unjudgeable arm leaves the others' draws as they
    # were without it.
    for (a, b), stream in zip(todo, as_rng(rng).spawn(len(todo)), strict=True):
        va, vb, pair_ok = _pair_values(arms[a], arms[b], paired)
        try:
            c = compare(va, vb, paired=pair_ok, rng=stream, alpha=alpha, margin=margin,
                        arm_name=a, baseline_name=b, direction=direction,
                        exact=a in exact_arms or b in exact_arms,
                        plan_alpha=alpha / len(todo), **compare_kwargs)
        except TooFewValues as exc:
            too_few.append(NotJudged(a, b, str(exc)))
            continue
        except ValueError as exc:  # say which arms; compare() calls them `arm`/`baseline`
            raise ValueError(f"comparing arm {a!r} with {b!r}: {exc}") from exc
        raw.append(replace(c, unpaired_fallback=paired and not pair_ok))
    return raw, too_few


def _correction_text(m: int, what: str, skipped: list[NotJudged], alpha: float) -> str:
    """`Family.correction`: what was corrected, over how many judged comparisons of how many."""
    judged = (what if not skipped else f"{m} judged of {what}; not judged: "
              + ", ".join(f"{n.arm} vs {n.baseline}" for n in skipped))
    return (
        f"Holm over the {m} primary-test p-values "
        f"({judged}); TOST equivalence p-values Holm-adjusted as a separate family of {m}; "
        f"familywise error <= {alpha:g} within each family; confidence intervals unadjusted"
    )


def _planned_pairs(arms, baseline: str | None, pairs: str) -> tuple[list[tuple[str, str]], str]:
    """The (arm, baseline) pairs to compare, and how the correction text names them."""
    if not isinstance(arms, Mapping) or len(arms) < 2:
        raise ValueError("`arms` must be a mapping of at least 2 arm names to values")
    if pairs not in ("baseline", "all"):
        raise ValueError(f"`pairs` must be 'baseline' or 'all', got {pairs!r}")
    if baseline is not None and baseline not in arms:
        raise ValueError(f"`baseline` {baseline!r} is not a key of `arms`: {list(arms)}")
    if pairs == "baseline":
        if baseline is None:
            raise ValueError("`baseline` is required when pairs='baseline'")
        todo = [(name, baseline) for name in arms if name != baseline]
        return todo, f"each of the {len(todo)} arms vs {baseline!r}"
    todo = [(b, a) if a == baseline else (a, b) for a, b in itertools.combinations(arms, 2)]
    return todo, f"all {len(todo)} pairs of the {len(arms)} arms"


def _holm_judged(raw: list[Comparison], *, alpha: float, margin: float,
                 planned: int) -> list[Comparison]:
    """The comparisons with Holm-adjusted p-values (primary, TOST and each robustness test,
    each its own family of m) and the verdicts they give at Holm's first level alpha/m."""
    m = len(raw)
    p_adj = holm([c.primary.pvalue for c in raw])
    q_adj = holm([c.equivalence.pvalue for c in raw])
    n_checks = min(len(c.robustness) for c in raw)
    r_adj = [holm([c.robustness[i].pvalue for c in raw]) for i in range(n_checks)]
    done = []
    for j, (c, p, q) in enumerate(zip(raw, p_adj, q_adj, strict=True)):
        needed = c.sensitivity.seeds_needed
        if needed is not None and m != planned:  # some comparisons were skipped
            needed = seeds_needed(margin, c.sd, paired=c.paired, alpha=alpha / m, power=c.sensitivity.power)
        c = replace(c, p_adjusted=float(p), family_size=m,
                    sensitivity=replace(c.sensitivity, seeds_needed=needed),
                    equivalence=replace(c.equivalence, p_adjusted=float(q)))
        done.append(judged(c, level=alpha / m,
                           robust_p_adjusted=tuple(float(r[j]) for r in r_adj)))
    return done


def _pair_values(a, b, paired: bool):
    """Two arms' values for one comparison and whether they are paired: seed-keyed
    mappings are paired on the seeds they share, when they share at least two."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        keys = sorted(set(a) & set(b))
        if paired and len(keys) >= 2:
            return [a[k] for k in keys], [b[k] for k in keys], True
        return list(a.values()), list(b.values()), False
    if isinstance(a, Mapping) or isinstance(b, Mapping):
        raise ValueError("`arms` values must be all arrays or all mappings seed -> value")
    return a, b, paired


def omnibus(groups, *, paired: bool, method: str | None = None) -> TestResult:
    """Is there any difference among the arms?

    Parameters
    ----------
    groups : mapping name -> values, or sequence of arrays
    paired : bool
        True when row i of every group comes from the same seed.
    method : {None, "welch_anova", "kruskal", "friedman"}
        Default: Welch's ANOVA (statsmodels ``anova_oneway(use_var="unequal")``)
        when unpaired, for the same reasons Welch's t is the primary pairwise
        test; ``"kruskal"`` for Kruskal-Wallis. Paired data need Friedman's
        test (equal n, >= 3 groups).

    Welch's ANOVA weights groups by 1/variance, so it is undefined when a
    group has zero variance; it then falls back to Kruskal-Wallis with a
    `DegenerateDataWarning`.
    """
    paired = check_bool(paired, "paired")
    names, values = _named_groups(groups)
    if method is None:
        method = "friedman" if paired else "welch_anova"
    allowed = ("friedman",) if paired else ("welch_anova", "kruskal")
    if method not in allowed:
        raise ValueError(f"`method` must be one of {allowed} when paired={paired}, "
                         f"got {method!r}")
    notes: list[Note] = []
    if paired:
        return _friedman(names, values, notes)
    if len(values) < 2:
        raise ValueError("`groups` must contain at least 2 groups")
    clean = [clean_1d(v, n, notes, min_n=2) for v, n in zip(values, names, strict=True)]
    if method == "welch_anova":
        flat = [n for n, g in zip(names, clean, strict=True) if np.ptp(g) == 0]
        if not flat:
            return _welch_anova(clean)
        note(f"zero variance in {flat}: Welch's ANOVA is undefined; "
             "used Kruskal-Wallis instead", notes)
        return _kruskal(clean, notes, fallback=True)
    return _kruskal(clean, notes, fallback=False)


def _named_groups(groups) -> tuple[list[str], list]:
    """The groups' names (for messages) and values, from a mapping or a sequence."""
    if isinstance(groups, Mapping):
        return list(map(str, groups)), list(groups.values())
    if isinstance(groups, Sequence) and not isinstance(groups, str):
        return [f"groups[{i}]" for i in range(len(groups))], list(groups)
    raise ValueError("`groups` must be a mapping or a sequence of 1-D arrays")


def _friedman(names: list[str], values: list, notes: list[Note]) -> TestResult:
    """Friedman's test over seeds as blocks (equal n, >= 3 groups; NaN seeds dropped)."""
    if len(values) < 3:
        raise ValueError("`groups` must contain at least 3 groups for Friedman's test; "
                         "for 2 paired arms use compare(..., paired=True)")
    rows = [as_float_1d(v, n) for v, n in zip(values, names, strict=True)]
    sizes = {n: r.size for n, r in zip(names, rows, strict=True)}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"`groups` must all have the same number of seeds when "
                         f"paired=True, got {sizes}")
    data = np.column_stack(rows)
    keep = ~np.isnan(data).any(axis=1)
    if not keep.all():
        note(f"dropped {int((~keep).sum())} seed(s) with NaN in any group", notes, stacklevel=4)
    data = data[keep]
    if data.shape[0] < 2:
        raise ValueError(f"`groups` must share at least 2 complete seeds, got {data.shape[0]}")
    res = stats.friedmanchisquare(*data.T)
    return TestResult(
        name="Friedman test", statistic=float(res.statistic), pvalue=float(res.pvalue),
        df=float(data.shape[1] - 1),
        assumptions="seeds are independent blocks; within a seed, arms are ranked",
        reason="omnibus for paired arms (equal n, >= 3 groups)",
        method=f"scipy.stats.friedmanchisquare, {data.shape[0]} seeds x {data.shape[1]} arms",
    )


def _welch_anova(clean: list[np.ndarray]) -> TestResult:
    res = anova_oneway(clean, use_var="unequal")
    return TestResult(
        name="Welch's ANOVA", statistic=float(res.statistic), pvalue=float(res.pvalue),
        df=float(res.df_denom),
        assumptions="each arm roughly normal; variances may differ",
        reason="omnibus for independent arms (default, matches Welch's t)",
        method=f"statsmodels anova_oneway(use_var='unequal'), df = "
               f"({res.df_num:g}, {significant(res.df_denom)})",
    )


def _kruskal(clean: list[np.ndarray], notes: list[Note], *, fallback: bool) -> TestResult:
    """Kruskal-Wallis; `fallback`: chosen because Welch's ANOVA was undefined."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-identical data: handled below
        res = stats.kruskal(*clean)
    if not np.isfinite(res.pvalue):
        note("all values are identical across groups: Kruskal-Wallis p set to 1", notes,
             stacklevel=4)
        statistic, pvalue = 0.0, 1.0
    else:
        statistic, pvalue = float(res.statistic), float(res.pvalue)
    return TestResult(
        name="Kruskal-Wallis test", statistic=statistic, pvalue=pvalue,
        df=float(len(clean) - 1),
        assumptions="independent seeds; rank-based, no normality assumption",
        reason="omnibus for independent arms (rank-based)" + (
            "; fallback because a group has zero variance" if fallback else ""),
        method="scipy.stats.kruskal",
    )
