/* quant/k_quants.c — the 256-element super-block types Q2_K, Q3_K, Q4_K, Q5_K, Q6_K.
 *
 * Quantizer (all five): per-element weights (imp, or sqrt(sigma^2 + x^2) without it);
 * a weighted scale search per sub-block (search.c); the sub-block scales (and mins)
 * quantized against one f16 super-scale by a weighted search; then, unlike ggml, each
 * sub-block tries its neighbouring integer scale/min codes (+-1; Q3_K only with imp) and
 * keeps the one with the smallest true weighted error of the final dequantized values;
 * levels are rounded against those final values.  Dequantizers reproduce ggml's exactly.
 * All searches run through the kernels of qt_internal.h, so the AVX2 path writes the
 * bytes of the scalar _ref path. */
#include "qt_internal.h"

#include <math.h>

#define QK 256
/* scale grid of the Q3_K / Q6_K sub-blocks: one group of 8 candidates 0.25 apart and no
 * refinement round (two groups 0.125 apart, or a refinement round, gained < 0.3% error
 * for 35-90% more time) */
#define SYM_NG 1
#define SYM_STEP 0.25f
#define SYM_REFINE 0
/* With an imatrix the element weights are imp * sqrt(f * sigma2 + x^2) (qk_weights_f), where
 * sigma2 is the super-block's mean square; f = 1 for Q4_K/Q5_K/Q6_K and the legacy types (as
 * ggml).  For Q3_K and Q2_K f was chosen by end-to-end KLD on mini-v3, not by layer error:
 * imatrix from the first half of calib.txt, KLD (paired, per token, against the same build
 * without imatrix) on the held-out second half (44k tokens), confirmed on eval.txt (another
 * domain, 16k tokens).  Q3_K_M, f = 0.06/0.25/0.5/1/2/4/16: -3.1/-3.7/-3.8/-2.9/-3.6/-2.8/-0.8%
 * held out, -1.9/-1.3/-1.9/-0.7/+0.7/-0.3/+0.8% on eval (paired s.e. 0.6% / 1.1%).  Q2_K,
 * f = 0/0.06/0.12/0.25/1/4: -3.2/-3.6/-2.6/-2.8/-0.7/+5.7% held out.  Smaller f trusts the
 * imatrix more; the layer-output error on calib activations preferred f = 4 for Q3_K, but it
 * did not carry to the KLD.  Without an imatrix f = 1 throughout.  Since issue 11 every
 * block is rescaled to its unbiased gain afterwards (quant/unbias.c), and Q2_K's f was chosen
 * again the same way (held-out KLD, mini-v3 Q2_K preset): f = 1/16 / 1 / 4 / 16: 0.0437 /
 * 0.0433 / 0.0427 / 0.0426, without an imatrix 0.0441 (1/16 kept almost none of the imatrix's
 * gain once the blocks are unbiased). */
#define Q3I_SIGMA 0.5f
#define Q2I_SIGMA 4.f
/* Q2_K sub-blocks: two groups of 8 candidates 0.12 apart, no refinement round (it gained
 * 0.2-0.3% error for 15-40% more time) */
#define Q2_REFINE 0
/* Q4_K / Q5_K sub-blocks: two groups of 8 candidates 0.15 apart from nmax - 1, then one
 * refinement round (three groups 0.1 apart changed the error by < 0.05%) */
#define QKX_R0 -1.f
#define QKX_STEP 0.15f
#define QKX_NG 2

/* ---------------------------------------------------------------- Q4_K / Q5_K */

static void pack_scale_min_k4(const uint8_t *ls, const uint8_t *lm, uint8_t *q) {
    memset(q, 0, 12);
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            q[j] |= ls[j] & 63;
            q[j + 4] |= lm[j] & 63;
        } else {
            q[j + 4] = (uint8_t)((ls[j] & 15) | ((lm[j] & 15) << 4));
            q[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
            q[j] |= (uint8_t)((lm[j] >> 4) << 6);
        }
    }
}

