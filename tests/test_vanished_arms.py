"""No arm ever vanishes (issue 23): an arm whose runs all failed, all diverged with no chance
level, or left too few values is still in `seedwise compare` (text and --json), the report and
the end-of-run verdicts, with why it could not be judged and the family's size; and the two
input checks: an infinity that cannot mean "diverged", and values too large to square."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from analysis.compare import main as compare_main
from analysis.load import compare_arms, load_study
from analysis.report import write_report

ARMS = ("baseline", "no_dropout", "lr_1e-3", "wide")


def ablation(tmp_path, outcome: dict, *, metric="val_score", analysis=None, seeds=6, spec_only=()):
    """A study folder: runs.csv (each arm's seeds; `outcome[arm]` is "failed", "diverged",
    "-inf", "one" (a single complete run) or a shift of the mean) and study.json naming every
    arm, `spec_only` ones with no run at all."""
    gen = np.random.default_rng(3)
    rows = []
    for arm in ARMS:
        for s in range(seeds):
            kind = outcome.get(arm, 0.0)
            value = 70.0 + gen.normal(0, 0.4) + 0.1 * s
            status = "complete"
            if kind == "failed" or (kind == "one" and s > 0):
                status, value = "failed", np.nan
            elif kind == "diverged":
                status, value = "diverged", np.nan
            elif kind == "-inf":
                value = -np.inf
            elif isinstance(kind, float):
                value += kind
            rows.append({"arm": arm, "seed": s, "status": status, metric: value})
    folder = tmp_path / "ablation"
    folder.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(folder / "runs.csv", index=False)
    plan = {"metric": metric, "baseline": "baseline", "direction": "maximize", **(analysis or {})}
    meta = {"study": "ablation", "arms": {a: {} for a in (*ARMS, *spec_only)}, "analysis": plan}
    (folder / "study.json").write_text(json.dumps(meta))
    return folder


def cli(capsys, *args):
    code = compare_main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


VANISHING = {"no_dropout": "failed", "lr_1e-3": "diverged", "wide": 1.5}


def test_the_cli_lists_every_arm_with_its_outcome_and_the_family_size(tmp_path, capsys):
    code, out, err = cli(capsys, ablation(tmp_path, VANISHING))
    assert code == 0, err
    assert "Family: 1 of 3 comparisons judged; Holm over the 1 judged, 2 not judged" in out
    assert "wide - baseline: +" in out and "verdict: BETTER" in out
    assert "no_dropout - baseline: not judged" in out
    assert "verdict: NOT JUDGED: all 6 runs failed" in out
    assert ("verdict: NOT JUDGED: all 6 runs diverged: no chance level to judge them against; "
            "declare `chance`") in out
    assert "not judged: no_dropout vs baseline, lr_1e-3 vs baseline" in out  # the Holm text
    assert "not judged" not in err  # said once, on stdout, not again as a warning


def test_the_json_has_one_object_per_planned_comparison(tmp_path, capsys):
    code, out, _ = cli(capsys, ablation(tmp_path, VANISHING), "--json")
    objs = {o["arm"]: o for o in map(json.loads, out.splitlines())}
    assert code == 0 and set(objs) == {"no_dropout", "lr_1e-3", "wide"}
    assert all(o["family_judged"] == 1 and o["family_planned"] == 3 for o in objs.values())
    assert objs["wide"]["judged"] and objs["wide"]["verdict"] == "better"
    assert not objs["no_dropout"]["judged"] and objs["no_dropout"]["verdict"] == "not judged"
    assert objs["no_dropout"]["verdict_reason"] == "all 6 runs failed"
    assert "declare `chance`" in objs["lr_1e-3"]["verdict_reason"]
    assert objs["lr_1e-3"]["p_value"] is None and objs["lr_1e-3"]["diff"] is None


def test_holm_runs_over_the_judged_comparisons_only(tmp_path):
    """An arm that cannot be judged makes no claim, so it does not raise the others' bar: the
    judged comparisons' adjusted p-values are those of the study without it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fam = compare_arms(load_study(ablation(tmp_path / "a",
                                               {"no_dropout": "failed", "wide": 0.3})))
        alone = compare_arms(load_study(ablation(tmp_path / "b", {"wide": 0.3})),
                             arms=["baseline", "lr_1e-3", "wide"])
    assert [c.arm_name for c in fam.comparisons] == ["lr_1e-3", "wide"]
    assert [(n.arm, n.reason) for n in fam.not_judged] == [("no_dropout", "all 6 runs failed")]
    assert fam.planned == 3 and all(c.family_size == 2 for c in fam.comparisons)
    for c, d in zip(fam.comparisons, alone.comparisons, strict=True):
        assert c.p_adjusted == pytest.approx(d.p_adjusted, rel=1e-12)


