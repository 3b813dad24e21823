/* kernels/cpu/dsv4.c — the operations new with DeepSeek-V4 (arch deepseek4) on the CPU:
 * hyper-connection coefficients (Sinkhorn), stream collapse/expand, the KV compressor's
 * softmax pooling, the indexer's top-k over compressed blocks, attention over a sliding
 * window plus compressed rows with per-head sinks, sqrt-softplus/hash routing and the SwiGLU
 * clamp.  Projections, norms and rope are the engine's (calib/engine_v4.c).  Every function
 * has a scalar _ref; the fast name runs the same per-item code with OpenMP over independent
 * items, so the two agree bit for bit.  Contracts: kernels.h. */
#include "../kernels.h"
#include "kn_simd.h"
#include "kn_twin.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define V4_PAR_MIN 4096   /* items x width below which threads cost more than they save */

static float sigm(float x) { return 1.0f / (1.0f + expf(-x)); }

/* ---- hyper-connections ---- */

static void hc_one(const kn_hc_args *a, const float *m, float *pre, float *post, float *comb) {
    const int hc = a->hc;
    for (int h = 0; h < hc; h++) pre[h] = sigm(m[h] * a->scale[0] + a->base[h]) + a->eps;
    if (!post || !comb) return;
    for (int h = 0; h < hc; h++) post[h] = 2.0f * sigm(m[hc + h] * a->scale[1] + a->base[hc + h]);
    float c[KN_V4_MAX_HC * KN_V4_MAX_HC];
    for (int s = 0; s < hc; s++) {   /* softmax over destinations d of each source s */
        float mx = -INFINITY, sum = 0.0f;
        for (int d = 0; d < hc; d++) {
            const int i = s * hc + d;
            c[i] = m[2 * hc + i] * a->scale[2] + a->base[2 * hc + i];
            mx = c[i] > mx ? c[i] : mx;
        }
        for (int d = 0; d < hc; d++) { c[s * hc + d] = expf(c[s * hc + d] - mx); sum += c[s * hc + d]; }
        const float inv = 1.0f / sum;
        for (int d = 0; d < hc; d++) c[s * hc + d] = c[s * hc + d] * inv + a->eps;
    }
    for (int it = 0; it < a->n_iter; it++) {
        if (it > 0)
            for (int s = 0; s < hc; s++) {   /* rows: sum over d */
                float sum = a->eps;
                for (int d = 0; d < hc; d++) sum += c[s * hc + d];
                const float inv = 1.0f / sum;
                for (int d = 0; d < hc; d++) c[s * hc + d] *= inv;
            }
        for (int d = 0; d < hc; d++) {   /* columns: sum over s */
            float sum = a->eps;
            for (int s = 0; s < hc; s++) sum += c[s * hc + d];
            const float inv = 1.0f / sum;
            for (int s = 0; s < hc; s++) c[s * hc + d] *= inv;
        }
    }
    memcpy(comb, c, (size_t)(hc * hc) * sizeof(float));
}

static void hc_coeffs(const kn_hc_args *a, const float *mixes, int64_t ldm, int64_t T, float *pre, float *post,
                      float *comb, bool par) {
    const int hc = a->hc;
    if (hc < 1 || hc > KN_V4_MAX_HC) abort();   /* the engine checks hc against this at model open */
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (par && T * hc * hc >= V4_PAR_MIN)
#endif
    for (int64_t t = 0; t < T; t++)
        hc_one(a, mixes + t * ldm, pre + t * hc, post ? post + t * hc : NULL, comb ? comb + t * hc * hc : NULL);
    (void)par;
}

void kn_hc_coeffs(const kn_hc_args *a, const float *mixes, int64_t ldm, int64_t T, float *pre, float *post,
                  float *comb) { hc_coeffs(a, mixes, ldm, T, pre, post, comb, true); }
void kn_hc_coeffs_ref(const kn_hc_args *a, const float *mixes, int64_t ldm, int64_t T, float *pre, float *post,
                      float *comb) { hc_coeffs(a, mixes, ldm, T, pre, post, comb, false); }

static void collapse(const float *x, const float *pre, int hc, int64_t T, int64_t n, float *y, bool par) {
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (par && T * n * hc >= V4_PAR_MIN)
#endif
    for (int64_t t = 0; t < T; t++) {
        const float *xt = x + t * hc * n, *pt = pre + t * hc;
        float *yt = y + t * n;
        for (int64_t i = 0; i < n; i++) {
            float s = 0.0f;
            for (int h = 0; h < hc; h++) s += xt[h * n + i] * pt[h];
            yt[i] = s;
        }
    }
    (void)par;
}

void kn_hc_collapse(const float *x, const float *pre, int hc, int64_t T, int64_t n, float *y) {
    collapse(x, pre, hc, T, n, y, true);
}
void kn_hc_collapse_ref(const float *x, const float *pre, int hc, int64_t T, int64_t n, float *y) {
    collapse(x, pre, hc, T, n, y, false);
}

