/* convert/arch_v4.c — DeepSeek-V4 (DeepseekV4ForCausalLM) -> GGUF arch deepseek4, as llama.cpp
 * 34af94cd9ab2's converter writes it (conversion/deepseek.py DeepseekV4Model on top of
 * TextModel.set_gguf_parameters) and its loader reads it (src/models/deepseek4.cpp): the keys
 * with the same value types, DeepSeek's original names mapped to GGUF names, the FP4 routed
 * experts of each layer stacked as [E, F, X] (MXFP4 by default: bytes moved, not rounded),
 * FP8 tensors decoded, the hash-routing tables as I32.  The MTP block (mtp.*) is dropped from
 * the model file; with mtp_only (`convert --mtp`) the plan is instead the MTP-only file the
 * converter's --mtp writes (DeepseekV4Model with mtp_only: filter_tensors, generate_extra_tensors,
 * set_gguf_parameters): block_count = layers + MTP blocks, nextn_predict_layers, the MTP block
 * as blk.<layers>, its e_proj and h_proj joined into nextn.eh_proj, its own hc_head_* as
 * output_hc_*, and the shared token_embd / output_norm / output.  Shapes are ggml ne[]. */
#include "cv_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY(buf, arch, k) (snprintf(buf, sizeof buf, "%s.%s", arch, k), buf)
#define NE(...) ((const int64_t[]){__VA_ARGS__})

/* llama.cpp's ExpertGatingFuncType.SQRTSOFTPLUS (the only one its deepseek4 loader accepts). */
#define V4_GATING_SQRTSOFTPLUS 4u
/* MTP blocks an MTP-only file can hold: llama.cpp's deepseek4 graph asserts n_layer_nextn == 1,
 * and its converter maps every block's hc_head_* to the same output_hc_* names. */
#define V4_MAX_MTP_BLOCKS 1

/* TextModel.set_gguf_parameters' keys for this config (written only when config.json has the
 * field, as there), then DeepseekV4Model's own. */
