"""Where a number came from: code version (seedwise's, and a user experiment's own), library
versions, machine. No secrets in here."""

from __future__ import annotations

import contextlib
import datetime
import functools
import hashlib
import os
import platform
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from analysis.contract import stable_hash
from study.plan import UsageError

PACKAGES = ("seedwise", "torch", "torchvision", "numpy", "optuna", "scipy", "pandas")


@functools.cache
def git_info() -> dict[str, object]:
    """Commit and dirty flag of the checkout this package was imported from, if any."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        # Dirty means changed *code*: a study writing its own results/ (or a report in paper/)
        # inside the checkout does not make the code that produced them uncommitted.
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)results", ":(exclude)paper"], cwd=root,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip() != ""
        return {"git_commit": commit, "git_dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        # A copy without .git (e.g. shipped to a GPU machine) can say where it came from.
        return {"git_commit": os.environ.get("SEEDWISE_GIT_COMMIT", "unknown"), "git_dirty": None}


@functools.cache
def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    torch = sys.modules.get("torch")  # only if the study uses it: a numpy experiment never imports torch
    if torch is not None:
        out["cuda"] = torch.version.cuda or "none"
        out["cudnn"] = str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else "none"
    return out


def provenance() -> dict[str, object]:
    return {**git_info(), "versions": versions()}


# ---- the user's code: what a user experiment ran, and whether a rerun runs the same ----------
# One rule for a user experiment's code identity, used by the workers (after each run) and by
# the runner's check before a rerun. Its files are those under the experiment's folder: for a
# function, every module the process has loaded from there (its own module and the helpers it
# imports); for a command, the files the command names plus the folder's .py files (seedwise
# cannot see what another program imports). Paths are stored relative to the folder.
SEEDWISE_PACKAGES = tuple(str(Path(__file__).resolve().parent.parent / p) + os.sep for p in ("study", "analysis"))
NOT_USER_CODE = {"__pycache__", "site-packages", "dist-packages", "node_modules"}  # installed, or caches
MAX_FOLDER_FILES = 500  # a command's folder walk stops here (a spec in a home directory, say)

_digests: dict[tuple[str, int, int], str] = {}
_imported: dict[tuple[str, int], list[str]] = {}
_packages: dict[int, dict[str, str]] = {}
_owners: dict[str, tuple[str, str] | None] = {}  # top-level module -> (distribution, version)


class CodeChangedError(UsageError):
    """A rerun's experiment code differs from the stored runs' (exit 2, nothing trained)."""


def experiment_folder(folder: str | None) -> str:
    """Where the experiment's code lives: the spec's folder (or the working directory)."""
    return os.path.abspath(folder or os.getcwd())


def file_digest(path: str) -> str:
    """A file's content hash, computed once per process while the file is unchanged."""
    st = os.stat(path)
    key = (path, st.st_mtime_ns, st.st_size)
    if key not in _digests:
        with open(path, "rb") as f:
            _digests[key] = hashlib.file_digest(f, "sha256").hexdigest()[:12]
    return _digests[key]


def _is_user_file(path: str, folder: str) -> bool:
    if not path.startswith(folder + os.sep) or path.startswith(SEEDWISE_PACKAGES):
        return False
    return not NOT_USER_CODE.intersection(Path(path[len(folder) + 1:]).parts)


def imported_files(folder: str) -> list[str]:
    """The files of the modules this process has loaded from `folder` (recomputed only when
    the process has imported something since, so a run costs a dict lookup)."""
    key = (folder, len(sys.modules))
    if key not in _imported:
        files = {os.path.abspath(f) for m in list(sys.modules.values())
                 if isinstance(f := getattr(m, "__file__", None), str)}
        _imported[key] = sorted(f for f in files if _is_user_file(f, folder) and os.path.isfile(f))
    return _imported[key]


def command_files(command: str, folder: str) -> list[str]:
    """A command experiment's code: the files under `folder` its words name (train.py,
    scripts/run.sh), and every .py file in the folder and its subfolders (hidden ones skipped)."""
    try:
        words = shlex.split(command)
    except ValueError:  # an unbalanced quote: each run fails on it and says so; its .py files still count
        words = []
    named = {os.path.abspath(os.path.join(folder, w)) for w in words if "{" not in w}
    files = {f for f in named if _is_user_file(f, folder) and os.path.isfile(f)}
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in NOT_USER_CODE
                         and not os.path.exists(os.path.join(root, d, "pyvenv.cfg")))
        files.update(os.path.join(root, n) for n in names if n.endswith(".py"))
        if len(files) > MAX_FOLDER_FILES:
            break
    return sorted(f for f in files if _is_user_file(f, folder))


def digests(files: list[str], folder: str) -> dict[str, str]:
    """{path relative to the folder: content hash}; a file gone since is left out."""
    out = {}
    for f in files:
        with contextlib.suppress(OSError):
            out[Path(os.path.relpath(f, folder)).as_posix()] = file_digest(f)
    return out


