/* formats/hf_config.c — HF config.json → hf_config for DeepseekV3/V2, Llama and Qwen2,
 * and validation of a config against the tensors of a checkpoint. */
#include "formats.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int64_t get_int(json_t *o, const char *k, int64_t def) {
    json_t *v = json_object_get(o, k);
    if (json_is_integer(v)) return json_integer_value(v);
    if (json_is_real(v)) {   /* a real outside int64 (or NaN) would be undefined to convert */
        double d = json_real_value(v);
        return d > -9.0e18 && d < 9.0e18 ? (int64_t)d : def;
    }
    return def;
}
static double get_num(json_t *o, const char *k, double def) {
    json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : def;
}
static bool get_bool(json_t *o, const char *k, bool def) {
    json_t *v = json_object_get(o, k);
    return json_is_boolean(v) ? json_is_true(v) : def;
}
static void get_str(json_t *o, const char *k, char *dst, size_t cap) {
    json_t *v = json_object_get(o, k);
    snprintf(dst, cap, "%s", json_is_string(v) ? json_string_value(v) : "");
}

static bool has_key(json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    return v && !json_is_null(v);
}

static qx_status need_pos(const char *label, const char *key, int64_t v, qx_err *e) {
    if (v <= 0) return qx_fail(e, QX_EFORMAT, "%s: \"%s\" missing or not positive", label, key);
    return QX_OK;
}

/* quantization_config of compressed-tensors: only one group of symmetric INT4 `pack-quantized`
 * weights with a group strategy (Kimi-K2-Thinking / K2.5 routed experts). */
static qx_status parse_compressed(json_t *qc, const char *label, hf_config *c, qx_err *e) {
    char fmt[32];
    get_str(qc, "format", fmt, sizeof fmt);
    if (strcmp(fmt, "pack-quantized"))
        return qx_fail(e, QX_EUNSUPPORTED, "%s: compressed-tensors format '%s' (supported: pack-quantized)", label, fmt);
    json_t *groups = json_object_get(qc, "config_groups");
    if (!json_is_object(groups) || json_object_size(groups) != 1)
        return qx_fail(e, QX_EUNSUPPORTED, "%s: compressed-tensors needs exactly one config group", label);
    json_t *w = json_object_get(json_object_iter_value(json_object_iter(groups)), "weights");
    if (!json_is_object(w)) return qx_fail(e, QX_EFORMAT, "%s: compressed-tensors config group without \"weights\"", label);
    char type[16], strategy[16];
    get_str(w, "type", type, sizeof type);
    get_str(w, "strategy", strategy, sizeof strategy);
    int64_t bits = get_int(w, "num_bits", 0), group = get_int(w, "group_size", 0);
    if (bits != 4 || (type[0] && strcmp(type, "int")) || strcmp(strategy, "group") || !get_bool(w, "symmetric", true))
        return qx_fail(e, QX_EUNSUPPORTED, "%s: compressed-tensors weights %lld-bit %s %s%s (supported: symmetric 4-bit int, group strategy)",
                       label, (long long)bits, type[0] ? type : "int", strategy, get_bool(w, "symmetric", true) ? "" : " asymmetric");
    if (group <= 0 || group % 8 || group > (1 << 20))
        return qx_fail(e, QX_EFORMAT, "%s: compressed-tensors group_size %lld (a positive multiple of 8)", label, (long long)group);
    c->int4 = true;
    c->int4_group = group;
    return QX_OK;
}

/* DeepSeek-V4's own keys (DeepseekV4Model.set_gguf_parameters reads every one of them). */
static qx_status parse_v4(json_t *r, const char *label, hf_config *c, qx_err *e) {
    c->sliding_window = get_int(r, "sliding_window", 0);
    c->o_groups = get_int(r, "o_groups", 0);
    c->o_lora_rank = get_int(r, "o_lora_rank", 0);
    c->hc_mult = get_int(r, "hc_mult", 0);
    c->hc_sinkhorn_iters = get_int(r, "hc_sinkhorn_iters", 0);
    c->num_hash_layers = get_int(r, "num_hash_layers", -1);
    c->hc_eps = get_num(r, "hc_eps", -1);
    c->compress_rope_theta = get_num(r, "compress_rope_theta", -1);
    c->swiglu_limit = get_num(r, "swiglu_limit", -1);
    json_t *cr = json_object_get(r, "compress_ratios");
    if (!json_is_array(cr)) return qx_fail(e, QX_EFORMAT, "%s: \"compress_ratios\" missing or not an array", label);
    if (json_array_size(cr) > HF_V4_MAX_RATIOS)
        return qx_fail(e, QX_EFORMAT, "%s: compress_ratios has %zu entries (at most %d)", label, json_array_size(cr), HF_V4_MAX_RATIOS);
    c->n_compress_ratios = (int64_t)json_array_size(cr);
    for (size_t i = 0; i < json_array_size(cr); i++) {
        json_t *v = json_array_get(cr, i);
        json_int_t x = json_is_integer(v) ? json_integer_value(v) : -1;
        if (x != 0 && x != 4 && x != 128)
            return qx_fail(e, QX_EUNSUPPORTED, "%s: compress_ratios[%zu] is not 0, 4 or 128 (the ratios llama.cpp's deepseek4 supports)", label, i);
        c->compress_ratios[i] = (int32_t)x;
    }
    return QX_OK;
}

