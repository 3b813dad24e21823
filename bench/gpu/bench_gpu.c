/* bench/gpu/bench_gpu.c — GPU figures for the CUDA kernels (kernels/cuda) on an H200:
 *  1. per kernel: achieved GB/s and TFLOP/s and their fraction of the H200 peaks (HBM
 *     4.8 TB/s, dense BF16 790 TFLOP/s), next to a device-to-device memcpy measured in the
 *     same run (the baseline ratio);
 *  2. host-to-device streaming bandwidth of the layer streamer (pinned staging, two streams);
 *  3. end to end: a stack of real-size DeepSeek-V3 MoE layers (synthetic weights, Q4_K_M- and
 *     Q2_K-like mixes) streamed from host memory while the previous layer computes, with all
 *     activations on the device: tokens/s, compute vs copy time per layer;
 *  4. the extrapolated time of a full 671B evaluation of 64K tokens (61 layers + head).
 * Usage: bench_gpu [--tokens T] [--layers L] [--quick].  Prints a summary block at the end.
 * Weights are random bytes with block scales patched to finite values that keep the
 * activations O(1) (the speed of these kernels does not depend on the values). */
#include "kernels/kernels.h"
#include "kernels/cuda/kn_cuda.h"
#include "common/qx.h"
#include "bench/gpu/v3_layer.h"
#include "bench/gpu/v3_cuda_ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PEAK_BW 4.8e12
#define PEAK_TF 790e12

/* DeepSeek-V3 dimensions */
enum { E = 7168, H = 128, QL = 1536, KVL = 512, NOPE = 128, ROPE = 64, DV = 128, QD = NOPE + ROPE,
       NEXP = 256, KEXP = 8, FFE = 2048, NGRP = 8, TGRP = 4, VOCAB = 129280, NLAYER = 61, NDENSE = 3 };

static double g_memcpy_bw;   /* baseline: device memcpy, bytes moved (read + write) per second */

static void die_if(qx_status s, const qx_err *e) {
    if (s != QX_OK) { fprintf(stderr, "bench_gpu: %s\n", e->msg); exit(1); }
}
static void sync_or_die(void) {
    qx_err e = {0};
    die_if(kn_cuda_sync(&e), &e);
}
static void *dmalloc(size_t n) {
    void *p = kn_cuda_malloc(n);
    if (!p) { fprintf(stderr, "bench_gpu: cudaMalloc of %.2f GiB failed\n", (double)n / (1 << 30)); exit(1); }
    return p;
}

/* Runs stmt repeatedly (after one warm-up) for at least min_s; seconds per run. */
#define TIMEIT(out, min_s, stmt) do { \
        stmt; sync_or_die(); \
        int64_t n_ = 0, reps_ = 1; double t0_ = qx_now(), t_ = 0; \
        for (;;) { for (int64_t r_ = 0; r_ < reps_; r_++) { stmt; } sync_or_die(); n_ += reps_; \
                   t_ = qx_now() - t0_; if (t_ >= (min_s) || n_ >= 1000) break; reps_ *= 2; } \
        (out) = t_ / (double)n_; } while (0)

/* ---------------- synthetic weights ---------------- */
static uint64_t mix64(uint64_t x) {
    x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ull; x ^= x >> 27; x *= 0x94d049bb133111ebull; return x ^ (x >> 31);
}
/* Random bytes (threads over fixed 1 MiB pieces, so the bytes do not depend on the split). */
static void fill_random(uint8_t *p, uint64_t n, uint64_t seed) {
    const uint64_t piece = 1 << 20, np = (n + piece - 1) / piece;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < (int64_t)np; i++) {
        uint64_t s = mix64(seed + (uint64_t)i), o = (uint64_t)i * piece, m = n - o < piece ? n - o : piece;
        for (uint64_t j = 0; j < m; j += 8) {
            s = mix64(s);
            memcpy(p + o + j, &s, m - j < 8 ? m - j : 8);
        }
    }
}
static void put_f16(uint8_t *p, float v) { uint16_t h = qt_f32_to_f16(v); memcpy(p, &h, 2); }

