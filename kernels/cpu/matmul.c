/* kernels/cpu/matmul.c — weight views and Y = X·Wᵀ over a batch of tokens on the CPU.
 * The fast path dequantizes a tile of KN_TILE_R weight rows to f32 once, then multiplies it
 * against a block of tokens (both stay in cache); OpenMP splits (row tile, token block)
 * items, so every output element is one fixed dot product whatever the thread count. */
#include "../kernels.h"
#include "kn_simd.h"

#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

enum { KN_TILE_R = 16, KN_TILE_T = 128 };

bool kn_weight_init(kn_weight *w, qt_type type, int64_t rows, int64_t cols, const void *data,
                    const float *scale_inv) {
    memset(w, 0, sizeof *w);
    uint64_t rb;
    if (type == QT_F8_E4M3 || type == QT_F8_E5M2) rb = (uint64_t)cols;
    else {
        const qt_traits *tr = qt_get_traits(type);
        if (!tr || !tr->to_float) return false;
        rb = qt_row_size(type, cols);
        if (rb == 0) return false;
    }
    w->type = type; w->rows = rows; w->cols = cols; w->data = data; w->row_bytes = rb;
    w->scale_inv = scale_inv;
    return true;
}

void kn_weight_rows(const kn_weight *w, int64_t r0, int64_t r1, float *out) {
    const uint8_t *base = (const uint8_t *)w->data;
    if (w->type == QT_F8_E4M3 && w->scale_inv && w->row_bytes == (uint64_t)w->cols) {
        qt_fp8_block_dequant(base, w->scale_inv, w->rows, w->cols, r0, r1, out);
        return;
    }
    switch (w->type) {
    case QT_F32: case QT_F16: case QT_BF16: case QT_F8_E4M3: case QT_F8_E5M2:
        for (int64_t r = r0; r < r1; r++)
            qt_plain_to_f32(w->type, base + (uint64_t)r * w->row_bytes, out + (r - r0) * w->cols, w->cols);
        return;
    default: {
        qt_to_float_fn f = qt_get_traits(w->type)->to_float;
        for (int64_t r = r0; r < r1; r++)
            f(base + (uint64_t)r * w->row_bytes, out + (r - r0) * w->cols, w->cols);
    }
    }
}

void kn_matmul_ref(const kn_weight *w, const float *x, int64_t ldx, int64_t T, const float *bias,
                   float *y, int64_t ldy) {
    float *row = malloc((size_t)w->cols * sizeof *row);
    if (!row) abort();
    for (int64_t r = 0; r < w->rows; r++) {
        kn_weight_rows(w, r, r + 1, row);
        for (int64_t t = 0; t < T; t++) {
            float s = kn_dot_ref(row, x + t * ldx, w->cols);
            y[t * ldy + r] = bias ? s + bias[r] : s;
        }
    }
    free(row);
}

/* One item: weight rows [r0, r1) (already decoded in wt) against tokens [t0, t1). */
static void tile_mul(const float *wt, int64_t r0, int64_t r1, int64_t cols, const float *x,
                     int64_t ldx, int64_t t0, int64_t t1, const float *bias, float *y, int64_t ldy) {
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) {   /* 4 rows x 2 tokens per step; results equal kn_dot4's */
        const float *w0 = wt + (r - r0) * cols;
        int64_t t = t0;
        for (; t + 2 <= t1; t += 2) {
            float o[4], p[4];
            kn_dot4x2(w0, w0 + cols, w0 + 2 * cols, w0 + 3 * cols, x + t * ldx, x + (t + 1) * ldx, cols, o, p);
            for (int i = 0; i < 4; i++) {
                y[t * ldy + r + i] = bias ? o[i] + bias[r + i] : o[i];
                y[(t + 1) * ldy + r + i] = bias ? p[i] + bias[r + i] : p[i];
            }
        }
        for (; t < t1; t++) {
            float o[4];
            kn_dot4(w0, w0 + cols, w0 + 2 * cols, w0 + 3 * cols, x + t * ldx, cols, o);
            for (int i = 0; i < 4; i++) y[t * ldy + r + i] = bias ? o[i] + bias[r + i] : o[i];
        }
    }
    for (; r < r1; r++)
        for (int64_t t = t0; t < t1; t++) {
            float s = kn_dot(wt + (r - r0) * cols, x + t * ldx, cols);
            y[t * ldy + r] = bias ? s + bias[r] : s;
        }
}

void kn_matmul(const kn_weight *w, const float *x, int64_t ldx, int64_t T, const float *bias,
               float *y, int64_t ldy) {
    if (T <= 0 || w->rows <= 0) return;
    const int64_t cols = w->cols;
    const int64_t n_rt = (w->rows + KN_TILE_R - 1) / KN_TILE_R;
    const int64_t n_tb = (T + KN_TILE_T - 1) / KN_TILE_T;
    const int64_t n_items = n_rt * n_tb;
#ifdef _OPENMP
    const bool par = n_items > 1 && (double)T * (double)w->rows * (double)cols >= (double)(1 << 18);
#pragma omp parallel if (par)
#endif
    {
        float *wt = malloc((size_t)KN_TILE_R * (size_t)cols * sizeof *wt);
        if (!wt) abort();
        int64_t have = -1;
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t it = 0; it < n_items; it++) {
            int64_t rt = it / n_tb, tb = it % n_tb;
            int64_t r0 = rt * KN_TILE_R, r1 = r0 + KN_TILE_R < w->rows ? r0 + KN_TILE_R : w->rows;
            if (have != rt) { kn_weight_rows(w, r0, r1, wt); have = rt; }
            int64_t t0 = tb * KN_TILE_T, t1 = t0 + KN_TILE_T < T ? t0 + KN_TILE_T : T;
            tile_mul(wt, r0, r1, cols, x, ldx, t0, t1, bias, y, ldy);
        }
        free(wt);
    }
}
