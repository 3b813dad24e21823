/* convert/recipe.c — the type of every output tensor: presets (llama-quantize's per-tensor
 * rules for its ftypes, ../shared/GGUF-DEEPSEEK2.md §10, and DeepSeek-aware rule tables),
 * --tensor-type REGEX=TYPE overrides (POSIX ERE, lower-cased, searched in the full name,
 * first match wins), --output-tensor-type / --token-embedding-type, --pure, and the
 * row-length fallback.  Shared by `qforge convert` and `qforge quantize`.
 *
 * To add a preset: a cv_rule table (first match wins; moe_first > 0 limits a rule to the
 * first moe_first MoE blocks) and one line in `presets`. */
#include "cv_internal.h"

#include <ctype.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* llama_ftype numbers (general.file_type). */
enum { FT_F32 = 0, FT_F16 = 1, FT_Q8_0 = 7, FT_Q2_K = 10, FT_Q3_K_S = 11, FT_Q3_K_M = 12, FT_Q3_K_L = 13,
       FT_Q4_K_S = 14, FT_Q4_K_M = 15, FT_Q5_K_S = 16, FT_Q5_K_M = 17, FT_Q6_K = 18, FT_Q2_K_S = 21,
       FT_IQ2_XXS = 19, FT_IQ2_XS = 20, FT_IQ3_XXS = 23, FT_IQ1_S = 24, FT_IQ3_S = 26, FT_IQ3_M = 27,
       FT_IQ2_S = 28, FT_IQ2_M = 29, FT_IQ1_M = 31, FT_BF16 = 32, FT_MXFP4_MOE = 38 };

typedef struct {
    const char *re;      /* POSIX ERE over the GGUF name */
    qt_type type;
    int moe_first;       /* > 0: only blocks [n_dense, n_dense + moe_first) */
} cv_rule;

typedef struct {
    const char *name;
    uint32_t ftype;
    qt_type def;
    bool llama;          /* llama-quantize's rules for this ftype */
    const cv_rule *rules;  /* else: this table, then def */
} cv_preset;

/* DeepSeek-V3/R1 mixes for the 200-250 GB class: routed experts low-bit (96.6% of the bytes),
 * everything that every token passes through kept high. */
static const cv_rule ds_q2_k_xl[] = {
    {"^token_embd\\.weight$", QT_Q6_K, 0},
    {"^output\\.weight$", QT_Q6_K, 0},
    {"ffn_down_exps\\.weight$", QT_Q4_K, 3},
    {"_exps\\.weight$", QT_Q2_K, 0},
    {"_shexp\\.weight$", QT_Q6_K, 0},
    {"ffn_(gate|up|down)\\.weight$", QT_Q6_K, 0},
    {"attn_k_b\\.weight$", QT_Q8_0, 0},
    {"attn_", QT_Q6_K, 0},
    {"", QT_Q6_K, 0},
    {NULL, 0, 0},
};
static const cv_rule ds_q3_k_xl[] = {
    {"^token_embd\\.weight$", QT_Q4_K, 0},
    {"^output\\.weight$", QT_Q6_K, 0},
    {"ffn_down_exps\\.weight$", QT_Q4_K, 1},
    {"ffn_down_exps\\.weight$", QT_Q3_K, 0},
    {"_exps\\.weight$", QT_Q2_K, 0},
    {"_shexp\\.weight$", QT_Q6_K, 0},
    {"ffn_(gate|up|down)\\.weight$", QT_Q5_K, 0},
    {"attn_k_b\\.weight$", QT_Q8_0, 0},
    {"attn_(v_b|kv_a_mqa)\\.weight$", QT_Q6_K, 0},
    {"attn_", QT_Q5_K, 0},
    {"", QT_Q6_K, 0},
    {NULL, 0, 0},
};

/* DeepSeek-V3/R1 dynamic mixes for the 130-215 GiB class, named by their routed-expert bits
 * (unsloth-dynamic style: attention, dense FFNs, shared experts, the first MoE blocks'
 * ffn_down_exps, embeddings and output at 4-8 bits; routed experts at IQ1/IQ2/Q2_K).  For the
 * 671B checkpoint: DS-1.58 ~131 GiB, DS-1.73 ~158, DS-2.2 ~183, DS-2.5 ~212 (README). */
