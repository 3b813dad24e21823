/* cli/gptq.c — `--gptq TEXT` of convert and quantize: option parsing, the tokenized text,
 * the plan-hash salt (so --resume refuses a journal written with other GPTQ settings), the
 * run through the streamed pass (pass/ps_gptq_convert: one layer's Hessians at a time) and
 * the --dry-run estimate of its memory and time.  Orchestration only; the work is
 * pass/gptq_stream.c, calib/hessian.c and quant/gptq.c. */
#include "cli.h"
#include "cli_gptq.h"
#include "calib/calib.h"

#include <inttypes.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

void cli_gptq_defaults(cli_gptq_opts *o) {
    memset(o, 0, sizeof *o);
    o->damp = 0.1;
    o->ctx = 512;
    o->chunks = CLI_GPTQ_CHUNKS;
    o->experts = "expert";
    o->min_tokens = CLI_GPTQ_MIN_TOKENS;
    o->save_lock.fd = -1;
}

void cli_gptq_free(cli_gptq_opts *o) {
    qx_lock_release(&o->save_lock);
    free(o->ids);
    o->ids = NULL;
    ps_gptq_result_free(&o->res);
}

const char *cli_gptq_usage(void) {
    return "  --gptq TEXT               GPTQ error feedback inside the GGUF blocks, input Hessians from TEXT, streamed\n"
           "                            layer by layer (one layer's Hessians in memory; docs/gptq.md)\n"
           "  --gptq-chunks N           calibration windows (default " CLI_GPTQ_CHUNKS_STR ": past it KLD barely moves, docs/gptq.md);  --gptq-ctx N window length (512)\n"
           "  --gptq-damp X             damping, fraction of the mean Hessian diagonal (default 0.1)\n"
           "  --gptq-experts M          routed experts: expert (one Hessian each, default) or shared (one per layer)\n"
           "  --gptq-min-tokens N       a matrix (expert) that saw fewer calibration rows is quantized plainly (default "
           CLI_GPTQ_MIN_TOKENS_STR ")\n"
           "  --gptq-mem SIZE           keep the pass's predicted peak within SIZE (e.g. 64G, 60GiB) by factoring fewer\n"
           "                            matrices at once; refuse to start when even one does not fit\n"
           "  --gptq-skip REGEX         tensors whose GGUF name matches (POSIX extended) are quantized without feedback\n"
           "  --gptq-save F             also write the calibration statistics to F (layer by layer; ~the pass's Hessian memory per layer)\n"
           "  --gptq-load F             take them from F instead of running the model (same model, --gptq TEXT, --gptq-chunks,\n"
           "                            --gptq-ctx and --gptq-experts; damping, min-tokens and skip may differ): presets share one run\n";
}

static bool num(const char *v, double lo, double hi, double *out) {
    char *end;
    double d = v ? strtod(v, &end) : 0;
    if (!v || end == v || *end || !(d >= lo && d <= hi)) return false;
    *out = d;
    return true;
}

