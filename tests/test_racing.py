"""Racing statistics (analysis.tuning.racing): the estimator against brute force, the paired test with a
planted effect and without one, the replayed race, and the issue's done-when toy as a simulation:
a default at the true optimum, large shared seed noise, and the tuned parameters never worse."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from analysis.tuning.racing import (
    Retire,
    expected_best,
    incumbent,
    never_learned,
    next_round,
    race_test,
    replay,
    selection_gap,
    winner,
)


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_expected_best_is_the_mean_best_over_every_subset(direction):
    rng = np.random.default_rng(3)
    values = np.round(rng.gamma(2.0, 3.0, size=9), 1)
    values[2] = values[5]  # ties
    best = max if direction == "maximize" else min
    got = expected_best(values, direction)
    for n in range(1, len(values) + 1):
        brute = np.mean([best(s) for s in itertools.combinations(values, n)])
        assert got[n - 1] == pytest.approx(brute, rel=1e-12)
    assert got[0] == pytest.approx(values.mean()) and got[-1] == best(values)


def test_expected_best_rejects_what_it_cannot_score():
    with pytest.raises(ValueError, match="values"):
        expected_best([1.0, float("nan")])
    with pytest.raises(ValueError, match="direction"):
        expected_best([1.0], "max")


def test_incumbent_is_the_best_mean_over_shared_seeds_not_one_lucky_seed():
    nan = np.nan
    table = np.array([[1.0, 1.0, 1.0],       # default: steady
                      [9.0, nan, nan],       # one lucky seed
                      [0.0, 0.5, 0.8]])
    assert incumbent(table, ["default", "lucky", "c"], "maximize") == "default"
    assert incumbent(table, ["default", "lucky", "c"], "minimize") == "c"


def _table(rng, shift, n_seeds=8, shared_sd=5.0, noise_sd=0.3):
    seed_effect = rng.normal(0, shared_sd, n_seeds)
    return np.vstack([seed_effect + rng.normal(0, noise_sd, n_seeds),
                      seed_effect + shift + rng.normal(0, noise_sd, n_seeds)])


def test_race_test_drops_a_planted_worse_rival_and_keeps_an_equal_one():
    rng = np.random.default_rng(0)
    reps = 300
    drop_worse = drop_equal = 0
    for _ in range(reps):
        # the shared seed effect (sd 5) dwarfs the effect (1): only pairing sees it
        drop_worse += race_test(_table(rng, -1.0), ["a", "b"], "a", ["b"], "maximize")[0].worse
        drop_equal += race_test(_table(rng, 0.0), ["a", "b"], "a", ["b"], "maximize")[0].worse
    power, size = drop_worse / reps, drop_equal / reps
    assert power > 0.95, f"power {power:.3f} (MC SE {math.sqrt(power * (1 - power) / reps):.3f})"
    # one-sided 5% test: the false drop rate stays near alpha (3 MC SEs of 0.05 is 0.038)
    assert size < 0.05 + 3 * math.sqrt(0.05 * 0.95 / reps), f"size {size:.3f}"


def test_replay_drops_worse_candidates_and_says_what_is_waiting():
    rng = np.random.default_rng(1)
    seeds = rng.normal(0, 5, 6)
    table = np.vstack([seeds, seeds - 3 + rng.normal(0, 0.1, 6), seeds + np.array([0.1, -0.1] * 3)])  # as good as the default
    table[1, 3:] = np.nan  # dropped after seed index 2: never ran more
    cands = ["default", "bad", "close"]
    state = replay(table[:, :5], cands, {"default": 0, "bad": 0, "close": 0}, "maximize")
    assert [d.candidate for d in state.dropped] == ["bad"] and state.dropped[0].round == 2
    assert state.live == ("default", "close") and state.rounds == 5
    assert state.waiting == (("default", 5), ("close", 5))  # the next round: seed index 5
    nr = next_round(state, size=3, budget_left=100)
    assert set(nr.runs) == {("default", 5), ("close", 5)} and nr.newcomers == 1
    assert next_round(state, size=3, budget_left=6).newcomers == 0  # a newcomer would need 6 more runs
    # a newcomer entering at round 5 must first run seeds 0..5
    grown = np.vstack([table, np.full(6, np.nan)])
    grown[3, :2] = seeds[:2]
    s2 = replay(grown, cands + ["new"], {"default": 0, "bad": 0, "close": 0, "new": 5}, "maximize")
    assert ("new", 2) in s2.waiting and ("new", 0) not in s2.waiting and s2.rounds == 5
    gap = selection_gap(table, cands, state, "maximize")
    assert gap is not None and gap.incumbent in ("default", "close") and gap.bound >= 0


def test_a_lone_survivor_runs_nothing_more_unless_a_newcomer_can_join():
    """With every rival dropped and too little budget for a newcomer's catch-up, the race used to
    spend the rest of the budget on the survivor alone: seeds that no comparison ever uses."""
    table = np.array([[0.1, -0.7, -0.5, 0.2], [0.6, -0.3, -0.1, 0.5]])
    cands = ["default", "t1"]
    state = replay(table, cands, {"default": 0, "t1": 0}, "minimize")
    assert state.live == ("default",) and state.rounds == 4
    alone = next_round(state, size=4, budget_left=3)  # a newcomer would need 5 runs
    assert alone.runs == () and alone.newcomers == 0
    joined = next_round(state, size=4, budget_left=10)  # one newcomer: its 5 runs plus the default's 1
    assert joined.runs == (("default", 4),) and joined.newcomers == 1

def test_an_unscoreable_divergence_drops_its_candidate():
    table = np.array([[1.0, 1.0, 1.0, 1.0], [2.0, 2.0, np.nan, np.nan]])
    state = replay(table, ["default", "wild"], {"default": 0, "wild": 0}, "maximize", unscored={"wild": 2})
    assert state.live == ("default",) and "diverged" in state.dropped[0].test



@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_a_default_that_diverged_unscored_never_wins(direction):
    # an arm whose own lr (outside the [tune] range) diverges on the first tuning seed, with no
    # chance level to score it: the default is dropped, and a working incumbent must win, not it
    table = np.array([[np.nan, np.nan, np.nan],  # default: diverged on seed 0, never ran again
                      [0.30, 0.10, 0.20], [0.50, 0.40, 0.45]])
    names = ["default", "t1", "t2"]
    state = replay(table, names, dict.fromkeys(names, 0), direction, unscored={"default": 0})
    chosen = winner(table, names, state, "default", direction)
    best = "t2" if direction == "maximize" else "t1"
    assert state.incumbent == best and chosen.candidate == best
    assert "diverged" in chosen.reason


def test_an_incumbent_that_diverged_unscored_never_wins():
    # t1 led clearly over three rounds, then diverged on seed 3 (unscoreable) while round 3 is
    # still waiting for t2: the last completed round's incumbent is a dropped candidate
    table = np.array([[1.0, 1.1, 0.9, 1.0], [3.0, 3.2, 2.9, np.nan], [1.5, 1.4, 1.6, np.nan]])
    names = ["default", "t1", "t2"]
    state = replay(table, names, dict.fromkeys(names, 0), "maximize", unscored={"t1": 3})
    assert "t1" not in state.live
    chosen = winner(table, names, state, "default", "maximize")
    assert chosen.candidate != "t1"

# --- the done-when toy, simulated: a default at the true optimum and large shared seed noise ---

A, SHARED_SD, NOISE_SD, LR0 = 1.0, 5.0, 0.3, 0.05  # score = -A (log lr - log lr0)^2 + seed + noise
TOLERANCE = 0.1  # "worse" = a true loss of more than a third of one run's own noise sd


def _score(log_lr, seed_effect, rng):
    # skewed noise (gamma, centred), as real runs are: a bad seed is worse than a good one is good
    skew = rng.gamma(2.0, NOISE_SD / math.sqrt(2.0), size=np.shape(log_lr)) - NOISE_SD * math.sqrt(2.0)
    return -A * (log_lr - math.log(LR0)) ** 2 + seed_effect - skew


def simulate_race(rng, budget=60, size=4):
    """One race through analysis.tuning.racing's own replay/next_round, candidates drawn log-uniform
    over lr0/100..100 lr0 (a random sampler), the default first. Returns (tuned log lr, runs)."""
    seed_effects = rng.normal(0, SHARED_SD, 200)
    logs = [math.log(LR0)]
    table = np.full((1, 0), np.nan)
    entered = {"0": 0}
    runs = 0
    while True:
        names = [str(i) for i in range(len(logs))]
        state = replay(table, names, entered, "maximize")
        step = next_round(state, size=size, budget_left=budget - runs)
        for _ in range(step.newcomers):
            logs.append(math.log(LR0) + rng.uniform(-math.log(100), math.log(100)))
            entered[str(len(logs) - 1)] = step.round
            table = np.vstack([table, np.full(table.shape[1], np.nan)])
        names = [str(i) for i in range(len(logs))]
        state = replay(table, names, entered, "maximize")
        todo = state.waiting or tuple((c, state.rounds) for c in state.live)
        todo = todo[: budget - runs]
        if not todo:
            break
        width = max(j for _, j in todo) + 1
        if width > table.shape[1]:
            table = np.hstack([table, np.full((len(logs), width - table.shape[1]), np.nan)])
        for c, j in todo:
            table[int(c), j] = _score(logs[int(c)], seed_effects[j], rng)
        runs += len(todo)
    final = replay(table, names, entered, "maximize")
    chosen = winner(table, names, final, "0", "maximize")
    return logs[int(chosen.candidate)], runs


def test_racing_never_tunes_worse_than_a_default_at_the_optimum():
    rng = np.random.default_rng(2026)
    reps = 300
    regrets, budgets = [], []
    for _ in range(reps):
        log_lr, runs = simulate_race(rng)
        regrets.append(A * (log_lr - math.log(LR0)) ** 2)
        budgets.append(runs)
    regrets_arr = np.array(regrets)
    worse = int((regrets_arr > TOLERANCE).sum())
    assert max(budgets) <= 60  # the budget is counted in runs, never exceeded
    # Never worse: 0 of 300 races (rule of three: the rate is below 1% with 95% confidence)
    assert worse == 0, f"{worse}/{reps} races tuned worse than the default (max loss {regrets_arr.max():.3f})"
    # The naive selection it replaces (random search, one fresh seed per candidate, best value
    # wins) does pick a worse lr, often: the winner's curse the race is built to survive.
    naive_worse = 0
    for _ in range(reps):
        log_lrs = np.concatenate([[math.log(LR0)], math.log(LR0) + rng.uniform(-math.log(100), math.log(100), 59)])
        values = _score(log_lrs, rng.normal(0, SHARED_SD, 60), rng)
        naive_worse += A * (log_lrs[int(np.argmax(values))] - math.log(LR0)) ** 2 > TOLERANCE
    rate = naive_worse / reps
    assert rate > 0.5, f"naive rate {rate:.3f} (MC SE {math.sqrt(rate * (1 - rate) / reps):.3f})"


def _trial(number, cand, j, value, state="COMPLETE", status="complete", lr=0.1, **attrs):
    import optuna

    t = optuna.trial.create_trial(
        state=getattr(optuna.trial.TrialState, state), value=value if state == "COMPLETE" else None,
        params={"lr": lr}, distributions={"lr": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)},
        user_attrs={"race_candidate": cand, "race_entered": 0, "race_seed_index": j, "status": status, **attrs})
    t.number = number
    return t


@pytest.mark.parametrize("chance", [None, 10.0])
def test_a_stored_race_scores_divergence_by_the_failures_rule(chance):
    """Diverged runs are outcomes: scored at chance when it is known, else they drop their
    candidate; failed runs (an exception) are no outcome and are retried; a (candidate, seed)
    stored twice counts once."""
    from analysis.tuning.race_study import race_data, race_plan, race_summary

    trials = [_trial(0, "default", 0, 50.0), _trial(1, "t1", 0, 52.0, lr=0.5), _trial(2, "default", 1, 51.0),
              _trial(3, "t1", 1, None, state="PRUNED", status="diverged", lr=0.5),
              _trial(4, "t1", 1, None, state="FAIL", status="failed", lr=0.5),
              _trial(5, "default", 1, 99.0)]  # the same (candidate, seed) again: the first counts
    attrs = {"objective": "val_acc", "direction": "maximize", "race": {"chance": chance}}
    data = race_data(trials, race_plan(attrs))
    assert data.candidates == ["default", "t1"] and data.runs == 4
    assert data.table[0].tolist() == [50.0, 51.0] and data.params["t1"] == {"lr": 0.5}
    if chance is None:
        assert data.unscored == {"t1": 1} and np.isnan(data.table[1, 1])
        summary = race_summary(data)
        assert summary.state.live == ("default",) and "diverged" in summary.drops["test"].iloc[0]
    else:
        assert data.unscored == {} and data.table[1].tolist() == [52.0, 10.0]


def test_a_candidate_whose_run_raises_on_every_attempt_is_dropped_not_retried_forever():
    """A configuration that always raises (width 512 runs out of memory) used to be retried on
    every rerun, so the race never finished; its retry raising again makes it an outcome of the
    configuration: dropped, unscored. One failed attempt, or a worker killed mid-run (no error
    stored), is still retried."""
    from analysis.tuning.race_study import race_data, race_plan, race_summary

    oom = {"error": "RuntimeError: CUDA out of memory"}
    trials = [_trial(0, "default", 0, 50.0), _trial(1, "t1", 0, 52.0, lr=0.5),
              _trial(2, "t2", 0, None, state="FAIL", status="failed", lr=0.9, **oom),
              _trial(3, "default", 1, 51.0), _trial(4, "t1", 1, 53.0, lr=0.5),
              _trial(5, "t2", 0, None, state="FAIL", status="failed", lr=0.9, **oom),
              _trial(6, "t1", 2, None, state="FAIL", status="failed", lr=0.5, **oom),  # once: retried
              _trial(7, "default", 2, None, state="FAIL", lr=0.1),  # killed worker: no error
              _trial(8, "default", 2, None, state="FAIL", lr=0.1)]
    attrs = {"objective": "val_acc", "direction": "maximize", "race": {"chance": None}}
    summary = race_summary(race_data(trials, race_plan(attrs)))
    assert set(summary.state.live) == {"default", "t1"}
    assert list(summary.drops["candidate"]) == ["t2"] and "raised" in summary.drops["test"].iloc[0]
    assert set(summary.state.waiting) == {("default", 2), ("t1", 2)}

def test_the_report_counts_drops_by_the_test_apart_from_unscoreable_ones():
    """The race paragraph said every drop was "showed worse by the paired t-test", counting a
    candidate that was dropped because its run raised twice (or diverged with no chance level)."""
    import pandas as pd

    from analysis.report.race import race_text
    from analysis.tuning.race_study import race_data, race_plan, race_summary
    from analysis.tuning.studies import Tuning

    oom = {"error": "RuntimeError: CUDA out of memory"}
    trials = [_trial(n, c, j, 50.0 + j if c == "default" else 40.0 + j, lr=0.1 if c == "default" else 0.5)
              for n, (c, j) in enumerate((c, j) for j in range(3) for c in ("default", "t1"))]
    trials += [_trial(6, "t2", 0, None, state="FAIL", status="failed", lr=0.9, **oom),
               _trial(7, "t2", 0, None, state="FAIL", status="failed", lr=0.9, **oom)]
    attrs = {"objective": "val_acc", "direction": "maximize", "race": {"chance": None}}
    race = race_summary(race_data(trials, race_plan(attrs)))
    assert sorted(race.drops["candidate"]) == ["t1", "t2"]
    t = Tuning(name="x-tune-baseline-race", arm="baseline", trials=pd.DataFrame(), importances={}, best={},
               race=race)
    text = race_text(t, race)
    assert "was dropped: 1 of them" in text and "1 more could not be scored" in text

def test_the_budget_table_shows_each_arm_up_to_what_it_tried():
    from analysis.report.figures.tuning_budget import (
        budget_points,
        expected_best_figure,
        expected_best_table,
    )

    assert budget_points(11) == [1, 2, 4, 8, 11] and budget_points(8) == [1, 2, 4, 8] and budget_points(0) == []
    curves = {"a": expected_best([1.0, 3.0, 2.0]), "b (race)": expected_best([5.0], "minimize")}
    table = expected_best_table(curves)
    assert list(table.columns) == ["arm", "candidates", "n = 1", "n = 2", "n = 3"]
    assert table.iloc[0].tolist() == ["a", 3, "2.00", "2.67", "3.00"] and table.iloc[1, 3] == ""
    assert expected_best_figure(curves, "val").axes[0].get_xlabel().startswith("tuning budget")


def test_the_selection_gap_is_wide_between_equals_and_narrows_with_seeds():
    rng = np.random.default_rng(7)
    gaps = {}
    for n in (4, 16):
        seeds = rng.normal(0, 5, n)
        table = np.vstack([seeds + rng.normal(0, 0.5, n), seeds + rng.normal(0, 0.5, n)])  # equals
        # no test before the end (first_test past the last seed): both stay finalists
        state = replay(table, ["default", "twin"], {"default": 0, "twin": 0}, "maximize", first_test=n + 1)
        assert len(state.live) == 2
        gap = selection_gap(table, ["default", "twin"], state, "maximize")
        assert gap is not None and len(gap.rivals) == len(state.live) - 1
        gaps[n] = gap.bound
    # between equals the incumbent may trail by about a paired SE; four times the seeds halve it
    assert gaps[4] > 0.3 and 0 < gaps[16] < gaps[4]


# --- never learned: a candidate whose first 2 runs sat at chance leaves, its slot to a newcomer ---

RETIRE = Retire(chance=10.0, tolerance=1.27, keep="default")


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_never_learned_needs_every_first_run_at_chance(direction):
    s = 1 if direction == "maximize" else -1
    rule = Retire(chance=10.0, tolerance=1.0, keep="default")
    assert never_learned(np.array([10.0 + s * 0.5, 10.0 - s * 3.0]), rule, direction)  # at or below chance
    assert not never_learned(np.array([10.0 + s * 5.0, 10.0]), rule, direction)  # one run learned
    assert not never_learned(np.array([10.0, np.nan, 10.0]), rule, direction)  # evidence still missing
    assert not never_learned(np.array([10.0]), rule, direction)
    with pytest.raises(ValueError, match="seeds"):
        Retire(chance=10.0, tolerance=1.0, keep="default", seeds=1)


def test_replay_retires_a_never_learner_mid_round_but_never_the_default():
    nan = np.nan
    names = ["default", "t1", "t2", "t5"]
    table = np.array([[10.2, 9.9, 10.4, 10.1],   # the default sits at chance too: kept
                      [10.3, 10.8, nan, nan],    # never learned: retired after its 2 seeds
                      [35.0, 10.1, 34.0, 36.0],  # a bad seed among its first two: it learned
                      [9.6, 10.5, nan, nan]])    # entered at round 3, its catch-up cut short
    entered = {"default": 0, "t1": 0, "t2": 0, "t5": 3}
    old = replay(table, names, entered, "maximize")
    assert "t1" in old.live and not any(d.never_learned for d in old.dropped)
    new = replay(table, names, entered, "maximize", retire=RETIRE)
    retired = [d for d in new.dropped if d.never_learned]
    # each after its first 2 seeds: t5 entered at round 3 (its drop was dated round 1, before it entered)
    assert [(d.candidate, d.round) for d in retired] == [("t1", 1), ("t5", 3)]
    assert "never learned" in retired[0].test and retired[0].incumbent == "chance (10)"
    # the default is never retired as never learned; it leaves only when the paired test shows it worse
    assert [(d.candidate, d.never_learned) for d in new.dropped if d.candidate == "default"] == [("default", False)]
    assert new.live == ("t2",) and new.incumbent == "t2"
    assert ("t5", 2) not in new.waiting and ("t5", 3) not in new.waiting
    with pytest.raises(ValueError, match="first_test"):
        replay(table, names, entered, "maximize", retire=Retire(10.0, 1.0, "default", seeds=4))


def test_a_stored_race_retires_never_learners_and_the_report_says_why():
    """From the study's attributes (chance, the arm's val_size): tolerance 3 binomial sds of 10%
    on 5000 examples, 1.27 points; without a chance level nothing is retired."""
    import pandas as pd

    from analysis.report.race import drop_table, race_text
    from analysis.tuning.race_study import race_data, race_plan, race_retire, race_summary
    from analysis.tuning.studies import Tuning

    values = {"default": [10.22, 10.1, 10.22], "t1": [10.84, 9.48, None], "t2": [30.0, 31.0, 29.0]}
    trials = [_trial(n, c, j, v, lr={"default": 0.1, "t1": 0.01, "t2": 1e-4}[c])
              for n, (c, j, v) in enumerate((c, j, v) for c, vs in values.items() for j, v in enumerate(vs)
                                            if v is not None)]
    attrs = {"objective": "val_acc", "direction": "maximize", "race": {"chance": 10.0, "never_learned_seeds": 2},
             "base_config": {"val_size": 5000}}
    rule = race_retire(attrs)
    assert rule is not None and rule.tolerance == pytest.approx(1.2728, abs=1e-3) and rule.keep == "default"
    assert race_retire({**attrs, "race": {"chance": None, "never_learned_seeds": 2}}) is None
    # a race stored before the rule replays as it ran: no retirement it did not make
    assert race_retire({**attrs, "race": {"chance": 10.0}}) is None
    # an accuracy with chance 0.1: 10% in fractions or 1000 classes in percent; a tolerance read
    # on the wrong scale (0.3 = 30 points in fractions) would retire learners, so no rule
    assert race_retire({**attrs, "race": {"chance": 0.1, "never_learned_seeds": 2}}) is None
    race = race_summary(race_data(trials, race_plan(attrs), retire=rule))
    # t1 retired as never learned; the default, at chance too, left by the paired test against t2
    assert list(race.drops["candidate"]) == ["t1", "default"] and race.state.live == ("t2",)
    table = drop_table(race)
    assert "paired t" in table["test"].iloc[1] and table["test"].iloc[0].startswith("never learned: its first 2 seeds") and table["against"].iloc[0] == "chance (10)"
    t = Tuning(name="x-tune-no_bn-race", arm="no_bn", trials=pd.DataFrame(), importances={}, best={}, race=race)
    text = race_text(t, race)
    assert "was dropped: 1 of them" in text and "1 more never learned" in text
    assert race.winner.candidate == "t2"  # shown better than the default at chance by the paired test
    # the same trials without a chance level: the race as it was, t1 still racing
    assert "t1" in race_summary(race_data(trials, race_plan({**attrs, "race": {"chance": None}}))).state.live


@pytest.mark.slow
def test_a_narrow_band_that_learns_is_found_more_often_by_retiring_never_learners():
    """The paper's no_bn race: every lr tried sat at chance, 30 runs went to 4 candidates. On a toy
    where only an eighth of the log-lr range learns, the old race finds a learning winner in
    about a third of races, the new one in about three quarters (benchmarks/race_explore_sim.py);
    and it never lets a candidate at chance other than the default win (the old race did, by
    false positives of the paired test between candidates at chance)."""
    from analysis.tuning.race_sim import BAND, rate, simulate_race

    rng = np.random.default_rng(11)
    reps = 120
    old = [simulate_race(rng, BAND, retire=False, budget=30) for _ in range(reps)]
    new = [simulate_race(rng, BAND, retire=True, budget=30) for _ in range(reps)]
    learned_old = rate(np.array([o.winner_effect > 0 for o in old]))
    learned_new = rate(np.array([o.winner_effect > 0 for o in new]))
    # planted difference about 0.4; its MC SE about 0.06: the margin is over 3 SEs from both
    assert learned_new.value - learned_old.value > 0.2, (learned_old, learned_new)
    assert np.mean([o.explored for o in new]) > 2 * np.mean([o.explored for o in old])
    assert not any(o.winner_effect == 0 and not o.winner_is_default for o in new)
    assert max(o.runs for o in new) <= 30


@pytest.mark.slow
def test_retiring_never_learners_still_keeps_a_default_at_the_optimum():
    from analysis.tuning.race_sim import DEFAULT_BEST, rate, simulate_race

    rng = np.random.default_rng(12)
    reps = 100
    new = [simulate_race(rng, DEFAULT_BEST, retire=True, budget=60) for _ in range(reps)]
    off = rate(np.array([not o.winner_is_default for o in new]))
    assert off.value <= 0.12, off  # the old race: about 3% (docs/tuning.md); MC SE here about 0.02
    # a move off the default is to a near-equal lr, never to one at chance
    assert min(o.winner_effect for o in new) > 20
