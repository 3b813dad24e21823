/* convert/arch.c — architecture maps: HF names/shapes/config -> GGUF tensors and metadata.
 * deepseek2 per ../shared/GGUF-DEEPSEEK2.md §4-§5 (MLA layout: attn_k_b/attn_v_b split from
 * kv_b_proj, head_count_kv 1 and the *_mla keys; experts stacked slice by slice; MTP block
 * only with keep_mtp; deepseek32 keeps it unless no_mtp, and with mtp_only writes it alone).
 * llama and qwen2 as llama.cpp's convert_hf_to_gguf.py writes them (llama: q/k rows permuted
 * from HF's rotate-half to ggml's adjacent-pair rope, rope_freqs for llama3 scaling; qwen2:
 * q/k/v biases, no permutation).  Shapes are ggml ne[]. */
#include "cv_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY(buf, arch, k) (snprintf(buf, sizeof buf, "%s.%s", arch, k), buf)

/* Finds an HF tensor and checks its torch shape against the GGUF ne (reversed). */
qx_status cv_need(cv_plan *pl, const char *hf, int n_dims, const int64_t *ne, const st_tensor **out, qx_err *e) {
    const st_tensor *t = st_find(pl->st, hf);
    if (!t) return qx_fail(e, QX_ENOTFOUND, "%s: tensor '%s' missing from the checkpoint", st_model_dir(pl->st), hf);
    bool ok = t->n_dims == n_dims;
    for (int d = 0; ok && d < n_dims; d++) ok = t->shape[d] == ne[n_dims - 1 - d];
    if (!ok)
        return qx_fail(e, QX_ESHAPE, "%s: tensor '%s' has shape [%lld%s%lld], config.json implies [%lld%s%lld]",
                       st_shard_path(pl->st, t->shard), hf, (long long)t->shape[0], t->n_dims > 1 ? ", " : "",
                       t->n_dims > 1 ? (long long)t->shape[1] : 0LL, (long long)ne[n_dims - 1], n_dims > 1 ? ", " : "",
                       n_dims > 1 ? (long long)ne[0] : 0LL);
    qt_type q;
    if (!st_dtype_to_qt(t->dtype, &q) && t->dtype != ST_I4_PACKED && t->dtype != ST_FP4_PACKED)   /* INT4/FP4: st_tensor_rows_f32 */
        return qx_fail(e, QX_ESHAPE, "%s: tensor '%s': dtype %s is not a float type", st_shard_path(pl->st, t->shard), hf, st_dtype_name(t->dtype));
    if (t->dtype == ST_I4_PACKED && (!pl->cfg.int4 || t->group != pl->cfg.int4_group))
        return qx_fail(e, QX_ESHAPE, "%s: tensor '%s': pack-quantized INT4 with group %lld, config.json says %s %lld",
                       st_shard_path(pl->st, t->shard), hf, (long long)t->group,
                       pl->cfg.int4 ? "group_size" : "no compressed-tensors quantization, group", (long long)pl->cfg.int4_group);
    if ((t->dtype == ST_F8_E4M3 || t->dtype == ST_F8_E5M2) && !t->scale_inv)
        return qx_fail(e, QX_ENOTFOUND, "%s: tensor '%s' is %s but its scale ('%s_scale_inv', or '.scale' for V4) is missing",
                       st_shard_path(pl->st, t->shard), hf, st_dtype_name(t->dtype), hf);
    *out = t;
    return QX_OK;
}

cv_category cv_cat_for(const char *gguf, int n_dims, cv_category c, bool mtp) {
    if (mtp) return CV_CAT_MTP;
    if (!cv_quantizable(gguf, n_dims)) return CV_CAT_F32;
    return c;
}

/* One output tensor from one HF tensor. */
qx_status cv_add1(cv_plan *pl, const char *gguf, const char *hf, int n_dims, const int64_t *ne, cv_category c,
                      int layer, bool mtp, cv_xform xf, cv_out **out, qx_err *e) {
    const st_tensor *t;
    QX_TRY(cv_need(pl, hf, n_dims, ne, &t, e));
    cv_out *o = cv_add_out(pl, gguf, n_dims, ne, cv_cat_for(gguf, n_dims, c, mtp), layer, xf, e);
    if (!o) return e->code;
    o->src = malloc(sizeof *o->src);
    if (!o->src) return qx_fail(e, QX_ENOMEM, "out of memory");
    o->src[0] = t;
    o->n_src = 1;
    if (out) *out = o;
    return QX_OK;
}

