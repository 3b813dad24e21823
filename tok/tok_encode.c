/* tok/tok_encode.c — the encoding side of the byte-level BPE tokenizer: added-token
 * matching (leftmost-longest over a byte trie), the pre-tokenizer (a sequence of PCRE2 Split
 * stages with HF's behaviours, run on each piece of the previous stage), BPE merges by rank
 * (heap of candidate pairs, as HF's Word::merge_all), and decoding.  A per-call cache of
 * piece -> ids makes repeated words cheap; the tk_tok itself is never written.
 * Building the tokenizer lives in tok/tokenizer.c. */
#include "tok_internal.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* ---------------------------------------------------------------- UTF-8 and byte map */

/* GPT-2 bytes_to_unicode: printable bytes (33..126, 161..172, 174..255) map to themselves;
 * the 68 others, in byte order, to 256..323 (0..32 -> 256..288, 127..160 -> 289..322, 173 -> 323). */
uint32_t tok_byte_to_cp(uint8_t b) {
    if (b <= 32) return 256u + b;
    if (b >= 127 && b <= 160) return 289u + (b - 127u);
    if (b == 173) return 323;
    return b;
}

int tok_cp_to_byte(uint32_t cp) {
    if ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || (cp >= 174 && cp <= 255)) return (int)cp;
    if (cp >= 256 && cp <= 288) return (int)(cp - 256);
    if (cp >= 289 && cp <= 322) return (int)(cp - 289 + 127);
    if (cp == 323) return 173;
    return -1;
}

size_t tok_utf8_dec(const uint8_t *s, size_t n, uint32_t *cp) {
    if (n == 0) return 0;
    uint8_t c = s[0];
    if (c < 0x80) { *cp = c; return 1; }
    size_t len; uint32_t v, min;
    if ((c & 0xE0) == 0xC0) { len = 2; v = c & 0x1F; min = 0x80; }
    else if ((c & 0xF0) == 0xE0) { len = 3; v = c & 0x0F; min = 0x800; }
    else if ((c & 0xF8) == 0xF0) { len = 4; v = c & 0x07; min = 0x10000; }
    else return 0;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = v << 6 | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

size_t tok_utf8_enc(uint32_t cp, char *o) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | cp >> 6); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F)); return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

size_t tok_utf8_check(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) {           /* ASCII run, 8 bytes at a time */
            while (i + 8 <= n) {
                uint64_t w; memcpy(&w, s + i, 8);
                if (w & 0x8080808080808080ull) break;
                i += 8;
            }
            while (i < n && s[i] < 0x80) i++;
            continue;
        }
        uint32_t cp;
        size_t l = tok_utf8_dec(s + i, n - i, &cp);
        if (l == 0) return i;
        i += l;
    }
    return n;
}

/* ---------------------------------------------------------------- lookups */

static uint32_t hash_bytes(const void *s, size_t n) { return (uint32_t)XXH3_64bits(s, n); }

int32_t tok_strmap_get(const tk_tok *t, const char *s, size_t n) {
    const tok_strmap *m = &t->bpe_map;
    if (m->cap == 0) return -1;
    uint32_t mask = m->cap - 1, hv = hash_bytes(s, n), h = hv & mask;
    for (;;) {
        int32_t id = m->slot[h].id;
        if (id < 0) return -1;
        if (m->slot[h].hash == hv && t->off[id + 1] - t->off[id] == n && memcmp(t->blob + t->off[id], s, n) == 0) return id;
        h = (h + 1) & mask;
    }
}

static inline uint64_t mix64(uint64_t k) {
    k ^= k >> 33; k *= 0xff51afd7ed558ccdull; k ^= k >> 33; k *= 0xc4ceb9fe1a85ec53ull; k ^= k >> 33;
    return k;
}

