/* calib/model_gguf.c — GGUF files (ours or llama.cpp's) as engine model sources: metadata to
 * hyper-parameters (../shared/GGUF-DEEPSEEK2.md §4-5) and tensors to weight views of any
 * GGUF type.  Stacked expert tensors (ne [in, out, X]) become X views into one mapping;
 * deepseek2's MLA split (attn_k_b / attn_v_b) is kept as is and runs the absorbed attention;
 * the legacy attn_kv_b layout runs the HF path.  llama files carry q/k permuted for ggml's
 * adjacent-pair rope, so llama uses NORM rope here (qwen2 NEOX, deepseek2 NORM), and llama3
 * scaling comes from rope_freqs.weight. */
#include "engine_int.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef struct { cal_model *m; const char *arch; qx_err *e; } kctx;

static qx_status k_u32(kctx *k, const char *key, bool optional, int64_t def, int64_t *out) {
    char full[128];
    snprintf(full, sizeof full, "%s.%s", k->arch, key);
    uint32_t v;
    qx_status s = gf_get_u32(k->m->gf, full, &v, k->e);
    if (s == QX_ENOTFOUND && optional) { *out = def; qx_err_clear(k->e); return QX_OK; }
    if (s != QX_OK) return s == QX_ENOTFOUND ? qx_fail(k->e, s, "%s: missing metadata key '%s'", k->m->path, full) : s;
    *out = v;
    return QX_OK;
}
static qx_status k_f32(kctx *k, const char *key, bool optional, double def, double *out) {
    char full[128];
    snprintf(full, sizeof full, "%s.%s", k->arch, key);
    float v;
    qx_status s = gf_get_f32(k->m->gf, full, &v, k->e);
    if (s == QX_ENOTFOUND && optional) { *out = def; qx_err_clear(k->e); return QX_OK; }
    if (s != QX_OK) return s == QX_ENOTFOUND ? qx_fail(k->e, s, "%s: missing metadata key '%s'", k->m->path, full) : s;
    *out = v;
    return QX_OK;
}

/* View of tensor `name` as rows x cols (rows = product of ne[1..]); optional -> absent OK. */
static qx_status gw(cal_model *m, const char *name, int64_t rows, int64_t cols, bool optional, cal_w *w, qx_err *e) {
    memset(w, 0, sizeof *w);
    const gf_tensor *t = gf_find_tensor(m->gf, name);
    if (!t) return optional ? QX_OK : qx_fail(e, QX_ENOTFOUND, "%s: missing tensor '%s'", m->path, name);
    int64_t r = t->ne[1] * t->ne[2] * t->ne[3];
    if (t->ne[0] != cols || r != rows)
        return qx_fail(e, QX_ESHAPE, "tensor '%s': ne [%lld, %lld, %lld], expected %lld columns x %lld rows", name,
                       (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)cols, (long long)rows);
    qt_type ty = t->type;
    const void *data = t->data;
    for (int i = 0; i < m->n_ovr; i++)
        if (!strcmp(m->ovr[i].name, name)) { ty = m->ovr[i].type; data = m->ovr[i].data; }
    if (!kn_weight_init(&w->w, ty, rows, cols, data, NULL))
        return qx_fail(e, QX_EUNSUPPORTED, "tensor '%s': type %s cannot be decoded", name, qt_type_name(t->type));
    w->gt = t;
    w->present = true;
    return QX_OK;
}

static qx_status gvec(cal_model *m, const char *name, int64_t n, bool optional, float **out, qx_err *e) {
    *out = NULL;
    cal_w w;
    QX_TRY(gw(m, name, 1, n, optional, &w, e));
    if (!w.present) return QX_OK;
    *out = malloc((size_t)n * sizeof(float));
    if (!*out) return qx_fail(e, QX_ENOMEM, "tensor '%s': out of memory", name);
    kn_weight_rows(&w.w, 0, 1, *out);
    gf_release(m->gf, w.gt);
    return QX_OK;
}

/* n_vocab from token_embd's rows, the BOS id and whether to add it (llama.cpp's defaults
 * when the keys are absent: no BOS id, add_bos true). */
static qx_status vocab_params(cal_model *m, cal_hparams *hp, qx_err *e) {
    const gf_tensor *te = gf_find_tensor(m->gf, "token_embd.weight");
    if (!te) return qx_fail(e, QX_ENOTFOUND, "%s: missing tensor 'token_embd.weight'", m->path);
    hp->n_vocab = te->ne[1];
    uint32_t u;
    hp->bos_id = gf_get_u32(m->gf, "tokenizer.ggml.bos_token_id", &u, e) == QX_OK ? (int32_t)u : -1;
    bool ab = true;
    if (gf_get_bool(m->gf, "tokenizer.ggml.add_bos_token", &ab, e) != QX_OK) ab = true;
    hp->add_bos = ab;
    qx_err_clear(e);
    return QX_OK;
}

/* The keys every architecture has: sizes, norm epsilon, rope base and scaling. */
static qx_status base_params(cal_model *m, kctx *k, qx_err *e) {
    cal_hparams *hp = &m->hp;
    hf_config *c = &m->cfg;
    int64_t v;
    QX_TRY(k_u32(k, "embedding_length", false, 0, &hp->n_embd));
    QX_TRY(k_u32(k, "block_count", false, 0, &hp->n_layer));
    QX_TRY(k_u32(k, "nextn_predict_layers", true, 0, &v));
    hp->n_layer -= v;
    QX_TRY(k_u32(k, "feed_forward_length", true, 0, &hp->n_ff));
    QX_TRY(k_u32(k, "attention.head_count", false, 0, &hp->n_head));
    QX_TRY(k_u32(k, "attention.head_count_kv", true, hp->n_head, &hp->n_head_kv));
    double d;
    QX_TRY(k_f32(k, "attention.layer_norm_rms_epsilon", false, 0, &d));
    hp->norm_eps = (float)d;
    QX_TRY(k_f32(k, "rope.freq_base", true, 10000.0, &c->rope_theta));
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", k->arch);
    const char *rt = NULL;
    if (gf_get_str(m->gf, key, &rt, e) == QX_OK) snprintf(c->rope_type, sizeof c->rope_type, "%s", rt);
    qx_err_clear(e);
    QX_TRY(k_f32(k, "rope.scaling.factor", true, 1.0, &c->rope_factor));
    QX_TRY(k_u32(k, "rope.scaling.original_context_length", true, 0, &v));
    c->rope_orig_max_pos = (double)v;
    return QX_OK;
}

