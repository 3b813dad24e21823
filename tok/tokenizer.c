/* tok/tokenizer.c — building the byte-level BPE tokenizer: from HF tokenizer.json (+
 * tokenizer_config.json) text, from a GGUF-form vocabulary description, and exporting that
 * description for the converter (token types and the `pre` name as llama.cpp's
 * convert_hf_to_gguf.py assigns them).  Encoding and decoding live in tok/tok_encode.c.
 * Every number read from a file is range-checked before use. */
#include "tok_internal.h"

#include <unistd.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* ---------------------------------------------------------------- build-time scratch */

typedef struct {
    const char *s;       /* borrowed from the JSON document / vocab description */
    size_t len;
    uint8_t flags;       /* TOK_F_* */
    bool set;
} tok_src;

typedef struct {
    const char *label;
    tk_tok *t;
    tok_src *src;        /* [cap] per id */
    int32_t cap;
    int32_t n;           /* highest id + 1 */
    int32_t n_model;     /* entries of tokenizer.json's model.vocab */
} builder;

static qx_status b_set(builder *b, int64_t id, const char *s, size_t len, uint8_t flags, bool override, qx_err *e) {
    if (id < 0 || id >= TOK_MAX_VOCAB)
        return qx_fail(e, QX_EFORMAT, "%s: token id %lld out of range [0, %d)", b->label, (long long)id, TOK_MAX_VOCAB);
    if (len > TOK_MAX_TOKEN)
        return qx_fail(e, QX_EFORMAT, "%s: token %lld is %zu bytes long (limit %d)", b->label, (long long)id, len, TOK_MAX_TOKEN);
    if (id >= b->cap) {
        int32_t nc = b->cap ? b->cap : 1024;
        while (nc <= id) nc *= 2;
        tok_src *p = realloc(b->src, (size_t)nc * sizeof *p);
        if (!p) return qx_fail(e, QX_ENOMEM, "%s: out of memory", b->label);
        memset(p + b->cap, 0, (size_t)(nc - b->cap) * sizeof *p);
        b->src = p; b->cap = nc;
    }
    tok_src *x = &b->src[id];
    if (x->set && !override)
        return qx_fail(e, QX_EFORMAT, "%s: token id %lld appears twice", b->label, (long long)id);
    *x = (tok_src){s, len, flags, true};
    if (id + 1 > b->n) b->n = (int32_t)id + 1;
    return QX_OK;
}

/* Unmaps a byte-level string into out (at most len bytes); returns false when a character
 * is outside the mapping's image (then the token keeps its UTF-8 text). */
static bool unmap(const char *s, size_t len, char *out, size_t *out_len) {
    size_t i = 0, k = 0;
    while (i < len) {
        uint32_t cp;
        size_t l = tok_utf8_dec((const uint8_t *)s + i, len - i, &cp);
        if (l == 0) return false;
        int b = tok_cp_to_byte(cp);
        if (b < 0) return false;
        out[k++] = (char)b;
        i += l;
    }
    *out_len = k;
    return true;
}

static size_t map_bytes(const char *s, size_t len, char *out) {
    size_t k = 0;
    for (size_t i = 0; i < len; i++) k += tok_utf8_enc(tok_byte_to_cp((uint8_t)s[i]), out + k);
    return k;
}

static qx_status strmap_build(tk_tok *t, qx_err *e, const char *label) {
    uint32_t cap = 1024;
    while (cap < (uint32_t)t->n_vocab * 2u) cap *= 2;
    t->bpe_map.slot = malloc((size_t)cap * sizeof *t->bpe_map.slot);
    if (!t->bpe_map.slot) return qx_fail(e, QX_ENOMEM, "%s: out of memory", label);
    memset(t->bpe_map.slot, 0xff, (size_t)cap * sizeof *t->bpe_map.slot);
    t->bpe_map.cap = cap;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (!(t->flags[id] & TOK_F_MAPPED)) continue;
        const char *s = t->blob + t->off[id];
        size_t n = t->off[id + 1] - t->off[id];
        if (tok_strmap_get(t, s, n) >= 0) continue;    /* first id wins */
        uint32_t hv = (uint32_t)XXH3_64bits(s, n), h = hv & (cap - 1);
        while (t->bpe_map.slot[h].id >= 0) h = (h + 1) & (cap - 1);
        t->bpe_map.slot[h].id = id;
        t->bpe_map.slot[h].hash = hv;
    }
    for (int b = 0; b < 256; b++) { char c = (char)b; t->byte_tok[b] = tok_strmap_get(t, &c, 1); }
    return QX_OK;
}

static qx_status trie_add(tk_tok *t, const char *s, size_t n, int32_t id, const char *label, qx_err *e) {
    if (n == 0) return QX_OK;
    int32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)s[i];
        int32_t ch = t->trie[node].child;
        while (ch >= 0 && t->trie[ch].byte != c) ch = t->trie[ch].sibling;
        if (ch < 0) {
            if (t->n_trie == t->cap_trie) {
                int32_t nc = t->cap_trie * 2;
                tok_trie_node *p = realloc(t->trie, (size_t)nc * sizeof *p);
                if (!p) return qx_fail(e, QX_ENOMEM, "%s: out of memory", label);
                t->trie = p; t->cap_trie = nc;
            }
            ch = t->n_trie++;
            t->trie[ch] = (tok_trie_node){-1, t->trie[node].child, -1, c};
            t->trie[node].child = ch;
        }
        node = ch;
    }
    if (t->trie[node].token < 0) t->trie[node].token = id;
    return QX_OK;
}

