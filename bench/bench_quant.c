/* bench/bench_quant.c — quantize / dequantize throughput of every block type of quant/
 * on a 1024 x 4096 Gaussian matrix with 6 outlier columns (x12), in M weights/s:
 * 1 thread and all threads, without and with importance weights (imp = exp(1.5 N(0,1))
 * per column).  Baselines: the scalar _ref path measured in this run (on 64 rows), and
 * ggml's single-thread rates on this machine as given in the issue (ggml is not built
 * here; docs/quant-vs-ggml.md has the side-by-side run). */
#include "quant/qt.h"
#include "quant/qt_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define ROWS 1024
#define COLS 4096
#define REF_ROWS 64

static uint64_t s_ = 0x2545F4914F6CDD1Dull;
static double urand(void) { s_ ^= s_ << 13; s_ ^= s_ >> 7; s_ ^= s_ << 17; return ((double)(s_ >> 11) + 0.5) / 9007199254740992.0; }
static double gauss(void) { return sqrt(-2 * log(urand())) * cos(6.283185307179586 * urand()); }
/* Wall clock for the all-thread runs; the CPU time of this thread for 1-thread runs, so
 * that other processes on a shared machine do not distort the single-thread rates. */
static double now(void) { struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts); return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec; }
static double cpu_now(void) { struct timespec ts; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts); return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec; }

/* ggml single-thread quantize rates on this machine (issue 3), M weights/s; 0 = not given */
static const struct { qt_type t; double plain, imp; } ggml_ref[] = {
    { QT_Q4_0, 816, 45 }, { QT_Q4_1, 0, 0 }, { QT_Q5_0, 0, 0 }, { QT_Q5_1, 0, 0 }, { QT_Q8_0, 389, 389 },
    { QT_Q2_K, 22.5, 9.8 }, { QT_Q3_K, 95, 31 }, { QT_Q4_K, 20.7, 11.8 }, { QT_Q5_K, 23.4, 11.2 },
    { QT_Q6_K, 39.9, 39.9 }, { QT_IQ4_NL, 0, 0 }, { QT_IQ4_XS, 0, 0 },
};

static void set_threads(int n) {
#ifdef _OPENMP
    omp_set_num_threads(n);
#else
    (void)n;
#endif
}

int main(void) {
    float *x = malloc(sizeof(float) * ROWS * COLS), *y = malloc(sizeof(float) * ROWS * COLS);
    float *imp = malloc(sizeof(float) * COLS);
    uint8_t *q = malloc((size_t)qt_row_size(QT_F32, COLS) * ROWS);
    if (!x || !y || !imp || !q) return 1;
    for (int i = 0; i < ROWS * COLS; i++) x[i] = (float)gauss();
    const int outl[6] = { 17, 400, 1023, 2048, 3001, 4000 };
    for (int k = 0; k < 6; k++) for (int r = 0; r < ROWS; r++) x[r * COLS + outl[k]] *= 12.f;
    for (int j = 0; j < COLS; j++) imp[j] = (float)exp(1.5 * gauss());
    memset(q, 0, (size_t)qt_row_size(QT_F32, COLS) * ROWS);
    memset(y, 0, sizeof(float) * ROWS * COLS);
    int nt = 1;
#ifdef _OPENMP
    nt = omp_get_max_threads();
#endif
    printf("bench_quant: %d x %d, M weights/s; SIMD kernels: %s; all threads = %d\n", ROWS, COLS,
           qk_kern_avx2() ? "AVX2" : "none (scalar)", nt);
    printf("%-7s %-3s | %9s %9s | %9s %6s | %9s %7s | %9s %9s\n", "type", "imp", "q 1thr", "q all",
           "ref 1thr", "x ref", "ggml 1thr", "x ggml", "dq 1thr", "dq all");
    for (size_t i = 0; i < sizeof ggml_ref / sizeof ggml_ref[0]; i++) {
        qt_type t = ggml_ref[i].t;
        const qt_traits *tr = qt_get_traits(t);
        qt_from_float_fn ref = qt_ref_from_float(t);
        uint64_t rs = qt_row_size(t, COLS);
        for (int wi = 0; wi < 2; wi++) {
            const float *im = wi ? imp : NULL;
            set_threads(1);
            double t0 = cpu_now();
            qt_quantize_rows(t, x, q, ROWS, COLS, im);
            double q1 = ROWS * (double)COLS / (cpu_now() - t0) / 1e6;
            set_threads(nt);
            t0 = now();
            qt_quantize_rows(t, x, q, ROWS, COLS, im);
            double qa = ROWS * (double)COLS / (now() - t0) / 1e6;
            t0 = cpu_now();
            for (int r = 0; r < REF_ROWS; r++) ref(x + (size_t)r * COLS, q + r * rs, COLS, im);
            double qr = REF_ROWS * (double)COLS / (cpu_now() - t0) / 1e6;
            set_threads(1);
            t0 = cpu_now();
            qt_dequantize_rows(t, q, y, ROWS, COLS);
            double d1 = ROWS * (double)COLS / (cpu_now() - t0) / 1e6;
            set_threads(nt);
            t0 = now();
            qt_dequantize_rows(t, q, y, ROWS, COLS);
            double da = ROWS * (double)COLS / (now() - t0) / 1e6;
            double g = wi ? ggml_ref[i].imp : ggml_ref[i].plain;
            char gs[16] = "-", gr[16] = "-";
            if (g > 0) { snprintf(gs, sizeof gs, "%.1f", g); snprintf(gr, sizeof gr, "%.2fx", q1 / g); }
            printf("%-7s %-3s | %9.1f %9.1f | %9.1f %5.2fx | %9s %7s | %9.1f %9.1f\n", tr->name, wi ? "yes" : "no",
                   q1, qa, qr, q1 / qr, gs, gr, d1, da);
            fflush(stdout);
        }
    }
    free(x); free(y); free(imp); free(q);
    return 0;
}
