/* quant/qk_kern.c — scalar reference search kernels (see qt_internal.h for the
 * contract and the 8-lane summation rule the AVX2 kernels reproduce bit for bit),
 * the IQ4 level tables, and run-time kernel selection. */
#include "qt_internal.h"

const float qk_iq4_levels[16] = QT_IQ4NL_VALUES;
const float qk_iq4_mids[15] = {
    -115.5f, -93.5f, -74.f, -57.f, -42.f, -28.5f, -16.f, -4.5f, 7.f, 19.f, 31.5f, 45.5f, 61.f, 79.f, 101.f,
};

static void asym_ref(const float *x, const float *w, int n, float mn, float is, float nmax, float out[3]) {
    float a0[8] = {0}, a1[8] = {0}, a2[8] = {0};
    for (int j = 0; j < n; j += 8)
        for (int k = 0; k < 8; k++) {
            float l = qk_rint(qk_clamp((x[j + k] - mn) * is, 0.f, nmax));
            float wl = w[j + k] * l;
            a0[k] += wl;
            a1[k] += wl * l;
            a2[k] += wl * x[j + k];
        }
    out[0] = qk_hsum8(a0); out[1] = qk_hsum8(a1); out[2] = qk_hsum8(a2);
}

static void sym_ref(const float *x, const float *w, int n, float is, float lo, float hi, float out[2]) {
    float a0[8] = {0}, a1[8] = {0};
    for (int j = 0; j < n; j += 8)
        for (int k = 0; k < 8; k++) {
            float l = qk_rint(qk_clamp(x[j + k] * is, lo, hi));
            float wl = w[j + k] * l;
            a0[k] += wl * x[j + k];
            a1[k] += wl * l;
        }
    out[0] = qk_hsum8(a0); out[1] = qk_hsum8(a1);
}

static void nl_ref(const float *x, const float *w, int n, float is, float out[2]) {
    float a0[8] = {0}, a1[8] = {0};
    for (int j = 0; j < n; j += 8)
        for (int k = 0; k < 8; k++) {
            float q = qk_iq4_levels[qk_iq4_index(x[j + k] * is)];
            float wq = w[j + k] * q;
            a0[k] += wq * x[j + k];
            a1[k] += wq * q;
        }
    out[0] = qk_hsum8(a0); out[1] = qk_hsum8(a1);
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

const qk_kern qk_kern_ref = { asym_ref, sym_ref, nl_ref, asym_err_ref, sym_err_ref, nl_err_ref };

const qk_kern *qk_kern_best(void) {
    const qk_kern *k = qk_kern_avx2();
    return k ? k : &qk_kern_ref;
}