/* Checks a parsed DeepSeek-V4 config (what llama.cpp's converter and loader require). */
static qx_status check_v4(const char *label, const hf_config *c, qx_err *e) {
    static const char *const keys[] = {"head_dim", "q_lora_rank", "qk_rope_head_dim", "o_groups", "o_lora_rank", "hc_mult",
                                       "hc_sinkhorn_iters", "sliding_window", "n_routed_experts", "moe_intermediate_size",
                                       "num_experts_per_tok", "index_n_heads", "index_head_dim", "index_topk", "max_position_embeddings"};
    const int64_t vals[] = {c->head_dim, c->q_lora_rank, c->qk_rope_head_dim, c->o_groups, c->o_lora_rank, c->hc_mult,
                            c->hc_sinkhorn_iters, c->sliding_window, c->n_routed_experts, c->moe_intermediate_size,
                            c->n_experts_per_tok, c->index_n_heads, c->index_head_dim, c->index_topk, c->max_position_embeddings};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) QX_TRY(need_pos(label, keys[i], vals[i], e));
    if (c->num_hash_layers < 0 || c->num_hash_layers > c->n_layers)
        return qx_fail(e, QX_EFORMAT, "%s: num_hash_layers %lld missing or not in [0, num_hidden_layers]", label, (long long)c->num_hash_layers);
    if (!(c->hc_eps > 0) || !(c->compress_rope_theta > 0) || !(c->swiglu_limit >= 0) || !isfinite(c->swiglu_limit))
        return qx_fail(e, QX_EFORMAT, "%s: hc_eps, compress_rope_theta or swiglu_limit missing or out of range", label);
    if (c->n_compress_ratios < c->n_layers)
        return qx_fail(e, QX_EFORMAT, "%s: compress_ratios has %lld entries for %lld layers", label, (long long)c->n_compress_ratios,
                       (long long)c->n_layers);
    if ((c->n_heads * c->head_dim) % c->o_groups || c->head_dim <= c->qk_rope_head_dim || c->n_experts_per_tok > c->n_routed_experts)
        return qx_fail(e, QX_EFORMAT, "%s: o_groups %lld does not divide heads x head_dim, head_dim %lld <= qk_rope_head_dim, or num_experts_per_tok > n_routed_experts",
                       label, (long long)c->o_groups, (long long)c->head_dim);
    if (c->hidden_size % 32 || c->moe_intermediate_size % 32)
        return qx_fail(e, QX_EFORMAT, "%s: hidden_size %lld and moe_intermediate_size %lld must be multiples of 32 (FP4 groups)", label,
                       (long long)c->hidden_size, (long long)c->moe_intermediate_size);
    if (strcmp(c->scoring_func, "sqrtsoftplus"))
        return qx_fail(e, QX_EUNSUPPORTED, "%s: scoring_func '%s' (llama.cpp's deepseek4 loader needs sqrtsoftplus)", label, c->scoring_func);
    if (c->fp8 && (c->fp8_block[0] != 128 || c->fp8_block[1] != 128))
        return qx_fail(e, QX_EUNSUPPORTED, "%s: fp8 weight_block_size [%lld, %lld] (only [128, 128] is supported)", label,
                       (long long)c->fp8_block[0], (long long)c->fp8_block[1]);
    return QX_OK;
}

