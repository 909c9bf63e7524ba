"""The run store: one Optuna trial per (arm, seed) run, in an RDB storage (SQLite by default).

`arm` is the trial's one parameter (it is the factor the ablation varies); the seed is a user
attribute, beside the metrics, LR schedule and provenance: a seed is a replicate, not a setting
to tune, and as a parameter optuna-dashboard ranked it as the most "important hyperparameter"
(it explains the spread of single runs) and printed it in the "Best Trial" card. The final
metric is the trial's value (the dashboard's history and the trials table need one), per-epoch
validation accuracy its intermediate values; the per-example test predictions are an Optuna
artifact. Any number of workers can share one study. `runs.csv` / `epochs.csv` are tidy
exports of the same data, read from the user attributes only, so studies stored before the
seed left the parameters (`arm` and `seed` both parameters) read, and resume, the same way.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import logging
import math
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
import pandas as pd
from filelock import FileLock
from optuna.artifacts import ArtifactMeta, FileSystemArtifactStore
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from analysis.contract import (  # noqa: F401 (redact, trial_predictions re-exported)
    ABLATION_KIND,
    COMPLETE,
    DIVERGED,
    FAILED,
    PREDICTIONS_FILE,
    default_storage,
    redact,
    trial_predictions,
    with_text_columns,
)
from study.experiment import GROUP_COLUMN, USER_RUN_COLUMNS
from study.seeds import STREAMS, seed_columns

if TYPE_CHECKING:
    from study.experiment import Outcome

# Longer than any schema creation or migration takes, short enough that a stuck lock (a
# process frozen while holding it) ends in an error that names the lock file.
SQLITE_OPEN_LOCK_S = 120


def quiet_optuna(level: int = logging.WARNING) -> None:
    """Optuna logs every study it creates and every trial at INFO; the commands print their own
    one-line progress instead. Called where a command starts, never on import: a program that
    imports seedwise keeps its own logging settings. Never lowers a stricter level."""
    if optuna.logging.get_verbosity() < level:
        optuna.logging.set_verbosity(level)


class StoreError(RuntimeError):
    """The storage cannot be used (unreachable, not a database, or holds a different study)."""


def sqlite_file(url: str) -> Path | None:
    """The database file of a `sqlite:///` URL (None for a server database or an in-memory one)."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


@contextlib.contextmanager
def opening_lock(url: str):
    """Serialise opening a SQLite storage across processes.

    Optuna creates its tables (and stamps the Alembic version) when a storage is first opened,
    outside one transaction; workers started together on a new SQLite file race there and the
    loser fails with "table studies already exists" or a unique-key error. A lock file next to
    the database makes the second worker wait until the first has finished, then open an
    existing schema. Server databases (PostgreSQL) keep the retry in RunStore / open_storage.
    """
    path = sqlite_file(url)
    # A database that exists without a lock file beside it was not made by seedwise's locked
    # creation (a copy, a checkout): its schema is complete, so there is no race to serialise,
    # and a resume leaves no new file in the study's folder.
    if path is None or (path.exists() and not Path(f"{path}.lock").exists()):
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(f"{path}.lock", timeout=SQLITE_OPEN_LOCK_S)
    try:
        lock.acquire()
    except TimeoutError:
        raise StoreError(f"{path}.lock was held for over {SQLITE_OPEN_LOCK_S} s while opening {path}; "
                         f"if no seedwise process is running, delete the lock file") from None
    try:
        yield
    finally:
        lock.release()


