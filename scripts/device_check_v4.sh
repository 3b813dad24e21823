#!/bin/sh
# scripts/device_check_v4.sh — the GPU check of the DeepSeek-V4 CUDA twins (kernels/cuda/ops_v4.cu),
# for a person on a machine with an NVIDIA GPU (sm_90 build: H100/H200) and nvcc.  Builds the
# test, runs tests/cuda/test_cuda_v4 (every twin against the CPU _ref, tolerances in its
# header), then, when compute-sanitizer is there, its quick subset (QF_QUICK=1) under memcheck
# and racecheck.  Each step has a time limit; the whole check stays under 3 minutes after the
# build.  Exit status 0 when every step passed, 1 when one failed, 2 when none failed but a
# sanitizer step ran out of time (TIMEOUT: not a verdict).
# Usage: scripts/device_check_v4.sh [--prebuilt] [build dir]   (--prebuilt: no make, use the binary there)
# On this project's lent device machines (no jansson etc. there): sh bench/gpu/prepare.sh here
# first, then run(command="sh scripts/device_check_v4.sh --prebuilt build-gpu",
# carry=["build-gpu/tests/cuda"], timeout_s=240); logs also go to $OUT when it is set.
cd "$(dirname "$0")/.." || exit 1
PRE=0; [ "$1" = --prebuilt ] && { PRE=1; shift; }
B=${1:-build}
T=$B/tests/cuda/test_cuda_v4
fail=0; late=0
step() {   # step <label> <seconds> <command...>: runs it, keeps its log, prints PASS/FAIL and the tail
    label=$1; secs=$2; shift 2
    start=$(date +%s)
    timeout "$secs" "$@" > "$B/device_check_v4.$label.log" 2>&1; rc=$?
    if [ $rc -eq 0 ]; then echo "PASS $label ($(( $(date +%s) - start ))s) $(tail -n 1 "$B/device_check_v4.$label.log")"
    elif [ $rc -eq 124 ] && [ "$label" != test_cuda_v4 ]; then echo "TIMEOUT $label (limit ${secs}s): no verdict"; late=1
    else echo "FAIL $label (exit $rc, limit ${secs}s; log $B/device_check_v4.$label.log)"
        tail -n 25 "$B/device_check_v4.$label.log"; fail=1
    fi
}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "note: nvidia-smi failed"
mkdir -p "$B"
if [ $PRE -eq 0 ] || [ ! -x "$T" ]; then
    make -j"$(nproc)" BUILD="$B" "$T" > "$B/device_check_v4.build.log" 2>&1 || { echo "FAIL build"; tail -n 25 "$B/device_check_v4.build.log"; exit 1; }
fi
step test_cuda_v4 90 "$T"
CS=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
if [ -n "$CS" ]; then
    step memcheck 40 env QF_QUICK=1 "$CS" --tool memcheck --error-exitcode 1 "$T"
    step racecheck 40 env QF_QUICK=1 "$CS" --tool racecheck --error-exitcode 1 "$T"
else
    echo "note: compute-sanitizer not found: memcheck and racecheck not run"
fi
[ -n "$OUT" ] && cp "$B"/device_check_v4.*.log "$OUT"/ 2>/dev/null
if [ $fail -ne 0 ]; then echo "== device_check_v4: FAILED"; exit 1; fi
if [ $late -ne 0 ]; then echo "== device_check_v4: passed, but a sanitizer step did not finish"; exit 2; fi
echo "== device_check_v4: all passed"