static void get_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63; *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 15) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* Picks the best (ls, lm) codes within +-1 of the given ones for one sub-block of n
 * (x ~ df*ls*L - dmf*lm); updates ls, lm; returns nothing. */
static void asym_codes_refine(const qk_kern *k, const float *x, const float *w, int n, int nmax,
                              float df, float dmf, int cmax, uint8_t *ls, uint8_t *lm) {
    float best = INFINITY;
    int bs = *ls, bm = *lm;
    for (int a = *ls - 1; a <= *ls + 1; a++) {
        if (a < 0 || a > cmax) continue;
        float d = df * (float)a;
        if (d == 0 && a != *ls) continue;
        for (int b = *lm - 1; b <= *lm + 1; b++) {
            if (b < 0 || b > cmax) continue;
            float m = dmf * (float)b;
            float e = k->asym_err(x, w, n, d, d != 0 ? 1.f / d : 0.f, m, (float)nmax);
            if (e < best) { best = e; bs = a; bm = b; }
        }
    }
    *ls = (uint8_t)bs; *lm = (uint8_t)bm;
}

/* Shared body of Q4_K (nmax 15) and Q5_K (nmax 31) for one super-block: fills d, dmin,
 * the 12 scale bytes and the levels L[256]. */
static void qkx_superblock(const qk_kern *k, const float *x, const float *imp, int nmax,
                           uint16_t *dh, uint16_t *dmh, uint8_t *scales, uint8_t *L) {
    float w[QK], sc[8], mn[8], sw[8];
    uint8_t ls[8], lm[8];
    qk_weights(k, x, imp, QK, w);
    for (int j = 0; j < 8; j++) {
        sc[j] = qk_asym_search(k, x + 32 * j, w + 32 * j, 32, nmax, QKX_R0, QKX_STEP, QKX_NG, 1, &mn[j], NULL);
        sw[j] = qk_sum4(w + 32 * j, 32);
    }
    float d = qk_pos_scale_search(sc, sw, 8, 63, ls);
    float dm = qk_pos_scale_search(mn, sw, 8, 63, lm);
    *dh = qt_f32_to_f16(d);
    *dmh = qt_f32_to_f16(dm);
    float df = qt_f16_to_f32(*dh), dmf = qt_f16_to_f32(*dmh);
    for (int j = 0; j < 8; j++) {
        asym_codes_refine(k, x + 32 * j, w + 32 * j, 32, nmax, df, dmf, 63, &ls[j], &lm[j]);
        float dj = df * (float)ls[j], mj = dmf * (float)lm[j];
        if (dj == 0) { memset(L + 32 * j, 0, 32); continue; }
        k->lev_asym(x + 32 * j, 32, 1.f / dj, mj, (float)nmax, L + 32 * j);
    }
    pack_scale_min_k4(ls, lm, scales);
}

void qk_quant_q4_K(const qk_kern *k, const float *x, void *dst, int64_t n, const float *imp) {
    qt_block_q4_K *y = dst;
    uint8_t L[QK];
    for (int64_t i = 0; i < n / QK; i++) {
        qkx_superblock(k, x + QK * i, imp ? imp + QK * i : NULL, 15, &y[i].d, &y[i].dmin, y[i].scales, L);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++)
                y[i].qs[32 * c + l] = (uint8_t)(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
    }
}

void qk_quant_q5_K(const qk_kern *k, const float *x, void *dst, int64_t n, const float *imp) {
    qt_block_q5_K *y = dst;
    uint8_t L[QK];
    for (int64_t i = 0; i < n / QK; i++) {
        qkx_superblock(k, x + QK * i, imp ? imp + QK * i : NULL, 31, &y[i].d, &y[i].dmin, y[i].scales, L);
        memset(y[i].qh, 0, 32);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                uint8_t a = L[64 * c + l], b = L[64 * c + 32 + l];
                y[i].qs[32 * c + l] = (uint8_t)((a & 15) | ((b & 15) << 4));
                y[i].qh[l] |= (uint8_t)(((a >> 4) << (2 * c)) | ((b >> 4) << (2 * c + 1)));
            }
    }
}

