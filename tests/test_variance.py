"""Variance decomposition: the design, and the estimates on studies with planted components."""

import warnings

import numpy as np
import pandas as pd
import pytest

from analysis import DegenerateDataWarning
from analysis.variance import (
    SOURCES,
    binomial_component,
    decompose_variance,
    seed_column,
    variance_design,
)

# Planted standard deviations (accuracy points) of each source's effect.
SD = {"init": 1.0, "order": 0.5, "augment": 0.3, "split": 0.8}
TRUE_ALL = sum(v**2 for v in SD.values())


def true_accuracy(design: pd.DataFrame, rng, mean=75.0) -> np.ndarray:
    """Population accuracy of each run: mean + one random effect per (source, seed) level,
    drawn once per level, so equal seeds give equal effects (as in a real runner)."""
    acc = np.full(len(design), mean)
    for s in SOURCES:
        seeds = design[seed_column(s)].to_numpy()
        levels, idx = np.unique(seeds, return_inverse=True)
        acc += rng.normal(0, SD[s], len(levels))[idx]
    return acc


def simulate_scores(rng, k=10):
    """Scores on one fixed test set whose shared error shifts every run alike."""
    design = variance_design(k)
    return design.assign(test_acc=true_accuracy(design, rng) + rng.normal(0, 0.43))


def simulate_correct(rng, k, n_test, shared: bool):
    """Per-example correctness on a fixed test set of `n_test` examples. shared=True: an
    example's difficulty u is the same for every run (run r gets it right iff u < p_r), so
    the test-set error is almost entirely shared; shared=False: every run has its own
    independent errors, the opposite extreme."""
    design = variance_design(k)
    p = true_accuracy(design, rng) / 100
    u = rng.random(n_test) if shared else rng.random((len(design), n_test))
    correct = u < p[:, None]
    return design.assign(test_acc=100 * correct.mean(axis=1)), correct, p


def test_design_varies_one_source_at_a_time_with_fresh_disjoint_seeds():
    d = variance_design(3, reference=7, replicates=2)
    assert list(d.columns) == ["group", "run", *map(seed_column, SOURCES)]
    assert d["group"].value_counts().to_dict() == {**dict.fromkeys(SOURCES, 3), "all": 3, "none": 2}
    seeds = d[[seed_column(s) for s in SOURCES]]
    varied = seeds != 7
    for s in SOURCES:
        rows = varied[d["group"] == s]
        assert rows[seed_column(s)].all() and rows.drop(columns=seed_column(s)).sum().sum() == 0
    assert varied[d["group"] == "all"].all().all() and not varied[d["group"] == "none"].any().any()
    fresh = seeds.to_numpy()[varied.to_numpy()]
    assert len(set(fresh)) == len(fresh) and fresh.min() > 7  # each fresh seed used once


def test_design_keeps_sources_left_out_at_the_reference():
    ref = {"init": 0, "order": 0, "augment": 0, "split": 3}
    d = variance_design(2, reference=ref, sources=("init", "order", "augment"))
    assert set(d["group"]) == {"init", "order", "augment", "all"}
    assert (d["split_seed"] == 3).all() and (d.loc[d["group"] == "all", "init_seed"] > 3).all()


@pytest.mark.parametrize("kwargs, match", [
    ({"k": 1}, "`k` must be an integer >= 2"),
    ({"k": 3, "sources": ("init", "dropout")}, "`sources` must be"),
    ({"k": 3, "reference": -1}, r"`reference\['init'\]` must be"),
    ({"k": 3, "reference": {"init": 0}}, "missing order, augment, split"),
])
def test_design_validation_names_the_parameter(kwargs, match):
    with pytest.raises(ValueError, match=match):
        variance_design(**kwargs)


def test_decomposition_recovers_planted_components_and_its_cis_cover_them():
    """500 simulated studies (k = 10 runs a group): each chi-square and F interval covers the
    planted value at about its nominal 95%, and the estimates are right on average."""
    rng = np.random.default_rng(20261127)
    n_sim = 500
    hits, est = {}, {}
    for _ in range(n_sim):
        d = decompose_variance(simulate_scores(rng))
        for s in SOURCES:
            c = d.component(s)
            hits.setdefault(s, []).append(c.ci.contains(SD[s] ** 2))
            hits.setdefault(f"share.{s}", []).append(c.share_ci.contains(SD[s] ** 2 / TRUE_ALL))
            est.setdefault(s, []).append(c.variance)
        hits.setdefault("all", []).append(d.all_sources.ci.contains(TRUE_ALL))
        est.setdefault("all", []).append(d.all_sources.variance)
    coverage = {k: np.mean(v) for k, v in hits.items()}
    assert all(0.92 <= c <= 0.98 for c in coverage.values()), coverage
    for s in SOURCES:  # s^2 is unbiased, so the mean estimate and share are right on average
        assert np.mean(est[s]) == pytest.approx(SD[s] ** 2, rel=0.08)
        assert np.mean(est[s]) / np.mean(est["all"]) == pytest.approx(SD[s] ** 2 / TRUE_ALL, rel=0.1)
    assert np.mean(est["all"]) == pytest.approx(TRUE_ALL, rel=0.05)