/* Rank and result of merging (a, b); false when there is no such merge. */
static inline bool merge_get(const tk_tok *t, int32_t a, int32_t b, int32_t *rank, int32_t *res) {
    if (t->mcap == 0) return false;
    uint64_t key = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1, mask = t->mcap - 1;
    for (uint64_t h = mix64(key) & mask;; h = (h + 1) & mask) {
        const tok_merge_slot *s = &t->mslot[h];
        if (s->key == 0) return false;
        if (s->key == key) { *rank = s->rank; *res = s->result; return true; }
    }
}

/* ---------------------------------------------------------------- per-call context */

typedef struct { uint32_t start, end; bool match; } seg;
typedef struct { seg *v; size_t n, cap; } segvec;
typedef struct { int32_t id, prev, next; uint32_t len; } sym;
typedef struct { int32_t rank, pos, result; } cand;
typedef struct { uint32_t hash, key_off, key_len, ids_off, n_ids; } cache_ent;

typedef struct {
    const tk_tok *t;
    qx_err *e;
    qx_status st;
    bool count_only;
    size_t n_pieces;
    int32_t *ids; size_t n, cap;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jstack;
    segvec sv[TOK_MAX_STAGES];
    sym *sy; size_t sy_cap;
    cand *hp; size_t hp_n, hp_cap;
    /* piece cache */
    cache_ent *ce; uint32_t ce_cap, ce_n;
    char *ck; size_t ck_n, ck_cap;
    int32_t *ci; size_t ci_n, ci_cap;
} tok_ctx;

#define CACHE_MAX_KEY 64
#define CACHE_MAX_ENTRIES (1u << 20)

static bool grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return true;
    size_t nc = *cap ? *cap : 64;
    while (nc < need) nc *= 2;
    void *q = realloc(*p, nc * elem);
    if (!q) return false;
    *p = q; *cap = nc;
    return true;
}

static void ctx_oom(tok_ctx *c) {
    if (c->st == QX_OK) c->st = qx_fail(c->e, QX_ENOMEM, "tokenizer: out of memory while encoding");
}

static void emit(tok_ctx *c, int32_t id) {
    if (!grow((void **)&c->ids, &c->cap, c->n + 1, sizeof(int32_t))) { ctx_oom(c); return; }
    c->ids[c->n++] = id;
}

static void ctx_free(tok_ctx *c) {
    pcre2_match_data_free(c->md);
    pcre2_match_context_free(c->mctx);
    pcre2_jit_stack_free(c->jstack);
    for (int i = 0; i < TOK_MAX_STAGES; i++) free(c->sv[i].v);
    free(c->sy); free(c->hp); free(c->ce); free(c->ck); free(c->ci);
    free(c->ids);
}

static qx_status ctx_init(tok_ctx *c, const tk_tok *t, qx_err *e) {
    memset(c, 0, sizeof *c);
    c->t = t; c->e = e;
    c->md = pcre2_match_data_create(1, NULL);
    c->mctx = pcre2_match_context_create(NULL);
    c->jstack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
    if (!c->md || !c->mctx || !c->jstack) { ctx_free(c); return qx_fail(e, QX_ENOMEM, "tokenizer: out of memory"); }
    pcre2_jit_stack_assign(c->mctx, NULL, c->jstack);
    return QX_OK;
}

/* ---------------------------------------------------------------- BPE */

static void heap_push(tok_ctx *c, cand x) {
    if (!grow((void **)&c->hp, &c->hp_cap, c->hp_n + 1, sizeof(cand))) { ctx_oom(c); return; }
    size_t i = c->hp_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        cand *q = &c->hp[p];
        if (q->rank < x.rank || (q->rank == x.rank && q->pos < x.pos)) break;
        c->hp[i] = *q; i = p;
    }
    c->hp[i] = x;
}