/* Fills a tensor of type t (rows x cols) at p: random codes, block scales set so that a
 * weight is ~0.01 in magnitude; F32/BF16/F16 as small random values; FP8 codes limited to
 * finite values (scale grid: 1e-3). */
static void fill_weight(uint8_t *p, qt_type t, int64_t rows, int64_t cols, uint64_t seed) {
    const uint64_t rb = t == QT_F8_E4M3 ? (uint64_t)cols : qt_row_size(t, cols), n = rb * (uint64_t)rows;
    fill_random(p, n, seed);
    int bs = 0, d_off = 0, m_off = -1;
    float d = 0, dm = 0;
    switch (t) {
    case QT_Q4_K: bs = 144; d_off = 0; m_off = 2; d = 1e-5f; dm = 1e-5f; break;
    case QT_Q5_K: bs = 176; d_off = 0; m_off = 2; d = 5e-6f; dm = 5e-6f; break;
    case QT_Q6_K: bs = 210; d_off = 208; d = 2.5e-6f; break;
    case QT_Q2_K: bs = 84; d_off = 80; m_off = 82; d = 2e-4f; dm = 2e-4f; break;
    case QT_Q3_K: bs = 110; d_off = 108; d = 8e-5f; break;
    case QT_Q8_0: bs = 34; d = 1e-4f; break;
    case QT_Q4_0: bs = 18; d = 1e-3f; break;
    case QT_IQ4_XS: bs = 136; d = 1e-5f; break;
    case QT_BF16: case QT_F16: {
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < (int64_t)(n / 2); i++) {
            float v = (float)((int)(p[2 * i] % 200) - 100) * 1e-4f;
            uint16_t h = t == QT_BF16 ? qt_f32_to_bf16(v) : qt_f32_to_f16(v);
            memcpy(p + 2 * i, &h, 2);
        }
        return;
    }
    case QT_F32: {
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < (int64_t)(n / 4); i++) { float v = (float)((int)(p[4 * i] % 200) - 100) * 1e-4f; memcpy(p + 4 * i, &v, 4); }
        return;
    }
    case QT_F8_E4M3: {
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < (int64_t)n; i++) if ((p[i] & 0x7f) == 0x7f) p[i] = 0x30;
        return;
    }
    default: fprintf(stderr, "bench_gpu: no synthetic filler for %s\n", qt_type_name(t)); exit(1);
    }
    const int64_t nb = (int64_t)(n / (uint64_t)bs);
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *blk = p + b * bs;
        put_f16(blk + d_off, d);
        if (m_off >= 0) put_f16(blk + m_off, dm);
    }
}

/* ---------------- 1. kernels ---------------- */
static void report(const char *name, double s, double bytes, double flops) {
    double bw = bytes / s, tf = flops / s;
    printf("  %-44s %9.3f ms  %8.1f GB/s (%5.1f%% of HBM, %4.2fx memcpy)", name, s * 1e3, bw / 1e9, 100 * bw / PEAK_BW,
           bw / g_memcpy_bw);
    if (flops > 0) printf("  %7.1f TFLOP/s (%5.1f%% of BF16 peak)", tf / 1e12, 100 * tf / PEAK_TF);
    printf("\n");
}

static void bench_memcpy(void) {
    const size_t n = (size_t)2 << 30;
    void *a = dmalloc(n), *b = dmalloc(n);
    kn_cuda_memset(a, 1, n);
    double s;
    TIMEIT(s, 0.2, kn_cuda_copy_d2d(b, a, n));
    g_memcpy_bw = 2.0 * (double)n / s;
    printf("  %-44s %9.3f ms  %8.1f GB/s (%5.1f%% of HBM) [baseline]\n", "memcpy device->device 2 GiB (read+write)", s * 1e3,
           g_memcpy_bw / 1e9, 100 * g_memcpy_bw / PEAK_BW);
    kn_cuda_free(a); kn_cuda_free(b);
}

