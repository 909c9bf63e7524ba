"""The report's "Notes raised by the analysis": one bullet per kind of note, not per comparison.

Warnings are raised per comparison, so a study whose newer arms ran fewer seeds gets the same
"paired on seeds ...; seeds ... dropped" sentence for every pair that involves one of them, each
with 20-odd seeds spelt out. `group_notes` merges notes of one kind into one bullet that lists
the arms and comparisons compactly, and writes every list of seeds as ranges ("10–31").
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence

from .tables import seed_ranges

__all__ = ["compact_int_lists", "group_notes"]

_INT_LIST = re.compile(r"\[(\d+(?:, \d+)+)\]")
# analysis.load's warning when two arms were run on different seeds (one per comparison).
_PAIRING = re.compile(r"^(?P<a>\S+) vs (?P<b>\S+): paired on seeds \[(?P<kept>[\d, ]*)\]; "
                      r"seeds \[(?P<lost>[\d, ]*)\] dropped because these arms have no value "
                      r"for them: (?P<missing>\{.*\})$")
# analysis.report_methods' prefix for a comparison's own note.
_PER_COMPARISON = re.compile(r"^(?P<pair>`[^`]+` vs `[^`]+`): (?P<text>.+)$")


def _ints(text: str) -> list[int]:
    return [int(x) for x in re.findall(r"\d+", text)]


def compact_int_lists(text: str) -> str:
    """Every list of two or more integers in `text` as ranges: ``[0, 1, 2, 5]`` -> ``0–2, 5``."""
    return _INT_LIST.sub(lambda m: seed_ranges(_ints(m.group(1))), text)


def _code_list(names: Sequence[str]) -> str:
    return ", ".join(f"`{n}`" for n in names)


def _pairing_bullets(found: list[re.Match]) -> list[str]:
    """One bullet per (seeds kept, seeds dropped) for the pairing warnings."""
    groups: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
    for m in found:
        try:
            missing = ast.literal_eval(m["missing"])
        except (ValueError, SyntaxError):
            missing = {}
        key = (seed_ranges(_ints(m["kept"])), seed_ranges(_ints(m["lost"])))
        arms, pairs = groups.setdefault(key, ([], []))
        arms += [a for a in (missing if isinstance(missing, dict) else {}) if a not in arms]
        pairs.append(f"`{m['a']}` vs `{m['b']}`")
    out = []
    for (kept, lost), (arms, pairs) in groups.items():
        who = f"{_code_list(arms)} {'has' if len(arms) == 1 else 'have'} " if arms else ""
        out.append(f"{who}no runs for seeds {lost}, so the {len(pairs)} paired "
                   f"comparison{'s' if len(pairs) != 1 else ''} involving "
                   f"{'it' if len(arms) == 1 else 'them'} use seeds {kept} only: "
                   + ", ".join(pairs) + ".")
    return out


def group_notes(notes: Sequence[str]) -> list[str]:
    """`notes` with repeats merged: one bullet per kind, in order of first appearance.

    Pairing warnings become one bullet per set of dropped seeds, naming the arms without
    them; a comparison's own note repeated for several comparisons becomes one bullet that
    lists them; everything else is kept, with integer lists compacted to ranges.
    """
    out: list[str] = []
    pairing: list[re.Match] = []
    per_text: dict[str, list[str]] = {}
    slots: list[tuple[str, str]] = []  # (kind, key) in order of first appearance
    for note in notes:
        if m := _PAIRING.match(note):
            if not pairing:
                slots.append(("pairing", ""))
            pairing.append(m)
        elif m := _PER_COMPARISON.match(note):
            text = compact_int_lists(m["text"])
            if text not in per_text:
                per_text[text] = []
                slots.append(("comparison", text))
            per_text[text].append(m["pair"])
        else:
            text = compact_int_lists(note)
            if ("plain", text) not in slots:
                slots.append(("plain", text))
    for kind, key in slots:
        if kind == "pairing":
            out += _pairing_bullets(pairing)
        elif kind == "comparison":
            out.append(", ".join(per_text[key]) + ": " + key)
        else:
            out.append(key)
    return out
