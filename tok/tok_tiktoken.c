/* tok/tok_tiktoken.c — tiktoken vocabularies (Kimi-K2: `tiktoken.model` + tokenizer_config.json)
 * turned into the GGUF vocabulary llama.cpp's converter writes for them, and from it a tk_tok.
 *
 * tiktoken.model: one "<base64 token bytes> <rank>" per line (empty lines ignored).  A token's
 * id is its rank.  As convert_hf_to_gguf.py does for pre "kimi-k2":
 *   - tokens are written byte-to-unicode mapped (GPT-2 alphabet), type NORMAL;
 *   - merges are recovered by BPE-splitting each multi-byte token with the ranks below its own:
 *     when exactly two parts remain, "a b" (mapped) is the merge of that rank;
 *   - ids [n_base, n_base + 256) are the special tokens of tokenization_kimi.py (n_base = highest
 *     rank + 1, 256 = its num_reserved_special_tokens): named by tokenizer_config.json's
 *     added_tokens_decoder, else "<|reserved_token_{id}|>"; type CONTROL;
 *   - every other id below vocab_size is "[PAD{id}]", type UNUSED;
 *   - bos/eos from tokenizer_config.json's bos_token/eos_token, add_bos_token/add_eos_token and
 *     chat_template as given; tokenizer.ggml.pre "kimi-k2".
 * Not modelled: tokenization_kimi.py itself is not read (its regex is the fixed kimi-k2 one). */
#include "tok_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define TIK_N_RESERVED 256   /* tokenization_kimi.py: num_reserved_special_tokens */

typedef struct {
    int64_t n;               /* highest rank + 1 */
    uint8_t **tok;           /* [n] bytes of rank r (NULL: gap) */
    uint32_t *len;           /* [n] */
    uint8_t *arena;
    /* bytes -> rank, open addressing */
    uint64_t cap;
    int32_t *slot;           /* [cap] rank or -1 */
} tik;

static void tik_free(tik *k) {
    free(k->tok); free(k->len); free(k->arena); free(k->slot);
    memset(k, 0, sizeof *k);
}

static int32_t tik_get(const tik *k, const uint8_t *s, size_t n) {
    uint64_t h = XXH3_64bits(s, n) & (k->cap - 1);
    for (;;) {
        int32_t r = k->slot[h];
        if (r < 0) return -1;
        if (k->len[r] == n && !memcmp(k->tok[r], s, n)) return r;
        h = (h + 1) & (k->cap - 1);
    }
}

static int b64v(int c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Standard base64 with padding; returns the decoded length or -1. */
static int64_t b64_decode(const char *s, size_t n, uint8_t *out) {
    if (n == 0 || n % 4) return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4], pad = 0;
        for (int j = 0; j < 4; j++) {
            char c = s[i + j];
            if (c == '=' && i + 4 == n && j >= 2) { v[j] = 0; pad++; continue; }
            if (pad || (v[j] = b64v((unsigned char)c)) < 0) return -1;
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        out[o++] = (uint8_t)(w >> 16);
        if (pad < 2) out[o++] = (uint8_t)(w >> 8);
        if (pad < 1) out[o++] = (uint8_t)w;
    }
    return (int64_t)o;
}

