"""Input validation and the degenerate-data warning shared by all modules.

Every public function validates its inputs here so that error messages name
the offending parameter, and so that NaN handling is identical everywhere:
NaN means "this seed/run is missing" and is dropped with a warning, while
+/-inf is always a bug upstream and raises.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from analysis.types import Note


class NoteWarning(UserWarning):
    """A warning that carries its `Note`, so that code catching it reads the note's fields
    (``caught.message.note``), not its text. Raised with a `Note` or with a plain message
    (a "data" note)."""

    def __init__(self, message: Note | str):
        self.note = message if isinstance(message, Note) else Note(str(message))
        super().__init__(self.note.text)


def note_of(message: Warning | str) -> Note:
    """The `Note` a caught warning carries (any other warning: a "data" note of its text)."""
    found = getattr(message, "note", None)
    return found if isinstance(found, Note) else Note(str(message))


def unique_notes(items: Iterable[Note]) -> list[Note]:
    """`items` with repeats (the same note raised twice) dropped, first-seen order kept."""
    return list(dict.fromkeys(n for n in items if n.text))


@contextmanager
def collect_notes() -> Iterator[list[Note]]:
    """Catch the warnings raised inside the block as `Note`s, each once, in order: the one
    way the CLI, the report and the runner turn an analysis' warnings into notes. The list
    is filled when the block ends, also when it ends with an exception (the notes raised
    before it are kept).

        with collect_notes() as notes:
            family = compare_arms(study)
    """
    found: list[Note] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield found
        finally:
            found.extend(unique_notes(note_of(w.message) for w in caught))


class DegenerateDataWarning(NoteWarning):
    """The data can be analysed, but only in a degraded way.

    Raised for fewer than two values, zero variance, or dropped NaNs. The
    affected result fields are set to ``None`` (never to a silent NaN) and the
    same text is recorded in the result's ``notes``.
    """


class TooFewValues(ValueError):
    """Fewer finite values than a test needs: the comparison cannot be made (a degenerate
    arm), as opposed to a malformed argument. `compare_family` skips such a comparison
    and says so, instead of failing the whole family."""


def note(message: str, notes: list[Note] | None = None, *, stacklevel: int = 3) -> None:
    """Warn with `message` and also record it in `notes` (the result's notes) as a "data" note."""
    warnings.warn(DegenerateDataWarning(message), stacklevel=stacklevel)
    if notes is not None:
        notes.append(Note(message))


def note_text(message: str, notes: list[str], *, stacklevel: int = 3) -> None:
    """`note` for the results whose notes are still plain text (variance components, the
    sequential looks)."""
    warnings.warn(DegenerateDataWarning(message), stacklevel=stacklevel)
    notes.append(message)


def as_rng(rng: np.random.Generator | int | np.random.SeedSequence) -> np.random.Generator:
    """Accept a Generator or a seed, as scipy does; `rng` is always explicit."""
    return np.random.default_rng(rng)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def as_float_1d(values, name: str) -> np.ndarray:
    """Convert to a 1-D float array; raise naming `name` if that is impossible."""
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"`{name}` must be a 1-D array of numbers") from exc
    if arr.ndim != 1:
        raise ValueError(f"`{name}` must be a 1-D array of numbers, got shape {arr.shape}")
    if np.isinf(arr).any():
        raise ValueError(f"`{name}` contains infinite values; fix them upstream")
    return arr


def require_n(arr: np.ndarray, name: str, min_n: int) -> None:
    if arr.size < min_n:
        raise TooFewValues(
            f"`{name}` must contain at least {_plural(min_n, 'finite number')}, got {arr.size}"
        )


def clean_1d(values, name: str, notes: list[Note], *, min_n: int = 1) -> np.ndarray:
    """Drop NaNs (with a warning) and require at least `min_n` finite values."""
    arr = as_float_1d(values, name)
    nan = np.isnan(arr)
    if nan.any():
        note(f"dropped {_plural(int(nan.sum()), 'NaN value')} from `{name}`", notes, stacklevel=4)
        arr = arr[~nan]
    require_n(arr, name, min_n)
    return arr


def clean_pairs(
    a, b, names: Sequence[str], notes: list[Note], *, min_n: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Paired data: equal lengths, and a pair is dropped if either side is NaN."""
    x = as_float_1d(a, names[0])
    y = as_float_1d(b, names[1])
    if x.size != y.size:
        raise ValueError(
            f"`{names[0]}` and `{names[1]}` must have the same length when paired=True "
            f"(seed i of one arm is paired with seed i of the other), got {x.size} and {y.size}"
        )
    nan = np.isnan(x) | np.isnan(y)
    if nan.any():
        note(
            f"dropped {_plural(int(nan.sum()), 'seed pair')} with NaN in "
            f"`{names[0]}` or `{names[1]}`",
            notes,
            stacklevel=4,
        )
        x, y = x[~nan], y[~nan]
    if x.size < min_n:
        raise TooFewValues(
            f"`{names[0]}` and `{names[1]}` must contain at least "
            f"{_plural(min_n, 'finite pair')}, got {x.size}"
        )
    return x, y


def negligible_spread(values: np.ndarray) -> bool:
    """True when `values` do not vary beyond float round-off (relative 1e-9 of their size):
    e.g. the per-seed differences of two arms that ran the same thing. A t statistic over
    such a spread is an artefact of round-off, not of the data."""
    if values.size == 0:
        return True
    scale = max(1.0, float(np.max(np.abs(values))))
    return bool(np.ptp(values) <= 1e-9 * scale)


def check_probability(value: float, name: str) -> float:
    """Levels such as `alpha`, `power` and `confidence` must lie strictly in (0, 1)."""
    if not (isinstance(value, (int, float, np.floating)) and 0.0 < float(value) < 1.0):
        raise ValueError(f"`{name}` must be a number strictly between 0 and 1, got {value!r}")
    return float(value)


def check_positive(value: float, name: str) -> float:
    if not (isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(value)
            and value > 0):
        raise ValueError(f"`{name}` must be a finite number > 0, got {value!r}")
    return float(value)


def check_count(value: object, name: str, *, minimum: int = 1) -> int:  # validates any input
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_bool(value: bool, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"`{name}` must be True or False, got {value!r}")
    return bool(value)


def holm(pvalues) -> np.ndarray:
    """Holm-adjusted p-values, in the input order: the same numbers as statsmodels'
    ``multipletests(p, method="holm")[1]`` (the tests check that), without the
    ``gc.collect()`` statsmodels runs on every call (50 ms: it dominated simulations)."""
    p = np.asarray(pvalues, dtype=float)
    order = np.argsort(p, kind="stable")
    adjusted = np.maximum.accumulate(p[order] * np.arange(p.size, 0, -1))
    out = np.empty_like(p)
    out[order] = np.minimum(adjusted, 1.0)
    return out
