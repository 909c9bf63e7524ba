"""Issue 12: verdicts you can trust on any input. One test per row of the issue's table (each
failed on the code before it: a crash, a silent wrong verdict or a bare KeyError), plus the
torch/study-free import and the committed quick study's `no_bn` arm."""

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import compare_arms, compare_family, load_study
from analysis.compare import main as compare_main
from analysis.report import build_report
from analysis.report import main as report_main
from analysis.report.integrity import outcome_flags
from analysis.types import VerdictLabel

ROOT = Path(__file__).resolve().parents[1]
QUICK = ROOT / "results" / "notebook-ablation-quick"


def write(path, rows, meta=None, name="runs.csv"):
    path.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path / name, index=False)
    if meta is not None:
        (path / "study.json").write_text(json.dumps(meta))
    return path / name


def paired_rows(arms, seeds=range(6), seed_sd=0.8, noise=0.3, rng=0, metric="test_acc"):
    """arm -> shift: one complete run per (arm, seed), seed effect shared across arms."""
    gen = np.random.default_rng(rng)
    effect = gen.normal(0, seed_sd, max(seeds) + 1)
    return [{"arm": a, "seed": s, "status": "complete",
             metric: 70 + shift + effect[s] + gen.normal(0, noise)}
            for a, shift in arms.items() for s in seeds]


def quiet(fn, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **k)


# --- row 1: identical arms ------------------------------------------------------------------


def test_identical_arms_are_a_finding_and_never_crash(tmp_path):
    """A no-op ablation: `same` equals the baseline up to float round-off (what a CSV of the
    same numbers gives after arithmetic). The power search used to crash on the ~0 sd."""
    rows = paired_rows({"baseline": 0.0, "other": 1.0})
    rows += [{**r, "arm": "same", "test_acc": r["test_acc"] + (1e-13 if r["seed"] % 2 else 0)}
             for r in rows if r["arm"] == "baseline"]
    path = write(tmp_path / "s", rows).parent
    fam = quiet(compare_arms, load_study(path), pairs="all")
    same = fam.get("same", "baseline")
    assert same.primary.method.startswith("degenerate") and same.primary.pvalue == 1.0
    rep = quiet(build_report, load_study(path))
    assert any("produced identical results" in f and "`baseline`" in f and "`same`" in f
               for f in rep.integrity["flags"])
    assert compare_main([str(path), "--pairs", "all"]) == 0
    # exactly equal (every difference 0: the Wilcoxon test is skipped for that comparison only)
    base = np.array([70.0, 71.0, 72.0, 73.0, 74.0])
    fam = quiet(compare_family, {"b": base, "copy": base.copy(), "x": base + [1, 1.2, .8, 1.1, .9]},
                "b", paired=True, rng=0)
    assert fam.get("copy").primary.pvalue == 1.0 and len(fam.get("copy").robustness) == 1
    assert fam.get("x").verdict.label is VerdictLabel.BETTER


# --- row 2: duplicates ----------------------------------------------------------------------


