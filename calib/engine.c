/* calib/engine.c — the layer-major forward pass (deepseek2 MLA + MoE, deepseek32's sparse
 * attention, llama, qwen2; deepseek4's layer is calib/engine_v4.c) over weight views of any type, with observers.  Per layer: load
 * views, run every batch of windows through it, release the layer's pages.  Shapes are
 * written beside buffers: T = tokens of the current batch, E = n_embd, H = heads. */
#include "engine_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

cal_run_params cal_run_default_params(void) {
    cal_run_params p = { 0, 4096, 0, true, false, NULL };
    return p;
}

static void *xmalloc(size_t n, qx_err *e) {
    void *p = malloc(n ? n : 1);
    if (!p) qx_fail(e, QX_ENOMEM, "engine: out of memory (%zu bytes)", n);
    return p;
}

void cal_mm(fwd_ctx *c, const cal_w *w, cal_wkind kind, int expert, const float *x, int64_t ldx, int64_t T,
            const float *bias, float *y, int64_t ldy) {
    if (c->obs && c->obs->matmul_input)
        c->obs->matmul_input(c->obs->ud, kind, kind == CAL_W_OUTPUT || kind == CAL_W_HC_HEAD ? -1 : c->layer, expert, x,
                             ldx, T, w->w.cols);
    if (c->ref) kn_matmul_ref(&w->w, x, ldx, T, bias, y, ldy);
    else c->be->matmul(c->be->ctx, &w->w, x, ldx, T, bias, y, ldy);
}

static void attention(const fwd_ctx *c, const kn_attn_args *a) {
    (c->ref ? kn_attention_ref : kn_attention)(a);
}

qx_status cal_mlp(fwd_ctx *c, const cal_w *g, const cal_w *u, const cal_w *d, cal_wkind kg, int expert, float limit,
                  const float *x, int64_t T, float *y, qx_err *e) {
    const int64_t E = c->m->hp.n_embd, F = g->w.rows;
    float *gb = xmalloc((size_t)(T * F) * sizeof(float), e), *ub = xmalloc((size_t)(T * F) * sizeof(float), e);
    if (!gb || !ub) { free(gb); free(ub); return QX_ENOMEM; }
    cal_mm(c, g, kg, expert, x, E, T, NULL, gb, F);
    cal_mm(c, u, (cal_wkind)(kg + 1), expert, x, E, T, NULL, ub, F);
    if (limit > 0) kn_silu_mul_clamp(gb, ub, F, T, F, limit, gb, F);
    else kn_silu_mul(gb, ub, F, T, F, gb, F);
    cal_mm(c, d, (cal_wkind)(kg + 2), expert, gb, F, T, NULL, y, E);
    free(gb); free(ub);
    return QX_OK;
}