/* Turns the per-id sources into the token table, the lookup maps and the added-token trie. */
static qx_status b_finish_tokens(builder *b, qx_err *e) {
    tk_tok *t = b->t;
    t->n_vocab = b->n;
    uint64_t total = 0;
    for (int32_t i = 0; i < b->n; i++) if (b->src[i].set) total += b->src[i].len;
    t->off = malloc(((size_t)b->n + 1) * sizeof(uint64_t));
    t->flags = calloc((size_t)b->n + 1, 1);
    t->blob = malloc(total + 1);
    t->trie = malloc(1024 * sizeof *t->trie);
    if (!t->off || !t->flags || !t->blob || !t->trie) return qx_fail(e, QX_ENOMEM, "%s: out of memory", b->label);
    t->cap_trie = 1024; t->n_trie = 1;
    t->trie[0] = (tok_trie_node){-1, -1, -1, 0};
    uint64_t k = 0;
    for (int32_t i = 0; i < b->n; i++) {
        t->off[i] = k;
        tok_src *x = &b->src[i];
        if (!x->set) { t->flags[i] = TOK_F_UNUSED; continue; }
        uint8_t f = x->flags;
        size_t l = x->len;
        if (!(f & TOK_F_ADDED) && !(f & TOK_F_UNUSED) && unmap(x->s, x->len, t->blob + k, &l)) f |= TOK_F_MAPPED;
        else { memcpy(t->blob + k, x->s, x->len); l = x->len; }
        t->flags[i] = f;
        k += l;
        if (f & TOK_F_ADDED) QX_TRY(trie_add(t, x->s, x->len, i, b->label, e));
    }
    t->off[b->n] = k;
    return strmap_build(t, e, b->label);
}

/* Sizes the merge tables for about n merges (they grow when more come). */
static qx_status merges_alloc(tk_tok *t, int64_t n, const char *label, qx_err *e) {
    if (n < 0 || n > 4 * (int64_t)TOK_MAX_VOCAB) return qx_fail(e, QX_EFORMAT, "%s: %lld merges is out of range", label, (long long)n);
    uint64_t cap = 1024;
    while (cap < (uint64_t)n * 2) cap *= 2;
    t->mslot = calloc(cap, sizeof *t->mslot);
    t->merge_pair = malloc(cap / 2 * 2 * sizeof(int32_t));
    if (!t->mslot || !t->merge_pair) return qx_fail(e, QX_ENOMEM, "%s: out of memory for %lld merges", label, (long long)n);
    t->mcap = cap;
    return QX_OK;
}

static uint64_t merge_hash(uint64_t h) {
    h ^= h >> 33; h *= 0xff51afd7ed558ccdull; h ^= h >> 33; h *= 0xc4ceb9fe1a85ec53ull; h ^= h >> 33;
    return h;
}

/* Doubles the merge tables (load factor stays <= 1/2; the pair list holds mcap/2). */
static qx_status merges_grow(tk_tok *t, const char *label, qx_err *e) {
    uint64_t nc = t->mcap * 2;
    if (t->n_merges >= 4 * (int64_t)TOK_MAX_VOCAB) return qx_fail(e, QX_EFORMAT, "%s: too many merges", label);
    tok_merge_slot *ns = calloc(nc, sizeof *ns);
    int32_t *np = realloc(t->merge_pair, nc / 2 * 2 * sizeof(int32_t));
    if (!ns || !np) { free(ns); if (np) t->merge_pair = np; return qx_fail(e, QX_ENOMEM, "%s: out of memory for merges", label); }
    t->merge_pair = np;
    for (uint64_t i = 0; i < t->mcap; i++) {
        if (!t->mslot[i].key) continue;
        uint64_t h = merge_hash(t->mslot[i].key) & (nc - 1);
        while (ns[h].key) h = (h + 1) & (nc - 1);
        ns[h] = t->mslot[i];
    }
    free(t->mslot);
    t->mslot = ns; t->mcap = nc;
    return QX_OK;
}

static int32_t lookup_mapped(const tk_tok *t, const char *s, size_t n, char *tmp) {
    size_t l;
    if (n > TOK_MAX_TOKEN || !unmap(s, n, tmp, &l)) return -1;
    return tok_strmap_get(t, tmp, l);
}

/* Id of an added token whose text is exactly s[0..n), -1 if none. */
static int32_t trie_exact(const tk_tok *t, const char *s, size_t n) {
    int32_t node = 0;
    for (size_t i = 0; i < n && node >= 0; i++) {
        int32_t ch = t->trie[node].child;
        while (ch >= 0 && t->trie[ch].byte != (uint8_t)s[i]) ch = t->trie[ch].sibling;
        node = ch;
    }
    return n > 0 && node > 0 ? t->trie[node].token : -1;
}

/* A merge operand in byte-level form: the vocabulary token, else an added token of that text
 * (a vocabulary entry tokenizer_config.json made special, see add_special, or a CONTROL token
 * of a GGUF vocabulary: llama.cpp keeps every token type in one map and merges reach them). */
static int32_t merge_operand(const tk_tok *t, const char *s, size_t n, char *tmp) {
    int32_t id = lookup_mapped(t, s, n, tmp);
    return id >= 0 ? id : trie_exact(t, s, n);
}

/* Adds merge number `rank`: a and b in byte-level form. */
static qx_status merge_add(tk_tok *t, const char *a, size_t na, const char *bb, size_t nb, const char *label, qx_err *e) {
    char tmp[2 * TOK_MAX_TOKEN + 8], mapped[4 * TOK_MAX_TOKEN + 8];
    int64_t rank = t->n_merges;
    int32_t ia = merge_operand(t, a, na, tmp), ib = merge_operand(t, bb, nb, tmp);
    if (ia < 0 || ib < 0)
        return qx_fail(e, QX_EFORMAT, "%s: merge %lld '%.*s %.*s' names a token not in the vocabulary", label,
                       (long long)rank, (int)(na > 40 ? 40 : na), a, (int)(nb > 40 ? 40 : nb), bb);
    size_t la = t->off[ia + 1] - t->off[ia], lb = t->off[ib + 1] - t->off[ib];
    if (la + lb > TOK_MAX_TOKEN) return qx_fail(e, QX_EFORMAT, "%s: merge %lld result too long", label, (long long)rank);
    memcpy(tmp, t->blob + t->off[ia], la);
    memcpy(tmp + la, t->blob + t->off[ib], lb);
    int32_t r = tok_strmap_get(t, tmp, la + lb);
    if (r < 0) r = trie_exact(t, mapped, map_bytes(tmp, la + lb, mapped));
    if (r < 0)
        return qx_fail(e, QX_EFORMAT, "%s: merge %lld '%.*s %.*s' gives a token not in the vocabulary", label,
                       (long long)rank, (int)(na > 40 ? 40 : na), a, (int)(nb > 40 ? 40 : nb), bb);
    if ((uint64_t)(t->n_merges + 1) * 2 > t->mcap) QX_TRY(merges_grow(t, label, e));
    uint64_t key = ((uint64_t)(uint32_t)ia << 32 | (uint32_t)ib) + 1, mask = t->mcap - 1;
    uint64_t h = merge_hash(key);
    for (h &= mask; t->mslot[h].key != 0; h = (h + 1) & mask)
        if (t->mslot[h].key == key) break;          /* duplicate: the lower rank stays */
    if (t->mslot[h].key == 0) t->mslot[h] = (tok_merge_slot){key, (int32_t)rank, r};
    t->merge_pair[2 * rank] = ia;
    t->merge_pair[2 * rank + 1] = ib;
    t->n_merges++;
    return QX_OK;
}

