#!/bin/sh
# tests/cuda/harness/check_v4_emu.sh — runs the kernels of kernels/cuda/ops_v4.cu, compiled as
# host C++ against the CPU emulation in tests/cuda/harness/emu/cuda_runtime.h (fibers for
# threads, barriers, warp shuffles) under AddressSanitizer + UBSan, through
# tests/cuda/test_cuda_v4.c (QF_QUICK=1: without the two V4-Flash-size cases), then the whole
# test (those included) without sanitizers at -O2; the rest of the kn_cuda API comes from the
# CPU stand-in kn_cuda_cpu.c.  Checks the kernels' logic (indices, bounds, shared-memory
# sizes, barrier structure) on a machine without a GPU; not their rounding (host math, though
# a third run moves every expf/logf by up to 2 ulp, CUDA's documented bound, to check the
# tolerances' headroom) and not a substitute for `make test-cuda`.  About 5 minutes on 2
# cores.  Exit status: 0 when all three runs pass.
set -e
cd "$(dirname "$0")/../../.."
B=build-harness
make -s NVCC= BUILD=$B $B/libqforge.a
mkdir -p $B/emu
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
sed -e 's/extern __shared__ float sm\[\];/float *sm = (float *)emu::dyn_smem();/' \
    -e 's/\([A-Za-z_0-9]*\)<<<\(.*\)>>>(\(.*\));/emu::launch(\1, \2, \3);/' \
    kernels/cuda/ops_v4.cu > $B/emu/ops_v4_emu.cpp
g++ -std=c++17 -O1 -g $SAN -Wall -Wextra -Itests/cuda/harness/emu -Ikernels/cuda -I. -c $B/emu/ops_v4_emu.cpp -o $B/emu/ops_v4_emu.o
for c in tests/cuda/test_cuda_v4.c tests/cuda/harness/kn_cuda_cpu.c tests/util/tu.c; do
    gcc -std=c11 -D_GNU_SOURCE -O1 -g $SAN -Wall -Wextra -I. -fopenmp -DKN_CUDA_CPU_NO_V4 -c "$c" -o "$B/emu/$(basename "$c" .c).o"
done
g++ $SAN -fopenmp $B/emu/test_cuda_v4.o $B/emu/kn_cuda_cpu.o $B/emu/tu.o $B/emu/ops_v4_emu.o $B/libqforge.a \
    -ljansson -lxxhash -lpcre2-8 -lz -lm -lpthread -o $B/emu/test_cuda_v4
echo "== emulated kernels under ASan+UBSan, QF_QUICK=1"
QF_QUICK=1 ASAN_OPTIONS=detect_leaks=0:detect_stack_use_after_return=0 $B/emu/test_cuda_v4
g++ -std=c++17 -O2 -g -Wall -Wextra -Itests/cuda/harness/emu -Ikernels/cuda -I. -c $B/emu/ops_v4_emu.cpp -o $B/emu/ops_v4_emu_o2.o
for c in tests/cuda/test_cuda_v4.c tests/cuda/harness/kn_cuda_cpu.c tests/util/tu.c; do
    gcc -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -I. -fopenmp -DKN_CUDA_CPU_NO_V4 -c "$c" -o "$B/emu/$(basename "$c" .c)_o2.o"
done
g++ -fopenmp $B/emu/test_cuda_v4_o2.o $B/emu/kn_cuda_cpu_o2.o $B/emu/tu_o2.o $B/emu/ops_v4_emu_o2.o $B/libqforge.a \
    -ljansson -lxxhash -lpcre2-8 -lz -lm -lpthread -o $B/emu/test_cuda_v4_o2
echo "== emulated kernels at -O2, every case"
$B/emu/test_cuda_v4_o2
sed -e 's/\([^_a-z]\)expf(/\1emu_expf(/g' -e 's/\([^_a-z]\)logf(/\1emu_logf(/g' $B/emu/ops_v4_emu.cpp > $B/emu/ops_v4_ulp.cpp
g++ -std=c++17 -O2 -g -Wall -Wextra -Itests/cuda/harness/emu -Ikernels/cuda -I. -c $B/emu/ops_v4_ulp.cpp -o $B/emu/ops_v4_ulp.o
g++ -fopenmp $B/emu/test_cuda_v4_o2.o $B/emu/kn_cuda_cpu_o2.o $B/emu/tu_o2.o $B/emu/ops_v4_ulp.o $B/libqforge.a \
    -ljansson -lxxhash -lpcre2-8 -lz -lm -lpthread -o $B/emu/test_cuda_v4_ulp
echo "== emulated kernels at -O2 with expf/logf off by up to 2 ulp (CUDA's bound), every case"
$B/emu/test_cuda_v4_ulp
