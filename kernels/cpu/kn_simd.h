/* kernels/cpu/kn_simd.h — internal: runtime-dispatched dot products shared by the CPU
 * kernels.  The AVX2/FMA variants are compiled with function target attributes so the
 * library builds for any x86-64 (and non-x86) and picks them only when the CPU has them. */
#ifndef KN_SIMD_H
#define KN_SIMD_H
#include <stdbool.h>
#include <stdint.h>

bool kn_have_avx2(void);
/* Σ a[i]·b[i] in f32, plain left-to-right order. */
float kn_dot_ref(const float *a, const float *b, int64_t n);
/* Σ a[i]·b[i], SIMD when available (8 lanes, then lanes summed, then the tail). */
float kn_dot(const float *a, const float *b, int64_t n);
/* y[i] += s * x[i] */
void kn_axpy(float *y, const float *x, float s, int64_t n);
/* out[r*ldo + t] for 4 weight rows w[0..3] (n floats each) against tokens x[t] (ldx apart):
 * out0..3[t] = dot(w_r, x_t).  Used by the matmul tile loop. */
void kn_dot4(const float *w0, const float *w1, const float *w2, const float *w3,
             const float *x, int64_t n, float out[4]);
/* kn_dot4 for two tokens x and z at once; each result equals kn_dot4's bit for bit. */
void kn_dot4x2(const float *w0, const float *w1, const float *w2, const float *w3,
               const float *x, const float *z, int64_t n, float ox[4], float oz[4]);
/* libstdc++'s std::partial_sort heap selection (what llama.cpp's CPU top_k runs): keeps k of
 * the n scores s[0..n) (by s[a] > s[b]) in h[0..k), k <= n (kernels/cpu/dsa.c). */
void kn_heap_select(int32_t *h, int64_t k, int64_t n, const float *s);
/* The lightning indexer's choice for one query (DSA over keys, V4 over compressed blocks): the
 * nv keys kbase[j * ldk] scored Σ_h relu(q_h · k_j) w_h (NaN as -inf), the top_k kept by
 * kn_heap_select and written to out[0..top_k) in key order, -1 after; nv <= top_k keeps all.
 * sc (nv floats), keep (nv bytes) and heap (top_k) are scratch. */
void kn_index_topk(const float *qi, const float *wi, int n_heads, int64_t dh, const float *kbase, int64_t ldk, int64_t nv,
                   int64_t top_k, float *sc, unsigned char *keep, int32_t *heap, float (*dot)(const float *, const float *, int64_t),
                   int32_t *out);
#endif
