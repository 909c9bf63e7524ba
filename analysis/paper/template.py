"""The paper's template: `{{placeholder}}`s and their substitution (no number is ever typed)."""

from __future__ import annotations

import re

PLACEHOLDER = re.compile(r"\{\{\s*([\w.\-]+)\s*\}\}")


def render(template: str, numbers: dict[str, str]) -> str:
    missing = sorted({m for m in PLACEHOLDER.findall(template) if m not in numbers})
    if missing:
        raise KeyError(f"placeholders without a computed value: {', '.join(missing)}")
    return PLACEHOLDER.sub(lambda m: numbers[m.group(1)], template)
