"""The study's report: `python -m analysis.report results/<study>` (see `build`).

`build` computes the report (`build_report`) and writes it (`write_report`, `main`); `context`
computes the statistics once; `sections`, `methods`, `sequential`, `variance`, `tuning`, `race`
and `tasks` turn them into blocks (`blocks`); `render` writes Markdown and HTML; `tables`,
`figures`, `notes`, `integrity` and `provenance` are the pieces the sections draw on.

The names below are imported on first use (PEP 562): `--help` prints without pandas, scipy or
matplotlib.
"""

from __future__ import annotations

from analysis._lazy import lazy_exports

# public name -> the module of this package that defines it
_EXPORTS = {
    **dict.fromkeys(["build_report", "main", "write_report"], "build"),
    "Report": "blocks",
    "integrity_checks": "integrity",
    **dict.fromkeys(["render_html", "render_markdown"], "render"),
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, {name: f"report.{module}" for name, module in _EXPORTS.items()})
