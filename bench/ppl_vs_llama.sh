#!/bin/sh
# Tokens/s of `qforge ppl` next to `llama-perplexity` on the same GGUF, text, context and
# thread count, in the same run (llama.cpp is not part of this repository: point
# LLAMA_PERPLEXITY at a llama-perplexity binary built elsewhere).
#   LLAMA_PERPLEXITY=/path/llama-perplexity bench/ppl_vs_llama.sh MODEL.gguf TEXT [CTX] [CHUNKS] [THREADS]
set -e
M=$1; T=$2; C=${3:-256}; N=${4:-64}; J=${5:-2}
[ -n "$M" ] && [ -n "$T" ] || { echo "usage: LLAMA_PERPLEXITY=... $0 MODEL.gguf TEXT [CTX] [CHUNKS] [THREADS]" >&2; exit 2; }
[ -x "${LLAMA_PERPLEXITY:-}" ] || { echo "ppl_vs_llama: set LLAMA_PERPLEXITY to a llama-perplexity binary" >&2; exit 2; }
Q=${QF_BIN:-./qforge}
tok=$((C * N))
t0=$(date +%s.%N)
"$LLAMA_PERPLEXITY" -m "$M" -f "$T" -c "$C" -b "$C" --chunks "$((N + 1))" -t "$J" > /tmp/ppl_vs_llama.$$ 2>&1
t1=$(date +%s.%N)
"$Q" ppl "$M" --text "$T" --ctx "$C" --chunks "$N" -t "$J" --json /tmp/ppl_vs_llama.$$.json 2>/dev/null >/dev/null
t2=$(date +%s.%N)
lp=$(grep -o "\[$N\][0-9.]*" /tmp/ppl_vs_llama.$$ | head -n 1 | cut -d']' -f2)
qp=$(grep -o '"ppl": *[0-9.]*' /tmp/ppl_vs_llama.$$.json | head -n 1 | sed 's/.*: *//')
awk -v a="$t0" -v b="$t1" -v c="$t2" -v tok="$tok" -v lp="$lp" -v qp="$qp" -v n="$N" 'BEGIN {
  ll = b - a; qf = c - b;
  printf "llama-perplexity: %.2f s wall (%d+1 chunks; includes load), %.0f tokens/s, PPL[%d] %s\n", ll, n, tok * (n + 1) / n / ll, n, lp;
  printf "qforge ppl:       %.2f s wall (%d chunks; includes load), %.0f tokens/s, PPL %s\n", qf, n, tok / qf, qp;
  printf "speed ratio qforge/llama.cpp: %.2f\n", (tok / qf) / (tok * (n + 1) / n / ll) }'
rm -f /tmp/ppl_vs_llama.$$ /tmp/ppl_vs_llama.$$.json