static void bench_matmul(qt_type t, int64_t R, int64_t K, const int64_t *Ts, int nT, uint8_t *host, double *head_s) {
    kn_weight w;
    const uint64_t rb = t == QT_F8_E4M3 ? (uint64_t)K : qt_row_size(t, K), wb = rb * (uint64_t)R;
    fill_weight(host, t, R, K, 1234 + (uint64_t)t);
    void *dw = dmalloc(wb);
    qx_err e = {0};
    die_if(kn_cuda_upload(dw, host, wb, &e), &e);
    float *scale = NULL;
    if (t == QT_F8_E4M3) {
        size_t ns = (size_t)((R + 127) / 128) * (size_t)((K + 127) / 128);
        float *hs = malloc(ns * 4);
        for (size_t i = 0; i < ns; i++) hs[i] = 1e-3f;
        scale = dmalloc(ns * 4);
        die_if(kn_cuda_upload(scale, hs, ns * 4, &e), &e);
        free(hs);
    }
    kn_weight_init(&w, t, R, K, dw, scale);
    int64_t Tmax = 0;
    for (int i = 0; i < nT; i++) if (Ts[i] > Tmax) Tmax = Ts[i];
    float *x = dmalloc((size_t)(Tmax * K) * 4), *y = dmalloc((size_t)(Tmax * R) * 4);
    kn_cuda_memset(x, 0, (size_t)(Tmax * K) * 4);
    for (int i = 0; i < nT; i++) {
        const int64_t T = Ts[i];
        for (int passes = 3; passes >= 1; passes -= 2) {
            if (passes == 1 && T < 256) continue;
            double s;
            TIMEIT(s, 0.15, kn_cuda_matmul_ex(&w, x, K, T, NULL, y, R, passes));
            char name[96];
            snprintf(name, sizeof name, "matmul %-7s %lldx%lld T=%-5lld %s", qt_type_name(t), (long long)R, (long long)K,
                     (long long)T, passes == 3 ? "split-bf16" : "bf16(1p)");
            report(name, s, (double)wb + 4.0 * (double)T * (double)(K + R), 2.0 * (double)R * (double)K * (double)T);
            if (head_s && passes == 3) *head_s = s;
        }
    }
    kn_cuda_free(dw); kn_cuda_free(scale); kn_cuda_free(x); kn_cuda_free(y);
}

static void bench_ops(int64_t T) {
    const int64_t n = (int64_t)E, big = T * KEXP * FFE > T * H * QD ? T * KEXP * FFE : T * H * QD;
    float *a = dmalloc((size_t)big * 4), *b = dmalloc((size_t)big * 4), *c = dmalloc((size_t)big * 4);
    float *w = dmalloc((size_t)n * 4);
    kn_cuda_memset(a, 0, (size_t)big * 4); kn_cuda_memset(b, 0, (size_t)big * 4);
    kn_cuda_memset(w, 0, (size_t)n * 4);
    double s;
    char name[96];
    TIMEIT(s, 0.1, kn_cuda_rmsnorm(a, n, w, T, n, 1e-6f, c, n));
    snprintf(name, sizeof name, "rmsnorm [%lld, %d]", (long long)T, E);
    report(name, s, 2.0 * 4 * (double)(T * n), 0);
    TIMEIT(s, 0.1, kn_cuda_silu_mul(a, b, FFE, T * KEXP, FFE, c, FFE));
    snprintf(name, sizeof name, "silu_mul [%lld, %d]", (long long)(T * KEXP), FFE);
    report(name, s, 3.0 * 4 * (double)(T * KEXP * FFE), 0);
    TIMEIT(s, 0.1, kn_cuda_add_scaled(c, n, a, n, NULL, T, n));
    snprintf(name, sizeof name, "add_scaled [%lld, %d]", (long long)T, E);
    report(name, s, 3.0 * 4 * (double)(T * n), 0);
    /* rope on q [T, H*QD] rope part */
    int32_t *pos = dmalloc((size_t)T * 4);
    kn_cuda_memset(pos, 0, (size_t)T * 4);
    TIMEIT(s, 0.1, kn_cuda_rope(a + NOPE, H * QD, T, H, QD, ROPE, pos, w, 1.0f, false));
    snprintf(name, sizeof name, "rope q [%lld, %d heads x %d]", (long long)T, H, ROPE);
    report(name, s, 2.0 * 4 * (double)(T * H * ROPE), 0);
    /* routing: logits [T, 256] */
    int32_t *ids = dmalloc((size_t)(T * KEXP) * 4), *rows = dmalloc((size_t)(T * KEXP) * 4), *slot = dmalloc((size_t)(T * KEXP) * 4);
    int64_t *off = dmalloc((NEXP + 1) * 8);
    kn_route_args ra = { NEXP, KEXP, NGRP, TGRP, true, true, 2.5f, w };
    TIMEIT(s, 0.1, kn_cuda_moe_route(&ra, a, T, ids, b));
    snprintf(name, sizeof name, "moe_route noaux_tc [%lld, %d] (%.1f Mtok/s)", (long long)T, NEXP, (double)T / s / 1e6);
    report(name, s, 4.0 * (double)(T * NEXP), 0);
    TIMEIT(s, 0.1, kn_cuda_moe_bucket(ids, T, KEXP, NEXP, off, rows, slot));
    snprintf(name, sizeof name, "moe_bucket [%lld x %d]", (long long)T, KEXP);
    report(name, s, 12.0 * (double)(T * KEXP), 0);
    TIMEIT(s, 0.1, kn_cuda_gather_rows(a, n, rows, T * KEXP / 4, n, c, n));
    snprintf(name, sizeof name, "gather_rows [%lld, %d]", (long long)(T * KEXP / 4), E);
    report(name, s, 2.0 * 4 * (double)(T * KEXP / 4 * n), 0);
    kn_cuda_free(ids); kn_cuda_free(rows); kn_cuda_free(slot); kn_cuda_free(off); kn_cuda_free(pos);
    kn_cuda_free(a); kn_cuda_free(b); kn_cuda_free(c); kn_cuda_free(w);
}

