"""Racing (F-race / irace style) as small pure functions: which candidate configuration leads,
which ones a paired test shows worse, what the next round must run, and how much selection
uncertainty remains; plus the expected best validation score against the tuning budget.

A race table is a candidates x tuning-seeds array of validation scores (NaN: the candidate has
not run that seed). Seed index j is the j-th tuning seed, the same for every candidate, so
two candidates are always compared on the seeds they *share* (paired): a seed that is easy for
every configuration lifts all of them alike and cancels in the difference. Why that matters:
with large shared seed effects, "best score on one seed each" picks the luckiest seed, not the
best configuration (the winner's curse); a paired mean over shared seeds does not.

The rules, each owned by one function:

* `incumbent`: among the candidates with the most seeds, the best mean over the seeds they all
  share: never one lucky seed.
* `race_test`: each live rival against the incumbent by a one-sided paired t-test on their
  shared seeds ("is the rival worse?"), Holm-adjusted over the live rivals. Why not F-race's
  Friedman + rank post-hoc: ranks of 3-5 seeds have coarse p-values (a one-sided sign/rank test
  on 3 seeds cannot go below 1/8), so a rank race drops nothing until many seeds; the paired
  t-test works in the metric's units, which is also what the report states (difference, CI).
  Holm because every round tests several rivals at once.
* `replay`: the race state rebuilt from the table alone (which candidate entered at which
  round), round by round, so that every worker, and a rerun after a crash, reach the same state.
* `never_learned`: a candidate whose first NEVER_LEARNED_SEEDS runs all sat at chance leaves
  the race ("never learned"), so its slot goes to a newcomer. Why: a run that never learns is
  an outcome of its recipe, and between candidates that all sit at chance no paired test can
  ever drop anything: the race then spends its budget on more seeds of the same few dead
  candidates and never explores (the paper's `no_bn` race: 4 lrs, 30 runs, all at chance).
* `next_round`: what the next round still needs (missing (candidate, seed) runs) and whether a
  new candidate may enter.
* `selection_gap`: how much the incumbent could still trail the best finalist (simultaneous
  upper confidence bound over the live rivals).
* `expected_best`: expected best score of n candidates drawn from those tried (Dodge et al.
  2019), with the unbiased without-replacement estimator of Tang et al. (2020).

Failures are outcomes (analysis.stats.failures): the caller scores diverged runs at chance through
`failures.classify`; a run that diverged and cannot be scored (no chance level) is passed as
`unscored` and drops its candidate, because an unstable configuration must never win by
leaving its bad seeds out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special

from analysis._checks import holm
from analysis.stats.direction import sign
from analysis.stats.failures import at_chance

FIRST_TEST = 3  # seeds before the first test: with 2 the paired sd rests on one difference
ALPHA = 0.05
# Runs at chance before a candidate is retired as never learned. Not 1: a configuration that
# learns can still have a bad seed (the paper's no_bn: 1 of 6 full-preset runs stayed at
# chance), and one such seed must not retire it; with 2 a learner whose runs fail independently
# with probability q is retired with probability q^2 (3% at q = 1/6). Not 3: every retired
# candidate costs this many runs, and 3 is FIRST_TEST, when the paired test could act anyway.
NEVER_LEARNED_SEEDS = 2


@dataclass(frozen=True)
class Rival:
    """One live rival against the incumbent, on the seeds they share."""
    candidate: str
    n: int  # shared seeds
    diff: float  # rival - incumbent, metric units (its sign: see `direction`)
    ci_low: float  # 95% CI of `diff` (t, n - 1 df)
    ci_high: float
    p: float  # one-sided paired t-test: the rival is worse
    p_holm: float  # Holm over the live rivals of this round
    worse: bool  # p_holm < alpha: dropped


@dataclass(frozen=True)
class Drop:
    """A candidate dropped from the race: when, against whom, by what test."""
    candidate: str
    round: int  # the round (seed index) after which it was dropped
    incumbent: str
    diff: float  # candidate - incumbent over their shared seeds (nan: not scoreable)
    p_holm: float
    test: str  # "paired t (one-sided), Holm over k rivals" or "diverged on seed index j, not scoreable"
    unscored: bool = False  # dropped for a run that could not be scored, not by the test
    never_learned: bool = False  # retired: its first runs all sat at chance (`never_learned`)


@dataclass(frozen=True)
class RaceState:
    live: tuple[str, ...]  # candidates still racing (the incumbent among them)
    dropped: tuple[Drop, ...]
    rounds: int  # completed rounds: every live candidate has seeds 0..rounds-1
    incumbent: str | None  # best of the completed rounds (None before the first one completes)
    waiting: tuple[tuple[str, int], ...]  # (candidate, seed index) runs the current round still needs


@dataclass(frozen=True)
class Retire:
    """The never-learned rule's settings: the metric's `chance` level, how far from it a run
    may be and still not have learned (`tolerance`, metric units: analysis.stats.failures'
    noise_tolerance), the candidate never retired (`keep`: the default, the reference every
    winner is tested against and what not tuning gives), and the runs that decide (`seeds`)."""
    chance: float
    tolerance: float
    keep: str
    seeds: int = NEVER_LEARNED_SEEDS

    def __post_init__(self):
        if not (np.isfinite(self.chance) and np.isfinite(self.tolerance) and self.tolerance >= 0):
            raise ValueError(f"`chance` and `tolerance` must be finite, `tolerance` >= 0; got {self.chance!r}, "
                             f"{self.tolerance!r}")
        if self.seeds < 2:
            raise ValueError(f"`seeds` must be at least 2 (one bad seed is no evidence), got {self.seeds}")

    def describe(self) -> str:
        return (f"never learned: its first {self.seeds} seeds all within {self.tolerance:.3g} of "
                f"chance ({self.chance:g})")


def never_learned(scores: np.ndarray, retire: Retire, direction: str) -> bool:
    """Did a candidate's first `retire.seeds` runs (seed indices 0..seeds-1, scored: a diverged
    run sits at chance) all end at chance within `retire.tolerance`? False while any of them is
    missing: the rule waits for its evidence."""
    first = np.asarray(scores, dtype=float)[: retire.seeds]
    if first.size < retire.seeds or not np.isfinite(first).all():
        return False
    return bool(at_chance(first, retire.chance, retire.tolerance, direction).all())


def _signed(table: np.ndarray, direction: str) -> np.ndarray:
    return sign(direction) * np.asarray(table, dtype=float)


def _check(table: np.ndarray, candidates: Sequence[str]) -> np.ndarray:
    arr = np.asarray(table, dtype=float)
    if arr.ndim != 2 or arr.shape[0] != len(candidates):
        raise ValueError(f"`table` must be candidates x seeds ({len(candidates)} rows), got shape {arr.shape}")
    if np.isinf(arr).any():
        raise ValueError("`table` holds +/-inf: score failed runs (analysis.stats.failures.classify) before racing")
    return arr


def incumbent(table: np.ndarray, candidates: Sequence[str], direction: str) -> str:
    """The candidate with the best mean over the seeds shared by all candidates that ran the
    most seeds (ties: the earlier candidate, so the default, listed first, keeps its place)."""
    arr = _check(table, candidates)
    counts = np.isfinite(arr).sum(axis=1)
    if counts.max(initial=0) == 0:
        raise ValueError("no candidate has a score yet")
    top = np.flatnonzero(counts == counts.max())
    shared = np.isfinite(arr[top]).all(axis=0)
    if not shared.any():  # the most-run candidates share no seed: compare each on its own seeds
        means = np.nanmean(_signed(arr[top], direction), axis=1)
    else:
        means = _signed(arr[top][:, shared], direction).mean(axis=1)
    return candidates[int(top[int(np.argmax(means))])]


def race_test(table: np.ndarray, candidates: Sequence[str], best: str, rivals: Sequence[str],
              direction: str, alpha: float = ALPHA) -> list[Rival]:
    """Each rival against `best` by a one-sided paired t-test on their shared seeds, Holm over
    the rivals. A rival sharing fewer than 2 seeds, or with zero-variance differences that are
    not all below the incumbent, is never dropped (no evidence)."""
    if not 0 < alpha < 1:
        raise ValueError(f"`alpha` must be in (0, 1), got {alpha!r}")
    arr = _signed(_check(table, candidates), direction)
    index = {c: i for i, c in enumerate(candidates)}
    raw, rows = [], []
    for rival in rivals:
        shared = np.isfinite(arr[index[rival]]) & np.isfinite(arr[index[best]])
        d = arr[index[rival], shared] - arr[index[best], shared]  # > 0: the rival is better
        n = int(d.size)
        mean = float(d.mean()) if n else float("nan")
        sd = float(d.std(ddof=1)) if n > 1 else float("nan")
        if n < 2 or not sd > 0:
            p = 0.0 if (n >= FIRST_TEST and np.all(d < 0)) else 1.0  # always behind, by the same amount
            half = float("nan") if n < 2 else 0.0
        else:
            se = sd / np.sqrt(n)
            p = float(special.stdtr(n - 1, mean / se))  # the t cdf, as a ufunc: fast in simulations
            half = float(special.stdtrit(n - 1, 0.975) * se)
        raw.append(p)
        rows.append((rival, n, mean, half))
    adjusted = holm(raw) if raw else np.array([])
    s = sign(direction)
    out = []
    for (rival, n, mean, half), p, q in zip(rows, raw, adjusted, strict=True):
        lo, hi = sorted((s * (mean - half), s * (mean + half)))
        out.append(Rival(rival, n, s * mean, lo, hi, p, float(q), bool(q < alpha)))
    return out


def replay(table: np.ndarray, candidates: Sequence[str], entered: Mapping[str, int], direction: str, *,
           unscored: Mapping[str, int] | None = None, failing: Mapping[str, int] | None = None,
           retire: Retire | None = None, alpha: float = ALPHA, first_test: int = FIRST_TEST) -> RaceState:
    """The race state from its table: round k runs seed index k for every candidate that
    entered at or before k and is still live (a candidate entering at round k first catches up
    on seeds 0..k-1, so its comparisons stay paired). When round k is complete and has at least
    `first_test` seeds, the rivals the paired test shows worse than the incumbent are dropped.
    `unscored`: candidate -> seed index of a run that diverged and could not be scored;
    `failing`: candidate -> seed index of a run that raised on every attempt (its retry too);
    `retire`: retire candidates that never learned (`never_learned`; None: never), as soon as
    their first seeds are in, even mid-round: the rest of a newcomer's catch-up is then saved."""
    arr = _check(table, candidates)
    if first_test < 2:
        raise ValueError(f"`first_test` must be at least 2 seeds, got {first_test}")
    if retire is not None and retire.seeds > first_test:
        # a retirement must never wait for a test: every test needs a complete round, hence each
        # racing candidate's first seeds, so a candidate is retired before any test can see it,
        # live and in a replay of any later table alike
        raise ValueError(f"`retire.seeds` ({retire.seeds}) must not exceed `first_test` ({first_test})")
    unscored = dict(unscored or {})
    failing = dict(failing or {})
    dropped: list[Drop] = []
    gone: set[str] = set()
    best: str | None = None
    index = {c: i for i, c in enumerate(candidates)}
    k = 0
    while True:
        racing = [c for c in candidates if entered[c] <= k and c not in gone]
        for c in racing:
            if c in unscored and unscored[c] <= k:
                dropped.append(Drop(c, k, best or "-", float("nan"), 0.0,
                                    f"diverged on seed index {unscored[c]}, not scoreable", unscored=True))
                gone.add(c)
            elif c in failing and failing[c] <= k:
                dropped.append(Drop(c, k, best or "-", float("nan"), 0.0,
                                    f"raised on seed index {failing[c]} on every attempt, not scoreable",
                                    unscored=True))
                gone.add(c)
            elif retire is not None and c != retire.keep and never_learned(arr[index[c]], retire, direction):
                dropped.append(Drop(c, max(k, retire.seeds - 1), f"chance ({retire.chance:g})", float("nan"), float("nan"),
                                    retire.describe(), never_learned=True))
                gone.add(c)
        racing = [c for c in racing if c not in gone]
        if best in gone:  # the incumbent itself diverged: the best of the rest over the completed rounds
            best = _best_of(arr[[index[c] for c in racing], :k], racing, direction)
        if not racing:
            return RaceState((), tuple(dropped), k, best, ())
        rows = [index[c] for c in racing]
        done = np.isfinite(arr[rows, : k + 1])
        if done.shape[1] < k + 1 or not done.all():
            waiting = tuple((c, j) for c, row in zip(racing, rows, strict=True)
                            for j in range(k + 1) if j >= arr.shape[1] or not np.isfinite(arr[row, j]))
            return RaceState(tuple(racing), tuple(dropped), k, best, waiting)
        sub = arr[rows, : k + 1]
        best = incumbent(sub, racing, direction)
        if k + 1 >= first_test and len(racing) > 1:
            rivals = [c for c in racing if c != best]
            for r in race_test(sub, racing, best, rivals, direction, alpha):
                if r.worse:
                    test = f"paired t (one-sided) on {r.n} seeds, Holm over {len(rivals)} rival(s)"
                    dropped.append(Drop(r.candidate, k, best, r.diff, r.p_holm, test))
                    gone.add(r.candidate)
        k += 1


