/* kernels/cpu/gram.c — the Gram accumulation of GPTQ's input Hessians (calib/hessian.c):
 * H[i, j] += sum_t x[t, i] x[t, j] for j >= i (the upper triangle of H [n, n], float), each
 * element's sum taken in token order with one IEEE multiply and one add per token.  The
 * reference walks element by element; the own fast path keeps a 4 x 16 tile of H in AVX2
 * registers over 64-token chunks (mul then add, no FMA), so both give the same bits, and
 * OpenMP splits the tiles (each owned by one thread): the bytes never depend on the thread
 * count.  With OpenBLAS present (common/ qx_blas_get) kn_gram_accumulate uses its sgemm per
 * row block instead (7x faster, docs/gptq.md; other rounding, still thread-independent).
 * Not here: which inputs, which H (calib/). */
#include "../kernels.h"

#include <stdbool.h>
#ifdef _OPENMP
#include <omp.h>
#endif

void kn_gram_accumulate_ref(float *H, int64_t n, const float *x, int64_t ld, int64_t T) {
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i; j < n; j++) {
            float a = H[i * n + j];
            for (int64_t t = 0; t < T; t++) a += x[t * ld + i] * x[t * ld + j];
            H[i * n + j] = a;
        }
}

/* Rows [i0, i0+ni) x columns [j0, j0+nj) of H (only j >= i written) over tokens [t0, t1), scalar. */
static void tile_ref(float *H, int64_t n, const float *x, int64_t ld, int64_t t0, int64_t t1, int64_t i0, int64_t ni, int64_t j0,
                     int64_t nj) {
    for (int64_t i = i0; i < i0 + ni; i++)
        for (int64_t j = j0 > i ? j0 : i; j < j0 + nj; j++) {
            float a = H[i * n + j];
            for (int64_t t = t0; t < t1; t++) a += x[t * ld + i] * x[t * ld + j];
            H[i * n + j] = a;
        }
}

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#define GRAM_AVX2 1
/* A full 4 x 16 tile at (i0, j0) with j0 >= i0 + 4 (every element above the diagonal). */
__attribute__((target("avx2")))
static void tile4x16(float *H, int64_t n, const float *x, int64_t ld, int64_t t0, int64_t t1, int64_t i0, int64_t j0) {
    __m256 a[4][2];
    for (int r = 0; r < 4; r++) {
        a[r][0] = _mm256_loadu_ps(H + (i0 + r) * n + j0);
        a[r][1] = _mm256_loadu_ps(H + (i0 + r) * n + j0 + 8);
    }
    for (int64_t t = t0; t < t1; t++) {
        const float *row = x + t * ld;
        __m256 x0 = _mm256_loadu_ps(row + j0), x1 = _mm256_loadu_ps(row + j0 + 8);
        for (int r = 0; r < 4; r++) {
            __m256 xi = _mm256_broadcast_ss(row + i0 + r);
            a[r][0] = _mm256_add_ps(a[r][0], _mm256_mul_ps(xi, x0));
            a[r][1] = _mm256_add_ps(a[r][1], _mm256_mul_ps(xi, x1));
        }
    }
    for (int r = 0; r < 4; r++) {
        _mm256_storeu_ps(H + (i0 + r) * n + j0, a[r][0]);
        _mm256_storeu_ps(H + (i0 + r) * n + j0 + 8, a[r][1]);
    }
}
#endif

enum { GRAM_TCHUNK = 64 };

void kn_gram_accumulate_own(float *H, int64_t n, const float *x, int64_t ld, int64_t T) {
#ifdef GRAM_AVX2
    if (!__builtin_cpu_supports("avx2")) { kn_gram_accumulate_ref(H, n, x, ld, T); return; }
    const int64_t nt = (n + 3) / 4;
    for (int64_t t0 = 0; t0 < T; t0 += GRAM_TCHUNK) {
        int64_t t1 = t0 + GRAM_TCHUNK < T ? t0 + GRAM_TCHUNK : T;
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 4) if (!omp_in_parallel() && (t1 - t0) * n * n >= (1 << 22))
#endif
        for (int64_t it = 0; it < nt; it++) {
            int64_t i0 = it * 4, ni = n - i0 < 4 ? n - i0 : 4;
            /* the diagonal block (and short rows) element by element, then full tiles to the right */
            int64_t jf = i0 + 4;                       /* first column where every row of the tile is above the diagonal */
            if (ni < 4 || jf >= n) { tile_ref(H, n, x, ld, t0, t1, i0, ni, i0, n - i0); continue; }
            tile_ref(H, n, x, ld, t0, t1, i0, ni, i0, 4);
            int64_t j = jf;
            for (; j + 16 <= n; j += 16) tile4x16(H, n, x, ld, t0, t1, i0, j);
            if (j < n) tile_ref(H, n, x, ld, t0, t1, i0, ni, j, n - j);
        }
    }
#else
    kn_gram_accumulate_ref(H, n, x, ld, T);
#endif
}

/* With OpenBLAS: row blocks of the upper triangle as products H[i0:i1, i0:n] += x[:, i0:i1]^T
 * x[:, i0:n], one single-threaded sgemm per block, blocks over OpenMP threads (each block's
 * bits fixed; the diagonal blocks' lower parts are written too, callers mirror the upper). */
void kn_gram_accumulate(float *H, int64_t n, const float *x, int64_t ld, int64_t T) {
    const qx_blas *bl = qx_blas_get();
    if (!bl || T <= 0) { if (T > 0) kn_gram_accumulate_own(H, n, x, ld, T); return; }
    enum { RB = 256 };
    const int64_t nb = (n + RB - 1) / RB;
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) if (!omp_in_parallel() && T * n * n >= (1 << 22))
#endif
    for (int64_t b = 0; b < nb; b++) {
        int64_t i0 = b * RB, ib = n - i0 < RB ? n - i0 : RB;
        bl->sgemm(QX_CBLAS_ROW_MAJOR, QX_CBLAS_TRANS, QX_CBLAS_NO_TRANS, (int)ib, (int)(n - i0), (int)T, 1.f, x + i0, (int)ld, x + i0, (int)ld, 1.f,
                  H + i0 * n + i0, (int)n);
    }
}
