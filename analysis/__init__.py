"""seedwise.analysis: do ablation arms really differ over seeds? (pure statistics)

The public API, by what it is for (each name's docstring has the details):

- a study's results: `load_study` (-> `StudyData`), `load_runs`, `compare_arms` (-> `Family`),
  `family_frame` / `arm_frame` (the same as DataFrames), `build_report` / `write_report`
  (the report of `python -m analysis.report`);
- statistics on per-seed values: `compare` (-> `Comparison`, holding an `Equivalence`, its
  `TestResult`s and a `Verdict`), `compare_family` (Holm over several arms), `omnibus`,
  `describe` (-> `ArmSummary`), `primary_test`, `min_attainable_p`;
- planning: `seeds_needed`, `detectable_difference`;
- test-set noise: `binomial_ci`, `mcnemar_exact`, `single_run_gap` (-> `SingleRunGap`,
  `SeedPlan`), `two_level_bootstrap` (-> `Interval`);
- `DegenerateDataWarning`, warned when the data force a fallback (zero variance, dropped
  NaNs); `MetricPlan`, the analysis plan a `Family` was made with; `McNemarResult`,
  `VerdictLabel`.

Seeds until decided live in `analysis.sequential`; `python -m analysis.compare`,
`python -m analysis.report` and `python -m analysis.paper` are the command lines.

The public names are imported on first use (PEP 562), not with the package: the light
seam `analysis.contract`, which `study` imports, must not pull in scipy and statsmodels.
"""

from __future__ import annotations

import importlib
import sys
import types

# public name -> the submodule that defines it
_EXPORTS = {
    "DegenerateDataWarning": "_checks",
    **dict.fromkeys(["Comparison", "compare", "primary_test"], "comparison"),
    **dict.fromkeys(["ArmSummary", "describe"], "describe"),
    **dict.fromkeys(["Family", "compare_family", "omnibus"], "family"),
    **dict.fromkeys(["StudyData", "arm_frame", "compare_arms", "family_frame", "load_runs", "load_study"], "load"),
    "MetricPlan": "plan",
    **dict.fromkeys(["detectable_difference", "seeds_needed"], "power"),
    **dict.fromkeys(["build_report", "write_report"], "report"),
    **dict.fromkeys(["Equivalence", "Interval", "TestResult"], "results"),
    "min_attainable_p": "seed_tests",
    **dict.fromkeys(["McNemarResult", "SeedPlan", "SingleRunGap", "binomial_ci", "mcnemar_exact",
                     "single_run_gap", "two_level_bootstrap"], "testset"),
    **dict.fromkeys(["Verdict", "VerdictLabel"], "verdicts"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'analysis' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


class _Package(types.ModuleType):
    """`compare` and `describe` are both exported functions and submodules. Importing a
    submodule binds it onto its package under its own name, which would turn a later
    `from analysis import describe` into the module: an exported name keeps its function."""

    def __setattr__(self, name: str, value) -> None:
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