/* ---------------------------------------------------------------- Q2_K */

/* The 2-bit low parts of 256 levels (0..3) into 64 bytes, ggml's order (Q2_K and Q3_K): byte
 * 32h + l holds levels 128h + l, +32, +64, +96 in its bit pairs 0, 2, 4, 6. */
static void pack_2bit(const uint8_t *L, uint8_t *qs) {
    for (int h = 0; h < 2; h++)
        for (int l = 0; l < 32; l++) {
            const uint8_t *Lh = L + 128 * h;
            qs[32 * h + l] = (uint8_t)(Lh[l] | (Lh[l + 32] << 2) | (Lh[l + 64] << 4) | (Lh[l + 96] << 6));
        }
}

void qk_quant_q2_K(const qk_kern *k, const float *x, void *dst, int64_t n, const float *imp) {
    qt_block_q2_K *y = dst;
    float w[QK], sc[16], mn[16], sw[16];
    uint8_t L[QK], ls[16], lm[16];
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        qk_weights_f(k, x, imp ? imp + QK * i : NULL, QK, Q2I_SIGMA, w);
        for (int j = 0; j < 16; j++) {
            sc[j] = qk_asym_search(k, x + 16 * j, w + 16 * j, 16, 3, -0.9f, 0.12f, 2, Q2_REFINE, &mn[j], NULL);
            sw[j] = qk_sum4(w + 16 * j, 16);
        }
        float d = qk_pos_scale_search(sc, sw, 16, 15, ls);
        float dm = qk_pos_scale_search(mn, sw, 16, 15, lm);
        y[i].d = qt_f32_to_f16(d);
        y[i].dmin = qt_f32_to_f16(dm);
        float df = qt_f16_to_f32(y[i].d), dmf = qt_f16_to_f32(y[i].dmin);
        for (int j = 0; j < 16; j++) {
            asym_codes_refine(k, x + 16 * j, w + 16 * j, 16, 3, df, dmf, 15, &ls[j], &lm[j]);
            y[i].scales[j] = (uint8_t)(ls[j] | (lm[j] << 4));
            float dj = df * (float)ls[j], mj = dmf * (float)lm[j];
            if (dj == 0) { memset(L + 16 * j, 0, 16); continue; }
            k->lev_asym(x + 16 * j, 16, 1.f / dj, mj, 3.f, L + 16 * j);
        }
        pack_2bit(L, y[i].qs);
    }
}

/* ---------------------------------------------------------------- Q3_K / Q6_K */

/* Symmetric super-block: 16 sub-blocks of 16 with levels -nmax..nmax-1 and signed
 * integer scale codes -cmax..cmax-1 on one f16 scale; codes within +-neigh of the
 * searched one are tried against the true error (Q3_K skips this without imp: it gained
 * < 0.2% error for 50% more time there).  With ng == 1 and no refinement the sub-blocks
 * are searched two at a time by the fused kernel.  Fills *dh, codes[16], L[256]
 * (L stored with +nmax offset). */
static void sym_superblock(const qk_kern *k, const float *x, const float *w, int nmax, int cmax,
                           int neigh, int ng, float step, int refine, uint16_t *dh, int *codes, uint8_t *L) {
    float sc[16], sw[16], base[8];
    int8_t Ls[16];
    const float lo = (float)-nmax, hi = (float)(nmax - 1);
    qk_sym_base(nmax, step, base);
    for (int j = 0; j < 16; j += 2) {
        if (ng == 1 && refine == 0) {
            k->sym_sub2(x + 16 * j, w + 16 * j, x + 16 * j + 16, w + 16 * j + 16, 16, base, lo, hi, sc + j);
        } else {
            sc[j] = qk_sym_search(k, x + 16 * j, w + 16 * j, 16, nmax, ng, step, refine, NULL);
            sc[j + 1] = qk_sym_search(k, x + 16 * j + 16, w + 16 * j + 16, 16, nmax, ng, step, refine, NULL);
        }
    }
    for (int j = 0; j < 16; j++) sw[j] = qk_sum4(w + 16 * j, 16);
    float d = qk_sym_search(k, sc, sw, 16, cmax, 1, 0.1f, 1, Ls);
    *dh = qt_f32_to_f16(d);
    float df = qt_f16_to_f32(*dh);
    for (int j = 0; j < 16; j++) {
        const float *xb = x + 16 * j, *wb = w + 16 * j;
        float best = INFINITY;
        int bc = Ls[j];
        for (int c = Ls[j] - neigh; neigh > 0 && c <= Ls[j] + neigh; c++) {
            if (c < -cmax || c > cmax - 1) continue;
            float dj = df * (float)c;
            if (dj == 0 && c != Ls[j]) continue;
            float e = k->sym_err(xb, wb, 16, dj, dj != 0 ? 1.f / dj : 0.f, lo, hi);
            if (e < best) { best = e; bc = c; }
        }
        codes[j] = bc;
        float dj = df * (float)bc, id = dj != 0 ? 1.f / dj : 0.f;
        k->lev_sym(xb, 16, id, lo, hi, (float)nmax, L + 16 * j);
    }
}

