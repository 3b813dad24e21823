/* quant/gptq.c — GPTQ/OBQ error feedback inside the GGUF block formats.
 *
 * A weight W [rows, n] multiplies inputs whose second moment is H = sum x x^T [n, n].
 * Rounding row w to q costs (w - q) H (w - q)^T; GPTQ walks the columns in order and, once
 * column j is fixed, moves its error into the columns not yet quantized so that the cost
 * stays minimal:  e = (w_j - q_j) / U_jj,  w_k -= e * U_jk (k > j), with U the upper
 * Cholesky factor of H^-1 (U^T U = H^-1).  Here the columns are walked one GGUF block at a
 * time (256 for K/IQ types, 32 for the legacy ones): the block is first encoded by the
 * format's own quantizer (traits from_float with the importance weights) on the
 * error-updated weights, which fixes its scales (and the IQ1_S delta, the IQ2 sign parity
 * rules); then, in column order inside the block,
 *   element types (Q4_0..Q8_0, Q2_K..Q6_K, IQ4_NL, IQ4_XS): each element's code is re-chosen
 *     as the level nearest the updated weight under the fixed scales, its error propagated;
 *   group types (every IQ1/IQ2/IQ3 type): each group of 8 gets the
 *     grid point(s) and signs nearest the updated weights in the diagonal metric 1/U_jj^2
 *     (exhaustive over the grid, the even-parity sign rule of IQ2_XXS/IQ2_XS/IQ3_XXS
 *     honoured at least cost; IQ1_M's per-group delta sign chosen with the point), its 8
 *     errors propagated;
 *   a type with neither (none today) would keep the encoder's codes and propagate only the
 *     block's error (Model-Optimizer style).
 * Bytes are always valid blocks of the format: only code fields are rewritten.
 * Not here: gathering H (calib/), choosing which tensors get it (cli/, convert/). */
#include "qt_internal.h"
#include "blocks_iq.h"
#include "../common/qx.h"

#include <stdlib.h>

/* ---- element codes of the scalar-level types ---- */

typedef struct {
    float a, b;            /* value(c) = a * c + b, or a * tab[c] when tab */
    int lo, hi;            /* code range */
    const float *tab;
} qg_lev;

static float f16(uint16_t h) { return qt_f16_to_f32(h); }

static void nib_put(uint8_t *qs, int j, int c) {   /* Q4_0 layout: j < 16 low nibble */
    if (j < 16) qs[j] = (uint8_t)((qs[j] & 0xF0) | c);
    else qs[j - 16] = (uint8_t)((qs[j - 16] & 0x0F) | (c << 4));
}
static void qh32_put(uint8_t *qh, int j, int bit) {
    qh[j / 8] = (uint8_t)((qh[j / 8] & ~(1u << (j % 8))) | ((unsigned)bit << (j % 8)));
}
static void k4_scale_min(int j, const uint8_t *q, int *sc, int *m) {
    if (j < 4) { *sc = q[j] & 63; *m = q[j + 4] & 63; }
    else { *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4); *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4); }
}
static int q3k_scale(const uint8_t *s, int j) {
    int lo = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
    int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (lo | hi << 4) - 32;
}

