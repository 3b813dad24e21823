/* bench/bench_fp8.c — FP8 block-scaled dequantization throughput (GB/s of FP8 input),
 * 1 thread and all threads, next to memcpy bandwidth measured in the same run on the same
 * sizes (the baseline: dequant reads 1 byte and writes 4 per weight, memcpy reads and
 * writes the 4-byte output size). */
#include "common/qx.h"
#include "quant/qt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

enum { ROWS = 2048, COLS = 7168, REPS = 6 };

static double run_dequant(const uint8_t *q, const float *sc, float *out, int threads) {
    double best = 1e30;
    for (int rep = 0; rep < REPS; rep++) {
        double t0 = qx_now();
#pragma omp parallel for num_threads(threads) schedule(static)
        for (int r0 = 0; r0 < ROWS; r0 += 64)
            qt_fp8_block_dequant(q, sc, ROWS, COLS, r0, r0 + 64, out + (size_t)r0 * COLS);
        double t = qx_now() - t0;
        if (t < best) best = t;
    }
    return best;
}

static double run_memcpy(float *dst, const float *src, int threads) {
    double best = 1e30;
    for (int rep = 0; rep < REPS; rep++) {
        double t0 = qx_now();
#pragma omp parallel for num_threads(threads) schedule(static)
        for (int r0 = 0; r0 < ROWS; r0 += 64)
            memcpy(dst + (size_t)r0 * COLS, src + (size_t)r0 * COLS, (size_t)64 * COLS * sizeof(float));
        double t = qx_now() - t0;
        if (t < best) best = t;
    }
    return best;
}

int main(void) {
    size_t n = (size_t)ROWS * COLS;
    uint8_t *q = malloc(n);
    float *sc = malloc((ROWS / 128) * (COLS / 128) * sizeof *sc);
    float *out = malloc(n * sizeof *out), *src = malloc(n * sizeof *src);
    if (!q || !sc || !out || !src) { fprintf(stderr, "bench_fp8: out of memory\n"); return 1; }
    for (size_t i = 0; i < n; i++) { q[i] = (uint8_t)((i * 2654435761u) >> 24); if ((q[i] & 0x7F) == 0x7F) q[i] = 0; src[i] = (float)i; }
    for (int i = 0; i < (ROWS / 128) * (COLS / 128); i++) sc[i] = 1.0f / (1 + i);
    int nt = qx_default_threads();
    printf("FP8 e4m3 block dequant, %d x %d weight (%.1f MB FP8 -> %.1f MB f32), best of %d\n",
           ROWS, COLS, n / 1e6, 4 * n / 1e6, REPS);
    printf("%-8s %16s %20s %18s %10s\n", "threads", "dequant GB/s in", "dequant GB/s out", "memcpy GB/s", "out/memcpy");
    int tl[2] = {1, nt};
    for (int k = 0; k < (nt > 1 ? 2 : 1); k++) {
        double td = run_dequant(q, sc, out, tl[k]);
        double tm = run_memcpy(out, src, tl[k]);
        double gin = n / td / 1e9, gout = 4.0 * n / td / 1e9, gm = 4.0 * n / tm / 1e9;
        printf("%-8d %16.2f %20.2f %18.2f %10.2f\n", tl[k], gin, gout, gm, gout / gm);
    }
    printf("ratio = f32 bytes written by dequant per second / bytes copied by memcpy per second\n");
    free(q); free(sc); free(out); free(src);
    return 0;
}
