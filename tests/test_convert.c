/* tests/test_convert.c — qforge convert/quantize on synthetic checkpoints (always) and on
 * ../shared/models/mini-* (when present): deepseek2 metadata keys with their exact GGUF types
 * and values from config.json (read here with jansson, independently of hf_config), every
 * tensor dequantized against the source decoded from safetensors within a per-type error
 * bound, attn_k_b/attn_v_b and expert slices against an independent index computation
 * (exact at F32), llama q/k permutation (torch reshape/swapaxes written out), qwen2 biases and
 * tied embeddings, checksums, thread-count determinism, interrupt + resume byte identity,
 * requantizing an F32 GGUF equal to direct conversion, and the 671B dry-run sizes vs
 * llama-quantize's (../shared/GGUF-DEEPSEEK2.md §11). */
#include "tests/util/tu.h"
#include "convert/convert.h"
#include "formats/formats.h"

#include <jansson.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp[1024];

/* Under AddressSanitizer (make test-asan) the heaviest parts run on fewer presets. */
#if defined(__SANITIZE_ADDRESS__)
#define TC_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TC_ASAN 1
#endif
#endif
#ifndef TC_ASAN
#define TC_ASAN 0
#endif

static const char *tpath(const char *name) {
    static char buf[8][1200];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmp, name);
    return buf[k];
}

static qx_status convert(const char *dir, const char *out, const char *preset, int threads, bool keep_mtp, int64_t max_items,
                         bool resume, qx_err *e) {
    cv_params p;
    cv_default_params(&p);
    p.preset = preset;
    p.n_threads = threads;
    p.keep_mtp = keep_mtp;
    p.max_items = max_items;
    p.resume = resume;
    cv_plan *pl;
    QX_TRY(cv_plan_create(&pl, dir, &p, e));
    qx_status s = cv_execute(pl, out, &p, NULL, e);
    cv_plan_free(pl);
    return s;
}

static bool same_file(const char *a, const char *b) {
    char *x, *y;
    size_t nx, ny;
    qx_err e;
    if (qx_read_file(a, &x, &nx, &e) != QX_OK) return false;
    if (qx_read_file(b, &y, &ny, &e) != QX_OK) { free(x); return false; }
    bool eq = nx == ny && memcmp(x, y, nx) == 0;
    free(x);
    free(y);
    return eq;
}

/* ---- independent reference: what a GGUF tensor (slice x) must hold, from the HF source ---- */

typedef struct { const char *g, *h; } pair;
static const pair blk_map[] = {
    {"attn_norm.weight", "input_layernorm.weight"}, {"attn_q_a_norm.weight", "self_attn.q_a_layernorm.weight"},
    {"attn_q_a.weight", "self_attn.q_a_proj.weight"}, {"attn_q_b.weight", "self_attn.q_b_proj.weight"},
    {"attn_q.weight", "self_attn.q_proj.weight"}, {"attn_k.weight", "self_attn.k_proj.weight"},
    {"attn_v.weight", "self_attn.v_proj.weight"}, {"attn_q.bias", "self_attn.q_proj.bias"},
    {"attn_k.bias", "self_attn.k_proj.bias"}, {"attn_v.bias", "self_attn.v_proj.bias"},
    {"attn_kv_a_mqa.weight", "self_attn.kv_a_proj_with_mqa.weight"}, {"attn_kv_a_norm.weight", "self_attn.kv_a_layernorm.weight"},
    {"attn_output.weight", "self_attn.o_proj.weight"}, {"ffn_norm.weight", "post_attention_layernorm.weight"},
    {"ffn_gate.weight", "mlp.gate_proj.weight"}, {"ffn_up.weight", "mlp.up_proj.weight"}, {"ffn_down.weight", "mlp.down_proj.weight"},
    {"ffn_gate_inp.weight", "mlp.gate.weight"}, {"exp_probs_b.bias", "mlp.gate.e_score_correction_bias"},
    {"ffn_gate_shexp.weight", "mlp.shared_experts.gate_proj.weight"}, {"ffn_up_shexp.weight", "mlp.shared_experts.up_proj.weight"},
    {"ffn_down_shexp.weight", "mlp.shared_experts.down_proj.weight"}, {"nextn.eh_proj.weight", "eh_proj.weight"},
    {"nextn.enorm.weight", "enorm.weight"}, {"nextn.hnorm.weight", "hnorm.weight"},
    {"nextn.embed_tokens.weight", "embed_tokens.weight"}, {"nextn.shared_head_head.weight", "shared_head.head.weight"},
    {"nextn.shared_head_norm.weight", "shared_head.norm.weight"},
};

typedef struct {
    int64_t heads, kv_heads, head_dim;     /* llama */
    int64_t H, N, Dv, KVL;                 /* deepseek */
    bool llama, tied;
} arch_info;

/* Source tensor decoded whole (2-D rows x cols, or 1-D), malloc'd. */
static float *decode_all(const st_tensor *t, int64_t *rows, int64_t *cols) {
    *rows = t->n_dims == 2 ? t->shape[0] : 1;
    *cols = t->n_dims == 2 ? t->shape[1] : t->shape[0];
    float *f = malloc((size_t)(*rows * *cols) * sizeof *f);
    qx_err e;
    if (st_tensor_rows_f32(t, 0, *rows, f, &e) != QX_OK) { free(f); return NULL; }
    return f;
}

/* Fills ref (ne0 * ne1 floats) with slice x of GGUF tensor g; returns false if unmapped. */
static bool reference(const st_model *m, const arch_info *a, const gf_tensor *g, int64_t x, float *ref) {
    char hf[256];
    int L = -1, off = 0;
    const char *n = g->name;
    if (!strcmp(n, "token_embd.weight") || (!strcmp(n, "output.weight") && a->tied)) snprintf(hf, sizeof hf, "model.embed_tokens.weight");
    else if (!strcmp(n, "output.weight")) snprintf(hf, sizeof hf, "lm_head.weight");
    else if (!strcmp(n, "output_norm.weight")) snprintf(hf, sizeof hf, "model.norm.weight");
    else if (sscanf(n, "blk.%d.%n", &L, &off) == 1 && off > 0) {
        const char *rest = n + off;
        int64_t ne0 = g->ne[0], ne1 = g->ne[1];
        if (!strcmp(rest, "attn_k_b.weight") || !strcmp(rest, "attn_v_b.weight")) {
            snprintf(hf, sizeof hf, "model.layers.%d.self_attn.kv_b_proj.weight", L);
            int64_t rows, cols;
            float *kv = decode_all(st_find(m, hf), &rows, &cols);   /* torch [H*(N+Dv), KVL] */
            if (!kv) return false;
            bool kb = rest[5] == 'k';
            for (int64_t r = 0; r < ne1; r++)
                for (int64_t c = 0; c < ne0; c++)   /* k_b: torch [H, KVL, N] = K part transposed; v_b: [H, Dv, KVL] */
                    ref[r * ne0 + c] = kb ? kv[(x * (a->N + a->Dv) + c) * a->KVL + r] : kv[(x * (a->N + a->Dv) + a->N + r) * a->KVL + c];
            free(kv);
            return true;
        }
        const char *exps[3][2] = {{"ffn_gate_exps.weight", "gate_proj"}, {"ffn_up_exps.weight", "up_proj"}, {"ffn_down_exps.weight", "down_proj"}};
        bool found = false;
        for (int k = 0; k < 3 && !found; k++)
            if (!strcmp(rest, exps[k][0])) {
                snprintf(hf, sizeof hf, "model.layers.%d.mlp.experts.%lld.%s.weight", L, (long long)x, exps[k][1]);
                found = true;
            }
        for (size_t k = 0; k < sizeof blk_map / sizeof blk_map[0] && !found; k++)
            if (!strcmp(rest, blk_map[k].g)) {
                snprintf(hf, sizeof hf, "model.layers.%d.%s", L, blk_map[k].h);
                found = true;
            }
        if (!found) return false;
        const st_tensor *t = st_find(m, hf);
        if (!t) return false;
        int64_t rows, cols;
        float *src = decode_all(t, &rows, &cols);
        if (!src) return false;
        bool q = !strcmp(rest, "attn_q.weight") || !strcmp(rest, "attn_q.bias");
        bool k = !strcmp(rest, "attn_k.weight") || !strcmp(rest, "attn_k.bias");
        if (a->llama && (q || k)) {
            /* torch: w.reshape(nh, 2, D/2, in).swapaxes(1, 2).reshape(w.shape) */
            int64_t nh = q ? a->heads : a->kv_heads, D = a->head_dim, in = rows == 1 ? 1 : cols;
            int64_t nrow = rows == 1 ? cols : rows;
            for (int64_t h = 0; h < nh; h++)
                for (int64_t i = 0; i < D / 2; i++)
                    for (int64_t j = 0; j < 2; j++)
                        for (int64_t c = 0; c < in; c++)
                            ref[((h * (D / 2) + i) * 2 + j) * in + c] = src[((h * 2 + j) * (D / 2) + i) * in + c];
            (void)nrow;
        } else {
            memcpy(ref, src, (size_t)(rows * cols) * sizeof *ref);
        }
        free(src);
        return true;
    } else return false;
    const st_tensor *t = st_find(m, hf);
    if (!t) return false;
    int64_t rows, cols;
    float *src = decode_all(t, &rows, &cols);
    if (!src) return false;
    memcpy(ref, src, (size_t)(rows * cols) * sizeof *ref);
    free(src);
    return true;
}