static qx_status arch_params(cal_model *m, kctx *k, qx_err *e) {
    cal_hparams *hp = &m->hp;
    hf_config *c = &m->cfg;
    int64_t v;
    double d;
    char key[128];
    QX_TRY(base_params(m, k, e));
    if (hp->arch != CAL_ARCH_DEEPSEEK2) {
        QX_TRY(k_u32(k, "attention.key_length", true, hp->n_embd / (hp->n_head ? hp->n_head : 1), &hp->head_dim));
        QX_TRY(k_u32(k, "rope.dimension_count", true, hp->head_dim, &v));
        hp->rope_dim = (int)v;
        hp->rope_neox = hp->arch == CAL_ARCH_QWEN2;
        hp->attn_scale = (float)(1.0 / sqrt((double)hp->head_dim));
        if (hp->n_head_kv <= 0 || hp->n_head % hp->n_head_kv)
            return qx_fail(e, QX_EFORMAT, "%s: %lld heads, %lld kv heads", m->path, (long long)hp->n_head, (long long)hp->n_head_kv);
        if (!strcmp(c->rope_type, "yarn")) return qx_fail(e, QX_EUNSUPPORTED, "%s: yarn rope for %s", m->path, k->arch);
        return QX_OK;
    }
    int64_t kl, vl, klm, vlm;
    QX_TRY(k_u32(k, "rope.dimension_count", false, 0, &hp->qk_rope));
    QX_TRY(k_u32(k, "attention.q_lora_rank", true, 0, &hp->q_lora));
    QX_TRY(k_u32(k, "attention.kv_lora_rank", false, 0, &hp->kv_lora));
    QX_TRY(k_u32(k, "attention.key_length", false, 0, &kl));
    QX_TRY(k_u32(k, "attention.value_length", false, 0, &vl));
    QX_TRY(k_u32(k, "attention.key_length_mla", true, 0, &klm));
    QX_TRY(k_u32(k, "attention.value_length_mla", true, 0, &vlm));
    hp->qk_nope = (klm ? klm : kl) - hp->qk_rope;
    hp->v_dim = vlm ? vlm : vl;
    QX_TRY(k_u32(k, "expert_feed_forward_length", true, 0, &hp->n_ff_exp));
    QX_TRY(k_u32(k, "expert_count", true, 0, &hp->n_exp));
    QX_TRY(k_u32(k, "expert_used_count", true, 0, &hp->n_exp_used));
    QX_TRY(k_u32(k, "expert_shared_count", true, 0, &hp->n_shared));
    QX_TRY(k_u32(k, "expert_group_count", true, 1, &hp->n_group));
    QX_TRY(k_u32(k, "expert_group_used_count", true, hp->n_group, &hp->topk_group));
    QX_TRY(k_u32(k, "leading_dense_block_count", true, 0, &hp->n_dense_first));
    m->n_dense_first = hp->n_dense_first;
    QX_TRY(k_f32(k, "expert_weights_scale", true, 1.0, &d));
    hp->route_scale = (float)d;
    snprintf(key, sizeof key, "%s.expert_weights_norm", k->arch);
    bool b = false;
    if (gf_get_bool(m->gf, key, &b, e) != QX_OK) { qx_err_clear(e); b = false; }
    hp->route_norm = b;
    QX_TRY(k_u32(k, "expert_gating_func", true, 1, &v));
    hp->route_sigmoid = v == 2;
    double ylm;
    QX_TRY(k_f32(k, "rope.scaling.yarn_log_multiplier", true, 0.0, &ylm));
    c->rope_mscale = c->rope_mscale_all_dim = ylm / 0.1;     /* llama.cpp assumes mscale == mscale_all_dim */
    c->rope_beta_fast = 32; c->rope_beta_slow = 1;             /* and these (not stored in GGUF) */
    hp->rope_dim = (int)hp->qk_rope;
    hp->rope_neox = false;
    double ms = 1.0;
    if (!strcmp(c->rope_type, "yarn") && c->rope_factor > 1) ms = ylm * log(c->rope_factor) + 1.0;
    hp->attn_scale = (float)(1.0 / sqrt((double)(hp->qk_nope + hp->qk_rope)) * ms * ms);
    if (hp->n_exp > 1024 || hp->n_exp_used > hp->n_exp || hp->n_group < 1 || (hp->n_exp && hp->n_exp % hp->n_group))
        return qx_fail(e, QX_EUNSUPPORTED, "%s: expert configuration %lld/%lld/%lld not supported", m->path,
                       (long long)hp->n_exp, (long long)hp->n_exp_used, (long long)hp->n_group);
    return QX_OK;
}

