#!/bin/sh
# make demo: the main job on the embedded default model.
#   model = ../shared/models/mini-v3 when present, else a synthetic tiny-v3 checkpoint.
#   1. inspect it   2. convert it to Q4_K_M (one streaming pass)   3. verify the file
#   4. perplexity of the FP8 original (base) and of the build, and the drift table.
set -e
Q=./qforge
OUT=build/demo
mkdir -p "$OUT"
SHARED=${QF_SHARED:-../shared}
if [ -d "$SHARED/models/mini-v3" ]; then
    MODEL="$SHARED/models/mini-v3"
    TEXT="$MODEL/eval.txt"
    CHUNKS=64
else
    echo "demo: $SHARED/models/mini-v3 not found; using a synthetic tiny-v3 checkpoint"
    MODEL="$OUT/tiny-v3"
    rm -rf "$MODEL"
    $Q synth --preset tiny-v3 -o "$MODEL"
    TEXT=README.md
    CHUNKS=8
fi
TYPE=${DEMO_TYPE:-Q4_K_M}
echo "== qforge inspect $MODEL"
$Q inspect "$MODEL"
echo
echo "== qforge convert $MODEL -o $OUT/model-$TYPE.gguf --type $TYPE"
$Q convert "$MODEL" -o "$OUT/model-$TYPE.gguf" --type "$TYPE" --json "$OUT/convert.json"
echo
echo "== qforge verify $OUT/model-$TYPE.gguf"
$Q verify "$OUT/model-$TYPE.gguf"
echo
echo "== qforge ppl (base: the original checkpoint, $CHUNKS chunks of 256)"
$Q ppl "$MODEL" --text "$TEXT" --ctx 256 --chunks "$CHUNKS" --save-base "$OUT/base.qfb" --json "$OUT/base.json"
echo
echo "== qforge ppl (build vs base)"
$Q ppl "$OUT/model-$TYPE.gguf" --text "$TEXT" --ctx 256 --chunks "$CHUNKS" --base "$OUT/base.qfb" --json "$OUT/drift.json"
echo
# the at-a-glance table (values from the JSON files written above)
val() { sed -n "s/^ *\"$1\": *\([^,]*\),*\$/\1/p" "$2" | head -n 1; }
D="$OUT/drift.json"
awk -v file="model-$TYPE.gguf" -v bytes="$(val bytes "$OUT/convert.json")" -v bpw="$(val bpw "$OUT/convert.json")" \
    -v n="$(val n_tokens_scored "$D")" -v pb="$(val ppl_base "$D")" -v pq="$(val ppl "$D")" \
    -v kl="$(val kld_mean "$D")" -v k99="$(val kld_p99 "$D")" -v kmax="$(val kld_max "$D")" \
    -v top="$(val top1_agree "$D")" -v dp="$(val dp_rms "$D")" 'BEGIN {
  printf "== drift of %s (%d bytes, %.3f bits/weight) against the original, %d scored tokens\n", file, bytes, bpw, n
  printf "  %-14s %12s %12s %10s\n", "", "original", "build", "change"
  printf "  %-14s %12.4f %12.4f %+9.2f%%\n", "perplexity", pb, pq, 100 * (pq / pb - 1)
  printf "  %-14s %12s %12.6f   (p99 %.4f, max %.3f)\n", "KLD mean", "0", kl, k99, kmax
  printf "  %-14s %12s %11.2f%%\n", "same top-1", "100%", 100 * top
  printf "  %-14s %12s %11.2f%%\n", "RMS delta-p", "0", 100 * dp
}'
[ "$MODEL" = "$OUT/tiny-v3" ] && echo "  (synthetic random weights, untrained: these drift figures only show the pipeline works)"
echo
echo "demo: done (files in $OUT)"
