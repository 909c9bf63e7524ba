"""Turning a comparison into one of four verdicts, with a plain-English reason."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from analysis.formatting import percent, significant

if TYPE_CHECKING:
    from analysis.stats.paired import Comparison


class VerdictLabel(StrEnum):
    BETTER = "better"
    WORSE = "worse"
    EQUIVALENT = "equivalent"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True, kw_only=True)
class Verdict:
    label: VerdictLabel
    reason: str


def decide(c: Comparison) -> Verdict:
    """The verdict rule.

    1. Primary test significant after Holm (``c.p_adjusted < alpha``):
       BETTER or WORSE by the sign of ``diff`` and the metric's direction (for a
       "minimize" metric a lower value is better). If equivalence is *also*
       established the effect is real but smaller than the margin; the verdict
       stays BETTER/WORSE (a real difference is never reported as
       "equivalent") and the reason says it is practically negligible.
    2. Else TOST equivalence established after Holm
       (``c.equivalence.p_adjusted < alpha``): EQUIVALENT.
    3. Else INCONCLUSIVE, with the condition that failed (the difference test, and
       for equivalence the CI itself or only the Holm adjustment) and the seeds per
       arm needed to detect a difference of ``margin``.

    Failures (`c.outcomes`, from `analysis.stats.failures`): a BETTER verdict on the mean is
    kept only when the arm does not fail more often than the baseline in runs the mean
    could not score; otherwise it is INCONCLUSIVE ("better when it learns"), because a
    recipe that diverges is worse for it. A significant difference in failure rates is
    stated in every reason. A significant verdict that the exact robustness tests cannot
    reach or do not confirm says so (the t-test's normality assumption carries it alone).
    """
    eq = c.equivalence
    if c.family_size == 1:
        p_text = f"{c.primary.name} p = {significant(c.primary.pvalue)}"
        q_text = f"TOST p = {significant(eq.pvalue)}"
    else:
        p_text = (f"{c.primary.name} p = {significant(c.primary.pvalue)}, Holm-adjusted over "
                  f"{c.family_size} comparisons p = {significant(c.p_adjusted)}")
        q_text = (f"TOST p = {significant(eq.pvalue)}, Holm-adjusted p = "
                  f"{significant(eq.p_adjusted)}")
    diff_text = (f"diff = {significant(c.diff, signed=True)} ({percent(c.confidence)} CI "
                 f"[{significant(c.ci_low)}, {significant(c.ci_high)}])")
    if c.direction == "minimize":
        diff_text += ", lower is better"
    eq_ci = (f"the {percent(eq.ci_confidence)} CI [{significant(eq.ci_low)}, "
             f"{significant(eq.ci_high)}]")
    is_significant = c.p_adjusted < c.alpha
    equivalent = eq.p_adjusted < c.alpha
    tail = _qualifiers(c, is_significant)

    if is_significant:
        label = VerdictLabel.BETTER if c.diff * c.better_sign > 0 else VerdictLabel.WORSE
        reason = (f"{c.arm_name} is {label} than {c.baseline_name}: {diff_text}; "
                  f"{p_text} < alpha = {c.alpha:g}.")
        if equivalent:
            reason += (f" The difference is real but {eq_ci} lies inside ±{c.margin:g} "
                       f"({q_text}), so it is practically negligible at this margin.")
        hidden = getattr(c.outcomes, "unscored_excess", None)
        if label is VerdictLabel.BETTER and hidden:
            return Verdict(label=VerdictLabel.INCONCLUSIVE,
                           reason=f"better only among the runs that produced a score: {reason} "
                                  f"But {hidden}" + tail)
        return Verdict(label=label, reason=reason + tail)
    if equivalent:
        return Verdict(
            label=VerdictLabel.EQUIVALENT,
            reason=(f"{c.arm_name} is equivalent to {c.baseline_name} within ±{c.margin:g}: "
                    f"{eq_ci} lies inside the margin ({q_text}); {diff_text}, {p_text}."
                    + tail),
        )
    if c.sensitivity.seeds_needed is None:
        plan = "Seeds needed cannot be estimated because the seed-to-seed sd is zero."
    else:
        level = "" if c.family_size == 1 else f" at alpha/{c.family_size}"
        plan = (f"About {c.sensitivity.seeds_needed} seeds per arm are needed to detect a true difference "
                f"of {c.margin:g} with {percent(c.sensitivity.power)} power{level} (sd {significant(c.sd)} "
                f"estimated from these {'pairs' if c.paired else 'seeds'}).")
    if eq.pvalue < c.alpha:  # inside the margin on its own; only the Holm adjustment failed
        eq_text = (f"{eq_ci} lies inside ±{c.margin:g} (TOST p = {significant(eq.pvalue)}) "
                   f"but not after Holm over {c.family_size} comparisons (adjusted p = "
                   f"{significant(eq.p_adjusted)} >= {c.alpha:g})")
    elif -c.margin < eq.ci_low and eq.ci_high < c.margin:
        # inside the margin, yet TOST short of alpha: an exact test's floor (zero-variance
        # differences on few seeds), not a difference the data show
        eq_text = (f"{eq_ci} lies inside ±{c.margin:g}, but with these seeds the equivalence test "
                   f"cannot establish it ({q_text})")
    else:
        eq_text = f"{eq_ci} is not inside ±{c.margin:g} ({q_text})"
    return Verdict(
        label=VerdictLabel.INCONCLUSIVE,
        reason=(f"neither a difference nor equivalence is established: {p_text} >= alpha = "
                f"{c.alpha:g}, and {eq_text}. {plan}" + tail),
    )


def _qualifiers(c: Comparison, is_significant: bool) -> str:
    """Sentences every reason carries: pairing fallback, failure rates, robustness."""
    out = []
    if c.unpaired_fallback:
        out.append(f"Compared unpaired (Welch): {c.arm_name} and {c.baseline_name} share "
                   "fewer than two seeds.")
    outcomes = c.outcomes
    if outcomes is not None and outcomes.sentence:
        out.append(outcomes.sentence)
    if c.primary.method.startswith("degenerate"):
        out.append(f"{c.primary.reason[0].upper()}{c.primary.reason[1:]}.")  # it starts "zero variance: ..."
    if is_significant:
        skewed = [n.detail for n in c.notes if n.kind == "skew"]
        if skewed:
            out.append(f"Caution: {skewed[0]}.")
        floor, level = c.sensitivity.min_attainable_p, c.sensitivity.floor_level
        if c.robustness and floor >= level:
            out.append(f"Not checkable without normality: with these seeds an exact test cannot "
                       f"go below p = {significant(floor)}, not below the level "
                       f"{significant(level)} this comparison is judged at, so the verdict "
                       "rests on the t-test's normality assumption.")
        else:
            bad = [t.name for t, p in zip(c.robustness, c.robust_p_adjusted, strict=False)
                   if p >= c.alpha]
            if bad:
                out.append(f"Not confirmed by the {' or the '.join(bad)} at the same level: the "
                           "seed values may not be normal (an outlier seed or a bimodal arm).")
    else:
        floor, level = c.sensitivity.min_attainable_p, c.sensitivity.floor_level
        if "permutation" in c.primary.name and floor >= level:
            out.append(f"The exact test decides here (a bimodal arm), and with these seeds it "
                       f"cannot go below p = {significant(floor)}, not below the level "
                       f"{significant(level)}: at least {_seeds_for_floor(c, level)} seeds per "
                       "arm are needed before it can find any difference.")
        hits = [t.name for t, p in zip(c.robustness, c.robust_p_adjusted, strict=False)
                if p < c.alpha]
        if hits:
            out.append(f"The {' and the '.join(hits)} would call this difference significant: "
                       "the seed values may not be normal (skew or an outlier seed).")
    return "".join(" " + s for s in out)


def _seeds_for_floor(c: Comparison, level: float) -> int:
    """Fewest seeds per arm at which an exact test's smallest p falls below `level`."""
    from analysis.stats.paired_tests import min_attainable_p

    n = 2
    while min_attainable_p(n, n, paired=c.paired) >= level:
        n += 1
    return n
