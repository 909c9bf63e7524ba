"""What is analysed and how to read it: the metric's direction, scale and chance level, and
the runs table checked before any statistic sees it.

One place owns these rules so the CLI, `compare_arms` and the report agree:

* **Per metric.** Direction, margin and chance are the analysed metric's own: for the
  study's analysis metric, study.json's ``analysis`` keys; for any other (``--metric X``),
  its entry under ``analysis.metrics``. Another metric never borrows the study's direction
  or margin (a test_loss read as higher-is-better, or judged with an accuracy's margin).
* **Direction.** ``--direction``, else the declared one, else what the metric's name says
  (`analysis.stats.direction`, with a note unless it is an ``*_acc``); a name that says nothing is
  an error that says how to declare it: calling a higher loss "better" is the silent wrong
  answer this avoids.
* **Margin.** ``--margin``, else the declared one, else the default 0.5 (with a note when
  the study declared a margin for another metric).
* **Scale.** Metrics named ``*_acc`` are percentages in this project. A percentage outside
  [0, 100] is rejected. Any metric whose values all lie in [0, 1] while the equivalence
  margin is >= 0.5 is rejected: a margin of half the metric's whole range makes almost any
  two arms "equivalent" (accuracies given as fractions with the default 0.5-point margin).
  Both are errors, not warnings, because the verdict they lead to would be wrong, and the
  fix (rescale, or pass ``--margin`` in the metric's units) is one flag away.
* **Infinities and overflow.** A complete run's value of infinity in the metric's *good*
  direction (+inf where higher is better) is an error: it is neither an infinitely good run
  nor, silently, a diverged one. In the bad direction it is a run that blew up (a loss of
  +inf: "diverged"), except on a bounded scale: an ``*_acc`` percentage is never infinite,
  so any infinity there is out of [0, 100]. Finite values beyond 1e150 in size are an error
  too: their squared deviations overflow double precision (1.8e308) and every statistic
  would come out infinite.
* **Chance.** ``analysis.chance`` (metric units) if given; else, for ``*_acc`` metrics, 100
  divided by the number of classes in the study's test_labels.npy; else unknown.
* **The runs table.** Needs ``arm``, ``seed`` and the metric; ``status`` is optional (absent:
  every run complete). Duplicate (arm, seed) rows and non-numeric metric values are errors
  that name the rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.contract import ANALYSIS_DEFAULTS, COMPLETE, FAILED, FAILURE_POPULATIONS, METRIC_KEYS
from analysis.stats import direction as directions
from analysis.types import Note

POPULATIONS = FAILURE_POPULATIONS
DEFAULT_PLAN = dict(ANALYSIS_DEFAULTS)


@dataclass(frozen=True)
class MetricPlan:
    """The analysis plan after defaults, overrides and inference (see the module docstring)."""

    metric: str
    baseline: str
    alpha: float
    margin: float
    direction: str  # "maximize" or "minimize"
    chance: float | None  # the metric's value for a model that learned nothing; None: unknown
    chance_source: str  # where `chance` came from, for the report
    population: str  # "all" runs (failures scored) or only runs that "learned"
    notes: tuple[Note, ...] = ()  # "plan" notes (defaults taken), "units" (mixed units)
    mixed_units: str | None = None  # set by `check_scale` when the values mix fractions and percent

    @property
    def percent(self) -> bool:
        return self.metric.endswith("_acc")

    def better(self, diff: float) -> bool:
        return directions.sign(self.direction) * diff > 0


def _number(value, name: str, *, low: float | None = None, high: float | None = None) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a number, got {value!r}") from None
    if not math.isfinite(v) or (low is not None and v <= low) or (high is not None and v >= high):
        bounds = f" in ({low:g}, {high:g})" if high is not None else f" > {low:g}" if low is not None else ""
        raise ValueError(f"`{name}` must be a finite number{bounds}, got {value!r}")
    return v


def resolve_plan(meta: dict | None, *, path: Path | None = None, metric=None, baseline=None,
                 alpha=None, margin=None, direction=None, chance=None,
                 population=None) -> MetricPlan:
    """The plan: study.json's ``analysis`` section (read with defaults, so studies written
    before ``direction``/``chance`` existed still work) with the given overrides on top; the
    metric's direction, margin and chance are its own (module docstring). Raises
    ValueError for an undeclared direction the metric's name does not give."""
    declared = dict((meta or {}).get("analysis") or {})
    plan = {**DEFAULT_PLAN, **{k: v for k, v in declared.items() if v is not None}}
    metric = str(metric or plan["metric"])
    own = declared_for(declared, metric)
    baseline = str(baseline or plan["baseline"])
    alpha = _number(plan["alpha"] if alpha is None else alpha, "alpha", low=0, high=0.5)
    notes: list[Note] = []
    if margin is None and "margin" not in own and "margin" in declared:
        notes.append(Note(f"no margin declared for `{metric}`: the default {DEFAULT_PLAN['margin']:g} "
                          f"is used, not `{plan['metric']}`'s (declare [analysis.metrics."
                          f"{directions.toml_key(metric)}] margin in the spec or pass --margin)",
                          kind="plan"))
    margin = _number(own.get("margin", DEFAULT_PLAN["margin"]) if margin is None else margin,
                     "margin", low=0)
    direction = direction or own.get("direction")
    if direction is None:
        direction = directions.resolve(metric)
        if not metric.endswith("_acc"):
            notes.append(Note(f"no direction declared for `{metric}`; its name says so, "
                              f"{'higher' if direction == 'maximize' else 'lower'} is taken as better "
                              "(declare `direction` in the plan or pass --direction to change this)",
                              kind="plan"))
    directions.sign(direction)  # a declared or given direction is one of the two
    population = population or declared.get("failures") or "all"
    if population not in POPULATIONS:
        raise ValueError(f"`failures` must be 'all' or 'learned', got {population!r}")
    source = "unknown"
    if chance is not None:
        chance, source = _number(chance, "chance"), "given on the command line"
    elif own.get("chance") is not None:
        chance, source = _number(own["chance"], "chance"), "the analysis plan (study.json)"
    elif metric.endswith("_acc") and path is not None:
        classes = _n_classes(path)
        if classes:
            chance = 100.0 / classes
            source = f"100 / {classes} classes in test_labels.npy"
    return MetricPlan(metric=metric, baseline=baseline, alpha=alpha, margin=margin,
                      direction=direction, chance=chance, chance_source=source,
                      population=population, notes=tuple(notes))