static const cv_rule ds_1_58[] = {
    {"^token_embd\\.weight$", QT_Q4_K, 0},
    {"^output\\.weight$", QT_Q6_K, 0},
    {"ffn_down_exps\\.weight$", QT_IQ2_XXS, 3},
    {"_exps\\.weight$", QT_IQ1_S, 0},
    {"_shexp\\.weight$", QT_Q6_K, 0},
    {"ffn_(gate|up|down)\\.weight$", QT_Q4_K, 0},
    {"attn_k_b\\.weight$", QT_Q8_0, 0},
    {"attn_(v_b|kv_a_mqa)\\.weight$", QT_Q6_K, 0},
    {"attn_output\\.weight$", QT_Q5_K, 0},
    {"attn_", QT_Q4_K, 0},
    {"", QT_Q6_K, 0},
    {NULL, 0, 0},
};
static const cv_rule ds_1_73[] = {
    {"^token_embd\\.weight$", QT_Q6_K, 0},
    {"^output\\.weight$", QT_Q6_K, 0},
    {"ffn_down_exps\\.weight$", QT_Q4_K, 3},
    {"ffn_down_exps\\.weight$", QT_IQ2_XXS, 0},
    {"_exps\\.weight$", QT_IQ1_M, 0},
    {"_shexp\\.weight$", QT_Q6_K, 0},
    {"ffn_(gate|up|down)\\.weight$", QT_Q6_K, 0},
    {"attn_k_b\\.weight$", QT_Q8_0, 0},
    {"attn_(v_b|kv_a_mqa)\\.weight$", QT_Q6_K, 0},
    {"attn_", QT_Q6_K, 0},
    {"", QT_Q6_K, 0},
    {NULL, 0, 0},
};
static const cv_rule ds_2_2[] = {
    {"^token_embd\\.weight$", QT_Q4_K, 0},
    {"^output\\.weight$", QT_Q6_K, 0},
    {"ffn_down_exps\\.weight$", QT_Q3_K, 3},
    {"ffn_down_exps\\.weight$", QT_Q2_K, 0},
    {"_exps\\.weight$", QT_IQ2_XXS, 0},
    {"_shexp\\.weight$", QT_Q6_K, 0},
    {"ffn_(gate|up|down)\\.weight$", QT_Q5_K, 0},
    {"attn_k_b\\.weight$", QT_Q8_0, 0},
    {"attn_(v_b|kv_a_mqa)\\.weight$", QT_Q6_K, 0},
    {"attn_output\\.weight$", QT_Q4_K, 0},
    {"attn_", QT_Q5_K, 0},
    {"", QT_Q6_K, 0},
    {NULL, 0, 0},
};
static const cv_rule ds_2_5[] = {
    {"^token_embd\\.weight$", QT_Q4_K, 0},
    {"^output\\.weight$", QT_Q6_K, 0},
    {"ffn_down_exps\\.weight$", QT_Q3_K, 3},
    {"_exps\\.weight$", QT_Q2_K, 0},
    {"_shexp\\.weight$", QT_Q6_K, 0},
    {"ffn_(gate|up|down)\\.weight$", QT_Q5_K, 0},
    {"attn_k_b\\.weight$", QT_Q8_0, 0},
    {"attn_(v_b|kv_a_mqa)\\.weight$", QT_Q6_K, 0},
    {"attn_", QT_Q5_K, 0},
    {"", QT_Q6_K, 0},
    {NULL, 0, 0},
};

static const cv_preset presets[] = {
    {"F32", FT_F32, QT_F32, false, NULL},
    {"F16", FT_F16, QT_F16, false, NULL},
    {"BF16", FT_BF16, QT_BF16, false, NULL},
    {"Q8_0", FT_Q8_0, QT_Q8_0, true, NULL},
    {"Q6_K", FT_Q6_K, QT_Q6_K, true, NULL},
    {"Q5_K_M", FT_Q5_K_M, QT_Q5_K, true, NULL},
    {"Q5_K_S", FT_Q5_K_S, QT_Q5_K, true, NULL},
    {"Q4_K_M", FT_Q4_K_M, QT_Q4_K, true, NULL},
    {"Q4_K_S", FT_Q4_K_S, QT_Q4_K, true, NULL},
    {"Q3_K_M", FT_Q3_K_M, QT_Q3_K, true, NULL},
    {"Q2_K", FT_Q2_K, QT_Q2_K, true, NULL},
    {"Q2_K_S", FT_Q2_K_S, QT_Q2_K, true, NULL},
    {"IQ3_M", FT_IQ3_M, QT_IQ3_S, true, NULL},
    {"IQ3_S", FT_IQ3_S, QT_IQ3_S, true, NULL},
    {"IQ3_XXS", FT_IQ3_XXS, QT_IQ3_XXS, true, NULL},
    {"IQ2_M", FT_IQ2_M, QT_IQ2_S, true, NULL},
    {"IQ2_S", FT_IQ2_S, QT_IQ2_XS, true, NULL},     /* llama.cpp: the IQ2_S ftype's default is IQ2_XS */
    {"IQ2_XS", FT_IQ2_XS, QT_IQ2_XS, true, NULL},
    {"IQ2_XXS", FT_IQ2_XXS, QT_IQ2_XXS, true, NULL},
    {"IQ1_M", FT_IQ1_M, QT_IQ1_M, true, NULL},
    {"IQ1_S", FT_IQ1_S, QT_IQ1_S, true, NULL},
    {"MXFP4_MOE", FT_MXFP4_MOE, QT_Q8_0, true, NULL},   /* llama.cpp: experts MXFP4, every other matrix Q8_0 */
    {"DS-Q2_K_XL", FT_Q2_K, QT_Q2_K, false, ds_q2_k_xl},
    {"DS-Q3_K_XL", FT_Q3_K_M, QT_Q3_K, false, ds_q3_k_xl},
    {"DS-2.5", FT_Q2_K, QT_Q2_K, false, ds_2_5},
    {"DS-2.2", FT_IQ2_XXS, QT_IQ2_XXS, false, ds_2_2},
    {"DS-1.73", FT_IQ1_M, QT_IQ1_M, false, ds_1_73},
    {"DS-1.58", FT_IQ1_S, QT_IQ1_S, false, ds_1_58},
};

