/* cli/main.c — qforge entry point and subcommand dispatch. */
#include "cli.h"
#include <stdarg.h>
#include <string.h>

static const struct { const char *name; int (*fn)(int, char **); const char *help; } cmds[] = {
    {"inspect", cmd_inspect, "summarize an HF checkpoint dir, .safetensors or .gguf"},
    {"convert", cmd_convert, "HF checkpoint (FP8/BF16) -> quantized GGUF in one streaming pass"},
    {"quantize", cmd_quantize, "requantize an F32/F16/BF16 GGUF"},
    {"imatrix", cmd_imatrix, "compute an importance matrix (llama.cpp format)"},
    {"ppl", cmd_ppl, "perplexity, KL drift against a base, CI gate"},
    {"tokenize", cmd_tokenize, "run the tokenizer of an HF dir, tokenizer.json or GGUF"},
    {"verify", cmd_verify, "check a GGUF's structure and per-tensor checksums"},
    {"card", cmd_card, "write the model hub README (model card) of a build"},
    {"report", cmd_report, "one self-contained HTML report with plots from drift JSON files"},
    {"sensitivity", cmd_sensitivity, "measured cost of each tensor at each type (for --target-size)"},
    {"merge", cmd_merge, "combine the --shard outputs of imatrix, sensitivity or ppl exactly"},
    {"synth", cmd_synth, "write synthetic checkpoints in the official layouts"},
};

int cli_fail(const qx_err *e) {
    fprintf(stderr, "qforge: error: %s\n", e->msg[0] ? e->msg : qx_status_name(e->code));
    return e->code == QX_ETHRESHOLD ? 3 : 1;
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "qforge %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see qforge %s --help)\n", cmd);
    va_end(ap);
    return 2;
}

int cli_lock_output(const char *cmd, const char *path, int argc, char **argv, qx_lock *l) {
    char holder[200];
    int k = snprintf(holder, sizeof holder, "qforge");
    for (int i = 0; i < argc && k > 0 && (size_t)k < sizeof holder; i++)
        k += snprintf(holder + k, sizeof holder - (size_t)k, " %s", argv[i]);
    qx_err e;
    qx_err_clear(&e);
    if (qx_lock_acquire(l, path, holder, &e) == QX_OK) return 0;
    fprintf(stderr, "qforge %s: error: %s\n", cmd, e.msg);
    return 1;
}

static void usage(FILE *f) {
    fprintf(f, "qforge %s — DeepSeek-V3/R1 and R1-Distill checkpoints to quantized GGUF, with measured drift\n\n"
               "usage: qforge <command> [options]   (qforge <command> --help for details)\n"
               "       qforge --version             the build: git describe of its source (also in every file it writes)\n\n"
               "commands:\n", qx_version());
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) fprintf(f, "  %-9s %s\n", cmds[i].name, cmds[i].help);
    fprintf(f, "\nA command that writes a file (convert, quantize, imatrix, sensitivity, card, report) locks it\n"
               "first (OUT.lock beside it, removed when done): a second writer of the same OUT stops at once.\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) { printf("qforge %s\n", qx_version()); return 0; }
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (!strcmp(argv[1], cmds[i].name)) return cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "qforge: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
