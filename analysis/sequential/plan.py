"""The pre-registered plan of a sequential study (see `analysis.sequential.decide` for the method).

Fixed and stored with the study before its first run (``plan.to_dict()``, plain JSON);
`plan_deviations` lists what a later invocation changes, for the report. `task_share` owns the
rule for a study of several tasks: each task's plan spends alpha / tasks (Bonferroni over tasks).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import NamedTuple

from analysis._checks import check_count, check_positive, check_probability
from analysis.contract import DIRECTIONS
from analysis.formatting import percent
from analysis.sequential.boundaries import SPENDING_FUNCTIONS

# 2: the skew guard (`analysis.stats.skew_guard`) became part of the rule. A stored version-1 plan
# (no `skew_guard` key) keeps the rule it was registered under: plain paired t-tests.
# `tasks` / `study_alpha` need no new version: a plan stored without them was registered spending
# its whole alpha, which is what their defaults (tasks = 1) read, so it keeps its rule; a task's
# study registered so and rerun under the split sees the split as a deviation, never adopts it silently.
PLAN_VERSION = 2


class TaskShare(NamedTuple):
    """A task's plan fields (`task_share`)."""

    alpha: float  # what the task's plan spends
    tasks: int
    study_alpha: float | None  # None: one task, the whole alpha


def task_share(alpha: float, tasks: int) -> TaskShare:
    """The plan fields of one task's study when `tasks` tasks share the study's `alpha`:
    Bonferroni, alpha / tasks each. Each task's looks and its Holm over arms control that task's
    familywise error at its share, so the error of any claim over arms x tasks and all looks is
    <= alpha whatever the dependence between tasks, and a task decided early never waits on
    another (the tasks run one after another). One task: the whole alpha."""
    check_probability(alpha, "alpha")
    check_count(tasks, "tasks", minimum=1)
    if tasks == 1:
        return TaskShare(alpha, 1, None)
    return TaskShare(alpha / tasks, tasks, alpha)


