#!/usr/bin/env bash
# The one script for a device session, under 4 minutes in all (the step limits add to
# 240 s): install the carried wheels, print the machine, run the CuPy tests (failing if none is selected or CuPy is absent),
# then time the batched full-covariance fit, RICE decoding on the device, the compute core
# and end-to-end runs on
# full-size e2v data. Every step has its
# own time limit and writes, unbuffered, into $OUT (the device tool returns that folder);
# summary.txt lists each step's exit status, and the script fails if any step failed.
#
# Before the device call, on the development machine:  bash ../shared/device/wheels.sh vl-convert-python
# Device call (carry .whl, timeout_s about 300):        bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"
failed=0

step() {  # step NAME SECONDS COMMAND...: run with a time limit, output to $OUT/NAME.txt
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  timeout --kill-after=5 "$limit" "$@" >"$OUT/$name.txt" 2>&1
  local code=$?
  echo "$name: exit $code after $((SECONDS - start)) s (limit $limit s)" | tee -a "$SUMMARY"
  tail -n 25 "$OUT/$name.txt"
  [ "$code" -eq 0 ] || failed=1
  return "$code"
}

if ls .whl/*.whl >/dev/null 2>&1; then
  step install 30 python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD/src
else
  export PYTHONPATH=$PWD/src
fi
step machine 15 bash -c 'date -u; nvidia-smi --query-gpu=name,memory.total,driver_version \
  --format=csv,noheader; python3 -c "import cupy, numpy; \
print(\"cupy\", cupy.__version__, \"numpy\", numpy.__version__, \
\"devices\", cupy.cuda.runtime.getDeviceCount())"' || { cat "$SUMMARY"; exit 1; }
# pytest exits 5 when nothing is selected: that is a failure here (no CuPy test ran)
step tests 50 python3 -m pytest -q -p no:cacheprovider -k "cupy or device" \
  tests/test_backend.py tests/test_covariances.py tests/test_isr.py tests/test_measure.py \
  tests/test_gpu_path.py tests/test_cuda_kernels.py tests/test_rice_gpu.py
step kernels 15 python3 benchmarks/gpu_kernels_check.py
failed_before_sanitizer=$failed
# compute-sanitizer is refused on some runtimes: its result is reported, never fatal
if command -v compute-sanitizer >/dev/null 2>&1; then
  step sanitizer 20 compute-sanitizer --tool memcheck python3 benchmarks/gpu_kernels_check.py --small \
    || { echo "sanitizer: reported above, not counted as a failure" | tee -a "$SUMMARY"; failed=$failed_before_sanitizer; }
fi
step fits 15 python3 benchmarks/gpu_fits.py --pairs 64
step rice 15 python3 benchmarks/gpu_rice.py --files 16
step bench 80 python3 benchmarks/gpu_bench.py --backend cupy --pairs 8 --repeats 3 --end-to-end-pairs 8 \
  --end-to-end-storage int32 rice
cat "$SUMMARY"
exit "$failed"
