/* quant/iq4.c — IQ4_NL (32-blocks, one f16 scale) and IQ4_XS (256-blocks, 6-bit
 * sub-block scales) on ggml's 16 non-linear levels.  Quantizer: weighted search over
 * scales that map the largest |x| near either end level (both signs), Lloyd refinement,
 * and for IQ4_XS a +-1 trial of each sub-block scale code against the true error.
 * Dequantizers reproduce ggml's exactly. */
#include "qt_internal.h"

#include <math.h>

/* candidate groups of the 32-block scale search (3 grid groups of 8, one refinement
 * round); dropping the +113 side group loses up to 2% error, the refinement 0.5-1% */
#define IQ4_GRID 3
#define IQ4_REFINE 1

/* Best scale for one 32-block: x ~ d * level[idx(x / d)]. */
static float nl_search(const qk_kern *k, const float *x, const float *w, int n) {
    float amax = 0, max = 0;
    for (int j = 0; j < n; j++) {
        float a = fabsf(x[j]);
        if (a > amax) { amax = a; max = x[j]; }
    }
    if (!(amax > 1e-15f) || !isfinite(amax)) return 0.f;
    float bscore = -1, d = 0, is[8];
    for (int g = 0; g < IQ4_GRID + IQ4_REFINE; g++) {
        if (g < IQ4_GRID) {
            /* largest |x| near level -127 (t = -8..7, groups 0, 1) or +113 (t = -4..3, group 2) */
            for (int c = 0; c < 8; c++) {
                float t = g < 2 ? (float)(8 * g + c - 8) : (float)(c - 4);
                is[c] = (g < 2 ? t - 127.f : t + 113.f) / max;
            }
        } else {
            if (d == 0) break;
            for (int c = 0; c < 8; c++) is[c] = qk_refine_f[c] / d;
        }
        float sc, sxl, sll;
        if (k->nl8(x, w, n, is, &sc, &sxl, &sll) >= 0 && sc > bscore) { bscore = sc; d = sxl / sll; }
    }
    return d;
}

static void pack_idx(const float *x, float id, uint8_t *qs) {
    for (int j = 0; j < 16; j++)
        qs[j] = (uint8_t)(qk_iq4_index(x[j] * id) | (qk_iq4_index(x[j + 16] * id) << 4));
}

void qk_quant_iq4_nl(const qk_kern *k, const float *x, void *dst, int64_t n, const float *imp) {
    qt_block_iq4_nl *y = dst;
    float w[32];
    for (int64_t i = 0; i < n / 32; i++) {
        const float *xb = x + 32 * i;
        qk_weights(k, xb, imp ? imp + 32 * i : NULL, 32, w);
        y[i].d = qt_f32_to_f16(nl_search(k, xb, w, 32));
        float df = qt_f16_to_f32(y[i].d);
        pack_idx(xb, df != 0 ? 1.f / df : 0.f, y[i].qs);
    }
}

void qk_quant_iq4_xs(const qk_kern *k, const float *x, void *dst, int64_t n, const float *imp) {
    qt_block_iq4_xs *y = dst;
    float w[256], sc[8], sw[8];
    int8_t Ls[8];
    for (int64_t i = 0; i < n / 256; i++, x += 256) {
        qk_weights(k, x, imp ? imp + 256 * i : NULL, 256, w);
        for (int j = 0; j < 8; j++) {
            sc[j] = nl_search(k, x + 32 * j, w + 32 * j, 32);
            sw[j] = qk_sum4(w + 32 * j, 32);
        }
        float d = qk_sym_search(k, sc, sw, 8, 32, 1, 0.1f, 1, Ls);
        y[i].d = qt_f32_to_f16(d);
        float df = qt_f16_to_f32(y[i].d);
        y[i].scales_h = 0;
        memset(y[i].scales_l, 0, 4);
        for (int j = 0; j < 8; j++) {
            const float *xb = x + 32 * j, *wb = w + 32 * j;
            float best = INFINITY;
            int bc = Ls[j];
            for (int c = Ls[j] - 1; c <= Ls[j] + 1; c++) {
                if (c < -32 || c > 31) continue;
                float dj = df * (float)c;
                if (dj == 0 && c != Ls[j]) continue;
                float e = k->nl_err(xb, wb, 32, dj, dj != 0 ? 1.f / dj : 0.f);
                if (e < best) { best = e; bc = c; }
            }
            float dj = df * (float)bc;
            pack_idx(xb, dj != 0 ? 1.f / dj : 0.f, y[i].qs + 16 * j);
            int l = bc + 32;
            y[i].scales_l[j / 2] |= (uint8_t)((l & 15) << (4 * (j % 2)));
            y[i].scales_h |= (uint16_t)((l >> 4) << (2 * j));
        }
    }
}

void qt_dequant_iq4_nl(const void *src, float *y, int64_t n) {
    const qt_block_iq4_nl *x = src;
    for (int64_t i = 0; i < n / 32; i++, y += 32) {
        const float d = qt_f16_to_f32(x[i].d);
        for (int j = 0; j < 16; j++) {
            y[j] = d * qk_iq4_levels[x[i].qs[j] & 15];
            y[j + 16] = d * qk_iq4_levels[x[i].qs[j] >> 4];
        }
    }
}

void qt_dequant_iq4_xs(const void *src, float *y, int64_t n) {
    const qt_block_iq4_xs *x = src;
    for (int64_t i = 0; i < n / 256; i++) {
        const float d = qt_f16_to_f32(x[i].d);
        const uint8_t *qs = x[i].qs;
        for (int ib = 0; ib < 8; ib++, y += 32, qs += 16) {
            int ls = ((x[i].scales_l[ib / 2] >> (4 * (ib % 2))) & 15) | (((x[i].scales_h >> (2 * ib)) & 3) << 4);
            const float dl = d * (float)(ls - 32);
            for (int j = 0; j < 16; j++) {
                y[j] = dl * qk_iq4_levels[qs[j] & 15];
                y[j + 16] = dl * qk_iq4_levels[qs[j] >> 4];
            }
        }
    }
}