/* A stacked expert tensor [in, out, X] from X HF tensors model.layers.L.mlp.experts.x.<proj>. */
static qx_status add_exps(cv_plan *pl, int64_t l, const char *gguf, const char *proj, int64_t in, int64_t outf,
                          int64_t X, bool mtp, qx_err *e) {
    int64_t ne[3] = {in, outf, X};
    const st_tensor **src = malloc((size_t)X * sizeof *src);
    if (!src) return qx_fail(e, QX_ENOMEM, "out of memory");
    char hf[256];
    for (int64_t x = 0; x < X; x++) {
        snprintf(hf, sizeof hf, "model.layers.%lld.mlp.experts.%lld.%s.weight", (long long)l, (long long)x, proj);
        qx_status s = cv_need(pl, hf, 2, ne, &src[x], e);
        if (s != QX_OK) { free(src); return s; }
    }
    cv_out *o = cv_add_out(pl, gguf, 3, ne, cv_cat_for(gguf, 3, CV_CAT_EXPS, mtp), (int)l, XF_ROWS, e);
    if (!o) { free(src); return e->code; }
    o->src = src;
    o->n_src = X;
    return QX_OK;
}

/* The optional yarn keys convert_hf_to_gguf.py writes when config.json's rope scaling has
 * them (TextModel.set_gguf_parameters): ext/attn factor, beta_fast, beta_slow. */
static qx_status cv_yarn_keys(gf_writer *w, const char *a, const hf_config *c, qx_err *e) {
    char k[128];
    if (c->has & HF_HAS_EXT_FACTOR) QX_TRY(gf_writer_set_f32(w, KEY(k, a, "rope.scaling.yarn_ext_factor"), (float)c->rope_ext_factor, e));
    if (c->has & HF_HAS_ATTN_FACTOR) QX_TRY(gf_writer_set_f32(w, KEY(k, a, "rope.scaling.yarn_attn_factor"), (float)c->rope_attn_factor, e));
    if (c->has & HF_HAS_BETA_FAST) QX_TRY(gf_writer_set_f32(w, KEY(k, a, "rope.scaling.yarn_beta_fast"), (float)c->rope_beta_fast, e));
    if (c->has & HF_HAS_BETA_SLOW) QX_TRY(gf_writer_set_f32(w, KEY(k, a, "rope.scaling.yarn_beta_slow"), (float)c->rope_beta_slow, e));
    return QX_OK;
}

