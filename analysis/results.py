"""Small immutable result types shared by several modules."""

from __future__ import annotations

from dataclasses import dataclass


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
