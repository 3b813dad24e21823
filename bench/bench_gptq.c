/* bench/bench_gptq.c — the GPTQ pass on the 671B's shapes (issue: streamed --gptq at GEMM
 * speed), every figure next to a baseline measured in the same run:
 *  1. Hessian accumulation (kn_gram_accumulate, 512 tokens x 7168 columns: one routed
 *     expert's gate/up input at 65,536 calibration tokens) in GFLOP/s, against the element
 *     reference and OpenBLAS ssyrk (dlopen'd libopenblas.so.0, 1 thread) on the same shape;
 *  2. the lazy-batch feedback product (qt_gptq_update: 64 rows x 256 errors into 6,912
 *     columns) against the portable loop and OpenBLAS sgemm on the same shape;
 *  3. the factor (qt_gptq_factor, blocked) at 2048 columns against the unblocked reference,
 *     and at 4096;
 *  4. code search + walk per type (qt_quantize_gptq) on real-shape expert rows (64 x 7168
 *     gate/up, 128 x 2048 down) in M weights/s per core, next to the plain encoder's rate and
 *     the scalar walk (qt_quantize_gptq_ref) for the feedback's speed-up;
 *  5. the peak RSS of a streamed `qforge convert --gptq` on mini-v3-moe against the plain
 *     convert's and what --dry-run predicts for the pass.
 * 1-thread figures use the thread's CPU time (robust on a shared machine).  The 671B
 * projection from these rates is in docs/gptq.md.
 * usage: bench_gptq [--quick]  (from the repo root; part 5 needs ./qforge and ../shared) */
#include "quant/qt.h"
#include "kernels/kernels.h"
#include "common/qx.h"

#include <dlfcn.h>
#include <unistd.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static uint64_t rs_ = 0x9E3779B97F4A7C15ull;
static float frand(void) { rs_ ^= rs_ << 13; rs_ ^= rs_ >> 7; rs_ ^= rs_ << 17; return (float)((double)(rs_ >> 11) / 9007199254740992.0) - 0.5f; }

typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *, int, float, float *, int);
typedef void (*ssyrk_fn)(int, int, int, int, int, float, const float *, int, float, float *, int);
typedef void (*setthr_fn)(int);
enum { ROWMAJOR = 101, NOTRANS = 111, TRANS = 112, UPPER = 121 };

static double best_of(int reps, void (*fn)(void *), void *ud) {
    double b = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = cpu_now();
        fn(ud);
        double t = cpu_now() - t0;
        if (t < b) b = t;
    }
    return b;
}

typedef struct { float *H; int64_t n; const float *x; int64_t T; ssyrk_fn syrk; } gram_job;
static void run_gram(void *u) { gram_job *g = u; kn_gram_accumulate(g->H, g->n, g->x, g->n, g->T); }
static void run_gram_own(void *u) { gram_job *g = u; kn_gram_accumulate_own(g->H, g->n, g->x, g->n, g->T); }
static void run_gram_ref(void *u) { gram_job *g = u; kn_gram_accumulate_ref(g->H, g->n, g->x, g->n, g->T); }
static void run_syrk(void *u) { gram_job *g = u; g->syrk(ROWMAJOR, UPPER, TRANS, (int)g->n, (int)g->T, 1.f, g->x, (int)g->n, 1.f, g->H, (int)g->n); }

typedef struct { float *W; const float *E, *U; int64_t R, B, nc, ld; sgemm_fn gemm; bool ref; } upd_job;
static void run_upd(void *u) { upd_job *j = u; qt_gptq_update(j->W, j->ld, j->R, j->E, (int)j->B, j->U, j->ld, j->nc, j->ref); }
static void run_gemm(void *u) {
    upd_job *j = u;
    j->gemm(ROWMAJOR, NOTRANS, NOTRANS, (int)j->R, (int)j->nc, (int)j->B, -1.f, j->E, (int)j->B, j->U, (int)j->ld, 1.f, j->W, (int)j->ld);
}