static qx_status ds_metadata(cv_plan *pl, const cv_params *p, int64_t n_mtp, qx_err *e) {
    const hf_config *c = &pl->cfg;
    gf_writer *w = pl->w;
    const char *a = pl->arch;   /* deepseek2 or deepseek32 */
    char k[128];
    QX_TRY(gf_writer_set_u32(w, KEY(k, a, "context_length"), (uint32_t)c->max_position_embeddings, e));
    QX_TRY(gf_writer_set_u32(w, KEY(k, a, "embedding_length"), (uint32_t)c->hidden_size, e));
    QX_TRY(gf_writer_set_u32(w, KEY(k, a, "block_count"), (uint32_t)(c->n_layers + n_mtp), e));
    QX_TRY(gf_writer_set_u32(w, KEY(k, a, "feed_forward_length"), (uint32_t)c->intermediate_size, e));
    QX_TRY(gf_writer_set_u32(w, KEY(k, a, "attention.head_count"), (uint32_t)c->n_heads, e));
    QX_TRY(gf_writer_set_u32(w, KEY(k, a, "attention.head_count_kv"), 1, e));
    QX_TRY(gf_writer_set_u32(w, KEY(k, a, "attention.key_length"), (uint32_t)(c->kv_lora_rank + c->qk_rope_head_dim), e));
    QX_TRY(gf_writer_set_u32(w, KEY(k, a, "attention.value_length"), (uint32_t)c->kv_lora_rank, e));
    QX_TRY(gf_writer_set_u32(w, KEY(k, a, "attention.key_length_mla"), (uint32_t)(c->qk_nope_head_dim + c->qk_rope_head_dim), e));
    QX_TRY(gf_writer_set_u32(w, KEY(k, a, "attention.value_length_mla"), (uint32_t)c->v_head_dim, e));
    QX_TRY(gf_writer_set_u32(w, KEY(k, a, "rope.dimension_count"), (uint32_t)c->qk_rope_head_dim, e));
    QX_TRY(gf_writer_set_f32(w, KEY(k, a, "attention.layer_norm_rms_epsilon"), (float)c->rms_norm_eps, e));
    if (c->q_lora_rank > 0) QX_TRY(gf_writer_set_u32(w, KEY(k, a, "attention.q_lora_rank"), (uint32_t)c->q_lora_rank, e));
    QX_TRY(gf_writer_set_u32(w, KEY(k, a, "attention.kv_lora_rank"), (uint32_t)c->kv_lora_rank, e));
    QX_TRY(gf_writer_set_u32(w, KEY(k, a, "expert_feed_forward_length"), (uint32_t)c->moe_intermediate_size, e));
    QX_TRY(gf_writer_set_u32(w, KEY(k, a, "expert_shared_count"), (uint32_t)c->n_shared_experts, e));
    QX_TRY(gf_writer_set_u32(w, KEY(k, a, "expert_count"), (uint32_t)c->n_routed_experts, e));
    QX_TRY(gf_writer_set_u32(w, KEY(k, a, "expert_used_count"), (uint32_t)c->n_experts_per_tok, e));
    /* convert_hf_to_gguf.py writes both whenever config.json has them, but the loader asserts
     * 0 < used < count for count > 1: topk_group == n_group > 1 routes the same without them,
     * so they are omitted there (n_group 1, Kimi-K2, is written as llama.cpp does). */
    bool grp1 = c->n_group == 1 && (c->has & HF_HAS_N_GROUP) && (c->has & HF_HAS_TOPK_GROUP);
    if (grp1 || (c->n_group > 1 && c->topk_group > 0 && c->topk_group < c->n_group)) {
        QX_TRY(gf_writer_set_u32(w, KEY(k, a, "expert_group_count"), (uint32_t)c->n_group, e));
        QX_TRY(gf_writer_set_u32(w, KEY(k, a, "expert_group_used_count"), (uint32_t)c->topk_group, e));
    }
    QX_TRY(gf_writer_set_u32(w, KEY(k, a, "leading_dense_block_count"), (uint32_t)c->first_k_dense_replace, e));
    /* as llama.cpp: the scale only when config.json sets it, the norm flag only when true */
    if (c->has & HF_HAS_ROUTED_SCALE)
        QX_TRY(gf_writer_set_f32(w, KEY(k, a, "expert_weights_scale"), (float)c->routed_scaling_factor, e));
    if (c->norm_topk_prob) QX_TRY(gf_writer_set_bool(w, KEY(k, a, "expert_weights_norm"), true, e));
    uint32_t gating = !strcmp(c->scoring_func, "sigmoid") ? 2 : 1;
    if (strcmp(c->scoring_func, "sigmoid") && strcmp(c->scoring_func, "softmax") && c->scoring_func[0])
        return qx_fail(e, QX_EUNSUPPORTED, "config.json: scoring_func '%s' (supported: sigmoid, softmax)", c->scoring_func);
    QX_TRY(gf_writer_set_u32(w, KEY(k, a, "expert_gating_func"), gating, e));
    QX_TRY(gf_writer_set_u32(w, KEY(k, a, "vocab_size"), (uint32_t)c->vocab_size, e));
    QX_TRY(gf_writer_set_f32(w, KEY(k, a, "rope.freq_base"), (float)c->rope_theta, e));
    if (!strcmp(c->rope_type, "yarn")) {
        QX_TRY(gf_writer_set_str(w, KEY(k, a, "rope.scaling.type"), "yarn", e));
        QX_TRY(gf_writer_set_f32(w, KEY(k, a, "rope.scaling.factor"), (float)c->rope_factor, e));
        QX_TRY(gf_writer_set_u32(w, KEY(k, a, "rope.scaling.original_context_length"), (uint32_t)c->rope_orig_max_pos, e));
        QX_TRY(cv_yarn_keys(w, a, c, e));
        if (c->has & HF_HAS_MSCALE_ALL_DIM)
            QX_TRY(gf_writer_set_f32(w, KEY(k, a, "rope.scaling.yarn_log_multiplier"), (float)(0.1 * c->rope_mscale_all_dim), e));
        if ((c->rope_beta_fast != 0 && c->rope_beta_fast != 32) || (c->rope_beta_slow != 0 && c->rope_beta_slow != 1))
            cv_warn(pl, "config.json: yarn beta_fast %g / beta_slow %g: llama.cpp assumes 32 / 1 for deepseek2 (cannot be stored)",
                    c->rope_beta_fast, c->rope_beta_slow);
        if (c->rope_mscale != c->rope_mscale_all_dim)
            cv_warn(pl, "config.json: yarn mscale %g != mscale_all_dim %g: llama.cpp assumes they are equal", c->rope_mscale,
                    c->rope_mscale_all_dim);
    } else if (c->rope_type[0]) {
        cv_warn(pl, "config.json: rope_scaling type '%s' is not written (deepseek2 supports yarn)", c->rope_type);
    }
    if (n_mtp > 0) QX_TRY(gf_writer_set_u32(w, KEY(k, a, "nextn_predict_layers"), (uint32_t)n_mtp, e));
    else if (c->v32 && c->num_nextn_predict_layers == 0)   /* DeepseekV32Model writes the config's 0 (not so after --no-mtp) */
        QX_TRY(gf_writer_set_u32(w, KEY(k, a, "nextn_predict_layers"), 0, e));
    if (c->v32) {   /* DeepseekV32Model.set_gguf_parameters: the DSA indexer */
        QX_TRY(gf_writer_set_u32(w, KEY(k, a, "attention.indexer.head_count"), (uint32_t)c->index_n_heads, e));
        QX_TRY(gf_writer_set_u32(w, KEY(k, a, "attention.indexer.key_length"), (uint32_t)c->index_head_dim, e));
        QX_TRY(gf_writer_set_u32(w, KEY(k, a, "attention.indexer.top_k"), (uint32_t)c->index_topk, e));
        /* llama.cpp's converter refuses a V3.2 tokenizer without add_bos_token; the file says true */
        QX_TRY(gf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true, e));
    }
    (void)p;
    return QX_OK;
}

