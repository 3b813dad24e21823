/* cli/gptq.c — `--gptq TEXT` of convert and quantize: the calibration step that drives the
 * layer-major engine (calib/, cal_hessian_run) over TEXT, factors every input Hessian and
 * hands the factors to the conversion through cv_params.gptq_factor, so that convert/ never
 * depends on calib/.  With --gptq-passes 2 the Hessians of the second pass come from the
 * first pass's build (quantized layers feeding the next layers' calibration).  Also the
 * --dry-run estimates of a GPTQ run's memory and time.  Argument parsing and orchestration
 * only; the work is calib/hessian.c and quant/gptq.c. */
#include "cli.h"
#include "cli_gptq.h"
#include "calib/calib.h"

#include <inttypes.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void cli_gptq_defaults(cli_gptq_opts *o) {
    memset(o, 0, sizeof *o);
    o->damp = 0.1;
    o->ctx = 512;
    o->passes = 1;
    o->experts = "expert";
}

const char *cli_gptq_usage(void) {
    return "  --gptq TEXT               GPTQ error feedback inside the GGUF blocks, input Hessians from TEXT (docs/gptq.md)\n"
           "  --gptq-chunks N           calibration windows (default: all of TEXT);  --gptq-ctx N window length (512)\n"
           "  --gptq-damp X             damping, fraction of the mean Hessian diagonal (default 0.1)\n"
           "  --gptq-experts M          routed experts: expert (one Hessian each, default) or shared (one per layer)\n"
           "  --gptq-passes N           2: gather the Hessians again on the first pass's build (sequential)\n"
           "  --gptq-skip REGEX         tensors whose GGUF name matches (POSIX extended) are quantized without feedback\n";
}

static bool num(const char *v, double lo, double hi, double *out) {
    char *end;
    double d = v ? strtod(v, &end) : 0;
    if (!v || end == v || *end || !(d >= lo && d <= hi)) return false;
    *out = d;
    return true;
}

int cli_gptq_arg(cli_gptq_opts *o, const char *cmd, int argc, char **argv, int *i, int *rc) {
    const char *a = argv[*i];
    if (strncmp(a, "--gptq", 6) != 0) return 0;
    if (*i + 1 >= argc) { *rc = cli_usage_error(cmd, "%s needs a value", a); return 1; }
    const char *v = argv[++*i];
    double d;
    if (!strcmp(a, "--gptq")) o->text = v;
    else if (!strcmp(a, "--gptq-chunks") && num(v, 1, 1e9, &d)) o->chunks = (int64_t)d;
    else if (!strcmp(a, "--gptq-ctx") && num(v, 2, 1 << 20, &d)) o->ctx = (int64_t)d;
    else if (!strcmp(a, "--gptq-damp") && num(v, 0, 10, &d)) o->damp = d;
    else if (!strcmp(a, "--gptq-passes") && num(v, 1, 2, &d)) o->passes = (int)d;
    else if (!strcmp(a, "--gptq-skip")) {
        regex_t re;
        if (regcomp(&re, v, REG_EXTENDED | REG_NOSUB)) *rc = cli_usage_error(cmd, "--gptq-skip '%s': not a regular expression", v);
        else { regfree(&re); o->skip = v; }
    }
    else if (!strcmp(a, "--gptq-experts") && (!strcmp(v, "expert") || !strcmp(v, "shared"))) o->experts = v;
    else *rc = cli_usage_error(cmd, "bad %s '%s'", a, v);
    return 1;
}

typedef struct {
    cal_hessians *h;
    regex_t skip;
    bool has_skip;
} factor_ctx;

static const float *factor_cb(void *ud, const char *name, int64_t slice, int64_t cols) {
    const factor_ctx *c = ud;
    if (c->has_skip && regexec(&c->skip, name, 0, NULL, 0) == 0) return NULL;
    return cal_hessian_factor(c->h, name, slice, cols);
}