const char *cv_preset_names(void) {
    return "F32, F16, BF16, Q8_0, Q6_K, Q5_K_M, Q5_K_S, Q4_K_M, Q4_K_S, Q3_K_M, Q2_K, Q2_K_S, "
           "IQ3_M, IQ3_S, IQ3_XXS, IQ2_M, IQ2_S, IQ2_XS, IQ2_XXS, IQ1_M, IQ1_S (imatrix), MXFP4_MOE, "
           "DS-Q2_K_XL, DS-Q3_K_XL, DS-2.5, DS-2.2, DS-1.73, DS-1.58 (imatrix), or a bare type (Q4_K, Q8_0, ...: every quantizable tensor at it)";
}

size_t cv_preset_describe(const char *preset, char *buf, size_t cap) {
    const cv_preset *pr = NULL;
    for (size_t i = 0; preset && i < sizeof presets / sizeof presets[0]; i++)
        if (!strcasecmp(presets[i].name, preset)) pr = &presets[i];
    if (!pr) return 0;
    size_t k = 0;
#define PUT(...) do { int n_ = snprintf(buf ? buf + (k < cap ? k : cap) : NULL, k < cap ? cap - k : 0, __VA_ARGS__); \
                      if (n_ > 0) k += (size_t)n_; } while (0)
    if (pr->rules) {
        PUT("preset %s: rule table (GGUF name regex -> type; first match wins; row-length fallback after)\n", pr->name);
        for (const cv_rule *ru = pr->rules; ru->re; ru++) {
            char scope[48] = "";
            if (ru->moe_first > 0) snprintf(scope, sizeof scope, "  [first %d MoE blocks]", ru->moe_first);
            PUT("  %-34s -> %-7s%s\n", *ru->re ? ru->re : "(any other)", qt_type_name(ru->type), scope);
        }
    } else if (pr->llama) {
        PUT("preset %s: llama-quantize's per-tensor rules for ftype %u (default type %s)\n", pr->name, pr->ftype,
            qt_type_name(pr->def));
    } else {
        PUT("preset %s: every quantizable tensor at %s\n", pr->name, qt_type_name(pr->def));
    }
#undef PUT
    return k;
}

typedef struct {
    regex_t re;
    qt_type type;
    int moe_first;
} rule_rx;

struct cv_recipe {
    cv_preset preset;         /* copy; for a bare type: llama false, rules NULL */
    char name[32];
    rule_rx *user;            /* --tensor-type */
    int n_user;
    rule_rx *table;           /* compiled preset rules */
    int n_table;
    bool pure, llama_types, has_out_type, has_embd_type;
    qt_type out_type, embd_type;
    /* llama-quantize's counters */
    int i_attention_wv, n_attention_wv, i_ffn_down;
    bool has_im;              /* an imatrix was given (llama.cpp's IQ3_XXS rules depend on it) */
};

static bool is_quantized(qt_type t) {
    const qt_traits *tr = qt_get_traits(t);
    return tr && tr->quantized;
}

static qx_status compile(regex_t *re, const char *pattern, const char *what, qx_err *e) {
    char low[512];
    size_t n = strlen(pattern);
    if (n >= sizeof low) return qx_fail(e, QX_EINVAL, "%s: pattern too long", what);
    for (size_t i = 0; i <= n; i++) low[i] = (char)tolower((unsigned char)pattern[i]);
    int rc = regcomp(re, low, REG_EXTENDED | REG_NOSUB);
    if (rc != 0) {
        char msg[128];
        regerror(rc, re, msg, sizeof msg);
        return qx_fail(e, QX_EINVAL, "%s: bad regular expression '%s': %s", what, pattern, msg);
    }
    return QX_OK;
}

