"""Seeds until decided: a pre-registered group-sequential plan and its decision rule.

METHOD
------
Each comparison (arm - baseline, paired by seed) is a **group-sequential paired t-test**
with a Lan-DeMets **alpha-spending function** (Lan & DeMets 1983, Biometrika 70:659):
looks at planned seed counts ``n_1 < n_2 < ... <= max_seeds``; at look k the two-sided
z boundary ``c_k`` spends ``f(t_k) - f(t_{k-1})`` of alpha, where ``t_k = n_k / max_seeds``
is the information fraction *actually observed* (pairs with a result), and the look at
``max_seeds`` spends the rest (``t = 1``). So a look with fewer pairs than planned (failed
runs), or a study stopped early, keeps its error rate (Lan & DeMets' point).

* Small n (5-40 seeds): boundaries are computed for the z statistic, then each look's
  *nominal level* ``2 (1 - Phi(c_k))`` is applied to the paired t-test with df = n_k - 1
  (Jennison & Turnbull 2000, "Group Sequential Methods with Applications to Clinical
  Trials", ch. 3 on unknown variance; Pocock 1977). The t quantile absorbs the variance
  estimate at each look; the simulations (benchmarks/sequential_sim.py) measure the
  resulting error of the default design: 0.048-0.055 at alpha = 0.05 (df 4-9 at the
  early looks cause the slight excess).
* Equivalence (stop when the arm is within ``+-margin`` of the baseline): the repeated
  confidence interval (RCI) at coverage ``1 - 2 alpha`` lies inside ``(-margin, margin)``
  (Jennison & Turnbull 1993, Biometrics 49:31, "Sequential equivalence testing and
  repeated confidence intervals"). RCIs cover the true difference at *all* looks at once,
  so each one-sided miss has probability <= alpha: the sequential analogue of TOST, with
  the same boundaries computed at level ``2 alpha``.
* Several arms vs one baseline: **Holm** (1979) over the comparisons' sequential p-values,
  separately for difference claims and for equivalence claims, as `analysis.stats.family` does
  for fixed n. The sequential p-value of a comparison is the smallest level at which its
  group-sequential test would have crossed by now (the repeated p-value, Jennison &
  Turnbull 2000, ch. 9). It is a valid p-value whatever the stopping rule (stopping
  early can only make it larger than the one of the hypothetical full path), and Holm needs
  nothing but valid p-values, so the familywise error stays <= alpha across looks *and*
  comparisons (the sequentially rejective group-sequential procedure of Maurer & Bretz 2013,
  Stat. Biopharm. Res. 5:311, with Holm weights). In practice the step-down is done with
  boundaries at the levels ``alpha/m, alpha/(m-1), ..., alpha``: a decision elsewhere frees
  alpha for the comparisons still open.

Why this spending function: the default is the power family ``alpha t^rho`` with rho = 1
(Kim & DeMets 1987, Biometrika 74:149; Pocock-like). With 5-40 seeds the t-test's df are
small, so O'Brien-Fleming-type boundaries (which spend almost nothing early) are unreachable at the
early looks: in the simulations it needed +64% (1 point) and +178% (2 points) more seeds
than a fixed design sized for the true effect, against +24% and +63% for rho = 1, at the
same power and error (docs/sequential.md). Why not an anytime-valid confidence sequence
(Howard et al. 2021, Ann. Stat. 49:1055) or e-values? They allow a look after every seed
and any stopping rule, but pay for unlimited looks with wider intervals, and with an
unknown variance they need a bound on it or get wider still; at 5-40 seeds a spending
design with planned looks keeps more power, and the spending function already adapts to
looks that come with fewer seeds than planned.

DETERMINISM
-----------
The decision at look k uses only the first ``n_k`` seeds of each comparison, in seed order
(position i of each array is seed i), and the walk over looks stops at the first look some
open comparison has not reached. So a killed and resumed study, or several workers
delivering seeds out of order, get exactly the decisions of one uninterrupted process;
seeds beyond the current look wait for it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from analysis._checks import as_float_1d, note
from analysis._checks import holm as holm_adjust  # the one Holm; the public name kept for callers
from analysis.formatting import percent, significant
from analysis.sequential.boundaries import spend, t_boundaries
from analysis.sequential.looks import (
    LookPath,
    equivalence_statistic,
    first_crossing,
    look_path,
    nominal_at,
    sequential_p,
    t_statistic,
)
from analysis.sequential.plan import SequentialPlan, plan_deviations
from analysis.stats import direction
from analysis.stats.skew_guard import caution, guarded_interval, skew_note
from analysis.types import Interval

__all__ = [
    "Decision", "Look", "SequentialComparison", "SequentialPlan", "SequentialResult", "decide",
    "holm_adjust", "next_seeds", "paired_differences", "plan_deviations",
]


class Decision(StrEnum):
    BETTER = "better"
    WORSE = "worse"
    EQUIVALENT = "equivalent"
    CONTINUE = "continue"
    INCONCLUSIVE = "inconclusive"  # undecided at max_seeds


@dataclass(frozen=True, kw_only=True)
class Look:
    """One analysis of one comparison. Boundaries are at the Holm level in force."""

    seeds: int  # planned seeds per arm at this look
    n: int  # pairs with a result among them
    information: float  # fraction used by the spending function
    diff: float  # mean of arm - baseline
    sd: float  # sd of the paired differences
    statistic: float  # paired t, skew-guarded (analysis.stats.skew_guard)
    level: float  # Holm level of the difference test in force at this look
    bound: float  # reject when |statistic| >= bound
    equivalence_statistic: float  # (margin - |diff|) / se
    equivalence_level: float  # Holm level of the equivalence test in force
    equivalence_bound: float  # equivalent when equivalence_statistic >= this
    ci: Interval  # repeated CI at 1 - alpha (per comparison), skew-guarded
    decision: Decision


@dataclass(frozen=True, kw_only=True)
class SequentialComparison:
    arm: str
    baseline: str
    decision: Decision
    reason: str
    seeds: int  # planned seeds per arm reached at the last look used (0: no look yet)
    n: int  # pairs used at that look
    diff: float | None
    ci: Interval | None  # repeated CI at the last look used
    pvalue: float  # sequential (repeated) p-value of the difference test
    p_adjusted: float  # Holm over the family
    equivalence_pvalue: float
    equivalence_p_adjusted: float
    alpha_spent: float  # of this comparison's unadjusted alpha, at the last look used
    looks: tuple[Look, ...]
    notes: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class SequentialResult:
    plan: SequentialPlan
    comparisons: tuple[SequentialComparison, ...]
    next_look: int | None  # seeds per arm of the next look; None when all are decided

    def get(self, arm: str) -> SequentialComparison:
        for c in self.comparisons:
            if c.arm == arm:
                return c
        raise KeyError(f"no comparison of {arm!r} in this plan")

    @property
    def done(self) -> bool:
        return self.next_look is None


def next_seeds(result: SequentialResult) -> dict[str, int]:
    """Seeds each arm must have for the next look; arms absent need none. Empty: done.

    The baseline continues while any of its comparisons does.
    """
    if result.next_look is None:
        return {}
    open_arms = [c.arm for c in result.comparisons if c.decision == Decision.CONTINUE]
    return {a: result.next_look for a in [result.plan.baseline, *open_arms]}


def paired_differences(plan: SequentialPlan, values: Mapping[str, Mapping[int, float]]
                       ) -> dict[str, np.ndarray]:
    """``arm - baseline`` per seed position, from ``{arm: {seed: value}}``.

    Seeds are 0, 1, 2, ...; position i is seed i. A seed missing or NaN in either arm
    (a failed run) is NaN: it is not a pair. Each array ends at the arm's last seed.
    """
    base = values.get(plan.baseline, {})
    out = {}
    for arm in plan.arms:
        own = values.get(arm, {})
        size = max(own, default=-1) + 1
        out[arm] = np.array([own.get(s, math.nan) - base.get(s, math.nan) for s in range(size)],
                            dtype=float)
    return out


# --- the decision rule -------------------------------------------------------------------


def _holm(crossed: list[list[bool]]) -> tuple[set[int], list[int]]:
    """Holm step-down from crossings at levels alpha/m, ..., alpha (index r-1 = alpha/r).

    Returns the rejected comparisons and, for each, the divisor r of the level that
    applied (rejected: the level it was rejected at; open: the next level).
    """
    m = len(crossed)
    rejected: set[int] = set()
    divisor = [m] * m
    while len(rejected) < m:
        r = m - len(rejected)
        new = {i for i in range(m) if i not in rejected and crossed[i][r - 1]}
        if not new:
            break
        for i in new:
            divisor[i] = r
        rejected |= new
    for i in range(m):
        if i not in rejected:
            divisor[i] = m - len(rejected)
    return rejected, divisor


def decide(plan: SequentialPlan, differences: Mapping[str, object]) -> SequentialResult:
    """Walk the looks in order and decide every comparison of `plan`.

    Parameters
    ----------
    plan : SequentialPlan
    differences : mapping arm -> 1-D array
        ``arm - baseline`` of the metric per seed position (seed order), NaN for a
        missing pair; see `paired_differences`. Arms of the plan that are absent have
        no seeds yet.

    A comparison stops at the first look where Holm rejects "no difference" (better /
    worse, by the sign of the difference and ``plan.direction``) or "not equivalent"
    (equivalent), or at ``max_seeds`` (inconclusive). Later data are ignored. Because
    Holm is step-down, a decision elsewhere can later turn a stopped comparison's
    equivalent / inconclusive into better / worse on the data it already has.
    """
    unknown = sorted(set(differences) - set(plan.arms))
    if unknown:
        raise ValueError(f"`differences` has arm(s) {unknown} that the plan does not compare")
    data = {a: as_float_1d(differences.get(a, []), f"differences[{a!r}]") for a in plan.arms}
    looks, m, alpha = plan.looks(), len(plan.arms), plan.alpha
    # The walk goes as far as every comparison has data for (see DETERMINISM).
    reach = [sum(s <= data[a].size for s in looks) for a in plan.arms]
    paths = [look_path(plan, data[a], upto) for a, upto in zip(plan.arms, reach, strict=True)]
    sup = [[nominal_at(plan, p.info, alpha / r) for r in range(1, m + 1)] for p in paths]
    equ = [[nominal_at(plan, p.info, 2 * alpha / r) for r in range(1, m + 1)] for p in paths]

    stop = [None] * m  # index (into the path) of the look where each comparison stopped
    history: list[list[tuple]] = [[] for _ in range(m)]
    g = 0
    while g < len(looks) and any(s is None for s in stop):
        if any(stop[i] is None and reach[i] <= g for i in range(m)):
            break  # an open comparison has not reached this look yet
        _step(plan, paths, sup, equ, looks[g], stop, history)
        g += 1
    final = [len(h) and history[i][-1][0] + 1 for i, h in enumerate(history)]
    pvals = [sequential_p(plan, p, final[i], alpha_factor=1) for i, p in enumerate(paths)]
    qvals = [sequential_p(plan, p, final[i], alpha_factor=2) for i, p in enumerate(paths)]
    p_adj, q_adj = holm_adjust(pvals), holm_adjust(qvals)
    comps = []
    for i, arm in enumerate(plan.arms):
        comps.append(_summarise(plan, arm, paths[i], history[i], stop[i] is not None,
                                sup[i], equ[i], pvals[i], p_adj[i], qvals[i], q_adj[i],
                                exhausted=g == len(looks)))
    open_ = any(c.decision == Decision.CONTINUE for c in comps)
    next_look = looks[g] if open_ and g < len(looks) else None
    return SequentialResult(plan=plan, comparisons=tuple(comps), next_look=next_look)


def _step(plan, paths, sup, equ, seeds, stop, history) -> None:
    """One look of the walk: Holm over all comparisons, then stop the decided ones."""
    m = len(paths)
    upto = [sum(s <= seeds for s in p.seeds) if stop[i] is None else stop[i] + 1
            for i, p in enumerate(paths)]
    s_rej, s_div = _holm([[first_crossing(paths[i].p, sup[i][r], upto[i]) is not None
                           for r in range(m)] for i in range(m)])
    e_rej, e_div = _holm([[first_crossing(paths[i].p_eq, equ[i][r], upto[i]) is not None
                           for r in range(m)] for i in range(m)])
    for i, p in enumerate(paths):
        if stop[i] is not None or upto[i] == 0 or p.seeds[upto[i] - 1] != seeds:
            continue  # stopped, or no new pairs at this look
        k = upto[i] - 1
        label = _label(plan, i in s_rej, i in e_rej, seeds == plan.max_seeds,
                       _sign(p, sup[i][s_div[i] - 1], upto[i]))
        history[i].append((k, s_div[i], e_div[i], label))
        if label != Decision.CONTINUE:
            stop[i] = k


def _sign(path: LookPath, nominal: np.ndarray, upto: int) -> float:
    k = first_crossing(path.p, nominal, upto)
    return float(np.sign(path.mean[upto - 1 if k is None else k]))


def _label(plan, different: bool, equivalent: bool, final: bool, sign: float) -> Decision:
    """The decision of a look: `different` / `equivalent`: Holm rejected "no difference" /
    "not equivalent"; `final`: the look at max_seeds; `sign`: of the difference."""
    if different:
        up = direction.sign(plan.direction) * sign > 0
        return Decision.BETTER if up else Decision.WORSE
    if equivalent:
        return Decision.EQUIVALENT
    return Decision.INCONCLUSIVE if final else Decision.CONTINUE


def _summarise(plan, arm, path, history, stopped, sup, equ, pval, padj, qval, qadj, *,
               exhausted: bool) -> SequentialComparison:
    alpha, m = plan.alpha, len(plan.arms)
    notes = list(path.notes)
    if exhausted and (not history or history[-1][3] == Decision.CONTINUE):
        # Every planned look is past but this comparison never had a last look (fewer
        # than 2 pairs at max_seeds): the plan is spent, so it is inconclusive.
        note(f"{arm}: fewer than 2 paired results at {plan.max_seeds} seeds", notes)
        if history:
            history = [*history[:-1], (*history[-1][:3], Decision.INCONCLUSIVE)]
    looks = _looks(plan, path, history, sup, equ)
    if not looks:
        return SequentialComparison(
            arm=arm, baseline=plan.baseline,
            decision=Decision.INCONCLUSIVE if exhausted else Decision.CONTINUE,
            reason=f"no look yet: the first look needs {plan.first_look} paired seeds"
                   + (f", and none had 2 pairs by {plan.max_seeds}" if exhausted else ""),
            seeds=0, n=0, diff=None, ci=None, pvalue=1.0, p_adjusted=1.0,
            equivalence_pvalue=1.0, equivalence_p_adjusted=1.0, alpha_spent=0.0, looks=(),
            notes=tuple(notes))
    last = looks[-1]
    # Holm may have moved on since this comparison stopped: the final label uses the
    # adjusted p-values (equal to the level-based decision, see _holm).
    decision = last.decision
    if stopped and decision in (Decision.EQUIVALENT, Decision.INCONCLUSIVE) and padj < alpha:
        decision = _label(plan, True, False, True, math.copysign(1.0, last.diff))
    elif stopped and decision == Decision.INCONCLUSIVE and qadj < alpha:
        decision = Decision.EQUIVALENT
    spent = spend(plan.spending, plan.spending_param, alpha, last.information)
    reason = _reason(plan, arm, decision, last, padj, qadj, m)
    g = float(path.skew[history[-1][0]])
    if (plan.skew_guard and decision in (Decision.BETTER, Decision.WORSE)
            and caution(last.diff, g)):
        text = skew_note(g, f"'{decision}'", last.n)
        notes.append(f"skew guard: {text}")
        reason += f" Caution: {text}."
    return SequentialComparison(
        arm=arm, baseline=plan.baseline, decision=decision, reason=reason, seeds=last.seeds,
        n=last.n, diff=last.diff, ci=last.ci, pvalue=pval, p_adjusted=float(padj),
        equivalence_pvalue=qval, equivalence_p_adjusted=float(qadj), alpha_spent=spent,
        looks=tuple(looks), notes=tuple(notes))


def _looks(plan, path: LookPath, history, sup, equ) -> list[Look]:
    """Each look a comparison had: its statistics, the boundaries at the Holm levels then in
    force, its repeated CI (at the unadjusted level) and its decision."""
    alpha, looks = plan.alpha, []
    for k, s_div, e_div, label in history:
        n = int(path.n[k])
        low, high = guarded_interval(path.mean[k], path.sd[k] / math.sqrt(n),
                                     path.skew[k] if plan.skew_guard else 0.0, n,
                                     t_boundaries(sup[0][k], n))
        ci = Interval(estimate=float(path.mean[k]), low=float(low), high=float(high),
                      confidence=1 - alpha, method="repeated confidence interval "
                      "(group-sequential paired t" + (", skew-guarded)" if plan.skew_guard else ")"))
        looks.append(Look(
            seeds=path.seeds[k], n=n, information=path.info[k], diff=float(path.mean[k]),
            sd=float(path.sd[k]), statistic=t_statistic(path, k), level=alpha / s_div,
            bound=float(t_boundaries(sup[s_div - 1][k], n)),
            equivalence_statistic=equivalence_statistic(plan, path, k),
            equivalence_level=alpha / e_div,
            equivalence_bound=float(t_boundaries(equ[e_div - 1][k], n)), ci=ci,
            decision=label))
    return looks


def _reason(plan, arm, decision, last: Look, padj, qadj, m) -> str:
    base = plan.baseline
    where = (f"after {last.n} paired seeds (look at {last.seeds} of at most {plan.max_seeds}): "
             f"diff = {significant(last.diff, signed=True)}, {percent(last.ci.confidence)} "
             f"repeated CI [{significant(last.ci.low)}, {significant(last.ci.high)}]")
    holm = f"Holm over {m}" if m > 1 else "one comparison"
    if decision in (Decision.BETTER, Decision.WORSE):
        return (f"{arm} is {decision} than {base} {where}; sequential p adjusted "
                f"({holm}) = {significant(padj)} < alpha = {plan.alpha:g}"
                + ("." if plan.study_alpha is None else f" ({plan.alpha_text()})."))
    if decision == Decision.EQUIVALENT:
        return (f"{arm} is equivalent to {base} within +-{plan.margin:g} {where}; the "
                f"{percent(1 - 2 * plan.alpha)} repeated CI lies inside the margin "
                f"(equivalence p adjusted, {holm}, = {significant(qadj)}).")
    if decision == Decision.INCONCLUSIVE:
        return (f"{arm} vs {base} is inconclusive at the planned maximum {where}: neither a "
                f"difference (adjusted p = {significant(padj)}) nor equivalence within "
                f"+-{plan.margin:g} (adjusted p = {significant(qadj)}) was established.")
    return f"{arm} vs {base} is still open {where}; more seeds are needed."