def test_binomial_component_covers_the_binomial_variance_and_its_share():
    """A fixed test set drawn anew per simulated study: the test-set component (a score's
    sampling variance about the population accuracy) and its share of a fresh study's
    variance are covered at about 95%; the runs' unshared test noise is measured, not lost."""
    rng = np.random.default_rng(7)
    n_test, hits, shares, residual = 10_000, [], [], []
    for _ in range(200):
        runs, correct, p = simulate_correct(rng, 10, n_test, shared=True)
        d = decompose_variance(runs, correct=correct)
        truth = 1e4 * np.mean(p * (1 - p)) / n_test
        hits.append(d.test_set.ci.contains(truth))
        shares.append(d.test_set.share_ci.contains(truth / (truth + TRUE_ALL)))
        residual.append(d.all_sources.variance - d.all_sources.test_noise)
    assert 0.9 <= np.mean(hits) <= 1.0 and 0.9 <= np.mean(shares) <= 1.0
    assert np.mean(residual) == pytest.approx(TRUE_ALL, rel=0.1)


def test_unshared_test_noise_is_in_each_group_and_is_estimated():
    """Independent errors per run (the opposite of a shared test set): every group's variance
    grows by p(1-p)/N, and `test_noise` estimates exactly that excess."""
    rng = np.random.default_rng(3)
    n_test, k = 2_000, 40
    runs, correct, p = simulate_correct(rng, k, n_test, shared=False)
    d = decompose_variance(runs, correct=correct)
    binomial = 1e4 * np.mean(p * (1 - p)) / n_test  # ~0.94 points^2 at 75% on 2,000
    for c in (*d.sources, d.all_sources):
        assert c.test_noise == pytest.approx(binomial, rel=0.1)
    assert d.test_set.variance == pytest.approx(binomial, rel=0.05)
    assert d.component("augment").variance > SD["augment"] ** 2 + binomial / 2


def test_binomial_component_at_the_papers_scale():
    c = binomial_component(75.0, 10_000)
    assert c.sd == pytest.approx(0.433, abs=0.001)  # the 0.43-point test-set sd at 75%
    assert c.ci.low < c.variance < c.ci.high
    assert binomial_component(50.0, 100).ci.high == pytest.approx(25.0)  # p(1-p) peaks at 0.5


def test_decomposition_without_correctness_uses_n_test_and_reports_a_frame():
    runs = simulate_scores(np.random.default_rng(1))
    d = decompose_variance(runs, n_test=10_000)
    assert d.reference == dict.fromkeys(SOURCES, 0)
    assert d.test_set.variance == pytest.approx(1e4 * (runs.test_acc.mean() / 100)
                                                * (1 - runs.test_acc.mean() / 100) / 1e4)
    f = d.frame()
    assert list(f["source"]) == [*SOURCES, "all", "test"]
    assert f["test_noise"].isna().all() and d.sum_of_shares == pytest.approx(f["share"][:4].sum())
    assert decompose_variance(runs).test_set is None


def test_degenerate_groups_warn_and_leave_none_not_nan():
    runs = simulate_scores(np.random.default_rng(2), k=3)
    runs = runs[~((runs["group"] == "order") & (runs["run"] > 0))]  # one order run left
    runs.loc[runs["group"] == "augment", "test_acc"] = 70.0  # augment never reached the runs
    with pytest.warns(DegenerateDataWarning) as record:
        d = decompose_variance(runs)
    text = " ".join(str(w.message) for w in record)
    assert "'order' has 1 run(s)" in text and "'augment': all 3 runs scored the same" in text
    assert d.component("order").variance is None and d.component("order").share is None
    assert d.component("augment").variance == 0 and d.component("augment").share == 0


def test_no_all_sources_group_means_no_shares():
    runs = simulate_scores(np.random.default_rng(4), k=3)
    with pytest.warns(DegenerateDataWarning) as record:
        d = decompose_variance(runs[runs["group"] != "all"])
    assert [str(w.message) for w in record] == [
        "group 'all' has 0 run(s); its variance needs at least 2",
        "no usable all-sources variance: shares are not computed"]
    assert d.all_sources.variance is None and all(c.share is None for c in d.sources)


def test_failed_runs_are_dropped_with_a_warning():
    runs = simulate_scores(np.random.default_rng(5), k=4)
    runs.loc[runs.index[0], "test_acc"] = np.nan
    with pytest.warns(DegenerateDataWarning, match="dropped 1 runs"):
        d = decompose_variance(runs)
    assert d.component("init").n_runs == 3


def test_replicates_measure_nondeterminism():
    design = variance_design(3, replicates=4)
    design["test_acc"] = 75.0 + np.arange(len(design)) % 2 * 0.1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = decompose_variance(design)
    assert d.nondeterminism.n_runs == 4 and d.nondeterminism.variance > 0


@pytest.mark.parametrize("change, match", [
    (lambda r: r.drop(columns=["order_seed", "augment_seed", "split_seed"]), "at least two sources"),
    (lambda r: r.assign(init_seed=r["init_seed"].where(r["group"] != "order", 99)), "varies init, order at once"),
])
def test_runs_outside_the_design_are_refused(change, match):
    runs = simulate_scores(np.random.default_rng(6), k=3)
    with pytest.raises(ValueError, match=match):
        decompose_variance(change(runs))


def test_misaligned_correctness_is_refused():
    runs, correct, _ = simulate_correct(np.random.default_rng(8), 3, 500, shared=True)
    with pytest.raises(ValueError, match="rows must be aligned"):
        decompose_variance(runs, correct=correct[::-1])
    with pytest.raises(ValueError, match="one row per row of `runs`"):
        decompose_variance(runs, correct=correct[:-1])