static cand heap_pop(tok_ctx *c) {
    cand top = c->hp[0], x = c->hp[--c->hp_n];
    size_t i = 0, n = c->hp_n;
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l >= n) break;
        size_t r = l + 1;
        m = l;
        if (r < n && (c->hp[r].rank < c->hp[l].rank || (c->hp[r].rank == c->hp[l].rank && c->hp[r].pos < c->hp[l].pos))) m = r;
        if (x.rank < c->hp[m].rank || (x.rank == c->hp[m].rank && x.pos < c->hp[m].pos)) break;
        c->hp[i] = c->hp[m]; i = m;
    }
    if (n) c->hp[i] = x;
    return top;
}

static void push_pair(tok_ctx *c, int32_t i) {
    if (i < 0) return;
    int32_t j = c->sy[i].next;
    if (j < 0) return;
    int32_t rank, res;
    if (merge_get(c->t, c->sy[i].id, c->sy[j].id, &rank, &res)) heap_push(c, (cand){rank, i, res});
}

/* Merges the bytes of one piece and appends the ids to out (c->ids). */
static void bpe_merge(tok_ctx *c, const uint8_t *s, size_t n) {
    const tk_tok *t = c->t;
    if (!grow((void **)&c->sy, &c->sy_cap, n, sizeof(sym))) { ctx_oom(c); return; }
    int32_t m = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_tok[s[i]];
        if (id < 0) continue;             /* no token for this byte: dropped, as HF without unk */
        c->sy[m] = (sym){id, m - 1, -1, 1};
        if (m > 0) c->sy[m - 1].next = m;
        m++;
    }
    c->hp_n = 0;
    for (int32_t i = 0; i + 1 < m; i++) push_pair(c, i);
    while (c->hp_n > 0 && c->st == QX_OK) {
        cand x = heap_pop(c);
        sym *a = &c->sy[x.pos];
        if (a->len == 0 || a->next < 0) continue;
        sym *b = &c->sy[a->next];
        int32_t rank, res;
        if (!merge_get(t, a->id, b->id, &rank, &res) || res != x.result || rank != x.rank) continue;
        a->id = res;
        a->len += b->len;
        b->len = 0;
        a->next = b->next;
        if (a->next >= 0) c->sy[a->next].prev = x.pos;
        push_pair(c, a->prev);
        push_pair(c, x.pos);
    }
    for (int32_t i = 0; i < m && m > 0; i = c->sy[i].next) {
        emit(c, c->sy[i].id);
        if (c->sy[i].next < 0) break;
    }
}

static bool cache_find(tok_ctx *c, const uint8_t *s, size_t n, uint32_t h) {
    if (c->ce_cap == 0) return false;
    uint32_t mask = c->ce_cap - 1;
    for (uint32_t i = h & mask;; i = (i + 1) & mask) {
        cache_ent *x = &c->ce[i];
        if (x->key_len == 0) return false;
        if (x->hash == h && x->key_len == n && memcmp(c->ck + x->key_off, s, n) == 0) {
            for (uint32_t k = 0; k < x->n_ids; k++) emit(c, c->ci[x->ids_off + k]);
            return true;
        }
    }
}

static void cache_put(tok_ctx *c, const uint8_t *s, size_t n, uint32_t h, size_t first, size_t cnt) {
    if (c->ce_n >= CACHE_MAX_ENTRIES) return;
    if ((c->ce_n + 1) * 2 > c->ce_cap) {
        uint32_t nc = c->ce_cap ? c->ce_cap * 2 : 4096;
        cache_ent *ne = calloc(nc, sizeof *ne);
        if (!ne) return;                  /* the cache is an optimisation only */
        for (uint32_t i = 0; i < c->ce_cap; i++) {
            if (c->ce[i].key_len == 0) continue;
            uint32_t j = c->ce[i].hash & (nc - 1);
            while (ne[j].key_len) j = (j + 1) & (nc - 1);
            ne[j] = c->ce[i];
        }
        free(c->ce); c->ce = ne; c->ce_cap = nc;
    }
    if (!grow((void **)&c->ck, &c->ck_cap, c->ck_n + n, 1) ||
        !grow((void **)&c->ci, &c->ci_cap, c->ci_n + cnt, sizeof(int32_t))) return;
    uint32_t j = h & (c->ce_cap - 1);
    while (c->ce[j].key_len) j = (j + 1) & (c->ce_cap - 1);
    memcpy(c->ck + c->ck_n, s, n);
    if (cnt) memcpy(c->ci + c->ci_n, c->ids + first, cnt * sizeof(int32_t));
    c->ce[j] = (cache_ent){h, (uint32_t)c->ck_n, (uint32_t)n, (uint32_t)c->ci_n, (uint32_t)cnt};
    c->ck_n += n; c->ci_n += cnt; c->ce_n++;
}

