#!/bin/sh
# scripts/gptq_study.sh — what decides the gain of `--gptq` (docs/gptq.md, "Why the gain
# varies"): end-to-end KLD (qforge ppl --base: eval.txt, ctx 256, 64 chunks) of plain and
# --gptq builds at IQ2_XXS and Q2_K, on the two fixtures the defaults were first tuned on
# (mini-v3, mini-v3-moe) and on two models they were not (mini-llama, mini-qwen2), varying
# one setting at a time from the defaults.  Prints one markdown table row per build.
# usage: scripts/gptq_study.sh [section...]   sections: base damp chunks mintok text
#   (default: all); env QF_BIN (./qforge), QF_SHARED (../shared), OUT (/tmp/qf-gptq-study)
set -e
Q=${QF_BIN:-./qforge}
S=${QF_SHARED:-../shared}/models
OUT=${OUT:-/tmp/qf-gptq-study}
mkdir -p "$OUT"
secs=${*:-"base damp chunks mintok text"}

kld() {   # model build.gguf -> KLD mean
    $Q ppl "$2" --text "$S/$1/eval.txt" --ctx 256 --chunks 64 --base "$OUT/$1.base" --json "$OUT/k.json" >/dev/null 2>&1
    sed -n 's/.*"kld_mean": *\([-0-9.e]*\).*/\1/p' "$OUT/k.json" | head -n 1
}
prep() {  # model: imatrix of calib.txt (ctx 128, 64 chunks) and the base of eval.txt, once
    [ -f "$OUT/$1.im.gguf" ] || $Q imatrix "$S/$1" --text "$S/$1/calib.txt" --ctx 128 --chunks 64 -o "$OUT/$1.im.gguf" >/dev/null 2>&1
    [ -f "$OUT/$1.base" ] || $Q ppl "$S/$1" --text "$S/$1/eval.txt" --ctx 256 --chunks 64 --save-base "$OUT/$1.base" >/dev/null 2>&1
}
plain() { # model type -> KLD of the plain (imatrix) build, cached
    f="$OUT/$1.$2.plain.kld"
    if [ ! -f "$f" ]; then
        $Q convert "$S/$1" -o "$OUT/p.gguf" --type "$2" --imatrix "$OUT/$1.im.gguf" --quiet >/dev/null 2>&1
        kld "$1" "$OUT/p.gguf" > "$f"
    fi
    cat "$f"
}
row() {   # section model type label gptq-options...
    sec=$1 m=$2 t=$3 label=$4; shift 4
    p=$(plain "$m" "$t")
    t0=$(date +%s)
    $Q convert "$S/$m" -o "$OUT/g.gguf" --type "$t" --imatrix "$OUT/$m.im.gguf" --quiet "$@" >/dev/null 2>&1
    g=$(kld "$m" "$OUT/g.gguf")
    echo "| $sec | $m | $t | $label | $p | $g | $(echo "$g $p" | awk '{printf "%.3f", $1 / $2}') | $(( $(date +%s) - t0 )) s |"
}

echo "| section | model | type | --gptq settings | KLD plain | KLD --gptq | ratio | build |"
echo "|---|---|---|---|---:|---:|---:|---:|"
for m in mini-v3 mini-v3-moe mini-llama mini-qwen2; do prep $m; done
for sec in $secs; do
    case $sec in
    base)
        for m in mini-v3 mini-v3-moe mini-llama mini-qwen2; do for t in IQ2_XXS Q2_K; do
            row base $m $t "defaults (64 x 512)" --gptq "$S/$m/calib.txt" --gptq-chunks 64
        done; done ;;
    damp)
        for m in mini-v3-moe mini-llama; do for d in 0.03 0.3 1; do
            row damp $m IQ2_XXS "damp $d" --gptq "$S/$m/calib.txt" --gptq-chunks 64 --gptq-damp $d
        done; done ;;
    chunks)
        for m in mini-v3-moe mini-llama; do for c in 8 16 256; do
            row chunks $m IQ2_XXS "$c x 512" --gptq "$S/$m/calib.txt" --gptq-chunks $c
        done; done ;;
    mintok)
        for n in 0 64 256 1024; do
            row mintok mini-v3-moe IQ2_XXS "8 x 512, min-tokens $n" --gptq "$S/mini-v3-moe/calib.txt" --gptq-chunks 8 --gptq-min-tokens $n
        done ;;
    text)   # calibration far from the evaluation text: this repository's C sources and docs
        far="$OUT/far.txt"
        cat "$(dirname "$0")"/../*/*.c "$(dirname "$0")"/../docs/*.md 2>/dev/null | head -c 600000 > "$far"
        for m in mini-v3-moe mini-llama; do
            row text $m IQ2_XXS "C sources + docs, 64 x 512" --gptq "$far" --gptq-chunks 64
        done ;;
    esac
done
