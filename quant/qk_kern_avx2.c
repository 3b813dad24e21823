/* quant/qk_kern_avx2.c — AVX2 versions of the search kernels of qk_kern.c, compiled with
 * a function-level target attribute (the rest of the build stays generic) and selected
 * at run time.  Bit-identical to the reference: the same single IEEE operations per
 * lane (no FMA), lane j%8 sums element j, and the same horizontal-sum order. */
#include "qt_internal.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#include <math.h>

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

/* First lane holding the max (min) of v: the argmax/argmin of the scalar loops. */
AVX2 static inline int first_lane_eq(__m256 v, float t) {
    return __builtin_ctz((unsigned)_mm256_movemask_ps(_mm256_cmp_ps(v, _mm256_set1_ps(t), _CMP_EQ_OQ)));
}
AVX2 static inline float hmax(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}
AVX2 static inline float hmin(__m256 v) {
    __m128 s = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_min_ps(s, _mm_movehl_ps(s, s));
    s = _mm_min_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/* qk_sym_score lane-wise; picks the best lane like the scalar loop */
AVX2 static inline int sym_pick(__m256 a0, __m256 a1, float *score, float *bsxl, float *bsll) {
    const __m256 z = _mm256_setzero_ps();
    __m256 pos = _mm256_cmp_ps(a1, z, _CMP_GT_OQ);
    __m256 sc = _mm256_div_ps(_mm256_mul_ps(a0, a0), _mm256_blendv_ps(_mm256_set1_ps(1.f), a1, pos));
    __m256 ok = _mm256_and_ps(pos, _mm256_cmp_ps(sc, sc, _CMP_EQ_OQ));
    sc = _mm256_blendv_ps(_mm256_set1_ps(-1.f), sc, ok);
    float mx = hmax(sc);
    if (!(mx >= 0)) return -1;
    int c = first_lane_eq(sc, mx);
    float t0[8], t1[8];
    _mm256_storeu_ps(t0, a0);
    _mm256_storeu_ps(t1, a1);
    *score = mx; *bsxl = t0[c]; *bsll = t1[c];
    return c;
}

AVX2 static int asym8_avx2(const float *x, const float *w, int n, float mn, const float is[8], float nmax,
                           const float mom[3], float *bd, float *bm, float *berr) {
    __m256 e0 = _mm256_setzero_ps(), e1 = e0, e2 = e0, o0 = e0, o1 = e0, o2 = e0;  /* even / odd j */
    const __m256 vis = _mm256_loadu_ps(is), vmax = _mm256_set1_ps(nmax), z = _mm256_setzero_ps();
    for (int j = 0; j < n; j += 2) {
        __m256 vxm = _mm256_set1_ps(x[j] - mn), vx = _mm256_set1_ps(x[j]), vw = _mm256_set1_ps(w[j]);
        __m256 l = _mm256_round_ps(clampv(_mm256_mul_ps(vxm, vis), z, vmax), RND);
        __m256 wl = _mm256_mul_ps(vw, l);
        e0 = _mm256_add_ps(e0, wl);
        e1 = _mm256_add_ps(e1, _mm256_mul_ps(wl, l));
        e2 = _mm256_add_ps(e2, _mm256_mul_ps(wl, vx));
        __m256 vxm2 = _mm256_set1_ps(x[j + 1] - mn), vx2 = _mm256_set1_ps(x[j + 1]), vw2 = _mm256_set1_ps(w[j + 1]);
        __m256 l2 = _mm256_round_ps(clampv(_mm256_mul_ps(vxm2, vis), z, vmax), RND);
        __m256 wl2 = _mm256_mul_ps(vw2, l2);
        o0 = _mm256_add_ps(o0, wl2);
        o1 = _mm256_add_ps(o1, _mm256_mul_ps(wl2, l2));
        o2 = _mm256_add_ps(o2, _mm256_mul_ps(wl2, vx2));
    }
    __m256 s0 = _mm256_add_ps(e0, o0), s1 = _mm256_add_ps(e1, o1), s2 = _mm256_add_ps(e2, o2);
    /* qk_asym_fit, lane-wise */
    const __m256 sw = _mm256_set1_ps(mom[0]), sx = _mm256_set1_ps(mom[1]), sxx = _mm256_set1_ps(mom[2]);
    const __m256 one = _mm256_set1_ps(1.f), two = _mm256_set1_ps(2.f);
    __m256 D = _mm256_sub_ps(_mm256_mul_ps(sw, s1), _mm256_mul_ps(s0, s0));
    __m256 Dpos = _mm256_cmp_ps(D, z, _CMP_GT_OQ);
    __m256 Dd = _mm256_blendv_ps(one, D, Dpos);
    __m256 td = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sw, s2), _mm256_mul_ps(sx, s0)), Dd);
    __m256 tm = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(s1, sx), _mm256_mul_ps(s0, s2)), Dd);
    __m256 s1d = _mm256_blendv_ps(one, s1, _mm256_cmp_ps(s1, z, _CMP_GT_OQ));
    __m256 td2 = _mm256_div_ps(s2, s1d);
    __m256 mpos = _mm256_cmp_ps(tm, z, _CMP_GT_OQ);
    td = _mm256_blendv_ps(td, td2, mpos);
    tm = _mm256_blendv_ps(tm, z, mpos);
    __m256 td2x = _mm256_mul_ps(two, td);
    __m256 e = _mm256_sub_ps(sxx, _mm256_mul_ps(td2x, s2));
    e = _mm256_sub_ps(e, _mm256_mul_ps(_mm256_mul_ps(two, tm), sx));
    e = _mm256_add_ps(e, _mm256_mul_ps(_mm256_mul_ps(td, td), s1));
    e = _mm256_add_ps(e, _mm256_mul_ps(_mm256_mul_ps(td2x, tm), s0));
    e = _mm256_add_ps(e, _mm256_mul_ps(_mm256_mul_ps(tm, tm), sw));
    __m256 ok = _mm256_and_ps(Dpos, _mm256_cmp_ps(td, z, _CMP_GT_OQ));
    const __m256 inf = _mm256_set1_ps(INFINITY);
    e = _mm256_blendv_ps(inf, e, ok);
    e = _mm256_blendv_ps(inf, e, _mm256_cmp_ps(e, inf, _CMP_LT_OQ));
    float mn_e = hmin(e);
    if (!(mn_e < INFINITY)) return -1;
    int c = first_lane_eq(e, mn_e);
    float t0[8], t1[8];
    _mm256_storeu_ps(t0, td);
    _mm256_storeu_ps(t1, tm);
    *bd = t0[c]; *bm = t1[c]; *berr = mn_e;
    return c;
}