static qx_status parse_type(const char *s, const char *what, qt_type *out, qx_err *e) {
    if (!qt_type_from_name(s, out) || *out >= QT_GGUF_COUNT || qt_row_size(*out, 256) == 0)
        return qx_fail(e, QX_EINVAL, "%s: unknown or unsupported tensor type '%s'", what, s);
    const qt_traits *tr = qt_get_traits(*out);
    if (!tr || !tr->from_float) {
        tr = qt_iq_traits(*out);
        if (!tr || !tr->from_float) return qx_fail(e, QX_EINVAL, "%s: type '%s' cannot be quantized to", what, s);
    }
    return QX_OK;
}

void cv_recipe_free(cv_recipe *r) {
    if (!r) return;
    for (int i = 0; i < r->n_user; i++) regfree(&r->user[i].re);
    for (int i = 0; i < r->n_table; i++) regfree(&r->table[i].re);
    free(r->user);
    free(r->table);
    free(r);
}

qx_status cv_recipe_create(cv_recipe **out, const cv_params *p, qx_err *e) {
    *out = NULL;
    const char *pname = p->preset ? p->preset : "Q4_K_M";
    cv_recipe *r = calloc(1, sizeof *r);
    if (!r) return qx_fail(e, QX_ENOMEM, "out of memory");
    const cv_preset *pr = NULL;
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (!strcasecmp(presets[i].name, pname)) pr = &presets[i];
    qx_status s = QX_OK;
    if (pr) {
        r->preset = *pr;
    } else {
        qt_type t;
        if (!qt_type_from_name(pname, &t) || parse_type(pname, "--type", &t, e) != QX_OK) {
            cv_recipe_free(r);
            return qx_fail(e, QX_EINVAL, "unknown preset '%s' (known: %s)", pname, cv_preset_names());
        }
        r->preset = (cv_preset){NULL, 0, t, false, NULL};
        r->pure = true;
        /* llama_ftype of a bare type: the closest "MOSTLY_" value */
        static const struct { qt_type t; uint32_t ft; } ft[] = {
            {QT_F32, 0}, {QT_F16, 1}, {QT_Q4_0, 2}, {QT_Q4_1, 3}, {QT_Q8_0, 7}, {QT_Q5_0, 8}, {QT_Q5_1, 9},
            {QT_Q2_K, 10}, {QT_Q3_K, 12}, {QT_Q4_K, 15}, {QT_Q5_K, 17}, {QT_Q6_K, 18}, {QT_IQ2_XXS, 19},
            {QT_IQ2_XS, 20}, {QT_IQ3_XXS, 23}, {QT_IQ1_S, 24}, {QT_IQ4_NL, 25}, {QT_IQ3_S, 26},
            {QT_IQ2_S, 28}, {QT_IQ4_XS, 30}, {QT_IQ1_M, 31}, {QT_BF16, 32}};
        for (size_t i = 0; i < sizeof ft / sizeof ft[0]; i++)
            if (ft[i].t == t) r->preset.ftype = ft[i].ft;
    }
    snprintf(r->name, sizeof r->name, "%s", pr ? pr->name : qt_type_name(r->preset.def));
    r->pure = r->pure || p->pure;
    r->llama_types = p->llama_types;
    if (r->preset.rules) {
        int n = 0;
        while (r->preset.rules[n].re) n++;
        r->table = calloc((size_t)n + 1, sizeof *r->table);
        if (!r->table) s = qx_fail(e, QX_ENOMEM, "out of memory");
        for (int i = 0; s == QX_OK && i < n; i++) {
            s = compile(&r->table[i].re, r->preset.rules[i].re, r->name, e);
            if (s == QX_OK) {
                r->table[i].type = r->preset.rules[i].type;
                r->table[i].moe_first = r->preset.rules[i].moe_first;
                r->n_table++;
            }
        }
    }
    if (s == QX_OK && p->n_tensor_types > 0) {
        r->user = calloc((size_t)p->n_tensor_types, sizeof *r->user);
        if (!r->user) s = qx_fail(e, QX_ENOMEM, "out of memory");
    }
    for (int i = 0; s == QX_OK && i < p->n_tensor_types; i++) {
        const char *arg = p->tensor_types[i];
        const char *eq = strrchr(arg, '=');
        if (!eq || eq == arg || !eq[1]) { s = qx_fail(e, QX_EINVAL, "--tensor-type '%s': expected REGEX=TYPE", arg); break; }
        char pat[512];
        if ((size_t)(eq - arg) >= sizeof pat) { s = qx_fail(e, QX_EINVAL, "--tensor-type '%s': pattern too long", arg); break; }
        memcpy(pat, arg, (size_t)(eq - arg));
        pat[eq - arg] = 0;
        s = parse_type(eq + 1, "--tensor-type", &r->user[i].type, e);
        if (s == QX_OK) s = compile(&r->user[i].re, pat, "--tensor-type", e);
        if (s == QX_OK) r->n_user++;
    }
    if (s == QX_OK && p->output_tensor_type) {
        s = parse_type(p->output_tensor_type, "--output-tensor-type", &r->out_type, e);
        r->has_out_type = true;
    }
    if (s == QX_OK && p->token_embedding_type) {
        s = parse_type(p->token_embedding_type, "--token-embedding-type", &r->embd_type, e);
        r->has_embd_type = true;
    }
    if (s != QX_OK) { cv_recipe_free(r); return s; }
    *out = r;
    return QX_OK;
}

