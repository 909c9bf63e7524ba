"""Fuzz the spec loader: any TOML-shaped input either loads or fails with a SpecError."""

from conftest import builtin_spec
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.contract import config_hash
from study.cifar.config import FIELD_TYPES
from study.spec import ANALYSIS_KEYS, SpecError, StudySpec, parse_spec

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=12), st.lists(st.integers(-3, 9), max_size=4))
keys = st.one_of(st.sampled_from(sorted(FIELD_TYPES)), st.text(min_size=1, max_size=10))
tables = st.dictionaries(keys, scalars, max_size=4)
specs = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(st.text(max_size=10), st.integers()),
        "seeds": scalars, "first_seed": scalars,
        "base": st.one_of(tables, scalars),
        "analysis": st.one_of(st.dictionaries(st.one_of(st.sampled_from(sorted(ANALYSIS_KEYS)), st.text(max_size=6)),
                                              scalars, max_size=3), scalars),
        "arms": st.one_of(st.dictionaries(st.text(min_size=1, max_size=8), st.one_of(tables, scalars), max_size=3),
                          scalars),
        "extra": scalars,
    })


@settings(max_examples=300, deadline=None)
@given(specs)
def test_spec_loader_never_crashes(data):
    try:
        spec = parse_spec(data, "fuzz.toml")
    except SpecError as e:
        assert str(e) and "\n" not in str(e).strip()
    else:
        assert isinstance(spec, StudySpec) and spec.arms


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(FIELD_TYPES)), scalars, max_size=3))
def test_arm_overrides_load_or_fail_cleanly(overrides):
    try:
        spec = parse_spec(builtin_spec({"name": "t", "arms": {"baseline": overrides}}), "fuzz.toml")
    except SpecError as e:
        assert "baseline" in str(e) or "`" in str(e)  # names the arm or the parameter
    else:
        assert config_hash(spec.config("baseline", "smoke"))