/* Relative RMS error bounds of one tensor, per GGUF type (dequantized vs the source). */
static double bound_for(qt_type t) {
    switch (t) {
    case QT_F32: return 0.0;
    case QT_F16: return 1e-3;
    case QT_BF16: return 5e-3;
    case QT_Q8_0: return 0.015;
    case QT_Q6_K: return 0.035;
    case QT_Q5_K: case QT_Q5_0: case QT_Q5_1: return 0.06;
    case QT_Q4_K: case QT_Q4_0: return 0.12;
    case QT_Q3_K: return 0.19;
    case QT_Q2_K: return 0.35;
    default: return 1.0;
    }
}

/* Checks every tensor of the GGUF against the HF source; returns the number checked. */
static int check_values(const char *dir, const char *gguf, const arch_info *a) {
    st_model *m;
    gf_file *g;
    qx_err e;
    TU_OK(st_open(&m, dir, &e), &e);
    TU_OK(gf_open(&g, gguf, &e), &e);
    int n = 0;
    for (size_t i = 0; i < gf_tensor_count(g); i++) {
        const gf_tensor *t = gf_tensor_at(g, i);
        if (!strcmp(t->name, "rope_freqs.weight")) continue;
        int64_t ne0 = t->ne[0], ne1 = t->ne[1], slices = t->ne[2];
        uint64_t rs = qt_row_size(t->type, ne0);
        float *ref = malloc((size_t)(ne0 * ne1) * sizeof *ref), *got = malloc((size_t)(ne0 * ne1) * sizeof *got);
        double worst = 0;
        bool mapped = true;
        for (int64_t x = 0; x < slices && mapped; x++) {
            mapped = reference(m, a, t, x, ref);
            if (!mapped) break;
            qt_dequantize_rows(t->type, t->data + (uint64_t)x * (uint64_t)ne1 * rs, got, ne1, ne0);
            double se = 0, ss = 0;
            for (int64_t k = 0; k < ne0 * ne1; k++) {
                double d = (double)got[k] - ref[k];
                se += d * d;
                ss += (double)ref[k] * ref[k];
            }
            double rel = ss > 0 ? sqrt(se / ss) : sqrt(se);
            if (rel > worst) worst = rel;
        }
        TU_CHECK(mapped, "%s: tensor %s has no reference mapping", gguf, t->name);
        if (mapped) {
            n++;
            TU_CHECK(worst <= bound_for(t->type), "%s: %s (%s) relative RMS error %.5f > bound %.5f", gguf, t->name,
                     qt_type_name(t->type), worst, bound_for(t->type));
            if (getenv("QF_TEST_VERBOSE")) fprintf(stderr, "  %-36s %-6s rel %.5f\n", t->name, qt_type_name(t->type), worst);
        }
        free(ref);
        free(got);
    }
    gf_close(g);
    st_close(m);
    return n;
}

/* ---- metadata ---- */
static json_t *load_config(const char *dir) {
    char p[1200];
    snprintf(p, sizeof p, "%s/config.json", dir);
    json_error_t je;
    return json_load_file(p, 0, &je);
}
static double jnum(json_t *o, const char *k) { return json_number_value(json_object_get(o, k)); }

static void expect_u32(const gf_file *g, const char *key, uint32_t want) {
    uint32_t v = 0;
    qx_err e;
    TU_OK(gf_get_u32(g, key, &v, &e), &e);
    TU_CHECK(v == want, "%s = %u, want %u", key, v, want);
}
static void expect_f32(const gf_file *g, const char *key, double want) {
    float v = 0;
    qx_err e;
    TU_OK(gf_get_f32(g, key, &v, &e), &e);
    TU_CHECK(fabs(v - want) <= 1e-6 * fabs(want) + 1e-12, "%s = %g, want %g", key, v, want);
}

/* The special tokens HF's tokenizer adds, as llama.cpp's converter writes them: a
 * LlamaTokenizerFast config without "unk_token" (null means none) gains "<unk>" at the id after
 * tokenizer.json's model.vocab and its added tokens, type CONTROL (convert_hf_to_gguf.py on
 * tiny-v3: token 296 "<unk>", type 3; the mini-* fixtures say "unk_token": null). */
static void check_hf_unk(const char *dir, const gf_file *g) {
    char p[1200];
    json_error_t je;
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    json_t *tc = json_load_file(p, 0, &je);
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    json_t *tj = json_load_file(p, 0, &je);
    const char *cls = json_string_value(json_object_get(tc, "tokenizer_class"));
    size_t next = json_object_size(json_object_get(json_object_get(tj, "model"), "vocab"));
    json_t *added = json_object_get(tj, "added_tokens");
    for (size_t i = 0; i < json_array_size(added); i++) {
        size_t id = (size_t)json_integer_value(json_object_get(json_array_get(added, i), "id"));
        if (id >= next) next = id + 1;
    }
    bool want_unk = cls && !strcmp(cls, "LlamaTokenizerFast") && !json_object_get(tc, "unk_token");
    const char *const *toks;
    const void *types;
    uint64_t nt = 0, nty = 0;
    qx_err e;
    TU_OK(gf_get_str_arr(g, "tokenizer.ggml.tokens", &toks, &nt, &e), &e);
    TU_OK(gf_get_arr(g, "tokenizer.ggml.token_type", GF_I32, &types, &nty, &e), &e);
    if (nt > next && nty == nt) {
        int32_t ty = ((const int32_t *)types)[next];
        if (want_unk) TU_CHECK(!strcmp(toks[next], "<unk>") && ty == 3, "%s: token %zu '%s' type %d, want '<unk>' CONTROL", dir, next, toks[next], ty);
        else TU_CHECK(strcmp(toks[next], "<unk>") && ty == 5, "%s: token %zu '%s' type %d, want an unused pad", dir, next, toks[next], ty);
    }
    json_decref(tc);
    json_decref(tj);
}

