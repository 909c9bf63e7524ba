"""Sequential studies: boundaries, plan, decision rule, and error rates by simulation."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from analysis import DegenerateDataWarning
from analysis.sequential.boundaries import nominal_levels, spend, z_boundaries
from analysis.sequential.decide import (
    Decision,
    SequentialPlan,
    decide,
    next_seeds,
    paired_differences,
    plan_deviations,
)
from analysis.sequential.simulate import (
    BETTER,
    EQUIVALENT,
    WORSE,
    run_naive,
    run_sequential,
    simulate_differences,
)

# Noise as in results/notebook-ablation-quick (baseline vs no_scheduler, 32 paired seeds):
# per-arm sd ~2 points, correlation 0.74 between arms -> sd of differences ~1.44.
SD, RHO = 2.0, 0.74


def plan(**kw):
    base = dict(baseline="base", arms=("a",), margin=0.5, max_seeds=40)
    return SequentialPlan(**(base | kw))


# --- boundaries ----------------------------------------------------------------------


def test_pocock_type_boundaries_match_published_values():
    # Lan-DeMets Pocock-type spending, K = 5 equally spaced, two-sided alpha = 0.05
    # (e.g. R ldbounds / gsDesign): 2.438, 2.427, 2.410, 2.397, 2.386.
    c = z_boundaries("pocock", None, 0.05, (0.2, 0.4, 0.6, 0.8, 1.0))
    np.testing.assert_allclose(c, [2.438, 2.427, 2.410, 2.397, 2.386], atol=2e-3)


@pytest.mark.parametrize(("spending", "param", "fractions"), [
    ("obrien-fleming", None, (0.15, 0.33, 0.5, 0.81, 1.0)),  # unequal, as after failed runs
    ("power", 1.0, (0.15, 0.33, 0.5, 0.81, 1.0)),
    ("hsd", -2.0, (0.15, 0.33, 0.5, 0.81, 1.0)),
    ("power", 1.0, (0.2, 0.5, 0.9, 0.97, 0.99, 1.0)),  # looks one seed apart at the end
])
def test_boundaries_spend_alpha_as_planned_by_monte_carlo(spending, param, fractions):
    # Brownian motion crosses look j first with probability f(t_j) - f(t_{j-1}).
    k = len(fractions)
    c = np.array(z_boundaries(spending, param, 0.05, fractions))
    rng = np.random.default_rng(1)
    inc = rng.normal(size=(400_000, k)) * np.sqrt(np.diff((0.0,) + fractions))
    z = np.cumsum(inc, axis=1) / np.sqrt(fractions)
    crossed = np.abs(z) >= c
    first = np.where(crossed.any(axis=1), crossed.argmax(axis=1), -1)
    spent = [spend(spending, param, 0.05, t) for t in fractions]
    expected = np.diff([0.0, *spent])
    observed = np.array([(first == j).mean() for j in range(k)])
    np.testing.assert_allclose(observed, expected, atol=1.5e-3)
    assert (first >= 0).mean() == pytest.approx(0.05, abs=1.5e-3)


def test_first_obrien_fleming_boundary_is_analytic():
    c1 = z_boundaries("obrien-fleming", None, 0.05, (0.25, 1.0))[0]
    assert c1 == pytest.approx(1.959964 / math.sqrt(0.25), abs=1e-6)


def test_nominal_levels_grow_with_information():
    levels = nominal_levels("power", 1.0, 0.05, (0.125, 0.25, 0.5, 1.0))
    assert np.all(np.diff(levels) > 0) and levels[-1] < 0.05


# --- the plan ------------------------------------------------------------------------


def test_plan_round_trips_through_json_and_lists_deviations():
    p = plan(arms=("a", "b"), spending="hsd", spending_param=-2.0, look_every=4)
    stored = json.loads(json.dumps(p.to_dict()))
    assert SequentialPlan.from_dict(stored) == p
    assert p.looks() == (5, 9, 13, 17, 21, 25, 29, 33, 37, 40)
    changed = plan(arms=("a", "b"), spending="hsd", spending_param=-2.0, look_every=4,
                   max_seeds=60)
    assert plan_deviations(p, changed) == ["max_seeds: pre-registered 40, now 60"]
    assert plan_deviations(p, p) == []
    assert "Holm" in p.methods_text() and "2 arm(s)" in p.methods_text()


@pytest.mark.parametrize(("kw", "name"), [
    (dict(alpha=1.5), "alpha"), (dict(margin=0), "margin"), (dict(first_look=1), "first_look"),
    (dict(max_seeds=3), "max_seeds"), (dict(direction="up"), "direction"),
    (dict(spending="linear"), "spending"), (dict(spending="power", spending_param=None),
                                            "spending_param"),
    (dict(arms=("base",)), "arms"),
])
def test_plan_validation_names_the_parameter(kw, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        plan(**kw)


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown sequential plan key"):
        SequentialPlan.from_dict(plan().to_dict() | {"looks": 3})


# --- the decision rule ---------------------------------------------------------------


def test_large_effect_stops_early_and_direction_sets_the_label():
    d = np.random.default_rng(0).normal(3.0, 1.0, 40)
    r = decide(plan(), {"a": d})
    c = r.get("a")
    assert c.decision == Decision.BETTER and c.seeds < 40
    assert c.p_adjusted < 0.05 and c.ci.low > 0
    assert r.done and next_seeds(r) == {}
    worse = decide(plan(direction="minimize"), {"a": d}).get("a")
    assert worse.decision == Decision.WORSE and worse.seeds == c.seeds


def test_no_effect_with_small_noise_is_equivalent():
    d = np.random.default_rng(1).normal(0.0, 0.3, 40)
    c = decide(plan(), {"a": d}).get("a")
    assert c.decision == Decision.EQUIVALENT
    assert c.looks[-1].ci.low > -0.5 and c.looks[-1].ci.high < 0.5
    assert c.equivalence_p_adjusted < 0.05 <= c.p_adjusted


def test_identical_arms_never_get_p_zero_only_the_exact_test_floor():
    # A no-op ablation (the notebook's scheduler bug) gives zero differences at every seed: the
    # t statistic is infinite, which once gave "equivalent, p = 0" at the first look.
    with pytest.warns(DegenerateDataWarning, match="exact sign-flip"):
        c = decide(plan(), {"a": np.zeros(40)}).get("a")
    assert c.decision == Decision.EQUIVALENT
    assert c.equivalence_pvalue >= 2 / 2**c.seeds and c.equivalence_pvalue > 0
    assert c.seeds > 5  # 2/2^5 = 0.0625 cannot pass alpha = 0.05 at the first look
    assert c.pvalue == 1.0
    with pytest.warns(DegenerateDataWarning):
        constant = decide(plan(), {"a": np.full(40, 1.0)}).get("a")
    assert constant.decision == Decision.BETTER and constant.pvalue >= 2 / 2**constant.seeds


def test_undecided_at_max_is_inconclusive_and_open_arms_get_seeds():
    d = np.random.default_rng(2).normal(0.4, 1.5, 40)
    p = plan(arms=("a", "b"), margin=0.2)
    partial = decide(p, {"a": d[:10], "b": d[:10] + 5})
    assert partial.get("b").decision == Decision.BETTER
    assert partial.get("a").decision == Decision.CONTINUE
    # The baseline continues with the open arm; the decided arm gets no more seeds.
    assert next_seeds(partial) == {"base": 15, "a": 15}
    full = decide(p, {"a": d, "b": d[:10] + 5})
    assert full.get("a").decision == Decision.INCONCLUSIVE and full.get("a").seeds == 40


def test_decisions_use_only_the_seeds_of_each_look_in_seed_order():
    rng = np.random.default_rng(3)
    p = plan(arms=("a", "b", "c"))
    d = {"a": rng.normal(1.5, 1.4, 40), "b": rng.normal(0.0, 1.4, 40),
         "c": rng.normal(-0.8, 1.4, 40)}
    whole = decide(p, d)
    # Resumed look by look (as after a kill), and with seeds past the next look already
    # delivered by faster workers: the same decisions, look by look.
    for upto in (5, 12, 20, 27, 33):
        part = decide(p, {k: v[:upto] for k, v in d.items()})
        for c in part.comparisons:
            ref = whole.get(c.arm)
            assert c.looks == ref.looks[:len(c.looks)]
        assert part.next_look is None or part.next_look > max(
            (lk.seeds for c in part.comparisons for lk in c.looks), default=0)
    # A stopped arm with extra seeds (delivered late) does not change its decision.
    stopped = next(c for c in whole.comparisons if c.decision != Decision.CONTINUE)
    assert stopped.seeds < 40
    extra = dict(d)
    extra[stopped.arm] = np.concatenate([d[stopped.arm][:stopped.seeds],
                                         rng.normal(50, 1, 40 - stopped.seeds)])
    assert decide(p, extra).get(stopped.arm).decision == stopped.decision


def test_failed_runs_shrink_the_look_and_spend_by_observed_information():
    d = np.random.default_rng(4).normal(0.2, 1.4, 20)
    d[[2, 7, 8]] = np.nan
    c = decide(plan(max_seeds=20), {"a": d}).get("a")
    assert [lk.n for lk in c.looks][:2] == [4, 7]
    assert c.looks[0].information == pytest.approx(4 / 20)
    assert c.looks[-1].information == 1.0  # the last look spends what is left


def test_paired_differences_pairs_by_seed():
    values = {"base": {0: 1.0, 1: 2.0, 2: 3.0}, "a": {0: 2.0, 2: 5.0}}
    d = paired_differences(plan(), values)["a"]
    np.testing.assert_array_equal(np.isnan(d), [False, True, False])
    assert d[0] == 1.0 and d[2] == 2.0


def test_adjusted_p_agrees_with_the_boundaries():
    rng = np.random.default_rng(5)
    p = plan(arms=("a", "b", "c", "d"), margin=1.0)
    for _ in range(5):
        d = {k: rng.normal(mu, 1.4, 40) for k, mu in zip("abcd", (0, 0.7, 1.2, -1), strict=True)}
        for c in decide(p, d).comparisons:
            significant = c.decision in (Decision.BETTER, Decision.WORSE)
            assert significant == (c.p_adjusted < p.alpha), c.reason


# --- simulation: the vectorised rule is decide(), and the error rates ------------------


def test_simulator_makes_the_same_decisions_as_decide():
    p = plan(arms=("a", "b", "c"), margin=1.0)
    diffs = simulate_differences(np.random.default_rng(6), 40, 40, [0.0, 0.8, -1.5],
                                 sd=SD, rho=RHO)
    sim = run_sequential(p, diffs)
    codes = {Decision.BETTER: BETTER, Decision.WORSE: WORSE, Decision.EQUIVALENT: EQUIVALENT,
             Decision.INCONCLUSIVE: 4}
    for i in range(diffs.shape[0]):
        r = decide(p, dict(zip(p.arms, diffs[i], strict=True)))
        assert [codes[c.decision] for c in r.comparisons] == list(sim.decision[i])
        assert [c.seeds for c in r.comparisons] == list(sim.seeds[i])


def test_aa_error_is_controlled_while_naive_repeated_testing_inflates_it():
    p = plan(max_seeds=80)
    diffs = simulate_differences(np.random.default_rng(7), 4000, 80, [0.0], sd=SD, rho=RHO)
    sim = run_sequential(p, diffs)
    error = np.isin(sim.decision, [BETTER, WORSE]).mean()
    naive, _ = run_naive(diffs, p.looks(), p.alpha)
    # 4000 replications: standard error ~0.0035 at 0.05.
    assert 0.035 <= error <= 0.065
    assert naive.mean() > 0.18  # benchmark: ~0.24 with 16 looks


def test_familywise_error_with_four_arms_mixed_null_and_effects():
    p = plan(arms=("n1", "n2", "e1", "e2"), max_seeds=60, margin=0.5)
    diffs = simulate_differences(np.random.default_rng(8), 3000, 60, [0.0, 0.0, 1.0, 2.0],
                                 sd=SD, rho=RHO)
    sim = run_sequential(p, diffs)
    false_claim = np.isin(sim.decision[:, :2], [BETTER, WORSE]).any(axis=1).mean()
    assert false_claim <= 0.06
    assert (sim.decision[:, 2:] == BETTER).mean() > 0.9


def test_planted_effects_stop_early_with_full_power():
    # The benchmark's design (docs/sequential.md): margin 0.5, 80 seeds at most.
    p = plan(max_seeds=80)
    rng = np.random.default_rng(9)
    for effect, asn_max in ((1.0, 26), (2.0, 13)):
        sim = run_sequential(p, simulate_differences(rng, 2000, 80, [effect], sd=SD, rho=RHO))
        assert (sim.decision == BETTER).mean() > 0.97
        assert sim.seeds.mean() < asn_max  # a fixed design sized for the margin needs 68


def test_holm_adjust_matches_statsmodels():
    from statsmodels.stats.multitest import multipletests

    from analysis.sequential.decide import holm_adjust

    p = np.random.default_rng(10).uniform(0, 0.2, 7)
    np.testing.assert_allclose(holm_adjust(p), multipletests(p, method="holm")[1])


def test_comparison_without_two_pairs_by_max_is_inconclusive_not_open_forever():
    d = np.full(10, np.nan)
    d[3] = 1.0
    with pytest.warns(DegenerateDataWarning, match="fewer than 2 paired results"):
        r = decide(plan(max_seeds=10), {"a": d})
    assert r.get("a").decision == Decision.INCONCLUSIVE and r.done


def test_size_max_seeds_reaches_the_power_of_the_fixed_design():
    from analysis.sequential.simulate import size_max_seeds
    from analysis.stats.power import seeds_needed

    sd_diff = SD * math.sqrt(2 * (1 - RHO))
    n_max = size_max_seeds(plan(margin=1.0), sd_diff)
    n_fixed = seeds_needed(1.0, sd_diff, paired=True)
    # Spending costs a little maximum information (~10-20% for this family).
    assert n_fixed <= n_max <= 1.35 * n_fixed
    p = plan(margin=1.0, max_seeds=n_max)
    sim = run_sequential(p, simulate_differences(np.random.default_rng(11), 4000, n_max, [1.0],
                                                 sd=SD, rho=RHO))
    assert (sim.decision == BETTER).mean() >= 0.77


def test_equivalence_is_rarely_claimed_when_the_difference_is_the_margin():
    # H0 of the equivalence test at its boundary: true difference = margin.
    p = plan(margin=1.0, max_seeds=23)
    diffs = simulate_differences(np.random.default_rng(12), 4000, 23, [1.0], sd=SD, rho=RHO)
    sim = run_sequential(p, diffs)
    assert (sim.decision == EQUIVALENT).mean() <= 0.06  # benchmark-size run: 0.044


@pytest.mark.slow
def test_benchmark_table_of_the_default_design():
    # docs/sequential.md, margin 0.5, max_seeds sized to 86, 20000 replications per row.
    p = plan(max_seeds=86)
    rng = np.random.default_rng(13)
    reps = 20_000
    d = simulate_differences(rng, reps, 86, [0.0], sd=SD, rho=RHO)
    assert np.isin(run_sequential(p, d).decision, [BETTER, WORSE]).mean() == pytest.approx(
        0.046, abs=0.006)
    assert run_naive(d, p.looks(), p.alpha)[0].mean() == pytest.approx(0.246, abs=0.012)
    for effect, power, seeds in ((0.5, 0.799, 56.1), (1.0, 1.0, 25.6), (2.0, 1.0, 12.7)):
        sim = run_sequential(p, simulate_differences(rng, reps, 86, [effect], sd=SD, rho=RHO))
        assert (sim.decision == BETTER).mean() == pytest.approx(power, abs=0.015)
        assert sim.seeds.mean() == pytest.approx(seeds, rel=0.03)


def test_committed_quick_study_decides_no_scheduler_at_15_seeds():
    # docs/sequential.md: the hand-extended study used 32 seeds for this verdict.
    import pandas as pd

    runs_csv = Path(__file__).resolve().parents[1] / "results/notebook-ablation-quick/runs.csv"
    if not runs_csv.exists():
        pytest.skip("committed quick study not present")
    runs = pd.read_csv(runs_csv)
    values = {a: dict(zip(g.seed, g.test_acc, strict=True))
              for a, g in runs[runs.status == "complete"].groupby("arm")}
    p = SequentialPlan(baseline="baseline", margin=0.5, max_seeds=40,
                       arms=("no_scheduler", "no_bn", "notebook_no_bn", "alternating_bn"))
    r = decide(p, paired_differences(p, values))
    c = r.get("no_scheduler")
    assert (c.decision, c.seeds) == (Decision.WORSE, 15)
    assert c.p_adjusted == pytest.approx(0.0306, abs=5e-4)
    assert all(x.decision == Decision.WORSE for x in r.comparisons) and r.done
