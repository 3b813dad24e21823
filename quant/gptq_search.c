/* quant/gptq_search.c — the exhaustive grid searches of GPTQ's group codes (quant/gptq.c):
 * the IQ2/IQ3 magnitude grids (8 or 4 wide) and the IQ1 ternary grid.  The reference walks
 * point by point; the AVX2 path scores 8 points per step from grids transposed once into
 * float (element-major) tables, with the same single IEEE operations per point in the same
 * element order, and keeps the first best point on ties: the same picks, bit for bit
 * (tests/test_gptq.c).  Tables are built once (pthread_once) and read-only after. */
#include "qt_internal.h"
#include "blocks_iq.h"

#include <pthread.h>
#include <stdlib.h>

qg_grid_pick qg_grid_nearest_ref(const uint8_t *grid, int width, int ng, float db, const float *v, const float *h) {
    qg_grid_pick p = { INFINITY, INFINITY, 0, 0, 0 };
    for (int k = 0; k < ng; k++) {
        const uint8_t *gr = grid + (size_t)k * (size_t)width;
        float cost = 0, flip = INFINITY;
        int fj = 0;
        for (int j = 0; j < width; j++) {
            float gv = db * (float)gr[j], av = fabsf(v[j]), e = av - gv;
            cost += h[j] * e * e;
            float fc = h[j] * 4.f * av * gv;   /* cost of taking the other sign */
            if (fc < flip) { flip = fc; fj = j; }
        }
        if (cost < p.c0) { p.c0 = cost; p.k0 = k; }
        if (cost + flip < p.c1) { p.c1 = cost + flip; p.k1 = k; p.j1 = fj; }
    }
    return p;
}

void qg_iq1_nearest_ref(float dl, int nd, const float *deltas, const float *v, const float *h, int *bk, int *bd) {
    if (!(dl > 0)) return;
    float c3[2][8][3];   /* per delta: cost of value -1, 0, +1 at each element */
    for (int d = 0; d < nd; d++)
        for (int j = 0; j < 8; j++)
            for (int s = 0; s < 3; s++) {
                float e = v[j] - dl * ((float)(s - 1) + deltas[d]);
                c3[d][j][s] = h[j] * e * e;
            }
    float best = INFINITY;
    for (int k = 0; k < QT_IQ1S_NGRID; k++) {
        const int8_t *gr = (const int8_t *)&qt_iq1s_grid[k];
        for (int d = 0; d < nd; d++) {
            float cost = 0;
            for (int j = 0; j < 8; j++) cost += c3[d][j][gr[j] + 1];
            if (cost < best) { best = cost; *bk = k; *bd = d; }
        }
    }
}

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#define SEARCH_AVX2 1

/* Transposed grids: t[j * ng + k] = magnitude j of point k (float); iq1: index (value + 1). */
typedef struct { const uint8_t *src; int width, ng; float *t; } tgrid;
static tgrid g_grids[5];
static int32_t *g_iq1;            /* [8][QT_IQ1S_NGRID] */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static bool g_ok;

static void build_tables(void) {
    const struct { const void *src; int width, ng; } def[5] = {
        { qt_iq2xxs_grid, 8, 256 }, { qt_iq2xs_grid, 8, 512 }, { qt_iq2s_grid, 8, 1024 },
        { qt_iq3xxs_grid, 4, 256 }, { qt_iq3s_grid, 4, 512 } };
    bool ok = true;
    for (int i = 0; i < 5; i++) {
        tgrid *g = &g_grids[i];
        g->src = def[i].src; g->width = def[i].width; g->ng = def[i].ng;
        g->t = malloc(sizeof(float) * (size_t)(g->width * g->ng));
        if (!g->t) { ok = false; continue; }
        for (int k = 0; k < g->ng; k++)
            for (int j = 0; j < g->width; j++) g->t[j * g->ng + k] = (float)g->src[(size_t)k * g->width + j];
    }
    g_iq1 = malloc(sizeof(int32_t) * 8 * QT_IQ1S_NGRID);
    if (!g_iq1) ok = false;
    for (int k = 0; g_iq1 && k < QT_IQ1S_NGRID; k++) {
        const int8_t *gr = (const int8_t *)&qt_iq1s_grid[k];
        for (int j = 0; j < 8; j++) g_iq1[j * QT_IQ1S_NGRID + k] = gr[j] + 1;
    }
    g_ok = ok && __builtin_cpu_supports("avx2");
}

static bool tables(void) {
    pthread_once(&g_once, build_tables);
    return g_ok;
}

/* Lane-wise best (strict <, so each lane keeps its first) to one pick: the least value, the
 * least index among equal values. */
__attribute__((target("avx2")))
static void lane_best(__m256 val, __m256i idx, float *bv, int *bi) {
    float v[8];
    int32_t ix[8];
    _mm256_storeu_ps(v, val);
    _mm256_storeu_si256((__m256i *)(void *)ix, idx);
    for (int l = 0; l < 8; l++)
        if (v[l] < *bv || (v[l] == *bv && ix[l] < *bi)) { *bv = v[l]; *bi = ix[l]; }
}

