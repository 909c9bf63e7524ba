"""`python -m study.variance`: where one configuration's run-to-run variance comes from.

    python -m study.variance --arm baseline --seeds 10 --preset quick
    python -m study.variance --spec examples/digits/spec.toml --arm dropout --seeds 10

Runs the design of `analysis.stats.variance.variance_design` for one arm (k runs per source in which
only that source's seed changes, k in which all change) as ORDINARY stored runs of a study of
their own, through `study.run` (resumable: a rerun trains only what is missing; several
workers can share it; provenance as usual). Each run's seed is a `study.seeds.RunSeeds`: its
int value (0.., the design's row) is the stored `seed`, and it carries one seed per stream,
stored as runs.csv's `init_seed, order_seed, augment_seed, split_seed`. Then it prints
`decompose_variance`'s table (each source's variance with CI, its share of the all-sources
variance, the test-set component from the stored predictions) and writes it as
variance.csv / variance.json in the study's folder.

The split varies only through a per-seed split: `split_seed = -1` in the config (set here
when `split` is a source). A user experiment must draw its randomness from
`study.seeds.rng(seed, stream)` / `stream_seed(seed, stream)`; a draw from the plain seed
would change with every run and look like every source at once.

Exit status: 0 done, 1 some run failed (recorded; rerun to retry), 2 bad input, 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analysis import formatting
from analysis.contract import (
    COMPLETE,
    DIVERGED,
    FAILED,
    SOURCES,
    read_table,
    seed_column,
    stable_hash,
)
from study.options import add_study_args, options
from study.params import ConfigError, parse_assignment, suggest
from study.plan import Plan, UsageError, device_choice, resolve_preset
from study.seeds import PER_SEED_SPLIT, RunSeeds
from study.spec import SpecError, StudySpec, load_spec

if TYPE_CHECKING:  # the statistics are imported when the study runs: `--help` stays instant
    import numpy as np
    import pandas as pd

    from analysis.stats.variance import VarianceDecomposition

SEED_COLUMNS = [seed_column(s) for s in SOURCES]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from analysis.invocation import usage_name

    p = argparse.ArgumentParser(prog=usage_name("study.variance"), description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Exit status: 0 done, 1 a run failed, 2 bad input, 130 interrupted.")
    add_study_args(p)
    p.add_argument("--arm", required=True, help="the arm (configuration) whose variance is decomposed")
    p.add_argument("--seeds", type=int, default=10, help="k: runs per source, and in the all-sources group (default 10)")
    p.add_argument("--sources", default=",".join(SOURCES),
                   help=f"comma-separated sources varied one at a time (default: {','.join(SOURCES)})")
    p.add_argument("--replicates", type=int, default=0,
                   help="extra runs at the reference seeds: measures nondeterminism (worth it on GPU only)")
    p.add_argument("--confidence", type=float, default=0.95, help="confidence level of the intervals")
    p.add_argument("--jobs", type=int, help="parallel runs (as study.run)")
    return p.parse_args(argv)


@dataclass(frozen=True)
class VarianceStudy:
    spec: StudySpec  # narrowed to the one arm, which is its own baseline
    arm: str
    preset: str | None
    sources: tuple[str, ...]
    design: pd.DataFrame  # variance_design's rows; row i is run seed i
    seeds: tuple[RunSeeds, ...]
    extra: dict[str, Any]  # --set, plus split_seed = -1 when the split varies
    name: str
    notes: tuple[str, ...]


def parse_sources(text: str) -> tuple[str, ...]:
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    for s in names:
        if s not in SOURCES:
            raise UsageError(f"--sources: unknown source {s!r}{suggest(s, SOURCES)}; sources: {', '.join(SOURCES)}")
    if len(set(names)) != len(names) or len(names) < 2:
        raise UsageError(f"--sources needs at least two distinct sources of {', '.join(SOURCES)}, got {text!r}")
    return tuple(s for s in SOURCES if s in names)


def run_seeds(design: pd.DataFrame) -> tuple[RunSeeds, ...]:
    """One RunSeeds per design row: the row's index is the stored seed."""
    return tuple(RunSeeds(i, {s: int(row[seed_column(s)]) for s in SOURCES})
                 for i, row in enumerate(design.to_dict("records")))


