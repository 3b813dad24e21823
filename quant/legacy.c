/* quant/legacy.c — the 32-element block types Q4_0, Q4_1, Q5_0, Q5_1, Q8_0: row
 * quantizers (weighted scale search of search.c, then levels re-rounded against the
 * stored f16 scale) and dequantizers that reproduce ggml's dequantize_row_* exactly
 * (same float operations in the same order). */
#include "qt_internal.h"

#include <math.h>

static void put_u32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static uint32_t get_u32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }

/* Symmetric 32-blocks: levels -nmax..nmax-1 stored as L + nmax. */
static void sym_block(const qk_kern *k, const float *x, const float *imp, int nmax, uint16_t *dh, uint8_t *Lq) {
    float w[32];
    qk_weights(k, x, imp, 32, w);
    float d = qk_sym_search(k, x, w, 32, nmax, 2, 0.125f, 1, NULL);
    *dh = qt_f32_to_f16(d);
    float df = qt_f16_to_f32(*dh), id = df != 0 ? 1.f / df : 0.f;
    k->lev_sym(x, 32, id, (float)-nmax, (float)(nmax - 1), (float)nmax, Lq);
}

/* Blocks with a min: x = d*L + m, L in 0..nmax. */
static void asym_block(const qk_kern *k, const float *x, const float *imp, int nmax, uint16_t *dh, uint16_t *mh, uint8_t *Lq) {
    float w[32], m;
    qk_weights(k, x, imp, 32, w);
    float d = qk_asym_search(k, x, w, 32, nmax, -1.f, 0.1f, 3, 1, &m, Lq);
    *dh = qt_f32_to_f16(d);
    *mh = qt_f32_to_f16(-m);
    float df = qt_f16_to_f32(*dh), mf = qt_f16_to_f32(*mh);
    if (df == 0) return;
    float id = 1.f / df;
    k->lev_asym(x, 32, id, -mf, (float)nmax, Lq);
}

static void pack_nibbles(const uint8_t *L, uint8_t *qs) {
    for (int j = 0; j < 16; j++) qs[j] = (uint8_t)((L[j] & 15) | ((L[j + 16] & 15) << 4));
}

static void pack_q5h(const uint8_t *L, uint8_t *qh) {
    uint32_t h = 0;
    for (int j = 0; j < 32; j++) h |= (uint32_t)((L[j] >> 4) & 1) << j;
    put_u32(qh, h);
}

void qk_quant_q4_0(const qk_kern *k, const float *x, void *dst, int64_t n, const float *imp) {
    qt_block_q4_0 *y = dst;
    uint8_t L[32];
    for (int64_t i = 0; i < n / 32; i++) {
        sym_block(k, x + 32 * i, imp ? imp + 32 * i : NULL, 8, &y[i].d, L);
        pack_nibbles(L, y[i].qs);
    }
}

void qk_quant_q5_0(const qk_kern *k, const float *x, void *dst, int64_t n, const float *imp) {
    qt_block_q5_0 *y = dst;
    uint8_t L[32];
    for (int64_t i = 0; i < n / 32; i++) {
        sym_block(k, x + 32 * i, imp ? imp + 32 * i : NULL, 16, &y[i].d, L);
        pack_nibbles(L, y[i].qs);
        pack_q5h(L, y[i].qh);
    }
}

void qk_quant_q4_1(const qk_kern *k, const float *x, void *dst, int64_t n, const float *imp) {
    qt_block_q4_1 *y = dst;
    uint8_t L[32];
    for (int64_t i = 0; i < n / 32; i++) {
        asym_block(k, x + 32 * i, imp ? imp + 32 * i : NULL, 15, &y[i].d, &y[i].m, L);
        pack_nibbles(L, y[i].qs);
    }
}

void qk_quant_q5_1(const qk_kern *k, const float *x, void *dst, int64_t n, const float *imp) {
    qt_block_q5_1 *y = dst;
    uint8_t L[32];
    for (int64_t i = 0; i < n / 32; i++) {
        asym_block(k, x + 32 * i, imp ? imp + 32 * i : NULL, 31, &y[i].d, &y[i].m, L);
        pack_nibbles(L, y[i].qs);
        pack_q5h(L, y[i].qh);
    }
}