static qx_status v4_metadata(cv_plan *pl, int64_t n_mtp, qx_err *e) {
    const hf_config *c = &pl->cfg;
    gf_writer *w = pl->w;
    const char *a = pl->arch;
    char k[128];
    uint32_t n_block = (uint32_t)(c->n_layers + n_mtp);   /* MTP blocks count in an MTP-only file */
    QX_TRY(gf_writer_set_u32(w, KEY(k, a, "block_count"), n_block, e));
    QX_TRY(gf_writer_set_u32(w, KEY(k, a, "context_length"), (uint32_t)c->max_position_embeddings, e));
    QX_TRY(gf_writer_set_u32(w, KEY(k, a, "embedding_length"), (uint32_t)c->hidden_size, e));
    if (c->has & HF_HAS_INTERMEDIATE) QX_TRY(gf_writer_set_u32(w, KEY(k, a, "feed_forward_length"), (uint32_t)c->intermediate_size, e));
    QX_TRY(gf_writer_set_u32(w, KEY(k, a, "attention.head_count"), (uint32_t)c->n_heads, e));
    if (c->has & HF_HAS_KV_HEADS) QX_TRY(gf_writer_set_u32(w, KEY(k, a, "attention.head_count_kv"), (uint32_t)c->n_kv_heads, e));
    if (!strcmp(c->rope_type, "yarn")) {
        QX_TRY(gf_writer_set_str(w, KEY(k, a, "rope.scaling.type"), "yarn", e));
        QX_TRY(gf_writer_set_f32(w, KEY(k, a, "rope.scaling.factor"), (float)c->rope_factor, e));
        QX_TRY(gf_writer_set_u32(w, KEY(k, a, "rope.scaling.original_context_length"), (uint32_t)c->rope_orig_max_pos, e));
        if (c->has & HF_HAS_EXT_FACTOR) QX_TRY(gf_writer_set_f32(w, KEY(k, a, "rope.scaling.yarn_ext_factor"), (float)c->rope_ext_factor, e));
        if (c->has & HF_HAS_ATTN_FACTOR) QX_TRY(gf_writer_set_f32(w, KEY(k, a, "rope.scaling.yarn_attn_factor"), (float)c->rope_attn_factor, e));
        if (c->has & HF_HAS_BETA_FAST) QX_TRY(gf_writer_set_f32(w, KEY(k, a, "rope.scaling.yarn_beta_fast"), (float)c->rope_beta_fast, e));
        if (c->has & HF_HAS_BETA_SLOW) QX_TRY(gf_writer_set_f32(w, KEY(k, a, "rope.scaling.yarn_beta_slow"), (float)c->rope_beta_slow, e));
    } else if (c->rope_type[0]) {
        cv_warn(pl, "config.json: rope_scaling type '%s' is not written (deepseek4 reads yarn)", c->rope_type);
    }
    QX_TRY(gf_writer_set_f32(w, KEY(k, a, "rope.freq_base"), (float)c->rope_theta, e));
    QX_TRY(gf_writer_set_f32(w, KEY(k, a, "attention.layer_norm_rms_epsilon"), (float)c->rms_norm_eps, e));
    QX_TRY(gf_writer_set_u32(w, KEY(k, a, "expert_count"), (uint32_t)c->n_routed_experts, e));
    QX_TRY(gf_writer_set_u32(w, KEY(k, a, "expert_used_count"), (uint32_t)c->n_experts_per_tok, e));
    if (c->has & HF_HAS_N_GROUP) QX_TRY(gf_writer_set_u32(w, KEY(k, a, "expert_group_count"), (uint32_t)c->n_group, e));
    if (c->has & HF_HAS_TOPK_GROUP) QX_TRY(gf_writer_set_u32(w, KEY(k, a, "expert_group_used_count"), (uint32_t)c->topk_group, e));
    QX_TRY(gf_writer_set_u32(w, KEY(k, a, "expert_gating_func"), V4_GATING_SQRTSOFTPLUS, e));
    QX_TRY(gf_writer_set_u32(w, KEY(k, a, "attention.key_length"), (uint32_t)c->head_dim, e));
    QX_TRY(gf_writer_set_u32(w, KEY(k, a, "attention.value_length"), (uint32_t)c->head_dim, e));

    QX_TRY(gf_writer_set_u32(w, KEY(k, a, "rope.dimension_count"), (uint32_t)c->qk_rope_head_dim, e));
    QX_TRY(gf_writer_set_u32(w, KEY(k, a, "attention.q_lora_rank"), (uint32_t)c->q_lora_rank, e));
    QX_TRY(gf_writer_set_u32(w, KEY(k, a, "attention.sliding_window"), (uint32_t)c->sliding_window, e));
    QX_TRY(gf_writer_set_u32(w, KEY(k, a, "expert_feed_forward_length"), (uint32_t)c->moe_intermediate_size, e));
    QX_TRY(gf_writer_set_u32(w, KEY(k, a, "expert_shared_count"), (uint32_t)c->n_shared_experts, e));
    QX_TRY(gf_writer_set_f32(w, KEY(k, a, "expert_weights_scale"), (float)c->routed_scaling_factor, e));
    QX_TRY(gf_writer_set_bool(w, KEY(k, a, "expert_weights_norm"), c->norm_topk_prob, e));
    float *clamp = malloc(n_block * sizeof *clamp);
    if (!clamp) return qx_fail(e, QX_ENOMEM, "out of memory");
    for (uint32_t i = 0; i < n_block; i++) clamp[i] = (float)c->swiglu_limit;   /* one per block, f32 */
    qx_status s = gf_writer_set_arr(w, KEY(k, a, "swiglu_clamp_exp"), GF_F32, clamp, n_block, e);
    if (s == QX_OK) s = gf_writer_set_arr(w, KEY(k, a, "swiglu_clamp_shexp"), GF_F32, clamp, n_block, e);
    free(clamp);
    QX_TRY(s);
    QX_TRY(gf_writer_set_u32(w, KEY(k, a, "attention.indexer.head_count"), (uint32_t)c->index_n_heads, e));
    QX_TRY(gf_writer_set_u32(w, KEY(k, a, "attention.indexer.key_length"), (uint32_t)c->index_head_dim, e));
    QX_TRY(gf_writer_set_u32(w, KEY(k, a, "attention.indexer.top_k"), (uint32_t)c->index_topk, e));
    QX_TRY(gf_writer_set_u32(w, KEY(k, a, "attention.output_group_count"), (uint32_t)c->o_groups, e));
    QX_TRY(gf_writer_set_u32(w, KEY(k, a, "attention.output_lora_rank"), (uint32_t)c->o_lora_rank, e));
    /* every entry of config.json's list (V4-Flash: 44 = 43 layers + MTP), Python ints -> i32 */
    QX_TRY(gf_writer_set_arr(w, KEY(k, a, "attention.compress_ratios"), GF_I32, c->compress_ratios, (uint64_t)c->n_compress_ratios, e));
    QX_TRY(gf_writer_set_f32(w, KEY(k, a, "attention.compress_rope_freq_base"), (float)c->compress_rope_theta, e));
    QX_TRY(gf_writer_set_u32(w, KEY(k, a, "hyper_connection.count"), (uint32_t)c->hc_mult, e));
    QX_TRY(gf_writer_set_u32(w, KEY(k, a, "hyper_connection.sinkhorn_iterations"), (uint32_t)c->hc_sinkhorn_iters, e));
    QX_TRY(gf_writer_set_f32(w, KEY(k, a, "hyper_connection.epsilon"), (float)c->hc_eps, e));
    QX_TRY(gf_writer_set_u32(w, KEY(k, a, "hash_layer_count"), (uint32_t)c->num_hash_layers, e));
    QX_TRY(gf_writer_set_u32(w, KEY(k, a, "embedding_length_out"), (uint32_t)(c->hidden_size * c->hc_mult), e));
    if (n_mtp > 0) QX_TRY(gf_writer_set_u32(w, KEY(k, a, "nextn_predict_layers"), (uint32_t)n_mtp, e));
    return QX_OK;
}

