/* calib/engine_v4.c — one DeepSeek-V4 (deepseek4) decoder layer and the hyper-connection
 * head of the layer-major engine, as llama.cpp's deepseek4 graph computes them
 * (src/models/deepseek4.cpp with src/llama-kv-cache-dsv4.cpp's block plan), for windows of
 * n_ctx tokens at positions 0..n_ctx-1 (prefill: no cache state before a window).
 *
 * The residual state is hc streams per token: h [T, hc, E].  Each of the two sublayers
 * (attention, MoE) reads x = Σ_s pre_s h_s with pre/post/comb from hc_*_fn over the RMS-normed
 * streams (kn_hc_coeffs: Sinkhorn) and writes h'_d = post_d y + Σ_s comb_sd h_s.
 *
 * Attention (per layer ratio r = compress_ratios[L]): q = rmsnorm_per_head(q_b · rmsnorm(q_a ·
 * x)) and one shared K=V head kv = rmsnorm(wkv · x), both roped over their last qk_rope dims
 * (ggml NORM, interleaved pairs; ratio-0 layers rope_freq_base, others
 * compress_rope_freq_base with the file's YaRN).  Keys: the raw rows of the last n_swa
 * positions, plus for r > 0 the compressed rows of the complete r-token blocks up to the query
 * (kn_v4_compress: softmax pooling of compressor_kv by compressor_gate + ape, overlapping the
 * previous block at r = 4; rmsnorm; roped at the block's first position).  At r = 4 the
 * indexer keeps the index_topk blocks of highest Σ_h relu(q_h·k)·w_h (keys from a second
 * compressor, queries from indexer.attn_q_b on the q latent); at r = 128 every complete block
 * is used.  Softmax with per-head sinks; the output's rope part is rotated back (de-roped);
 * then attn_output_a per group of H/o_groups heads and attn_output_b.
 * MoE: sqrt-softplus routing with exp_probs_b, or hash routing by token id (ffn_gate_tid2eid)
 * in the first hash_layer_count layers, SwiGLU with the clamp, plus the shared expert.
 *
 * Not done here (as llama.cpp does not either, or where it is rounding only): the Hadamard
 * rotation llama.cpp applies to the indexer's q and k and, with a quantized cache, to q/k/v
 * (orthonormal: dot products are unchanged); its F16 KV cache (the engine keeps f32). */
#include "engine_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void *xmalloc(size_t n, qx_err *e) {
    void *p = malloc(n ? n : 1);
    if (!p) qx_fail(e, QX_ENOMEM, "engine: out of memory (%zu bytes)", n);
    return p;
}

static float *ones(int64_t n, qx_err *e) {
    float *v = xmalloc((size_t)n * sizeof(float), e);
    if (v) for (int64_t i = 0; i < n; i++) v[i] = 1.0f;
    return v;
}

/* Compressed rows of one compressor: kvw/gate [cw, E] over xn, pooled into out [n_seq*NB, d],
 * normed by norm and roped at each block's first position. */
static qx_status compress(fwd_ctx *c, const cal_w *kvw, const cal_w *gw, cal_wkind kk, const float *ape,
                          const float *norm, int r, int64_t d, const float *xn, int64_t T, float *out, qx_err *e) {
    const cal_hparams *hp = &c->m->hp;
    const int64_t E = hp->n_embd, cw = kvw->w.rows, S = c->n_ctx, ns = T / S, NB = S / r, R = hp->qk_rope;
    float *kv = xmalloc((size_t)(T * cw) * sizeof(float), e), *sc = xmalloc((size_t)(T * cw) * sizeof(float), e);
    int32_t *cpos = xmalloc((size_t)(ns * NB + 1) * sizeof(int32_t), e);
    if (!kv || !sc || !cpos) { free(kv); free(sc); free(cpos); return QX_ENOMEM; }
    cal_mm(c, kvw, kk, -1, xn, E, T, NULL, kv, cw);
    cal_mm(c, gw, (cal_wkind)(kk + 1), -1, xn, E, T, NULL, sc, cw);
    if (NB > 0) {
        kn_comp_args a = { ns, S, r, (int)d, r == 4, kv, sc, cw, ape, cw, out };
        (c->ref ? kn_v4_compress_ref : kn_v4_compress)(&a);
        for (int64_t k = 0; k < ns * NB; k++) cpos[k] = (int32_t)((k % NB) * r);
        kn_rmsnorm(out, d, norm, ns * NB, d, hp->norm_eps, out, d);
        kn_rope(out + (d - R), d, ns * NB, 1, 0, (int)R, cpos, hp->rope_c_inv_freq, 1.0f, false);
    }
    free(kv); free(sc); free(cpos);
    return QX_OK;
}

