"""The result types of `analysis`, in one place to import them from.

What the functions of `analysis` return, by what they answer:

- one arm vs its baseline (`compare`): `Comparison`, with its `Interval` of the difference,
  its `EffectSize`, its `TestResult`s (primary and robustness checks), its `Equivalence`
  (TOST within the margin), its `Sensitivity` (what these seeds can show, seeds needed) and its
  `Verdict` (a `VerdictLabel` and the reason);
- several arms (`compare_family`, `compare_arms`): `Family`, Holm over its comparisons; a
  study on disk (`load_study`): `StudyData`, analysed with the `MetricPlan` it declares;
- one arm's seeds (`describe`): `ArmSummary`;
- test-set noise (`analysis.stats.test_set_noise`): `McNemarResult`, `SingleRunGap` with its `SeedPlan`;
- a caution raised on the way (a result's ``notes``, a `NoteWarning`'s ``note``): `Note`.

`Interval`, `TestResult`, `Equivalence`, `EffectSize`, `Sensitivity` and `Note` are defined here; the
others next to the function that makes them, and are looked up on first use (PEP 562), so that
importing this module costs nothing (`Family` and `StudyData` need pandas).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from analysis._lazy import lazy_exports

if TYPE_CHECKING:
    from analysis.load import StudyData
    from analysis.stats.describe import ArmSummary
    from analysis.stats.family import Family
    from analysis.stats.metric_plan import MetricPlan
    from analysis.stats.paired import Comparison
    from analysis.stats.test_set_noise import McNemarResult, SeedPlan, SingleRunGap
    from analysis.stats.verdicts import Verdict, VerdictLabel

# result type defined elsewhere -> the submodule that defines it
_ELSEWHERE = {
    "Comparison": "stats.paired", "ArmSummary": "stats.describe", "Family": "stats.family",
    "StudyData": "load", "MetricPlan": "stats.metric_plan",
    **dict.fromkeys(["McNemarResult", "SeedPlan", "SingleRunGap"], "stats.test_set_noise"),
    **dict.fromkeys(["Verdict", "VerdictLabel"], "stats.verdicts"),
}

__all__ = ["ArmSummary", "Comparison", "EffectSize", "Equivalence", "Family", "Interval",
           "McNemarResult", "MetricPlan", "Note", "SeedPlan", "Sensitivity", "SingleRunGap", "StudyData",
           "TestResult", "Verdict", "VerdictLabel"]


__getattr__ = lazy_exports(__name__, _ELSEWHERE)


@dataclass(frozen=True)
class Note:
    """A caution the analysis raised, as data: the report, the CLI and ``--json`` read its
    fields (what kind, which comparison, which seeds), never the sentence back.

    `kind` says what raised it: "data" (NaNs dropped, zero variance, a test skipped), "plan"
    (a default the plan took), "units" (the study mixes units), "runs" (runs not analysed),
    "pairing" (seeds a comparison could not pair), "skew" (the skew guard's caution),
    "exact_floor" (an exact test cannot reach the level), "not_confirmed" (a robustness
    check does not confirm a significant result), "robust_only" (a robustness check is
    significant and the primary test is not), "omnibus", "not_judged" (a planned comparison
    that could not be made; its family lists it too).
    """

    text: str  # the sentence, as shown
    kind: str = "data"
    arms: tuple[str, ...] = ()  # the comparison it is about, (arm, baseline), when it is one's
    seeds: tuple[int, ...] = ()  # "pairing": the seeds the comparison is paired on
    dropped: tuple[int, ...] = ()  # "pairing": the seeds it cannot use
    missing: tuple[str, ...] = ()  # "pairing": the arms with no value for some of `dropped`
    detail: str = ""  # "skew": the caution alone, for a verdict's reason

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, kw_only=True)
class Interval:
    """A point estimate with a two-sided confidence interval, in the metric's units."""

    estimate: float
    low: float
    high: float
    confidence: float
    method: str

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    @property
    def width(self) -> float:
        return self.high - self.low


@dataclass(frozen=True, kw_only=True)
class TestResult:
    """One hypothesis test, scipy-style, plus the context needed to read it.

    `assumptions` says what must hold for the p-value to be valid and `reason`
    why this test was run (primary rule, robustness check, ...). `ci` is the
    confidence interval of the tested quantity when the test provides one
    (the t-tests do; rank tests do not).
    """

    __test__ = False  # not a pytest test class despite the name

    name: str
    statistic: float
    pvalue: float
    assumptions: str
    reason: str
    method: str = ""
    df: float | None = None
    ci: Interval | None = None


@dataclass(frozen=True, kw_only=True)
class Equivalence:
    """TOST equivalence test of ``diff`` against ``±margin``.

    Two one-sided t-tests (same t-distribution as the primary test):
    H0 ``diff <= -margin`` and H0 ``diff >= +margin``. ``pvalue`` is the larger
    of the two; equivalence holds iff ``pvalue < alpha``, which is the same as
    the ``1 - 2 alpha`` CI lying inside ``±margin``.
    """

    margin: float
    pvalue: float
    pvalue_lower: float
    pvalue_upper: float
    ci_low: float
    ci_high: float
    ci_confidence: float
    equivalent: bool  # pvalue < alpha for this comparison on its own
    p_adjusted: float  # Holm-adjusted across the family; == pvalue for a lone compare()


@dataclass(frozen=True, kw_only=True)
class EffectSize:
    """A standardised difference with its confidence interval (`analysis.stats.paired_tests.effect_size`).

    ``name`` is ``"d_z"`` (paired: mean difference / sd of the differences) or ``"hedges_g"``
    (unpaired, small-sample corrected). ``value`` and the interval are None when the sd is
    zero: a constant difference has no finite standardised size.
    """

    name: str
    value: float | None
    ci_low: float | None
    ci_high: float | None


@dataclass(frozen=True, kw_only=True)
class Sensitivity:
    """What these seeds can show, and how many it would take: the planning side of a comparison.

    ``seeds_needed`` (per arm) detects a true difference of the equivalence margin with
    ``power`` at the level it is judged at (None when the sd is zero). ``min_attainable_p``
    is the smallest p-value the exact permutation test can reach at these n (2/2^n paired),
    and ``floor_level`` the level it is checked against (alpha alone, alpha/m in a family of
    m): when ``min_attainable_p >= floor_level`` no exact test can confirm a difference.
    """

    power: float
    seeds_needed: int | None
    min_attainable_p: float
    floor_level: float