def declared_for(declared: dict, metric: str) -> dict:
    """What study.json's ``analysis`` declares for `metric`: its entry under ``metrics`` and,
    for the study's analysis metric, the section's own direction, margin and chance."""
    entries = declared.get("metrics")
    own = dict(entries.get(metric) or {}) if isinstance(entries, dict) else {}
    if metric == str(declared.get("metric") or DEFAULT_PLAN["metric"]):
        own.update({k: declared[k] for k in METRIC_KEYS if declared.get(k) is not None})
    return {k: own[k] for k in METRIC_KEYS if own.get(k) is not None}


def _n_classes(path: Path) -> int | None:
    labels = path / "test_labels.npy"
    if not labels.exists():
        return None
    try:
        y = np.load(labels, allow_pickle=False)
    except (OSError, ValueError):
        return None
    return int(len(np.unique(y))) if y.size else None


def check_runs(runs: pd.DataFrame, metric: str, source: str = "the runs table") -> pd.DataFrame:
    """The runs table, checked and normalised: ``arm`` as text, ``seed`` as int, ``status``
    (filled with "complete" when absent), the metric as float. Raises ValueError with one
    line naming the column or the rows at fault."""
    for col in ("arm", "seed"):
        if col not in runs.columns:
            raise ValueError(f"{source} has no `{col}` column (columns: "
                             f"{', '.join(map(str, runs.columns)) or 'none'})")
    if metric not in runs.columns:
        raise ValueError(f"`metric` {metric!r} is not a column of {source} (columns: "
                         f"{', '.join(map(str, runs.columns))})")
    out = runs.copy()
    empty = out["arm"].isna() | (out["arm"].astype(str).str.strip() == "")  # an arm "None" is a name
    if empty.any():
        raise ValueError(f"{source}: `arm` is empty in row(s) {_rows(empty)}")
    out["arm"] = out["arm"].astype(str)
    seed = pd.to_numeric(out["seed"], errors="coerce")
    bad = seed.isna() | (seed.fillna(0) % 1 != 0)
    if bad.any():
        raise ValueError(f"{source}: `seed` must be an integer; not in row(s) {_rows(bad)}")
    out["seed"] = seed.astype(int)
    out["status"] = (out["status"].fillna(COMPLETE).astype(str).str.strip().str.lower()
                     if "status" in out.columns else COMPLETE)
    value = pd.to_numeric(out[metric], errors="coerce")
    text = value.isna() & out[metric].notna()
    if text.any():
        raise ValueError(f"{source}: `{metric}` is not a number in row(s) {_rows(text)} "
                         f"(e.g. {out.loc[text, metric].iloc[0]!r})")
    out[metric] = value.astype(float)
    kept = _latest_attempts(out).to_numpy()
    dup = out[kept].duplicated(["arm", "seed"], keep=False).to_numpy()
    if dup.any():
        at = np.zeros(len(out), dtype=bool)
        at[np.flatnonzero(kept)[dup]] = True  # the rows as the file numbers them
        pairs = sorted({(a, int(s)) for a, s in out.loc[at, ["arm", "seed"]].itertuples(index=False)})
        raise ValueError(f"{source}: {len(pairs)} (arm, seed) pair(s) appear more than once, "
                         f"in row(s) {_rows(pd.Series(at))}: " + ", ".join(f"{a} seed {s}" for a, s in pairs[:5])
                         + ("…" if len(pairs) > 5 else "") + "; keep one row per run")
    return out[kept].reset_index(drop=True)


