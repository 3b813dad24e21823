/* bench/gpu/v3_layer.h — one DeepSeek-V3 MoE decoder layer (MLA attention in the naive form
 * the CPU engine computes, noaux_tc routing, grouped experts, shared expert) written once
 * against a table of operations on "device" buffers, so that the same composition runs
 * with the CPU kernels (v3_ops_cpu: buffers are host memory) and with the CUDA twins
 * (bench/gpu/bench_gpu.c fills a table with kn_cuda_*: buffers are device memory, nothing
 * returns to the host inside a layer).  tests/test_v3_layer.c checks the composition on the
 * CPU against the mini-v3 reference hidden states; tests/cuda/test_cuda_layer.c runs it on
 * the GPU; bench_gpu times it at real size.  Internal header of bench/gpu (header-only). */
#ifndef V3_LAYER_H
#define V3_LAYER_H

#include "kernels/kernels.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    void *(*alloc)(size_t bytes);                     /* zero-filled; NULL on failure */
    void (*release)(void *p);
    qx_status (*upload)(void *dst, const void *src, size_t bytes, qx_err *e);
    qx_status (*download)(void *dst, const void *src, size_t bytes, qx_err *e);
    void (*copy_2d)(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width, size_t rows);
    void (*memset)(void *dst, int v, size_t bytes);
    void (*matmul)(const kn_weight *w, const float *x, int64_t ldx, int64_t T, const float *bias, float *y, int64_t ldy);
    void (*matmul_stacked)(const kn_weight *w0, uint64_t stride, int64_t scale_stride, int n_groups, const int64_t *off,
                           int64_t max_rows, const float *x, int64_t ldx, float *y, int64_t ldy);
    void (*rmsnorm)(const float *x, int64_t ldx, const float *w, int64_t T, int64_t n, float eps, float *y, int64_t ldy);
    void (*rope)(float *x, int64_t ldx, int64_t T, int n_heads, int64_t head_stride, int dim, const int32_t *pos,
                 const float *inv_freq, float mscale, bool neox);
    void (*attention)(const kn_attn_args *a);
    void (*silu_mul)(const float *g, const float *u, int64_t ld, int64_t T, int64_t n, float *out, int64_t ldo);
    void (*add_scaled)(float *y, int64_t ldy, const float *x, int64_t ldx, const float *s, int64_t T, int64_t n);
    void (*moe_route)(const kn_route_args *a, const float *logits, int64_t T, int32_t *ids, float *w);
    void (*moe_bucket)(const int32_t *ids, int64_t T, int k, int n_exp, int64_t *off, int32_t *rows, int32_t *slot);
    void (*gather_rows)(const float *x, int64_t ldx, const int32_t *rows, int64_t n, int64_t cols, float *out, int64_t ldo);
    void (*moe_combine)(float *y, int64_t ldy, const float *ye, int64_t ldye, const int32_t *slot, const float *w,
                        int64_t T, int k, int64_t n);
} v3_ops;

/* Hyper-parameters of the layer (DeepSeek-V3: E 7168, H 128, QL 1536, KVL 512, NOPE 128,
 * ROPE 64, DV 128, NEXP 256, KEXP 8, FFE 2048, NGRP 8, TGRP 4, SFF 2048). */
typedef struct {
    int64_t E, H, QL, KVL, NOPE, ROPE, DV, NEXP, KEXP, FFE, NGRP, TGRP, SFF;   /* SFF: shared-expert width */
    float eps, attn_scale, rope_mscale, route_scale;
    bool route_sigmoid, route_norm, rope_neox;
} v3_dims;

/* Weights in the ops' memory.  Experts are stacked: expert g of eg/eu/ed is the view's data
 * + g * *_stride bytes (FP8 scale grid + g * *_sstride floats); the views' rows are one
 * expert's rows. */
typedef struct {
    kn_weight qa, qb, kva, kvb, o, router, eg, eu, ed, sg, su, sd;
    uint64_t eg_stride, eu_stride, ed_stride;
    int64_t eg_sstride, eu_sstride, ed_sstride;
    const float *attn_norm, *qa_norm, *kva_norm, *ffn_norm, *ebias;   /* ebias may be NULL */
} v3_weights;

/* Activation buffers for T tokens, in the ops' memory. */
typedef struct {
    int64_t T;
    float *xn, *qa, *q, *kva, *ckv, *kv, *K, *o, *y, *lg, *rw, *xe, *ge, *ue, *ye, *sg, *su;
    int32_t *ids, *rows, *slot;
    int64_t *off;
} v3_acts;

static inline void v3_acts_free(const v3_ops *ops, v3_acts *a) {
    void *p[] = { a->xn, a->qa, a->q, a->kva, a->ckv, a->kv, a->K, a->o, a->y, a->lg, a->rw, a->xe, a->ge, a->ue,
                  a->ye, a->sg, a->su, a->ids, a->rows, a->slot, a->off };
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) if (p[i]) ops->release(p[i]);
    memset(a, 0, sizeof *a);
}