static double bench_attention(int64_t n_seq, int64_t S) {
    const int64_t T = n_seq * S;
    float *q = dmalloc((size_t)(T * H * QD) * 4), *k = dmalloc((size_t)(T * H * QD) * 4), *v = dmalloc((size_t)(T * H * DV) * 4);
    float *o = dmalloc((size_t)(T * H * DV) * 4);
    kn_cuda_memset(q, 0, (size_t)(T * H * QD) * 4); kn_cuda_memset(k, 0, (size_t)(T * H * QD) * 4);
    kn_cuda_memset(v, 0, (size_t)(T * H * DV) * 4);
    kn_attn_args a = { n_seq, S, H, H, QD, DV, q, H * QD, QD, k, H * QD, QD, v, H * DV, DV, o, H * DV, 0.07f, NULL, 0 };
    double s;
    TIMEIT(s, 0.2, kn_cuda_attention(&a));
    char name[96];
    snprintf(name, sizeof name, "attention MLA %lld x %lld tok, %d heads", (long long)n_seq, (long long)S, H);
    double pairs = (double)n_seq * H * (double)S * (double)(S + 1) / 2;
    report(name, s, 4.0 * (double)T * H * (2 * QD + 2 * DV), pairs * 2.0 * (QD + DV));
    kn_cuda_free(q); kn_cuda_free(k); kn_cuda_free(v); kn_cuda_free(o);
    return s;
}

static double bench_logits(int64_t T) {
    float *l = dmalloc((size_t)(T * VOCAB) * 4);
    double *lse = dmalloc((size_t)T * 8), *nll = dmalloc((size_t)T * 8);
    int32_t *am = dmalloc((size_t)T * 4), *tgt = dmalloc((size_t)T * 4);
    kn_cuda_memset(l, 0, (size_t)(T * VOCAB) * 4);
    kn_cuda_memset(tgt, 0, (size_t)T * 4);
    double s;
    TIMEIT(s, 0.1, kn_cuda_logsoftmax_stats(l, VOCAB, T, VOCAB, tgt, 0, NULL, NULL, NULL, lse, am, nll, NULL));
    char name[96];
    snprintf(name, sizeof name, "log-softmax NLL/top-1 [%lld, %d]", (long long)T, VOCAB);
    report(name, s, 4.0 * (double)(T * VOCAB), 0);
    kn_cuda_free(l); kn_cuda_free(lse); kn_cuda_free(nll); kn_cuda_free(am); kn_cuda_free(tgt);
    return s;
}

