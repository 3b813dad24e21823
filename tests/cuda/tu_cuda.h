/* tests/cuda/tu_cuda.h — what the tests/cuda programs share: a xorshift generator (each test
 * defines TU_CUDA_SEED before including this, so its data stays its own), device upload and
 * download with checked errors, and the tolerance measure worst().  Test code only. */
#ifndef QF_TESTS_CUDA_TU_CUDA_H
#define QF_TESTS_CUDA_TU_CUDA_H

#include "tests/util/tu.h"
#include "kernels/cuda/kn_cuda.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#ifndef TU_CUDA_SEED
#error "define TU_CUDA_SEED before including tests/cuda/tu_cuda.h"
#endif

static uint64_t rs = TU_CUDA_SEED;
static uint32_t ru(void) { rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17; return (uint32_t)(rs >> 16); }
/* uniform in [-1, 1) */
static float rf(void) { return (float)(ru() & 0xffffff) / 8388608.0f - 1.0f; }
static void fill(float *p, int64_t n, float s) { for (int64_t i = 0; i < n; i++) p[i] = rf() * s; }

/* A device copy of n host bytes (NULL, and a failed check, when it cannot be made). */
static void *up(const void *h, size_t n) {
    void *d = kn_cuda_malloc(n);
    qx_err e = {0};
    TU_CHECK(d != NULL, "cudaMalloc %zu", n);
    if (d) TU_OK(kn_cuda_upload(d, h, n, &e), &e);
    return d;
}
/* n bytes of device memory into h, after the stream's work is done. */
static void down(void *h, const void *d, size_t n) {
    qx_err e = {0};
    TU_OK(kn_cuda_sync(&e), &e);
    TU_OK(kn_cuda_download(h, d, n, &e), &e);
}

/* max over elements of |a-b| / (atol + rtol*scale[i]) (scale NULL: |b|); <= 1 passes; a NaN
 * anywhere is returned at once (a failure whatever follows it) */
static double worst(const float *a, const float *b, const double *scale, int64_t n, double atol, double rtol) {
    double w = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]), s = scale ? scale[i] : fabs((double)b[i]);
        double r = d / (atol + rtol * s);
        if (isnan(r)) return r;
        if (r > w) w = r;
    }
    return w;
}

/* main()'s start: false (after one "FAIL: ... needs a GPU" line) when no CUDA device is there,
 * else prints the device and returns true. */
static bool tu_cuda_start(void) {
    qx_err e = {0};
    if (kn_cuda_init(&e) != QX_OK) {
        fprintf(stderr, "FAIL: make test-cuda needs a GPU: %s\n", e.msg);
        return false;
    }
    char d[128];
    kn_cuda_describe(d, sizeof d);
    fprintf(stderr, "device: %s\n", d);
    return true;
}

#endif
