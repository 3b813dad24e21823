/* quant/gptq_factor.c — the factor GPTQ walks with: U [n, n] upper triangular with
 * U^T U = (H + lam I)^-1.  With J the index reversal and J (H + lam I) J = L L^T (lower
 * Cholesky), U = J L^-1 J.  Both steps are blocked (64-wide panels) so that the O(n^3) work
 * is dot products and products of contiguous rows:
 *   Cholesky, right-looking: the diagonal block unblocked, the panel below it by rows, then
 *     the trailing lower triangle minus the panel's outer product (2 x 4 row tiles);
 *   the triangular inverse X = L^-1, by block rows: X_II = L_II^-1, and for J < I
 *     X_IJ = -L_II^-1 (sum over K in [J, I) of L_IK X_KJ) (4 x 8 tiles).
 * In double, AVX2+FMA lanes where the CPU has them; every output element is computed by one
 * thread in a fixed order (OpenMP only over independent rows or blocks), so U does not
 * depend on the thread count.
 * qt_gptq_factor_ref keeps the plain column-by-column form as the reference (tests).  Where
 * OpenBLAS is present (common/ qx_blas_get) its LAPACK dpotrf + dtrtri do both steps instead
 * (~110 GFLOP/s against ~10 for ours on one core, docs/gptq.md) in half the memory. */
#include "qt_internal.h"
#include "../common/qx.h"

#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif

enum { NB = 64 };

#define HAT(i, j) (Hd ? Hd[(i) * n + (j)] : (double)Hf[(i) * n + (j)])

/* The damped, reversed lower triangle: a[i, j] = H[n-1-i, n-1-j] (+ lam on the diagonal). */
static void load_reversed(double *a, const double *Hd, const float *Hf, int64_t n, double lam, double mean) {
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (n > 256)
#endif
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j <= i; j++) {
            double h = HAT(n - 1 - i, n - 1 - j);
            if (i == j) h = (h > 0 ? h : 0) + lam + (h > 0 ? 0 : mean * 1e-2);
            a[i * n + j] = h;
        }
}

static double dot(const double *x, const double *y, int64_t n) {
    double s = 0;
    for (int64_t k = 0; k < n; k++) s += x[k] * y[k];
    return s;
}

/* ---- reference: unblocked Cholesky and column-by-column inverse ---- */

static bool chol_ref(double *a, int64_t n) {
    for (int64_t j = 0; j < n; j++) {
        double s = a[j * n + j] - dot(a + j * n, a + j * n, j);
        if (!(s > 0)) return false;
        double d = sqrt(s);
        a[j * n + j] = d;
        for (int64_t i = j + 1; i < n; i++) a[i * n + j] = (a[i * n + j] - dot(a + i * n, a + j * n, j)) / d;
    }
    return true;
}

static void trinv_ref(const double *a, double *x, int64_t n) {
    memset(x, 0, (size_t)(n * n) * sizeof(double));
    for (int64_t c = 0; c < n; c++) {
        x[c * n + c] = 1.0 / a[c * n + c];
        for (int64_t i = c + 1; i < n; i++) {
            double t = 0;
            for (int64_t k = c; k < i; k++) t -= a[i * n + k] * x[k * n + c];
            x[i * n + c] = t / a[i * n + i];
        }
    }
}

/* ---- blocked ---- */

/* c[r][q] = dot(A row i+r, A row j+q) over kb, for a 2 x 4 tile (rows ld apart). */
static inline void dots2x4(const double *ai, const double *aj, int64_t ld, int64_t kb, double c[2][4]) {
    double s[2][4] = { { 0 } };
    for (int64_t k = 0; k < kb; k++) {
        double x0 = ai[k], x1 = ai[ld + k];
        for (int q = 0; q < 4; q++) {
            double y = aj[q * ld + k];
            s[0][q] += x0 * y;
            s[1][q] += x1 * y;
        }
    }
    memcpy(c, s, sizeof s);
}

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#define FAC_X86 1
/* dots2x4 with 4-wide FMA lanes over k (then lane sums): another rounding than the scalar
 * form, the same for every thread count. */