qx_status hf_config_parse(const char *json, size_t len, const char *label, hf_config *c, qx_err *e) {
    memset(c, 0, sizeof *c);
    json_error_t je;
    json_t *r = json_loadb(json, len, 0, &je);
    if (!r) return qx_fail(e, QX_EFORMAT, "%s: not valid JSON: %s (line %d)", label, je.text, je.line);
    if (!json_is_object(r)) { json_decref(r); return qx_fail(e, QX_EFORMAT, "%s: not a JSON object", label); }
    json_t *tc = json_object_get(r, "text_config");
    if (tc && !json_is_object(tc)) { json_decref(r); return qx_fail(e, QX_EFORMAT, "%s: \"text_config\" is not an object", label); }
    json_t *ar = json_object_get(r, "architectures");
    const char *a = json_is_array(ar) && json_is_string(json_array_get(ar, 0)) ? json_string_value(json_array_get(ar, 0)) : "";
    if (tc) {
        /* a multimodal wrapper (Kimi-K2.5): as llama.cpp's converter, the text_config keys are
         * merged over the top level, and text_config.architectures, when present, names the
         * text model; vision_config is only noted */
        snprintf(c->wrapper_arch, sizeof c->wrapper_arch, "%s", a);
        c->has_vision = json_is_object(json_object_get(r, "vision_config"));
        json_t *m = json_copy(r);
        if (!m || json_object_update(m, tc) != 0) { json_decref(m); json_decref(r); return qx_fail(e, QX_ENOMEM, "%s: out of memory", label); }
        json_decref(r);
        r = m;
        json_t *ta = json_object_get(tc, "architectures");
        if (json_is_array(ta) && json_is_string(json_array_get(ta, 0))) a = json_string_value(json_array_get(ta, 0));
        else a = c->wrapper_arch;
    }
    snprintf(c->architecture, sizeof c->architecture, "%s", a);
    if (!strcmp(a, "DeepseekV3ForCausalLM") || !strcmp(a, "KimiK25ForConditionalGeneration")) c->arch = HF_ARCH_DEEPSEEK_V3;
    else if (!strcmp(a, "DeepseekV32ForCausalLM")) { c->arch = HF_ARCH_DEEPSEEK_V3; c->v32 = true; }
    else if (!strcmp(a, "DeepseekV2ForCausalLM")) c->arch = HF_ARCH_DEEPSEEK_V2;
    else if (!strcmp(a, "DeepseekV4ForCausalLM")) c->arch = HF_ARCH_DEEPSEEK_V4;
    else if (!strcmp(a, "LlamaForCausalLM")) c->arch = HF_ARCH_LLAMA;
    else if (!strcmp(a, "Qwen2ForCausalLM")) c->arch = HF_ARCH_QWEN2;
    else c->arch = HF_ARCH_UNKNOWN;
    get_str(r, "model_type", c->model_type, sizeof c->model_type);
    get_str(r, "torch_dtype", c->torch_dtype, sizeof c->torch_dtype);
    c->vocab_size = get_int(r, "vocab_size", 0);
    c->hidden_size = get_int(r, "hidden_size", 0);
    c->intermediate_size = get_int(r, "intermediate_size", 0);
    c->n_layers = get_int(r, "num_hidden_layers", 0);
    c->n_heads = get_int(r, "num_attention_heads", 0);
    c->n_kv_heads = get_int(r, "num_key_value_heads", c->n_heads);
    c->head_dim = get_int(r, "head_dim", c->n_heads > 0 ? c->hidden_size / c->n_heads : 0);
    c->max_position_embeddings = get_int(r, "max_position_embeddings", 0);
    c->rms_norm_eps = get_num(r, "rms_norm_eps", 1e-6);
    c->rope_theta = get_num(r, "rope_theta", 10000.0);
    c->tie_word_embeddings = get_bool(r, "tie_word_embeddings", false);
    c->bos_token_id = get_int(r, "bos_token_id", -1);
    c->eos_token_id = get_int(r, "eos_token_id", -1);
    c->attention_bias = c->arch == HF_ARCH_QWEN2 ? true : get_bool(r, "attention_bias", false);

    c->q_lora_rank = get_int(r, "q_lora_rank", 0);
    c->kv_lora_rank = get_int(r, "kv_lora_rank", 0);
    c->qk_nope_head_dim = get_int(r, "qk_nope_head_dim", 0);
    c->qk_rope_head_dim = get_int(r, "qk_rope_head_dim", 0);
    c->v_head_dim = get_int(r, "v_head_dim", 0);
    c->moe_intermediate_size = get_int(r, "moe_intermediate_size", 0);
    c->n_routed_experts = get_int(r, "n_routed_experts", 0);
    c->n_shared_experts = get_int(r, "n_shared_experts", 0);
    c->n_experts_per_tok = get_int(r, "num_experts_per_tok", 0);
    c->n_group = get_int(r, "n_group", 1);
    c->topk_group = get_int(r, "topk_group", 1);
    c->first_k_dense_replace = get_int(r, "first_k_dense_replace", 0);
    c->moe_layer_freq = get_int(r, "moe_layer_freq", 1);
    c->num_nextn_predict_layers = get_int(r, "num_nextn_predict_layers", 0);
    c->index_n_heads = get_int(r, "index_n_heads", 0);
    c->index_head_dim = get_int(r, "index_head_dim", 0);
    c->index_topk = get_int(r, "index_topk", 0);
    c->routed_scaling_factor = get_num(r, "routed_scaling_factor", 1.0);
    c->norm_topk_prob = get_bool(r, "norm_topk_prob", false);
    get_str(r, "scoring_func", c->scoring_func, sizeof c->scoring_func);
    if (!c->scoring_func[0]) snprintf(c->scoring_func, sizeof c->scoring_func, "softmax");
    get_str(r, "topk_method", c->topk_method, sizeof c->topk_method);

    if (has_key(r, "head_dim")) c->has |= HF_HAS_HEAD_DIM;
    if (has_key(r, "intermediate_size")) c->has |= HF_HAS_INTERMEDIATE;
    if (has_key(r, "num_key_value_heads")) c->has |= HF_HAS_KV_HEADS;
    if (c->arch == HF_ARCH_DEEPSEEK_V4) {
        qx_status st = parse_v4(r, label, c, e);
        if (st != QX_OK) { json_decref(r); return st; }
    }
    if (has_key(r, "n_group")) c->has |= HF_HAS_N_GROUP;
    if (has_key(r, "topk_group")) c->has |= HF_HAS_TOPK_GROUP;
    if (has_key(r, "scoring_func")) c->has |= HF_HAS_SCORING_FUNC;
    if (has_key(r, "routed_scaling_factor")) c->has |= HF_HAS_ROUTED_SCALE;

    /* transformers >= 4.56 writes rope_parameters (rope_theta inside) instead of rope_scaling */
    json_t *rs = json_object_get(r, "rope_scaling");
    if (!json_is_object(rs)) rs = json_object_get(r, "rope_parameters");
    if (json_is_object(rs) && !has_key(r, "rope_theta")) c->rope_theta = get_num(rs, "rope_theta", c->rope_theta);
    if (json_is_object(rs)) {
        get_str(rs, "type", c->rope_type, sizeof c->rope_type);
        if (!c->rope_type[0]) get_str(rs, "rope_type", c->rope_type, sizeof c->rope_type);
        if (!strcmp(c->rope_type, "default")) c->rope_type[0] = 0;
        c->rope_factor = get_num(rs, "factor", 1.0);
        c->rope_orig_max_pos = get_num(rs, "original_max_position_embeddings", 0);
        c->rope_beta_fast = get_num(rs, "beta_fast", 32);
        c->rope_beta_slow = get_num(rs, "beta_slow", 1);
        c->rope_mscale = get_num(rs, "mscale", 1);
        c->rope_mscale_all_dim = get_num(rs, "mscale_all_dim", 0);
        c->rope_low_freq_factor = get_num(rs, "low_freq_factor", 1);
        c->rope_high_freq_factor = get_num(rs, "high_freq_factor", 4);
        c->rope_ext_factor = get_num(rs, "extrapolation_factor", 0);
        c->rope_attn_factor = get_num(rs, "attention_factor", get_num(rs, "attn_factor", 0));
        if (has_key(rs, "beta_fast")) c->has |= HF_HAS_BETA_FAST;
        if (has_key(rs, "beta_slow")) c->has |= HF_HAS_BETA_SLOW;
        if (has_key(rs, "extrapolation_factor")) c->has |= HF_HAS_EXT_FACTOR;
        if (has_key(rs, "attention_factor") || has_key(rs, "attn_factor")) c->has |= HF_HAS_ATTN_FACTOR;
        if (has_key(rs, "mscale_all_dim")) c->has |= HF_HAS_MSCALE_ALL_DIM;
    }
    json_t *qc = json_object_get(r, "quantization_config");
    if (json_is_object(qc)) {
        char qm[32];
        get_str(qc, "quant_method", qm, sizeof qm);
        c->fp8 = !strcmp(qm, "fp8");
        get_str(qc, "fmt", c->fp8_fmt, sizeof c->fp8_fmt);
        json_t *bs = json_object_get(qc, "weight_block_size");
        c->fp8_block[0] = json_is_array(bs) ? json_integer_value(json_array_get(bs, 0)) : 0;
        c->fp8_block[1] = json_is_array(bs) ? json_integer_value(json_array_get(bs, 1)) : 0;
        get_str(qc, "scale_fmt", c->fp8_scale_fmt, sizeof c->fp8_scale_fmt);
        if (!strcmp(qm, "compressed-tensors")) {
            qx_status st = parse_compressed(qc, label, c, e);
            if (st != QX_OK) { json_decref(r); return st; }
        } else if (qm[0] && !c->fp8) {
            json_decref(r);
            return qx_fail(e, QX_EUNSUPPORTED, "%s: quantization_config.quant_method '%s' (supported: fp8, compressed-tensors pack-quantized INT4)", label, qm);
        }
    }
    json_decref(r);

    if (c->arch == HF_ARCH_UNKNOWN)
        return qx_fail(e, QX_EUNSUPPORTED, "%s: unsupported architecture '%s' (supported: DeepseekV3ForCausalLM, DeepseekV32ForCausalLM, DeepseekV4ForCausalLM, DeepseekV2ForCausalLM, LlamaForCausalLM, Qwen2ForCausalLM)", label, c->architecture[0] ? c->architecture : "(none)");
    QX_TRY(need_pos(label, "vocab_size", c->vocab_size, e));
    QX_TRY(need_pos(label, "hidden_size", c->hidden_size, e));
    QX_TRY(need_pos(label, "num_hidden_layers", c->n_layers, e));
    QX_TRY(need_pos(label, "num_attention_heads", c->n_heads, e));
    if (c->arch == HF_ARCH_DEEPSEEK_V4) return check_v4(label, c, e);   /* no dense FFN: intermediate_size optional */
    QX_TRY(need_pos(label, "intermediate_size", c->intermediate_size, e));
    if (c->n_kv_heads <= 0 || c->n_heads % c->n_kv_heads)
        return qx_fail(e, QX_EFORMAT, "%s: num_key_value_heads %lld does not divide num_attention_heads %lld", label, (long long)c->n_kv_heads, (long long)c->n_heads);
    if (c->arch == HF_ARCH_DEEPSEEK_V3 || c->arch == HF_ARCH_DEEPSEEK_V2) {
        QX_TRY(need_pos(label, "kv_lora_rank", c->kv_lora_rank, e));
        QX_TRY(need_pos(label, "qk_nope_head_dim", c->qk_nope_head_dim, e));
        QX_TRY(need_pos(label, "qk_rope_head_dim", c->qk_rope_head_dim, e));
        QX_TRY(need_pos(label, "v_head_dim", c->v_head_dim, e));
        if (c->n_routed_experts > 0) {
            QX_TRY(need_pos(label, "moe_intermediate_size", c->moe_intermediate_size, e));
            QX_TRY(need_pos(label, "num_experts_per_tok", c->n_experts_per_tok, e));
            if (c->n_group <= 0 || c->n_routed_experts % c->n_group)
                return qx_fail(e, QX_EFORMAT, "%s: n_group %lld does not divide n_routed_experts %lld", label, (long long)c->n_group, (long long)c->n_routed_experts);
            if (c->topk_group <= 0 || c->topk_group > c->n_group)
                return qx_fail(e, QX_EFORMAT, "%s: topk_group %lld not in [1, n_group=%lld]", label, (long long)c->topk_group, (long long)c->n_group);
            if (c->n_experts_per_tok > c->n_routed_experts)
                return qx_fail(e, QX_EFORMAT, "%s: num_experts_per_tok %lld > n_routed_experts %lld", label, (long long)c->n_experts_per_tok, (long long)c->n_routed_experts);
        }
        if (c->v32) {   /* the lightning indexer: llama.cpp reads all three keys unconditionally */
            QX_TRY(need_pos(label, "index_n_heads", c->index_n_heads, e));
            QX_TRY(need_pos(label, "index_head_dim", c->index_head_dim, e));
            QX_TRY(need_pos(label, "index_topk", c->index_topk, e));
            if (c->index_head_dim < c->qk_rope_head_dim || c->q_lora_rank <= 0)
                return qx_fail(e, QX_EFORMAT, "%s: index_head_dim %lld below qk_rope_head_dim %lld, or no q_lora_rank", label,
                               (long long)c->index_head_dim, (long long)c->qk_rope_head_dim);
        }
        if (c->fp8 && (c->fp8_block[0] != 128 || c->fp8_block[1] != 128))
            return qx_fail(e, QX_EUNSUPPORTED, "%s: fp8 weight_block_size [%lld, %lld] (only [128, 128] is supported)", label, (long long)c->fp8_block[0], (long long)c->fp8_block[1]);
        if (c->fp8 && c->fp8_fmt[0] && strcmp(c->fp8_fmt, "e4m3"))
            return qx_fail(e, QX_EUNSUPPORTED, "%s: fp8 fmt '%s' (only e4m3 is supported)", label, c->fp8_fmt);
        /* V3.1 / R1-0528: the scales stay F32 tensors, rounded to powers of two */
        if (c->fp8 && c->fp8_scale_fmt[0] && strcmp(c->fp8_scale_fmt, "ue8m0"))
            return qx_fail(e, QX_EUNSUPPORTED, "%s: fp8 scale_fmt '%s' (supported: ue8m0, or none)", label, c->fp8_scale_fmt);
    } else if (c->hidden_size % c->n_heads) {
        return qx_fail(e, QX_EFORMAT, "%s: hidden_size %lld not divisible by num_attention_heads %lld", label, (long long)c->hidden_size, (long long)c->n_heads);
    }
    return QX_OK;
}