static tk_tok *tok_alloc(void) {
    tk_tok *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->bos = t->eos = t->pad = -1;
    return t;
}

void tk_free(tk_tok *t) {
    if (!t) return;
    for (int i = 0; i < t->n_stages; i++) { pcre2_code_free(t->stage[i].re); free(t->stage[i].pattern); }
    free(t->off); free(t->blob); free(t->flags); free(t->bpe_map.slot);
    free(t->merge_pair); free(t->mslot); free(t->trie); free(t->chat_template);
    free(t);
}

/* Id of a token given by its text: an added token, else a byte-level vocab token. */
static int32_t find_token(const tk_tok *t, const char *s, size_t n) {
    int32_t id = trie_exact(t, s, n);
    if (id >= 0) return id;
    char tmp[TOK_MAX_TOKEN];
    return lookup_mapped(t, s, n, tmp);
}

/* ---------------------------------------------------------------- tokenizer.json */

static qx_status parse_normalizer(tk_tok *t, json_t *n, const char *label, qx_err *e) {
    if (!n || json_is_null(n)) return QX_OK;
    const char *type = json_string_value(json_object_get(n, "type"));
    if (!type) return qx_fail(e, QX_EFORMAT, "%s: normalizer has no type", label);
    if (!strcmp(type, "Sequence")) {
        json_t *list = json_object_get(n, "normalizers");
        if (!json_is_array(list)) return qx_fail(e, QX_EFORMAT, "%s: Sequence normalizer without a list", label);
        for (size_t i = 0; i < json_array_size(list); i++) QX_TRY(parse_normalizer(t, json_array_get(list, i), label, e));
        return QX_OK;
    }
    if (!strcmp(type, "NFC")) { t->nfc = true; return QX_OK; }
    return qx_fail(e, QX_EUNSUPPORTED, "%s: normalizer '%s' is not supported (NFC and Sequence are)", label, type);
}

static qx_status parse_pre(tk_tok *t, json_t *p, const char *label, qx_err *e) {
    if (!p || json_is_null(p)) return QX_OK;
    const char *type = json_string_value(json_object_get(p, "type"));
    if (!type) return qx_fail(e, QX_EFORMAT, "%s: pre_tokenizer has no type", label);
    if (!strcmp(type, "Sequence")) {
        json_t *list = json_object_get(p, "pretokenizers");
        if (!json_is_array(list)) return qx_fail(e, QX_EFORMAT, "%s: Sequence pre_tokenizer without a list", label);
        for (size_t i = 0; i < json_array_size(list); i++) QX_TRY(parse_pre(t, json_array_get(list, i), label, e));
        return QX_OK;
    }
    if (!strcmp(type, "Split")) {
        json_t *pat = json_object_get(p, "pattern");
        json_t *re = json_object_get(pat, "Regex"), *lit = json_object_get(pat, "String");
        const char *beh = json_string_value(json_object_get(p, "behavior"));
        tok_behavior b;
        if (!beh) return qx_fail(e, QX_EFORMAT, "%s: Split without behavior", label);
        if (!strcmp(beh, "Isolated")) b = TOK_ISOLATED;
        else if (!strcmp(beh, "Removed")) b = TOK_REMOVED;
        else if (!strcmp(beh, "MergedWithPrevious")) b = TOK_MERGED_PREV;
        else if (!strcmp(beh, "MergedWithNext")) b = TOK_MERGED_NEXT;
        else if (!strcmp(beh, "Contiguous")) b = TOK_CONTIGUOUS;
        else return qx_fail(e, QX_EUNSUPPORTED, "%s: Split behavior '%s' is not supported", label, beh);
        bool inv = json_is_true(json_object_get(p, "invert"));
        if (json_is_string(re)) return tok_stage_add(t, json_string_value(re), json_string_length(re), b, inv, label, e);
        if (json_is_string(lit)) {
            size_t n = json_string_length(lit);
            const char *s = json_string_value(lit);
            char *q = malloc(4 * n + 1);   /* a NUL becomes \x00 */
            if (!q) return qx_fail(e, QX_ENOMEM, "%s: out of memory", label);
            size_t k = 0;
            for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char)s[i];
                if (c < 0x80 && !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) q[k++] = '\\';
                if (c == 0) { q[k - 1] = '\\'; memcpy(q + k, "x00", 3); k += 3; continue; }
                q[k++] = (char)c;
            }
            qx_status st = tok_stage_add(t, q, k, b, inv, label, e);
            free(q);
            return st;
        }
        return qx_fail(e, QX_EFORMAT, "%s: Split pattern is neither Regex nor String", label);
    }
    if (!strcmp(type, "ByteLevel")) {
        if (json_is_true(json_object_get(p, "add_prefix_space")))
            return qx_fail(e, QX_EUNSUPPORTED, "%s: ByteLevel pre_tokenizer with add_prefix_space is not supported", label);
        json_t *ur = json_object_get(p, "use_regex");
        if (ur && !json_is_true(ur)) return QX_OK;
        return tok_stage_add(t, tok_re_gpt2, strlen(tok_re_gpt2), TOK_ISOLATED, false, label, e);
    }
    if (!strcmp(type, "Digits")) {
        const char *re = json_is_true(json_object_get(p, "individual_digits")) ? "\\p{N}" : "\\p{N}+";
        return tok_stage_add(t, re, strlen(re), TOK_ISOLATED, false, label, e);
    }
    return qx_fail(e, QX_EUNSUPPORTED, "%s: pre_tokenizer '%s' is not supported", label, type);
}