/* The indexer's blocks for every query of the batch: sel [T, topk]. */
static qx_status indexer(fwd_ctx *c, const cal_layer *l, const float *xn, const float *qa, int64_t T, int64_t topk,
                         int32_t *sel, qx_err *e) {
    const cal_hparams *hp = &c->m->hp;
    const int64_t E = hp->n_embd, IH = hp->index_n_head, ID = hp->index_head_dim, R = hp->qk_rope;
    const int64_t S = c->n_ctx, ns = T / S, NB = S / 4;
    float *iq = xmalloc((size_t)(T * IH * ID) * sizeof(float), e), *iw = xmalloc((size_t)(T * IH) * sizeof(float), e);
    float *ik = xmalloc((size_t)(ns * NB * ID + 1) * sizeof(float), e);
    qx_status s = QX_ENOMEM;
    if (!iq || !iw || !ik) goto done;
    cal_mm(c, &l->idx_q_b, CAL_W_IDX_Q_B, -1, qa, hp->q_lora, T, NULL, iq, IH * ID);
    kn_rope(iq + (ID - R), IH * ID, T, (int)IH, ID, (int)R, c->pos, hp->rope_c_inv_freq, 1.0f, false);
    cal_mm(c, &l->idx_proj, CAL_W_IDX_PROJ, -1, xn, E, T, NULL, iw, IH);
    const float ws = 1.0f / sqrtf((float)(ID * IH));
    for (int64_t i = 0; i < T * IH; i++) iw[i] *= ws;
    if ((s = compress(c, &l->icomp_kv, &l->icomp_gate, CAL_W_IDX_COMP_KV, l->icomp_ape, l->icomp_norm, 4, ID, xn, T, ik,
                      e)) != QX_OK) goto done;
    kn_v4_sel_args a = { ns, S, 4, (int)IH, (int)ID, topk, iq, IH * ID, ik, ID, iw, IH, sel };
    (c->ref ? kn_v4_select_ref : kn_v4_select)(&a);
    s = QX_OK;
done:
    free(iq); free(iw); free(ik);
    return s;
}

