/* cli/cli_gptq.h — the --gptq options shared by convert and quantize (cli/gptq.c).  Kept
 * out of cli/cli.h because it needs convert/'s types; only cli/cmd_convert.c includes it. */
#ifndef CLI_GPTQ_H
#define CLI_GPTQ_H
#include "convert/convert.h"
#include "pass/pass.h"

/* Default --gptq-chunks and --gptq-min-tokens (docs/gptq.md, "Why the gain varies": chosen
 * by measured KLD against time on four models). */
#define CLI_GPTQ_CHUNKS 64
#define CLI_GPTQ_CHUNKS_STR "64"
#define CLI_GPTQ_MIN_TOKENS 16
#define CLI_GPTQ_MIN_TOKENS_STR "16"

typedef struct {
    const char *text;      /* --gptq TEXT: calibration text, NULL: off */
    int64_t chunks, ctx;   /* windows (0: all) and their length */
    double damp;           /* fraction of the mean Hessian diagonal */
    const char *experts;   /* "expert" or "shared" */
    double min_tokens;     /* matrices that saw fewer rows are quantized plainly */
    uint64_t mem;          /* --gptq-mem: cap on the pass's own peak (0: none) */
    const char *skip;      /* POSIX extended regex of GGUF names quantized plainly, NULL: none */
    const char *save, *load;   /* --gptq-save F / --gptq-load F */
    uint64_t settings;     /* what a statistics file is tied to (model, tokens, windows, experts) */
    cal_hparams hp;        /* the model's, read once by cli_gptq_prepare */
    qx_lock save_lock;
    /* filled by cli_gptq_prepare */
    int32_t *ids;
    int64_t n_ids;
    char salt[256];        /* the settings and the text's hash, for the plan hash (--resume) */
    ps_gptq_result res;    /* after cli_gptq_execute */
} cli_gptq_opts;

void cli_gptq_defaults(cli_gptq_opts *o);
void cli_gptq_free(cli_gptq_opts *o);
/* The usage lines of the options. */
const char *cli_gptq_usage(void);
/* Consumes argv[*i] (and its value) when it is a --gptq* option: returns 1 (then *rc is a
 * usage error's exit code when the value is bad), else 0. */
int cli_gptq_arg(cli_gptq_opts *o, const char *cmd, int argc, char **argv, int *i, int *rc);
/* Before planning: tokenizes the text with IN's tokenizer and sets p->plan_salt; returns an
 * exit code (0: ok). */
int cli_gptq_prepare(cli_gptq_opts *o, const char *cmd, const char *in, cv_params *p);
/* Converts with the streamed pass (pass/ps_gptq_convert); returns the exit code (0: done, r
 * and o->res filled). */
int cli_gptq_execute(cli_gptq_opts *o, const char *cmd, const char *in, const char *out, cv_plan *pl,
                     cv_params *p, cv_result *r, bool quiet, qx_err *e);
/* Prints the --dry-run estimate (peak memory, work, time) and fills *est; returns an exit
 * code.  After cli_gptq_prepare. */
int cli_gptq_dry_run(const cli_gptq_opts *o, const cv_plan *pl, int n_threads,
                     ps_gptq_estimate *est);
/* The factorizations at once that keep the pass within --gptq-mem (the thread count without
 * it); -1 (after a one-line error) when not even one fits.  After cli_gptq_prepare. */
int cli_gptq_fit(const cli_gptq_opts *o, const char *cmd, const cv_plan *pl, int n_threads, bool quiet);
/* JSON members (",\n  \"gptq\": {...}") of a run (est NULL) or a dry run, into f. */
void cli_gptq_json(const cli_gptq_opts *o, const ps_gptq_estimate *est, FILE *f);
#endif
