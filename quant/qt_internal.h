/* quant/qt_internal.h — internals of quant/ shared by legacy.c, k_quants.c, iq4.c,
 * types.c and the tests: the search kernels (scalar reference and AVX2, bit-identical)
 * and the per-type row functions.  Not a public header.
 *
 * Bit-identity between the scalar and AVX2 kernels: every element-wise operation is a
 * single IEEE operation (add, sub, mul, div, sqrt, min/max by comparison, round-half-even)
 * and no FMA is used, so lanes agree exactly; every sum has one fixed order: the
 * candidate-parallel kernels (*8) sum each candidate's elements in index order, the
 * others sum element j in lane j % 8 and then the lanes in qk_hsum8 order; the best
 * candidate is the first lane holding the extreme value. */
#ifndef QT_INTERNAL_H
#define QT_INTERNAL_H

#include "qt.h"
#include "blocks.h"

#include <math.h>
#include <string.h>

/* Round half to even of v for |v| < 2^22 (exact; the same as vroundps). */
static inline float qk_rint(float v) { return (v + 12582912.f) - 12582912.f; }
/* Clamps like minps/maxps: a NaN v becomes hi, then stays hi. */
static inline float qk_clamp(float v, float lo, float hi) {
    v = v < hi ? v : hi;
    return v > lo ? v : lo;
}
/* Sum of n (a multiple of 4) floats in 4 interleaved chains, ((c0+c1)+(c2+c3)). */
static inline float qk_sum4(const float *v, int n) {
    float c[4] = { 0, 0, 0, 0 };
    for (int j = 0; j < n; j += 4)
        for (int k = 0; k < 4; k++) c[k] += v[j + k];
    return (c[0] + c[1]) + (c[2] + c[3]);
}
/* ((a0+a4)+(a2+a6)) + ((a1+a5)+(a3+a7)): the order of the AVX2 horizontal sum. */
static inline float qk_hsum8(const float a[8]) {
    return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
}

/* Search kernels.  The *8 kernels score 8 candidate inverse scales at once (lane c uses
 * is[c]; each lane sums over j = 0..n-1 in order, so a scalar loop reproduces it):
 *  asym8: l = rint(clamp((x - mn) * is[c], 0, nmax)); S0 = sum w*l, S1 = sum w*l*l,
 *         S2 = sum w*l*x (n even, each sum taken as (even j) + (odd j));
 *         qk_asym_fit(S0, S1, S2, mom) gives (d, m, err) per lane.
 *  sym8:  l = rint(clamp(x * is[c], lo, hi)); sxl = sum w*l*x, sll = sum w*l*l,
 *         score qk_sym_score(sxl, sll); n even, sums taken as (even j) + (odd j).
 *  nl8:   q = IQ4 level nearest x * is[c] (ties up); sxl = sum w*q*x, sll = sum w*q*q.
 * The *_err kernels measure one candidate, n a multiple of 8, in 8 lanes (element j in lane
 * j % 8, lanes summed in qk_hsum8 order):
 *  asym_err: l = rint(clamp((x + m) * id, 0, nmax)), returns sum w*(x - (d*l - m))^2
 *  sym_err:  l = rint(clamp(x * id, lo, hi)),          returns sum w*(x - d*l)^2
 *  nl_err:   q = level nearest x * id,                 returns sum w*(x - d*q)^2 */
