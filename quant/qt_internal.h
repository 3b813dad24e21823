/* quant/qt_internal.h — internals of quant/ shared by legacy.c, k_quants.c, iq4.c,
 * types.c and the tests: the search kernels (scalar reference and AVX2, bit-identical)
 * and the per-type row functions.  Not a public header.
 *
 * Bit-identity between the scalar and AVX2 kernels: every element-wise operation is a
 * single IEEE operation (add, sub, mul, div, min/max by comparison, round-half-even) and
 * no FMA is used, so lanes agree exactly; every reduction is done in 8 lanes (element j
 * goes to lane j % 8) and the lanes are summed in the fixed order of qk_hsum8. */
#ifndef QT_INTERNAL_H
#define QT_INTERNAL_H

#include "qt.h"
#include "blocks.h"

#include <string.h>

/* Round half to even of v for |v| < 2^22 (exact; the same as vroundps). */
static inline float qk_rint(float v) { return (v + 12582912.f) - 12582912.f; }
/* Clamps like minps/maxps: a NaN v becomes hi, then stays hi. */
static inline float qk_clamp(float v, float lo, float hi) {
    v = v < hi ? v : hi;
    return v > lo ? v : lo;
}
/* ((a0+a4)+(a2+a6)) + ((a1+a5)+(a3+a7)): the order of the AVX2 horizontal sum. */
static inline float qk_hsum8(const float a[8]) {
    return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
}

/* Search kernels.  n is a multiple of 8; sums follow the 8-lane rule above.
 *  asym: l = rint(clamp((x - mn) * is, 0, nmax));  out = {sum w*l, sum w*l*l, sum w*l*x}
 *  sym:  l = rint(clamp(x * is, lo, hi));            out = {sum w*l*x, sum w*l*l}
 *  nl:   q = IQ4 level nearest x * is (ties up);     out = {sum w*q*x, sum w*q*q}
 *  asym_err: l = rint(clamp((x + m) * id, 0, nmax)), returns sum w*(x - (d*l - m))^2
 *  sym_err:  l = rint(clamp(x * id, lo, hi)),          returns sum w*(x - d*l)^2
 *  nl_err:   q = level nearest x * id,                 returns sum w*(x - d*q)^2 */
typedef struct {
    void (*asym)(const float *x, const float *w, int n, float mn, float is, float nmax, float out[3]);
    void (*sym)(const float *x, const float *w, int n, float is, float lo, float hi, float out[2]);
    void (*nl)(const float *x, const float *w, int n, float is, float out[2]);
    float (*asym_err)(const float *x, const float *w, int n, float d, float id, float m, float nmax);
    float (*sym_err)(const float *x, const float *w, int n, float d, float id, float lo, float hi);
    float (*nl_err)(const float *x, const float *w, int n, float d, float id);
} qk_kern;

extern const qk_kern qk_kern_ref;
/* The AVX2 kernels, or NULL when the CPU (or the compiler) lacks AVX2. */
const qk_kern *qk_kern_avx2(void);
/* Best kernels for this CPU. */
const qk_kern *qk_kern_best(void);

/* IQ4 level index nearest to v (ties to the upper level), shared by all paths. */
extern const float qk_iq4_levels[16];
extern const float qk_iq4_mids[15];
static inline int qk_iq4_index(float v) {
    int i = 0;
    for (int k = 0; k < 15; k++) i += v >= qk_iq4_mids[k];
    return i;
}

/* Row quantizer of one type with explicit kernels: n elements, imp optional. */
typedef void (*qk_row_fn)(const qk_kern *k, const float *x, void *dst, int64_t n, const float *imp);

void qk_quant_q4_0(const qk_kern *k, const float *x, void *dst, int64_t n, const float *imp);
void qk_quant_q4_1(const qk_kern *k, const float *x, void *dst, int64_t n, const float *imp);
void qk_quant_q5_0(const qk_kern *k, const float *x, void *dst, int64_t n, const float *imp);
void qk_quant_q5_1(const qk_kern *k, const float *x, void *dst, int64_t n, const float *imp);
void qk_quant_q8_0(const qk_kern *k, const float *x, void *dst, int64_t n, const float *imp);
void qk_quant_q2_K(const qk_kern *k, const float *x, void *dst, int64_t n, const float *imp);
void qk_quant_q3_K(const qk_kern *k, const float *x, void *dst, int64_t n, const float *imp);
void qk_quant_q4_K(const qk_kern *k, const float *x, void *dst, int64_t n, const float *imp);
void qk_quant_q5_K(const qk_kern *k, const float *x, void *dst, int64_t n, const float *imp);
void qk_quant_q6_K(const qk_kern *k, const float *x, void *dst, int64_t n, const float *imp);
void qk_quant_iq4_nl(const qk_kern *k, const float *x, void *dst, int64_t n, const float *imp);
void qk_quant_iq4_xs(const qk_kern *k, const float *x, void *dst, int64_t n, const float *imp);

void qt_dequant_q4_0(const void *src, float *dst, int64_t n);
void qt_dequant_q4_1(const void *src, float *dst, int64_t n);
void qt_dequant_q5_0(const void *src, float *dst, int64_t n);
void qt_dequant_q5_1(const void *src, float *dst, int64_t n);
void qt_dequant_q8_0(const void *src, float *dst, int64_t n);
void qt_dequant_q2_K(const void *src, float *dst, int64_t n);
void qt_dequant_q3_K(const void *src, float *dst, int64_t n);
void qt_dequant_q4_K(const void *src, float *dst, int64_t n);
void qt_dequant_q5_K(const void *src, float *dst, int64_t n);
void qt_dequant_q6_K(const void *src, float *dst, int64_t n);
void qt_dequant_iq4_nl(const void *src, float *dst, int64_t n);
void qt_dequant_iq4_xs(const void *src, float *dst, int64_t n);

/* The scalar-reference row quantizer of t (the _ref path), NULL if t has none here.
 * For tests and benchmarks: traits' from_float is the fast path and must match it. */
qt_from_float_fn qt_ref_from_float(qt_type t);

/* Shared search helpers (quant/search.c). w: per-element weights (> 0 somewhere). */
/* Symmetric levels -nmax..nmax-1 (nmax > 0); candidate inverse scales
 * -(nmax + step*c)/max for c in [-nc, nc], then `refine` Lloyd steps.  Writes L
 * (values in -nmax..nmax-1) and returns the scale d (x ~ d*L). */
float qk_sym_search(const qk_kern *k, const float *x, const float *w, int n, int nmax,
                    int nc, float step, int refine, int8_t *L);
/* Levels 0..nmax with a min: x ~ d*L - m (m >= 0 returned in *m).  Candidates
 * (nmax + rmin + rdelta*i)/(max - min) for i in 0..nstep, then `refine` Lloyd steps. */
float qk_asym_search(const qk_kern *k, const float *x, const float *w, int n, int nmax,
                     float rmin, float rdelta, int nstep, int refine, float *m, uint8_t *L);
/* Quantizes n >= 0 non-negative values v with weights w to levels 0..nmax: v ~ d*L.
 * Returns d (0 when all v are 0). */
float qk_pos_scale_search(const float *v, const float *w, int n, int nmax, uint8_t *L);
/* Fills w[0..n) with the default per-element weights of a block: imp[j] if imp and the
 * block's imp sum is positive, else sqrt(sigma2 + x^2) with sigma2 = mean x^2 of the block. */
void qk_weights(const float *x, const float *imp, int n, float *w);

static inline float qk_f16_round(float f) { return qt_f16_to_f32(qt_f32_to_f16(f)); }

#endif
