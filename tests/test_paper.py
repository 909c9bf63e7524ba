import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.paper.__main__ import main
from analysis.paper.gather import VARIANCE_STUDY, collect
from analysis.paper.template import PLACEHOLDER, render
from analysis.stats.variance import variance_design


def test_render_fills_placeholders_and_refuses_unknown_ones():
    assert render("gap {{ a }} p={{b}}", {"a": "+1.41", "b": "0.022"}) == "gap +1.41 p=0.022"
    with pytest.raises(KeyError, match="placeholders without a computed value: missing"):
        render("{{missing}}", {})


def test_notebook_numbers_are_computed_not_typed(tmp_path):
    numbers = collect(tmp_path)  # no studies: only the notebook's own single-run numbers
    assert numbers["nb.gap"] == "+1.41" and numbers["nb.gap.p"] == "= 0.022"
    assert numbers["nb.sched_gap"] == "+0.62" and float(numbers["nb.sched_gap.p"].lstrip("= ")) > 0.05
    assert not any(k.startswith(("quick.", "full.")) for k in numbers)


# --- no number in the paper is typed by hand -------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "paper" / "README.template.md"

# Literal numbers the template may contain, each with the reason it is not a result.
ALLOWED = [
    (r"^#+ \d+\.", "section numbers"),
    (r"\bsection \d+\b", "cross-references to sections"),
    (r"p\(1-p\)/N", "the binomial variance formula"),
    (r"\bCIFAR-10\b", "the data set's name"),
    (r"\b7-conv\b", "the architecture's conv count (a fact of the model, not a result)"),
    (r"\bconvs? \d+(?:-\d+|(?:, \d+)*)", "layer indices naming where BatchNorm sits"),
    (r"\bthe 60,000 original images\b", "size of the CIFAR-10 data set itself"),
    (r"\(quality ~75\)", "JPEG quality of the data copy (a property of the data)"),
    (r"et al\.,? (?:19|20)\d\d\b", "years in citations"),
]
# "two" is not here: it names the pair of a comparison ("its two arms"), not a count of data.
NUMBER_WORDS = r"\b(three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|hundred|thousand|dozen|twice|half)\b"


def typed_numbers(template: str) -> list[str]:
    """Lines holding a number that is neither a placeholder, code, nor allow-listed."""
    text = re.sub(r"```.*?```", "", template, flags=re.S)  # commands in code blocks
    text = re.sub(r"`[^`\n]*`", "", text)  # code names such as `no_bn`
    text = PLACEHOLDER.sub("", text)
    for pattern, _why in ALLOWED:
        text = re.sub(pattern, "", text, flags=re.M)
    return [line.strip() for line in text.splitlines()
            if re.search(r"(?<![\w.])\d", line) or re.search(NUMBER_WORDS, line, flags=re.I)]


def test_the_number_check_catches_typed_numbers_and_passes_computed_ones():
    assert typed_numbers("asked for 31 seeds") == ["asked for 31 seeds"]
    assert typed_numbers("over the four comparisons") == ["over the four comparisons"]
    assert typed_numbers("asked for {{q.needed}} seeds, BN after convs 1-6, `--seeds 10`") == []


def test_template_types_no_number_by_hand():
    assert typed_numbers(TEMPLATE.read_text()) == []


@pytest.fixture(scope="module")
def committed_numbers():
    if not (ROOT / "results" / "notebook-ablation-quick" / "runs.csv").exists():
        pytest.skip("no committed results/")
    return collect(ROOT / "results")


def test_every_placeholder_is_computed_from_the_committed_results(committed_numbers):
    used = set(PLACEHOLDER.findall(TEMPLATE.read_text()))
    assert used - set(committed_numbers) == set()
    render(TEMPLATE.read_text(), committed_numbers)


def test_how_the_quick_study_grew_is_read_from_its_runs(committed_numbers):
    """The history the text used to type: 5 seeds of every arm, 5 more, then baseline and
    no_scheduler extended because the power analysis asked for 31 seeds (commit c12d35f)."""
    n = committed_numbers
    assert (n["quick.stage1.added"], n["quick.stage2.added"]) == ("5", "5")
    assert n["quick.stage2.no_scheduler.verdict"] == "inconclusive"
    assert n["quick.stage2.no_scheduler.seeds_needed_observed"] == "31"
    assert n["quick.stage3.arms"] == "`baseline`, `no_scheduler`"
    assert n["quick.n_comparisons"] == "4" and n["full.cfg.train_size"] == "45,000"


def test_list_names_each_numbers_source_and_fails_on_uncomputed_placeholders(tmp_path, capsys):
    template = tmp_path / "t.md"
    template.write_text("gap {{nb.gap}}")
    assert main(["--list", "--results", str(tmp_path), "--template", str(template)]) == 0
    out = capsys.readouterr().out
    assert "nb.gap = +1.41    [analysis.paper NOTEBOOK" in out
    assert "nb.test_se = 0.43" in out and "(not in the template)" in out
    template.write_text("{{nb.gap}} of {{quick.n_runs}} runs")
    assert main(["--list", "--results", str(tmp_path), "--template", str(template)]) == 2
    assert "quick.n_runs" in capsys.readouterr().err


