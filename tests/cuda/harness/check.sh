#!/bin/sh
# tests/cuda/harness/check.sh — runs the tests/cuda programs (and bench_gpu --mini) against the CPU stand-in of the
# kn_cuda API (kn_cuda_cpu.c) to check the harness on a machine without a GPU.  Builds a
# library without CUDA objects in build-harness/ first.  Exit status: the tests'.
set -e
cd "$(dirname "$0")/../../.."
B=build-harness
make -s NVCC= BUILD=$B $B/libqforge.a $B/tests/util/tu.o
rc=0
for src in tests/cuda/test_*.c; do
    t=$B/harness/$(basename "$src" .c)
    mkdir -p $B/harness
    gcc -O2 -g -std=c11 -D_GNU_SOURCE -Wall -Wextra -I. -fopenmp "$src" tests/cuda/harness/kn_cuda_cpu.c \
        $B/tests/util/tu.o $B/libqforge.a -ljansson -lxxhash -lpcre2-8 -lz -lm -lpthread -o "$t"
    if "$t" > "$t.log" 2>&1; then echo "PASS (CPU stand-in) $(tail -n 1 "$t.log")"; else echo "FAIL $t"; tail -n 20 "$t.log"; rc=1; fi
done
t=$B/harness/bench_gpu
gcc -O2 -g -std=c11 -D_GNU_SOURCE -Wall -Wextra -I. -fopenmp bench/gpu/bench_gpu.c tests/cuda/harness/kn_cuda_cpu.c \
    $B/libqforge.a -ljansson -lxxhash -lpcre2-8 -lz -lm -lpthread -o "$t"
if "$t" --mini --layers 3 > "$t.log" 2>&1; then echo "PASS (CPU stand-in) bench_gpu --mini"; else echo "FAIL bench_gpu --mini"; rc=1; fi
tail -n 4 "$t.log"
exit $rc
