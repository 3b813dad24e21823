/* tests/test_kn_dq.c — the per-element decoders the CUDA matmul runs on the device
 * (kernels/cuda/kn_dq.h, compiled here by the C compiler) against quant/'s row decoders
 * (qt_dequantize_rows, the exact ggml formulas) and the FP8/F16/BF16 scalar decoders, for
 * every weight type the CUDA engine reads.  Bit-exact: the device code does the same float
 * operations in the same order.  Runs without a GPU: it is how the device dequantization
 * math is checked in CI. */
#include "tests/util/tu.h"
#include "quant/qt.h"
#include "kernels/cuda/kn_dq.h"

#include <stdint.h>

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t next_u32(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}
static float next_f(void) { return ((float)(next_u32() >> 8) / 16777216.0f) * 2.0f - 1.0f; }

static int bits_eq(float a, float b) {
    if (isnan(a) && isnan(b)) return 1;
    return memcmp(&a, &b, sizeof a) == 0;
}

static void test_scalars(void) {
    int bad = 0;
    for (uint32_t v = 0; v < 65536; v++) {
        bad += !bits_eq(kn_dq_f16((uint16_t)v), qt_f16_to_f32((uint16_t)v));
        bad += !bits_eq(kn_dq_bf16((uint16_t)v), qt_bf16_to_f32((uint16_t)v));
    }
    TU_CHECK(bad == 0, "%d of 65536 f16/bf16 codes differ from quant/", bad);
    bad = 0;
    for (int v = 0; v < 256; v++) bad += !bits_eq(kn_dq_e4m3((uint8_t)v), qt_fp8_e4m3_to_f32((uint8_t)v));
    TU_CHECK(bad == 0, "%d of 256 e4m3 codes differ from quant/", bad);
}

/* Quantizes random rows (scaled per row so every code range is used), decodes them with
 * quant/ and element by element with kn_dq_elem, and compares the bits. */
static void test_type(qt_type t) {
    const int64_t rows = 7, cols = 512;
    const uint64_t rb = qt_row_size(t, cols);
    TU_CHECK(rb > 0, "%s: no row size", qt_type_name(t));
    if (!rb) return;
    TU_CHECK(kn_dq_supported((int)t), "%s: not supported by kn_dq", qt_type_name(t));
    float *src = malloc((size_t)(rows * cols) * sizeof *src), *ref = malloc((size_t)(rows * cols) * sizeof *ref);
    uint8_t *q = malloc((size_t)(rows * rb));
    for (int64_t r = 0; r < rows; r++) {
        float s = (float)(r + 1) * 0.37f;
        for (int64_t c = 0; c < cols; c++) src[r * cols + c] = next_f() * s + (c % 17 == 0 ? 0.5f * s : 0.0f);
    }
    qt_quantize_rows(t, src, q, rows, cols, NULL);
    qt_dequantize_rows(t, q, ref, rows, cols);
    int64_t bad = 0, first = -1;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            float v = kn_dq_elem((int)t, q + r * rb, c, 1.0f);
            if (!bits_eq(v, ref[r * cols + c])) { if (first < 0) first = r * cols + c; bad++; }
        }
    TU_CHECK(bad == 0, "%s: %lld of %lld elements differ (first at %lld: %.9g vs %.9g)", qt_type_name(t),
             (long long)bad, (long long)(rows * cols), (long long)first,
             first >= 0 ? kn_dq_elem((int)t, q + (first / cols) * rb, first % cols, 1.0f) : 0.0,
             first >= 0 ? ref[first] : 0.0);
    free(src); free(ref); free(q);
}

/* Raw random bytes as blocks (codes and scales the quantizers never emit, e.g. negative
 * f16 scales and every 6-bit scale) must decode the same as well.  Only the f16 scale
 * fields are kept finite so that NaN/Inf do not hide differences. */
static void test_random_bytes(qt_type t) {
    const int64_t cols = 1024;
    const uint64_t rb = qt_row_size(t, cols);
    uint8_t *q = malloc((size_t)rb);
    float *ref = malloc((size_t)cols * sizeof *ref);
    for (int rep = 0; rep < 8; rep++) {
        for (uint64_t i = 0; i < rb; i++) q[i] = (uint8_t)next_u32();
        const qt_traits *tr = qt_get_traits(t);
        /* f16 fields: clear the top exponent bit so no block scale is Inf/NaN */
        for (uint64_t b = 0; b < rb / (uint64_t)tr->type_size; b++) {
            uint8_t *blk = q + b * (uint64_t)tr->type_size;
            switch (t) {
            case QT_Q2_K: blk[81] &= 0xBF; blk[83] &= 0xBF; break;
            case QT_Q3_K: blk[109] &= 0xBF; break;
            case QT_Q6_K: blk[209] &= 0xBF; break;
            case QT_Q4_1: case QT_Q5_1: case QT_Q4_K: case QT_Q5_K: blk[1] &= 0xBF; blk[3] &= 0xBF; break;
            default: blk[1] &= 0xBF; break;
            }
        }
        qt_dequantize_rows(t, q, ref, 1, cols);
        int64_t bad = 0;
        for (int64_t c = 0; c < cols; c++) bad += !bits_eq(kn_dq_elem((int)t, q, c, 1.0f), ref[c]);
        TU_CHECK(bad == 0, "%s random bytes rep %d: %lld of %lld elements differ", qt_type_name(t), rep,
                 (long long)bad, (long long)cols);
    }
    free(q); free(ref);
}

static void test_fp8_block(void) {
    const int64_t rows = 200, cols = 300, scols = (cols + 127) / 128;
    uint8_t *q = malloc((size_t)(rows * cols));
    float *sc = malloc((size_t)(2 * scols) * sizeof *sc), *ref = malloc((size_t)(rows * cols) * sizeof *ref);
    for (int64_t i = 0; i < rows * cols; i++) { q[i] = (uint8_t)next_u32(); if ((q[i] & 0x7F) == 0x7F) q[i] = 0x11; }
    for (int64_t i = 0; i < 2 * scols; i++) sc[i] = 0.001f + (float)i * 0.37f;
    qt_fp8_block_dequant_ref(q, sc, rows, cols, 0, rows, ref);
    int64_t bad = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            bad += !bits_eq(kn_dq_elem(KN_DQ_F8_E4M3, q + r * cols, c, sc[(r / 128) * scols + c / 128]), ref[r * cols + c]);
    TU_CHECK(bad == 0, "FP8 block-scaled: %lld elements differ", (long long)bad);
    free(q); free(sc); free(ref);
}

int main(void) {
    test_scalars();
    static const qt_type types[] = { QT_Q4_0, QT_Q4_1, QT_Q5_0, QT_Q5_1, QT_Q8_0, QT_Q2_K, QT_Q3_K,
                                     QT_Q4_K, QT_Q5_K, QT_Q6_K, QT_IQ4_NL, QT_IQ4_XS, QT_F16, QT_BF16, QT_F32 };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) test_type(types[i]);
    static const qt_type rtypes[] = { QT_Q4_0, QT_Q4_1, QT_Q5_0, QT_Q5_1, QT_Q8_0, QT_Q2_K, QT_Q3_K,
                                      QT_Q4_K, QT_Q5_K, QT_Q6_K, QT_IQ4_NL, QT_IQ4_XS };
    for (size_t i = 0; i < sizeof rtypes / sizeof rtypes[0]; i++) test_random_bytes(rtypes[i]);
    test_fp8_block();
    return tu_done("test_kn_dq");
}
