"""The analysis CLI and loader on a small planted study (no CIFAR needed)."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from analysis import compare_arms, family_frame, load_study
from analysis.load import load_runs

JSON_KEYS = ["arm", "baseline", "metric", "n_arm", "n_baseline", "paired", "mean_arm", "mean_baseline", "diff",
             "ci_low", "ci_high", "test", "statistic", "p_value", "p_adjusted", "effect_size", "effect_size_name",
             "prob_improvement", "verdict", "verdict_reason", "margin", "equivalence_p", "seeds_needed",
             "seeds_needed_observed", "min_attainable_p", "notes",
             # issue 12: direction, pairing fallback and failure rates of each comparison
             "direction", "unpaired_fallback", "population", "failures_arm", "runs_arm",
             "failures_baseline", "runs_baseline", "failure_p", "failure_p_adjusted",
             "diff_other_population",
             # issue 23: every planned comparison has an object, judged or not, with the family size
             "judged", "family_judged", "family_planned"]


@pytest.fixture
def planted(tmp_path):
    """10 paired seeds: `better` +3 points, `same` = baseline + tiny noise, one failed run."""
    rng = np.random.default_rng(0)
    seeds = np.arange(10)
    seed_effect = rng.normal(0, 0.8, 10)  # shared by arms through pairing
    rows = []
    for arm, shift, noise in (("baseline", 0, 0.1), ("better", 3.0, 0.1), ("same", 0.0, 0.05)):
        for s in seeds:
            rows.append({"arm": arm, "seed": int(s), "status": "complete",
                         "test_acc": 75 + shift + seed_effect[s] + rng.normal(0, noise)})
    rows.append({"arm": "same", "seed": 10, "status": "failed", "test_acc": None})
    path = tmp_path / "study"
    path.mkdir()
    pd.DataFrame(rows).to_csv(path / "runs.csv", index=False)
    (path / "study.json").write_text(json.dumps({"study": "t", "analysis": {"margin": 0.5, "alpha": 0.05},
                                                  "arms": {"baseline": {}, "better": {}, "same": {}}}))
    return path


def test_planted_effect_and_no_effect(planted):
    frame = family_frame(compare_arms(load_study(planted)))
    verdicts = dict(zip(frame["arm"], frame["verdict"], strict=True))
    assert verdicts == {"better": "better", "same": "equivalent"}
    assert frame["paired"].all() and (frame["n_arm"] == 10).all()
    assert len(load_runs(planted / "runs.csv")) == 31


def run(*args):
    return subprocess.run([sys.executable, "-m", "analysis.compare", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_json_schema_is_pinned(planted):
    res = run(planted / "runs.csv", "--metric", "test_acc", "--baseline", "baseline", "--json")
    assert res.returncode == 0, res.stderr
    objs = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(objs) == 2
    for obj in objs:
        assert list(obj) == JSON_KEYS
        assert obj["metric"] == "test_acc" and obj["baseline"] == "baseline"
    better = next(o for o in objs if o["arm"] == "better")
    assert 2.5 < better["diff"] < 3.5 and better["ci_low"] > 0 and better["p_adjusted"] < 0.05


def test_all_pairs(planted):
    res = run(planted, "--pairs", "all", "--json")
    assert res.returncode == 0
    assert len(res.stdout.splitlines()) == 3  # 3 arms -> 3 pairs


def test_two_number_form_answers_and_warns_about_seeds():
    res = run(75.49, 74.08, "--n-test", 10000)
    assert res.returncode == 0
    assert "p = 0.0217" in res.stdout and "ignores seed variance" in res.stdout
    assert "seed sd 0.2" in res.stdout and "seed sd 1.0" in res.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["/nonexistent/dir"], "not a study directory"),
    (["75.49", "74.08"], "--n-test is required"),
])
def test_bad_input_exit_2(args, message):
    res = run(*args)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr


def test_failed_and_diverged_runs_are_never_dropped_silently(planted):
    """`same` seed 3 failed and `better` seed 7 diverged: each paired comparison then uses the
    9 seeds its two arms share, and the loader, the CLI and its JSON say which seed each one
    dropped and why (instead of, e.g., pairing 9 against 10 or quietly losing the runs)."""
    runs = pd.read_csv(planted / "runs.csv")
    runs.loc[(runs["arm"] == "same") & (runs["seed"] == 3), ["status", "test_acc"]] = ["failed", None]
    runs.loc[(runs["arm"] == "better") & (runs["seed"] == 7), ["status", "test_acc"]] = ["diverged", None]
    runs.to_csv(planted / "runs.csv", index=False)

    with pytest.warns(UserWarning, match=r"seeds \[\d\] dropped") as caught:
        frame = family_frame(compare_arms(load_study(planted)))
    messages = sorted(str(w.message) for w in caught)
    assert len(messages) == 2
    assert messages[0].startswith("better vs baseline: paired on seeds [0, 1, 2, 3, 4, 5, 6, 8, 9]; seeds [7]")
    assert messages[0].endswith("no value for them: {'better': [7]}")
    assert messages[1].startswith("same vs baseline: paired on seeds [0, 1, 2, 4, 5, 6, 7, 8, 9]; seeds [3]")
    assert frame["paired"].all() and (frame["n_arm"] == 9).all() and (frame["n_baseline"] == 9).all()
    assert len(load_runs(planted / "runs.csv")) == 31  # the failed/diverged rows are still there

    res = run(planted, "--json")
    assert res.returncode == 0, res.stderr
    assert "warning: better vs baseline: paired on seeds" in res.stderr and "seeds [7] dropped" in res.stderr
    assert "warning: same vs baseline: paired on seeds" in res.stderr and "seeds [3] dropped" in res.stderr
    assert all(json.loads(line)["n_arm"] == 9 for line in res.stdout.splitlines())