qx_status cal_model_open_gguf(cal_model *m, qx_err *e) {
    QX_TRY(gf_open(&m->gf, m->path, e));
    cal_hparams *hp = &m->hp;
    const char *arch;
    QX_TRY(gf_get_str(m->gf, GF_KEY_ARCHITECTURE, &arch, e));
    char nk[96];
    snprintf(nk, sizeof nk, "%s.nextn_predict_layers", arch);
    if (gf_find_kv(m->gf, nk) && !gf_find_tensor(m->gf, "blk.0.attn_norm.weight"))
        return qx_fail(e, QX_EUNSUPPORTED, "%s: an MTP-only file (convert --mtp: the speculative-draft block without the model's layers); "
                       "the engine runs the model's own file", m->path);
    if (!strcmp(arch, "deepseek4")) return cal_model_open_gguf_v4(m, e);
    if (!strcmp(arch, "deepseek2") || !strcmp(arch, "deepseek32")) hp->arch = CAL_ARCH_DEEPSEEK2;
    else if (!strcmp(arch, "llama")) hp->arch = CAL_ARCH_LLAMA;
    else if (!strcmp(arch, "qwen2")) hp->arch = CAL_ARCH_QWEN2;
    else return qx_fail(e, QX_EUNSUPPORTED, "%s: architecture '%s' is not supported by the engine", m->path, arch);
    kctx k = { m, arch, e };
    QX_TRY(arch_params(m, &k, e));
    if (!strcmp(arch, "deepseek32")) {   /* mandatory there, as in llama.cpp's loader */
        int64_t tk;
        QX_TRY(k_u32(&k, "attention.indexer.top_k", false, 0, &tk));
        if (tk == 0) return qx_fail(e, QX_EFORMAT, "%s: deepseek32.attention.indexer.top_k is 0", m->path);
        hp->index_topk = tk;
        QX_TRY(k_u32(&k, "attention.indexer.head_count", false, 0, &hp->index_n_head));
        QX_TRY(k_u32(&k, "attention.indexer.key_length", false, 0, &hp->index_head_dim));
        if (hp->index_n_head <= 0 || hp->index_head_dim < hp->qk_rope || hp->q_lora <= 0)
            return qx_fail(e, QX_EFORMAT, "%s: indexer of %lld heads of %lld (rope %lld, q_lora %lld) is not usable", m->path,
                           (long long)hp->index_n_head, (long long)hp->index_head_dim, (long long)hp->qk_rope, (long long)hp->q_lora);
    }
    QX_TRY(vocab_params(m, hp, e));
    if (hp->rope_dim <= 0 || hp->rope_dim % 2 || hp->rope_dim / 2 > CAL_MAX_ROPE_PAIRS)
        return qx_fail(e, QX_EUNSUPPORTED, "%s: rope dimension %d not supported", m->path, hp->rope_dim);
    cal_rope_freqs(hp, &m->cfg);
    float *ff = NULL;
    QX_TRY(gvec(m, "rope_freqs.weight", hp->rope_dim / 2, true, &ff, e));
    if (ff) {   /* llama3 scaling as stored for llama.cpp: inv_freq / factor */
        for (int j = 0; j < hp->rope_dim / 2; j++) hp->rope_inv_freq[j] /= ff[j];
        free(ff);
    }
    QX_TRY(gw(m, "token_embd.weight", hp->n_vocab, hp->n_embd, false, &m->embed, e));
    QX_TRY(gvec(m, "output_norm.weight", hp->n_embd, false, &m->out_norm, e));
    QX_TRY(gw(m, "output.weight", hp->n_vocab, hp->n_embd, true, &m->output, e));
    if (!m->output.present) { m->output = m->embed; m->output.gt = NULL; }
    return QX_OK;
}

qx_status cal_model_override(cal_model *m, const char *name, qt_type type, const void *data, qx_err *e) {
    if (!m->gf) return qx_fail(e, QX_EUNSUPPORTED, "%s: tensor overrides need a GGUF model", m->path);
    const gf_tensor *t = gf_find_tensor(m->gf, name);
    if (!t) return qx_fail(e, QX_ENOTFOUND, "%s: no tensor '%s' to override", m->path, name);
    if (data && qt_row_size(type, t->ne[0]) == 0)
        return qx_fail(e, QX_EINVAL, "tensor '%s': rows of %lld cannot hold type %s", name, (long long)t->ne[0], qt_type_name(type));
    int k = 0;
    while (k < m->n_ovr && strcmp(m->ovr[k].name, name)) k++;
    if (!data) {
        if (k < m->n_ovr) m->ovr[k] = m->ovr[--m->n_ovr];
    } else {
        if (k == m->n_ovr) {
            void *p = realloc(m->ovr, (size_t)(m->n_ovr + 1) * sizeof *m->ovr);
            if (!p) return qx_fail(e, QX_ENOMEM, "out of memory");
            m->ovr = p;
            m->n_ovr++;
            snprintf(m->ovr[k].name, sizeof m->ovr[k].name, "%s", name);
        }
        m->ovr[k].type = type;
        m->ovr[k].data = data;
    }
    /* the global tensors are viewed once at open: view them again */
    const cal_hparams *hp = &m->hp;
    if (!strcmp(name, "token_embd.weight")) {
        bool tied = !m->output.gt && m->output.w.data == m->embed.w.data;
        QX_TRY(gw(m, name, hp->n_vocab, hp->n_embd, false, &m->embed, e));
        if (tied) { m->output = m->embed; m->output.gt = NULL; }
    } else if (!strcmp(name, "output.weight")) {
        QX_TRY(gw(m, name, hp->n_vocab, hp->n_embd, false, &m->output, e));
    } else if (!strcmp(name, "output_hc_fn.weight") && hp->hc > 0) {
        QX_TRY(gw(m, name, hp->hc, hp->hc * hp->n_embd, false, &m->hc_head, e));
    }
    return QX_OK;
}

#define BN(buf, fmt, ...) snprintf(buf, sizeof buf, "blk.%d." fmt, layer, __VA_ARGS__)

/* Views of expert x of a stacked tensor [X, rows, cols]; only expert 0 owns the release. */
static qx_status experts(cal_model *m, int layer, const char *nm, int64_t rows, int64_t cols, cal_w *w, qx_err *e) {
    const int64_t X = m->hp.n_exp;
    char n[128];
    BN(n, "%s.weight", nm);
    cal_w all;
    QX_TRY(gw(m, n, X * rows, cols, false, &all, e));
    for (int64_t x = 0; x < X; x++) {
        w[x] = cal_w_rows(&all, x * rows, rows);
        if (x) w[x].gt = NULL;
    }
    return QX_OK;
}