static void piece(tok_ctx *c, const uint8_t *s, size_t n) {
    if (n == 0 || c->st != QX_OK) return;
    c->n_pieces++;
    if (c->count_only) return;
    const tk_tok *t = c->t;
    if (n == 1) { if (t->byte_tok[s[0]] >= 0) emit(c, t->byte_tok[s[0]]); return; }
    uint32_t h = 0;
    bool cacheable = n <= CACHE_MAX_KEY;
    if (cacheable) {
        h = hash_bytes(s, n);
        if (cache_find(c, s, n, h)) return;
    }
    size_t first = c->n;
    int32_t id = t->ignore_merges ? tok_strmap_get(t, (const char *)s, n) : -1;
    if (id >= 0) emit(c, id);
    else bpe_merge(c, s, n);
    if (cacheable && c->st == QX_OK) cache_put(c, s, n, h, first, c->n - first);
}

/* ---------------------------------------------------------------- pre-tokenizer */

static int run_re(tok_ctx *c, const tok_stage *st, const uint8_t *s, size_t n, size_t from) {
    if (st->jit) return pcre2_jit_match(st->re, s, n, from, 0, c->md, c->mctx);
    return pcre2_match(st->re, s, n, from, PCRE2_NO_UTF_CHECK, c->md, c->mctx);
}

static bool seg_push(tok_ctx *c, segvec *v, size_t a, size_t b, bool m) {
    if (!grow((void **)&v->v, &v->cap, v->n + 1, sizeof(seg))) { ctx_oom(c); return false; }
    v->v[v->n++] = (seg){(uint32_t)a, (uint32_t)b, m};
    return true;
}

/* Splits s[0, n) by stage k into matches and gaps (HF pattern find_matches), then applies
 * the behaviour and hands each non-empty part to stage k + 1 (or to BPE after the last). */
