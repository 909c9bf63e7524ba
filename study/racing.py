"""`study.tune --race --budget N`: tuning by racing (F-race / irace style) on paired tuning seeds.

A race is a sequence of rounds; round k runs every live candidate on tuning seed
TUNE_SEED_OFFSET + k (disjoint from the evaluation seeds 0..N-1 that `--confirm` uses). The
arm's own parameters are the first candidate ("default"); new candidates come from Optuna's
TPE sampler, enter at the current round and first catch up on the seeds already run, so every
comparison is paired. After each complete round from the third on, rivals that a one-sided
paired t-test (Holm over the live rivals) shows worse than the incumbent are dropped; the
statistics are analysis.tuning.racing's pure functions. The budget is counted in runs.

Storage: every (candidate, seed) run is one Optuna trial of the race study
`<ablation study>-tune-<arm>-race`, with the candidate's params and the user attributes
race_candidate, race_entered, race_seed_index and seed. Nothing else holds race state: every
worker (and a rerun after kill -9) rebuilds it from the stored trials with `analysis.tuning.racing.replay`.
The default's later runs and every catch-up run are added as finished trials (`study.add_trial`)
rather than enqueued: on SQLite two workers can pop the same WAITING trial (study.claims);
who runs a (candidate, seed) is decided by an atomic claim in the same database instead.
"""

from __future__ import annotations

import math
import sys
import time
import traceback
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.trial import TrialState

from analysis.contract import COMPLETE, DIVERGED, FAILED, config_hash, stable_hash
from analysis.stats.metric_plan import MetricPlan, resolve_plan
from analysis.tuning.race_study import (
    DEFAULT,
    RaceData,
    race_data,
    race_plan,
    race_retire,
    race_summary,
)
from analysis.tuning.racing import FIRST_TEST, NEVER_LEARNED_SEEDS, next_round, winner
from study.claims import Claims, worker_id
from study.plan import UsageError
from study.search import (
    TUNE_SEED_OFFSET,
    TrialSeededTPE,
    config_value,
    outcome_attrs,
    suggest,
    tuning_run,
)

if TYPE_CHECKING:
    from study.tune import Tuning

RACE_SIZE = 4  # live candidates per round: the default and 3 from the sampler at the start
RACE_SUFFIX = "-race"
IDLE_S = 5.0  # a worker with nothing to claim and nobody else running stops after this long


def arm_sampler_seed(sampler_seed: int, arm: str) -> int:
    """Each arm's own sampler seed, derived from its name: arms do not share a candidate stream."""
    return int(np.random.SeedSequence([sampler_seed, int(stable_hash(arm)[:12], 16)]).generate_state(1)[0])


def race_attrs(tuning_objective: str, direction: str, analysis, arm: str, sampler_seed: int) -> dict[str, Any]:
    """The race study's description (user attributes), read back by analysis.tuning.race_study; the
    chance level scores diverged runs (analysis.stats.failures), from the spec's [analysis]."""
    chance = resolve_plan({"analysis": analysis.declared()}, metric=tuning_objective, direction=direction).chance
    return {"race": {"size": RACE_SIZE, "default": DEFAULT, "chance": chance,
                     "never_learned_seeds": NEVER_LEARNED_SEEDS,  # the rule, recorded: older races lack it
                     "sampler": f"TPE (seed {arm_sampler_seed(sampler_seed, arm)}, from --sampler-seed "
                                f"{sampler_seed} and the arm's name)",
                     "test": "one-sided paired t, Holm over the live rivals, from 3 seeds; a candidate whose "
                             f"first {NEVER_LEARNED_SEEDS} runs sat at chance retired as never learned; "
                             "winner: the incumbent if it beats the default (one-sided paired t)"}}


def _data(study: optuna.Study, default_params: dict[str, Any], plan: MetricPlan) -> RaceData:
    return race_data(study.get_trials(deepcopy=False), plan, default_params, retire=race_retire(study.user_attrs))


def _engine(study: optuna.Study):
    storage: Any = getattr(study._storage, "_backend", study._storage)  # the RDBStorage under the cache
    return storage.engine


def _contains(dist: optuna.distributions.BaseDistribution, value: Any) -> bool:
    try:
        return bool(dist._contains(dist.to_internal_repr(value)))
    except (ValueError, TypeError):
        return False