def test_duplicate_arm_seed_rows_are_rejected_naming_them(tmp_path, capsys):
    rows = paired_rows({"baseline": 0.0, "x": 1.0})
    rows.append({**rows[3], "test_acc": 99.0})  # baseline seed 3 twice: it kept the last
    path = write(tmp_path / "s", rows).parent
    with pytest.raises(ValueError, match=r"appear more than once.*baseline seed 3"):
        compare_arms(load_study(path))
    assert compare_main([str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "row(s) 5, 14" in err


# --- row 3: scale ---------------------------------------------------------------------------


def test_fractions_with_a_point_margin_and_percent_above_100_are_rejected(tmp_path, capsys):
    rows = paired_rows({"baseline": 0.0, "x": 0.2})
    frac = [{**r, "test_acc": r["test_acc"] / 100} for r in rows]  # 0.70: fractions
    path = write(tmp_path / "frac", frac).parent
    with pytest.raises(ValueError, match=r"lies in \[0, 1\] but the equivalence margin is 0.5"):
        compare_arms(load_study(path))
    assert compare_main([str(path)]) == 2 and "--margin" in capsys.readouterr().err
    # with a margin in the same units the comparison runs, and chance is read as a fraction
    fam = quiet(compare_arms, load_study(path), margin=0.005, chance=0.1)
    assert fam.get("x").margin == 0.005
    over = [{**r, "test_acc": r["test_acc"] + 40} for r in rows]  # up to ~111 "percent"
    path = write(tmp_path / "over", over).parent
    with pytest.raises(ValueError, match=r"percentage .* outside \[0, 100\]"):
        compare_arms(load_study(path))


def test_a_loss_under_the_default_margin_is_told_to_declare_one_not_to_use_percent(tmp_path):
    """A researcher's test_loss in [0, 1] with no margin declared: the message blamed "the
    equivalence margin" as if they had chosen 0.5, and told them to give accuracies in percent."""
    rows = paired_rows({"baseline": 0.0, "lr-warmup": -5.0}, metric="test_loss")
    loss = [{**r, "test_loss": r["test_loss"] / 200} for r in rows]  # ~0.35: a cross-entropy
    path = write(tmp_path / "loss", loss, meta={"analysis": {"metric": "test_loss", "direction": "minimize",
                                                             "baseline": "baseline"}}).parent
    with pytest.raises(ValueError, match=r"0.5 \(the default, when none is declared\)") as e:
        compare_arms(load_study(path))
    assert "percent" not in str(e.value) and "margin = " in str(e.value)


def test_identical_arms_on_three_seeds_are_not_said_to_lie_outside_the_margin(tmp_path):
    """A race whose winner is the default confirms `tuned` = the baseline's own params: every paired
    difference is 0 and the verdict said "the 90% CI [0, 0] is not inside ±0.05", which is false;
    what fails is the exact test's floor on 3 seeds."""
    rows = [{"arm": a, "seed": s, "status": "complete", "test_loss": v}
            for s, v in enumerate([0.143, 0.256, 0.026]) for a in ("baseline", "tuned")]
    path = write(tmp_path / "same", rows, meta={"analysis": {"metric": "test_loss", "direction": "minimize",
                                                             "baseline": "baseline", "margin": 0.05}}).parent
    v = quiet(compare_arms, load_study(path)).get("tuned").verdict
    assert v.label == VerdictLabel.INCONCLUSIVE and "is not inside" not in v.reason
    assert "lies inside ±0.05" in v.reason and "cannot" in v.reason

# --- row 4: direction -----------------------------------------------------------------------


def test_a_higher_loss_is_worse(tmp_path):
    rows = paired_rows({"baseline": 0.0, "lossy": 0.5}, metric="train_loss", seeds=range(8))
    rows = [{**r, "train_loss": r["train_loss"] / 50} for r in rows]  # ~1.4 vs ~1.41
    rows = [{**r, "train_loss": r["train_loss"] + (0.3 if r["arm"] == "lossy" else 0)}
            for r in rows]
    path = write(tmp_path / "s", rows).parent
    with pytest.warns(UserWarning, match="lower is taken as better"):
        fam = compare_arms(load_study(path), metric="train_loss", margin=0.05)
    c = fam.get("lossy")
    assert c.diff > 0 and c.verdict.label is VerdictLabel.WORSE
    assert "lower is better" in c.verdict.reason and c.prob_improvement < 0.5
    # the plan can say it, and the CLI can override it
    meta = {"analysis": {"metric": "train_loss", "direction": "maximize", "margin": 0.05}}
    write(tmp_path / "s", rows, meta)
    assert quiet(compare_arms, load_study(path)).get("lossy").verdict.label is VerdictLabel.BETTER
    assert quiet(compare_arms, load_study(path), direction="minimize").get(
        "lossy").verdict.label is VerdictLabel.WORSE


# --- rows 5 and 6: failures -----------------------------------------------------------------


def diverging(tmp_path, chance):
    """8 paired seeds; `unstable` diverges in 4, and its 4 survivors are ~1 point better."""
    rows = paired_rows({"baseline": 0.0, "unstable": 1.0}, seeds=range(8), noise=0.1)
    for r in rows:
        if r["arm"] == "unstable" and r["seed"] % 2:
            r.update(status="diverged", test_acc=None)
    meta = {"analysis": {"chance": chance}} if chance is not None else {}
    return write(tmp_path / f"s{chance}", rows, meta).parent


def test_diverged_runs_are_outcomes_and_block_a_survivor_verdict(tmp_path):
    # chance known: diverged runs are scored at chance; the survivors' +1 no longer decides
    c = quiet(compare_arms, load_study(diverging(tmp_path, 10.0))).get("unstable")
    assert c.n_arm == 8 and c.outcomes.arm.diverged == 4 and c.diff < -25
    assert c.primary.name.endswith("permutation test")  # bimodal: the exact test decides
    assert c.verdict.label is VerdictLabel.INCONCLUSIVE  # 4 failures in 8 seeds: p = 0.125
    assert "Failures: unstable 4 of 8 (4 diverged)" in c.verdict.reason
    assert c.outcomes.other_diff > 0  # among the runs that learned it is better: said too
    # chance unknown: diverged runs cannot be scored; "better" on the survivors is withheld
    c = quiet(compare_arms, load_study(diverging(tmp_path, None))).get("unstable")
    assert c.n_arm == 4 and c.diff > 0 and c.p_adjusted < 0.05
    assert c.verdict.label is VerdictLabel.INCONCLUSIVE
    assert c.verdict.reason.startswith("better only among the runs that produced a score")
    assert "4 of 8 runs that the mean leaves out" in c.verdict.reason


def test_runs_stuck_at_chance_are_counted_and_the_arm_flagged():
    """The committed quick study: 9 of 10 `no_bn` runs ended at 10.00% on CIFAR-10's 10
    classes. They used to be ordinary results under "No integrity problem found"."""
    study = load_study(QUICK)
    fam = quiet(compare_arms, study)
    o = fam.get("no_bn").outcomes
    assert (o.arm.not_learned, o.arm.runs, o.arm.bimodal) == (9, 10, True)
    assert o.baseline.failures == 0 and o.p_adjusted < 1e-6
    assert "Failures: no_bn 9 of 10 (9 did not learn)" in fam.get("no_bn").verdict.reason
    assert fam.plan.chance == 10.0 and "10 classes" in fam.plan.chance_source
    flags = outcome_flags(fam.outcomes, study.arms(), fam.plan, 0.9)
    assert len(flags) == 1 and "`no_bn`: 9 did not learn" in flags[0] and "bimodal" in flags[0]


# --- row 7: zero variance: tests/test_stats_compare.py::
#     test_zero_variance_of_paired_differences_is_a_stated_exact_result_never_p_zero


# --- rows 8 and 9: pairing per comparison, one degenerate arm ----------------------------------


def test_pairing_is_decided_per_comparison():
    gen = np.random.default_rng(5)
    base = {s: 70 + gen.normal(0, 1.0) for s in range(10)}
    paired = {s: v + 0.8 + gen.normal(0, 0.1) for s, v in base.items()}
    loner = {s: 70 + gen.normal(0, 1.0) for s in (0, *range(20, 29))}  # shares only seed 0
    fam = quiet(compare_family, {"base": base, "paired": paired, "loner": loner}, "base",
                paired=True, rng=0)
    alone = quiet(compare_family, {"base": base, "paired": paired}, "base", paired=True, rng=0)
    assert fam.get("paired").paired and fam.get("paired").primary == alone.get("paired").primary
    lone = fam.get("loner")
    assert not lone.paired and lone.unpaired_fallback and lone.primary.name == "Welch's t-test"
    assert "Compared unpaired (Welch)" in lone.verdict.reason
    assert not fam.get("paired").unpaired_fallback


def test_one_single_seed_arm_does_not_take_down_the_family(tmp_path):
    rows = paired_rows({"baseline": 0.0, "up": 2.0, "solo": 0.0})
    rows = [r for r in rows if r["arm"] != "solo" or r["seed"] == 0]
    path = write(tmp_path / "s", rows).parent
    with pytest.warns(UserWarning, match="solo vs baseline: not judged"):
        fam = compare_arms(load_study(path))
    assert [c.arm_name for c in fam.comparisons] == ["up"] and len(fam.skipped) == 1
    assert fam.get("up").verdict.label is VerdictLabel.BETTER


# --- row 10: the exact-test floor against Holm's level ---------------------------------------


def test_exact_floor_is_checked_at_the_level_of_holms_first_step():
    gen = np.random.default_rng(1)
    base = gen.normal(70, 1, 6)
    arms = {"base": base, **{k: base + 2 + gen.normal(0, 0.2, 6) for k in "abcd"}}
    fam = quiet(compare_family, arms, "base", paired=True, rng=0)
    c = fam.get("a")
    assert c.sensitivity.min_attainable_p == 2 / 64 and c.sensitivity.min_attainable_p < 0.05  # fine alone...
    assert any("alpha/4 = 0.0125" in n.text for n in c.notes)  # ...not at 0.05/4
    assert c.verdict.label is VerdictLabel.BETTER
    assert "Not checkable without normality" in c.verdict.reason


# --- row 11: the reason after Holm ------------------------------------------------------------


def test_inconclusive_after_holm_says_only_the_adjustment_failed():
    base = np.array([70.0, 71.0, 69.5, 70.5, 70.2])
    d = np.array([0.5, -0.5, 0.4, -0.4, 0.0])  # TOST p ~ 0.035 alone, > 0.05 after Holm
    arms = {"base": base, "a": base + d, "b": base + d[::-1], "c": base + np.roll(d, 1)}
    c = quiet(compare_family, arms, "base", paired=True, rng=0, robustness=False).get("a")
    assert c.equivalence.pvalue < 0.05 <= c.equivalence.p_adjusted
    assert c.verdict.label is VerdictLabel.INCONCLUSIVE
    assert "lies inside ±0.5" in c.verdict.reason and "but not after Holm over 3" in c.verdict.reason
    assert "is not inside" not in c.verdict.reason


# --- rows 12 and 13: columns and file names -----------------------------------------------------


@pytest.mark.parametrize("drop", ["arm", "seed", "test_acc"])
def test_a_missing_column_is_one_line_naming_it(tmp_path, capsys, drop):
    rows = [{k: v for k, v in r.items() if k != drop} for r in paired_rows({"baseline": 0, "x": 1})]
    path = write(tmp_path / "s", rows).parent
    assert compare_main([str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"`{drop}`" in err or f"'{drop}'" in err
    assert report_main([str(path), "--out", str(tmp_path / "o"), "--no-note"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and drop in err and "KeyError" not in err


def test_any_csv_name_with_just_arm_seed_metric(tmp_path, capsys):
    rows = [{k: r[k] for k in ("arm", "seed", "test_acc")}
            for r in paired_rows({"baseline": 0.0, "x": 2.0})]  # no status: all complete
    csv = write(tmp_path, rows, name="my_runs.csv")
    (tmp_path / "study.json").write_text("{not json: must not be read for my_runs.csv")
    assert compare_main([str(csv)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("my_runs: test_acc") and "verdict: BETTER" in out
    assert report_main([str(csv), "--out", str(tmp_path / "o"), "--no-note", "--dpi", "30"]) == 0
    md = (tmp_path / "o" / "report.md").read_text()
    assert "Left out of this report" in md and "no epochs.csv" in md
    assert "no study.json" in md and "no per-example predictions" in md


# --- issue 11's seam: analysis needs neither torch nor study -----------------------------------


def test_analysis_imports_neither_torch_nor_study():
    code = ("import analysis, analysis.report, analysis.compare, sys; "
            "assert 'torch' not in sys.modules and 'study' not in sys.modules, "
            "[m for m in sys.modules if m.split('.')[0] in ('torch', 'study')]")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert res.returncode == 0, res.stderr


def test_importing_the_cli_module_keeps_analysis_compare_callable():
    """`analysis.compare` is both the function and the CLI module's name; importing the CLI
    in-process (as these tests do) used to turn `from analysis import compare` into a module."""
    code = ("import analysis.compare; from analysis import compare; "
            "c = compare([70.0, 71.0, 72.0], [69.0, 70.5, 71.0], paired=True, rng=0); "
            "print(c.verdict.label)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert res.returncode == 0 and res.stdout.strip() in {"better", "inconclusive"}, res.stderr


def test_a_robustness_disagreement_is_in_the_verdicts_reason():
    """Five seeds gain ~1 point (one 3), one loses 0.2: the t-test calls it better (p ~ 0.044),
    the exact sign-flip test cannot (p = 4/64 > 0.05). That used to be only a footnote. (The
    skew is to the right, the side of the gain, so the skew guard leaves the t-test alone.)"""
    from analysis import compare

    base = np.array([70.0, 71.0, 69.5, 70.5, 70.2, 69.8])
    c = quiet(compare, base + np.array([1, 1.1, 0.9, 1.0, 3.0, -0.2]), base, paired=True, rng=0)
    assert c.primary.pvalue < 0.05 <= c.robustness[0].pvalue
    assert c.verdict.label is VerdictLabel.BETTER
    assert "Not confirmed by the sign-flip permutation test" in c.verdict.reason


def test_forest_plot_says_which_side_is_better_for_a_loss():
    from analysis.load import family_frame
    from analysis.report.figures import forest_figure

    gen = np.random.default_rng(3)
    arms = {"base": gen.normal(1.0, 0.05, 6), "x": gen.normal(1.3, 0.05, 6)}
    fam = quiet(compare_family, arms, "base", paired=False, rng=0, direction="minimize")
    assert fam.get("x").verdict.label is VerdictLabel.WORSE
    fig = forest_figure(family_frame(fam, "val_loss"), margin=0.05, direction="minimize")
    assert "← better | worse →" in fig.get_supxlabel()


def test_one_run_at_chance_makes_the_exact_test_decide_and_says_what_it_needs():
    """The committed full study: 1 of 6 `no_bn` runs ended at 10.00%. The t-test over that
    bimodal sample said "worse"; the exact sign-flip test cannot go below 2/64 > 0.05/4."""
    c = quiet(compare_arms, load_study(ROOT / "results" / "notebook-ablation-full")).get("no_bn")
    assert c.primary.name == "sign-flip permutation test" and c.primary.pvalue == 2 / 64
    assert c.verdict.label is VerdictLabel.INCONCLUSIVE
    assert "at least 8 seeds per arm are needed" in c.verdict.reason
