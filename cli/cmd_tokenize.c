/* cli/cmd_tokenize.c — `qforge tokenize PATH (--file F | TEXT) [--ids] [--bos]`: runs the
 * tokenizer of an HF dir, a tokenizer.json or a GGUF on a text and prints the tokens. */
#include "cli.h"
#include "tok/tok.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *tokenize_help =
    "usage: qforge tokenize PATH (--file F | TEXT) [--ids] [--bos]\n"
    "  PATH       an HF model directory (tokenizer.json, tokenizer_config.json), a tokenizer.json,\n"
    "             or a .gguf file (its tokenizer.ggml.* keys)\n"
    "  TEXT       the text to tokenize (UTF-8), or --file F to read it from a file (whole file,\n"
    "             one string; '-' reads stdin)\n"
    "  --ids      print only the ids, space-separated on one line\n"
    "  --bos      prepend the BOS token (off by default, whatever the tokenizer's config says)\n"
    "Special tokens written in the text (e.g. <\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>) are matched as such.\n"
    "Without --ids each token is printed as: id <TAB> 'text' with \\n, \\t, \\\\, \\' and\n"
    "non-printable bytes (\\xHH) escaped; a token that is not whole UTF-8 shows its bytes escaped.\n";

static int read_stream(FILE *f, char **out, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    if (!b) return -1;
    for (;;) {
        if (n == cap) {
            char *q = realloc(b, cap *= 2);
            if (!q) { free(b); return -1; }
            b = q;
        }
        size_t got = fread(b + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    *out = b; *len = n;
    return 0;
}

/* Prints token bytes readably: printable ASCII and valid multi-byte UTF-8 as is. */
static void print_escaped(const char *s, size_t n) {
    putchar('\'');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c == '\r') fputs("\\r", stdout);
        else if (c == '\\') fputs("\\\\", stdout);
        else if (c == '\'') fputs("\\'", stdout);
        else if (c >= 0x20 && c < 0x7f) putchar(c);
        else if (c >= 0xC2 && c <= 0xF4) {
            size_t l = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2, k = 1;
            while (k < l && i + k < n && ((unsigned char)s[i + k] & 0xC0) == 0x80) k++;
            if (k == l) { fwrite(s + i, 1, l, stdout); i += l - 1; }
            else printf("\\x%02x", c);
        } else printf("\\x%02x", c);
    }
    putchar('\'');
}

int cmd_tokenize(int argc, char **argv) {
    const char *path = NULL, *text = NULL, *file = NULL;
    bool ids_only = false, bos = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { fputs(tokenize_help, stdout); return 0; }
        else if (!strcmp(a, "--ids")) ids_only = true;
        else if (!strcmp(a, "--bos")) bos = true;
        else if (!strcmp(a, "--file")) {
            if (++i >= argc) return cli_usage_error("tokenize", "--file needs a path");
            file = argv[i];
        } else if (!strcmp(a, "--")) {
            if (i + 1 < argc && !path) path = argv[++i];
            if (i + 1 < argc && !text) text = argv[++i];
            if (i + 1 < argc) return cli_usage_error("tokenize", "too many arguments");
        } else if (a[0] == '-' && a[1] == '-') return cli_usage_error("tokenize", "unknown option '%s'", a);
        else if (!path) path = a;
        else if (!text) text = a;
        else return cli_usage_error("tokenize", "too many arguments ('%s')", a);
    }
    if (!path) return cli_usage_error("tokenize", "missing PATH");
    if (!text && !file) return cli_usage_error("tokenize", "give a TEXT or --file F");
    if (text && file) return cli_usage_error("tokenize", "give either TEXT or --file, not both");

    qx_err e = {0};
    char *buf = NULL;
    size_t len = 0;
    if (file) {
        if (!strcmp(file, "-")) {
            if (read_stream(stdin, &buf, &len)) { fprintf(stderr, "qforge: error: reading stdin failed\n"); return 1; }
        } else if (qx_read_file(file, &buf, &len, &e) != QX_OK) return cli_fail(&e);
    }
    tk_tok *t = NULL;
    if (tk_load(path, &t, &e) != QX_OK) { free(buf); return cli_fail(&e); }
    int32_t *ids = NULL;
    size_t n = 0;
    qx_status st = tk_encode(t, file ? buf : text, file ? len : strlen(text), bos, &ids, &n, &e);
    free(buf);
    if (st != QX_OK) {
        tk_free(t);
        if (file) {
            qx_err e2 = e;
            snprintf(e2.msg, sizeof e2.msg, "%.100s: %.150s", file, e.msg);
            return cli_fail(&e2);
        }
        return cli_fail(&e);
    }
    if (bos && tk_bos(t) < 0) fprintf(stderr, "qforge tokenize: note: this tokenizer has no BOS token\n");
    if (ids_only) {
        for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
        putchar('\n');
    } else {
        for (size_t i = 0; i < n; i++) {
            size_t l;
            const char *s = tk_bytes(t, ids[i], &l);
            printf("%6d\t", ids[i]);
            print_escaped(s ? s : "", l);
            putchar('\n');
        }
    }
    free(ids);
    tk_free(t);
    return ferror(stdout) ? 1 : 0;
}