def default_distributions(space: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The search space widened to hold the arm's own values (a default may sit outside the
    declared range: it is still the first candidate); a categorical default must be a choice."""
    out = {}
    for key, dist in space.items():
        value = params[key]
        if _contains(dist, value):
            out[key] = dist
        elif isinstance(dist, optuna.distributions.CategoricalDistribution):
            raise UsageError(f"[tune] {key}: the arm's own value {value!r} is not among the choices "
                             f"{list(dist.choices)}; racing starts from it, so add it")
        else:
            cls = type(dist)
            out[key] = cls(min(dist.low, value), max(dist.high, value), log=dist.log)
    return out


def race_arm(tuning: Tuning, budget: int, *, sampler_seed: int = 0, size: int = RACE_SIZE) -> int:
    """Race until the study holds `budget` finished runs (with any cooperating workers):
    0 done, 1 a run failed (recorded; a rerun retries it), 2 bad input, 130 interrupted."""
    study, space = tuning.study, tuning.space
    default_params = {k: config_value(tuning.config, k) for k in space}
    try:
        dists = default_distributions(space, default_params)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    study.sampler = TrialSeededTPE(seed=arm_sampler_seed(sampler_seed, tuning.arm), constant_liar=True)
    plan = race_plan(study.user_attrs)
    claims = Claims(_engine(study), study.study_name)
    if not study.get_trials(deepcopy=False):  # a race deleted and begun again: its done marks are stale
        claims.forget_done()
    print(f"racing {tuning.arm} in study {study.study_name}: budget {budget} runs, {size} live candidates, "
          f"objective: {tuning.direction} {tuning.objective}", file=sys.stderr)
    if budget < size * FIRST_TEST:  # the first round that can drop a candidate needs this many runs
        print(f"note: --budget {budget} is under {size * FIRST_TEST} runs ({size} candidates x {FIRST_TEST} tuning "
              "seeds), so the race ends before any test can drop a candidate: the default stays unless a rival "
              "beats it on the few seeds run. Give --budget 60 or so for a race that can decide.", file=sys.stderr)
    idle = 0.0
    try:
        while True:
            data = _data(study, default_params, plan)
            if data.runs >= budget:
                break
            step = next_round(data.state(), size=size, budget_left=budget - data.runs)
            # a newcomer first: it joins the current round, which then waits for its catch-up
            ran = (_newcomer(tuning, step.round, claims) if step.newcomers
                   else _run_one(tuning, data, step.runs, dists, claims))
            if ran is False:
                # a retry that raised again drops its candidate (race_study.ATTEMPTS): that is
                # the race's answer about it, so race on; a first failure stops for a look
                after = _data(study, default_params, plan)
                new = set(after.failing) - set(data.failing)
                if not new:
                    return 1
                print(f"race {tuning.arm}: {', '.join(sorted(new))} raised again on its retry: dropped "
                      "(an outcome of its configuration)", file=sys.stderr)
            if ran is None:  # everything pending is someone else's, or just finished by them
                # A run another worker finished between our read of the trials and our claim
                # reads "done" before we see its trial: read again rather than stop early; stop
                # only when nothing is pending or held for a while (IDLE_S).
                idle = 0.0 if claims.busy_elsewhere() else idle + 0.5
                if not step.runs or idle > IDLE_S:
                    break
                time.sleep(0.5)
            else:
                idle = 0.0
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished runs are stored in {study.study_name}; rerun the same command to "
              "continue", file=sys.stderr)
        return 130
    finally:
        claims.close()
    final = _data(study, default_params, plan)
    state = final.state()
    if final.runs < budget and len(state.live) == 1:
        print(f"race {tuning.arm}: stopped at {final.runs} of {budget} runs: only {state.live[0]} is left, and the "
              f"rest of the budget cannot pay for a newcomer's catch-up ({state.rounds + 1} runs); a larger "
              "--budget races on", file=sys.stderr)
    report_winner(tuning, final)
    return 0


def _run_one(tuning: Tuning, data: RaceData, pending, dists, claims: Claims) -> bool | None:
    """Run the first pending (candidate, seed index) this worker can claim: True ran, False
    failed, None nothing claimable."""
    for cand, j in pending:
        seed = TUNE_SEED_OFFSET + j
        if claims.claim_run(cand, seed) != "mine":
            continue
        params = data.params[cand]
        attrs = {"race_candidate": cand, "race_entered": data.entered[cand], "race_seed_index": j}
        result = _evaluate(tuning, params, seed)
        distributions = dists if cand == DEFAULT else tuning.space
        state = {COMPLETE: TrialState.COMPLETE, DIVERGED: TrialState.PRUNED}.get(result["status"], TrialState.FAIL)
        tuning.study.add_trial(optuna.trial.create_trial(
            state=state, value=result["value"] if state == TrialState.COMPLETE else None,
            params=params, distributions=distributions,
            user_attrs={**attrs, **{k: v for k, v in result.items() if k != "value"}}))
        _progress(tuning, cand, j, result)
        if state == TrialState.FAIL:
            claims.release(cand, seed)
            return False
        claims.finish(cand, seed)
        return True
    return None


def _newcomer(tuning: Tuning, round_: int, claims: Claims) -> bool:
    """A new candidate from the sampler: it enters at `round_` and runs seed index 0 on the
    asked trial itself (claimed first, so no other worker runs it too)."""
    with warnings.catch_warnings():  # "heartbeat ... with Study.optimize": the "worker" attribute
        warnings.simplefilter("ignore")  # below lets the next opener fail this trial if we die
        trial = tuning.study.ask()
    cand = f"t{trial.number}"
    trial.set_user_attr("worker", worker_id())
    claims.claim_run(cand, TUNE_SEED_OFFSET)  # unique name: always ours
    try:
        params = suggest(trial, tuning.space)
        for key, value in {"race_candidate": cand, "race_entered": round_, "race_seed_index": 0}.items():
            trial.set_user_attr(key, value)
        result = _evaluate(tuning, params, TUNE_SEED_OFFSET)
        for key, value in result.items():
            if key != "value":
                trial.set_user_attr(key, value)
    except BaseException:
        tuning.study.tell(trial, state=TrialState.FAIL)
        claims.release(cand, TUNE_SEED_OFFSET)
        raise
    if result["status"] == COMPLETE:
        tuning.study.tell(trial, result["value"])
    else:
        tuning.study.tell(trial, state=TrialState.PRUNED if result["status"] == DIVERGED else TrialState.FAIL)
    _progress(tuning, cand, 0, result)
    if result["status"] not in (COMPLETE, DIVERGED):
        claims.release(cand, TUNE_SEED_OFFSET)
        return False
    claims.finish(cand, TUNE_SEED_OFFSET)
    return True


def _evaluate(tuning: Tuning, params: dict[str, Any], seed: int) -> dict[str, Any]:
    """One run of the experiment on a tuning seed (study.search.tuning_run: its test set never
    scored, its timeout, its code): its status, the tuned metric's final value and what the
    report needs, test metric left out; an exception is a FAILED status."""
    from study import params as config_params
    from study.experiment import check_metric

    cfg = config_params.apply(tuning.config, params, where="[tune]")
    out: dict[str, Any] = {"seed": seed, "worker": worker_id(), "config_hash": config_hash(cfg), **(tuning.code or {})}
    try:
        outcome = tuning_run(tuning.experiment, cfg, seed, device=tuning.device, timeout=tuning.timeout)
        if outcome.status == COMPLETE:
            check_metric(outcome.metrics, tuning.objective, role="[tune] metric")
    except Exception as e:
        return {**out, "status": FAILED, "error": f"{type(e).__name__}: {e}",
                "traceback": getattr(e, "seedwise_traceback", None) or traceback.format_exc()[-8000:]}
    value = outcome.metrics.get(tuning.objective, math.nan)
    attrs = outcome_attrs(outcome, tuning.test_metric)
    if not math.isfinite(value):
        attrs.update(status=DIVERGED, diverged_epoch=outcome.diverged_epoch)
    return {**out, **attrs, "value": value}


def _progress(tuning: Tuning, cand: str, j: int, result: dict[str, Any]) -> None:
    value = result.get("value")
    what = f"{tuning.objective} {value:.4g}" if result["status"] == COMPLETE else result.get("error", result["status"])
    print(f"race {tuning.arm}: {cand} on seed {TUNE_SEED_OFFSET + j} ({result['status']}): {what}",
          file=sys.stderr, flush=True)


def report_winner(tuning: Tuning, data: RaceData) -> None:
    state = data.state()
    chosen = winner(data.table, data.candidates, state, DEFAULT, tuning.direction)
    print(f"race {tuning.arm}: {data.runs} runs, {state.rounds} complete round(s), {len(data.candidates)} "
          f"candidates, {len(state.dropped)} dropped; winner {chosen.candidate} "
          f"({', '.join(f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}' for k, v in data.params[chosen.candidate].items())}): "
          f"{chosen.reason}")


def winner_trials(study: optuna.Study, top_k: int) -> list[optuna.trial.FrozenTrial]:
    """What `--confirm` re-runs from a race study: the race's winner (then, for --top-k, the
    other live candidates by mean), each as its first stored trial with its value replaced by
    its mean over the completed rounds (the score that selected it, never one seed's)."""
    race = race_summary(race_data(study.get_trials(deepcopy=False), race_plan(study.user_attrs),
                                  retire=race_retire(study.user_attrs)))
    if race.state.incumbent is None:
        raise UsageError(f"race study {study.study_name!r} has no completed round yet; run "
                         "`seedwise tune --race --budget N` first")
    means = race.means
    order = [race.winner.candidate] + [c for c in race.ranking if c != race.winner.candidate]
    out = []
    for cand in order[:top_k]:
        first = min((t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("race_candidate") == cand
                     and t.params), key=lambda t: t.number)
        out.append(optuna.trial.FrozenTrial(
            number=first.number, state=TrialState.COMPLETE, value=means.get(cand, first.value),
            datetime_start=first.datetime_start, datetime_complete=first.datetime_complete,
            params=dict(race.data.params[cand]), distributions=first.distributions, user_attrs=dict(first.user_attrs),
            system_attrs={}, intermediate_values={}, trial_id=first._trial_id))
    return out
