"""The variance-decomposition runner: per-stream seeds (study.seeds.RunSeeds), the per-seed
split (split_seed = -1), and `python -m study.variance` end to end on examples/digits."""

import dataclasses
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.stats.variance import declared_deterministic, variance_design
from study.cifar.config import PER_SEED_SPLIT, Config, RunConfig, apply_overrides
from study.cifar.data import split_indices
from study.cifar.data import test_indices as scored_indices
from study.cifar.experiment import as_config, split_groups
from study.seeds import RunSeeds, generator, rng, seed_columns, stream_seed, stream_seeds
from study.spec import load_spec
from study.variance import main

DIGITS = Path(__file__).resolve().parents[1] / "examples" / "digits" / "spec.toml"


# ---- per-stream seeds ----------------------------------------------------------------------
def test_plain_int_seeds_draw_exactly_what_they_drew_before():
    # stream_seed as it was before RunSeeds (main at d7f89f1): SeedSequence(seed, spawn_key=(id,))
    for seed in (0, 5, 123456789):
        for stream, sid in (("init", 1), ("order", 2), ("augment", 3)):
            old = int(np.random.SeedSequence(seed, spawn_key=(sid,)).generate_state(1, np.uint64)[0] >> np.uint64(1))
            assert stream_seed(seed, stream) == old
    assert stream_seed(0, "init") == 2440950710608614359  # printed by the old code
    assert list(stream_seeds(7)) == ["init", "order", "augment"]  # what runs store, unchanged


def test_run_seeds_take_each_stream_from_its_own_seed():
    s = RunSeeds(3, init=41, split=44)
    assert s == 3 and isinstance(s, int) and str(s) == "3" and hash(s) == hash(3)
    assert stream_seed(s, "init") == stream_seed(41, "init") != stream_seed(3, "init")
    assert stream_seed(s, "order") == stream_seed(3, "order")  # not given: from the run's seed
    assert stream_seed(s, "split") == stream_seed(44, "split")
    assert rng(s, "init").integers(1 << 30) == rng(41, "init").integers(1 << 30)
    assert generator(s, "init").initial_seed() == stream_seed(41, "init")
    assert stream_seeds(RunSeeds(7)) == stream_seeds(7)
    back = pickle.loads(pickle.dumps(s))  # how it reaches joblib / Dask workers
    assert type(back) is RunSeeds and back.seeds == s.seeds
    assert seed_columns(s) == {"init_seed": 41, "order_seed": 3, "augment_seed": 3, "split_seed": 44}
    assert seed_columns(3) == {}
    with pytest.raises(ValueError, match="stream"):
        RunSeeds(1, dropout=2)
    with pytest.raises(ValueError, match="init seed"):
        RunSeeds(1, init=-1)


