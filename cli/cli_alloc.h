/* cli/cli_alloc.h — --target-size / --target-bpw / --sensitivity / --save-recipe / --recipe,
 * shared by convert and quantize (cli/alloc.c).  Kept out of cli/cli.h because it needs
 * convert/'s types; only cli/cmd_convert.c includes it. */
#ifndef CLI_ALLOC_H
#define CLI_ALLOC_H
#include "convert/convert.h"

typedef struct {
    const char *target;        /* --target-size SIZE (text), NULL: none */
    double target_bpw;         /* --target-bpw X, 0: none */
    const char *sens;          /* --sensitivity S.json */
    const char *werr;          /* --werr W.json: the model's own weight errors (sensitivity --werr-only) */
    const char *save_recipe;   /* --save-recipe F.json */
    const char *recipe;        /* --recipe F.json */
    /* filled by cli_alloc_prepare */
    uint64_t target_bytes;     /* whole file, 0: none */
    cv_recipe_table table;     /* the exact types applied (recipe or allocation) */
    char **rules;              /* table.n "^name$=TYPE" strings (owned) */
    const char **all;          /* the rules then the user's --tensor-type (owned array) */
} cli_alloc_opts;

const char *cli_alloc_usage(void);
/* As cli_gptq_arg: 1 when argv[*i] was one of these options. */
int cli_alloc_arg(cli_alloc_opts *o, const char *cmd, int argc, char **argv, int *i, int *rc);
/* With --recipe or a target: chooses/reads the table, prints it (unless quiet), saves it
 * (--save-recipe) and points p->tensor_types at its exact rules followed by the user's
 * rules tt (owned by o).  Returns an exit code (0: go on). */
int cli_alloc_prepare(cli_alloc_opts *o, const char *cmd, const char *in, bool gguf_input, cv_params *p, const char **tt,
                      bool quiet);
/* After planning: every tensor of the table has its type in pl, and the file is within the
 * target.  Returns an exit code. */
int cli_alloc_check(const cli_alloc_opts *o, const char *cmd, const cv_plan *pl);
void cli_alloc_free(cli_alloc_opts *o);
#endif