/* the sums of sym8: a0 = sum w*l*x, a1 = sum w*l*l per lane (even + odd elements) */
AVX2 static inline void sym8_sums(const float *x, const float *w, int n, __m256 vis, float lo, float hi,
                                  __m256 *a0, __m256 *a1) {
    /* two accumulator sets (even / odd elements) halve the add latency chain */
    __m256 e0 = _mm256_setzero_ps(), e1 = e0, o0 = e0, o1 = e0;
    const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
    for (int j = 0; j < n; j += 2) {
        __m256 vx = _mm256_set1_ps(x[j]), vx2 = _mm256_set1_ps(x[j + 1]);
        __m256 l = _mm256_round_ps(clampv(_mm256_mul_ps(vx, vis), vlo, vhi), RND);
        __m256 l2 = _mm256_round_ps(clampv(_mm256_mul_ps(vx2, vis), vlo, vhi), RND);
        __m256 wl = _mm256_mul_ps(_mm256_set1_ps(w[j]), l), wl2 = _mm256_mul_ps(_mm256_set1_ps(w[j + 1]), l2);
        e0 = _mm256_add_ps(e0, _mm256_mul_ps(wl, vx));
        e1 = _mm256_add_ps(e1, _mm256_mul_ps(wl, l));
        o0 = _mm256_add_ps(o0, _mm256_mul_ps(wl2, vx2));
        o1 = _mm256_add_ps(o1, _mm256_mul_ps(wl2, l2));
    }
    *a0 = _mm256_add_ps(e0, o0);
    *a1 = _mm256_add_ps(e1, o1);
}