qx_status hf_config_load(const char *dir, hf_config *cfg, qx_err *e) {
    char path[4096];
    if (!qx_path_join(path, sizeof path, dir, "config.json")) return qx_fail(e, QX_EINVAL, "%s: path too long", dir);
    char *text;
    size_t len;
    qx_status s = qx_read_file(path, &text, &len, e);
    if (s == QX_ENOTFOUND) return qx_fail(e, QX_ENOTFOUND, "%s: missing config.json", dir);
    if (s != QX_OK) return s;
    s = hf_config_parse(text, len, path, cfg, e);
    free(text);
    return s;
}

/* generation_config.json key, GGUF key, GGUF type (GF_I32, GF_F32 or GF_STRING). */
static const struct { const char *json, *gguf; gf_type type; } sampling_keys[] = {
    {"sequence", "general.sampling.sequence", GF_STRING},
    {"top_k", "general.sampling.top_k", GF_I32},
    {"top_p", "general.sampling.top_p", GF_F32},
    {"min_p", "general.sampling.min_p", GF_F32},
    {"xtc_probability", "general.sampling.xtc_probability", GF_F32},
    {"xtc_threshold", "general.sampling.xtc_threshold", GF_F32},
    {"temperature", "general.sampling.temp", GF_F32},
    {"penalty_last_n", "general.sampling.penalty_last_n", GF_I32},
    {"penalty_repeat", "general.sampling.penalty_repeat", GF_F32},
    {"mirostat", "general.sampling.mirostat", GF_I32},
    {"mirostat_tau", "general.sampling.mirostat_tau", GF_F32},
    {"mirostat_eta", "general.sampling.mirostat_eta", GF_F32},
};