/* MoE FFN: route, group tokens by expert, run each expert once over its tokens. */
static qx_status moe(fwd_ctx *c, const cal_layer *l, const float *x, int64_t T, float *y, qx_err *e) {
    const cal_hparams *hp = &c->m->hp;
    const int64_t E = hp->n_embd, X = hp->n_exp;
    const int k = (int)hp->n_exp_used;
    qx_status s = QX_ENOMEM;
    float *lg = xmalloc((size_t)(T * X) * sizeof(float), e), *rw = xmalloc((size_t)(T * k) * sizeof(float), e);
    int32_t *ids = xmalloc((size_t)(T * k) * sizeof(int32_t), e);
    int64_t *cnt = calloc((size_t)X + 1, sizeof(int64_t)), *list = xmalloc((size_t)(T * k) * sizeof(int64_t), e);
    float *xe = xmalloc((size_t)(T * E) * sizeof(float), e), *ye = xmalloc((size_t)(T * E) * sizeof(float), e);
    float *we = xmalloc((size_t)T * sizeof(float), e);
    if (!lg || !rw || !ids || !cnt || !list || !xe || !ye || !we) { if (!cnt) qx_fail(e, QX_ENOMEM, "engine: out of memory"); goto done; }
    cal_mm(c, &l->router, CAL_W_ROUTER, -1, x, E, T, NULL, lg, X);
    kn_route_args ra = { (int)X, k, (int)hp->n_group, (int)hp->topk_group, hp->route_sigmoid, hp->route_norm,
                         hp->route_scale, l->exp_bias };
    kn_moe_route(&ra, lg, T, ids, rw);
    if (c->obs && c->obs->routing) c->obs->routing(c->obs->ud, c->layer, c->t0, T, k, ids, rw);
    /* bucket (token, slot) pairs by expert, tokens ascending within an expert */
    for (int64_t i = 0; i < T * k; i++) if (ids[i] >= 0) cnt[ids[i] + 1]++;
    for (int64_t x2 = 0; x2 < X; x2++) cnt[x2 + 1] += cnt[x2];
    {
        int64_t *fill = calloc((size_t)X, sizeof(int64_t));
        if (!fill) { qx_fail(e, QX_ENOMEM, "engine: out of memory"); goto done; }
        for (int64_t i = 0; i < T * k; i++) if (ids[i] >= 0) list[cnt[ids[i]] + fill[ids[i]]++] = i;
        free(fill);
    }
    memset(y, 0, (size_t)(T * E) * sizeof(float));
    for (int64_t x2 = 0; x2 < X; x2++) {
        int64_t n = cnt[x2 + 1] - cnt[x2];
        if (n == 0) {
            if (c->obs && c->obs->matmul_input) {   /* experts with no tokens still exist */
                c->obs->matmul_input(c->obs->ud, CAL_W_EXP_GATE, c->layer, (int)x2, x, E, 0, E);
                c->obs->matmul_input(c->obs->ud, CAL_W_EXP_UP, c->layer, (int)x2, x, E, 0, E);
                c->obs->matmul_input(c->obs->ud, CAL_W_EXP_DOWN, c->layer, (int)x2, x, E, 0, hp->n_ff_exp);
            }
            continue;
        }
        const int64_t *li = list + cnt[x2];
        for (int64_t j = 0; j < n; j++) {
            memcpy(xe + j * E, x + (li[j] / k) * E, (size_t)E * sizeof(float));
            we[j] = rw[li[j]];
        }
        if ((s = cal_mlp(c, &l->eg[x2], &l->eu[x2], &l->ed[x2], CAL_W_EXP_GATE, (int)x2, 0.0f, xe, n, ye, e)) != QX_OK) goto done;
        for (int64_t j = 0; j < n; j++) {
            float *yt = y + (li[j] / k) * E;
            const float *src = ye + j * E;
            for (int64_t i = 0; i < E; i++) yt[i] += we[j] * src[i];
        }
    }
    if (l->has_shared) {
        if ((s = cal_mlp(c, &l->sg, &l->su, &l->sd, CAL_W_SH_GATE, -1, 0.0f, x, T, ye, e)) != QX_OK) goto done;
        kn_add_scaled(y, E, ye, E, NULL, T, E);
    }
    s = QX_OK;
done:
    free(lg); free(rw); free(ids); free(cnt); free(list); free(xe); free(ye); free(we);
    return s;
}

/* The MLA query q [T, H * (nope + rope)] from xn [T, E]: through the q_a / q_a_norm / q_b
 * low-rank path when q_lora > 0, else the plain projection.  Shared by both MLA forms.  When
 * qa_out is set (q_lora > 0), the normed latent [T, q_lora] is handed over (free()). */
static qx_status mla_query(fwd_ctx *c, const cal_layer *l, const float *xn, int64_t T, float *q, float **qa_out,
                           qx_err *e) {
    const cal_hparams *hp = &c->m->hp;
    const int64_t E = hp->n_embd, QDH = hp->n_head * (hp->qk_nope + hp->qk_rope);
    if (qa_out) *qa_out = NULL;
    if (hp->q_lora <= 0) {
        cal_mm(c, &l->q, CAL_W_Q, -1, xn, E, T, NULL, q, QDH);
        return QX_OK;
    }
    float *qa = xmalloc((size_t)(T * hp->q_lora) * sizeof(float), e);
    if (!qa) return QX_ENOMEM;
    cal_mm(c, &l->q_a, CAL_W_Q_A, -1, xn, E, T, NULL, qa, hp->q_lora);
    kn_rmsnorm(qa, hp->q_lora, l->q_a_norm, T, hp->q_lora, hp->norm_eps, qa, hp->q_lora);
    cal_mm(c, &l->q_b, CAL_W_Q_B, -1, qa, hp->q_lora, T, NULL, q, QDH);
    if (qa_out) *qa_out = qa;
    else free(qa);
    return QX_OK;
}

/* LayerNorm epsilon of the indexer's k_norm: llama.cpp's deepseek32 loader fixes f_norm_eps
 * at 1e-6 (the checkpoint's config carries none); the official model uses the same. */
