"""`seedwise run | tune | variance | compare | report | dashboard`: the toolkit's one command.

Each subcommand takes exactly the options of its `python -m` form (which stay):
    seedwise run ...        = python -m study.run ...
    seedwise tune ...       = python -m study.tune ...
    seedwise variance ...   = python -m study.variance ...
    seedwise compare ...    = python -m analysis.compare ...
    seedwise report ...     = python -m analysis.report ...
    seedwise dashboard RESULTS/STUDY [--port 8080]   optuna-dashboard on the study's storage
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import sys
from pathlib import Path

from analysis import invocation

# Nothing heavy here, nor in the commands' modules until their options are parsed: every
# `seedwise X --help` prints at once (tests/test_user_imports.py checks what it imports).
COMMANDS = {"run": "study.run", "tune": "study.tune", "variance": "study.variance", "compare": "analysis.compare",
            "report": "analysis.report"}
def storage_of(target: str) -> str:
    """A storage URL as given, or the one a study folder's study.json names (else its study.db)."""
    from analysis.contract import DB_FILE, default_storage

    if "://" in target:
        return target
    folder = Path(target)
    meta = folder / "study.json"
    if meta.exists():
        described = json.loads(meta.read_text())
        stored = described.get("storage", "")
        if stored and "***" not in stored:
            return stored
        if described.get("tasks"):  # study.tasks: each task's study has its own storage
            raise ValueError(f"{target!r} is a study of several tasks, each with its own storage: give one, "
                             f"e.g. seedwise dashboard {folder / 'tasks' / next(iter(described['tasks']))}")
    if (folder / DB_FILE).exists():
        return default_storage(folder)
    raise ValueError(f"{target!r} is neither a storage URL nor a study folder with study.json or {DB_FILE}")


def dashboard(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="seedwise dashboard", description="optuna-dashboard on a study's storage")
    p.add_argument("study", help="a study folder (results/<study>/) or a storage URL")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    args = p.parse_args(argv)
    try:
        url = storage_of(args.study)
        from optuna_dashboard import run_server
    except (ValueError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"dashboard of {url} on http://{args.host}:{args.port}/ (Ctrl-C to stop)", file=sys.stderr)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a server is stopped
        run_server(url, host=args.host, port=args.port)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "dashboard":
        return dashboard(rest)
    if command not in COMMANDS:
        from study.params import suggest

        print(f"error: unknown command {command!r}{suggest(command, [*COMMANDS, 'dashboard'])}; "
              f"commands: {', '.join([*COMMANDS, 'dashboard'])}", file=sys.stderr)
        return 2
    if sys.platform == "win32" and COMMANDS[command].startswith("study."):
        # a run's processes are POSIX ones (study/lifeline.py); the analysis commands run anywhere
        print(f"error: seedwise {command} runs studies on Linux and macOS; on Windows, run it under WSL",
              file=sys.stderr)
        return 2
    invocation.invoked_as = f"seedwise {command}"
    try:
        return importlib.import_module(COMMANDS[command]).main(rest)
    finally:
        invocation.invoked_as = None


if __name__ == "__main__":
    sys.exit(main())
