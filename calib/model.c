/* calib/model.c — model sources for the engine: an HF checkpoint dir (safetensors + config)
 * mapped to the engine's hyper-parameters and per-layer weight views.  Weights are never
 * copied: views point into the shard mappings; only small vectors (norms, biases, FP8 scale
 * grids) are decoded into owned f32 arrays. */
#include "engine_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static float *vec_f32(const st_tensor *t, int64_t n, qx_err *e) {
    if ((int64_t)t->n_elems != n) {
        qx_fail(e, QX_ESHAPE, "tensor '%s': %llu elements, expected %lld", t->name,
                (unsigned long long)t->n_elems, (long long)n);
        return NULL;
    }
    float *v = malloc((size_t)n * sizeof *v);
    if (!v) { qx_fail(e, QX_ENOMEM, "tensor '%s': out of memory", t->name); return NULL; }
    if (st_tensor_rows_f32(t, 0, 1, v, e) != QX_OK) { free(v); return NULL; }
    return v;
}

static qx_status load_vec(cal_model *m, const char *name, int64_t n, bool optional, float **out, qx_err *e) {
    *out = NULL;
    const st_tensor *t = st_find(m->st, name);
    if (!t) return optional ? QX_OK : qx_fail(e, QX_ENOTFOUND, "%s: missing tensor '%s'", m->path, name);
    *out = vec_f32(t, n, e);
    st_release(m->st, t);
    return *out ? QX_OK : e->code;
}

static qx_status load_w(cal_model *m, const char *name, int64_t rows, int64_t cols, bool optional,
                        cal_w *w, qx_err *e) {
    memset(w, 0, sizeof *w);
    const st_tensor *t = st_find(m->st, name);
    if (!t) return optional ? QX_OK : qx_fail(e, QX_ENOTFOUND, "%s: missing tensor '%s'", m->path, name);
    if (t->n_dims != 2 || t->shape[0] != rows || t->shape[1] != cols)
        return qx_fail(e, QX_ESHAPE, "tensor '%s': shape [%lld, %lld], expected [%lld, %lld]", name,
                       (long long)(t->n_dims > 0 ? t->shape[0] : 0),
                       (long long)(t->n_dims > 1 ? t->shape[1] : 0), (long long)rows, (long long)cols);
    if (t->dtype == ST_FP4_PACKED) {   /* DeepSeek-V4 expert: moved losslessly into MXFP4 blocks */
        const st_tensor *s = t->scale_inv;
        if (!s || s->dtype != ST_F8_E8M0 || cols % 32 || (int64_t)s->n_elems != rows * (cols / 32))
            return qx_fail(e, QX_EFORMAT, "tensor '%s': FP4 weight without its [%lld, %lld] E8M0 scale", name,
                           (long long)rows, (long long)(cols / 32));
        const uint64_t rb = qt_row_size(QT_MXFP4, cols);
        w->own = malloc((size_t)(rb * (uint64_t)rows));
        if (!w->own) return qx_fail(e, QX_ENOMEM, "tensor '%s': out of memory", name);
        for (int64_t r = 0; r < rows; r++)
            qt_mxfp4_repack_row((const uint8_t *)t->data + r * (cols / 2), (const uint8_t *)s->data + r * (cols / 32), cols,
                                (uint8_t *)w->own + (uint64_t)r * rb);
        if (!kn_weight_init(&w->w, QT_MXFP4, rows, cols, w->own, NULL)) {
            free(w->own); w->own = NULL;
            return qx_fail(e, QX_EUNSUPPORTED, "tensor '%s': no MXFP4 decoder", name);
        }
        w->st = t;
        w->present = true;
        return QX_OK;
    }
    qt_type q;
    if (!st_dtype_to_qt(t->dtype, &q))
        return qx_fail(e, QX_EUNSUPPORTED, "tensor '%s': dtype %s is not a float type", name, st_dtype_name(t->dtype));
    if (q == QT_F8_E4M3 || q == QT_F8_E5M2) {
        if (!t->scale_inv)
            return qx_fail(e, QX_EFORMAT, "tensor '%s': FP8 weight without its scale_inv", name);
        const st_tensor *s = t->scale_inv;
        int64_t sr = (rows + 127) / 128, sc = (cols + 127) / 128;
        if ((s->dtype != ST_F32 && s->dtype != ST_F8_E8M0) || (int64_t)s->n_elems != sr * sc)
            return qx_fail(e, QX_ESHAPE, "tensor '%s': scale is not F32 or F8_E8M0 [%lld, %lld]", s->name,
                           (long long)sr, (long long)sc);
        w->scale = malloc((size_t)(sr * sc) * sizeof(float));
        if (!w->scale) return qx_fail(e, QX_ENOMEM, "tensor '%s': out of memory", name);
        if (s->dtype == ST_F32) memcpy(w->scale, s->data, (size_t)(sr * sc) * sizeof(float));
        else   /* DeepSeek-V4: E8M0 bytes */
            for (int64_t i = 0; i < sr * sc; i++) w->scale[i] = qt_e8m0_to_f32(((const uint8_t *)s->data)[i]);
        if (q == QT_F8_E5M2)
            return qx_fail(e, QX_EUNSUPPORTED, "tensor '%s': block-scaled F8_E5M2 is not supported", name);
    }
    if (!kn_weight_init(&w->w, q, rows, cols, t->data, w->scale)) {
        free(w->scale); w->scale = NULL;
        return qx_fail(e, QX_EUNSUPPORTED, "tensor '%s': no decoder for %s", name, st_dtype_name(t->dtype));
    }
    w->st = t;
    w->present = true;
    return QX_OK;
}