#define CAL_DSA_KNORM_EPS 1e-6f

/* Whether this batch needs the lightning indexer: a V3.2 layer and windows longer than top_k
 * (shorter windows keep every key, which is dense MLA). */
static bool dsa_active(const fwd_ctx *c, const cal_layer *l) {
    return c->m->hp.index_topk > 0 && c->n_ctx > c->m->hp.index_topk && l->idx_q_b.present;
}

/* The indexer's matmul inputs, to the observer (qa for wq_b, xn for wk and weights_proj). */
static void dsa_report(fwd_ctx *c, const cal_layer *l, const float *xn, const float *qa, int64_t T) {
    if (!c->obs || !c->obs->matmul_input || !l->idx_q_b.present || !qa) return;
    const int64_t E = c->m->hp.n_embd, QL = c->m->hp.q_lora;
    c->obs->matmul_input(c->obs->ud, CAL_W_IDX_Q_B, c->layer, -1, qa, QL, T, QL);
    c->obs->matmul_input(c->obs->ud, CAL_W_IDX_K, c->layer, -1, xn, E, T, E);
    c->obs->matmul_input(c->obs->ud, CAL_W_IDX_PROJ, c->layer, -1, xn, E, T, E);
}

/* The lightning indexer of DeepSeek Sparse Attention (V3.2), as llama.cpp's deepseek32 graph
 * computes it: q_I = idx_q_b · qa (qa the normed q latent) [T, IH, ID]; k_I = LayerNorm(idx_k ·
 * xn) (weight and bias, eps 1e-6) [T, ID]; both roped NEOX-style (rotate-half) over their
 * first qk_rope dims with the model's rope frequencies; head weights w = idx_proj · xn /
 * sqrt(ID·IH); kn_dsa_select keeps each query's top_k keys into sel [T, top_k].
 * Not done, as llama.cpp does not: the official model's FP8 rounding of q_I and k_I.  The
 * Hadamard rotation llama.cpp applies to q_I and k_I is orthonormal, so it leaves every
 * q_I·k_I unchanged up to rounding and is not applied here. */
static qx_status dsa_select(fwd_ctx *c, const cal_layer *l, const float *xn, const float *qa, int64_t T, int32_t *sel,
                            qx_err *e) {
    const cal_hparams *hp = &c->m->hp;
    const int64_t E = hp->n_embd, IH = hp->index_n_head, ID = hp->index_head_dim, R = hp->qk_rope;
    float *qi = xmalloc((size_t)(T * IH * ID) * sizeof(float), e);   /* [T, IH, ID] */
    float *ki = xmalloc((size_t)(T * ID) * sizeof(float), e);        /* [T, ID] */
    float *wi = xmalloc((size_t)(T * IH) * sizeof(float), e);        /* [T, IH] */
    qx_status s = QX_ENOMEM;
    if (!qi || !ki || !wi) goto done;
    dsa_report(c, l, xn, qa, T);
    const kn_weight *ws[3] = { &l->idx_q_b.w, &l->idx_k.w, &l->idx_proj.w };
    const float *xs[3] = { qa, xn, xn };
    const int64_t lds[3] = { hp->q_lora, E, E };
    float *ys[3] = { qi, ki, wi };
    for (int i = 0; i < 3; i++) {
        if (c->ref) kn_matmul_ref(ws[i], xs[i], lds[i], T, NULL, ys[i], ws[i]->rows);
        else c->be->matmul(c->be->ctx, ws[i], xs[i], lds[i], T, NULL, ys[i], ws[i]->rows);
    }
    kn_layernorm(ki, ID, l->idx_k_norm, l->idx_k_norm_b, T, ID, CAL_DSA_KNORM_EPS, ki, ID);
    kn_rope(qi, IH * ID, T, (int)IH, ID, (int)R, c->pos, hp->rope_inv_freq, hp->rope_mscale, true);
    kn_rope(ki, ID, T, 1, 0, (int)R, c->pos, hp->rope_inv_freq, hp->rope_mscale, true);
    const float ws_scale = 1.0f / sqrtf((float)(ID * IH));
    for (int64_t i = 0; i < T * IH; i++) wi[i] *= ws_scale;
    kn_dsa_args a = { T / c->n_ctx, c->n_ctx, (int)IH, (int)ID, hp->index_topk, qi, IH * ID, ki, ID, wi, IH, sel };
    (c->ref ? kn_dsa_select_ref : kn_dsa_select)(&a);
    s = QX_OK;
done:
    free(qi); free(ki); free(wi);
    return s;
}

