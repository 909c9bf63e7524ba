"""How every number is written: reports, the paper, figures and the command lines.

One rule per kind of number, so a difference, an interval or a p-value reads the same wherever
it appears, and a change of style is made here once:

- `number`: fixed decimals (accuracies, differences in points, sds); never "-0.00", and a
  value too small for its decimals (a learning rate 0.001388) in significant digits instead.
- `interval`: ``[low, high]`` of two `number`\\ s.
- `significant`: significant digits (statistics in prose and on the terminal: p, t, sd).
- `p_value`: p in tables and figures: 3 decimals down to 0.001, then 2 significant digits.
- `p_relation`: p in the paper's sentences, with its relation: ``= 0.004``, ``< 0.0001``.
- `percent`: a share in [0, 1] as a percentage.
- `count`: a count with thousands separators; other values as Python's ``g`` writes them.
- `duration`: seconds as s, min or h, whichever keeps the digits readable.

Every function writes a missing value (None, NaN) as `missing` ("n/a" unless told). Negative
numbers take an ASCII minus (the terminal, the paper's Markdown, prose) unless the caller asks
for the typographic one, ``minus=MINUS``, as the report's tables and figures do.
"""

from __future__ import annotations

import math
import re

__all__ = ["MINUS", "count", "duration", "interval", "is_missing", "number", "p_relation", "p_value",
           "percent", "significant"]

MINUS = "\u2212"  # the typographic minus of the report's tables and text


def is_missing(x) -> bool:
    """None or NaN (or ±inf): no number to write. Non-numbers are not missing."""
    if x is None:
        return True
    try:
        return not math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def number(x, digits: int = 2, *, signed: bool = False, minus: str = "-",
           missing: str = "n/a") -> str:
    """``x`` with `digits` decimals; ``+`` when `signed`; ±inf as ∞; no "-0.00".

    A non-zero value that `digits` decimals would print as zero is written to 3 significant
    digits instead (``0.001388`` -> ``0.00139``, not ``0.00``): a number is never shown as a
    value it is not."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return missing
    x = float(x)
    if math.isinf(x):
        return ("+" if signed and x > 0 else "") + ("∞" if x > 0 else minus + "∞")
    if x != 0 and abs(x) < 0.5 * 10.0 ** -digits:
        return significant(x, signed=signed).replace("-", minus)
    text = f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"
    if re.fullmatch(r"[+-]?0\.?0*", text):  # a value that rounds to zero has no sign to show
        text = ("+" if signed else "") + text.lstrip("+-")
    return text.replace("-", minus)


def interval(low, high, digits: int = 2, *, signed: bool = False, minus: str = "-",
             missing: str = "n/a") -> str:
    """``[low, high]``, each a `number`; `missing` when either end is."""
    if is_missing(low) or is_missing(high):
        return missing
    return (f"[{number(low, digits, signed=signed, minus=minus)}, "
            f"{number(high, digits, signed=signed, minus=minus)}]")


def significant(x, digits: int = 3, *, signed: bool = False, missing: str = "n/a") -> str:
    """``x`` to `digits` significant digits (Python's ``g``); `missing` when not finite."""
    if is_missing(x):
        return missing
    return f"{float(x):+.{digits}g}" if signed else f"{float(x):.{digits}g}"


def param_value(v) -> str:
    """A hyperparameter as reports write it: a float to 3 significant digits (``0.0404``),
    anything else as is (``6``)."""
    return significant(v) if isinstance(v, float) else str(v)


def p_value(p, *, minus: str = "-") -> str:
    """p in a table or figure: ``0.012``, then ``1.7e−6`` below 0.001; ``0`` when exactly 0."""
    if is_missing(p):
        return "n/a"
    p = float(p)
    if p == 0:
        return "0"
    if p >= 0.001:
        return f"{p:.3f}"
    mant, exp = f"{p:.1e}".split("e")
    return f"{mant}e{minus}{int(exp[1:])}" if exp.startswith("-") else f"{mant}e{int(exp)}"


def p_relation(p) -> str:
    """p with its relation, for a sentence "p {relation}": ``= 0.004``, ``< 0.0001``."""
    return "< 0.0001" if p < 1e-4 else f"= {p:.2g}" if p < 0.01 else f"= {p:.3f}"


def percent(share, digits: int = 0, *, missing: str = "n/a") -> str:
    """A share in [0, 1] as a percentage: ``0.25`` -> ``25%``."""
    if is_missing(share):
        return missing
    return f"{float(share):.{digits}%}"


def duration(seconds, *, missing: str = "n/a") -> str:
    """A duration: ``42 s``, ``5.5 min``, from 0.1 h on ``0.55 h`` (a study's training time
    reads in hours; a few seconds of a numpy experiment must not read ``0.00 h``)."""
    if is_missing(seconds):
        return missing
    s = float(seconds)
    if abs(s) < 60:
        return f"{significant(s)} s"
    if abs(s) < 360:
        return f"{significant(s / 60, 2)} min"
    return f"{number(s / 3600)} h"


def count(x) -> str:
    """A count with thousands separators (``45,000``); a float as ``g`` writes it (``0.1``)."""
    if isinstance(x, int) and not isinstance(x, bool):
        return f"{x:,}"
    return f"{x:g}" if isinstance(x, float) else str(x)