@dataclass(frozen=True, kw_only=True)
class SequentialPlan:
    """The pre-registered analysis plan: fixed and stored before the first run.

    Looks at ``first_look, first_look + look_every, ...`` seeds per arm and always at
    ``max_seeds``. ``arms`` are the arms compared with ``baseline`` (the Holm family).
    ``margin`` is in the metric's units. Spending: see `group_sequential.spend`.
    ``alpha`` is what this plan spends; in one of ``tasks`` > 1 tasks it is ``study_alpha /
    tasks`` (`task_share`), and ``study_alpha`` the study's declared alpha.
    """

    baseline: str
    arms: tuple[str, ...]
    metric: str = "test_acc"
    direction: str = "maximize"
    alpha: float = 0.05
    margin: float = 0.5
    first_look: int = 5
    look_every: int = 5
    max_seeds: int = 40
    spending: str = "power"
    spending_param: float | None = 1.0
    skew_guard: bool = True
    tasks: int = 1  # the study's tasks sharing its alpha (each task's study has a plan)
    study_alpha: float | None = None  # the study's alpha when split over tasks; None: one task
    method: str = "group-sequential"
    version: int = PLAN_VERSION

    def __post_init__(self):
        object.__setattr__(self, "arms", tuple(self.arms))
        if not isinstance(self.baseline, str) or not self.baseline:
            raise ValueError(f"`baseline` must be an arm name, got {self.baseline!r}")
        if not self.arms or not all(isinstance(a, str) and a for a in self.arms):
            raise ValueError(f"`arms` must be a non-empty list of arm names, got {self.arms!r}")
        if len(set(self.arms)) != len(self.arms) or self.baseline in self.arms:
            raise ValueError(f"`arms` must be distinct and exclude the baseline, got {self.arms!r}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"`direction` must be one of {DIRECTIONS}, got {self.direction!r}")
        check_probability(self.alpha, "alpha")
        if self.alpha >= 0.5:
            raise ValueError(f"`alpha` must be below 0.5 (equivalence uses 2 alpha), got {self.alpha}")
        check_positive(self.margin, "margin")
        check_count(self.first_look, "first_look", minimum=2)
        check_count(self.look_every, "look_every", minimum=1)
        check_count(self.max_seeds, "max_seeds", minimum=self.first_look)
        if self.spending not in SPENDING_FUNCTIONS:
            raise ValueError(f"`spending` must be one of {SPENDING_FUNCTIONS}, got {self.spending!r}")
        needs = {"power": "rho > 0", "hsd": "gamma != 0"}.get(self.spending)
        p = self.spending_param
        ok = (p is None if needs is None else isinstance(p, (int, float)) and math.isfinite(p)
              and (p > 0 if self.spending == "power" else p != 0))
        if not ok:
            raise ValueError(f"`spending_param` must be {needs or 'None'} for spending="
                             f"{self.spending!r}, got {p!r}")
        if not isinstance(self.skew_guard, bool):
            raise ValueError(f"`skew_guard` must be true or false, got {self.skew_guard!r}")
        check_count(self.tasks, "tasks", minimum=1)
        if self.tasks == 1 and self.study_alpha is not None:
            raise ValueError(f"`study_alpha` applies only when alpha is split over tasks (tasks > 1), "
                             f"got {self.study_alpha!r}")
        if self.tasks > 1 and not (isinstance(self.study_alpha, float)
                                   and math.isclose(self.alpha, self.study_alpha / self.tasks)):
            raise ValueError(f"`alpha` must be `study_alpha` / `tasks` (see task_share), got alpha "
                             f"{self.alpha!r}, study_alpha {self.study_alpha!r}, tasks {self.tasks!r}")
        if self.method != "group-sequential" or self.version not in (1, PLAN_VERSION) or (
                self.version == 1 and self.skew_guard):
            raise ValueError(f"unknown plan method/version {self.method!r}/{self.version!r}"
                             + (" (version 1 has no skew guard)" if self.version == 1 else ""))

    def looks(self) -> tuple[int, ...]:
        """Planned seeds per arm at each look (the last one is ``max_seeds``)."""
        return tuple(range(self.first_look, self.max_seeds, self.look_every)) + (self.max_seeds,)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["arms"] = list(self.arms)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> SequentialPlan:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown sequential plan key(s) {unknown}; known: {sorted(known)}")
        if d.get("version") == 1 and "skew_guard" not in d:
            d = {**d, "skew_guard": False}  # registered before the guard existed
        return cls(**d)

    def alpha_text(self) -> str:
        """The alpha this plan spends, and where a study's alpha is split over tasks, how."""
        if self.study_alpha is None:
            return f"alpha {self.alpha:g}"
        return f"alpha {self.study_alpha:g} split over {self.tasks} tasks: {self.alpha:g} each"

    def methods_text(self) -> str:
        """The methods paragraph a report prints for this plan."""
        spending = {"obrien-fleming": "O'Brien-Fleming-type", "pocock": "Pocock-type",
                    "power": f"power-family (rho = {self.spending_param:g})",
                    "hsd": f"Hwang-Shih-DeCani (gamma = {self.spending_param:g})"}[self.spending]
        looks = ", ".join(map(str, self.looks()))
        m = len(self.arms)
        guard = (", the t statistic shrunk by a Cornish-Fisher skewness term (twice the sample "
                 "skewness of the differences) in the tail that skewness makes too heavy"
                 if self.skew_guard else "")
        family = (f"familywise error <= {self.alpha:g} over all looks" if self.study_alpha is None else
                  f"{self.alpha_text()} (Bonferroni over the study's tasks, each deciding on its "
                  f"own), so the familywise error over arms x tasks and all looks is <= "
                  f"{self.study_alpha:g}")
        return (
            f"Seeds were added until decided under a plan fixed before the first run: "
            f"{m} arm(s) compared with {self.baseline!r} on {self.metric} "
            f"({self.direction}), paired by seed, with looks at {looks} seeds per arm. "
            f"Each comparison is a group-sequential paired t-test with {spending} "
            f"Lan-DeMets alpha spending at the observed information fraction (pairs / "
            f"{self.max_seeds}); each look's nominal level is applied with the t "
            f"distribution on n - 1 df{guard}. Equivalence within +-{self.margin:g} is declared when "
            f"the {percent(1 - 2 * self.alpha)} repeated confidence interval lies inside the margin. "
            f"Difference and equivalence claims are each Holm-corrected over the {m} "
            f"comparison(s), {family}. An arm stops "
            f"when its comparison is decided; the baseline continues while any comparison "
            f"is open; a comparison undecided at {self.max_seeds} seeds is inconclusive."
        )


def plan_deviations(stored: SequentialPlan, requested: SequentialPlan) -> list[str]:
    """What `requested` changes in the pre-registered `stored` plan (empty: none)."""
    out = []
    for f in fields(SequentialPlan):
        a, b = getattr(stored, f.name), getattr(requested, f.name)
        if a != b:
            out.append(f"{f.name}: pre-registered {a!r}, now {b!r}")
    return out