/* The MLA query and, for a V3.2 layer over windows longer than top_k, the key selection
 * (*sel malloc'd [T, top_k], else NULL). */
static qx_status mla_query_sel(fwd_ctx *c, const cal_layer *l, const float *xn, int64_t T, float *q, int32_t **sel,
                               qx_err *e) {
    *sel = NULL;
    if (!dsa_active(c, l)) {
        if (!(l->idx_q_b.present && c->obs && c->obs->matmul_input)) return mla_query(c, l, xn, T, q, NULL, e);
        float *qa = NULL;   /* indexer skipped (dense), its inputs still reported */
        QX_TRY(mla_query(c, l, xn, T, q, &qa, e));
        dsa_report(c, l, xn, qa, T);
        free(qa);
        return QX_OK;
    }
    float *qa = NULL;
    QX_TRY(mla_query(c, l, xn, T, q, &qa, e));
    *sel = xmalloc((size_t)(T * c->m->hp.index_topk) * sizeof(int32_t), e);
    qx_status s = *sel ? dsa_select(c, l, xn, qa, T, *sel, e) : QX_ENOMEM;
    free(qa);
    if (s != QX_OK) { free(*sel); *sel = NULL; }
    return s;
}

/* MLA attention (deepseek2) on xn [T, E]; adds its output into out [T, E] (zeroed). */
static qx_status attn_mla(fwd_ctx *c, const cal_layer *l, const float *xn, int64_t T, float *out, qx_err *e) {
    const cal_hparams *hp = &c->m->hp;
    const int64_t E = hp->n_embd, H = hp->n_head, N = hp->qk_nope, R = hp->qk_rope, Dv = hp->v_dim;
    const int64_t KVL = hp->kv_lora, QD = N + R;
    qx_status s = QX_ENOMEM;
    float *q = xmalloc((size_t)(T * H * QD) * sizeof(float), e);
    float *kva = xmalloc((size_t)(T * (KVL + R)) * sizeof(float), e);
    float *ckv = xmalloc((size_t)(T * KVL) * sizeof(float), e);
    float *kv = xmalloc((size_t)(T * H * (N + Dv)) * sizeof(float), e);
    float *K = xmalloc((size_t)(T * H * QD) * sizeof(float), e);
    float *o = xmalloc((size_t)(T * H * (Dv > KVL ? Dv : KVL)) * sizeof(float), e);
    int32_t *sel = NULL;
    if (!q || !kva || !ckv || !kv || !K || !o) goto done;
    if ((s = mla_query_sel(c, l, xn, T, q, &sel, e)) != QX_OK) goto done;
    cal_mm(c, &l->kv_a, CAL_W_KV_A, -1, xn, E, T, NULL, kva, KVL + R);
    kn_rmsnorm(kva, KVL + R, l->kv_a_norm, T, KVL, hp->norm_eps, ckv, KVL);
    cal_mm(c, &l->kv_b, CAL_W_KV_B, -1, ckv, KVL, T, NULL, kv, H * (N + Dv));
    if (c->obs && c->obs->matmul_input && c->obs->want_mla_split)
        for (int h = 0; h < H; h++)   /* attn_k_b: q_nope of head h (absorbed form) */
            c->obs->matmul_input(c->obs->ud, CAL_W_K_B, c->layer, h, q + h * QD, H * QD, T, N);
    kn_rope(q + N, H * QD, T, (int)H, QD, (int)R, c->pos, hp->rope_inv_freq, hp->rope_mscale, hp->rope_neox);
    kn_rope(kva + KVL, KVL + R, T, 1, 0, (int)R, c->pos, hp->rope_inv_freq, hp->rope_mscale, hp->rope_neox);
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < H; h++) {
            memcpy(K + (t * H + h) * QD, kv + t * H * (N + Dv) + h * (N + Dv), (size_t)N * sizeof(float));
            memcpy(K + (t * H + h) * QD + N, kva + t * (KVL + R) + KVL, (size_t)R * sizeof(float));
        }
    kn_attn_args a = { T / c->n_ctx, c->n_ctx, (int)H, (int)H, (int)QD, (int)Dv,
                       q, H * QD, QD, K, H * QD, QD, kv + N, H * (N + Dv), N + Dv, o, H * Dv, hp->attn_scale,
                       sel, hp->index_topk };
    if (c->obs && c->obs->matmul_input && c->obs->want_mla_split) {
        /* attn_v_b: the attention-weighted latent (KVL wide) of each head */
        kn_attn_args al = a;
        al.dv = (int)KVL; al.v = ckv; al.ldv = KVL; al.dv_stride = 0; al.ldo = H * KVL;
        attention(c, &al);
        for (int h = 0; h < H; h++)
            c->obs->matmul_input(c->obs->ud, CAL_W_V_B, c->layer, h, o + h * KVL, H * KVL, T, KVL);
    }
    attention(c, &a);
    cal_mm(c, &l->o, CAL_W_O, -1, o, H * Dv, T, NULL, out, E);
    s = QX_OK;
