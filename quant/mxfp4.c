/* quant/mxfp4.c — FP4 E2M1 with E8M0 scales: the scalar decoders, the FP4-packed rows of
 * DeepSeek-V4's routed experts (two codes per byte, one E8M0 scale per 32 columns), their
 * lossless repack into GGUF's MXFP4 blocks (type 39), and MXFP4's own row codec (ggml's
 * reference rule, plus an importance-weighted choice of the block exponent).  No I/O. */
#include "qt_internal.h"

#include <math.h>

/* E2M1 magnitudes doubled (ggml's kvalues_mxfp4): code c -> kv2[c] / 2. */
static const int8_t kv2[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

float qt_e2m1_to_f32(uint8_t code) {
    static const float mag[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
    float m = mag[code & 7];
    return (code & 8) ? -m : m;
}

float qt_e8m0_to_f32(uint8_t e) { return e == 0xFF ? NAN : ldexpf(1.0f, (int)e - 127); }

/* 2^(e - 128): the half scale ggml multiplies the doubled codes by (GGML_E8M0_TO_FP32_HALF). */
static float e8m0_half(uint8_t e) { return ldexpf(1.0f, (int)e - 128); }

void qt_fp4_dequant_row(const uint8_t *packed, const uint8_t *scales, int64_t cols, float *out) {
    for (int64_t c = 0; c < cols; c++) {
        uint8_t b = packed[c / 2];
        out[c] = qt_e2m1_to_f32((uint8_t)(c % 2 ? b >> 4 : b & 15)) * qt_e8m0_to_f32(scales[c / QT_QK_MXFP4]);
    }
}

void qt_mxfp4_repack_row(const uint8_t *packed, const uint8_t *scales, int64_t cols, void *dst) {
    qt_block_mxfp4 *y = dst;
    for (int64_t g = 0; g < cols / QT_QK_MXFP4; g++) {
        const uint8_t *p = packed + g * (QT_QK_MXFP4 / 2);   /* element 2i low, 2i+1 high */
        y[g].e = scales[g];
        for (int j = 0; j < QT_QK_MXFP4 / 2; j++) {
            uint8_t lo = (uint8_t)(j % 2 ? p[j / 2] >> 4 : p[j / 2] & 15);               /* element j */
            uint8_t hi = (uint8_t)((j + 16) % 2 ? p[(j + 16) / 2] >> 4 : p[(j + 16) / 2] & 15);  /* element j+16 */
            y[g].qs[j] = (uint8_t)(lo | hi << 4);
        }
    }
}

void qt_dequant_mxfp4(const void *src, float *dst, int64_t n) {
    const qt_block_mxfp4 *x = src;
    for (int64_t i = 0; i < n / QT_QK_MXFP4; i++) {
        float d = e8m0_half(x[i].e);
        for (int j = 0; j < QT_QK_MXFP4 / 2; j++) {
            dst[i * QT_QK_MXFP4 + j] = kv2[x[i].qs[j] & 15] * d;
            dst[i * QT_QK_MXFP4 + j + 16] = kv2[x[i].qs[j] >> 4] * d;
        }
    }
}

static uint8_t best_code(float x, float d) {
    uint8_t best = 0;
    float err = fabsf(kv2[0] * d - x);
    for (uint8_t i = 1; i < 16; i++) {
        float e = fabsf(kv2[i] * d - x);
        if (e < err) { best = i; err = e; }
    }
    return best;
}

static uint8_t ref_exponent(const float *x) {
    float amax = 0.0f;
    for (int j = 0; j < QT_QK_MXFP4; j++)
        if (amax < fabsf(x[j])) amax = fabsf(x[j]);
    if (!(amax > 0.0f)) return 0;
    float v = floorf(log2f(amax)) - 2 + 127;
    return v < 0 ? 0 : v > 254 ? 254 : (uint8_t)v;
}

static void encode_block(const float *x, uint8_t e, qt_block_mxfp4 *y) {
    float d = e8m0_half(e);
    y->e = e;
    for (int j = 0; j < QT_QK_MXFP4 / 2; j++) y->qs[j] = (uint8_t)(best_code(x[j], d) | best_code(x[j + 16], d) << 4);
}

void qt_quantize_row_mxfp4_ref(const float *x, void *dst, int64_t n) {
    qt_block_mxfp4 *y = dst;
    for (int64_t i = 0; i < n / QT_QK_MXFP4; i++) encode_block(x + i * QT_QK_MXFP4, ref_exponent(x + i * QT_QK_MXFP4), &y[i]);
}

static double block_err(const float *x, const float *w, const qt_block_mxfp4 *y) {
    float q[QT_QK_MXFP4];
    qt_dequant_mxfp4(y, q, QT_QK_MXFP4);
    double s = 0;
    for (int j = 0; j < QT_QK_MXFP4; j++) s += (double)w[j] * ((double)q[j] - x[j]) * ((double)q[j] - x[j]);
    return s;
}

void qt_quant_mxfp4(const float *x, void *dst, int64_t n, const float *imp) {
    if (!imp) { qt_quantize_row_mxfp4_ref(x, dst, n); return; }
    qt_block_mxfp4 *y = dst;
    for (int64_t i = 0; i < n / QT_QK_MXFP4; i++) {
        const float *xb = x + i * QT_QK_MXFP4, *wb = imp + i * QT_QK_MXFP4;
        uint8_t e0 = ref_exponent(xb);
        encode_block(xb, e0, &y[i]);
        double best = block_err(xb, wb, &y[i]);
        for (int de = -1; de <= 1; de += 2) {
            int e = (int)e0 + de;
            if (e < 0 || e > 254) continue;
            qt_block_mxfp4 t;
            encode_block(xb, (uint8_t)e, &t);
            double err = block_err(xb, wb, &t);
            if (err < best) { best = err; y[i] = t; }
        }
    }
}