/* "64G" (1e9), "60GiB" (2^30), "512M", "1T", plain bytes. */
static bool mem_size(const char *v, uint64_t *out) {
    char *end;
    double d = strtod(v, &end);
    if (end == v || !(d > 0)) return false;
    static const struct { const char *s; double m; } u[] = {
        { "", 1 }, { "K", 1e3 }, { "M", 1e6 }, { "G", 1e9 }, { "T", 1e12 },
        { "KiB", 1024.0 }, { "MiB", 1048576.0 }, { "GiB", 1073741824.0 }, { "TiB", 1099511627776.0 } };
    for (size_t i = 0; i < sizeof u / sizeof u[0]; i++)
        if (!strcmp(end, u[i].s)) { *out = (uint64_t)(d * u[i].m); return true; }
    return false;
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
    else if (!strcmp(a, "--gptq-min-tokens") && num(v, 0, 1e12, &d)) o->min_tokens = d;
    else if (!strcmp(a, "--gptq-mem") && mem_size(v, &o->mem)) {}
    else if (!strcmp(a, "--gptq-save")) o->save = v;
    else if (!strcmp(a, "--gptq-load")) o->load = v;
    else if (!strcmp(a, "--gptq-passes"))
        *rc = cli_usage_error(cmd, "--gptq-passes was removed: the sequential second pass measured no gain (docs/gptq.md)");
    else if (!strcmp(a, "--gptq-skip")) {
        regex_t re;
        if (regcomp(&re, v, REG_EXTENDED | REG_NOSUB)) *rc = cli_usage_error(cmd, "--gptq-skip '%s': not a regular expression", v);
        else { regfree(&re); o->skip = v; }
    }
    else if (!strcmp(a, "--gptq-experts") && (!strcmp(v, "expert") || !strcmp(v, "shared"))) o->experts = v;
    else *rc = cli_usage_error(cmd, "bad %s '%s'", a, v);
    return 1;
}

int cli_gptq_prepare(cli_gptq_opts *o, const char *cmd, const char *in, cv_params *p) {
    int rc = cli_read_ids(cmd, in, o->text, NULL, &o->ids, &o->n_ids);
    if (rc) return rc;
    if (o->n_ids < o->ctx) {
        fprintf(stderr, "qforge %s: error: %s: %" PRId64 " tokens, fewer than one --gptq-ctx window of %" PRId64 "\n", cmd, o->text,
                o->n_ids, o->ctx);
        return 1;
    }
    uint64_t th = XXH3_64bits(o->ids, (size_t)o->n_ids * sizeof *o->ids);
    /* OpenBLAS or not changes the rounding: a resume must not mix the two */
    snprintf(o->salt, sizeof o->salt, "gptq2 text %016" PRIx64 " chunks %" PRId64 " ctx %" PRId64 " damp %.17g experts %s min %.17g skip %s %s",
             th, o->chunks, o->ctx, o->damp, o->experts, o->min_tokens, o->skip ? o->skip : "", qx_blas_get() ? "blas" : "own");
    p->plan_salt = o->salt;
    /* a statistics file is tied to the model's shape and name, the tokens and the windows */
    char set[512], base[256];
    const char *sl = strrchr(in, '/');
    snprintf(base, sizeof base, "%s", sl && sl[1] ? sl + 1 : in);
    qx_err e = {0};
    cal_model *m = NULL;
    if (cal_model_open(&m, in, &e) != QX_OK) return cli_fail(&e);
    o->hp = *cal_model_hparams(m);
    const cal_hparams *hp = &o->hp;
    snprintf(set, sizeof set, "%s %lld %lld %lld %lld %016" PRIx64 " %" PRId64 " %" PRId64 " %s", base, (long long)hp->n_layer,
             (long long)hp->n_embd, (long long)hp->n_exp, (long long)hp->n_vocab, th, o->chunks, o->ctx, o->experts);
    o->settings = XXH3_64bits(set, strlen(set));
    if (o->load && cal_hessian_file_check(o->load, hp, !strcmp(o->experts, "shared") ? CAL_HESS_SHARED : CAL_HESS_PER_EXPERT, o->settings,
                                          &e) != QX_OK) {
        cal_model_close(m);
        return cli_fail(&e);   /* before anything is written */
    }
    cal_model_close(m);
    if (o->save && o->load && !strcmp(o->save, o->load)) { fprintf(stderr, "qforge %s: error: --gptq-save and --gptq-load name the same file\n", cmd); return 2; }
    if (o->save && cli_lock_output(cmd, o->save, 0, NULL, &o->save_lock)) return 1;
    return 0;
}