qx_status cal_layer_load_gguf(cal_model *m, int layer, cal_layer *l, qx_err *e) {
    const cal_hparams *hp = &m->hp;
    if (hp->arch == CAL_ARCH_DEEPSEEK4) return cal_layer_load_gguf_v4(m, layer, l, e);
    const int64_t E = hp->n_embd, H = hp->n_head;
    char n[128];
    BN(n, "%s", "attn_norm.weight"); QX_TRY(gvec(m, n, E, false, &l->attn_norm, e));
    BN(n, "%s", "ffn_norm.weight"); QX_TRY(gvec(m, n, E, false, &l->ffn_norm, e));
    if (hp->arch == CAL_ARCH_DEEPSEEK2) {
        const int64_t N = hp->qk_nope, R = hp->qk_rope, KVL = hp->kv_lora, Dv = hp->v_dim;
        if (hp->q_lora > 0) {
            BN(n, "%s", "attn_q_a.weight"); QX_TRY(gw(m, n, hp->q_lora, E, false, &l->q_a, e));
            BN(n, "%s", "attn_q_a_norm.weight"); QX_TRY(gvec(m, n, hp->q_lora, false, &l->q_a_norm, e));
            BN(n, "%s", "attn_q_b.weight"); QX_TRY(gw(m, n, H * (N + R), hp->q_lora, false, &l->q_b, e));
        } else {
            BN(n, "%s", "attn_q.weight"); QX_TRY(gw(m, n, H * (N + R), E, false, &l->q, e));
        }
        BN(n, "%s", "attn_kv_a_mqa.weight"); QX_TRY(gw(m, n, KVL + R, E, false, &l->kv_a, e));
        BN(n, "%s", "attn_kv_a_norm.weight"); QX_TRY(gvec(m, n, KVL, false, &l->kv_a_norm, e));
        BN(n, "%s", "attn_kv_b.weight"); QX_TRY(gw(m, n, H * (N + Dv), KVL, true, &l->kv_b, e));
        if (!l->kv_b.present) {
            BN(n, "%s", "attn_k_b.weight"); QX_TRY(gw(m, n, H * KVL, N, false, &l->k_b, e));
            BN(n, "%s", "attn_v_b.weight"); QX_TRY(gw(m, n, H * Dv, KVL, false, &l->v_b, e));
        }
        BN(n, "%s", "attn_output.weight"); QX_TRY(gw(m, n, E, H * Dv, false, &l->o, e));
        if (hp->index_topk > 0) {
            const int64_t IH = hp->index_n_head, ID = hp->index_head_dim;
            BN(n, "%s", "indexer.attn_q_b.weight"); QX_TRY(gw(m, n, IH * ID, hp->q_lora, false, &l->idx_q_b, e));
            BN(n, "%s", "indexer.attn_k.weight"); QX_TRY(gw(m, n, ID, E, false, &l->idx_k, e));
            BN(n, "%s", "indexer.proj.weight"); QX_TRY(gw(m, n, IH, E, false, &l->idx_proj, e));
            BN(n, "%s", "indexer.k_norm.weight"); QX_TRY(gvec(m, n, ID, false, &l->idx_k_norm, e));
            BN(n, "%s", "indexer.k_norm.bias"); QX_TRY(gvec(m, n, ID, false, &l->idx_k_norm_b, e));
        }
    } else {
        const int64_t D = hp->head_dim, KV = hp->n_head_kv;
        BN(n, "%s", "attn_q.weight"); QX_TRY(gw(m, n, H * D, E, false, &l->q, e));
        BN(n, "%s", "attn_k.weight"); QX_TRY(gw(m, n, KV * D, E, false, &l->k, e));
        BN(n, "%s", "attn_v.weight"); QX_TRY(gw(m, n, KV * D, E, false, &l->v, e));
        BN(n, "%s", "attn_output.weight"); QX_TRY(gw(m, n, E, H * D, false, &l->o, e));
        BN(n, "%s", "attn_q.bias"); QX_TRY(gvec(m, n, H * D, true, &l->bq, e));
        BN(n, "%s", "attn_k.bias"); QX_TRY(gvec(m, n, KV * D, true, &l->bk, e));
        BN(n, "%s", "attn_v.bias"); QX_TRY(gvec(m, n, KV * D, true, &l->bv, e));
    }
    l->moe = hp->arch == CAL_ARCH_DEEPSEEK2 && hp->n_exp > 0 && layer >= m->n_dense_first;
    if (!l->moe) {
        BN(n, "%s", "ffn_gate.weight"); QX_TRY(gw(m, n, hp->n_ff, E, false, &l->gate, e));
        BN(n, "%s", "ffn_up.weight"); QX_TRY(gw(m, n, hp->n_ff, E, false, &l->up, e));
        BN(n, "%s", "ffn_down.weight"); QX_TRY(gw(m, n, E, hp->n_ff, false, &l->down, e));
        return QX_OK;
    }
    BN(n, "%s", "ffn_gate_inp.weight"); QX_TRY(gw(m, n, hp->n_exp, E, false, &l->router, e));
    BN(n, "%s", "exp_probs_b.bias"); QX_TRY(gvec(m, n, hp->n_exp, true, &l->exp_bias, e));
    l->eg = calloc((size_t)hp->n_exp, sizeof *l->eg);
    l->eu = calloc((size_t)hp->n_exp, sizeof *l->eu);
    l->ed = calloc((size_t)hp->n_exp, sizeof *l->ed);
    if (!l->eg || !l->eu || !l->ed) return qx_fail(e, QX_ENOMEM, "layer %d: out of memory", layer);
    QX_TRY(experts(m, layer, "ffn_gate_exps", hp->n_ff_exp, E, l->eg, e));
    QX_TRY(experts(m, layer, "ffn_up_exps", hp->n_ff_exp, E, l->eu, e));
    QX_TRY(experts(m, layer, "ffn_down_exps", E, hp->n_ff_exp, l->ed, e));
    if (hp->n_shared > 0) {
        const int64_t F = hp->n_ff_exp * hp->n_shared;
        l->has_shared = true;
        BN(n, "%s", "ffn_gate_shexp.weight"); QX_TRY(gw(m, n, F, E, false, &l->sg, e));
        BN(n, "%s", "ffn_up_shexp.weight"); QX_TRY(gw(m, n, F, E, false, &l->su, e));
        BN(n, "%s", "ffn_down_shexp.weight"); QX_TRY(gw(m, n, E, F, false, &l->sd, e));
    }
    return QX_OK;
}