class RunStore:
    def __init__(self, results_dir: Path, study_name: str, identity: str, arm_names: tuple[str, ...],
                 description: dict[str, Any], storage: str | None = None, direction: str = "maximize"):
        self.results_dir = Path(results_dir)
        self.url = storage or default_storage(self.results_dir)
        try:  # a malformed URL is bad input: nothing created for it
            make_url(self.url)
        except Exception:  # sqlalchemy's ArgumentError, or a ValueError from a bad port
            raise StoreError(f"--storage {redact(self.url)!r} is not a database URL; use e.g. "
                             "sqlite:///path/study.db or postgresql://user@host/db") from None
        try:  # before the storage is opened: an unwritable results directory changes nothing
            (self.results_dir / "artifacts").mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create the results directory {self.results_dir}: {e.strerror}") from None
        self.study_name, self.identity, self.direction = study_name, identity, direction
        # Only `arm`: a trial without a parameter an older trial of the study had (`seed`) is
        # accepted by Optuna, so a study stored with both keeps resuming.
        self.distributions: dict[str, BaseDistribution] = {"arm": CategoricalDistribution(arm_names)}
        for attempt in range(5):
            try:
                with opening_lock(self.url):
                    stored = self._open(study_name, identity, description)
                break
            except StoreError:
                raise
            except Exception as e:  # sqlalchemy/optuna raise many types for a bad URL or file
                first_line = str(e).splitlines()[0] if str(e) else ""
                # On a server database, workers started together race to create the schema and
                # the study's attributes; the loser sees a unique-key violation (or a lock held past
                # its timeout) and simply reads what the winner wrote. SQLite is serialised by
                # `opening_lock` instead.
                if ("IntegrityError" in type(e).__name__ + repr(e) or "database is locked" in str(e)) and attempt < 4:
                    time.sleep(0.2 * (attempt + 1))
                    continue
                raise StoreError(f"cannot open storage {redact(self.url)}: {type(e).__name__}: {first_line}") from None
        if stored is not None and stored != identity:
            raise StoreError(
                f"study {study_name!r} in {redact(self.url)} was made from a different spec, preset or --set "
                f"(identity {stored} != {identity}); nothing was changed. Use --study NEW_NAME for a new study, "
                f"or rerun with the spec and options that made it (see {self.results_dir / 'study.json'})")
        self.artifacts = FileSystemArtifactStore(str(self.results_dir / "artifacts"))

    def _open(self, study_name: str, identity: str, description: dict[str, Any]) -> str | None:
        """Open (or create) the storage and the study; tag a new study. Returns the identity
        the study had before (None if this call created it)."""
        self.storage = optuna.storages.RDBStorage(self.url)
        self.study = optuna.create_study(storage=self.storage, study_name=study_name,
                                         direction=self.direction, load_if_exists=True)  # type: ignore[arg-type]  # a DIRECTIONS value
        stored = self.study.user_attrs.get("identity")
        if stored is None:
            if not self.study.get_trials(deepcopy=False):  # new: done marks of a deleted namesake are stale
                claims = self.claims()
                claims.forget_done()
                claims.close()
            self.study.set_user_attr("identity", identity)
            self.study.set_user_attr("kind", ABLATION_KIND)
            for key, value in description.items():
                self.study.set_user_attr(key, value)
        return stored

    def claims(self):
        """Atomic (arm, seed) claims in this study's database (see study.claims)."""
        from study.claims import Claims

        return Claims(self.storage.engine, self.study_name)

    def trials(self) -> list[optuna.trial.FrozenTrial]:
        return [t for t in self.study.get_trials(deepcopy=False) if "arm" in t.user_attrs]

    def done(self) -> set[tuple[str, int]]:
        """Runs that need no rerun: complete, or diverged (a deterministic outcome of the
        recipe, not an accident). Failed runs (exceptions) are retried on the next call."""
        return {(t.user_attrs["arm"], t.user_attrs["seed"]) for t in self.trials()
                if t.state == TrialState.COMPLETE or t.user_attrs.get("status") == DIVERGED}

    def _add(self, state: TrialState, value: float | None, arm: str, seed: int, attrs: dict[str, Any],
             intermediate: dict[int, float], system_attrs: dict[str, Any]) -> None:
        # A run with a seed per stream (study.seeds.RunSeeds) keeps them: runs.csv's seed columns.
        trial = optuna.trial.create_trial(
            state=state, value=value, params={"arm": arm}, distributions=self.distributions,
            user_attrs={"arm": arm, "seed": int(seed), **seed_columns(seed), **attrs}, system_attrs=system_attrs,
            intermediate_values=intermediate)
        # A trial is stored once finished, so give it the run's real start and end: the
        # dashboard's timeline and durations show the training, not a 0 ms insert.
        finished = datetime.datetime.now()
        trial.datetime_complete = finished
        trial.datetime_start = finished - datetime.timedelta(seconds=float(attrs.get("wall_time_s") or 0.0))
        # One INSERT of a finished trial: a crash can lose the run being recorded, never half of it.
        self.study.add_trial(trial)

    def _write_predictions(self, predictions: np.ndarray | None) -> tuple[dict[str, Any], str | None]:
        """Store a run's predictions as an Optuna artifact: (its system attrs, artifact id)."""
        if predictions is None:
            return {}, None
        buf = io.BytesIO()
        np.save(buf, predictions, allow_pickle=False)
        buf.seek(0)
        meta = ArtifactMeta(artifact_id=str(uuid.uuid4()), filename=PREDICTIONS_FILE,
                            mimetype="application/octet-stream", encoding=None)
        try:
            self.artifacts.write(meta.artifact_id, buf)
        except OSError:  # disk full, quota, I/O error: leave no partial artifact behind
            self._remove_artifact(meta.artifact_id)
            raise
        # The key format optuna.artifacts.upload_artifact uses, so the dashboard lists it.
        return {"artifacts:" + meta.artifact_id: json.dumps(asdict(meta))}, meta.artifact_id

    def add_run(self, complete: bool, value: float | None, arm: str, seed: int, attrs: dict[str, Any],
                intermediate: dict[int, float], predictions: np.ndarray | None) -> None:
        """Store one finished run (complete, or diverged: `complete=False`) with its predictions."""
        system_attrs, artifact_id = self._write_predictions(predictions)
        try:
            self._add(TrialState.COMPLETE if complete else TrialState.FAIL, value, arm, seed, attrs, intermediate,
                      system_attrs)
        except BaseException:  # the trial was not stored: its predictions file would be an orphan
            if artifact_id:
                self._remove_artifact(artifact_id)
            raise

    def record_outcome(self, arm: str, seed: int, outcome: Outcome, attrs: dict[str, Any], metric: str) -> None:
        """Store one run: the trial's value is the analysis metric, its
        intermediate values that metric's per-epoch rows (when the experiment reports it)."""
        run = {"status": outcome.status, "metrics": outcome.metrics, "epochs": outcome.epochs,
               "diverged_epoch": outcome.diverged_epoch, "device": outcome.device, "threads": outcome.threads,
               "wall_time_s": round(outcome.wall_time_s, 3), "log": outcome.log, **outcome.code}
        if outcome.group:  # trained together with other seeds: they share its wall time
            run["group"] = list(outcome.group)
        if outcome.info:
            run["info"] = outcome.info
        intermediate = {e["epoch"]: e[metric] for e in outcome.epochs
                        if metric in e and math.isfinite(e[metric])}
        complete = outcome.status == COMPLETE
        # Each info fact also as a trial attribute of its own (the report reads `data_source`
        # there); seedwise's own attributes win a name they share.
        self.add_run(complete, outcome.metrics[metric] if complete else None, arm, seed,
                     {**outcome.info, **run, **attrs}, intermediate, outcome.predictions)

    def _remove_artifact(self, artifact_id: str) -> None:
        path = self.results_dir / "artifacts" / artifact_id  # where FileSystemArtifactStore puts it
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)

    def record_failure(self, arm: str, seed: int, error: str, traceback: str, attrs: dict[str, Any]) -> None:
        self._add(TrialState.FAIL, None, arm, seed,
                  {"status": FAILED, "error": error, "traceback": traceback[-8000:], **attrs}, {}, {})

    def predictions(self, trial: optuna.trial.FrozenTrial) -> np.ndarray | None:
        return trial_predictions(self.artifacts, trial)

    def tables(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Tidy tables: one row per run, one row per run-epoch. Failed runs are kept."""
        return user_tables(sorted(self.trials(), key=lambda t: t.number))

    def export(self, tables: tuple[pd.DataFrame, pd.DataFrame] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Write runs.csv and epochs.csv (from `tables`, else freshly read); return them."""
        runs_df, epochs_df = tables if tables is not None else self.tables()
        for df, name in ((runs_df, "runs.csv"), (epochs_df, "epochs.csv")):
            write_if_changed(self.results_dir / name, df.to_csv(index=False).encode())
        meta = self.results_dir / "study.json"  # which columns are text read_table must not parse
        if meta.is_file() and (found := json.loads(meta.read_text())) != (
                described := with_text_columns(found, runs_df)):  # else left byte for byte
            write_if_changed(meta, (json.dumps(described, indent=2) + "\n").encode())
        return runs_df, epochs_df


def write_if_changed(path: Path, data: bytes) -> bool:
    """Write `data` to `path` unless the file already holds exactly it (a rerun that changes
    nothing leaves every file, and its mtime, as it was). Written aside, then renamed: a full
    disk or a kill leaves the previous file, never half of one. Returns whether it wrote."""
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return True


SEED_COLUMNS = [f"{name}_seed" for name in STREAMS]  # only in studies whose runs had a seed per stream


def with_seed_columns(runs: list[dict[str, Any]], trials: list[optuna.trial.FrozenTrial],
                      columns: list[str]) -> list[str]:
    """Add the per-stream seed columns to `runs` (rows of `trials`) when any run has them;
    return the column order. Other studies' runs.csv keep exactly the columns they had."""
    if not any(SEED_COLUMNS[0] in t.user_attrs for t in trials):
        return columns
    for row, t in zip(runs, trials, strict=True):
        row.update({c: t.user_attrs.get(c) for c in SEED_COLUMNS})
    return [*columns, *SEED_COLUMNS]


def user_tables(trials: list[optuna.trial.FrozenTrial]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """runs.csv / epochs.csv: the experiment's own metrics as columns, in the order the
    runs first returned them, then its `info` facts (one column each, in the same order),
    between the run's identity and its provenance. An `info` fact may fill a provenance column
    seedwise leaves to the experiment (`data_fingerprint`): it stays where that column is."""
    runs, epochs, metric_names, info_names, epoch_names = [], [], {}, {}, {}
    for t in trials:
        a = t.user_attrs
        metrics = a.get("metrics") or {}
        info = a.get("info") or {}
        metric_names.update(dict.fromkeys(metrics))
        info_names.update(dict.fromkeys(k for k in info if k not in USER_RUN_COLUMNS))
        ep = a.get("epochs") or []
        runs.append({"arm": a["arm"], "seed": a["seed"], "status": a.get("status", FAILED), **metrics,
                     "epochs_run": len(ep), "trial_number": t.number,
                     **{k: a.get(k) for k in USER_RUN_COLUMNS if k not in ("epochs_run", "trial_number")},
                     **info, GROUP_COLUMN: " ".join(map(str, a.get("group") or ()))})
        for row in ep:
            epoch_names.update(dict.fromkeys(k for k in row if k != "epoch"))
            epochs.append({"arm": a["arm"], "seed": a["seed"], **row})
    # Every run records who trained with it (empty: alone): what analysis.stats.variance needs to take
    # a CPU study's runs as bit-deterministic, and what the built-in layout always wrote.
    grouped = [GROUP_COLUMN]
    info_columns = [k for k in info_names if k not in metric_names]
    columns = with_seed_columns(runs, trials, ["arm", "seed", "status", *metric_names, *info_columns,
                                               *USER_RUN_COLUMNS, *grouped])
    runs_df = pd.DataFrame(runs, columns=columns)
    epochs_df = pd.DataFrame(epochs, columns=["arm", "seed", "epoch", *epoch_names])
    return runs_df, epochs_df