void qk_quant_q3_K(const qk_kern *k, const float *x, void *dst, int64_t n, const float *imp) {
    qt_block_q3_K *y = dst;
    float w[QK];
    uint8_t L[QK];
    int codes[16];
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        qk_weights_f(k, x, imp ? imp + QK * i : NULL, QK, Q3I_SIGMA, w);
        sym_superblock(k, x, w, 4, 32, imp ? 1 : 0, SYM_NG, SYM_STEP, SYM_REFINE, &y[i].d, codes, L);
        memset(y[i].scales, 0, 12);
        for (int j = 0; j < 16; j++) {
            int l = codes[j] + 32;
            if (j < 8) y[i].scales[j] |= (uint8_t)(l & 15);
            else y[i].scales[j - 8] |= (uint8_t)((l & 15) << 4);
            y[i].scales[8 + j % 4] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
        }
        uint8_t hm[32] = { 0 };
        for (int b = 0; b < 8; b++)
            for (int m = 0; m < 32; m++) {
                hm[m] |= (uint8_t)((L[32 * b + m] >> 2) << b);
                L[32 * b + m] &= 3;
            }
        memcpy(y[i].hmask, hm, 32);
        pack_2bit(L, y[i].qs);
    }
}

void qk_quant_q6_K(const qk_kern *k, const float *x, void *dst, int64_t n, const float *imp) {
    qt_block_q6_K *y = dst;
    float w[QK];
    uint8_t L[QK];
    int codes[16];
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        qk_weights(k, x, imp ? imp + QK * i : NULL, QK, w);
        sym_superblock(k, x, w, 32, 128, 1, SYM_NG, SYM_STEP, SYM_REFINE, &y[i].d, codes, L);
        for (int j = 0; j < 16; j++) y[i].scales[j] = (int8_t)codes[j];
        for (int h = 0; h < 2; h++) {
            const uint8_t *Lh = L + 128 * h;
            uint8_t *ql = y[i].ql + 64 * h, *qh = y[i].qh + 32 * h;
            for (int l = 0; l < 32; l++) {
                ql[l] = (uint8_t)((Lh[l] & 15) | ((Lh[l + 64] & 15) << 4));
                ql[l + 32] = (uint8_t)((Lh[l + 32] & 15) | ((Lh[l + 96] & 15) << 4));
                qh[l] = (uint8_t)((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) | ((Lh[l + 64] >> 4) << 4) | ((Lh[l + 96] >> 4) << 6));
            }
        }
    }
}

/* ---------------------------------------------------------------- dequantizers */

void qt_dequant_q2_K(const void *src, float *y, int64_t n) {
    const qt_block_q2_K *x = src;
    for (int64_t i = 0; i < n / QK; i++) {
        const float d = qt_f16_to_f32(x[i].d), min = qt_f16_to_f32(x[i].dmin);
        const uint8_t *q = x[i].qs;
        int is = 0;
        for (int h = 0; h < 2; h++, q += 32)
            for (int s = 0; s < 4; s++)
                for (int part = 0; part < 2; part++) {
                    uint8_t sc = x[i].scales[is++];
                    const float dl = d * (float)(sc & 15), ml = min * (float)(sc >> 4);
                    for (int l = 0; l < 16; l++) *y++ = dl * (float)((q[l + 16 * part] >> (2 * s)) & 3) - ml;
                }
    }
}