qx_status hf_sampling_parse(const char *json, size_t len, gf_writer *w, qx_err *e) {
    json_t *root = json_loadb(json, len, 0, NULL);
    qx_status s = QX_OK;
    for (size_t i = 0; json_is_object(root) && s == QX_OK && i < sizeof sampling_keys / sizeof *sampling_keys; i++) {
        json_t *v = json_object_get(root, sampling_keys[i].json);
        const char *k = sampling_keys[i].gguf;
        if (sampling_keys[i].type == GF_STRING && json_is_string(v)) s = gf_writer_set_str(w, k, json_string_value(v), e);
        else if (sampling_keys[i].type == GF_F32 && json_is_number(v)) s = gf_writer_set_f32(w, k, (float)json_number_value(v), e);
        else if (sampling_keys[i].type == GF_I32 && json_is_integer(v) && json_integer_value(v) >= INT32_MIN &&
                 json_integer_value(v) <= INT32_MAX)
            s = gf_writer_set_i32(w, k, (int32_t)json_integer_value(v), e);
    }
    json_decref(root);
    return s;
}

qx_status hf_sampling_load(const char *dir, gf_writer *w, qx_err *e) {
    char path[4096];
    if (!qx_path_join(path, sizeof path, dir, "generation_config.json")) return qx_fail(e, QX_EINVAL, "%s: path too long", dir);
    char *text;
    size_t len;
    qx_err ignored;
    if (qx_read_file(path, &text, &len, &ignored) != QX_OK) return QX_OK;   /* optional, as for llama.cpp */
    qx_status s = hf_sampling_parse(text, len, w, e);
    free(text);
    return s;
}