/* GGUF name (after "blk.N.") of each 2-D weight view of a cal_layer. */
static const struct { const char *name; size_t off; } swap_views[] = {
    { "attn_q.weight", offsetof(cal_layer, q) }, { "attn_k.weight", offsetof(cal_layer, k) },
    { "attn_v.weight", offsetof(cal_layer, v) }, { "attn_output.weight", offsetof(cal_layer, o) },
    { "attn_q_a.weight", offsetof(cal_layer, q_a) }, { "attn_q_b.weight", offsetof(cal_layer, q_b) },
    { "attn_kv_a_mqa.weight", offsetof(cal_layer, kv_a) }, { "attn_kv_b.weight", offsetof(cal_layer, kv_b) },
    { "attn_k_b.weight", offsetof(cal_layer, k_b) }, { "attn_v_b.weight", offsetof(cal_layer, v_b) },
    { "indexer.attn_q_b.weight", offsetof(cal_layer, idx_q_b) }, { "indexer.attn_k.weight", offsetof(cal_layer, idx_k) },
    { "indexer.proj.weight", offsetof(cal_layer, idx_proj) },
    { "ffn_gate.weight", offsetof(cal_layer, gate) }, { "ffn_up.weight", offsetof(cal_layer, up) },
    { "ffn_down.weight", offsetof(cal_layer, down) }, { "ffn_gate_inp.weight", offsetof(cal_layer, router) },
    { "ffn_gate_shexp.weight", offsetof(cal_layer, sg) }, { "ffn_up_shexp.weight", offsetof(cal_layer, su) },
    { "ffn_down_shexp.weight", offsetof(cal_layer, sd) },
    { "attn_kv.weight", offsetof(cal_layer, kv) }, { "attn_output_a.weight", offsetof(cal_layer, o_a) },
    { "attn_output_b.weight", offsetof(cal_layer, o_b) }, { "hc_attn_fn.weight", offsetof(cal_layer, hc_attn) },
    { "hc_ffn_fn.weight", offsetof(cal_layer, hc_ffn) }, { "attn_compressor_kv.weight", offsetof(cal_layer, comp_kv) },
    { "attn_compressor_gate.weight", offsetof(cal_layer, comp_gate) },
    { "indexer_compressor_kv.weight", offsetof(cal_layer, icomp_kv) },
    { "indexer_compressor_gate.weight", offsetof(cal_layer, icomp_gate) },
};

qx_status cal_layer_swap(const cal_model *m, const cal_layer *l, int layer, const char *name, qt_type type,
                         const void *data, cal_layer *out, qx_err *e) {
    *out = *l;
    char pre[32];
    int np = snprintf(pre, sizeof pre, "blk.%d.", layer);
    const char *sfx = strncmp(name, pre, (size_t)np) ? NULL : name + np;
    for (size_t i = 0; sfx && i < sizeof swap_views / sizeof swap_views[0]; i++) {
        if (strcmp(sfx, swap_views[i].name)) continue;
        cal_w *w = (cal_w *)((char *)out + swap_views[i].off);
        if (!w->present) break;
        if (!kn_weight_init(&w->w, type, w->w.rows, w->w.cols, data, NULL))
            return qx_fail(e, QX_EUNSUPPORTED, "tensor '%s': type %s cannot be decoded", name, qt_type_name(type));
        return QX_OK;
    }
    const char *const exps[3] = { "ffn_gate_exps.weight", "ffn_up_exps.weight", "ffn_down_exps.weight" };
    const int64_t X = m->hp.n_exp;
    for (int k = 0; sfx && l->moe && k < 3; k++) {
        if (strcmp(sfx, exps[k])) continue;
        const cal_w *src = k == 0 ? l->eg : k == 1 ? l->eu : l->ed;
        cal_w *dst = malloc((size_t)X * sizeof *dst);   /* [X] views into data, expert-major */
        if (!dst) return qx_fail(e, QX_ENOMEM, "layer %d: out of memory", layer);
        for (int64_t x = 0; x < X; x++) {
            dst[x] = src[x];
            dst[x].gt = NULL;
            if (!kn_weight_init(&dst[x].w, type, src[x].w.rows, src[x].w.cols, NULL, NULL)) {
                free(dst);
                return qx_fail(e, QX_EUNSUPPORTED, "tensor '%s': type %s cannot be decoded", name, qt_type_name(type));
            }
            dst[x].w.data = (const uint8_t *)data + (uint64_t)x * (uint64_t)src[x].w.rows * dst[x].w.row_bytes;
        }
        if (k == 0) out->eg = dst;
        else if (k == 1) out->eu = dst;
        else out->ed = dst;
        return QX_OK;
    }
    return qx_fail(e, QX_ENOTFOUND, "layer %d: no weight '%s' to substitute", layer, name);
}

void cal_layer_swap_free(const cal_layer *l, cal_layer *out) {
    if (out->eg != l->eg) free(out->eg);
    if (out->eu != l->eu) free(out->eu);
    if (out->ed != l->ed) free(out->ed);
    memset(out, 0, sizeof *out);
}

/* ======================= deepseek4 (V4) =======================
 * Keys and shapes as llama.cpp's deepseek4 loader reads them (src/models/deepseek4.cpp):
 * every layer has the hyper-connection mixers, the q low-rank path, one K=V head, sinks and
 * the grouped output projection; compress_ratios[L] (0, 4 or 128) adds a compressor, and 4
 * also the indexer; the first hash_layer_count layers route by token id (ffn_gate_tid2eid). */

#define V4_MAX_SINKHORN (1 << 16)   /* Sinkhorn iterations accepted (V4: 20): bounds the work per token */

/* rows x cols f32 copy of tensor `name` (any decodable type). */
static qx_status gmat(cal_model *m, const char *name, int64_t rows, int64_t cols, bool optional, float **out,
                      qx_err *e) {
    *out = NULL;
    cal_w w;
    QX_TRY(gw(m, name, rows, cols, optional, &w, e));
    if (!w.present) return QX_OK;
    *out = malloc((size_t)(rows * cols) * sizeof(float));
    if (!*out) return qx_fail(e, QX_ENOMEM, "tensor '%s': out of memory", name);
    kn_weight_rows(&w.w, 0, rows, *out);
    gf_release(m->gf, w.gt);
    return QX_OK;
}