/* A stacked routed-expert tensor [in, out, X] of block L from <hp>ffn.experts.x.<proj>.weight
 * (hp: "layers.L." or "mtp.m."). */
static qx_status v4_exps(cv_plan *pl, int L, const char *hp, const char *gguf, const char *proj, int64_t in, int64_t outf, qx_err *e) {
    int64_t X = pl->cfg.n_routed_experts, ne[3] = {in, outf, X};
    const st_tensor **src = malloc((size_t)X * sizeof *src);
    if (!src) return qx_fail(e, QX_ENOMEM, "out of memory");
    char hf[256];
    for (int64_t x = 0; x < X; x++) {
        snprintf(hf, sizeof hf, "%sffn.experts.%lld.%s.weight", hp, (long long)x, proj);
        qx_status s = cv_need(pl, hf, 2, ne, &src[x], e);
        if (s != QX_OK) { free(src); return s; }
    }
    cv_out *o = cv_add_out(pl, gguf, 3, ne, CV_CAT_EXPS, L, XF_ROWS, e);
    if (!o) { free(src); return e->code; }
    o->src = src;
    o->n_src = X;
    return QX_OK;
}

/* The hash-routing table layers.L.ffn.gate.tid2eid (integers [V, K]) -> I32 [K, V]. */
static qx_status v4_tid2eid(cv_plan *pl, int L, const char *gguf, qx_err *e) {
    const hf_config *c = &pl->cfg;
    char hf[128];
    snprintf(hf, sizeof hf, "layers.%d.ffn.gate.tid2eid", L);
    const st_tensor *t = st_find(pl->st, hf);
    if (!t) return qx_fail(e, QX_ENOTFOUND, "%s: tensor '%s' missing (layer %d of %lld hash-routed layers)", st_model_dir(pl->st), hf, L,
                           (long long)c->num_hash_layers);
    if ((t->dtype != ST_I32 && t->dtype != ST_I64) || t->n_dims != 2 || t->shape[0] != c->vocab_size || t->shape[1] != c->n_experts_per_tok)
        return qx_fail(e, QX_ESHAPE, "%s: tensor '%s': %s %d-D, expected I32/I64 [%lld, %lld]", st_shard_path(pl->st, t->shard), hf,
                       st_dtype_name(t->dtype), t->n_dims, (long long)c->vocab_size, (long long)c->n_experts_per_tok);
    cv_out *o = cv_add_out(pl, gguf, 2, NE(c->n_experts_per_tok, c->vocab_size), CV_CAT_F32, L, XF_INT, e);
    if (!o) return e->code;
    if (!(o->src = malloc(sizeof *o->src))) return qx_fail(e, QX_ENOMEM, "out of memory");
    o->src[0] = t;
    o->n_src = 1;
    o->src_type = QT_I32;
    return QX_OK;
}