def _best_of(table: np.ndarray, candidates: Sequence[str], direction: str) -> str | None:
    """`incumbent` of `table`, or None when no candidate in it has a score."""
    return incumbent(table, candidates, direction) if np.isfinite(table).any() else None


@dataclass(frozen=True)
class Winner:
    """The race's answer: the incumbent where a paired test shows it better than the default
    (the arm's own parameters), else the default itself."""
    candidate: str
    incumbent: str | None
    versus_default: Rival | None  # the incumbent against the default (None: it is the default)
    reason: str


def winner(table: np.ndarray, candidates: Sequence[str], state: RaceState, default: str,
           direction: str, alpha: float = ALPHA) -> Winner:
    """The tuned parameters: the incumbent only when a one-sided paired t-test on the seeds it
    shares with `default` shows it better at `alpha`. Why this rule: the race ends with the
    incumbent ahead of survivors it could not tell apart from itself, and a lead that no test
    backs is within the selection noise; moving off the arm's own parameters on it would make
    tuning worse than not tuning whenever the default is already (near) the optimum."""
    best = state.incumbent
    failed = next((d for d in state.dropped if d.candidate == default and d.unscored), None)
    if failed is not None:
        # the default cannot be scored, so no test can keep it: an unstable configuration never
        # wins by leaving its bad seeds out (module docstring); the incumbent is the best that can
        if best is None:
            return Winner(default, None, None, f"the default {failed.test} and no other candidate completed a "
                                               "round: nothing to tune to (declare `chance` to score divergence)")
        return Winner(best, best, None, f"the default {failed.test}; the incumbent wins")
    if best is None or best == default:
        return Winner(default, best, None, "the default leads the race" if best else "no round completed")
    test = race_test(table, candidates, default, [best], direction, alpha)[0]  # diff: incumbent - default
    flipped = "minimize" if direction == "maximize" else "maximize"
    back = race_test(table, candidates, default, [best], flipped, alpha)[0]  # p: the incumbent is better
    if back.p < alpha:
        return Winner(best, best, test, f"the incumbent beats the default (one-sided paired t, p = {back.p:.3g})")
    return Winner(default, best, test, f"the incumbent's lead over the default is not shown (p = {back.p:.3g}); "
                                       "the default stays")


