"""The files a study leaves behind, as both packages read them: the torch-free seam.

`study` writes a study folder (study.json, runs.csv, epochs.csv, study.db with predictions as
Optuna artifacts, test_labels.npy); `analysis` reads it. The few rules both sides must agree
on live here, so that `analysis` never imports `study` (nor torch) and `study` never restates
them: what studies and their files are called, a run's statuses, how a config is hashed, how
a storage URL is shown, where a run's predictions are.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


# ---- a study's files, in results/<study>/ ----------------------------------------------------
DB_FILE = "study.db"  # the default Optuna storage: every run (and tuning trial) of the study
PREDICTIONS_FILE = "test_predictions.npy"  # one uint8 class per test example, per run
SEQUENTIAL_FILE = "sequential.json"  # a study run until decided: plan, deviations, every look

# ---- study names ------------------------------------------------------------------------------
# The Optuna study's user attr "kind" says what a study in a shared storage is.
ABLATION_KIND = "seedwise-ablation"  # arms x seeds, one trial per run (study.run)
TUNING_KIND = "seedwise-tuning"  # the tuning of one arm (study.tune --trials)
TUNED_SUFFIX = "-tuned"  # the confirmation of tuned params on fresh seeds (study.tune --confirm)
# A variance study's sources of randomness, each a runs.csv column `<source>_seed` (study.variance
# writes them, analysis.stats.variance reads them).
SOURCES = ("init", "order", "augment", "split")


def seed_column(source: str) -> str:
    return f"{source}_seed"


# ---- shared randomness ---------------------------------------------------------------------------
# study.json "seed_streams": the seed streams (study.seeds) an experiment declares it draws from,
# each with what it draws, in the words the report uses. Only a declared stream lets the report
# say that runs with the same seed share it; a user experiment declares them in its spec
# (`seed_streams = ["order", "init"]`), the built-in experiment always draws these three.
STREAM_WORDS = {"order": "data order", "augment": "per-step random draws (augmentation, dropout)",
                "init": "(where shapes match) initial weights", "split": "validation split"}
BUILTIN_SEED_STREAMS = {"order": "data order", "augment": "flips",
                        "init": "(where shapes match) initial weights"}


def seed_streams(meta: Mapping[str, Any]) -> dict[str, str]:
    """The seed streams study.json `meta` declares, stream -> what it draws: what runs with the
    same seed share. Empty when nothing is declared: the runs are paired by seed, but whether
    they share randomness is the experiment's business. (A study.json written before seedwise
    recorded the key gains it with ``python -m study.migrate``, which knows the experiment.)"""
    declared = meta.get("seed_streams")
    if isinstance(declared, dict):
        return {str(k): str(v) for k, v in declared.items()}
    return {}


def shared_text(streams: Mapping[str, str]) -> str | None:
    """``data order, flips and (where shapes match) initial weights``; None for no streams."""
    words = list(streams.values())
    if not words:
        return None
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def declared_streams(names) -> dict[str, str]:
    """study.json's "seed_streams" for the stream `names` a spec declares, in `STREAM_WORDS`' order."""
    return {name: words for name, words in STREAM_WORDS.items() if name in set(names)}
PER_ARM_SUFFIX = TUNED_SUFFIX + "-per-arm"  # several arms, each at its own tuned params
PER_ARM_FILE = "per_arm.json"  # in that study's folder: which trial's params each arm got

# ---- a run's status (runs.csv "status", the trial's user attr "status") -------------------
COMPLETE = "complete"  # trained to the end; its metrics are recorded
DIVERGED = "diverged"  # a non-finite metric: an outcome of the recipe, not retried
FAILED = "failed"  # an exception (or not stored): retried by the next invocation
PRUNED = "pruned"  # a tuning trial stopped early by the pruner
INTERRUPTED = "interrupted"  # a tuning trial whose process was stopped or killed

# study.json's "analysis" object. Required keys (with these defaults when absent) ...
ANALYSIS_DEFAULTS = {"metric": "test_acc", "baseline": "baseline", "alpha": 0.05, "margin": 0.5}
# ... and optional ones, present only when declared: "direction" (one of DIRECTIONS; absent:
# what the metric's name says, `analysis.stats.direction`), "chance" (float, the metric's value for a
# model that learned nothing, in the metric's units), "failures" (one of FAILURE_POPULATIONS:
# does the mean comparison use all runs, failures scored, or only the runs that learned;
# default "all") and "metrics" ({other metric: its declared METRIC_KEYS}, for --metric X).
DIRECTIONS = ("maximize", "minimize")
METRIC_KEYS = ("direction", "margin", "chance")  # what may be declared per metric
FAILURE_POPULATIONS = ("all", "learned")


# ---- reading a study's tables ---------------------------------------------------------------
# Columns that hold names, read as the text written: an arm, task or metric called "None",
# "NA", "null" or "nan" is a name TOML allows, which pandas would otherwise read as missing.
NAME_COLUMNS = ("arm", "baseline", "metric", "task")
# Columns of text facts about a run (hashes, the layer list, the precision, the seeds trained
# with it in one step; the built-in experiment returns several as `info`): read as text, so a
# hash of digits or one layer index stays the text written, while an empty cell (a failed run,
# a run trained alone) stays missing.
TEXT_COLUMNS = ("init_hash", "bn_layers", "precision", "data_fingerprint", "data_source", "config_hash",
                "git_commit", "code_hash", "user_git_commit", "group")


# study.json "text_columns": the runs.csv columns that hold text pandas would read back as
# numbers (a user's `info` fact "0042" or a digit-only hash), recorded when runs.csv is written.
# Absent in studies written before it, and when no column needs it.
TEXT_COLUMNS_KEY = "text_columns"


def numeric_looking_text(table) -> list[str]:
    """The columns of `table` (a runs table about to be written) whose values are all text
    (missing aside) that `pd.read_csv` would read as numbers, e.g. ``"0042"``: what study.json
    records under TEXT_COLUMNS_KEY. The columns read as text anyway are left out."""
    import pandas as pd

    out = []
    for column in table.columns:
        if column in NAME_COLUMNS or column in TEXT_COLUMNS:
            continue
        values = table[column].dropna()
        if not len(values) or not all(isinstance(v, str) for v in values):
            continue
        # Written and read back as read_table would without the record: misread unless text.
        back = pd.read_csv(io.StringIO(values.to_frame().to_csv(index=False)))
        if back.iloc[:, 0].dtype.kind in "biuf":  # bool, int or float: not the text written
            out.append(str(column))
    return out


def with_text_columns(meta: Mapping[str, Any], table) -> dict[str, Any]:
    """study.json `meta` recording `table`'s `numeric_looking_text` columns (the key removed
    when there are none, so that other studies' study.json stays as it was)."""
    out = {k: v for k, v in meta.items() if k != TEXT_COLUMNS_KEY}
    text = numeric_looking_text(table)
    return {**out, TEXT_COLUMNS_KEY: text} if text else out