/* Attention of xn [T, E] into y [T, E]. */
static qx_status attn_v4(fwd_ctx *c, const cal_layer *l, const float *xn, int64_t T, float *y, qx_err *e) {
    const cal_hparams *hp = &c->m->hp;
    const int64_t E = hp->n_embd, H = hp->n_head, D = hp->head_dim, R = hp->qk_rope, NOPE = D - R;
    const int64_t QL = hp->q_lora, G = hp->o_groups, OL = hp->o_lora, OGD = H * D / G;
    const int64_t S = c->n_ctx, ns = T / S, r = l->ratio, NB = r ? S / r : 0;
    /* top_k beyond the blocks of a window keeps them all either way: the lists need no more */
    const int64_t topk = hp->index_topk < NB ? hp->index_topk : NB > 0 ? NB : 1;
    const float *inv = r ? hp->rope_c_inv_freq : hp->rope_inv_freq;
    qx_status s = QX_ENOMEM;
    float *qa = xmalloc((size_t)(T * QL) * sizeof(float), e), *q = xmalloc((size_t)(T * H * D) * sizeof(float), e);
    float *kv = xmalloc((size_t)(T * D) * sizeof(float), e), *o = xmalloc((size_t)(T * H * D) * sizeof(float), e);
    float *oa = xmalloc((size_t)(T * G * OL) * sizeof(float), e), *one = ones(D, e);
    float *ck = r ? xmalloc((size_t)(ns * NB * D + 1) * sizeof(float), e) : NULL;
    int32_t *sel = r == 4 ? xmalloc((size_t)(T * topk) * sizeof(int32_t), e) : NULL;
    int32_t *neg = xmalloc((size_t)T * sizeof(int32_t), e);
    if (!qa || !q || !kv || !o || !oa || !one || (r && !ck) || (r == 4 && !sel) || !neg) goto done;
    cal_mm(c, &l->q_a, CAL_W_Q_A, -1, xn, E, T, NULL, qa, QL);
    kn_rmsnorm(qa, QL, l->q_a_norm, T, QL, hp->norm_eps, qa, QL);
    cal_mm(c, &l->q_b, CAL_W_Q_B, -1, qa, QL, T, NULL, q, H * D);
    kn_rmsnorm(q, D, one, T * H, D, hp->norm_eps, q, D);
    kn_rope(q + NOPE, H * D, T, (int)H, D, (int)R, c->pos, inv, 1.0f, false);
    cal_mm(c, &l->kv, CAL_W_KV, -1, xn, E, T, NULL, kv, D);
    kn_rmsnorm(kv, D, l->kv_norm, T, D, hp->norm_eps, kv, D);
    kn_rope(kv + NOPE, D, T, 1, 0, (int)R, c->pos, inv, 1.0f, false);
    if (r && (s = compress(c, &l->comp_kv, &l->comp_gate, CAL_W_COMP_KV, l->comp_ape, l->comp_norm, (int)r, D, xn, T,
                           ck, e)) != QX_OK) goto done;
    if (r == 4 && (s = indexer(c, l, xn, qa, T, topk, sel, e)) != QX_OK) goto done;
    kn_v4_attn_args a = { ns, S, (int)H, (int)D, hp->n_swa, q, H * D, D, kv, D, ck, D, (int)r,
                          sel, r == 4 ? topk : 0, l->sinks, hp->attn_scale, o, H * D };
    (c->ref ? kn_v4_attention_ref : kn_v4_attention)(&a);
    for (int64_t t = 0; t < T; t++) neg[t] = -c->pos[t];
    kn_rope(o + NOPE, H * D, T, (int)H, D, (int)R, neg, inv, 1.0f, false);   /* de-rope: the inverse rotation */
    for (int64_t g = 0; g < G; g++) {
        cal_w wg = cal_w_rows(&l->o_a, g * OL, OL);
        cal_mm(c, &wg, CAL_W_O_A, (int)g, o + g * OGD, H * D, T, NULL, oa + g * OL, G * OL);
    }
    cal_mm(c, &l->o_b, CAL_W_O_B, -1, oa, G * OL, T, NULL, y, E);
    s = QX_OK;
done:
    free(qa); free(q); free(kv); free(o); free(oa); free(one); free(ck); free(sel); free(neg);
    return s;
}