static qx_status ds_block(cv_plan *pl, int64_t l, bool mtp, qx_err *e) {
    const hf_config *c = &pl->cfg;
    int64_t E = c->hidden_size, H = c->n_heads, N = c->qk_nope_head_dim, R = c->qk_rope_head_dim, Dv = c->v_head_dim;
    int64_t QL = c->q_lora_rank, KVL = c->kv_lora_rank, V = c->vocab_size;
    char g[GF_NAME_MAX + 16], h[256];
    int L = (int)l;
#define G(s) (snprintf(g, sizeof g, "blk.%d." s, L), g)
#define H_(s) (snprintf(h, sizeof h, "model.layers.%d." s, L), h)
#define NE(...) ((const int64_t[]){__VA_ARGS__})
    if (mtp) {
        QX_TRY(cv_add1(pl, G("nextn.eh_proj.weight"), H_("eh_proj.weight"), 2, NE(2 * E, E), CV_CAT_MTP, L, true, XF_ROWS, NULL, e));
        QX_TRY(cv_add1(pl, G("nextn.enorm.weight"), H_("enorm.weight"), 1, NE(E), CV_CAT_MTP, L, true, XF_ROWS, NULL, e));
        QX_TRY(cv_add1(pl, G("nextn.hnorm.weight"), H_("hnorm.weight"), 1, NE(E), CV_CAT_MTP, L, true, XF_ROWS, NULL, e));
        QX_TRY(cv_add1(pl, G("nextn.embed_tokens.weight"), H_("embed_tokens.weight"), 2, NE(E, V), CV_CAT_MTP, L, true, XF_ROWS, NULL, e));
        QX_TRY(cv_add1(pl, G("nextn.shared_head_head.weight"), H_("shared_head.head.weight"), 2, NE(E, V), CV_CAT_MTP, L, true, XF_ROWS, NULL, e));
        QX_TRY(cv_add1(pl, G("nextn.shared_head_norm.weight"), H_("shared_head.norm.weight"), 1, NE(E), CV_CAT_MTP, L, true, XF_ROWS, NULL, e));
    }
    QX_TRY(cv_add1(pl, G("attn_norm.weight"), H_("input_layernorm.weight"), 1, NE(E), CV_CAT_F32, L, mtp, XF_ROWS, NULL, e));
    if (QL > 0) {
        QX_TRY(cv_add1(pl, G("attn_q_a_norm.weight"), H_("self_attn.q_a_layernorm.weight"), 1, NE(QL), CV_CAT_F32, L, mtp, XF_ROWS, NULL, e));
        QX_TRY(cv_add1(pl, G("attn_q_a.weight"), H_("self_attn.q_a_proj.weight"), 2, NE(E, QL), CV_CAT_ATTN, L, mtp, XF_ROWS, NULL, e));
        QX_TRY(cv_add1(pl, G("attn_q_b.weight"), H_("self_attn.q_b_proj.weight"), 2, NE(QL, H * (N + R)), CV_CAT_ATTN, L, mtp, XF_ROWS, NULL, e));
    } else {
        QX_TRY(cv_add1(pl, G("attn_q.weight"), H_("self_attn.q_proj.weight"), 2, NE(E, H * (N + R)), CV_CAT_ATTN, L, mtp, XF_ROWS, NULL, e));
    }
    QX_TRY(cv_add1(pl, G("attn_kv_a_mqa.weight"), H_("self_attn.kv_a_proj_with_mqa.weight"), 2, NE(E, KVL + R), CV_CAT_ATTN, L, mtp, XF_ROWS, NULL, e));
    QX_TRY(cv_add1(pl, G("attn_kv_a_norm.weight"), H_("self_attn.kv_a_layernorm.weight"), 1, NE(KVL), CV_CAT_F32, L, mtp, XF_ROWS, NULL, e));
    const st_tensor *kvb;
    QX_TRY(cv_need(pl, H_("self_attn.kv_b_proj.weight"), 2, NE(KVL, H * (N + Dv)), &kvb, e));
    for (int part = 0; part < 2; part++) {
        cv_out *o = part == 0 ? cv_add_out(pl, G("attn_k_b.weight"), 3, NE(N, KVL, H), mtp ? CV_CAT_MTP : CV_CAT_ATTN, L, XF_KB, e)
                              : cv_add_out(pl, G("attn_v_b.weight"), 3, NE(KVL, Dv, H), mtp ? CV_CAT_MTP : CV_CAT_ATTN, L, XF_VB, e);
        if (!o) return e->code;
        o->src = malloc(sizeof *o->src);
        if (!o->src) return qx_fail(e, QX_ENOMEM, "out of memory");
        o->src[0] = kvb;
        o->n_src = 1;
        o->H = H;
        o->N = N;
        o->Dv = Dv;
        o->KVL = KVL;
    }
    QX_TRY(cv_add1(pl, G("attn_output.weight"), H_("self_attn.o_proj.weight"), 2, NE(H * Dv, E), CV_CAT_ATTN, L, mtp, XF_ROWS, NULL, e));
    if (c->v32) {   /* lightning indexer (gguf-py tensor_mapping: INDEXER_*) */
        int64_t IH = c->index_n_heads, ID = c->index_head_dim;
        QX_TRY(cv_add1(pl, G("indexer.k_norm.weight"), H_("self_attn.indexer.k_norm.weight"), 1, NE(ID), CV_CAT_F32, L, mtp, XF_ROWS, NULL, e));
        QX_TRY(cv_add1(pl, G("indexer.k_norm.bias"), H_("self_attn.indexer.k_norm.bias"), 1, NE(ID), CV_CAT_F32, L, mtp, XF_ROWS, NULL, e));
        QX_TRY(cv_add1(pl, G("indexer.proj.weight"), H_("self_attn.indexer.weights_proj.weight"), 2, NE(E, IH), CV_CAT_ATTN, L, mtp, XF_ROWS, NULL, e));
        QX_TRY(cv_add1(pl, G("indexer.attn_k.weight"), H_("self_attn.indexer.wk.weight"), 2, NE(E, ID), CV_CAT_ATTN, L, mtp, XF_ROWS, NULL, e));
        QX_TRY(cv_add1(pl, G("indexer.attn_q_b.weight"), H_("self_attn.indexer.wq_b.weight"), 2, NE(QL, IH * ID), CV_CAT_ATTN, L, mtp, XF_ROWS, NULL, e));
    }
    QX_TRY(cv_add1(pl, G("ffn_norm.weight"), H_("post_attention_layernorm.weight"), 1, NE(E), CV_CAT_F32, L, mtp, XF_ROWS, NULL, e));
    if (!hf_is_moe_layer(c, l)) {
        int64_t F = c->intermediate_size;
        QX_TRY(cv_add1(pl, G("ffn_gate.weight"), H_("mlp.gate_proj.weight"), 2, NE(E, F), CV_CAT_FFN, L, mtp, XF_ROWS, NULL, e));
        QX_TRY(cv_add1(pl, G("ffn_up.weight"), H_("mlp.up_proj.weight"), 2, NE(E, F), CV_CAT_FFN, L, mtp, XF_ROWS, NULL, e));
        QX_TRY(cv_add1(pl, G("ffn_down.weight"), H_("mlp.down_proj.weight"), 2, NE(F, E), CV_CAT_FFN, L, mtp, XF_ROWS, NULL, e));
    } else {
        int64_t X = c->n_routed_experts, Fe = c->moe_intermediate_size, Fs = Fe * c->n_shared_experts;
        QX_TRY(cv_add1(pl, G("ffn_gate_inp.weight"), H_("mlp.gate.weight"), 2, NE(E, X), CV_CAT_F32, L, mtp, XF_ROWS, NULL, e));
        if (st_find(pl->st, H_("mlp.gate.e_score_correction_bias")))
            QX_TRY(cv_add1(pl, G("exp_probs_b.bias"), h, 1, NE(X), CV_CAT_F32, L, mtp, XF_ROWS, NULL, e));
        QX_TRY(add_exps(pl, l, G("ffn_gate_exps.weight"), "gate_proj", E, Fe, X, mtp, e));
        QX_TRY(add_exps(pl, l, G("ffn_up_exps.weight"), "up_proj", E, Fe, X, mtp, e));
        QX_TRY(add_exps(pl, l, G("ffn_down_exps.weight"), "down_proj", Fe, E, X, mtp, e));
        if (Fs > 0) {
            QX_TRY(cv_add1(pl, G("ffn_gate_shexp.weight"), H_("mlp.shared_experts.gate_proj.weight"), 2, NE(E, Fs), CV_CAT_SHEXP, L, mtp, XF_ROWS, NULL, e));
            QX_TRY(cv_add1(pl, G("ffn_up_shexp.weight"), H_("mlp.shared_experts.up_proj.weight"), 2, NE(E, Fs), CV_CAT_SHEXP, L, mtp, XF_ROWS, NULL, e));
            QX_TRY(cv_add1(pl, G("ffn_down_shexp.weight"), H_("mlp.shared_experts.down_proj.weight"), 2, NE(Fs, E), CV_CAT_SHEXP, L, mtp, XF_ROWS, NULL, e));
        }
    }
#undef G
#undef H_
    return QX_OK;
}

