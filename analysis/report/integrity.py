"""Did the arms run what they say they ran, and did their runs learn? (report section 5)

`integrity_checks` compares configurations, effective learning rates, config hashes and
BatchNorm layers across arms; `outcome_flags` adds what the runs themselves show: arms whose
per-seed results are identical (a no-op ablation) and arms whose runs did not learn or
diverged (`analysis.stats.failures`). Pure functions over the study's frames.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from analysis._checks import negligible_spread
from analysis.contract import config_hash, seed_streams, shared_text
from analysis.formatting import significant
from analysis.report.figures import configured_lr
from analysis.report.tables import bn_table, excluded_runs_table, seed_ranges
from analysis.stats.failures import arm_outcomes
from analysis.stats.metric_plan import MetricPlan


def _config_key(config: Mapping | None) -> str | None:
    return None if config is None else json.dumps(config, sort_keys=True)


def _lr_schedules(epochs: pd.DataFrame) -> dict[str, dict]:
    """arm -> {"schedule": ((epoch, (lr, ...)), ...), "consistent": bool, "seeds": n}."""
    out: dict[str, dict] = {}
    if epochs.empty or not {"arm", "seed", "epoch", "lr"} <= set(epochs.columns):
        return out
    data = epochs[["arm", "seed", "epoch", "lr"]].copy()
    data["lr"] = pd.to_numeric(data["lr"], errors="coerce")
    for arm, sel in data.groupby("arm", sort=False):
        sched, consistent = [], True
        for epoch, grp in sel.groupby("epoch", sort=True):
            vals = tuple(sorted({float(f"{v:.12g}") for v in grp["lr"].dropna()}))
            consistent &= len(vals) <= 1
            sched.append((int(epoch), vals))
        out[str(arm)] = {"schedule": tuple(sched), "consistent": consistent,
                         "seeds": int(sel["seed"].nunique())}
    return out


def _groups(keys: Mapping[str, object]) -> list[list[str]]:
    by: dict[object, list[str]] = {}
    for arm, key in keys.items():
        if key is not None:
            by.setdefault(key, []).append(arm)
    return [g for g in by.values() if len(g) > 1]


def integrity_checks(runs: pd.DataFrame, epochs: pd.DataFrame, meta: Mapping,
                     arms: Sequence[str]) -> dict:
    """Did the arms run what they say they ran?

    Returns a dict with ``flags`` (list of sentences, empty when all is well), ``checks``
    (sentences describing what was verified and passed), and the ``bn`` and ``excluded``
    tables. Checks:

    * arms whose resolved configuration (study.json) AND per-epoch effective lr sequence are
      identical: "these arms ran the same thing" (comparing them tests nothing);
    * arms with identical configurations but different effective lr (non-determinism, or code
      changed between runs);
    * arms whose effective lr sequences are identical although their configurations ask for
      different schedules (the notebook's bug: a scheduler on an optimizer that never steps),
      and any arm whose effective lr departs from its configured schedule;
    * runs whose recorded config hash is not the hash of their arm's configuration in
      study.json (results from another version of the spec);
    * BatchNorm layers actually built vs those the configuration asks for;
    * failed and diverged runs.
    """
    specs = meta.get("arms", {}) if meta else {}
    configs = {a: specs.get(a, {}).get("config") for a in arms}
    lr = _lr_schedules(epochs)
    same = _same_configuration(runs, arms, configs, lr)
    rates = _learning_rates(arms, configs, lr)
    hashes = _config_hashes(runs, arms, configs)
    batchnorm = _batchnorm(runs, meta, arms)
    found = (same, rates, hashes, batchnorm, _pairing(runs, arms, meta or {}))
    excluded = excluded_runs_table(runs[runs["arm"].isin(arms)]) if len(runs) else \
        excluded_runs_table(runs)
    return {"flags": [f for check in found for f in check.flags],
            "checks": [c for check in found for c in check.passed], "bn": batchnorm.detail,
            "excluded": excluded, "same_thing": same.detail, "lr_mismatch": rates.detail,
            "stale_config": hashes.detail}


class _Found(NamedTuple):
    """What one check found."""

    flags: list[str]  # problems, as sentences
    passed: list[str]  # what was verified and passed, as sentences
    detail: object = None  # what the report needs besides the sentences


def _same_configuration(runs: pd.DataFrame, arms: Sequence[str], configs: Mapping,
                        lr: Mapping[str, dict]) -> _Found:
    """Arms with the same configuration (study.json; else the runs' config hashes): the same
    thing when their effective lr also agrees, not reproducible when it does not."""
    flags: list[str] = []
    checks: list[str] = []
    cfg_keys: dict[str, object]  # a configuration's JSON, or the arm's set of recorded hashes
    if any(c is not None for c in configs.values()):
        cfg_keys = {a: _config_key(c) for a, c in configs.items()}
        source = "resolved configuration in study.json"
    else:
        hashes = runs["config_hash"] if "config_hash" in runs else pd.Series(None, index=runs.index)
        cfg_keys = {a: tuple(sorted(set(hashes[runs["arm"] == a].dropna().astype(str))))
                    or None for a in arms}
        source = "recorded config hash"
    sched_keys = {a: lr[a]["schedule"] if a in lr else None for a in arms}
    same_thing = []
    for group in _groups(cfg_keys):
        scheds = {sched_keys[a] for a in group}
        if len(scheds) == 1:
            same_thing.append(group)
            what = ("identical per-epoch effective learning rates" if None not in scheds
                    else "no learning-rate record to tell them apart")
            flags.append(f"**These arms ran the same thing:** {', '.join(f'`{a}`' for a in group)} "
                         f"have the same {source} and {what}; comparing them tests nothing.")
        else:
            flags.append(f"Arms {', '.join(f'`{a}`' for a in group)} have the same {source} but "
                         "different effective learning rates: the runs are not reproducible or the "
                         "code changed between them.")
    if not _groups(cfg_keys):
        checks.append(f"No two arms share a {source}.")
    return _Found(flags, checks, same_thing)


def _learning_rates(arms: Sequence[str], configs: Mapping,
                    lr: Mapping[str, dict]) -> _Found:
    """Effective lr against configured lr, and identical effective schedules across configs."""
    flags, checks, mismatch, checked = [], [], [], 0
    for arm in arms:
        if arm not in lr or configs.get(arm) is None:
            continue
        epochs_run = [e for e, _ in lr[arm]["schedule"]]
        want = configured_lr(configs[arm], epochs_run)
        if want is None:
            continue
        checked += 1
        got = lr[arm]["schedule"]
        bad = [e for (e, vals), w in zip(got, want, strict=True)
               if any(not math.isclose(v, w, rel_tol=1e-6, abs_tol=1e-12) for v in vals)]
        if bad:
            mismatch.append(arm)
            flags.append(f"`{arm}`: the learning rate read from the optimizer differs from the "
                         f"schedule its configuration asks for at epoch(s) "
                         f"{seed_ranges(bad)} (is the scheduler attached to the optimizer "
                         "that steps?).")
    sched_keys = {a: lr[a]["schedule"] if a in lr else None for a in arms}
    for group in _groups(sched_keys):
        wanted = set()
        for a in group:
            cfg = configs.get(a)
            w = configured_lr(cfg, [e for e, _ in lr[a]["schedule"]]) if cfg else None
            wanted.add(None if w is None else tuple(np.round(w, 12)))
        if len(wanted) > 1 and None not in wanted:
            flags.append(f"Arms {', '.join(f'`{a}`' for a in group)} ran identical effective "
                         "learning rates although their configurations ask for different "
                         "schedules: the schedule ablation did not happen.")
    for a in [a for a in arms if a in lr and not lr[a]["consistent"]]:
        flags.append(f"`{a}`: the seeds of this arm used different learning rates at the same "
                     "epoch.")
    if lr and not checked:
        checks.append("Per-epoch learning rates are recorded, but no arm's configuration "
                      "declares a schedule (`scheduler`): the effective rates are shown, not "
                      "checked against one.")
    elif lr and not mismatch:
        checks.append("Every arm's effective learning rate (read from the optimizer each epoch) "
                      "matches the schedule its configuration asks for.")
    if not lr:
        checks.append("No per-epoch learning rates recorded: schedules cannot be checked.")
    return _Found(flags, checks, mismatch)


def _config_hashes(runs: pd.DataFrame, arms: Sequence[str],
                   configs: Mapping) -> _Found:
    """Runs whose recorded config hash is not their arm's configuration in study.json."""
    flags: list[str] = []
    checks: list[str] = []
    stale: list[str] = []
    if "config_hash" not in runs:
        return _Found(flags, checks, stale)
    for arm in arms:
        cfg = configs.get(arm)
        if cfg is None:
            continue
        want = config_hash(cfg)
        got = runs.loc[(runs["arm"] == arm) & runs["config_hash"].notna()]
        off = got[got["config_hash"].astype(str) != want]
        if len(off):
            stale.append(arm)
            flags.append(f"`{arm}`: {len(off)} run(s) (seeds {seed_ranges(off['seed'])}) "
                         f"were trained with config hash "
                         f"{', '.join(sorted(set(off['config_hash'].astype(str))))}, not "
                         f"{want} from study.json.")
    if not stale and any(c is not None for c in configs.values()):
        checks.append("Every run's recorded config hash matches its arm's configuration in "
                      "study.json.")
    return _Found(flags, checks, stale)


def _batchnorm(runs: pd.DataFrame, meta: Mapping,
               arms: Sequence[str]) -> _Found:
    """BatchNorm layers the models actually built against those the configuration asks for."""
    flags, checks = [], []
    bn = bn_table(runs, meta or {}, arms) if "n_bn" in runs else pd.DataFrame()
    if len(bn):
        wrong = bn[bn["matches"] == "NO"]
        for _, r in wrong.iterrows():
            flags.append(f"`{r['arm']}`: configured bn {r['configured bn']} should give "
                         f"BatchNorm after convs {r['expected layers']}, but the runs built "
                         f"{r['BN after convs (runs)']} ({r['n_bn (runs)']} layers).")
        if wrong.empty:
            checks.append("Every arm's models contain exactly the BatchNorm layers its "
                          "configuration asks for (table below).")
    return _Found(flags, checks, bn)


def _pairing(runs: pd.DataFrame, arms: Sequence[str], meta: Mapping) -> _Found:
    """Did the same seed start every arm from the same initial weights?"""
    checks = []
    if {"init_hash", "seed"} <= set(runs.columns):
        ok = runs[runs["arm"].isin(arms) & runs["init_hash"].notna()]
        per_seed = ok.groupby("seed")["init_hash"].nunique()
        if len(per_seed) and len(set(ok["arm"])) > 1:
            shared = per_seed[per_seed == 1].index.tolist()
            if len(shared) == len(per_seed):
                checks.append(f"Pairing: for each of the {len(per_seed)} seeds, every arm started "
                              "from the same initial weights (same init hash).")
            else:
                differ = per_seed[per_seed > 1].index.tolist()
                others = shared_text({k: v for k, v in seed_streams(meta).items() if k != "init"})
                checks.append(f"Pairing: initial weights differ across arms for seeds "
                              f"{seed_ranges(differ)} (expected where architectures differ in "
                              "parameter shapes" + (f"; {others} are still shared)." if others
                                                    else ")."))
    return _Found([], checks)


def identical_results(classified: pd.DataFrame, arms: Sequence[str], metric: str) -> list[list[str]]:
    """Groups of arms whose values agree (to float round-off) on every seed they share (at
    least two): e.g. an ablation whose switch did nothing, as the notebook's scheduler."""
    ok = classified[classified["outcome"].isin(("learned", "not_learned"))]
    series = {a: ok[ok["arm"] == a].set_index("seed")[metric].astype(float) for a in arms}
    groups: list[list[str]] = []
    for i, a in enumerate(arms):
        for b in arms[i + 1:]:
            common = sorted(set(series[a].index) & set(series[b].index))
            if len(common) < 2:
                continue
            d = series[a].loc[common].to_numpy() - series[b].loc[common].to_numpy()
            if negligible_spread(np.r_[d, 0.0]):
                for g in groups:
                    if a in g or b in g:
                        g.extend(x for x in (a, b) if x not in g)
                        break
                else:
                    groups.append([a, b])
    return groups


def outcome_flags(classified: pd.DataFrame, arms: Sequence[str], plan: MetricPlan,
                  tolerance: float | None) -> list[str]:
    """Integrity flags the results themselves raise: identical arms, failing arms."""
    flags = [f"**Mixed units:** {plan.mixed_units}."] if plan.mixed_units else []
    for group in identical_results(classified, list(arms), plan.metric):
        flags.append(f"**Arms {', '.join(f'`{a}`' for a in group)} produced identical results** "
                     f"on every seed they share: the ablation changed nothing that reached "
                     f"`{plan.metric}` (check that the switch is wired in); their comparison "
                     "tests nothing.")
    for arm in arms:
        o = arm_outcomes(classified, arm)
        if not o.failures:
            continue
        what = []
        if o.not_learned:
            what.append(f"{o.not_learned} did not learn (final `{plan.metric}` within "
                        f"{significant(tolerance)} of chance {plan.chance:g})" if tolerance is not None
                        else f"{o.not_learned} did not learn")
        if o.diverged:
            what.append(f"{o.diverged} diverged")
        flags.append(f"`{arm}`: {' and '.join(what)}, of {o.runs} runs"
                     + (": a **bimodal** arm (some runs learned, some did not), so its mean and "
                        "t interval describe a mixture; read the failure rates in section 2."
                        if o.bimodal else "."))
    return flags