int cli_gptq_execute(cli_gptq_opts *o, const char *cmd, const char *in, const char *out, cv_plan *pl,
                     cv_params *p, cv_result *r, bool quiet, qx_err *e) {
    ps_gptq_params gp;
    ps_gptq_default_params(&gp);
    gp.model = in;
    gp.ids = o->ids;
    gp.n_ids = o->n_ids;
    gp.n_ctx = o->ctx;
    gp.n_chunks = o->chunks;
    gp.damp = o->damp;
    gp.experts = !strcmp(o->experts, "shared") ? CAL_HESS_SHARED : CAL_HESS_PER_EXPERT;
    gp.min_tokens = o->min_tokens;
    gp.skip = o->skip;
    gp.n_threads = p->n_threads;
    gp.save_path = o->save;
    gp.load_path = o->load;
    gp.settings = o->settings;
    int par = cli_gptq_fit(o, cmd, pl, p->n_threads, quiet);   /* --gptq-mem: refuse, or bound the factorizations */
    if (par < 0) return 1;
    gp.factor_par = par;
    int64_t nw = o->n_ids / o->ctx;
    if (o->chunks > 0 && o->chunks < nw) nw = o->chunks;
    if (!quiet)
        fprintf(stderr, "qforge %s: gptq: %" PRId64 " windows of %" PRId64 " tokens of %s, %s%s, layer by layer; each layer's "
                "tensors are written as soon as its statistics are complete%s%s\n", cmd, nw, o->ctx, o->text,
                o->load ? "statistics read from " : "through the model", o->load ? o->load : "", o->save ? "; statistics saved to " : "",
                o->save ? o->save : "");
    double t0 = qx_now();
    qx_status s = ps_gptq_convert(pl, out, p, &gp, r, &o->res, e);
    if (s != QX_OK) return cli_fail(e);
    const ps_gptq_result *g = &o->res;
    if (!quiet)
        fprintf(stderr, "qforge %s: gptq: %d layers in %.1f s (engine %.1f s, factoring %.1f s, waiting for the writer %.1f s); "
                "peak Hessians+factors %.1f MB; %" PRId64 " of %" PRId64 " matrices without a factor (%" PRId64 " no tokens, %" PRId64
                " below --gptq-min-tokens %.0f) quantized plainly; routed experts: %" PRId64 " of %" PRId64 " plain\n",
                cmd, g->n_layer + 1, qx_now() - t0, g->seconds_engine, g->seconds_factor, g->seconds_waiting,
                g->peak_hessian_bytes / 1e6, g->n_failed + g->n_fallback, g->n_matrices, g->n_failed, g->n_fallback, o->min_tokens,
                g->n_expert_empty + g->n_expert_fallback, g->n_expert_matrices);
    return 0;
}

/* ---- dry-run estimate and the --gptq-mem fit ---- */

/* Sustained rates per core measured by `make bench` (bench/bench_gptq.c, bench_engine) on the
 * project's 2-core AVX-512 machine with Debian's OpenBLAS (docs/gptq.md has the figures and
 * the date); the H200 rate is an assumption (no device run yet). */
#define RATE_FORWARD 30.0e9   /* engine matmuls on FP8 weights, FLOP/s (v3-layers imatrix: 33) */
#define RATE_GRAM 140.0e9     /* Hessians (sgemm row blocks) */
#define RATE_FACTOR 100.0e9   /* LAPACK dpotrf + dtrtri, double */
#define RATE_FEEDBACK 95.0e9  /* lazy-batch product (sgemm) */
#define RATE_WALK 2.5e6       /* weights/s of the code search + in-block walk at IQ2_XXS on 7168-column rows (feedback product excluded) */
#define RATE_H200 40.0e12     /* assumed fp32 FLOP/s of one H200 (unmeasured) */

/* The number of factorizations at once that fits --gptq-mem (the thread count without it);
 * 0 when not even one fits.  Uses the hyper-parameters cli_gptq_prepare read. */
