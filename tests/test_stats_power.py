import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.power import TTestIndPower, TTestPower

from analysis import DegenerateDataWarning, detectable_difference, seeds_needed


@pytest.mark.parametrize(
    ("diff", "sd", "paired", "expected"),
    [
        (1.0, 1.0, False, 17),  # solve_power: 16.71
        (1.0, 1.0, True, 10),  # solve_power: 9.94
        (0.5, 1.0, False, 64),
        (-0.5, 1.0, False, 64),  # only |diff| matters
        (0.3, 0.4, True, 16),
    ],
)
def test_seeds_needed_is_ceil_of_statsmodels(diff, sd, paired, expected):
    n = seeds_needed(diff, sd, paired=paired)
    assert n == expected
    analysis = TTestPower() if paired else TTestIndPower()
    key = "nobs" if paired else "nobs1"
    solved = analysis.solve_power(effect_size=abs(diff) / sd, alpha=0.05, power=0.8,
                                  **{key: None})
    assert n == math.ceil(solved)


def test_seeds_needed_is_smallest_sufficient_n():
    n = seeds_needed(0.8, 1.1, paired=False, alpha=0.01, power=0.9)
    power = TTestIndPower().power
    assert power(effect_size=0.8 / 1.1, nobs1=n, alpha=0.01) >= 0.9
    assert power(effect_size=0.8 / 1.1, nobs1=n - 1, alpha=0.01) < 0.9


def test_seeds_needed_huge_effect_is_two():
    # statsmodels' solver fails here (NaN); the floor of a t-test is 2 seeds.
    assert seeds_needed(50.0, 1.0, paired=False) == 2
    assert seeds_needed(50.0, 1.0, paired=True) == 2


def test_seeds_needed_zero_diff_is_none_with_warning():
    with pytest.warns(DegenerateDataWarning, match="zero difference"):
        assert seeds_needed(0.0, 1.0, paired=False) is None


@pytest.mark.parametrize(
    ("args", "match"),
    [((1.0, 0.0), "`sd`"), ((1.0, -1.0), "`sd`"), ((math.nan, 1.0), "`diff`")],
)
def test_seeds_needed_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        seeds_needed(*args, paired=False)


def test_seeds_needed_delivers_its_power_in_simulation():
    """At the planned n, Welch's t detects the difference ~80% of the time."""
    diff, sd = 0.6, 0.5
    n = seeds_needed(diff, sd, paired=False)
    rng = np.random.default_rng(0)
    a = rng.normal(diff, sd, (4000, n))
    b = rng.normal(0.0, sd, (4000, n))
    hit = np.mean(stats.ttest_ind(a, b, axis=1, equal_var=False).pvalue < 0.05)
    assert 0.76 <= hit <= 0.88


@pytest.mark.parametrize("paired", [False, True])
def test_detectable_difference_inverts_seeds_needed(paired):
    ns = np.arange(2, 30)
    mdd = detectable_difference(ns, 0.7, paired=paired)
    assert mdd.shape == ns.shape
    assert np.all(np.diff(mdd) < 0)  # more seeds detect smaller differences
    for n, d in zip(ns, mdd, strict=True):
        assert seeds_needed(d * 1.0001, 0.7, paired=paired) == n
    assert isinstance(detectable_difference(5, 1.0, paired=True), float)
    assert detectable_difference(5, 1.0, paired=True) == pytest.approx(1.68199708, rel=1e-6)


def test_detectable_difference_bad_n():
    with pytest.raises(ValueError, match="`n_seeds`"):
        detectable_difference(1, 1.0, paired=False)
    with pytest.raises(ValueError, match="`n_seeds`"):
        detectable_difference(2.5, 1.0, paired=False)
