/* bench/gpu/v3_hf.h — loads one MoE layer of an HF DeepSeek-V3 checkpoint (FP8 block-scaled
 * or BF16 safetensors, e.g. ../shared/models/mini-v3) into the memory of a v3_ops table
 * (bench/gpu/v3_layer.h): projections keep their storage type and FP8 scale grids, experts
 * are stacked into one buffer per kind, norms and the router bias become f32.  Used by
 * tests/test_v3_layer.c (CPU) and tests/cuda/test_cuda_layer.c (GPU).  Header-only. */
#ifndef V3_HF_H
#define V3_HF_H

#include "bench/gpu/v3_layer.h"
#include "calib/calib.h"
#include "formats/formats.h"

#include <stdio.h>

typedef struct {
    void *buf[96];
    int n;
} v3_owned;

static inline void v3_owned_free(const v3_ops *ops, v3_owned *o) {
    for (int i = 0; i < o->n; i++) ops->release(o->buf[i]);
    o->n = 0;
}

static inline void *v3_put(const v3_ops *ops, v3_owned *o, const void *src, size_t n, qx_err *e) {
    if (o->n >= (int)(sizeof o->buf / sizeof o->buf[0])) { qx_fail(e, QX_ENOMEM, "v3 loader: too many buffers"); return NULL; }
    void *d = ops->alloc(n);
    if (!d) { qx_fail(e, QX_ENOMEM, "v3 loader: out of memory (%zu bytes)", n); return NULL; }
    o->buf[o->n++] = d;
    if (ops->upload(d, src, n, e) != QX_OK) return NULL;
    return d;
}

static inline const st_tensor *v3_find(const st_model *m, int L, const char *suffix, qx_err *e) {
    char name[256];
    snprintf(name, sizeof name, "model.layers.%d.%s", L, suffix);
    const st_tensor *t = st_find(m, name);
    if (!t) qx_fail(e, QX_ENOTFOUND, "v3 loader: tensor '%s' missing", name);
    return t;
}

/* f32 vector of n elements (any plain float dtype). */
static inline const float *v3_vec(const v3_ops *ops, v3_owned *o, const st_model *m, int L, const char *suffix,
                                  int64_t n, qx_err *e) {
    const st_tensor *t = v3_find(m, L, suffix, e);
    qt_type qt;
    if (!t) return NULL;
    if ((int64_t)t->n_elems != n || !st_dtype_to_qt(t->dtype, &qt)) {
        qx_fail(e, QX_ESHAPE, "v3 loader: '%s' has %llu elements, want %lld", t->name, (unsigned long long)t->n_elems, (long long)n);
        return NULL;
    }
    float *f = malloc((size_t)n * sizeof *f);
    if (!f || !qt_plain_to_f32(qt, t->data, f, n)) { free(f); qx_fail(e, QX_EUNSUPPORTED, "v3 loader: '%s' dtype", t->name); return NULL; }
    const float *d = v3_put(ops, o, f, (size_t)n * sizeof *f, e);
    free(f);
    return d;
}

/* n tensors (n > 1: experts 0..n-1 of `fmt`, stacked) as one view; *stride bytes between
 * experts, *sstride floats between their scale grids. */
static inline qx_status v3_mat(const v3_ops *ops, v3_owned *o, const st_model *m, int L, const char *fmt, int n,
                               kn_weight *w, uint64_t *stride, int64_t *sstride, qx_err *e) {
    const st_tensor *t0 = NULL;
    uint8_t *data = NULL;
    float *sc = NULL;
    size_t sbytes = 0;
    for (int g = 0; g < n; g++) {
        char suffix[160];
        snprintf(suffix, sizeof suffix, fmt, g);
        const st_tensor *t = v3_find(m, L, suffix, e);
        if (!t) { free(data); free(sc); return e->code; }
        if (!t0) {
            t0 = t;
            sbytes = t->scale_inv ? (size_t)t->scale_inv->nbytes : 0;
            data = malloc((size_t)t->nbytes * (size_t)n);
            sc = sbytes ? malloc(sbytes * (size_t)n) : NULL;
            if (!data || (sbytes && !sc)) { free(data); free(sc); return qx_fail(e, QX_ENOMEM, "v3 loader: out of memory"); }
        }
        if (t->nbytes != t0->nbytes || (t->scale_inv ? (size_t)t->scale_inv->nbytes : 0) != sbytes) {
            free(data); free(sc);
            return qx_fail(e, QX_ESHAPE, "v3 loader: '%s' differs in size from '%s'", t->name, t0->name);
        }
        memcpy(data + (size_t)g * t->nbytes, t->data, t->nbytes);
        if (sbytes) memcpy((uint8_t *)sc + (size_t)g * sbytes, t->scale_inv->data, sbytes);
    }
    qt_type qt;
    if (!st_dtype_to_qt(t0->dtype, &qt) || t0->n_dims != 2) { free(data); free(sc); return qx_fail(e, QX_EUNSUPPORTED, "v3 loader: '%s' dtype/shape", t0->name); }
    const void *dd = v3_put(ops, o, data, (size_t)t0->nbytes * (size_t)n, e);
    const float *ds = sbytes ? v3_put(ops, o, sc, sbytes * (size_t)n, e) : NULL;
    free(data); free(sc);
    if (!dd || (sbytes && !ds)) return e->code ? e->code : QX_ENOMEM;
    if (!kn_weight_init(w, qt, t0->shape[0], t0->shape[1], dd, ds))
        return qx_fail(e, QX_EUNSUPPORTED, "v3 loader: no view of '%s'", t0->name);
    if (stride) *stride = t0->nbytes;
    if (sstride) *sstride = (int64_t)(sbytes / sizeof(float));
    return QX_OK;
}

