#!/bin/sh
# make test-cuda: every CUDA kernel against its CPU twin ($1/tests/cuda/test_*), then
# `qforge ppl --device cuda` against `--device cpu` on mini-v3 (PPL within 0.01% both ways,
# mean KLD within 1e-4, via qforge's own gates) and `qforge imatrix --device cuda`.
# Needs a GPU and ../shared; exits non-zero when anything fails or cannot run.
B=${1:-build}
Q=${QF_BIN:-$B/qforge}
S=${QF_SHARED:-../shared}
fail=0
for t in "$B"/tests/cuda/test_*; do
    [ -x "$t" ] || continue
    case "$t" in *.d) continue;; esac
    name=$(basename "$t")
    start=$(date +%s)
    if "$t" > "$B/$name.log" 2>&1; then echo "PASS $name ($(( $(date +%s) - start ))s) $(tail -n 1 "$B/$name.log")"
    else echo "FAIL $name"; tail -n 40 "$B/$name.log"; fail=1; fi
done
M="$S/models/mini-v3"
if [ ! -d "$M" ]; then echo "FAIL: $M is absent: the ppl comparison cannot run"; exit 1; fi
T=$(mktemp -d)
IDS="$M/reference/eval_ids.bin"
COMMON="--ids $IDS --protocol all --ctx 512 --chunks 8"
run() { label=$1; shift; if "$Q" "$@" > "$T/$label.out" 2>&1; then echo "PASS $label"; else echo "FAIL $label (exit $?)"; tail -n 20 "$T/$label.out"; fail=1; fi; }
run ppl-cpu ppl "$M" $COMMON --device cpu --save-base "$T/cpu.qfb" --json "$T/cpu.json"
run ppl-cuda-vs-cpu ppl "$M" $COMMON --device cuda --base "$T/cpu.qfb" --max-kld 0.0001 --max-ppl-ratio 1.0001 \
    --save-base "$T/cuda.qfb" --json "$T/cuda.json"
run ppl-cpu-vs-cuda ppl "$M" $COMMON --device cpu --base "$T/cuda.qfb" --max-kld 0.0001 --max-ppl-ratio 1.0001
for f in cpu cuda; do
    [ -f "$T/$f.json" ] && echo "  $f: $(grep -E '"(ppl|kld_mean|top1_agree|tokens_per_s)"' "$T/$f.json" | tr -d ' \n')"
done
run imatrix-cuda imatrix "$M" --ids "$M/reference/calib_ids.bin" --ctx 512 --chunks 4 -o "$T/im.gguf" --device cuda
rm -rf "$T"
[ $fail -eq 0 ] && echo "== make test-cuda: all passed" || echo "== make test-cuda: FAILED"
exit $fail
