/* tests/cuda/harness/kn_cuda_cpu.c — a CPU stand-in for the kn_cuda API (kernels/cuda/kn_cuda.h):
 * "device" memory is host memory and every operation is its CPU twin (3-pass matmul = the
 * scalar reference; 1-pass = both operands rounded to BF16).  Linked instead of the CUDA
 * objects by tests/cuda/harness/check.sh, it runs the tests/cuda harness without a GPU, so
 * the harness itself (buffer sizes, tolerances, padding) is checked before GPU time is spent.
 * Not part of the library and not a test of the CUDA kernels. */
#include "kernels/cuda/kn_cuda.h"
#include "kernels/cuda/kn_dq.h"
#include "bench/gpu/v3_layer.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
qx_status kn_cuda_init(qx_err *e) { (void)e; return QX_OK; }
void kn_cuda_describe(char *b, size_t c) { snprintf(b, c, "CPU fake"); }
qx_status kn_cuda_sync(qx_err *e) { (void)e; return QX_OK; }
void *kn_cuda_malloc(size_t n) { return calloc(1, n ? n : 1); }
void kn_cuda_free(void *p) { free(p); }
void *kn_cuda_host_alloc(size_t n) { return malloc(n); }
void kn_cuda_host_free(void *p) { free(p); }
qx_status kn_cuda_upload(void *d, const void *s, size_t n, qx_err *e) { (void)e; memcpy(d, s, n); return QX_OK; }
qx_status kn_cuda_download(void *d, const void *s, size_t n, qx_err *e) { (void)e; memcpy(d, s, n); return QX_OK; }
void kn_cuda_memset(void *d, int v, size_t n) { memset(d, v, n); }
void kn_cuda_copy_d2d(void *d, const void *s, size_t n) { memmove(d, s, n); }
void kn_cuda_copy_2d(void *d, size_t dp, const void *s, size_t sp, size_t w, size_t r) { v3_cpu_copy_2d(d, dp, s, sp, w, r); }
void kn_cuda_mem_info(size_t *f, size_t *t) { if (f) *f = 0; if (t) *t = 0; }
static float bf(float v) { uint32_t u; memcpy(&u, &v, 4); u = (u + 0x7fff + ((u >> 16) & 1)) & 0xffff0000u; memcpy(&v, &u, 4); return v; }
void kn_cuda_matmul_ex(const kn_weight *w, const float *x, int64_t ldx, int64_t T, const float *bias, float *y, int64_t ldy, int passes) {
    if (passes == 3) { kn_matmul_ref(w, x, ldx, T, bias, y, ldy); return; }
    float *row = malloc((size_t)w->cols * 4);
    for (int64_t r = 0; r < w->rows; r++) {
        kn_weight_rows(w, r, r + 1, row);
        for (int64_t t = 0; t < T; t++) { double s = 0; for (int64_t k = 0; k < w->cols; k++) s += (double)bf(row[k]) * bf(x[t * ldx + k]); y[t * ldy + r] = (float)s + (bias ? bias[r] : 0); }
    }
    free(row);
}
void kn_cuda_matmul(const kn_weight *w, const float *x, int64_t ldx, int64_t T, const float *bias, float *y, int64_t ldy) { kn_cuda_matmul_ex(w, x, ldx, T, bias, y, ldy, 3); }
bool kn_cuda_matmul_supported(const kn_weight *w) { return kn_dq_supported((int)w->type); }
void kn_cuda_rmsnorm(const float *x, int64_t ldx, const float *w, int64_t T, int64_t n, float eps, float *y, int64_t ldy) { kn_rmsnorm(x, ldx, w, T, n, eps, y, ldy); }
void kn_cuda_rope(float *x, int64_t ldx, int64_t T, int nh, int64_t hs, int dim, const int32_t *pos, const float *f, float ms, bool neox) { kn_rope(x, ldx, T, nh, hs, dim, pos, f, ms, neox); }
void kn_cuda_attention(const kn_attn_args *a) { kn_attention(a); }
void kn_cuda_silu_mul(const float *g, const float *u, int64_t ld, int64_t T, int64_t n, float *o, int64_t ldo) { kn_silu_mul(g, u, ld, T, n, o, ldo); }
void kn_cuda_add_scaled(float *y, int64_t ldy, const float *x, int64_t ldx, const float *s, int64_t T, int64_t n) { kn_add_scaled(y, ldy, x, ldx, s, T, n); }
void kn_cuda_moe_route(const kn_route_args *a, const float *l, int64_t T, int32_t *ids, float *w) { kn_moe_route(a, l, T, ids, w); }
void kn_cuda_logsumexp(const float *l, int64_t ld, int64_t T, int64_t V, double *lse, int32_t *am) { kn_logsumexp(l, ld, T, V, lse, am); }
void kn_cuda_logsoftmax_stats(const float *l, int64_t ld, int64_t T, int64_t V, const int32_t *tg, int bk, const int32_t *bid, const float *blp, const float *br, double *lse, int32_t *am, double *nll, double *kld) {
    double *ls = malloc((size_t)T * 8); int32_t *a = malloc((size_t)T * 4);
    kn_logsumexp(l, ld, T, V, ls, a);
    for (int64_t t = 0; t < T; t++) {
        if (lse) lse[t] = ls[t];
        if (am) am[t] = a[t];
        if (nll) nll[t] = tg && tg[t] >= 0 ? ls[t] - l[t * ld + tg[t]] : 0;
        if (kld && bk > 0) { double k = 0, q = 0; for (int j = 0; j < bk; j++) { double lp = blp[t * bk + j], lq = l[t * ld + bid[t * bk + j]] - ls[t]; k += exp(lp) * (lp - lq); q += exp(lq); }
            if (br[t] > -INFINITY) { double qr = fmax(1 - q, 1e-300); k += exp((double)br[t]) * (br[t] - log(qr)); } kld[t] = k; }
    }
    free(ls); free(a);
}
void kn_cuda_matmul_grouped(const kn_weight *ws, int n, const int64_t *off, const float *x, int64_t ldx, float *y, int64_t ldy) {
    for (int g = 0; g < n; g++) if (off[g + 1] > off[g]) kn_matmul_ref(&ws[g], x + off[g] * ldx, ldx, off[g + 1] - off[g], NULL, y + off[g] * ldy, ldy);
}
void kn_cuda_matmul_stacked(const kn_weight *w0, uint64_t st, int64_t ss, int n, const int64_t *off, int64_t mr, const float *x, int64_t ldx, float *y, int64_t ldy) { v3_cpu_stacked(w0, st, ss, n, off, mr, x, ldx, y, ldy); }
void kn_cuda_moe_bucket(const int32_t *ids, int64_t T, int k, int ne, int64_t *off, int32_t *rows, int32_t *slot) { v3_cpu_bucket(ids, T, k, ne, off, rows, slot); }
void kn_cuda_gather_rows(const float *x, int64_t ldx, const int32_t *rows, int64_t n, int64_t c, float *o, int64_t ldo) { v3_cpu_gather(x, ldx, rows, n, c, o, ldo); }
void kn_cuda_moe_combine(float *y, int64_t ldy, const float *ye, int64_t ldye, const int32_t *slot, const float *w, int64_t T, int k, int64_t n) {
    for (int64_t t = 0; t < T; t++) for (int64_t i = 0; i < n; i++) { float a = y[t * ldy + i]; for (int j = 0; j < k; j++) { int32_t s = slot[t * k + j]; if (s >= 0) a += w[t * k + j] * ye[(int64_t)s * ldye + i]; } y[t * ldy + i] = a; }
}