/* Levels of element j of block blk (type t); false if t is not an element type. */
static bool elem_lev(qt_type t, const uint8_t *blk, int j, qg_lev *L) {
    L->tab = NULL;
    switch (t) {
    case QT_Q4_0: { float d = f16(((const qt_block_q4_0 *)blk)->d); *L = (qg_lev){ d, -8 * d, 0, 15, NULL }; return true; }
    case QT_Q4_1: { const qt_block_q4_1 *x = (const void *)blk; *L = (qg_lev){ f16(x->d), f16(x->m), 0, 15, NULL }; return true; }
    case QT_Q5_0: { float d = f16(((const qt_block_q5_0 *)blk)->d); *L = (qg_lev){ d, -16 * d, 0, 31, NULL }; return true; }
    case QT_Q5_1: { const qt_block_q5_1 *x = (const void *)blk; *L = (qg_lev){ f16(x->d), f16(x->m), 0, 31, NULL }; return true; }
    case QT_Q8_0: *L = (qg_lev){ f16(((const qt_block_q8_0 *)blk)->d), 0, -127, 127, NULL }; return true;
    case QT_IQ4_NL: *L = (qg_lev){ f16(((const qt_block_iq4_nl *)blk)->d), 0, 0, 15, qk_iq4_levels }; return true;
    case QT_Q2_K: {
        const qt_block_q2_K *x = (const void *)blk;
        int sc = x->scales[j / 16];
        *L = (qg_lev){ f16(x->d) * (float)(sc & 15), -(f16(x->dmin) * (float)(sc >> 4)), 0, 3, NULL };
        return true;
    }
    case QT_Q3_K: {
        const qt_block_q3_K *x = (const void *)blk;
        float a = f16(x->d) * (float)q3k_scale(x->scales, j / 16);
        *L = (qg_lev){ a, -4 * a, 0, 7, NULL };
        return true;
    }
    case QT_Q4_K: case QT_Q5_K: {
        const uint16_t *dd = (const uint16_t *)blk;   /* d, dmin, then scales in both layouts */
        int sc, m;
        k4_scale_min(j / 32, blk + 4, &sc, &m);
        *L = (qg_lev){ f16(dd[0]) * (float)sc, -(f16(dd[1]) * (float)m), 0, t == QT_Q4_K ? 15 : 31, NULL };
        return true;
    }
    case QT_Q6_K: {
        const qt_block_q6_K *x = (const void *)blk;
        float a = f16(x->d) * (float)x->scales[j / 16];
        *L = (qg_lev){ a, -32 * a, 0, 63, NULL };
        return true;
    }
    case QT_IQ4_XS: {
        const qt_block_iq4_xs *x = (const void *)blk;
        int ib = j / 32, ls = ((x->scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((x->scales_h >> (2 * ib)) & 3) << 4);
        *L = (qg_lev){ f16(x->d) * (float)(ls - 32), 0, 0, 15, qk_iq4_levels };
        return true;
    }
    default: return false;
    }
}

static void elem_put(qt_type t, uint8_t *blk, int j, int c) {
    switch (t) {
    case QT_Q4_0: nib_put(((qt_block_q4_0 *)(void *)blk)->qs, j, c); break;
    case QT_Q4_1: nib_put(((qt_block_q4_1 *)(void *)blk)->qs, j, c); break;
    case QT_IQ4_NL: nib_put(((qt_block_iq4_nl *)(void *)blk)->qs, j, c); break;
    case QT_Q5_0: { qt_block_q5_0 *x = (void *)blk; nib_put(x->qs, j, c & 15); qh32_put(x->qh, j, c >> 4); break; }
    case QT_Q5_1: { qt_block_q5_1 *x = (void *)blk; nib_put(x->qs, j, c & 15); qh32_put(x->qh, j, c >> 4); break; }
    case QT_Q8_0: ((qt_block_q8_0 *)(void *)blk)->qs[j] = (int8_t)c; break;
    case QT_Q2_K: case QT_Q3_K: {
        uint8_t *qs = t == QT_Q2_K ? ((qt_block_q2_K *)(void *)blk)->qs : ((qt_block_q3_K *)(void *)blk)->qs;
        int h = j / 128, e = j % 128, sh = 2 * (e / 32), l = e % 32;
        qs[32 * h + l] = (uint8_t)((qs[32 * h + l] & ~(3u << sh)) | ((unsigned)(c & 3) << sh));
        if (t == QT_Q3_K) {
            uint8_t *hm = ((qt_block_q3_K *)(void *)blk)->hmask;
            int m = j % 32, b = j / 32;
            hm[m] = (uint8_t)((hm[m] & ~(1u << b)) | ((unsigned)(c >> 2) << b));
        }
        break;
    }
    case QT_Q4_K: case QT_Q5_K: {
        uint8_t *qs = t == QT_Q4_K ? ((qt_block_q4_K *)(void *)blk)->qs : ((qt_block_q5_K *)(void *)blk)->qs;
        int ch = j / 64, u = j % 64, p = 32 * ch + u % 32;
        if (u < 32) qs[p] = (uint8_t)((qs[p] & 0xF0) | (c & 15));
        else qs[p] = (uint8_t)((qs[p] & 0x0F) | ((c & 15) << 4));
        if (t == QT_Q5_K) {
            uint8_t *qh = ((qt_block_q5_K *)(void *)blk)->qh;
            int bit = 2 * ch + (u >= 32);
            qh[u % 32] = (uint8_t)((qh[u % 32] & ~(1u << bit)) | ((unsigned)(c >> 4) << bit));
        }
        break;
    }
    case QT_Q6_K: {
        qt_block_q6_K *x = (void *)blk;
        int h = j / 128, e = j % 128, k = e / 32, l = e % 32, p = 64 * h + l + 32 * (k & 1);
        if (k >> 1) x->ql[p] = (uint8_t)((x->ql[p] & 0x0F) | ((c & 15) << 4));
        else x->ql[p] = (uint8_t)((x->ql[p] & 0xF0) | (c & 15));
        uint8_t *qh = &x->qh[32 * h + l];
        *qh = (uint8_t)((*qh & ~(3u << (2 * k))) | ((unsigned)(c >> 4) << (2 * k)));
        break;
    }
    case QT_IQ4_XS: {
        qt_block_iq4_xs *x = (void *)blk;
        int ib = j / 32, r = j % 32;
        nib_put(x->qs + 16 * ib, r, c);
        break;
    }
    default: break;
    }
}

/* Code of the level nearest v (first on ties) and its value. */
static int elem_nearest(const qg_lev *L, float v, float *q) {
    int best = L->lo;
    if (L->tab) {
        float be = INFINITY;
        for (int c = L->lo; c <= L->hi; c++) {
            float e = fabsf(v - L->a * L->tab[c]);
            if (e < be) { be = e; best = c; }
        }
        *q = L->a * L->tab[best];
        return best;
    }
    if (L->a != 0) best = (int)qk_clamp(qk_rint((v - L->b) / L->a), (float)L->lo, (float)L->hi);
    *q = L->a * (float)best + L->b;
    return best;
}

/* ---- group codes of IQ2_XXS and IQ1_S (8 elements, fixed block scales) ---- */

static int neg_bits(const float *v, int n) {
    int neg = 0;
    for (int j = 0; j < n; j++)
        if (v[j] < 0) neg |= 1 << j;
    return neg;
}

/* An 8-wide grid (uint64 points): the point index; *neg_out the sign bits, with `parity` an
 * even number of them negative. */
static int grid8_nearest(const uint64_t *grid, int ng, float db, const float *v, const float *h, bool parity, int *neg_out) {
    int neg = neg_bits(v, 8);
    qg_grid_pick p = qg_grid_nearest((const uint8_t *)grid, 8, ng, db, v, h);
    if (parity && (__builtin_popcount((unsigned)neg) & 1)) {
        *neg_out = neg ^ (1 << p.j1);
        return p.k1;
    }
    *neg_out = neg;
    return p.k0;
}

static void put_signed8(float *q, float db, const uint8_t *mag, int neg) {
    for (int j = 0; j < 8; j++) q[j] = db * (float)mag[j] * ((neg >> j) & 1 ? -1.f : 1.f);
}

/* Rewrites group g (elements 8g..8g+7) of an IQ2_XXS block as the grid point and even-parity
 * signs nearest v in the metric h; q gets the chosen values. */
static void iq2xxs_group(uint8_t *blk, int g, const float *v, const float *h, float *q) {
    qt_block_iq2_xxs *x = (void *)blk;
    int ib = g / 4, l = g % 4;
    uint32_t a0 = x->qs[4 * ib] | (uint32_t)x->qs[4 * ib + 1] << 16;
    uint32_t a1 = x->qs[4 * ib + 2] | (uint32_t)x->qs[4 * ib + 3] << 16;
    float db = f16(x->d) * (0.5f + (float)(a1 >> 28)) * 0.25f;
    if (!(db > 0)) {
        for (int j = 0; j < 8; j++) q[j] = 0;   /* ggml dequantizes to 0 * grid */
        return;
    }
    int neg, bk = grid8_nearest(qt_iq2xxs_grid, 256, db, v, h, true, &neg);
    put_signed8(q, db, (const uint8_t *)&qt_iq2xxs_grid[bk], neg);
    a0 = (a0 & ~(0xFFu << (8 * l))) | (uint32_t)bk << (8 * l);
    a1 = (a1 & ~(0x7Fu << (7 * l))) | (uint32_t)(neg & 0x7F) << (7 * l);
    x->qs[4 * ib] = (uint16_t)a0; x->qs[4 * ib + 1] = (uint16_t)(a0 >> 16);
    x->qs[4 * ib + 2] = (uint16_t)a1; x->qs[4 * ib + 3] = (uint16_t)(a1 >> 16);
}

/* IQ2_XS: 9-bit index | 7 sign bits << 9 per group, 4-bit scale per 16. */
static void iq2xs_group(uint8_t *blk, int g, const float *v, const float *h, float *q) {
    qt_block_iq2_xs *x = (void *)blk;
    int ib = g / 4, l = g % 4;
    float db = f16(x->d) * (0.5f + (float)((x->scales[ib] >> (4 * (l / 2))) & 0xf)) * 0.25f;
    int neg, bk = grid8_nearest(qt_iq2xs_grid, 512, db, v, h, true, &neg);
    put_signed8(q, db, (const uint8_t *)&qt_iq2xs_grid[bk], neg);
    x->qs[g] = (uint16_t)(bk | (neg & 0x7F) << 9);
}

/* IQ2_S: 10-bit index (8 in qs, 2 in qh), a free sign byte per group, 4-bit scale per 16. */
static void iq2s_group(uint8_t *blk, int g, const float *v, const float *h, float *q) {
    qt_block_iq2_s *x = (void *)blk;
    int ib = g / 4, l = g % 4;
    float db = f16(x->d) * (0.5f + (float)((x->scales[ib] >> (4 * (l / 2))) & 0xf)) * 0.25f;
    int neg, bk = grid8_nearest(qt_iq2s_grid, 1024, db, v, h, false, &neg);
    put_signed8(q, db, (const uint8_t *)&qt_iq2s_grid[bk], neg);
    x->qs[g] = (uint8_t)(bk & 0xFF);
    x->qh[ib] = (uint8_t)((x->qh[ib] & ~(3u << (2 * l))) | (unsigned)(bk >> 8) << (2 * l));
    x->qs[QT_IQ_QK / 8 + g] = (uint8_t)neg;
}

/* IQ3_XXS: two 8-bit indices of a 4-wide grid per group, 7 sign bits (even parity) and a
 * 4-bit scale per 32 in a little-endian u32 after the 64 index bytes. */
static void iq3xxs_group(uint8_t *blk, int g, const float *v, const float *h, float *q) {
    qt_block_iq3_xxs *x = (void *)blk;
    int ib = g / 4, l = g % 4;
    uint8_t *sp = x->qs + QT_IQ_QK / 4 + 4 * ib;
    uint32_t a;
    memcpy(&a, sp, 4);
    float db = f16(x->d) * (0.5f + (float)(a >> 28)) * 0.5f;
    int neg = neg_bits(v, 8);
    qg_grid_pick p[2];
    for (int hh = 0; hh < 2; hh++) p[hh] = qg_grid_nearest((const uint8_t *)qt_iq3xxs_grid, 4, 256, db, v + 4 * hh, h + 4 * hh);
    int ka = p[0].k0, kb = p[1].k0;
    if (__builtin_popcount((unsigned)neg) & 1) {
        if (p[0].c1 + p[1].c0 <= p[0].c0 + p[1].c1) { ka = p[0].k1; neg ^= 1 << p[0].j1; }
        else { kb = p[1].k1; neg ^= 1 << (4 + p[1].j1); }
    }
    uint8_t mag[8];
    memcpy(mag, &qt_iq3xxs_grid[ka], 4);
    memcpy(mag + 4, &qt_iq3xxs_grid[kb], 4);
    put_signed8(q, db, mag, neg);
    x->qs[8 * ib + 2 * l] = (uint8_t)ka;
    x->qs[8 * ib + 2 * l + 1] = (uint8_t)kb;
    a = (a & ~(0x7Fu << (7 * l))) | (uint32_t)(neg & 0x7F) << (7 * l);
    memcpy(sp, &a, 4);
}

/* IQ3_S: two 9-bit indices of a 4-wide grid per group (9th bits in qh), a free sign byte, a
 * 4-bit odd scale per 32. */
static void iq3s_group(uint8_t *blk, int g, const float *v, const float *h, float *q) {
    qt_block_iq3_s *x = (void *)blk;
    int ib = g / 4, l = g % 4;
    float db = f16(x->d) * (float)(1 + 2 * ((x->scales[ib / 2] >> (4 * (ib % 2))) & 0xf));
    int k[2], neg = neg_bits(v, 8);
    for (int hh = 0; hh < 2; hh++) k[hh] = qg_grid_nearest((const uint8_t *)qt_iq3s_grid, 4, 512, db, v + 4 * hh, h + 4 * hh).k0;
    uint8_t mag[8];
    memcpy(mag, &qt_iq3s_grid[k[0]], 4);
    memcpy(mag + 4, &qt_iq3s_grid[k[1]], 4);
    put_signed8(q, db, mag, neg);
    for (int hh = 0; hh < 2; hh++) {
        int bit = 2 * l + hh;
        x->qs[8 * ib + bit] = (uint8_t)(k[hh] & 0xFF);
        x->qh[ib] = (uint8_t)((x->qh[ib] & ~(1u << bit)) | (unsigned)(k[hh] >> 8) << bit);
    }
    x->signs[4 * ib + l] = (uint8_t)neg;
}

static void iq1s_group(uint8_t *blk, int g, const float *v, const float *h, float *q) {
    qt_block_iq1_s *x = (void *)blk;
    int ib = g / 4, l = g % 4;
    unsigned qh = x->qh[ib];
    float dl = f16(x->d) * (float)(2 * ((qh >> 12) & 7) + 1);
    float delta = qh & 0x8000 ? -QT_IQ1S_DELTA : QT_IQ1S_DELTA;
    int bk = x->qs[4 * ib + l] | (int)((qh >> (3 * l)) & 7) << 8, bd = 0;
    qg_iq1_nearest(dl, 1, &delta, v, h, &bk, &bd);
    const int8_t *gr = (const int8_t *)&qt_iq1s_grid[bk];
    for (int j = 0; j < 8; j++) q[j] = dl * ((float)gr[j] + delta);
    x->qs[4 * ib + l] = (uint8_t)(bk & 0xFF);
    x->qh[ib] = (uint16_t)((qh & ~(7u << (3 * l))) | (unsigned)(bk >> 8) << (3 * l));
}

/* IQ1_M: 11-bit index and a delta sign per group (a nibble of qh: 3 index bits | sign << 3),
 * a 3-bit odd scale per 16, the f16 d spread over the scale words' top nibbles. */
static void iq1m_group(uint8_t *blk, int g, const float *v, const float *h, float *q) {
    qt_block_iq1_m *x = (void *)blk;
    int ib = g / 4, l = g % 4;
    uint16_t sc[4];
    memcpy(sc, x->scales, sizeof sc);
    uint16_t dbits = (uint16_t)((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000));
    float dl = f16(dbits) * (float)(2 * ((sc[ib / 2] >> (6 * (ib % 2) + 3 * (l / 2))) & 7) + 1);
    uint8_t *qh = &x->qh[2 * ib + l / 2];
    int sh = 4 * (l % 2);
    int nib = (*qh >> sh) & 0xf;
    int bk = x->qs[g] | (nib & 7) << 8, bneg = nib >> 3;
    static const float deltas[2] = { QT_IQ1S_DELTA, -QT_IQ1S_DELTA };
    qg_iq1_nearest(dl, 2, deltas, v, h, &bk, &bneg);
    const int8_t *gr = (const int8_t *)&qt_iq1s_grid[bk];
    float delta = bneg ? -QT_IQ1S_DELTA : QT_IQ1S_DELTA;
    for (int j = 0; j < 8; j++) q[j] = dl * ((float)gr[j] + delta);
    x->qs[g] = (uint8_t)(bk & 0xFF);
    *qh = (uint8_t)((*qh & ~(0xf << sh)) | ((bk >> 8) | bneg << 3) << sh);
}

/* ---- the walk ---- */

qt_gptq_mode qt_gptq_mode_of(qt_type t) {
    qg_lev L;
    uint8_t dummy[sizeof(qt_block_q6_K) + sizeof(qt_block_q5_K)] = { 0 };
    if (t == QT_IQ2_XXS || t == QT_IQ2_XS || t == QT_IQ2_S || t == QT_IQ3_XXS || t == QT_IQ3_S || t == QT_IQ1_S || t == QT_IQ1_M) return QT_GPTQ_GROUP;
    if (elem_lev(t, dummy, 0, &L)) return QT_GPTQ_ELEMENT;
    const qt_traits *tr = qt_get_traits(t);
    return tr && tr->quantized && tr->from_float && tr->to_float ? QT_GPTQ_BLOCK : QT_GPTQ_NONE;
}

/* Fixes column j at value q and moves its error into columns j+1..lim-1 of w (lim = n: the
 * whole row, the scalar reference; lim = the block's end: the lazy-batch form, which moves
 * the rest with one product per block); returns the scaled error e (e^2 is what fixing j
 * adds to the row's output error). */
static inline float feed(float *w, const float *U, int64_t n, int64_t lim, int64_t j, float q) {
    const float *u = U + j * n;
    float e = (w[j] - q) / u[j];
    for (int64_t k = j + 1; k < lim; k++) w[k] -= e * u[k];
    return e;
}

typedef struct {
    qt_type t;
    qt_gptq_mode mode;
    const qt_traits *tr;
    const float *U;
    int64_t n;
    float *q, *h;        /* [blck], [8] */
    float *rec;          /* [blck]: each column's weight when it was fixed */
} qg_ctx;

/* Chooses the codes of the block at b0 (already encoded in blk: scales fixed) in column
 * order with feedback into w[.. lim); returns the block's added output error sum e^2 and,
 * when err, each column's scaled error e. */
static double block_pass(const qg_ctx *c, int64_t b0, int64_t lim, float *w, uint8_t *blk, float *err) {
    const int B = c->tr->blck;
    const int64_t n = c->n;
    double loss = 0;
    if (c->mode == QT_GPTQ_ELEMENT) {
        for (int j = 0; j < B; j++) {
            qg_lev L;
            float qv;
            elem_lev(c->t, blk, j, &L);
            elem_put(c->t, blk, j, elem_nearest(&L, w[b0 + j], &qv));
            c->rec[j] = w[b0 + j];
            float e = feed(w, c->U, n, lim, b0 + j, qv);
            if (err) err[j] = e;
            loss += (double)e * e;
        }
        return loss;
    }
    if (c->mode == QT_GPTQ_GROUP) {
        for (int g = 0; g < B / 8; g++) {
            int64_t c0 = b0 + 8 * g;
            for (int j = 0; j < 8; j++) { float u = c->U[(c0 + j) * n + c0 + j]; c->h[j] = 1.f / (u * u); }
            switch (c->t) {
            case QT_IQ2_XXS: iq2xxs_group(blk, g, w + c0, c->h, c->q); break;
            case QT_IQ2_XS: iq2xs_group(blk, g, w + c0, c->h, c->q); break;
            case QT_IQ2_S: iq2s_group(blk, g, w + c0, c->h, c->q); break;
            case QT_IQ3_XXS: iq3xxs_group(blk, g, w + c0, c->h, c->q); break;
            case QT_IQ3_S: iq3s_group(blk, g, w + c0, c->h, c->q); break;
            case QT_IQ1_M: iq1m_group(blk, g, w + c0, c->h, c->q); break;
            default: iq1s_group(blk, g, w + c0, c->h, c->q); break;
            }
            for (int j = 0; j < 8; j++) {
                c->rec[8 * g + j] = w[c0 + j];
                float e = feed(w, c->U, n, lim, c0 + j, c->q[j]);
                if (err) err[8 * g + j] = e;
                loss += (double)e * e;
            }
        }
        return loss;
    }
    c->tr->to_float(blk, c->q, B);
    for (int j = 0; j < B; j++) {
        c->rec[j] = w[b0 + j];
        float e = feed(w, c->U, n, lim, b0 + j, c->q[j]);
        if (err) err[j] = e;
        loss += (double)e * e;
    }
    return loss;
}

/* One row.  Each block is done twice: with the scales the encoder chose for the block as it
 * stood (pass A), and with the scales it chooses for the weights pass A actually rounded
 * (after the feedback from the block's own earlier columns, pass B); the pass with the
 * smaller added output error is kept.  wb: [n] scratch; blkb: one block. */
/* Both walks of the block at b0, feeding columns up to lim: A on w into blk (errors into
 * ea), B on wb (w's copy from b0 to lim, made here) into blkb (errors into eb).  True when
 * B added less output error: the caller then takes wb, blkb and eb. */
static bool two_walks(const qg_ctx *c, int64_t b0, int64_t lim, const float *ib, float *w, float *wb, uint8_t *blk, uint8_t *blkb,
                      float *ea, float *eb) {
    const int B = c->tr->blck;
    memcpy(wb + b0, w + b0, (size_t)(lim - b0) * sizeof(float));
    c->tr->from_float(w + b0, blk, B, ib);
    double la = block_pass(c, b0, lim, w, blk, ea);
    c->tr->from_float(c->rec, blkb, B, ib);
    double lb = block_pass(c, b0, lim, wb, blkb, eb);
    return lb < la;
}

static void gptq_row(const qg_ctx *c, const float *imp, float *w, uint8_t *out, float *wb, uint8_t *blkb) {
    const int B = c->tr->blck;
    const int64_t n = c->n;
    for (int64_t b0 = 0; b0 < n; b0 += B) {
        uint8_t *blk = out + (b0 / B) * c->tr->type_size;
        if (two_walks(c, b0, n, imp ? imp + b0 : NULL, w, wb, blk, blkb, NULL, NULL)) {
            memcpy(w + b0, wb + b0, (size_t)(n - b0) * sizeof(float));
            memcpy(blk, blkb, (size_t)c->tr->type_size);
        }
    }
}

bool qt_quantize_gptq_ref(qt_type t, const float *src, void *dst, int64_t nrows, int64_t n, const float *U,
                          const float *imp) {
    const qt_traits *tr = qt_get_traits(t);
    qt_gptq_mode mode = qt_gptq_mode_of(t);
    if (mode == QT_GPTQ_NONE || qt_row_size(t, n) == 0 || !U) return false;
    uint64_t rs = qt_row_size(t, n);
    /* w [n], wb [n], rec [blck], q [blck], h [8] */
    float *w = malloc((size_t)(2 * n + 2 * tr->blck + 8) * sizeof(float));
    uint8_t *blkb = malloc((size_t)tr->type_size);
    if (!w || !blkb) { free(w); free(blkb); return false; }
    qg_ctx c = { t, mode, tr, U, n, w + 2 * n + tr->blck, w + 2 * n + 2 * tr->blck, w + 2 * n };
    for (int64_t r = 0; r < nrows; r++) {
        memcpy(w, src + r * n, (size_t)n * sizeof(float));
        gptq_row(&c, imp, w, (uint8_t *)dst + (uint64_t)r * rs, w + n, blkb);
    }
    free(w); free(blkb);
    return true;
}

/* ---- the lazy-batch form (GPTQ's: one product per block instead of a row-wide update per
 * column) ----
 * Within a block the columns are walked as above with feedback into the block only; the
 * chosen walk's errors E [R, B] are then moved into the rest of the rows at once:
 * W[r, b1..n) -= sum_j E[r, j] U[b0 + j, b1..n), the sum taken in j order with one IEEE
 * multiply and one subtract per term, exactly the operations the scalar walk performs on
 * each element.  So codes and bytes equal qt_quantize_gptq_ref's (tests/test_gptq.c). */

/* W[r, k] -= sum_j E[r, j] * Ub[j, k] for r < R, k < nc, j in order; W ld ldw, E ld B, Ub ld ldu. */
static void fb_update_ref(float *W, int64_t ldw, int64_t R, const float *E, int B, const float *Ub, int64_t ldu, int64_t nc) {
    enum { KT = 64 };
    for (int64_t k0 = 0; k0 < nc; k0 += KT) {
        int64_t kn = nc - k0 < KT ? nc - k0 : KT;
        for (int64_t r = 0; r < R; r++) {
            float *w = W + r * ldw + k0;
            const float *er = E + r * B;
            for (int j = 0; j < B; j++) {
                const float e = er[j], *u = Ub + (int64_t)j * ldu + k0;
                for (int64_t k = 0; k < kn; k++) w[k] -= e * u[k];
            }
        }
    }
}

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
/* The same operations, 4 rows x 16 columns in registers (mul then sub: no FMA). */
__attribute__((target("avx2")))
static void fb_update_avx2(float *W, int64_t ldw, int64_t R, const float *E, int B, const float *Ub, int64_t ldu, int64_t nc) {
    int64_t r = 0, k16 = nc - nc % 16;
    for (; r + 4 <= R; r += 4) {
        for (int64_t k = 0; k < k16; k += 16) {
            __m256 a[4][2];
            for (int i = 0; i < 4; i++) {
                a[i][0] = _mm256_loadu_ps(W + (r + i) * ldw + k);
                a[i][1] = _mm256_loadu_ps(W + (r + i) * ldw + k + 8);
            }
            const float *u = Ub + k;
            for (int j = 0; j < B; j++, u += ldu) {
                __m256 u0 = _mm256_loadu_ps(u), u1 = _mm256_loadu_ps(u + 8);
                for (int i = 0; i < 4; i++) {
                    __m256 e = _mm256_broadcast_ss(E + (r + i) * B + j);
                    a[i][0] = _mm256_sub_ps(a[i][0], _mm256_mul_ps(e, u0));
                    a[i][1] = _mm256_sub_ps(a[i][1], _mm256_mul_ps(e, u1));
                }
            }
            for (int i = 0; i < 4; i++) {
                _mm256_storeu_ps(W + (r + i) * ldw + k, a[i][0]);
                _mm256_storeu_ps(W + (r + i) * ldw + k + 8, a[i][1]);
            }
        }
        if (k16 < nc) fb_update_ref(W + r * ldw + k16, ldw, 4, E + r * B, B, Ub + k16, ldu, nc - k16);
    }
    if (r < R) fb_update_ref(W + r * ldw, ldw, R - r, E + r * B, B, Ub, ldu, nc);
}
#endif

typedef void (*fb_update_fn)(float *, int64_t, int64_t, const float *, int, const float *, int64_t, int64_t);

static fb_update_fn fb_update_best(void) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    if (__builtin_cpu_supports("avx2")) return fb_update_avx2;
#endif
    return fb_update_ref;
}