/* Q8_0: d = amax/127 (the error of 8-bit levels is dominated by rounding, not by the
 * scale choice); every operation is element-wise, so the AVX2 kernel is exact. */
void qk_q8_0_blocks_ref(const float *x, void *dst, int64_t nb) {
    qt_block_q8_0 *y = dst;
    for (int64_t i = 0; i < nb; i++) {
        const float *xb = x + 32 * i;
        float amax = 0;
        for (int j = 0; j < 32; j++) {
            float a = fabsf(xb[j]);
            amax = a > amax ? a : amax;
        }
        y[i].d = qt_f32_to_f16(amax / 127.f);
        float df = qt_f16_to_f32(y[i].d), id = df != 0 ? 1.f / df : 0.f;
        for (int j = 0; j < 32; j++) y[i].qs[j] = (int8_t)qk_rint(qk_clamp(xb[j] * id, -127.f, 127.f));
    }
}

void qk_quant_q8_0(const qk_kern *k, const float *x, void *dst, int64_t n, const float *imp) {
    (void)imp;
    k->q8_0(x, dst, n / 32);
}

/* ---- dequantizers: ggml's formulas, operation for operation ---- */

void qt_dequant_q4_0(const void *src, float *dst, int64_t n) {
    const qt_block_q4_0 *x = src;
    for (int64_t i = 0; i < n / 32; i++, dst += 32) {
        const float d = qt_f16_to_f32(x[i].d);
        for (int j = 0; j < 16; j++) {
            dst[j] = (float)((x[i].qs[j] & 15) - 8) * d;
            dst[j + 16] = (float)((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

void qt_dequant_q4_1(const void *src, float *dst, int64_t n) {
    const qt_block_q4_1 *x = src;
    for (int64_t i = 0; i < n / 32; i++, dst += 32) {
        const float d = qt_f16_to_f32(x[i].d), m = qt_f16_to_f32(x[i].m);
        for (int j = 0; j < 16; j++) {
            dst[j] = (float)(x[i].qs[j] & 15) * d + m;
            dst[j + 16] = (float)(x[i].qs[j] >> 4) * d + m;
        }
    }
}

void qt_dequant_q5_0(const void *src, float *dst, int64_t n) {
    const qt_block_q5_0 *x = src;
    for (int64_t i = 0; i < n / 32; i++, dst += 32) {
        const float d = qt_f16_to_f32(x[i].d);
        const uint32_t qh = get_u32(x[i].qh);
        for (int j = 0; j < 16; j++) {
            int h0 = (int)((qh >> j) & 1) << 4, h1 = (int)((qh >> (j + 16)) & 1) << 4;
            dst[j] = (float)(((x[i].qs[j] & 15) | h0) - 16) * d;
            dst[j + 16] = (float)(((x[i].qs[j] >> 4) | h1) - 16) * d;
        }
    }
}

void qt_dequant_q5_1(const void *src, float *dst, int64_t n) {
    const qt_block_q5_1 *x = src;
    for (int64_t i = 0; i < n / 32; i++, dst += 32) {
        const float d = qt_f16_to_f32(x[i].d), m = qt_f16_to_f32(x[i].m);
        const uint32_t qh = get_u32(x[i].qh);
        for (int j = 0; j < 16; j++) {
            int h0 = (int)((qh >> j) & 1) << 4, h1 = (int)((qh >> (j + 16)) & 1) << 4;
            dst[j] = (float)((x[i].qs[j] & 15) | h0) * d + m;
            dst[j + 16] = (float)((x[i].qs[j] >> 4) | h1) * d + m;
        }
    }
}

void qt_dequant_q8_0(const void *src, float *dst, int64_t n) {
    const qt_block_q8_0 *x = src;
    for (int64_t i = 0; i < n / 32; i++, dst += 32) {
        const float d = qt_f16_to_f32(x[i].d);
        for (int j = 0; j < 32; j++) dst[j] = (float)x[i].qs[j] * d;
    }
}