def study_name(spec: StudySpec, preset: str | None, arm: str, k: int, sources, replicates: int,
               user_set: dict[str, Any]) -> str:
    """Everything that changes the design is in the name: a stored seed always means one row."""
    name = f"{spec.name}{f'-{preset}' if preset else ''}-variance-{arm}-k{k}"
    if tuple(sources) != SOURCES:
        name += "-" + "+".join(sources)
    if replicates:
        name += f"-r{replicates}"
    if user_set:
        name += "-set-" + stable_hash(user_set, 6)
    return name


def split_option(spec: StudySpec, arm: str, extra: dict[str, Any], sources) -> tuple[dict[str, Any], list[str]]:
    """With `split` among the sources, the config's split must be drawn per seed (-1)."""
    if "split" not in sources:
        return extra, []
    config = spec.config(arm, None)
    if "split_seed" not in (config if isinstance(config, dict) else config.to_dict()):
        return extra, [f"the experiment's config has no split_seed: the split varies only if {spec.experiment} "
                       f"draws it from study.seeds.rng(seed, 'split')"]
    fixed = [v for v in (extra.get("split_seed"), spec.arm(arm).overrides.get("split_seed")) if v is not None]
    if any(v != PER_SEED_SPLIT for v in fixed):
        raise UsageError(f"--sources includes split, but split_seed is fixed by --set or [arms.{arm}]; "
                         "drop it (the runner sets split_seed = -1) or drop split from --sources")
    return {**extra, "split_seed": PER_SEED_SPLIT}, []


def prepare(args: argparse.Namespace) -> VarianceStudy:
    """The study to run, from the options; bad input raises (SpecError, UsageError)."""
    if args.seeds < 2:
        raise UsageError(f"--seeds must be at least 2 (a variance needs two runs), got {args.seeds}")
    if args.replicates < 0:
        raise UsageError(f"--replicates must be >= 0, got {args.replicates}")
    if not 0 < args.confidence < 1:
        raise UsageError(f"--confidence must lie in (0, 1), got {args.confidence}")
    sources = parse_sources(args.sources)
    spec = load_spec(args.spec)
    if spec.command:
        raise UsageError(f"{spec.source} runs a command, which receives one {{seed}}; a variance study needs a "
                         "seed per stream: use experiment = 'module:function' and study.seeds.rng(seed, stream)")
    arm = spec.arm(args.arm)  # SpecError naming the arms
    try:
        user_set = dict(parse_assignment(s) for s in args.set)
    except ConfigError as e:
        raise SpecError(str(e)) from None
    extra, notes = split_option(spec, arm.name, user_set, sources)
    # `auto` chooses among the spec's presets by whether CUDA is there: asked only then (a
    # numpy experiment's spec never pays for torch); the device itself is study.run's.
    has_cuda = bool(spec.presets) and args.preset in (None, "auto") and device_choice(args.device)[1]
    preset = resolve_preset(spec, args.preset, has_cuda)
    # The arm alone, as its own baseline: the study's summary and identity are about it only.
    narrowed = replace(spec, arms=(arm,), analysis=replace(spec.analysis, baseline=arm.name), sequential=None)
    from analysis.stats.variance import variance_design

    design = variance_design(args.seeds, sources=sources, replicates=args.replicates)
    name = args.study or study_name(spec, preset, arm.name, args.seeds, sources, args.replicates, user_set)
    return VarianceStudy(narrowed, arm.name, preset, sources, design, run_seeds(design), extra, name, tuple(notes))


def check_stored(results_dir: Path, study: VarianceStudy) -> None:
    """A stored run whose seeds are not its design row's (another design under this --study) is refused."""
    import numpy as np

    path = results_dir / "runs.csv"
    if not path.exists():
        return
    stored = read_table(path)
    if not set(SEED_COLUMNS) <= set(stored.columns):
        raise UsageError(f"{path} holds runs without per-stream seeds: not a variance study; choose another --study")
    want = study.design[SEED_COLUMNS].reset_index().rename(columns={"index": "seed"})
    both = stored[["seed", *SEED_COLUMNS]].merge(want, on="seed", how="left", suffixes=("", "_design"))
    differs = np.logical_or.reduce([both[c].to_numpy() != both[f"{c}_design"].to_numpy() for c in SEED_COLUMNS])
    off = both[differs]
    if len(off):
        raise UsageError(f"{path}: stored run seed {int(off['seed'].iloc[0])} has other stream seeds than this "
                         f"design's (another --seeds, --sources or --replicates); use another --study")


