"""A study's sequential record (sequential.json, written by study.until_decided after every
look), read back: by the report's section, the paper and `seedwise compare`, without plotting."""

from __future__ import annotations

import json
from pathlib import Path

from analysis.contract import SEQUENTIAL_FILE


def read_record(path: Path) -> dict | None:
    """The study's sequential record, or None when it was not run until decided."""
    file = Path(path) / SEQUENTIAL_FILE
    if not file.exists():
        return None
    try:
        record = json.loads(file.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("comparisons") else None


def stopping_lines(path: Path, metric: str | None = None, baseline: str | None = None) -> list[str]:
    """For a study run until decided, the decisions that stopped it, ahead of fixed-n verdicts:
    those treat the final seeds as fixed and can disagree (a comparison stopped 'equivalent'
    may read 'worse' there), so the reader must know which ones keep their error rate. Nothing
    when the verdicts below answer another question (`metric` or `baseline` other than the
    looks' own), and "undecided" while a comparison still continues."""
    record = read_record(path)
    if record is None:
        return []
    plan = record.get("plan") or {}
    if (metric is not None and plan.get("metric") not in (None, metric)) or \
            (baseline is not None and plan.get("baseline") not in (None, baseline)):
        return []
    decided = "; ".join(f"{c['arm']} vs {c['baseline']}: {c['decision']} after {c['n']} paired seeds"
                        for c in record["comparisons"])
    if record.get("next_look") is not None or any(c.get("decision") == "continue" for c in record["comparisons"]):
        return [f"This study runs until decided (--until-decided, {SEQUENTIAL_FILE}) and is undecided so far: "
                f"{decided}.",
                "The fixed-n verdicts below ignore the looks: their p-values are too small for a study that "
                "stops on them; read them as a description until the looks decide."]
    return [f"This study ran until decided (--until-decided, {SEQUENTIAL_FILE}); its decisions, valid over "
            f"the looks: {decided}.",
            "The fixed-n verdicts below ignore the looks that decided when to stop: their p-values are "
            "too small after stopping on them; read them as a description, the decisions above as the answer."]