static inline void v3_dims_from(const cal_hparams *hp, v3_dims *d) {
    d->E = hp->n_embd; d->H = hp->n_head; d->QL = hp->q_lora; d->KVL = hp->kv_lora; d->NOPE = hp->qk_nope;
    d->ROPE = hp->qk_rope; d->DV = hp->v_dim; d->NEXP = hp->n_exp; d->KEXP = hp->n_exp_used; d->FFE = hp->n_ff_exp;
    d->NGRP = hp->n_group; d->TGRP = hp->topk_group; d->SFF = hp->n_ff_exp * (hp->n_shared > 0 ? hp->n_shared : 1);
    d->eps = hp->norm_eps; d->attn_scale = hp->attn_scale; d->rope_mscale = hp->rope_mscale;
    d->route_scale = hp->route_scale; d->route_sigmoid = hp->route_sigmoid; d->route_norm = hp->route_norm;
    d->rope_neox = hp->rope_neox;
}

/* Layer L (an MoE layer with q_lora > 0) into ops memory; release with v3_owned_free. */
static inline qx_status v3_load_layer(const v3_ops *ops, const st_model *m, const v3_dims *d, int L, v3_weights *w,
                                      v3_owned *o, qx_err *e) {
    memset(w, 0, sizeof *w);
    o->n = 0;
#define V3_VEC(dst, sfx, n) do { if (!(w->dst = v3_vec(ops, o, m, L, sfx, n, e))) return e->code; } while (0)
    V3_VEC(attn_norm, "input_layernorm.weight", d->E);
    V3_VEC(ffn_norm, "post_attention_layernorm.weight", d->E);
    V3_VEC(qa_norm, "self_attn.q_a_layernorm.weight", d->QL);
    V3_VEC(kva_norm, "self_attn.kv_a_layernorm.weight", d->KVL);
#undef V3_VEC
    char bn[160];
    snprintf(bn, sizeof bn, "model.layers.%d.mlp.gate.e_score_correction_bias", L);
    if (st_find(m, bn)) { if (!(w->ebias = v3_vec(ops, o, m, L, "mlp.gate.e_score_correction_bias", d->NEXP, e))) return e->code; }
    QX_TRY(v3_mat(ops, o, m, L, "self_attn.q_a_proj.weight", 1, &w->qa, NULL, NULL, e));
    QX_TRY(v3_mat(ops, o, m, L, "self_attn.q_b_proj.weight", 1, &w->qb, NULL, NULL, e));
    QX_TRY(v3_mat(ops, o, m, L, "self_attn.kv_a_proj_with_mqa.weight", 1, &w->kva, NULL, NULL, e));
    QX_TRY(v3_mat(ops, o, m, L, "self_attn.kv_b_proj.weight", 1, &w->kvb, NULL, NULL, e));
    QX_TRY(v3_mat(ops, o, m, L, "self_attn.o_proj.weight", 1, &w->o, NULL, NULL, e));
    QX_TRY(v3_mat(ops, o, m, L, "mlp.gate.weight", 1, &w->router, NULL, NULL, e));
    QX_TRY(v3_mat(ops, o, m, L, "mlp.experts.%d.gate_proj.weight", (int)d->NEXP, &w->eg, &w->eg_stride, &w->eg_sstride, e));
    QX_TRY(v3_mat(ops, o, m, L, "mlp.experts.%d.up_proj.weight", (int)d->NEXP, &w->eu, &w->eu_stride, &w->eu_sstride, e));
    QX_TRY(v3_mat(ops, o, m, L, "mlp.experts.%d.down_proj.weight", (int)d->NEXP, &w->ed, &w->ed_stride, &w->ed_sstride, e));
    QX_TRY(v3_mat(ops, o, m, L, "mlp.shared_experts.gate_proj.weight", 1, &w->sg, NULL, NULL, e));
    QX_TRY(v3_mat(ops, o, m, L, "mlp.shared_experts.up_proj.weight", 1, &w->su, NULL, NULL, e));
    QX_TRY(v3_mat(ops, o, m, L, "mlp.shared_experts.down_proj.weight", 1, &w->sd, NULL, NULL, e));
    return QX_OK;
}

#endif