def _latest_attempts(runs: pd.DataFrame) -> pd.Series:
    """Which rows stand for their run. A run that failed (an exception) is retried by the next
    invocation, and runs.csv keeps every attempt: a failed attempt is superseded by the same
    (arm, seed)'s stored outcome, and of attempts that all failed the last one stands."""
    failed = runs["status"] == FAILED
    key = ["arm", "seed"]
    outcome = runs.loc[~failed, key].drop_duplicates()
    superseded = failed & runs.set_index(key).index.isin(outcome.set_index(key).index)
    repeated = failed & runs.duplicated(key, keep="last") & ~superseded
    return ~(superseded | repeated)


def _rows(mask: pd.Series) -> str:
    """Row numbers as a spreadsheet shows them (header = row 1), at most six."""
    rows = [int(i) + 2 for i in np.flatnonzero(mask.to_numpy())]
    return ", ".join(map(str, rows[:6])) + ("…" if len(rows) > 6 else "")


def check_scale(values: pd.Series, plan: MetricPlan) -> MetricPlan:
    """Reject values that cannot be in the metric's declared scale (module docstring); the
    plan back, with a chance level derived from the classes rescaled when an ``*_acc``
    metric is given as fractions with a margin in the same units, and a note when the
    values mix fractions and percent (`mixed_units`)."""
    check_magnitude(values, plan)
    v = values[np.isfinite(values.to_numpy(dtype=float))]
    if v.empty:
        return plan
    lo, hi = float(v.min()), float(v.max())
    mixed = mixed_units(v.to_numpy(dtype=float), plan.metric)
    if mixed:
        plan = replace(plan, notes=(*plan.notes, Note(mixed, kind="units")), mixed_units=mixed)
    if plan.percent and (lo < 0 or hi > 100):
        raise ValueError(f"`{plan.metric}` is a percentage in seedwise (*_acc), but its values "
                         f"range from {lo:g} to {hi:g}, outside [0, 100]; rescale it")
    if lo >= 0 and hi <= 1 and plan.margin >= 0.5:
        # the default margin is a 0.5-point accuracy margin: say so, since most who meet this
        # never chose it, and offer percent only where the metric is one (*_acc)
        default = " (the default, when none is declared)" if plan.margin == DEFAULT_PLAN["margin"] else ""
        raise ValueError(f"every value of `{plan.metric}` lies in [0, 1] but the equivalence "
                         f"margin is {plan.margin:g}{default}, half the whole range: almost any two arms "
                         "would be 'equivalent'. Give the margin in the metric's units: `margin = 0.005` "
                         f"(say) under [analysis] in the spec, or --margin"
                         + (", or give accuracies in percent" if plan.percent else ""))
    if plan.percent and hi <= 1 and plan.chance is not None and "classes" in plan.chance_source:
        return replace(plan, chance=plan.chance / 100,
                       chance_source=plan.chance_source.replace("100 /", "1 /")
                       + " (the values are fractions)",
                       notes=(*plan.notes, Note(f"`{plan.metric}` is given as fractions in [0, 1], "
                                                "not percent; the margin is read in the same units",
                                                kind="plan")))
    return plan