typedef struct {
    /* asym8/sym8/nl8 return the best lane (lowest err / highest score sxl^2/sll, first on
     * ties; -1 when no lane is valid) and write that lane's results through the pointers */
    int (*asym8)(const float *x, const float *w, int n, float mn, const float is[8], float nmax,
                 const float mom[3], float *d, float *m, float *err);
    int (*sym8)(const float *x, const float *w, int n, const float is[8], float lo, float hi,
                float *score, float *sxl, float *sll);
    int (*nl8)(const float *x, const float *w, int n, const float is[8], float *score, float *sxl, float *sll);
    float (*asym_err)(const float *x, const float *w, int n, float d, float id, float m, float nmax);
    float (*sym_err)(const float *x, const float *w, int n, float d, float id, float lo, float hi);
    float (*nl_err)(const float *x, const float *w, int n, float d, float id);
    /* sum of x^2 in 8 lanes (n a multiple of 8); w[j] = sqrt(sigma2 + x[j]^2) */
    float (*sumsq)(const float *x, int n);
    void (*wsqrt)(const float *x, int n, float sigma2, float *w);
    /* Q8_0 blocks of a row: d = f16(amax/127), q = rint(clamp(x / f16d, -127, 127)) */
    void (*q8_0)(const float *x, void *dst, int64_t nblocks);
    /* final levels (element-wise, exact): L = rint(clamp(x * id, lo, hi)) + off, and
     * L = rint(clamp((x + m) * id, 0, nmax)); n a multiple of 16 */
    void (*lev_sym)(const float *x, int n, float id, float lo, float hi, float off, uint8_t *L);
    void (*lev_asym)(const float *x, int n, float id, float m, float nmax, uint8_t *L);
    /* hi = max(0, max x), lo = min(0, min x), NaNs skipped; n a multiple of 8 */
    void (*extremes)(const float *x, int n, float *lo, float *hi);
    /* The whole one-group symmetric search, fused (no calls, no stores in between), for
     * two sub-blocks (xa, wa) and (xb, wb) at once: d[0], d[1] are what
     * qk_sym_search(k, x, w, n, -lo, 1, step, 0, NULL) returns for each, with
     * base[c] = -((float)-lo + step * (float)(c - 4)) (qk_sym_base). */
    void (*sym_sub2)(const float *xa, const float *wa, const float *xb, const float *wb, int n,
                     const float base[8], float lo, float hi, float d[2]);
} qk_kern;

/* |max| at or below this is an all-zero block for the searches */
#define QK_EPS_MAX 1e-15f

/* The candidate numerators of a one-group symmetric search (see sym_sub2). */
static inline void qk_sym_base(int nmax, float step, float base[8]) {
    for (int c = 0; c < 8; c++) base[c] = -((float)nmax + step * (float)(c - 4));
}

/* Score of a symmetric candidate: sxl^2/sll, or -1 when sll <= 0 or not a number. */
static inline float qk_sym_score(float sxl, float sll) {
    float s = (sxl * sxl) / (sll > 0 ? sll : 1.f);
    return (sll > 0 && s == s) ? s : -1.f;
}

/* Weighted least-squares fit of x ~ d*l + m with m <= 0 from the level sums S0..S2 and the
 * block moments mom = {sum w, sum w*x, sum w*x^2}; returns the weighted SSE of the fit
 * (INFINITY when degenerate).  The AVX2 kernel performs these exact float operations. */
static inline float qk_asym_fit(float s0, float s1, float s2, const float mom[3], float *d, float *m) {
    const float sw = mom[0], sx = mom[1], sxx = mom[2];
    float D = sw * s1 - s0 * s0;
    float Dd = D > 0 ? D : 1.f;
    float td = (sw * s2 - sx * s0) / Dd;
    float tm = (s1 * sx - s0 * s2) / Dd;
    float s1d = s1 > 0 ? s1 : 1.f;
    float td2 = s2 / s1d;
    if (tm > 0) { td = td2; tm = 0.f; }
    float e = ((((sxx - (2.f * td) * s2) - (2.f * tm) * sx) + (td * td) * s1) + ((2.f * td) * tm) * s0) + (tm * tm) * sw;
    *d = td; *m = tm;
    return (D > 0 && td > 0) ? e : INFINITY;
}

/* GPTQ group searches (quant/gptq_search.c).  Nearest point of a grid of `width` byte
 * magnitudes (point k at grid + k * width, times db) to v in the metric h, signs following v:
 * the best point as it is (c0, k0) and the best with one sign taken the other way at least
 * cost (c1, k1, flipping element j1), what an even-parity sign rule pays for an odd number
 * of negatives.  First point on ties.  _ref: point by point; the other: AVX2 when the CPU has
 * it and grid is one of the IQ2/IQ3 grids, the same picks. */
