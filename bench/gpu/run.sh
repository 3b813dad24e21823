#!/bin/sh
# bench/gpu/run.sh — the whole GPU session in one script, under 4 minutes on an H200:
#   1. make test-cuda's checks (tests/cuda/run.sh): every CUDA kernel against its CPU twin on
#      random and mini-v3 data, the device-resident V3 MoE layer (bench/gpu/v3_layer.h) on
#      mini-v3 layers 1-3 vs the reference, `qforge ppl --device cuda` vs `--device cpu` (PPL
#      within 0.01%, KLD within 1e-4), `qforge imatrix --device cuda`;
#   2. bench/gpu/bench_gpu: per-kernel GB/s and TFLOP/s against the H200 peaks, layer
#      streaming, end-to-end tokens/s on real-size DeepSeek-V3 layers (Q4_K_M / Q2_K mixes)
#      streamed from host memory, and the extrapolated 671B x 64K-token evaluation time;
#   3. the --gptq pass's CPU rates on the device host's cores (bench_gptq --quick: Hessians,
#      feedback product, factor, code search per type; no CUDA twin of them exists yet), which
#      the 671B --gptq projection on one GPU box needs (docs/gptq.md).
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
CUDA_TESTS=$(ls tests/cuda/test_*.c | sed "s|^tests/cuda/\(.*\)\.c$|$B/tests/cuda/\1|")
missing=0
for f in "$B/qforge" "$B/bench/gpu/bench_gpu" "$B/bench/bench_gptq" $CUDA_TESTS; do [ -x "$f" ] || missing=1; done
if [ $missing -eq 1 ]; then
    stamp "prebuilt binaries missing in $B: building here (needs jansson, xxhash, pcre2, zlib headers)"
    make -j"$(nproc)" BUILD="$B" "$B/qforge" "$B/bench/gpu/bench_gpu" "$B/bench/bench_gptq" $CUDA_TESTS > "$OUT/build.log" 2>&1 \
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
stamp "bench_gptq --quick (CPU rates of the --gptq pass on this host, $(nproc) cores)"
OMP_NUM_THREADS=1 timeout 60 "$B/bench/bench_gptq" --quick > "$OUT/bench_gptq.log" 2>&1
cat "$OUT/bench_gptq.log"
stamp "done: test-cuda exit $rc_t, bench_gpu exit $rc_b"
[ $rc_t -eq 0 ] && [ $rc_b -eq 0 ]
