"""Issue 22: names round-trip and mixed units are flagged.

An arm called `None`, `NA` or `null` (TOML allows any name) came back from runs.csv as a
missing value and broke every look and summary ("`arm` is empty in row(s) ..."); fractions in
some runs and percent in others gave a silent nonsense interval. Each test builds its own
experiment in a fresh folder."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from analysis.compare import main as compare_main
from analysis.contract import read_table
from analysis.load import compare_arms, load_study
from analysis.report import build_report
from analysis.stats.metric_plan import mixed_units
from study import run_study
from study.run import main as run_main
from study.spec import SpecError, load_spec

# Augmentation ablation: `None` (no augmentation), `NA` (noise augmentation) and `null`
# (null-space dropout) against the baseline; each a clear 3 points from it, so one look decides.
AUGMENT = '''
import numpy as np
from study.seeds import rng


def train(config, seed):
    luck = rng(seed, "init").normal(0, 1.0)  # the seed's, shared by every arm
    own = np.random.default_rng([seed, int(10 * config["gain"]) + 100]).normal(0, 0.2)  # the arm's
    return {"val_acc": float(80 + luck + own + config["gain"]), "train_loss": float(0.5 - luck / 10)}
'''

SWEEP = '''experiment = "augment_sweep:train"
name = "augment-ablation"
seeds = 3
[base]
gain = 0.0
[arms.baseline]
[arms.None]
gain = -3.0
[arms.NA]
gain = 3.0
[arms.null]
gain = 3.5
[analysis]
metric = "val_acc"
margin = 1.0
sequential = {first_look = 3, look_every = 3, max_seeds = 6}
'''

NAMES = {"baseline", "None", "NA", "null"}


def quiet(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kw)


def test_arms_named_like_missing_values_survive_every_reader(tmp_path, capsys):
    (tmp_path / "augment_sweep.py").write_text(AUGMENT)
    spec = tmp_path / "sweep.toml"
    spec.write_text(SWEEP)
    results = tmp_path / "results"
    assert run_main(["--spec", str(spec), "--results", str(results), "--jobs", "1", "--until-decided"]) == 0
    out = capsys.readouterr().out
    assert "\nNone " in out and "\nNA " in out and "\nnull " in out  # the end-of-study summary
    study = results / "augment-ablation"
    looks = json.loads((study / "sequential.json").read_text())
    assert {c["arm"]: c["decision"] for c in looks["comparisons"]} == {
        "None": "worse", "NA": "better", "null": "better"}
    runs = read_table(study / "runs.csv")
    assert set(runs["arm"]) == NAMES and runs["val_acc"].notna().all()
    assert set(pd.read_csv(study / "runs.csv")["arm"].dropna()) == {"baseline"}  # what pandas guesses
    assert set(read_table(study / "epochs.csv")["arm"]) <= NAMES
    assert set(load_study(study).arms()) == NAMES
    fam = quiet(compare_arms, load_study(study))
    assert {c.arm_name for c in fam.comparisons} == {"None", "NA", "null"}
    assert fam.get("None").verdict.label.value == "worse"
    assert compare_main([str(study), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {r["arm"] for r in rows} == {"None", "NA", "null"}
    report = quiet(build_report, load_study(study))
    assert {c.arm_name for c in report.families["baseline"].comparisons} == {"None", "NA", "null"}
    again = run_study(spec, results=str(results), jobs=1)  # nothing to do: the tables it returns
    assert set(again.runs["arm"]) == NAMES
    # the one name that cannot round-trip is refused before anything runs
    spec.write_text(SWEEP.replace("[arms.null]", '[arms." "]'))
    with pytest.raises(SpecError, match="an arm's name is empty"):
        load_spec(spec)


def test_a_runs_table_keeps_names_as_text_and_numbers_as_numbers(tmp_path, capsys):
    table = tmp_path / "nightly_runs.csv"
    table.write_text("arm,seed,status,accuracy,nan\n"
                     "baseline,0,complete,71.0,1\nbaseline,1,complete,72.5,2\nbaseline,2,complete,70.1,3\n"
                     "N/A,0,complete,73.2,4.5\nN/A,1,complete,nan,5\nN/A,2,,74.9,6.8\n"
                     "01,0,complete,69.0,7\n01,1,complete,,8.2\n01,2,complete,68.8,9.1\n")
    runs = load_study(table).runs
    assert list(runs["arm"]) == ["baseline"] * 3 + ["N/A"] * 3 + ["01"] * 3  # not NaN, not 1
    assert runs["accuracy"].isna().tolist() == [False] * 4 + [True, False, False, True, False]
    assert runs["status"].isna().sum() == 1  # an empty status is still "complete"
    fam = quiet(compare_arms, load_study(table), metric="accuracy", margin=1.0)
    assert {c.arm_name for c in fam.comparisons} == {"N/A", "01"}
    # a metric named like a missing value is a column like any other
    assert compare_main([str(table), "--metric", "nan", "--direction", "maximize", "--json"]) == 0
    assert {json.loads(line)["arm"] for line in capsys.readouterr().out.splitlines()} == {"N/A", "01"}
    # an arm left empty is still an error that names the row
    table.write_text("arm,seed,accuracy\nbaseline,0,71\n,1,72\nbaseline,1,70\n")
    assert compare_main([str(table), "--metric", "accuracy"]) == 2
    assert "`arm` is empty in row(s) 3" in capsys.readouterr().err


def mixed_study(tmp_path, percent_seeds) -> tuple:
    """Two arms over 8 seeds, `accuracy` as a fraction except in `percent_seeds`."""
    gen = np.random.default_rng(0)
    rows = []
    for seed in range(8):
        luck = gen.normal(0, 0.01)
        for arm, gain in (("baseline", 0.0), ("mixup", 0.01)):
            value = 0.75 + luck + gain + gen.normal(0, 0.003)
            rows.append({"arm": arm, "seed": seed, "accuracy": value * (100 if seed in percent_seeds else 1)})
    folder = tmp_path / "mixup-ablation"
    folder.mkdir()
    pd.DataFrame(rows).to_csv(folder / "runs.csv", index=False)
    return folder


def test_fractions_in_some_runs_and_percent_in_others_are_flagged(tmp_path, capsys):
    study = mixed_study(tmp_path, percent_seeds={5, 6, 7})
    assert compare_main([str(study), "--metric", "accuracy", "--margin", "0.005", "--direction", "maximize"]) == 0
    out = capsys.readouterr().out
    assert "MIXED UNITS, these verdicts do not hold: `accuracy` mixes units: 10 run(s) lie between 0 and 1" in out
    assert "6 between 1 and 100" in out and out.index("MIXED UNITS") < out.index("verdict:")
    assert compare_main([str(study), "--metric", "accuracy", "--margin", "0.005", "--json"]) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert any("mixes units" in n for n in row["notes"])
    report = quiet(build_report, load_study(study), plan={"metric": "accuracy", "margin": 0.005})
    assert any(f.startswith("**Mixed units:**") for f in report.integrity["flags"])


@pytest.mark.parametrize("values", [
    [0.42, 0.61, 0.95, 1.3, 2.2, 3.0],  # a loss spread across 1: one unit
    [0.74, 0.75, 0.76, 0.77],  # fractions
    [74.0, 75.5, 76.0, 0.0],  # percent, and a run at 0 (it learned nothing)
    [0.3, 0.31, 0.29, 95.0],  # 95 is no percent of values near 0.3
])
def test_one_unit_is_not_flagged(values):
    assert mixed_units(np.array(values), "metric") is None


def test_one_unit_in_every_run_is_not_flagged(tmp_path):
    study = mixed_study(tmp_path, percent_seeds=set())
    fam = quiet(compare_arms, load_study(study), metric="accuracy", margin=0.005)
    assert fam.plan.mixed_units is None and not any("mixes units" in n.text for n in fam.get("mixup").notes)