static qx_status tik_parse(const char *buf, size_t len, const char *label, tik *k, qx_err *e) {
    memset(k, 0, sizeof *k);
    size_t n_lines = 0;
    for (size_t i = 0; i < len; i++) n_lines += buf[i] == '\n';
    n_lines++;
    if (n_lines > TOK_MAX_VOCAB) n_lines = TOK_MAX_VOCAB + 1;
    int64_t *rank = malloc(n_lines * sizeof *rank);
    uint64_t *off = malloc(n_lines * sizeof *off);
    k->arena = malloc(len / 4 * 3 + 4);
    if (!rank || !off || !k->arena) { free(rank); free(off); tik_free(k); return qx_fail(e, QX_ENOMEM, "%s: out of memory", label); }
    uint32_t *lens = malloc(n_lines * sizeof *lens);
    qx_status st = lens ? QX_OK : qx_fail(e, QX_ENOMEM, "%s: out of memory", label);
    size_t nt = 0, ao = 0, line = 0;
    int64_t max_rank = -1;
    for (size_t p = 0; st == QX_OK && p < len; line++) {
        const char *ls = buf + p, *nl = memchr(ls, '\n', len - p);
        size_t ll = nl ? (size_t)(nl - ls) : len - p;
        p += ll + (nl ? 1 : 0);
        if (ll && ls[ll - 1] == '\r') ll--;
        if (ll == 0) continue;
        const char *sp = memchr(ls, ' ', ll);
        if (!sp || sp == ls) { st = qx_fail(e, QX_EFORMAT, "%s: line %zu: expected '<base64 token> <rank>'", label, line + 1); break; }
        size_t bl = (size_t)(sp - ls);
        const char *rs = sp + 1, *re = ls + ll;
        int64_t r = 0;
        if (rs == re) st = qx_fail(e, QX_EFORMAT, "%s: line %zu: missing rank", label, line + 1);
        for (const char *q = rs; st == QX_OK && q < re; q++) {
            if (*q < '0' || *q > '9' || r > TOK_MAX_VOCAB) { st = qx_fail(e, QX_EFORMAT, "%s: line %zu: rank '%.*s' is not an integer below %d", label, line + 1, (int)(re - rs > 32 ? 32 : re - rs), rs, TOK_MAX_VOCAB); break; }
            r = r * 10 + (*q - '0');
        }
        if (st == QX_OK && r >= TOK_MAX_VOCAB) st = qx_fail(e, QX_EFORMAT, "%s: line %zu: rank %lld is not below %d", label, line + 1, (long long)r, TOK_MAX_VOCAB);
        if (st != QX_OK) break;
        int64_t dl = b64_decode(ls, bl, k->arena + ao);
        if (dl <= 0) { st = qx_fail(e, QX_EFORMAT, "%s: line %zu: token '%.*s' is not base64 of a non-empty string", label, line + 1, (int)(bl > 40 ? 40 : bl), ls); break; }
        if (dl > TOK_MAX_TOKEN) { st = qx_fail(e, QX_EFORMAT, "%s: line %zu: token of %lld bytes (max %d)", label, line + 1, (long long)dl, TOK_MAX_TOKEN); break; }
        if (nt >= n_lines) { st = qx_fail(e, QX_EFORMAT, "%s: more than %d tokens", label, TOK_MAX_VOCAB); break; }
        rank[nt] = r; off[nt] = ao; lens[nt] = (uint32_t)dl;
        ao += (size_t)dl;
        nt++;
        if (r > max_rank) max_rank = r;
    }
    if (st == QX_OK && nt == 0) st = qx_fail(e, QX_EFORMAT, "%s: no tokens", label);
    if (st == QX_OK) {
        k->n = max_rank + 1;
        k->tok = calloc((size_t)k->n, sizeof *k->tok);
        k->len = calloc((size_t)k->n, sizeof *k->len);
        k->cap = 1024;
        while (k->cap < 2 * (uint64_t)nt) k->cap *= 2;
        k->slot = malloc(k->cap * sizeof *k->slot);
        if (!k->tok || !k->len || !k->slot) st = qx_fail(e, QX_ENOMEM, "%s: out of memory", label);
        else memset(k->slot, 0xff, k->cap * sizeof *k->slot);
    }
    for (size_t i = 0; st == QX_OK && i < nt; i++) {
        int64_t r = rank[i];
        if (k->tok[r]) { st = qx_fail(e, QX_EFORMAT, "%s: rank %lld appears twice", label, (long long)r); break; }
        const uint8_t *s = k->arena + off[i];
        if (tik_get(k, s, lens[i]) >= 0) { st = qx_fail(e, QX_EFORMAT, "%s: token of rank %lld appears twice (also rank %d)", label, (long long)r, tik_get(k, s, lens[i])); break; }
        k->tok[r] = (uint8_t *)s;
        k->len[r] = lens[i];
        uint64_t h = XXH3_64bits(s, lens[i]) & (k->cap - 1);
        while (k->slot[h] >= 0) h = (h + 1) & (k->cap - 1);
        k->slot[h] = (int32_t)r;
    }
    free(rank); free(off); free(lens);
    if (st != QX_OK) tik_free(k);
    return st;
}

/* BPE-splits token r with the ranks below r (convert_hf_to_gguf.py's QwenModel.bpe with
 * max_rank); true with the split point when exactly two parts remain. */
