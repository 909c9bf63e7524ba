"""Issue 22: each metric's direction, margin and chance are its own, declared or read from an
unambiguous name, never guessed into a wrong verdict.

A loss with no declared direction was analysed as higher-is-better (the arm with the higher
`val_loss` was BETTER), and `--metric X` borrowed the study's direction and margin for X. Each
test builds a researcher's experiment (`train_resnet.py`, `sweep.toml`) in a fresh folder."""

from __future__ import annotations

import json
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.compare import main as compare_main
from analysis.load import compare_arms, load_study
from analysis.report import build_report
from analysis.report import main as report_main
from analysis.stats.direction import from_name, sign
from study.run import main as run_main
from study.spec import SpecError, load_spec

ROOT = Path(__file__).resolve().parents[1]

# A ResNet stand-in: a seed's luck shared by every arm (paired), `scaled` trains to a lower loss
# (0.2 below the baseline) and a higher accuracy; throughput and wall time are also reported.
TRAIN = '''
import numpy as np
from study.seeds import rng


def train(config, seed):
    luck = rng(seed, "init").normal(0, 0.05)
    own = rng(seed, "order").normal(0, 0.01) * (1 + config["width"])
    loss = 1.2 + luck + own - 0.2 * config["width"]
    return {"val_loss": float(loss), "test_loss": float(loss + 0.03),
            "val_acc": float(70 - 20 * loss), "throughput": float(900 + 100 * config["width"] + 5 * own),
            "wall_clock": float(30 + luck + 10 * own)}
'''


def experiment(tmp_path: Path, analysis: str, name: str = "resnet-sweep") -> Path:
    (tmp_path / "train_resnet.py").write_text(TRAIN)
    spec = tmp_path / "sweep.toml"
    spec.write_text(f'experiment = "train_resnet:train"\nname = "{name}"\nseeds = 4\n[base]\nwidth = 0.0\n'
                    f'[arms.baseline]\n[arms.scaled]\nwidth = 1.0\n{analysis}')
    return spec


