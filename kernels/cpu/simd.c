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

/* Sums of 4 accumulators: lanes reduced by a fixed hadd tree (shared by dot4 and dot4x2 so a
 * token's results do not depend on whether it was paired). */
__attribute__((target("avx2,fma"))) static inline __m128 hsum4(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
    __m256 u = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    return _mm_add_ps(_mm256_castps256_ps128(u), _mm256_extractf128_ps(u, 1));
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
    _mm_storeu_ps(out, hsum4(a0, a1, a2, a3));
    for (; i < n; i++) { out[0] += w0[i] * x[i]; out[1] += w1[i] * x[i]; out[2] += w2[i] * x[i]; out[3] += w3[i] * x[i]; }
}

__attribute__((target("avx2,fma"))) static void dot4x2_avx2(const float *w0, const float *w1,
                                                           const float *w2, const float *w3,
                                                           const float *x, const float *z, int64_t n,
                                                           float ox[4], float oz[4]) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    __m256 b0 = _mm256_setzero_ps(), b1 = _mm256_setzero_ps(), b2 = _mm256_setzero_ps(), b3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 xv = _mm256_loadu_ps(x + i), zv = _mm256_loadu_ps(z + i);
        __m256 v0 = _mm256_loadu_ps(w0 + i), v1 = _mm256_loadu_ps(w1 + i);
        __m256 v2 = _mm256_loadu_ps(w2 + i), v3 = _mm256_loadu_ps(w3 + i);
        a0 = _mm256_fmadd_ps(v0, xv, a0); b0 = _mm256_fmadd_ps(v0, zv, b0);
        a1 = _mm256_fmadd_ps(v1, xv, a1); b1 = _mm256_fmadd_ps(v1, zv, b1);
        a2 = _mm256_fmadd_ps(v2, xv, a2); b2 = _mm256_fmadd_ps(v2, zv, b2);
        a3 = _mm256_fmadd_ps(v3, xv, a3); b3 = _mm256_fmadd_ps(v3, zv, b3);
    }
    _mm_storeu_ps(ox, hsum4(a0, a1, a2, a3));
    _mm_storeu_ps(oz, hsum4(b0, b1, b2, b3));
    for (; i < n; i++) {
        ox[0] += w0[i] * x[i]; ox[1] += w1[i] * x[i]; ox[2] += w2[i] * x[i]; ox[3] += w3[i] * x[i];
        oz[0] += w0[i] * z[i]; oz[1] += w1[i] * z[i]; oz[2] += w2[i] * z[i]; oz[3] += w3[i] * z[i];
    }
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

void kn_dot4x2(const float *w0, const float *w1, const float *w2, const float *w3,
               const float *x, const float *z, int64_t n, float ox[4], float oz[4]) {
#ifdef KN_X86
    if (kn_have_avx2()) { dot4x2_avx2(w0, w1, w2, w3, x, z, n, ox, oz); return; }
#endif
    kn_dot4(w0, w1, w2, w3, x, n, ox);
    kn_dot4(w0, w1, w2, w3, z, n, oz);
}

void kn_axpy(float *y, const float *x, float s, int64_t n) {
#ifdef KN_X86
    if (kn_have_avx2()) { axpy_avx2(y, x, s, n); return; }
#endif
    for (int64_t i = 0; i < n; i++) y[i] += s * x[i];
}
