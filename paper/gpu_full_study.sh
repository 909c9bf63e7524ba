#!/usr/bin/env bash
# The full-preset (notebook protocol) study on one lent GPU, inside a fixed time budget.
# Run from the repository root on the GPU machine, with the CIFAR-10 archive in .device/ and
# optuna's wheels in .whl/ (see README, "GPU"). Every step is resumable: what finishes before
# the budget runs out is stored; the rest can be run later with the same commands.
#   BUDGET=480 JOBS=4 OUT=/tmp/out bash paper/gpu_full_study.sh
set -u
OUT=${OUT:-/tmp/seedwise-out}; mkdir -p "$OUT"
BUDGET=${BUDGET:-480}        # seconds for all training below
JOBS=${JOBS:-4}              # runs sharing the GPU (each is small: batch 100, ~1.3M params)
export PYTHONUNBUFFERED=1 SEEDWISE_CACHE=${SEEDWISE_CACHE:-/tmp/seedwise-cache}
export SEEDWISE_DATA=${SEEDWISE_DATA:-.device/cifar10-jpeg.tar.gz}
PY=${PY:-python3}
start=$(date +%s)
left() { echo $(( BUDGET - ($(date +%s) - start) )); }
step() {  # step NAME TIME_CAP command...: run with SIGINT at the cap (clean stop, runs kept)
  local name=$1 cap=$2; shift 2
  local t=$(left); (( t < cap )) && cap=$t
  (( cap < 20 )) && { echo "skip $name: budget spent"; return; }
  echo "== $name (cap ${cap}s) $(date -u +%T)"
  timeout -s INT "$cap" "$@" 2>&1 | tee "$OUT/$name.log" | grep -v '^\s*$' | tail -n 40
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/gpu.txt"

# 1. speed: the variant matrix (bf16/TF32/fp32, channels_last, 1-16 seeds per vmapped step,
#    1-8 processes at once, CUDA graphs) against the notebook's loop, same steps each;
#    --budget keeps it inside its cap (variants that would not fit are recorded as skipped)
step matrix 200 $PY benchmarks/gpu_matrix.py --budget 180 --json "$OUT/matrix.json"
# 2. the default study, full preset, 10 seeds per arm: each arm's seeds in one vmapped step
step full10 300 $PY -m study.run --preset full --seeds 10 --group 10 --jobs 1
# (issue 13's quick-preset sequential study is complete in results/, run on a CPU in fp32)
# 3. fidelity: the fast engine (bf16, 10 seeds per step) vs the fp32 single-model reference
step fid_fast 120 $PY -m study.run --spec benchmarks/fidelity.toml --preset full --seeds 10 --arms bf16 --group 10
step fid_ref 200 $PY -m study.run --spec benchmarks/fidelity.toml --preset full --seeds 10 --arms fp32 \
  --group 1 --jobs "$JOBS"
# 4. tuning: JOBS cooperating tuners share one target of 30 trials, then 10 fresh seeds
for i in $(seq "$JOBS"); do
  step "tune$i" 240 $PY -m study.tune --preset full --trials 30 --threads 1 &
done; wait
step confirm 200 $PY -m study.tune --preset full --confirm 10
tar czf "$OUT/results-gpu.tgz" results/notebook-ablation-full* \
  results/fidelity-full && ls -la "$OUT"