/* Family from the pre-tokenizer regexes (what llama.cpp's checksum would name). */
static void detect_pre(tk_tok *t) {
    if (t->pre[0]) return;
    const char *name = "";
    if (t->n_stages == 3 && !strcmp(t->stage[0].pattern, "\\p{N}{1,3}") &&
        (strstr(t->stage[1].pattern, "\xe4\xb8\x80") || strstr(t->stage[1].pattern, "4e00")) &&
        strstr(t->stage[2].pattern, "\\p{L}\\p{P}\\p{S}"))
        name = "deepseek-v3";
    else if (t->n_stages == 1 && strstr(t->stage[0].pattern, "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|")) {
        if (strstr(t->stage[0].pattern, "\\p{N}{1,3}|")) name = "llama-bpe";
        else if (strstr(t->stage[0].pattern, "|\\p{N}|")) {
            static const char bos[] = "<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>";
            name = find_token(t, bos, strlen(bos)) >= 0 ? "deepseek-r1-qwen" : "qwen2";
        }
    }
    else if (t->n_stages == 1 && !strcmp(t->stage[0].pattern, tok_re_gpt2))
        name = "gpt-2";
    snprintf(t->pre, sizeof t->pre, "%s", name);
}

static int32_t config_token(const tk_tok *t, json_t *v) {
    if (json_is_object(v)) v = json_object_get(v, "content");
    if (!json_is_string(v)) return -1;
    return find_token(t, json_string_value(v), json_string_length(v));
}

/* A tokenizer_config.json special-token entry as llama.cpp's SpecialVocab compares it with a
 * template's token name: set when Python would call it true; only a plain string can equal a
 * name (an {"content": ...} object never does, although it counts as set). */
typedef struct { bool set; const char *str; } cfg_special;

static cfg_special cfg_special_of(json_t *cfg, const char *key) {
    json_t *v = json_object_get(cfg, key);
    cfg_special c = {false, NULL};
    if (json_is_string(v)) { c.set = json_string_length(v) > 0; c.str = json_string_value(v); }
    else if (json_is_object(v)) c.set = json_object_size(v) > 0;
    else if (json_is_array(v)) c.set = json_array_size(v) > 0;
    else if (json_is_number(v)) c.set = json_number_value(v) != 0;
    else c.set = json_is_true(v);
    return c;
}

static bool cfg_special_is(cfg_special c, const char *name) { return c.str && !strcmp(c.str, name); }

/* SpecialToken id of a template item, NULL when it is not one (or empty). */
static const char *tp_special(json_t *item) {
    const char *s = json_string_value(json_object_get(json_object_get(item, "SpecialToken"), "id"));
    return s && s[0] ? s : NULL;
}

static bool tp_sequence_is(json_t *item, const char *id) {
    const char *s = json_string_value(json_object_get(json_object_get(item, "Sequence"), "id"));
    return s && !strcmp(s, id);
}

/* tokenizer.ggml.add_sep_token as llama.cpp's SpecialVocab derives it from a TemplateProcessing
 * (gguf-py vocab.py, _try_load_from_tokenizer_json): strip the single template's leading and
 * trailing special tokens from the pair template; if what remains is A <middle> B with a
 * non-empty middle, add_sep is true when the middle's first token is the sep or eos token (and
 * the single template ends in no special token) or its second of two is; false otherwise.  The
 * eos compared is the sep when eos is unset, and the single template's last special if any. */
static void template_add_sep(tk_tok *t, json_t *tp, json_t *cfg) {
    json_t *single = json_object_get(tp, "single"), *pair = json_object_get(tp, "pair");
    size_t ns = json_array_size(single), np = json_array_size(pair);
    const char *first = ns > 1 ? tp_special(json_array_get(single, 0)) : NULL;
    const char *last = ns > 1 ? tp_special(json_array_get(single, ns - 1)) : NULL;
    bool have_cfg = json_is_object(cfg) && json_object_size(cfg) > 0;
    cfg_special sep = cfg_special_of(cfg, "sep_token"), eos = cfg_special_of(cfg, "eos_token");
    if (!eos.set && sep.set && have_cfg) eos = sep;
    if (last) eos = (cfg_special){true, last};
    if (np == 0) return;
    size_t lo = 0, hi = np;
    const char *p0 = tp_special(json_array_get(pair, 0)), *pn = tp_special(json_array_get(pair, np - 1));
    if (first && p0 && !strcmp(p0, first)) lo = 1;
    if (last && pn && !strcmp(pn, last)) hi = np - 1;
    if (hi <= lo + 2 || !tp_sequence_is(json_array_get(pair, lo), "A") || !tp_sequence_is(json_array_get(pair, hi - 1), "B"))
        return;
    bool add = false;
    const char *m0 = tp_special(json_array_get(pair, lo + 1));
    if (m0 && (cfg_special_is(sep, m0) || cfg_special_is(eos, m0)) && !last) add = true;
    if (hi - lo - 2 == 2) {
        const char *m1 = tp_special(json_array_get(pair, lo + 2));
        if (m1 && (cfg_special_is(sep, m1) || cfg_special_is(eos, m1))) add = true;
    }
    t->has_add_sep = true;
    t->add_sep = add;
}

static qx_status parse_config(tk_tok *t, json_t *tj, json_t *cfg, const char *label, qx_err *e) {
    /* defaults from the post_processor template: a special token before $A is a BOS */
    json_t *pp = json_object_get(tj, "post_processor");
    json_t *procs = json_object_get(pp, "processors");
    json_t *tp = pp;
    for (size_t i = 0; json_is_array(procs) && i < json_array_size(procs); i++) {
        const char *ty = json_string_value(json_object_get(json_array_get(procs, i), "type"));
        if (ty && !strcmp(ty, "TemplateProcessing")) tp = json_array_get(procs, i);
    }
    const char *ty = json_string_value(json_object_get(tp, "type"));
    if (ty && !strcmp(ty, "TemplateProcessing")) {
        json_t *first = json_array_get(json_object_get(tp, "single"), 0);
        json_t *sp = json_object_get(json_object_get(first, "SpecialToken"), "id");
        if (json_is_string(sp)) {
            t->bos = config_token(t, sp);
            t->add_bos = t->bos >= 0;
        }
        template_add_sep(t, tp, cfg);
    }
    if (!cfg) return QX_OK;
    if (!json_is_object(cfg)) return qx_fail(e, QX_EFORMAT, "%s: tokenizer_config.json is not an object", label);
    json_t *v;
    if ((v = json_object_get(cfg, "bos_token")) && !json_is_null(v)) t->bos = config_token(t, v);
    if ((v = json_object_get(cfg, "eos_token")) && !json_is_null(v)) t->eos = config_token(t, v);
    if ((v = json_object_get(cfg, "pad_token")) && !json_is_null(v)) t->pad = config_token(t, v);
    if (json_is_boolean(v = json_object_get(cfg, "add_bos_token"))) t->add_bos = json_is_true(v);
    if (json_is_boolean(v = json_object_get(cfg, "add_eos_token"))) t->add_eos = json_is_true(v);
    if (json_is_boolean(v = json_object_get(cfg, "add_sep_token"))) { t->has_add_sep = true; t->add_sep = json_is_true(v); }
    v = json_object_get(cfg, "chat_template");
    if (json_is_array(v)) {          /* [{name, template}]: "default", else the first */
        json_t *pick = NULL;
        for (size_t i = 0; i < json_array_size(v); i++) {
            const char *nm = json_string_value(json_object_get(json_array_get(v, i), "name"));
            if (nm && !strcmp(nm, "default")) pick = json_array_get(v, i);
        }
        v = json_object_get(pick ? pick : json_array_get(v, 0), "template");
    }
    if (json_is_string(v) && !(t->chat_template = strdup(json_string_value(v))))
        return qx_fail(e, QX_ENOMEM, "%s: out of memory", label);
    return QX_OK;
}

