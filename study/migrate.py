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

    python -m study.migrate results/my-study             # the study of results/my-study
    python -m study.migrate results/my-study --dry-run   # say what it would delete

Exit status: 0 migrated (or nothing to do), 2 bad input or a check failed (nothing changed).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from analysis.contract import ABLATION_KIND, BUILTIN_SEED_STREAMS, DB_FILE, default_storage, redact

SEED = "seed"


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
        meta = folder / "study.json"
        url = json.loads(meta.read_text()).get("storage", "") if meta.exists() else ""
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


def seed_to_attribute(storage_url: str, study_name: str, *, dry_run: bool = False) -> SeedMigration:
    """Delete the `seed` trial parameters of ablation study `study_name` (see the module doc)."""
    import optuna  # here, not at import: `--help` answers without optuna and SQLAlchemy
    import sqlalchemy as sa

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(storage_url)
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        raise MigrationError(f"no study {study_name!r} in {redact(storage_url)}") from None
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
        with storage.engine.begin() as conn:  # one transaction: all of them or none
            deleted = conn.execute(delete).rowcount
    return SeedMigration(study_name, len(trials), len(seeded), deleted)


def record_seed_streams(folder: Path, *, dry_run: bool = False) -> bool:
    """Add the built-in experiment's `seed_streams` to `folder`'s study.json when it was written
    by that experiment before the key existed (module docstring); True when it was (or, on a
    dry run, would be) added. The file is rewritten as the runner writes it."""
    path = folder / "study.json"
    if not path.exists():
        return False
    meta = json.loads(path.read_text())
    if not isinstance(meta, dict) or "seed_streams" in meta or "experiment" in meta or not meta.get("arms"):
        return False
    if not dry_run:
        meta["seed_streams"] = dict(BUILTIN_SEED_STREAMS)
        path.write_text(json.dumps(meta, indent=2) + "\n")
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m study.migrate", description=__doc__.split("\n\n")[0])
    p.add_argument("study", help="a study folder (results/<study>/) or a storage URL (then --study)")
    p.add_argument("--study", dest="name", help="the study's name (default: the folder's study.json)")
    p.add_argument("--dry-run", action="store_true", help="say what would be deleted, change nothing")
    args = p.parse_args(argv)
    try:
        url = storage_of(args.study)
        name = args.name or _study_name(Path(args.study))
        result = seed_to_attribute(url, name, dry_run=args.dry_run)
        streams = "://" not in args.study and record_seed_streams(Path(args.study), dry_run=args.dry_run)
    except (ValueError, MigrationError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if streams:
        print(f"{Path(args.study) / 'study.json'}: {'would record' if args.dry_run else 'recorded'} "
              f"seed_streams {', '.join(BUILTIN_SEED_STREAMS)} (the built-in experiment's)")
    done = (f"would delete {result.with_seed_param}" if args.dry_run
            else f"deleted {result.deleted}")
    print(f"{result.study} ({redact(url)}): {result.trials} trials, {result.with_seed_param} with a "
          f"seed parameter; {done} seed parameter(s); seeds stay trial attributes")
    return 0


def _study_name(folder: Path) -> str:
    meta = folder / "study.json"
    if not meta.exists():
        raise ValueError(f"{folder} has no study.json: give the study's name with --study")
    return json.loads(meta.read_text())["study"]


if __name__ == "__main__":
    sys.exit(main())
