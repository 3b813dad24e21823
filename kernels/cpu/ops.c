/* kernels/cpu/ops.c — the engine's element-wise and per-token operations on the CPU:
 * RMSNorm, rotary embedding, causal attention, SwiGLU, residual adds, MoE routing and
 * log-softmax statistics.  OpenMP over independent rows/items only. */
#include "../kernels.h"
#include "kn_simd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Below this many elements an operation runs on the calling thread: a parallel region
 * costs more than it saves. */
enum { KN_PAR_MIN = 1 << 16 };

void kn_rmsnorm(const float *x, int64_t ldx, const float *w, int64_t T, int64_t n, float eps,
                float *y, int64_t ldy) {
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (T * n >= KN_PAR_MIN)
#endif
    for (int64_t t = 0; t < T; t++) {
        const float *xt = x + t * ldx;
        float *yt = y + t * ldy;
        double ss = 0.0;
        for (int64_t i = 0; i < n; i++) ss += (double)xt[i] * xt[i];
        float r = 1.0f / sqrtf((float)(ss / (double)n) + eps);
        for (int64_t i = 0; i < n; i++) yt[i] = w[i] * (xt[i] * r);
    }
}

void kn_rope(float *x, int64_t ldx, int64_t T, int n_heads, int64_t head_stride, int dim,
             const int32_t *pos, const float *inv_freq, float mscale, bool neox) {
    const int half = dim / 2;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (T * n_heads * dim >= KN_PAR_MIN)
#endif
    for (int64_t t = 0; t < T; t++) {
        float cs[256], sn[256];
        for (int i = 0; i < half && i < 256; i++) {
            float ang = (float)pos[t] * inv_freq[i];
            cs[i] = cosf(ang) * mscale;
            sn[i] = sinf(ang) * mscale;
        }
        for (int h = 0; h < n_heads; h++) {
            float *p = x + t * ldx + h * head_stride;
            for (int i = 0; i < half && i < 256; i++) {
                int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
                float x0 = p[a], x1 = p[b];
                p[a] = x0 * cs[i] - x1 * sn[i];
                p[b] = x0 * sn[i] + x1 * cs[i];
            }
        }
    }
}

/* One (sequence, head) item; dot/axpy are the reference or SIMD primitives.  Keys of query
 * i: 0..i, or the first entries of its selection list when a->sel is set. */
static void attn_item(const kn_attn_args *a, int64_t s, int h, float *sc,
                      float (*dot)(const float *, const float *, int64_t), bool simd) {
    const int g = h / (a->n_heads / a->n_kv_heads);
    const int64_t base = s * a->S;
    for (int64_t i = 0; i < a->S; i++) {
        const float *qi = a->q + (base + i) * a->ldq + h * a->dq;
        const int32_t *li = a->sel ? a->sel + (base + i) * a->n_sel : NULL;
        int64_t n = i + 1;
        if (li) for (n = 0; n < a->n_sel && li[n] >= 0; n++) {}
        float m = -INFINITY;
        for (int64_t r = 0; r < n; r++) {
            const int64_t j = li ? li[r] : r;
            const float *kj = a->k + (base + j) * a->ldk + g * a->dk_stride;
            sc[r] = dot(qi, kj, a->dk) * a->scale;
            if (sc[r] > m) m = sc[r];
        }
        float sum = 0.0f;
        for (int64_t r = 0; r < n; r++) { sc[r] = expf(sc[r] - m); sum += sc[r]; }
        float inv = 1.0f / sum;
        float *oi = a->o + (base + i) * a->ldo + h * a->dv;
        memset(oi, 0, (size_t)a->dv * sizeof *oi);
        for (int64_t r = 0; r < n; r++) {
            const float *vj = a->v + (base + (li ? li[r] : r)) * a->ldv + g * a->dv_stride;
            float p = sc[r] * inv;
            if (simd) kn_axpy(oi, vj, p, a->dv);
            else for (int d = 0; d < a->dv; d++) oi[d] += p * vj[d];
        }
    }
}

void kn_attention_ref(const kn_attn_args *a) {
    float *sc = malloc((size_t)a->S * sizeof *sc);
    if (!sc) abort();
    for (int64_t s = 0; s < a->n_seq; s++)
        for (int h = 0; h < a->n_heads; h++) attn_item(a, s, h, sc, kn_dot_ref, false);
    free(sc);
}

void kn_attention(const kn_attn_args *a) {
    const int64_t n_items = a->n_seq * a->n_heads;
#ifdef _OPENMP
#pragma omp parallel
#endif
    {
        float *sc = malloc((size_t)a->S * sizeof *sc);
        if (!sc) abort();
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
        for (int64_t it = 0; it < n_items; it++)
            attn_item(a, it / a->n_heads, (int)(it % a->n_heads), sc, kn_dot, true);
        free(sc);
    }
}