int main(int argc, char **argv) {
    bool quick = argc > 1 && !strcmp(argv[1], "--quick");
#ifdef _OPENMP
    omp_set_num_threads(1);
#endif
    void *blas = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
    sgemm_fn gemm = blas ? (sgemm_fn)dlsym(blas, "cblas_sgemm") : NULL;
    ssyrk_fn syrk = blas ? (ssyrk_fn)dlsym(blas, "cblas_ssyrk") : NULL;
    setthr_fn setthr = blas ? (setthr_fn)dlsym(blas, "openblas_set_num_threads") : NULL;
    if (setthr) setthr(1);
    printf("GPTQ pass on 671B shapes, 1 thread (thread CPU time, best of 3); baseline OpenBLAS %s\n",
           gemm && syrk ? "(libopenblas.so.0, 1 thread)" : "ABSENT (apt-get install libopenblas0; scripts/deps.sh --optional)");

    /* 1. Gram */
    {
        const int64_t n = 7168, T = 512;
        float *x = malloc(sizeof(float) * (size_t)(T * n)), *H = calloc((size_t)(n * n), sizeof(float));
        for (int64_t i = 0; i < T * n; i++) x[i] = frand();
        gram_job g = { H, n, x, T, syrk };
        double fl = (double)T * (double)n * (double)n;   /* upper triangle: n^2/2 multiply-adds per token */
        double tf = best_of(3, run_gram, &g), to = best_of(3, run_gram_own, &g);
        printf("1. Hessian accumulation, %lld tokens x %lld columns: qforge %.2f GFLOP/s (%s), own kernel %.2f", (long long)T, (long long)n,
               fl / tf / 1e9, syrk ? "sgemm row blocks" : "own kernel", fl / to / 1e9);
        if (syrk) {
            double tb = best_of(3, run_syrk, &g);
            printf("; OpenBLAS ssyrk whole %.2f GFLOP/s: qforge/ssyrk %.2f", fl / tb / 1e9, tb / tf);
        }
        const int64_t n2 = 1024;
        gram_job g2 = { H, n2, x, T, syrk };
        double fl2 = (double)T * (double)n2 * (double)n2, t2 = best_of(3, run_gram_own, &g2), tr = best_of(1, run_gram_ref, &g2);
        printf("\n   at 1024 columns: own kernel %.2f GFLOP/s, element reference %.2f (%.1fx)\n", fl2 / t2 / 1e9, fl2 / tr / 1e9, tr / t2);
        free(x); free(H);
    }
    /* 2. feedback product */
    {
        const int64_t R = 64, B = 256, n = 7168, nc = n - B;
        float *W = malloc(sizeof(float) * (size_t)(R * n)), *E = malloc(sizeof(float) * (size_t)(R * B)), *U = malloc(sizeof(float) * (size_t)(B * n));
        for (int64_t i = 0; i < R * n; i++) W[i] = frand();
        for (int64_t i = 0; i < R * B; i++) E[i] = frand() * 1e-3f;
        for (int64_t i = 0; i < B * n; i++) U[i] = frand();
        upd_job j = { W + B, E, U + B, R, B, nc, n, gemm, false };
        double fl = 2.0 * (double)R * (double)B * (double)nc;
        double tf = best_of(3, run_upd, &j);
        j.ref = true;
        double tr = best_of(3, run_upd, &j);
        printf("2. feedback product, %lld rows x %lld errors into %lld columns: own AVX2 kernel %.2f GFLOP/s, portable loop %.2f (%.1fx)", (long long)R,
               (long long)B, (long long)nc, fl / tf / 1e9, fl / tr / 1e9, tr / tf);
        if (gemm) { double tb = best_of(3, run_gemm, &j); printf("; OpenBLAS sgemm (what qforge uses when present) %.2f GFLOP/s: %.1fx own", fl / tb / 1e9, tf / tb); }
        printf("\n");
        free(W); free(E); free(U);
    }
    /* 3. factor */
    {
        int64_t ns[2] = { 2048, 4096 };
        for (int k = 0; k < (quick ? 1 : 2); k++) {
            const int64_t n = ns[k], T = n / 2;
            double *H = calloc((size_t)(n * n), sizeof(double));
            float *x = malloc(sizeof(float) * (size_t)(T * n)), *Hf = calloc((size_t)(n * n), sizeof(float)), *U = malloc(sizeof(float) * (size_t)(n * n));
            for (int64_t i = 0; i < T * n; i++) x[i] = frand();
            kn_gram_accumulate(Hf, n, x, n, T);   /* rank T < n: an expert with fewer tokens than columns */
            for (int64_t i = 0; i < n; i++) for (int64_t j = i; j < n; j++) H[i * n + j] = H[j * n + i] = Hf[i * n + j];
            double fl = 4.0 / 3.0 * (double)n * (double)n * (double)n, t0 = cpu_now();
            bool ok = qt_gptq_factor(H, n, 0.1, U);
            double tf = cpu_now() - t0;
            t0 = cpu_now();
            ok = ok && qt_gptq_factor_own(H, n, 0.1, U);
            double to = cpu_now() - t0;
            printf("3. factor (damped Cholesky + triangular inverse, double), %lld columns: qforge %.2f GFLOP/s (%s, %.2f s), own blocked %.2f (%.2f s)%s",
                   (long long)n, fl / tf / 1e9, gemm ? "LAPACK" : "own", tf, fl / to / 1e9, to, ok ? "" : " FAILED");
            if (k == 0) {
                t0 = cpu_now();
                qt_gptq_factor_ref(H, n, 0.1, U);
                double tr = cpu_now() - t0;
                printf(", unblocked reference %.2f GFLOP/s (qforge %.1fx)", fl / tr / 1e9, tr / tf);
            }
            printf("\n");
            free(H); free(x); free(Hf); free(U);
        }
    }
    /* 4. code search + walk per type */
    {
        const qt_type ts[] = { QT_Q2_K, QT_Q3_K, QT_Q4_K, QT_Q6_K, QT_IQ4_XS, QT_IQ3_S, QT_IQ3_XXS, QT_IQ2_S, QT_IQ2_XS, QT_IQ2_XXS,
                               QT_IQ1_M, QT_IQ1_S };
        const struct { int64_t rows, n; const char *what; } sh[2] = { { 64, 7168, "gate/up 64 x 7168" }, { 128, 2048, "down 128 x 2048" } };
        printf("4. code search + walk, M weights/s per core (plain encoder alongside; scalar walk on %s for the feedback's speed-up):\n",
               quick ? "none" : "2 types");
        printf("   %-8s %18s %18s %12s %12s\n", "type", sh[0].what, sh[1].what, "plain 7168", "plain 2048");
        double slowest = 1e30;
        for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++) {
            double rate[2], plain[2];
            for (int s = 0; s < 2; s++) {
                const int64_t R = sh[s].rows, n = sh[s].n;
                float *W = malloc(sizeof(float) * (size_t)(R * n)), *U = calloc((size_t)(n * n), sizeof(float)), *imp = malloc(sizeof(float) * (size_t)n);
                uint8_t *q = malloc((size_t)(R * n));
                for (int64_t i = 0; i < R * n; i++) W[i] = frand() * 0.05f;
                for (int64_t i = 0; i < n; i++) { imp[i] = 0.5f + frand(); U[i * n + i] = 1.f; for (int64_t j = i + 1; j < n && j < i + 64; j++) U[i * n + j] = 0.01f * frand(); }
                for (int64_t i = 0; i < n; i++) for (int64_t j = i + 64; j < n; j += 97) U[i * n + j] = 0.002f * frand();
                double t0 = cpu_now();
                qt_quantize_rows(ts[k], W, q, R, n, imp);
                double t1 = cpu_now();
                qt_quantize_gptq(ts[k], W, q, R, n, U, imp);
                double t2 = cpu_now();
                plain[s] = (double)(R * n) / (t1 - t0) / 1e6;
                rate[s] = (double)(R * n) / (t2 - t1) / 1e6;
                if (rate[s] < slowest) slowest = rate[s];
                if (!quick && s == 0 && (ts[k] == QT_Q2_K || ts[k] == QT_IQ2_XXS)) {
                    const int64_t r2 = 64;
                    double t3 = cpu_now();
                    qt_quantize_gptq_own(ts[k], W, q, r2, n, U, imp);
                    double t4 = cpu_now();
                    qt_quantize_gptq_ref(ts[k], W, q, r2 / 4, n, U, imp);
                    double t5 = cpu_now();
                    double rr = (double)(r2 / 4 * n) / (t5 - t4) / 1e6, ro = (double)(r2 * n) / (t4 - t3) / 1e6;
                    printf("   %-8s 64 x 7168: scalar walk %.3f M weights/s; lazy-batch own kernels %.3f (%.1fx), qforge %.3f (%.1fx)\n",
                           qt_type_name(ts[k]), rr, ro, ro / rr, rate[0], rate[0] / rr);
                }
                free(W); free(U); free(imp); free(q);
            }
            printf("   %-8s %18.3f %18.3f %12.2f %12.2f\n", qt_type_name(ts[k]), rate[0], rate[1], plain[0], plain[1]);
        }
        printf("   slowest type: %.3f M weights/s per core (goal 0.4)\n", slowest);
    }
    /* 5. peak RSS of a streamed --gptq convert */
    if (!quick && qx_is_dir("../shared/models/mini-v3-moe") && access("./qforge", X_OK) == 0) {
        const char *m = "../shared/models/mini-v3-moe";
        char cmd[2048];
        const char *tmp = "/tmp/qf-bench-gptq";
        snprintf(cmd, sizeof cmd, "mkdir -p %s && ./qforge convert %s -o %s/plain.gguf --type Q2_K --quiet --json %s/plain.json >/dev/null 2>&1 && "
                 "./qforge convert %s -o %s/g.gguf --type Q2_K --gptq %s/calib.txt --gptq-chunks 64 --quiet --json %s/g.json >/dev/null 2>&1 && "
                 "./qforge convert %s --type Q2_K --gptq %s/calib.txt --gptq-chunks 64 --dry-run --json %s/dry.json >/dev/null 2>&1",
                 tmp, m, tmp, tmp, m, tmp, m, tmp, m, m, tmp);
        double t0 = qx_now();
        if (system(cmd) != 0) { printf("5. peak RSS: the conversions failed (%s)\n", cmd); return 1; }
        char *a = NULL, *b = NULL, *c = NULL;
        size_t la, lb, lc;
        qx_err e = {0};
        char p1[256], p2[256], p3[256];
        snprintf(p1, sizeof p1, "%s/plain.json", tmp); snprintf(p2, sizeof p2, "%s/g.json", tmp); snprintf(p3, sizeof p3, "%s/dry.json", tmp);
        if (qx_read_file(p1, &a, &la, &e) == QX_OK && qx_read_file(p2, &b, &lb, &e) == QX_OK && qx_read_file(p3, &c, &lc, &e) == QX_OK) {
            const char *k = "\"peak_rss_bytes\": ", *kp = "\"peak_bytes\": ";
            double rp = strstr(a, k) ? atof(strstr(a, k) + strlen(k)) : 0, rg = strstr(b, k) ? atof(strstr(b, k) + strlen(k)) : 0;
            double pred = strstr(c, kp) ? atof(strstr(c, kp) + strlen(kp)) : 0;
            printf("5. peak RSS, mini-v3-moe Q2_K, 64 windows: plain convert %.1f MB, streamed --gptq %.1f MB (+%.1f MB); dry run predicts "
                   "+%.1f MB for the pass: measured/predicted %.2f (goal <= 1.3); %.0f s\n", rp / 1e6, rg / 1e6, (rg - rp) / 1e6, pred / 1e6,
                   pred > 0 ? (rg - rp) / pred : 0, qx_now() - t0);
        }
        free(a); free(b); free(c);
    }
    return 0;
}