int64_t cv_ds_mtp_layers(const hf_config *c, const cv_params *p) {
    if (c->v32) return p->no_mtp ? 0 : c->num_nextn_predict_layers;
    return p->keep_mtp ? c->num_nextn_predict_layers : 0;
}

qx_status cv_map_deepseek2(cv_plan *pl, const cv_params *p, qx_err *e) {
    const hf_config *c = &pl->cfg;
    int64_t n_mtp = 0;
    if (c->v32 && p->keep_mtp && p->no_mtp)
        return qx_fail(e, QX_EINVAL, "--keep-mtp and --no-mtp together");
    if (p->mtp_only && (p->keep_mtp || p->no_mtp))   /* exclusive in llama.cpp's converter too */
        return qx_fail(e, QX_EINVAL, "--mtp and --%s-mtp together (--mtp writes only the MTP block)", p->no_mtp ? "no" : "keep");
    if (p->mtp_only && c->num_nextn_predict_layers <= 0)
        return qx_fail(e, QX_ENOTFOUND, "%s: --mtp: the checkpoint has no MTP block (config.json num_nextn_predict_layers %lld)",
                       st_model_dir(pl->st), (long long)c->num_nextn_predict_layers);
    if (cv_ds_mtp_layers(c, p) > 0 || p->keep_mtp) {
        n_mtp = c->num_nextn_predict_layers;
        char h[128];
        snprintf(h, sizeof h, "model.layers.%lld.eh_proj.weight", (long long)c->n_layers);
        if (n_mtp <= 0 || !st_find(pl->st, h))
            return qx_fail(e, QX_ENOTFOUND, "%s: %s: the checkpoint has no MTP block (num_nextn_predict_layers %lld, no '%s')",
                           st_model_dir(pl->st), p->mtp_only ? "--mtp" : "--keep-mtp", (long long)n_mtp, h);
    }
    if (!strcmp(c->fp8_scale_fmt, "ue8m0")) {
        const char *first;
        uint64_t bad = hf_count_non_pow2_scales(pl->st, &first);
        if (bad)
            cv_warn(pl, "config.json says scale_fmt ue8m0 but %llu FP8 scale value(s) are not powers of two (first in '%s'); converted as given",
                    (unsigned long long)bad, first);
    }
    QX_TRY(ds_metadata(pl, p, n_mtp, e));
    int64_t E = c->hidden_size, V = c->vocab_size;
    QX_TRY(cv_add1(pl, "token_embd.weight", "model.embed_tokens.weight", 2, NE(E, V), CV_CAT_EMBD, -1, false, XF_ROWS, NULL, e));
    /* --mtp (V3.2): only the NextN block(s) and the shared embedding, norm and head, as
     * DeepseekV32Model.filter_tensors keeps them with mtp_only */
    for (int64_t l = p->mtp_only ? c->n_layers : 0; l < c->n_layers + n_mtp; l++) QX_TRY(ds_block(pl, l, l >= c->n_layers, e));
    QX_TRY(cv_add1(pl, "output_norm.weight", "model.norm.weight", 1, NE(E), CV_CAT_F32, -1, false, XF_ROWS, NULL, e));
    QX_TRY(cv_add1(pl, "output.weight", c->tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight", 2, NE(E, V),
                CV_CAT_OUTPUT, -1, false, XF_ROWS, NULL, e));
    return QX_OK;
}

