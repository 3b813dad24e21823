/* quant/types.c — the traits table of every tensor element type (GGUF numbering), name
 * lookup, row sizes, the plain-float row converters (F32/F16/BF16), and the OpenMP
 * whole-row helpers.  The IQ1/IQ2/IQ3 types live in quant/iq_quants.c and are reached
 * through qt_iq_traits (qt.h). */
#include "qt_internal.h"

#include <strings.h>

/* ---- plain float rows ---- */
static void f32_to_f32(const void *src, float *dst, int64_t n) { memcpy(dst, src, (size_t)n * 4); }
static void f32_from_f32(const float *src, void *dst, int64_t n, const float *imp) {
    (void)imp;
    memcpy(dst, src, (size_t)n * 4);
}
static void f16_to_f32(const void *src, float *dst, int64_t n) { qt_plain_to_f32(QT_F16, src, dst, n); }
static void f16_from_f32(const float *src, void *dst, int64_t n, const float *imp) {
    (void)imp;
    uint8_t *d = dst;
    for (int64_t i = 0; i < n; i++) { uint16_t h = qt_f32_to_f16(src[i]); memcpy(d + 2 * i, &h, 2); }
}
static void bf16_to_f32(const void *src, float *dst, int64_t n) { qt_plain_to_f32(QT_BF16, src, dst, n); }
static void bf16_from_f32(const float *src, void *dst, int64_t n, const float *imp) {
    (void)imp;
    uint8_t *d = dst;
    for (int64_t i = 0; i < n; i++) { uint16_t h = qt_f32_to_bf16(src[i]); memcpy(d + 2 * i, &h, 2); }
}
static void e4m3_to_f32(const void *src, float *dst, int64_t n) { qt_plain_to_f32(QT_F8_E4M3, src, dst, n); }
static void e5m2_to_f32(const void *src, float *dst, int64_t n) { qt_plain_to_f32(QT_F8_E5M2, src, dst, n); }

/* ---- block types: fast (best kernels) and _ref (scalar kernels) entry points ---- */
#define QUANT_PAIR(name, T)                                                                \
    static void name##_fast(const float *s, void *d, int64_t n, const float *imp) {        \
        qk_quant_##name(qk_kern_best(), s, d, n, imp);                                      \
        qk_unbias_row(T, s, imp, d, n);                                                     \
    }                                                                                      \
    static void name##_ref(const float *s, void *d, int64_t n, const float *imp) {         \
        qk_quant_##name(&qk_kern_ref, s, d, n, imp);                                        \
        qk_unbias_row(T, s, imp, d, n);                                                     \
    }
QUANT_PAIR(q4_0, QT_Q4_0) QUANT_PAIR(q4_1, QT_Q4_1) QUANT_PAIR(q5_0, QT_Q5_0) QUANT_PAIR(q5_1, QT_Q5_1)
QUANT_PAIR(q8_0, QT_Q8_0) QUANT_PAIR(q2_K, QT_Q2_K) QUANT_PAIR(q3_K, QT_Q3_K) QUANT_PAIR(q4_K, QT_Q4_K)
QUANT_PAIR(q5_K, QT_Q5_K) QUANT_PAIR(q6_K, QT_Q6_K) QUANT_PAIR(iq4_nl, QT_IQ4_NL) QUANT_PAIR(iq4_xs, QT_IQ4_XS)

#define BLK(id, nm, b, sz, name) [id] = { nm, b, sz, true, false, qt_dequant_##name, name##_fast }
#define SIZE_ONLY(id, nm, b, sz, q) [id] = { nm, b, sz, q, false, NULL, NULL }

static const qt_traits gguf_traits[QT_GGUF_COUNT] = {
    [QT_F32] = { "F32", 1, 4, false, false, f32_to_f32, f32_from_f32 },
    [QT_F16] = { "F16", 1, 2, false, false, f16_to_f32, f16_from_f32 },
    [QT_BF16] = { "BF16", 1, 2, false, false, bf16_to_f32, bf16_from_f32 },
    BLK(QT_Q4_0, "Q4_0", 32, sizeof(qt_block_q4_0), q4_0),
    BLK(QT_Q4_1, "Q4_1", 32, sizeof(qt_block_q4_1), q4_1),
    BLK(QT_Q5_0, "Q5_0", 32, sizeof(qt_block_q5_0), q5_0),
    BLK(QT_Q5_1, "Q5_1", 32, sizeof(qt_block_q5_1), q5_1),
    BLK(QT_Q8_0, "Q8_0", 32, sizeof(qt_block_q8_0), q8_0),
    SIZE_ONLY(QT_Q8_1, "Q8_1", 32, sizeof(qt_block_q8_1), true),
    BLK(QT_Q2_K, "Q2_K", 256, sizeof(qt_block_q2_K), q2_K),
    BLK(QT_Q3_K, "Q3_K", 256, sizeof(qt_block_q3_K), q3_K),
    BLK(QT_Q4_K, "Q4_K", 256, sizeof(qt_block_q4_K), q4_K),
    BLK(QT_Q5_K, "Q5_K", 256, sizeof(qt_block_q5_K), q5_K),
    BLK(QT_Q6_K, "Q6_K", 256, sizeof(qt_block_q6_K), q6_K),
    SIZE_ONLY(QT_Q8_K, "Q8_K", 256, sizeof(qt_block_q8_K), true),
    SIZE_ONLY(QT_IQ2_XXS, "IQ2_XXS", 256, 66, true),
    SIZE_ONLY(QT_IQ2_XS, "IQ2_XS", 256, 74, true),
    SIZE_ONLY(QT_IQ3_XXS, "IQ3_XXS", 256, 98, true),
    SIZE_ONLY(QT_IQ1_S, "IQ1_S", 256, 50, true),
    BLK(QT_IQ4_NL, "IQ4_NL", 32, sizeof(qt_block_iq4_nl), iq4_nl),
    SIZE_ONLY(QT_IQ3_S, "IQ3_S", 256, 110, true),
    SIZE_ONLY(QT_IQ2_S, "IQ2_S", 256, 82, true),
    BLK(QT_IQ4_XS, "IQ4_XS", 256, sizeof(qt_block_iq4_xs), iq4_xs),
    SIZE_ONLY(QT_I8, "I8", 1, 1, false),
    SIZE_ONLY(QT_I16, "I16", 1, 2, false),
    SIZE_ONLY(QT_I32, "I32", 1, 4, false),
    SIZE_ONLY(QT_I64, "I64", 1, 8, false),
    SIZE_ONLY(QT_F64, "F64", 1, 8, false),
    SIZE_ONLY(QT_IQ1_M, "IQ1_M", 256, 56, true),
    [QT_MXFP4] = { "MXFP4", QT_QK_MXFP4, sizeof(qt_block_mxfp4), true, false, qt_dequant_mxfp4, qt_quant_mxfp4 },
};