/* ---------------- 2./3. a DeepSeek-V3 MoE layer on the device ---------------- */
enum { W_ATTN_NORM, W_QA_NORM, W_KVA_NORM, W_FFN_NORM, W_EBIAS, W_QA, W_QB, W_KVA, W_KVB, W_O, W_ROUTER,
       W_EG, W_EU, W_ED, W_SG, W_SU, W_SD, W_COUNT };
typedef struct { qt_type t; int64_t rows, cols; uint64_t off, bytes, row_bytes; } tdesc;
typedef struct { const char *name; v3_dims dm; tdesc w[W_COUNT]; uint64_t bytes; } layer_layout;

/* DeepSeek-V3's layer, or (--mini) mini-v3's shapes for a quick check of this program. */
static v3_dims v3_real(void) {
    v3_dims d = { E, H, QL, KVL, NOPE, ROPE, DV, NEXP, KEXP, FFE, NGRP, TGRP, FFE, 1e-6f, 0.0722f, 1.0f, 2.5f, true, true, false };
    return d;
}
static v3_dims v3_mini(void) {
    v3_dims d = { 256, 4, 256, 256, 32, 16, 32, 16, 4, 256, 4, 2, 256, 1e-6f, 0.18f, 1.0f, 2.5f, true, true, false };
    return d;
}

static void layout(layer_layout *L, const v3_dims *m, const char *name, qt_type attn, qt_type exp, qt_type exp_down) {
    const int64_t QDm = m->NOPE + m->ROPE;
    const struct { qt_type t; int64_t r, c; } d[W_COUNT] = {
        { QT_F32, 1, m->E }, { QT_F32, 1, m->QL }, { QT_F32, 1, m->KVL }, { QT_F32, 1, m->E }, { QT_F32, 1, m->NEXP },
        { attn, m->QL, m->E }, { attn, m->H * QDm, m->QL }, { attn, m->KVL + m->ROPE, m->E },
        { attn, m->H * (m->NOPE + m->DV), m->KVL }, { attn, m->E, m->H * m->DV }, { QT_F32, m->NEXP, m->E },
        { exp, m->NEXP * m->FFE, m->E }, { exp, m->NEXP * m->FFE, m->E }, { exp_down, m->NEXP * m->E, m->FFE },
        { attn, m->SFF, m->E }, { attn, m->SFF, m->E }, { attn, m->E, m->SFF } };
    L->name = name;
    L->dm = *m;
    uint64_t off = 0;
    for (int i = 0; i < W_COUNT; i++) {
        tdesc *t = &L->w[i];
        t->t = d[i].t; t->rows = d[i].r; t->cols = d[i].c;
        t->row_bytes = qt_row_size(t->t, t->cols);
        t->bytes = t->row_bytes * (uint64_t)t->rows;
        t->off = off;
        off = (off + t->bytes + 255) & ~(uint64_t)255;
    }
    L->bytes = off;
}

static void fill_layer(const layer_layout *L, uint8_t *blob) {
    for (int i = 0; i < W_COUNT; i++) {
        const tdesc *t = &L->w[i];
        float *f = (float *)(void *)(blob + t->off);
        if (i <= W_FFN_NORM) { for (int64_t j = 0; j < t->cols; j++) f[j] = 1.0f; continue; }
        if (i == W_EBIAS) { for (int64_t j = 0; j < t->cols; j++) f[j] = (float)(j % 13) * 1e-3f; continue; }
        fill_weight(blob + t->off, t->t, t->rows, t->cols, 777 + (uint64_t)i);
    }
}

typedef struct {
    const layer_layout *L;
    v3_dims d;
    v3_acts a;
    int64_t T, S;
    float *h, *inv_freq;          /* device: residual stream [T, E], rope frequencies */
    int32_t *pos;
    bool measure;                 /* synchronize around each layer to time its compute alone */
    double compute_s;
    int n_measured;
} layer_run;

static kn_weight view(const layer_layout *L, const void *slot, int i, int64_t rows) {
    kn_weight w;
    const tdesc *t = &L->w[i];
    kn_weight_init(&w, t->t, rows ? rows : t->rows, t->cols, (const uint8_t *)slot + t->off, NULL);
    return w;
}
static const float *vec(const layer_layout *L, const void *slot, int i) { return (const float *)(const void *)((const uint8_t *)slot + L->w[i].off); }

