import pytest

from analysis.paper import collect, render


def test_render_fills_placeholders_and_refuses_unknown_ones():
    assert render("gap {{ a }} p={{b}}", {"a": "+1.41", "b": "0.022"}) == "gap +1.41 p=0.022"
    with pytest.raises(KeyError, match="placeholders without a computed value: missing"):
        render("{{missing}}", {})


def test_notebook_numbers_are_computed_not_typed(tmp_path):
    numbers = collect(tmp_path)  # no studies: only the notebook's own single-run numbers
    assert numbers["nb.gap"] == "+1.41" and numbers["nb.gap.p"] == "= 0.022"
    assert numbers["nb.sched_gap"] == "+0.62" and float(numbers["nb.sched_gap.p"].lstrip("= ")) > 0.05
    assert not any(k.startswith(("quick.", "full.")) for k in numbers)
