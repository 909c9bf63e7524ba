"""Per-run facts that are not metrics (issue 24): a returned `info` dict is stored with the run
and exported as runs.csv columns (text read as text), never analysed, and checked with one-line
errors naming the key; the built-in experiment returns its init hash, BatchNorm layers,
precision and data fingerprint this way, under the column names its own layout writes."""

import math

import numpy as np
import pytest

from analysis.contract import COMPLETE, read_table
from study import run_study
from study.experiment import ContractError, finish

SWEEP = '''
import json, os
import numpy as np
from study.seeds import rng


def facts(config, seed):
    return {"optimizer": config["optimizer"], "n_params": 1000 + seed, "early_stopped": seed == 1,
            "layers": "0 2 5", "data_fingerprint": "sha-of-mnist-v2"}


def train(config, seed):
    acc = 0.9 + 0.01 * rng(seed, "init").random() + (0.02 if config["optimizer"] == "adam" else 0.0)
    if config["optimizer"] == "bad":
        return {"val_acc": acc, "info": {"optimizer": ["adam"]}}
    return {"val_acc": acc, "info": facts(config, seed)}


def train_many(config, seeds, report=None):
    return [train(config, s) for s in seeds]


if __name__ == "__main__":
    import sys
    config, seed = {"optimizer": sys.argv[1]}, int(sys.argv[2])
    print(json.dumps({"epoch": 1, "val_acc": 0.5, "info": {"ignored": "in epoch rows"}}))
    print(json.dumps({**train(config, seed), "info": facts(config, seed)}))
'''


def sweep_spec(tmp_path, head: str, arms: str = '[arms.sgd]\n[arms.adam]\noptimizer = "adam"\n'):
    folder = tmp_path / "mnist_optimizer_sweep"
    folder.mkdir(exist_ok=True)
    (folder / "sweep.py").write_text(SWEEP)
    spec = folder / "spec.toml"
    spec.write_text(f'{head}\nname = "optimizers"\nseeds = 3\n[base]\noptimizer = "sgd"\n'
                    f'[analysis]\nmetric = "val_acc"\nbaseline = "sgd"\n{arms}')
    return spec


@pytest.mark.parametrize("how", ["function", "train_many", "command"])
def test_info_is_stored_and_exported_as_columns_never_as_metrics(tmp_path, how):
    head = ('command = "python sweep.py {optimizer} {seed}"' if how == "command"
            else 'experiment = "sweep:train"')
    result = run_study(sweep_spec(tmp_path, head), results=tmp_path / "r", jobs=1,
                       group=3 if how == "train_many" else None)
    assert result.exit_code == 0
    runs = result.runs.set_index(["arm", "seed"])
    assert (runs["status"] == COMPLETE).all() and len(runs) == 6
    cols = list(result.runs.columns)
    # after the metrics, before seedwise's provenance; data_fingerprint fills seedwise's own column
    assert cols[:7] == ["arm", "seed", "status", "val_acc", "optimizer", "n_params", "early_stopped"]
    assert cols[7] == "layers" and cols.count("data_fingerprint") == 1
    assert runs.loc[("adam", 2), "optimizer"] == "adam" and runs.loc[("sgd", 2), "n_params"] == 1002
    assert runs.loc[("sgd", 1), "early_stopped"] and not runs.loc[("sgd", 0), "early_stopped"]
    assert set(runs["layers"]) == {"0 2 5"} and set(runs["data_fingerprint"]) == {"sha-of-mnist-v2"}
    if how == "command":  # an epoch row's info is not a curve
        assert list(result.epochs.columns) == ["arm", "seed", "epoch", "val_acc"]
    # stored with the run, apart from its metrics: the analysis never sees them as metrics
    import optuna

    trials = optuna.load_study(study_name="optimizers", storage=f"sqlite:///{result.path / 'study.db'}").trials
    assert all(set(t.user_attrs["metrics"]) == {"val_acc"} for t in trials)
    assert all(t.user_attrs["info"]["n_params"] == 1000 + t.user_attrs["seed"] for t in trials)


def test_info_names_a_run_cannot_take_and_values_that_are_not_scalars_fail_naming_the_key():
    def check(info, metrics=None):
        with pytest.raises(ContractError) as e:
            finish({**(metrics or {"val_acc": 0.5}), "info": info}, [], 0.0, "cpu")
        assert "\n" not in str(e.value)
        return str(e.value)

    assert "info 'layers' must be a str, int, float or bool" in check({"layers": [0, 2]})
    assert "info 'fp' must be" in check({"fp": None})
    assert "info 'val_acc' is also a metric" in check({"val_acc": "high"})
    assert "info 'seed' is a runs.csv column seedwise writes" in check({"seed": "7"})
    assert "info 'wall_time_s' is a runs.csv column" in check({"wall_time_s": 1.0})
    assert "'info' must be a dict" in check("sgd")
    ok = finish({"val_acc": 0.5, "info": {"n": np.int64(3), "flag": np.bool_(True), "fp": "sha"}}, [], 0.0, "cpu")
    assert ok.info == {"n": 3, "flag": True, "fp": "sha"} and type(ok.info["n"]) is int
    assert ok.metrics == {"val_acc": 0.5}
    diverged = finish({"val_acc": math.nan, "info": {"fp": "sha"}}, [], 0.0, "cpu")
    assert diverged.status == "diverged" and diverged.info == {"fp": "sha"}  # kept: the run is kept