typedef struct { kn_cuda_layer_fn f; void *ud; } sl_adapter;
static qx_status sl_cb(void *ud, int layer, const void *slot, qx_err *e) {
    sl_adapter *a = ud;
    return a->f ? a->f(a->ud, layer, (void *)(uintptr_t)slot, e) : QX_OK;
}
qx_status kn_cuda_stream_layers(int n, const void *const *src, const size_t *bytes, size_t stage, kn_cuda_layer_fn f,
                                void *ud, double *copy_s, qx_err *e) {
    sl_adapter a = { f, ud };
    (void)stage;
    if (copy_s) *copy_s = 0;
    return kn_stream_layers_host(n, 2, src, bytes, sl_cb, &a, e);
}

/* DeepSeek-V4 twins (kernels/cuda/ops_v4.cu): the CPU _refs, which the twins claim to equal
 * where they are bit-exact (collapse, expand, the indexer's selection).  check_v4_emu.sh
 * defines KN_CUDA_CPU_NO_V4 and links the emulated ops_v4.cu instead. */
#ifndef KN_CUDA_CPU_NO_V4
void kn_cuda_hc_coeffs(const kn_hc_args *a, const float *m, int64_t ldm, int64_t T, float *pre, float *post, float *comb) { kn_hc_coeffs_ref(a, m, ldm, T, pre, post, comb); }
void kn_cuda_hc_collapse(const float *x, const float *pre, int hc, int64_t T, int64_t n, float *y) { kn_hc_collapse_ref(x, pre, hc, T, n, y); }
void kn_cuda_hc_expand(const float *y, const float *res, const float *post, const float *comb, int hc, int64_t T, int64_t n, float *out) { kn_hc_expand_ref(y, res, post, comb, hc, T, n, out); }
void kn_cuda_v4_compress(const kn_comp_args *a) { kn_v4_compress_ref(a); }
void kn_cuda_v4_select(const kn_v4_sel_args *a) { kn_v4_select_ref(a); }
void kn_cuda_v4_attention(const kn_v4_attn_args *a) { kn_v4_attention_ref(a); }
void kn_cuda_v4_route(const kn_v4_route_args *a, const float *l, int64_t T, int32_t *ids, float *w, int32_t *bad) {
    bool ok = kn_v4_route(a, l, T, ids, w);
    if (bad) *bad = !ok;
}
void kn_cuda_silu_mul_clamp(const float *g, const float *u, int64_t ld, int64_t T, int64_t n, float lim, float *o, int64_t ldo) { kn_silu_mul_clamp(g, u, ld, T, n, lim, o, ldo); }
#endif