const char *hf_variant(const hf_config *c) {
    if (c->arch == HF_ARCH_DEEPSEEK_V4) return "DeepSeek-V4 (hyper-connections, compressed sparse attention, FP4 routed experts)";
    if (c->arch != HF_ARCH_DEEPSEEK_V3) return "";
    if (c->v32) return "DeepSeek-V3.2 (lightning indexer, sparse attention)";
    bool kimi = !strcmp(c->model_type, "kimi_k2") || (c->n_routed_experts == 384 && c->vocab_size == 163840);
    if (!strcmp(c->wrapper_arch, "KimiK25ForConditionalGeneration"))
        return "Kimi-K2.5 (text model under language_model.; vision tower and projector not converted)";
    if (kimi) return c->int4 ? "Kimi-K2-Thinking (INT4 routed experts)" : "Kimi-K2";
    if (!strcmp(c->fp8_scale_fmt, "ue8m0")) return "DeepSeek-V3.1 / R1-0528 (ue8m0 scales)";
    return c->fp8 ? "DeepSeek-V3 / R1" : "";
}

uint64_t hf_count_non_pow2_scales(const st_model *m, const char **first) {
    uint64_t bad = 0;
    *first = NULL;
    for (size_t i = 0; i < st_count(m); i++) {
        const st_tensor *t = st_at(m, i);
        if ((t->dtype != ST_F8_E4M3 && t->dtype != ST_F8_E5M2) || !t->scale_inv || !t->scale_inv->data ||
            t->scale_inv->dtype != ST_F32)   /* E8M0 grids (V4) are powers of two by construction */
            continue;
        const st_tensor *s = t->scale_inv;
        uint64_t nb = 0;
        for (uint64_t k = 0; k < s->n_elems; k++) {
            uint32_t u;
            memcpy(&u, s->data + 4 * k, 4);
            uint32_t ex = (u >> 23) & 0xffu;
            nb += (u >> 31) || ex == 0 || ex == 0xffu || (u & 0x7fffffu);   /* normal, positive, zero mantissa */
        }
        if (nb && !*first) *first = s->name;
        bad += nb;
    }
    return bad;
}

bool hf_is_moe_layer(const hf_config *c, int64_t layer) {
    if (c->n_routed_experts <= 0) return false;
    if (layer < c->first_k_dense_replace) return false;
    return c->moe_layer_freq <= 1 || layer % c->moe_layer_freq == 0;
}