/* One compressor of block L: <g>_kv/_gate [E, coff*D], _ape [coff*D, ratio], _norm [D] from
 * <hp><h>.wkv/.wgate/.ape/.norm. */
static qx_status v4_compressor(cv_plan *pl, int L, const char *hp, const char *g, const char *h, int64_t D, int64_t coff, int64_t ratio,
                               qx_err *e) {
    int64_t E = pl->cfg.hidden_size;
    char gn[GF_NAME_MAX + 32], hn[256];
#define GH(gs, hs) (snprintf(gn, sizeof gn, "blk.%d.%s" gs, L, g), snprintf(hn, sizeof hn, "%s%s" hs, hp, h), gn), hn
    QX_TRY(cv_add1(pl, GH("_kv.weight", ".wkv.weight"), 2, NE(E, coff * D), CV_CAT_ATTN, L, false, XF_ROWS, NULL, e));
    QX_TRY(cv_add1(pl, GH("_gate.weight", ".wgate.weight"), 2, NE(E, coff * D), CV_CAT_ATTN, L, false, XF_ROWS, NULL, e));
    QX_TRY(cv_add1(pl, GH("_ape.weight", ".ape"), 2, NE(coff * D, ratio), CV_CAT_ATTN, L, false, XF_ROWS, NULL, e));
    QX_TRY(cv_add1(pl, GH("_norm.weight", ".norm.weight"), 1, NE(D), CV_CAT_F32, L, false, XF_ROWS, NULL, e));
#undef GH
    return QX_OK;
}

/* GGUF block L from the checkpoint's tensors under hp ("layers.L.", or "mtp.m." for an MTP block,
 * which llama.cpp's converter renames to layers.<layers + m>. before mapping). */