done:
    free(q); free(kva); free(ckv); free(kv); free(K); free(o); free(sel);
    return s;
}

/* MLA in the absorbed form of GGUF's attn_k_b / attn_v_b split (what llama.cpp runs):
 * per head, q_lat = k_b[h]·q_nope (KVL), scores against [c_kv, k_pe] shared by all heads,
 * o_lat = Σ p c_kv, o_h = v_b[h]·o_lat.  Equal to the HF form up to summation order. */
static qx_status attn_mla_absorbed(fwd_ctx *c, const cal_layer *l, const float *xn, int64_t T, float *out,
                                   qx_err *e) {
    const cal_hparams *hp = &c->m->hp;
    const int64_t E = hp->n_embd, H = hp->n_head, N = hp->qk_nope, R = hp->qk_rope, Dv = hp->v_dim;
    const int64_t KVL = hp->kv_lora, QD = N + R, LD = KVL + R;
    qx_status s = QX_ENOMEM;
    float *q = xmalloc((size_t)(T * H * QD) * sizeof(float), e);
    float *kva = xmalloc((size_t)(T * LD) * sizeof(float), e);
    float *ql = xmalloc((size_t)(T * H * LD) * sizeof(float), e);      /* [T, H, KVL + R] */
    float *ol = xmalloc((size_t)(T * H * KVL) * sizeof(float), e);     /* [T, H, KVL] */
    float *o = xmalloc((size_t)(T * H * Dv) * sizeof(float), e);
    int32_t *sel = NULL;
    if (!q || !kva || !ql || !ol || !o) goto done;
    if ((s = mla_query_sel(c, l, xn, T, q, &sel, e)) != QX_OK) goto done;
    cal_mm(c, &l->kv_a, CAL_W_KV_A, -1, xn, E, T, NULL, kva, LD);
    kn_rmsnorm(kva, LD, l->kv_a_norm, T, KVL, hp->norm_eps, kva, LD);   /* c_kv in place */
    kn_rope(q + N, H * QD, T, (int)H, QD, (int)R, c->pos, hp->rope_inv_freq, hp->rope_mscale, hp->rope_neox);
    kn_rope(kva + KVL, LD, T, 1, 0, (int)R, c->pos, hp->rope_inv_freq, hp->rope_mscale, hp->rope_neox);
    for (int64_t h = 0; h < H; h++) {
        cal_w kb = cal_w_rows(&l->k_b, h * KVL, KVL);
        cal_mm(c, &kb, CAL_W_K_B, (int)h, q + h * QD, H * QD, T, NULL, ql + h * LD, H * LD);
        for (int64_t t = 0; t < T; t++)
            memcpy(ql + (t * H + h) * LD + KVL, q + t * H * QD + h * QD + N, (size_t)R * sizeof(float));
    }
    kn_attn_args a = { T / c->n_ctx, c->n_ctx, (int)H, 1, (int)LD, (int)KVL,
                       ql, H * LD, LD, kva, LD, 0, kva, LD, 0, ol, H * KVL, hp->attn_scale, sel, hp->index_topk };
    attention(c, &a);
    for (int64_t h = 0; h < H; h++) {
        cal_w vb = cal_w_rows(&l->v_b, h * Dv, Dv);
        cal_mm(c, &vb, CAL_W_V_B, (int)h, ol + h * KVL, H * KVL, T, NULL, o + h * Dv, H * Dv);
    }
    cal_mm(c, &l->o, CAL_W_O, -1, o, H * Dv, T, NULL, out, E);
    s = QX_OK;
done:
    free(q); free(kva); free(ql); free(ol); free(o); free(sel);
    return s;
}

