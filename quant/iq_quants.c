/* quant/iq_quants.c — dequantizers and quantizers of the ggml i-quant types IQ2_XXS, IQ2_XS,
 * IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M (layouts and tables in quant/blocks_iq.h,
 * quant/iq_tables.c), exposed through qt_iq_traits().
 *
 * Dequantizers reproduce ggml's values bit for bit: they evaluate the same float expressions
 * in the same order (tests/test_quant_iq.c checks them against hand-decoded blocks).
 *
 * Quantizers minimize sum w[j] * (x[j] - q[j])^2 over the exact decoded values q (the grid's
 * real byte values, e.g. 8/25/43 for IQ2, and the scales as the decoder computes them), with
 * w = imp * sqrt(IQ_SIGMA_F * sigma2 + x^2) (sigma2: the super-block's mean square), as ggml;
 * without imp (token_embd, which has no importance) w = sqrt(IQ_SIGMA_F * sigma2 + x^2), as
 * the K types do: ggml's x^2 made our IQ3_S token_embd 16% worse in KLD (mini-v3 IQ3_S preset,
 * held out: 0.0189 -> 0.0159; mini-v3-moe IQ2_M: 0.0263 -> 0.0228).  The codes are chosen by that error, but the scales aim at the
 * *unbiased* value, not the least-squares one (see IQ_THETA).  Per super-block of 256:
 *   1. every scale sub-block (16 or 32 weights) first picks, among a few scales s, the one
 *      whose grid-free fit (every coordinate at its nearest level) is best after a least
 *      squares refit; then at that s every group (8 weights, or 4 for the IQ3 grids) takes its
 *      best lattice point: the per-coordinate nearest point when it is in the grid, else the
 *      best of a precomputed list of grid points near it (built once, thread-safe, at first
 *      use); s is refit (optionally Lloyd steps follow);
 *   2. the super-block scale d and the 3/4-bit sub-scales are chosen together by minimizing
 *      the sum of the sub-blocks' quadratic errors over a few candidate d;
 *   3. the groups are reassigned at the final quantized scales (and the sub-scale re-picked).
 * Signs: IQ2_XXS, IQ2_XS, IQ3_XXS store 7 of every 8 signs (even parity); a group with an odd
 * count of negatives flips the element where a wrong sign costs least (smallest imp*|x|).
 * IQ1_S/IQ1_M add a shift of +-1/8 per 32 (IQ1_S) or per 8 (IQ1_M); both are tried.
 * Everything is scalar, per row, deterministic; this file is also the reference (_ref). */
#include "quant/qt.h"
#include "quant/blocks_iq.h"

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ======================================================================== dequantizers */

