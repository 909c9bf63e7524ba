"""The report of a study run with `--until-decided`: its sequential section, built from a small
synthetic study (runs.csv plus the sequential.json that study.until_decided writes), no training."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from analysis.load import load_study
from analysis.report import build_report
from analysis.report.blocks import FigureRef
from analysis.report.render import render_html, render_markdown
from analysis.sequential.decide import decide, paired_differences
from analysis.sequential.plan import SequentialPlan
from study.until_decided import write_record

SEQUENTIAL_CAPTION = "Paired t of each comparison at every look"


@pytest.fixture
def sequential_study(tmp_path):
    """Two arms against a baseline over 10 paired seeds: `big` better, `same` equivalent."""
    rng = np.random.default_rng(0)
    luck = rng.normal(0, 2.0, 10)  # each seed's luck, shared by every arm: paired
    effects = {"baseline": 0.0, "big": 3.0, "same": 0.0}
    values = {arm: {s: 70.0 + luck[s] + effect + rng.normal(0, 0.3) for s in range(10)}
              for arm, effect in effects.items()}
    pd.DataFrame([{"arm": arm, "seed": s, "status": "complete", "acc": v}
                  for arm, per_seed in values.items() for s, v in per_seed.items()]
                 ).to_csv(tmp_path / "runs.csv", index=False)
    plan = SequentialPlan(baseline="baseline", arms=("big", "same"), metric="acc", margin=1.0,
                          first_look=5, look_every=5, max_seeds=10)
    write_record(tmp_path, plan, [], decide(plan, paired_differences(plan, values)))
    return load_study(tmp_path)


def test_sequential_figure_is_shown_once_in_its_section(sequential_study):
    rep = build_report(sequential_study, plan={"metric": "acc", "baseline": "baseline"})
    refs = [b.name for b in rep.blocks if isinstance(b, FigureRef)]
    assert refs.count("sequential") == 1
    assert len(refs) == len(set(refs)) == len(rep.figures)  # every figure shown, each once
    markdown = render_markdown(rep)
    assert markdown.count(SEQUENTIAL_CAPTION) == 1
    assert markdown.count("figures/sequential.png") == 1
    # shown with its look history (section 2), not again among the other figures (section 3)
    assert (markdown.index("Seeds until decided") < markdown.index("figures/sequential.png")
            < markdown.index("3. Figures"))
    assert render_html(rep, dict.fromkeys(rep.figures, b"")).count(SEQUENTIAL_CAPTION) == 1


def test_the_fixed_n_table_of_a_sequential_study_says_its_p_values_ignore_the_looks(sequential_study, tmp_path):
    """The results table's p-values treat the final seeds as fixed; a reader must be told that
    only the sequential section's verdicts keep their error rate over the looks."""
    warning = "ignore the looks that decided when to stop"
    markdown = render_markdown(build_report(sequential_study, plan={"metric": "acc", "baseline": "baseline"}))
    assert markdown.count(warning) == 1
    assert markdown.index("2. Results") < markdown.index(warning) < markdown.index("Seeds until decided")
    (sequential_study.path / "sequential.json").unlink()  # the same runs as a fixed-n study
    fixed = render_markdown(build_report(load_study(sequential_study.path), plan={"metric": "acc", "baseline": "baseline"}))
    assert warning not in fixed


def test_seedwise_compare_of_a_sequential_study_says_its_verdicts_are_the_sequential_ones(sequential_study, capsys):
    """`seedwise compare` (and the end of `seedwise run --until-decided`) printed only the
    fixed-n verdicts, which can contradict the decisions that stopped the study (a comparison
    stopped as 'equivalent' read 'WORSE' there), with no word about the looks."""
    from analysis.compare import main

    assert main([str(sequential_study.path), "--metric", "acc", "--baseline", "baseline"]) == 0
    out = capsys.readouterr().out
    assert "ran until decided" in out and "big vs baseline: better" in out and "same vs baseline: equivalent" in out
    assert out.index("ran until decided") < out.index("verdict:")
    # verdicts against another baseline answer another question than the looks did
    assert main([str(sequential_study.path), "--metric", "acc", "--baseline", "same"]) == 0
    assert "until decided" not in capsys.readouterr().out
    # a study still looking (a comparison continues) has no decisions to read as the answer yet
    record_file = sequential_study.path / "sequential.json"
    record = json.loads(record_file.read_text())
    record["comparisons"][0]["decision"] = "continue"
    record_file.write_text(json.dumps(record))
    assert main([str(sequential_study.path), "--metric", "acc", "--baseline", "baseline"]) == 0
    out = capsys.readouterr().out
    assert "undecided so far" in out and "the decisions above as the answer" not in out
    (sequential_study.path / "sequential.json").unlink()
    assert main([str(sequential_study.path), "--metric", "acc", "--baseline", "baseline"]) == 0
    assert "ran until decided" not in capsys.readouterr().out
