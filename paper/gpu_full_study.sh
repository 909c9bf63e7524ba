#!/usr/bin/env bash
# The full-preset (notebook protocol) study on one lent GPU, inside a fixed time budget.
# Run from the repository root on the GPU machine, with the CIFAR-10 archive in .device/ and
# optuna's wheels in .whl/: `bash paper/gpu_bundle.sh` fills both here and prints the device
# call (docs/performance.md, "On a lent GPU"). Every step is resumable: what finishes before
# the budget runs out is stored; the rest can be run later with the same commands.
#   BUDGET=480 JOBS=4 OUT=/tmp/out bash paper/gpu_full_study.sh
#   STEPS="fid_fast fid_ref" BUDGET=300 bash paper/gpu_full_study.sh   # only those steps
set -u
OUT=${OUT:-/tmp/seedwise-out}; mkdir -p "$OUT"
BUDGET=${BUDGET:-480}        # seconds for all training below
JOBS=${JOBS:-4}              # runs sharing the GPU (each is small: batch 100, ~1.3M params)
STEPS=${STEPS:-matrix full10 fid_fast fid_ref tune confirm}  # which steps, in this order
SEEDS=${SEEDS:-10}           # per arm: the notebook protocol's study at 10 seeds (issue 27)
PRESET=${PRESET:-full}       # tests/test_gpu_script.py runs the steps on a CPU: PRESET=smoke SEEDS=1
RESULTS=${RESULTS:-results}  # where the studies live (they resume what is there)
MATRIX_ARGS=${MATRIX_ARGS:-} # e.g. the tests' CPU smoke: --device cpu --width 8 --steps 3
export PYTHONUNBUFFERED=1 SEEDWISE_CACHE=${SEEDWISE_CACHE:-/tmp/seedwise-cache}
export SEEDWISE_DATA=${SEEDWISE_DATA:-.device/cifar10-jpeg.tar.gz}
PY=${PY:-python3}
start=$(date +%s)
left() { echo $(( BUDGET - ($(date +%s) - start) )); }
wanted() { [[ " $STEPS " == *" $1 "* ]]; }
step() {  # step NAME TIME_CAP command...: run with SIGINT at the cap (clean stop, runs kept)
  local name=$1 cap=$2; shift 2
  wanted "${name%%[0-9]*}" || wanted "$name" || return 0
  local t=$(left); (( t < cap )) && cap=$t
  (( cap < 20 )) && { echo "skip $name: budget spent"; return; }
  echo "== $name (cap ${cap}s) $(date -u +%T)"
  timeout -s INT "$cap" "$@" 2>&1 | tee "$OUT/$name.log" | grep -v '^\s*$' | tail -n 40
}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no GPU"
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"; } | tee "$OUT/gpu.txt"
run=($PY -m study.run --preset "$PRESET" --results "$RESULTS")
tune=($PY -m study.tune --preset "$PRESET" --results "$RESULTS")

# 1. speed: the variant matrix (bf16/TF32/fp32, channels_last, 1-16 seeds per vmapped step,
#    1-8 processes at once, CUDA graphs) against the notebook's loop, same steps each;
#    --budget keeps it inside its cap (variants that would not fit are recorded as skipped)
# shellcheck disable=SC2086  # MATRIX_ARGS is a list of options
step matrix 200 $PY benchmarks/gpu_matrix.py --budget 180 --json "$OUT/matrix.json" $MATRIX_ARGS
# 2. the default study, full preset, 10 seeds per arm: each arm's seeds in one vmapped step
step full10 300 "${run[@]}" --seeds "$SEEDS" --group 10 --jobs 1
# 3. fidelity: the fast engine (bf16, 10 seeds per step) vs the fp32 single-model reference
step fid_fast 120 "${run[@]}" --spec benchmarks/fidelity.toml --seeds "$SEEDS" --arms bf16 --group 10
step fid_ref 200 "${run[@]}" --spec benchmarks/fidelity.toml --seeds "$SEEDS" --arms fp32 --group 1 --jobs "$JOBS"
# 4. tuning: JOBS cooperating tuners share one target of 30 trials, then SEEDS fresh seeds
if wanted tune; then
  for i in $(seq "$JOBS"); do
    step "tune$i" 240 "${tune[@]}" --trials 30 --threads 1 &
  done; wait
fi
step confirm 200 "${tune[@]}" --confirm "$SEEDS"
tar czf "$OUT/results-gpu.tgz" -C "$RESULTS" $(cd "$RESULTS" && ls -d notebook-ablation-"$PRESET"* fidelity-"$PRESET" 2>/dev/null) \
  && ls -la "$OUT"