static qx_status v4_block(cv_plan *pl, int L, const char *hp, qx_err *e) {
    const hf_config *c = &pl->cfg;
    int64_t E = c->hidden_size, H = c->n_heads, D = c->head_dim, QL = c->q_lora_rank, OG = c->o_groups, OL = c->o_lora_rank;
    int64_t HC = c->hc_mult, MIX = (2 + HC) * HC, X = c->n_routed_experts, Fe = c->moe_intermediate_size, Fs = Fe * c->n_shared_experts;
    int64_t ratio = c->compress_ratios[L];
    char g[GF_NAME_MAX + 16], h[256];
#define G(s) (snprintf(g, sizeof g, "blk.%d." s, L), g)
#define H_(s) (snprintf(h, sizeof h, "%s" s, hp), h)
#define ADD(gs, hs, nd, ne, cat) QX_TRY(cv_add1(pl, G(gs), H_(hs), nd, ne, cat, L, false, XF_ROWS, NULL, e))
    ADD("attn_norm.weight", "attn_norm.weight", 1, NE(E), CV_CAT_F32);
    ADD("attn_sinks.weight", "attn.attn_sink", 1, NE(H), CV_CAT_F32);
    ADD("attn_q_a.weight", "attn.wq_a.weight", 2, NE(E, QL), CV_CAT_ATTN);
    ADD("attn_q_a_norm.weight", "attn.q_norm.weight", 1, NE(QL), CV_CAT_F32);
    ADD("attn_q_b.weight", "attn.wq_b.weight", 2, NE(QL, H * D), CV_CAT_ATTN);
    ADD("attn_kv.weight", "attn.wkv.weight", 2, NE(E, D), CV_CAT_ATTN);
    ADD("attn_kv_a_norm.weight", "attn.kv_norm.weight", 1, NE(D), CV_CAT_F32);
    cv_out *oa;
    QX_TRY(cv_add1(pl, G("attn_output_a.weight"), H_("attn.wo_a.weight"), 2, NE(H * D / OG, OG * OL), CV_CAT_ATTN, L, false, XF_ROWS, &oa, e));
    oa->imp_rows = OL;   /* group k's rows read the attention output of its own heads */
    ADD("attn_output_b.weight", "attn.wo_b.weight", 2, NE(OG * OL, E), CV_CAT_ATTN);
    ADD("hc_attn_fn.weight", "hc_attn_fn", 2, NE(HC * E, MIX), CV_CAT_ATTN);
    ADD("hc_attn_base.weight", "hc_attn_base", 1, NE(MIX), CV_CAT_F32);
    ADD("hc_attn_scale.weight", "hc_attn_scale", 1, NE(3), CV_CAT_F32);
    ADD("hc_ffn_fn.weight", "hc_ffn_fn", 2, NE(HC * E, MIX), CV_CAT_ATTN);
    ADD("hc_ffn_base.weight", "hc_ffn_base", 1, NE(MIX), CV_CAT_F32);
    ADD("hc_ffn_scale.weight", "hc_ffn_scale", 1, NE(3), CV_CAT_F32);
    if (ratio != 0) QX_TRY(v4_compressor(pl, L, hp, "attn_compressor", "attn.compressor", D, ratio == 4 ? 2 : 1, ratio, e));
    if (ratio == 4) {
        int64_t IH = c->index_n_heads, ID = c->index_head_dim;
        ADD("indexer.proj.weight", "attn.indexer.weights_proj.weight", 2, NE(E, IH), CV_CAT_ATTN);
        ADD("indexer.attn_q_b.weight", "attn.indexer.wq_b.weight", 2, NE(QL, IH * ID), CV_CAT_ATTN);
        QX_TRY(v4_compressor(pl, L, hp, "indexer_compressor", "attn.indexer.compressor", ID, 2, 4, e));
    }
    ADD("ffn_gate_inp.weight", "ffn.gate.weight", 2, NE(E, X), CV_CAT_F32);
    if (L < c->num_hash_layers) QX_TRY(v4_tid2eid(pl, L, G("ffn_gate_tid2eid.weight"), e));
    else ADD("exp_probs_b.bias", "ffn.gate.bias", 1, NE(X), CV_CAT_F32);
    ADD("ffn_norm.weight", "ffn_norm.weight", 1, NE(E), CV_CAT_F32);
    QX_TRY(v4_exps(pl, L, hp, G("ffn_gate_exps.weight"), "w1", E, Fe, e));
    QX_TRY(v4_exps(pl, L, hp, G("ffn_down_exps.weight"), "w2", Fe, E, e));
    QX_TRY(v4_exps(pl, L, hp, G("ffn_up_exps.weight"), "w3", E, Fe, e));
    if (Fs > 0) {
        ADD("ffn_gate_shexp.weight", "ffn.shared_experts.w1.weight", 2, NE(E, Fs), CV_CAT_SHEXP);
        ADD("ffn_down_shexp.weight", "ffn.shared_experts.w2.weight", 2, NE(Fs, E), CV_CAT_SHEXP);
        ADD("ffn_up_shexp.weight", "ffn.shared_experts.w3.weight", 2, NE(E, Fs), CV_CAT_SHEXP);
    }
#undef ADD
#undef G
#undef H_
    return QX_OK;
}