@dataclass(frozen=True)
class NextRound:
    runs: tuple[tuple[str, int], ...]  # (candidate, seed index) still to run in this round
    newcomers: int  # new candidates that may enter now (each then runs seeds 0..round)
    round: int


def next_round(state: RaceState, *, size: int, budget_left: int) -> NextRound:
    """The runs the current round needs, and how many new candidates may enter: enough to bring
    the live candidates back to `size`, each only if the budget still pays for its catch-up
    (round + 1 runs) on top of the round's pending runs. A lone survivor that no newcomer can
    join runs nothing more: the race is over before its budget is."""
    if size < 2:
        raise ValueError(f"`size` (live candidates per round) must be at least 2, got {size}")
    runs = state.waiting or tuple((c, state.rounds) for c in state.live)
    left = budget_left - len(runs)
    newcomers = 0
    while len(state.live) + newcomers < size and left >= state.rounds + 1:
        newcomers += 1
        left -= state.rounds + 1
    if len(state.live) == 1 and not newcomers and state.rounds > 0:
        # a lone survivor's further seeds pair with nobody's: no test, winner or gap would use them
        runs = ()
    return NextRound(runs, newcomers, state.rounds)


@dataclass(frozen=True)
class SelectionGap:
    incumbent: str
    rivals: tuple[Rival, ...]  # the live rivals against the incumbent (Holm p, 95% CI)
    bound: float  # the incumbent may trail the best live rival by up to this (>= 0, metric units)
    level: float  # simultaneous confidence of `bound` (Bonferroni over the rivals)