void qt_dequant_q3_K(const void *src, float *y, int64_t n) {
    const qt_block_q3_K *x = src;
    for (int64_t i = 0; i < n / QK; i++) {
        const float d_all = qt_f16_to_f32(x[i].d);
        const uint8_t *q = x[i].qs, *hm = x[i].hmask;
        int sc[16];
        for (int j = 0; j < 16; j++) {
            int lo = j < 8 ? x[i].scales[j] & 15 : x[i].scales[j - 8] >> 4;
            sc[j] = (lo | (((x[i].scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
        }
        int is = 0;
        uint8_t m = 1;
        for (int h = 0; h < 2; h++, q += 32)
            for (int s = 0; s < 4; s++, m = (uint8_t)(m << 1))
                for (int part = 0; part < 2; part++) {
                    const float dl = d_all * (float)sc[is++];
                    for (int l = 0; l < 16; l++) {
                        int v = ((q[l + 16 * part] >> (2 * s)) & 3) - ((hm[l + 16 * part] & m) ? 0 : 4);
                        *y++ = dl * (float)v;
                    }
                }
    }
}

void qt_dequant_q4_K(const void *src, float *y, int64_t n) {
    const qt_block_q4_K *x = src;
    for (int64_t i = 0; i < n / QK; i++) {
        const float d = qt_f16_to_f32(x[i].d), min = qt_f16_to_f32(x[i].dmin);
        const uint8_t *q = x[i].qs;
        for (int c = 0; c < 4; c++, q += 32) {
            uint8_t sc, m;
            get_scale_min_k4(2 * c, x[i].scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = min * (float)m;
            get_scale_min_k4(2 * c + 1, x[i].scales, &sc, &m);
            const float d2 = d * (float)sc, m2 = min * (float)m;
            for (int l = 0; l < 32; l++) *y++ = d1 * (float)(q[l] & 15) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

void qt_dequant_q5_K(const void *src, float *y, int64_t n) {
    const qt_block_q5_K *x = src;
    for (int64_t i = 0; i < n / QK; i++) {
        const float d = qt_f16_to_f32(x[i].d), min = qt_f16_to_f32(x[i].dmin);
        const uint8_t *ql = x[i].qs, *qh = x[i].qh;
        for (int c = 0; c < 4; c++, ql += 32) {
            uint8_t sc, m;
            get_scale_min_k4(2 * c, x[i].scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = min * (float)m;
            get_scale_min_k4(2 * c + 1, x[i].scales, &sc, &m);
            const float d2 = d * (float)sc, m2 = min * (float)m;
            const uint8_t u1 = (uint8_t)(1 << (2 * c)), u2 = (uint8_t)(2 << (2 * c));
            for (int l = 0; l < 32; l++) *y++ = d1 * (float)((ql[l] & 15) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (float)((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
        }
    }
}

void qt_dequant_q6_K(const void *src, float *y, int64_t n) {
    const qt_block_q6_K *x = src;
    for (int64_t i = 0; i < n / QK; i++) {
        const float d = qt_f16_to_f32(x[i].d);
        const uint8_t *ql = x[i].ql, *qh = x[i].qh;
        const int8_t *sc = x[i].scales;
        for (int h = 0; h < 2; h++, y += 128, ql += 64, qh += 32, sc += 8)
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                int q1 = ((ql[l] & 15) | (((qh[l] >> 0) & 3) << 4)) - 32;
                int q2 = ((ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d * (float)sc[is] * (float)q1;
                y[l + 32] = d * (float)sc[is + 2] * (float)q2;
                y[l + 64] = d * (float)sc[is + 4] * (float)q3;
                y[l + 96] = d * (float)sc[is + 6] * (float)q4;
            }
    }
}
