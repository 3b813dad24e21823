/* quant/qk_kern_avx2.c — AVX2 versions of the search kernels of qk_kern.c, compiled with
 * a function-level target attribute (the rest of the build stays generic) and selected
 * at run time.  Bit-identical to the reference: the same single IEEE operations per
 * lane (no FMA), lane j%8 sums element j, and the same horizontal-sum order. */
#include "qt_internal.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2")))
#define RND (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)

AVX2 static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)); /* a0+a4 .. a3+a7 */
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));          /* (a0+a4)+(a2+a6), (a1+a5)+(a3+a7) */
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/* minps(v, hi) = v < hi ? v : hi; maxps(v, lo) = v > lo ? v : lo: as qk_clamp. */
AVX2 static inline __m256 clampv(__m256 v, __m256 lo, __m256 hi) {
    return _mm256_max_ps(_mm256_min_ps(v, hi), lo);
}

AVX2 static void asym_avx2(const float *x, const float *w, int n, float mn, float is, float nmax, float out[3]) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0;
    const __m256 vmn = _mm256_set1_ps(mn), vis = _mm256_set1_ps(is), vmax = _mm256_set1_ps(nmax);
    const __m256 z = _mm256_setzero_ps();
    for (int j = 0; j < n; j += 8) {
        __m256 vx = _mm256_loadu_ps(x + j);
        __m256 l = _mm256_round_ps(clampv(_mm256_mul_ps(_mm256_sub_ps(vx, vmn), vis), z, vmax), RND);
        __m256 wl = _mm256_mul_ps(_mm256_loadu_ps(w + j), l);
        a0 = _mm256_add_ps(a0, wl);
        a1 = _mm256_add_ps(a1, _mm256_mul_ps(wl, l));
        a2 = _mm256_add_ps(a2, _mm256_mul_ps(wl, vx));
    }
    out[0] = hsum(a0); out[1] = hsum(a1); out[2] = hsum(a2);
}

AVX2 static void sym_avx2(const float *x, const float *w, int n, float is, float lo, float hi, float out[2]) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    const __m256 vis = _mm256_set1_ps(is), vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
    for (int j = 0; j < n; j += 8) {
        __m256 vx = _mm256_loadu_ps(x + j);
        __m256 l = _mm256_round_ps(clampv(_mm256_mul_ps(vx, vis), vlo, vhi), RND);
        __m256 wl = _mm256_mul_ps(_mm256_loadu_ps(w + j), l);
        a0 = _mm256_add_ps(a0, _mm256_mul_ps(wl, vx));
        a1 = _mm256_add_ps(a1, _mm256_mul_ps(wl, l));
    }
    out[0] = hsum(a0); out[1] = hsum(a1);
}

/* IQ4 level of v: index = number of midpoints <= v, looked up in two 8-entry halves. */
AVX2 static inline __m256 nl_level(__m256 v) {
    __m256i idx = _mm256_setzero_si256();
    for (int k = 0; k < 15; k++) {
        __m256 c = _mm256_cmp_ps(v, _mm256_set1_ps(qk_iq4_mids[k]), _CMP_GE_OQ);
        idx = _mm256_sub_epi32(idx, _mm256_castps_si256(c));
    }
    const __m256 lo = _mm256_loadu_ps(qk_iq4_levels), hi = _mm256_loadu_ps(qk_iq4_levels + 8);
    __m256 ql = _mm256_permutevar8x32_ps(lo, idx), qh = _mm256_permutevar8x32_ps(hi, idx);
    __m256 sel = _mm256_castsi256_ps(_mm256_cmpgt_epi32(idx, _mm256_set1_epi32(7)));
    return _mm256_blendv_ps(ql, qh, sel);
}

AVX2 static void nl_avx2(const float *x, const float *w, int n, float is, float out[2]) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    const __m256 vis = _mm256_set1_ps(is);
    for (int j = 0; j < n; j += 8) {
        __m256 vx = _mm256_loadu_ps(x + j);
        __m256 q = nl_level(_mm256_mul_ps(vx, vis));
        __m256 wq = _mm256_mul_ps(_mm256_loadu_ps(w + j), q);
        a0 = _mm256_add_ps(a0, _mm256_mul_ps(wq, vx));
        a1 = _mm256_add_ps(a1, _mm256_mul_ps(wq, q));
    }
    out[0] = hsum(a0); out[1] = hsum(a1);
}

AVX2 static float asym_err_avx2(const float *x, const float *w, int n, float d, float id, float m, float nmax) {
    __m256 a = _mm256_setzero_ps();
    const __m256 vd = _mm256_set1_ps(d), vid = _mm256_set1_ps(id), vm = _mm256_set1_ps(m);
    const __m256 vmax = _mm256_set1_ps(nmax), z = _mm256_setzero_ps();
    for (int j = 0; j < n; j += 8) {
        __m256 vx = _mm256_loadu_ps(x + j);
        __m256 l = _mm256_round_ps(clampv(_mm256_mul_ps(_mm256_add_ps(vx, vm), vid), z, vmax), RND);
        __m256 e = _mm256_sub_ps(vx, _mm256_sub_ps(_mm256_mul_ps(vd, l), vm));
        a = _mm256_add_ps(a, _mm256_mul_ps(_mm256_loadu_ps(w + j), _mm256_mul_ps(e, e)));
    }
    return hsum(a);
}

AVX2 static float sym_err_avx2(const float *x, const float *w, int n, float d, float id, float lo, float hi) {
    __m256 a = _mm256_setzero_ps();
    const __m256 vd = _mm256_set1_ps(d), vid = _mm256_set1_ps(id);
    const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
    for (int j = 0; j < n; j += 8) {
        __m256 vx = _mm256_loadu_ps(x + j);
        __m256 l = _mm256_round_ps(clampv(_mm256_mul_ps(vx, vid), vlo, vhi), RND);
        __m256 e = _mm256_sub_ps(vx, _mm256_mul_ps(vd, l));
        a = _mm256_add_ps(a, _mm256_mul_ps(_mm256_loadu_ps(w + j), _mm256_mul_ps(e, e)));
    }
    return hsum(a);
}

AVX2 static float nl_err_avx2(const float *x, const float *w, int n, float d, float id) {
    __m256 a = _mm256_setzero_ps();
    const __m256 vd = _mm256_set1_ps(d), vid = _mm256_set1_ps(id);
    for (int j = 0; j < n; j += 8) {
        __m256 vx = _mm256_loadu_ps(x + j);
        __m256 e = _mm256_sub_ps(vx, _mm256_mul_ps(vd, nl_level(_mm256_mul_ps(vx, vid))));
        a = _mm256_add_ps(a, _mm256_mul_ps(_mm256_loadu_ps(w + j), _mm256_mul_ps(e, e)));
    }
    return hsum(a);
}

static const qk_kern kern_avx2 = { asym_avx2, sym_avx2, nl_avx2, asym_err_avx2, sym_err_avx2, nl_err_avx2 };

const qk_kern *qk_kern_avx2(void) {
    return __builtin_cpu_supports("avx2") ? &kern_avx2 : NULL;
}

#else
const qk_kern *qk_kern_avx2(void) { return NULL; }
#endif
