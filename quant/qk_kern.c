/* quant/qk_kern.c — scalar reference search kernels (see qt_internal.h for the
 * contract and the 8-lane summation rule the AVX2 kernels reproduce bit for bit),
 * the IQ4 level tables, and run-time kernel selection. */
#include "qt_internal.h"

#include <math.h>

const float qk_iq4_levels[16] = QT_IQ4NL_VALUES;
const float qk_iq4_mids[15] = {
    -115.5f, -93.5f, -74.f, -57.f, -42.f, -28.5f, -16.f, -4.5f, 7.f, 19.f, 31.5f, 45.5f, 61.f, 79.f, 101.f,
};

static int asym8_ref(const float *x, const float *w, int n, float mn, const float is[8], float nmax,
                     const float mom[3], float *bd, float *bm, float *berr) {
    int best = -1;
    for (int c = 0; c < 8; c++) {
        float e0 = 0, e1 = 0, e2 = 0, o0 = 0, o1 = 0, o2 = 0, d, m;   /* even / odd j */
        for (int j = 0; j < n; j += 2) {
            float l = qk_rint(qk_clamp((x[j] - mn) * is[c], 0.f, nmax));
            float wl = w[j] * l;
            e0 += wl;
            e1 += wl * l;
            e2 += wl * x[j];
            float l2 = qk_rint(qk_clamp((x[j + 1] - mn) * is[c], 0.f, nmax));
            float wl2 = w[j + 1] * l2;
            o0 += wl2;
            o1 += wl2 * l2;
            o2 += wl2 * x[j + 1];
        }
        float e = qk_asym_fit(e0 + o0, e1 + o1, e2 + o2, mom, &d, &m);
        if (e < INFINITY && (best < 0 || e < *berr)) { best = c; *bd = d; *bm = m; *berr = e; }
    }
    return best;
}

static int sym8_ref(const float *x, const float *w, int n, const float is[8], float lo, float hi,
                    float *score, float *bsxl, float *bsll) {
    int best = -1;
    for (int c = 0; c < 8; c++) {
        float e0 = 0, e1 = 0, o0 = 0, o1 = 0;      /* even and odd elements, as sym8_avx2 */
        for (int j = 0; j < n; j += 2) {
            float l = qk_rint(qk_clamp(x[j] * is[c], lo, hi));
            float wl = w[j] * l;
            e0 += wl * x[j];
            e1 += wl * l;
            float l2 = qk_rint(qk_clamp(x[j + 1] * is[c], lo, hi));
            float wl2 = w[j + 1] * l2;
            o0 += wl2 * x[j + 1];
            o1 += wl2 * l2;
        }
        float a0 = e0 + o0, a1 = e1 + o1;
        float sc = qk_sym_score(a0, a1);
        if (sc >= 0 && (best < 0 || sc > *score)) { best = c; *score = sc; *bsxl = a0; *bsll = a1; }
    }
    return best;
}

static int nl8_ref(const float *x, const float *w, int n, const float is[8], float *score, float *bsxl, float *bsll) {
    int best = -1;
    for (int c = 0; c < 8; c++) {
        float a0 = 0, a1 = 0;
        for (int j = 0; j < n; j++) {
            float q = qk_iq4_levels[qk_iq4_index(x[j] * is[c])];
            float wq = w[j] * q;
            a0 += wq * x[j];
            a1 += wq * q;
        }
        float sc = qk_sym_score(a0, a1);
        if (sc >= 0 && (best < 0 || sc > *score)) { best = c; *score = sc; *bsxl = a0; *bsll = a1; }
    }
    return best;
}

static void lev_sym_ref(const float *x, int n, float id, float lo, float hi, float off, uint8_t *L) {
    for (int j = 0; j < n; j++) L[j] = (uint8_t)(qk_rint(qk_clamp(x[j] * id, lo, hi)) + off);
}