void cal_w_release(cal_model *m, cal_w *w) {
    if (w->gt) gf_release(m->gf, w->gt);
    if (w->st) st_release(m->st, w->st);
    if (w->st && w->st->scale_inv) st_release(m->st, w->st->scale_inv);
    free(w->scale);
    free(w->own);
    memset(w, 0, sizeof *w);
}

float cal_yarn_mscale(double scale, double m) {
    return scale <= 1.0 ? 1.0f : (float)(0.1 * m * log(scale) + 1.0);
}

/* inv_freq in f32 the way HF computes it (base^(2j/d) as f32 pow). */
void cal_rope_freqs(cal_hparams *hp, const hf_config *c) {
    const int d = hp->rope_dim, half = d / 2;
    const float base = (float)c->rope_theta;
    for (int j = 0; j < half; j++) {
        float extra = 1.0f / powf(base, (float)(2 * j) / (float)d);
        hp->rope_inv_freq[j] = extra;
    }
    hp->rope_mscale = 1.0f;
    if (!strcmp(c->rope_type, "yarn")) {
        const double f = c->rope_factor, orig = c->rope_orig_max_pos;
        const double bf = c->rope_beta_fast > 0 ? c->rope_beta_fast : 32, bs = c->rope_beta_slow > 0 ? c->rope_beta_slow : 1;
        double lo = floor(d * log(orig / (bf * 2 * M_PI)) / (2 * log(c->rope_theta)));
        double hi = ceil(d * log(orig / (bs * 2 * M_PI)) / (2 * log(c->rope_theta)));
        if (lo < 0) lo = 0;
        if (hi > d - 1) hi = d - 1;
        if (lo == hi) hi += 0.001;
        for (int j = 0; j < half; j++) {
            float extra = hp->rope_inv_freq[j], inter = extra / (float)f;
            float ramp = (float)(((double)j - lo) / (hi - lo));
            ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
            float mask = 1.0f - ramp;
            hp->rope_inv_freq[j] = inter * (1.0f - mask) + extra * mask;
        }
        hp->rope_mscale = cal_yarn_mscale(f, c->rope_mscale) / cal_yarn_mscale(f, c->rope_mscale_all_dim);
    } else if (!strcmp(c->rope_type, "llama3")) {
        const double f = c->rope_factor, lf = c->rope_low_freq_factor, hf = c->rope_high_freq_factor;
        const double old = c->rope_orig_max_pos;
        for (int j = 0; j < half; j++) {
            double inv = hp->rope_inv_freq[j], wl = 2 * M_PI / inv;
            if (wl < old / hf) continue;
            if (wl > old / lf) { hp->rope_inv_freq[j] = (float)(inv / f); continue; }
            double s = (old / wl - lf) / (hf - lf);
            hp->rope_inv_freq[j] = (float)((1 - s) * inv / f + s * inv);
        }
    } else if (!strcmp(c->rope_type, "linear")) {
        for (int j = 0; j < half; j++) hp->rope_inv_freq[j] /= (float)c->rope_factor;
    }
}

/* BOS: generation_config.json wins over config.json (R1-Distill-Qwen carries EOS as
 * bos_token_id in config.json); add_bos from tokenizer_config.json (default true). */
static void read_bos(cal_model *m) {
    char p[4096], *txt; size_t len; qx_err e2;
    if (qx_path_join(p, sizeof p, m->path, "generation_config.json") && qx_read_file(p, &txt, &len, &e2) == QX_OK) {
        const char *k = strstr(txt, "\"bos_token_id\"");
        if (k && (k = strchr(k, ':'))) { long v = strtol(k + 1, NULL, 10); if (v >= 0 && v < m->hp.n_vocab) m->hp.bos_id = (int32_t)v; }
        free(txt);
    }
    if (qx_path_join(p, sizeof p, m->path, "tokenizer_config.json") && qx_read_file(p, &txt, &len, &e2) == QX_OK) {
        const char *k = strstr(txt, "\"add_bos_token\"");
        if (k && (k = strchr(k, ':'))) { while (*++k == ' ') {} m->hp.add_bos = (*k == 't'); }
        free(txt);
    }
}

