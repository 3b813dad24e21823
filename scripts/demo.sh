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
echo "demo: done (files in $OUT)"