static qx_status vocab_cb(void *ctx, const char *tok, size_t len, int64_t id, qx_err *e) {
    builder *b = ctx;
    QX_TRY(b_set(b, id, tok, len, 0, false, e));
    b->n_model++;
    return QX_OK;
}

/* Special tokens the HF tokenizer adds when it is constructed (PreTrainedTokenizerFast.__init__
 * of transformers 4.57, the version llama.cpp's converter pins), which llama.cpp's converter
 * then writes as CONTROL tokens: every special token tokenizer_config.json names (bos, eos,
 * unk, sep, pad, cls, mask, then additional_special_tokens), or that the tokenizer class
 * defaults to when the key is absent (null means none), and that is not an added token yet.
 * A vocabulary entry with that text becomes an added special token at its id; a text not in
 * the vocabulary gets a new id (tokenizers' AddedVocabulary: the model vocabulary's size, or
 * the highest added id + 1 when that is not below it).  The case that matters: a
 * LlamaTokenizerFast config without "unk_token": null gains "<unk>".  Not modelled: entries
 * of tokenizer_config.json's added_tokens_decoder missing from tokenizer.json, and the class
 * chosen from config.json's model_type when tokenizer_config.json names none. */
#define HF_N_SPECIAL_KEYS 7
static const char *const hf_special_keys[HF_N_SPECIAL_KEYS] = {
    "bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"};
/* Tokenizer classes (without "Fast") and the defaults of their __init__, per key above. */
static const struct { const char *cls; const char *dflt[HF_N_SPECIAL_KEYS]; } hf_class_specials[] = {
    {"LlamaTokenizer", {"<s>", "</s>", "<unk>", NULL, NULL, NULL, NULL}},
    {"Qwen2Tokenizer", {NULL, "<|endoftext|>", "<|endoftext|>", NULL, "<|endoftext|>", NULL, NULL}},
    {"GPT2Tokenizer", {"<|endoftext|>", "<|endoftext|>", "<|endoftext|>", NULL, NULL, NULL, NULL}},
};

static const char *special_text(json_t *v, size_t *n) {
    if (json_is_object(v)) v = json_object_get(v, "content");
    if (!json_is_string(v) || json_string_length(v) == 0) return NULL;
    *n = json_string_length(v);
    return json_string_value(v);
}

static bool src_is(const tok_src *x, const char *s, size_t n) {
    return x->set && x->len == n && !memcmp(x->s, s, n);
}

static qx_status add_special(builder *b, const char *s, size_t n, qx_err *e) {
    int32_t in_vocab = -1, max_added = -1;
    for (int32_t id = 0; id < b->n; id++) {
        tok_src *x = &b->src[id];
        if (x->set && (x->flags & TOK_F_ADDED)) {
            if (src_is(x, s, n)) return QX_OK;
            max_added = id;
        } else if (in_vocab < 0 && src_is(x, s, n)) {
            in_vocab = id;
        }
    }
    if (in_vocab >= 0) return b_set(b, in_vocab, s, n, TOK_F_ADDED | TOK_F_SPECIAL, true, e);
    int64_t id = max_added >= b->n_model ? (int64_t)max_added + 1 : b->n_model;
    if (id < b->n && b->src[id].set)
        return qx_fail(e, QX_EFORMAT, "%s: special token '%.*s' would take id %lld, which token '%.*s' holds", b->label,
                       (int)(n > 40 ? 40 : n), s, (long long)id, (int)(b->src[id].len > 40 ? 40 : b->src[id].len), b->src[id].s);
    return b_set(b, id, s, n, TOK_F_ADDED | TOK_F_SPECIAL, false, e);
}

static qx_status add_config_specials(builder *b, json_t *cfg, qx_err *e) {
    if (!json_is_object(cfg)) return QX_OK;
    const char *const *dflt = NULL;
    const char *cls = json_string_value(json_object_get(cfg, "tokenizer_class"));
    for (size_t i = 0; cls && i < sizeof hf_class_specials / sizeof *hf_class_specials; i++) {
        size_t l = strlen(hf_class_specials[i].cls);
        if (!strncmp(cls, hf_class_specials[i].cls, l) && (!cls[l] || !strcmp(cls + l, "Fast"))) dflt = hf_class_specials[i].dflt;
    }
    for (size_t k = 0; k < HF_N_SPECIAL_KEYS; k++) {
        json_t *v = json_object_get(cfg, hf_special_keys[k]);
        size_t n = 0;
        const char *s = v ? special_text(v, &n) : dflt ? dflt[k] : NULL;
        if (s && !v) n = strlen(s);
        if (s) QX_TRY(add_special(b, s, n, e));
    }
    json_t *extra = json_object_get(cfg, "additional_special_tokens");
    for (size_t i = 0; json_is_array(extra) && i < json_array_size(extra); i++) {
        size_t n;
        const char *s = special_text(json_array_get(extra, i), &n);
        if (s) QX_TRY(add_special(b, s, n, e));
    }
    return QX_OK;
}

typedef struct { tk_tok *t; const char *label; } merge_ctx;
static qx_status merge_cb(void *ctx, const char *a, size_t na, const char *b, size_t nb, qx_err *e) {
    merge_ctx *m = ctx;
    return merge_add(m->t, a, na, b, nb, m->label, e);
}

