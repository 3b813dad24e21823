/* bench/bench_quant_iq.c — quantize and dequantize rates of the i-quant types (IQ2_XXS,
 * IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M) in M weights/s, on one thread and on all
 * OpenMP threads (qt_quantize_rows / qt_dequantize_rows), on a 64 x 4096 Gaussian matrix with
 * outlier columns and a lognormal imatrix.
 *
 * Baselines:
 *  - GGML[] below holds ggml's single-thread rates for the same kind of matrix,
 *    measured once with a separate comparison program (ggml-quants.c built -O3 -march=native
 *    outside this repo, next to our code, same run, interleaved, best of 7; the results are
 *    in docs/iq-vs-ggml.md).  They are constants from another machine
 *    state, so the ratio to them is indicative only.
 *  - In this run: Q2_K's quantizer (quant/k_quants.c) on the same matrix, and each type's own
 *    1-thread rate for the N-thread speedup.
 * Timing: best of 3 repetitions; 1-thread figures use the thread's CPU time (so other load on
 * the machine does not distort them), N-thread figures wall-clock time. */
#include "quant/qt.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* ggml (llama.cpp ggml-quants.c) single-thread quantize / dequantize rates, M weights/s,
 * measured on this project's shared 2-core machine, 32 x 4096 rows, thread CPU time, best of 7
 * (docs/iq-vs-ggml.md, 2026-11-29). */
static const struct { qt_type t; double q, dq; } GGML[7] = {
    { QT_IQ2_XXS, 3.03, 285.0 }, { QT_IQ2_XS, 1.61, 241.0 }, { QT_IQ2_S, 4.25, 264.0 },
    { QT_IQ3_XXS, 2.16, 278.0 }, { QT_IQ3_S, 3.40, 237.0 }, { QT_IQ1_S, 5.86, 1362.0 },
    { QT_IQ1_M, 1.14, 982.0 },
};

enum { ROWS = 64, COLS = 4096, REPS = 3 };

/* 1 thread: this thread's CPU time (robust on a shared, loaded machine); N threads: wall. */
static int g_wall;
static double now(void) {
    struct timespec t;
    clock_gettime(g_wall ? CLOCK_MONOTONIC : CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static double urand(void) {
    g_rng ^= g_rng << 13; g_rng ^= g_rng >> 7; g_rng ^= g_rng << 17;
    return ((g_rng >> 11) + 0.5) / 9007199254740992.0;
}
static double nrand(void) { return sqrt(-2 * log(urand())) * cos(6.283185307179586 * urand()); }

static void set_threads(int n) {
#ifdef _OPENMP
    omp_set_num_threads(n);
#else
    (void)n;
#endif
}

/* Best-of-REPS seconds of quantizing (dq = 0) or dequantizing (dq = 1) the whole matrix. */
static double time_rows(qt_type t, int dq, const float *x, uint8_t *q, float *y, const float *imp) {
    double best = 1e30;
    for (int r = 0; r < REPS; r++) {
        const double t0 = now();
        if (dq) qt_dequantize_rows(t, q, y, ROWS, COLS);
        else qt_quantize_rows(t, x, q, ROWS, COLS, imp);
        best = fmin(best, now() - t0);
    }
    return best;
}

int main(void) {
    float *x = malloc(sizeof(float) * ROWS * COLS), *y = malloc(sizeof(float) * ROWS * COLS);
    float *imp = malloc(sizeof(float) * COLS);
    uint8_t *q = malloc((size_t)ROWS * COLS * 2);
    if (!x || !y || !imp || !q) return 1;
    for (int j = 0; j < COLS; j++) {
        const int outl = urand() < 0.02;
        imp[j] = (float)exp(nrand()) * (outl ? 3.f : 1.f);
        for (int r = 0; r < ROWS; r++) x[r * COLS + j] = (float)nrand() * (outl ? 5.f : 1.f);
    }
    int nthr = 1;
#ifdef _OPENMP
    nthr = omp_get_max_threads();
#endif
    const double mw = (double)ROWS * COLS / 1e6;
    set_threads(1);
    g_wall = 0;
    const double tq2k = time_rows(QT_Q2_K, 0, x, q, y, imp);
    printf("bench_quant_iq: %d x %d weights, imatrix; rates in M weights/s; %d threads available\n", ROWS, COLS, nthr);
    printf("in-run baseline: Q2_K quantize (1 thread) %.2f M w/s\n", mw / tq2k);
    printf("ggml baseline: constants measured separately with ggml-quants.c, 1 thread "
           "(see docs/iq-vs-ggml.md)\n\n");
    printf("%-8s %9s %9s %8s %8s %9s | %9s %9s %8s %8s\n", "type", "quant 1T", "quant NT", "NT/1T", "vs ggml",
           "vs Q2_K", "deq 1T", "deq NT", "NT/1T", "vs ggml");
    for (int i = 0; i < 7; i++) {
        const qt_type t = GGML[i].t;
        /* Calling qt_iq_traits directly also links quant/iq_quants.o, which types.c only
         * references weakly (a weak reference does not pull an archive member). */
        const qt_traits *tr = qt_iq_traits(t);
        if (!tr || !tr->from_float || qt_get_traits(t) != tr) { printf("%d: traits not wired\n", (int)t); continue; }
        tr->from_float(x, q, COLS, imp);                 /* builds the lattice tables once */
        set_threads(1);
        g_wall = 0;
        const double q1 = mw / time_rows(t, 0, x, q, y, imp), d1 = mw / time_rows(t, 1, x, q, y, imp);
        set_threads(nthr);
        g_wall = 1;
        const double qn = mw / time_rows(t, 0, x, q, y, imp), dn = mw / time_rows(t, 1, x, q, y, imp);
        printf("%-8s %9.2f %9.2f %7.2fx %7.2fx %8.2fx | %9.1f %9.1f %7.2fx %7.2fx\n", tr->name, q1, qn, qn / q1,
               q1 / GGML[i].q, q1 / (mw / tq2k), d1, dn, dn / d1, d1 / GGML[i].dq);
    }
    printf("\n1T: thread CPU time; NT: wall time (low NT/1T means the machine is busy).\n");
    printf("vs ggml = our 1-thread rate / ggml's 1-thread constant; vs Q2_K = our 1-thread quantize rate /\n"
           "Q2_K's in this run.  The i-quants search a lattice codebook per 8 (or 4) weights, so they\n"
           "are slower than Q2_K; the target is >= 3x ggml's single-thread quantize rate.\n");
    free(x); free(y); free(imp); free(q);
    return 0;
}
