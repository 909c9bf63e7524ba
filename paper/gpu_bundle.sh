#!/usr/bin/env bash
# Here, before a session's device call: fill .whl/ with the wheels the GPU machine's image lacks
# (optuna and its database stack, at the versions this environment runs) and .device/ with the
# CIFAR-10 archive, both ignored by git, then print the one device call that runs
# paper/gpu_full_study.sh there. The machine starts bare each time and reaches no network.
#   SEEDWISE_DATA=../shared/data/cifar10-jpeg.tar.gz bash paper/gpu_bundle.sh
#   STEPS="matrix full10" BUDGET=480 bash paper/gpu_bundle.sh    # the call for those steps
set -euo pipefail
PY=${PY:-python3}
DATA=${SEEDWISE_DATA:-../shared/data/cifar10-jpeg.tar.gz}
STEPS=${STEPS:-matrix full10 fid_fast fid_ref}
BUDGET=${BUDGET:-480}   # the script's training seconds; one device command may run 600
# Not in the device image (docs/performance.md): optuna, and what its RDB storage imports.
NEEDED="optuna sqlalchemy alembic colorlog mako greenlet"

[[ -f "$DATA" ]] || { echo "gpu_bundle: no CIFAR-10 archive at $DATA (set SEEDWISE_DATA)" >&2; exit 2; }
mkdir -p .whl .device
pins=$($PY - $NEEDED <<'PY'
import sys
from importlib import metadata
def pin(name):  # this environment's version where it has one (greenlet: only where asyncio is used)
    try:
        return f"{name}=={metadata.version(name)}"
    except metadata.PackageNotFoundError:
        return name
print(" ".join(map(pin, sys.argv[1:])))
PY
)
rm -f .whl/*.whl
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  -d .whl $pins
cp -u "$DATA" .device/cifar10-jpeg.tar.gz
echo "bundled: $pins, $(du -sh .whl | cut -f1) of wheels, $(du -sh .device | cut -f1) of data"
echo "the device call (carry .whl and .device; timeout_s 600):"
printf '%s\n' "python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:\$PWD || exit; STEPS=\"$STEPS\" BUDGET=$BUDGET OUT=\$OUT bash paper/gpu_full_study.sh"
