/* tok/tok_internal.h — internals of the byte-level BPE tokenizer shared by
 * tok/tokenizer.c (building: tokenizer.json, vocab descriptions, export),
 * tok/tok_encode.c (pre-tokenizer, BPE, decode) and tok/tok_nfc.c (NFC normalizer).
 * Not a public header: nothing outside tok/tok_*.c and tok/tokenizer.c includes it. */
#ifndef TOK_TOK_INTERNAL_H
#define TOK_TOK_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <jansson.h>
#include "tok.h"

/* Hard limits, with their reasons. */
#define TOK_MAX_VOCAB   (1 << 22)   /* ids are int32 and merge keys pack two ids in 64 bits */
#define TOK_MAX_STAGES  8           /* pre-tokenizer Split stages (DeepSeek-V3 uses 3) */
#define TOK_MAX_TOKEN   4096        /* bytes in one token string */

enum { TOK_F_ADDED = 1, TOK_F_SPECIAL = 2, TOK_F_MAPPED = 4, TOK_F_LSTRIP = 8, TOK_F_RSTRIP = 16,
       TOK_F_UNUSED = 32 };

/* HF Split behaviours. */
typedef enum { TOK_ISOLATED, TOK_REMOVED, TOK_MERGED_PREV, TOK_MERGED_NEXT, TOK_CONTIGUOUS } tok_behavior;

typedef struct {
    pcre2_code *re;
    tok_behavior behavior;
    bool invert;
    bool jit;            /* pcre2_jit_compile succeeded */
    char *pattern;       /* as given (UTF-8) */
} tok_stage;

/* Open-addressing hash of byte strings -> id (token lookup). */
typedef struct {
    uint32_t cap;        /* power of two */
    struct { int32_t id; uint32_t hash; } *slot;   /* [cap] token id (-1: empty) and its hash */
} tok_strmap;

/* Merge (left id, right id) -> rank and result id. */
typedef struct {
    uint64_t key;        /* (left << 32 | right) + 1; 0 marks an empty slot */
    int32_t rank, result;
} tok_merge_slot;

/* Node of the added-token byte trie (children as a sibling list). */
typedef struct {
    int32_t child, sibling;
    int32_t token;       /* id ending here, -1 if none */
    uint8_t byte;
} tok_trie_node;

struct tk_tok {
    int32_t n_vocab;
    /* per id: bytes [off[id], off[id+1]) of blob; flags */
    uint64_t *off;       /* [n_vocab + 1] */
    char *blob;
    uint8_t *flags;      /* [n_vocab] TOK_F_* */
    tok_strmap bpe_map;  /* byte-level tokens only (TOK_F_MAPPED) */
    int32_t byte_tok[256];    /* token of each single byte, -1 if absent */
    /* merges */
    int64_t n_merges;
    int32_t *merge_pair; /* [n_merges][2] left, right ids by rank */
    tok_merge_slot *mslot;
    uint64_t mcap;
    /* added tokens */
    tok_trie_node *trie;
    int32_t n_trie, cap_trie;
    /* pre-tokenizer */
    tok_stage stage[TOK_MAX_STAGES];
    int n_stages;
    bool nfc;            /* NFC normalizer */
    bool ignore_merges;  /* whole piece in vocab -> emit it (Llama-3) */
    /* config */
    int32_t bos, eos, pad;
    bool add_bos, add_eos;
    bool has_add_sep, add_sep;   /* add_sep only meaningful when has_add_sep */
    char *chat_template;
    char pre[32];
};

/* GPT-2 byte <-> unicode mapping. */
uint32_t tok_byte_to_cp(uint8_t b);
int tok_cp_to_byte(uint32_t cp);     /* -1 if cp is not in the image of the mapping */

/* UTF-8 helpers: decode one code point at s (n bytes left); returns its length, 0 if invalid. */
size_t tok_utf8_dec(const uint8_t *s, size_t n, uint32_t *cp);
size_t tok_utf8_enc(uint32_t cp, char *out);
/* Offset of the first invalid byte, or n when s is valid UTF-8. */
size_t tok_utf8_check(const uint8_t *s, size_t n);

/* String map. */
int32_t tok_strmap_get(const tk_tok *t, const char *s, size_t n);

/* Pre-tokenizer stage set-up (tok_encode.c). */
qx_status tok_stage_add(tk_tok *t, const char *pattern, size_t plen, tok_behavior b, bool invert,
                        const char *label, qx_err *e);
/* GPT-2's pre-tokenizer regex (ByteLevel with use_regex). */
extern const char tok_re_gpt2[];
/* Regexes of the named GGUF pre-tokenizers; false for an unknown name. */
bool tok_pre_setup(tk_tok *t, const char *pre, const char *label, qx_err *e, qx_status *st);

/* Streaming scan of tokenizer.json (tok_json.c): *root gets every member except
 * model.vocab and model.merges, whose value spans are returned (p NULL when absent). */
typedef struct { const char *p; size_t n; } tok_span;
typedef qx_status (*tok_vocab_fn)(void *ctx, const char *tok, size_t len, int64_t id, qx_err *e);
typedef qx_status (*tok_merge_fn)(void *ctx, const char *a, size_t na, const char *b, size_t nb, qx_err *e);
qx_status tok_json_split(const char *buf, size_t len, const char *label, json_t **root, tok_span *vocab,
                         tok_span *merges, qx_err *e);
/* Iterate the spans; strings are decoded into arena (at least span.n bytes), which the
 * vocab strings keep pointing into. */
qx_status tok_json_vocab(tok_span sp, const char *label, char *arena, tok_vocab_fn fn, void *ctx, qx_err *e);
qx_status tok_json_merges(tok_span sp, const char *label, char *arena, tok_merge_fn fn, void *ctx, qx_err *e);

/* NFC of UTF-8 text (tok_nfc.c): *out malloc'd.  Returns false on allocation failure. */
bool tok_nfc(const char *s, size_t n, char **out, size_t *out_len);
/* True when s is certainly already NFC (cheap check) */
bool tok_nfc_quick(const char *s, size_t n);

#endif
