"""Read a study's tidy outputs (runs.csv, epochs.csv, study.json, predictions) into frames.

Loading is the only I/O in `analysis` besides the report writer; the statistics themselves are
pure functions over arrays. `compare_arms` turns a study's runs into a Holm-corrected family
of comparisons, pairing arms by seed when every seed ran in both arms.
"""

from __future__ import annotations

import itertools
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .describe import describe
from .family import Family, compare_family
from .power import seeds_needed
from .results import TestResult

METRICS = ("test_acc", "val_acc", "train_acc", "train_loss")


class StudyNotFound(FileNotFoundError):
    """The path holds no seedwise study outputs; the message says what was expected."""


@dataclass(frozen=True)
class StudyData:
    path: Path  # results/<study>/
    runs: pd.DataFrame
    epochs: pd.DataFrame
    meta: dict = field(default_factory=dict)  # study.json (empty when only runs.csv was given)

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
        db = self.path / "study.db"
        return f"sqlite:///{db}" if db.exists() else None

    @property
    def plan(self) -> dict:
        return {"metric": "test_acc", "baseline": "baseline", "alpha": 0.05, "margin": 0.5,
                **self.meta.get("analysis", {})}

    def arms(self) -> list[str]:
        """Arms in spec order (then any others found in runs.csv)."""
        order = list(self.meta.get("arms", {}))
        return order + sorted(set(self.runs["arm"]) - set(order))

    def correct_matrix(self, arm: str) -> tuple[list[int], np.ndarray] | None:
        """(seeds, runs x test-examples bool matrix of correct predictions) for complete runs of
        `arm`, from the predictions stored as Optuna artifacts; None when unavailable."""
        labels_path = self.path / "test_labels.npy"
        url = self.storage_url
        if url is None or not labels_path.exists():
            return None
        import optuna
        from optuna.artifacts import FileSystemArtifactStore

        from .contract import trial_predictions

        labels = np.load(labels_path, allow_pickle=False)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.load_study(study_name=self.meta.get("study", self.path.name), storage=url)
        artifacts = FileSystemArtifactStore(str(self.path / "artifacts"))
        rows = {}
        for t in study.get_trials(deepcopy=False):
            if t.user_attrs.get("arm") == arm and t.user_attrs.get("status") == "complete":
                pred = trial_predictions(artifacts, t)
                if pred is not None and pred.shape == labels.shape:
                    rows[t.user_attrs["seed"]] = pred == labels
        if not rows:
            return None
        seeds = sorted(rows)
        return seeds, np.stack([rows[s] for s in seeds])


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except FileNotFoundError:
        raise StudyNotFound(f"{path} does not exist; run `python -m study.run` first") from None
    except pd.errors.EmptyDataError:
        raise StudyNotFound(f"{path} is empty") from None


def load_study(path: str | Path) -> StudyData:
    """Load `results/<study>/` (or its runs.csv)."""
    path = Path(path)
    if path.is_file():
        path = path.parent
    if not path.is_dir():
        raise StudyNotFound(f"{path} is not a study directory (expected results/<study>/ with runs.csv)")
    runs = _read_csv(path / "runs.csv")
    epochs = _read_csv(path / "epochs.csv") if (path / "epochs.csv").exists() else pd.DataFrame()
    meta = json.loads((path / "study.json").read_text()) if (path / "study.json").exists() else {}
    return StudyData(path=path, runs=runs, epochs=epochs, meta=meta)


def load_runs(path: str | Path) -> pd.DataFrame:
    """runs.csv of a study as a DataFrame (one row per run, failed runs included)."""
    return load_study(path).runs


def _values(runs: pd.DataFrame, arm: str, metric: str) -> pd.Series:
    ok = runs[(runs["arm"] == arm) & (runs["status"] == "complete")]
    return ok.set_index("seed")[metric].astype(float).sort_index()


