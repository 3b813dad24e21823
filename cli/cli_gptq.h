/* cli/cli_gptq.h — the --gptq options shared by convert and quantize (cli/gptq.c).  Kept
 * out of cli/cli.h because it needs convert/'s types; only cli/cmd_convert.c includes it. */
#ifndef CLI_GPTQ_H
#define CLI_GPTQ_H
#include "convert/convert.h"

typedef struct {
    const char *text;      /* --gptq TEXT: calibration text, NULL: off */
    int64_t chunks, ctx;   /* windows (0: all) and their length */
    double damp;           /* fraction of the mean Hessian diagonal */
    int passes;            /* 1, or 2: Hessians again on the first pass's build */
    const char *experts;   /* "expert" or "shared" */
    const char *skip;      /* POSIX extended regex of GGUF names quantized plainly, NULL: none */
} cli_gptq_opts;

void cli_gptq_defaults(cli_gptq_opts *o);
/* The usage lines of the options. */
const char *cli_gptq_usage(void);
/* Consumes argv[*i] (and its value) when it is a --gptq* option: returns 1 (then *rc is a
 * usage error's exit code when the value is bad), else 0. */
int cli_gptq_arg(cli_gptq_opts *o, const char *cmd, int argc, char **argv, int *i, int *rc);
/* Gathers Hessians of IN over the text (IN is the HF dir or GGUF being converted), then runs
 * cv_execute with the factors; returns the exit code (0: done, r filled). */
int cli_gptq_execute(const cli_gptq_opts *o, const char *cmd, const char *in, const char *out, cv_plan *pl,
                     cv_params *p, cv_result *r, bool quiet, qx_err *e);
/* Prints the --dry-run estimates (memory per expert / shared, time on one GPU / CPU server). */
void cli_gptq_dry_run(const cli_gptq_opts *o, const cv_plan *pl, const char *in);
#endif