/* MoE FFN of xn [T, E] into y [T, E]: route, run each expert once over its tokens, + shared. */
static qx_status ffn_v4(fwd_ctx *c, const cal_layer *l, const float *xn, int64_t T, float *y, qx_err *e) {
    const cal_hparams *hp = &c->m->hp;
    const int64_t E = hp->n_embd, X = hp->n_exp;
    const int k = (int)hp->n_exp_used;
    if (l->tid2eid && !c->ids)
        return qx_fail(e, QX_EINVAL, "engine: layer %d routes by token id but the run has no token ids", c->layer);
    qx_status s = QX_ENOMEM;
    float *lg = xmalloc((size_t)(T * X) * sizeof(float), e), *rw = xmalloc((size_t)(T * k) * sizeof(float), e);
    int32_t *ids = xmalloc((size_t)(T * k) * sizeof(int32_t), e);
    int64_t *cnt = calloc((size_t)X + 1, sizeof(int64_t)), *fill = calloc((size_t)X, sizeof(int64_t));
    int64_t *list = xmalloc((size_t)(T * k) * sizeof(int64_t), e);
    float *xe = xmalloc((size_t)(T * E) * sizeof(float), e), *ye = xmalloc((size_t)(T * E) * sizeof(float), e);
    if (!lg || !rw || !ids || !cnt || !fill || !list || !xe || !ye) {
        if (!cnt || !fill) qx_fail(e, QX_ENOMEM, "engine: out of memory");
        goto done;
    }
    cal_mm(c, &l->router, CAL_W_ROUTER, -1, xn, E, T, NULL, lg, X);
    kn_v4_route_args ra = { (int)X, k, hp->route_norm, hp->route_scale, l->exp_bias, l->tid2eid,
                            c->ids ? c->ids + c->t0 : NULL };
    if (!kn_v4_route(&ra, lg, T, ids, rw)) { s = qx_fail(e, QX_EFORMAT, "engine: layer %d: hash routing table out of range", c->layer); goto done; }
    if (c->obs && c->obs->routing) c->obs->routing(c->obs->ud, c->layer, c->t0, T, k, ids, rw);
    for (int64_t i = 0; i < T * k; i++) cnt[ids[i] + 1]++;
    for (int64_t x = 0; x < X; x++) cnt[x + 1] += cnt[x];
    for (int64_t i = 0; i < T * k; i++) list[cnt[ids[i]] + fill[ids[i]]++] = i;
    memset(y, 0, (size_t)(T * E) * sizeof(float));
    for (int64_t x = 0; x < X; x++) {
        const int64_t n = cnt[x + 1] - cnt[x], *li = list + cnt[x];
        if (n == 0) {
            if (c->obs && c->obs->matmul_input) {   /* experts with no tokens still exist */
                c->obs->matmul_input(c->obs->ud, CAL_W_EXP_GATE, c->layer, (int)x, xn, E, 0, E);
                c->obs->matmul_input(c->obs->ud, CAL_W_EXP_UP, c->layer, (int)x, xn, E, 0, E);
                c->obs->matmul_input(c->obs->ud, CAL_W_EXP_DOWN, c->layer, (int)x, xn, E, 0, hp->n_ff_exp);
            }
            continue;
        }
        for (int64_t j = 0; j < n; j++) memcpy(xe + j * E, xn + (li[j] / k) * E, (size_t)E * sizeof(float));
        if ((s = cal_mlp(c, &l->eg[x], &l->eu[x], &l->ed[x], CAL_W_EXP_GATE, (int)x, l->clamp_exp, xe, n, ye, e)) != QX_OK)
            goto done;
        for (int64_t j = 0; j < n; j++) {
            float *yt = y + (li[j] / k) * E;
            const float wj = rw[li[j]], *src = ye + j * E;
            for (int64_t i = 0; i < E; i++) yt[i] += wj * src[i];
        }
    }
    if ((s = cal_mlp(c, &l->sg, &l->su, &l->sd, CAL_W_SH_GATE, -1, l->clamp_shexp, xn, T, ye, e)) != QX_OK) goto done;
    kn_add_scaled(y, E, ye, E, NULL, T, E);
    s = QX_OK;
done:
    free(lg); free(rw); free(ids); free(cnt); free(fill); free(list); free(xe); free(ye);
    return s;
}