uint32_t cv_recipe_ftype(const cv_recipe *r) { return r->preset.ftype; }
const char *cv_recipe_name(const cv_recipe *r) { return r->name; }

bool cv_quantizable(const char *name, int n_dims) {
    if (n_dims < 2) return false;
    if (!qx_ends_with(name, "weight")) return false;
    if (strstr(name, "_norm.weight")) return false;
    if (strstr(name, "ffn_gate_inp.weight")) return false;
    if (strstr(name, "ffn_gate_tid2eid.weight")) return false;   /* deepseek4's I32 token -> expert table */
    return true;
}

/* DeepSeek-V4's small tensors on every token's path, whatever the preset: the hyper-connection
 * mixers (hc_*, output_hc_*: a few MB, F32 in the checkpoint), the compressors' position biases
 * (*_ape) and the indexer's head weights (indexer.proj, which llama.cpp's converter writes F32)
 * stay F32; the compressors' kv/gate and the indexer's query projection are at least Q8_0 (the
 * preset's own type when that is a float type).  An MTP-only file's nextn.eh_proj is Q8_0 in
 * every preset, float ones included, as llama.cpp's converter forces it (tensor_force_quant).
 * Returns t unchanged for other tensors. */
static qt_type v4_protect(const char *name, qt_type t) {
    if (strstr(name, "nextn.eh_proj.weight")) return QT_Q8_0;
    if (strstr(name, "hc_") || strstr(name, "_ape.weight") || strstr(name, "indexer.proj.weight")) return QT_F32;
    if (strstr(name, "compressor_kv.weight") || strstr(name, "compressor_gate.weight") || strstr(name, "indexer.attn_q_b.weight"))
        return t == QT_F32 || t == QT_F16 || t == QT_BF16 || t == QT_Q8_0 ? t : QT_Q8_0;
    return t;
}

/* bits per weight of type t (0 when unknown). */
static double type_bpw(qt_type t) {
    const qt_traits *tr = qt_get_traits(t);
    return tr && tr->blck > 0 ? 8.0 * tr->type_size / tr->blck : 0;
}

/* llama-quantize's tensor categories (substring tests, llama-quant.cpp). */
typedef enum { LC_OUTPUT, LC_EMBD, LC_QKV, LC_KV_B, LC_V, LC_K, LC_Q, LC_ATTN_OUT, LC_UP, LC_GATE, LC_DOWN, LC_OTHER } lcat;
static lcat llama_category(const char *n) {
    if (!strcmp(n, "output.weight")) return LC_OUTPUT;
    if (!strcmp(n, "token_embd.weight")) return LC_EMBD;
    if (strstr(n, "attn_qkv.weight")) return LC_QKV;
    if (strstr(n, "attn_kv_b.weight")) return LC_KV_B;
    if (strstr(n, "attn_v.weight")) return LC_V;
    if (strstr(n, "attn_k.weight")) return LC_K;
    if (strstr(n, "attn_q.weight")) return LC_Q;
    if (strstr(n, "attn_output.weight")) return LC_ATTN_OUT;
    if (strstr(n, "ffn_up")) return LC_UP;
    if (strstr(n, "ffn_gate")) return LC_GATE;
    if (strstr(n, "ffn_down")) return LC_DOWN;
    return LC_OTHER;
}
static bool is_attn_v(lcat c) { return c == LC_V || c == LC_QKV || c == LC_KV_B; }

static bool more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

/* llama.cpp's groups of IQ ftypes (llama_tensor_get_type_impl). */
static bool ft_iq_low(uint32_t ft) {   /* the IQ1/IQ2 ftypes: one shared branch */
    return ft == FT_IQ2_XXS || ft == FT_IQ2_XS || ft == FT_IQ1_S || ft == FT_IQ2_S || ft == FT_IQ2_M || ft == FT_IQ1_M;
}
static bool ft_iq2_sm(uint32_t ft) { return ft == FT_IQ2_S || ft == FT_IQ2_M; }