static void split_stage(tok_ctx *c, const uint8_t *s, size_t n, int k) {
    if (c->st != QX_OK) return;
    if (k == c->t->n_stages) { piece(c, s, n); return; }
    const tok_stage *st = &c->t->stage[k];
    segvec *v = &c->sv[k];
    v->n = 0;
    size_t prev = 0, pos = 0;
    while (pos <= n) {
        int rc = run_re(c, st, s, n, pos);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[120];
            pcre2_get_error_message(rc, msg, sizeof msg);
            c->st = qx_fail(c->e, QX_EUNSUPPORTED, "tokenizer: pre-tokenizer regex %d failed on a %zu-byte piece: %s",
                            k, n, (const char *)msg);
            return;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
        size_t ms = ov[0], me = ov[1];
        if (ms > prev && !seg_push(c, v, prev, ms, false)) return;
        if (!seg_push(c, v, ms, me, true)) return;
        prev = me;
        if (me == ms) {                   /* empty match: step over one character */
            if (me >= n) break;
            uint32_t cp;
            size_t l = tok_utf8_dec(s + me, n - me, &cp);
            pos = me + (l ? l : 1);
        } else pos = me;
    }
    if (prev < n && !seg_push(c, v, prev, n, false)) return;
    if (st->invert) for (size_t i = 0; i < v->n; i++) v->v[i].match = !v->v[i].match;

    /* behaviours other than Isolated fold the list in place (HF SplitDelimiterBehavior) */
    size_t w = 0;
    bool prev_match = false;
    switch (st->behavior) {
    case TOK_ISOLATED: w = v->n; break;
    case TOK_REMOVED:
        for (size_t i = 0; i < v->n; i++) if (!v->v[i].match) v->v[w++] = v->v[i];
        break;
    case TOK_MERGED_PREV:
        for (size_t i = 0; i < v->n; i++) {
            seg x = v->v[i];
            if (x.match && !prev_match && w > 0) v->v[w - 1].end = x.end;
            else v->v[w++] = x;
            prev_match = x.match;
        }
        break;
    case TOK_MERGED_NEXT:
        for (size_t i = v->n; i-- > 0;) {        /* built reversed at the end, then flipped */
            seg x = v->v[i];
            if (x.match && !prev_match && w > 0) v->v[v->n - w].start = x.start;
            else { w++; v->v[v->n - w] = x; }
            prev_match = x.match;
        }
        if (w) memmove(v->v, v->v + (v->n - w), w * sizeof(seg));
        break;
    case TOK_CONTIGUOUS:
        for (size_t i = 0; i < v->n; i++) {
            seg x = v->v[i];
            if (w > 0 && x.match == prev_match) v->v[w - 1].end = x.end;
            else v->v[w++] = x;
            prev_match = x.match;
        }
        break;
    }
    v->n = w;
    /* stage k + 1 reuses its own vector, so ours stays valid while we walk it */
    for (size_t i = 0; i < v->n && c->st == QX_OK; i++) {
        seg x = v->v[i];
        if (x.end > x.start) split_stage(c, s + x.start, x.end - x.start, k + 1);
    }
}

static void segment(tok_ctx *c, const uint8_t *s, size_t n) {
    if (n == 0 || c->st != QX_OK) return;
    if (c->t->nfc && !tok_nfc_quick((const char *)s, n)) {
        char *buf; size_t bl;
        if (!tok_nfc((const char *)s, n, &buf, &bl)) { ctx_oom(c); return; }
        split_stage(c, (const uint8_t *)buf, bl, 0);
        free(buf);
        return;
    }
    split_stage(c, s, n, 0);
}

/* Unicode White_Space (what HF's char::is_whitespace tests for lstrip/rstrip). */
static bool is_ws_cp(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Length of the whitespace character ending at s[end) (0 if none); lo bounds the search. */
static size_t ws_before(const uint8_t *s, size_t lo, size_t end) {
    size_t st = end;
    while (st > lo && end - st < 4) {
        st--;
        if ((s[st] & 0xC0) != 0x80) break;
    }
    if (st == end) return 0;
    uint32_t cp;
    size_t l = tok_utf8_dec(s + st, end - st, &cp);
    return l == end - st && is_ws_cp(cp) ? l : 0;
}

static size_t ws_after(const uint8_t *s, size_t at, size_t n) {
    uint32_t cp;
    size_t l = tok_utf8_dec(s + at, n - at, &cp);
    return l && is_ws_cp(cp) ? l : 0;
}

/* Longest added token starting at s[0]; returns its length (0 if none), id in *id. */
static size_t trie_match(const tk_tok *t, const uint8_t *s, size_t n, int32_t *id) {
    size_t best = 0;
    int32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t ch = t->trie[node].child;
        while (ch >= 0 && t->trie[ch].byte != s[i]) ch = t->trie[ch].sibling;
        if (ch < 0) break;
        node = ch;
        if (t->trie[node].token >= 0) { best = i + 1; *id = t->trie[node].token; }
    }
    return best;
}

