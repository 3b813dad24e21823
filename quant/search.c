/* quant/search.c — the scale searches shared by the block quantizers.  Each search
 * scores a grid of candidate scales through the kernels of qt_internal.h (so the fast
 * and reference paths choose identically), then refines the winner by Lloyd steps
 * (re-fit the scale to the chosen levels, re-round).  The objective is always the
 * weighted squared error sum w*(x - q)^2. */
#include "qt_internal.h"

#include <math.h>

#define EPS_MAX QK_EPS_MAX

/* Element weights: sqrt(sigma^2 + x^2) (sigma^2 = mean x^2 of the n elements), times the
 * importance when one is given (as ggml's *_impl quantizers do).  The importance alone
 * (the expected x_in^2 of the input channel) is not enough: it treats a small and a large
 * weight of one column alike, and on mini-v3 it made Q2_K worse than no imatrix at all
 * (tests/test_quant_imatrix.c measures the layer output error both ways). */
void qk_weights_f(const qk_kern *k, const float *x, const float *imp, int n, float f, float *w) {
    const float sigma2 = k->sumsq(x, n) / (float)n;
    int any = 0;
    if (imp)
        for (int j = 0; j < n; j++) any |= imp[j] > 0;
    k->wsqrt(x, n, any ? f * sigma2 : sigma2, w);
    if (any)
        for (int j = 0; j < n; j++) w[j] = imp[j] > 0 ? imp[j] * w[j] : 0.f;
}

void qk_weights(const qk_kern *k, const float *x, const float *imp, int n, float *w) {
    qk_weights_f(k, x, imp, n, 1.f, w);
}

const float qk_refine_f[8] = { 1.f, 0.995f, 1.005f, 0.99f, 1.01f, 0.98f, 1.02f, 0.97f };

float qk_sym_search(const qk_kern *k, const float *x, const float *w, int n, int nmax,
                    int ng, float step, int refine, int8_t *L) {
    float hi_v, lo_v;                   /* max = the extreme of larger |x| */
    k->extremes(x, n, &lo_v, &hi_v);
    float max = hi_v >= -lo_v ? hi_v : lo_v, amax = fabsf(max);
    if (!(amax > EPS_MAX) || !isfinite(amax)) {
        if (L) memset(L, 0, (size_t)n);
        return 0.f;
    }
    const float lo = (float)-nmax, hi = (float)(nmax - 1);
    const float imax = 1.f / max;
    float best_is = -nmax * imax, bscore = -1, d = 0, is[8];
    for (int g = 0; g < ng + refine; g++) {
        if (g < ng) {
            for (int c = 0; c < 8; c++) is[c] = -((float)nmax + step * (float)(8 * g + c - 4 * ng)) * imax;
        } else {
            if (d == 0) break;
            const float id = 1.f / d;
            for (int c = 0; c < 8; c++) is[c] = qk_refine_f[c] * id;
        }
        float sc, sxl, sll;
        int c = k->sym8(x, w, n, is, lo, hi, &sc, &sxl, &sll);
        if (c >= 0 && sc > bscore) { bscore = sc; best_is = is[c]; d = sxl / sll; }
    }
    if (bscore < 0) d = 1.f / best_is;
    if (L)
        for (int j = 0; j < n; j++) L[j] = (int8_t)qk_rint(qk_clamp(x[j] * best_is, lo, hi));
    return d;
}

float qk_asym_search(const qk_kern *k, const float *x, const float *w, int n, int nmax,
                     float r0, float rstep, int ng, int refine, float *m, uint8_t *L) {
    float min = x[0], max = x[0], mom[3] = { 0, 0, 0 };
    for (int j = 0; j < n; j++) {
        if (x[j] < min) min = x[j];
        if (x[j] > max) max = x[j];
        mom[0] += w[j]; mom[1] += w[j] * x[j]; mom[2] += w[j] * x[j] * x[j];
    }
    if (min > 0) min = 0;
    if (!(max > min) || !isfinite(max - min) || !(mom[0] > 0)) {
        if (L) memset(L, 0, (size_t)n);
        *m = -min;
        return 0.f;
    }
    const float fmax = (float)nmax, irange = 1.f / (max - min);
    /* best: quantization parameters (is, qmn) and the fit (d, mn) of its levels */
    float b_is = fmax / (max - min), b_qmn = min, b_d = (max - min) / fmax, b_mn = min, best = INFINITY;
    float is[8];
    for (int g = 0; g < ng + refine; g++) {
        float qmn = min;
        if (g < ng) {
            for (int c = 0; c < 8; c++) is[c] = (fmax + r0 + rstep * (float)(8 * g + c)) * irange;
        } else {
            if (!(best < INFINITY)) break;
            qmn = b_mn;
            const float id = 1.f / b_d;
            for (int c = 0; c < 8; c++) is[c] = qk_refine_f[c] * id;
        }
        float d, mn, e;
        int c = k->asym8(x, w, n, qmn, is, fmax, mom, &d, &mn, &e);
        if (c >= 0 && e < best) { best = e; b_is = is[c]; b_qmn = qmn; b_d = d; b_mn = mn; }
    }
    if (L)
        for (int j = 0; j < n; j++) L[j] = (uint8_t)qk_rint(qk_clamp((x[j] - b_qmn) * b_is, 0.f, fmax));
    *m = -b_mn;
    return b_d;
}

float qk_pos_scale_search(const float *v, const float *w, int n, int nmax, uint8_t *L) {
    float max = 0;
    for (int j = 0; j < n; j++) max = v[j] > max ? v[j] : max;
    if (!(max > EPS_MAX)) { memset(L, 0, (size_t)n); return 0.f; }
    float best_is = nmax / max, best = INFINITY;
    for (int c = -4; c <= 4; c++) {
        float is = ((float)nmax + 0.1f * (float)c) / max, d = 1.f / is, e = 0;
        for (int j = 0; j < n; j++) {
            float l = qk_rint(qk_clamp(v[j] * is, 0.f, (float)nmax));
            float r = v[j] - d * l;
            e += w[j] * r * r;
        }
        if (e < best) { best = e; best_is = is; }
    }
    float slx = 0, sll = 0;
    for (int j = 0; j < n; j++) {
        float l = qk_rint(qk_clamp(v[j] * best_is, 0.f, (float)nmax));
        L[j] = (uint8_t)l;
        slx += w[j] * l * v[j]; sll += w[j] * l * l;
    }
    return sll > 0 ? slx / sll : 1.f / best_is;
}
