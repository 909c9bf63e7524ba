"""Names a module exports from its submodules, imported on first use (PEP 562): importing the
package costs nothing, so `--help` and the light seam (`analysis.contract`) never pull in pandas,
scipy or matplotlib."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(module: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` for `module`: `exports` maps a public name to the module (dotted,
    under `analysis`) that defines it. A name is imported once, then kept on `module`."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"analysis.{exports[name]}"), name)
        setattr(sys.modules[module], name, value)  # looked up once
        return value

    return __getattr__