def imported_packages() -> dict[str, str]:
    """{distribution: version} of every installed package this process has imported (not the
    standard library, nor the user's own modules): scikit-learn as much as torch."""
    key = len(sys.modules)
    if key not in _packages:
        tops = {name for name, m in list(sys.modules.items()) if "." not in name
                and name not in sys.stdlib_module_names and _installed(getattr(m, "__file__", None))}
        _find_owners(tops)
        _packages[key] = dict(sorted(owner for top in tops if (owner := _owners[top]) is not None))
    return _packages[key]


def _installed(file: object) -> bool:
    return isinstance(file, str) and not NOT_USER_CODE.isdisjoint(Path(file).parts[:-1])


def _find_owners(tops: set[str]) -> None:
    """Which installed distribution provides each top-level module (cached per process). Reads
    each distribution's top_level.txt, else the first folder of each line of its RECORD, and
    stops once every module is placed: importlib's packages_distributions() parses every file
    list and every METADATA, about a second in a large environment, once per worker."""
    missing = tops - set(_owners)
    for dist in metadata.distributions() if missing else ():
        listing = dist.read_text("top_level.txt")
        if listing is None:
            listing = "\n".join(line.split(",", 1)[0] for line in (dist.read_text("RECORD") or "").splitlines())
        found = missing & {line.split("/", 1)[0].partition(".")[0] for line in listing.splitlines()}
        for top in found:
            _owners[top] = (dist.metadata["Name"], dist.version)
        missing -= found
        if not missing:
            break
    _owners.update(dict.fromkeys(missing))  # a module no distribution lists (copied in by hand)


def run_code(folder: str | None, command: str | None) -> dict[str, Any]:
    """What one run of a user experiment records about its code, computed in the process that
    ran it, after the run (a function's lazily imported helpers included)."""
    where = experiment_folder(folder)
    files = digests(command_files(command, where) if command else imported_files(where), where)
    out: dict[str, Any] = {"code_hash": code_hash(files), "code_files": files}
    if not command:  # a command's imports happen in another program
        out["packages"] = imported_packages()
    return out


def code_hash(files: dict[str, str]) -> str:
    return stable_hash(files)


def user_git(folder: str) -> dict[str, str | None]:
    """The user's repository at the experiment's folder: its commit, and a hash of the
    uncommitted changes to tracked files in that folder (None when clean, or without git).
    Asked once per invocation (two quick git calls), not cached: it changes between them."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, timeout=10,
                              check=True).stdout
    try:
        commit = git("rev-parse", "HEAD").strip()
        diff = git("diff", "HEAD", "--no-ext-diff", "--no-color", "--", ".")
    except (OSError, subprocess.SubprocessError):  # not a repository, no commit yet, no git
        return {"user_git_commit": None, "user_git_diff_hash": None}
    return {"user_git_commit": commit,
            "user_git_diff_hash": hashlib.sha256(diff.encode()).hexdigest()[:12] if diff else None}


def changed_files(stored: dict[str, str], folder: str) -> list[str]:
    """How the stored runs' code files differ from the same files now ("utils.py changed",
    "helpers.py deleted"). A new import shows as a change of the file that imports it."""
    now = digests([os.path.join(folder, f) for f in stored], folder)
    return [f"{f} {'deleted' if f not in now else 'changed'}" for f in sorted(stored) if now.get(f) != stored[f]]


def latest_code(trials: list[Any]) -> dict[str, str] | None:
    """The code files of the most recently stored run that recorded them; None when no run did
    (a study from before seedwise recorded code: its code is unknown, not changed)."""
    recorded = [t for t in trials if isinstance(t.user_attrs.get("code_files"), dict)]
    return max(recorded, key=lambda t: t.number).user_attrs["code_files"] if recorded else None


def check_code(experiment: Any, store: Any, accept_change: bool) -> dict[str, Any]:
    """Before a rerun of a user experiment trains anything: its code must be the stored runs'
    code, or the change accepted (`--accept-code-change`, kept in the study and recorded with
    every later run). Returns what every run of this invocation records about the user's code."""
    folder = experiment_folder(experiment.folder)
    attrs: dict[str, Any] = dict(user_git(folder))
    stored = latest_code(store.trials())
    accepted = list(store.study.user_attrs.get("accepted_code_changes", []))
    changes = changed_files(stored, folder) if stored else []
    if changes and not accept_change:
        raise CodeChangedError(
            f"the experiment's code changed since the stored runs of study {store.study_name!r} "
            f"({', '.join(changes)}); nothing was run. Rerun with --accept-code-change to go on with "
            f"the new code (recorded with every later run), or with --study NEW_NAME for a new study")
    if changes and stored:
        change = {"files": changes, "from": code_hash(stored),
                  "to": code_hash(digests([os.path.join(folder, f) for f in stored], folder))}
        if not accepted or {k: accepted[-1].get(k) for k in change} != change:  # a repeated accept adds nothing
            accepted.append({**change, "at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")})
            store.study.set_user_attr("accepted_code_changes", accepted)
    if accepted:
        attrs["accepted_code_changes"] = accepted
    return attrs
