/* tests/fuzz/fuzz_tiktoken.c — libFuzzer target: a tiktoken.model file (Kimi-K2) turned into
 * a GGUF vocabulary and a tokenizer; when it builds, encode and decode a few strings.  The
 * first byte picks the vocab_size (0: n_ranks + 256). */
#include "tok/tok.h"
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    qx_err e = {0};
    int64_t vocab = data[0] < 128 ? 0 : 256 + (int64_t)data[0] * 4;
    const char *cfg = "{\"bos_token\": \"[BOS]\", \"add_bos_token\": true, \"added_tokens_decoder\": {\"300\": {\"content\": \"[BOS]\"}}}";
    tk_vocab v;
    if (tk_vocab_from_tiktoken((const char *)data + 1, size - 1, cfg, strlen(cfg), vocab, "fuzz.tiktoken", &v, &e) != QX_OK) return 0;
    tk_tok *t = NULL;
    if (tk_from_vocab(&v, "fuzz.tiktoken", &t, &e) == QX_OK) {
        static const char *texts[] = {"hello world 12345", "\xe4\xb8\xad\xe6\x96\x87 The Cat's", " \n\n  x"};
        for (int i = 0; i < 3; i++) {
            int32_t *ids = NULL;
            size_t n = 0;
            if (tk_encode(t, texts[i], strlen(texts[i]), true, &ids, &n, &e) == QX_OK) {
                char *d = NULL;
                size_t dl = 0;
                if (tk_decode(t, ids, n, &d, &dl, &e) == QX_OK) free(d);
            }
            free(ids);
        }
        tk_free(t);
    }
    tk_vocab_free(&v);
    return 0;
}