static void expand(const float *y, const float *res, const float *post, const float *comb, int hc, int64_t T,
                   int64_t n, float *out, bool par) {
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (par && T * n * hc >= V4_PAR_MIN)
#endif
    for (int64_t t = 0; t < T; t++) {
        const float *yt = y + t * n, *rt = res + t * hc * n, *pt = post + t * hc, *ct = comb + t * hc * hc;
        float *ot = out + t * hc * n;
        for (int d = 0; d < hc; d++)
            for (int64_t i = 0; i < n; i++) {
                float v = yt[i] * pt[d];
                for (int s = 0; s < hc; s++) v += rt[s * n + i] * ct[s * hc + d];
                ot[d * n + i] = v;
            }
    }
    (void)par;
}

void kn_hc_expand(const float *y, const float *res, const float *post, const float *comb, int hc, int64_t T,
                  int64_t n, float *out) { expand(y, res, post, comb, hc, T, n, out, true); }
void kn_hc_expand_ref(const float *y, const float *res, const float *post, const float *comb, int hc, int64_t T,
                      int64_t n, float *out) { expand(y, res, post, comb, hc, T, n, out, false); }

/* ---- KV compressor ---- */

/* Block b of sequence s: out [d]. */
static void compress_one(const kn_comp_args *a, int64_t s, int64_t b, float *out) {
    const int r = a->r, d = a->d;
    const int64_t t0 = s * a->S + b * r;
    for (int i = 0; i < d; i++) {
        float sc[2 * KN_V4_MAX_RATIO], mx = -INFINITY, sum = 0.0f, acc = 0.0f;
        int n = 0;
        if (a->overlap)
            for (int j = 0; j < r; j++, n++) {
                if (b == 0) { sc[n] = -INFINITY; continue; }
                const int64_t t = t0 - r + j;
                sc[n] = a->score[t * a->ld + i] + a->ape[(int64_t)j * a->ldape + i];
            }
        const int off = a->overlap ? d : 0;
        for (int j = 0; j < r; j++, n++) {
            const int64_t t = t0 + j;
            sc[n] = a->score[t * a->ld + off + i] + a->ape[(int64_t)j * a->ldape + off + i];
        }
        for (int j = 0; j < n; j++) mx = sc[j] > mx ? sc[j] : mx;
        for (int j = 0; j < n; j++) { sc[j] = expf(sc[j] - mx); sum += sc[j]; }
        const float inv = 1.0f / sum;
        n = 0;
        if (a->overlap)
            for (int j = 0; j < r; j++, n++)
                if (b > 0) acc += a->kv[(t0 - r + j) * a->ld + i] * (sc[n] * inv);
        for (int j = 0; j < r; j++, n++) acc += a->kv[(t0 + j) * a->ld + off + i] * (sc[n] * inv);
        out[i] = acc;
    }
}

static void compress_run(const kn_comp_args *a, bool par) {
    if (a->r < 1 || a->r > KN_V4_MAX_RATIO) abort();   /* ratios are 4 and 128 (checked at model open) */
    const int64_t nb = a->S / a->r, n = a->n_seq * nb;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (par && n * a->d * a->r >= V4_PAR_MIN)
#endif
    for (int64_t k = 0; k < n; k++) compress_one(a, k / nb, k % nb, a->out + k * a->d);
    (void)par;
}

void kn_v4_compress(const kn_comp_args *a) { compress_run(a, true); }
void kn_v4_compress_ref(const kn_comp_args *a) { compress_run(a, false); }

/* ---- indexer top-k over compressed blocks ---- */

static void select_one(const kn_v4_sel_args *a, int64_t s, int64_t i, float *sc, unsigned char *keep, int32_t *heap,
                       float (*dot)(const float *, const float *, int64_t)) {
    const int64_t t = s * a->S + i, nb = a->S / a->r;   /* the (i + 1) / r blocks complete at query i */
    kn_index_topk(a->q + t * a->ldq, a->w + t * a->ldw, a->n_heads, a->dh, a->k + s * nb * a->ldk, a->ldk, (i + 1) / a->r, a->top_k, sc,
                  keep, heap, dot, a->sel + t * a->top_k);
}

static void select_run(const kn_v4_sel_args *a, float (*dot)(const float *, const float *, int64_t), bool par) {
    const int64_t T = a->n_seq * a->S, nb = a->S / a->r + 1;
    if (T <= 0 || a->top_k <= 0) return;
#ifdef _OPENMP
#pragma omp parallel if (par)
#endif
    {
        float *sc = malloc((size_t)nb * sizeof *sc);
        unsigned char *keep = malloc((size_t)nb);
        int32_t *heap = malloc((size_t)a->top_k * sizeof *heap);
        if (!sc || !keep || !heap) abort();   /* S / r entries: far below the caller's activations */
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 16)
#endif
        for (int64_t t = 0; t < T; t++) select_one(a, t / a->S, t % a->S, sc, keep, heap, dot);
        free(sc); free(keep); free(heap);
    }
    (void)par;
}