static int fit(const cli_gptq_opts *o, const cv_plan *pl, int cores, ps_gptq_estimate *est, double *T) {
    const cal_hparams hp = o->hp;
    *T = (double)(o->chunks > 0 ? o->chunks : (o->n_ids > 0 ? o->n_ids / o->ctx : 128)) * (double)o->ctx;
    if (o->chunks > 0 && o->n_ids > 0 && o->n_ids / o->ctx < o->chunks) *T = (double)(o->n_ids / o->ctx) * (double)o->ctx;
    cal_hess_experts ex = !strcmp(o->experts, "shared") ? CAL_HESS_SHARED : CAL_HESS_PER_EXPERT;
    int par = cores;
    for (; par >= 1; par--) {
        ps_gptq_estimate_plan(pl, &hp, *T, ex, par, est);
        if (!o->mem || est->peak_bytes <= o->mem) return par;
    }
    ps_gptq_estimate_plan(pl, &hp, *T, ex, 1, est);
    return 0;
}

static void refuse(const cli_gptq_opts *o, const char *cmd, const ps_gptq_estimate *est) {
    fprintf(stderr, "qforge %s: error: --gptq-mem %.2f GB: the streamed pass needs at least %.2f GB (layer %d's Hessians %.2f GB, "
            "one factorization's workspace %.2f GB, residual state %.2f GB, engine %.2f GB, one layer's weights %.2f GB); "
            "raise it, use fewer --gptq-chunks or --gptq-experts shared\n", cmd, o->mem / 1e9, est->peak_bytes / 1e9, est->peak_layer,
            est->hessian_bytes / 1e9, est->workspace_bytes / 1e9, est->state_bytes / 1e9, est->engine_bytes / 1e9, est->weight_bytes / 1e9);
}

int cli_gptq_dry_run(const cli_gptq_opts *o, const cv_plan *pl, int n_threads, ps_gptq_estimate *out) {
    int cores = n_threads > 0 ? n_threads : qx_default_threads();
    ps_gptq_estimate est;
    double T;
    int par = fit(o, pl, cores, &est, &T);
    if (out) *out = est;
    double w = (double)cv_plan_n_elems(pl);
    double core_s = est.flops_forward / RATE_FORWARD + est.flops_gram / RATE_GRAM + est.flops_factor / RATE_FACTOR +
                    est.flops_feedback / RATE_FEEDBACK + w / RATE_WALK;
    printf("\nGPTQ (--gptq) streamed pass: %.0f calibration tokens (%.0f windows of %" PRId64 "), %d threads\n", T, T / (double)o->ctx,
           o->ctx, cores);
    printf("  peak memory of the pass %.2f GB: layer %d's Hessians %.2f GB (float, %s, gate/up shared, kept as input rows where\n"
           "    fewer than the columns), factor workspaces %.2f GB (%d at once), residual state %.2f GB, engine buffers %.2f GB,\n"
           "    one layer's weights mapped %.2f GB; plus the plain conversion's own buffers\n",
           est.peak_bytes / 1e9, est.peak_layer, est.hessian_bytes / 1e9, !strcmp(o->experts, "shared") ? "experts shared" : "one per expert",
           est.workspace_bytes / 1e9, par > 0 ? par : 1, est.state_bytes / 1e9, est.engine_bytes / 1e9, est.weight_bytes / 1e9);
    printf("  work: forward %.2e, x x^T %.2e, factor %.2e, feedback %.2e flop; code search + walk over %.3g weights\n", est.flops_forward,
           est.flops_gram, est.flops_factor, est.flops_feedback, w);
    printf("  time at measured per-core rates (forward %.0f, Hessians %.0f, factor %.0f, feedback %.0f GFLOP/s; walk %.1f M weights/s):\n"
           "    %.2f h on %d cores, %.2f h on a 64-core server;  one H200 at an assumed %.0f TFLOP/s: %.2f h of arithmetic\n",
           RATE_FORWARD / 1e9, RATE_GRAM / 1e9, RATE_FACTOR / 1e9, RATE_FEEDBACK / 1e9, RATE_WALK / 1e6, core_s / cores / 3600, cores,
           core_s / 64 / 3600, RATE_H200 / 1e12, (est.flops_forward + est.flops_gram + est.flops_factor + est.flops_feedback) / RATE_H200 / 3600);
    printf("  plus reading the weights once (the engine reads a layer, the writer re-reads it from the page cache)\n");
    if (o->mem && par == 0) { printf("  --gptq-mem %.2f GB: BELOW the smallest peak; the run would refuse to start\n", o->mem / 1e9); return 0; }
    if (o->mem && par < cores) printf("  --gptq-mem %.2f GB: %d factorizations at once (of %d threads) keep the pass within it\n", o->mem / 1e9, par, cores);
    return 0;
}

