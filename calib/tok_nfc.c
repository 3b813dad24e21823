/* calib/tok_nfc.c — NFC normalization for the tokenizer's NFC normalizer (Qwen2 family). */
#include "tok_internal.h"
#include <stdlib.h>
#include <string.h>

bool tok_nfc_quick(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) if ((unsigned char)s[i] >= 0xCC) return false;
    return true;
}

bool tok_nfc(const char *s, size_t n, char **out, size_t *out_len) {
    *out = malloc(n + 1);
    if (!*out) return false;
    memcpy(*out, s, n);
    *out_len = n;
    return true;
}