AVX2 static int sym8_avx2(const float *x, const float *w, int n, const float is[8], float lo, float hi,
                          float *score, float *bsxl, float *bsll) {
    __m256 a0, a1;
    sym8_sums(x, w, n, _mm256_loadu_ps(is), lo, hi, &a0, &a1);
    return sym_pick(a0, a1, score, bsxl, bsll);
}

/* sym_sub2_ref in registers: two independent one-group searches in one instruction
 * stream (twice the independent work in flight; call and candidate setup shared) */
AVX2 static void sym_sub2_avx2(const float *xa, const float *wa, const float *xb, const float *wb, int n,
                               const float base[8], float lo, float hi, float d[2]) {
    float imax[2];
    int ok[2];
    for (int s = 0; s < 2; s++) {
        const float *x = s ? xb : xa;
        __m256 a = _mm256_setzero_ps(), b = a;
        for (int j = 0; j < n; j += 8) {
            __m256 v = _mm256_loadu_ps(x + j);
            b = _mm256_max_ps(v, b);
            a = _mm256_min_ps(v, a);
        }
        const float lo_v = hmin(a), hi_v = hmax(b);
        const float max = hi_v >= -lo_v ? hi_v : lo_v, amax = fabsf(max);
        ok[s] = amax > QK_EPS_MAX && isfinite(amax);
        imax[s] = ok[s] ? 1.f / max : 0.f;
    }
    const __m256 vb = _mm256_loadu_ps(base), vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
    const __m256 visa = _mm256_mul_ps(vb, _mm256_set1_ps(imax[0])), visb = _mm256_mul_ps(vb, _mm256_set1_ps(imax[1]));
    __m256 ae0 = _mm256_setzero_ps(), ae1 = ae0, ao0 = ae0, ao1 = ae0, be0 = ae0, be1 = ae0, bo0 = ae0, bo1 = ae0;
#define QK_SUB2_STEP(X, W, VIS, ACC0, ACC1)                                                  \
    do {                                                                                     \
        __m256 vx = _mm256_set1_ps(X), vw = _mm256_set1_ps(W);                               \
        __m256 l = _mm256_round_ps(clampv(_mm256_mul_ps(vx, VIS), vlo, vhi), RND);           \
        __m256 wl = _mm256_mul_ps(vw, l);                                                    \
        ACC0 = _mm256_add_ps(ACC0, _mm256_mul_ps(wl, vx));                                   \
        ACC1 = _mm256_add_ps(ACC1, _mm256_mul_ps(wl, l));                                    \
    } while (0)
    for (int j = 0; j < n; j += 2) {
        QK_SUB2_STEP(xa[j], wa[j], visa, ae0, ae1);
        QK_SUB2_STEP(xb[j], wb[j], visb, be0, be1);
        QK_SUB2_STEP(xa[j + 1], wa[j + 1], visa, ao0, ao1);
        QK_SUB2_STEP(xb[j + 1], wb[j + 1], visb, bo0, bo1);
    }
#undef QK_SUB2_STEP
    float sc, sxl, sll;
    int c = sym_pick(_mm256_add_ps(ae0, ao0), _mm256_add_ps(ae1, ao1), &sc, &sxl, &sll);
    d[0] = !ok[0] ? 0.f : c >= 0 ? sxl / sll : 1.f / (lo * imax[0]);
    c = sym_pick(_mm256_add_ps(be0, bo0), _mm256_add_ps(be1, bo1), &sc, &sxl, &sll);
    d[1] = !ok[1] ? 0.f : c >= 0 ? sxl / sll : 1.f / (lo * imax[1]);
}