static qx_status hparams_from_hf(cal_model *m, qx_err *e) {
    const hf_config *c = &m->cfg;
    cal_hparams *hp = &m->hp;
    memset(hp, 0, sizeof *hp);
    switch (c->arch) {
    case HF_ARCH_DEEPSEEK_V3: case HF_ARCH_DEEPSEEK_V2: hp->arch = CAL_ARCH_DEEPSEEK2; break;
    case HF_ARCH_LLAMA: hp->arch = CAL_ARCH_LLAMA; break;
    case HF_ARCH_QWEN2: hp->arch = CAL_ARCH_QWEN2; break;
    case HF_ARCH_DEEPSEEK_V4: return cal_model_open_hf_v4(m, e);
    default: return qx_fail(e, QX_EUNSUPPORTED, "%s: architecture '%s' is not supported by the engine", m->path, c->architecture);
    }
    hp->n_vocab = c->vocab_size; hp->n_embd = c->hidden_size; hp->n_layer = c->n_layers;
    hp->n_ff = c->intermediate_size; hp->n_head = c->n_heads;
    hp->n_head_kv = c->n_kv_heads > 0 ? c->n_kv_heads : c->n_heads;
    hp->head_dim = c->head_dim; hp->norm_eps = (float)c->rms_norm_eps;
    hp->bos_id = (int32_t)c->bos_token_id; hp->add_bos = true;
    if (hp->arch == CAL_ARCH_DEEPSEEK2) {
        hp->q_lora = c->q_lora_rank; hp->kv_lora = c->kv_lora_rank; hp->qk_nope = c->qk_nope_head_dim;
        hp->qk_rope = c->qk_rope_head_dim; hp->v_dim = c->v_head_dim;
        hp->n_exp = c->n_routed_experts; hp->n_exp_used = c->n_experts_per_tok;
        hp->n_shared = c->n_shared_experts; hp->n_ff_exp = c->moe_intermediate_size;
        hp->n_group = c->n_group > 0 ? c->n_group : 1; hp->topk_group = c->topk_group > 0 ? c->topk_group : hp->n_group;
        hp->n_dense_first = c->first_k_dense_replace;
        hp->route_scale = c->routed_scaling_factor > 0 ? (float)c->routed_scaling_factor : 1.0f;
        hp->index_topk = c->v32 ? c->index_topk : 0;
        hp->index_n_head = c->v32 ? c->index_n_heads : 0;
        hp->index_head_dim = c->v32 ? c->index_head_dim : 0;
        hp->route_sigmoid = strcmp(c->scoring_func, "softmax") != 0;
        hp->route_norm = c->norm_topk_prob;
        hp->rope_dim = (int)hp->qk_rope; hp->rope_neox = false;
        double ms = 1.0;
        if (!strcmp(c->rope_type, "yarn") && c->rope_mscale_all_dim != 0)
            ms = cal_yarn_mscale(c->rope_factor, c->rope_mscale_all_dim);
        hp->attn_scale = (float)(1.0 / sqrt((double)(hp->qk_nope + hp->qk_rope)) * ms * ms);
        if (hp->n_exp > 1024 || hp->n_exp_used > hp->n_exp || hp->n_group > hp->n_exp || (hp->n_exp && hp->n_exp % hp->n_group))
            return qx_fail(e, QX_EUNSUPPORTED, "%s: expert configuration %lld/%lld/%lld not supported", m->path,
                           (long long)hp->n_exp, (long long)hp->n_exp_used, (long long)hp->n_group);
    } else {
        hp->rope_dim = (int)hp->head_dim; hp->rope_neox = true;
        hp->attn_scale = (float)(1.0 / sqrt((double)hp->head_dim));
        if (hp->n_head % hp->n_head_kv) return qx_fail(e, QX_EFORMAT, "%s: heads %lld not a multiple of kv heads %lld", m->path, (long long)hp->n_head, (long long)hp->n_head_kv);
    }
    if (hp->rope_dim <= 0 || hp->rope_dim / 2 > CAL_MAX_ROPE_PAIRS || hp->rope_dim % 2)
        return qx_fail(e, QX_EUNSUPPORTED, "%s: rope dimension %d not supported", m->path, hp->rope_dim);
    cal_rope_freqs(hp, c);
    read_bos(m);
    return QX_OK;
}

qx_status cal_model_open(cal_model **out, const char *path, qx_err *e) {
    *out = NULL;
    cal_model *m = calloc(1, sizeof *m);
    if (!m) return qx_fail(e, QX_ENOMEM, "%s: out of memory", path);
    m->path = strdup(path);
    qx_status s = m->path ? QX_OK : qx_fail(e, QX_ENOMEM, "out of memory");
    if (s == QX_OK && !qx_is_dir(path)) {
        s = cal_model_open_gguf(m, e);
        if (s != QX_OK) { cal_model_close(m); return s; }
        *out = m;
        return QX_OK;
    }
    if (s == QX_OK) s = hf_config_load(path, &m->cfg, e);
    if (s == QX_OK) s = st_open(&m->st, path, e);
    if (s == QX_OK) s = hparams_from_hf(m, e);
    if (s == QX_OK) s = hf_config_validate(&m->cfg, m->st, e);
    if (s == QX_OK && m->hp.arch == CAL_ARCH_DEEPSEEK4) {   /* its globals are loaded by cal_model_open_hf_v4 */
        *out = m;
        return QX_OK;
    }
    const cal_hparams *hp = &m->hp;
    if (s == QX_OK) s = load_w(m, "model.embed_tokens.weight", hp->n_vocab, hp->n_embd, false, &m->embed, e);
    if (s == QX_OK) s = load_vec(m, "model.norm.weight", hp->n_embd, false, &m->out_norm, e);
    if (s == QX_OK) {
        if (st_find(m->st, "lm_head.weight")) s = load_w(m, "lm_head.weight", hp->n_vocab, hp->n_embd, false, &m->output, e);
        else if (m->cfg.tie_word_embeddings) { m->output = m->embed; m->output.scale = NULL; m->output.st = NULL; }
        else s = qx_fail(e, QX_ENOTFOUND, "%s: missing tensor 'lm_head.weight'", path);
    }
    if (s != QX_OK) { cal_model_close(m); return s; }
    *out = m;
    return QX_OK;
}