__attribute__((target("avx2,fma")))
static void dots2x4_avx2(const double *ai, const double *aj, int64_t ld, int64_t kb, double c[2][4]) {
    __m256d s[2][4];
    for (int r = 0; r < 2; r++) for (int q = 0; q < 4; q++) s[r][q] = _mm256_setzero_pd();
    int64_t k = 0;
    for (; k + 4 <= kb; k += 4) {
        __m256d x0 = _mm256_loadu_pd(ai + k), x1 = _mm256_loadu_pd(ai + ld + k);
        for (int q = 0; q < 4; q++) {
            __m256d y = _mm256_loadu_pd(aj + q * ld + k);
            s[0][q] = _mm256_fmadd_pd(x0, y, s[0][q]);
            s[1][q] = _mm256_fmadd_pd(x1, y, s[1][q]);
        }
    }
    for (int r = 0; r < 2; r++)
        for (int q = 0; q < 4; q++) {
            double v[4];
            _mm256_storeu_pd(v, s[r][q]);
            double t = (v[0] + v[1]) + (v[2] + v[3]);
            for (int64_t kk = k; kk < kb; kk++) t += ai[r * ld + kk] * aj[q * ld + kk];
            c[r][q] = t;
        }
}
/* t[c] += l * xk[c] for c < m. */
__attribute__((target("avx2,fma")))
static void axpy_avx2(double *t, double l, const double *xk, int64_t m) {
    __m256d lv = _mm256_set1_pd(l);
    int64_t c = 0;
    for (; c + 4 <= m; c += 4) _mm256_storeu_pd(t + c, _mm256_fmadd_pd(lv, _mm256_loadu_pd(xk + c), _mm256_loadu_pd(t + c)));
    for (; c < m; c++) t[c] += l * xk[c];
}
#endif

static bool fac_fast(void) {
#ifdef FAC_X86
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return false;
#endif
}

static bool chol_blocked(double *a, int64_t n) {
    const bool fast = fac_fast();
    for (int64_t k0 = 0; k0 < n; k0 += NB) {
        int64_t kb = n - k0 < NB ? n - k0 : NB, k1 = k0 + kb;
        /* diagonal block */
        for (int64_t j = k0; j < k1; j++) {
            double s = a[j * n + j] - dot(a + j * n + k0, a + j * n + k0, j - k0);
            if (!(s > 0)) return false;
            double d = sqrt(s);
            a[j * n + j] = d;
            for (int64_t i = j + 1; i < k1; i++) a[i * n + j] = (a[i * n + j] - dot(a + i * n + k0, a + j * n + k0, j - k0)) / d;
        }
        if (k1 >= n) break;
        /* the panel below, row by row */
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (n - k1 > 128)
#endif
        for (int64_t i = k1; i < n; i++)
            for (int64_t j = k0; j < k1; j++)
                a[i * n + j] = (a[i * n + j] - dot(a + i * n + k0, a + j * n + k0, j - k0)) / a[j * n + j];
        /* trailing update of the lower triangle: a[i, j] -= panel_i . panel_j, j <= i */
        int64_t m = n - k1, nt = (m + 1) / 2;
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 4) if (m > 128)
#endif
        for (int64_t it = 0; it < nt; it++) {
            int64_t i = k1 + 2 * it;
            bool two = i + 1 < n;
            int64_t j = k1;
            for (; j + 4 <= i + 1 && two; j += 4) {   /* whole tile at or below row i's diagonal */
                double c[2][4];
#ifdef FAC_X86
                if (fast) dots2x4_avx2(a + i * n + k0, a + j * n + k0, n, kb, c);
                else
#endif
                    dots2x4(a + i * n + k0, a + j * n + k0, n, kb, c);
                for (int q = 0; q < 4; q++) {
                    if (j + q <= i) a[i * n + j + q] -= c[0][q];
                    a[(i + 1) * n + j + q] -= c[1][q];
                }
            }
            for (; j <= i + (two ? 1 : 0); j++) {
                if (j <= i) a[i * n + j] -= dot(a + i * n + k0, a + j * n + k0, kb);
                if (two) a[(i + 1) * n + j] -= dot(a + (i + 1) * n + k0, a + j * n + k0, kb);
            }
        }
    }
    return true;
}