def run_design(study: VarianceStudy, args: argparse.Namespace):
    """Train what is missing through study.run; returns (exit status, the plan it ran)."""
    from study.run import execute

    values = dict(seeds=list(study.seeds), arms=[study.arm], study=study.name, set=study.extra,
                  preset=study.preset or "auto", results=args.results, storage=args.storage, device=args.device,
                  data=args.data, data_root=args.data_root, jobs=args.jobs,
                  accept_code_change=args.accept_code_change)
    run_args = options(study.spec, **values)
    check_stored(Path(args.results) / study.name, study)
    with contextlib.redirect_stdout(sys.stderr):  # study.run's summary; stdout is the decomposition
        plans: list[Plan] = []
        code = execute(run_args, plans=plans)
    return code, plans[0] if plans else None


# ---- the decomposition ---------------------------------------------------------------------
def accuracy_scale(values: np.ndarray, correct: np.ndarray) -> bool | None:
    """Is the metric the stored predictions' accuracy in percent (True), as a fraction (False),
    or neither (None: a loss, say, with no test-set component)?"""
    import numpy as np

    acc = correct.mean(axis=1)
    for percent, scale in ((True, 100.0), (False, 1.0)):
        if np.allclose(scale * acc, values, atol=1e-3 * scale):
            return percent
    return None


def decompose(study: VarianceStudy, results_dir: Path, confidence: float) -> tuple[VarianceDecomposition, dict]:
    """The decomposition of the study's complete runs, and what was left out."""

    from analysis.load import load_study
    from analysis.stats.variance import NONE, declared_deterministic, decompose_variance
    from study.experiment import declares_bit_exact, experiment_of

    runs = read_table(results_dir / "runs.csv")
    metric = study.spec.analysis.metric
    counts = runs["status"].value_counts().to_dict()
    ok = runs[runs["status"] == COMPLETE].sort_values("seed").reset_index(drop=True)
    # runs.csv holds all four seed columns; decompose_variance reads a run's group from the
    # columns it is given, so a design over some sources must hand over only theirs (with all
    # four, an "all" run of --sources init,order looked like one varying two of four: refused).
    ok = ok.drop(columns=[seed_column(s) for s in SOURCES if s not in study.sources])
    correct = load_study(results_dir).correct_rows(study.arm, [int(s) for s in ok["seed"]]) if len(ok) else None
    percent: bool | None = None
    notes = list(study.notes)
    if correct is not None:  # the metric's scale, read off the stored predictions
        percent = accuracy_scale(ok[metric].to_numpy(float), correct)
        if percent is None:
            notes.append(f"{metric} is not the accuracy of the stored predictions: no test-set component")
            correct = None
    deterministic, why = declared_deterministic(ok, declares_bit_exact(experiment_of(study.spec)))
    if not (study.design["group"] == NONE).any():  # with replicates, they measure it
        notes.append(why)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        d = decompose_variance(ok, metric=metric, reference=0, correct=correct, confidence=confidence,
                               percent=bool(percent), deterministic=deterministic)
    notes += [str(w.message) for w in caught]
    info = {"runs": int(len(runs)), "complete": int(counts.get(COMPLETE, 0)),
            "diverged": int(counts.get(DIVERGED, 0)), "failed": int(counts.get(FAILED, 0)),
            "n_test": None if correct is None else int(correct.shape[1]), "notes": list(dict.fromkeys(notes))}
    return d, info


def _num(v) -> str:  # the terminal table writes a missing value as "-"
    return formatting.significant(v, missing="-")


def _pct(v) -> str:
    return formatting.percent(v, missing="-")


