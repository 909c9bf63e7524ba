"""A user experiment's report says only what its data shows: nothing of the built-in
experiment's CIFAR-10, BatchNorm, StepLR or flips, shared randomness only where the spec
declares its seed streams, and every number written by its magnitude.

The experiment is a small numpy logistic regression written into a temp folder (2 arms x 3
seeds, a few seconds), run by `study.run` and `study.tune` as a researcher would."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analysis import formatting
from analysis.load import load_study
from analysis.report import build_report, integrity_checks, tables, write_report
from analysis.tuning.studies import Tuning, space_axes

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
    [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
# What only the built-in experiment knows; "sign-flip" is the name of a test, not of flips.
FORBIDDEN = re.compile(r"cifar|batchnorm|steplr|(?<!sign-)flip|preset|n_bn", re.IGNORECASE)

TRAIN = '''
import numpy as np
from study.seeds import rng


def train(config, seed, report=None):
    data = np.random.default_rng(12345)  # the same data set in every run
    X = data.normal(size=(400, 5))
    y = (X @ np.linspace(0.2, 1.0, 5) + data.normal(size=400) > 0).astype(float)
    w = rng(seed, "init").normal(scale=0.01, size=5)
    target = y * (1 - config["alpha"]) + config["alpha"] / 2
    order = rng(seed, "order")
    for epoch in range(1, config["epochs"] + 1):
        for batch in np.array_split(order.permutation(300), 10):
            p = 1 / (1 + np.exp(-(X[batch] @ w)))
            w -= config["lr"] * (X[batch].T @ (p - target[batch]) / len(batch)
                                 + config["weight_decay"] * w)
        if report is not None and config["per_epoch"]:
            report(epoch, lr=config["lr"], val_acc=100 * float(np.mean((X[300:350] @ w > 0) == y[300:350])))
    test_acc = 100 * float(np.mean((X[350:] @ w > 0) == y[350:]))
    return {"test_acc": test_acc, "val_acc": 100 * float(np.mean((X[300:350] @ w > 0) == y[300:350]))}
'''

SPEC = '''
experiment = "logreg:train"
name = "{name}"
description = "Does weight decay help a logistic regression?"
seeds = 3
{streams}
[base]
lr = 0.5
alpha = 0.0
weight_decay = 0.0
epochs = 3
per_epoch = {per_epoch}

[arms.baseline]
[arms.wd_1e-4]
weight_decay = 0.001388

[analysis]
metric = "test_acc"
baseline = "baseline"
margin = 1.0
chance = 50.0

[tune]
metric = "val_acc"
direction = "maximize"
lr = {{low = 0.0001, high = 1.0, log = true}}
alpha = {{low = 0.0, high = 0.2}}
'''


def cli(module: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True,
                          text=True, timeout=240, env=ENV, cwd=ROOT)


def user_study(root: Path, name: str, *, streams: str = "", per_epoch: bool = False) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "logreg.py").write_text(TRAIN)
    (folder / "spec.toml").write_text(SPEC.format(name=name, streams=streams,
                                                  per_epoch=str(per_epoch).lower()))
    res = cli("study.run", "--spec", folder / "spec.toml", "--results", root / "results")
    assert res.returncode == 0, res.stderr[-3000:]
    return root / "results" / name


def report_text(path: Path, out: Path) -> tuple[str, str]:
    """report.md, and report.html without its embedded images (base64 spells anything)."""
    write_report(path, out, note=False, dpi=40)
    html = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", (out / "report.html").read_text())
    return (out / "report.md").read_text(), html


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """A user study that declares no seed streams and records no per-epoch rows; tuned on
    lr x alpha."""
    root = tmp_path_factory.mktemp("plain")
    path = user_study(root, "logreg")
    res = cli("study.tune", "--spec", root / "logreg" / "spec.toml", "--results", root / "results",
              "--study", "logreg", "--trials", 6)
    assert res.returncode == 0, res.stderr[-3000:]
    return path, *report_text(path, root / "report")


@pytest.fixture(scope="module")
def declared(tmp_path_factory):
    """The same experiment declaring the streams it draws from, with per-epoch rows."""
    root = tmp_path_factory.mktemp("declared")
    path = user_study(root, "logreg-streams", streams='seed_streams = ["order", "init"]',
                      per_epoch=True)
    return path, *report_text(path, root / "report")


def test_a_user_report_says_nothing_of_the_builtin_experiment(plain, declared):
    for _, md, html in (plain, declared):
        for text in (md, html):
            assert not FORBIDDEN.search(text), FORBIDDEN.search(text)


def test_shared_randomness_only_where_declared(plain, declared):
    _, md, _ = plain
    assert "whether they share randomness is up to the experiment" in md
    assert "shares data order" not in md and "initial weights" not in md
    assert json.loads((plain[0] / "study.json").read_text())["seed_streams"] == {}
    _, md, _ = declared
    assert "seed *i* of every arm shares data order and (where shapes match) initial weights" in md
    assert "Seed i of every arm shares data order and (where shapes match) initial weights" in md
    assert "up to the experiment" not in md


def test_sections_follow_the_data(plain, declared):
    """No per-epoch rows: no curves, no lr figure; no predictions: no test-set noise table; no
    n_bn: no BatchNorm table. Per-epoch lr without a declared schedule: shown, not checked."""
    _, md, _ = plain
    for key in ("learning_curves", "lr_schedule", "testset_noise", "batchnorm"):
        assert f"({key})" not in md
    assert "no epochs.csv" in md  # the omission is named
    _, md, _ = declared
    assert "(learning_curves)" in md and "(lr_schedule)" in md
    assert "no arm's configuration declares a schedule" in md
    assert "matches the schedule its configuration asks for" not in md


def test_a_two_parameter_search_maps_its_own_parameters(plain):
    _, md, _ = plain
    assert "(tuning_space_baseline)" in md
    assert "Where the sampler looked: learning rate x alpha" in md or \
        "Where the sampler looked: alpha x learning rate" in md
    one = Tuning("t", "baseline", pd.DataFrame({"number": [0, 1], "state": ["COMPLETE"] * 2,
                                                "status": ["complete"] * 2, "value": [1.0, 2.0],
                                                "lr": [0.1, 0.01], "activation": ["relu", "tanh"]}),
                 {}, {})
    assert space_axes(one) is None  # one numeric parameter: no map, rather than an empty one


def test_numbers_are_written_by_their_magnitude(plain):
    assert formatting.number(0.001388) == "0.00139" and formatting.number(-0.0042, signed=True) == "-0.0042"
    assert formatting.number(0.0) == "0.00" and formatting.number(12.3456) == "12.35"
    assert "0.00139" in tables.to_markdown(pd.DataFrame({"lr": [0.001388]}))
    assert formatting.duration(4.2) == "4.2 s" and formatting.duration(1980) == "0.55 h"
    _, md, _ = plain
    assert "weight_decay: 0.0 → 0.001388" in md  # the config as written, not "0.00"
    training = next(line for line in md.splitlines() if "total training time" in line)
    assert "0.00 h" not in training


def test_the_builtin_study_keeps_its_batchnorm_check_and_pairing(tmp_path):
    from test_report import make_study

    path = make_study(tmp_path, {"baseline": {}, "no_bn": {"bn": "none"}})
    study = load_study(path)
    checks = integrity_checks(study.runs, study.epochs, study.meta, study.arms())["checks"]
    assert any("BatchNorm layers" in c for c in checks)
    md_blocks = build_report(study).blocks
    text = " ".join(getattr(b, "text", "") for b in md_blocks)
    assert "shares data order, flips and (where shapes match) initial weights" in text


def test_seed_streams_are_validated_in_the_spec():
    from study.spec import SpecError, parse_spec

    spec = {"name": "s", "experiment": "m:f", "base": {"lr": 0.1}, "arms": {"baseline": {}},
            "analysis": {"metric": "acc", "direction": "maximize"}}
    assert list(parse_spec({**spec, "seed_streams": ["init", "order"]}).seed_streams) == ["order", "init"]
    own = parse_spec({**spec, "seed_streams": {"augment": "flips"}}).seed_streams  # in the experiment's words
    assert dict(own) == {"augment": "flips"}
    with pytest.raises(SpecError, match="seed_streams"):
        parse_spec({**spec, "seed_streams": ["shuffle"]})
    with pytest.raises(SpecError, match="seed_streams"):  # a stream's words must say something
        parse_spec({**spec, "seed_streams": {"order": " "}})


def test_curves_draw_what_the_runs_reported(declared):
    _, md, _ = declared
    assert "*Figure (learning_curves). Validation accuracy per epoch" in md  # not "and training loss"


def test_tuning_history_follows_the_objective_and_its_direction():
    from analysis.tuning.studies import history_figure

    trials = pd.DataFrame({"number": [0, 1, 2], "state": ["COMPLETE"] * 3, "status": ["complete"] * 3,
                           "value": [3.0, 1.0, 2.0], "lr": [0.1, 0.01, 0.001]})
    fig = history_figure(Tuning("t", "baseline", trials, {}, {}, objective="val_loss", direction="minimize"))
    ax = fig.axes[0]
    assert list(ax.lines[0].get_ydata()) == [3.0, 1.0, 1.0]  # best so far of a loss: the running minimum
    assert ax.get_ylabel() == "val_loss"


def test_a_split_fraction_named_test_size_is_not_a_test_set_size(plain):
    """`test_size = 0.3` in a user's config is a split, not a count of test images: the
    report used to read it as 0 images and stop with "`n` must be an integer >= 1, got 0"."""
    from analysis.report import render_markdown

    study = load_study(plain[0])
    for arm in study.meta["arms"].values():
        arm["config"]["test_size"] = 0.3
    assert study.n_test("test_acc") is None
    assert "Test-set noise" not in render_markdown(build_report(study))
    for arm in study.meta["arms"].values():
        arm["config"]["test_size"] = 150  # a count: the test-set noise paragraph uses it
    assert study.n_test("test_acc") == 150
    assert "same 150 test images" in render_markdown(build_report(study))