static void check_deepseek_meta(const char *dir, const char *gguf, bool mtp) {
    json_t *c = load_config(dir);
    gf_file *g;
    qx_err e;
    TU_OK(gf_open(&g, gguf, &e), &e);
    if (!c || !g) { json_decref(c); gf_close(g); return; }
    const char *s;
    TU_OK(gf_get_str(g, "general.architecture", &s, &e), &e);
    TU_CHECK(!strcmp(s, "deepseek2"), "arch %s", s);
    int64_t L = (int64_t)jnum(c, "num_hidden_layers"), nextn = (int64_t)jnum(c, "num_nextn_predict_layers");
    expect_u32(g, "deepseek2.block_count", (uint32_t)(L + (mtp ? nextn : 0)));
    if (mtp) expect_u32(g, "deepseek2.nextn_predict_layers", (uint32_t)nextn);
    else TU_CHECK(!gf_find_kv(g, "deepseek2.nextn_predict_layers"), "nextn key without --keep-mtp");
    expect_u32(g, "deepseek2.context_length", (uint32_t)jnum(c, "max_position_embeddings"));
    expect_u32(g, "deepseek2.embedding_length", (uint32_t)jnum(c, "hidden_size"));
    expect_u32(g, "deepseek2.feed_forward_length", (uint32_t)jnum(c, "intermediate_size"));
    expect_u32(g, "deepseek2.attention.head_count", (uint32_t)jnum(c, "num_attention_heads"));
    expect_u32(g, "deepseek2.attention.head_count_kv", 1);
    int64_t kvl = (int64_t)jnum(c, "kv_lora_rank"), R = (int64_t)jnum(c, "qk_rope_head_dim"), N = (int64_t)jnum(c, "qk_nope_head_dim");
    expect_u32(g, "deepseek2.attention.key_length", (uint32_t)(kvl + R));
    expect_u32(g, "deepseek2.attention.value_length", (uint32_t)kvl);
    expect_u32(g, "deepseek2.attention.key_length_mla", (uint32_t)(N + R));
    expect_u32(g, "deepseek2.attention.value_length_mla", (uint32_t)jnum(c, "v_head_dim"));
    expect_u32(g, "deepseek2.rope.dimension_count", (uint32_t)R);
    expect_f32(g, "deepseek2.attention.layer_norm_rms_epsilon", jnum(c, "rms_norm_eps"));
    expect_u32(g, "deepseek2.attention.q_lora_rank", (uint32_t)jnum(c, "q_lora_rank"));
    expect_u32(g, "deepseek2.attention.kv_lora_rank", (uint32_t)kvl);
    expect_u32(g, "deepseek2.expert_feed_forward_length", (uint32_t)jnum(c, "moe_intermediate_size"));
    expect_u32(g, "deepseek2.expert_shared_count", (uint32_t)jnum(c, "n_shared_experts"));
    expect_u32(g, "deepseek2.expert_count", (uint32_t)jnum(c, "n_routed_experts"));
    expect_u32(g, "deepseek2.expert_used_count", (uint32_t)jnum(c, "num_experts_per_tok"));
    int64_t ng = (int64_t)jnum(c, "n_group"), tg = (int64_t)jnum(c, "topk_group");
    if (tg < ng) {
        expect_u32(g, "deepseek2.expert_group_count", (uint32_t)ng);
        expect_u32(g, "deepseek2.expert_group_used_count", (uint32_t)tg);
    } else {
        TU_CHECK(!gf_find_kv(g, "deepseek2.expert_group_count"), "group keys must be omitted when topk_group == n_group");
    }
    expect_u32(g, "deepseek2.leading_dense_block_count", (uint32_t)jnum(c, "first_k_dense_replace"));
    expect_f32(g, "deepseek2.expert_weights_scale", jnum(c, "routed_scaling_factor"));
    /* convert_hf_to_gguf.py writes expert_weights_norm only when true */
    bool b = false;
    if (json_is_true(json_object_get(c, "norm_topk_prob"))) {
        TU_OK(gf_get_bool(g, "deepseek2.expert_weights_norm", &b, &e), &e);
        TU_CHECK(b, "expert_weights_norm");
    } else {
        TU_CHECK(!gf_find_kv(g, "deepseek2.expert_weights_norm"), "expert_weights_norm written while false");
    }
    expect_u32(g, "deepseek2.expert_gating_func", !strcmp(json_string_value(json_object_get(c, "scoring_func")), "sigmoid") ? 2 : 1);
    expect_u32(g, "deepseek2.vocab_size", (uint32_t)jnum(c, "vocab_size"));
    expect_f32(g, "deepseek2.rope.freq_base", jnum(c, "rope_theta"));
    json_t *rs = json_object_get(c, "rope_scaling");
    TU_OK(gf_get_str(g, "deepseek2.rope.scaling.type", &s, &e), &e);
    TU_CHECK(!strcmp(s, "yarn"), "rope.scaling.type %s", s);
    expect_f32(g, "deepseek2.rope.scaling.factor", jnum(rs, "factor"));
    expect_u32(g, "deepseek2.rope.scaling.original_context_length", (uint32_t)jnum(rs, "original_max_position_embeddings"));
    expect_f32(g, "deepseek2.rope.scaling.yarn_log_multiplier", 0.1 * jnum(rs, "mscale_all_dim"));
    /* llama.cpp's converter writes yarn beta_fast/beta_slow whenever the config has them */
    TU_CHECK(json_object_get(rs, "beta_fast") && json_object_get(rs, "beta_slow"), "fixture config lacks beta_fast/beta_slow");
    expect_f32(g, "deepseek2.rope.scaling.yarn_beta_fast", jnum(rs, "beta_fast"));
    expect_f32(g, "deepseek2.rope.scaling.yarn_beta_slow", jnum(rs, "beta_slow"));
    expect_u32(g, "general.quantization_version", 2);
    TU_OK(gf_get_str(g, "tokenizer.ggml.model", &s, &e), &e);
    TU_CHECK(!strcmp(s, "gpt2"), "tokenizer model %s", s);
    const char *const *toks;
    uint64_t nt;
    TU_OK(gf_get_str_arr(g, "tokenizer.ggml.tokens", &toks, &nt, &e), &e);
    TU_CHECK(nt == (uint64_t)jnum(c, "vocab_size"), "tokens %llu, vocab %g", (unsigned long long)nt, jnum(c, "vocab_size"));
    check_hf_unk(dir, g);
    /* exp_probs_b.bias in every MoE block; no attn_kv_b in the MLA layout; MTP only when kept */
    int64_t dense = (int64_t)jnum(c, "first_k_dense_replace");
    for (int64_t l = 0; l < L; l++) {
        char n[96];
        snprintf(n, sizeof n, "blk.%lld.exp_probs_b.bias", (long long)l);
        TU_CHECK((gf_find_tensor(g, n) != NULL) == (l >= dense), "%s presence", n);
        snprintf(n, sizeof n, "blk.%lld.attn_kv_b.weight", (long long)l);
        TU_CHECK(!gf_find_tensor(g, n), "%s must not exist", n);
    }
    char n[96];
    snprintf(n, sizeof n, "blk.%lld.nextn.eh_proj.weight", (long long)L);
    TU_CHECK((gf_find_tensor(g, n) != NULL) == mtp, "%s presence", n);
    TU_OK(gf_verify_checksums(g, NULL, &e), &e);
    gf_close(g);
    json_decref(c);
}