void qt_gptq_update(float *W, int64_t ldw, int64_t R, const float *E, int B, const float *Ub, int64_t ldu, int64_t nc,
                    bool ref) {
    (ref ? fb_update_ref : fb_update_best())(W, ldw, R, E, B, Ub, ldu, nc);
}

enum { LAZY_ROWS = 64 };   /* rows walked together: each product reuses U's block 64 times */

/* The product by OpenBLAS's sgemm (other rounding; one thread per call). */
static void fb_update_blas(float *W, int64_t ldw, int64_t R, const float *E, int B, const float *Ub, int64_t ldu, int64_t nc) {
    qx_blas_get()->sgemm(QX_CBLAS_ROW_MAJOR, QX_CBLAS_NO_TRANS, QX_CBLAS_NO_TRANS, (int)R, (int)nc, B, -1.f, E, B, Ub, (int)ldu, 1.f, W, (int)ldw);
}

static bool gptq_lazy(qt_type t, const float *src, void *dst, int64_t nrows, int64_t n, const float *U, const float *imp, bool own);

bool qt_quantize_gptq(qt_type t, const float *src, void *dst, int64_t nrows, int64_t n, const float *U, const float *imp) {
    return gptq_lazy(t, src, dst, nrows, n, U, imp, false);
}

bool qt_quantize_gptq_own(qt_type t, const float *src, void *dst, int64_t nrows, int64_t n, const float *U, const float *imp) {
    return gptq_lazy(t, src, dst, nrows, n, U, imp, true);
}