/* A per-layer array key of n entries (an int or float array, or one scalar for all layers). */
static qx_status v4_arr(cal_model *m, const char *key, int64_t n, bool optional, bool as_float, int32_t *iv,
                        float *fv, bool *found, qx_err *e) {
    char full[128];
    snprintf(full, sizeof full, "deepseek4.%s", key);
    *found = false;
    const gf_kv *kv = gf_find_kv(m->gf, full);
    if (!kv) return optional ? QX_OK : qx_fail(e, QX_ENOTFOUND, "%s: missing metadata key '%s'", m->path, full);
    const bool arr = kv->type == GF_ARRAY;
    const gf_type et = arr ? kv->arr_type : kv->type;
    if (arr && kv->n < (uint64_t)n)
        return qx_fail(e, QX_EFORMAT, "%s: '%s' has %llu entries, fewer than the %lld layers", m->path, full,
                       (unsigned long long)kv->n, (long long)n);
    if (et != GF_U32 && et != GF_I32 && et != GF_F32)
        return qx_fail(e, QX_EFORMAT, "%s: '%s' is of type %s, expected u32, i32 or f32", m->path, full, gf_type_name(et));
    const void *src = arr ? kv->arr : (const void *)&kv->v;
    for (int64_t i = 0; i < n; i++) {
        const int64_t j = arr ? i : 0;
        double v = et == GF_F32 ? (double)((const float *)src)[j]
                 : et == GF_I32 ? (double)((const int32_t *)src)[j] : (double)((const uint32_t *)src)[j];
        if (as_float) fv[i] = (float)v;
        else iv[i] = (int32_t)v;
    }
    *found = true;
    return QX_OK;
}

static qx_status v4_params(cal_model *m, kctx *k, qx_err *e) {
    cal_hparams *hp = &m->hp;
    hf_config *c = &m->cfg;
    int64_t v, gating;
    double d;
    QX_TRY(base_params(m, k, e));   /* n_embd, layers, heads, eps, rope base and scaling */
    QX_TRY(k_u32(k, "rope.dimension_count", false, 0, &hp->qk_rope));
    QX_TRY(k_u32(k, "attention.q_lora_rank", false, 0, &hp->q_lora));
    QX_TRY(k_u32(k, "expert_feed_forward_length", false, 0, &hp->n_ff_exp));
    QX_TRY(k_u32(k, "expert_count", false, 0, &hp->n_exp));
    QX_TRY(k_u32(k, "expert_used_count", false, 0, &hp->n_exp_used));
    QX_TRY(k_u32(k, "expert_shared_count", true, 0, &hp->n_shared));
    QX_TRY(k_f32(k, "expert_weights_scale", true, 1.0, &d));
    hp->route_scale = (float)d;
    bool b = false;
    if (gf_get_bool(m->gf, "deepseek4.expert_weights_norm", &b, e) != QX_OK) { qx_err_clear(e); b = false; }
    hp->route_norm = b;
    hp->n_group = hp->topk_group = 1;
    QX_TRY(k_u32(k, "attention.key_length", false, 0, &hp->head_dim));
    hp->v_dim = hp->head_dim;
    QX_TRY(k_u32(k, "attention.sliding_window", false, 0, &hp->n_swa));
    QX_TRY(k_u32(k, "attention.indexer.head_count", false, 0, &hp->index_n_head));
    QX_TRY(k_u32(k, "attention.indexer.key_length", false, 0, &hp->index_head_dim));
    QX_TRY(k_u32(k, "attention.indexer.top_k", false, 0, &hp->index_topk));
    QX_TRY(k_u32(k, "attention.output_group_count", false, 0, &hp->o_groups));
    QX_TRY(k_u32(k, "attention.output_lora_rank", false, 0, &hp->o_lora));
    QX_TRY(k_u32(k, "hyper_connection.count", false, 0, &hp->hc));
    QX_TRY(k_u32(k, "hyper_connection.sinkhorn_iterations", false, 0, &hp->hc_iters));
    QX_TRY(k_f32(k, "hyper_connection.epsilon", false, 0, &d));
    hp->hc_eps = (float)d;
    QX_TRY(k_u32(k, "hash_layer_count", true, 0, &hp->n_hash));
    QX_TRY(k_u32(k, "expert_gating_func", false, 0, &gating));
    QX_TRY(k_f32(k, "attention.compress_rope_freq_base", false, 0, &d));
    const double cbase = d;
    QX_TRY(k_f32(k, "rope.scaling.yarn_beta_fast", true, 32.0, &c->rope_beta_fast));
    QX_TRY(k_f32(k, "rope.scaling.yarn_beta_slow", true, 1.0, &c->rope_beta_slow));
    QX_TRY(k_u32(k, "context_length", true, 0, &v));
    if (c->rope_orig_max_pos <= 0) c->rope_orig_max_pos = (double)v;
    const int64_t H = hp->n_head, D = hp->head_dim, R = hp->qk_rope;
    if (gating != 4)
        return qx_fail(e, QX_EUNSUPPORTED, "%s: deepseek4.expert_gating_func %lld, expected 4 (sqrt-softplus)", m->path, (long long)gating);
    if (hp->hc < 1 || hp->hc > KN_V4_MAX_HC || hp->hc_iters < 1 || hp->hc_iters > V4_MAX_SINKHORN || H < 1 ||
        D < R || R < 2 || R % 2 || hp->o_groups < 1 || H % hp->o_groups || hp->o_lora < 1 || hp->q_lora < 1 ||
        hp->n_swa < 1 || hp->n_exp < 1 || hp->n_exp > KN_V4_MAX_EXPERTS || hp->n_exp_used < 1 ||
        hp->n_exp_used > hp->n_exp || hp->index_n_head < 1 || hp->index_head_dim < R || hp->index_topk < 1 ||
        hp->n_hash > hp->n_layer)
        return qx_fail(e, QX_EFORMAT, "%s: deepseek4 shape not usable (hc %lld x %lld Sinkhorn, heads %lld of %lld, rope %lld, groups %lld, "
                       "o_lora %lld, q_lora %lld, window %lld, experts %lld/%lld, indexer %lld x %lld top %lld, hash %lld)",
                       m->path, (long long)hp->hc, (long long)hp->hc_iters, (long long)H, (long long)D, (long long)R, (long long)hp->o_groups,
                       (long long)hp->o_lora, (long long)hp->q_lora, (long long)hp->n_swa, (long long)hp->n_exp_used,
                       (long long)hp->n_exp, (long long)hp->index_n_head, (long long)hp->index_head_dim,
                       (long long)hp->index_topk, (long long)hp->n_hash);
    hp->rope_dim = (int)R;
    hp->rope_neox = false;
    hp->attn_scale = (float)(1.0 / sqrt((double)D));
    hp->n_dense_first = 0;
    m->n_dense_first = 0;
    if (hp->rope_dim / 2 > CAL_MAX_ROPE_PAIRS)
        return qx_fail(e, QX_EUNSUPPORTED, "%s: rope dimension %d not supported", m->path, hp->rope_dim);
    /* compressed layers: compress_rope_freq_base with the file's scaling (YaRN); others plain */
    hf_config cc = *c;
    cc.rope_theta = cbase;
    cal_rope_freqs(hp, &cc);
    memcpy(hp->rope_c_inv_freq, hp->rope_inv_freq, sizeof hp->rope_c_inv_freq);
    cc = *c;
    cc.rope_type[0] = '\0';
    cal_rope_freqs(hp, &cc);
    hp->rope_mscale = 1.0f;   /* llama.cpp cancels YaRN's magnitude factor here (dsv4_rope_attn_factor) */
    return QX_OK;
}

