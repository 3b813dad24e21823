/* tok/tok_json.c — a streaming JSON scanner for the two big members of a tokenizer.json
 * (model.vocab: ~130k entries, model.merges: ~128k entries), which a DOM parser builds
 * slowly; every other member (small) is handed to jansson.  Strings are decoded (escapes,
 * \u surrogate pairs) into a caller-sized arena; structure is checked as it is walked, with
 * a nesting limit.  Works on a memory buffer and trusts nothing in it. */
#include "tok_internal.h"

#include <stdlib.h>
#include <string.h>

#define JS_MAX_DEPTH 64

typedef struct {
    const char *p, *end;
    const char *label;
    qx_err *e;
    qx_status st;
} jscan;

static bool jfail(jscan *s, const char *what) {
    if (s->st == QX_OK)
        s->st = qx_fail(s->e, QX_EFORMAT, "%s: JSON error near byte %lld: %s", s->label,
                        (long long)(s->end - s->p), what);   /* bytes before the end: stable for fuzzing */
    return false;
}

static void jws(jscan *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t')) s->p++;
}

static bool jlit(jscan *s, char c) {
    jws(s);
    if (s->p >= s->end || *s->p != c) return false;
    s->p++;
    return true;
}

static int hex4(const char *p) {
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= c - '0';
        else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
        else return -1;
    }
    return v;
}

/* Decodes a string at s->p into out (NULL: validate and skip).  out must have room for the
 * encoded length (decoded UTF-8 is never longer than its JSON form). */
static bool jstr(jscan *s, char *out, size_t *len) {
    jws(s);
    if (s->p >= s->end || *s->p != '"') return jfail(s, "string expected");
    s->p++;
    size_t k = 0;
    for (;;) {
        const char *q = s->p;
        while (q < s->end && *q != '"' && *q != '\\' && (unsigned char)*q >= 0x20) q++;
        if (out) memcpy(out + k, s->p, (size_t)(q - s->p));
        k += (size_t)(q - s->p);
        s->p = q;
        if (q >= s->end) return jfail(s, "unterminated string");
        if (*q == '"') { s->p++; break; }
        if ((unsigned char)*q < 0x20) return jfail(s, "control character in string");
        if (s->end - q < 2) return jfail(s, "bad escape");
        char c = q[1], r;
        s->p = q + 2;
        switch (c) {
        case '"': r = '"'; break;
        case '\\': r = '\\'; break;
        case '/': r = '/'; break;
        case 'b': r = '\b'; break;
        case 'f': r = '\f'; break;
        case 'n': r = '\n'; break;
        case 'r': r = '\r'; break;
        case 't': r = '\t'; break;
        case 'u': {
            if (s->end - s->p < 4) return jfail(s, "bad \\u escape");
            int v = hex4(s->p);
            if (v < 0) return jfail(s, "bad \\u escape");
            s->p += 4;
            uint32_t cp = (uint32_t)v;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                int lo;
                if (s->end - s->p < 6 || s->p[0] != '\\' || s->p[1] != 'u' || (lo = hex4(s->p + 2)) < 0xDC00 || lo > 0xDFFF)
                    return jfail(s, "unpaired surrogate");
                s->p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) return jfail(s, "unpaired surrogate");
            char tmp[4];
            size_t l = tok_utf8_enc(cp, tmp);
            if (out) memcpy(out + k, tmp, l);
            k += l;
            continue;
        }
        default: return jfail(s, "bad escape");
        }
        if (out) out[k] = r;
        k++;
    }
    *len = k;
    return true;
}

static bool jint(jscan *s, int64_t *v) {
    jws(s);
    const char *q = s->p;
    bool neg = q < s->end && *q == '-';
    if (neg) q++;
    if (q >= s->end || *q < '0' || *q > '9') return jfail(s, "integer expected");
    int64_t x = 0;
    while (q < s->end && *q >= '0' && *q <= '9') {
        if (x > (INT64_MAX - 9) / 10) return jfail(s, "integer too large");
        x = x * 10 + (*q++ - '0');
    }
    if (q < s->end && (*q == '.' || *q == 'e' || *q == 'E')) return jfail(s, "integer expected");
    s->p = q;
    *v = neg ? -x : x;
    return true;
}

static bool jskip(jscan *s, int depth) {
    if (depth > JS_MAX_DEPTH) return jfail(s, "nesting too deep");
    jws(s);
    if (s->p >= s->end) return jfail(s, "value expected");
    char c = *s->p;
    size_t l;
    if (c == '"') return jstr(s, NULL, &l);
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        s->p++;
        if (jlit(s, close)) return true;
        do {
            if (c == '{') {
                if (!jstr(s, NULL, &l)) return false;
                if (!jlit(s, ':')) return jfail(s, "':' expected");
            }
            if (!jskip(s, depth + 1)) return false;
        } while (jlit(s, ','));
        return jlit(s, close) ? true : jfail(s, "',' or end of container expected");
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        const char *q = s->p + 1;
        while (q < s->end && ((*q >= '0' && *q <= '9') || *q == '.' || *q == 'e' || *q == 'E' || *q == '+' || *q == '-')) q++;
        s->p = q;
        return true;
    }
    static const char *lits[] = {"true", "false", "null"};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(lits[i]);
        if ((size_t)(s->end - s->p) >= n && !memcmp(s->p, lits[i], n)) { s->p += n; return true; }
    }
    return jfail(s, "unexpected character");
}