void cal_model_close(cal_model *m) {
    if (!m) return;
    if (m->output.st || m->output.gt) cal_w_release(m, &m->output);
    else free(m->output.scale);
    cal_w_release(m, &m->embed);
    cal_w_release(m, &m->hc_head);
    free(m->out_norm);
    free(m->hc_head_base); free(m->hc_head_scale); free(m->v4_ratio); free(m->v4_clamp_exp); free(m->v4_clamp_shexp);
    st_close(m->st);
    gf_close(m->gf);
    free(m->ovr);
    free(m->path);
    free(m);
}

const cal_hparams *cal_model_hparams(const cal_model *m) { return &m->hp; }
const char *cal_model_path(const cal_model *m) { return m->path; }

#define LNAME(buf, fmt, ...) snprintf(buf, sizeof buf, "model.layers.%d." fmt, layer, __VA_ARGS__)

static qx_status load_mlp(cal_model *m, int layer, const char *pre, int64_t n_ff, cal_w *g, cal_w *u,
                          cal_w *d, qx_err *e) {
    char n[256];
    const int64_t E = m->hp.n_embd;
    LNAME(n, "%s.gate_proj.weight", pre); QX_TRY(load_w(m, n, n_ff, E, false, g, e));
    LNAME(n, "%s.up_proj.weight", pre);   QX_TRY(load_w(m, n, n_ff, E, false, u, e));
    LNAME(n, "%s.down_proj.weight", pre); QX_TRY(load_w(m, n, E, n_ff, false, d, e));
    return QX_OK;
}

static qx_status load_attn(cal_model *m, int layer, cal_layer *l, qx_err *e) {
    const cal_hparams *hp = &m->hp;
    const int64_t E = hp->n_embd, H = hp->n_head;
    char n[256];
    if (hp->arch == CAL_ARCH_DEEPSEEK2) {
        const int64_t qd = H * (hp->qk_nope + hp->qk_rope);
        if (hp->q_lora > 0) {
            LNAME(n, "%s", "self_attn.q_a_proj.weight"); QX_TRY(load_w(m, n, hp->q_lora, E, false, &l->q_a, e));
            LNAME(n, "%s", "self_attn.q_a_layernorm.weight"); QX_TRY(load_vec(m, n, hp->q_lora, false, &l->q_a_norm, e));
            LNAME(n, "%s", "self_attn.q_b_proj.weight"); QX_TRY(load_w(m, n, qd, hp->q_lora, false, &l->q_b, e));
        } else {
            LNAME(n, "%s", "self_attn.q_proj.weight"); QX_TRY(load_w(m, n, qd, E, false, &l->q, e));
        }
        LNAME(n, "%s", "self_attn.kv_a_proj_with_mqa.weight");
        QX_TRY(load_w(m, n, hp->kv_lora + hp->qk_rope, E, false, &l->kv_a, e));
        LNAME(n, "%s", "self_attn.kv_a_layernorm.weight"); QX_TRY(load_vec(m, n, hp->kv_lora, false, &l->kv_a_norm, e));
        LNAME(n, "%s", "self_attn.kv_b_proj.weight");
        QX_TRY(load_w(m, n, H * (hp->qk_nope + hp->v_dim), hp->kv_lora, false, &l->kv_b, e));
        LNAME(n, "%s", "self_attn.o_proj.weight"); QX_TRY(load_w(m, n, E, H * hp->v_dim, false, &l->o, e));
        if (hp->index_topk > 0) {
            const int64_t IH = hp->index_n_head, ID = hp->index_head_dim;
            LNAME(n, "%s", "self_attn.indexer.wq_b.weight"); QX_TRY(load_w(m, n, IH * ID, hp->q_lora, false, &l->idx_q_b, e));
            LNAME(n, "%s", "self_attn.indexer.wk.weight"); QX_TRY(load_w(m, n, ID, E, false, &l->idx_k, e));
            LNAME(n, "%s", "self_attn.indexer.weights_proj.weight"); QX_TRY(load_w(m, n, IH, E, false, &l->idx_proj, e));
            LNAME(n, "%s", "self_attn.indexer.k_norm.weight"); QX_TRY(load_vec(m, n, ID, false, &l->idx_k_norm, e));
            LNAME(n, "%s", "self_attn.indexer.k_norm.bias"); QX_TRY(load_vec(m, n, ID, false, &l->idx_k_norm_b, e));
        }
        return QX_OK;
    }
    const int64_t D = hp->head_dim, KV = hp->n_head_kv;
    LNAME(n, "%s", "self_attn.q_proj.weight"); QX_TRY(load_w(m, n, H * D, E, false, &l->q, e));
    LNAME(n, "%s", "self_attn.k_proj.weight"); QX_TRY(load_w(m, n, KV * D, E, false, &l->k, e));
    LNAME(n, "%s", "self_attn.v_proj.weight"); QX_TRY(load_w(m, n, KV * D, E, false, &l->v, e));
    LNAME(n, "%s", "self_attn.o_proj.weight"); QX_TRY(load_w(m, n, E, H * D, false, &l->o, e));
    bool need_bias = hp->arch == CAL_ARCH_QWEN2;
    LNAME(n, "%s", "self_attn.q_proj.bias"); QX_TRY(load_vec(m, n, H * D, !need_bias, &l->bq, e));
    LNAME(n, "%s", "self_attn.k_proj.bias"); QX_TRY(load_vec(m, n, KV * D, !need_bias, &l->bk, e));
    LNAME(n, "%s", "self_attn.v_proj.bias"); QX_TRY(load_vec(m, n, KV * D, !need_bias, &l->bv, e));
    return QX_OK;
}