/* Gathers and factors the Hessians of model over the option's text. */
static int gather(const cli_gptq_opts *o, const char *cmd, const char *model, const char *tok_model,
                  int n_threads, bool quiet, cal_hessians **out) {
    int32_t *ids = NULL;
    int64_t n_ids = 0;
    int rc = cli_read_ids(cmd, tok_model, o->text, NULL, &ids, &n_ids);
    if (rc) return rc;
    qx_err e = {0};
    cal_model *m = NULL;
    if (cal_model_open(&m, model, &e) != QX_OK) { free(ids); return cli_fail(&e); }
    cal_hessian_params hp = cal_hessian_default_params();
    hp.n_ctx = o->ctx;
    hp.n_chunks = o->chunks;
    hp.n_threads = n_threads;
    hp.experts = !strcmp(o->experts, "shared") ? CAL_HESS_SHARED : CAL_HESS_PER_EXPERT;
    int64_t nw = n_ids / o->ctx;
    if (o->chunks > 0 && o->chunks < nw) nw = o->chunks;
    qx_progress prog;
    qx_progress_begin(&prog, quiet ? NULL : stderr, "gptq hessians", (uint64_t)(nw * o->ctx), "tok");
    if (!quiet) { hp.progress = cli_engine_progress; hp.progress_ud = &prog; }
    double t0 = qx_now();
    qx_status s = cal_hessian_run(m, ids, n_ids, &hp, out, &e);
    qx_progress_end(&prog, (uint64_t)(nw * o->ctx));
    cal_model_close(m);
    free(ids);
    if (s != QX_OK) return cli_fail(&e);
    uint64_t hb = cal_hessian_bytes(*out);
    double t1 = qx_now();
    int64_t failed = 0;
    if ((s = cal_hessian_factor_all(*out, o->damp, &failed, &e)) != QX_OK) { cal_hessian_free(*out); *out = NULL; return cli_fail(&e); }
    if (!quiet)
        fprintf(stderr, "qforge %s: gptq: Hessians of %s over %" PRId64 " windows of %" PRId64 " (%.1f MB, %.1f s), factored in %.1f s; "
                "%" PRId64 " matrices without a factor (no tokens) quantized plainly\n",
                cmd, model, nw, o->ctx, hb / 1e6, t1 - t0, qx_now() - t1, failed);
    return 0;
}

int cli_gptq_execute(const cli_gptq_opts *o, const char *cmd, const char *in, const char *out, cv_plan *pl,
                     cv_params *p, cv_result *r, bool quiet, qx_err *e) {
    cal_hessians *h = NULL;
    factor_ctx fc;
    memset(&fc, 0, sizeof fc);
    fc.has_skip = o->skip && regcomp(&fc.skip, o->skip, REG_EXTENDED | REG_NOSUB) == 0;
    int rc = gather(o, cmd, in, in, p->n_threads, quiet, &h);
    if (rc) { if (fc.has_skip) regfree(&fc.skip); return rc; }
    if (o->passes == 2) {
        /* first pass: a build with the non-sequential Hessians, then the Hessians of that build */
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s.gptq-pass1.gguf", out);
        cv_params p1 = *p;
        fc.h = h;
        p1.gptq_factor = factor_cb; p1.gptq_ud = &fc;
        p1.resume = false;
        cv_result r1;
        qx_status s = cv_execute(pl, tmp, &p1, &r1, e);
        cal_hessian_free(h);
        h = NULL;
        if (s == QX_OK) rc = gather(o, cmd, tmp, in, p->n_threads, quiet, &h);
        else rc = cli_fail(e);
        unlink(tmp);
        if (rc) { if (fc.has_skip) regfree(&fc.skip); return rc; }
    }
    fc.h = h;
    p->gptq_factor = factor_cb;
    p->gptq_ud = &fc;
    qx_status s = cv_execute(pl, out, p, r, e);
    p->gptq_factor = NULL;
    p->gptq_ud = NULL;
    cal_hessian_free(h);
    if (fc.has_skip) regfree(&fc.skip);
    return s == QX_OK ? 0 : cli_fail(e);
}

/* ---- dry-run estimates ---- */

/* Assumed sustained rates of a GEMM-shaped implementation (documented in docs/gptq.md). */
#define EST_CPU_FLOPS 1.0e12    /* one 2-socket CPU server, fp32 */
#define EST_GPU_FLOPS 4.0e13    /* one H100/H200-class GPU, fp32 (no TF32) */

static bool is_expert_name(const char *n) { return strstr(n, "_exps.") != NULL; }