def cli(capsys, main, *args) -> subprocess.CompletedProcess:
    """A command line run in this process (`main` is its module's), as a CompletedProcess."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


def run(spec: Path, results: Path) -> Path:
    assert run_main(["--spec", str(spec), "--results", str(results), "--jobs", "1"]) == 0
    return results / load_spec(spec).name


def verdict(path, **kw) -> tuple[str, object]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fam = compare_arms(load_study(path), **kw)
    c = fam.get("scaled")
    return c.verdict.label.value, c


@pytest.mark.parametrize(("name", "direction"), [
    ("val_loss", "minimize"), ("test_acc", "maximize"), ("trainLoss", "minimize"),
    ("F1Score", "maximize"), ("mean_episode_return", "maximize"), ("top1_acc", "maximize"),
    ("word_error_rate", "minimize"), ("wer", "minimize"), ("val_losses", "minimize"),
    ("rmse", "minimize"), ("reward", "maximize"), ("perplexity", "minimize"),
    ("terrain_height", None), ("accel", None), ("loss_score", None), ("throughput", None),
    ("stderr_ms", None), ("wall_clock", None)])
def test_a_name_gives_a_direction_only_when_it_is_unambiguous(name, direction):
    assert from_name(name) == direction
    assert sign("maximize") == 1 and sign("minimize") == -1


def test_a_loss_with_no_declared_direction_is_lower_is_better(tmp_path, capsys):
    """The issue's case: `scaled` has the lower val_loss, so it is BETTER, and study.json does
    not claim a direction nobody declared."""
    out = run(experiment(tmp_path, '[analysis]\nmetric = "val_loss"\nmargin = 0.02\n'), tmp_path / "results")
    meta = json.loads((out / "study.json").read_text())
    assert meta["analysis"] == {"metric": "val_loss", "baseline": "baseline", "alpha": 0.05, "margin": 0.02}
    label, c = verdict(out)
    assert c.diff < 0 and label == "better" and c.direction == "minimize"
    res = cli(capsys, compare_main, out)
    assert res.returncode == 0 and "lower is better" in res.stdout and "verdict: BETTER" in res.stdout
    assert "lower is taken as better" in res.stderr  # the inference is said, not silent


def test_metric_x_uses_its_own_declared_direction_margin_and_chance(tmp_path, capsys):
    spec = experiment(tmp_path, '[analysis]\nmetric = "val_acc"\ndirection = "maximize"\nmargin = 1.0\n'
                                '[analysis.metrics.test_loss]\nmargin = 0.02\n'
                                '[analysis.metrics.throughput]\ndirection = "maximize"\nmargin = 5.0\nchance = 0.0\n')
    out = run(spec, tmp_path / "results")
    meta = json.loads((out / "study.json").read_text())
    assert meta["analysis"]["metrics"] == {"test_loss": {"margin": 0.02},
                                           "throughput": {"direction": "maximize", "margin": 5.0, "chance": 0.0}}
    assert verdict(out)[0] == "better"  # val_acc, higher
    label, c = verdict(out, metric="test_loss")  # lower test loss: better, not "scaled is worse"
    assert label == "better" and c.direction == "minimize" and c.margin == 0.02
    label, c = verdict(out, metric="throughput")
    assert label == "better" and c.margin == 5.0
    fam = compare_arms(load_study(out), metric="throughput")
    assert fam.plan.chance == 0.0 and fam.plan.chance_source == "the analysis plan (study.json)"
    # the report reads the same plan for --metric
    rep = build_report(load_study(out), plan={"metric": "test_loss"})
    assert rep.families["baseline"].get("scaled").verdict.label.value == "better"
    # a metric nothing declares and whose name says nothing: exit 2, saying how to declare it
    res = cli(capsys, compare_main, out, "--metric", "wall_clock")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "[analysis.metrics.wall_clock] direction" in res.stderr and "--direction" in res.stderr
    res = cli(capsys, compare_main, out, "--metric", "wall_clock", "--direction", "minimize", "--json")
    row = json.loads(res.stdout.splitlines()[0])
    assert res.returncode == 0 and row["direction"] == "minimize"
    assert row["margin"] == 0.5  # the default, not val_acc's 1.0, and a note says so
    assert "no margin declared for `wall_clock`" in res.stderr
    res = cli(capsys, report_main, out, "--metric", "wall_clock", "--out", tmp_path / "paper", "--no-note")
    assert res.returncode == 2 and "[analysis.metrics.wall_clock]" in res.stderr


def test_a_plain_csv_needs_a_direction_only_when_the_name_does_not_give_one(tmp_path, capsys):
    noise = np.random.default_rng(3).normal(0, 0.05, size=(2, 8))
    rows = [{"arm": arm, "seed": s, "kl_to_teacher": 2 + 0.1 * s - 0.5 * i + noise[i, s],
             "dev_loss": 2 - 0.1 * s - 0.3 * i + noise[1 - i, s]}
            for i, arm in enumerate(("zero_shot", "ft")) for s in range(8)]
    table = tmp_path / "finetune_runs.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    res = cli(capsys, compare_main, table, "--metric", "kl_to_teacher", "--margin", "0.1")
    assert res.returncode == 2 and "is a higher or a lower `kl_to_teacher` better" in res.stderr
    assert "--direction" in res.stderr
    res = cli(capsys, compare_main, table, "--metric", "kl_to_teacher", "--margin", "0.1", "--direction", "minimize")
    assert res.returncode == 0 and "ft - zero_shot" in res.stdout and "BETTER" in res.stdout
    res = cli(capsys, compare_main, table, "--metric", "dev_loss", "--margin", "0.1")
    assert res.returncode == 0 and "lower is better" in res.stdout and "BETTER" in res.stdout


def test_a_spec_whose_metric_has_no_direction_stops_before_anything_is_stored(tmp_path, capsys):
    spec = experiment(tmp_path, '[analysis]\nmetric = "throughput"\nmargin = 5.0\n')
    res = cli(capsys, run_main, "--spec", spec, "--results", tmp_path / "results")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "`throughput` better" in res.stderr and 'direction = "maximize"' in res.stderr
    assert not (tmp_path / "results").exists()
    # a tuning objective's direction is its own too: declared, named, or an error
    spec = experiment(tmp_path, '[analysis]\nmetric = "val_acc"\n[tune]\nmetric = "wall_clock"\n'
                                'width = {low = 0.0, high = 1.0}\n')
    with pytest.raises(SpecError, match=r"\[tune\] is a higher or a lower `wall_clock` better"):
        load_spec(spec)
    spec = experiment(tmp_path, '[analysis]\nmetric = "val_acc"\n[tune]\nmetric = "val_loss"\n'
                                'width = {low = 0.0, high = 1.0}\n')
    assert load_spec(spec).tune.direction == "minimize"  # was "maximize": tuning toward a higher loss
    # declared twice, differently: one line naming both places
    spec = experiment(tmp_path, '[analysis]\nmetric = "val_loss"\ndirection = "maximize"\n'
                                '[analysis.metrics.val_loss]\ndirection = "minimize"\n')
    with pytest.raises(SpecError, match="disagree; declare it once"):
        load_spec(spec)
    spec = experiment(tmp_path, '[analysis]\nmetric = "val_loss"\n[analysis.metrics.val_loss]\ndirection = "down"\n')
    with pytest.raises(SpecError, match=r"\[analysis.metrics.val_loss\]: direction must be one of"):
        load_spec(spec)
    spec = experiment(tmp_path, '[analysis]\nmetric = "val_loss"\n[analysis.metrics.val_loss]\nmargn = 0.1\n')
    with pytest.raises(SpecError, match="unknown key 'margn'.*margin"):
        load_spec(spec)


def test_the_analysis_metric_declared_in_either_place_is_the_same_study(tmp_path):
    top = load_spec(experiment(tmp_path, '[analysis]\nmetric = "val_loss"\ndirection = "minimize"\nmargin = 0.02\n'))
    table = load_spec(experiment(tmp_path, '[analysis]\nmetric = "val_loss"\n'
                                           '[analysis.metrics.val_loss]\ndirection = "minimize"\nmargin = 0.02\n'))
    assert top.analysis == table.analysis and top.identity(None) == table.identity(None)
    assert table.analysis.declared() == {"metric": "val_loss", "baseline": "baseline", "alpha": 0.05,
                                         "margin": 0.02, "direction": "minimize"}
    # an undeclared direction keeps the identity studies had when "maximize" was its default
    inferred = load_spec(experiment(tmp_path, '[analysis]\nmetric = "val_loss"\nmargin = 0.02\n'))
    assert "direction" not in inferred.analysis.identity_blob()
    assert inferred.analysis.direction_of() == "minimize"


@pytest.mark.parametrize("study", sorted(p.parent.name for p in (ROOT / "results").glob("*/study.json")))
def test_committed_studies_keep_what_they_declared(study):
    """Every committed study analyses as before: test_acc, higher is better, its own margin,
    no new note."""
    data = load_study(ROOT / "results" / study)
    plan = data.metric_plan()
    declared = data.meta["analysis"]
    assert plan.metric == declared["metric"] == "test_acc" and plan.direction == "maximize"
    assert plan.margin == declared["margin"] and plan.notes == ()
