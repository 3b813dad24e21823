#!/bin/sh
# End-to-end accuracy of qforge's quantizers next to llama.cpp's, in the same run: for each
# preset, each tool builds the preset from the same model with its own importance matrix of
# the same text, and both builds are scored by the same KLD against the unquantized model
# (the judge of issue 11; per-tensor error is only a diagnostic).  llama.cpp is not part of
# this repository: point LLAMA_BIN at a directory holding llama-imatrix, llama-quantize and
# llama-perplexity built elsewhere.
#   LLAMA_BIN=/path/bin bench/kld_vs_llama.sh HFDIR [PRESET...]
# HFDIR holds calib.txt and eval.txt (../shared/models/mini-v3, mini-v3-moe).  Protocol:
# imatrix ctx 128, 64 chunks of calib.txt; KLD on eval.txt, ctx 256, 64 chunks.
# GPTQ=1 adds a third build per preset: qforge with --gptq calib.txt (64 windows of 512 tokens;
# the error feedback of docs/gptq.md, same imatrix, same bytes), scored the same way.
set -e
M=$1; shift || true
[ -d "${M:-}" ] || { echo "usage: LLAMA_BIN=... $0 HFDIR [PRESET...]" >&2; exit 2; }
[ -x "${LLAMA_BIN:-}/llama-perplexity" ] || { echo "kld_vs_llama: set LLAMA_BIN to a directory with llama-perplexity, -quantize, -imatrix" >&2; exit 2; }
[ $# -gt 0 ] || set -- IQ1_S IQ1_M IQ2_XXS IQ2_XS IQ2_M IQ3_XXS IQ3_S Q2_K Q3_K_M Q4_K_M
Q=${QF_BIN:-./qforge}; J=${THREADS:-2}
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
"$Q" convert "$M" -o "$W/f32.gguf" --type F32 --quiet > /dev/null
"$LLAMA_BIN/llama-imatrix" -m "$W/f32.gguf" -f "$M/calib.txt" -c 128 --chunks 64 -o "$W/ll-im.gguf" -t "$J" > "$W/log" 2>&1
"$LLAMA_BIN/llama-perplexity" -m "$W/f32.gguf" -f "$M/eval.txt" -c 256 -b 256 --chunks 64 --kl-divergence-base "$W/base.kld" -t "$J" > "$W/log" 2>&1
"$Q" imatrix "$M" --text "$M/calib.txt" --ctx 128 --chunks 64 -o "$W/qf-im.gguf" -t "$J" > /dev/null 2>&1
kld() {   # file -> mean KLD by llama-perplexity (it sometimes exits without its summary: up to 3 runs)
    for try in 1 2 3; do
        "$LLAMA_BIN/llama-perplexity" -m "$1" -f "$M/eval.txt" --kl-divergence-base "$W/base.kld" --kl-divergence \
            -c 256 -b 256 --chunks 64 -t "$J" > "$W/log" 2>&1 || true
        k=$(grep -m1 "Mean    KLD" "$W/log" | awk '{print $3}')
        [ -n "$k" ] && { echo "$k"; return; }
    done
}
printf "%-8s %12s %10s %12s %10s %7s" preset "llama bytes" "llama KLD" "qforge bytes" "qforge KLD" ratio
[ "${GPTQ:-0}" = 1 ] && printf " %12s %7s" "+gptq KLD" ratio
echo
for p in "$@"; do
    "$LLAMA_BIN/llama-quantize" --imatrix "$W/ll-im.gguf" "$W/f32.gguf" "$W/ll.gguf" "$p" "$J" > "$W/log" 2>&1
    "$Q" convert "$M" -o "$W/qf.gguf" --type "$p" --imatrix "$W/qf-im.gguf" --quiet > /dev/null 2>&1
    a=$(kld "$W/ll.gguf"); b=$(kld "$W/qf.gguf"); c=""
    if [ "${GPTQ:-0}" = 1 ]; then
        "$Q" convert "$M" -o "$W/qg.gguf" --type "$p" --imatrix "$W/qf-im.gguf" --gptq "$M/calib.txt" --gptq-chunks 64 --quiet > /dev/null 2>&1
        c=$(kld "$W/qg.gguf")
    fi
    awk -v p="$p" -v la="$(stat -c %s "$W/ll.gguf")" -v qa="$(stat -c %s "$W/qf.gguf")" -v a="$a" -v b="$b" -v c="$c" -v g="${GPTQ:-0}" 'BEGIN {
        if (a == "" || b == "") printf "%-8s %12d %10s %12d %10s %7s", p, la, a == "" ? "n/a" : a, qa, b == "" ? "n/a" : b, "-"
        else printf "%-8s %12d %10.5f %12d %10.5f %7.3f", p, la, a, qa, b, b / a
        if (g == 1) { if (c == "" || a == "") printf " %12s %7s", c == "" ? "n/a" : c, "-"; else printf " %12.5f %7.3f", c, c / a }
        printf "\n" }'
done