static qx_status load_layer(cal_model *m, int layer, cal_layer *l, qx_err *e) {
    const cal_hparams *hp = &m->hp;
    char n[256];
    LNAME(n, "%s", "input_layernorm.weight"); QX_TRY(load_vec(m, n, hp->n_embd, false, &l->attn_norm, e));
    LNAME(n, "%s", "post_attention_layernorm.weight"); QX_TRY(load_vec(m, n, hp->n_embd, false, &l->ffn_norm, e));
    QX_TRY(load_attn(m, layer, l, e));
    l->moe = hp->arch == CAL_ARCH_DEEPSEEK2 && hf_is_moe_layer(&m->cfg, layer);
    if (!l->moe) return load_mlp(m, layer, "mlp", hp->n_ff, &l->gate, &l->up, &l->down, e);
    LNAME(n, "%s", "mlp.gate.weight"); QX_TRY(load_w(m, n, hp->n_exp, hp->n_embd, false, &l->router, e));
    LNAME(n, "%s", "mlp.gate.e_score_correction_bias"); QX_TRY(load_vec(m, n, hp->n_exp, true, &l->exp_bias, e));
    l->eg = calloc((size_t)hp->n_exp, sizeof *l->eg);
    l->eu = calloc((size_t)hp->n_exp, sizeof *l->eu);
    l->ed = calloc((size_t)hp->n_exp, sizeof *l->ed);
    if (!l->eg || !l->eu || !l->ed) return qx_fail(e, QX_ENOMEM, "layer %d: out of memory", layer);
    for (int x = 0; x < hp->n_exp; x++) {
        char pre[64];
        snprintf(pre, sizeof pre, "mlp.experts.%d", x);
        QX_TRY(load_mlp(m, layer, pre, hp->n_ff_exp, &l->eg[x], &l->eu[x], &l->ed[x], e));
    }
    if (hp->n_shared > 0) {
        l->has_shared = true;
        QX_TRY(load_mlp(m, layer, "mlp.shared_experts", hp->n_ff_exp * hp->n_shared, &l->sg, &l->su, &l->sd, e));
    }
    return QX_OK;
}

qx_status cal_layer_load(cal_model *m, int layer, cal_layer *l, qx_err *e) {
    memset(l, 0, sizeof *l);
    qx_status s = m->gf ? cal_layer_load_gguf(m, layer, l, e)
                : m->hp.arch == CAL_ARCH_DEEPSEEK4 ? cal_layer_load_hf_v4(m, layer, l, e) : load_layer(m, layer, l, e);
    if (s != QX_OK) cal_layer_free(m, l);
    return s;
}

void cal_layer_free(cal_model *m, cal_layer *l) {
    free(l->attn_norm); free(l->ffn_norm); free(l->q_a_norm); free(l->kv_a_norm);
    free(l->bq); free(l->bk); free(l->bv); free(l->exp_bias); free(l->idx_k_norm); free(l->idx_k_norm_b);
    free(l->sinks); free(l->kv_norm); free(l->hc_attn_base); free(l->hc_attn_scale); free(l->hc_ffn_base);
    free(l->hc_ffn_scale); free(l->comp_ape); free(l->comp_norm); free(l->icomp_ape); free(l->icomp_norm); free(l->tid2eid);
    cal_w *ws[] = { &l->q, &l->k, &l->v, &l->o, &l->q_a, &l->q_b, &l->kv_a, &l->kv_b, &l->k_b, &l->v_b, &l->gate, &l->up,
                    &l->down, &l->router, &l->sg, &l->su, &l->sd, &l->idx_q_b, &l->idx_k, &l->idx_proj,
                    &l->kv, &l->o_a, &l->o_b, &l->hc_attn, &l->hc_ffn, &l->comp_kv, &l->comp_gate, &l->icomp_kv, &l->icomp_gate };
    for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) cal_w_release(m, ws[i]);
    for (int64_t x = 0; x < m->hp.n_exp; x++) {
        if (l->eg) cal_w_release(m, &l->eg[x]);
        if (l->eu) cal_w_release(m, &l->eu[x]);
        if (l->ed) cal_w_release(m, &l->ed[x]);
    }
    free(l->eg); free(l->eu); free(l->ed);
    memset(l, 0, sizeof *l);
}