def test_variance_numbers_from_a_stored_variance_study(tmp_path):
    """The paper's variance study (a runs.csv with the variance design's seed columns) gets var.*."""
    rng = np.random.default_rng(0)
    runs = variance_design(4)
    runs["test_acc"] = 75 + rng.normal(0, 1, len(runs)) * np.where(runs["group"] == "order", 0.1, 1)
    runs["status"], runs["arm"], runs["seed"] = "complete", "baseline", range(len(runs))
    study = tmp_path / "results" / VARIANCE_STUDY
    study.mkdir(parents=True)
    runs.to_csv(study / "runs.csv", index=False)
    (study / "study.json").write_text(json.dumps({"arms": {"baseline": {"config": {"test_size": 10_000}}}}))
    n = {k: v for k, v in collect(tmp_path / "results").items() if k.startswith("var.")}
    assert n["var.all.n"] == "4" and n["var.test.sd"] == "0.43"
    assert n["var.n_runs"] == str(len(runs))
    assert float(n["var.order.share"].rstrip("%")) < 10
    assert n["var.largest"] in {"init", "augment", "split"}


def test_sequential_numbers_come_from_the_studys_record_and_runs(tmp_path):
    """The paper's StepLR statement rests on the --until-decided study: its verdicts, seeds,
    repeated CIs and adjusted p-values are read from sequential.json, never typed."""
    from analysis.sequential.decide import decide, paired_differences
    from analysis.sequential.plan import SequentialPlan
    from study.until_decided import write_record
    from tests.test_report import make_study

    root = tmp_path / "results"
    path = make_study(root, {"baseline": {}, "no_scheduler": {"lr": 0.05}, "same": {"lr": 0.1}},
                      seeds=range(10), effects={"no_scheduler": -2.0}, sd={"same": 0.05},
                      name="notebook-ablation-quick-sequential")
    runs = pd.read_csv(path / "runs.csv")
    values = {a: dict(zip(g["seed"], g["test_acc"], strict=True)) for a, g in runs.groupby("arm")}
    plan = SequentialPlan(baseline="baseline", arms=("no_scheduler", "same"), first_look=5, max_seeds=10)
    result = decide(plan, paired_differences(plan, values))
    write_record(path, plan, [], result)
    n = collect(root)
    assert n["seq.no_scheduler.verdict"] == "worse" and n["seq.no_scheduler.look"] == "1"
    assert n["seq.no_scheduler.n_pairs"] == "5" and n["seq.no_scheduler.diff"].startswith("-")
    assert n["seq.no_scheduler.p_adj"].startswith(("=", "<"))
    assert n["seq.n_runs"] == str(len(runs)) and n["seq.max_seeds"] == "10"
    assert n["seq.state"] in {"decided"} or n["seq.state"].startswith("still open")
    assert "seq.runs_saved" not in n  # no hand-extended quick study to compare with here


def test_race_numbers_name_the_winner_its_lead_and_which_lrs_learned():
    """The paper's racing sections read each race's numbers: a race where the default (lr 0.05)
    is at chance and a small lr learns on every paired seed must name that candidate the winner,
    give its lead over the default with a CI, and say which lrs learned at all."""
    from analysis.paper.tuning import race_numbers
    from analysis.tuning.race_study import RaceData, race_plan, race_summary

    rng = np.random.default_rng(3)
    seeds = rng.normal(0, 1, 6)  # shared seed effects: the pairing removes them
    table = np.vstack([10 + 0.01 * rng.normal(size=6),  # default: never learns
                       40 + seeds + 0.2 * rng.normal(size=6),  # lr 0.003 learns
                       10 + 0.01 * rng.normal(size=6)])  # lr 0.6: chance too
    data = RaceData(candidates=["default", "1", "2"],
                    params={"default": {"lr": 0.05}, "1": {"lr": 0.003}, "2": {"lr": 0.6}},
                    entered={"default": 0, "1": 0, "2": 0}, table=table, unscored={}, runs=18,
                    metric_plan=race_plan({"objective": "val_acc", "race": {"chance": 10.0}}))
    n = race_numbers("x", race_summary(data), learned_above=11.0)
    assert n["x.race.winner"] == "1" and n["x.race.winner_is_default"] == "no"
    assert n["x.race.winner.lr"] == "0.003" and n["x.race.default.lr"] == "0.05"
    assert n["x.race.default_dropped"] == "yes" and n["x.race.n_dropped"] == "2"
    assert n["x.race.n_learned"] == "1 of 3" and n["x.race.learned_lr"] == "0.003 to 0.003"
    assert n["x.race.runs"] == "18" and n["x.race.seeds"] == "100000-100005"
    assert float(n["x.race.vs_default.diff"]) > 25 and n["x.race.vs_default.ci"].startswith("[+")
    assert n["x.race.expected_best.1"] != n["x.race.expected_best.3"]  # more candidates, a higher best
