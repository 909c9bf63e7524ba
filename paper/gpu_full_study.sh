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

# 1. speed: the notebook's loop vs seedwise's engine on this GPU (one epoch each), one model
#    per step and 8 seeds per vmapped step; then the same with torch.compile
step bench 150 $PY benchmarks/notebook_vs_engine.py --group 8 --json "$OUT/bench.json"
step bench_compiled 180 $PY benchmarks/notebook_vs_engine.py --group 8 --compile --json "$OUT/bench_compiled.json"
# 2. the default study, full preset, 10 seeds per arm: each arm's seeds in one vmapped step
step full10 300 $PY -m study.run --preset full --seeds 10 --group 10 --jobs 1
# 3. fidelity: the fast engine (bf16, 10 seeds per step) vs the fp32 single-model reference
step fid_fast 120 $PY -m study.run --spec benchmarks/fidelity.toml --preset full --seeds 10 --arms bf16 --group 10
step fid_ref 200 $PY -m study.run --spec benchmarks/fidelity.toml --preset full --seeds 10 --arms fp32 \
  --group 1 --jobs "$JOBS"
# 4. tuning: JOBS cooperating tuners share one target of 30 trials, then 10 fresh seeds
for i in $(seq "$JOBS"); do
  step "tune$i" 240 $PY -m study.tune --preset full --trials 30 --threads 1 &
done; wait
step confirm 200 $PY -m study.tune --preset full --confirm 10
tar czf "$OUT/results-gpu.tgz" results/notebook-ablation-full* results/fidelity-full && ls -la "$OUT"
