"""Read a study's tidy outputs (runs.csv, epochs.csv, study.json, predictions) into frames.

Loading is the only I/O in `analysis` besides the report writer; the statistics themselves are
pure functions over arrays. `compare_arms` turns a study's runs into a Holm-corrected family
of comparisons, pairing arms by seed per comparison, with failures counted as outcomes
(`analysis.stats.failures`) and the metric's direction and scale checked (`analysis.stats.metric_plan`).

Any CSV with columns ``arm, seed, <metric>`` (``status`` optional) is a study: a file named
runs.csv is read with the study.json / epochs.csv beside it; any other file on its own.
"""

from __future__ import annotations

import itertools
import json
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from analysis._checks import NoteWarning
from analysis.contract import COMPLETE, DB_FILE, FAILED, default_storage, read_table, seed_streams
from analysis.stats.describe import describe
from analysis.stats.failures import classify, compare_outcomes, mixes, scored, why_unjudged
from analysis.stats.family import Family, compare_family
from analysis.stats.metric_plan import MetricPlan, check_runs, check_scale, resolve_plan
from analysis.stats.power import seeds_needed
from analysis.types import Note, TestResult


def config_examples(metric: str, config: dict) -> int | None:
    """Examples behind one run's `metric` as a config counts them (`test_size` / `val_size` as an
    integer: a user's fraction such as test_size = 0.3 is a split, not a count, and gives None)."""
    key = {"test_acc": "test_size", "val_acc": "val_size"}.get(metric)
    value = config.get(key) if key else None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


class StudyNotFound(FileNotFoundError):
    """The path holds no seedwise study outputs; the message says what was expected."""