static void lev_asym_ref(const float *x, int n, float id, float m, float nmax, uint8_t *L) {
    for (int j = 0; j < n; j++) L[j] = (uint8_t)qk_rint(qk_clamp((x[j] + m) * id, 0.f, nmax));
}

static void extremes_ref(const float *x, int n, float *lo, float *hi) {
    float a = 0, b = 0;
    for (int j = 0; j < n; j++) {
        b = x[j] > b ? x[j] : b;
        a = x[j] < a ? x[j] : a;
    }
    *lo = a; *hi = b;
}

static float sumsq_ref(const float *x, int n) {
    float a[8] = { 0 };
    for (int j = 0; j < n; j += 8)
        for (int k = 0; k < 8; k++) a[k] += x[j + k] * x[j + k];
    return qk_hsum8(a);
}

static void wsqrt_ref(const float *x, int n, float sigma2, float *w) {
    for (int j = 0; j < n; j++) w[j] = sqrtf(sigma2 + x[j] * x[j]);
}

static float asym_err_ref(const float *x, const float *w, int n, float d, float id, float m, float nmax) {
    float a[8] = {0};
    for (int j = 0; j < n; j += 8)
        for (int k = 0; k < 8; k++) {
            float l = qk_rint(qk_clamp((x[j + k] + m) * id, 0.f, nmax));
            float e = x[j + k] - (d * l - m);
            a[k] += w[j + k] * (e * e);
        }
    return qk_hsum8(a);
}

static float sym_err_ref(const float *x, const float *w, int n, float d, float id, float lo, float hi) {
    float a[8] = {0};
    for (int j = 0; j < n; j += 8)
        for (int k = 0; k < 8; k++) {
            float l = qk_rint(qk_clamp(x[j + k] * id, lo, hi));
            float e = x[j + k] - d * l;
            a[k] += w[j + k] * (e * e);
        }
    return qk_hsum8(a);
}

static float nl_err_ref(const float *x, const float *w, int n, float d, float id) {
    float a[8] = {0};
    for (int j = 0; j < n; j += 8)
        for (int k = 0; k < 8; k++) {
            float e = x[j + k] - d * qk_iq4_levels[qk_iq4_index(x[j + k] * id)];
            a[k] += w[j + k] * (e * e);
        }
    return qk_hsum8(a);
}

/* qk_sym_search(ng = 1, refine = 0, L = NULL), from the same kernels */
static float sym_sub_ref(const float *x, const float *w, int n, const float base[8], float lo, float hi) {
    float hi_v, lo_v;
    extremes_ref(x, n, &lo_v, &hi_v);
    float max = hi_v >= -lo_v ? hi_v : lo_v, amax = fabsf(max);
    if (!(amax > QK_EPS_MAX) || !isfinite(amax)) return 0.f;
    const float imax = 1.f / max;
    float is[8], sc, sxl, sll;
    for (int c = 0; c < 8; c++) is[c] = base[c] * imax;
    int c = sym8_ref(x, w, n, is, lo, hi, &sc, &sxl, &sll);
    return c >= 0 ? sxl / sll : 1.f / (lo * imax);
}

static void sym_sub2_ref(const float *xa, const float *wa, const float *xb, const float *wb, int n,
                         const float base[8], float lo, float hi, float d[2]) {
    d[0] = sym_sub_ref(xa, wa, n, base, lo, hi);
    d[1] = sym_sub_ref(xb, wb, n, base, lo, hi);
}

const qk_kern qk_kern_ref = { asym8_ref, sym8_ref, nl8_ref, asym_err_ref, sym_err_ref, nl_err_ref,
                               sumsq_ref, wsqrt_ref, qk_q8_0_blocks_ref,
                               lev_sym_ref, lev_asym_ref, extremes_ref, sym_sub2_ref };

const qk_kern *qk_kern_best(void) {
    const qk_kern *k = qk_kern_avx2();
    return k ? k : &qk_kern_ref;
}
