"""seedwise.analysis: do ablation arms really differ over seeds? (pure statistics)

The public API is the handful of functions a user calls (each docstring has the details):

- a study's results: `load_study`, then `compare_arms` (every arm against the baseline, Holm
  over the family) and `family_frame` / `arm_frame` (the same as DataFrames, the columns of
  `--json`); `build_report` / `write_report` (the report of `python -m analysis.report`);
- per-seed values of your own: `compare` (one arm vs a baseline), `compare_family` (several
  arms, Holm), `describe` (one arm's seeds);
- planning: `seeds_needed`, `detectable_difference`;
- `DegenerateDataWarning`, warned when the data force a fallback (zero variance, dropped NaNs);
  like every caution the analysis warns, its ``note`` is the caution as data
  (`analysis.types.Note`: kind, comparison, seeds).

What they return (`Comparison`, `Family`, `Verdict`, ...) is importable from
`analysis.types`, which lists every result type. The rest is in its subpackage: `stats` (the
statistics as pure functions: paired tests, families, power, test-set noise, variance),
`sequential` (seeds until decided), `tasks` (several tasks), `tuning` (Optuna tuning studies
and races), `report` (tables, figures, the report), `dashboard` (optuna-dashboard) and `paper`.
`contract` and `load` are the seam with `study`: the files a study leaves behind.
`python -m analysis.compare`, `python -m analysis.report` and `python -m analysis.paper` are the
command lines.

The public names are imported on first use (PEP 562), not with the package: the light
seam `analysis.contract`, which `study` imports, must not pull in scipy and statsmodels.
"""

from __future__ import annotations

import sys

# By name: importing the submodule analysis.types binds `types` in this namespace.
from types import ModuleType

from analysis._lazy import lazy_exports

# public name -> the submodule that defines it
_EXPORTS = {
    "DegenerateDataWarning": "_checks",
    "compare": "stats.paired",
    "describe": "stats.describe",
    "compare_family": "stats.family",
    **dict.fromkeys(["arm_frame", "compare_arms", "family_frame", "load_study"], "load"),
    **dict.fromkeys(["detectable_difference", "seeds_needed"], "stats.power"),
    **dict.fromkeys(["build_report", "write_report"], "report.build"),
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


class _Package(ModuleType):
    """`compare` is both an exported function and a submodule (the command line). Importing a
    submodule binds it onto its package under its own name, which would turn a later
    `from analysis import compare` into the module: an exported name keeps its function."""

    def __setattr__(self, name: str, value) -> None:
        if name in _EXPORTS and isinstance(value, ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