qx_status cal_model_open_gguf_v4(cal_model *m, qx_err *e) {
    cal_hparams *hp = &m->hp;
    hp->arch = CAL_ARCH_DEEPSEEK4;
    kctx k = { m, "deepseek4", e };
    QX_TRY(v4_params(m, &k, e));
    const int64_t NL = hp->n_layer, E = hp->n_embd, HC = hp->hc;
    /* the per-layer ratios bound the layer count by the file's own size before anything is sized by it */
    const gf_kv *rk = gf_find_kv(m->gf, "deepseek4.attention.compress_ratios");
    if (!rk || rk->type != GF_ARRAY || NL < 1 || rk->n < (uint64_t)NL)
        return qx_fail(e, QX_EFORMAT, "%s: deepseek4.attention.compress_ratios %s for %lld layers", m->path,
                       !rk ? "is missing" : rk->type != GF_ARRAY ? "is not an array" : "has too few entries", (long long)NL);
    m->v4_ratio = calloc((size_t)NL, sizeof(int32_t));
    m->v4_clamp_exp = calloc((size_t)NL, sizeof(float));
    m->v4_clamp_shexp = calloc((size_t)NL, sizeof(float));
    if (!m->v4_ratio || !m->v4_clamp_exp || !m->v4_clamp_shexp) return qx_fail(e, QX_ENOMEM, "%s: out of memory", m->path);
    bool found;
    QX_TRY(v4_arr(m, "attention.compress_ratios", NL, false, false, m->v4_ratio, NULL, &found, e));
    for (int64_t L = 0; L < NL; L++)
        if (m->v4_ratio[L] != 0 && m->v4_ratio[L] != 4 && m->v4_ratio[L] != 128)
            return qx_fail(e, QX_EUNSUPPORTED, "%s: layer %lld compress ratio %d (0, 4 and 128 are known)", m->path,
                           (long long)L, m->v4_ratio[L]);
    QX_TRY(v4_arr(m, "swiglu_clamp_exp", NL, true, true, NULL, m->v4_clamp_exp, &found, e));
    QX_TRY(v4_arr(m, "swiglu_clamp_shexp", NL, true, true, NULL, m->v4_clamp_shexp, &found, e));
    if (!found) memcpy(m->v4_clamp_shexp, m->v4_clamp_exp, (size_t)NL * sizeof(float));
    QX_TRY(vocab_params(m, hp, e));
    QX_TRY(gw(m, "token_embd.weight", hp->n_vocab, E, false, &m->embed, e));
    QX_TRY(gvec(m, "output_norm.weight", E, false, &m->out_norm, e));
    QX_TRY(gw(m, "output.weight", hp->n_vocab, E, false, &m->output, e));
    QX_TRY(gw(m, "output_hc_fn.weight", HC, HC * E, false, &m->hc_head, e));
    QX_TRY(gvec(m, "output_hc_base.weight", HC, false, &m->hc_head_base, e));
    QX_TRY(gvec(m, "output_hc_scale.weight", 1, false, &m->hc_head_scale, e));
    return QX_OK;
}