typedef struct { float c0, c1; int k0, k1, j1; } qg_grid_pick;
qg_grid_pick qg_grid_nearest(const uint8_t *grid, int width, int ng, float db, const float *v, const float *h);
qg_grid_pick qg_grid_nearest_ref(const uint8_t *grid, int width, int ng, float db, const float *v, const float *h);
/* Nearest IQ1 grid point (values -1/0/+1 plus a delta, times dl) to v in the metric h over
 * nd (1 or 2) candidate deltas; *bk, *bd keep their values when dl <= 0. */
void qg_iq1_nearest(float dl, int nd, const float *deltas, const float *v, const float *h, int *bk, int *bd);
void qg_iq1_nearest_ref(float dl, int nd, const float *deltas, const float *v, const float *h, int *bk, int *bd);

extern const qk_kern qk_kern_ref;
void qk_q8_0_blocks_ref(const float *x, void *dst, int64_t nblocks);
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

/* Row quantizers with explicit kernels (&qk_kern_ref: the _ref path): n elements,
 * imp optional (n per-column importance weights). */
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
/* Gain correction after a block quantizer (quant/unbias.c): rescales each block's f16 scale
 * (and min scale) of the n-element row dst so that sum u x q = sum u x^2 (u = imp or 1); the
 * levels are kept.  No-op for Q8_0 and the types without such a scale. */
void qk_unbias_row(qt_type t, const float *x, const float *imp, void *dst, int64_t n);

void qt_dequant_q4_0(const void *src, float *dst, int64_t n);
void qt_dequant_q4_1(const void *src, float *dst, int64_t n);
void qt_dequant_q5_0(const void *src, float *dst, int64_t n);
void qt_dequant_q5_1(const void *src, float *dst, int64_t n);
void qt_dequant_q8_0(const void *src, float *dst, int64_t n);
/* MXFP4 (quant/mxfp4.c): ggml's dequantize_row_mxfp4; the encoder with optional importance. */
void qt_dequant_mxfp4(const void *src, float *dst, int64_t n);
void qt_quant_mxfp4(const float *x, void *dst, int64_t n, const float *imp);
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
/* Symmetric levels -nmax..nmax-1 (nmax > 0); 8*ng candidate inverse scales
 * -(nmax + step*(c - 4*ng))/max, then `refine` rounds of 8 candidates around the inverse
 * of the best fitted scale.  Writes L (values in -nmax..nmax-1) if L is non-NULL and
 * returns the scale d (x ~ d*L).  n is a multiple of 8. */
float qk_sym_search(const qk_kern *k, const float *x, const float *w, int n, int nmax,
                    int ng, float step, int refine, int8_t *L);
/* Levels 0..nmax with a min: x ~ d*L - m (m >= 0 returned in *m).  8*ng candidates
 * (nmax + r0 + rstep*i)/(max - min), then `refine` rounds around the best fit.  Writes L
 * if non-NULL. */
float qk_asym_search(const qk_kern *k, const float *x, const float *w, int n, int nmax,
                     float r0, float rstep, int ng, int refine, float *m, uint8_t *L);
/* Factors applied to 1/d in the refinement rounds (lane 0 is the plain Lloyd step). */
extern const float qk_refine_f[8];
/* Quantizes n >= 0 non-negative values v with weights w to levels 0..nmax: v ~ d*L.
 * Returns d (0 when all v are 0). */
float qk_pos_scale_search(const float *v, const float *w, int n, int nmax, uint8_t *L);
/* Fills w[0..n) (n a multiple of 8) with the per-element weights of a block: imp[j] if
 * imp and the block's imp sum is positive, else sqrt(sigma2 + x^2) with sigma2 = mean x^2
 * of the block. */
void qk_weights(const qk_kern *k, const float *x, const float *imp, int n, float *w);
/* qk_weights with sigma2 scaled by f when imp is used (imp*sqrt(f*sigma2 + x^2)); f = 1 is
 * qk_weights, and without imp f is ignored */
void qk_weights_f(const qk_kern *k, const float *x, const float *imp, int n, float f, float *w);

static inline float qk_f16_round(float f) { return qt_f16_to_f32(qt_f32_to_f16(f)); }

#endif