/* llama3 rope frequency factors as llama.cpp's LlamaModel.generate_extra_tensors computes them,
 * rounding included: torch float32 throughout, Python scalars rounded to float32 where they meet
 * a tensor, and `scalar / tensor` evaluated as torch does it, reciprocal(tensor) * scalar. */
static void llama3_rope_factors(const hf_config *c, int64_t dim, float *out) {
    float base = (float)c->rope_theta;
    double factor = c->rope_factor > 0 ? c->rope_factor : 8.0;
    double lo = c->rope_low_freq_factor > 0 ? c->rope_low_freq_factor : 1.0;
    double hi = c->rope_high_freq_factor > 0 ? c->rope_high_freq_factor : 4.0;
    double old = c->rope_orig_max_pos > 0 ? c->rope_orig_max_pos : 8192;
    float lo_wl = (float)(old / lo), hi_wl = (float)(old / hi);   /* compared in float32 */
    for (int64_t i = 0; i < dim / 2; i++) {
        float freq = 1.0f / powf(base, (float)(2 * i) / (float)dim);
        float wl = (1.0f / freq) * (float)(2 * M_PI);
        if (wl < hi_wl) out[i] = 1.0f;
        else if (wl > lo_wl) out[i] = (float)factor;
        else {
            float smooth = ((1.0f / wl) * (float)old - (float)lo) / (float)(hi - lo);
            out[i] = 1.0f / ((1.0f - smooth) / (float)factor + smooth);
        }
    }
}