static const qt_traits fp8_traits[2] = {
    { "F8_E4M3", 1, 1, false, false, e4m3_to_f32, NULL },
    { "F8_E5M2", 1, 1, false, false, e5m2_to_f32, NULL },
};

static bool is_iq_low(qt_type t) {
    return t == QT_IQ2_XXS || t == QT_IQ2_XS || t == QT_IQ3_XXS || t == QT_IQ1_S ||
           t == QT_IQ3_S || t == QT_IQ2_S || t == QT_IQ1_M;
}

const qt_traits *qt_get_traits(qt_type t) {
    if (t == QT_F8_E4M3) return &fp8_traits[0];
    if (t == QT_F8_E5M2) return &fp8_traits[1];
    if ((int)t < 0 || (int)t >= QT_GGUF_COUNT || !gguf_traits[t].name) return NULL;
    if (is_iq_low(t)) {
        const qt_traits *r = qt_iq_traits(t);
        if (r) return r;
    }
    return &gguf_traits[t];
}

bool qt_type_from_name(const char *name, qt_type *out) {
    if (!name) return false;
    for (int i = 0; i < QT_GGUF_COUNT; i++)
        if (gguf_traits[i].name && !strcasecmp(name, gguf_traits[i].name)) { *out = (qt_type)i; return true; }
    if (!strcasecmp(name, "F8_E4M3")) { *out = QT_F8_E4M3; return true; }
    if (!strcasecmp(name, "F8_E5M2")) { *out = QT_F8_E5M2; return true; }
    return false;
}

const char *qt_type_name(qt_type t) {
    const qt_traits *tr = qt_get_traits(t);
    return tr ? tr->name : "?";
}

uint64_t qt_row_size(qt_type t, int64_t n) {
    const qt_traits *tr = qt_get_traits(t);
    if (!tr || n < 0 || n % tr->blck) return 0;
    return (uint64_t)(n / tr->blck) * (uint64_t)tr->type_size;
}

qt_from_float_fn qt_ref_from_float(qt_type t) {
    switch (t) {
    case QT_Q4_0: return q4_0_ref;
    case QT_Q4_1: return q4_1_ref;
    case QT_Q5_0: return q5_0_ref;
    case QT_Q5_1: return q5_1_ref;
    case QT_Q8_0: return q8_0_ref;
    case QT_Q2_K: return q2_K_ref;
    case QT_Q3_K: return q3_K_ref;
    case QT_Q4_K: return q4_K_ref;
    case QT_Q5_K: return q5_K_ref;
    case QT_Q6_K: return q6_K_ref;
    case QT_IQ4_NL: return iq4_nl_ref;
    case QT_IQ4_XS: return iq4_xs_ref;
    case QT_MXFP4: return qt_quant_mxfp4;   /* scalar only */
    case QT_F32: return f32_from_f32;
    case QT_F16: return f16_from_f32;
    case QT_BF16: return bf16_from_f32;
    default: return NULL;
    }
}

void qt_quantize_rows(qt_type t, const float *src, void *dst, int64_t nrows, int64_t n, const float *imp) {
    const qt_traits *tr = qt_get_traits(t);
    uint64_t rs = qt_row_size(t, n);
    if (!tr || !tr->from_float || rs == 0) return;
    qt_from_float_fn f = tr->from_float;
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 4)
#endif
    for (int64_t r = 0; r < nrows; r++) f(src + r * n, (uint8_t *)dst + (uint64_t)r * rs, n, imp);
}

void qt_dequantize_rows(qt_type t, const void *src, float *dst, int64_t nrows, int64_t n) {
    const qt_traits *tr = qt_get_traits(t);
    uint64_t rs = qt_row_size(t, n);
    if (!tr || !tr->to_float || rs == 0) return;
    qt_to_float_fn f = tr->to_float;
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
    for (int64_t r = 0; r < nrows; r++) f((const uint8_t *)src + (uint64_t)r * rs, dst + r * n, n);
}
