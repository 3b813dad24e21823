/* kernels/cpu/kn_twin.h — code the CPU operations and their CUDA twins run as one text, so the
 * two cannot drift: llama.cpp's top-k tie behaviour (libstdc++'s heap selection) and the
 * choice and weighing of V4's routed experts.  Included by kernels/cpu/dsa.c, kernels/cpu/dsv4.c
 * and kernels/cuda/ops_v4.cu (there each function is __host__ __device__).  Internal to
 * kernels/; contracts of the public functions built on them: kernels.h, kernels/cuda/kn_cuda.h. */
#ifndef QF_KERNELS_CPU_KN_TWIN_H
#define QF_KERNELS_CPU_KN_TWIN_H

#include "../kernels.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>

#ifdef __CUDACC__
#define KN_TWIN static inline __host__ __device__
#else
#define KN_TWIN static inline
#endif

/* ---- top-k selection with llama.cpp's tie behaviour ----
 * llama.cpp's CPU top_k (ggml-cpu/ops.cpp, ggml_compute_forward_top_k_f32) keeps the first k of
 * std::partial_sort(idx, idx + k, idx + n, s[a] > s[b]).  Which of several equal scores survive
 * is not specified by C++; it is fixed by libstdc++'s heap selection (__heap_select:
 * __make_heap over the first k, then every later index whose score beats the heap top replaces
 * it through __pop_heap / __adjust_heap / __push_heap), which the functions below follow step
 * for step.  The kept set (not its order) is what matters.  Ties are common where every
 * indexer head has q·k <= 0 (score exactly 0). */
KN_TWIN bool kn_twin_beats(const float *s, int32_t a, int32_t b) { return s[a] > s[b]; }

KN_TWIN void kn_twin_push_heap(int32_t *h, int64_t hole, int64_t top, int32_t v, const float *s) {
    int64_t parent = (hole - 1) / 2;
    while (hole > top && kn_twin_beats(s, h[parent], v)) {
        h[hole] = h[parent];
        hole = parent;
        parent = (hole - 1) / 2;
    }
    h[hole] = v;
}

KN_TWIN void kn_twin_adjust_heap(int32_t *h, int64_t hole, int64_t len, int32_t v, const float *s) {
    const int64_t top = hole;
    int64_t child = hole;
    while (child < (len - 1) / 2) {
        child = 2 * (child + 1);
        if (kn_twin_beats(s, h[child], h[child - 1])) child--;
        h[hole] = h[child];
        hole = child;
    }
    if ((len & 1) == 0 && child == (len - 2) / 2) {
        child = 2 * (child + 1);
        h[hole] = h[child - 1];
        hole = child - 1;
    }
    kn_twin_push_heap(h, hole, top, v, s);
}

/* Keeps k of the n scores s[0..n) in h[0..k) (k <= n). */
KN_TWIN void kn_twin_heap_select(int32_t *h, int64_t k, int64_t n, const float *s) {
    for (int64_t j = 0; j < k; j++) h[j] = (int32_t)j;
    if (k >= 2)
        for (int64_t parent = (k - 2) / 2;; parent--) {
            kn_twin_adjust_heap(h, parent, k, h[parent], s);
            if (parent == 0) break;
        }
    for (int64_t j = k; j < n; j++)
        if (kn_twin_beats(s, (int32_t)j, h[0])) kn_twin_adjust_heap(h, 0, k, (int32_t)j, s);
}

/* ---- V4 routing of one token t from its probabilities p[n_exp] (kn_v4_route's contract) ----
 * Chooses it[0..k) (hash[tok[t] * k ..] when a->hash, else the k best p + bias, ties toward the
 * lower index), weighs them wt[j] = p[it[j]] (divided by their sum clamped to >= 2^-14 when
 * a->norm, times a->scale) and sorts ids ascending with their weights.  False when a hash entry
 * is outside [0, n_exp) (it is replaced by expert 0). */
KN_TWIN bool kn_twin_v4_route_pick(const kn_v4_route_args *a, const float *p, int64_t t, int32_t *it, float *wt) {
    const int X = a->n_exp, k = a->k;
    bool ok = true;
    if (a->hash) {
        for (int j = 0; j < k; j++) {
            int32_t e = a->hash[(int64_t)a->tok[t] * k + j];
            if (e < 0 || e >= X) { ok = false; e = 0; }
            it[j] = e;
        }
    } else {
        for (int j = 0; j < k; j++) {   /* k best of p + bias, ties toward the lower index */
            int best = -1;
            float bv = -INFINITY;
            for (int x = 0; x < X; x++) {
                bool taken = false;
                for (int m = 0; m < j; m++) taken |= it[m] == x;
                const float v = p[x] + (a->bias ? a->bias[x] : 0.0f);
                if (!taken && (best < 0 || v > bv)) { best = x; bv = v; }
            }
            it[j] = best;
        }
    }
    float sum = 0.0f;
    for (int j = 0; j < k; j++) { wt[j] = p[it[j]]; sum += wt[j]; }
    if (sum < 6.103515625e-5f) sum = 6.103515625e-5f;
    for (int j = 0; j < k; j++) wt[j] = (a->norm ? wt[j] / sum : wt[j]) * a->scale;
    for (int j = 1; j < k; j++)   /* ascending ids, weights along */
        for (int m = j; m > 0 && it[m - 1] > it[m]; m--) {
            const int32_t ti = it[m]; it[m] = it[m - 1]; it[m - 1] = ti;
            const float tw = wt[m]; wt[m] = wt[m - 1]; wt[m - 1] = tw;
        }
    return ok;
}

#endif