static void test_deepseek(const char *dir, const char *tag, const char *const *presets, int n_presets) {
    qx_err e;
    json_t *c = load_config(dir);
    arch_info a = {0};
    a.H = (int64_t)jnum(c, "num_attention_heads");
    a.N = (int64_t)jnum(c, "qk_nope_head_dim");
    a.Dv = (int64_t)jnum(c, "v_head_dim");
    a.KVL = (int64_t)jnum(c, "kv_lora_rank");
    json_decref(c);
    for (int i = 0; i < n_presets; i++) {
        char name[128];
        snprintf(name, sizeof name, "%s-%s.gguf", tag, presets[i]);
        const char *out = tpath(name);
        TU_OK(convert(dir, out, presets[i], 0, false, 0, false, &e), &e);
        check_deepseek_meta(dir, out, false);
        int n = check_values(dir, out, &a);
        TU_CHECK(n > 20, "%s: only %d tensors checked", out, n);
        unlink(out);
    }
}

static void test_mtp_and_determinism(const char *dir) {
    qx_err e;
    const char *a = tpath("mtp1.gguf"), *b = tpath("mtp2.gguf");
    TU_OK(convert(dir, a, "Q4_K_M", 1, true, 0, false, &e), &e);
    TU_OK(convert(dir, b, "Q4_K_M", 2, true, 0, false, &e), &e);
    TU_CHECK(same_file(a, b), "1 thread and 2 threads give different bytes");
    check_deepseek_meta(dir, a, true);
    unlink(b);
    /* interrupted run (--max-items) then --resume: byte-identical */
    TU_FAILS(convert(dir, b, "Q4_K_M", 2, true, 40, false, &e), &e, QX_EINVAL, "stopped after");
    struct stat st;
    TU_CHECK(stat(b, &st) != 0, "output exists after an interrupted run");
    char part[1300], jr[1400];
    snprintf(part, sizeof part, "%s.part", b);
    snprintf(jr, sizeof jr, "%s.journal", part);
    TU_CHECK(stat(part, &st) == 0 && stat(jr, &st) == 0, ".part / journal missing after interruption");
    /* damage one finished item's bytes: resume must notice and redo it */
    gf_file *g;
    if (gf_open(&g, a, &e) == QX_OK) {
        uint64_t off = gf_tensor_at(g, 0)->file_offset;
        gf_close(g);
        FILE *f = fopen(part, "r+b");
        if (f) { fseek(f, (long)off + 10, SEEK_SET); fputc(0x5a, f); fputc(0xa5, f); fclose(f); }
    }
    TU_OK(convert(dir, b, "Q4_K_M", 2, true, 0, true, &e), &e);
    TU_CHECK(same_file(a, b), "resumed output differs from the uninterrupted one");
    TU_CHECK(stat(part, &st) != 0 && stat(jr, &st) != 0, ".part / journal left after success");
    /* a journal from other options is refused */
    TU_FAILS(convert(dir, b, "Q8_0", 2, true, 10, false, &e), &e, QX_EINVAL, "stopped after");
    TU_FAILS(convert(dir, b, "Q4_K_M", 2, true, 0, true, &e), &e, QX_EINVAL, "different plan");
    unlink(a);
    unlink(b);
    unlink(part);
    unlink(jr);
}

/* --imatrix: each expert slice gets its own importance vector.  Expert k's importance favours
 * columns j with j % X == k; the importance-weighted error of every expert must drop vs no
 * imatrix (it would not for experts whose vector was swapped with another's). */
static double weighted_err(const gf_tensor *t, const st_model *m, int L, int64_t x, int64_t X) {
    char hf[160];
    snprintf(hf, sizeof hf, "model.layers.%d.mlp.experts.%lld.up_proj.weight", L, (long long)x);
    int64_t rows, cols;
    float *ref = decode_all(st_find(m, hf), &rows, &cols);
    float *got = malloc((size_t)(rows * cols) * sizeof *got);
    uint64_t rs = qt_row_size(t->type, cols);
    qt_dequantize_rows(t->type, t->data + (uint64_t)x * (uint64_t)rows * rs, got, rows, cols);
    double se = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++) {
            double d = got[r * cols + j] - ref[r * cols + j];
            se += (j % X == x ? 1000.0 : 1.0) * d * d;
        }
    free(ref);
    free(got);
    return se;
}

static void test_imatrix(const char *dir) {
    qx_err e;
    json_t *c = load_config(dir);
    int64_t E = (int64_t)jnum(c, "hidden_size"), X = (int64_t)jnum(c, "n_routed_experts");
    int L = (int)jnum(c, "first_k_dense_replace");
    json_decref(c);
    const char *a = tpath("im-no.gguf"), *b = tpath("im-yes.gguf");
    const char *kb = "blk.0.attn_k_b.weight";
    int64_t kb_ne0 = 0, kb_nh = 0;
    cv_params p;
    cv_default_params(&p);
    p.preset = "Q2_K";
    cv_plan *pl;
    TU_OK(cv_plan_create(&pl, dir, &p, &e), &e);
    if (pl) {
        for (size_t i = 0; i < cv_plan_tensor_count(pl); i++) {
            cv_tensor_info t;
            cv_plan_tensor(pl, i, &t);
            if (!strcmp(t.name, kb)) { kb_ne0 = t.ne[0]; kb_nh = t.ne[2]; }
        }
        TU_OK(cv_execute(pl, a, &p, NULL, &e), &e);
        cv_plan_free(pl);
    }
    TU_CHECK(kb_ne0 > 0 && kb_nh > 1, "%s: ne [%lld, .., %lld]", kb, (long long)kb_ne0, (long long)kb_nh);
    im_matrix *im;
    TU_OK(im_create(&im, &e), &e);
    char name[96];
    snprintf(name, sizeof name, "blk.%d.ffn_up_exps.weight", L);
    im_entry *en;
    TU_OK(im_add(im, name, E, X, &en, &e), &e);
    for (int64_t k = 0; k < X; k++) {
        en->counts[k] = 1;
        for (int64_t j = 0; j < E; j++) en->in_sum2[k * E + j] = j % X == k ? 1000.0f : 1.0f;
    }
    /* attn_k_b as llama-imatrix writes it (a plain MUL_MAT over a per-head 3-D weight):
     * in_sum2 [ne0 * n_head, 1], one count; it must attach per head, not be ignored */
    if (kb_ne0 > 0 && kb_nh > 1) {
        TU_OK(im_add(im, kb, kb_ne0 * kb_nh, 1, &en, &e), &e);
        en->counts[0] = 1;
        for (int64_t j = 0; j < kb_ne0 * kb_nh; j++) en->in_sum2[j] = j % 7 == (j / kb_ne0) % 7 ? 1000.0f : 1.0f;
    }
    TU_OK(im_add_dataset(im, "test", &e), &e);
    const char *imf = tpath("test.imatrix");
    TU_OK(im_write_gguf(im, imf, &e), &e);
    im_free(im);
    p.imatrix = imf;
    TU_OK(cv_plan_create(&pl, dir, &p, &e), &e);
    if (pl) {
        TU_CHECK(!strstr(cv_plan_warnings(pl), "imatrix"), "imatrix warnings: %s", cv_plan_warnings(pl));
        TU_OK(cv_execute(pl, b, &p, NULL, &e), &e);
        cv_plan_free(pl);
    }
    gf_file *ga, *gb;
    st_model *m;
    if (gf_open(&ga, a, &e) == QX_OK && gf_open(&gb, b, &e) == QX_OK && st_open(&m, dir, &e) == QX_OK) {
        const gf_tensor *ta = gf_find_tensor(ga, name), *tb = gf_find_tensor(gb, name);
        TU_CHECK(ta && tb && ta->type == QT_Q2_K && tb->type == QT_Q2_K, "%s missing or not Q2_K", name);
        for (int64_t x = 0; ta && tb && x < X; x++) {
            double wa = weighted_err(ta, m, L, x, X), wb = weighted_err(tb, m, L, x, X);
            TU_CHECK(wb < 0.9 * wa, "expert %lld: weighted error with imatrix %.4g not below %.4g without", (long long)x, wb, wa);
        }
        const gf_tensor *ka = gf_find_tensor(ga, kb), *kbt = gf_find_tensor(gb, kb);
        TU_CHECK(ka && kbt && ka->nbytes == kbt->nbytes && memcmp(ka->data, kbt->data, ka->nbytes) != 0,
                 "%s: the flat (llama-imatrix) entry changed nothing", kb);
        /* a tensor without an entry is unchanged by the imatrix */
        const gf_tensor *qa = gf_find_tensor(ga, "token_embd.weight"), *qb = gf_find_tensor(gb, "token_embd.weight");
        TU_CHECK(qa && qb && qa->nbytes == qb->nbytes && !memcmp(qa->data, qb->data, qa->nbytes), "token_embd changed by an unrelated imatrix");
        gf_close(ga);
        gf_close(gb);
        st_close(m);
    }
    unlink(a);
    unlink(b);
}