void cli_gptq_dry_run(const cli_gptq_opts *o, const cv_plan *pl, const char *in) {
    qx_err e = {0};
    cal_model *m = NULL;
    int64_t n_exp = 0, k_used = 0;
    if (cal_model_open(&m, in, &e) == QX_OK) {
        const cal_hparams *hp = cal_model_hparams(m);
        n_exp = hp->n_exp;
        k_used = hp->n_exp_used;
        cal_model_close(m);
    }
    double T = (double)(o->chunks > 0 ? o->chunks : 128) * (double)o->ctx;
    double fwd = 0, acc = 0, fac_e = 0, fac_s = 0, prop = 0;
    double h_exp = 0, h_shared = 0, h_layer_exp = 0, h_layer_sh = 0, u_max = 0;
    int cur_layer = -2;
    double lay_e = 0, lay_s = 0;
    size_t n = cv_plan_tensor_count(pl), n_g = 0;
    for (size_t i = 0; i < n; i++) {
        cv_tensor_info t;
        cv_plan_tensor(pl, i, &t);
        if (t.n_dims < 2 || !strstr(t.name, ".weight") || !strcmp(t.name, "token_embd.weight")) continue;
        double cols = (double)t.ne[0], rows = (double)t.ne[1], nmat = t.n_dims > 2 ? (double)t.ne[2] : 1;
        bool ex = is_expert_name(t.name) && n_exp > 0;
        double tok = ex ? T * (double)k_used / (double)n_exp : T;   /* tokens reaching each matrix */
        fwd += 2.0 * rows * cols * nmat * tok;
        if (qt_gptq_mode_of(t.type) == QT_GPTQ_NONE || !qt_get_traits(t.type)->quantized) continue;
        n_g++;
        double hm = 8.0 * cols * cols;
        if (t.layer != cur_layer) {
            if (lay_e > h_layer_exp) h_layer_exp = lay_e;
            if (lay_s > h_layer_sh) h_layer_sh = lay_s;
            lay_e = lay_s = 0; cur_layer = t.layer;
        }
        lay_e += hm * nmat;
        lay_s += hm * (ex ? 1 : nmat);
        h_exp += hm * nmat;
        h_shared += hm * (ex ? 1 : nmat);
        if (4.0 * cols * cols > u_max) u_max = 4.0 * cols * cols;
        acc += cols * cols * nmat * tok;           /* symmetric x x^T: cols^2/2 FMA per token */
        fac_e += 2.0 / 3.0 * cols * cols * cols * nmat;
        fac_s += 2.0 / 3.0 * cols * cols * cols * (ex ? 1 : nmat);
        prop += rows * cols * cols * nmat;         /* rows * cols^2 / 2 FMA */
    }
    if (lay_e > h_layer_exp) h_layer_exp = lay_e;
    if (lay_s > h_layer_sh) h_layer_sh = lay_s;
    double tot_e = fwd + acc + fac_e + prop, tot_s = fwd + acc + fac_s + prop;
    printf("\nGPTQ (--gptq) estimate: %zu tensors, %.0f calibration tokens (%" PRId64 " windows of %" PRId64 "%s)\n", n_g, T,
           o->chunks > 0 ? o->chunks : 128, o->ctx, o->chunks > 0 ? "" : ", --gptq-chunks to change");
    printf("  Hessians, routed experts one each:   %10.2f GB in all, %8.2f GB for the largest layer\n", h_exp / 1e9, h_layer_exp / 1e9);
    printf("  Hessians, experts shared per layer:  %10.2f GB in all, %8.2f GB for the largest layer\n", h_shared / 1e9, h_layer_sh / 1e9);
    printf("  peak memory if Hessians are factored and consumed layer by layer: %.2f GB (per expert) / %.2f GB (shared)\n",
           1.5 * h_layer_exp / 1e9 + u_max / 1e9, 1.5 * h_layer_sh / 1e9 + u_max / 1e9);
    printf("  work: forward %.2e, x x^T %.2e, factor %.2e (shared: %.2e), feedback %.2e flop\n", fwd, acc, fac_e, fac_s, prop);
    printf("  time at %.0f TFLOP/s (one GPU): %.2f h per expert, %.2f h shared;  at %.0f TFLOP/s (one CPU server): %.1f h, %.1f h\n",
           EST_GPU_FLOPS / 1e12, tot_e / EST_GPU_FLOPS / 3600, tot_s / EST_GPU_FLOPS / 3600, EST_CPU_FLOPS / 1e12,
           tot_e / EST_CPU_FLOPS / 3600, tot_s / EST_CPU_FLOPS / 3600);
    printf("  plus reading the weights %d times (calibration pass%s and conversion), each as long as a plain convert's read\n",
           o->passes + 1, o->passes > 1 ? "es" : "");
}
