#!/bin/sh
# bench/gpu/prepare.sh — run on the CPU machine BEFORE asking for the GPU machine.
# The GPU image has nvcc and the CUDA driver but not jansson/xxhash/pcre2, and ../shared does
# not travel, so this:
#   1. builds build-gpu/{qforge, tests/cuda/test_*, bench/gpu/bench_gpu, bench/bench_gptq} with those
#      libraries linked statically (CUDA runtime static too; only libc/libm/libgomp/libstdc++
#      are needed there);
#   2. copies ../shared/models/mini-v3 (24 MB) into .gpu-carry/shared/;
#   3. keeps every build dir and .gpu-carry out of the travelling working tree (64 MiB cap)
#      through .git/info/exclude (local to this checkout, nothing is committed);
#   4. prints the device `run` call to make.
set -e
cd "$(dirname "$0")/../.."
B=build-gpu
EX=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$EX")"
for p in '/build*/' '/.gpu-carry/' '/qforge'; do grep -qxF "$p" "$EX" 2>/dev/null || echo "$p" >> "$EX"; done
make -j2 BUILD=$B LDLIBS='-Wl,-Bstatic -ljansson -lxxhash -lpcre2-8 -lz -Wl,-Bdynamic -lm -lpthread' \
    $B/qforge $B/bench/gpu/bench_gpu $B/bench/bench_gptq $(ls tests/cuda/test_*.c | sed "s|^tests/cuda/\(.*\)\.c$|$B/tests/cuda/\1|")
mkdir -p .gpu-carry/shared/models
chmod -R u+w .gpu-carry
rm -rf .gpu-carry/shared/models/mini-v3
cp -r ../shared/models/mini-v3 .gpu-carry/shared/models/
chmod -R u+w .gpu-carry
echo "travelling tree (tracked + untracked-not-ignored):"
git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb 2>/dev/null | tail -n 1
echo "carried:"
du -cb $B/qforge $B/tests/cuda $B/bench/gpu .gpu-carry | tail -n 1
echo "device call:  run(command='sh bench/gpu/run.sh', timeout_s=300,"
echo "                  carry=['$B/qforge', '$B/tests/cuda', '$B/bench/gpu', '.gpu-carry'])"