/* --tensor-type: first match wins, lower-cased regex search, the fallback still applies;
 * --output-tensor-type / --token-embedding-type; --pure. */
static void test_overrides(const char *dir) {
    qx_err e;
    const char *tt[] = {"FFN_DOWN_EXPS=q8_0", "ffn_down=Q5_K", "attn_k_b=Q4_K"};
    cv_params p;
    cv_default_params(&p);
    p.preset = "Q4_K_M";
    p.tensor_types = tt;
    p.n_tensor_types = 3;
    p.output_tensor_type = "Q8_0";
    p.token_embedding_type = "BF16";
    cv_plan *pl;
    TU_OK(cv_plan_create(&pl, dir, &p, &e), &e);
    if (!pl) return;
    int seen = 0;
    for (size_t i = 0; i < cv_plan_tensor_count(pl); i++) {
        cv_tensor_info t;
        cv_plan_tensor(pl, i, &t);
        if (strstr(t.name, "ffn_down_exps")) { TU_CHECK(t.type == QT_Q8_0, "%s: %s", t.name, qt_type_name(t.type)); seen++; }
        else if (strstr(t.name, "ffn_down")) { TU_CHECK(t.type == QT_Q5_K || t.type == QT_Q5_1, "%s: %s", t.name, qt_type_name(t.type)); seen++; }
        else if (strstr(t.name, "attn_k_b")) {   /* rows of 64 in tiny-v3: Q4_K -> Q5_0 */
            TU_CHECK(t.wanted == QT_Q4_K && t.type == QT_Q5_0, "%s: %s from %s", t.name, qt_type_name(t.type), qt_type_name(t.wanted));
            seen++;
        } else if (!strcmp(t.name, "output.weight")) TU_CHECK(t.type == QT_Q8_0, "output %s", qt_type_name(t.type));
        else if (!strcmp(t.name, "token_embd.weight")) TU_CHECK(t.type == QT_BF16, "token_embd %s", qt_type_name(t.type));
        else if (strstr(t.name, "norm")) TU_CHECK(t.type == QT_F32, "%s: %s", t.name, qt_type_name(t.type));
    }
    TU_CHECK(seen >= 6, "only %d overridden tensors seen", seen);
    cv_plan_free(pl);
    /* a bare type is --pure: every quantizable tensor at it (fallback aside), 1-D stay F32 */
    cv_default_params(&p);
    p.preset = "Q6_K";
    p.pure = true;
    TU_OK(cv_plan_create(&pl, dir, &p, &e), &e);
    if (!pl) return;
    for (size_t i = 0; i < cv_plan_tensor_count(pl); i++) {
        cv_tensor_info t;
        cv_plan_tensor(pl, i, &t);
        bool q = t.n_dims >= 2 && !strstr(t.name, "norm") && !strstr(t.name, "ffn_gate_inp");
        TU_CHECK(q ? t.wanted == QT_Q6_K : t.type == QT_F32, "--pure: %s is %s", t.name, qt_type_name(t.type));
    }
    cv_plan_free(pl);
    p.preset = "Q5_K_M";
    p.pure = false;
    const char *bad[] = {"attn_(=Q4_K"};
    p.tensor_types = bad;
    p.n_tensor_types = 1;
    TU_FAILS(cv_plan_create(&pl, dir, &p, &e), &e, QX_EINVAL, "regular expression");
}

/* DeepSeek-V2(-Lite) layout: no q_lora (attn_q from q_proj), softmax gating, no group limit,
 * no e_score_correction_bias, BF16 weights.  Written here with st_writer (no synth preset). */
static void put_bf16(st_writer *w, const char *name, int64_t rows, int64_t cols, uint64_t *seed) {
    int64_t n = rows * cols, sh[2] = {rows, cols};
    uint16_t *v = malloc((size_t)n * 2);
    for (int64_t i = 0; i < n; i++) {
        *seed = *seed * 6364136223846793005ull + 1442695040888963407ull;
        float f = cols == 1 ? 1.0f : ((float)((*seed >> 33) % 2001) - 1000.0f) * 1e-4f;
        v[i] = qt_f32_to_bf16(f);
    }
    qx_err e;
    TU_OK(st_writer_add(w, name, ST_BF16, cols == 1 ? 1 : 2, sh, v, (uint64_t)n * 2, &e), &e);
    free(v);
}

