"""How the running command was typed, for its --help usage line: `seedwise compare` through the
`seedwise` entry point (study.cli sets `invoked_as` while the command runs), else its
`python -m analysis.compare` form. Here, not in study.cli, because analysis/ never imports
study/ and both packages' commands name themselves the same way."""

from __future__ import annotations

invoked_as: str | None = None  # "seedwise tune" while study.cli.main runs that command


def usage_name(module: str) -> str:
    """`seedwise X` when called through the entry point, else `python -m MODULE`."""
    return invoked_as or f"python -m {module}"