OVERFLOW = 1e150  # beyond this, (x - mean)^2 overflows a double (max ~1.8e308)


def check_magnitude(values: pd.Series, plan: MetricPlan) -> None:
    """Reject infinities that cannot mean "diverged" and values too large to square (module
    docstring); `values` are complete runs' values, indexed by their row in the table."""
    x = values.to_numpy(dtype=float)
    good = np.inf * directions.sign(plan.direction)
    where = {"+inf" if good > 0 else "-inf": x == good} if not plan.percent else {
        "+inf": x == np.inf, "-inf": x == -np.inf}
    for text, mask in where.items():
        if mask.any():
            why = ("a percentage in seedwise (*_acc) lies in [0, 100]" if plan.percent else
                   f"where {directions.better_words(plan.direction)}, that would be an infinitely "
                   "good run, and it is not marked diverged")
            raise ValueError(f"`{plan.metric}` is {text} in complete run(s) at row(s) "
                             f"{_index_rows(values, mask)}: {why}; record a run that blew up "
                             "with an empty value or status `diverged`, or fix the value")
    big = np.isfinite(x) & (np.abs(x) > OVERFLOW)
    if big.any():
        largest = float(np.abs(x[big]).max())
        raise ValueError(f"`{plan.metric}` has values as large as {largest:.3g} (row(s) "
                         f"{_index_rows(values, big)}): beyond {OVERFLOW:.0e} their squared "
                         "deviations overflow double precision and no statistic can be "
                         f"computed; rescale the column (e.g. divide it by {largest / 1e3:.0e})")


def _index_rows(values: pd.Series, mask: np.ndarray) -> str:
    """Row numbers as a spreadsheet shows them, from the index of a subset of the table."""
    rows = [str(int(i) + 2) if isinstance(i, int | np.integer) else str(i)
            for i in values.index[mask]]
    return ", ".join(rows[:6]) + ("…" if len(rows) > 6 else "")


def mixed_units(values: np.ndarray, metric: str) -> str | None:
    """A warning when `metric`'s values look like fractions in some runs and percent in others
    (0.75 here, 75.0 there), else None. Both groups must be present in [0, 100], an order of
    magnitude apart with nothing between them, and the percent group divided by 100 must
    fall among the fractions: a loss spread from 0.4 to 3 is one unit, not two."""
    v = values[np.isfinite(values)]
    if v.size < 2 or v.min() < 0 or v.max() > 100:
        return None
    small, large = v[v <= 1], v[v > 1]
    if not small.size or not large.size or large.min() < 10 * small.max():
        return None
    rescaled = large / 100
    if rescaled.max() < small.min() / 2 or rescaled.min() > 2 * small.max():
        return None
    return (f"`{metric}` mixes units: {small.size} run(s) lie between 0 and 1 ({small.min():.4g} to "
            f"{small.max():.4g}) and {large.size} between 1 and 100 ({large.min():.4g} to {large.max():.4g}), "
            "as if some runs recorded fractions and others percent; means, intervals and "
            "verdicts mix the two. Record one unit in every run (e.g. the fractions times 100)")