static void test_v2(const char *tiny_v3_dir) {
    const int64_t E = 256, H = 4, N = 32, R = 32, Dv = 32, KVL = 64, X = 4, Fe = 64, F = 512, V = 320, L = 2;
    char dir[1200], p[4000];
    snprintf(dir, sizeof dir, "%s", tpath("v2-lite"));
    mkdir(dir, 0755);
    snprintf(p, sizeof p, "cp '%s/tokenizer.json' '%s/tokenizer_config.json' '%s/'", tiny_v3_dir, tiny_v3_dir, dir);
    TU_CHECK(tu_system("%s", p) == 0, "copy tokenizer");
    json_t *c = load_config(tiny_v3_dir);
    json_t *arr = json_array();
    json_array_append_new(arr, json_string("DeepseekV2ForCausalLM"));
    json_object_set_new(c, "architectures", arr);
    json_object_set_new(c, "model_type", json_string("deepseek_v2"));
    json_object_set_new(c, "q_lora_rank", json_null());
    json_object_set_new(c, "hidden_size", json_integer(E));
    json_object_set_new(c, "num_attention_heads", json_integer(H));
    json_object_set_new(c, "num_key_value_heads", json_integer(H));
    json_object_set_new(c, "qk_nope_head_dim", json_integer(N));
    json_object_set_new(c, "qk_rope_head_dim", json_integer(R));
    json_object_set_new(c, "v_head_dim", json_integer(Dv));
    json_object_set_new(c, "kv_lora_rank", json_integer(KVL));
    json_object_set_new(c, "n_routed_experts", json_integer(X));
    json_object_set_new(c, "num_experts_per_tok", json_integer(2));
    json_object_set_new(c, "moe_intermediate_size", json_integer(Fe));
    json_object_set_new(c, "intermediate_size", json_integer(F));
    json_object_set_new(c, "num_hidden_layers", json_integer(L));
    json_object_set_new(c, "num_nextn_predict_layers", json_integer(0));
    json_object_set_new(c, "first_k_dense_replace", json_integer(1));
    json_object_set_new(c, "vocab_size", json_integer(V));
    json_object_set_new(c, "n_group", json_integer(1));
    json_object_set_new(c, "topk_group", json_integer(1));
    json_object_set_new(c, "scoring_func", json_string("softmax"));
    json_object_set_new(c, "topk_method", json_string("greedy"));
    json_object_set_new(c, "routed_scaling_factor", json_real(1.0));
    json_object_set_new(c, "norm_topk_prob", json_false());
    json_object_del(c, "quantization_config");
    snprintf(p, sizeof p, "%s/config.json", dir);
    TU_CHECK(json_dump_file(c, p, JSON_INDENT(1)) == 0, "config");
    json_decref(c);
    st_writer *w;
    qx_err e;
    TU_OK(st_writer_create(&w, &e), &e);
    uint64_t seed = 3;
    char n[160];
    put_bf16(w, "model.embed_tokens.weight", V, E, &seed);
    put_bf16(w, "lm_head.weight", V, E, &seed);
    put_bf16(w, "model.norm.weight", E, 1, &seed);
    for (int64_t l = 0; l < L; l++) {
#define P(s) (snprintf(n, sizeof n, "model.layers.%lld." s, (long long)l), n)
        put_bf16(w, P("input_layernorm.weight"), E, 1, &seed);
        put_bf16(w, P("post_attention_layernorm.weight"), E, 1, &seed);
        put_bf16(w, P("self_attn.q_proj.weight"), H * (N + R), E, &seed);
        put_bf16(w, P("self_attn.kv_a_proj_with_mqa.weight"), KVL + R, E, &seed);
        put_bf16(w, P("self_attn.kv_a_layernorm.weight"), KVL, 1, &seed);
        put_bf16(w, P("self_attn.kv_b_proj.weight"), H * (N + Dv), KVL, &seed);
        put_bf16(w, P("self_attn.o_proj.weight"), E, H * Dv, &seed);
        if (l == 0) {
            put_bf16(w, P("mlp.gate_proj.weight"), F, E, &seed);
            put_bf16(w, P("mlp.up_proj.weight"), F, E, &seed);
            put_bf16(w, P("mlp.down_proj.weight"), E, F, &seed);
            continue;
        }
        put_bf16(w, P("mlp.gate.weight"), X, E, &seed);
        for (int64_t x = 0; x < X; x++) {
            snprintf(n, sizeof n, "model.layers.%lld.mlp.experts.%lld.gate_proj.weight", (long long)l, (long long)x);
            put_bf16(w, n, Fe, E, &seed);
            snprintf(n, sizeof n, "model.layers.%lld.mlp.experts.%lld.up_proj.weight", (long long)l, (long long)x);
            put_bf16(w, n, Fe, E, &seed);
            snprintf(n, sizeof n, "model.layers.%lld.mlp.experts.%lld.down_proj.weight", (long long)l, (long long)x);
            put_bf16(w, n, E, Fe, &seed);
        }
        put_bf16(w, P("mlp.shared_experts.gate_proj.weight"), Fe, E, &seed);
        put_bf16(w, P("mlp.shared_experts.up_proj.weight"), Fe, E, &seed);
        put_bf16(w, P("mlp.shared_experts.down_proj.weight"), E, Fe, &seed);
#undef P
    }
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    TU_OK(st_writer_write(w, p, &e), &e);
    st_writer_free(w);
    const char *out = tpath("v2.gguf");
    TU_OK(convert(dir, out, "F32", 0, false, 0, false, &e), &e);
    gf_file *g;
    if (gf_open(&g, out, &e) == QX_OK) {
        expect_u32(g, "deepseek2.expert_gating_func", 1);
        TU_CHECK(!gf_find_kv(g, "deepseek2.attention.q_lora_rank"), "q_lora_rank written for a V2 checkpoint");
        /* n_group 1 / topk_group 1 in config.json: written as convert_hf_to_gguf.py does (the
         * loader accepts a count of 1); no norm key (norm_topk_prob false) */
        expect_u32(g, "deepseek2.expert_group_count", 1);
        expect_u32(g, "deepseek2.expert_group_used_count", 1);
        TU_CHECK(!gf_find_kv(g, "deepseek2.expert_weights_norm"), "expert_weights_norm written while false");
        TU_CHECK(gf_find_tensor(g, "blk.0.attn_q.weight") && !gf_find_tensor(g, "blk.0.attn_q_a.weight"), "V2: attn_q expected");
        TU_CHECK(!gf_find_tensor(g, "blk.1.exp_probs_b.bias"), "V2 has no exp_probs_b");
        gf_close(g);
        arch_info a = {0};
        a.H = H; a.N = N; a.Dv = Dv; a.KVL = KVL;
        int nchk = check_values(dir, out, &a);
        TU_CHECK(nchk > 20, "V2: %d tensors checked", nchk);
    }
    unlink(out);
}

/* Requantizing an F32 GGUF gives the same tensor bytes as converting directly. */
static void test_quantize_equals_convert(const char *dir) {
    qx_err e;
    const char *f32 = tpath("q-f32.gguf"), *direct = tpath("q-direct.gguf"), *req = tpath("q-req.gguf");
    TU_OK(convert(dir, f32, "F32", 0, false, 0, false, &e), &e);
    TU_OK(convert(dir, direct, "Q3_K_M", 0, false, 0, false, &e), &e);
    cv_params p;
    cv_default_params(&p);
    p.preset = "Q3_K_M";
    cv_plan *pl;
    TU_OK(cv_plan_from_gguf(&pl, f32, &p, &e), &e);
    if (pl) {
        TU_OK(cv_execute(pl, req, &p, NULL, &e), &e);
        cv_plan_free(pl);
    }
    gf_file *a, *b;
    if (gf_open(&a, direct, &e) == QX_OK && gf_open(&b, req, &e) == QX_OK) {
        TU_CHECK(gf_tensor_count(a) == gf_tensor_count(b), "tensor counts differ");
        for (size_t i = 0; i < gf_tensor_count(a) && i < gf_tensor_count(b); i++) {
            const gf_tensor *x = gf_tensor_at(a, i), *y = gf_tensor_at(b, i);
            TU_CHECK(!strcmp(x->name, y->name) && x->type == y->type && x->nbytes == y->nbytes && !memcmp(x->data, y->data, x->nbytes),
                     "tensor %s differs between quantize and convert", x->name);
        }
        uint32_t ft;
        TU_OK(gf_get_u32(b, "general.file_type", &ft, &e), &e);
        TU_CHECK(ft == 12, "file_type %u, want 12 (Q3_K_M)", ft);
        TU_OK(gf_verify_checksums(b, NULL, &e), &e);
        gf_close(a);
        gf_close(b);
    }
    unlink(f32);
    unlink(direct);
    unlink(req);
}

