"""The report's provenance table: where the numbers come from.

Which study, spec, code (git commit, versions), machine, data and storage produced the runs,
read from runs.csv, study.json and the user attributes of the study's Optuna trials. Nothing
machine-local is shown: a data file or storage as its file name (its content is identified by
the data fingerprint), the seedwise version as installed, or its source tree's git commit.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path

import pandas as pd

from analysis.contract import redact
from analysis.formatting import duration
from analysis.load import StudyData

__all__ = ["provenance_table", "shown_path", "without_local_paths"]


def _counts(series: pd.Series) -> str:
    vals = series.dropna().astype(str)
    if vals.empty:
        return "not recorded"
    c = vals.value_counts()
    if len(c) == 1:
        return f"{c.index[0]} (all {int(c.iloc[0])} runs)"
    return "; ".join(f"{k} ({int(v)} runs)" for k, v in c.items())


def _stored_attrs(study: StudyData) -> tuple[list[dict], str | None]:
    """User attributes of the study's Optuna trials (versions, dirty flag, data source)."""
    url = study.storage_url
    if not url:
        return [], "no Optuna storage found"
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        st = optuna.load_study(study_name=study.meta.get("study", study.path.name), storage=url)
        return [t.user_attrs for t in st.get_trials(deepcopy=False)], None
    except Exception as e:  # any storage problem: report it, never fail the report
        return [], f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def _source_commit() -> str | None:
    """The git commit of the source tree this analysis runs from, if it is a checkout."""
    try:
        done = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True,
                              text=True, timeout=10, cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def _seedwise_version() -> str:
    """The installed seedwise version; a plain source tree says its git commit instead."""
    with contextlib.suppress(metadata.PackageNotFoundError):
        return f"seedwise {metadata.version('seedwise')}"
    commit = _source_commit()
    return f"seedwise source tree (git {commit})" if commit else "seedwise source tree"