/* ======================= deepseek4 from its HF checkpoint =======================
 * DeepSeek's own names (`layers.N.attn.wq_a.weight`, `embed.weight`, `head.weight`, FP8 with
 * `.scale` E8M0 grids, FP4 routed experts, `mtp.*` ignored), the same views and
 * hyper-parameters as the GGUF path (calib/model_gguf.c) so the two give the same forward. */

qx_status cal_model_open_hf_v4(cal_model *m, qx_err *e) {
    const hf_config *c = &m->cfg;
    cal_hparams *hp = &m->hp;
    hp->arch = CAL_ARCH_DEEPSEEK4;
    hp->n_vocab = c->vocab_size; hp->n_embd = c->hidden_size; hp->n_layer = c->n_layers;
    hp->n_head = c->n_heads; hp->n_head_kv = 1; hp->head_dim = hp->v_dim = c->head_dim;
    hp->norm_eps = (float)c->rms_norm_eps; hp->bos_id = (int32_t)c->bos_token_id; hp->add_bos = true;
    hp->qk_rope = c->qk_rope_head_dim; hp->q_lora = c->q_lora_rank;
    hp->n_exp = c->n_routed_experts; hp->n_exp_used = c->n_experts_per_tok; hp->n_shared = c->n_shared_experts;
    hp->n_ff_exp = c->moe_intermediate_size; hp->n_group = hp->topk_group = 1;
    hp->route_scale = c->routed_scaling_factor > 0 ? (float)c->routed_scaling_factor : 1.0f;
    hp->route_norm = c->norm_topk_prob;
    hp->index_topk = c->index_topk; hp->index_n_head = c->index_n_heads; hp->index_head_dim = c->index_head_dim;
    hp->hc = c->hc_mult; hp->hc_iters = c->hc_sinkhorn_iters; hp->hc_eps = (float)c->hc_eps;
    hp->n_swa = c->sliding_window; hp->o_groups = c->o_groups; hp->o_lora = c->o_lora_rank; hp->n_hash = c->num_hash_layers;
    hp->rope_dim = (int)hp->qk_rope; hp->rope_neox = false;
    hp->attn_scale = (float)(1.0 / sqrt((double)hp->head_dim));
    if (strcmp(c->scoring_func, "sqrtsoftplus"))
        return qx_fail(e, QX_EUNSUPPORTED, "%s: scoring_func '%s' (the engine runs V4's sqrtsoftplus)", m->path, c->scoring_func);
    if (hp->hc < 1 || hp->hc > KN_V4_MAX_HC || hp->n_exp < 1 || hp->n_exp > KN_V4_MAX_EXPERTS || hp->rope_dim < 2 ||
        hp->rope_dim / 2 > CAL_MAX_ROPE_PAIRS || hp->index_head_dim < hp->rope_dim || hp->index_topk < 1 || hp->n_swa < 1)
        return qx_fail(e, QX_EUNSUPPORTED, "%s: V4 shape not supported (hc %lld, experts %lld, rope %d, indexer %lld top %lld)",
                       m->path, (long long)hp->hc, (long long)hp->n_exp, hp->rope_dim, (long long)hp->index_head_dim,
                       (long long)hp->index_topk);
    hf_config cc = *c;   /* compressed layers: compress_rope_theta with the YaRN scaling; others plain */
    cc.rope_theta = c->compress_rope_theta;
    cal_rope_freqs(hp, &cc);
    memcpy(hp->rope_c_inv_freq, hp->rope_inv_freq, sizeof hp->rope_c_inv_freq);
    cc = *c;
    cc.rope_type[0] = '\0';
    cal_rope_freqs(hp, &cc);
    hp->rope_mscale = 1.0f;
    read_bos(m);
    const int64_t NL = hp->n_layer, E = hp->n_embd;
    m->v4_ratio = malloc((size_t)NL * sizeof(int32_t));
    m->v4_clamp_exp = malloc((size_t)NL * sizeof(float));
    m->v4_clamp_shexp = malloc((size_t)NL * sizeof(float));
    if (!m->v4_ratio || !m->v4_clamp_exp || !m->v4_clamp_shexp) return qx_fail(e, QX_ENOMEM, "%s: out of memory", m->path);
    for (int64_t L = 0; L < NL; L++) {   /* hf_config_parse checked: entries >= layers, each 0, 4 or 128 */
        m->v4_ratio[L] = c->compress_ratios[L];
        m->v4_clamp_exp[L] = m->v4_clamp_shexp[L] = (float)c->swiglu_limit;
    }
    QX_TRY(load_w(m, "embed.weight", hp->n_vocab, E, false, &m->embed, e));
    QX_TRY(load_vec(m, "norm.weight", E, false, &m->out_norm, e));
    QX_TRY(load_w(m, "head.weight", hp->n_vocab, E, false, &m->output, e));
    QX_TRY(load_w(m, "hc_head_fn", hp->hc, hp->hc * E, false, &m->hc_head, e));
    QX_TRY(load_vec(m, "hc_head_base", hp->hc, false, &m->hc_head_base, e));
    return load_vec(m, "hc_head_scale", 1, false, &m->hc_head_scale, e);
}