static void encode_all(tok_ctx *c, const uint8_t *s, size_t n) {
    const tk_tok *t = c->t;
    bool first[256] = {false};
    bool any = false;
    if (t->n_trie > 0)
        for (int32_t ch = t->trie[0].child; ch >= 0; ch = t->trie[ch].sibling) { first[t->trie[ch].byte] = true; any = true; }
    size_t pos = 0, i = 0;
    while (any && i < n && c->st == QX_OK) {
        if (!first[s[i]]) { i++; continue; }
        int32_t id = -1;
        size_t l = trie_match(t, s + i, n - i, &id);
        if (l == 0) { i++; continue; }
        size_t ms = i, me = i + l;
        size_t w;
        if (t->flags[id] & TOK_F_LSTRIP) while ((w = ws_before(s, pos, ms)) > 0) ms -= w;
        if (t->flags[id] & TOK_F_RSTRIP) while (me < n && (w = ws_after(s, me, n)) > 0) me += w;
        segment(c, s + pos, ms - pos);
        if (c->count_only) c->n_pieces++;
        else emit(c, id);
        pos = i = me;
    }
    segment(c, s + pos, n - pos);
}

static qx_status check_text(const char *text, size_t len, qx_err *e) {
    if (len > UINT32_MAX) return qx_fail(e, QX_EINVAL, "tokenizer: text of %zu bytes is too long (limit 4 GiB)", len);
    if (len && !text) return qx_fail(e, QX_EINVAL, "tokenizer: NULL text");
    size_t bad = tok_utf8_check((const uint8_t *)text, len);
    if (bad < len) return qx_fail(e, QX_EINVAL, "tokenizer: text is not valid UTF-8 at byte %zu", bad);
    return QX_OK;
}

qx_status tk_encode(const tk_tok *t, const char *text, size_t len, bool add_bos,
                         int32_t **ids, size_t *n_ids, qx_err *e) {
    *ids = NULL; *n_ids = 0;
    QX_TRY(check_text(text, len, e));
    tok_ctx c;
    QX_TRY(ctx_init(&c, t, e));
    if (add_bos && t->bos >= 0) emit(&c, t->bos);
    encode_all(&c, (const uint8_t *)text, len);
    if (c.st == QX_OK && !c.ids && !(c.ids = malloc(sizeof(int32_t)))) ctx_oom(&c);   /* never NULL on success */
    qx_status st = c.st;
    if (st == QX_OK) { *ids = c.ids; *n_ids = c.n; c.ids = NULL; }
    ctx_free(&c);
    return st;
}

qx_status tk_count_pieces(const tk_tok *t, const char *text, size_t len, size_t *n_pieces, qx_err *e) {
    *n_pieces = 0;
    QX_TRY(check_text(text, len, e));
    tok_ctx c;
    QX_TRY(ctx_init(&c, t, e));
    c.count_only = true;
    encode_all(&c, (const uint8_t *)text, len);
    *n_pieces = c.n_pieces;
    qx_status st = c.st;
    ctx_free(&c);
    return st;
}

qx_status tk_decode(const tk_tok *t, const int32_t *ids, size_t n_ids, char **out, size_t *out_len, qx_err *e) {
    *out = NULL; *out_len = 0;
    uint64_t total = 0;
    for (size_t i = 0; i < n_ids; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab)
            return qx_fail(e, QX_EINVAL, "tokenizer: id %d at position %zu is out of range [0, %d)", ids[i], i, t->n_vocab);
        if (!(t->flags[ids[i]] & TOK_F_UNUSED)) total += t->off[ids[i] + 1] - t->off[ids[i]];
    }
    char *o = malloc(total + 1);
    if (!o) return qx_fail(e, QX_ENOMEM, "tokenizer: out of memory decoding %zu ids", n_ids);
    size_t k = 0;
    for (size_t i = 0; i < n_ids; i++) {
        if (t->flags[ids[i]] & TOK_F_UNUSED) continue;
        size_t l = t->off[ids[i] + 1] - t->off[ids[i]];
        memcpy(o + k, t->blob + t->off[ids[i]], l);
        k += l;
    }
    o[k] = 0;
    *out = o; *out_len = k;
    return QX_OK;
}

/* ---------------------------------------------------------------- stages */

