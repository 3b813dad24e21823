#!/bin/sh
# tests/fuzz/build.sh — builds every tests/fuzz/fuzz_*.c as a libFuzzer binary with clang
# (-fsanitize=fuzzer,address,undefined) into build-fuzz/, and optionally runs each one.
#
#   tests/fuzz/build.sh                 build all targets
#   tests/fuzz/build.sh 120             build, then run each target for 120 s on its corpus
#   tests/fuzz/build.sh 120 gguf        build, run only fuzz_gguf
#
# A run uses tests/fuzz/corpus/NAME/ as seed corpus (read-only) and writes new inputs to
# build-fuzz/corpus-NAME/; crashes land in build-fuzz/crash-NAME-*.  After fixing a crash,
# copy its input into tests/fuzz/corpus/NAME/ so `make test` replays it forever.
# Needs clang with libFuzzer (clang 14 on Debian ships it in libclang-rt / llvm packages).
set -e
cd "$(dirname "$0")/../.."
CC=${FUZZ_CC:-clang}
B=build-fuzz
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
if ! echo 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n){(void)d;(void)n;return 0;}' |
     $CC -fsanitize=fuzzer -x c - -o /tmp/qf_fuzz_probe.$$ 2>/dev/null; then
    echo "fuzz: $CC cannot link -fsanitize=fuzzer (libFuzzer missing); nothing built" >&2
    exit 1
fi
rm -f /tmp/qf_fuzz_probe.$$
make --no-print-directory BUILD=$B/lib CC="$CC" NVCC= OPT=-O1 \
    CFLAGS="-O1 -g -fsanitize=fuzzer-no-link $SAN" $B/lib/libqforge.a
LIBS="-ljansson -lxxhash -lpcre2-8 -lz -lm -lpthread"
# the Makefile adds -fopenmp when the compiler links it; the fuzz binaries must then too
if echo 'int main(void){return 0;}' | $CC -fopenmp -x c - -o /dev/null 2>/dev/null; then LIBS="$LIBS -fopenmp"; fi
for src in tests/fuzz/fuzz_*.c; do
    name=$(basename "$src" .c)
    $CC -std=c11 -D_GNU_SOURCE -O1 -g -I. -fsanitize=fuzzer $SAN "$src" $B/lib/libqforge.a $LIBS -o $B/$name
    echo "built $B/$name"
done
[ -n "$1" ] || exit 0
secs=$1
for src in tests/fuzz/fuzz_*.c; do
    name=$(basename "$src" .c)
    short=${name#fuzz_}
    [ -n "$2" ] && [ "$2" != "$short" ] && continue
    mkdir -p $B/corpus-$short
    echo "== fuzzing $name for ${secs}s"
    ./$B/$name -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 \
        -artifact_prefix=$B/crash-$short- $B/corpus-$short tests/fuzz/corpus/$short
done