static void test_dense(const char *dir, const char *tag, bool llama, const char *preset) {
    qx_err e;
    json_t *c = load_config(dir);
    arch_info a = {0};
    a.llama = llama;
    a.heads = (int64_t)jnum(c, "num_attention_heads");
    a.kv_heads = (int64_t)jnum(c, "num_key_value_heads");
    a.head_dim = (int64_t)jnum(c, "hidden_size") / a.heads;
    a.tied = json_is_true(json_object_get(c, "tie_word_embeddings"));
    json_t *rs = json_object_get(c, "rope_scaling");
    bool llama3 = rs && json_object_get(rs, "rope_type") && !strcmp(json_string_value(json_object_get(rs, "rope_type")), "llama3");
    char name[128];
    snprintf(name, sizeof name, "%s-%s.gguf", tag, preset);
    const char *out = tpath(name);
    TU_OK(convert(dir, out, preset, 0, false, 0, false, &e), &e);
    gf_file *g;
    if (gf_open(&g, out, &e) == QX_OK) {
        const char *s;
        TU_OK(gf_get_str(g, "general.architecture", &s, &e), &e);
        TU_CHECK(!strcmp(s, llama ? "llama" : "qwen2"), "arch %s", s);
        char k[96];
        snprintf(k, sizeof k, "%s.attention.head_count_kv", llama ? "llama" : "qwen2");
        expect_u32(g, k, (uint32_t)a.kv_heads);
        snprintf(k, sizeof k, "%s.block_count", llama ? "llama" : "qwen2");
        expect_u32(g, k, (uint32_t)jnum(c, "num_hidden_layers"));
        TU_CHECK((gf_find_tensor(g, "output.weight") == NULL) == a.tied, "output.weight presence vs tie_word_embeddings");
        /* convert_hf_to_gguf.py writes key/value_length whenever its hparams have head_dim:
         * always for llama (transformers' LlamaConfig fills it in: mini-llama's file from
         * llama.cpp has 32 = 256 / 8), for qwen2 only when config.json has it */
        snprintf(k, sizeof k, "%s.attention.key_length", llama ? "llama" : "qwen2");
        if (json_object_get(c, "head_dim") || llama) {
            expect_u32(g, k, (uint32_t)a.head_dim);
            snprintf(k, sizeof k, "%s.attention.value_length", llama ? "llama" : "qwen2");
            expect_u32(g, k, (uint32_t)a.head_dim);
        } else {
            TU_CHECK(!gf_find_kv(g, k), "%s written without head_dim", k);
        }
        TU_CHECK((gf_find_tensor(g, "blk.0.attn_q.bias") != NULL) == !llama, "qkv bias presence");
        const gf_tensor *rf = gf_find_tensor(g, "rope_freqs.weight");
        TU_CHECK((rf != NULL) == llama3, "rope_freqs presence (llama3 scaling %d)", llama3);
        if (rf) {
            /* llama3: factor 1 for short wavelengths, `factor` for long ones (independent formula) */
            double base = jnum(c, "rope_theta"), factor = jnum(rs, "factor"), old = jnum(rs, "original_max_position_embeddings");
            double lo = jnum(rs, "low_freq_factor"), hi = jnum(rs, "high_freq_factor");
            const float *v = (const float *)(const void *)rf->data;
            for (int64_t i = 0; i < rf->ne[0]; i++) {
                double wl = 2 * M_PI * pow(base, 2.0 * i / (double)a.head_dim);
                double want = wl < old / hi ? 1.0 : wl > old / lo ? factor : 1.0 / ((1 - (old / wl - lo) / (hi - lo)) / factor + (old / wl - lo) / (hi - lo));
                TU_NEAR(v[i], want, 1e-4 * want, "rope_freqs[%lld] %g want %g", (long long)i, v[i], want);
            }
            /* bit for bit what convert_hf_to_gguf.py wrote for tiny-llama and mini-llama (head_dim
             * 32, theta 5e5, factor 8, low/high 1/4, original context 256); its float32 rounding
             * differs from the formula in double in the last bit of element 4 */
            static const uint32_t llama_cpp[16] = {0x3f800000, 0x3f800000, 0x3f800000, 0x3f96ea6b, 0x406462db, 0x41000000,
                0x41000000, 0x41000000, 0x41000000, 0x41000000, 0x41000000, 0x41000000, 0x41000000, 0x41000000, 0x41000000, 0x41000000};
            if (a.head_dim == 32 && base == 500000 && factor == 8 && old == 256 && lo == 1 && hi == 4 && rf->ne[0] == 16)
                for (int i = 0; i < 16; i++) {
                    uint32_t bits;
                    memcpy(&bits, &v[i], 4);
                    TU_CHECK(bits == llama_cpp[i], "rope_freqs[%d] = 0x%08x, llama.cpp wrote 0x%08x", i, bits, llama_cpp[i]);
                }
        }
        const char *pre;
        TU_OK(gf_get_str(g, "tokenizer.ggml.pre", &pre, &e), &e);
        check_hf_unk(dir, g);
        char gp[1200];
        snprintf(gp, sizeof gp, "%s/generation_config.json", dir);
        json_error_t je;
        json_t *gen = json_load_file(gp, 0, &je);
        json_t *temp = json_object_get(gen, "temperature"), *top_p = json_object_get(gen, "top_p");
        if (temp) expect_f32(g, "general.sampling.temp", json_number_value(temp));
        else TU_CHECK(!gf_find_kv(g, "general.sampling.temp"), "general.sampling.temp without generation_config.json");
        if (top_p) expect_f32(g, "general.sampling.top_p", json_number_value(top_p));
        json_decref(gen);
        TU_OK(gf_verify_checksums(g, NULL, &e), &e);
        gf_close(g);
    }
    int n = check_values(dir, out, &a);
    TU_CHECK(n >= 10, "%s: only %d tensors checked", out, n);
    unlink(out);
    json_decref(c);
}

/* generation_config.json -> general.sampling.* with gguf-py's types (metadata.py,
 * gguf_writer.add_sampling_*): i32 top_k / penalty_last_n / mirostat, string sequence, f32 the
 * rest; null, a missing key or a wrong type writes nothing (convert_hf_to_gguf.py wrote temp
 * 0.6 and top_p 0.95 from mini-llama's file; the fixtures are checked in test_dense).  A
 * generation_config.json that is not JSON is ignored, as llama.cpp ignores it. */