/* The layer's weights as views into its device slot (experts stacked). */
static v3_weights weights_in(const layer_layout *L, const void *slot) {
    v3_weights w;
    memset(&w, 0, sizeof w);
    w.qa = view(L, slot, W_QA, 0); w.qb = view(L, slot, W_QB, 0); w.kva = view(L, slot, W_KVA, 0);
    w.kvb = view(L, slot, W_KVB, 0); w.o = view(L, slot, W_O, 0); w.router = view(L, slot, W_ROUTER, 0);
    const v3_dims *m = &L->dm;
    w.eg = view(L, slot, W_EG, m->FFE); w.eu = view(L, slot, W_EU, m->FFE); w.ed = view(L, slot, W_ED, m->E);
    w.sg = view(L, slot, W_SG, 0); w.su = view(L, slot, W_SU, 0); w.sd = view(L, slot, W_SD, 0);
    w.eg_stride = (uint64_t)m->FFE * w.eg.row_bytes; w.eu_stride = (uint64_t)m->FFE * w.eu.row_bytes;
    w.ed_stride = (uint64_t)m->E * w.ed.row_bytes;
    w.attn_norm = vec(L, slot, W_ATTN_NORM); w.qa_norm = vec(L, slot, W_QA_NORM); w.kva_norm = vec(L, slot, W_KVA_NORM);
    w.ffn_norm = vec(L, slot, W_FFN_NORM); w.ebias = vec(L, slot, W_EBIAS);
    return w;
}

/* One MoE decoder layer (bench/gpu/v3_layer.h) on the device, queued on the stream. */
static qx_status layer_compute(void *ud, int layer, void *slot, qx_err *e) {
    layer_run *r = ud;
    double t0 = 0;
    (void)layer;
    if (r->measure) { QX_TRY(kn_cuda_sync(e)); t0 = qx_now(); }
    v3_weights w = weights_in(r->L, slot);
    v3_layer_fwd(&v3_ops_cuda, &r->d, &w, &r->a, r->h, r->T, r->S, r->pos, r->inv_freq);
    if (r->measure) {
        QX_TRY(kn_cuda_sync(e));
        r->compute_s += qx_now() - t0;
        r->n_measured++;
    }
    return QX_OK;
}

static void run_alloc(layer_run *r, const layer_layout *L, int64_t T, int64_t S) {
    memset(r, 0, sizeof *r);
    r->L = L; r->T = T; r->S = S;
    r->d = L->dm;
    const int64_t Em = r->d.E, RP = r->d.ROPE;
    qx_err e = {0};
    die_if(v3_acts_alloc(&v3_ops_cuda, &r->d, T, &r->a, &e), &e);
    r->h = dmalloc((size_t)(T * Em) * 4);
    r->inv_freq = dmalloc((size_t)RP / 2 * 4);
    r->pos = dmalloc((size_t)T * 4);
    /* h = small deterministic values; positions 0..S-1 per window; rope frequencies */
    float *hh = malloc((size_t)(T * Em) * 4), inv[256];
    int32_t *pp = malloc((size_t)T * 4);
    for (int64_t i = 0; i < T * Em; i++) hh[i] = (float)((int)(mix64((uint64_t)i) % 2001) - 1000) * 1e-3f;
    for (int64_t t = 0; t < T; t++) pp[t] = (int32_t)(t % S);
    for (int i = 0; i < RP / 2; i++) inv[i] = powf(10000.0f, -2.0f * (float)i / (float)RP);
    die_if(kn_cuda_upload(r->h, hh, (size_t)(T * Em) * 4, &e), &e);
    die_if(kn_cuda_upload(r->pos, pp, (size_t)T * 4, &e), &e);
    die_if(kn_cuda_upload(r->inv_freq, inv, (size_t)RP / 2 * 4, &e), &e);
    free(hh); free(pp);
}

static void run_free(layer_run *r) {
    v3_acts_free(&v3_ops_cuda, &r->a);
    kn_cuda_free(r->h); kn_cuda_free(r->inv_freq); kn_cuda_free(r->pos);
}

typedef struct { double stream_s, per_layer_s, compute_s, bytes, tok_s; } e2e_result;