/* IQ4 level of v: the index (number of midpoints <= v) by a 4-step binary search over the
 * 15 increasing midpoints, then the level; equals the scalar count exactly. */
AVX2 static inline __m256 nl_level(__m256 v) {
    const __m256 mlo = _mm256_loadu_ps(qk_iq4_mids), mhi = _mm256_setr_ps(qk_iq4_mids[8], qk_iq4_mids[9],
        qk_iq4_mids[10], qk_iq4_mids[11], qk_iq4_mids[12], qk_iq4_mids[13], qk_iq4_mids[14], INFINITY);
    const __m256 llo = _mm256_loadu_ps(qk_iq4_levels), lhi = _mm256_loadu_ps(qk_iq4_levels + 8);
    /* each lane looks up its own half: permute both halves, then blend by the lane's mask */
    __m256 upper = _mm256_cmp_ps(v, _mm256_set1_ps(qk_iq4_mids[7]), _CMP_GE_OQ);
    __m256i j = _mm256_setzero_si256();
    static const int step[3] = { 4, 2, 1 };
    for (int s = 0; s < 3; s++) {
        __m256i probe = _mm256_add_epi32(j, _mm256_set1_epi32(step[s] - 1));
        __m256 m = _mm256_blendv_ps(_mm256_permutevar8x32_ps(mlo, probe), _mm256_permutevar8x32_ps(mhi, probe), upper);
        __m256 c = _mm256_cmp_ps(v, m, _CMP_GE_OQ);
        j = _mm256_add_epi32(j, _mm256_and_si256(_mm256_castps_si256(c), _mm256_set1_epi32(step[s])));
    }
    return _mm256_blendv_ps(_mm256_permutevar8x32_ps(llo, j), _mm256_permutevar8x32_ps(lhi, j), upper);
}

AVX2 static int nl8_avx2(const float *x, const float *w, int n, const float is[8], float *score, float *bsxl, float *bsll) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    const __m256 vis = _mm256_loadu_ps(is);
    for (int j = 0; j < n; j++) {
        __m256 vx = _mm256_set1_ps(x[j]);
        __m256 q = nl_level(_mm256_mul_ps(vx, vis));
        __m256 wq = _mm256_mul_ps(_mm256_set1_ps(w[j]), q);
        a0 = _mm256_add_ps(a0, _mm256_mul_ps(wq, vx));
        a1 = _mm256_add_ps(a1, _mm256_mul_ps(wq, q));
    }
    return sym_pick(a0, a1, score, bsxl, bsll);
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

AVX2 static float sumsq_avx2(const float *x, int n) {
    __m256 a = _mm256_setzero_ps();
    for (int j = 0; j < n; j += 8) {
        __m256 v = _mm256_loadu_ps(x + j);
        a = _mm256_add_ps(a, _mm256_mul_ps(v, v));
    }
    return hsum(a);
}

AVX2 static void wsqrt_avx2(const float *x, int n, float sigma2, float *w) {
    const __m256 s2 = _mm256_set1_ps(sigma2);
    int j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 v = _mm256_loadu_ps(x + j);
        _mm256_storeu_ps(w + j, _mm256_sqrt_ps(_mm256_add_ps(s2, _mm256_mul_ps(v, v))));
    }
    for (; j < n; j++) w[j] = sqrtf(sigma2 + x[j] * x[j]);
}