def test_a_bad_info_is_a_failed_run_whose_error_names_the_key(tmp_path):
    spec = sweep_spec(tmp_path, 'experiment = "sweep:train"', '[arms.sgd]\n[arms.bad]\noptimizer = "bad"\n')
    result = run_study(spec, results=tmp_path / "r", jobs=1)
    assert result.exit_code == 1
    runs = result.runs.set_index("arm")
    assert (runs.loc["sgd", "status"] == COMPLETE).all()
    assert all("info 'optimizer' must be a str, int, float or bool" in e for e in runs.loc["bad", "error"])


def test_text_columns_are_read_as_the_text_written(tmp_path):
    path = tmp_path / "runs.csv"
    path.write_text("arm,seed,status,test_acc,bn_layers,init_hash,precision\n"
                    "a,0,complete,50.0,3,0123456789,fp32\nb,0,failed,,,,\n")
    runs = read_table(path)
    assert list(runs["bn_layers"][:1]) == ["3"] and list(runs["init_hash"][:1]) == ["0123456789"]
    assert runs["init_hash"].isna().tolist() == [False, True]  # a failed run's empty cell stays missing
    assert runs["test_acc"].dtype == float


@pytest.mark.slow
def test_the_builtin_experiment_through_the_user_path_writes_the_builtin_layout(tmp_path):
    """The smoke preset on real CIFAR-10, once by the built-in runner and once as a user spec
    naming study.cifar.experiment with --data (read in the run's process): every column of the
    built-in runs.csv is there, its facts and numbers equal, run by run."""
    import json

    from conftest import BUILTIN_RUN_COLUMNS as RUN_COLUMNS
    from conftest import data_source

    from study.cifar.config import preset_config

    src = data_source()
    if src is None:
        pytest.skip("no CIFAR-10 source: set SEEDWISE_DATA (make test does)")
    base = "\n".join(f"{k} = {json.dumps(v)}" for k, v in preset_config("smoke").to_dict().items())
    spec = tmp_path / "cifar_bn_study" / "spec.toml"
    spec.parent.mkdir()
    spec.write_text('experiment = "study.cifar.experiment:train"\nname = "bn-user"\nseeds = 2\n'
                    f'[base]\n{base}\n[analysis]\nmetric = "test_acc"\n[arms.baseline]\n[arms.no_bn]\nbn = "none"\n')
    # one worker of 2 threads as the built-in run had (bf16 sums in another order with another
    # thread count). No --timeout here: it would fork this pytest process, whose torch has run
    # threads in earlier tests, and such a child can hang (a known limit of --timeout through the
    # Python API); tests/test_data_env.py checks --data in forked children without torch.
    user = run_study(spec, results=tmp_path / "u", data=src, jobs=1)
    builtin = run_study(None, preset="smoke", seeds=2, arms=["baseline", "no_bn"], results=tmp_path / "b",
                        data=src, jobs=1)
    assert builtin.exit_code == user.exit_code == 0
    # `group` is written only where seeds trained together (test_builtin_contract runs --group 2)
    missing = set(RUN_COLUMNS) - {"group"} - set(user.runs.columns)
    assert not missing, missing
    b, u = (r.runs.set_index(["arm", "seed"]).sort_index() for r in (builtin, user))
    for column in ("init_hash", "bn_layers", "precision", "data_fingerprint", "n_bn", "config_hash", "test_acc"):
        assert b[column].tolist() == u[column].tolist(), column
    assert set(u["data_source"]) == {f"CIFAR-10 (JPEG copy) from {src}"}


LABELLED = '''
from study.seeds import rng


def train(config, seed):
    acc = 0.9 + 0.01 * rng(seed, "init").random()
    return {"val_acc": acc, "info": {"run_id": f"{seed:04d}", "dataset_sha": "1234567",
                                     "n_params": 1000 + seed, "optimizer": "adam"}}
'''


def test_digit_only_info_text_reads_back_as_the_text_returned(tmp_path):
    """A user's `info` text made of digits (a zero-padded run id, a hash of digits) reads back
    as the text returned, not as a number: study.json records those columns as text. Numbers
    stay numbers, and a study.json without the record reads as before."""
    import json

    folder = tmp_path / "labelled_runs"
    folder.mkdir()
    (folder / "labelled.py").write_text(LABELLED)
    spec = folder / "spec.toml"
    spec.write_text('experiment = "labelled:train"\nname = "labelled"\nseeds = 3\n[base]\nlr = 0.1\n'
                    '[analysis]\nmetric = "val_acc"\nbaseline = "baseline"\n[arms.baseline]\n'
                    '[arms.high_lr]\nlr = 0.3\n')
    result = run_study(spec, results=tmp_path / "r", jobs=1)
    assert result.exit_code == 0
    meta = json.loads((result.path / "study.json").read_text())
    assert meta["text_columns"] == ["run_id", "dataset_sha"]
    runs = read_table(result.path / "runs.csv").set_index(["arm", "seed"])
    assert runs.loc[("high_lr", 2), "run_id"] == "0002"
    assert set(runs["dataset_sha"]) == {"1234567"}
    assert runs.loc[("baseline", 1), "n_params"] == 1001 and runs["n_params"].dtype.kind == "i"
    assert result.runs.loc[0, "run_id"] == "0000"  # the Python API reads the same way
    # a study written before the record: digits read as pandas reads them, as they always did
    del meta["text_columns"]
    (result.path / "study.json").write_text(json.dumps(meta, indent=2) + "\n")
    assert read_table(result.path / "runs.csv")["run_id"].dtype.kind == "i"