/* rows x cols f32 copy of a small tensor (ape). */
static qx_status load_mat(cal_model *m, const char *name, int64_t rows, int64_t cols, float **out, qx_err *e) {
    *out = NULL;
    const st_tensor *t = st_find(m->st, name);
    if (!t) return qx_fail(e, QX_ENOTFOUND, "%s: missing tensor '%s'", m->path, name);
    if ((int64_t)t->n_elems != rows * cols) {
        st_release(m->st, t);
        return qx_fail(e, QX_ESHAPE, "tensor '%s': %llu elements, expected %lld x %lld", name, (unsigned long long)t->n_elems,
                       (long long)rows, (long long)cols);
    }
    *out = malloc((size_t)(rows * cols) * sizeof(float));
    qx_status s = *out ? st_tensor_rows_f32(t, 0, rows, *out, e) : qx_fail(e, QX_ENOMEM, "tensor '%s': out of memory", name);
    st_release(m->st, t);
    if (s != QX_OK) { free(*out); *out = NULL; }
    return s;
}

#define VN(buf, fmt, ...) snprintf(buf, sizeof buf, "layers.%d." fmt, layer, __VA_ARGS__)

static qx_status v4_compressor(cal_model *m, int layer, const char *pfx, int64_t d, int64_t coff, int ratio, cal_w *kv,
                               cal_w *gate, float **ape, float **norm, qx_err *e) {
    char n[256];
    const int64_t E = m->hp.n_embd;
    VN(n, "%swkv.weight", pfx); QX_TRY(load_w(m, n, coff * d, E, false, kv, e));
    VN(n, "%swgate.weight", pfx); QX_TRY(load_w(m, n, coff * d, E, false, gate, e));
    VN(n, "%sape", pfx); QX_TRY(load_mat(m, n, ratio, coff * d, ape, e));
    VN(n, "%snorm.weight", pfx);
    return load_vec(m, n, d, false, norm, e);
}

/* ffn.gate.tid2eid [n_vocab, k] (I32 or I64) into an owned i32 table, range-checked. */
static qx_status v4_hash(cal_model *m, int layer, cal_layer *l, qx_err *e) {
    char n[256];
    const cal_hparams *hp = &m->hp;
    const int64_t K = hp->n_exp_used, V = hp->n_vocab;
    VN(n, "%s", "ffn.gate.tid2eid");
    const st_tensor *t = st_find(m->st, n);
    if (!t) return qx_fail(e, QX_ENOTFOUND, "%s: missing tensor '%s'", m->path, n);
    qx_status s = QX_OK;
    if ((t->dtype != ST_I32 && t->dtype != ST_I64) || (int64_t)t->n_elems != K * V)
        s = qx_fail(e, QX_ESHAPE, "tensor '%s': %s of %llu elements, expected I32/I64 [%lld, %lld]", n, st_dtype_name(t->dtype),
                    (unsigned long long)t->n_elems, (long long)V, (long long)K);
    if (s == QX_OK && !(l->tid2eid = malloc((size_t)(K * V) * sizeof(int32_t)))) s = qx_fail(e, QX_ENOMEM, "out of memory");
    for (int64_t i = 0; s == QX_OK && i < K * V; i++) {
        int64_t x;
        if (t->dtype == ST_I32) { int32_t v; memcpy(&v, (const uint8_t *)t->data + i * 4, 4); x = v; }
        else memcpy(&x, (const uint8_t *)t->data + i * 8, 8);
        if (x < 0 || x >= hp->n_exp) s = qx_fail(e, QX_EFORMAT, "tensor '%s': entry %lld is expert %lld of %lld", n, (long long)i, (long long)x, (long long)hp->n_exp);
        else l->tid2eid[i] = (int32_t)x;
    }
    st_release(m->st, t);
    return s;
}