static e2e_result bench_e2e(const layer_layout *L, int n_layers, int64_t T, int64_t S) {
    e2e_result res = {0};
    uint8_t *blob[2];
    double t0 = qx_now();
    for (int i = 0; i < 2; i++) {   /* two distinct host layers, alternating */
        blob[i] = malloc(L->bytes);
        if (!blob[i]) { fprintf(stderr, "bench_gpu: host malloc %.1f GiB failed\n", (double)L->bytes / (1 << 30)); exit(1); }
        fill_layer(L, blob[i]);
    }
    printf("  [%s] synthetic layer: %.2f GiB (experts %s/%s), generated in %.1f s\n", L->name, (double)L->bytes / (1 << 30),
           qt_type_name(L->w[W_EG].t), qt_type_name(L->w[W_ED].t), qx_now() - t0);
    const void **src = malloc((size_t)n_layers * sizeof *src);
    size_t *bytes = malloc((size_t)n_layers * sizeof *bytes);
    for (int i = 0; i < n_layers; i++) { src[i] = blob[i % 2]; bytes[i] = L->bytes; }
    layer_run r;
    run_alloc(&r, L, T, S);
    qx_err e = {0};
    double copy_host = 0;
    /* overlapped: copies of layer L+1 run under the compute of layer L */
    t0 = qx_now();
    die_if(kn_cuda_stream_layers(n_layers, src, bytes, 0, layer_compute, &r, &copy_host, &e), &e);
    res.stream_s = qx_now() - t0;
    {   /* sanity of the values that went through the stack */
        const size_t nh = (size_t)(T * L->dm.E);
        float *hh = malloc(nh * sizeof *hh);
        die_if(kn_cuda_download(hh, r.h, nh * sizeof *hh, &e), &e);
        double sa = 0;
        int64_t bad = 0;
        for (size_t i = 0; i < nh; i++) { if (!isfinite(hh[i])) bad++; else sa += fabs((double)hh[i]); }
        printf("  [%s] residual stream after %d layers: mean |h| %.4g, %lld non-finite values\n", L->name, n_layers,
               sa / (double)nh, (long long)bad);
        free(hh);
    }
    /* compute alone, per layer (synchronized around each layer) */
    r.measure = true;
    die_if(kn_cuda_stream_layers(2, src, bytes, 0, layer_compute, &r, NULL, &e), &e);
    res.compute_s = r.compute_s / r.n_measured;
    res.per_layer_s = res.stream_s / n_layers;
    res.bytes = (double)L->bytes;
    res.tok_s = (double)T / res.stream_s;
    printf("  [%s] %d layers x %lld tokens (windows of %lld), streamed from host: %.3f s = %.3f s/layer; "
           "compute alone %.3f s/layer; host staging %.2f s; %.0f tokens/s through the stack, %.0f layer-tokens/s\n",
           L->name, n_layers, (long long)T, (long long)S, res.stream_s, res.per_layer_s, res.compute_s, copy_host,
           res.tok_s, (double)T * n_layers / res.stream_s);
    run_free(&r);
    free(src); free(bytes); free(blob[0]); free(blob[1]);
    return res;
}

static double bench_h2d(size_t layer_bytes, int n) {
    uint8_t *blob = malloc(layer_bytes);
    fill_random(blob, layer_bytes, 99);
    const void **src = malloc((size_t)n * sizeof *src);
    size_t *bytes = malloc((size_t)n * sizeof *bytes);
    for (int i = 0; i < n; i++) { src[i] = blob; bytes[i] = layer_bytes; }
    qx_err e = {0};
    double host = 0, t0 = qx_now();
    die_if(kn_cuda_stream_layers(n, src, bytes, 0, NULL, NULL, &host, &e), &e);
    double s = qx_now() - t0, bw = (double)layer_bytes * n / s;
    printf("  %-44s %9.3f ms  %8.1f GB/s host->device (host staging memcpy %.2f s)\n", "layer streamer, no compute", s * 1e3,
           bw / 1e9, host);
    free(blob); free(src); free(bytes);
    return bw;
}

