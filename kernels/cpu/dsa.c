/* kernels/cpu/dsa.c — the key selection of DeepSeek Sparse Attention (V3.2's lightning
 * indexer) on the CPU: per query, ReLU-weighted indexer scores of its causal keys and the
 * top_k of them.  The projections, norms and rope that produce q, k and the head weights are
 * the engine's (calib/engine.c); this file only scores and selects.  Contract: kernels.h. */
#include "../kernels.h"
#include "kn_simd.h"
#include "kn_twin.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Keeps k of the n scores s[0..n) in h[0..k) (k <= n) with llama.cpp's CPU top_k ties
 * (kn_twin.h, the text the CUDA twin runs too).  Shared with kernels/cpu/dsv4.c. */
void kn_heap_select(int32_t *h, int64_t k, int64_t n, const float *s) { kn_twin_heap_select(h, k, n, s); }

void kn_index_topk(const float *qi, const float *wi, int n_heads, int64_t dh, const float *kbase, int64_t ldk, int64_t nv,
                   int64_t top_k, float *sc, unsigned char *keep, int32_t *heap, float (*dot)(const float *, const float *, int64_t),
                   int32_t *out) {
    if (nv <= top_k) {   /* every key */
        for (int64_t j = 0; j < top_k; j++) out[j] = j < nv ? (int32_t)j : -1;
        return;
    }
    for (int64_t j = 0; j < nv; j++) {
        const float *kj = kbase + j * ldk;
        float v = 0.0f;
        for (int h = 0; h < n_heads; h++) {
            float d = dot(qi + (int64_t)h * dh, kj, dh);
            v += (d > 0.0f ? d : 0.0f) * wi[h];
        }
        sc[j] = isnan(v) ? -INFINITY : v;
    }
    kn_heap_select(heap, top_k, nv, sc);
    for (int64_t j = 0; j < nv; j++) keep[j] = 0;
    for (int64_t r = 0; r < top_k; r++) keep[heap[r]] = 1;
    int64_t n = 0;
    for (int64_t j = 0; j < nv; j++)
        if (keep[j]) out[n++] = (int32_t)j;
}

/* Query i of sequence s (its i + 1 causal keys); sc (S floats), keep (S bytes) and heap (top_k) are scratch. */
static void select_one(const kn_dsa_args *a, int64_t s, int64_t i, float *sc, unsigned char *keep, int32_t *heap,
                       float (*dot)(const float *, const float *, int64_t)) {
    const int64_t t = s * a->S + i;
    kn_index_topk(a->q + t * a->ldq, a->w + t * a->ldw, a->n_heads, a->dh, a->k + s * a->S * a->ldk, a->ldk, i + 1, a->top_k, sc,
                  keep, heap, dot, a->sel + t * a->top_k);
}

static void dsa_run(const kn_dsa_args *a, float (*dot)(const float *, const float *, int64_t), bool par) {
    const int64_t T = a->n_seq * a->S;
    if (T <= 0 || a->top_k <= 0) return;
#ifdef _OPENMP
#pragma omp parallel if (par)
#endif
    {
        float *sc = malloc((size_t)a->S * sizeof *sc);
        unsigned char *keep = malloc((size_t)a->S);
        int32_t *heap = malloc((size_t)a->top_k * sizeof *heap);
        if (!sc || !keep || !heap) abort();   /* S entries: the caller's activations are far larger */
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 16)
#endif
        for (int64_t t = 0; t < T; t++) select_one(a, t / a->S, t % a->S, sc, keep, heap, dot);
        free(sc); free(keep); free(heap);
    }
    (void)par;
}

void kn_dsa_select_ref(const kn_dsa_args *a) { dsa_run(a, kn_dot_ref, false); }
void kn_dsa_select(const kn_dsa_args *a) { dsa_run(a, kn_dot, true); }
