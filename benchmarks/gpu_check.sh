#!/usr/bin/env bash
# The one script for a device session (under 3 minutes): install the carried wheels, run the
# backend cross-check tests on CuPy, then time the compute core on full-size e2v stacks.
# Outputs go to $OUT (the device tool returns that folder).
#
# Before the device call, on the development machine:  bash ../shared/device/wheels.sh
# Device call (carry .whl):                             bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD/src
else
  export PYTHONPATH=$PWD/src
fi
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  python3 -c "import cupy, numpy; print('cupy', cupy.__version__, 'numpy', numpy.__version__)"
} 2>&1 | tee "$OUT/machine.txt"
timeout 90 python3 -m pytest -q -p no:cacheprovider \
  tests/test_backend.py tests/test_covariances.py tests/test_measure.py -k cupy 2>&1 | tee "$OUT/tests.txt"
timeout 150 python3 benchmarks/gpu_bench.py --backend cupy --pairs 8 --end-to-end-pairs 8 \
  --end-to-end-storage int32 rice 2>&1 \
  | tee "$OUT/bench.txt"
