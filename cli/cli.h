/* cli/cli.h — the qforge command: argument parsing and progress only; each subcommand
 * lives in cli/cmd_<name>.c and calls the library. */
#ifndef CLI_H
#define CLI_H
#include "common/qx.h"

int cmd_inspect(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_imatrix(int argc, char **argv);
int cmd_ppl(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_card(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_sensitivity(int argc, char **argv);
/* convert and quantize share one driver (cli/cmd_convert.c); gguf_input selects quantize. */
int cli_convert_main(int argc, char **argv, bool gguf_input);

/* Prints the summary of a GGUF file (cli/inspect_gguf.c): metadata (arrays shortened) and,
 * with `tensors`, every tensor's type, shape, bytes and bits per weight; `json` gives a
 * stable machine-readable object on stdout.  Returns the process exit code. */
int cli_inspect_gguf(const char *path, bool json, bool tensors);

/* Prints "qforge: <msg>" on stderr and returns the exit code for a library status. */
int cli_fail(const qx_err *e);
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* One writer per output: takes the lock of path (qx_lock_acquire), recording this command
 * line (argv of the subcommand, argc entries) as its holder.  Returns 0, or 1 after printing
 * one error line ("qforge convert: error: OUT: another writer holds its lock OUT.lock (pid ...)").
 * Release with qx_lock_release once the output is in place. */
int cli_lock_output(const char *cmd, const char *path, int argc, char **argv, qx_lock *l);
/* Shared by ppl and imatrix (cli/cmd_ppl.c): token ids from --text (MODEL's tokenizer, no BOS)
 * or --ids (int32 LE); returns 0 or an exit code.  Engine progress into a qx_progress. */
int cli_read_ids(const char *cmd, const char *model, const char *text, const char *ids_path,
                 int32_t **ids, int64_t *n_ids);
void cli_engine_progress(void *ud, int layer, int n_layer, int64_t done, int64_t total);
/* --device: opens the backend ("cpu" or "cuda") into *be; on failure prints one line
 * ("qforge: error: --device cuda: no CUDA device available (...)") and returns the exit
 * code, else 0.  Release with cli_close_device (accepts NULL). */
struct kn_backend;
int cli_open_device(const char *cmd, const char *dev, struct kn_backend **be);
void cli_close_device(struct kn_backend *be);
/* An evaluation's inputs (ppl, imatrix): the device, the model and its token ids, opened
 * together; on failure prints one line and returns the exit code (nothing left open). */
struct cal_model;
typedef struct {
    struct kn_backend *be;
    struct cal_model *model;
    int32_t *ids;
    int64_t n_ids;
} cli_eval;
/* JUnit XML (cli/junit.c) for CI servers: one test case per check. */
typedef enum { CLI_JUNIT_PASS, CLI_JUNIT_FAIL, CLI_JUNIT_ERROR } cli_junit_outcome;
typedef struct {
    const char *name;               /* "max-kld" */
    cli_junit_outcome outcome;
    char message[256];              /* one line: "mean KLD 0.0123 > limit 0.01" */
    char detail[512];               /* element text: measured value, limit, how measured */
} cli_junit_case;
/* Writes path (via path.part + rename): props are n_props (name, value) pairs; system_out
 * (optional) is the run's text summary.  Returns 0, or 1 after printing one error line. */
int cli_junit_write(const char *path, const char *suite, const char *classname, double seconds,
                    const char *const *props, size_t n_props, const cli_junit_case *cases, size_t n,
                    const char *system_out);
/* Sharded passes (cli/cmd_merge.c, cli/cmd_ppl.c): a qx_shard as the "shard" JSON object of
 * a sensitivity table or a ppl --json, and back (0, or prints one line naming label and
 * returns 1).  The ppl summary lines (stdout, and into summary for JUnit) and its --json
 * (size: file bytes and bpw, NULL: from the model file; tokens: a shard's per-token values). */
struct json_t;
struct json_t *cli_shard_json(const qx_shard *s);
int cli_shard_from_json(struct json_t *o, const char *label, qx_shard *s);
struct cal_ppl_result;
struct cal_ppl_tokens;
void cli_ppl_summary(const struct cal_ppl_result *r, const char *vs_kld, char *summary, size_t cap);
int cli_ppl_write_json(const char *path, const struct cal_ppl_result *r, const char *base, const char *vs_kld,
                       const char *model, const char *input, const double *size, const struct cal_ppl_tokens *tokens);
int cmd_merge(int argc, char **argv);
int cli_eval_open(cli_eval *ev, const char *cmd, const char *model, const char *text,
                  const char *ids_path, const char *dev);
void cli_eval_close(cli_eval *ev);
#endif