/* model (vocab and merges from the streaming scan), added_tokens. */
static qx_status parse_model(builder *b, json_t *tj, json_t *cfg, tok_span vocab, tok_span merges, qx_err *e) {
    const char *label = b->label;
    json_t *model = json_object_get(tj, "model");
    if (!json_is_object(model)) return qx_fail(e, QX_EFORMAT, "%s: no \"model\" object", label);
    const char *type = json_string_value(json_object_get(model, "type"));
    if (type && strcmp(type, "BPE")) return qx_fail(e, QX_EUNSUPPORTED, "%s: model type '%s' is not BPE", label, type);
    if (json_is_true(json_object_get(model, "byte_fallback")))
        return qx_fail(e, QX_EUNSUPPORTED, "%s: BPE with byte_fallback is not supported", label);
    json_t *v = json_object_get(model, "continuing_subword_prefix");
    json_t *w = json_object_get(model, "end_of_word_suffix");
    if ((json_is_string(v) && json_string_length(v)) || (json_is_string(w) && json_string_length(w)))
        return qx_fail(e, QX_EUNSUPPORTED, "%s: BPE subword prefix/suffix is not supported", label);
    b->t->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
    if (!vocab.p) return qx_fail(e, QX_EFORMAT, "%s: model.vocab is missing", label);
    char *arena = malloc(vocab.n + 1);
    if (!arena) return qx_fail(e, QX_ENOMEM, "%s: out of memory", label);
    qx_status st = tok_json_vocab(vocab, label, arena, vocab_cb, b, e);
    json_t *added = json_object_get(tj, "added_tokens");
    for (size_t i = 0; st == QX_OK && json_is_array(added) && i < json_array_size(added); i++) {
        json_t *a = json_array_get(added, i);
        json_t *id = json_object_get(a, "id"), *content = json_object_get(a, "content");
        if (!json_is_integer(id) || !json_is_string(content) || json_string_length(content) == 0) {
            st = qx_fail(e, QX_EFORMAT, "%s: added_tokens[%zu] lacks an integer id or a non-empty content", label, i);
            break;
        }
        uint8_t f = TOK_F_ADDED;
        if (json_is_true(json_object_get(a, "special"))) f |= TOK_F_SPECIAL;
        if (json_is_true(json_object_get(a, "lstrip"))) f |= TOK_F_LSTRIP;
        if (json_is_true(json_object_get(a, "rstrip"))) f |= TOK_F_RSTRIP;
        st = b_set(b, json_integer_value(id), json_string_value(content), json_string_length(content), f, true, e);
    }
    if (st == QX_OK) st = add_config_specials(b, cfg, e);
    if (st == QX_OK && b->n == 0) st = qx_fail(e, QX_EFORMAT, "%s: empty vocabulary", label);
    if (st == QX_OK) st = b_finish_tokens(b, e);     /* copies the strings out of arena */
    free(arena);
    QX_TRY(st);
    QX_TRY(merges_alloc(b->t, 0, label, e));   /* grows by doubling: stays at load <= 1/2, cache-friendlier */
    if (!merges.p) return QX_OK;
    arena = malloc(merges.n + 1);
    if (!arena) return qx_fail(e, QX_ENOMEM, "%s: out of memory", label);
    merge_ctx mc = {b->t, label};
    st = tok_json_merges(merges, label, arena, merge_cb, &mc, e);
    free(arena);
    return st;
}

qx_status tk_from_json(const char *tok_json, size_t tok_len, const char *cfg_json, size_t cfg_len,
                            const char *label, tk_tok **out, qx_err *e) {
    *out = NULL;
    if (!label) label = "tokenizer.json";
    json_t *tj = NULL, *cfg = NULL;
    tok_span vocab, merges;
    QX_TRY(tok_json_split(tok_json, tok_len, label, &tj, &vocab, &merges, e));
    if (cfg_json) {
        json_error_t je;
        cfg = json_loadb(cfg_json, cfg_len, JSON_ALLOW_NUL, &je);
        if (!cfg) { json_decref(tj); return qx_fail(e, QX_EFORMAT, "%s: tokenizer_config.json: JSON error at line %d: %s", label, je.line, je.text); }
    }
    builder b = {.label = label, .t = tok_alloc()};
    qx_status st = b.t ? QX_OK : qx_fail(e, QX_ENOMEM, "%s: out of memory", label);
    if (st == QX_OK) st = parse_model(&b, tj, cfg, vocab, merges, e);
    if (st == QX_OK) st = parse_normalizer(b.t, json_object_get(tj, "normalizer"), label, e);
    if (st == QX_OK) st = parse_pre(b.t, json_object_get(tj, "pre_tokenizer"), label, e);
    if (st == QX_OK) st = parse_config(b.t, tj, cfg, label, e);
    if (st == QX_OK) detect_pre(b.t);
    free(b.src);
    json_decref(tj);
    json_decref(cfg);
    if (st != QX_OK) { tk_free(b.t); return st; }
    *out = b.t;
    return QX_OK;
}

/* ---------------------------------------------------------------- GGUF-form vocabulary */