qx_status cv_map_dense(cv_plan *pl, const cv_params *p, qx_err *e) {
    (void)p;
    const hf_config *c = &pl->cfg;
    bool llama = c->arch == HF_ARCH_LLAMA;
    const char *a = pl->arch;
    gf_writer *w = pl->w;
    int64_t E = c->hidden_size, V = c->vocab_size, H = c->n_heads, Hkv = c->n_kv_heads, F = c->intermediate_size;
    int64_t D = c->head_dim > 0 ? c->head_dim : E / H;
    char k[128];
    QX_TRY(gf_writer_set_u32(w, KEY(k, a, "context_length"), (uint32_t)c->max_position_embeddings, e));
    QX_TRY(gf_writer_set_u32(w, KEY(k, a, "embedding_length"), (uint32_t)E, e));
    QX_TRY(gf_writer_set_u32(w, KEY(k, a, "block_count"), (uint32_t)c->n_layers, e));
    QX_TRY(gf_writer_set_u32(w, KEY(k, a, "feed_forward_length"), (uint32_t)F, e));
    QX_TRY(gf_writer_set_u32(w, KEY(k, a, "attention.head_count"), (uint32_t)H, e));
    QX_TRY(gf_writer_set_u32(w, KEY(k, a, "attention.head_count_kv"), (uint32_t)Hkv, e));
    QX_TRY(gf_writer_set_f32(w, KEY(k, a, "rope.freq_base"), (float)c->rope_theta, e));
    QX_TRY(gf_writer_set_f32(w, KEY(k, a, "attention.layer_norm_rms_epsilon"), (float)c->rms_norm_eps, e));
    /* convert_hf_to_gguf.py writes these whenever its hparams have head_dim: for llama always,
     * as transformers' LlamaConfig (4.57, the version it pins) fills head_dim in; for qwen2 only
     * when config.json sets it (Qwen2Config has no such attribute) */
    if (llama || D != E / H || (c->has & HF_HAS_HEAD_DIM)) {
        QX_TRY(gf_writer_set_u32(w, KEY(k, a, "attention.key_length"), (uint32_t)D, e));
        QX_TRY(gf_writer_set_u32(w, KEY(k, a, "attention.value_length"), (uint32_t)D, e));
    }
    if (llama) {
        QX_TRY(gf_writer_set_u32(w, KEY(k, a, "vocab_size"), (uint32_t)V, e));
        QX_TRY(gf_writer_set_u32(w, KEY(k, a, "rope.dimension_count"), (uint32_t)D, e));
    }
    bool llama3 = !strcmp(c->rope_type, "llama3");
    if (c->rope_type[0] && !llama3) {
        if (!strcmp(c->rope_type, "linear")) {
            QX_TRY(gf_writer_set_str(w, KEY(k, a, "rope.scaling.type"), "linear", e));
            QX_TRY(gf_writer_set_f32(w, KEY(k, a, "rope.scaling.factor"), (float)c->rope_factor, e));
        } else if (!strcmp(c->rope_type, "yarn")) {
            QX_TRY(gf_writer_set_str(w, KEY(k, a, "rope.scaling.type"), "yarn", e));
            QX_TRY(gf_writer_set_f32(w, KEY(k, a, "rope.scaling.factor"), (float)c->rope_factor, e));
            QX_TRY(gf_writer_set_u32(w, KEY(k, a, "rope.scaling.original_context_length"), (uint32_t)c->rope_orig_max_pos, e));
            QX_TRY(cv_yarn_keys(w, a, c, e));
        } else {
            cv_warn(pl, "config.json: rope_scaling type '%s' is not written", c->rope_type);
        }
    }
    QX_TRY(cv_add1(pl, "token_embd.weight", "model.embed_tokens.weight", 2, NE(E, V), CV_CAT_EMBD, -1, false, XF_ROWS, NULL, e));
    if (llama3) {
        cv_out *o = cv_add_out(pl, "rope_freqs.weight", 1, NE(D / 2), CV_CAT_F32, -1, XF_GEN, e);
        if (!o) return e->code;
        o->gen = malloc((size_t)(D / 2) * sizeof(float));
        if (!o->gen) return qx_fail(e, QX_ENOMEM, "out of memory");
        llama3_rope_factors(c, D, o->gen);
    }
    char g[GF_NAME_MAX + 16], h[256];
    for (int L = 0; L < (int)c->n_layers; L++) {
#define G(s) (snprintf(g, sizeof g, "blk.%d." s, L), g)
#define H_(s) (snprintf(h, sizeof h, "model.layers.%d." s, L), h)
        cv_out *o;
        QX_TRY(cv_add1(pl, G("attn_norm.weight"), H_("input_layernorm.weight"), 1, NE(E), CV_CAT_F32, L, false, XF_ROWS, NULL, e));
        QX_TRY(cv_add1(pl, G("attn_q.weight"), H_("self_attn.q_proj.weight"), 2, NE(E, H * D), CV_CAT_ATTN, L, false, llama ? XF_PERM : XF_ROWS, &o, e));
        o->perm_heads = H;
        QX_TRY(cv_add1(pl, G("attn_k.weight"), H_("self_attn.k_proj.weight"), 2, NE(E, Hkv * D), CV_CAT_ATTN, L, false, llama ? XF_PERM : XF_ROWS, &o, e));
        o->perm_heads = Hkv;
        QX_TRY(cv_add1(pl, G("attn_v.weight"), H_("self_attn.v_proj.weight"), 2, NE(E, Hkv * D), CV_CAT_ATTN, L, false, XF_ROWS, NULL, e));
        if (st_find(pl->st, H_("self_attn.q_proj.bias"))) {
            QX_TRY(cv_add1(pl, G("attn_q.bias"), h, 1, NE(H * D), CV_CAT_F32, L, false, llama ? XF_PERM : XF_ROWS, &o, e));
            o->perm_heads = H;
            QX_TRY(cv_add1(pl, G("attn_k.bias"), H_("self_attn.k_proj.bias"), 1, NE(Hkv * D), CV_CAT_F32, L, false, llama ? XF_PERM : XF_ROWS, &o, e));
            o->perm_heads = Hkv;
            QX_TRY(cv_add1(pl, G("attn_v.bias"), H_("self_attn.v_proj.bias"), 1, NE(Hkv * D), CV_CAT_F32, L, false, XF_ROWS, NULL, e));
        }
        QX_TRY(cv_add1(pl, G("attn_output.weight"), H_("self_attn.o_proj.weight"), 2, NE(H * D, E), CV_CAT_ATTN, L, false, XF_ROWS, NULL, e));
        QX_TRY(cv_add1(pl, G("ffn_norm.weight"), H_("post_attention_layernorm.weight"), 1, NE(E), CV_CAT_F32, L, false, XF_ROWS, NULL, e));
        QX_TRY(cv_add1(pl, G("ffn_gate.weight"), H_("mlp.gate_proj.weight"), 2, NE(E, F), CV_CAT_FFN, L, false, XF_ROWS, NULL, e));
        QX_TRY(cv_add1(pl, G("ffn_up.weight"), H_("mlp.up_proj.weight"), 2, NE(E, F), CV_CAT_FFN, L, false, XF_ROWS, NULL, e));
        QX_TRY(cv_add1(pl, G("ffn_down.weight"), H_("mlp.down_proj.weight"), 2, NE(F, E), CV_CAT_FFN, L, false, XF_ROWS, NULL, e));
#undef G
#undef H_
    }
    QX_TRY(cv_add1(pl, "output_norm.weight", "model.norm.weight", 1, NE(E), CV_CAT_F32, -1, false, XF_ROWS, NULL, e));
    if (!c->tie_word_embeddings)
        QX_TRY(cv_add1(pl, "output.weight", "lm_head.weight", 2, NE(E, V), CV_CAT_OUTPUT, -1, false, XF_ROWS, NULL, e));
    return QX_OK;
}
