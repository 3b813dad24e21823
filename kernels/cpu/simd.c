/* kernels/cpu/simd.c — dot-product primitives with an AVX2/FMA path chosen at run time and a
 * plain C fallback.  The SIMD result differs from kn_dot_ref only by summation order. */
#include "kn_simd.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define KN_X86 1
#endif

bool kn_have_avx2(void) {
#ifdef KN_X86
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return false;
#endif
}

float kn_dot_ref(const float *a, const float *b, int64_t n) {
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

#ifdef KN_X86
__attribute__((target("avx2,fma"))) static inline float hsum256(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
    return _mm_cvtss_f32(lo);
}

__attribute__((target("avx2,fma"))) static float dot_avx2(const float *a, const float *b, int64_t n) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
    }
    for (; i + 8 <= n; i += 8)
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    float s = hsum256(_mm256_add_ps(acc0, acc1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

__attribute__((target("avx2,fma"))) static void dot4_avx2(const float *w0, const float *w1,
                                                         const float *w2, const float *w3,
                                                         const float *x, int64_t n, float out[4]) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    __m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 xv = _mm256_loadu_ps(x + i);
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + i), xv, a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w1 + i), xv, a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w2 + i), xv, a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w3 + i), xv, a3);
    }
    float s0 = hsum256(a0), s1 = hsum256(a1), s2 = hsum256(a2), s3 = hsum256(a3);
    for (; i < n; i++) { s0 += w0[i] * x[i]; s1 += w1[i] * x[i]; s2 += w2[i] * x[i]; s3 += w3[i] * x[i]; }
    out[0] = s0; out[1] = s1; out[2] = s2; out[3] = s3;
}

__attribute__((target("avx2,fma"))) static void axpy_avx2(float *y, const float *x, float s, int64_t n) {
    __m256 sv = _mm256_set1_ps(s);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(sv, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += s * x[i];
}
#endif

float kn_dot(const float *a, const float *b, int64_t n) {
#ifdef KN_X86
    if (kn_have_avx2()) return dot_avx2(a, b, n);
#endif
    return kn_dot_ref(a, b, n);
}

void kn_dot4(const float *w0, const float *w1, const float *w2, const float *w3,
             const float *x, int64_t n, float out[4]) {
#ifdef KN_X86
    if (kn_have_avx2()) { dot4_avx2(w0, w1, w2, w3, x, n, out); return; }
#endif
    out[0] = kn_dot_ref(w0, x, n); out[1] = kn_dot_ref(w1, x, n);
    out[2] = kn_dot_ref(w2, x, n); out[3] = kn_dot_ref(w3, x, n);
}

void kn_axpy(float *y, const float *x, float s, int64_t n) {
#ifdef KN_X86
    if (kn_have_avx2()) { axpy_avx2(y, x, s, n); return; }
#endif
    for (int64_t i = 0; i < n; i++) y[i] += s * x[i];
}