qx_status tk_from_vocab(const tk_vocab *v, const char *label, tk_tok **out, qx_err *e) {
    *out = NULL;
    if (!label) label = "vocab";
    if (v->n_tokens <= 0 || v->n_tokens > TOK_MAX_VOCAB || !v->tokens || !v->types)
        return qx_fail(e, QX_EFORMAT, "%s: %lld tokens is out of range", label, (long long)v->n_tokens);
    if (strcmp(v->model, "gpt2"))
        return qx_fail(e, QX_EUNSUPPORTED, "%s: tokenizer model '%s' is not supported (gpt2 is)", label, v->model);
    builder b = {.label = label, .t = tok_alloc()};
    if (!b.t) return qx_fail(e, QX_ENOMEM, "%s: out of memory", label);
    qx_status st = QX_OK;
    for (int64_t i = 0; i < v->n_tokens && st == QX_OK; i++) {
        if (!v->tokens[i]) { st = qx_fail(e, QX_EFORMAT, "%s: token %lld is missing", label, (long long)i); break; }
        uint8_t f = 0;
        switch (v->types[i]) {
        case TK_NORMAL: case TK_BYTE: break;
        case TK_CONTROL: f = TOK_F_ADDED | TOK_F_SPECIAL; break;
        case TK_USER_DEFINED: case TK_UNKNOWN: f = TOK_F_ADDED; break;
        case TK_UNUSED: f = TOK_F_UNUSED; break;
        default: st = qx_fail(e, QX_EFORMAT, "%s: token %lld has type %d", label, (long long)i, v->types[i]);
        }
        if (st == QX_OK) st = b_set(&b, i, v->tokens[i], strlen(v->tokens[i]), f, false, e);
    }
    if (st == QX_OK) st = b_finish_tokens(&b, e);
    if (st == QX_OK) st = merges_alloc(b.t, v->n_merges, label, e);
    for (int64_t i = 0; i < v->n_merges && st == QX_OK; i++) {
        const char *s = v->merges ? v->merges[i] : NULL;
        const char *sp = s ? strchr(s, ' ') : NULL;
        if (!sp || strchr(sp + 1, ' ')) st = qx_fail(e, QX_EFORMAT, "%s: merge %lld is not \"a b\"", label, (long long)i);
        else st = merge_add(b.t, s, (size_t)(sp - s), sp + 1, strlen(sp + 1), label, e);
    }
    if (st == QX_OK) {
        tk_tok *t = b.t;
        int32_t ids[3] = {v->bos_id, v->eos_id, v->pad_id};
        for (int k = 0; k < 3; k++) if (ids[k] < -1 || ids[k] >= t->n_vocab) ids[k] = -1;
        t->bos = ids[0]; t->eos = ids[1]; t->pad = ids[2];
        t->add_bos = v->add_bos; t->add_eos = v->add_eos;
        t->has_add_sep = v->has_add_sep; t->add_sep = v->add_sep;
        if (v->chat_template && !(t->chat_template = strdup(v->chat_template))) st = qx_fail(e, QX_ENOMEM, "%s: out of memory", label);
    }
    if (st == QX_OK && !tok_pre_setup(b.t, v->pre[0] ? v->pre : "default", label, e, &st))
        st = qx_fail(e, QX_EUNSUPPORTED, "%s: tokenizer.ggml.pre '%s' is not supported (deepseek-v3, deepseek-r1-qwen, "
                     "llama-bpe, qwen2, kimi-k2, gpt2/default are)", label, v->pre);
    free(b.src);
    if (st != QX_OK) { tk_free(b.t); return st; }
    *out = b.t;
    return QX_OK;
}

/* ---------------------------------------------------------------- export for GGUF */

void tk_vocab_free(tk_vocab *v) {
    if (!v) return;
    if (v->tokens) free(v->tokens[0]);           /* one blob holds every string */
    free(v->tokens); free(v->types);
    if (v->merges) free(v->merges[0]);
    free(v->merges); free(v->chat_template);
    memset(v, 0, sizeof *v);
}

static bool looks_special(const char *s, size_t n) {
    static const char *exact[] = {"<pad>", "<mask>", "<2mass>", "[@BOS@]"};
    for (size_t i = 0; i < sizeof exact / sizeof *exact; i++) if (strlen(exact[i]) == n && !memcmp(s, exact[i], n)) return true;
    #define ENDS(a, b) (n >= strlen(a) + strlen(b) && !memcmp(s, a, strlen(a)) && !memcmp(s + n - strlen(b), b, strlen(b)))
    return ENDS("<|", "|>") || ENDS("<\xef\xbd\x9c", "\xef\xbd\x9c>") || ENDS("<unused", ">");
    #undef ENDS
}

/* GGUF text of token id into out (NULL: only measure); returns its length; sets *type. */
static size_t export_token(const tk_tok *t, int32_t id, char *out, int32_t *type) {
    const char *s = t->blob + t->off[id];
    size_t n = t->off[id + 1] - t->off[id];
    uint8_t f = t->flags[id];
    char tmp[4 * TOK_MAX_TOKEN + 32];
    if (!out) out = tmp;
    if (f & TOK_F_UNUSED) { *type = TK_UNUSED; return (size_t)sprintf(out, "[PAD%d]", id); }
    if (!(f & TOK_F_ADDED)) {
        *type = TK_NORMAL;
        if (f & TOK_F_MAPPED) return map_bytes(s, n, out);
        memcpy(out, s, n);
        return n;
    }
    if ((f & TOK_F_SPECIAL) || looks_special(s, n)) { *type = TK_CONTROL; memcpy(out, s, n); return n; }
    *type = TK_USER_DEFINED;        /* "▁" (U+2581) becomes a space, as llama.cpp's converter does */
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (i + 3 <= n && !memcmp(s + i, "\xe2\x96\x81", 3)) { out[k++] = ' '; i += 2; }
        else out[k++] = s[i];
    }
    return k;
}

static const char *pre_for(const tk_tok *t, const char *arch) {
    if (t->pre[0]) return t->pre;
    if (!arch) return NULL;
    if (!strcmp(arch, "deepseek2") || !strcmp(arch, "deepseek4")) return "deepseek-v3";   /* V4 ships V3's tokenizer */
    if (!strcmp(arch, "llama")) return "llama-bpe";
    if (!strcmp(arch, "qwen2")) return "qwen2";
    return NULL;
}