def compare_arms(study: StudyData | pd.DataFrame, *, metric: str | None = None, baseline: str | None = None,
                 pairs: str = "baseline", alpha: float | None = None, margin: float | None = None,
                 rng=0, arms: list[str] | None = None) -> Family:
    """Holm-corrected comparisons of the study's arms (defaults from its analysis plan).

    Paired (same seed = same data order, flips and init): each comparison uses the seeds both
    of its arms completed, so an arm run on more seeds (or a failed run) affects only its own
    comparisons. Seeds a comparison cannot use (a failed or diverged run, or a seed only one
    arm has) are named in a warning, never dropped silently. When some compared pair has fewer
    than two seeds in common, the whole family is compared unpaired (Welch)."""
    if isinstance(study, pd.DataFrame):
        study = StudyData(path=Path("."), runs=study, epochs=pd.DataFrame())
    plan = study.plan
    metric = metric or plan["metric"]
    baseline = baseline or plan["baseline"]
    alpha = plan["alpha"] if alpha is None else alpha
    margin = plan["margin"] if margin is None else margin
    if metric not in study.runs.columns:
        raise ValueError(f"`metric` must be a column of runs.csv ({', '.join(METRICS)}), got {metric!r}")
    names = arms or [a for a in study.arms() if len(_values(study.runs, a, metric))]
    if baseline not in names:
        raise ValueError(f"`baseline` {baseline!r} has no complete runs; arms with runs: {', '.join(names)}")
    series = {a: _values(study.runs, a, metric) for a in names}
    if pairs == "baseline":
        compared = [(a, baseline) for a in names if a != baseline]
    else:
        compared = list(itertools.combinations(names, 2))
    seeds = {a: set(s.index.tolist()) for a, s in series.items()}
    paired = all(len(seeds[a] & seeds[b]) >= 2 for a, b in compared)
    if paired:
        for a, b in compared:
            lost = sorted(seeds[a] ^ seeds[b])
            if lost:
                missing = {x: sorted((seeds[a] | seeds[b]) - seeds[x]) for x in (a, b)
                           if (seeds[a] | seeds[b]) - seeds[x]}
                warnings.warn(f"{a} vs {b}: paired on seeds {sorted(seeds[a] & seeds[b])}; seeds {lost} dropped "
                              f"because these arms have no complete run for them: {missing}", stacklevel=2)
        values = {a: dict(zip(s.index.tolist(), s.tolist(), strict=True)) for a, s in series.items()}
    else:
        values = {a: s.to_numpy() for a, s in series.items()}
    return compare_family(values, baseline, paired=paired, rng=rng, alpha=alpha, margin=margin, pairs=pairs)


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
        return seeds_needed(c.diff, c.sd, paired=c.paired, alpha=c.alpha / max(1, c.family_size), power=c.power)


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
            "p_value": _num(t.pvalue), "p_adjusted": _num(c.p_adjusted), "effect_size": _num(c.effect_size),
            "effect_size_name": c.effect_size_name, "prob_improvement": c.prob_improvement,
            "verdict": str(c.verdict.label), "verdict_reason": c.verdict.reason,
            "margin": c.margin, "equivalence_p": _num(c.equivalence.p_adjusted),
            "seeds_needed": c.seeds_needed, "seeds_needed_observed": _seeds_for_observed(c),
            "min_attainable_p": c.min_attainable_p,
            "notes": list(c.notes),
        })
    return pd.DataFrame(rows)


def arm_frame(study: StudyData, metric: str | None = None, rng=0) -> pd.DataFrame:
    """Per arm: n, failed/diverged counts, mean, sd, median, t CI and bootstrap CI."""
    metric = metric or study.plan["metric"]
    rows = []
    gen = np.random.default_rng(rng)
    for arm in study.arms():
        sel = study.runs[study.runs["arm"] == arm]
        vals = _values(study.runs, arm, metric).to_numpy()
        row = {"arm": arm, "n": len(vals), "failed": int((sel["status"] == "failed").sum()),
               "diverged": int((sel["status"] == "diverged").sum()), "mean": None, "sd": None,
               "median": None, "ci_low": None, "ci_high": None, "boot_low": None, "boot_high": None}
        if len(vals):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # n < 2 / zero variance: fields come back None
                s = describe(vals, rng=gen, n_boot=2000)
            row.update(mean=s.mean, sd=s.sd, median=s.median, ci_low=s.ci_low, ci_high=s.ci_high,
                       boot_low=s.boot_low, boot_high=s.boot_high)
        rows.append(row)
    return pd.DataFrame(rows)
