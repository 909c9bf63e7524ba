"""The built-in experiment in the tuner: `make_objective` (validation accuracy; the test set is
never read), what `study.tune` calls for the default spec. The runner trains it through the
user's contract (study.cifar.experiment), as any experiment.
"""

from __future__ import annotations

import dataclasses
import traceback
from typing import Any

import optuna

from analysis.contract import DIVERGED, FAILED
from study.claims import worker_id


def make_objective(config, data, space: dict[str, Any], device: str | None = None):
    """The tuning objective: train `config` with the trial's params on a tuning seed and return
    the last epoch's validation accuracy. The test set is never scored (nor read).

    Validation accuracy is reported each epoch so the pruner can stop hopeless trials; a
    diverged run (NaN loss, typically lr near 1) is pruned with user attr status="diverged",
    so it never crashes the study and TPE learns to avoid that region."""
    from study.cifar.train import train_one
    from study.search import TUNE_SEED_OFFSET, suggest

    def objective(trial: optuna.trial.BaseTrial) -> float:
        params = suggest(trial, space)
        cfg = dataclasses.replace(config, **params)  # validated by Config.__post_init__
        seed = TUNE_SEED_OFFSET + trial.number
        trial.set_user_attr("seed", seed)
        trial.set_user_attr("worker", worker_id())  # lets a rerun on this host fail it at once if we die
        trial.set_user_attr("config_hash", cfg.hash())

        def on_epoch(rec) -> None:
            trial.report(rec.val_acc, rec.epoch)
            # Pruning after the last epoch would throw away a finished result: only prune before.
            if rec.epoch < cfg.epochs and trial.should_prune():
                trial.set_user_attr("status", "pruned")
                raise optuna.TrialPruned(f"pruned after epoch {rec.epoch} (val {rec.val_acc:.2f}%)")

        try:
            result = train_one(cfg.for_run(seed), seed, data, device=device, on_epoch=on_epoch, score_test=False)
        except optuna.TrialPruned:
            raise
        except Exception as e:  # recorded on the trial, then Optuna marks it FAIL
            trial.set_user_attr("status", FAILED)
            trial.set_user_attr("error", f"{type(e).__name__}: {e}")
            trial.set_user_attr("traceback", traceback.format_exc()[-8000:])
            raise
        except KeyboardInterrupt:  # Ctrl-C / SIGTERM: Optuna fails the trial; say why
            trial.set_user_attr("status", "interrupted")
            raise
        trial.set_user_attr("status", result.status)
        trial.set_user_attr("wall_time_s", round(result.wall_time_s, 3))
        trial.set_user_attr("lr_schedule", [e.lr for e in result.epochs])
        if result.status == DIVERGED:
            trial.set_user_attr("diverged_epoch", result.diverged_epoch)
            raise optuna.TrialPruned(f"diverged (non-finite loss) in epoch {result.diverged_epoch}")
        return result.val_acc  # type: ignore[return-value]  # None: optuna fails the trial

    return objective
