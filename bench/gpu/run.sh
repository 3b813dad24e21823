#!/bin/sh
# bench/gpu/run.sh — the whole GPU session in one script, under 4 minutes on an H200:
#   1. make test-cuda's checks (tests/cuda/run.sh): every CUDA kernel against its CPU twin on
#      random and mini-v3 data, `qforge ppl --device cuda` vs `--device cpu` on mini-v3 (PPL
#      within 0.01%, KLD within 1e-4), `qforge imatrix --device cuda`;
#   2. bench/gpu/bench_gpu: per-kernel GB/s and TFLOP/s against the H200 peaks, layer
#      streaming, end-to-end tokens/s on real-size DeepSeek-V3 layers (Q4_K_M / Q2_K mixes)
#      streamed from host memory, and the extrapolated 671B x 64K-token evaluation time.
# Prepare on the CPU machine with bench/gpu/prepare.sh (prebuilt binaries + mini-v3 copy),
# then on the device: sh bench/gpu/run.sh [bench_gpu options].  Logs also go to $OUT.
B=${B:-build-gpu}
export QF_SHARED="${QF_SHARED:-.gpu-carry/shared}"
OUT=${OUT:-/tmp/qforge-gpu}
mkdir -p "$OUT"
T0=$(date +%s)
stamp() { echo "== [$(( $(date +%s) - T0 ))s] $*"; }
stamp "device"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader 2>&1
nproc
if [ ! -x "$B/qforge" ] || [ ! -x "$B/bench/gpu/bench_gpu" ] || [ ! -x "$B/tests/cuda/test_cuda_kernels" ]; then
    stamp "no prebuilt binaries in $B: building here (needs jansson, xxhash, pcre2, zlib headers)"
    make -j"$(nproc)" BUILD="$B" "$B/qforge" "$B/tests/cuda/test_cuda_kernels" "$B/bench/gpu/bench_gpu" > "$OUT/build.log" 2>&1 \
        || { tail -n 30 "$OUT/build.log"; exit 1; }
fi
stamp "make test-cuda (tests/cuda/run.sh $B)"
timeout 100 ./tests/cuda/run.sh "$B" > "$OUT/test-cuda.log" 2>&1
rc_t=$?
cat "$OUT/test-cuda.log"
cp "$B"/test_cuda_*.log "$OUT"/ 2>/dev/null
stamp "bench_gpu"
timeout 120 "$B/bench/gpu/bench_gpu" "$@" > "$OUT/bench.log" 2>&1
rc_b=$?
cat "$OUT/bench.log"
stamp "done: test-cuda exit $rc_t, bench_gpu exit $rc_b"
[ $rc_t -eq 0 ] && [ $rc_b -eq 0 ]
