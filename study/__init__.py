"""seedwise.study: run ablation arms over many seeds and store every run with its provenance.

The public API, for your own experiment: `run_study` (``run_study(spec, seeds=5)`` -> a
`StudyResult`; study.api), `load_spec` (-> a `StudySpec`) with the `SpecError` / `ConfigError`
it raises on bad input, and `rng` / `stream_seed` (``rng(seed, stream)``; study.seeds) for the
random streams that pair arms by seed. The built-in CIFAR-10 experiment (its `Config`, presets,
data and `train_one`) is `study.cifar`; `python -m study.run` and `python -m study.tune` are
the command lines.

The public names below are imported on first use (PEP 562), not with the package: a worker
running a torch-free experiment, or `import study.store`, must not pay for torch; and
`python -m study.run` must not import study.run twice (once through this package, once as
__main__).
"""

from __future__ import annotations

import importlib

# public name -> the module that defines it
_EXPORTS = {
    "ConfigError": "study.params",
    **dict.fromkeys(["rng", "stream_seed"], "study.seeds"),
    **dict.fromkeys(["SpecError", "StudySpec", "load_spec"], "study.spec"),
    **dict.fromkeys(["StudyResult", "run_study"], "study.api"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'study' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