/* The MTP block's own tensors as blk.L.nextn.* (hp "mtp.m."): eh_proj [2E, E] whose row r is
 * [e_proj row r | h_proj row r] (the converter's torch.cat(dim=1)), enorm, hnorm, and its final
 * norm as shared_head_norm. */
static qx_status v4_nextn(cv_plan *pl, int L, const char *hp, qx_err *e) {
    int64_t E = pl->cfg.hidden_size;
    char g[GF_NAME_MAX + 16], h[256];
#define G(s) (snprintf(g, sizeof g, "blk.%d.nextn." s, L), g)
#define H_(s) (snprintf(h, sizeof h, "%s" s, hp), h)
    const st_tensor *eh[2];
    QX_TRY(cv_need(pl, H_("e_proj.weight"), 2, NE(E, E), &eh[0], e));
    QX_TRY(cv_need(pl, H_("h_proj.weight"), 2, NE(E, E), &eh[1], e));
    cv_out *o = cv_add_out(pl, G("eh_proj.weight"), 2, NE(2 * E, E), CV_CAT_MTP, L, XF_CAT, e);
    if (!o) return e->code;
    if (!(o->src = malloc(2 * sizeof *o->src))) return qx_fail(e, QX_ENOMEM, "out of memory");
    o->src[0] = eh[0];
    o->src[1] = eh[1];
    o->n_src = 2;
    QX_TRY(cv_add1(pl, G("enorm.weight"), H_("enorm.weight"), 1, NE(E), CV_CAT_F32, L, true, XF_ROWS, NULL, e));
    QX_TRY(cv_add1(pl, G("hnorm.weight"), H_("hnorm.weight"), 1, NE(E), CV_CAT_F32, L, true, XF_ROWS, NULL, e));
    QX_TRY(cv_add1(pl, G("shared_head_norm.weight"), H_("norm.weight"), 1, NE(E), CV_CAT_F32, L, true, XF_ROWS, NULL, e));
#undef G
#undef H_
    return QX_OK;
}

int64_t cv_v4_mtp_layers(const hf_config *c, const cv_params *p) { return p->mtp_only ? c->num_nextn_predict_layers : 0; }

/* What --mtp needs: no other MTP option, an MTP block in config.json and in the checkpoint,
 * one that llama.cpp can hold, and a compress ratio for it. */
static qx_status v4_check_mtp(cv_plan *pl, const cv_params *p, qx_err *e) {
    const hf_config *c = &pl->cfg;
    const char *dir = st_model_dir(pl->st);
    if (p->no_mtp) return qx_fail(e, QX_EINVAL, "--mtp and --no-mtp together (--mtp writes only the MTP block)");
    if (c->num_nextn_predict_layers <= 0)
        return qx_fail(e, QX_ENOTFOUND, "%s: --mtp: the checkpoint has no MTP block (config.json num_nextn_predict_layers %lld)", dir,
                       (long long)c->num_nextn_predict_layers);
    if (c->num_nextn_predict_layers > V4_MAX_MTP_BLOCKS)
        return qx_fail(e, QX_EUNSUPPORTED, "%s: --mtp: num_nextn_predict_layers %lld; llama.cpp's deepseek4 holds %d MTP block", dir,
                       (long long)c->num_nextn_predict_layers, V4_MAX_MTP_BLOCKS);
    if (c->n_compress_ratios < c->n_layers + c->num_nextn_predict_layers)
        return qx_fail(e, QX_EFORMAT, "%s: --mtp: config.json compress_ratios has %lld entries, the MTP block (layer %lld) needs its own", dir,
                       (long long)c->n_compress_ratios, (long long)c->n_layers);
    if (!st_find(pl->st, "mtp.0.e_proj.weight"))
        return qx_fail(e, QX_ENOTFOUND, "%s: --mtp: config.json has num_nextn_predict_layers %lld but the checkpoint has no 'mtp.0.e_proj.weight'",
                       dir, (long long)c->num_nextn_predict_layers);
    return QX_OK;
}

