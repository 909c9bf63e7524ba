"""Turning a comparison into one of four verdicts, with a plain-English reason."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .comparison import Comparison


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
       BETTER or WORSE by the sign of ``diff``. If equivalence is *also*
       established the effect is real but smaller than the margin; the verdict
       stays BETTER/WORSE (a real difference is never reported as
       "equivalent") and the reason says it is practically negligible.
    2. Else TOST equivalence established after Holm
       (``c.equivalence.p_adjusted < alpha``): EQUIVALENT.
    3. Else INCONCLUSIVE, with the seeds per arm needed to detect a
       difference of ``margin``.
    """
    eq = c.equivalence
    if c.family_size == 1:
        p_text = f"{c.primary.name} p = {c.primary.pvalue:.3g}"
        q_text = f"TOST p = {eq.pvalue:.3g}"
    else:
        p_text = (f"{c.primary.name} p = {c.primary.pvalue:.3g}, Holm-adjusted over "
                  f"{c.family_size} comparisons p = {c.p_adjusted:.3g}")
        q_text = f"TOST p = {eq.pvalue:.3g}, Holm-adjusted p = {eq.p_adjusted:.3g}"
    diff_text = (f"diff = {c.diff:+.3g} ({c.confidence:.0%} CI [{c.ci_low:.3g}, "
                 f"{c.ci_high:.3g}])")
    eq_ci = f"the {eq.ci_confidence:.0%} CI [{eq.ci_low:.3g}, {eq.ci_high:.3g}]"
    significant = c.p_adjusted < c.alpha
    equivalent = eq.p_adjusted < c.alpha

    if significant:
        label = VerdictLabel.BETTER if c.diff > 0 else VerdictLabel.WORSE
        reason = (f"{c.arm_name} is {label} than {c.baseline_name}: {diff_text}; "
                  f"{p_text} < alpha = {c.alpha:g}.")
        if equivalent:
            reason += (f" The difference is real but {eq_ci} lies inside ±{c.margin:g} "
                       f"({q_text}), so it is practically negligible at this margin.")
        return Verdict(label=label, reason=reason)
    if equivalent:
        return Verdict(
            label=VerdictLabel.EQUIVALENT,
            reason=(f"{c.arm_name} is equivalent to {c.baseline_name} within ±{c.margin:g}: "
                    f"{eq_ci} lies inside the margin ({q_text}); {diff_text}, {p_text}."),
        )
    if c.seeds_needed is None:
        plan = "Seeds needed cannot be estimated because the seed-to-seed sd is zero."
    else:
        level = "" if c.family_size == 1 else f" at alpha/{c.family_size}"
        plan = (f"About {c.seeds_needed} seeds per arm are needed to detect a true difference "
                f"of {c.margin:g} with {c.power:.0%} power{level} (sd {c.sd:.3g} estimated "
                f"from these {'pairs' if c.paired else 'seeds'}).")
    return Verdict(
        label=VerdictLabel.INCONCLUSIVE,
        reason=(f"neither a difference nor equivalence is established: {p_text} >= alpha = "
                f"{c.alpha:g}, and {eq_ci} is not inside ±{c.margin:g}. {plan}"),
    )
