"""A race as stored in Optuna (`study.tune --race`), read back: the one place that turns the
race study's trials into analysis.tuning.racing's table, and the summary the tuning report and
`--confirm` use (winner, finalists with their seeds and mean +/- CI, drops, selection gap,
expected best against budget).

Each stored trial is one (candidate, tuning seed) run with the user attributes race_candidate,
race_entered (the round the candidate entered), race_seed_index and seed. Runs that finished
count (complete, or diverged: scored by analysis.stats.failures' rule); a failed run (an exception)
is retried by the tuner and is no outcome of the configuration, unless its retry raises too
(ATTEMPTS): a configuration that always raises (out of memory) would otherwise be retried
forever and the race never end, so it is dropped, unscored, like a diverged run without a
chance level. A worker killed mid-run stores no error and does not count as an attempt.

When the race study declares a chance level, a candidate other than the default whose first runs
all sat at chance is retired as never learned (analysis.tuning.racing.never_learned), within
the failures rule's noise tolerance: 3 binomial sds of chance on the validation examples the
arm's config counts (`val_size`), else 1% of chance (`race_retire`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from analysis.contract import COMPLETE, DIVERGED
from analysis.load import config_examples
from analysis.stats.failures import classify, noise_tolerance
from analysis.stats.metric_plan import MetricPlan
from analysis.tuning.racing import (
    RaceState,
    Retire,
    SelectionGap,
    Winner,
    expected_best,
    replay,
    selection_gap,
    winner,
)

DEFAULT = "default"  # the candidate that is the arm's own parameters
SEED_OFFSET = 100_000  # tuning seed of seed index j: 100000 + j (study.search.TUNE_SEED_OFFSET)
ATTEMPTS = 2  # a (candidate, seed) that raised this many times, and never finished, drops its candidate


@dataclass(frozen=True)
class RaceData:
    """The race as stored: candidates (the default first), their params, the round each
    entered, the candidates x seed-index score table and the finished runs."""
    candidates: list[str]
    params: dict[str, dict[str, Any]]
    entered: dict[str, int]
    table: np.ndarray
    unscored: dict[str, int]  # candidate -> seed index of a diverged run with no chance level
    runs: int  # finished runs (complete or diverged): what the budget counts
    metric_plan: MetricPlan
    failing: dict[str, int] = field(default_factory=dict)  # candidate -> seed index that raised ATTEMPTS times
    retire: Retire | None = None  # the never-learned rule (None: no chance level, never retire)

    def state(self) -> RaceState:
        return replay(self.table, self.candidates, self.entered, self.metric_plan.direction,
                      unscored=self.unscored, failing=self.failing, retire=self.retire)


def _finished(t) -> str | None:
    state = t.state.name
    if state == "COMPLETE":
        return COMPLETE
    if state == "PRUNED" and t.user_attrs.get("status") == DIVERGED:
        return DIVERGED
    return None


def race_data(trials: Iterable[Any], plan: MetricPlan, default_params: dict[str, Any] | None = None, *,
              retire: Retire | None = None) -> RaceData:
    """The race of a study's trials (Optuna FrozenTrials). `default_params`: the arm's own
    params, known to the tuner before the default's first run is stored; `retire`: the
    never-learned rule (`race_retire` of the study's attributes)."""
    trials = [t for t in trials if "race_candidate" in t.user_attrs]
    params: dict[str, dict[str, Any]] = {DEFAULT: dict(default_params or {})}
    entered = {DEFAULT: 0}
    for t in sorted(trials, key=lambda t: t.number):
        c = str(t.user_attrs["race_candidate"])
        if t.params and (c not in entered or not params[c]):
            params[c], entered[c] = dict(t.params), int(t.user_attrs.get("race_entered", 0))
    candidates = list(params)
    rows = [{"candidate": str(t.user_attrs["race_candidate"]), "j": int(t.user_attrs["race_seed_index"]),
             "number": t.number, "status": status, plan.metric: math.nan if t.value is None else t.value}
            for t in trials if (status := _finished(t)) is not None]
    width = 1 + max((r["j"] for r in rows), default=-1)
    table = np.full((len(candidates), width), np.nan)
    unscored: dict[str, int] = {}
    runs = 0
    if rows:  # the first stored run of a (candidate, seed) counts, should a claim race ever run it twice
        frame = pd.DataFrame(rows).sort_values("number").drop_duplicates(["candidate", "j"])
        runs = len(frame)
        index = {c: i for i, c in enumerate(candidates)}
        for r in classify(frame, plan).itertuples():
            if np.isfinite(r.score):
                table[index[r.candidate], r.j] = r.score
            elif r.outcome == "diverged":
                unscored[r.candidate] = min(unscored.get(r.candidate, r.j), r.j)
    raised = Counter((str(t.user_attrs["race_candidate"]), int(t.user_attrs["race_seed_index"]))
                     for t in trials if t.state.name == "FAIL" and t.user_attrs.get("error"))
    finished = {(r["candidate"], r["j"]) for r in rows}
    failing: dict[str, int] = {}
    for (c, j), n in raised.items():
        if n >= ATTEMPTS and (c, j) not in finished:
            failing[c] = min(failing.get(c, j), j)
    return RaceData(candidates, params, entered, table, unscored, runs, plan, failing, retire)


@dataclass(frozen=True)
class RaceSummary:
    data: RaceData
    state: RaceState
    winner: Winner
    finalists: pd.DataFrame  # candidate, params, seeds, mean, ci_low, ci_high, vs incumbent
    drops: pd.DataFrame  # candidate, after seeds, against, diff, Holm p, test
    gap: SelectionGap | None
    expected_best: np.ndarray  # E[best of n candidates], n = 1..N
    expected_values: int  # seeds the expected-best values average over

    @property
    def ranking(self) -> list[str]:
        return list(self.finalists["candidate"])

    @property
    def means(self) -> dict[str, float]:
        return dict(zip(self.finalists["candidate"], self.finalists["mean"], strict=True))


def _mean_ci(values: np.ndarray) -> tuple[float, float, float]:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return math.nan, math.nan, math.nan
    if v.size == 1:
        return float(v[0]), math.nan, math.nan
    half = float(special.stdtrit(v.size - 1, 0.975) * v.std(ddof=1) / math.sqrt(v.size))
    return float(v.mean()), float(v.mean() - half), float(v.mean() + half)


def race_summary(data: RaceData) -> RaceSummary:
    state = data.state()
    direction = data.metric_plan.direction
    chosen = winner(data.table, data.candidates, state, DEFAULT, direction)
    gap = selection_gap(data.table, data.candidates, state, direction)
    vs = {r.candidate: r for r in (gap.rivals if gap else ())}
    index = {c: i for i, c in enumerate(data.candidates)}
    rows = []
    for c in state.live:
        seeds = data.table[index[c], : state.rounds]
        mean, lo, hi = _mean_ci(seeds)
        r = vs.get(c)
        rows.append({"candidate": c, "params": data.params[c], "seeds": int(np.isfinite(seeds).sum()),
                     "mean": mean, "ci_low": lo, "ci_high": hi,
                     "diff_vs_incumbent": r.diff if r else (0.0 if c == state.incumbent else math.nan),
                     "p_holm": r.p_holm if r else math.nan})
    finalists = pd.DataFrame(rows, columns=["candidate", "params", "seeds", "mean", "ci_low", "ci_high",
                                            "diff_vs_incumbent", "p_holm"])
    if len(finalists):
        s = 1 if direction == "maximize" else -1
        finalists = finalists.sort_values("mean", key=lambda m: -s * m.fillna(-s * np.inf), kind="stable")
        finalists = finalists.reset_index(drop=True)
    drops = pd.DataFrame([{"candidate": d.candidate, "after seeds": d.round + 1, "against": d.incumbent,
                           "diff": d.diff, "p_holm": d.p_holm, "test": d.test} for d in state.dropped],
                         columns=["candidate", "after seeds", "against", "diff", "p_holm", "test"])
    values, width = expected_values(data)
    curve = expected_best(values, direction) if len(values) else np.array([])
    return RaceSummary(data, state, chosen, finalists, drops, gap, curve, width)


def expected_values(data: RaceData) -> tuple[np.ndarray, int]:
    """Each candidate's mean over the leading seeds that every scored candidate ran (at least
    the first): one comparable value per candidate, paired across candidates by seed."""
    scored = np.isfinite(data.table).any(axis=1)
    if not scored.any():
        return np.array([]), 0
    rows = data.table[scored]
    full = np.isfinite(rows).all(axis=0)
    width = int(np.argmin(full)) if not full.all() else rows.shape[1]
    if width == 0:  # someone has not run the first seed: the first seed of those who have
        first = rows[:, 0]
        return first[np.isfinite(first)], 1
    return rows[:, :width].mean(axis=1), width


def race_plan(attrs: dict[str, Any]) -> MetricPlan:
    """The scoring plan of a race study, from its user attributes (objective, direction and the
    chance level the tuner scored diverged runs at)."""
    race = attrs.get("race") or {}
    chance = race.get("chance")
    return MetricPlan(metric=str(attrs.get("objective", "val_acc")), baseline=DEFAULT, alpha=0.05, margin=0.0,
                      direction=str(attrs.get("direction", "maximize")), chance=chance,
                      chance_source="the race study" if chance is not None else "unknown", population="all")


def race_retire(attrs: dict[str, Any]) -> Retire | None:
    """The never-learned rule of a race study, from its user attributes: its chance level and the
    failures rule's tolerance on the examples the arm's config (`base_config`) scores the
    objective on; None without a chance level (nothing to judge "never learned" against), for a
    race begun before the rule existed (its attributes lack `never_learned_seeds`), and for an
    accuracy whose chance level is at most 1 (fractions or percent: the scale is not known here)."""
    plan = race_plan(attrs)
    race = attrs.get("race") or {}
    if plan.chance is None or "never_learned_seeds" not in race:  # a race begun before the rule: replayed as it ran
        return None
    if plan.percent and plan.chance <= 1:
        # 0.1 is 10% in fractions or 0.1% of 1000 classes in percent: the tolerance would be 100x
        # off one way, and a retirement cannot be undone; not retiring only explores less
        return None
    examples = config_examples(plan.metric, attrs.get("base_config") or {})
    tolerance = noise_tolerance(plan, examples)
    assert tolerance is not None  # a chance level gives a tolerance
    return Retire(plan.chance, tolerance, DEFAULT, seeds=int(race["never_learned_seeds"]))


def is_race(attrs: dict[str, Any]) -> bool:
    return bool(attrs.get("race"))