@pytest.fixture
def torch_one_thread():
    """Tiny models: on a shared, loaded CPU two torch threads mostly wait for each other (20x slower)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_train_one_honours_per_stream_seeds_and_plain_ints_are_unchanged(cifar, smoke, torch_one_thread):
    from study.cifar.train import train_one

    cfg = apply_overrides(smoke, {"train_size": 300, "val_size": 100, "test_size": 200, "epochs": 1})

    def run(seed):
        r = train_one(cfg, seed, cifar)
        return r, [dataclasses.replace(e, train_seconds=0.0) for e in r.epochs]

    plain, plain_epochs = run(5)
    same, same_epochs = run(RunSeeds(5))
    assert same_epochs == plain_epochs and same.init_hash == plain.init_hash
    assert np.array_equal(same.test_predictions, plain.test_predictions)
    order, order_epochs = run(RunSeeds(5, order=9))
    assert order.init_hash == plain.init_hash and order_epochs[0].train_loss != plain_epochs[0].train_loss
    init, _ = run(RunSeeds(5, init=9))
    assert init.init_hash != plain.init_hash and init.streams["init"] == stream_seed(9, "init")


# ---- the per-seed split --------------------------------------------------------------------
def test_per_seed_split_differs_between_seeds_and_is_shared_by_the_arms_of_a_seed():
    spec = load_spec()
    arms = [as_config(spec.config(arm, "smoke", {"split_seed": PER_SEED_SPLIT})) for arm in ("baseline", "no_bn")]
    train0, val0 = split_indices(arms[0].for_run(0))
    train1, val1 = split_indices(arms[0].for_run(1))
    assert not np.array_equal(val0, val1) and not np.array_equal(train0, train1)
    for a, b in zip(split_indices(arms[0].for_run(3)), split_indices(arms[1].for_run(3)), strict=True):
        assert np.array_equal(a, b)  # pairing kept: both arms of seed 3 train on the same images
    assert len(np.intersect1d(train0, val0)) == 0 and len(val0) == arms[0].val_size
    # The test subset never moves with the split: every run scores the same examples.
    fixed = as_config(spec.config("baseline", "smoke"))
    for seed in (0, 1):
        assert np.array_equal(scored_indices(arms[0].for_run(seed)), scored_indices(fixed))
    # A run's split stream seed decides it (as study.variance's split group needs).
    assert np.array_equal(split_indices(arms[0].for_run(RunSeeds(0, split=1)))[1], val1)


def test_fixed_split_is_unchanged_and_an_unresolved_per_seed_config_is_refused():
    fixed = Config(val_size=500, train_size=1000)
    assert fixed.for_run(7) is fixed
    perm = np.random.default_rng(0).permutation(50_000)  # the split as it always was
    assert np.array_equal(split_indices(fixed)[1], np.sort(perm[:500]))
    per_seed = dataclasses.replace(fixed, split_seed=-1)
    assert isinstance(per_seed.for_run(7), RunConfig)
    with pytest.raises(ValueError, match="for_run"):
        split_indices(per_seed)
    with pytest.raises(Exception, match="split_seed"):
        Config(split_seed=-2)


def test_seeds_train_together_only_where_their_split_matches():
    per_seed = Config(split_seed=PER_SEED_SPLIT)
    seeds = [RunSeeds(0, split=0), RunSeeds(1, split=0), RunSeeds(2, split=5)]
    groups = split_groups(per_seed, seeds)
    assert sorted(map(list, groups.values())) == [[0, 1], [2]]
    assert list(split_groups(Config(), seeds).values()) == [seeds]  # a fixed split: one group


# ---- python -m study.variance ------------------------------------------------------------
def run_variance(tmp_path, *extra: str) -> int:
    return main(["--spec", str(DIGITS), "--arm", "dropout", "--seeds", "2", "--set", "epochs=1",
                 "--set", "hidden=16", "--results", str(tmp_path), "--jobs", "1", *extra])


@pytest.fixture
def one_thread(monkeypatch):
    """One torch thread for the in-process runs (study.run gives each worker cores // jobs)."""
    monkeypatch.setattr(os, "cpu_count", lambda: 1)


def test_variance_command_on_a_user_experiment_then_a_rerun_trains_nothing(tmp_path, capsys, one_thread):
    assert run_variance(tmp_path) == 0
    out, err = capsys.readouterr()
    (study,) = tmp_path.iterdir()
    assert study.name.startswith("digits-mlp-variance-dropout-k2-set-")
    runs = pd.read_csv(study / "runs.csv").sort_values("seed").reset_index(drop=True)
    design = variance_design(2)
    assert list(runs["seed"]) == list(range(10)) and (runs["status"] == "complete").all()
    cols = ["init_seed", "order_seed", "augment_seed", "split_seed"]
    assert runs[cols].to_numpy().tolist() == design[cols].to_numpy().tolist()
    # Every source reaches the user's code through study.seeds: each group's two runs differ.
    assert (runs.groupby(design["group"])["train_loss"].nunique() == 2).all()
    table = pd.read_csv(study / "variance.csv")
    assert list(table["source"]) == ["init", "order", "augment", "split", "all", "test"]
    assert table.loc[table["source"] != "test", "n_runs"].tolist() == [2] * 5
    assert table["test_noise"].notna().sum() == 5  # from the stored predictions
    doc = json.loads((study / "variance.json").read_text())
    assert (doc["n_test"], doc["complete"], doc["sources"]) == (400, 10, ["init", "order", "augment", "split"])
    for source in ("init", "order", "augment", "split", "all", "test"):
        assert any(line.startswith(source + " ") for line in out.splitlines())
    assert "10 runs to do (0 already done)" in err
    # the study's report shows the runner's record (not a recomputation)
    from analysis.formatting import significant
    from analysis.load import load_study
    from analysis.report import build_report

    shown, _ = build_report(load_study(study)).tables["variance"]
    assert list(shown["source varied"]) == ["weight init", "data order", "augmentation", "train/validation split",
                                           "all sources at once", "test-set sample (binomial)"]
    assert shown["sd"].tolist() == [significant(x) for x in table["sd"]]

    assert run_variance(tmp_path) == 0
    out2, err2 = capsys.readouterr()
    assert "nothing to do: all 10 runs" in err2 and out2 == out
    # Another design under the same study name is refused before it trains anything.
    assert run_variance(tmp_path, "--seeds", "3", "--study", study.name) == 2
    assert "another --study" in capsys.readouterr().err


def test_a_design_over_some_sources_decomposes_over_those(tmp_path, capsys, one_thread):
    # runs.csv keeps all four seed columns; the "all" group of init,order once read as a run
    # varying two of four sources and ended in a traceback.
    assert run_variance(tmp_path, "--sources", "init,order") == 0
    (study,) = tmp_path.iterdir()
    table = pd.read_csv(study / "variance.csv")
    assert list(table["source"]) == ["init", "order", "all", "test"]
    assert table.loc[table["source"] != "test", "n_runs"].tolist() == [2] * 3


@pytest.mark.slow  # 22 digits runs
def test_replicates_measure_the_residual_end_to_end(tmp_path, capsys, one_thread):
    """With --replicates the nondeterminism is measured (0 here: the MLP repeats bit for bit on a
    CPU), and the printout, variance.csv/json and the report all carry the sum of shares."""
    assert run_variance(tmp_path, "--seeds", "4", "--replicates", "2") == 0
    out = capsys.readouterr().out
    (study,) = tmp_path.iterdir()
    table = pd.read_csv(study / "variance.csv")
    assert list(table["source"]) == ["init", "order", "augment", "split", "all", "residual", "none", "test"]
    assert table.set_index("source").loc["none", "variance"] == 0  # identical replicates
    doc = json.loads((study / "variance.json").read_text())
    assert not doc["net_is_upper_bound"] and doc["sum_of_shares_ci"] is not None
    shown = f"{100 * doc['sum_of_shares']:.0f}%"
    assert f"sum of shares (sources + residual): {shown}" in out
    from analysis.load import load_study
    from analysis.report import build_report
    from analysis.report.render import render_markdown

    text = render_markdown(build_report(load_study(study)))
    assert "The replicate runs measured the nondeterminism" in text and doc["additivity"] in text


@pytest.mark.parametrize(("args", "names"), [
    (["--arm", "nope"], "unknown arm 'nope'"),
    (["--arm", "dropout", "--sources", "init,weather"], "--sources: unknown source 'weather'"),
    (["--arm", "dropout", "--sources", "init"], "--sources needs at least two"),
    (["--arm", "dropout", "--seeds", "1"], "--seeds must be at least 2"),
    (["--arm", "dropout", "--set", "split_seed=3"], "split_seed is fixed"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, names):
    assert main(["--spec", str(DIGITS), "--results", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and names in err and err.count("\n") == 1
    assert not any(tmp_path.iterdir())  # nothing stored


@pytest.mark.slow  # ten CIFAR-10 runs: 10 s on a quiet 2-core CPU, over a minute on a busy one
def test_variance_command_on_the_builtin_experiment(cifar, tmp_path, capsys, one_thread):
    tiny = ["--set", "train_size=200", "--set", "val_size=100", "--set", "test_size=200", "--set", "epochs=1"]
    assert main(["--arm", "baseline", "--seeds", "2", "--preset", "smoke", "--results", str(tmp_path),
                 "--jobs", "1", *tiny]) == 0
    out = capsys.readouterr().out
    (study,) = tmp_path.iterdir()
    runs = pd.read_csv(study / "runs.csv").sort_values("seed").reset_index(drop=True)
    design = variance_design(2)
    cols = ["init_seed", "order_seed", "augment_seed", "split_seed"]
    assert runs[cols].to_numpy().tolist() == design[cols].to_numpy().tolist()
    assert (runs.groupby(design["group"])["train_loss"].nunique() == 2).all()
    assert runs.groupby(design["group"])["init_hash"].nunique().to_dict() == {
        "init": 2, "order": 1, "augment": 1, "split": 1, "all": 2}
    meta = json.loads((study / "study.json").read_text())
    assert meta["arms"]["baseline"]["config"]["split_seed"] == PER_SEED_SPLIT
    # one CPU thread, every run alone: bit-deterministic, so the residual is the test noise alone
    assert list(pd.read_csv(study / "variance.csv")["source"]) == [
        "init", "order", "augment", "split", "all", "residual", "test"]
    assert "Variance of test_acc, arm baseline" in out and "nondeterminism taken as 0" in out
    assert "sum of shares (sources + residual): - (not checked" in out  # k = 2: no share


@pytest.mark.parametrize(("change", "deterministic"), [
    ({}, True),
    ({"device": ["cpu: x", "cuda: H100"]}, False),  # a GPU's kernels may not repeat
    ({"threads": [1, 2]}, False),  # the summation order can depend on the thread count
    ({"group": [np.nan, "0 1"]}, False),  # vmapped with others: another rounding than alone
])
def test_determinism_is_declared_only_for_lone_cpu_runs_at_one_thread_count(change, deterministic):
    runs = pd.DataFrame({"device": ["cpu: x", "cpu: x"], "threads": [1, 1], "group": [np.nan, np.nan]})
    assert declared_deterministic(runs.assign(**change), bit_exact=True)[0] is deterministic
    assert declared_deterministic(runs, bit_exact=False)[0] is False  # a user experiment: unknown


def test_the_report_still_reads_a_record_written_before_net_components(tmp_path):
    """An old variance.json (no net, no additivity) keeps its table and says what its raw
    sum of shares is not."""
    from analysis.report.blocks import Report
    from analysis.report.variance import variance_section, variance_table

    old = {"study": "s", "arm": "baseline", "metric": "test_acc", "k": 5, "sources": ["init", "order"],
           "confidence": 0.95, "sum_of_shares": 1.98, "complete": 15, "diverged": 0, "failed": 0,
           "components": [{"source": s, "n_runs": 5, "variance": 1.0, "ci_low": 0.4, "ci_high": 8.0, "sd": 1.0,
                           "share": 0.5, "share_low": 0.1, "share_high": 4.0, "test_noise": 0.1}
                          for s in ("init", "order")]}
    assert "net [CI]" not in variance_table(old).columns
    (tmp_path / "variance.json").write_text(json.dumps(old))
    rep = Report(study="s", title="s")
    variance_section(rep, tmp_path)
    text = " ".join(getattr(b, "text", "") for b in rep.blocks)
    assert "says nothing about additivity" in text and "not additive" not in text


def test_the_printed_table_keeps_its_columns_apart_for_a_loss_of_small_values():
    # A loss near 0.09 varying in the fourth decimal: "40.000974" was runs 4 and sd 0.000974,
    # and "[3.04e-07, 1.32e-05]9.48e-07" a CI run into the net variance.
    from types import SimpleNamespace

    from analysis.stats.variance import decompose_variance
    from study.variance import render

    design = variance_design(4)
    noise = np.random.default_rng(0).normal(0, 1e-3, len(design))
    runs = design.assign(val_loss=0.09 + noise)
    d = decompose_variance(runs, metric="val_loss", reference=0, percent=False)
    text = render(d, SimpleNamespace(arm="dropout=0.1", name="bc-logreg-variance"),
                  {"complete": len(runs), "diverged": 0, "failed": 0, "notes": []})
    header, *rows = text.splitlines()[1:7]
    cells = header.split("  ")
    named = [c.strip() for c in cells if c.strip()]
    assert named[:4] == ["source", "runs", "sd", "variance"]
    for row in rows:  # every column ends where the header's does, and 2 spaces apart
        parts = [p for p in row.split("  ") if p.strip()]
        assert len(parts) == len(named), (header, row)
        assert parts[1].strip() == "4" and row.startswith(("init ", "order ", "augment ", "split ", "all "))