static bool tik_merge_of(const tik *k, int64_t r, size_t *split, size_t *cuts, int32_t *pr) {
    const uint8_t *s = k->tok[r];
    size_t n = k->len[r], np = n;   /* parts [cuts[i], cuts[i+1]) */
    for (size_t i = 0; i <= n; i++) cuts[i] = i;
    for (;;) {
        int32_t best = -1;
        size_t bi = 0;
        for (size_t i = 0; i + 1 < np; i++) {
            int32_t q = tik_get(k, s + cuts[i], cuts[i + 2] - cuts[i]);
            pr[i] = q;
            if (q >= 0 && (best < 0 || q < best)) { best = q; bi = i; }
        }
        if (best < 0 || best >= r) break;
        memmove(cuts + bi + 1, cuts + bi + 2, (np - bi - 1) * sizeof *cuts);
        np--;
    }
    if (np != 2) return false;
    *split = cuts[1];
    return true;
}

static size_t map_into(const uint8_t *s, size_t n, char *out) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += tok_utf8_enc(tok_byte_to_cp(s[i]), out + k);
    return k;
}

/* Content of a tokenizer_config.json token entry: "text" or {"content": "text"}. */
static const char *cfg_text(json_t *v) {
    if (json_is_string(v)) return json_string_value(v);
    json_t *c = json_object_get(v, "content");
    return json_is_string(c) ? json_string_value(c) : NULL;
}

