"""How the built-in experiment's runs are stored and exported (its runs.csv / epochs.csv layout).

A `RunResult` becomes one Optuna trial: final test accuracy as the value, per-epoch validation
accuracy as intermediate values, metrics, LR schedule, stream seeds and init hash as user
attributes, the test predictions as an artifact. The columns are those of every committed
study, so the analysis and the paper read old and new studies alike.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import pandas as pd

from analysis.contract import COMPLETE, FAILED
from study.store import with_seed_columns

if TYPE_CHECKING:
    import optuna

    from study.cifar.train import RunResult
    from study.store import RunStore

RUN_COLUMNS = ["arm", "seed", "status", "test_acc", "val_acc", "train_acc", "train_loss", "epochs_run",
               "diverged_epoch", "n_bn", "bn_layers", "lr_final", "wall_time_s", "device", "precision",
               "threads", "group", "config_hash", "init_hash", "data_fingerprint", "git_commit", "trial_number", "error"]
EPOCH_COLUMNS = ["arm", "seed", "epoch", "lr", "train_loss", "train_acc", "val_acc", "test_acc", "train_seconds"]


def record_run(store: RunStore, arm: str, seed: int, result: RunResult, attrs: dict[str, Any]) -> None:
    """Store one run of the built-in experiment."""
    run = {
        "status": result.status, "test_acc": result.test_acc, "val_acc": result.val_acc,
        "diverged_epoch": result.diverged_epoch,
        "epochs": [asdict(e) for e in result.epochs],
        "lr_schedule": [e.lr for e in result.epochs],
        "streams": result.streams, "init_hash": result.init_hash, "bn_layers": list(result.bn_layers),
        "n_bn": result.n_bn, "device": result.device, "precision": result.precision,
        "threads": result.threads, "wall_time_s": round(result.wall_time_s, 3),
        "group": list(result.group), "compiled": result.compiled,
    }
    intermediate = {e.epoch: e.val_acc for e in result.epochs if e.val_acc is not None}
    complete = result.status == COMPLETE
    store.add_run(complete, result.test_acc if complete else None, arm, seed, {**run, **attrs}, intermediate,
                  result.test_predictions)


def tables(trials: list[optuna.trial.FrozenTrial]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """runs.csv / epochs.csv of the built-in experiment (trials in number order)."""
    runs, epochs = [], []
    for t in trials:
        a = t.user_attrs
        ep = a.get("epochs", [])
        last = ep[-1] if ep else {}
        runs.append({
            "arm": a["arm"], "seed": a["seed"], "status": a.get("status", FAILED),
            "test_acc": a.get("test_acc"), "val_acc": a.get("val_acc"),
            "train_acc": last.get("train_acc"), "train_loss": last.get("train_loss"),
            "epochs_run": len(ep), "diverged_epoch": a.get("diverged_epoch"), "n_bn": a.get("n_bn"),
            "bn_layers": " ".join(map(str, a.get("bn_layers", []))), "lr_final": last.get("lr"),
            "wall_time_s": a.get("wall_time_s"), "device": a.get("device"), "precision": a.get("precision"),
            "threads": a.get("threads"), "group": " ".join(map(str, a.get("group", []))),
            "config_hash": a.get("config_hash"), "init_hash": a.get("init_hash"),
            "data_fingerprint": a.get("data_fingerprint"), "git_commit": a.get("git_commit"),
            "trial_number": t.number, "error": a.get("error"),
        })
        for e in ep:
            epochs.append({"arm": a["arm"], "seed": a["seed"], **{k: e.get(k) for k in EPOCH_COLUMNS[2:]}})
    runs_df = pd.DataFrame(runs, columns=with_seed_columns(runs, trials, RUN_COLUMNS))
    epochs_df = pd.DataFrame(epochs, columns=EPOCH_COLUMNS)
    for df in (runs_df, epochs_df):  # NaN is a float: keep "not measured" out of accuracy columns
        for col in ("test_acc", "val_acc"):
            df[col] = df[col].map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else v)
    return runs_df, epochs_df
