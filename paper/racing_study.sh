#!/usr/bin/env bash
# Issue 26: the paper's tuning sections (4: tune the baseline, confirm on fresh seeds; 5: every
# arm at its own tuned params) redone with racing, on the quick preset in fp32 on the CPU.
# One command, every step resumable (rerun it after an interruption: what is stored is kept):
#   bash paper/racing_study.sh                     # the paper's run (about 1 h of CPU)
#   SPEC=my.toml PRESET= ARMS=baseline,b LOW_LR_ARMS=b BUDGET=12 SEEDS=2 RESULTS=/tmp/r \
#     STUDY=tiny OUT=/tmp/r/report bash paper/racing_study.sh   # the same steps, tiny (tests)
# The BatchNorm arms (LOW_LR_ARMS) are searched down to lr LOW_LR through [arms.X.tune] tables
# added to a copy of the spec; every arm gets the same budget of runs and its own sampler seed.
# Racing runs every experiment through its contract, the built-in CIFAR-10 one included
# (study.cifar.experiment:train); no run of a race scores the test set.
set -euo pipefail
PY=${PY:-python3}
SPEC=${SPEC:-study/specs/notebook_ablation.toml}
PRESET=${PRESET-quick}               # empty: a spec without presets (a user experiment)
ARMS=${ARMS:-baseline,no_bn,notebook_no_bn}
LOW_LR_ARMS=${LOW_LR_ARMS:-no_bn,notebook_no_bn}
LOW_LR=${LOW_LR:-1e-4}
HIGH_LR=${HIGH_LR:-1.0}
BUDGET=${BUDGET:-30}                 # runs per arm (a rerun with a larger one extends each race)
SEEDS=${SEEDS:-5}                    # fresh evaluation seeds of the confirmation
WORKERS=${WORKERS:-2}                # tuner processes sharing each race, one torch thread each
RESULTS=${RESULTS:-results}
STUDY=${STUDY:-notebook-ablation-quick-race}
OUT=${OUT:-paper/$STUDY}             # the report's folder
export PYTHONUNBUFFERED=1

mkdir -p "$RESULTS/$STUDY"
work="$RESULTS/$STUDY/racing-spec.toml"
# The spec's copy: its folder pinned to the original's (a module next to it still imports), and
# each low-lr arm's own range. Written again on every run: the same inputs give the same file.
{
  grep -Eq '^(experiment|command) *=' "$SPEC" && ! grep -q '^folder *=' "$SPEC" && echo "folder = \"$(cd "$(dirname "$SPEC")" && pwd)\""
  cat "$SPEC"
  IFS=, read -ra low <<< "$LOW_LR_ARMS"
  for arm in "${low[@]}"; do
    [ -n "$arm" ] && printf '\n[arms.%s.tune]\nlr = {low = %s, high = %s, log = true}\n' "$arm" "$LOW_LR" "$HIGH_LR"
  done
} > "$work"

common=(--spec "$work" --results "$RESULTS" --study "$STUDY")
[ -n "$PRESET" ] && common+=(--preset "$PRESET")
echo "== the ablation's fixed-lr runs ($ARMS, $SEEDS seeds)"
$PY -m study.run "${common[@]}" --arms "$ARMS" --seeds "$SEEDS"
echo "== section 5: each arm raced ($BUDGET runs, $WORKERS workers), then every arm at its own winner on $SEEDS fresh seeds"
# --jobs: the workers share each race through its storage (claims: no run twice); all of them
# finish before the confirmation reads the winners.
$PY -m study.tune "${common[@]}" --race --budget "$BUDGET" --arm "$ARMS" --jobs "$WORKERS" --threads 1 \
  --confirm "$SEEDS"
echo "== section 4: the baseline's winner against the untuned baseline on the same fresh seeds"
$PY -m study.tune "${common[@]}" --race --confirm "$SEEDS"
echo "== the report"
$PY -m analysis.report "$RESULTS/$STUDY" --out "$OUT"
