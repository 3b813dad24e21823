/* quant/search.c — the scale searches shared by the block quantizers.  Each search
 * scores a grid of candidate scales through the kernels of qt_internal.h (so the fast
 * and reference paths choose identically), then refines the winner by Lloyd steps
 * (re-fit the scale to the chosen levels, re-round).  The objective is always the
 * weighted squared error sum w*(x - q)^2. */
#include "qt_internal.h"

#include <math.h>

#define EPS_MAX 1e-15f

void qk_weights(const float *x, const float *imp, int n, float *w) {
    if (imp) {
        float s = 0;
        for (int j = 0; j < n; j++) s += imp[j] > 0 ? imp[j] : 0.f;
        if (s > 0) {
            for (int j = 0; j < n; j++) w[j] = imp[j] > 0 ? imp[j] : 0.f;
            return;
        }
    }
    float s2 = 0;
    for (int j = 0; j < n; j++) s2 += x[j] * x[j];
    float sigma2 = s2 / (float)n;
    for (int j = 0; j < n; j++) w[j] = sqrtf(sigma2 + x[j] * x[j]);
}

float qk_sym_search(const qk_kern *k, const float *x, const float *w, int n, int nmax,
                    int nc, float step, int refine, int8_t *L) {
    float amax = 0, max = 0;
    for (int j = 0; j < n; j++) {
        float ax = fabsf(x[j]);
        if (ax > amax) { amax = ax; max = x[j]; }
    }
    if (!(amax > EPS_MAX) || !isfinite(amax)) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    const float lo = (float)-nmax, hi = (float)(nmax - 1);
    float best_is = -nmax / max, best_score = -1, d = 0, s[2];
    for (int c = -nc; c <= nc; c++) {
        float is = -((float)nmax + step * (float)c) / max;
        k->sym(x, w, n, is, lo, hi, s);
        if (s[1] > 0 && s[0] * s[0] > best_score * s[1]) {
            best_score = s[0] * s[0] / s[1];
            best_is = is; d = s[0] / s[1];
        }
    }
    for (int r = 0; r < refine && d != 0; r++) {
        float is = 1.f / d;
        k->sym(x, w, n, is, lo, hi, s);
        if (!(s[1] > 0 && s[0] * s[0] > best_score * s[1])) break;
        best_score = s[0] * s[0] / s[1];
        best_is = is; d = s[0] / s[1];
    }
    if (best_score < 0) d = 1.f / best_is;
    for (int j = 0; j < n; j++) L[j] = (int8_t)qk_rint(qk_clamp(x[j] * best_is, lo, hi));
    return d;
}

/* Weighted SSE of x ~ d*l + mn from the sums of one candidate (double, exact enough). */
static double asym_sse(double sw, double sx, double sxx, const float s[3], double d, double mn) {
    return sxx - 2 * d * s[2] - 2 * mn * sx + d * d * s[1] + 2 * d * mn * s[0] + mn * mn * sw;
}

/* Fits d, mn (mn <= 0) to the levels summarized in s; returns false if degenerate. */
static bool asym_fit(float sw, float sx, const float s[3], float *d, float *mn) {
    float D = sw * s[1] - s[0] * s[0];
    if (!(D > 0)) return false;
    float td = (sw * s[2] - sx * s[0]) / D;
    float tm = (s[1] * sx - s[0] * s[2]) / D;
    if (tm > 0) { tm = 0; td = s[1] > 0 ? s[2] / s[1] : 0.f; }
    if (!(td > 0)) return false;
    *d = td; *mn = tm;
    return true;
}

float qk_asym_search(const qk_kern *k, const float *x, const float *w, int n, int nmax,
                     float rmin, float rdelta, int nstep, int refine, float *m, uint8_t *L) {
    float min = x[0], max = x[0], sw = 0, sx = 0, sxx = 0;
    for (int j = 0; j < n; j++) {
        if (x[j] < min) min = x[j];
        if (x[j] > max) max = x[j];
        sw += w[j]; sx += w[j] * x[j]; sxx += w[j] * x[j] * x[j];
    }
    if (min > 0) min = 0;
    if (!(max > min) || !isfinite(max - min) || !(sw > 0)) {
        memset(L, 0, (size_t)n);
        *m = -min;
        return 0.f;
    }
    const float fmax = (float)nmax;
    /* best: quantization parameters (is, qmn) and the fit (d, mn) of its levels */
    float b_is = fmax / (max - min), b_qmn = min, b_d = (max - min) / fmax, b_mn = min, s[3], d, mn;
    k->asym(x, w, n, b_qmn, b_is, fmax, s);
    if (asym_fit(sw, sx, s, &d, &mn)) { b_d = d; b_mn = mn; }
    double best = asym_sse(sw, sx, sxx, s, b_d, b_mn);
    for (int i = 0; i <= nstep; i++) {
        float is = (fmax + rmin + rdelta * (float)i) / (max - min);
        k->asym(x, w, n, min, is, fmax, s);
        if (!asym_fit(sw, sx, s, &d, &mn)) continue;
        double e = asym_sse(sw, sx, sxx, s, d, mn);
        if (e < best) { best = e; b_is = is; b_qmn = min; b_d = d; b_mn = mn; }
    }
    for (int r = 0; r < refine; r++) {
        float is = 1.f / b_d, qmn = b_mn;
        k->asym(x, w, n, qmn, is, fmax, s);
        if (!asym_fit(sw, sx, s, &d, &mn)) break;
        double e = asym_sse(sw, sx, sxx, s, d, mn);
        if (!(e < best)) break;
        best = e; b_is = is; b_qmn = qmn; b_d = d; b_mn = mn;
    }
    for (int j = 0; j < n; j++) L[j] = (uint8_t)qk_rint(qk_clamp((x[j] - b_qmn) * b_is, 0.f, fmax));
    *m = -b_mn;
    return b_d;
}

float qk_pos_scale_search(const float *v, const float *w, int n, int nmax, uint8_t *L) {
    float max = 0;
    for (int j = 0; j < n; j++) max = v[j] > max ? v[j] : max;
    if (!(max > EPS_MAX)) { memset(L, 0, (size_t)n); return 0.f; }
    float best_is = nmax / max, best = INFINITY;
    for (int c = -8; c <= 8; c++) {
        float is = ((float)nmax + 0.05f * (float)c) / max, d = 1.f / is, e = 0;
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