qx_status cal_layer_load_hf_v4(cal_model *m, int layer, cal_layer *l, qx_err *e) {
    const cal_hparams *hp = &m->hp;
    const int64_t E = hp->n_embd, H = hp->n_head, D = hp->head_dim, G = hp->o_groups, OL = hp->o_lora, QL = hp->q_lora;
    const int64_t MIX = (2 + hp->hc) * hp->hc, X = hp->n_exp, IH = hp->index_n_head, ID = hp->index_head_dim;
    char n[256];
    VN(n, "%s", "attn_norm.weight"); QX_TRY(load_vec(m, n, E, false, &l->attn_norm, e));
    VN(n, "%s", "ffn_norm.weight"); QX_TRY(load_vec(m, n, E, false, &l->ffn_norm, e));
    VN(n, "%s", "attn.attn_sink"); QX_TRY(load_vec(m, n, H, false, &l->sinks, e));
    VN(n, "%s", "attn.wq_a.weight"); QX_TRY(load_w(m, n, QL, E, false, &l->q_a, e));
    VN(n, "%s", "attn.q_norm.weight"); QX_TRY(load_vec(m, n, QL, false, &l->q_a_norm, e));
    VN(n, "%s", "attn.wq_b.weight"); QX_TRY(load_w(m, n, H * D, QL, false, &l->q_b, e));
    VN(n, "%s", "attn.wkv.weight"); QX_TRY(load_w(m, n, D, E, false, &l->kv, e));
    VN(n, "%s", "attn.kv_norm.weight"); QX_TRY(load_vec(m, n, D, false, &l->kv_norm, e));
    VN(n, "%s", "attn.wo_a.weight"); QX_TRY(load_w(m, n, G * OL, H * D / G, false, &l->o_a, e));
    VN(n, "%s", "attn.wo_b.weight"); QX_TRY(load_w(m, n, E, G * OL, false, &l->o_b, e));
    VN(n, "%s", "hc_attn_fn"); QX_TRY(load_w(m, n, MIX, hp->hc * E, false, &l->hc_attn, e));
    VN(n, "%s", "hc_attn_base"); QX_TRY(load_vec(m, n, MIX, false, &l->hc_attn_base, e));
    VN(n, "%s", "hc_attn_scale"); QX_TRY(load_vec(m, n, 3, false, &l->hc_attn_scale, e));
    VN(n, "%s", "hc_ffn_fn"); QX_TRY(load_w(m, n, MIX, hp->hc * E, false, &l->hc_ffn, e));
    VN(n, "%s", "hc_ffn_base"); QX_TRY(load_vec(m, n, MIX, false, &l->hc_ffn_base, e));
    VN(n, "%s", "hc_ffn_scale"); QX_TRY(load_vec(m, n, 3, false, &l->hc_ffn_scale, e));
    l->ratio = m->v4_ratio[layer];
    if (l->ratio)
        QX_TRY(v4_compressor(m, layer, "attn.compressor.", D, l->ratio == 4 ? 2 : 1, l->ratio, &l->comp_kv, &l->comp_gate,
                             &l->comp_ape, &l->comp_norm, e));
    if (l->ratio == 4) {
        VN(n, "%s", "attn.indexer.wq_b.weight"); QX_TRY(load_w(m, n, IH * ID, QL, false, &l->idx_q_b, e));
        VN(n, "%s", "attn.indexer.weights_proj.weight"); QX_TRY(load_w(m, n, IH, E, false, &l->idx_proj, e));
        QX_TRY(v4_compressor(m, layer, "attn.indexer.compressor.", ID, 2, 4, &l->icomp_kv, &l->icomp_gate, &l->icomp_ape,
                             &l->icomp_norm, e));
    }
    l->moe = l->has_shared = true;
    VN(n, "%s", "ffn.gate.weight"); QX_TRY(load_w(m, n, X, E, false, &l->router, e));
    if (layer < hp->n_hash) QX_TRY(v4_hash(m, layer, l, e));
    else { VN(n, "%s", "ffn.gate.bias"); QX_TRY(load_vec(m, n, X, false, &l->exp_bias, e)); }
    l->eg = calloc((size_t)X, sizeof *l->eg);
    l->eu = calloc((size_t)X, sizeof *l->eu);
    l->ed = calloc((size_t)X, sizeof *l->ed);
    if (!l->eg || !l->eu || !l->ed) return qx_fail(e, QX_ENOMEM, "layer %d: out of memory", layer);
    for (int64_t x = 0; x < X; x++) {
        VN(n, "ffn.experts.%lld.w1.weight", (long long)x); QX_TRY(load_w(m, n, hp->n_ff_exp, E, false, &l->eg[x], e));
        VN(n, "ffn.experts.%lld.w3.weight", (long long)x); QX_TRY(load_w(m, n, hp->n_ff_exp, E, false, &l->eu[x], e));
        VN(n, "ffn.experts.%lld.w2.weight", (long long)x); QX_TRY(load_w(m, n, E, hp->n_ff_exp, false, &l->ed[x], e));
    }
    const int64_t F = hp->n_ff_exp * (hp->n_shared > 0 ? hp->n_shared : 1);
    VN(n, "%s", "ffn.shared_experts.w1.weight"); QX_TRY(load_w(m, n, F, E, false, &l->sg, e));
    VN(n, "%s", "ffn.shared_experts.w3.weight"); QX_TRY(load_w(m, n, F, E, false, &l->su, e));
    VN(n, "%s", "ffn.shared_experts.w2.weight"); QX_TRY(load_w(m, n, E, F, false, &l->sd, e));
    l->clamp_exp = m->v4_clamp_exp[layer];
    l->clamp_shexp = m->v4_clamp_shexp[layer];
    return QX_OK;
}