@dataclass(frozen=True)
class StudyData:
    path: Path  # results/<study>/
    runs: pd.DataFrame
    epochs: pd.DataFrame
    meta: dict = field(default_factory=dict)  # study.json (empty when only runs.csv was given)
    runs_path: Path | None = None  # the runs table read (runs.csv, or the user's CSV)

    @property
    def name(self) -> str:
        if self.meta.get("study"):
            return str(self.meta["study"])
        if self.runs_path is not None and self.runs_path.name != "runs.csv":
            return self.runs_path.stem
        return self.path.name

    @property
    def seed_streams(self) -> dict[str, str]:
        """What runs with the same seed share: `analysis.contract.seed_streams` of study.json."""
        return seed_streams(self.meta)

    @property
    def runs_file(self) -> str:
        return str(self.runs_path or self.path / "runs.csv")

    def metric_plan(self, **overrides) -> MetricPlan:
        """`analysis.stats.metric_plan.resolve_plan` of this study's study.json, with `overrides`. With no
        baseline declared anywhere and no arm called "baseline", the first arm of the table
        is the baseline (a plain user CSV), and a note says so."""
        plan = resolve_plan(self.meta, path=self.path, **overrides)
        declared = overrides.get("baseline") or (self.meta.get("analysis") or {}).get("baseline")
        arms = self.arms()
        if not declared and plan.baseline not in arms and arms:
            first = str(self.runs["arm"].dropna().astype(str).iloc[0])
            plan = replace(plan, baseline=first, notes=(
                *plan.notes, Note(f"no baseline declared and no arm named 'baseline': using the "
                                  f"first arm of the table, {first!r} (pass --baseline to choose)",
                                  kind="plan")))
        return plan

    def n_test(self, metric: str) -> int | None:
        """Examples behind one run's `metric` (test_acc/val_acc): for "did not learn" and the
        test-set noise paragraph. The stored test labels count the scored test images; else a
        count in the config (`test_size` / `val_size` as an integer: a user's fraction such as
        test_size = 0.3 is a split, not a count, and gives None)."""
        labels = self.path / "test_labels.npy"
        if metric == "test_acc" and labels.exists():
            try:
                return int(np.load(labels, allow_pickle=False).size) or None
            except (OSError, ValueError):
                pass
        return config_examples(metric, self.meta.get("arms", {}).get(self.plan["baseline"], {}).get("config") or {})

    def analysed(self, plan: MetricPlan) -> tuple[MetricPlan, pd.DataFrame]:
        """The runs table checked (`check_runs`, `check_scale`: the plan may come back
        reading an *_acc metric as fractions) and classified into outcomes
        (`failures.classify`); raises ValueError naming what is wrong."""
        runs = check_runs(self.runs, plan.metric, self.runs_file)
        plan = check_scale(runs[runs["status"] == COMPLETE][plan.metric], plan)
        return plan, classify(runs, plan, self.n_test(plan.metric))

    @property
    def storage_url(self) -> str | None:
        """The Optuna storage holding this study: study.json's URL (a relative SQLite path is
        tried from the working directory and from the results root's parent), else
        <path>/study.db. None when neither can be found (e.g. a password-redacted URL)."""
        stored = self.meta.get("storage")
        if stored and stored.startswith("sqlite:///"):
            p = Path(stored[len("sqlite:///"):])
            for cand in (p,) if p.is_absolute() else (p, self.path.parent.parent / p):
                if cand.exists():
                    return f"sqlite:///{cand}"
        elif stored and "***" not in stored:
            return stored
        return default_storage(self.path) if (self.path / DB_FILE).exists() else None

    @property
    def plan(self) -> dict:
        return {"metric": "test_acc", "baseline": "baseline", "alpha": 0.05, "margin": 0.5,
                **(self.meta.get("analysis") or {})}

    def arms(self) -> list[str]:
        """Arms in spec order (then any others found in runs.csv)."""
        order = list(self.meta.get("arms", {}))
        found = set(self.runs["arm"].dropna().astype(str)) if "arm" in self.runs else set()
        return order + sorted(found - set(order))

    def correct_matrix(self, arm: str) -> tuple[list[int], np.ndarray] | None:
        """(seeds, runs x test-examples bool matrix of correct predictions) for complete runs of
        `arm`, from the predictions stored as Optuna artifacts; None when unavailable."""
        labels_path = self.path / "test_labels.npy"
        url = self.storage_url
        if url is None or not labels_path.exists():
            return None
        import optuna
        from optuna.artifacts import FileSystemArtifactStore

        from analysis.contract import trial_predictions

        labels = np.load(labels_path, allow_pickle=False)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.load_study(study_name=self.meta.get("study", self.path.name), storage=url)
        artifacts = FileSystemArtifactStore(str(self.path / "artifacts"))
        rows = {}
        for t in study.get_trials(deepcopy=False):
            if t.user_attrs.get("arm") == arm and t.user_attrs.get("status") == COMPLETE:
                pred = trial_predictions(artifacts, t)
                if pred is not None and pred.shape == labels.shape:
                    rows[t.user_attrs["seed"]] = pred == labels
        if not rows:
            return None
        seeds = sorted(rows)
        return seeds, np.stack([rows[s] for s in seeds])

    def correct_rows(self, arm: str, seeds: list[int]) -> np.ndarray | None:
        """Per-example correctness of `arm`'s runs `seeds`, rows in that order (None unless
        every one of them has stored predictions)."""
        found = self.correct_matrix(arm)
        if found is None:
            return None
        rows = dict(zip(found[0], found[1], strict=True))
        return np.stack([rows[s] for s in seeds]) if all(s in rows for s in seeds) else None


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return read_table(path)
    except FileNotFoundError:
        raise StudyNotFound(f"{path} does not exist; run `seedwise run` first") from None
    except pd.errors.EmptyDataError:
        raise StudyNotFound(f"{path} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise StudyNotFound(f"{path} is not a readable CSV file ({str(e).splitlines()[0]})") from None


def load_study(path: str | Path) -> StudyData:
    """Load `results/<study>/`, its runs.csv, or any CSV of runs (``arm, seed, <metric>``)."""
    path = Path(path)
    if path.is_file() and path.name != "runs.csv":  # a user's own table: nothing beside it
        return StudyData(path=path.parent, runs=_read_csv(path), epochs=pd.DataFrame(),
                         runs_path=path)
    if path.is_file():
        path = path.parent
    if not path.is_dir():
        raise StudyNotFound(f"{path} is not a study directory or CSV file (expected "
                            "results/<study>/ with runs.csv, or a CSV with arm, seed, metric)")
    runs = _read_csv(path / "runs.csv")
    epochs = _read_csv(path / "epochs.csv") if (path / "epochs.csv").exists() else pd.DataFrame()
    try:
        meta = json.loads((path / "study.json").read_text()) if (path / "study.json").exists() else {}
    except (ValueError, UnicodeDecodeError) as e:
        raise StudyNotFound(f"{path / 'study.json'} is not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise StudyNotFound(f"{path / 'study.json'} must hold a JSON object")
    return StudyData(path=path, runs=runs, epochs=epochs, meta=meta, runs_path=path / "runs.csv")


def load_runs(path: str | Path) -> pd.DataFrame:
    """runs.csv of a study as a DataFrame (one row per run, failed runs included)."""
    return load_study(path).runs


def compare_arms(study: StudyData | pd.DataFrame, *, metric: str | None = None, baseline: str | None = None,
                 pairs: str = "baseline", alpha: float | None = None, margin: float | None = None,
                 rng=0, arms: list[str] | None = None, direction: str | None = None,
                 chance: float | None = None, failures: str | None = None,
                 **compare_kwargs) -> Family:
    """Holm-corrected comparisons of the study's arms (defaults from its analysis plan).

    Paired by seed (what the runs of a seed share is the experiment's: `StudyData.seed_streams`):
    each comparison uses the seeds both
    of its arms have a value for, so an arm run on more seeds (or a failed run) affects only
    its own comparisons; a pair sharing fewer than two seeds is compared unpaired (Welch) on
    its own, and its verdict says so. Seeds a comparison cannot use are named in a warning,
    never dropped silently.

    Failures (`analysis.stats.failures`): by default (``failures="all"``) runs that did not learn
    count with their final value and diverged runs at the chance level; ``"learned"`` uses
    only runs that learned. Either way each comparison carries the failure rates of its two
    arms, Fisher's exact test of their difference and the mean under the other choice
    (``Comparison.outcomes``), and its verdict's reason states them. `direction` and
    `chance` override the plan's (`analysis.stats.metric_plan`); ``compare_kwargs`` go to `compare`.
    """
    if isinstance(study, pd.DataFrame):
        study = StudyData(path=Path("."), runs=study, epochs=pd.DataFrame())
    plan = study.metric_plan(metric=metric, baseline=baseline, alpha=alpha, margin=margin,
                             direction=direction, chance=chance, population=failures)
    plan, classified = study.analysed(plan)
    for n in (*plan.notes, *unanalysed_runs(classified)):
        warnings.warn(NoteWarning(n), stacklevel=2)
    return compare_classified(classified, plan, arms=arms or study_arms(study, classified),
                              pairs=pairs, rng=rng, **compare_kwargs)


def study_arms(study: StudyData, classified: pd.DataFrame) -> list[str]:
    """The study's arms in spec order, then any others its runs table names."""
    return list(dict.fromkeys([*study.arms(), *classified["arm"]]))


def unanalysed_runs(classified: pd.DataFrame) -> list[Note]:
    """A "runs" note when some runs have a status that is not an outcome (e.g. running)."""
    other = classified[classified["outcome"] == "other"]
    if not len(other):
        return []
    return [Note(f"{len(other)} run(s) with status {', '.join(sorted(set(other['status'])))} "
                 "(not complete, failed or diverged) are not analysed", kind="runs")]


def compare_classified(classified: pd.DataFrame, plan: MetricPlan, *, arms: list[str],
                       pairs: str = "baseline", rng=0, **compare_kwargs) -> Family:
    """`compare_arms` on a runs table already checked and classified under `plan`
    (`StudyData.analysed`): the report classifies once and passes the table down. Warns a
    "pairing" `NoteWarning` for each comparison that cannot use some seeds."""
    wanted = arms
    series = {a: scored(classified, a, plan.population) for a in wanted}
    # Every arm stays in the family: one that cannot be judged is listed with why, not dropped.
    unjudged = {a: why for a in wanted if (why := why_unjudged(classified, a, plan))}
    names = [a for a in wanted if a not in unjudged]
    if len(wanted) < 2:
        raise ValueError(f"only one arm ({', '.join(wanted) or 'none'}) in the runs table: "
                         "nothing to compare")
    if plan.baseline not in wanted:
        raise ValueError(f"`baseline` {plan.baseline!r} is not an arm of the study "
                         f"(arms: {', '.join(wanted) or 'none'})")
    if plan.baseline in unjudged:
        raise ValueError(f"`baseline` {plan.baseline!r} cannot be compared with: "
                         f"{unjudged[plan.baseline]}; arms with two or more values of {plan.metric}: "
                         f"{', '.join(names) or 'none'}")
    if pairs == "baseline":
        compared = [(a, plan.baseline) for a in names if a != plan.baseline]
    else:
        compared = list(itertools.combinations(names, 2))
    seeds = {a: set(series[a].index.tolist()) for a in names}
    for a, b in compared:
        lost = sorted(seeds[a] ^ seeds[b])
        if lost and len(seeds[a] & seeds[b]) >= 2:
            missing = {x: sorted((seeds[a] | seeds[b]) - seeds[x]) for x in (a, b)
                       if (seeds[a] | seeds[b]) - seeds[x]}
            kept = sorted(seeds[a] & seeds[b])
            warnings.warn(NoteWarning(Note(
                f"{a} vs {b}: paired on seeds {kept}; seeds {lost} dropped because these arms "
                f"have no value for them: {missing}", kind="pairing", arms=(a, b),
                seeds=tuple(kept), dropped=tuple(lost), missing=tuple(missing))), stacklevel=3)
    values = {a: dict(zip(series[a].index.tolist(), series[a].tolist(), strict=True)) for a in names}
    mixed = [a for a in names if mixes(classified, a, plan.population)]
    values.update({a: {} for a in unjudged})
    fam = compare_family({a: values[a] for a in wanted}, plan.baseline, paired=True, rng=rng,
                         alpha=plan.alpha, margin=plan.margin, pairs=pairs,
                         direction=plan.direction, exact_arms=mixed, unjudged=unjudged,
                         **compare_kwargs)
    outcomes = compare_outcomes(classified, [(c.arm_name, c.baseline_name)
                                                for c in fam.comparisons], plan)
    units = tuple(n for n in plan.notes if n.kind == "units")  # every verdict carries it (--json notes)
    done = []
    for c in fam.comparisons:
        done.append(replace(c, outcomes=outcomes[(c.arm_name, c.baseline_name)], notes=(*c.notes, *units)))
    return replace(fam, comparisons=tuple(done), plan=plan, outcomes=classified)



def _num(v):
    if v is None:
        return None
    v = float(v)
    return None if np.isnan(v) else v


def _seeds_for_observed(c) -> int | None:
    """Seeds per arm to detect the *observed* difference at 80% power (the margin-based
    `seeds_needed` is the planning number; this one answers "how many to confirm this gap")."""
    if not c.sd or not np.isfinite(c.sd) or c.diff == 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return seeds_needed(c.diff, c.sd, paired=c.paired, alpha=c.alpha / max(1, c.family_size), power=c.sensitivity.power)


def family_frame(family: Family, metric: str = "test_acc") -> pd.DataFrame:
    """One row per comparison, in the metric's units; the `--json` schema."""
    rows = []
    for c in family.comparisons:
        t: TestResult = c.primary
        rows.append({
            "arm": c.arm_name, "baseline": c.baseline_name, "metric": metric,
            "n_arm": c.n_arm, "n_baseline": c.n_baseline, "paired": c.paired,
            "mean_arm": c.mean_arm, "mean_baseline": c.mean_baseline, "diff": c.diff,
            "ci_low": c.ci_low, "ci_high": c.ci_high, "test": t.name, "statistic": _num(t.statistic),
            "p_value": _num(t.pvalue), "p_adjusted": _num(c.p_adjusted), "effect_size": _num(c.effect_size.value),
            "effect_size_name": c.effect_size.name, "prob_improvement": c.prob_improvement,
            "verdict": str(c.verdict.label), "verdict_reason": c.verdict.reason,
            "margin": c.margin, "equivalence_p": _num(c.equivalence.p_adjusted),
            "seeds_needed": c.sensitivity.seeds_needed, "seeds_needed_observed": _seeds_for_observed(c),
            "min_attainable_p": c.sensitivity.min_attainable_p,
            "notes": [n.text for n in c.notes],
            "direction": c.direction, "unpaired_fallback": c.unpaired_fallback,
            **_outcome_fields(c.outcomes),
        })
    return pd.DataFrame(rows)


def family_records(family: Family, metric: str = "test_acc") -> list[dict]:
    """Every planned comparison of the family, judged or not, as the `--json` objects: the
    `family_frame` rows, then one per comparison not judged (verdict "not judged", its
    reason, no statistics); each with the family's size, judged of planned."""
    size = {"family_judged": len(family.comparisons), "family_planned": family.planned}
    rows = [{**r, "judged": True, **size}
            for r in family_frame(family, metric).to_dict(orient="records")]
    columns = list(rows[0]) if rows else ["arm", "baseline", "metric", "verdict", "verdict_reason"]
    for n in family.not_judged:
        blank = dict.fromkeys(columns)
        rows.append({**blank, "arm": n.arm, "baseline": n.baseline, "metric": metric,
                     "verdict": "not judged", "verdict_reason": n.reason, "notes": [],
                     "judged": False, **size})
    return rows


def _outcome_fields(o) -> dict:
    """The failure-rate columns of `family_frame` (None when the outcomes are unknown)."""
    if o is None:
        return {"population": None, "failures_arm": None, "runs_arm": None,
                "failures_baseline": None, "runs_baseline": None, "failure_p": None,
                "failure_p_adjusted": None, "diff_other_population": None}
    return {"population": o.population, "failures_arm": o.arm.failures, "runs_arm": o.arm.runs,
            "failures_baseline": o.baseline.failures, "runs_baseline": o.baseline.runs,
            "failure_p": o.pvalue, "failure_p_adjusted": o.p_adjusted,
            "diff_other_population": _num(o.other_diff)}


def arm_frame(study: StudyData, metric: str | None = None, rng=0,
              plan: MetricPlan | None = None, classified: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per arm: n (values the comparisons use under the plan's population), failed/diverged/
    did-not-learn counts, mean, sd, median, t CI and bootstrap CI. `classified`: the runs
    table `StudyData.analysed` already returned for `plan` (else it is computed here)."""
    if classified is None or plan is None:
        plan, classified = study.analysed(plan or study.metric_plan(metric=metric))
    rows = []
    gen = np.random.default_rng(rng)
    for arm in study.arms():
        sel = classified[classified["arm"] == arm]
        vals = scored(classified, arm, plan.population).to_numpy()
        row = {"arm": arm, "n": len(vals), "failed": int((sel["status"] == FAILED).sum()),
               "diverged": int((sel["outcome"] == "diverged").sum()),
               "not_learned": int((sel["outcome"] == "not_learned").sum()),
               "mean": None, "sd": None,
               "median": None, "ci_low": None, "ci_high": None, "boot_low": None, "boot_high": None}
        if len(vals):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # n < 2 / zero variance: fields come back None
                s = describe(vals, rng=gen, n_boot=2000)
            row.update(mean=s.mean, sd=s.sd, median=s.median, ci_low=s.ci_low, ci_high=s.ci_high,
                       boot_low=s.boot_low, boot_high=s.boot_high)
        rows.append(row)
    return pd.DataFrame(rows)
