/* tests/fuzz/fuzz_tokenizer.c — libFuzzer target for the tokenizer.  The first input byte
 * picks the entry point, the rest is its input:
 *   0: tokenizer.json text, optionally followed by a NUL and tokenizer_config.json text ->
 *      tk_from_json; when it loads, encode/decode a few strings and the input itself;
 *   1..3: text encoded with a built-in byte-level tokenizer using the deepseek-v3 (1),
 *      llama-bpe (2) or qwen2 (3) pre-tokenizer; valid UTF-8 must decode back to itself;
 *   4: a GGUF-form vocabulary, one entry per line: "t TYPE TEXT" or "m A B" (merge), then
 *      tk_from_vocab and an encode of "hello world 123".
 * Aborts on a broken invariant so the replay driver and libFuzzer both see it. */
#include "tok/tok.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t map_byte(int b, char *out) {
    int n = 0;
    for (int x = 0; x < b; x++) if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174)) n++;
    int cp = ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) ? b : 256 + n;
    if (cp < 0x80) { out[0] = (char)cp; out[1] = 0; return 1; }
    out[0] = (char)(0xC0 | cp >> 6); out[1] = (char)(0x80 | (cp & 0x3F)); out[2] = 0;
    return 2;
}

/* 256 byte tokens, a few merged ones, two control tokens. */
static tk_tok *builtin(const char *pre) {
    static char bytes[256][4];
    static const char *extra[] = {"he", "ll", "hell", "hello", "\xc4\xa0w", "or", "ld", "12", "123", "\xc4\xa0\xc4\xa0"};
    static const char *merges[] = {"h e", "l l", "he ll", "hell o", "\xc4\xa0 w", "o r", "l d", "1 2", "12 3",
                                   "\xc4\xa0 \xc4\xa0"};
    char *toks[256 + 10 + 2];
    int32_t types[256 + 10 + 2];
    for (int i = 0; i < 256; i++) { map_byte(i, bytes[i]); toks[i] = bytes[i]; types[i] = TK_NORMAL; }
    for (int i = 0; i < 10; i++) { toks[256 + i] = (char *)extra[i]; types[256 + i] = TK_NORMAL; }
    toks[266] = "<|end|>"; types[266] = TK_CONTROL;
    toks[267] = "<|end|>x"; types[267] = TK_USER_DEFINED;
    tk_vocab v = {.n_tokens = 268, .tokens = toks, .types = types, .n_merges = 10, .merges = (char **)merges,
                       .bos_id = 266, .eos_id = 266, .pad_id = -1};
    snprintf(v.model, sizeof v.model, "gpt2");
    snprintf(v.pre, sizeof v.pre, "%s", pre);
    tk_tok *t = NULL; qx_err e;
    if (tk_from_vocab(&v, "builtin", &t, &e) != QX_OK) { fprintf(stderr, "builtin: %s\n", e.msg); abort(); }
    return t;
}

static void roundtrip(const tk_tok *t, const char *s, size_t n, bool must_match) {
    int32_t *ids; size_t ni; qx_err e;
    if (tk_encode(t, s, n, true, &ids, &ni, &e) != QX_OK) return;
    char *d; size_t dl;
    if (tk_decode(t, ids, ni, &d, &dl, &e) != QX_OK) { fprintf(stderr, "decode of encode output failed: %s\n", e.msg); abort(); }
    /* the BOS (added token text) is printed first when the tokenizer has one */
    size_t bl = 0;
    if (tk_bos(t) >= 0 && ni > 0) tk_bytes(t, ids[0], &bl);
    if (must_match && (dl != bl + n || memcmp(d + bl, s, n) != 0)) { fprintf(stderr, "round trip differs\n"); abort(); }
    free(d); free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    const char *s = (const char *)data + 1;
    size_t n = size - 1;
    qx_err e;
    tk_tok *t = NULL;
    switch (data[0] % 5) {
    case 0: {
        const char *nul = memchr(s, 0, n);
        size_t tn = nul ? (size_t)(nul - s) : n;
        const char *cfg = nul ? nul + 1 : NULL;
        if (tk_from_json(s, tn, cfg, cfg ? n - tn - 1 : 0, "fuzz.tokenizer.json", &t, &e) == QX_OK) {
            roundtrip(t, "hello world 123 <|end|>", 23, false);
            roundtrip(t, s, n, false);
            size_t np;
            tk_count_pieces(t, s, n, &np, &e);
            tk_vocab v;
            if (tk_export(t, 0, "deepseek2", &v, &e) == QX_OK) {
                tk_tok *t2 = NULL;
                if (tk_from_vocab(&v, "re-export", &t2, &e) == QX_OK) tk_free(t2);
                tk_vocab_free(&v);
            }
            tk_free(t);
        }
        break;
    }
    case 1: case 2: case 3: {
        static const char *pres[] = {"deepseek-v3", "llama-bpe", "qwen2"};
        t = builtin(pres[data[0] % 5 - 1]);
        roundtrip(t, s, n, true);
        tk_free(t);
        break;
    }
    case 4: {
        char *buf = malloc(n + 1);
        memcpy(buf, s, n); buf[n] = 0;
        size_t cap = 16, nt = 0, nm = 0;
        char **toks = malloc(cap * sizeof *toks), **merges = malloc(cap * sizeof *merges);
        int32_t *types = malloc(cap * sizeof *types);
        for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
            if (nt == cap || nm == cap) {
                cap *= 2;
                toks = realloc(toks, cap * sizeof *toks); merges = realloc(merges, cap * sizeof *merges);
                types = realloc(types, cap * sizeof *types);
            }
            if (line[0] == 't' && line[1] == ' ' && line[2]) { types[nt] = line[2] - '0'; toks[nt++] = line[3] ? line + 4 : line + 3; }
            else if (line[0] == 'm' && line[1] == ' ') merges[nm++] = line + 2;
        }
        tk_vocab v = {.n_tokens = (int64_t)nt, .tokens = toks, .types = types, .n_merges = (int64_t)nm,
                           .merges = merges, .bos_id = 0, .eos_id = -1, .pad_id = -1};
        snprintf(v.model, sizeof v.model, "gpt2");
        snprintf(v.pre, sizeof v.pre, "deepseek-v3");
        if (tk_from_vocab(&v, "fuzz.vocab", &t, &e) == QX_OK) {
            roundtrip(t, "hello world 123", 15, false);
            tk_free(t);
        }
        free(toks); free(merges); free(types); free(buf);
        break;
    }
    }
    return 0;
}