/* GQA attention (llama, qwen2) with NEOX rope. */
static qx_status attn_gqa(fwd_ctx *c, const cal_layer *l, const float *xn, int64_t T, float *out, qx_err *e) {
    const cal_hparams *hp = &c->m->hp;
    const int64_t E = hp->n_embd, H = hp->n_head, KV = hp->n_head_kv, D = hp->head_dim;
    qx_status s = QX_ENOMEM;
    float *q = xmalloc((size_t)(T * H * D) * sizeof(float), e), *k = xmalloc((size_t)(T * KV * D) * sizeof(float), e);
    float *v = xmalloc((size_t)(T * KV * D) * sizeof(float), e), *o = xmalloc((size_t)(T * H * D) * sizeof(float), e);
    if (!q || !k || !v || !o) goto done;
    cal_mm(c, &l->q, CAL_W_Q, -1, xn, E, T, l->bq, q, H * D);
    cal_mm(c, &l->k, CAL_W_K, -1, xn, E, T, l->bk, k, KV * D);
    cal_mm(c, &l->v, CAL_W_V, -1, xn, E, T, l->bv, v, KV * D);
    kn_rope(q, H * D, T, (int)H, D, hp->rope_dim, c->pos, hp->rope_inv_freq, hp->rope_mscale, hp->rope_neox);
    kn_rope(k, KV * D, T, (int)KV, D, hp->rope_dim, c->pos, hp->rope_inv_freq, hp->rope_mscale, hp->rope_neox);
    kn_attn_args a = { T / c->n_ctx, c->n_ctx, (int)H, (int)KV, (int)D, (int)D,
                       q, H * D, D, k, KV * D, D, v, KV * D, D, o, H * D, hp->attn_scale, NULL, 0 };
    attention(c, &a);
    cal_mm(c, &l->o, CAL_W_O, -1, o, H * D, T, NULL, out, E);
    s = QX_OK;
done:
    free(q); free(k); free(v); free(o);
    return s;
}

qx_status cal_layer_fwd(fwd_ctx *c, const cal_layer *l, float *h, int64_t T, qx_err *e) {
    const cal_hparams *hp = &c->m->hp;
    if (hp->arch == CAL_ARCH_DEEPSEEK4) return cal_layer_fwd_v4(c, l, h, T, e);
    const int64_t E = hp->n_embd;
    float *xn = xmalloc((size_t)(T * E) * sizeof(float), e), *y = xmalloc((size_t)(T * E) * sizeof(float), e);
    qx_status s = QX_ENOMEM;
    if (!xn || !y) goto done;
    kn_rmsnorm(h, E, l->attn_norm, T, E, hp->norm_eps, xn, E);
    s = hp->arch != CAL_ARCH_DEEPSEEK2 ? attn_gqa(c, l, xn, T, y, e)
        : l->k_b.present ? attn_mla_absorbed(c, l, xn, T, y, e) : attn_mla(c, l, xn, T, y, e);
    if (s != QX_OK) goto done;
    kn_add_scaled(h, E, y, E, NULL, T, E);
    kn_rmsnorm(h, E, l->ffn_norm, T, E, hp->norm_eps, xn, E);
    s = l->moe ? moe(c, l, xn, T, y, e) : cal_mlp(c, &l->gate, &l->up, &l->down, CAL_W_GATE, -1, 0.0f, xn, T, y, e);
    if (s != QX_OK) goto done;
    kn_add_scaled(h, E, y, E, NULL, T, E);
done:
    free(xn); free(y);
    return s;
}

