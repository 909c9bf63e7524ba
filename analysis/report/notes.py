"""The report's "Notes raised by the analysis": one bullet per kind of note, not per comparison.

Notes are raised per comparison, so a study whose newer arms ran fewer seeds gets the same
"paired on seeds ...; seeds ... dropped" note for every pair that involves one of them, each
with 20-odd seeds spelt out. `group_notes` merges notes of one kind into one bullet that lists
the arms and comparisons compactly, and writes every list of seeds as ranges ("10–31"). It
reads the fields of each `Note` (kind, comparison, seeds), never its sentence back.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from analysis.report.tables import seed_ranges
from analysis.types import Note

__all__ = ["compact_int_lists", "group_notes"]

_INT_LIST = re.compile(r"\[(\d+(?:, \d+)+)\]")


def compact_int_lists(text: str) -> str:
    """Every list of two or more integers in `text` as ranges: ``[0, 1, 2, 5]`` -> ``0–2, 5``."""
    return _INT_LIST.sub(lambda m: seed_ranges(int(x) for x in m.group(1).split(", ")), text)


def _code_list(names: Sequence[str]) -> str:
    return ", ".join(f"`{n}`" for n in names)


def _pair(note: Note) -> str:
    return " vs ".join(f"`{a}`" for a in note.arms)


def _pairing_bullets(found: list[Note]) -> list[str]:
    """One bullet per (seeds kept, seeds dropped) for the "pairing" notes."""
    groups: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
    for n in found:
        key = (seed_ranges(n.seeds), seed_ranges(n.dropped))
        arms, pairs = groups.setdefault(key, ([], []))
        arms += [a for a in n.missing if a not in arms]
        pairs.append(_pair(n))
    out = []
    for (kept, lost), (arms, pairs) in groups.items():
        who = f"{_code_list(arms)} {'has' if len(arms) == 1 else 'have'} " if arms else ""
        out.append(f"{who}no runs for seeds {lost}, so the {len(pairs)} paired "
                   f"comparison{'s' if len(pairs) != 1 else ''} involving "
                   f"{'it' if len(arms) == 1 else 'them'} use seeds {kept} only: "
                   + ", ".join(pairs) + ".")
    return out


def group_notes(notes: Sequence[Note]) -> list[str]:
    """`notes` as bullets with repeats merged: one bullet per kind, in order of first appearance.

    "pairing" notes become one bullet per set of dropped seeds, naming the arms without
    them; a comparison's own note (one with `arms`) repeated for several comparisons becomes
    one bullet that lists them; everything else is kept, with integer lists compacted to
    ranges.
    """
    pairing: list[Note] = []
    per_text: dict[str, list[str]] = {}
    slots: list[tuple[str, str]] = []  # (kind, key) in order of first appearance
    for note in dict.fromkeys(notes):  # the same note raised twice is one bullet
        if note.kind == "pairing":
            if not pairing:
                slots.append(("pairing", ""))
            pairing.append(note)
        elif note.arms:
            text = compact_int_lists(note.text)
            if text not in per_text:
                per_text[text] = []
                slots.append(("comparison", text))
            if _pair(note) not in per_text[text]:
                per_text[text].append(_pair(note))
        elif ("plain", text := compact_int_lists(note.text)) not in slots:
            slots.append(("plain", text))
    out: list[str] = []
    for kind, key in slots:
        if kind == "pairing":
            out += _pairing_bullets(pairing)
        elif kind == "comparison":
            out.append(", ".join(per_text[key]) + ": " + key)
        else:
            out.append(key)
    return out
