"""The built-in experiment through the user's contract (issue 24): study.cifar.experiment's
`train` / `train_many` return what a user's `train` returns, with the numbers of the engine
they wrap, and a spec that names it runs through the generic runner like any experiment, its
seeds vmapped together with `--group`."""

import math

import numpy as np
import pytest
from conftest import BUILTIN_RUN_COLUMNS as RUN_COLUMNS

from analysis.contract import COMPLETE
from study import run_study
from study.cifar import experiment
from study.cifar.config import apply_overrides, preset_config
from study.cifar.train import train_one

TINY = {"width": 8, "train_size": 300, "val_size": 200, "test_size": 500, "epochs": 2, "step_size": 1,
        "precision": "fp32"}


@pytest.fixture
def cifar(synthetic_cifar):
    experiment.use_data(synthetic_cifar)
    yield synthetic_cifar
    experiment.use_source()  # the next test loads its own


def test_train_returns_the_contracts_dict_with_the_engines_numbers(cifar):
    cfg = apply_overrides(preset_config("smoke"), TINY)
    rows: list[tuple[int, dict]] = []
    got = experiment.train(cfg.to_dict(), 3, report=lambda epoch, **m: rows.append((epoch, m)))
    ref = train_one(cfg, 3, cifar)
    assert set(got) == {"test_acc", "val_acc", "train_acc", "train_loss", "lr_final", "n_bn", "predictions", "labels",
                        "info"}
    assert got["info"] == {"init_hash": ref.init_hash, "bn_layers": " ".join(map(str, ref.bn_layers)),
                           "precision": "fp32", "data_fingerprint": cifar.fingerprint, "data_source": cifar.source}
    assert (got["test_acc"], got["val_acc"], got["n_bn"]) == (ref.test_acc, ref.val_acc, float(ref.n_bn))
    assert got["lr_final"] == ref.epochs[-1].lr == 0.05  # StepLR halves it after epoch 1: the curve is data
    assert np.array_equal(got["predictions"], ref.test_predictions)
    assert got["labels"].shape == got["predictions"].shape == (500,)
    assert 100 * np.mean(got["predictions"] == got["labels"]) == pytest.approx(got["test_acc"])
    assert [e for e, _ in rows] == [1, 2] and [m["lr"] for _, m in rows] == [0.1, 0.05]


def test_train_many_gives_each_seed_its_own_run_and_rows(cifar):
    cfg = apply_overrides(preset_config("smoke"), TINY)
    rows: list[tuple[int, int]] = []
    group = experiment.train_many(cfg.to_dict(), [3, 5], report=lambda seed, epoch, **m: rows.append((seed, epoch)))
    alone = [experiment.train(cfg.to_dict(), s) for s in (3, 5)]
    assert sorted(rows) == [(3, 1), (3, 2), (5, 1), (5, 2)]
    for g, a in zip(group, alone, strict=True):
        assert isinstance(g, dict) and g["n_bn"] == a["n_bn"] == 6
        assert g["train_loss"] == pytest.approx(a["train_loss"], rel=1e-3)  # vmapped: summation order only
        assert abs(g["test_acc"] - a["test_acc"]) <= 1.0
    assert not np.array_equal(group[0]["predictions"], group[1]["predictions"])  # two models, not one


def test_a_diverged_run_returns_a_non_finite_metric(cifar):
    cfg = {**TINY, "lr": 1e6, "bn": "none"}
    got = experiment.train(cfg, 0)
    assert math.isnan(got["train_loss"]) and "predictions" not in got


def test_a_spec_naming_the_builtin_module_runs_through_the_generic_runner(cifar, tmp_path):
    base = "\n".join(f"{k} = {v!r}".replace("'", '"') for k, v in TINY.items())
    spec = tmp_path / "cifar.toml"
    spec.write_text('experiment = "study.cifar.experiment:train"\nname = "cifar-contract"\nseeds = 2\n'
                    f'[base]\n{base}\nbn = "all"\n[analysis]\nmetric = "test_acc"\nchance = 10.0\n'
                    '[arms.baseline]\n[arms.no_bn]\nbn = "none"\n')
    result = run_study(spec, results=tmp_path / "r", jobs=1, group=2)
    assert result.exit_code == 0
    runs = result.runs
    assert (runs["status"] == COMPLETE).all() and set(runs["group"]) == {"0 1"}
    assert dict(zip(runs["arm"], runs["n_bn"], strict=True)) == {"baseline": 6, "no_bn": 0}
    # every column of the built-in layout, its facts returned as `info` (read as text)
    assert set(RUN_COLUMNS) <= set(runs.columns), set(RUN_COLUMNS) - set(runs.columns)
    assert set(runs["data_fingerprint"]) == {cifar.fingerprint} and set(runs["precision"]) == {"fp32"}
    assert set(runs.loc[runs["arm"] == "no_bn", "bn_layers"].isna()) == {True}  # no layer: an empty cell
    assert set(runs.loc[runs["arm"] == "baseline", "bn_layers"]) == {"1 2 3 4 5 6"}
    assert set(runs.groupby("arm")["init_hash"].nunique()) == {2}  # a hash per seed's initial weights
    assert set(result.epochs.columns) >= {"lr", "train_loss", "val_acc"} and len(result.epochs) == 2 * 2 * 2
    assert (result.path / "test_labels.npy").exists()


@pytest.mark.gpu
def test_train_many_on_cuda_matches_train_seed_by_seed(cifar):
    cfg = apply_overrides(preset_config("smoke"), {"precision": "fp32"}).to_dict()
    group = experiment.train_many(cfg, [0, 1, 2], device="cuda")
    for seed, g in enumerate(group):
        a = experiment.train(cfg, seed, device="cuda")
        assert isinstance(g, dict) and g["n_bn"] == a["n_bn"]
        assert g["train_loss"] == pytest.approx(a["train_loss"], rel=1e-2)
        assert abs(g["test_acc"] - a["test_acc"]) <= 2.0
        assert np.mean(g["predictions"] == a["predictions"]) >= 0.8
