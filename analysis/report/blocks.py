"""The report as data: a list of blocks (headings, paragraphs, bullet lists, references to a
table or a figure) plus the tables and figures they refer to. `analysis.report.render` turns a
`Report` into Markdown or HTML; nothing here computes or writes.

Text in blocks is inline Markdown (**bold**, *italic*, `code`), which both renderers understand.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd
from matplotlib.figure import Figure

from analysis.dashboard.panels import DashboardData
from analysis.stats.family import Family


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Para:
    text: str  # inline Markdown: **bold**, `code`


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class TableRef:
    name: str


@dataclass(frozen=True)
class FigureRef:
    name: str


Block = Heading | Para | Bullets | TableRef | FigureRef


@dataclass
class Report:
    """Everything the report shows; `render_markdown` / `render_html` turn it into text."""

    study: str
    title: str
    blocks: list[Block] = field(default_factory=list)
    figures: dict[str, tuple[Figure, str]] = field(default_factory=dict)  # name -> (fig, caption)
    tables: dict[str, tuple[pd.DataFrame, str]] = field(default_factory=dict)  # name -> (df, caption)
    note: str = ""  # Markdown for the Optuna study note
    families: dict[str, Family] = field(default_factory=dict)
    integrity: dict = field(default_factory=dict)
    dashboard: DashboardData | None = None  # what optuna-dashboard's figures are drawn from

    def add(self, *blocks: Block) -> None:
        self.blocks.extend(blocks)

    def add_table(self, name: str, table: pd.DataFrame, caption: str) -> None:
        """Store `table` and show it here."""
        self.tables[name] = (table, caption)
        self.blocks.append(TableRef(name))

    def add_figure(self, name: str, figure: Figure, caption: str) -> None:
        """Store `figure` and show it here (each figure is shown once, where it is made)."""
        self.figures[name] = (figure, caption)
        self.blocks.append(FigureRef(name))


def plural(n: int, word: str) -> str:
    """``1 run``, ``2 runs``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def code_list(names: Sequence[str]) -> str:
    """Names as inline code, joined as in a sentence: `a`, `b` and `c`."""
    names = [f"`{n}`" for n in names]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