def selection_gap(table: np.ndarray, candidates: Sequence[str], state: RaceState, direction: str,
                  level: float = 0.95) -> SelectionGap | None:
    """How much worse than the best finalist the incumbent may still be: the largest upper
    confidence bound, over the live rivals, of how far a rival leads the incumbent (paired, on
    their shared seeds; Bonferroni-simultaneous at `level`). 0 when every rival is shown behind."""
    if state.incumbent is None:
        return None
    arr = _signed(_check(table, candidates), direction)
    index = {c: i for i, c in enumerate(candidates)}
    rivals = [c for c in state.live if c != state.incumbent]
    tests = race_test(table, candidates, state.incumbent, rivals, direction) if rivals else []
    bound = 0.0
    for rival in rivals:
        a, b = arr[index[rival]], arr[index[state.incumbent]]
        shared = np.isfinite(a) & np.isfinite(b)
        d = a[shared] - b[shared]
        if d.size < 2:
            return SelectionGap(state.incumbent, tuple(tests), float("inf"), level)
        q = 1 - (1 - level) / len(rivals)
        up = d.mean() + special.stdtrit(d.size - 1, q) * d.std(ddof=1) / np.sqrt(d.size)
        bound = max(bound, float(up))
    return SelectionGap(state.incumbent, tuple(tests), bound, level)