def recorded_text_columns(path: Path) -> tuple[str, ...]:
    """The text columns the study.json beside the table `path` records (none without one)."""
    meta = path.parent / "study.json"
    try:
        declared = json.loads(meta.read_text()).get(TEXT_COLUMNS_KEY) if meta.is_file() else None
    except (OSError, ValueError, AttributeError):  # an unreadable study.json is load_study's to say
        return ()
    return tuple(str(c) for c in declared) if isinstance(declared, list) else ()


def read_table(path: str | Path):
    """A study's CSV (runs.csv, epochs.csv, a user's runs table) as a DataFrame: name columns
    (NAME_COLUMNS) as strings with no missing-value guessing, text columns (TEXT_COLUMNS, and
    those the study.json beside it records as text) as strings with empty cells missing, every
    other column as pandas reads it (an empty or "nan" metric is still NaN). Read again for
    those columns, so only public pandas options are needed."""
    import pandas as pd

    table = pd.read_csv(path)
    text_columns = (*TEXT_COLUMNS, *recorded_text_columns(Path(path)))
    for columns, keep_na in ((NAME_COLUMNS, False), (text_columns, True)):
        present = [c for c in columns if c in table.columns]
        if present:
            text = pd.read_csv(path, usecols=present, dtype=str, keep_default_na=keep_na)
            table[present] = text[present]
    return table


def default_storage(results_dir: str | Path) -> str:
    """The storage URL of a study whose --storage was not given: its own SQLite file."""
    return f"sqlite:///{Path(results_dir) / DB_FILE}"


def tuning_study_name(ablation_study: str, arm: str) -> str:
    """The Optuna study that tunes `arm`, beside its ablation study in the same storage."""
    return f"{ablation_study}-tune-{arm}"


def confirm_study_name(ablation_study: str, arm: str | None = None) -> str:
    """The study confirming the tuned params of `arm` on fresh seeds (None: the baseline's)."""
    return ablation_study + TUNED_SUFFIX + ("" if arm is None else f"-{arm}")


def per_arm_study_name(ablation_study: str) -> str:
    """The study comparing several arms, each at its own tuned params, on fresh seeds
    (`study.tune --arm A,B,... --confirm N`)."""
    return ablation_study + PER_ARM_SUFFIX


def stable_hash(value: Any, length: int = 12) -> str:
    """A short hex digest of a JSON-able value, independent of dict order: the one hash behind
    config hashes, study identities and names."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:length]


def config_hash(config: Mapping[str, Any]) -> str:
    """The hash of a resolved config given as a dict (as stored in study.json and in every run)."""
    return stable_hash(dict(config))


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
    import numpy as np  # here, not above: the seam is imported to parse options, where numpy is not needed

    for key, value in trial.system_attrs.items():
        if key.startswith("artifacts:"):
            meta = json.loads(value)
            if meta["filename"] == PREDICTIONS_FILE:
                with artifacts.open_reader(meta["artifact_id"]) as f:
                    return np.load(io.BytesIO(f.read()), allow_pickle=False)  # never unpickle
    return None
