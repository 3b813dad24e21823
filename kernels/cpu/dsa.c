/* kernels/cpu/dsa.c — the key selection of DeepSeek Sparse Attention (V3.2's lightning
 * indexer) on the CPU: per query, ReLU-weighted indexer scores of its causal keys and the
 * top_k of them.  The projections, norms and rope that produce q, k and the head weights are
 * the engine's (calib/engine.c); this file only scores and selects.  Contract: kernels.h. */
#include "../kernels.h"
#include "kn_simd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct { float s; int32_t j; } dsa_cand;

/* Higher score first; equal scores: lower position first (a strict total order, so the kept
 * set does not depend on the sort's algorithm). */
static int cand_cmp(const void *pa, const void *pb) {
    const dsa_cand *a = pa, *b = pb;
    if (a->s != b->s) return a->s > b->s ? -1 : 1;
    return a->j < b->j ? -1 : a->j > b->j;
}

/* Query i of sequence s; cand and keep are scratch of S entries. */
static void select_one(const kn_dsa_args *a, int64_t s, int64_t i, dsa_cand *cand, unsigned char *keep,
                       float (*dot)(const float *, const float *, int64_t)) {
    const int64_t base = s * a->S, t = base + i, K = a->top_k;
    int32_t *out = a->sel + t * K;
    if (i < K) {   /* every causal key */
        for (int64_t j = 0; j < K; j++) out[j] = j <= i ? (int32_t)j : -1;
        return;
    }
    const float *qi = a->q + t * a->ldq, *wi = a->w + t * a->ldw;
    for (int64_t j = 0; j <= i; j++) {
        const float *kj = a->k + (base + j) * a->ldk;
        float sc = 0.0f;
        for (int h = 0; h < a->n_heads; h++) {
            float d = dot(qi + (int64_t)h * a->dh, kj, a->dh);
            sc += (d > 0.0f ? d : 0.0f) * wi[h];
        }
        cand[j].s = isnan(sc) ? -INFINITY : sc;
        cand[j].j = (int32_t)j;
    }
    qsort(cand, (size_t)(i + 1), sizeof *cand, cand_cmp);
    memset(keep, 0, (size_t)(i + 1));
    for (int64_t r = 0; r < K; r++) keep[cand[r].j] = 1;
    int64_t n = 0;
    for (int64_t j = 0; j <= i; j++)
        if (keep[j]) out[n++] = (int32_t)j;
}

static void dsa_run(const kn_dsa_args *a, float (*dot)(const float *, const float *, int64_t), bool par) {
    const int64_t T = a->n_seq * a->S;
    if (T <= 0 || a->top_k <= 0) return;
#ifdef _OPENMP
#pragma omp parallel if (par)
#endif
    {
        dsa_cand *cand = malloc((size_t)a->S * sizeof *cand);
        unsigned char *keep = malloc((size_t)a->S);
        if (!cand || !keep) abort();   /* S entries: the caller's activations are far larger */
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 16)
#endif
        for (int64_t t = 0; t < T; t++) select_one(a, t / a->S, t % a->S, cand, keep, dot);
        free(cand); free(keep);
    }
    (void)par;
}

void kn_dsa_select_ref(const kn_dsa_args *a) { dsa_run(a, kn_dot_ref, false); }
void kn_dsa_select(const kn_dsa_args *a) { dsa_run(a, kn_dot, true); }