qx_status cv_map_deepseek4(cv_plan *pl, const cv_params *p, qx_err *e) {
    const hf_config *c = &pl->cfg;
    if (p->keep_mtp)
        return qx_fail(e, QX_EUNSUPPORTED, "%s: --keep-mtp: a DeepSeek-V4 model file holds no MTP block (llama.cpp writes it as a separate file: --mtp)",
                       st_model_dir(pl->st));
    if (p->mtp_only) QX_TRY(v4_check_mtp(pl, p, e));
    int64_t n_mtp = cv_v4_mtp_layers(c, p);
    /* shapes llama.cpp 34af94cd9ab2's graph cannot run (the file is still what its converter writes) */
    int64_t id = c->index_head_dim;
    if (id < 64 || (id & (id - 1)))
        cv_warn(pl, "config.json: index_head_dim %lld: llama.cpp rotates indexer keys with Hadamard matrices of 64, 128, ... and aborts on this size",
                (long long)id);
    if (c->hc_mult != 4) cv_warn(pl, "config.json: hc_mult %lld: llama.cpp's deepseek4 graph asserts hc_mult == 4", (long long)c->hc_mult);
    QX_TRY(v4_metadata(pl, n_mtp, e));
    int64_t E = c->hidden_size, V = c->vocab_size, HC = c->hc_mult;
    char hp[64], hc[80];
    QX_TRY(cv_add1(pl, "token_embd.weight", "embed.weight", 2, NE(E, V), CV_CAT_EMBD, -1, false, XF_ROWS, NULL, e));
    if (!p->mtp_only)
        for (int L = 0; L < (int)c->n_layers; L++) {
            snprintf(hp, sizeof hp, "layers.%d.", L);
            QX_TRY(v4_block(pl, L, hp, e));
        }
    for (int m = 0; m < (int)n_mtp; m++) {
        snprintf(hp, sizeof hp, "mtp.%d.", m);
        QX_TRY(v4_block(pl, (int)c->n_layers + m, hp, e));
        QX_TRY(v4_nextn(pl, (int)c->n_layers + m, hp, e));
    }
    const char *hcp = p->mtp_only ? "mtp.0." : "";   /* the MTP block's own head mixer replaces the model's */
    QX_TRY(cv_add1(pl, "output_norm.weight", "norm.weight", 1, NE(E), CV_CAT_F32, -1, false, XF_ROWS, NULL, e));
    QX_TRY(cv_add1(pl, "output_hc_fn.weight", (snprintf(hc, sizeof hc, "%shc_head_fn", hcp), hc), 2, NE(HC * E, HC), CV_CAT_OUTPUT, -1, false,
                   XF_ROWS, NULL, e));
    QX_TRY(cv_add1(pl, "output_hc_base.weight", (snprintf(hc, sizeof hc, "%shc_head_base", hcp), hc), 1, NE(HC), CV_CAT_F32, -1, false, XF_ROWS,
                   NULL, e));
    QX_TRY(cv_add1(pl, "output_hc_scale.weight", (snprintf(hc, sizeof hc, "%shc_head_scale", hcp), hc), 1, NE(1), CV_CAT_F32, -1, false,
                   XF_ROWS, NULL, e));
    QX_TRY(cv_add1(pl, "output.weight", "head.weight", 2, NE(E, V), CV_CAT_OUTPUT, -1, false, XF_ROWS, NULL, e));
    return QX_OK;
}
