/* tests/test_fp8.c — FP8/BF16/F16 decoders against independent formulas, the FP8 encoder,
 * block-scaled dequantization (partial edge tiles, row ranges), and dequantized mini-v3
 * tensors against sums computed independently (Python, straight from the format definition:
 * sign * 2^(e-7) * (1 + m/8), subnormal m * 2^-9, times scale_inv[r/128][c/128], the product
 * rounded to float32 as the reference dequantization does; sums in double). */
#include "tests/util/tu.h"
#include "formats/formats.h"
#include "quant/qt.h"

#include <math.h>

/* Independent e4m3fn value from the bit fields, written without sharing code with quant/. */
static double ref_e4m3(int v) {
    double s = (v & 0x80) ? -1.0 : 1.0;
    int ex = (v >> 3) & 15, m = v & 7;
    if (ex == 15 && m == 7) return NAN;
    if (ex == 0) return s * m / 512.0;
    return s * (1.0 + m / 8.0) * pow(2.0, ex - 7);
}
static double ref_e5m2(int v) {
    double s = (v & 0x80) ? -1.0 : 1.0;
    int ex = (v >> 2) & 31, m = v & 3;
    if (ex == 31) return m ? NAN : s * INFINITY;
    if (ex == 0) return s * m / 65536.0;
    return s * (1.0 + m / 4.0) * pow(2.0, ex - 15);
}

static void test_codes(void) {
    int e4_nan = 0, e5_nan = 0, e5_inf = 0;
    for (int v = 0; v < 256; v++) {
        double a = ref_e4m3(v), b = qt_fp8_e4m3_to_f32((uint8_t)v);
        if (isnan(a)) { e4_nan++; TU_CHECK(isnan(b), "e4m3 0x%02x want NaN got %g", v, b); }
        else TU_CHECK(a == b && signbit(a) == signbit(b), "e4m3 0x%02x want %.9g got %.9g", v, a, b);
        a = ref_e5m2(v); b = qt_fp8_e5m2_to_f32((uint8_t)v);
        if (isnan(a)) { e5_nan++; TU_CHECK(isnan(b), "e5m2 0x%02x want NaN", v); }
        else { if (isinf(a)) e5_inf++; TU_CHECK(a == b && signbit(a) == signbit(b), "e5m2 0x%02x want %.9g got %.9g", v, a, b); }
    }
    TU_CHECK(e4_nan == 2, "e4m3 has 2 NaN codes, counted %d", e4_nan);
    TU_CHECK(e5_nan == 6 && e5_inf == 2, "e5m2 NaN %d inf %d", e5_nan, e5_inf);
    TU_CHECK(qt_fp8_e4m3_to_f32(0x7E) == 448.0f, "e4m3 max is 448");
    TU_CHECK(qt_fp8_e4m3_to_f32(0x01) == 0x1p-9f, "e4m3 min subnormal 2^-9");
    TU_CHECK(qt_fp8_e5m2_to_f32(0x7B) == 57344.0f, "e5m2 max 57344");
}

static void test_encoder(void) {
    /* every code round-trips; midpoints round to the even code */
    for (int v = 0; v < 256; v++) {
        if ((v & 0x7F) == 0x7F) continue;
        float f = qt_fp8_e4m3_to_f32((uint8_t)v);
        uint8_t c = qt_f32_to_fp8_e4m3(f);
        TU_CHECK(c == v || (f == 0 && (c & 0x7F) == 0), "encode(decode(0x%02x)) = 0x%02x", v, c);
    }
    for (int v = 0; v < 0x7E; v++) {
        double lo = ref_e4m3(v), hi = ref_e4m3(v + 1), mid = (lo + hi) / 2;
        uint8_t c = qt_f32_to_fp8_e4m3((float)mid);
        TU_CHECK(c == ((v & 1) ? v + 1 : v), "midpoint of 0x%02x/0x%02x -> 0x%02x", v, v + 1, c);
    }
    TU_CHECK(qt_f32_to_fp8_e4m3(1e9f) == 0x7E && qt_f32_to_fp8_e4m3(-1e9f) == 0xFE, "saturation");
}

static void test_half(void) {
    /* bf16: exact upper 16 bits; rounding to nearest even */
    TU_CHECK(qt_bf16_to_f32(0x3F80) == 1.0f && qt_bf16_to_f32(0xC000) == -2.0f, "bf16 decode");
    TU_CHECK(qt_f32_to_bf16(1.0f + 0x1p-8f) == 0x3F80, "bf16 tie to even (down)");
    TU_CHECK(qt_f32_to_bf16(1.0f + 3 * 0x1p-8f) == 0x3F82, "bf16 tie to even (up)");
    TU_CHECK(isnan(qt_bf16_to_f32(qt_f32_to_bf16(NAN))), "bf16 NaN stays NaN");
    /* f16: every finite code round-trips through f32; value = independent formula */
    for (int h = 0; h < 65536; h++) {
        int ex = (h >> 10) & 31, m = h & 1023;
        double s = (h & 0x8000) ? -1 : 1, want;
        if (ex == 31) continue;
        want = ex == 0 ? s * m * pow(2, -24) : s * (1 + m / 1024.0) * pow(2, ex - 15);
        float got = qt_f16_to_f32((uint16_t)h);
        if (got != want) { TU_CHECK(got == want, "f16 0x%04x want %g got %g", h, want, got); break; }
        if (qt_f32_to_f16(got) != h && !(want == 0)) { TU_CHECK(0, "f16 round trip 0x%04x", h); break; }
    }
    TU_CHECK(qt_f32_to_f16(65520.0f) == 0x7C00 && qt_f32_to_f16(65504.0f) == 0x7BFF, "f16 overflow boundary");
    TU_CHECK(qt_f32_to_f16(1.0f + 0x1p-11f) == 0x3C00 && qt_f32_to_f16(1.0f + 3 * 0x1p-11f) == 0x3C02, "f16 ties to even");
}