def expected_best(values: Sequence[float] | np.ndarray, direction: str = "maximize") -> np.ndarray:
    """E[best of n candidates] for n = 1..N, n drawn without replacement from the N observed
    scores (Tang et al. 2020's unbiased estimator of Dodge et al. 2019's expected validation
    performance): with the scores sorted worst to best, v_(1..N),
    E[max_n] = sum_{i=n..N} C(i-1, n-1) / C(N, n) * v_(i)."""
    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or v.size == 0 or not np.isfinite(v).all():
        raise ValueError(f"`values` must be a non-empty 1-d sequence of finite scores, got {values!r}")
    s = sign(direction)
    ordered = np.sort(s * v)  # worst first
    big_n = ordered.size
    i = np.arange(1, big_n + 1)
    out = np.empty(big_n)
    for n in range(1, big_n + 1):
        # weights in log space: C(i-1, n-1) / C(N, n) overflows as a ratio of factorials
        w = np.zeros(big_n)
        ok = i >= n
        w[ok] = np.exp(_log_comb(i[ok] - 1, n - 1) - _log_comb(big_n, n))
        out[n - 1] = s * float(w @ ordered)
    return out


def _log_comb(n, k):
    return special.gammaln(np.asarray(n) + 1) - special.gammaln(np.asarray(k) + 1) - special.gammaln(np.asarray(n) - k + 1)