def test_all_pairs_list_every_pair(tmp_path, capsys):
    code, out, _ = cli(capsys, ablation(tmp_path, VANISHING), "--pairs", "all", "--json")
    pairs = {(o["arm"], o["baseline"]): o["judged"] for o in map(json.loads, out.splitlines())}
    assert code == 0 and len(pairs) == 6 and sum(pairs.values()) == 1


@pytest.mark.parametrize(("outcome", "extra", "reason"), [
    ({"wide": "-inf"}, {}, "all 6 runs diverged: no chance level to judge them against"),
    ({"wide": "one"}, {}, "only 1 of its 6 runs has a value to compare (5 failed, 1 learned); "
                          "a comparison needs 2"),
    ({"wide": "diverged"}, {"failures": "learned"},
     "all 6 runs diverged: the mean over runs that learned has nothing to average"),
    ({}, {"spec_only": ("deep",)}, "no run of it in the runs table"),
])
def test_each_reason_an_arm_cannot_be_judged(tmp_path, capsys, outcome, extra, reason):
    spec_only = extra.pop("spec_only", ())
    folder = ablation(tmp_path, outcome, analysis=extra, spec_only=spec_only)
    code, out, err = cli(capsys, folder, "--json")
    objs = {o["arm"]: o for o in map(json.loads, out.splitlines())}
    arm = spec_only[0] if spec_only else "wide"
    assert code == 0, err
    assert set(objs) == set(ARMS[1:]) | set(spec_only)
    assert objs[arm]["verdict"] == "not judged" and objs[arm]["verdict_reason"].startswith(reason)


def test_declaring_chance_judges_the_diverged_arm(tmp_path, capsys):
    folder = ablation(tmp_path, {"lr_1e-3": "diverged"}, analysis={"chance": 10.0})
    code, out, _ = cli(capsys, folder, "--json")
    objs = {o["arm"]: o for o in map(json.loads, out.splitlines())}
    assert code == 0 and objs["lr_1e-3"]["judged"] and objs["lr_1e-3"]["verdict"] == "worse"
    assert objs["lr_1e-3"]["family_planned"] == objs["lr_1e-3"]["family_judged"] == 3


def test_nothing_judgeable_is_an_error_naming_every_arm(tmp_path, capsys):
    folder = ablation(tmp_path, {"no_dropout": "failed", "lr_1e-3": "diverged", "wide": "one"})
    code, out, err = cli(capsys, folder)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    for arm in ("no_dropout", "lr_1e-3", "wide"):
        assert f"{arm} vs baseline: not judged:" in err


def test_a_baseline_that_cannot_be_judged_says_why(tmp_path, capsys):
    code, _, err = cli(capsys, ablation(tmp_path, {"baseline": "failed"}))
    assert code == 2
    assert "`baseline` 'baseline' cannot be compared with: all 6 runs failed" in err