/* llama_tensor_get_type_impl for the K-quant/Q8_0 and IQ1/IQ2/IQ3 ftypes we offer. */
static qt_type llama_rules(cv_recipe *r, const cv_out *o, qt_type t, bool tied, int n_layer, int n_expert, int n_gqa) {
    uint32_t ft = r->preset.ftype;
    /* MXFP4_MOE: stacked experts (ne[2] > 1) MXFP4, every other matrix (output and token_embd
     * included) Q8_0; llama.cpp takes this branch before its counters, so none advance */
    if (ft == FT_MXFP4_MOE) return o->n_dims >= 3 && o->ne[2] > 1 ? QT_MXFP4 : QT_Q8_0;
    lcat c = llama_category(o->name);
    if (c == LC_OUTPUT || (tied && c == LC_EMBD)) {
        int blk = qt_get_traits(t)->blck;
        if (o->ne[0] % blk != 0) return QT_Q8_0;
        if (ft_iq_low(ft) || ft == FT_IQ3_XXS) return QT_Q5_K;
        return t != QT_Q8_0 ? QT_Q6_K : t;
    }
    if (c == LC_EMBD) {
        if (ft == FT_IQ2_XXS || ft == FT_IQ2_XS || ft == FT_IQ1_S || ft == FT_IQ1_M) return QT_Q2_K;
        if (ft_iq2_sm(ft) || ft == FT_IQ3_XXS) return QT_IQ3_S;
        return t;
    }
    if (ft_iq_low(ft)) {
        if (is_attn_v(c)) {
            t = (n_gqa >= 4 || n_expert >= 4) ? QT_Q4_K : ft_iq2_sm(ft) ? QT_IQ3_S : QT_Q2_K;
            r->i_attention_wv++;
        } else if (n_expert == 8 && c == LC_K) {
            t = QT_Q4_K;
        } else if (c == LC_DOWN) {   /* a counter over every ffn_down* tensor in file order, not the layer */
            if (r->i_ffn_down < n_layer / 8) t = ft_iq2_sm(ft) ? QT_IQ3_S : QT_Q2_K;
            r->i_ffn_down++;
        } else if (c == LC_ATTN_OUT) {
            if (n_expert == 8) t = QT_Q5_K;
            else if (ft == FT_IQ1_S || ft == FT_IQ1_M) t = QT_IQ2_XXS;
            else if (ft_iq2_sm(ft)) t = QT_IQ3_S;
        }
        return t;
    }
    if (is_attn_v(c)) {
        if (ft == FT_Q2_K) t = n_gqa >= 4 ? QT_Q4_K : QT_Q3_K;
        else if (ft == FT_Q2_K_S && n_gqa >= 4) t = QT_Q4_K;
        else if (ft == FT_IQ3_XXS) t = n_gqa >= 4 ? QT_Q4_K : !r->has_im ? QT_IQ3_S : QT_IQ3_XXS;
        else if (ft == FT_IQ3_S && n_gqa >= 4) t = QT_Q4_K;
        else if (ft == FT_IQ3_M) t = QT_Q4_K;
        else if (ft == FT_Q3_K_M) t = r->i_attention_wv < 2 ? QT_Q5_K : QT_Q4_K;
        else if (ft == FT_Q3_K_L) t = QT_Q5_K;
        else if ((ft == FT_Q4_K_M || ft == FT_Q5_K_M) && more_bits(r->i_attention_wv, r->n_attention_wv)) t = QT_Q6_K;
        else if (ft == FT_Q4_K_S && r->i_attention_wv < 4) t = QT_Q5_K;
        if (n_expert == 8) t = QT_Q8_0;
        r->i_attention_wv++;
        return t;
    }
    if (c == LC_K) return n_expert == 8 ? QT_Q8_0 : ft == FT_IQ3_XXS ? QT_IQ2_S : t;
    if (c == LC_Q) return ft == FT_IQ3_XXS ? QT_IQ2_S : t;
    if (c == LC_DOWN) {
        int i = n_expert > 1 ? o->layer : r->i_ffn_down;
        int n = n_layer;
        if (ft == FT_Q2_K) t = QT_Q3_K;
        else if (ft == FT_Q2_K_S) { if (i < n / 8) t = QT_Q4_K; }
        else if (ft == FT_IQ3_XXS && !r->has_im) t = i < n / 8 ? QT_Q4_K : QT_Q3_K;
        else if (ft == FT_Q3_K_M) t = i < n / 16 ? QT_Q5_K : QT_Q4_K;
        else if (ft == FT_IQ3_M && (i < n / 8 || (n_expert == 8 && more_bits(i, n)))) t = QT_Q4_K;
        else if (ft == FT_Q3_K_L) t = QT_Q5_K;
        else if (ft == FT_Q4_K_M) { if (more_bits(i, n)) t = QT_Q6_K; }
        else if (ft == FT_Q5_K_M && more_bits(i, n)) t = QT_Q6_K;
        else if (ft == FT_Q4_K_S && i < n / 8) t = QT_Q5_K;
        r->i_ffn_down++;
        return t;
    }
    if (c == LC_ATTN_OUT) {
        if (n_expert == 8) {
            if (ft == FT_Q2_K || ft == FT_Q3_K_S || ft == FT_Q3_K_M || ft == FT_Q4_K_S || ft == FT_Q4_K_M ||
                ft == FT_IQ3_XXS || ft == FT_IQ3_S || ft == FT_IQ3_M) t = QT_Q5_K;
        } else {
            if (ft == FT_Q2_K) t = QT_Q3_K;
            else if (ft == FT_IQ3_XXS) t = QT_IQ3_S;
            else if (ft == FT_Q3_K_M || ft == FT_IQ3_M) t = QT_Q4_K;
            else if (ft == FT_Q3_K_L) t = QT_Q5_K;
        }
        return t;
    }
    if (c == LC_QKV) {
        if (ft == FT_Q3_K_M || ft == FT_Q3_K_L || ft == FT_IQ3_M) t = QT_Q4_K;
        else if (ft == FT_Q4_K_M) t = QT_Q5_K;
        else if (ft == FT_Q5_K_M) t = QT_Q6_K;
    }
    return t;
}