static void test_sampling(const char *synth_dir) {
    char dir[1200], p[1300];
    snprintf(dir, sizeof dir, "%s", tpath("sampling"));
    tu_system("rm -rf '%s' && cp -r '%s' '%s'", dir, synth_dir, dir);
    snprintf(p, sizeof p, "%s/generation_config.json", dir);
    static const char gen[] = "{\"temperature\": 0.7, \"top_k\": 20, \"top_p\": 0.8, \"min_p\": 0, \"xtc_probability\": 0.5,"
        " \"xtc_threshold\": 0.1, \"penalty_last_n\": 64, \"penalty_repeat\": 1.05, \"mirostat\": 2, \"mirostat_tau\": 5,"
        " \"mirostat_eta\": 0.1, \"sequence\": \"top_k;temp\", \"do_sample\": true}";
    static const char partial[] = "{\"temperature\": null, \"top_k\": 2.5, \"top_p\": \"0.9\", \"mirostat\": 4294967296}";
    static const struct { const char *key; gf_type type; double v; } want[] = {
        {"general.sampling.temp", GF_F32, 0.7}, {"general.sampling.top_k", GF_I32, 20}, {"general.sampling.top_p", GF_F32, 0.8},
        {"general.sampling.min_p", GF_F32, 0}, {"general.sampling.xtc_probability", GF_F32, 0.5},
        {"general.sampling.xtc_threshold", GF_F32, 0.1}, {"general.sampling.penalty_last_n", GF_I32, 64},
        {"general.sampling.penalty_repeat", GF_F32, 1.05}, {"general.sampling.mirostat", GF_I32, 2},
        {"general.sampling.mirostat_tau", GF_F32, 5}, {"general.sampling.mirostat_eta", GF_F32, 0.1},
        {"general.sampling.sequence", GF_STRING, 0},
    };
    const char *texts[3] = {gen, partial, "not json"};
    for (int k = 0; k < 3; k++) {
        TU_CHECK(tu_write_file(p, texts[k], strlen(texts[k])) == 0, "writing %s", p);
        qx_err e;
        const char *out = tpath("sampling.gguf");
        TU_OK(convert(dir, out, "F32", 1, false, 0, false, &e), &e);
        gf_file *g;
        if (gf_open(&g, out, &e) != QX_OK) { TU_CHECK(0, "%s: %s", out, e.msg); continue; }
        for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
            const gf_kv *kv = gf_find_kv(g, want[i].key);
            if (k > 0) { TU_CHECK(!kv, "%s written from '%s'", want[i].key, texts[k]); continue; }
            TU_CHECK(kv && kv->type == want[i].type, "%s: %s, want type %s", want[i].key, kv ? gf_type_name(kv->type) : "missing",
                     gf_type_name(want[i].type));
            if (!kv || kv->type != want[i].type) continue;
            if (want[i].type == GF_F32) TU_CHECK(kv->v.f32 == (float)want[i].v, "%s = %g, want %g", want[i].key, kv->v.f32, want[i].v);
            if (want[i].type == GF_I32) TU_CHECK(kv->v.i32 == (int32_t)want[i].v, "%s = %d", want[i].key, kv->v.i32);
            if (want[i].type == GF_STRING) TU_CHECK(!strcmp(kv->str, "top_k;temp"), "%s = '%s'", want[i].key, kv->str);
        }
        gf_close(g);
        unlink(out);
    }
    tu_system("rm -rf '%s'", dir);
}

/* 671B: the plan alone (sparse synth); tensor bytes vs llama-quantize --dry-run (§11). */
static void test_671b_dry_run(void) {
    qx_err e;
    const char *dir = tpath("v3-671b");
    TU_OK(st_synth("v3-671b", dir, 1, true, 0, &e), &e);
    static const struct { const char *p; double mib; } ref[] = {
        {"Q4_K_M", 385750.62}};
    for (size_t i = 0; i < sizeof ref / sizeof ref[0]; i++) {
        cv_params p;
        cv_default_params(&p);
        p.preset = ref[i].p;
        cv_plan *pl;
        double t0 = qx_now();
        TU_OK(cv_plan_create(&pl, dir, &p, &e), &e);
        if (!pl) continue;
        double mib = cv_plan_tensor_bytes(pl) / 1048576.0;
        TU_NEAR(mib, ref[i].mib, 0.02 * ref[i].mib, "%s: %.2f MiB vs llama.cpp %.2f MiB", ref[i].p, mib, ref[i].mib);
        TU_CHECK(cv_plan_tensor_count(pl) == 1086, "%zu tensors, want 1086", cv_plan_tensor_count(pl));
        TU_CHECK(cv_plan_fallback_count(pl) == 61, "%zu fallbacks, want 61", cv_plan_fallback_count(pl));
        fprintf(stderr, "  671B %-7s %.2f MiB (llama.cpp %.2f), planned in %.1f s\n", ref[i].p, mib, ref[i].mib, qx_now() - t0);
        cv_plan_free(pl);
    }
    for (int k = 0; k < (TC_ASAN ? 0 : 1); k++) {   /* the bigger DS mix (DS-Q2_K_XL is ~232 GB, see README) */
        cv_params p;
        cv_default_params(&p);
        p.preset = "DS-Q3_K_XL";
        cv_plan *pl;
        TU_OK(cv_plan_create(&pl, dir, &p, &e), &e);
        if (!pl) continue;
        double gb = cv_plan_file_size(pl) / 1e9;
        TU_CHECK(gb >= 200 && gb <= 250, "%s: %.1f GB outside the 200-250 GB class", p.preset, gb);
        cv_plan_free(pl);
    }
    tu_system("rm -rf '%s'", dir);
}

int main(void) {
    snprintf(tmp, sizeof tmp, "%s", tu_tmpdir());
    qx_err e;
    char tv3[1200], tl[1200], tq[1200];
    snprintf(tv3, sizeof tv3, "%s", tpath("tiny-v3"));
    snprintf(tl, sizeof tl, "%s", tpath("tiny-llama"));
    snprintf(tq, sizeof tq, "%s", tpath("tiny-qwen2"));
    TU_OK(st_synth("tiny-v3", tv3, 7, false, 0, &e), &e);
    TU_OK(st_synth("tiny-llama", tl, 7, false, 0, &e), &e);
    TU_OK(st_synth("tiny-qwen2", tq, 7, false, 0, &e), &e);
    static const char *const all[] = {"F32", "F16", "BF16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_K_S", "Q3_K_M", "Q2_K", "DS-Q2_K_XL"};
    double t0 = qx_now();
#define LAP(what) do { fprintf(stderr, "  [%5.1f s] %s\n", qx_now() - t0, what); t0 = qx_now(); } while (0)
    static const char *const two[] = {"F32", "Q4_K_M"};
    test_deepseek(tv3, "tiny-v3", two, 2);
    LAP("tiny-v3");
    test_mtp_and_determinism(tv3);
    LAP("mtp, threads, resume");
    test_quantize_equals_convert(tv3);
    LAP("quantize");
    test_imatrix(tv3);
    test_overrides(tv3);
    test_v2(tv3);
    LAP("imatrix, overrides");
    test_dense(tl, "tiny-llama", true, "F32");
    test_dense(tl, "tiny-llama", true, "Q4_K_M");
    test_dense(tq, "tiny-qwen2", false, "F32");
    test_dense(tq, "tiny-qwen2", false, "Q5_K_M");
    test_sampling(tl);
    LAP("tiny dense");
    test_671b_dry_run();
    LAP("671B dry-run");
    if (tu_shared_dir()) {
        char v3[1024], ml[1024], mq[1024];
        snprintf(v3, sizeof v3, "%s", tu_shared_path("models/mini-v3"));
        snprintf(ml, sizeof ml, "%s", tu_shared_path("models/mini-llama"));
        snprintf(mq, sizeof mq, "%s", tu_shared_path("models/mini-qwen2"));
        static const char *const few[] = {"F32", "Q8_0", "Q4_K_M", "Q2_K"};
        if (TC_ASAN) test_deepseek(v3, "mini-v3", few, 4);
        else test_deepseek(v3, "mini-v3", all, (int)(sizeof all / sizeof all[0]));
        LAP("mini-v3 all presets");
        test_dense(ml, "mini-llama", true, "F32");
        test_dense(ml, "mini-llama", true, "Q4_K_M");
        test_dense(mq, "mini-qwen2", false, "Q8_0");
        LAP("mini-llama/qwen2");
    } else {
        fprintf(stderr, "note: ../shared absent: mini-v3/mini-llama/mini-qwen2 checks skipped\n");
    }
    return tu_done("test_convert");
}