static inline qx_status v3_acts_alloc(const v3_ops *ops, const v3_dims *d, int64_t T, v3_acts *a, qx_err *e) {
    memset(a, 0, sizeof *a);
    a->T = T;
    const int64_t TK = T * d->KEXP;
    bool ok = true;
#define V3_A(p, n) do { if (ok && !(a->p = ops->alloc((size_t)(n) * sizeof *a->p))) ok = false; } while (0)
    V3_A(xn, T * d->E); V3_A(qa, T * d->QL); V3_A(q, T * d->H * (d->NOPE + d->ROPE)); V3_A(kva, T * (d->KVL + d->ROPE));
    V3_A(ckv, T * d->KVL); V3_A(kv, T * d->H * (d->NOPE + d->DV)); V3_A(K, T * d->H * (d->NOPE + d->ROPE));
    V3_A(o, T * d->H * d->DV); V3_A(y, T * d->E); V3_A(lg, T * d->NEXP); V3_A(rw, TK); V3_A(xe, TK * d->E);
    V3_A(ge, TK * d->FFE); V3_A(ue, TK * d->FFE); V3_A(ye, TK * d->E); V3_A(sg, T * d->SFF); V3_A(su, T * d->SFF);
    V3_A(ids, TK); V3_A(rows, TK); V3_A(slot, TK); V3_A(off, d->NEXP + 1);
#undef V3_A
    if (!ok) { v3_acts_free(ops, a); return qx_fail(e, QX_ENOMEM, "v3 layer: out of memory for %lld tokens", (long long)T); }
    return QX_OK;
}

/* One MoE layer on h [T, E] (updated in place); T = n_seq * S tokens, windows of S at
 * positions pos[T]; inv_freq [ROPE/2].  Everything is queued through ops (asynchronous on
 * the GPU). */
static inline void v3_layer_fwd(const v3_ops *ops, const v3_dims *d, const v3_weights *w, v3_acts *a, float *h,
                                int64_t T, int64_t S, const int32_t *pos, const float *inv_freq) {
    const int64_t E = d->E, H = d->H, QD = d->NOPE + d->ROPE, KVL = d->KVL, N = d->NOPE, R = d->ROPE, DV = d->DV;
    const int64_t FFE = d->FFE, K = d->KEXP;
    ops->rmsnorm(h, E, w->attn_norm, T, E, d->eps, a->xn, E);
    ops->matmul(&w->qa, a->xn, E, T, NULL, a->qa, d->QL);
    ops->rmsnorm(a->qa, d->QL, w->qa_norm, T, d->QL, d->eps, a->qa, d->QL);
    ops->matmul(&w->qb, a->qa, d->QL, T, NULL, a->q, H * QD);
    ops->matmul(&w->kva, a->xn, E, T, NULL, a->kva, KVL + R);
    ops->rmsnorm(a->kva, KVL + R, w->kva_norm, T, KVL, d->eps, a->ckv, KVL);
    ops->matmul(&w->kvb, a->ckv, KVL, T, NULL, a->kv, H * (N + DV));
    ops->rope(a->q + N, H * QD, T, (int)H, QD, (int)R, pos, inv_freq, d->rope_mscale, d->rope_neox);
    ops->rope(a->kva + KVL, KVL + R, T, 1, 0, (int)R, pos, inv_freq, d->rope_mscale, d->rope_neox);
    ops->copy_2d(a->K, (size_t)QD * 4, a->kv, (size_t)(N + DV) * 4, (size_t)N * 4, (size_t)(T * H));
    for (int64_t hh = 0; hh < H; hh++)
        ops->copy_2d(a->K + hh * QD + N, (size_t)(H * QD) * 4, a->kva + KVL, (size_t)(KVL + R) * 4, (size_t)R * 4, (size_t)T);
    kn_attn_args at = { T / S, S, (int)H, (int)H, (int)QD, (int)DV, a->q, H * QD, QD, a->K, H * QD, QD,
                        a->kv + N, H * (N + DV), N + DV, a->o, H * DV, d->attn_scale, NULL, 0 };
    ops->attention(&at);
    ops->matmul(&w->o, a->o, H * DV, T, NULL, a->y, E);
    ops->add_scaled(h, E, a->y, E, NULL, T, E);
    ops->rmsnorm(h, E, w->ffn_norm, T, E, d->eps, a->xn, E);
    ops->matmul(&w->router, a->xn, E, T, NULL, a->lg, d->NEXP);
    kn_route_args ra = { (int)d->NEXP, (int)K, (int)d->NGRP, (int)d->TGRP, d->route_sigmoid, d->route_norm,
                         d->route_scale, w->ebias };
    ops->moe_route(&ra, a->lg, T, a->ids, a->rw);
    ops->moe_bucket(a->ids, T, (int)K, (int)d->NEXP, a->off, a->rows, a->slot);
    ops->gather_rows(a->xn, E, a->rows, T * K, E, a->xe, E);   /* rows past off[NEXP] are stale, unused */
    ops->matmul_stacked(&w->eg, w->eg_stride, w->eg_sstride, (int)d->NEXP, a->off, T * K, a->xe, E, a->ge, FFE);
    ops->matmul_stacked(&w->eu, w->eu_stride, w->eu_sstride, (int)d->NEXP, a->off, T * K, a->xe, E, a->ue, FFE);
    ops->silu_mul(a->ge, a->ue, FFE, T * K, FFE, a->ge, FFE);
    ops->matmul_stacked(&w->ed, w->ed_stride, w->ed_sstride, (int)d->NEXP, a->off, T * K, a->ge, FFE, a->ye, E);
    ops->memset(a->y, 0, (size_t)(T * E) * 4);
    ops->moe_combine(a->y, E, a->ye, E, a->slot, a->rw, T, (int)K, E);
    ops->matmul(&w->sg, a->xn, E, T, NULL, a->sg, d->SFF);
    ops->matmul(&w->su, a->xn, E, T, NULL, a->su, d->SFF);
    ops->silu_mul(a->sg, a->su, d->SFF, T, d->SFF, a->sg, d->SFF);
    ops->matmul(&w->sd, a->sg, d->SFF, T, NULL, a->ye, E);
    ops->add_scaled(a->y, E, a->ye, E, NULL, T, E);
    ops->add_scaled(h, E, a->y, E, NULL, T, E);
}