qx_status tok_stage_add(tk_tok *t, const char *pattern, size_t plen, tok_behavior b, bool invert,
                        const char *label, qx_err *e) {
    if (t->n_stages >= TOK_MAX_STAGES)
        return qx_fail(e, QX_EUNSUPPORTED, "%s: more than %d pre-tokenizer split stages", label, TOK_MAX_STAGES);
    int err; PCRE2_SIZE eoff;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, plen, PCRE2_UTF | PCRE2_UCP, &err, &eoff, NULL);
    if (!re) {
        PCRE2_UCHAR msg[120];
        pcre2_get_error_message(err, msg, sizeof msg);
        return qx_fail(e, QX_EUNSUPPORTED, "%s: pre-tokenizer regex does not compile at offset %zu: %s",
                       label, (size_t)eoff, (const char *)msg);
    }
    char *p = malloc(plen + 1);
    if (!p) { pcre2_code_free(re); return qx_fail(e, QX_ENOMEM, "%s: out of memory", label); }
    memcpy(p, pattern, plen); p[plen] = 0;
    tok_stage *s = &t->stage[t->n_stages++];
    s->re = re; s->behavior = b; s->invert = invert; s->pattern = p;
    s->jit = pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) == 0;
    return QX_OK;
}

#define RE_GPT2  "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
/* For GGUF files the contractions are spelled as llama.cpp spells them ('[sS] rather than
 * (?i:'s), which would also match U+017F and U+212A under Unicode case folding). */
#define RE_LLAMA3 "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_QWEN2 "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_DS3_NUM "\\p{N}{1,3}"
#define RE_DS3_CJK "[\\x{4e00}-\\x{9fa5}\\x{3040}-\\x{309f}\\x{30a0}-\\x{30ff}]+"
#define RE_DS3_MAIN "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

/* Kimi-K2 (tokenization_kimi.py's pat_str; llama.cpp implements it by hand in unicode.cpp).
 * Its class intersections [X&&[^\p{Han}]] are written (?:(?!\p{Han})[X]) for PCRE2. */
#define RE_K2_UP "(?:(?!\\p{Han})[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}])"
#define RE_K2_LO "(?:(?!\\p{Han})[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}])"
#define RE_K2_SUF "(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
#define RE_KIMI_K2 "\\p{Han}+|[^\\r\\n\\p{L}\\p{N}]?" RE_K2_UP "*" RE_K2_LO "+" RE_K2_SUF \
    "|[^\\r\\n\\p{L}\\p{N}]?" RE_K2_UP "+" RE_K2_LO "*" RE_K2_SUF \
    "|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

const char tok_re_gpt2[] = RE_GPT2;

bool tok_pre_setup(tk_tok *t, const char *pre, const char *label, qx_err *e, qx_status *st) {
    const char *re[3] = {NULL, NULL, NULL};
    if (!strcmp(pre, "deepseek-v3")) { re[0] = RE_DS3_NUM; re[1] = RE_DS3_CJK; re[2] = RE_DS3_MAIN; }
    else if (!strcmp(pre, "llama-bpe") || !strcmp(pre, "llama3")) { re[0] = RE_LLAMA3; t->ignore_merges = true; }
    else if (!strcmp(pre, "qwen2") || !strcmp(pre, "deepseek-r1-qwen")) re[0] = RE_QWEN2;
    else if (!strcmp(pre, "gpt2") || !strcmp(pre, "default") || !strcmp(pre, "gpt-2")) re[0] = RE_GPT2;
    else if (!strcmp(pre, "kimi-k2")) re[0] = RE_KIMI_K2;
    else return false;
    *st = QX_OK;
    for (int i = 0; i < 3 && re[i] && *st == QX_OK; i++)
        *st = tok_stage_add(t, re[i], strlen(re[i]), TOK_ISOLATED, false, label, e);
    snprintf(t->pre, sizeof t->pre, "%s", pre);
    return true;
}