/* llama-quantize's tensor_type_fallback: a type whose block size divides ne0. */
qt_type cv_type_fallback(qt_type t, int64_t ne0) {
    const qt_traits *tr = qt_get_traits(t);
    if (!tr || ne0 % tr->blck == 0) return t;
    qt_type f;
    switch (t) {
    case QT_IQ1_S: case QT_IQ1_M: case QT_IQ2_XXS: case QT_IQ2_XS: case QT_IQ2_S:
    case QT_IQ3_XXS: case QT_IQ3_S: case QT_IQ4_XS: f = QT_IQ4_NL; break;
    case QT_Q2_K: case QT_Q3_K: f = QT_Q4_0; break;
    case QT_Q4_K: f = QT_Q5_0; break;
    case QT_Q5_K: f = QT_Q5_1; break;
    case QT_Q6_K: f = QT_Q8_0; break;
    default: f = QT_F16; break;
    }
    if (ne0 % qt_get_traits(f)->blck != 0) f = QT_F16;
    return f;
}

static bool rx_match(const regex_t *re, const char *name) { return regexec(re, name, 0, NULL, 0) == 0; }

/* A --tensor-type pattern names this tensor (the user's choice is never overridden). */
static bool user_set(const cv_recipe *r, const char *name) {
    for (int k = 0; k < r->n_user; k++)
        if (rx_match(&r->user[k].re, name)) return true;
    return false;
}