void kn_layernorm(const float *x, int64_t ldx, const float *w, const float *b, int64_t T, int64_t n,
                  float eps, float *y, int64_t ldy) {
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (T * n >= KN_PAR_MIN)
#endif
    for (int64_t t = 0; t < T; t++) {
        const float *xt = x + t * ldx;
        float *yt = y + t * ldy;
        double s1 = 0.0, s2 = 0.0;
        for (int64_t i = 0; i < n; i++) s1 += xt[i];
        const float mean = (float)(s1 / (double)n);
        for (int64_t i = 0; i < n; i++) { double d = (double)(xt[i] - mean); s2 += d * d; }
        const float r = 1.0f / sqrtf((float)(s2 / (double)n) + eps);
        for (int64_t i = 0; i < n; i++) yt[i] = (xt[i] - mean) * r * w[i] + (b ? b[i] : 0.0f);
    }
}

void kn_silu_mul(const float *g, const float *u, int64_t ld, int64_t T, int64_t n, float *out,
                 int64_t ldo) {
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (T * n >= KN_PAR_MIN)
#endif
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < n; i++) {
            float z = g[t * ld + i];
            out[t * ldo + i] = z / (1.0f + expf(-z)) * u[t * ld + i];
        }
}

void kn_add_scaled(float *y, int64_t ldy, const float *x, int64_t ldx, const float *s, int64_t T,
                   int64_t n) {
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (T * n >= KN_PAR_MIN)
#endif
    for (int64_t t = 0; t < T; t++) {
        float f = s ? s[t] : 1.0f;
        for (int64_t i = 0; i < n; i++) y[t * ldy + i] += f * x[t * ldx + i];
    }
}

/* Index of the largest v[i] among i with ok[i]; lowest index on ties; -1 if none. */
static int argmax_masked(const float *v, const bool *ok, int n) {
    int best = -1;
    for (int i = 0; i < n; i++)
        if (ok[i] && (best < 0 || v[i] > v[best])) best = i;
    return best;
}

static void route_one(const kn_route_args *a, const float *l, int32_t *ids, float *w) {
    enum { MAXE = 1024 };
    float s[MAXE], b[MAXE], gs[MAXE];
    bool ok[MAXE], gok[MAXE], chosen[MAXE];
    const int n = a->n_exp;
    if (a->sigmoid) {
        for (int e = 0; e < n; e++) s[e] = 1.0f / (1.0f + expf(-l[e]));
    } else {
        float m = l[0];
        for (int e = 1; e < n; e++) if (l[e] > m) m = l[e];
        float sum = 0.0f;
        for (int e = 0; e < n; e++) { s[e] = expf(l[e] - m); sum += s[e]; }
        for (int e = 0; e < n; e++) s[e] /= sum;
    }
    for (int e = 0; e < n; e++) { b[e] = a->bias ? s[e] + a->bias[e] : s[e]; ok[e] = true; chosen[e] = false; }
    const int ng = a->n_group > 1 ? a->n_group : 1, per = n / ng;
    if (ng > 1 && a->topk_group < ng) {
        for (int g = 0; g < ng; g++) {
            bool in[MAXE];
            for (int e = 0; e < per; e++) in[e] = true;
            int i1 = argmax_masked(b + g * per, in, per);
            float sc = b[g * per + i1];
            if (per > 1) { in[i1] = false; sc += b[g * per + argmax_masked(b + g * per, in, per)]; }
            gs[g] = sc; gok[g] = true;
        }
        bool keep[MAXE];
        for (int g = 0; g < ng; g++) keep[g] = false;
        for (int r = 0; r < a->topk_group; r++) {
            int gi = argmax_masked(gs, gok, ng);
            keep[gi] = true; gok[gi] = false;
        }
        for (int e = 0; e < n; e++) ok[e] = keep[e / per];
    }
    float sum = 0.0f;
    for (int r = 0; r < a->k; r++) {
        int e = argmax_masked(b, ok, n);
        if (e < 0) break;
        chosen[e] = true; ok[e] = false; sum += s[e];
    }
    int j = 0;
    for (int e = 0; e < n && j < a->k; e++)
        if (chosen[e]) {
            ids[j] = e;
            w[j] = (a->norm ? s[e] / (sum + 1e-20f) : s[e]) * a->scale;
            j++;
        }
    for (; j < a->k; j++) { ids[j] = -1; w[j] = 0.0f; }
}

void kn_moe_route(const kn_route_args *a, const float *logits, int64_t T, int32_t *ids, float *w) {
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (T * a->n_exp >= KN_PAR_MIN)
#endif
    for (int64_t t = 0; t < T; t++)
        route_one(a, logits + t * a->n_exp, ids + t * a->k, w + t * a->k);
}

void kn_logsumexp(const float *logits, int64_t ld, int64_t T, int64_t V, double *lse,
                  int32_t *argmax) {
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
    for (int64_t t = 0; t < T; t++) {
        const float *l = logits + t * ld;
        int64_t am = 0;
        for (int64_t i = 1; i < V; i++) if (l[i] > l[am]) am = i;
        double m = l[am], s = 0.0;
        for (int64_t i = 0; i < V; i++) s += exp((double)l[i] - m);
        if (lse) lse[t] = m + log(s);
        if (argmax) argmax[t] = (int32_t)am;
    }
}