def render(d: VarianceDecomposition, study: VarianceStudy, info: dict) -> str:
    level = f"{100 * d.confidence:g}%"
    header = ["source", "runs", "sd", "variance", f"{level} CI", "net", f"{level} CI", "share", f"{level} CI",
              "test noise"]
    rows = []
    for row in d.frame().to_dict("records"):
        ci = f"[{_num(row['ci_low'])}, {_num(row['ci_high'])}]" if row["ci_low"] is not None else "-"
        nci = f"[{_num(row['net_low'])}, {_num(row['net_high'])}]" if row["net_low"] is not None else "-"
        sci = f"[{_pct(row['share_low'])}, {_pct(row['share_high'])}]" if row["share_low"] is not None else "-"
        runs = "-" if row["source"] in ("test", "residual") and not row["n_runs"] else str(row["n_runs"])
        rows.append([row["source"], runs, _num(row["sd"]), _num(row["variance"]), ci, _num(row["net"]), nci,
                     _pct(row["share"]), sci, _num(row["test_noise"])])
    lines = [f"Variance of {d.metric}, arm {study.arm} of {study.name} ({info['complete']} complete runs; "
             f"{level} intervals):", *_aligned([header, *rows], left={0, 4, 6, 8})]
    lines.append("net: the group's variance minus the per-run residual (test noise" +
                  (" + nondeterminism); an UPPER BOUND here: nondeterminism unknown" if d.bounds else
                   " + nondeterminism)") + "; share: net over the all-sources variance, small-k bias "
                  "removed (test: of all-sources + test set)")
    lines.append(f"sum of shares (sources + residual): {_sum_text(d)}")
    if info["diverged"] or info["failed"]:
        lines.append(f"left out: {info['diverged']} diverged and {info['failed']} failed run(s) "
                     "(a divergence is an outcome of the recipe: report its rate beside this table)")
    lines += [f"note: {n}" for n in info["notes"]]
    return "\n".join(lines)


def _aligned(table: list[list[str]], left: set[int]) -> list[str]:
    """Columns as wide as their widest cell, two spaces apart: a loss's small values
    ("0.000974", "[3.04e-07, 1.32e-05]") ran into the next column at fixed widths."""
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    return ["  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()
            for r in table]


def _sum_text(d: VarianceDecomposition) -> str:
    t = d.shares_total
    if t is None:
        return f"- ({d.additivity})"
    return f"{_pct(t.estimate)} [{_pct(t.low)}, {_pct(t.high)}]; 100% if the sources are additive: {d.additivity}"


def write_tables(d: VarianceDecomposition, study: VarianceStudy, info: dict, results_dir: Path) -> None:
    frame = d.frame()
    frame.to_csv(results_dir / "variance.csv", index=False)
    doc = {"study": study.name, "arm": study.arm, "metric": d.metric, "k": int((study.design["group"] == "all").sum()),
           "sources": list(study.sources), "reference": d.reference, "confidence": d.confidence,
           "sum_of_shares": d.sum_of_shares,
           "sum_of_shares_ci": None if d.shares_total is None else [d.shares_total.low, d.shares_total.high],
           "additivity": d.additivity, "deterministic": d.deterministic, "net_is_upper_bound": d.bounds,
           **info,
           "components": json.loads(frame.to_json(orient="records"))}
    (results_dir / "variance.json").write_text(json.dumps(doc, indent=2) + "\n")


def _main(args: argparse.Namespace) -> int:
    from study.run import bad_input

    try:
        study = prepare(args)
        code, plan = run_design(study, args)
    except bad_input() as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if code == 130 or plan is None or not (plan.results_dir / "runs.csv").exists():
        return code
    d, info = decompose(study, plan.results_dir, args.confidence)
    print(render(d, study, info))
    try:
        write_tables(d, study, info, plan.results_dir)
    except OSError as e:
        print(f"warning: could not write variance.csv / variance.json in {plan.results_dir}: {e.strerror or e}",
              file=sys.stderr)
        return 1
    print(f"\ntables: {plan.results_dir}/variance.csv, variance.json", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from study.dispatch import interruptible

    return interruptible(lambda: _main(args), "runs")


if __name__ == "__main__":
    sys.exit(main())