qx_status tk_vocab_from_tiktoken(const char *model, size_t len, const char *cfg_json, size_t cfg_len, int64_t vocab_size,
                                 const char *label, tk_vocab *v, qx_err *e) {
    memset(v, 0, sizeof *v);
    v->bos_id = v->eos_id = v->pad_id = -1;
    if (!label) label = "tiktoken.model";
    json_t *cfg = NULL;
    if (cfg_json) {
        json_error_t je;
        cfg = json_loadb(cfg_json, cfg_len, 0, &je);
        if (!json_is_object(cfg)) { json_decref(cfg); return qx_fail(e, QX_EFORMAT, "%s: tokenizer_config.json is not a JSON object", label); }
    }
    tik k;
    qx_status st = tik_parse(model, len, label, &k, e);
    if (st != QX_OK) { json_decref(cfg); return st; }
    int64_t n_spec_end = k.n + TIK_N_RESERVED;
    if (vocab_size <= 0) vocab_size = n_spec_end;
    if (vocab_size < k.n || vocab_size > TOK_MAX_VOCAB) {
        tik_free(&k);
        json_decref(cfg);
        return qx_fail(e, QX_ESHAPE, "%s: vocab_size %lld is smaller than the %lld ranks (or above %d)", label, (long long)vocab_size,
                       (long long)k.n, TOK_MAX_VOCAB);
    }
    json_t *dec = json_object_get(cfg, "added_tokens_decoder");
    /* sizes: mapped tokens take <= 2 bytes per byte; names and pads are short */
    uint64_t tb = 0, mb = 1;
    for (int64_t r = 0; r < k.n; r++) if (k.tok[r]) { tb += 2 * (uint64_t)k.len[r] + 1; mb += 2 * (uint64_t)k.len[r] + 2; }
    tb += (uint64_t)vocab_size * 32;   /* any id may be a gap: "[PAD%d]" / "<|reserved_token_%d|>" fit in 32 */
    const char *key;
    json_t *val;
    json_object_foreach(dec, key, val) { const char *c = cfg_text(val); if (c) tb += strlen(c) + 1; }
    v->tokens = malloc((size_t)vocab_size * sizeof *v->tokens);
    v->types = malloc((size_t)vocab_size * sizeof *v->types);
    v->merges = malloc((size_t)(k.n + 1) * sizeof *v->merges);
    char *blob = malloc(tb), *mblob = malloc(mb);
    size_t *cuts = malloc((TOK_MAX_TOKEN + 2) * sizeof *cuts);
    int32_t *pr = malloc((TOK_MAX_TOKEN + 2) * sizeof *pr);
    if (!v->tokens || !v->types || !v->merges || !blob || !mblob || !cuts || !pr) st = qx_fail(e, QX_ENOMEM, "%s: out of memory", label);
    uint64_t bo = 0, mo = 0;
    for (int64_t i = 0; st == QX_OK && i < vocab_size; i++) {
        v->tokens[i] = blob + bo;
        const char *name = NULL;
        char tmp[48];
        if (i < k.n && k.tok[i]) {
            bo += map_into(k.tok[i], k.len[i], blob + bo);
            v->types[i] = TK_NORMAL;
        } else if (i >= k.n && i < n_spec_end) {
            snprintf(tmp, sizeof tmp, "%lld", (long long)i);
            name = cfg_text(json_object_get(dec, tmp));
            if (!name) { snprintf(tmp, sizeof tmp, "<|reserved_token_%lld|>", (long long)i); name = tmp; }
            v->types[i] = TK_CONTROL;
        } else {
            snprintf(tmp, sizeof tmp, "[PAD%lld]", (long long)i);
            name = tmp;
            v->types[i] = TK_UNUSED;
        }
        if (name) {
            size_t nl = strlen(name);
            if (nl == 0 || nl > TOK_MAX_TOKEN) { st = qx_fail(e, QX_EFORMAT, "%s: special token %lld has an empty or oversized name", label, (long long)i); break; }
            memcpy(blob + bo, name, nl);
            bo += nl;
        }
        blob[bo++] = 0;
    }
    v->n_tokens = st == QX_OK ? vocab_size : 0;
    for (int64_t r = 0; st == QX_OK && r < k.n; r++) {
        size_t split;
        if (!k.tok[r] || k.len[r] < 2 || !tik_merge_of(&k, r, &split, cuts, pr)) continue;
        v->merges[v->n_merges++] = mblob + mo;
        mo += map_into(k.tok[r], split, mblob + mo);
        mblob[mo++] = ' ';
        mo += map_into(k.tok[r] + split, k.len[r] - split, mblob + mo);
        mblob[mo++] = 0;
    }
    if (st == QX_OK && v->n_merges == 0) { v->merges[0] = mblob; mblob[0] = 0; }
    free(cuts);
    free(pr);
    if (st == QX_OK) {
        const char *bos = cfg_text(json_object_get(cfg, "bos_token")), *eos = cfg_text(json_object_get(cfg, "eos_token"));
        for (int64_t i = k.n; i < vocab_size; i++) {
            if (v->types[i] != TK_CONTROL) continue;
            if (bos && v->bos_id < 0 && !strcmp(v->tokens[i], bos)) v->bos_id = (int32_t)i;
            if (eos && v->eos_id < 0 && !strcmp(v->tokens[i], eos)) v->eos_id = (int32_t)i;
        }
        json_t *ab = json_object_get(cfg, "add_bos_token"), *ae = json_object_get(cfg, "add_eos_token");
        v->add_bos = json_is_true(ab);
        v->add_eos = json_is_true(ae);
        json_t *as = json_object_get(cfg, "add_sep_token");
        v->has_add_sep = json_is_boolean(as);
        v->add_sep = json_is_true(as);
        json_t *ct = json_object_get(cfg, "chat_template");
        if (json_is_string(ct) && !(v->chat_template = strdup(json_string_value(ct)))) st = qx_fail(e, QX_ENOMEM, "%s: out of memory", label);
        snprintf(v->model, sizeof v->model, "gpt2");
        snprintf(v->pre, sizeof v->pre, "kimi-k2");
    }
    tik_free(&k);
    json_decref(cfg);
    /* tk_vocab_free frees tokens[0] / merges[0] as the blobs */
    if (st == QX_OK && vocab_size > 0) v->tokens[0] = blob; else free(blob);
    if (st == QX_OK) v->merges[0] = v->n_merges ? v->merges[0] : mblob;
    if (st != QX_OK) {
        free(mblob);
        free(v->tokens); free(v->types); free(v->merges);
        memset(v, 0, sizeof *v);
        return st;
    }
    return QX_OK;
}

qx_status tk_from_tiktoken(const char *model, size_t len, const char *cfg_json, size_t cfg_len, int64_t vocab_size,
                           const char *label, tk_tok **out, qx_err *e) {
    *out = NULL;
    tk_vocab v;
    QX_TRY(tk_vocab_from_tiktoken(model, len, cfg_json, cfg_len, vocab_size, label, &v, e));
    qx_status st = tk_from_vocab(&v, label, out, e);
    tk_vocab_free(&v);
    return st;
}