/* X = L^-1 (lower, row-major), by block rows. */
static void trinv_blocked(const double *a, double *x, int64_t n) {
    const bool fast = fac_fast();
    (void)fast;
    memset(x, 0, (size_t)(n * n) * sizeof(double));
    for (int64_t i0 = 0; i0 < n; i0 += NB) {
        int64_t ib = n - i0 < NB ? n - i0 : NB, i1 = i0 + ib;
        /* X_II = L_II^-1, column by column inside the block (small) */
        for (int64_t c = i0; c < i1; c++) {
            x[c * n + c] = 1.0 / a[c * n + c];
            for (int64_t i = c + 1; i < i1; i++) {
                double t = 0;
                for (int64_t k = c; k < i; k++) t -= a[i * n + k] * x[k * n + c];
                x[i * n + c] = t / a[i * n + i];
            }
        }
        /* X_IJ for every block column J left of I: T = sum_K L_IK X_KJ (rows of X contiguous),
         * then X_IJ = -X_II T */
        int64_t nj = i0 / NB;
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) if (i0 >= 2 * NB)
#endif
        for (int64_t jb = 0; jb < nj; jb++) {
            int64_t j0 = jb * NB, j1 = j0 + NB;
            double t[NB][NB];
            memset(t, 0, sizeof t);
            for (int64_t r = 0; r < ib; r++) {
                const double *li = a + (i0 + r) * n;
                double *tr = t[r];
                for (int64_t k = j0; k < i0; k++) {   /* X[k, J] is zero left of column k */
                    double l = li[k];
                    const double *xk = x + k * n + j0;
                    int64_t c1 = k < j1 ? k - j0 + 1 : NB;
#ifdef FAC_X86
                    if (fast) { axpy_avx2(tr, l, xk, c1); continue; }
#endif
                    for (int64_t c = 0; c < c1; c++) tr[c] += l * xk[c];
                }
            }
            for (int64_t r = 0; r < ib; r++) {
                double *xr = x + (i0 + r) * n + j0;
                for (int64_t c = 0; c < NB; c++) {
                    double s = 0;
                    for (int64_t q = 0; q <= r; q++) s += x[(i0 + r) * n + i0 + q] * t[q][c];
                    xr[c] = -s;
                }
            }
        }
    }
}

typedef enum { FAC_BEST, FAC_OWN, FAC_REF } fac_kind;

/* LAPACK on the same array: row-major lower = column-major upper, so dpotrf("U") leaves L
 * (A = L L^T) and dtrtri("U") then L^-1, both in the row-major lower triangle. */
static bool lapack_chol_inv(double *a, int64_t n) {
    const qx_blas *bl = qx_blas_get();
    int nn = (int)n, info = 0;
    bl->dpotrf("U", &nn, a, &nn, &info);
    if (info != 0) return false;
    bl->dtrtri("U", "N", &nn, a, &nn, &info);
    return info == 0;
}

static bool factor_impl(const double *Hd, const float *Hf, int64_t n, double damp, float *U, fac_kind kind) {
    if (kind == FAC_BEST && (!qx_blas_get() || n > 46340)) kind = FAC_OWN;   /* LAPACK's int sizes */
    const bool ref = kind == FAC_REF;
    if (n <= 0) return false;
    double mean = 0;
    for (int64_t j = 0; j < n; j++) mean += HAT(j, j) > 0 ? HAT(j, j) : 0;
    mean /= (double)n;
    if (!(mean > 0) || !isfinite(mean)) return false;
    double *a = malloc((size_t)(n * n) * sizeof(double));
    double *li = kind == FAC_BEST ? a : malloc((size_t)(n * n) * sizeof(double));
    bool ok = false;
    for (int attempt = 0; a && li && attempt < 6 && !ok; attempt++, damp = damp > 0 ? damp * 10 : 1e-4) {
        load_reversed(a, Hd, Hf, n, damp * mean, mean);
        if (kind == FAC_BEST) {
            if (!lapack_chol_inv(a, n)) continue;
        } else {
            if (!(ref ? chol_ref(a, n) : chol_blocked(a, n))) continue;
            (ref ? trinv_ref : trinv_blocked)(a, li, n);
        }
        ok = true;   /* check everything before writing U: U may be H's own buffer (qt_gptq_factor_f32) */
        for (int64_t i = 0; i < n && ok; i++)
            for (int64_t j = 0; j <= i; j++)
                if (!isfinite((float)li[i * n + j])) { ok = false; break; }
        for (int64_t i = 0; i < n && ok; i++)
            for (int64_t j = 0; j < n; j++) U[i * n + j] = j >= i ? (float)li[(n - 1 - i) * n + (n - 1 - j)] : 0.f;
    }
    if (li != a) free(li);
    free(a);
    return ok;
}

bool qt_gptq_factor(const double *H, int64_t n, double damp, float *U) { return factor_impl(H, NULL, n, damp, U, FAC_BEST); }
bool qt_gptq_factor_f32(const float *H, int64_t n, double damp, float *U) { return factor_impl(NULL, H, n, damp, U, FAC_BEST); }
bool qt_gptq_factor_own(const double *H, int64_t n, double damp, float *U) { return factor_impl(H, NULL, n, damp, U, FAC_OWN); }
bool qt_gptq_factor_ref(const double *H, int64_t n, double damp, float *U) { return factor_impl(H, NULL, n, damp, U, FAC_REF); }