/* Loads the value spanning [a, b) with jansson and stores it under key in obj. */
static bool jkeep(jscan *s, json_t *obj, const char *key, size_t klen, const char *a, const char *b) {
    json_error_t je;
    json_t *v = json_loadb(a, (size_t)(b - a), JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!v) {
        if (s->st == QX_OK) s->st = qx_fail(s->e, QX_EFORMAT, "%s: JSON error in '%.*s': %s", s->label, (int)(klen > 40 ? 40 : klen), key, je.text);
        return false;
    }
    char k[128];
    snprintf(k, sizeof k, "%.*s", (int)(klen > 127 ? 127 : klen), key);
    json_object_set_new(obj, k, v);
    return true;
}

/* Walks an object; members named big1/big2 have their spans recorded, the others go to obj. */
static bool jobject(jscan *s, json_t *obj, const char *big1, tok_span *sp1, const char *big2, tok_span *sp2,
                    json_t **model_obj) {
    char key[128];
    if (!jlit(s, '{')) return jfail(s, "object expected");
    if (jlit(s, '}')) return true;
    do {
        jws(s);
        const char *kstart = s->p;
        size_t kl;
        if (!jstr(s, NULL, &kl)) return false;
        if (kl < sizeof key) { s->p = kstart; jstr(s, key, &kl); key[kl] = 0; }
        else key[0] = 0;
        if (!jlit(s, ':')) return jfail(s, "':' expected");
        jws(s);
        const char *a = s->p;
        if (model_obj && !strcmp(key, "model")) {
            json_t *m = json_object();
            if (!m) return jfail(s, "out of memory");
            json_object_set_new(obj, "model", m);
            *model_obj = m;
            if (!jobject(s, m, "vocab", sp1, "merges", sp2, NULL)) return false;
            continue;
        }
        if (!jskip(s, 1)) return false;
        if (big1 && !strcmp(key, big1)) *sp1 = (tok_span){a, (size_t)(s->p - a)};
        else if (big2 && !strcmp(key, big2)) *sp2 = (tok_span){a, (size_t)(s->p - a)};
        else if (key[0] && !jkeep(s, obj, key, kl, a, s->p)) return false;
    } while (jlit(s, ','));
    return jlit(s, '}') ? true : jfail(s, "',' or '}' expected");
}

qx_status tok_json_split(const char *buf, size_t len, const char *label, json_t **root, tok_span *vocab,
                         tok_span *merges, qx_err *e) {
    jscan s = {buf, buf + len, label, e, QX_OK};
    *root = json_object();
    *vocab = *merges = (tok_span){NULL, 0};
    if (!*root) return qx_fail(e, QX_ENOMEM, "%s: out of memory", label);
    json_t *model = NULL;
    if (jobject(&s, *root, NULL, vocab, NULL, merges, &model)) {
        jws(&s);
        if (s.p != s.end) jfail(&s, "trailing data after the top-level object");
    }
    if (s.st != QX_OK) { json_decref(*root); *root = NULL; }
    return s.st;
}

qx_status tok_json_vocab(tok_span sp, const char *label, char *arena, tok_vocab_fn fn, void *ctx, qx_err *e) {
    jscan s = {sp.p, sp.p + sp.n, label, e, QX_OK};
    if (!jlit(&s, '{')) { jfail(&s, "model.vocab is not an object"); return s.st; }
    if (jlit(&s, '}')) return QX_OK;
    size_t k = 0;
    do {
        size_t l = 0;
        int64_t id = -1;
        if (!jstr(&s, arena + k, &l)) return s.st;
        if (!jlit(&s, ':')) { jfail(&s, "':' expected"); return s.st; }
        if (!jint(&s, &id)) return s.st;
        QX_TRY(fn(ctx, arena + k, l, id, e));
        k += l;
    } while (jlit(&s, ','));
    if (!jlit(&s, '}')) jfail(&s, "',' or '}' expected in model.vocab");
    return s.st;
}

qx_status tok_json_merges(tok_span sp, const char *label, char *arena, tok_merge_fn fn, void *ctx, qx_err *e) {
    jscan s = {sp.p, sp.p + sp.n, label, e, QX_OK};
    if (!jlit(&s, '[')) { jfail(&s, "model.merges is not a list"); return s.st; }
    if (jlit(&s, ']')) return QX_OK;
    int64_t i = 0;
    do {
        size_t la, lb;
        jws(&s);
        if (s.p < s.end && *s.p == '[') {
            s.p++;
            if (!jstr(&s, arena, &la) || !jlit(&s, ',')) { jfail(&s, "merge pair [a, b] expected"); return s.st; }
            if (!jstr(&s, arena + la, &lb) || !jlit(&s, ']')) { jfail(&s, "merge pair [a, b] expected"); return s.st; }
        } else {
            size_t l;
            if (!jstr(&s, arena, &l)) return s.st;
            const char *sp1 = memchr(arena, ' ', l);
            if (!sp1 || memchr(sp1 + 1, ' ', l - (size_t)(sp1 + 1 - arena)))
                return qx_fail(e, QX_EFORMAT, "%s: merge %lld '%.*s' is not two tokens separated by one space", label,
                               (long long)i, (int)(l > 60 ? 60 : l), arena);
            la = (size_t)(sp1 - arena);
            memmove(arena + la, sp1 + 1, l - la - 1);
            lb = l - la - 1;
        }
        QX_TRY(fn(ctx, arena, la, arena + la, lb, e));
        i++;
    } while (jlit(&s, ','));
    if (!jlit(&s, ']')) jfail(&s, "',' or ']' expected in model.merges");
    return s.st;
}
