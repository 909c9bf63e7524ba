"""Where a number came from: code version, library versions, machine. No secrets in here."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

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
