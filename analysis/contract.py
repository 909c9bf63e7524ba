"""The files a study leaves behind, as both packages read them: the torch-free seam.

`study` writes a study folder (study.json, runs.csv, epochs.csv, study.db with predictions as
Optuna artifacts, test_labels.npy); `analysis` reads it. The few rules both sides must agree
on live here, so that `analysis` never imports `study` (nor torch) and `study` never restates
them: how a config is hashed, how a storage URL is shown, where a run's predictions are.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

PREDICTIONS_FILE = "test_predictions.npy"  # one uint8 class per test example, per run
SEQUENTIAL_FILE = "sequential.json"  # a study run until decided: plan, deviations, every look

# study.json's "analysis" object. Required keys (with these defaults when absent) ...
ANALYSIS_DEFAULTS = {"metric": "test_acc", "baseline": "baseline", "alpha": 0.05, "margin": 0.5}
# ... and optional ones: "direction" (one of DIRECTIONS; absent: "maximize", or "minimize"
# for a metric named like a loss/error), "chance" (float, the metric's value for a model that
# learned nothing, in the metric's units) and "failures" (one of FAILURE_POPULATIONS: does the
# mean comparison use all runs, failures scored, or only the runs that learned; default "all").
DIRECTIONS = ("maximize", "minimize")
FAILURE_POPULATIONS = ("all", "learned")


def config_hash(config: Mapping[str, Any]) -> str:
    """The hash of a resolved config given as a dict (as stored in study.json and in every run)."""
    return hashlib.sha256(json.dumps(dict(config), sort_keys=True).encode()).hexdigest()[:12]


def redact(url: str) -> str:
    """A storage URL safe to print: the password, if any, replaced by ***."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1] if "@" in url else url


def trial_predictions(artifacts, trial) -> np.ndarray | None:
    """The run's per-example test predictions (uint8 classes) from an Optuna
    `FileSystemArtifactStore`, or None if the trial stored none."""
    for key, value in trial.system_attrs.items():
        if key.startswith("artifacts:"):
            meta = json.loads(value)
            if meta["filename"] == PREDICTIONS_FILE:
                with artifacts.open_reader(meta["artifact_id"]) as f:
                    return np.load(io.BytesIO(f.read()), allow_pickle=False)  # never unpickle
    return None
