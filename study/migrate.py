"""`python -m study.migrate RESULTS/STUDY`: make a stored ablation study's seed an attribute only,
and record in its study.json the seed streams its experiment drew.

Studies stored before the seed left the trial parameters (see study.store) have `arm` and
`seed` as parameters, so optuna-dashboard ranks `seed` as a "hyperparameter" and prints it in
the Best Trial card. They read and resume as they are; this migration is for their dashboard.
It deletes the `seed` rows of the ablation study's trial parameters, in one transaction, and
nothing else: each trial keeps its number, value, user attributes (the seed among them, which
is what every reader uses), artifacts, note and figures, and the study its identity. Before
deleting, it checks that the study is a seedwise ablation (a tuning study's parameters are a
real search space and are never touched) and that every stored `seed` parameter equals the
trial's `seed` attribute, so nothing is lost. Running it again changes nothing.

A study.json written by the built-in experiment before seedwise recorded `seed_streams` gains
the streams that experiment always drew (`BUILTIN_SEED_STREAMS`), so its report may say what
runs with the same seed share: the analysis reads only what study.json declares. The key is
not part of the study's identity (that hash is of the spec's resolved configurations), so the
study resumes as before; a user experiment's study.json (it names its `experiment`) is left
alone, as is one that already records the key.

A study of the built-in experiment recorded before it ran through the user's contract (its
study.json names no `experiment`; its trials hold test_acc, val_acc, n_bn, ... as attributes of
their own) is rewritten in the contract's layout (`contract_layout`): each trial gains the
`metrics`, `info` and per-epoch rows the runner now stores, its study the identity its spec now
has (the old hash plus the experiment's name, checked against the old one first), and runs.csv
/ epochs.csv are exported again from the rewritten trials. Every number is copied, none
recomputed; the attributes it had stay. `python -m study.run` on such a study says to run this.

    python -m study.migrate results/my-study             # the study of results/my-study
    python -m study.migrate results/my-study --dry-run   # say what it would delete

Exit status: 0 migrated (or nothing to do), 2 bad input or a check failed. Every check of every
step runs before the first change, so a refusal changes nothing. A file that cannot be written
(runs.csv, study.json) is named in the error; the database may then be migrated already, and
running the migration again finishes it: study.json, which marks a study migrated, is written last.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis.contract import (
    ABLATION_KIND,
    BUILTIN_SEED_STREAMS,
    DB_FILE,
    default_storage,
    redact,
    stable_hash,
)
from study.spec import BUILTIN_EXPERIMENT  # what studies recorded without an `experiment` ran

SEED = "seed"
# The built-in layout's final numbers, as the contract's `metrics` (study.cifar.experiment.as_returned)
METRIC_ATTRS = ("test_acc", "val_acc")  # attributes of their own; train_acc, train_loss, lr_final: the last epoch's
INFO_ATTRS = ("init_hash", "bn_layers", "precision", "data_fingerprint", "data_source")


class MigrationError(RuntimeError):
    """The study cannot be migrated as asked; nothing was changed."""


@dataclass(frozen=True)
class SeedMigration:
    """What `seed_to_attribute` found and did."""

    study: str
    trials: int  # the study's trials
    with_seed_param: int  # of them, with a `seed` parameter before
    deleted: int  # parameter rows deleted (0 on a dry run)


def storage_of(target: str) -> str:
    """The storage of a study folder (its study.json's URL, else its study.db) or a URL as
    given. A relative SQLite path is tried beside the folder's results root first, then from the
    working directory: a copy of results/ migrates its own database, never the checkout's. A
    SQLite file that does not exist is an error: opening it would create an empty database."""
    if "://" in target:
        url = target
    else:
        folder = Path(target)
        url = str((read_meta(folder / "study.json") or {}).get("storage", ""))
        if url.startswith("sqlite:///"):
            path = Path(url[len("sqlite:///"):])
            found = [p for p in ((path,) if path.is_absolute() else (folder.parent.parent / path, path))
                     if p.exists()]
            url = f"sqlite:///{found[0]}" if found else ""
        if not url or "***" in url:
            url = default_storage(folder)
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists():
        raise ValueError(f"{target!r}: no database at {url} (give a study folder with {DB_FILE}, or a URL)")
    return url


def read_meta(path: Path) -> dict | None:
    """A study.json's content, None if there is none; MigrationError naming it if it is no JSON object."""
    if not path.exists():
        return None
    try:
        meta = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise MigrationError(f"{path}: not valid JSON ({e}); restore it from git") from None
    if not isinstance(meta, dict):
        raise MigrationError(f"{path}: not a JSON object; restore it from git")
    return meta


def _write_meta(path: Path, meta: dict) -> None:
    """study.json as the runner writes it; aside, then renamed: a failure leaves the old file whole."""
    from study.store import write_if_changed

    write_if_changed(path, (json.dumps(meta, indent=2) + "\n").encode())


@contextlib.contextmanager
def _database(storage_url: str):
    """Around what reads or writes the storage: its errors (not a database, locked, an old
    schema) as one MigrationError naming it; a transaction that fails is rolled back."""
    import sqlalchemy as sa

    try:
        yield
    except (sa.exc.SQLAlchemyError, RuntimeError) as e:  # RuntimeError: optuna's schema-version check
        first = str(getattr(e, "orig", None) or e).splitlines()[0]
        raise MigrationError(f"{redact(storage_url)}: {first} (nothing in it was changed)") from None


def _open(storage_url: str, study_name: str):
    """The RDB storage at `storage_url` and its study `study_name` (MigrationError if absent)."""
    import optuna  # here, not at import: `--help` answers without optuna and SQLAlchemy

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with _database(storage_url):
        storage = optuna.storages.RDBStorage(storage_url)
        try:
            return storage, optuna.load_study(study_name=study_name, storage=storage)
        except KeyError:
            raise MigrationError(f"no study {study_name!r} in {redact(storage_url)}") from None


def seed_to_attribute(storage_url: str, study_name: str, *, dry_run: bool = False) -> SeedMigration:
    """Delete the `seed` trial parameters of ablation study `study_name` (see the module doc)."""
    import sqlalchemy as sa

    storage, study = _open(storage_url, study_name)
    kind = study.user_attrs.get("kind")
    if kind != ABLATION_KIND:
        raise MigrationError(f"study {study_name!r} is {kind!r}, not a seedwise ablation "
                             f"({ABLATION_KIND!r}): its parameters are left as they are")
    trials = study.get_trials(deepcopy=False)
    seeded = [t for t in trials if SEED in t.params]
    for t in seeded:
        if t.user_attrs.get(SEED) != t.params[SEED]:
            raise MigrationError(
                f"trial {t.number}: parameter seed={t.params[SEED]!r} but attribute "
                f"seed={t.user_attrs.get(SEED)!r}; deleting the parameter would lose a seed")
    deleted = 0
    if seeded and not dry_run:
        params = sa.table("trial_params", sa.column("trial_id"), sa.column("param_name"))
        delete = params.delete().where(params.c.param_name == SEED,
                                       params.c.trial_id.in_([t._trial_id for t in seeded]))
        with _database(storage_url), storage.engine.begin() as conn:  # one transaction: all of them or none
            deleted = conn.execute(delete).rowcount
    return SeedMigration(study_name, len(trials), len(seeded), deleted)


def record_seed_streams(folder: Path, *, dry_run: bool = False) -> bool:
    """Add the built-in experiment's `seed_streams` to `folder`'s study.json when it was written
    by that experiment before the key existed (module docstring); True when it was (or, on a
    dry run, would be) added. The file is rewritten as the runner writes it."""
    path = folder / "study.json"
    meta = read_meta(path)
    if meta is None or "seed_streams" in meta or "experiment" in meta or not meta.get("arms"):
        return False
    if not dry_run:
        meta["seed_streams"] = dict(BUILTIN_SEED_STREAMS)
        _write_meta(path, meta)
    return True


def old_layout(meta: dict) -> bool:
    """Whether study.json `meta` is of a built-in study recorded before its experiment was named."""
    return isinstance(meta, dict) and "experiment" not in meta and bool(meta.get("arms"))


def identities(meta: dict, path: Path | str = "study.json") -> tuple[str, str]:
    """(the identity study.json's configs hash to without an experiment, the same with the
    built-in experiment named): `study.spec.StudySpec.identity` before and after. A study.json
    (`path`) without its `analysis` or its arms' `config` is refused, naming it."""
    from study.spec import AnalysisPlan

    try:
        declared = {k: v for k, v in meta["analysis"].items()
                    if k in ("metric", "baseline", "alpha", "margin", "direction")}
        blob = {"preset": meta.get("preset"), "arms": {a: d["config"] for a, d in meta["arms"].items()},
                "analysis": AnalysisPlan(**declared).identity_blob()}
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise MigrationError(f"{path}: its `analysis` or an arm's `config` is missing or malformed "
                             f"({type(e).__name__}: {e}); restore it from git") from None
    return stable_hash(blob), stable_hash({**blob, "experiment": BUILTIN_EXPERIMENT})


def contract_attrs(a: dict) -> dict:
    """A built-in-layout trial's attributes as the contract's run stores them (its numbers copied)."""
    epochs = [{k: v for k, v in e.items() if v is not None} for e in a.get("epochs") or []]
    last = epochs[-1] if epochs else {}
    metrics = {k: a.get(k) for k in METRIC_ATTRS}
    metrics.update(train_acc=last.get("train_acc"), train_loss=last.get("train_loss"), lr_final=last.get("lr"),
                   n_bn=a.get("n_bn"))
    metrics = {k: float(v) for k, v in metrics.items() if v is not None}
    if a.get("status") == "diverged":
        # as the contract reads a diverged run (study.cifar.experiment.as_returned)
        metrics.update({k: float("nan") for k in ("train_loss", *METRIC_ATTRS) if k not in metrics or k == "train_loss"})
    info = {k: a[k] for k in INFO_ATTRS if a.get(k) is not None}
    if isinstance(info.get("bn_layers"), list):
        info["bn_layers"] = " ".join(map(str, info["bn_layers"]))
    out: dict[str, Any] = {"epochs": epochs, "experiment": BUILTIN_EXPERIMENT}
    if a.get("status") in ("complete", "diverged"):  # a failure recorded no metrics
        out.update(metrics=metrics, info=info)
    return out


@dataclass(frozen=True)
class LayoutMigration:
    """What `contract_layout` found and did."""

    study: str
    trials: int  # trials rewritten (or, on a dry run, to rewrite)
    identity: tuple[str, str]  # (before, after)


def contract_layout(folder: Path, storage_url: str | None, study_name: str, *,
                    dry_run: bool = False) -> LayoutMigration | None:
    """Rewrite a built-in study recorded before its experiment was named into the contract's
    layout (module docstring), in one transaction; None when there is nothing to do. Without a
    storage (a study kept as its exports only), study.json alone is rewritten."""
    import optuna
    import sqlalchemy as sa

    path = folder / "study.json"
    meta = read_meta(path)
    if meta is None or not old_layout(meta):
        return None
    before, after = identities(meta, path)
    if meta.get("identity") != before:
        raise MigrationError(f"{path}: identity {meta.get('identity')} is not what its configs hash to ({before}); "
                             "it was not made by the built-in experiment's spec: left as it is")
    if storage_url is None:
        if not dry_run:
            _write_meta(path, {**meta, "identity": after, "experiment": BUILTIN_EXPERIMENT})
        return LayoutMigration(study_name, 0, (before, after))
    storage, study = _open(storage_url, study_name)
    if study.user_attrs.get("identity") not in (before, after):
        raise MigrationError(f"study {study_name!r}: stored identity {study.user_attrs.get('identity')} is "
                             f"neither {before} nor {after}; left as it is")
    # Not yet rewritten: a failed run has no `metrics` in either layout, but once rewritten it names its experiment.
    trials = [t for t in study.get_trials(deepcopy=False)
              if "arm" in t.user_attrs and "metrics" not in t.user_attrs and "experiment" not in t.user_attrs]
    if dry_run:
        return LayoutMigration(study_name, len(trials), (before, after))
    attrs = sa.table("trial_user_attributes", sa.column("trial_id"), sa.column("key"), sa.column("value_json"))
    study_attrs = sa.table("study_user_attributes", sa.column("study_id"), sa.column("key"), sa.column("value_json"))
    study_id = study._study_id
    with _database(storage_url), storage.engine.begin() as conn:  # one transaction: the whole study or nothing
        for t in trials:
            for key, value in {**contract_attrs(t.user_attrs), "study_identity": after}.items():
                conn.execute(attrs.delete().where(attrs.c.trial_id == t._trial_id, attrs.c.key == key))
                conn.execute(attrs.insert().values(trial_id=t._trial_id, key=key, value_json=json.dumps(value)))
        for key, value in (("identity", after), ("experiment", BUILTIN_EXPERIMENT), ("identity_before", before)):
            conn.execute(study_attrs.delete().where(study_attrs.c.study_id == study_id, study_attrs.c.key == key))
            conn.execute(study_attrs.insert().values(study_id=study_id, key=key, value_json=json.dumps(value)))
    from study.store import user_tables, write_if_changed

    with _database(storage_url):
        fresh = optuna.load_study(study_name=study_name, storage=storage)
        runs, epochs = user_tables(sorted((t for t in fresh.get_trials(deepcopy=False) if "arm" in t.user_attrs),
                                          key=lambda t: t.number))
    for df, name in ((runs, "runs.csv"), (epochs, "epochs.csv")):
        write_if_changed(folder / name, df.to_csv(index=False).encode())
    # Last: it marks the study migrated. Should an export above fail, a rerun finds the study.json
    # of the old layout, the database's identity already `after`, and finishes the job.
    _write_meta(path, {**meta, "identity": after, "experiment": BUILTIN_EXPERIMENT})
    return LayoutMigration(study_name, len(trials), (before, after))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m study.migrate", description=__doc__.split("\n\n")[0])
    p.add_argument("study", help="a study folder (results/<study>/) or a storage URL (then --study)")
    p.add_argument("--study", dest="name", help="the study's name (default: the folder's study.json)")
    p.add_argument("--dry-run", action="store_true", help="say what would be deleted, change nothing")
    args = p.parse_args(argv)
    try:
        folder = Path(args.study)
        if "://" not in args.study and _storage_gone(folder):  # exports only: study.json alone
            name = _study_name(folder)
            contract_layout(folder, None, name, dry_run=True)  # its checks, before the first change
            # Its seed streams first: once study.json names its experiment, they are never added.
            streams = record_seed_streams(folder, dry_run=args.dry_run)
            layout = contract_layout(folder, None, name, dry_run=args.dry_run)
            _print_streams(folder, streams, args.dry_run)
            print(f"{folder}: no {DB_FILE}; " + (f"study.json's identity {layout.identity[0]} -> {layout.identity[1]}"
                                                  if layout else "nothing to migrate"))
            return 0
        url = storage_of(args.study)
        name = args.name or _study_name(Path(args.study))
        # A dry run of every step first: it makes all their checks, so that a refusal of the
        # last step comes before the first step changed anything.
        checked = _steps(args.study, url, name, dry_run=True)
        result, streams, layout = checked if args.dry_run else _steps(args.study, url, name, dry_run=False)
    except (ValueError, MigrationError, OSError) as e:  # an OSError's message names its file
        print(f"error: {e}", file=sys.stderr)
        return 2
    _print_streams(Path(args.study), streams, args.dry_run)
    done = (f"would delete {result.with_seed_param}" if args.dry_run
            else f"deleted {result.deleted}")
    print(f"{result.study} ({redact(url)}): {result.trials} trials, {result.with_seed_param} with a "
          f"seed parameter; {done} seed parameter(s); seeds stay trial attributes")
    if layout is not None:
        print(f"{layout.study}: {'would rewrite' if args.dry_run else 'rewrote'} {layout.trials} trial(s) of the "
              f"built-in layout in the contract's (experiment {BUILTIN_EXPERIMENT}); identity "
              f"{layout.identity[0]} -> {layout.identity[1]}")
    return 0


def _print_streams(folder: Path, streams: bool, dry_run: bool) -> None:
    if streams:
        print(f"{folder / 'study.json'}: {'would record' if dry_run else 'recorded'} "
              f"seed_streams {', '.join(BUILTIN_SEED_STREAMS)} (the built-in experiment's)")


def _steps(target: str, url: str, name: str, *, dry_run: bool
           ) -> tuple[SeedMigration, bool, LayoutMigration | None]:
    """The migration's steps, in order, for `python -m study.migrate TARGET` (see `main`)."""
    result = seed_to_attribute(url, name, dry_run=dry_run)
    if "://" in target:  # a storage URL: no study folder to read or write
        return result, False, None
    folder = Path(target)
    return result, record_seed_streams(folder, dry_run=dry_run), contract_layout(folder, url, name, dry_run=dry_run)


def _storage_gone(folder: Path) -> bool:
    """Whether `folder` is a study kept as its exports only: a study.json, and no database where
    it says (nor a study.db of its own). A study.json naming another folder's database (a
    tuned-per-arm study's) is not: its trials are migrated there. One naming a server whose
    password it does not record is refused: its study.json alone would be marked migrated."""
    meta = read_meta(folder / "study.json")
    if meta is None:
        return False
    try:
        storage_of(str(folder))
        return False
    except ValueError:
        named = str(meta.get("storage", ""))
        if named and not named.startswith("sqlite:///"):
            raise MigrationError(f"{folder / 'study.json'}: its storage {named} cannot be opened from the "
                                 "folder (no password is recorded), and migrating study.json alone would "
                                 "leave the database's trials behind: nothing changed") from None
        return True


def _study_name(folder: Path) -> str:
    meta = read_meta(folder / "study.json")
    if meta is None:
        raise ValueError(f"{folder} has no study.json: give the study's name with --study")
    if not isinstance(meta.get("study"), str):
        raise MigrationError(f"{folder / 'study.json'}: names no `study`; give the study's name with --study")
    return meta["study"]


if __name__ == "__main__":
    sys.exit(main())