qx_status cal_head_fwd(fwd_ctx *c, const float *h, int64_t w0, int64_t w1, const cal_run_params *p,
                          qx_err *e) {
    const cal_hparams *hp = &c->m->hp;
    const int64_t E = hp->n_embd, V = hp->n_vocab, S = c->n_ctx, T = (w1 - w0) * S;
    const int64_t p0 = p->logits_from, nr = S - p0;
    float *xn = xmalloc((size_t)(T * E) * sizeof(float), e);
    if (!xn) return QX_ENOMEM;
    const float *hs = h + w0 * S * cal_state_width(hp);
    if (hp->hc > 0) {   /* deepseek4: the streams collapse first (in xn, normed in place) */
        qx_status sh = cal_hc_head_fwd(c, hs, T, xn, e);
        if (sh != QX_OK) { free(xn); return sh; }
        hs = xn;
    }
    kn_rmsnorm(hs, E, c->m->out_norm, T, E, hp->norm_eps, xn, E);
    if (c->obs && c->obs->hidden) c->obs->hidden(c->obs->ud, (int)hp->n_layer, w0 * S, xn, T, E);
    qx_status s = QX_OK;
    if (c->obs && c->obs->matmul_input)   /* every token reaches the output head's input */
        c->obs->matmul_input(c->obs->ud, CAL_W_OUTPUT, -1, -1, xn, E, T, E);
    if (p->want_logits && c->obs && c->obs->logits) {
        const int64_t wpb = (int64_t)1 << 26;   /* logits floats per output batch (256 MiB) */
        int64_t nw = wpb / (nr * V);
        if (nw < 1) nw = 1;
        float *rows = xmalloc((size_t)(nw * nr * E) * sizeof(float), e);
        float *lg = xmalloc((size_t)(nw * nr * V) * sizeof(float), e);
        if (!rows || !lg) s = QX_ENOMEM;
        for (int64_t w = w0; s == QX_OK && w < w1; w += nw) {
            int64_t n = w + nw <= w1 ? nw : w1 - w;
            for (int64_t i = 0; i < n; i++)
                memcpy(rows + i * nr * E, xn + ((w - w0 + i) * S + p0) * E, (size_t)(nr * E) * sizeof(float));
            if (c->ref) kn_matmul_ref(&c->m->output.w, rows, E, n * nr, NULL, lg, V);
            else c->be->matmul(c->be->ctx, &c->m->output.w, rows, E, n * nr, NULL, lg, V);
            for (int64_t i = 0; s == QX_OK && i < n; i++)
                s = c->obs->logits(c->obs->ud, w + i, p0, lg + i * nr * V, nr, V, e);
        }
        free(rows); free(lg);
    }
    free(xn);
    return s;
}

qx_status cal_forward(cal_model *m, const int32_t *ids, int64_t n_win, int64_t n_ctx,
                      const cal_run_params *pp, const cal_observer *obs, qx_err *e) {
    const cal_hparams *hp = &m->hp;
    cal_run_params p = pp ? *pp : cal_run_default_params();
    if (n_win <= 0 || n_ctx <= 0) return qx_fail(e, QX_EINVAL, "engine: %lld windows of %lld tokens", (long long)n_win, (long long)n_ctx);
    if (p.logits_from < 0 || p.logits_from >= n_ctx) return qx_fail(e, QX_EINVAL, "engine: logits_from %lld outside the window of %lld", (long long)p.logits_from, (long long)n_ctx);
    if (p.batch_tokens <= 0) p.batch_tokens = 4096;
    const int64_t E = hp->n_embd, T = n_win * n_ctx, SW = cal_state_width(hp);
    for (int64_t t = 0; t < T; t++)
        if (ids[t] < 0 || ids[t] >= hp->n_vocab)
            return qx_fail(e, QX_EINVAL, "engine: token id %d at %lld outside the vocabulary of %lld", ids[t], (long long)t, (long long)hp->n_vocab);
#ifdef _OPENMP
    if (p.n_threads > 0) omp_set_num_threads(p.n_threads);
#endif
    int64_t wpb = p.batch_tokens / n_ctx;
    if (wpb < 1) wpb = 1;
    float *h = xmalloc((size_t)(T * SW) * sizeof(float), e);      /* [T, SW] residual state */
    int32_t *pos = xmalloc((size_t)(wpb * n_ctx) * sizeof(int32_t), e);
    if (!h || !pos) { free(h); free(pos); return QX_ENOMEM; }
    for (int64_t t = 0; t < wpb * n_ctx; t++) pos[t] = (int32_t)(t % n_ctx);
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
    for (int64_t t = 0; t < T; t++) {
        kn_weight_rows(&m->embed.w, ids[t], ids[t] + 1, h + t * SW);
        for (int64_t k = E; k < SW; k += E) memcpy(h + t * SW + k, h + t * SW, (size_t)E * sizeof(float));
    }
    fwd_ctx c = { m, obs, 0, n_ctx, 0, pos, p.ref_kernels, p.backend ? p.backend : kn_backend_cpu(), ids };
    qx_status s = QX_OK;
    for (int L = 0; s == QX_OK && L < hp->n_layer; L++) {
        cal_layer l;
        if ((s = cal_layer_load(m, L, &l, e)) != QX_OK) break;
        c.layer = L;
        for (int64_t w = 0; s == QX_OK && w < n_win; w += wpb) {
            int64_t nw = w + wpb <= n_win ? wpb : n_win - w;
            c.t0 = w * n_ctx;
            s = cal_layer_fwd(&c, &l, h + c.t0 * SW, nw * n_ctx, e);
            if (s == QX_OK && obs && obs->hidden) obs->hidden(obs->ud, L, c.t0, h + c.t0 * SW, nw * n_ctx, SW);
            if (obs && obs->progress) obs->progress(obs->ud, L, (int)hp->n_layer, (w + nw) * n_ctx, T);
        }
        cal_layer_free(m, &l);
        qx_status sd = c.be->layer_done(c.be->ctx, s == QX_OK ? e : NULL);   /* device copies go too */
        if (s == QX_OK) s = sd;
        if (s == QX_OK && obs && obs->layer_done) s = obs->layer_done(obs->ud, L, e);
    }
    c.layer = (int)hp->n_layer;
    for (int64_t w = 0; s == QX_OK && w < n_win; w += wpb) {
        int64_t nw = w + wpb <= n_win ? wpb : n_win - w;
        c.t0 = w * n_ctx;
        s = cal_head_fwd(&c, h, w, w + nw, &p, e);
        if (obs && obs->progress) obs->progress(obs->ud, (int)hp->n_layer, (int)hp->n_layer, (w + nw) * n_ctx, T);
    }
    {
        qx_status sd = c.be->layer_done(c.be->ctx, s == QX_OK ? e : NULL);
        if (s == QX_OK) s = sd;
    }
    if (s == QX_OK && obs && obs->layer_done) s = obs->layer_done(obs->ud, (int)hp->n_layer, e);
    free(h); free(pos);
    return s;
}