AVX2 static void q8_0_avx2(const float *x, void *dst, int64_t nb) {
    qt_block_q8_0 *y = dst;
    const __m256 sign = _mm256_set1_ps(-0.f), lo = _mm256_set1_ps(-127.f), hi = _mm256_set1_ps(127.f);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t i = 0; i < nb; i++) {
        const float *xb = x + 32 * i;
        __m256 v[4], am = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(xb + 8 * k);
            am = _mm256_max_ps(_mm256_andnot_ps(sign, v[k]), am);
        }
        float amax = hmax(am);
        y[i].d = qt_f32_to_f16(amax / 127.f);
        float df = qt_f16_to_f32(y[i].d), id = df != 0 ? 1.f / df : 0.f;
        const __m256 vid = _mm256_set1_ps(id);
        __m256i q[4];
        for (int k = 0; k < 4; k++)
            q[k] = _mm256_cvtps_epi32(_mm256_round_ps(clampv(_mm256_mul_ps(v[k], vid), lo, hi), RND));
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
        _mm256_storeu_si256((__m256i *)y[i].qs, _mm256_permutevar8x32_epi32(p, perm));
    }
}

/* 16 floats holding small non-negative integers -> 16 bytes */
AVX2 static inline void store16(__m256 a, __m256 b, uint8_t *L) {
    __m256i p = _mm256_packs_epi32(_mm256_cvtps_epi32(a), _mm256_cvtps_epi32(b)); /* a0-3 b0-3 | a4-7 b4-7 */
    p = _mm256_permute4x64_epi64(p, 0xD8);                                        /* a0-7 | b0-7 */
    p = _mm256_packus_epi16(p, p);
    __m128i r = _mm_unpacklo_epi64(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
    _mm_storeu_si128((__m128i *)L, r);
}

AVX2 static void lev_sym_avx2(const float *x, int n, float id, float lo, float hi, float off, uint8_t *L) {
    const __m256 vid = _mm256_set1_ps(id), vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi), vo = _mm256_set1_ps(off);
    for (int j = 0; j < n; j += 16) {
        __m256 a = _mm256_add_ps(_mm256_round_ps(clampv(_mm256_mul_ps(_mm256_loadu_ps(x + j), vid), vlo, vhi), RND), vo);
        __m256 b = _mm256_add_ps(_mm256_round_ps(clampv(_mm256_mul_ps(_mm256_loadu_ps(x + j + 8), vid), vlo, vhi), RND), vo);
        store16(a, b, L + j);
    }
}

AVX2 static void lev_asym_avx2(const float *x, int n, float id, float m, float nmax, uint8_t *L) {
    const __m256 vid = _mm256_set1_ps(id), vm = _mm256_set1_ps(m), vmax = _mm256_set1_ps(nmax), z = _mm256_setzero_ps();
    for (int j = 0; j < n; j += 16) {
        __m256 a = _mm256_round_ps(clampv(_mm256_mul_ps(_mm256_add_ps(_mm256_loadu_ps(x + j), vm), vid), z, vmax), RND);
        __m256 b = _mm256_round_ps(clampv(_mm256_mul_ps(_mm256_add_ps(_mm256_loadu_ps(x + j + 8), vm), vid), z, vmax), RND);
        store16(a, b, L + j);
    }
}

AVX2 static void extremes_avx2(const float *x, int n, float *lo, float *hi) {
    __m256 a = _mm256_setzero_ps(), b = a;
    for (int j = 0; j < n; j += 8) {
        __m256 v = _mm256_loadu_ps(x + j);
        b = _mm256_max_ps(v, b);      /* v > b ? v : b: a NaN v is skipped */
        a = _mm256_min_ps(v, a);
    }
    *lo = hmin(a); *hi = hmax(b);
}

static const qk_kern kern_avx2 = { asym8_avx2, sym8_avx2, nl8_avx2, asym_err_avx2, sym_err_avx2, nl_err_avx2,
                                   sumsq_avx2, wsqrt_avx2, q8_0_avx2,
                                   lev_sym_avx2, lev_asym_avx2, extremes_avx2, sym_sub2_avx2 };

const qk_kern *qk_kern_avx2(void) {
    return __builtin_cpu_supports("avx2") ? &kern_avx2 : NULL;
}

#else
const qk_kern *qk_kern_avx2(void) { return NULL; }
#endif