/* pre/post/comb of the streams h [T, hc*E] through the mixer fn (kind) with base/scale. */
static qx_status hc_mix(fwd_ctx *c, const cal_w *fn, cal_wkind kind, const float *base, const float *scale,
                        const float *h, int64_t T, float *pre, float *post, float *comb, qx_err *e) {
    const cal_hparams *hp = &c->m->hp;
    const int64_t SW = cal_state_width(hp), M = fn->w.rows;
    float *flat = xmalloc((size_t)(T * SW) * sizeof(float), e), *mix = xmalloc((size_t)(T * M) * sizeof(float), e);
    float *one = ones(SW, e);
    if (!flat || !mix || !one) { free(flat); free(mix); free(one); return QX_ENOMEM; }
    kn_rmsnorm(h, SW, one, T, SW, hp->norm_eps, flat, SW);
    cal_mm(c, fn, kind, -1, flat, SW, T, NULL, mix, M);
    kn_hc_args a = { (int)hp->hc, (int)hp->hc_iters, hp->hc_eps, scale, base };
    (c->ref ? kn_hc_coeffs_ref : kn_hc_coeffs)(&a, mix, M, T, pre, post, comb);
    free(flat); free(mix); free(one);
    return QX_OK;
}

qx_status cal_layer_fwd_v4(fwd_ctx *c, const cal_layer *l, float *h, int64_t T, qx_err *e) {
    const cal_hparams *hp = &c->m->hp;
    const int64_t E = hp->n_embd, HC = hp->hc, SW = cal_state_width(hp);
    qx_status s = QX_ENOMEM;
    float *pre = xmalloc((size_t)(T * HC) * sizeof(float), e), *post = xmalloc((size_t)(T * HC) * sizeof(float), e);
    float *comb = xmalloc((size_t)(T * HC * HC) * sizeof(float), e);
    float *x = xmalloc((size_t)(T * E) * sizeof(float), e), *y = xmalloc((size_t)(T * E) * sizeof(float), e);
    float *hn = xmalloc((size_t)(T * SW) * sizeof(float), e);
    if (!pre || !post || !comb || !x || !y || !hn) goto done;
    for (int part = 0; part < 2; part++) {
        const bool at = part == 0;
        if ((s = hc_mix(c, at ? &l->hc_attn : &l->hc_ffn, at ? CAL_W_HC_ATTN : CAL_W_HC_FFN,
                        at ? l->hc_attn_base : l->hc_ffn_base, at ? l->hc_attn_scale : l->hc_ffn_scale, h, T, pre, post,
                        comb, e)) != QX_OK) goto done;
        (c->ref ? kn_hc_collapse_ref : kn_hc_collapse)(h, pre, (int)HC, T, E, x);
        kn_rmsnorm(x, E, at ? l->attn_norm : l->ffn_norm, T, E, hp->norm_eps, x, E);
        if ((s = at ? attn_v4(c, l, x, T, y, e) : ffn_v4(c, l, x, T, y, e)) != QX_OK) goto done;
        (c->ref ? kn_hc_expand_ref : kn_hc_expand)(y, h, post, comb, (int)HC, T, E, hn);
        memcpy(h, hn, (size_t)(T * SW) * sizeof(float));
    }
    s = QX_OK;
done:
    free(pre); free(post); free(comb); free(x); free(y); free(hn);
    return s;
}

qx_status cal_hc_head_fwd(fwd_ctx *c, const float *h, int64_t T, float *x, qx_err *e) {
    const cal_model *m = c->m;
    const int64_t HC = m->hp.hc;
    float *pre = xmalloc((size_t)(T * HC) * sizeof(float), e);
    if (!pre) return QX_ENOMEM;
    qx_status s = hc_mix(c, &m->hc_head, CAL_W_HC_HEAD, m->hc_head_base, m->hc_head_scale, h, T, pre, NULL, NULL, e);
    if (s == QX_OK) (c->ref ? kn_hc_collapse_ref : kn_hc_collapse)(h, pre, (int)HC, T, m->hp.n_embd, x);
    free(pre);
    return s;
}