static const char *const hf_suffix[CAL_W_KIND_COUNT] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "self_attn.q_a_proj", "self_attn.q_b_proj", "self_attn.kv_a_proj_with_mqa", "self_attn.kv_b_proj", NULL, NULL,
    "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",
    "mlp.gate", "gate_proj", "up_proj", "down_proj",
    "mlp.shared_experts.gate_proj", "mlp.shared_experts.up_proj", "mlp.shared_experts.down_proj",
    "self_attn.indexer.wq_b", "self_attn.indexer.wk", "self_attn.indexer.weights_proj", NULL,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL };
static const char *const gguf_name[CAL_W_KIND_COUNT] = {
    "attn_q", "attn_k", "attn_v", "attn_output",
    "attn_q_a", "attn_q_b", "attn_kv_a_mqa", "attn_kv_b", "attn_k_b", "attn_v_b",
    "ffn_gate", "ffn_up", "ffn_down",
    "ffn_gate_inp", "ffn_gate_exps", "ffn_up_exps", "ffn_down_exps",
    "ffn_gate_shexp", "ffn_up_shexp", "ffn_down_shexp",
    "indexer.attn_q_b", "indexer.attn_k", "indexer.proj", "output",
    "attn_kv", "attn_output_a", "attn_output_b", "hc_attn_fn", "hc_ffn_fn", "output_hc_fn",
    "attn_compressor_kv", "attn_compressor_gate", "indexer_compressor_kv", "indexer_compressor_gate" };

bool cal_weight_name(cal_wkind kind, int layer, int expert, bool gguf, char *buf, size_t cap) {
    if ((unsigned)kind >= CAL_W_KIND_COUNT) return false;
    int n;
    if (gguf) {
        n = kind == CAL_W_OUTPUT || kind == CAL_W_HC_HEAD ? snprintf(buf, cap, "%s.weight", gguf_name[kind])
                                                          : snprintf(buf, cap, "blk.%d.%s.weight", layer, gguf_name[kind]);
    } else if (kind == CAL_W_OUTPUT) {
        n = snprintf(buf, cap, "lm_head.weight");
    } else if (!hf_suffix[kind]) {
        return false;
    } else if (kind >= CAL_W_EXP_GATE && kind <= CAL_W_EXP_DOWN) {
        n = snprintf(buf, cap, "model.layers.%d.mlp.experts.%d.%s.weight", layer, expert, hf_suffix[kind]);
    } else {
        n = snprintf(buf, cap, "model.layers.%d.%s.weight", layer, hf_suffix[kind]);
    }
    return n > 0 && (size_t)n < cap;
}