__attribute__((target("avx2")))
static qg_grid_pick grid_avx2(const tgrid *g, float db, const float *v, const float *h) {
    const int W = g->width, ng = g->ng;
    float av[8], h4av[8];
    for (int j = 0; j < W; j++) { av[j] = fabsf(v[j]); h4av[j] = h[j] * 4.f * av[j]; }
    const __m256 dbv = _mm256_set1_ps(db), inf = _mm256_set1_ps(INFINITY);
    __m256 b0 = inf, b1 = inf;
    __m256i k0 = _mm256_setzero_si256(), k1 = k0, j1 = k0, kv = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i eight = _mm256_set1_epi32(8);
    for (int k = 0; k < ng; k += 8, kv = _mm256_add_epi32(kv, eight)) {
        __m256 cost = _mm256_setzero_ps(), flip = inf;
        __m256i fj = _mm256_setzero_si256();
        for (int j = 0; j < W; j++) {
            __m256 gv = _mm256_mul_ps(dbv, _mm256_loadu_ps(g->t + j * ng + k));
            __m256 e = _mm256_sub_ps(_mm256_set1_ps(av[j]), gv);
            cost = _mm256_add_ps(cost, _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(h[j]), e), e));
            __m256 fc = _mm256_mul_ps(_mm256_set1_ps(h4av[j]), gv);
            __m256 lt = _mm256_cmp_ps(fc, flip, _CMP_LT_OQ);
            flip = _mm256_blendv_ps(flip, fc, lt);
            fj = _mm256_blendv_epi8(fj, _mm256_set1_epi32(j), _mm256_castps_si256(lt));
        }
        __m256 m0 = _mm256_cmp_ps(cost, b0, _CMP_LT_OQ);
        b0 = _mm256_blendv_ps(b0, cost, m0);
        k0 = _mm256_blendv_epi8(k0, kv, _mm256_castps_si256(m0));
        __m256 c1 = _mm256_add_ps(cost, flip);
        __m256 m1 = _mm256_cmp_ps(c1, b1, _CMP_LT_OQ);
        b1 = _mm256_blendv_ps(b1, c1, m1);
        k1 = _mm256_blendv_epi8(k1, kv, _mm256_castps_si256(m1));
        j1 = _mm256_blendv_epi8(j1, fj, _mm256_castps_si256(m1));
    }
    qg_grid_pick p = { INFINITY, INFINITY, 0, 0, 0 };
    lane_best(b0, k0, &p.c0, &p.k0);
    int bi = 0;
    float bv = INFINITY;
    lane_best(b1, k1, &bv, &bi);
    p.c1 = bv; p.k1 = bi;
    int32_t kk[8], jj[8];
    _mm256_storeu_si256((__m256i *)(void *)kk, k1);
    _mm256_storeu_si256((__m256i *)(void *)jj, j1);
    for (int l = 0; l < 8; l++) if (kk[l] == bi) { p.j1 = jj[l]; break; }
    return p;
}

__attribute__((target("avx2")))
static void iq1_avx2(float dl, int nd, const float *deltas, const float *v, const float *h, int *bk, int *bd) {
    float best[2] = { INFINITY, INFINITY };
    int bki[2] = { 0, 0 };
    for (int d = 0; d < nd; d++) {
        __m256 c3[8];
        for (int j = 0; j < 8; j++) {
            float c[8] = { 0 };
            for (int s = 0; s < 3; s++) {
                float e = v[j] - dl * ((float)(s - 1) + deltas[d]);
                c[s] = h[j] * e * e;
            }
            c3[j] = _mm256_loadu_ps(c);
        }
        __m256 b = _mm256_set1_ps(INFINITY);
        __m256i bkv = _mm256_setzero_si256(), kv = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        const __m256i eight = _mm256_set1_epi32(8);
        for (int k = 0; k < QT_IQ1S_NGRID; k += 8, kv = _mm256_add_epi32(kv, eight)) {
            __m256 cost = _mm256_setzero_ps();
            for (int j = 0; j < 8; j++) {
                __m256i ix = _mm256_loadu_si256((const __m256i *)(const void *)(g_iq1 + j * QT_IQ1S_NGRID + k));
                cost = _mm256_add_ps(cost, _mm256_permutevar8x32_ps(c3[j], ix));
            }
            __m256 m = _mm256_cmp_ps(cost, b, _CMP_LT_OQ);
            b = _mm256_blendv_ps(b, cost, m);
            bkv = _mm256_blendv_epi8(bkv, kv, _mm256_castps_si256(m));
        }
        lane_best(b, bkv, &best[d], &bki[d]);
    }
    /* the reference visits (k, d) in that order: the smaller value, then the smaller k, then d 0 */
    int d = 0;
    if (nd == 2 && (best[1] < best[0] || (best[1] == best[0] && bki[1] < bki[0]))) d = 1;
    if (best[d] < INFINITY) { *bk = bki[d]; *bd = d; }
}
#endif

qg_grid_pick qg_grid_nearest(const uint8_t *grid, int width, int ng, float db, const float *v, const float *h) {
#ifdef SEARCH_AVX2
    if (tables())
        for (int i = 0; i < 5; i++)
            if (g_grids[i].src == grid && g_grids[i].width == width && g_grids[i].ng == ng) return grid_avx2(&g_grids[i], db, v, h);
#endif
    return qg_grid_nearest_ref(grid, width, ng, db, v, h);
}

void qg_iq1_nearest(float dl, int nd, const float *deltas, const float *v, const float *h, int *bk, int *bd) {
    if (!(dl > 0)) return;
#ifdef SEARCH_AVX2
    if (tables()) { iq1_avx2(dl, nd, deltas, v, h, bk, bd); return; }
#endif
    qg_iq1_nearest_ref(dl, nd, deltas, v, h, bk, bd);
}