qx_status cal_layer_load_gguf_v4(cal_model *m, int layer, cal_layer *l, qx_err *e) {
    const cal_hparams *hp = &m->hp;
    const int64_t E = hp->n_embd, H = hp->n_head, D = hp->head_dim, G = hp->o_groups, OL = hp->o_lora;
    const int64_t MIX = (2 + hp->hc) * hp->hc, HCE = hp->hc * E, IH = hp->index_n_head, ID = hp->index_head_dim;
    const int64_t X = hp->n_exp, K = hp->n_exp_used;
    char n[128];
    BN(n, "%s", "attn_norm.weight"); QX_TRY(gvec(m, n, E, false, &l->attn_norm, e));
    BN(n, "%s", "ffn_norm.weight"); QX_TRY(gvec(m, n, E, false, &l->ffn_norm, e));
    BN(n, "%s", "attn_sinks.weight"); QX_TRY(gvec(m, n, H, false, &l->sinks, e));
    BN(n, "%s", "attn_q_a.weight"); QX_TRY(gw(m, n, hp->q_lora, E, false, &l->q_a, e));
    BN(n, "%s", "attn_q_a_norm.weight"); QX_TRY(gvec(m, n, hp->q_lora, false, &l->q_a_norm, e));
    BN(n, "%s", "attn_q_b.weight"); QX_TRY(gw(m, n, H * D, hp->q_lora, false, &l->q_b, e));
    BN(n, "%s", "attn_kv.weight"); QX_TRY(gw(m, n, D, E, false, &l->kv, e));
    BN(n, "%s", "attn_kv_a_norm.weight"); QX_TRY(gvec(m, n, D, false, &l->kv_norm, e));
    BN(n, "%s", "attn_output_a.weight"); QX_TRY(gw(m, n, G * OL, H * D / G, false, &l->o_a, e));
    BN(n, "%s", "attn_output_b.weight"); QX_TRY(gw(m, n, E, G * OL, false, &l->o_b, e));
    BN(n, "%s", "hc_attn_fn.weight"); QX_TRY(gw(m, n, MIX, HCE, false, &l->hc_attn, e));
    BN(n, "%s", "hc_attn_base.weight"); QX_TRY(gvec(m, n, MIX, false, &l->hc_attn_base, e));
    BN(n, "%s", "hc_attn_scale.weight"); QX_TRY(gvec(m, n, 3, false, &l->hc_attn_scale, e));
    BN(n, "%s", "hc_ffn_fn.weight"); QX_TRY(gw(m, n, MIX, HCE, false, &l->hc_ffn, e));
    BN(n, "%s", "hc_ffn_base.weight"); QX_TRY(gvec(m, n, MIX, false, &l->hc_ffn_base, e));
    BN(n, "%s", "hc_ffn_scale.weight"); QX_TRY(gvec(m, n, 3, false, &l->hc_ffn_scale, e));
    l->ratio = m->v4_ratio[layer];
    if (l->ratio) {
        const int64_t cw = (l->ratio == 4 ? 2 : 1) * D;
        BN(n, "%s", "attn_compressor_kv.weight"); QX_TRY(gw(m, n, cw, E, false, &l->comp_kv, e));
        BN(n, "%s", "attn_compressor_gate.weight"); QX_TRY(gw(m, n, cw, E, false, &l->comp_gate, e));
        BN(n, "%s", "attn_compressor_ape.weight"); QX_TRY(gmat(m, n, l->ratio, cw, false, &l->comp_ape, e));
        BN(n, "%s", "attn_compressor_norm.weight"); QX_TRY(gvec(m, n, D, false, &l->comp_norm, e));
    }
    if (l->ratio == 4) {
        BN(n, "%s", "indexer.proj.weight"); QX_TRY(gw(m, n, IH, E, false, &l->idx_proj, e));
        BN(n, "%s", "indexer.attn_q_b.weight"); QX_TRY(gw(m, n, IH * ID, hp->q_lora, false, &l->idx_q_b, e));
        BN(n, "%s", "indexer_compressor_kv.weight"); QX_TRY(gw(m, n, 2 * ID, E, false, &l->icomp_kv, e));
        BN(n, "%s", "indexer_compressor_gate.weight"); QX_TRY(gw(m, n, 2 * ID, E, false, &l->icomp_gate, e));
        BN(n, "%s", "indexer_compressor_ape.weight"); QX_TRY(gmat(m, n, 4, 2 * ID, false, &l->icomp_ape, e));
        BN(n, "%s", "indexer_compressor_norm.weight"); QX_TRY(gvec(m, n, ID, false, &l->icomp_norm, e));
    }
    l->moe = true;
    BN(n, "%s", "ffn_gate_inp.weight"); QX_TRY(gw(m, n, X, E, false, &l->router, e));
    if (layer < hp->n_hash) {
        BN(n, "%s", "ffn_gate_tid2eid.weight");
        const gf_tensor *t = gf_find_tensor(m->gf, n);
        if (!t) return qx_fail(e, QX_ENOTFOUND, "%s: missing tensor '%s'", m->path, n);
        if (t->type != QT_I32 || t->ne[0] != K || t->ne[1] != hp->n_vocab || t->n_elems != (uint64_t)(K * hp->n_vocab))
            return qx_fail(e, QX_ESHAPE, "tensor '%s': %s ne [%lld, %lld], expected i32 [%lld, %lld]", n,
                           qt_type_name(t->type), (long long)t->ne[0], (long long)t->ne[1], (long long)K, (long long)hp->n_vocab);
        l->tid2eid = malloc((size_t)(K * hp->n_vocab) * sizeof(int32_t));
        if (!l->tid2eid) return qx_fail(e, QX_ENOMEM, "tensor '%s': out of memory", n);
        memcpy(l->tid2eid, t->data, (size_t)(K * hp->n_vocab) * sizeof(int32_t));
        gf_release(m->gf, t);
        for (int64_t i = 0; i < K * hp->n_vocab; i++)
            if (l->tid2eid[i] < 0 || l->tid2eid[i] >= X)
                return qx_fail(e, QX_EFORMAT, "tensor '%s': entry %lld is expert %d of %lld", n, (long long)i, l->tid2eid[i], (long long)X);
    } else {
        BN(n, "%s", "exp_probs_b.bias"); QX_TRY(gvec(m, n, X, false, &l->exp_bias, e));
    }
    l->eg = calloc((size_t)X, sizeof *l->eg);
    l->eu = calloc((size_t)X, sizeof *l->eu);
    l->ed = calloc((size_t)X, sizeof *l->ed);
    if (!l->eg || !l->eu || !l->ed) return qx_fail(e, QX_ENOMEM, "layer %d: out of memory", layer);
    QX_TRY(experts(m, layer, "ffn_gate_exps", hp->n_ff_exp, E, l->eg, e));
    QX_TRY(experts(m, layer, "ffn_up_exps", hp->n_ff_exp, E, l->eu, e));
    QX_TRY(experts(m, layer, "ffn_down_exps", E, hp->n_ff_exp, l->ed, e));
    const int64_t F = hp->n_ff_exp * (hp->n_shared > 0 ? hp->n_shared : 1);
    l->has_shared = true;
    BN(n, "%s", "ffn_gate_shexp.weight"); QX_TRY(gw(m, n, F, E, false, &l->sg, e));
    BN(n, "%s", "ffn_up_shexp.weight"); QX_TRY(gw(m, n, F, E, false, &l->su, e));
    BN(n, "%s", "ffn_down_shexp.weight"); QX_TRY(gw(m, n, E, F, false, &l->sd, e));
    l->clamp_exp = m->v4_clamp_exp[layer];
    l->clamp_shexp = m->v4_clamp_shexp[layer];
    return QX_OK;
}