static void test_block_dequant(void) {
    /* 200 x 300 weight: 2 x 3 scale grid with partial edge tiles on both axes */
    enum { R = 200, C = 300 };
    static uint8_t q[R * C];
    float sc[2 * 3] = {0.5f, 2.0f, 0.25f, 4.0f, 1.0f, 8.0f};
    for (int i = 0; i < R * C; i++) q[i] = (uint8_t)((i * 37 + 11) & 0xFF);
    for (int i = 0; i < R * C; i++) if ((q[i] & 0x7F) == 0x7F) q[i] = 0x10;
    static float out[R * C];
    qt_fp8_block_dequant(q, sc, R, C, 0, R, out);
    int bad = 0;
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            double want = ref_e4m3(q[r * C + c]) * sc[(r / 128) * 3 + c / 128];
            if (out[r * C + c] != (float)want) bad++;
        }
    TU_CHECK(bad == 0, "%d mismatches in full dequant", bad);
    /* a row range crossing the tile boundary equals the same rows of the full result */
    static float part[60 * C];
    qt_fp8_block_dequant(q, sc, R, C, 100, 160, part);
    TU_CHECK(memcmp(part, out + 100 * C, sizeof part) == 0, "rows [100,160) differ from full dequant");
    /* every byte value, including NaN codes and subnormals, through the SIMD and scalar paths */
    static uint8_t q2[256 * 136];
    static float o1[256 * 136], o2[256 * 136];
    float sc2[2 * 2] = {1.0f, 0.75f, 3.0f, 1e-3f};
    for (int i = 0; i < 256 * 136; i++) q2[i] = (uint8_t)(i * 7 + i / 256);
    qt_fp8_block_dequant(q2, sc2, 256, 136, 0, 256, o1);
    qt_fp8_block_dequant_ref(q2, sc2, 256, 136, 0, 256, o2);
    TU_CHECK(memcmp(o1, o2, sizeof o1) == 0, "SIMD and scalar FP8 dequant differ");
}

typedef struct { const char *name; int rows, cols; double sum, sum2, wsum; } expect_t;

static void test_mini_v3(void) {
    static const expect_t ex[] = {
        {"model.layers.0.self_attn.kv_a_proj_with_mqa.weight", 144, 256, -21.813755505721019, 141.29718411953039, -67.219958617660268},
        {"model.layers.1.mlp.experts.3.down_proj.weight", 256, 128, -20.529376724701251, 138.63293530364095, -65.194943249482094},
        {"model.layers.0.mlp.gate_proj.weight", 512, 256, 86.45145034934535, 526.65398488991298, 277.7593385120465},
        {"model.layers.3.self_attn.kv_b_proj.weight", 256, 128, 13.884096071669774, 52.459508609052584, 55.063977212592022},
        {"lm_head.weight", 2048, 256, -590.25072015170008, 3679.8889432590627, -2390.1119712889194},
        {"model.layers.2.mlp.gate.weight", 16, 256, -3.9896305799484253, 24.407938650897691, -8.4915239810943604},
    };
    qx_err e = {0};
    st_model *m;
    qx_status so = st_open(&m, tu_shared_path("models/mini-v3"), &e);
    TU_OK(so, &e);
    if (so != QX_OK) return;
    for (size_t k = 0; k < sizeof ex / sizeof ex[0]; k++) {
        const st_tensor *t = st_find(m, ex[k].name);
        TU_CHECK(t && t->shape[0] == ex[k].rows && t->shape[1] == ex[k].cols, "%s shape", ex[k].name);
        if (!t) continue;
        float *w = malloc((size_t)ex[k].rows * ex[k].cols * sizeof *w);
        /* decode in two row ranges to exercise partial reads */
        int half = ex[k].rows / 2 + 3;
        TU_OK(st_tensor_rows_f32(t, 0, half, w, &e), &e);
        TU_OK(st_tensor_rows_f32(t, half, ex[k].rows, w + (size_t)half * ex[k].cols, &e), &e);
        double s1 = 0, s2 = 0, s3 = 0;
        for (long i = 0; i < (long)ex[k].rows * ex[k].cols; i++) { s1 += w[i]; s2 += (double)w[i] * w[i]; s3 += w[i] * (double)(i % 7 + 1); }
        TU_NEAR(s1, ex[k].sum, 1e-9 * ex[k].sum2 + 1e-9, "%s sum %.12g want %.12g", ex[k].name, s1, ex[k].sum);
        TU_NEAR(s2, ex[k].sum2, 1e-9 * ex[k].sum2, "%s sum2 %.12g want %.12g", ex[k].name, s2, ex[k].sum2);
        TU_NEAR(s3, ex[k].wsum, 1e-9 * ex[k].sum2 * 7 + 1e-9, "%s wsum %.12g want %.12g", ex[k].name, s3, ex[k].wsum);
        free(w);
    }
    st_close(m);
}

int main(void) {
    test_codes();
    test_encoder();
    test_half();
    test_block_dequant();
    if (tu_shared_dir()) test_mini_v3();
    else fprintf(stderr, "note: ../shared absent, mini-v3 dequant sums not checked\n");
    return tu_done("test_fp8");
}
