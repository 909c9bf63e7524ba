import dataclasses
import math

import numpy as np
import pytest
from scipy import stats

from analysis import DegenerateDataWarning, describe
from analysis.types import ArmSummary


def assert_no_nan(obj):
    """No result field may be a silent NaN (None is the documented 'undefined')."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, float):
            assert not math.isnan(value), f.name


VALUES = np.array([75.49, 74.91, 75.82, 75.10, 75.33, 74.77])


def test_describe_matches_numpy_and_scipy():
    s = describe(VALUES, rng=0)
    assert isinstance(s, ArmSummary)
    assert s.n == 6
    assert s.mean == pytest.approx(VALUES.mean())
    assert s.sd == pytest.approx(VALUES.std(ddof=1))
    assert s.median == pytest.approx(np.median(VALUES))
    low, high = stats.t.interval(0.95, 5, loc=VALUES.mean(), scale=stats.sem(VALUES))
    assert (s.ci_low, s.ci_high) == pytest.approx((low, high))
    assert (s.ci_low, s.ci_high) == pytest.approx((74.82851, 75.64482), abs=1e-5)  # by hand: 2.5706 * 0.15878
    assert s.boot_low < s.mean < s.boot_high
    # The bootstrap interval of a mean is narrower than the t interval at small n.
    assert s.boot_high - s.boot_low < s.ci_high - s.ci_low
    assert_no_nan(s)


def test_describe_is_reproducible_with_explicit_rng():
    a = describe(VALUES, rng=123, n_boot=2000)
    b = describe(VALUES, rng=np.random.default_rng(123), n_boot=2000)
    assert (a.boot_low, a.boot_high) == (b.boot_low, b.boot_high)


def test_describe_percentile_bootstrap():
    s = describe(VALUES, rng=0, boot_method="percentile")
    assert s.boot_method == "percentile"
    assert s.boot_low < s.mean < s.boot_high


def test_single_value_warns_and_sets_none():
    with pytest.warns(DegenerateDataWarning, match="only 1 finite value"):
        s = describe([75.0], rng=0)
    assert s.n == 1 and s.mean == 75.0
    assert s.sd is None and s.ci_low is None and s.ci_high is None
    assert s.boot_low is None and s.boot_high is None
    assert s.notes


def test_empty_raises_naming_parameter():
    with pytest.raises(ValueError, match="`values` must contain at least 1 finite number, got 0"):
        describe([], rng=0)
    with pytest.warns(DegenerateDataWarning), pytest.raises(ValueError, match="`values`"):
        describe([np.nan, np.nan], rng=0)


def test_nan_is_dropped_with_warning():
    with pytest.warns(DegenerateDataWarning, match="dropped 1 NaN value from `values`"):
        s = describe([75.0, np.nan, 76.0, 75.5], rng=0)
    assert s.n == 3 and s.mean == pytest.approx(75.5)
    assert_no_nan(s)


def test_zero_variance_warns_and_collapses():
    with pytest.warns(DegenerateDataWarning, match="zero variance"):
        s = describe([75.0, 75.0, 75.0], rng=0)
    assert s.sd == 0.0
    assert s.ci_low == s.ci_high == s.boot_low == s.boot_high == 75.0
    assert_no_nan(s)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"values": [1.0, np.inf]}, "`values` contains infinite"),
        ({"values": [[1.0, 2.0]]}, "`values` must be a 1-D"),
        ({"values": ["a", "b"]}, "`values` must be a 1-D array of numbers"),
        ({"values": [1.0, 2.0], "confidence": 95}, "`confidence`"),
        ({"values": [1.0, 2.0], "n_boot": 0}, "`n_boot`"),
        ({"values": [1.0, 2.0], "boot_method": "bca"}, "`boot_method`"),
    ],
)
def test_bad_input_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        describe(rng=0, **kwargs)
