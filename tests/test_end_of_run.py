"""The runner's end-of-study answer comes from the analysis API (issue 24): its verdicts are
the same lines as `seedwise compare`'s, and its table's "each arm minus the baseline" is the
verdicts' own skew-guarded interval, not a plain t interval that could disagree on screen."""

import json

import numpy as np
import pandas as pd
import pytest

from analysis.compare import main as compare_main
from analysis.load import compare_arms, load_study
from analysis.stats.describe import t_interval
from study.console import print_verdicts
from study.summary import render, summarize


def skewed_study(tmp_path, *, diverged: bool = False):
    """baseline and `boost` on 10 seeds: `boost` gains nothing on nine and 6 points on one
    (the skewed gain the skew guard widens); `flat` is the baseline plus noise. With
    `diverged`, one of `flat`'s seeds diverged (scored at chance by the verdicts)."""
    gen = np.random.default_rng(7)
    base = 70 + gen.normal(0, 0.5, 10)
    gain = np.r_[gen.normal(0, 0.05, 9), 6.0]
    rows = [{"arm": "baseline", "seed": s, "status": "complete", "val_acc": v} for s, v in enumerate(base)]
    rows += [{"arm": "boost", "seed": s, "status": "complete", "val_acc": v} for s, v in enumerate(base + gain)]
    rows += [{"arm": "flat", "seed": s, "status": "complete", "val_acc": v}
             for s, v in enumerate(base + gen.normal(0, 0.3, 10))]
    if diverged:
        rows[-1].update(status="diverged", val_acc=np.nan)
    folder = tmp_path / "skewed"
    folder.mkdir()
    pd.DataFrame(rows).to_csv(folder / "runs.csv", index=False)
    meta = {"study": "skewed", "arms": {a: {} for a in ("baseline", "boost", "flat")},
            "analysis": {"metric": "val_acc", "baseline": "baseline", "margin": 0.5, "chance": 10.0}}
    (folder / "study.json").write_text(json.dumps(meta))
    return folder, pd.DataFrame(rows)


@pytest.mark.parametrize("diverged", [False, True])
def test_the_table_shows_the_verdicts_interval(tmp_path, diverged):
    folder, runs = skewed_study(tmp_path, diverged=diverged)
    family = compare_arms(load_study(folder))
    arms = ["baseline", "boost", "flat"]
    with_family = summarize(runs, arms, "baseline", "val_acc", family=family).set_index("arm")
    for c in family.comparisons:
        row = with_family.loc[c.arm_name]
        assert (row["diff"], row["diff_low"], row["diff_high"]) == (c.diff, c.ci_low, c.ci_high)
    boost = family.get("boost")
    plain = t_interval(runs[runs.arm == "boost"].val_acc.to_numpy()
                        - runs[runs.arm == "baseline"].val_acc.to_numpy())
    # The guard widened the skewed side: a plain t interval would have shown another one.
    assert boost.ci_high > plain[2] + 0.1
    # Without the family (the export failed) the table runs the same primary test itself.
    alone = summarize(runs, arms, "baseline", "val_acc").set_index("arm")
    assert alone.loc["boost", "diff_low"] == pytest.approx(boost.ci_low)
    assert alone.loc["boost", "diff_high"] == pytest.approx(boost.ci_high)
    if diverged:  # the verdicts count the diverged seed; the table's row says which n it uses
        assert with_family.loc["flat", "paired"] == f"paired, n={family.get('flat').n_arm}"
    assert "primary test" in render(with_family.reset_index(), "baseline", "val_acc")


def test_the_runner_prints_the_clis_verdict_lines(tmp_path, capsys):
    folder, _ = skewed_study(tmp_path)
    assert compare_main([str(folder)]) == 0
    cli = capsys.readouterr()
    print_verdicts(folder)
    runner = capsys.readouterr()
    assert runner.out.split("\n", 2)[2] == cli.out  # after its heading, the same lines
    assert "verdict: " in cli.out and runner.err == cli.err


def test_the_runner_says_why_there_is_no_verdict_yet(tmp_path, capsys):
    folder, runs = skewed_study(tmp_path)
    runs[runs.arm == "baseline"].to_csv(folder / "runs.csv", index=False)
    print_verdicts(folder)
    out = capsys.readouterr().out
    assert "\n  none yet: " in out and "no run of it in the runs table" in out