/* Checks one expected tensor: present, float dtype, and (if dims > 0) the torch shape. */
static qx_status expect(const st_model *m, const char *name, int nd, int64_t d0, int64_t d1, bool fp8_ok, qx_err *e) {
    const st_tensor *t = st_find(m, name);
    if (!t) return qx_fail(e, QX_ENOTFOUND, "%s: tensor '%s' missing from the checkpoint", st_model_dir(m), name);
    qt_type q;
    bool packed = t->dtype == ST_I4_PACKED || t->dtype == ST_FP4_PACKED;
    if (!st_dtype_to_qt(t->dtype, &q) && !packed)
        return qx_fail(e, QX_ESHAPE, "%s: tensor '%s': dtype %s is not a float type", st_shard_path(m, t->shard), name, st_dtype_name(t->dtype));
    bool fp8 = t->dtype == ST_F8_E4M3 || t->dtype == ST_F8_E5M2 || packed;
    if (fp8 && !fp8_ok)
        return qx_fail(e, QX_ESHAPE, "%s: tensor '%s': unexpected dtype %s", st_shard_path(m, t->shard), name, st_dtype_name(t->dtype));
    if (fp8 && !packed && !t->scale_inv)
        return qx_fail(e, QX_ENOTFOUND, "%s: tensor '%s' is %s but '%s_scale_inv' is missing", st_shard_path(m, t->shard), name, st_dtype_name(t->dtype), name);
    bool ok = t->n_dims == nd && (nd < 1 || t->shape[0] == d0) && (nd < 2 || t->shape[1] == d1);
    if (!ok) {
        char got[96] = "", want[64];
        int k = 0;
        for (int i = 0; i < t->n_dims && k < 80; i++) k += snprintf(got + k, sizeof got - (size_t)k, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        if (nd == 1) snprintf(want, sizeof want, "%lld", (long long)d0);
        else snprintf(want, sizeof want, "%lld, %lld", (long long)d0, (long long)d1);
        return qx_fail(e, QX_ESHAPE, "%s: tensor '%s': shape [%s], config.json implies [%s]", st_shard_path(m, t->shard), name, got, want);
    }
    return QX_OK;
}

static qx_status validate_deepseek(const hf_config *c, const st_model *m, qx_err *e) {
    char n[256];
    int64_t E = c->hidden_size, H = c->n_heads, R = c->qk_rope_head_dim, N = c->qk_nope_head_dim, Dv = c->v_head_dim;
    QX_TRY(expect(m, "model.embed_tokens.weight", 2, c->vocab_size, E, false, e));
    QX_TRY(expect(m, "model.norm.weight", 1, E, 0, false, e));
    if (!c->tie_word_embeddings) QX_TRY(expect(m, "lm_head.weight", 2, c->vocab_size, E, false, e));
    for (int64_t l = 0; l < c->n_layers; l++) {
#define P(fmt, ...) (snprintf(n, sizeof n, "model.layers.%lld." fmt, (long long)l, ##__VA_ARGS__), n)
        QX_TRY(expect(m, P("input_layernorm.weight"), 1, E, 0, false, e));
        QX_TRY(expect(m, P("post_attention_layernorm.weight"), 1, E, 0, false, e));
        if (c->q_lora_rank > 0) {
            QX_TRY(expect(m, P("self_attn.q_a_proj.weight"), 2, c->q_lora_rank, E, true, e));
            QX_TRY(expect(m, P("self_attn.q_a_layernorm.weight"), 1, c->q_lora_rank, 0, false, e));
            QX_TRY(expect(m, P("self_attn.q_b_proj.weight"), 2, H * (N + R), c->q_lora_rank, true, e));
        } else {
            QX_TRY(expect(m, P("self_attn.q_proj.weight"), 2, H * (N + R), E, true, e));
        }
        QX_TRY(expect(m, P("self_attn.kv_a_proj_with_mqa.weight"), 2, c->kv_lora_rank + R, E, true, e));
        QX_TRY(expect(m, P("self_attn.kv_a_layernorm.weight"), 1, c->kv_lora_rank, 0, false, e));
        QX_TRY(expect(m, P("self_attn.kv_b_proj.weight"), 2, H * (N + Dv), c->kv_lora_rank, true, e));
        QX_TRY(expect(m, P("self_attn.o_proj.weight"), 2, E, H * Dv, true, e));
        if (c->v32) {   /* the lightning indexer of V3.2 */
            int64_t IH = c->index_n_heads, ID = c->index_head_dim;
            QX_TRY(expect(m, P("self_attn.indexer.wq_b.weight"), 2, IH * ID, c->q_lora_rank, true, e));
            QX_TRY(expect(m, P("self_attn.indexer.wk.weight"), 2, ID, E, true, e));
            QX_TRY(expect(m, P("self_attn.indexer.k_norm.weight"), 1, ID, 0, false, e));
            QX_TRY(expect(m, P("self_attn.indexer.k_norm.bias"), 1, ID, 0, false, e));
            QX_TRY(expect(m, P("self_attn.indexer.weights_proj.weight"), 2, IH, E, false, e));
        }
        if (!hf_is_moe_layer(c, l)) {
            QX_TRY(expect(m, P("mlp.gate_proj.weight"), 2, c->intermediate_size, E, true, e));
            QX_TRY(expect(m, P("mlp.up_proj.weight"), 2, c->intermediate_size, E, true, e));
            QX_TRY(expect(m, P("mlp.down_proj.weight"), 2, E, c->intermediate_size, true, e));
            continue;
        }
        int64_t X = c->n_routed_experts, Fe = c->moe_intermediate_size;
        QX_TRY(expect(m, P("mlp.gate.weight"), 2, X, E, false, e));
        if (c->arch == HF_ARCH_DEEPSEEK_V3 || !strcmp(c->topk_method, "noaux_tc"))
            QX_TRY(expect(m, P("mlp.gate.e_score_correction_bias"), 1, X, 0, false, e));
        for (int64_t x = 0; x < X; x++) {
            QX_TRY(expect(m, P("mlp.experts.%lld.gate_proj.weight", (long long)x), 2, Fe, E, true, e));
            QX_TRY(expect(m, P("mlp.experts.%lld.up_proj.weight", (long long)x), 2, Fe, E, true, e));
            QX_TRY(expect(m, P("mlp.experts.%lld.down_proj.weight", (long long)x), 2, E, Fe, true, e));
        }
        if (c->n_shared_experts > 0) {
            int64_t Fs = Fe * c->n_shared_experts;
            QX_TRY(expect(m, P("mlp.shared_experts.gate_proj.weight"), 2, Fs, E, true, e));
            QX_TRY(expect(m, P("mlp.shared_experts.up_proj.weight"), 2, Fs, E, true, e));
            QX_TRY(expect(m, P("mlp.shared_experts.down_proj.weight"), 2, E, Fs, true, e));
        }
#undef P
    }
    /* No expert beyond n_routed_experts. */
    snprintf(n, sizeof n, "model.layers.%lld.mlp.experts.%lld.gate_proj.weight",
             (long long)(c->first_k_dense_replace < c->n_layers ? c->first_k_dense_replace : 0), (long long)c->n_routed_experts);
    if (c->n_routed_experts > 0 && st_find(m, n))
        return qx_fail(e, QX_ESHAPE, "%s: tensor '%s' exists but config.json says n_routed_experts = %lld", st_model_dir(m), n, (long long)c->n_routed_experts);
    return QX_OK;
}

static qx_status validate_dense(const hf_config *c, const st_model *m, qx_err *e) {
    char n[256];
    int64_t E = c->hidden_size, D = c->head_dim;
    QX_TRY(expect(m, "model.embed_tokens.weight", 2, c->vocab_size, E, false, e));
    QX_TRY(expect(m, "model.norm.weight", 1, E, 0, false, e));
    if (!c->tie_word_embeddings || st_find(m, "lm_head.weight")) QX_TRY(expect(m, "lm_head.weight", 2, c->vocab_size, E, false, e));
    for (int64_t l = 0; l < c->n_layers; l++) {
#define P(s) (snprintf(n, sizeof n, "model.layers.%lld." s, (long long)l), n)
        QX_TRY(expect(m, P("input_layernorm.weight"), 1, E, 0, false, e));
        QX_TRY(expect(m, P("post_attention_layernorm.weight"), 1, E, 0, false, e));
        QX_TRY(expect(m, P("self_attn.q_proj.weight"), 2, c->n_heads * D, E, false, e));
        QX_TRY(expect(m, P("self_attn.k_proj.weight"), 2, c->n_kv_heads * D, E, false, e));
        QX_TRY(expect(m, P("self_attn.v_proj.weight"), 2, c->n_kv_heads * D, E, false, e));
        QX_TRY(expect(m, P("self_attn.o_proj.weight"), 2, E, c->n_heads * D, false, e));
        if (c->arch == HF_ARCH_QWEN2) {
            QX_TRY(expect(m, P("self_attn.q_proj.bias"), 1, c->n_heads * D, 0, false, e));
            QX_TRY(expect(m, P("self_attn.k_proj.bias"), 1, c->n_kv_heads * D, 0, false, e));
            QX_TRY(expect(m, P("self_attn.v_proj.bias"), 1, c->n_kv_heads * D, 0, false, e));
        }
        QX_TRY(expect(m, P("mlp.gate_proj.weight"), 2, c->intermediate_size, E, false, e));
        QX_TRY(expect(m, P("mlp.up_proj.weight"), 2, c->intermediate_size, E, false, e));
        QX_TRY(expect(m, P("mlp.down_proj.weight"), 2, E, c->intermediate_size, false, e));
#undef P
    }
    return QX_OK;
}

/* DeepSeek-V4: the tensors every layer has, with their shapes (the per-kind ones, compressor,
 * indexer, hash tables, are checked by the converter's map, convert/arch_v4.c). */
static qx_status validate_v4(const hf_config *c, const st_model *m, qx_err *e) {
    char n[256];
    int64_t E = c->hidden_size, H = c->n_heads, D = c->head_dim, X = c->n_routed_experts, Fe = c->moe_intermediate_size;
    QX_TRY(expect(m, "embed.weight", 2, c->vocab_size, E, false, e));
    QX_TRY(expect(m, "head.weight", 2, c->vocab_size, E, false, e));
    QX_TRY(expect(m, "norm.weight", 1, E, 0, false, e));
    QX_TRY(expect(m, "hc_head_fn", 2, c->hc_mult, c->hc_mult * E, false, e));
    for (int64_t l = 0; l < c->n_layers; l++) {
#define P(fmt, ...) (snprintf(n, sizeof n, "layers.%lld." fmt, (long long)l, ##__VA_ARGS__), n)
        QX_TRY(expect(m, P("attn_norm.weight"), 1, E, 0, false, e));
        QX_TRY(expect(m, P("attn.wq_a.weight"), 2, c->q_lora_rank, E, true, e));
        QX_TRY(expect(m, P("attn.wq_b.weight"), 2, H * D, c->q_lora_rank, true, e));
        QX_TRY(expect(m, P("attn.wkv.weight"), 2, D, E, true, e));
        QX_TRY(expect(m, P("attn.wo_a.weight"), 2, c->o_groups * c->o_lora_rank, H * D / c->o_groups, true, e));
        QX_TRY(expect(m, P("attn.wo_b.weight"), 2, E, c->o_groups * c->o_lora_rank, true, e));
        QX_TRY(expect(m, P("ffn.gate.weight"), 2, X, E, false, e));
        for (int64_t x = 0; x < X; x++) {
            QX_TRY(expect(m, P("ffn.experts.%lld.w1.weight", (long long)x), 2, Fe, E, true, e));
            QX_TRY(expect(m, P("ffn.experts.%lld.w2.weight", (long long)x), 2, E, Fe, true, e));
            QX_TRY(expect(m, P("ffn.experts.%lld.w3.weight", (long long)x), 2, Fe, E, true, e));
        }
#undef P
    }
    snprintf(n, sizeof n, "layers.0.ffn.experts.%lld.w1.weight", (long long)X);
    if (st_find(m, n)) return qx_fail(e, QX_ESHAPE, "%s: tensor '%s' exists but config.json says n_routed_experts = %lld", st_model_dir(m), n, (long long)X);
    return QX_OK;
}

qx_status hf_config_validate(const hf_config *c, const st_model *m, qx_err *e) {
    switch (c->arch) {
    case HF_ARCH_DEEPSEEK_V4: return validate_v4(c, m, e);
    case HF_ARCH_DEEPSEEK_V3:
    case HF_ARCH_DEEPSEEK_V2: return validate_deepseek(c, m, e);
    case HF_ARCH_LLAMA:
    case HF_ARCH_QWEN2: return validate_dense(c, m, e);
    default: return qx_fail(e, QX_EUNSUPPORTED, "unsupported architecture '%s'", c->architecture);
    }
}