/* ---------------- the CPU table (host memory; the oracle of the composition) ---------------- */
static inline void *v3_cpu_alloc(size_t n) { return calloc(1, n ? n : 1); }
static inline void v3_cpu_release(void *p) { free(p); }
static inline qx_status v3_cpu_copy(void *dst, const void *src, size_t n, qx_err *e) { (void)e; memcpy(dst, src, n); return QX_OK; }
static inline void v3_cpu_copy_2d(void *dst, size_t dp, const void *src, size_t sp, size_t width, size_t rows) {
    for (size_t r = 0; r < rows; r++) memcpy((char *)dst + r * dp, (const char *)src + r * sp, width);
}
static inline void v3_cpu_memset(void *dst, int v, size_t n) { memset(dst, v, n); }
static inline void v3_cpu_stacked(const kn_weight *w0, uint64_t stride, int64_t sstride, int n_groups, const int64_t *off,
                                  int64_t max_rows, const float *x, int64_t ldx, float *y, int64_t ldy) {
    (void)max_rows;
    for (int g = 0; g < n_groups; g++) {
        int64_t n = off[g + 1] - off[g];
        if (n <= 0) continue;
        kn_weight w = *w0;
        w.data = (const uint8_t *)w0->data + (uint64_t)g * stride;
        if (w.scale_inv) w.scale_inv += g * sstride;
        kn_matmul(&w, x + off[g] * ldx, ldx, n, NULL, y + off[g] * ldy, ldy);
    }
}
static inline void v3_cpu_bucket(const int32_t *ids, int64_t T, int k, int n_exp, int64_t *off, int32_t *rows, int32_t *slot) {
    memset(off, 0, (size_t)(n_exp + 1) * sizeof *off);
    for (int64_t i = 0; i < T * k; i++) if (ids[i] >= 0 && ids[i] < n_exp) off[ids[i] + 1]++;
    for (int x = 0; x < n_exp; x++) off[x + 1] += off[x];
    int64_t *fill = calloc((size_t)n_exp + 1, sizeof *fill);
    for (int64_t i = 0; i < T * k; i++) {
        slot[i] = -1;
        if (ids[i] < 0 || ids[i] >= n_exp) continue;
        int64_t p = off[ids[i]] + fill[ids[i]]++;
        rows[p] = (int32_t)(i / k);
        slot[i] = (int32_t)p;
    }
    free(fill);
}
static inline void v3_cpu_gather(const float *x, int64_t ldx, const int32_t *rows, int64_t n, int64_t cols, float *out,
                                 int64_t ldo) {
    for (int64_t i = 0; i < n; i++) memcpy(out + i * ldo, x + (int64_t)rows[i] * ldx, (size_t)cols * 4);
}
static inline void v3_cpu_combine(float *y, int64_t ldy, const float *ye, int64_t ldye, const int32_t *slot, const float *w,
                                  int64_t T, int k, int64_t n) {
    for (int64_t t = 0; t < T; t++)
        for (int j = 0; j < k; j++) {
            int32_t s = slot[t * k + j];
            if (s < 0) continue;
            for (int64_t i = 0; i < n; i++) y[t * ldy + i] += w[t * k + j] * ye[(int64_t)s * ldye + i];
        }
}

/* Note: the CPU combine adds expert by expert into y (one add per slot), the CUDA combine
 * sums the k terms onto y[t] in the same slot order: identical up to float rounding. */
static const v3_ops v3_ops_cpu = {
    v3_cpu_alloc, v3_cpu_release, v3_cpu_copy, v3_cpu_copy, v3_cpu_copy_2d, v3_cpu_memset, kn_matmul, v3_cpu_stacked,
    kn_rmsnorm, kn_rope, kn_attention, kn_silu_mul, kn_add_scaled, kn_moe_route, v3_cpu_bucket, v3_cpu_gather,
    v3_cpu_combine
};

#endif
