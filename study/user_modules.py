"""A user experiment's module, imported from the spec's folder without shadowing seedwise.

The folder never goes on `sys.path`: a process started from this one (joblib/loky workers, Dask)
inherits `sys.path`, and there a folder holding the user's own `study.py` or `analysis.py` would
be searched before seedwise's packages (an editable install finds them only after every
`sys.path` entry) and break the worker before it ran a line. Instead `FolderFinder` finds the
top-level modules of the folder first, as `python train.py` finds the script's siblings, except
seedwise's own packages; each process installs it when it loads the experiment.

Where the user's code imports one of its own files under a name this process already holds
from elsewhere (`import analysis` meaning the folder's analysis.py), it could only get the wrong
module: `check_shadowing` names the file and the fix before anything runs.
"""

from __future__ import annotations

import ast
import importlib.machinery
import importlib.util
import sys
from importlib.abc import MetaPathFinder
from pathlib import Path

SEEDWISE_PACKAGES = ("study", "analysis")  # never taken from a user's folder


class FolderFinder(MetaPathFinder):
    """Top-level modules found in the user's folder, ahead of `sys.path` (not of built-ins)."""

    def __init__(self, folder: str):
        self.folder = folder

    def find_spec(self, name, path=None, target=None):
        if path is not None or name in SEEDWISE_PACKAGES:  # submodules follow their package
            return None
        return importlib.machinery.PathFinder.find_spec(name, [self.folder])


def _inside(file: str | None, folder: str) -> bool:
    return file is not None and Path(file).resolve().is_relative_to(folder)


def use_folder(folder: str) -> None:
    """Install the finder for `folder` (once per process), before the path-based finders. A
    previous folder's modules are forgotten: two studies in one process may both have train.py."""
    folder = str(Path(folder).resolve())
    for finder in [f for f in sys.meta_path if isinstance(f, FolderFinder)]:
        if finder.folder == folder:
            return
        sys.meta_path.remove(finder)
        stale = [n for n, m in sys.modules.items() if _inside(getattr(m, "__file__", None), finder.folder)]
        for name in stale:
            del sys.modules[name]
    at = next((i for i, f in enumerate(sys.meta_path) if f is importlib.machinery.PathFinder), len(sys.meta_path))
    sys.meta_path.insert(at, FolderFinder(folder))


def _user_file(name: str, folder: str) -> str | None:
    """The file in `folder` that `import name` loads there (a package's __init__.py), or None."""
    spec = None
    search = [folder]
    parts = name.split(".")
    for i in range(len(parts)):
        full = ".".join(parts[: i + 1])
        spec = importlib.machinery.PathFinder.find_spec(full, search)
        if spec is None:
            return None
        search = list(spec.submodule_search_locations or [])
    if spec is None:
        return None
    # a namespace package (a folder without __init__.py) has no file: its folder stands for it
    where = spec.origin or next(iter(spec.submodule_search_locations or []), None)
    return where if _inside(where, folder) else None


def _imports(path: str, module: str) -> set[str]:
    """Every absolute module name a source file imports (relative ones resolved from `module`)."""
    try:
        tree = ast.parse(Path(path).read_text(), path)
    except (OSError, SyntaxError, ValueError):  # a folder, a compiled module, a syntax error
        return set()  # (the import itself reports what is wrong)
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1] if package else []
                base = ".".join([*parts, *filter(None, [base])])
            if base:
                names.add(base)
                names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


def _taken_elsewhere(top: str, folder: str) -> str | None:
    """Where this process already has module `top` from, outside the folder (None: not taken)."""
    if top in SEEDWISE_PACKAGES:
        return f"seedwise's {top} package"
    loaded = sys.modules.get(top)
    file = getattr(loaded, "__file__", None)
    if loaded is None or file is None or _inside(file, folder):
        return None  # not loaded, a built-in (as in plain Python, it wins), or the user's own
    return f"the module {top} ({file})"


def _shown(path: str, folder: str) -> str:
    """A user's module as they name it: `analysis.py`, or `study/` for a package."""
    rel = Path(path).relative_to(folder)
    if rel.name == "__init__.py":
        return f"{rel.parent}/"
    return f"{rel}/" if Path(path).is_dir() else str(rel)


def check_shadowing(module: str, folder: str) -> None:
    """Raise ValueError (one line) if the experiment module, or a file of the folder it imports,
    is imported under a name that would give seedwise's (or another already loaded) module."""
    folder = str(Path(folder).resolve())
    todo: list[tuple[str, str | None]] = [(module, None)]  # (module, the file importing it)
    seen = set()
    while todo:
        name, importer = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        file = _user_file(name, folder)
        if file is None:
            continue
        top = name.partition(".")[0]
        taken = _taken_elsewhere(top, folder)
        if taken:
            mine = _shown(_user_file(top, folder) or file, folder)
            if importer is None:
                raise ValueError(f"{top!r} is your {mine}, but that name is {taken}: rename {mine} in {folder} "
                                 "(and the spec's `experiment`)")
            raise ValueError(f"{importer} imports {top!r}, meaning your {mine}, but that name is {taken}: "
                             f"rename {mine} (and its imports) in {folder}")
        importer_name = str(Path(file).relative_to(folder))
        todo.extend((imported, importer_name) for imported in _imports(file, name))