static bool gptq_lazy(qt_type t, const float *src, void *dst, int64_t nrows, int64_t n, const float *U, const float *imp, bool own) {
    const qt_traits *tr = qt_get_traits(t);
    qt_gptq_mode mode = qt_gptq_mode_of(t);
    if (mode == QT_GPTQ_NONE || qt_row_size(t, n) == 0 || !U) return false;
    const int B = tr->blck;
    const uint64_t rs = qt_row_size(t, n);
    /* W [LAZY_ROWS, n], wb [n] (block region only), E [LAZY_ROWS, B], eb [B], rec [B], q [B], h [8] */
    float *W = malloc((size_t)((LAZY_ROWS + 1) * n + (LAZY_ROWS + 3) * B + 8) * sizeof(float));
    uint8_t *blkb = malloc((size_t)tr->type_size);
    if (!W || !blkb) { free(W); free(blkb); return false; }
    float *wb = W + LAZY_ROWS * n, *E = wb + n, *eb = E + LAZY_ROWS * B, *rec = eb + B;
    qg_ctx c = { t, mode, tr, U, n, rec + B, rec + 2 * B, rec };
    fb_update_fn upd = !own && qx_blas_get() ? fb_update_blas : fb_update_best();
    for (int64_t r0 = 0; r0 < nrows; r0 += LAZY_ROWS) {
        int64_t R = nrows - r0 < LAZY_ROWS ? nrows - r0 : LAZY_ROWS;
        memcpy(W, src + r0 * n, (size_t)(R * n) * sizeof(float));
        for (int64_t b0 = 0; b0 < n; b0 += B) {
            const float *ib = imp ? imp + b0 : NULL;
            for (int64_t r = 0; r < R; r++) {
                float *w = W + r * n, *er = E + r * B;
                uint8_t *blk = (uint8_t *)dst + (uint64_t)(r0 + r) * rs + (uint64_t)(b0 / B) * tr->type_size;
                if (two_walks(&c, b0, b0 + B, ib, w, wb, blk, blkb, er, eb)) {
                    memcpy(blk, blkb, (size_t)tr->type_size);
                    memcpy(er, eb, (size_t)B * sizeof(float));
                }
            }
            if (b0 + B < n) upd(W + b0 + B, n, R, E, B, U + b0 * n + b0 + B, n, n - b0 - B);
        }
    }
    free(W); free(blkb);
    return true;
}