qx_status cv_recipe_apply(cv_recipe *r, cv_plan *pl, int n_layer, int n_expert, int n_gqa, qx_err *e) {
    bool tied = true;
    r->n_attention_wv = 0;
    r->i_attention_wv = r->i_ffn_down = 0;
    for (size_t i = 0; i < pl->n_outs; i++) {
        lcat c = llama_category(pl->outs[i].name);
        if (is_attn_v(c)) r->n_attention_wv++;
        if (c == LC_OUTPUT) tied = false;
    }
    int n_dense = (int)pl->cfg.first_k_dense_replace;
    bool v4 = !strcmp(pl->arch, "deepseek4");
    r->has_im = pl->im != NULL;
    int n_need = 0;
    const cv_out *first_need = NULL;
    for (size_t i = 0; i < pl->n_outs; i++) {
        cv_out *o = &pl->outs[i];
        qt_type t;
        if (!cv_quantizable(o->name, o->n_dims)) {
            o->type = o->wanted = o->src_type;
            continue;
        }
        bool is_out = !strcmp(o->name, "output.weight"), is_embd = !strcmp(o->name, "token_embd.weight");
        if (is_embd && r->has_embd_type) t = r->embd_type;
        else if (is_out && r->has_out_type) t = r->out_type;
        else {
            t = r->preset.def;
            bool manual = false;
            for (int k = 0; k < r->n_user && !manual; k++)
                if (rx_match(&r->user[k].re, o->name)) { t = r->user[k].type; manual = true; }
            if (!manual && !r->pure) {
                if (r->n_table) {
                    for (int k = 0; k < r->n_table; k++) {
                        const rule_rx *ru = &r->table[k];
                        if (ru->moe_first > 0 && !(o->layer >= n_dense && o->layer < n_dense + ru->moe_first)) continue;
                        if (rx_match(&ru->re, o->name)) { t = ru->type; break; }
                    }
                } else if (r->preset.llama && is_quantized(t)) {
                    t = llama_rules(r, o, t, tied, n_layer, n_expert, n_gqa);
                }
            }
        }
        bool v4_own = v4 && !user_set(r, o->name) && !r->llama_types;
        if (v4 && r->llama_types && strstr(o->name, "nextn.eh_proj.weight") && !user_set(r, o->name))
            t = QT_Q8_0;   /* the converter's own force (not a protection of ours) */
        if (v4_own) t = v4_protect(o->name, t);
        o->wanted = t;
        o->type = cv_type_fallback(t, o->ne[0]);
        /* FP4 routed experts stay MXFP4 (exact) unless the preset gives them fewer bits; the
         * test follows the row-length fallback (an IQ2 type falling back to IQ4_NL would be
         * larger than MXFP4 and lossy) */
        bool fp4 = (o->n_src > 0 && o->src && o->src[0]->dtype == ST_FP4_PACKED) || (o->gsrc && o->gsrc->type == QT_MXFP4);
        if (v4_own && fp4 && type_bpw(o->type) >= type_bpw(QT_MXFP4)) o->wanted = o->type = QT_MXFP4;
        if (o->type != o->wanted) pl->n_fallback++;
        const qt_traits *tr = qt_get_traits(o->type);
        if (!tr || !tr->from_float) tr = qt_iq_traits(o->type);
        if (!tr || !tr->from_float)
            return qx_fail(e, QX_EUNSUPPORTED, "tensor '%s': type %s cannot be quantized to", o->name, qt_type_name(o->type));
        if (!pl->im && cv_requires_imatrix(o)) {
            if (n_need++ == 0) first_need = o;
        }
    }
    /* The plan (and --dry-run) works without one; cv_execute refuses (cv_check_imatrix). */
    if (n_need)
        cv_warn(pl, "%d tensors (first: %s at %s) need an importance matrix: without --imatrix FILE only --dry-run works",
                n_need, first_need->name, qt_type_name(first_need->type));
    return QX_OK;
}

/* llama-quantize's tensor_requires_imatrix for the types we write (the IQ1/IQ2/IQ3_XXS
 * types except on token_embd/output), plus any type whose quantizer asks for one. */
bool cv_requires_imatrix(const cv_out *o) {
    if (!strcmp(o->name, "token_embd.weight") || !strcmp(o->name, "output.weight")) return false;
    switch (o->type) {
    case QT_IQ3_XXS: case QT_IQ2_XXS: case QT_IQ2_XS: case QT_IQ2_S: case QT_IQ1_M: case QT_IQ1_S: return true;
    default: break;
    }
    const qt_traits *tr = qt_get_traits(o->type);
    return tr && tr->needs_imatrix;
}

/* The MTP (NextN) block o belongs to (its blk.N has a nextn.eh_proj), or -1. */
static int mtp_block_of(const cv_plan *pl, const cv_out *o) {
    int L;
    if (sscanf(o->name, "blk.%d.", &L) != 1 || L < 0) return -1;
    char n[64];
    snprintf(n, sizeof n, "blk.%d.nextn.eh_proj.weight", L);
    for (size_t i = 0; i < pl->n_outs; i++)
        if (!strcmp(pl->outs[i].name, n)) return L;
    return -1;
}

/* Without an imatrix: every tensor whose type needs one is refused.  With one: every such
 * tensor must have an entry attached (as llama-quantize refuses "missing importance matrix for
 * tensor ... in a very low-bit quantization"), e.g. an MTP block, which no imatrix covers. */
qx_status cv_check_imatrix(const cv_plan *pl, qx_err *e) {
    for (size_t i = 0; i < pl->n_outs; i++) {
        const cv_out *o = &pl->outs[i];
        if (!cv_quantizable(o->name, o->n_dims) || !cv_requires_imatrix(o) || o->imp) continue;
        if (!pl->im)
            return qx_fail(e, QX_EINVAL, "tensor '%s': type %s needs an importance matrix (--imatrix FILE; make one with qforge imatrix)",
                           o->name, qt_type_name(o->type));
        const int L = mtp_block_of(pl, o);
        if (L >= 0)
            return qx_fail(e, QX_EINVAL, "tensor '%s': %s needs importance; no imatrix covers the MTP block: "
                           "--tensor-type 'blk\\.%d\\.=Q4_K' or --no-mtp", o->name, qt_type_name(o->type), L);
        return qx_fail(e, QX_EINVAL, "tensor '%s': type %s needs an importance matrix, and the imatrix has no usable entry for it "
                       "(give it a type that needs none with --tensor-type, or an imatrix that covers it)", o->name, qt_type_name(o->type));
    }
    return QX_OK;
}