def _analysis_versions() -> str:
    out = [f"python {sys.version.split()[0]}", _seedwise_version()]
    for name in ("numpy", "scipy", "statsmodels", "pandas", "matplotlib", "seaborn", "optuna"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out.append(f"{name} {metadata.version(name)}")
    return ", ".join(out)


def _training_versions(d: Mapping[str, str]) -> str:
    # A run from a source tree that was not pip-installed has no seedwise version: its code
    # is the run's git commit (its own row), which says more than "not installed".
    return ", ".join("seedwise: source tree, see git commit" if k == "seedwise"
                     and d[k] == "not installed" else f"{k} {d[k]}" for k in sorted(d))


def _versions_of_runs(runs: Sequence[object]) -> list[tuple[str, int]]:
    """The distinct values of a JSON-able attribute over runs, in the order first stored, with
    how many runs had each."""
    counts: dict[str, int] = {}
    for value in runs:
        key = json.dumps(value, sort_keys=True)
        counts[key] = counts.get(key, 0) + 1
    return list(counts.items())


def _numbered(label: str, i: int, n: int) -> str:
    return label + (f" #{i + 1}" if n > 1 else "")


def _user_code_rows(attrs: list[dict]) -> list[tuple[str, str]]:
    """A user experiment's own code, as its runs recorded it (study.provenance.run_code): each
    version of its files, the user's git commit, accepted code changes, the packages it imported."""
    runs = [a for a in attrs if "code_hash" in a]
    if not runs:
        return []
    rows = []
    code = _versions_of_runs([[a["code_hash"], a.get("code_files") or {}] for a in runs])
    for i, (key, n) in enumerate(code):
        hash_, files = json.loads(key)
        listed = ", ".join(f"{f} {h}" for f, h in sorted(files.items())) or "no files found"
        rows.append((_numbered("experiment code (hash: its files)", i, len(code)), f"{hash_} ({n} runs): {listed}"))

    def git_text(a: dict) -> str:
        if not a.get("user_git_commit"):
            return "not in a git repository"
        diff = a.get("user_git_diff_hash")
        return a["user_git_commit"][:12] + (f" + uncommitted changes (diff {diff})" if diff else " (clean)")

    rows.append(("experiment's git commit", _counts(pd.Series([git_text(a) for a in runs]))))
    changes = _versions_of_runs([c for a in runs for c in a.get("accepted_code_changes") or []])
    if changes:
        rows.append(("accepted code changes (--accept-code-change)", "; ".join(
            f"{c['at']}: {', '.join(c['files'])} (code {c['from']} -> {c['to']})"
            for c in (json.loads(k) for k, _ in changes))))
    packages = _versions_of_runs([a["packages"] for a in runs if isinstance(a.get("packages"), dict)])
    for i, (key, n) in enumerate(packages):
        listed = ", ".join(f"{k} {v}" for k, v in sorted(json.loads(key).items(), key=lambda kv: kv[0].lower()))
        rows.append((_numbered("packages the experiment's process imported", i, len(packages)),
                     f"{listed} ({n} runs)"))
    return rows


_PATH = re.compile(r"(?:~/|\.{0,2}/|/)?(?:[\w.+-]+/)+(?P<name>[\w.+-]+)")


def without_local_paths(text: str) -> str:
    """Paths in `text` reduced to their file names: ``from /work/x/data.tar.gz`` ->
    ``from data.tar.gz``. Where a file lay on the machine that ran it identifies nothing
    (the data fingerprint does) and differs between machines holding the same file."""
    return _PATH.sub(lambda m: m["name"], text)


def shown_path(path: str | Path) -> str:
    """`path` relative to the working directory when it lies under it (results/<study>/
    runs.csv), else its last two parts: never the folders of the machine that wrote it."""
    p = Path(path)
    with contextlib.suppress(ValueError, OSError):
        return p.resolve().relative_to(Path.cwd().resolve()).as_posix()
    return "/".join(p.parts[-2:])


def _storage_text(study: StudyData) -> str:
    """The Optuna storage, without the machine-local folder of a SQLite file in the study's
    own results directory (where it lies on this machine says nothing about the numbers)."""
    url = study.storage_url
    if url and url.startswith("sqlite:///"):
        db = Path(url[len("sqlite:///"):])
        if db.resolve().parent == study.path.resolve():
            return f"SQLite file {db.name} in the study's results directory"
    return redact(study.meta.get("storage") or url or "") or "n/a"


def provenance_table(study: StudyData, arms: Sequence[str]) -> tuple[pd.DataFrame, str | None]:
    runs = study.runs[study.runs["arm"].isin(arms)] if len(study.runs) else study.runs
    meta = study.meta
    attrs, problem = _stored_attrs(study)
    rows = [("study", meta.get("study", study.path.name)),
            ("spec", f"{meta.get('spec_name', 'n/a')}: {meta.get('spec_source', 'source n/a')}"),
            ("spec identity", meta.get("identity", "n/a")),
            *([("preset", meta["preset"])] if meta.get("preset") else []),  # built-in sizes only
            ("global overrides (--set)", json.dumps(meta.get("set", {})) if meta.get("set")
             else "none")]
    seedwise_commit = "seedwise git commit" if "code_hash" in runs else "git commit"  # not the experiment's
    for col, name in (("git_commit", seedwise_commit), ("device", "device"),
                      ("precision", "precision"), ("threads", "threads per run"),
                      ("data_fingerprint", "data fingerprint (sha256)")):
        if col in runs:
            rows.append((name, _counts(runs[col])))
    if attrs:
        # Seeds trained together (study.group) change speed, not the numbers: shown so it is checkable.
        rows.append(("seeds per training step", _counts(pd.Series([max(1, len(a.get("group") or ()))
                                                                   for a in attrs]))))
        if any(a.get("compiled") for a in attrs):
            rows.append(("torch.compile", _counts(pd.Series(["yes" if a.get("compiled") else "no"
                                                             for a in attrs]))))
        dirty = {a.get("git_dirty") for a in attrs if "git_dirty" in a}
        if dirty:
            rows.append(("uncommitted changes when run", ", ".join(
                "yes" if d else "no" if d is False else "unknown" for d in sorted(dirty, key=str))))
        sources = sorted({without_local_paths(str(a["data_source"])) for a in attrs
                          if a.get("data_source")})
        if sources:
            rows.append(("data source", "; ".join(sources)
                          + " (its content: the data fingerprint row)"))
        rows.extend(_user_code_rows(attrs))
        versions = sorted({json.dumps(a["versions"], sort_keys=True) for a in attrs
                           if isinstance(a.get("versions"), dict)})
        for i, v in enumerate(versions):
            d = json.loads(v)
            label = "versions (training)" + (f" #{i + 1}" if len(versions) > 1 else "")
            rows.append((label, _training_versions(d)))
    else:
        rows.append(("versions (training)", f"not available ({problem})"))
    if "wall_time_s" in runs:
        total = pd.to_numeric(runs["wall_time_s"], errors="coerce").sum()
        rows.append(("total training time", f"{duration(total)} over {len(runs)} runs"))
    rows.append(("storage", _storage_text(study)))
    rows.append(("analysis versions", _analysis_versions()))
    return pd.DataFrame(rows, columns=["item", "value"]), problem