void kn_v4_select(const kn_v4_sel_args *a) { select_run(a, kn_dot, true); }
void kn_v4_select_ref(const kn_v4_sel_args *a) { select_run(a, kn_dot_ref, false); }

/* ---- attention with sinks over the window and compressed rows ---- */

static void attn_one(const kn_v4_attn_args *a, int64_t t, int h, float *p,
                     float (*dot)(const float *, const float *, int64_t)) {
    const int64_t s = t / a->S, i = t % a->S, d = a->d;
    const int64_t j0 = i - a->n_swa + 1 > 0 ? i - a->n_swa + 1 : 0;
    const int64_t nb = a->r > 0 ? a->S / a->r : 0, nv = a->r > 0 ? (i + 1) / a->r : 0;
    const float *q = a->q + t * a->ldq + (int64_t)h * a->dq;
    const float *kv0 = a->kv + s * a->S * a->ldkv, *ck0 = a->ck ? a->ck + s * nb * a->ldck : NULL;
    int64_t nc = 0;
    if (a->r > 0) {
        if (a->sel) { const int32_t *l = a->sel + t * a->n_sel; while (nc < a->n_sel && l[nc] >= 0) nc++; }
        else nc = nv;
    }
    const int64_t nr = i - j0 + 1;
    float mx = a->sinks ? a->sinks[h] : -INFINITY;
    for (int64_t j = 0; j < nr; j++) {
        p[j] = dot(q, kv0 + (j0 + j) * a->ldkv, d) * a->scale;
        mx = p[j] > mx ? p[j] : mx;
    }
    for (int64_t c = 0; c < nc; c++) {
        const int64_t b = a->sel ? a->sel[t * a->n_sel + c] : c;
        p[nr + c] = dot(q, ck0 + b * a->ldck, d) * a->scale;
        mx = p[nr + c] > mx ? p[nr + c] : mx;
    }
    float sum = a->sinks ? expf(a->sinks[h] - mx) : 0.0f;
    for (int64_t j = 0; j < nr + nc; j++) { p[j] = expf(p[j] - mx); sum += p[j]; }
    const float inv = 1.0f / sum;
    float *o = a->o + t * a->ldo + (int64_t)h * d;
    memset(o, 0, (size_t)d * sizeof(float));
    for (int64_t j = 0; j < nr; j++) kn_axpy(o, kv0 + (j0 + j) * a->ldkv, p[j] * inv, d);
    for (int64_t c = 0; c < nc; c++) {
        const int64_t b = a->sel ? a->sel[t * a->n_sel + c] : c;
        kn_axpy(o, ck0 + b * a->ldck, p[nr + c] * inv, d);
    }
}

static void attn_run(const kn_v4_attn_args *a, float (*dot)(const float *, const float *, int64_t), bool par) {
    const int64_t T = a->n_seq * a->S, n = T * a->n_heads;
    const int64_t cap = (a->n_swa < a->S ? a->n_swa : a->S) + (a->r > 0 ? a->S / a->r : 0) + 1;
#ifdef _OPENMP
#pragma omp parallel if (par && n >= 8)
#endif
    {
        float *p = malloc((size_t)cap * sizeof *p);
        if (!p) abort();   /* window + blocks: far below the caller's activations */
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 32)
#endif
        for (int64_t k = 0; k < n; k++) attn_one(a, k / a->n_heads, (int)(k % a->n_heads), p, dot);
        free(p);
    }
    (void)par;
}

void kn_v4_attention(const kn_v4_attn_args *a) { attn_run(a, kn_dot, true); }
void kn_v4_attention_ref(const kn_v4_attn_args *a) { attn_run(a, kn_dot_ref, false); }

/* ---- routing and the SwiGLU clamp ---- */

bool kn_v4_route(const kn_v4_route_args *a, const float *logits, int64_t T, int32_t *ids, float *w) {
    const int X = a->n_exp;
    if (X > KN_V4_MAX_EXPERTS) abort();   /* the loader refuses more */
    bool ok = true;
    for (int64_t t = 0; t < T; t++) {
        const float *l = logits + t * X;
        float p[KN_V4_MAX_EXPERTS];
        for (int x = 0; x < X; x++) {
            float sp = l[x] > 20.0f ? l[x] : logf(1.0f + expf(l[x]));
            p[x] = sqrtf(sp);
        }
        ok &= kn_twin_v4_route_pick(a, p, t, ids + t * a->k, w + t * a->k);   /* kn_twin.h: the CUDA twin's text too */
    }
    return ok;
}

void kn_silu_mul_clamp(const float *g, const float *u, int64_t ld, int64_t T, int64_t n, float limit, float *out,
                       int64_t ldo) {
    if (!(limit > 1e-6f)) { kn_silu_mul(g, u, ld, T, n, out, ldo); return; }
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (T * n >= V4_PAR_MIN)
#endif
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < n; i++) {
            float z = g[t * ld + i], v = u[t * ld + i];
            z = z < limit ? z : limit;
            v = v < -limit ? -limit : v > limit ? limit : v;
            out[t * ldo + i] = z / (1.0f + expf(-z)) * v;
        }
}