def test_the_report_shows_every_arm_and_the_family_size(tmp_path):
    folder = ablation(tmp_path, VANISHING)
    write_report(folder, tmp_path / "report", note=False, log=lambda *a: None)
    text = (tmp_path / "report" / "report.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    for arm in ("no_dropout", "lr_1e-3"):
        assert any(r.startswith(f"| {arm} |") and "not judged" in r for r in rows), arm
    assert "**`no_dropout`: not judged.** All 6 runs failed." in text
    assert "**`lr_1e-3`: not judged.** All 6 runs diverged: no chance level" in text
    assert "**Family:** 1 of 3 comparisons judged; Holm over the 1 judged" in text
    assert "1 judged of each of the 3 arms vs 'baseline'" in text  # the Methods' Holm text


def test_the_end_of_run_verdicts_name_the_arms_not_judged(tmp_path, capsys):
    from study.console import print_verdicts

    print_verdicts(ablation(tmp_path, VANISHING))
    out = capsys.readouterr().out
    assert "Family: 1 of 3 comparisons judged" in out
    assert "no_dropout - baseline: not judged" in out and "lr_1e-3 - baseline: not judged" in out


# --- the two input checks -------------------------------------------------------------------


def table(tmp_path, metric, values, name="runs.csv"):
    rows = [{"arm": arm, "seed": s, "status": "complete", metric: v}
            for arm, vals in values.items() for s, v in enumerate(vals)]
    path = tmp_path / name
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


GOOD = [70.1, 70.6, 69.8, 70.3, 70.0]


@pytest.mark.parametrize(("metric", "direction", "bad", "message"), [
    ("val_acc", "maximize", np.inf, "`val_acc` is +inf in complete run(s) at row(s) 9: a "
                                    "percentage in seedwise (*_acc) lies in [0, 100]"),
    ("val_acc", "maximize", -np.inf, "`val_acc` is -inf in complete run(s) at row(s) 9"),
    ("reward", "maximize", np.inf, "`reward` is +inf in complete run(s) at row(s) 9: where "
                                   "higher is better, that would be an infinitely good run"),
    ("val_loss", "minimize", -np.inf, "`val_loss` is -inf in complete run(s) at row(s) 9"),
])
def test_an_infinity_in_the_good_direction_or_a_bounded_scale_is_rejected(
        tmp_path, capsys, metric, direction, bad, message):
    path = table(tmp_path, metric, {"baseline": GOOD, "wide": [71.0, 71.2, bad, 70.9, 71.4]})
    code, out, err = cli(capsys, path, "--metric", metric, "--direction", direction)
    assert code == 2 and out == "" and err.startswith("error: " + message)
    assert "diverged" in err  # says how to record a run that blew up


@pytest.mark.parametrize(("metric", "direction", "bad"), [("reward", "maximize", -np.inf),
                                                         ("val_loss", "minimize", np.inf)])
def test_an_infinity_in_the_bad_direction_is_a_run_that_diverged(tmp_path, capsys, metric,
                                                                 direction, bad):
    path = table(tmp_path, metric, {"baseline": GOOD, "wide": [71.0, 71.2, bad, 70.9, 71.4]})
    code, out, err = cli(capsys, path, "--metric", metric, "--direction", direction, "--json")
    (obj,) = map(json.loads, out.splitlines())
    assert code == 0, err
    assert obj["failures_arm"] == 1 and "1 diverged" in obj["verdict_reason"]


def test_values_too_large_to_square_are_one_line_naming_the_column(tmp_path, capsys):
    huge = {"baseline": [1e308, 9e307, 8e307, 1.1e308, 9.5e307],
            "wide": [1.2e308, 1e308, 9e307, 1.3e308, 1.1e308]}
    code, out, err = cli(capsys, table(tmp_path, "energy", huge), "--metric", "energy",
                         "--direction", "minimize")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith("error: `energy` has values as large as 1.3e+308 (row(s) 2, 3, 4")
    assert "overflow" in err and "rescale the column" in err
    # the same numbers in a sane unit are analysed
    scaled = {a: [v / 1e300 for v in vals] for a, vals in huge.items()}
    code, _, err = cli(capsys, table(tmp_path, "energy", scaled, "scaled.csv"), "--metric",
                       "energy", "--direction", "minimize")
    assert code == 0, err