int cli_gptq_fit(const cli_gptq_opts *o, const char *cmd, const cv_plan *pl, int n_threads, bool quiet) {
    int cores = n_threads > 0 ? n_threads : qx_default_threads();
    ps_gptq_estimate est;
    double T;
    int par = fit(o, pl, cores, &est, &T);
    if (par == 0) { refuse(o, cmd, &est); return -1; }
    if (!quiet && o->mem)
        fprintf(stderr, "qforge %s: gptq: --gptq-mem %.2f GB: predicted peak %.2f GB with %d factorizations at once\n", cmd, o->mem / 1e9,
                est.peak_bytes / 1e9, par);
    return par;
}
void cli_gptq_json(const cli_gptq_opts *o, const ps_gptq_estimate *est, FILE *f) {
    fprintf(f, ",\n  \"gptq\": {\n    \"text\": \"");
    for (const char *c = o->text; *c; c++) { if (*c == '"' || *c == '\\') fputc('\\', f); fputc(*c, f); }
    fprintf(f, "\", \"chunks\": %" PRId64 ", \"ctx\": %" PRId64 ", \"damp\": %g, \"experts\": \"%s\", \"min_tokens\": %.0f", o->chunks,
            o->ctx, o->damp, o->experts, o->min_tokens);
    if (est) {
        fprintf(f, ",\n    \"peak_bytes\": %" PRIu64 ", \"hessian_bytes\": %" PRIu64 ", \"workspace_bytes\": %" PRIu64
                   ", \"state_bytes\": %" PRIu64 ", \"engine_bytes\": %" PRIu64 ", \"weight_bytes\": %" PRIu64 ", \"peak_layer\": %d,\n    \"flops\": {\"forward\": %.4e, \"gram\": %.4e, \"factor\": %.4e, \"feedback\": %.4e}\n  }",
                est->peak_bytes, est->hessian_bytes, est->workspace_bytes, est->state_bytes, est->engine_bytes, est->weight_bytes, est->peak_layer, est->flops_forward, est->flops_gram,
                est->flops_factor, est->flops_feedback);
        return;
    }
    const ps_gptq_result *g = &o->res;
    fprintf(f, ",\n    \"peak_hessian_bytes\": %" PRIu64 ", \"matrices\": %" PRId64 ", \"no_factor\": %" PRId64 ", \"below_min_tokens\": %" PRId64
               ",\n    \"expert_matrices\": %" PRId64 ", \"experts_plain\": %" PRId64 ", \"experts_no_tokens\": %" PRId64
               ",\n    \"seconds\": {\"engine\": %.3f, \"factor\": %.3f, \"waiting\": %.3f},\n    \"expert_tokens\": [",
            g->peak_hessian_bytes, g->n_matrices, g->n_failed, g->n_fallback, g->n_expert_matrices, g->n_expert_fallback + g->n_expert_empty,
            g->n_expert_empty, g->seconds_engine, g->seconds_factor, g->seconds_waiting);
    for (size_t i = 0; i < g->n_counts; i++)
        fprintf(f, "%s\n      {\"tensor\": \"%s\", \"expert\": %" PRId64 ", \"tokens\": %.0f}", i ? "," : "", g->counts[i].name, g->counts[i].mat,
                g->counts[i].tokens);
    fprintf(f, "\n    ]\n  }");
}