qx_status tk_export(const tk_tok *t, int64_t vocab_size, const char *arch, tk_vocab *v, qx_err *e) {
    memset(v, 0, sizeof *v);
    v->bos_id = v->eos_id = v->pad_id = -1;
    if (vocab_size == 0) vocab_size = t->n_vocab;
    if (vocab_size < t->n_vocab || vocab_size > TOK_MAX_VOCAB)
        return qx_fail(e, QX_ESHAPE, "tokenizer: vocab_size %lld is smaller than the tokenizer's %d tokens (or too large)",
                       (long long)vocab_size, t->n_vocab);
    const char *pre = pre_for(t, arch);
    if (!pre)
        return qx_fail(e, QX_EUNSUPPORTED, "tokenizer: cannot tell the pre-tokenizer family (regexes unknown, arch '%s')",
                       arch ? arch : "none");
    uint64_t total = 0;
    int32_t ty;
    for (int64_t i = 0; i < vocab_size; i++)
        total += (i < t->n_vocab ? export_token(t, (int32_t)i, NULL, &ty) : (size_t)snprintf(NULL, 0, "[PAD%lld]", (long long)i)) + 1;
    uint64_t mtotal = 1;
    for (int64_t r = 0; r < t->n_merges; r++) {
        int32_t a = t->merge_pair[2 * r], b = t->merge_pair[2 * r + 1];
        mtotal += 2 * (t->off[a + 1] - t->off[a] + t->off[b + 1] - t->off[b]) + 2;
    }
    v->tokens = malloc((size_t)vocab_size * sizeof(char *));
    v->types = malloc((size_t)vocab_size * sizeof(int32_t));
    v->merges = malloc(((size_t)t->n_merges + 1) * sizeof(char *));
    char *blob = malloc(total), *mblob = malloc(mtotal);
    if (!v->tokens || !v->types || !v->merges || !blob || !mblob) {
        free(blob); free(mblob); free(v->tokens); free(v->types); free(v->merges);
        memset(v, 0, sizeof *v);
        return qx_fail(e, QX_ENOMEM, "tokenizer: out of memory exporting %lld tokens", (long long)vocab_size);
    }
    uint64_t k = 0;
    for (int64_t i = 0; i < vocab_size; i++) {
        v->tokens[i] = blob + k;
        if (i < t->n_vocab) k += export_token(t, (int32_t)i, blob + k, &v->types[i]);
        else { k += (size_t)sprintf(blob + k, "[PAD%lld]", (long long)i); v->types[i] = TK_UNUSED; }
        blob[k++] = 0;
    }
    v->n_tokens = vocab_size;
    k = 0;
    v->merges[0] = mblob;
    for (int64_t r = 0; r < t->n_merges; r++) {
        int32_t a = t->merge_pair[2 * r], b = t->merge_pair[2 * r + 1];
        v->merges[r] = mblob + k;
        k += map_bytes(t->blob + t->off[a], t->off[a + 1] - t->off[a], mblob + k);
        mblob[k++] = ' ';
        k += map_bytes(t->blob + t->off[b], t->off[b + 1] - t->off[b], mblob + k);
        mblob[k++] = 0;
    }
    if (t->n_merges == 0) mblob[0] = 0;
    v->n_merges = t->n_merges;
    v->bos_id = t->bos; v->eos_id = t->eos; v->pad_id = t->pad;
    v->add_bos = t->add_bos; v->add_eos = t->add_eos;
    v->has_add_sep = t->has_add_sep; v->add_sep = t->add_sep;
    if (t->chat_template && !(v->chat_template = strdup(t->chat_template))) {
        tk_vocab_free(v);
        return qx_fail(e, QX_ENOMEM, "tokenizer: out of memory");
    }
    snprintf(v->model, sizeof v->model, "gpt2");
    snprintf(v->pre, sizeof v->pre, "%s", pre);
    return QX_OK;
}

/* ---------------------------------------------------------------- loading from paths */

qx_status tk_load(const char *path, tk_tok **out, qx_err *e) {
    *out = NULL;
    char tj[4096], cj[4096];
    if (qx_is_dir(path)) {
        if (!qx_path_join(tj, sizeof tj, path, "tokenizer.json")) return qx_fail(e, QX_EINVAL, "%s: path too long", path);
        if (!qx_path_join(cj, sizeof cj, path, "tokenizer_config.json")) return qx_fail(e, QX_EINVAL, "%s: path too long", path);
    } else if (qx_ends_with(path, ".gguf")) {
        gf_file *g = NULL;
        QX_TRY(gf_open(&g, path, e));
        qx_status st = tk_from_gguf(g, out, e);
        gf_close(g);
        return st;
    } else {
        if (snprintf(tj, sizeof tj, "%s", path) >= (int)sizeof tj) return qx_fail(e, QX_EINVAL, "%s: path too long", path);
        const char *slash = strrchr(path, '/');
        int dl = slash ? (int)(slash - path) : 0;
        if (snprintf(cj, sizeof cj, "%.*s%stokenizer_config.json", dl, path, slash ? "/" : "") >= (int)sizeof cj)
            return qx_fail(e, QX_EINVAL, "%s: path too long", path);
    }
    char *tbuf = NULL, *cbuf = NULL;
    size_t tlen = 0, clen = 0;
    bool tiktoken = false;
    if (qx_is_dir(path) && access(tj, F_OK) != 0) {   /* Kimi-K2: tiktoken.model, no tokenizer.json */
        char kj[4096];
        if (qx_path_join(kj, sizeof kj, path, "tiktoken.model") && access(kj, F_OK) == 0) {
            snprintf(tj, sizeof tj, "%s", kj);
            tiktoken = true;
        }
    }
    QX_TRY(qx_read_file(tj, &tbuf, &tlen, e));
    qx_err ce;
    if (qx_read_file(cj, &cbuf, &clen, &ce) != QX_OK) cbuf = NULL;   /* the config is optional */
    int64_t vocab_size = 0;   /* tiktoken: the model's vocab_size bounds the reserved special range */
    if (tiktoken) {
        char mj[4096];
        json_t *c = qx_path_join(mj, sizeof mj, path, "config.json") ? json_load_file(mj, 0, NULL) : NULL;
        json_t *vs = json_object_get(c, "vocab_size");
        if (!json_is_integer(vs)) vs = json_object_get(json_object_get(c, "text_config"), "vocab_size");
        if (json_is_integer(vs)) vocab_size = json_integer_value(vs);
        json_decref(c);
    }
    qx_status st = tiktoken ? tk_from_tiktoken(tbuf, tlen, cbuf, clen, vocab_size, tj, out, e)
                            : tk_from_json(tbuf, tlen, cbuf, clen, tj, out, e);
    free(tbuf); free(cbuf);
    return st;
}

/* ---------------------------------------------------------------- accessors */

int32_t tk_n_vocab(const tk_tok *t) { return t->n_vocab; }
int32_t tk_bos(const tk_tok *t) { return t->bos; }
int32_t tk_eos(const tk_tok *t) { return t->eos; }
bool tk_adds_bos(const tk_tok *t) { return t->add_bos; }
const char *tk_pre(const tk_tok *t) { return t->pre; }

const char *tk_bytes(const tk_tok *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_vocab || (t->flags[id] & TOK_F_UNUSED)) { *len = 0; return NULL; }
    *len = t->off[id + 1] - t->off[id];
    return t->blob + t->off[id];
}

bool tk_is_special(const tk_tok *t, int32_t id) {
    return id >= 0 && id < t->n_vocab && (t->flags[id] & TOK_F_ADDED);
}
