/* tok/tok_gguf.c — the tokenizer's GGUF side: reading tokenizer.ggml.* keys of an open
 * GGUF into a tk_tok, and writing a tk_vocab as those keys (for the converter).
 * Key names and types follow ../shared/GGUF-DEEPSEEK2.md §6 (llama.cpp's convention). */
#include "tok_internal.h"

#include <stdlib.h>
#include <string.h>

#define K_MODEL    "tokenizer.ggml.model"
#define K_PRE      "tokenizer.ggml.pre"
#define K_TOKENS   "tokenizer.ggml.tokens"
#define K_TYPES    "tokenizer.ggml.token_type"
#define K_MERGES   "tokenizer.ggml.merges"
#define K_BOS      "tokenizer.ggml.bos_token_id"
#define K_EOS      "tokenizer.ggml.eos_token_id"
#define K_PAD      "tokenizer.ggml.padding_token_id"
#define K_ADD_BOS  "tokenizer.ggml.add_bos_token"
#define K_ADD_EOS  "tokenizer.ggml.add_eos_token"
#define K_ADD_SEP  "tokenizer.ggml.add_sep_token"
#define K_TEMPLATE "tokenizer.chat_template"

/* An optional u32 id key: -1 when absent; a wrong type is an error. */
static qx_status opt_id(const gf_file *g, const char *key, int32_t *out, qx_err *e) {
    uint32_t v;
    *out = -1;
    if (!gf_find_kv(g, key)) return QX_OK;
    QX_TRY(gf_get_u32(g, key, &v, e));
    if (v < (uint32_t)TOK_MAX_VOCAB) *out = (int32_t)v;
    return QX_OK;
}

static qx_status opt_bool(const gf_file *g, const char *key, bool def, bool *out, qx_err *e) {
    *out = def;
    if (!gf_find_kv(g, key)) return QX_OK;
    return gf_get_bool(g, key, out, e);
}

qx_status tk_from_gguf(const gf_file *g, tk_tok **out, qx_err *e) {
    *out = NULL;
    const char *label = gf_label(g);
    tk_vocab v;
    memset(&v, 0, sizeof v);
    const char *model, *pre = "default", *tmpl = NULL;
    if (!gf_find_kv(g, K_MODEL)) return qx_fail(e, QX_ENOTFOUND, "%s: no tokenizer (key %s absent)", label, K_MODEL);
    QX_TRY(gf_get_str(g, K_MODEL, &model, e));
    if (gf_find_kv(g, K_PRE)) QX_TRY(gf_get_str(g, K_PRE, &pre, e));
    if (gf_find_kv(g, K_TEMPLATE)) QX_TRY(gf_get_str(g, K_TEMPLATE, &tmpl, e));
    if (strlen(model) >= sizeof v.model || strlen(pre) >= sizeof v.pre)
        return qx_fail(e, QX_EUNSUPPORTED, "%s: tokenizer model '%.40s' / pre '%.40s' not supported", label, model, pre);
    snprintf(v.model, sizeof v.model, "%s", model);
    snprintf(v.pre, sizeof v.pre, "%s", pre);

    const char *const *toks;
    uint64_t nt;
    QX_TRY(gf_get_str_arr(g, K_TOKENS, &toks, &nt, e));
    const gf_kv *kt = gf_find_kv(g, K_TOKENS);
    if (nt == 0 || nt > TOK_MAX_VOCAB) return qx_fail(e, QX_EFORMAT, "%s: %s has %llu tokens", label, K_TOKENS, (unsigned long long)nt);
    for (uint64_t i = 0; i < nt; i++)
        if (kt->str_lens[i] != strlen(toks[i]))
            return qx_fail(e, QX_EFORMAT, "%s: %s[%llu] contains a NUL byte", label, K_TOKENS, (unsigned long long)i);
    const void *types = NULL;
    uint64_t ntt = nt;
    if (gf_find_kv(g, K_TYPES)) QX_TRY(gf_get_arr(g, K_TYPES, GF_I32, &types, &ntt, e));
    if (ntt != nt)
        return qx_fail(e, QX_EFORMAT, "%s: %s has %llu entries for %llu tokens", label, K_TYPES,
                       (unsigned long long)ntt, (unsigned long long)nt);
    const char *const *merges = NULL;
    uint64_t nm = 0;
    if (gf_find_kv(g, K_MERGES)) QX_TRY(gf_get_str_arr(g, K_MERGES, &merges, &nm, e));
    QX_TRY(opt_id(g, K_BOS, &v.bos_id, e));
    QX_TRY(opt_id(g, K_EOS, &v.eos_id, e));
    QX_TRY(opt_id(g, K_PAD, &v.pad_id, e));
    QX_TRY(opt_bool(g, K_ADD_BOS, false, &v.add_bos, e));
    QX_TRY(opt_bool(g, K_ADD_EOS, false, &v.add_eos, e));
    v.has_add_sep = gf_find_kv(g, K_ADD_SEP) != NULL;
    QX_TRY(opt_bool(g, K_ADD_SEP, false, &v.add_sep, e));

    int32_t *ty = NULL;
    if (!types) {
        ty = malloc(nt * sizeof *ty);
        if (!ty) return qx_fail(e, QX_ENOMEM, "%s: out of memory", label);
        for (uint64_t i = 0; i < nt; i++) ty[i] = TK_NORMAL;
    }
    v.n_tokens = (int64_t)nt;
    v.tokens = (char **)toks;            /* only read by tk_from_vocab */
    v.types = types ? (int32_t *)types : ty;
    v.n_merges = (int64_t)nm;
    v.merges = (char **)merges;
    v.chat_template = (char *)tmpl;
    qx_status st = tk_from_vocab(&v, label, out, e);
    free(ty);
    return st;
}

qx_status tk_vocab_write(const tk_vocab *v, gf_writer *w, qx_err *e) {
    QX_TRY(gf_writer_set_str(w, K_MODEL, v->model, e));
    QX_TRY(gf_writer_set_str(w, K_PRE, v->pre, e));
    QX_TRY(gf_writer_set_str_arr(w, K_TOKENS, (const char *const *)v->tokens, (uint64_t)v->n_tokens, e));
    QX_TRY(gf_writer_set_arr(w, K_TYPES, GF_I32, v->types, (uint64_t)v->n_tokens, e));
    QX_TRY(gf_writer_set_str_arr(w, K_MERGES, (const char *const *)v->merges, (uint64_t)v->n_merges, e));
    if (v->bos_id >= 0) QX_TRY(gf_writer_set_u32(w, K_BOS, (uint32_t)v->bos_id, e));
    if (v->eos_id >= 0) QX_TRY(gf_writer_set_u32(w, K_EOS, (uint32_t)v->eos_id, e));
    if (v->pad_id >= 0) QX_TRY(gf_writer_set_u32(w, K_PAD, (uint32_t)v->pad_id, e));
    QX_TRY(gf_writer_set_bool(w, K_ADD_BOS, v->add_bos, e));
    QX_TRY(gf_writer_set_bool(w, K_ADD_EOS, v->add_eos, e));
    if (v->has_add_sep) QX_TRY(gf_writer_set_bool(w, K_ADD_SEP, v->add_sep, e));
    if (v->chat_template) QX_TRY(gf_writer_set_str(w, K_TEMPLATE, v->chat_template, e));
    return QX_OK;
}