int main(int argc, char **argv) {
    int64_t T = 4096, S = 512;
    int n_layers = 4;
    bool quick = false, mini = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tokens") && i + 1 < argc) T = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--layers") && i + 1 < argc) n_layers = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick")) quick = true;
        else if (!strcmp(argv[i], "--mini")) { mini = true; S = 256; }
        else { fprintf(stderr, "usage: bench_gpu [--tokens T] [--layers L] [--quick] [--mini]\n"); return 2; }
    }
    if (T % S) T = (T / S + 1) * S;
    setvbuf(stdout, NULL, _IOLBF, 0);   /* lines survive a timeout kill */
    qx_err e = {0};
    die_if(kn_cuda_init(&e), &e);
    char d[128];
    kn_cuda_describe(d, sizeof d);
    printf("bench_gpu: %s; peaks used: HBM %.1f TB/s, dense BF16 %.0f TFLOP/s\n", d, PEAK_BW / 1e12, PEAK_TF / 1e12);
    double head_s = 0, lsm_s = 0, h2d = 0;
    if (mini) {   /* a quick functional run of sections 3-4 at mini-v3's shapes (no figures) */
        T = T < 2048 ? T : 512;
        goto e2e;
    }
    printf("== 1. kernels\n");
    bench_memcpy();
    uint8_t *host = malloc((size_t)VOCAB * 7168 * 2);   /* big enough for every microbench weight */
    static const qt_type mtypes[] = { QT_BF16, QT_F8_E4M3, QT_Q8_0, QT_Q6_K, QT_Q5_K, QT_Q4_K, QT_IQ4_XS, QT_Q3_K, QT_Q2_K, QT_Q4_0 };
    const int64_t Ts[] = { 16, T };
    for (size_t i = 0; i < sizeof mtypes / sizeof mtypes[0]; i++) {
        if (quick && i > 3) break;
        bench_matmul(mtypes[i], FFE, E, Ts, 2, host, NULL);
    }
    const int64_t Th[] = { T };
    bench_matmul(QT_Q6_K, VOCAB, E, Th, 1, host, &head_s);
    free(host);
    bench_ops(T);
    bench_attention(T / S, S);
    lsm_s = bench_logits(S);
    printf("== 2. host -> device streaming\n");
    h2d = bench_h2d((size_t)1 << 30, 4);
e2e:
    printf("== 3. end to end: DeepSeek-V3 MoE layers streamed from host memory%s\n", mini ? " (--mini: mini-v3 shapes)" : "");
    layer_layout q4, q2;
    const v3_dims dm = mini ? v3_mini() : v3_real();
    layout(&q4, &dm, "Q4_K_M", QT_Q4_K, QT_Q4_K, QT_Q6_K);
    layout(&q2, &dm, "Q2_K", QT_Q4_K, QT_Q2_K, QT_Q3_K);
    e2e_result r4 = bench_e2e(&q4, n_layers, T, S), r2 = bench_e2e(&q2, n_layers, T, S);
    if (mini) return 0;
    printf("== 4. extrapolation: full 671B evaluation of 65536 tokens (58 MoE + 3 dense layers + head)\n");
    const double NT = 65536.0, scale = NT / (double)T;
    const layer_layout *lays[2] = { &q4, &q2 };
    const e2e_result *res[2] = { &r4, &r2 };
    for (int i = 0; i < 2; i++) {
        double copy = res[i]->bytes / h2d, comp = res[i]->compute_s * scale;
        double moe = copy > comp ? copy : comp;
        double head = head_s * scale + lsm_s * NT / (double)S;
        double total = (NLAYER - NDENSE) * moe + NDENSE * comp + head + copy;
        printf("  [%s] per MoE layer: copy %.2f s (%.1f GiB at %.1f GB/s), compute %.2f s (64K tokens) -> %.2f s; "
               "dense layers ~%.2f s each (compute-bound, as a MoE layer's compute); head + log-softmax %.2f s\n",
               lays[i]->name, copy, res[i]->bytes / (1 << 30), h2d / 1e9, comp, moe, comp, head);
        printf("  [%s] extrapolated 671B x 64K tokens: %.0f s (%.1f min), %.0f tokens/s; bound by %s\n", lays[i]->name, total,
               total / 60, NT / total, copy > comp ? "host->device copies" : "compute");
    }
    return 0;
}