static inline float iq_f16(uint16_t h) { return qt_f16_to_f32(h); }
static inline uint8_t g8(uint64_t g, int j) { return (uint8_t)(g >> (8 * j)); }
static inline uint8_t g4(uint32_t g, int j) { return (uint8_t)(g >> (8 * j)); }
static inline uint32_t rd32(const void *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint16_t rd16(const void *p) { uint16_t v; memcpy(&v, p, 2); return v; }

static void deq_iq2_xxs(const void *src, float *y, int64_t n) {
    const qt_block_iq2_xxs *x = src;
    for (int64_t i = 0; i < n / QT_IQ_QK; i++) {
        const float d = iq_f16(x[i].d);
        for (int ib = 0; ib < 8; ib++) {
            const uint32_t a0 = rd32(x[i].qs + 4 * ib), a1 = rd32(x[i].qs + 4 * ib + 2);
            const float db = d * (0.5f + (a1 >> 28)) * 0.25f;
            for (int l = 0; l < 4; l++) {
                const uint64_t g = qt_iq2xxs_grid[(a0 >> (8 * l)) & 255];
                const uint8_t s = qt_iq_ksigns[(a1 >> (7 * l)) & 127];
                for (int j = 0; j < 8; j++) y[j] = db * g8(g, j) * (s & qt_iq_kmask[j] ? -1.f : 1.f);
                y += 8;
            }
        }
    }
}

static void deq_iq2_xs(const void *src, float *y, int64_t n) {
    const qt_block_iq2_xs *x = src;
    for (int64_t i = 0; i < n / QT_IQ_QK; i++) {
        const float d = iq_f16(x[i].d);
        for (int ib = 0; ib < 8; ib++) {
            float db[2];
            db[0] = d * (0.5f + (x[i].scales[ib] & 0xf)) * 0.25f;
            db[1] = d * (0.5f + (x[i].scales[ib] >> 4)) * 0.25f;
            for (int l = 0; l < 4; l++) {
                const uint16_t q = x[i].qs[4 * ib + l];
                const uint64_t g = qt_iq2xs_grid[q & 511];
                const uint8_t s = qt_iq_ksigns[q >> 9];
                for (int j = 0; j < 8; j++) y[j] = db[l / 2] * g8(g, j) * (s & qt_iq_kmask[j] ? -1.f : 1.f);
                y += 8;
            }
        }
    }
}

static void deq_iq2_s(const void *src, float *y, int64_t n) {
    const qt_block_iq2_s *x = src;
    for (int64_t i = 0; i < n / QT_IQ_QK; i++) {
        const float d = iq_f16(x[i].d);
        const uint8_t *qs = x[i].qs, *signs = x[i].qs + QT_IQ_QK / 8;
        for (int ib = 0; ib < 8; ib++) {
            float db[2];
            db[0] = d * (0.5f + (x[i].scales[ib] & 0xf)) * 0.25f;
            db[1] = d * (0.5f + (x[i].scales[ib] >> 4)) * 0.25f;
            for (int l = 0; l < 4; l++) {
                const float dl = db[l / 2];
                const uint64_t g = qt_iq2s_grid[qs[l] | ((x[i].qh[ib] << (8 - 2 * l)) & 0x300)];
                for (int j = 0; j < 8; j++) y[j] = dl * g8(g, j) * (signs[l] & qt_iq_kmask[j] ? -1.f : 1.f);
                y += 8;
            }
            qs += 4;
            signs += 4;
        }
    }
}

static void deq_iq3_xxs(const void *src, float *y, int64_t n) {
    const qt_block_iq3_xxs *x = src;
    for (int64_t i = 0; i < n / QT_IQ_QK; i++) {
        const float d = iq_f16(x[i].d);
        const uint8_t *qs = x[i].qs, *ss = x[i].qs + QT_IQ_QK / 4;
        for (int ib = 0; ib < 8; ib++) {
            const uint32_t a = rd32(ss + 4 * ib);
            const float db = d * (0.5f + (a >> 28)) * 0.5f;
            for (int l = 0; l < 4; l++) {
                const uint8_t s = qt_iq_ksigns[(a >> (7 * l)) & 127];
                const uint32_t g1 = qt_iq3xxs_grid[qs[2 * l]], g2 = qt_iq3xxs_grid[qs[2 * l + 1]];
                for (int j = 0; j < 4; j++) {
                    y[j + 0] = db * g4(g1, j) * (s & qt_iq_kmask[j + 0] ? -1.f : 1.f);
                    y[j + 4] = db * g4(g2, j) * (s & qt_iq_kmask[j + 4] ? -1.f : 1.f);
                }
                y += 8;
            }
            qs += 8;
        }
    }
}

static void deq_iq3_s(const void *src, float *y, int64_t n) {
    const qt_block_iq3_s *x = src;
    for (int64_t i = 0; i < n / QT_IQ_QK; i++) {
        const float d = iq_f16(x[i].d);
        const uint8_t *qs = x[i].qs, *qh = x[i].qh, *signs = x[i].signs;
        for (int ib = 0; ib < 8; ib++) {
            const int sc = (x[i].scales[ib / 2] >> (4 * (ib % 2))) & 0xf;
            const float db = d * (1 + 2 * sc);
            const int h = qh[ib];
            for (int l = 0; l < 4; l++) {
                const uint32_t g1 = qt_iq3s_grid[qs[2 * l + 0] | ((h << (8 - 2 * l)) & 256)];
                const uint32_t g2 = qt_iq3s_grid[qs[2 * l + 1] | ((h << (7 - 2 * l)) & 256)];
                for (int j = 0; j < 4; j++) {
                    y[j + 0] = db * g4(g1, j) * (signs[l] & qt_iq_kmask[j + 0] ? -1.f : 1.f);
                    y[j + 4] = db * g4(g2, j) * (signs[l] & qt_iq_kmask[j + 4] ? -1.f : 1.f);
                }
                y += 8;
            }
            qs += 8;
            signs += 4;
        }
    }
}

static void deq_iq1_s(const void *src, float *y, int64_t n) {
    const qt_block_iq1_s *x = src;
    for (int64_t i = 0; i < n / QT_IQ_QK; i++) {
        const float d = iq_f16(x[i].d);
        const uint8_t *qs = x[i].qs;
        for (int ib = 0; ib < 8; ib++) {
            const uint16_t h = x[i].qh[ib];
            const float dl = d * (2 * ((h >> 12) & 7) + 1);
            const float delta = h & 0x8000 ? -QT_IQ1S_DELTA : QT_IQ1S_DELTA;
            for (int l = 0; l < 4; l++) {
                const uint64_t g = qt_iq1s_grid[qs[l] | (((h >> (3 * l)) & 7) << 8)];
                for (int j = 0; j < 8; j++) y[j] = dl * ((int8_t)g8(g, j) + delta);
                y += 8;
            }
            qs += 4;
        }
    }
}

/* IQ1_M's d: the top nibbles of the four scale words, low nibble first. */
static inline uint16_t iq1m_d_bits(const uint8_t *scales) {
    const uint16_t s0 = rd16(scales), s1 = rd16(scales + 2), s2 = rd16(scales + 4), s3 = rd16(scales + 6);
    return (uint16_t)((s0 >> 12) | ((s1 >> 8) & 0x00f0) | ((s2 >> 4) & 0x0f00) | (s3 & 0xf000));
}

static void deq_iq1_m(const void *src, float *y, int64_t n) {
    const qt_block_iq1_m *x = src;
    for (int64_t i = 0; i < n / QT_IQ_QK; i++) {
        uint16_t sc[4];
        for (int k = 0; k < 4; k++) sc[k] = rd16(x[i].scales + 2 * k);
        const float d = iq_f16(iq1m_d_bits(x[i].scales));
        const uint8_t *qs = x[i].qs, *qh = x[i].qh;
        for (int ib = 0; ib < 8; ib++) {
            const float dl1 = d * (2 * ((sc[ib / 2] >> (6 * (ib % 2) + 0)) & 0x7) + 1);
            const float dl2 = d * (2 * ((sc[ib / 2] >> (6 * (ib % 2) + 3)) & 0x7) + 1);
            const int idx[4] = { qs[0] | ((qh[0] << 8) & 0x700), qs[1] | ((qh[0] << 4) & 0x700),
                                 qs[2] | ((qh[1] << 8) & 0x700), qs[3] | ((qh[1] << 4) & 0x700) };
            const float delta[4] = { qh[0] & 0x08 ? -QT_IQ1S_DELTA : QT_IQ1S_DELTA,
                                     qh[0] & 0x80 ? -QT_IQ1S_DELTA : QT_IQ1S_DELTA,
                                     qh[1] & 0x08 ? -QT_IQ1S_DELTA : QT_IQ1S_DELTA,
                                     qh[1] & 0x80 ? -QT_IQ1S_DELTA : QT_IQ1S_DELTA };
            for (int l = 0; l < 4; l++) {
                const uint64_t g = qt_iq1s_grid[idx[l]];
                const float dl = l < 2 ? dl1 : dl2;
                for (int j = 0; j < 8; j++) y[j] = dl * ((int8_t)g8(g, j) + delta[l]);
                y += 8;
            }
            qs += 4;
            qh += 2;
        }
    }
}

/* ======================================================================== lattices */

enum { LAT_IQ2XXS, LAT_IQ2XS, LAT_IQ2S, LAT_IQ3XXS, LAT_IQ3S, LAT_IQ1S, LAT_COUNT };

/* A grid seen as a subset of a product lattice: coordinate j of a point is one of nlev
 * levels; a point's code is sum_j l_j * nlev^j (3^8 = 6561 or 8^4 = 4096 codes, so the
 * code map stays in L1). */
typedef struct {
    int dim, nlev, ngrid, nshell, ncode;
    float lev[8];          /* level values, ascending (grid bytes; -1,0,1 for IQ1) */
    int pw[8];             /* nlev^j */
    uint8_t *glev;         /* (ngrid, dim) level index of each grid coordinate */
    int16_t *map;          /* (ncode) code -> grid index (>= 0), or -(slot+1) */
    int32_t *slot;         /* offset into nb of each off-grid code's list */
    uint16_t *nb;          /* lists: count, then grid indices (ascending) */
    int ok;
} iq_lattice;

static iq_lattice g_lat[LAT_COUNT];
static pthread_once_t g_once[LAT_COUNT] = { PTHREAD_ONCE_INIT, PTHREAD_ONCE_INIT, PTHREAD_ONCE_INIT,
                                            PTHREAD_ONCE_INIT, PTHREAD_ONCE_INIT, PTHREAD_ONCE_INIT };

static int grid_byte(int lat, int g, int j) {
    switch (lat) {
    case LAT_IQ2XXS: return g8(qt_iq2xxs_grid[g], j);
    case LAT_IQ2XS:  return g8(qt_iq2xs_grid[g], j);
    case LAT_IQ2S:   return g8(qt_iq2s_grid[g], j);
    case LAT_IQ3XXS: return g4(qt_iq3xxs_grid[g], j);
    case LAT_IQ3S:   return g4(qt_iq3s_grid[g], j);
    default:         return (int8_t)g8(qt_iq1s_grid[g], j);
    }
}

/* Builds the neighbour list of every off-grid code: the grid points within the `nshell`
 * smallest distinct (unweighted) distances from the code's point. */
static int lat_build_neighbours(iq_lattice *L) {
    int *d2 = malloc(sizeof(int) * L->ngrid);
    size_t cap = 1 << 16, used = 0;
    uint16_t *nb = malloc(cap * sizeof(uint16_t));
    L->slot = malloc(sizeof(int32_t) * L->ncode);
    if (!d2 || !nb || !L->slot) { free(d2); free(nb); return 0; }
    int nslot = 0;
    for (int c = 0; c < L->ncode; c++) {
        if (L->map[c] >= 0) continue;
        int sq[8][8];
        for (int j = 0; j < L->dim; j++) {
            const int lj = (c / L->pw[j]) % L->nlev;
            for (int l = 0; l < L->nlev; l++) {
                const int e = (int)L->lev[l] - (int)L->lev[lj];
                sq[j][l] = e * e;
            }
        }
        for (int g = 0; g < L->ngrid; g++) {
            const uint8_t *gl = L->glev + g * L->dim;
            int s = 0;
            for (int j = 0; j < L->dim; j++) s += sq[j][gl[j]];
            d2[g] = s;
        }
        int lim = -1;
        for (int k = 0; k < L->nshell; k++) {          /* k-th smallest distinct distance */
            int m = INT32_MAX;
            for (int g = 0; g < L->ngrid; g++) if (d2[g] > lim && d2[g] < m) m = d2[g];
            if (m == INT32_MAX) break;
            lim = m;
        }
        size_t cnt = 0;
        for (int g = 0; g < L->ngrid; g++) cnt += d2[g] <= lim;
        if (used + cnt + 1 > cap) {
            while (used + cnt + 1 > cap) cap *= 2;
            uint16_t *t = realloc(nb, cap * sizeof(uint16_t));
            if (!t) { free(d2); free(nb); return 0; }
            nb = t;
        }
        L->slot[nslot] = (int32_t)used;
        L->map[c] = (int16_t)(-nslot - 1);
        nslot++;
        nb[used++] = (uint16_t)cnt;
        for (int g = 0; g < L->ngrid; g++) if (d2[g] <= lim) nb[used++] = (uint16_t)g;
    }
    free(d2);
    L->nb = nb;
    return 1;
}

/* QT_IQ_TUNE (never defined by the Makefile) exposes the search parameters to the out-of-repo
 * tuning program that compared speed and accuracy against ggml. */
#ifdef QT_IQ_TUNE
static int g_nshell[LAT_COUNT] = { 2, 2, 2, 2, 2, 2 };
void qt_iq_tune_shell(int lat, int n) { g_nshell[lat] = n; }
#else
static const int g_nshell[LAT_COUNT] = { 2, 2, 2, 2, 2, 2 };
#endif

static void lat_init(int id) {
    static const int dims[LAT_COUNT] = { 8, 8, 8, 4, 4, 8 };
    static const int ngrids[LAT_COUNT] = { 256, 512, 1024, 256, 512, QT_IQ1S_NGRID };
    static const float lev2[3] = { 8, 25, 43 }, lev3x[8] = { 4, 12, 20, 28, 36, 44, 52, 62 },
                       lev3s[8] = { 1, 3, 5, 7, 9, 11, 13, 15 }, lev1[3] = { -1, 0, 1 };
    iq_lattice *L = &g_lat[id];
    L->dim = dims[id];
    L->ngrid = ngrids[id];
    L->nshell = g_nshell[id];
    const float *lev = id <= LAT_IQ2S ? lev2 : id == LAT_IQ3XXS ? lev3x : id == LAT_IQ3S ? lev3s : lev1;
    L->nlev = id == LAT_IQ3XXS || id == LAT_IQ3S ? 8 : 3;
    memcpy(L->lev, lev, sizeof(float) * L->nlev);
    L->ncode = 1;
    for (int j = 0; j < L->dim; j++) { L->pw[j] = L->ncode; L->ncode *= L->nlev; }
    L->glev = malloc((size_t)L->ngrid * L->dim);
    L->map = malloc(sizeof(int16_t) * L->ncode);
    if (!L->glev || !L->map) return;
    for (int c = 0; c < L->ncode; c++) L->map[c] = -1;
    for (int g = 0; g < L->ngrid; g++) {
        int code = 0;
        for (int j = 0; j < L->dim; j++) {
            const int b = grid_byte(id, g, j);
            int l = 0;
            while (l < L->nlev && (int)L->lev[l] != b) l++;
            if (l == L->nlev) return;                        /* table corrupt: leave !ok */
            L->glev[g * L->dim + j] = (uint8_t)l;
            code += l * L->pw[j];
        }
        L->map[code] = (int16_t)g;
    }
    L->ok = lat_build_neighbours(L);
}

static void lat_init0(void) { lat_init(0); }
static void lat_init1(void) { lat_init(1); }
static void lat_init2(void) { lat_init(2); }
static void lat_init3(void) { lat_init(3); }
static void lat_init4(void) { lat_init(4); }
static void lat_init5(void) { lat_init(5); }

static const iq_lattice *lat_get(int id) {
    static void (*const fns[LAT_COUNT])(void) = { lat_init0, lat_init1, lat_init2, lat_init3, lat_init4, lat_init5 };
    pthread_once(&g_once[id], fns[id]);
    return g_lat[id].ok ? &g_lat[id] : NULL;
}

/* Best grid point for one group: targets t[0..dim), weights w, scale s (coordinate value
 * s*lev[l]), lv[j] = level nearest t[j]/s.  Returns the grid index; *cost = its
 * sum w (t - s*lev)^2.  On the grid, the per-coordinate nearest point is the best; off it,
 * the best of the code's neighbour list. */
static int lat_search(const iq_lattice *L, const float *lev, const float *t, const float *w, float s,
                      const uint8_t *lv, float *cost) {
    const int dim = L->dim, nl = L->nlev;
    int code = 0;
    for (int j = 0; j < dim; j++) code += lv[j] * L->pw[j];
    const int m = L->map[code];
    if (m >= 0) {
        float c = 0;
        for (int j = 0; j < dim; j++) { const float e = t[j] - s * lev[lv[j]]; c += w[j] * e * e; }
        *cost = c;
        return m;
    }
    const uint16_t *nb = L->nb + L->slot[-m - 1];
    const int cnt = nb[0];
    int best = nb[1];
    float bc = FLT_MAX;
    if (nl == 8) {                       /* 4-dim, 8 levels: lists are short, evaluate directly */
        float sl[8];
        for (int l = 0; l < 8; l++) sl[l] = s * lev[l];
        for (int k = 1; k <= cnt; k++) {
            const uint8_t *gl = L->glev + nb[k] * 4;
            const float d0 = t[0] - sl[gl[0]], d1 = t[1] - sl[gl[1]], d2 = t[2] - sl[gl[2]], d3 = t[3] - sl[gl[3]];
            const float c = (w[0] * d0 * d0 + w[1] * d1 * d1) + (w[2] * d2 * d2 + w[3] * d3 * d3);
            if (c < bc) { bc = c; best = nb[k]; }
        }
        *cost = bc;
        return best;
    }
    float e[8][3];
    for (int j = 0; j < 8; j++)
        for (int l = 0; l < 3; l++) { const float df = t[j] - s * lev[l]; e[j][l] = w[j] * df * df; }
    for (int k = 1; k <= cnt; k++) {     /* 8-dim, 3 levels */
        const uint8_t *gl = L->glev + nb[k] * 8;
        const float c = ((e[0][gl[0]] + e[1][gl[1]]) + (e[2][gl[2]] + e[3][gl[3]])) +
                        ((e[4][gl[4]] + e[5][gl[5]]) + (e[6][gl[6]] + e[7][gl[7]]));
        if (c < bc) { bc = c; best = nb[k]; }
    }
    *cost = bc;
    return best;
}

/* ======================================================================== quantizer */

/* Element weights with an importance vector: imp * sqrt(IQ_SIGMA_F * sigma2 + x^2), ggml's
 * factor.  The importance alone (before issue 11) treats a small and a large weight of one
 * column alike; on mini-v3 IQ2_XXS it cost 17% KLD (held out, 0.1179 vs 0.1357 with it). */
#define IQ_SIGMA_F 2.f
/* The scale of a sub-block: with A = sum w t^2, B = sum w t v, C = sum w v^2 of its codes v,
 * the least-squares scale B/C shrinks the block (sum (s v)^2 < sum t^2: a 1-2 bit codebook
 * rounds most weights toward zero), and the shrinkage compounds through the layers: the
 * weighted error per tensor is minimal, the model's KLD is not (issue 11: 1.7-1.9x ggml's).
 * The target is B/C * (AC/B^2)^IQ_THETA; 1 makes it A/B, the unbiased scale (sum w t s v =
 * sum w t^2).  Chosen by held-out KLD on mini-v3 (imatrix of calib.txt's first half, KLD on
 * its second half, ctx 256, 64 windows), IQ2_XXS theta 0 / 0.5 / 1 / 1.5 / 2: 0.1179 / 0.0928 /
 * 0.0783 / 0.0794 / 0.0932; IQ1_S theta 0 / 0.75 / 1 / 1.5: 0.2324 / 0.1631 / 0.1599 / 0.1968. */
#define IQ_THETA 1.f

enum { SIGN_PARITY, SIGN_FREE, SIGN_NONE };
enum { DELTA_NONE, DELTA_SUB, DELTA_GROUP };

typedef struct {
    int lat, sbs, sign, delta, smax;
    int ntrial;            /* trial scales per sub-block */
    float f_lo, f_hi;      /* trial range, relative to max|t| / top level */
    int nlloyd;
    int nfree;             /* > 0: first pick s among nfree scales ignoring the grid */
    int nfinal;            /* reassignment rounds at the quantized scale */
} iq_kind;

enum { K_IQ2XXS, K_IQ2XS, K_IQ2S, K_IQ3XXS, K_IQ3S, K_IQ1S, K_IQ1M, K_COUNT };

#ifdef QT_IQ_TUNE
static iq_kind g_kind[K_COUNT] = {
#else
static const iq_kind g_kind[K_COUNT] = {
#endif
    [K_IQ2XXS] = { LAT_IQ2XXS, 32, SIGN_PARITY, DELTA_NONE, 15, 1, 0.5f, 1.1f, 0, 3, 1 },
    [K_IQ2XS]  = { LAT_IQ2XS, 16, SIGN_PARITY, DELTA_NONE, 15, 1, 0.5f, 1.1f, 0, 3, 1 },
    [K_IQ2S]   = { LAT_IQ2S, 16, SIGN_FREE, DELTA_NONE, 15, 1, 0.5f, 1.1f, 0, 3, 1 },
    [K_IQ3XXS] = { LAT_IQ3XXS, 32, SIGN_PARITY, DELTA_NONE, 15, 3, 0.5f, 1.1f, 1, 4, 1 },
    [K_IQ3S]   = { LAT_IQ3S, 32, SIGN_FREE, DELTA_NONE, 15, 2, 0.5f, 1.1f, 1, 4, 1 },
    [K_IQ1S]   = { LAT_IQ1S, 32, SIGN_NONE, DELTA_SUB, 7, 1, 0.5f, 1.1f, 0, 3, 1 },
    [K_IQ1M]   = { LAT_IQ1S, 16, SIGN_NONE, DELTA_GROUP, 7, 1, 0.5f, 1.1f, 0, 3, 1 },
};

/* One scale sub-block (n <= 32 weights) being fitted. */
typedef struct {
    const iq_kind *k;
    const iq_lattice *L;
    int n;
    float t[32], w[32];    /* targets (|x| with parity flips, or x for IQ1) and weights */
    float A;               /* sum w t^2 */
    float lev[2][8];       /* level values: [shift] (IQ1: g + delta, shift 0: +1/8) */
    float mid[2][7];       /* midpoints between consecutive levels */
} iq_sub;

typedef struct {
    uint16_t idx[8];       /* grid index per group */
    uint8_t sh[8];         /* IQ1 shift per group (0: +delta, 1: -delta) */
    float B, C, cost;      /* sum w t v, sum w v^2, sum w (t - s v)^2 at the scale used */
} iq_fit;

/* Nearest level of every t[i]/s (branch-free, vectorizable). */
static void sub_levels(const iq_sub *S, int sh, float s, uint8_t *lv) {
    const float inv = 1.f / s;
    const int nm = S->L->nlev - 1;
    const float *mid = S->mid[sh];
    for (int i = 0; i < S->n; i++) {
        const float u = S->t[i] * inv;
        int l = 0;
        for (int k = 0; k < nm; k++) l += u > mid[k];
        lv[i] = (uint8_t)l;
    }
}

/* Assigns every group at scale s > 0.  shift_fixed >= 0 forces one IQ1 shift everywhere. */
static void sub_assign(const iq_sub *S, float s, int shift_fixed, iq_fit *f) {
    const int dim = S->L->dim, ng = S->n / dim;
    uint8_t lv[2][32];
    const int sh0 = shift_fixed < 0 ? 0 : shift_fixed;
    sub_levels(S, sh0, s, lv[0]);
    if (shift_fixed < 0) sub_levels(S, 1, s, lv[1]);
    float B = 0, C = 0, cost = 0;
    for (int g = 0; g < ng; g++) {
        const float *t = S->t + g * dim, *w = S->w + g * dim;
        int sh = sh0;
        float c;
        int gi = lat_search(S->L, S->lev[sh], t, w, s, lv[0] + g * dim, &c);
        if (shift_fixed < 0) {
            float c1;
            const int g1 = lat_search(S->L, S->lev[1], t, w, s, lv[1] + g * dim, &c1);
            if (c1 < c) { c = c1; gi = g1; sh = 1; }
        }
        f->idx[g] = (uint16_t)gi;
        f->sh[g] = (uint8_t)sh;
        const uint8_t *gl = S->L->glev + gi * dim;
        for (int j = 0; j < dim; j++) {
            const float v = S->lev[sh][gl[j]];
            B += w[j] * t[j] * v;
            C += w[j] * v * v;
        }
        cost += c;
    }
    f->B = B; f->C = C; f->cost = cost;
}

static inline float fit_err(const iq_sub *S, const iq_fit *f) {
    return f->C > 0 ? S->A - f->B * f->B / f->C : S->A;
}

/* The scale a sub-block's codes aim at (IQ_THETA); 0 when the fit is degenerate. */
static inline float fit_target(float A, float B, float C) {
    if (!(B > 0 && C > 0)) return 0;
    const float r = A * C / (B * B);       /* >= 1 by Cauchy-Schwarz, up to rounding */
    return B / C * powf(r > 1 ? r : 1, IQ_THETA);
}

/* Least-squares sums of the grid-free assignment at scale s (every coordinate at its nearest
 * level, as if every lattice point were in the grid), for shifts 0 and (nsh == 2) 1.
 * IQ1_M (DELTA_GROUP): per group of 8 the better shift, summed into B[0], C[0]. */
static void sub_free(const iq_sub *S, float s, int nsh, float *B, float *C) {
    const float inv = 1.f / s;
    const int n = S->n;
    if (S->L->nlev == 3 && S->k->delta == DELTA_GROUP) {
        float sb = 0, sc = 0;
        for (int g = 0; g < n / 8; g++) {
            float b2[2] = { 0, 0 }, c2[2] = { 0, 0 }, e2[2] = { 0, 0 };
            for (int h = 0; h < 2; h++) {
                const float m0 = S->mid[h][0], m1 = S->mid[h][1];
                for (int j = 0; j < 8; j++) {
                    const float t = S->t[8 * g + j], w = S->w[8 * g + j], u = t * inv;
                    const int l = (u > m0) + (u > m1);          /* setcc, no branch */
                    const float v = S->lev[h][l], e = t - s * v;
                    b2[h] += w * t * v; c2[h] += w * v * v; e2[h] += w * e * e;
                }
            }
            const int h = e2[1] < e2[0];
            sb += b2[h]; sc += c2[h];
        }
        B[0] = sb; C[0] = sc;
        return;
    }
    if (S->L->nlev == 3) {
        for (int h = 0; h < nsh; h++) {
            const float m0 = S->mid[h][0], m1 = S->mid[h][1];
            const float lv[3] = { S->lev[h][0], S->lev[h][1], S->lev[h][2] };
            float b4[4] = { 0, 0, 0, 0 }, c4[4] = { 0, 0, 0, 0 };
            for (int i = 0; i < n; i += 4)
                for (int j = 0; j < 4; j++) {
                    const float t = S->t[i + j], w = S->w[i + j], u = t * inv;
                    const float v = lv[(u > m0) + (u > m1)];
                    b4[j] += w * t * v; c4[j] += w * v * v;
                }
            B[h] = (b4[0] + b4[1]) + (b4[2] + b4[3]);
            C[h] = (c4[0] + c4[1]) + (c4[2] + c4[3]);
        }
        return;
    }
    float mid[7], lev[8];
    for (int k = 0; k < 7; k++) mid[k] = S->mid[0][k];
    for (int k = 0; k < 8; k++) lev[k] = S->lev[0][k];
    float b4[4] = { 0, 0, 0, 0 }, c4[4] = { 0, 0, 0, 0 };
    for (int i = 0; i < n; i += 4)
        for (int j = 0; j < 4; j++) {
            const float t = S->t[i + j], u = t * inv;
            int l = 0;
            for (int k = 0; k < 7; k++) l += u > mid[k];
            const float v = lev[l];
            b4[j] += S->w[i + j] * t * v;
            c4[j] += S->w[i + j] * v * v;
        }
    B[0] = (b4[0] + b4[1]) + (b4[2] + b4[3]);
    C[0] = (c4[0] + c4[1]) + (c4[2] + c4[3]);
}

/* Best fit of a sub-block with a free float scale; returns the scale (>= 0).  IQ1_S
 * (DELTA_SUB) alternates the shift over the trials and keeps the best one in *shift;
 * IQ1_M (DELTA_GROUP) picks a shift per group inside sub_assign. */
static float sub_solve(const iq_sub *S, iq_fit *best, int *shift) {
    const iq_kind *k = S->k;
    const int mode = k->delta == DELTA_GROUP ? -1 : 0;
    const float top = S->lev[0][S->L->nlev - 1];
    float amax = 0;
    for (int i = 0; i < S->n; i++) amax = fmaxf(amax, fabsf(S->t[i]));
    *shift = 0;
    if (!(amax > 0)) { sub_assign(S, 1.f, mode, best); return 0; }   /* honest B, C */
    const float s0 = amax / top;
    float be = FLT_MAX;
    float sf = 0;
    int shf = 0;
    if (k->nfree > 0) {
        float bf = FLT_MAX;
        for (int it = 0; it < k->nfree; it++) {
            const float f = k->nfree > 1 ? k->f_lo + (k->f_hi - k->f_lo) * it / (k->nfree - 1) : 1.f;
            const int nsh = k->delta == DELTA_SUB ? 2 : 1;
            float B[2], C[2];
            sub_free(S, s0 * f, nsh, B, C);
            for (int sh = 0; sh < nsh; sh++)
                if (B[sh] > 0 && C[sh] > 0 && S->A - B[sh] * B[sh] / C[sh] < bf) {
                    bf = S->A - B[sh] * B[sh] / C[sh]; sf = B[sh] / C[sh]; shf = sh;
                }
        }
        if (!(sf > 0)) sf = s0;
    }
    for (int it = 0; it < k->ntrial; it++) {
        float st;
        int sh;
        if (k->nfree > 0) {
            st = sf * (1.f + 0.06f * (it - 0.5f * (k->ntrial - 1)));
            sh = k->delta == DELTA_SUB ? shf : mode;
        } else {
            st = s0 * (k->ntrial > 1 ? k->f_lo + (k->f_hi - k->f_lo) * it / (k->ntrial - 1) : 1.f);
            sh = k->delta == DELTA_SUB ? it & 1 : mode;
        }
        iq_fit cur;
        sub_assign(S, st, sh, &cur);
        const float e = fit_err(S, &cur);
        if (cur.C > 0 && cur.B > 0 && e < be) { be = e; *best = cur; *shift = sh < 0 ? 0 : sh; }
    }
    if (be == FLT_MAX) { sub_assign(S, s0, mode, best); return 0; }
    const int sh = k->delta == DELTA_SUB ? *shift : mode;
    float s = best->B / best->C;
    for (int it = 0; it < k->nlloyd; it++) {
        iq_fit cur;
        sub_assign(S, s, sh, &cur);
        const float e = fit_err(S, &cur);
        if (!(cur.C > 0 && cur.B > 0 && e < be)) break;
        be = e; *best = cur;
        s = cur.B / cur.C;
    }
    return s;
}

/* Decoded sub-block multiplier of sub-scale code q, exactly as the dequantizer computes it
 * (value = result * level value). */
static inline float kind_dl(int kind, float d, int q) {
    switch (kind) {
    case K_IQ2XXS: case K_IQ2XS: case K_IQ2S: return d * (0.5f + q) * 0.25f;
    case K_IQ3XXS: return d * (0.5f + q) * 0.5f;
    default: return d * (2 * q + 1);
    }
}
/* d = D * kind_dmul: D is the multiplier of (2q+1). */
static inline float kind_dmul(int kind) {
    return kind <= K_IQ2S ? 8.f : kind == K_IQ3XXS ? 4.f : 1.f;
}

static inline int nearest_code(float s, float D, int smax) {
    const float q = 0.5f * (s / D - 1.f);
    int l = (int)lrintf(q);
    return l < 0 ? 0 : l > smax ? smax : l;
}

/* Per super-block state. */
typedef struct {
    int nsub;
    iq_sub sub[16];
    iq_fit fit[16];
    float scale[16];
    int code[16];
    uint8_t sbsign[16][4];   /* per sub-block, per 8 weights: sign bits (1 = negative) */
    int subshift[16];        /* IQ1_S: shift of the sub-block */
    float d;                 /* f16-rounded super-block scale */
} iq_super;

static void sub_prepare(int kind, const iq_lattice *L, const float *x, const float *imp, float sig2,
                        int n, iq_sub *S, uint8_t *signs) {
    const iq_kind *k = &g_kind[kind];
    S->k = k; S->L = L; S->n = n;
    float wsum = 0;
    for (int i = 0; i < n; i++) {
        S->w[i] = (imp ? imp[i] : 1.f) * sqrtf(IQ_SIGMA_F * sig2 + x[i] * x[i]);
        wsum += S->w[i];
    }
    if (!(wsum > 0)) for (int i = 0; i < n; i++) S->w[i] = sig2 > 0 ? sig2 : 1.f;
    if (k->sign == SIGN_NONE) {
        for (int i = 0; i < n; i++) S->t[i] = x[i];
    } else {
        for (int g = 0; g < n / 8; g++) {
            uint8_t sb = 0;
            int neg = 0;
            for (int j = 0; j < 8; j++) {
                const float v = x[8 * g + j];
                S->t[8 * g + j] = fabsf(v);
                if (v < 0) { sb |= (uint8_t)(1u << j); neg++; }
            }
            if (k->sign == SIGN_PARITY && (neg & 1)) {
                int jm = 0;
                float cm = FLT_MAX;
                for (int j = 0; j < 8; j++) {
                    const float c = S->w[8 * g + j] * S->t[8 * g + j];
                    if (c < cm) { cm = c; jm = j; }
                }
                S->t[8 * g + jm] = -S->t[8 * g + jm];
                sb ^= (uint8_t)(1u << jm);
            }
            signs[g] = sb;
        }
    }
    float A = 0;
    for (int i = 0; i < n; i++) A += S->w[i] * S->t[i] * S->t[i];
    S->A = A;
    for (int l = 0; l < L->nlev; l++) {
        S->lev[0][l] = L->lev[l] + (k->sign == SIGN_NONE ? QT_IQ1S_DELTA : 0.f);
        S->lev[1][l] = L->lev[l] - (k->sign == SIGN_NONE ? QT_IQ1S_DELTA : 0.f);
    }
    for (int l = 0; l + 1 < L->nlev; l++)
        for (int h = 0; h < 2; h++) S->mid[h][l] = 0.5f * (S->lev[h][l] + S->lev[h][l + 1]);
}

/* Chooses d (f16) and the sub-scale codes minimizing sum_b C_b (s_b - target_b)^2, the
 * sub-blocks' error growth away from their target scales (scale[] holds the targets). */
static void choose_d(int kind, iq_super *Q) {
    const iq_kind *k = &g_kind[kind];
    float smax = 0;
    for (int b = 0; b < Q->nsub; b++) smax = fmaxf(smax, Q->scale[b]);
    Q->d = 0;
    for (int b = 0; b < Q->nsub; b++) Q->code[b] = 0;
    if (!(smax > 0)) return;
    const float dm = kind_dmul(kind);
    float bestE = FLT_MAX, bestD = smax / (2 * k->smax + 1);
    for (int c = -6; c <= 4; c++) {
        const float D = smax / (2 * k->smax + 1) * (1.f + 0.03f * c);
        const float d = qt_f16_to_f32(qt_f32_to_f16(D * dm));
        if (!(d > 0)) continue;
        float E = 0;
        for (int b = 0; b < Q->nsub; b++) {
            const iq_fit *f = &Q->fit[b];
            const float dl = kind_dl(kind, d, nearest_code(Q->scale[b], d / dm, k->smax));
            E += dl * (dl * f->C - 2 * f->C * Q->scale[b]);
        }
        if (E < bestE) { bestE = E; bestD = d; }
    }
    Q->d = bestD;
    for (int b = 0; b < Q->nsub; b++) Q->code[b] = nearest_code(Q->scale[b], bestD / dm, k->smax);
}

/* Reassigns each sub-block's groups at its final decoded scale; re-picks the code once
 * (nearer the new fit's target scale). */
static void final_pass(int kind, iq_super *Q) {
    const iq_kind *k = &g_kind[kind];
    const float dm = kind_dmul(kind);
    if (!(Q->d > 0)) return;
    for (int b = 0; b < Q->nsub; b++) {
        const iq_sub *S = &Q->sub[b];
        const int fix = k->delta == DELTA_GROUP ? -1 : k->delta == DELTA_SUB ? Q->subshift[b] : 0;
        for (int rep = 0; rep < k->nfinal; rep++) {
            const float dl = kind_dl(kind, Q->d, Q->code[b]);
            const float old = dl * (dl * Q->fit[b].C - 2 * Q->fit[b].B);
            iq_fit cur;
            sub_assign(S, dl, fix, &cur);
            if (!(cur.cost - S->A < old)) break;
            Q->fit[b] = cur;
            if (!(cur.C > 0)) break;
            const float tg = fit_target(S->A, cur.B, cur.C);
            const int nc = nearest_code(tg, Q->d / dm, k->smax);
            if (nc == Q->code[b]) break;
            const float dn = kind_dl(kind, Q->d, nc);
            if (!((dn - tg) * (dn - tg) < (dl - tg) * (dl - tg))) break;
            Q->code[b] = nc;
        }
    }
}

static void pack_block(int kind, const iq_super *Q, void *dst);

static void quant_super(int kind, const iq_lattice *L, const float *x, const float *imp, void *dst) {
    const iq_kind *k = &g_kind[kind];
    iq_super Q;
    Q.nsub = QT_IQ_QK / k->sbs;
    float sig2 = 0;
    for (int i = 0; i < QT_IQ_QK; i++) sig2 += x[i] * x[i];
    sig2 /= QT_IQ_QK;
    for (int b = 0; b < Q.nsub; b++) {
        iq_sub *S = &Q.sub[b];
        sub_prepare(kind, L, x + b * k->sbs, imp ? imp + b * k->sbs : NULL, sig2, k->sbs, S, Q.sbsign[b]);
        Q.scale[b] = sub_solve(S, &Q.fit[b], &Q.subshift[b]);
        if (Q.scale[b] > 0) Q.scale[b] = fit_target(S->A, Q.fit[b].B, Q.fit[b].C);
    }
    choose_d(kind, &Q);
    final_pass(kind, &Q);
    pack_block(kind, &Q, dst);
}

static void pack_block(int kind, const iq_super *Q, void *dst) {
    switch (kind) {
    case K_IQ2XXS: {
        qt_block_iq2_xxs *y = dst;
        y->d = qt_f32_to_f16(Q->d);
        for (int b = 0; b < 8; b++) {
            uint32_t a0 = 0, a1 = (uint32_t)Q->code[b] << 28;
            for (int g = 0; g < 4; g++) {
                a0 |= (uint32_t)Q->fit[b].idx[g] << (8 * g);
                a1 |= (uint32_t)(Q->sbsign[b][g] & 127) << (7 * g);
            }
            y->qs[4 * b + 0] = (uint16_t)a0; y->qs[4 * b + 1] = (uint16_t)(a0 >> 16);
            y->qs[4 * b + 2] = (uint16_t)a1; y->qs[4 * b + 3] = (uint16_t)(a1 >> 16);
        }
        break;
    }
    case K_IQ2XS: {
        qt_block_iq2_xs *y = dst;
        y->d = qt_f32_to_f16(Q->d);
        for (int b = 0; b < 16; b++) {
            for (int g = 0; g < 2; g++)
                y->qs[2 * b + g] = (uint16_t)(Q->fit[b].idx[g] | (Q->sbsign[b][g] & 127) << 9);
            if (b % 2 == 0) y->scales[b / 2] = (uint8_t)Q->code[b];
            else y->scales[b / 2] |= (uint8_t)(Q->code[b] << 4);
        }
        break;
    }
    case K_IQ2S: {
        qt_block_iq2_s *y = dst;
        memset(y, 0, sizeof *y);
        y->d = qt_f32_to_f16(Q->d);
        for (int b = 0; b < 16; b++) {
            for (int g = 0; g < 2; g++) {
                const int i8 = 2 * b + g, gi = Q->fit[b].idx[g];
                y->qs[i8] = (uint8_t)gi;
                y->qh[i8 / 4] |= (uint8_t)((gi >> 8) << (2 * (i8 % 4)));
                y->qs[QT_IQ_QK / 8 + i8] = Q->sbsign[b][g];
            }
            y->scales[b / 2] |= (uint8_t)(Q->code[b] << (4 * (b % 2)));
        }
        break;
    }
    case K_IQ3XXS: {
        qt_block_iq3_xxs *y = dst;
        y->d = qt_f32_to_f16(Q->d);
        for (int b = 0; b < 8; b++) {
            uint32_t a = (uint32_t)Q->code[b] << 28;
            for (int g = 0; g < 8; g++) y->qs[8 * b + g] = (uint8_t)Q->fit[b].idx[g];
            for (int g = 0; g < 4; g++) a |= (uint32_t)(Q->sbsign[b][g] & 127) << (7 * g);
            memcpy(y->qs + QT_IQ_QK / 4 + 4 * b, &a, 4);
        }
        break;
    }
    case K_IQ3S: {
        qt_block_iq3_s *y = dst;
        memset(y, 0, sizeof *y);
        y->d = qt_f32_to_f16(Q->d);
        for (int b = 0; b < 8; b++) {
            for (int g = 0; g < 8; g++) {
                y->qs[8 * b + g] = (uint8_t)Q->fit[b].idx[g];
                y->qh[b] |= (uint8_t)((Q->fit[b].idx[g] >> 8) << g);
            }
            for (int g = 0; g < 4; g++) y->signs[4 * b + g] = Q->sbsign[b][g];
            y->scales[b / 2] |= (uint8_t)(Q->code[b] << (4 * (b % 2)));
        }
        break;
    }
    case K_IQ1S: {
        qt_block_iq1_s *y = dst;
        y->d = qt_f32_to_f16(Q->d);
        for (int b = 0; b < 8; b++) {
            uint16_t h = (uint16_t)(Q->code[b] << 12 | (Q->subshift[b] ? 0x8000 : 0));
            for (int g = 0; g < 4; g++) {
                y->qs[4 * b + g] = (uint8_t)Q->fit[b].idx[g];
                h |= (uint16_t)((Q->fit[b].idx[g] >> 8) << (3 * g));
            }
            y->qh[b] = h;
        }
        break;
    }
    default: {
        qt_block_iq1_m *y = dst;
        uint16_t sc[4] = { 0, 0, 0, 0 };
        const uint16_t db = qt_f32_to_f16(Q->d);
        for (int b = 0; b < 16; b++) {
            const iq_fit *f = &Q->fit[b];
            y->qs[2 * b + 0] = (uint8_t)f->idx[0];
            y->qs[2 * b + 1] = (uint8_t)f->idx[1];
            y->qh[b] = (uint8_t)((f->idx[0] >> 8) | (f->sh[0] ? 0x08 : 0) |
                                 ((f->idx[1] >> 8) << 4) | (f->sh[1] ? 0x80 : 0));
            sc[b / 4] |= (uint16_t)(Q->code[b] << (3 * (b % 4)));
        }
        sc[0] |= (uint16_t)((db & 0x000f) << 12);
        sc[1] |= (uint16_t)((db & 0x00f0) << 8);
        sc[2] |= (uint16_t)((db & 0x0f00) << 4);
        sc[3] |= (uint16_t)(db & 0xf000);
        for (int i = 0; i < 4; i++) memcpy(y->scales + 2 * i, &sc[i], 2);
        break;
    }
    }
}

static const int g_type_size[K_COUNT] = {
    sizeof(qt_block_iq2_xxs), sizeof(qt_block_iq2_xs), sizeof(qt_block_iq2_s), sizeof(qt_block_iq3_xxs),
    sizeof(qt_block_iq3_s), sizeof(qt_block_iq1_s), sizeof(qt_block_iq1_m),
};

static void quant_row(int kind, const float *x, void *dst, int64_t n, const float *imp) {
    const iq_lattice *L = lat_get(g_kind[kind].lat);
    uint8_t *y = dst;
    for (int64_t i = 0; i < n / QT_IQ_QK; i++) {
        if (L) {
            quant_super(kind, L, x + i * QT_IQ_QK, imp ? imp + i * QT_IQ_QK : NULL, y + i * g_type_size[kind]);
        } else {
            memset(y + i * g_type_size[kind], 0, (size_t)g_type_size[kind]);   /* out of memory at init */
        }
    }
}

static void q_iq2_xxs(const float *x, void *y, int64_t n, const float *imp) { quant_row(K_IQ2XXS, x, y, n, imp); }
static void q_iq2_xs(const float *x, void *y, int64_t n, const float *imp) { quant_row(K_IQ2XS, x, y, n, imp); }
static void q_iq2_s(const float *x, void *y, int64_t n, const float *imp) { quant_row(K_IQ2S, x, y, n, imp); }
static void q_iq3_xxs(const float *x, void *y, int64_t n, const float *imp) { quant_row(K_IQ3XXS, x, y, n, imp); }
static void q_iq3_s(const float *x, void *y, int64_t n, const float *imp) { quant_row(K_IQ3S, x, y, n, imp); }
static void q_iq1_s(const float *x, void *y, int64_t n, const float *imp) { quant_row(K_IQ1S, x, y, n, imp); }
static void q_iq1_m(const float *x, void *y, int64_t n, const float *imp) { quant_row(K_IQ1M, x, y, n, imp); }

static const qt_traits g_iq_traits[K_COUNT] = {
    { "IQ2_XXS", QT_IQ_QK, sizeof(qt_block_iq2_xxs), true, true, deq_iq2_xxs, q_iq2_xxs },
    { "IQ2_XS", QT_IQ_QK, sizeof(qt_block_iq2_xs), true, true, deq_iq2_xs, q_iq2_xs },
    { "IQ2_S", QT_IQ_QK, sizeof(qt_block_iq2_s), true, false, deq_iq2_s, q_iq2_s },
    { "IQ3_XXS", QT_IQ_QK, sizeof(qt_block_iq3_xxs), true, false, deq_iq3_xxs, q_iq3_xxs },
    { "IQ3_S", QT_IQ_QK, sizeof(qt_block_iq3_s), true, false, deq_iq3_s, q_iq3_s },
    { "IQ1_S", QT_IQ_QK, sizeof(qt_block_iq1_s), true, true, deq_iq1_s, q_iq1_s },
    { "IQ1_M", QT_IQ_QK, sizeof(qt_block_iq1_m), true, true, deq_iq1_m, q_iq1_m },
};

#ifdef QT_IQ_TUNE
void qt_iq_tune_free(int kind, int nfree) { g_kind[kind].nfree = nfree; }
void qt_iq_tune_final(int kind, int n) { g_kind[kind].nfinal = n; }
void qt_iq_tune(int kind, int ntrial, float flo, float fhi, int nlloyd) {
    g_kind[kind].ntrial = ntrial; g_kind[kind].f_lo = flo; g_kind[kind].f_hi = fhi; g_kind[kind].nlloyd = nlloyd;
}
#endif

const qt_traits *qt_iq_traits(qt_type t) {
    switch (t) {
    case QT_IQ2_XXS: return &g_iq_traits[K_IQ2XXS];
    case QT_IQ2_XS: return &g_iq_traits[K_IQ2XS];
    case QT_IQ2_S: return &g_iq_traits[K_IQ2S];
    case QT_IQ3_XXS: return &g_iq_traits[K_IQ3XXS];
    case QT_IQ3_S: return &g_iq_traits[K_IQ3S];
    case QT_IQ1_S: return &g_iq_traits[K_IQ1S];
    case QT_IQ1_M: return &g_iq_traits[K_IQ1M];
    default: return NULL;
    }
}
