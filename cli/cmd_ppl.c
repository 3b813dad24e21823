/* cli/cmd_ppl.c — `qforge ppl`: perplexity, and KL drift against a saved base, as a CI gate.
 * Also holds the helpers shared with `qforge imatrix` (token input, engine progress). */
#include "cli.h"
#include "calib/calib.h"
#include "tok/tok.h"
#include "kernels/kernels.h"
#include "formats/formats.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static const char *ppl_help =
    "usage: qforge ppl MODEL (--text FILE | --ids FILE) [options]\n"
    "  MODEL              an HF checkpoint dir (FP8 / BF16 safetensors) or a GGUF file\n"
    "  --text FILE        UTF-8 text, tokenized with MODEL's tokenizer (no BOS added to the text)\n"
    "  --ids FILE         pre-tokenized input instead: int32 little-endian token ids, no BOS\n"
    "  --ctx N            window length (default 512)\n"
    "  --chunks N         evaluate only the first N windows (default: all that fit)\n"
    "  --protocol P       llama (default): llama-perplexity's protocol: BOS + text, chunk i =\n"
    "                     tokens[i*ctx, (i+1)*ctx) with its first token set to BOS, only the second\n"
    "                     half of each window scored (positions ctx/2 .. ctx-2 predict the next token);\n"
    "                     all: windows of the text's ids without BOS, every position after the\n"
    "                     first scored (the fixtures' protocol)\n"
    "  --save-base F      store this model's log-probabilities in F (zlib; format in calib/ppl.c)\n"
    "  --base-topk K      0 (default): full rows as 16-bit log-probs, exact KLD (~2 bytes x vocab\n"
    "                     per scored token); K > 0: only the top-K log-probs + remainder mass\n"
    "                     (8K bytes per token; KLD becomes a lower bound, ~70% of the exact value\n"
    "                     at K = 64 on mini-llama)\n"
    "  --base F           compare against a base file: KLD, top-1 agreement, Δp, PPL ratio\n"
    "  --save-kld F       with --base: write this build's per-token KLD to F (for --vs-kld later)\n"
    "  --vs-kld F         with --base: compare token by token with another build's --save-kld file\n"
    "                     (same base, text, ctx, chunks): mean KLD difference with its paired\n"
    "                     standard error (tighter than the two means' own errors)\n"
    "  --max-kld X        exit 3 when the mean KLD exceeds X\n"
    "  --max-ppl-ratio R  exit 3 when PPL / PPL_base exceeds R\n"
    "  --min-top1 P       exit 3 when the same-top-1 rate is below P (fraction, e.g. 0.9)\n"
    "  --max-kld-delta X  with --vs-kld: exit 3 when this build's mean KLD exceeds the other's\n"
    "                     by more than X (0: must not be worse; a release-to-release gate)\n"
    "  --json F           write all numbers as JSON to F ('-' = stdout)\n"
    "  --junit F          write the gate as JUnit XML to F (CI test reports): one test case per\n"
    "                     check (finite, and each of max-kld, max-ppl-ratio, min-top1,\n"
    "                     max-kld-delta given), a <failure> with the measured value and the limit\n"
    "  --shard I/N        evaluate only shard I (0-based) of N: windows [I*n/N, (I+1)*n/N) of the n\n"
    "                     windows; needs --json F, which then also holds every scored token's values\n"
    "                     (NLL, and with --base its KLD, Δp, top-1): `qforge merge -o OUT.json F...`\n"
    "                     prints and writes the same figures as the unsharded run (gates: run them\n"
    "                     on the merged JSON; --save-base, --save-kld, --vs-kld, --junit: whole runs)\n"
    "  -t N               threads (default: all)\n"
    "  --batch N          tokens per engine batch (default 4096; memory vs. speed)\n"
    "  --device cpu|cuda  where the matmuls run (cuda: the first GPU; weights uploaded per layer)\n"
    "NaN or Inf in any logit is always a failure (exit 3).  Progress goes to stderr.\n";

int cli_read_ids(const char *cmd, const char *model, const char *text, const char *ids_path,
                 int32_t **ids, int64_t *n_ids) {
    qx_err e = {0};
    char *buf; size_t len;
    if (ids_path) {
        if (qx_read_file(ids_path, &buf, &len, &e) != QX_OK) return cli_fail(&e);
        if (len % 4) { free(buf); return cli_usage_error(cmd, "%s: %zu bytes is not a whole number of int32 ids", ids_path, len); }
        *ids = (int32_t *)(void *)buf;
        *n_ids = (int64_t)(len / 4);
        return 0;
    }
    tk_tok *tok = NULL;
    if (tk_load(model, &tok, &e) != QX_OK) return cli_fail(&e);
    if (qx_read_file(text, &buf, &len, &e) != QX_OK) { tk_free(tok); return cli_fail(&e); }
    size_t n = 0;
    double t0 = qx_now();
    qx_status s = tk_encode(tok, buf, len, false, ids, &n, &e);
    free(buf);
    tk_free(tok);
    if (s != QX_OK) return cli_fail(&e);
    fprintf(stderr, "qforge %s: %s: %zu tokens (%.1f s)\n", cmd, text, n, qx_now() - t0);
    *n_ids = (int64_t)n;
    return 0;
}

void cli_engine_progress(void *ud, int layer, int n_layer, int64_t done, int64_t total) {
    qx_progress *p = ud;
    char what[64];
    if (layer < n_layer) snprintf(what, sizeof what, "layer %d/%d", layer + 1, n_layer);
    else snprintf(what, sizeof what, "output head");
    /* units: tokens through the whole model, so the rate is the forward pass's tokens/s */
    uint64_t units = ((uint64_t)layer * (uint64_t)total + (uint64_t)done) / (uint64_t)(n_layer + 1);
    qx_progress_update(p, units, what);
}

int cli_open_device(const char *cmd, const char *dev, struct kn_backend **be) {
    kn_device d;
    *be = NULL;
    if (!kn_device_from_name(dev, &d)) return cli_usage_error(cmd, "--device must be cpu or cuda, not '%s'", dev);
    if (d == KN_DEVICE_CPU) return 0;
    qx_err e = {0};
    if (kn_backend_open(d, be, &e) != QX_OK) return cli_fail(&e);
    fprintf(stderr, "qforge %s: device %s\n", cmd, (*be)->name);
    return 0;
}

void cli_close_device(struct kn_backend *be) { kn_backend_close(be); }

int cli_eval_open(cli_eval *ev, const char *cmd, const char *model, const char *text,
                  const char *ids_path, const char *dev) {
    memset(ev, 0, sizeof *ev);
    int rc = cli_open_device(cmd, dev, &ev->be);
    if (rc) return rc;
    qx_err e = {0};
    if (cal_model_open(&ev->model, model, &e) != QX_OK) { cli_eval_close(ev); return cli_fail(&e); }
    if ((rc = cli_read_ids(cmd, model, text, ids_path, &ev->ids, &ev->n_ids))) { cli_eval_close(ev); return rc; }
    return 0;
}

void cli_eval_close(cli_eval *ev) {
    free(ev->ids);
    if (ev->model) cal_model_close(ev->model);
    cli_close_device(ev->be);
    memset(ev, 0, sizeof *ev);
}

static bool parse_i64(const char *s, int64_t *out) {
    char *end;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || v < 0) return false;
    *out = v;
    return true;
}
static bool parse_dbl(const char *s, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (!*s || *end || !isfinite(v)) return false;
    *out = v;
    return true;
}

/* Size of a GGUF model (a split set counts whole): file bytes and bits per weight; false for
 * anything else (an HF checkpoint dir). */
static bool gguf_size(const char *model, double *bytes, double *bpw) {
    gf_file *f;
    qx_err e;
    if (qx_is_dir(model) || gf_open(&f, model, &e) != QX_OK) return false;
    double tb = 0, ne = 0;
    for (size_t i = 0; i < gf_tensor_count(f); i++) { tb += (double)gf_tensor_at(f, i)->nbytes; ne += (double)gf_tensor_at(f, i)->n_elems; }
    *bytes = (double)gf_file_size(f);
    *bpw = ne > 0 ? 8.0 * tb / ne : 0;
    gf_close(f);
    return ne > 0;
}

/* The per-token arrays of a shard (exact: dumped with 17 significant digits). */
static json_t *tokens_json(const cal_ppl_tokens *t) {
    json_t *o = json_object();
    const char *names[] = {"nll", "d", "bnll", "kld", "dp"};
    const double *arr[] = {t->nll, t->d, t->bnll, t->kld, t->dp};
    for (int k = 0; k < (t->has_base ? 5 : 1); k++) {
        json_t *a = json_array();
        for (int64_t i = 0; i < t->n; i++) json_array_append_new(a, json_real(arr[k][i]));
        json_object_set_new(o, names[k], a);
    }
    if (t->has_base) {
        json_t *a = json_array();
        for (int64_t i = 0; i < t->n; i++) json_array_append_new(a, json_integer(t->top1[i]));
        json_object_set_new(o, "top1", a);
    }
    return o;
}

int cli_ppl_write_json(const char *path, const cal_ppl_result *r, const char *base, const char *vs_kld, const char *model,
                       const char *input, const double *size, const cal_ppl_tokens *tokens) {
    json_t *o = json_object();
    json_object_set_new(o, "model", json_string(model));
    json_object_set_new(o, "input", json_string(input));
    if (base) json_object_set_new(o, "base", json_string(base));
    if (vs_kld) json_object_set_new(o, "vs_kld", json_string(vs_kld));
    double bytes, bpw;
    if (size || gguf_size(model, &bytes, &bpw)) {
        json_object_set_new(o, "model_file_bytes", json_real(size ? size[0] : bytes));
        json_object_set_new(o, "model_bpw", json_real(size ? size[1] : bpw));
    }
    json_object_set_new(o, "protocol", json_string(r->protocol == CAL_PPL_LLAMA ? "llama" : "all"));
    json_object_set_new(o, "n_ctx", json_integer(r->n_ctx));
    json_object_set_new(o, "n_chunks", json_integer(r->n_chunks));
    json_object_set_new(o, "n_tokens_scored", json_integer(r->n_tokens_scored));
    json_object_set_new(o, "n_nonfinite", json_integer(r->n_nonfinite));
    json_object_set_new(o, "ppl", json_real(r->ppl));
    json_object_set_new(o, "ppl_err", json_real(r->ppl_err));
    json_object_set_new(o, "nll_mean", json_real(r->nll_mean));
    json_object_set_new(o, "tokens_per_s", json_real(r->tokens_per_s));
    json_object_set_new(o, "seconds", json_real(r->seconds));
    if (r->has_base) {
        json_object_set_new(o, "ppl_base", json_real(r->ppl_base));
        json_object_set_new(o, "ln_ppl_ratio", json_real(r->ln_ppl_ratio));
        json_object_set_new(o, "ln_ppl_ratio_err", json_real(r->ln_ppl_ratio_err));
        json_object_set_new(o, "kld_mean", json_real(r->kld_mean));
        json_object_set_new(o, "kld_err", json_real(r->kld_err));
        json_object_set_new(o, "kld_median", json_real(r->kld_median));
        json_object_set_new(o, "kld_p99", json_real(r->kld_p99));
        json_object_set_new(o, "kld_max", json_real(r->kld_max));
        json_object_set_new(o, "top1_agree", json_real(r->top1_agree));
        json_object_set_new(o, "dp_rms", json_real(r->dp_rms));
        json_t *q = json_array();
        for (int i = 0; i < CAL_KLD_NQ; i++) json_array_append_new(q, json_real(r->kld_q[i]));
        json_object_set_new(o, "kld_quantiles", q);
    }
    if (r->has_vs) {
        json_object_set_new(o, "vs_kld_mean", json_real(r->vs_kld_mean));
        json_object_set_new(o, "kld_delta", json_real(r->kld_delta));
        json_object_set_new(o, "kld_delta_err", json_real(r->kld_delta_err));
        json_object_set_new(o, "vs_lower_frac", json_real(r->vs_lower_frac));
    }
    size_t flags = JSON_INDENT(2) | JSON_REAL_PRECISION(10);
    if (r->shard.count > 0) {
        json_object_set_new(o, "shard", cli_shard_json(&r->shard));
        json_object_set_new(o, "tokens", tokens_json(tokens));
        flags = JSON_INDENT(1) | JSON_REAL_PRECISION(17);
    }
    int rc = 0;
    if (!strcmp(path, "-")) { json_dumpf(o, stdout, flags); putchar('\n'); }
    else if (json_dump_file(o, path, flags)) {
        fprintf(stderr, "qforge ppl: cannot write %s\n", path);
        rc = 1;
    }
    json_decref(o);
    return rc;
}

/* printf into the summary buffer (kept for JUnit's system-out) and onto stdout. */
static void say(char *buf, size_t cap, size_t *len, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void say(char *buf, size_t cap, size_t *len, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    if (*len + 1 >= cap) return;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (n > 0) *len = *len + (size_t)n < cap ? *len + (size_t)n : cap - 1;
}

/* One threshold check as a JUnit case: fails when the measured value is not finite or is on
 * the wrong side of the limit (upper: measured > limit; lower: measured < limit). */
static void check(cli_junit_case *c, const char *name, const char *what, double measured, double limit, bool upper) {
    memset(c, 0, sizeof *c);
    c->name = name;
    bool bad = !isfinite(measured) || (upper ? measured > limit : measured < limit);
    c->outcome = bad ? CLI_JUNIT_FAIL : CLI_JUNIT_PASS;
    snprintf(c->message, sizeof c->message, "%s %.6g %s limit %.6g", what, measured, bad ? (upper ? ">" : "<") : (upper ? "<=" : ">="), limit);
    snprintf(c->detail, sizeof c->detail, "measured %.9g, limit %.9g (--%s)", measured, limit, name);
}

static void junit_error(const char *path, const char *model, const char *msg) {
    cli_junit_case c;
    memset(&c, 0, sizeof c);
    c.name = "evaluate";
    c.outcome = CLI_JUNIT_ERROR;
    snprintf(c.message, sizeof c.message, "%s", msg);
    const char *props[] = {"model", model};
    cli_junit_write(path, "qforge ppl", "qforge.ppl", 0, props, 1, &c, 1, NULL);
}

/* The gate: every check given (and finiteness, always), FAIL lines on stdout, JUnit when
 * asked.  Returns 0, 3 when a check failed, 1 when the JUnit file could not be written. */
static int gate(const cal_ppl_result *r, const cal_ppl_params *p, const char *junit, const char *model, const char *input,
                const char *summary, double max_kld, double max_ratio, double min_top1, double max_delta) {
    cli_junit_case cases[5];
    size_t n = 0;
    cli_junit_case *c = &cases[n++];
    memset(c, 0, sizeof *c);
    c->name = "finite";
    bool nonfinite = r->n_nonfinite > 0 || !isfinite(r->ppl) || (r->has_base && (!isfinite(r->kld_mean) || !isfinite(r->ppl_base)));
    c->outcome = nonfinite ? CLI_JUNIT_FAIL : CLI_JUNIT_PASS;
    snprintf(c->message, sizeof c->message, "%lld scored tokens had NaN/Inf logits or divergences", (long long)r->n_nonfinite);
    snprintf(c->detail, sizeof c->detail, "non-finite scored tokens %lld, PPL %g%s (limit: none may be NaN or Inf)",
             (long long)r->n_nonfinite, r->ppl, r->has_base && !isfinite(r->kld_mean) ? ", KLD not finite" : "");
    if (nonfinite) printf("FAIL: %s\n", c->message);
    if (r->has_base) {
        double ratio = exp(r->ln_ppl_ratio);
        if (max_kld >= 0) check(&cases[n++], "max-kld", "mean KLD", r->kld_mean, max_kld, true);
        if (max_ratio > 0) check(&cases[n++], "max-ppl-ratio", "PPL ratio", ratio, max_ratio, true);
        if (min_top1 >= 0) check(&cases[n++], "min-top1", "same-top-1", r->top1_agree, min_top1, false);
        if (!isnan(max_delta) && r->has_vs) check(&cases[n++], "max-kld-delta", "KLD delta vs the other build", r->kld_delta, max_delta, true);
    }
    bool failed = nonfinite;
    for (size_t i = 1; i < n; i++) {
        if (cases[i].outcome != CLI_JUNIT_FAIL) continue;
        failed = true;
        if (!strcmp(cases[i].name, "max-kld")) printf("FAIL: mean KLD %.6f > --max-kld %g\n", r->kld_mean, max_kld);
        else if (!strcmp(cases[i].name, "max-ppl-ratio")) printf("FAIL: PPL ratio %.6f > --max-ppl-ratio %g\n", exp(r->ln_ppl_ratio), max_ratio);
        else if (!strcmp(cases[i].name, "min-top1")) printf("FAIL: same-top-1 %.6f < --min-top1 %g\n", r->top1_agree, min_top1);
        else printf("FAIL: mean KLD %.6f exceeds %s's %.6f by %.6f > --max-kld-delta %g\n", r->kld_mean, p->vs_kld, r->vs_kld_mean,
                    r->kld_delta, max_delta);
    }
    if (junit) {
        char ctx[32], chunks[32], tok[32], ppl[32];
        snprintf(ctx, sizeof ctx, "%lld", (long long)r->n_ctx);
        snprintf(chunks, sizeof chunks, "%lld", (long long)r->n_chunks);
        snprintf(tok, sizeof tok, "%lld", (long long)r->n_tokens_scored);
        snprintf(ppl, sizeof ppl, "%.6f", r->ppl);
        const char *props[] = {"model", model, "input", input, "base", p->base ? p->base : "", "vs_kld", p->vs_kld ? p->vs_kld : "",
                               "protocol", r->protocol == CAL_PPL_LLAMA ? "llama" : "all", "ctx", ctx, "chunks", chunks,
                               "tokens_scored", tok, "ppl", ppl};
        if (cli_junit_write(junit, "qforge ppl", "qforge.ppl", r->seconds, props, sizeof props / sizeof props[0] / 2, cases, n, summary))
            return 1;
    }
    return failed ? 3 : 0;
}

void cli_ppl_summary(const cal_ppl_result *r, const char *vs_kld, char *summary, size_t cap) {
    size_t sl = 0;
    summary[0] = 0;
    say(summary, cap, &sl, "protocol %s, ctx %lld, %lld chunks, %lld tokens scored, %.1f tokens/s\n",
           r->protocol == CAL_PPL_LLAMA ? "llama (second half of each window scored)" : "all (every token after the first)",
           (long long)r->n_ctx, (long long)r->n_chunks, (long long)r->n_tokens_scored, r->tokens_per_s);
    say(summary, cap, &sl, "PPL           %.6f +/- %.6f\n", r->ppl, r->ppl_err);
    if (r->has_base) {
        say(summary, cap, &sl, "PPL base      %.6f\n", r->ppl_base);
        say(summary, cap, &sl, "ln(PPL/base)  %.6f +/- %.6f  (ratio %.6f)\n", r->ln_ppl_ratio, r->ln_ppl_ratio_err, exp(r->ln_ppl_ratio));
        say(summary, cap, &sl, "KLD mean      %.6f +/- %.6f\n", r->kld_mean, r->kld_err);
        say(summary, cap, &sl, "KLD median    %.6f   p99 %.6f   max %.6f\n", r->kld_median, r->kld_p99, r->kld_max);
        say(summary, cap, &sl, "same top-1    %.4f %%\n", 100.0 * r->top1_agree);
        say(summary, cap, &sl, "RMS Δp        %.4f %%\n", 100.0 * r->dp_rms);
    }
    if (r->has_vs) {
        say(summary, cap, &sl, "KLD vs %s: other %.6f, this - other %+.6f +/- %.6f (paired), this lower on %.1f %% of tokens\n",
               vs_kld, r->vs_kld_mean, r->kld_delta, r->kld_delta_err, 100.0 * r->vs_lower_frac);
    }
}

int cmd_ppl(int argc, char **argv) {
    const char *model = NULL, *text = NULL, *ids_path = NULL, *json = NULL, *junit = NULL, *dev = "cpu";
    cal_ppl_params p = cal_ppl_default_params();
    double max_kld = -1, max_ratio = -1, min_top1 = -1, max_delta = NAN;
    int64_t v;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { fputs(ppl_help, stdout); return 0; }
        if (a[0] != '-') { if (model) return cli_usage_error("ppl", "unexpected argument '%s'", a); model = a; continue; }
        if (!val) return cli_usage_error("ppl", "%s needs a value", a);
        i++;
        if (!strcmp(a, "--text")) text = val;
        else if (!strcmp(a, "--ids")) ids_path = val;
        else if (!strcmp(a, "--json")) json = val;
        else if (!strcmp(a, "--junit")) junit = val;
        else if (!strcmp(a, "--save-base")) p.save_base = val;
        else if (!strcmp(a, "--base")) p.base = val;
        else if (!strcmp(a, "--device")) dev = val;
        else if (!strcmp(a, "--save-kld")) p.save_kld = val;
        else if (!strcmp(a, "--vs-kld")) p.vs_kld = val;
        else if (!strcmp(a, "--shard")) { if (!qx_shard_parse(val, &p.shard)) return cli_usage_error("ppl", "bad --shard '%s' (want I/N, 0 <= I < N)", val); }
        else if (!strcmp(a, "--max-kld-delta")) { if (!parse_dbl(val, &max_delta)) return cli_usage_error("ppl", "bad --max-kld-delta '%s'", val); }
        else if (!strcmp(a, "--protocol")) {
            if (!strcmp(val, "llama")) p.protocol = CAL_PPL_LLAMA;
            else if (!strcmp(val, "all")) p.protocol = CAL_PPL_ALL;
            else return cli_usage_error("ppl", "--protocol must be llama or all, not '%s'", val);
        } else if (!strcmp(a, "--ctx")) { if (!parse_i64(val, &v) || v < 4 || v > (1 << 20)) return cli_usage_error("ppl", "bad --ctx '%s'", val); p.n_ctx = v; }
        else if (!strcmp(a, "--chunks")) { if (!parse_i64(val, &v)) return cli_usage_error("ppl", "bad --chunks '%s'", val); p.n_chunks = v; }
        else if (!strcmp(a, "--batch")) { if (!parse_i64(val, &v) || v < 1) return cli_usage_error("ppl", "bad --batch '%s'", val); p.batch_tokens = v; }
        else if (!strcmp(a, "--base-topk")) { if (!parse_i64(val, &v) || v > (1 << 24)) return cli_usage_error("ppl", "bad --base-topk '%s'", val); p.top_k = (int)v; }
        else if (!strcmp(a, "-t")) { if (!parse_i64(val, &v) || v < 1 || v > 4096) return cli_usage_error("ppl", "bad -t '%s'", val); p.n_threads = (int)v; }
        else if (!strcmp(a, "--max-kld")) { if (!parse_dbl(val, &max_kld) || max_kld < 0) return cli_usage_error("ppl", "bad --max-kld '%s'", val); }
        else if (!strcmp(a, "--max-ppl-ratio")) { if (!parse_dbl(val, &max_ratio) || max_ratio <= 0) return cli_usage_error("ppl", "bad --max-ppl-ratio '%s'", val); }
        else if (!strcmp(a, "--min-top1")) { if (!parse_dbl(val, &min_top1) || min_top1 < 0 || min_top1 > 1) return cli_usage_error("ppl", "bad --min-top1 '%s'", val); }
        else return cli_usage_error("ppl", "unknown option '%s'", a);
    }
    if (!model) return cli_usage_error("ppl", "MODEL is required");
    if (!text == !ids_path) return cli_usage_error("ppl", "give exactly one of --text FILE or --ids FILE");
    if ((max_kld >= 0 || max_ratio > 0 || min_top1 >= 0) && !p.base)
        return cli_usage_error("ppl", "--max-kld, --max-ppl-ratio and --min-top1 need --base");
    if ((p.save_kld || p.vs_kld) && !p.base) return cli_usage_error("ppl", "--save-kld and --vs-kld need --base");
    if (!isnan(max_delta) && !p.vs_kld) return cli_usage_error("ppl", "--max-kld-delta needs --vs-kld");
    if (p.shard.count > 0 && !json) return cli_usage_error("ppl", "--shard needs --json F (the shard's result for qforge merge)");
    if (p.shard.count > 0 && (p.save_base || p.save_kld || p.vs_kld || junit || max_kld >= 0 || max_ratio > 0 || min_top1 >= 0))
        return cli_usage_error("ppl", "--shard runs a part: --save-base, --save-kld, --vs-kld, --junit and the gates need the whole run");
    cal_ppl_tokens toks;
    memset(&toks, 0, sizeof toks);
    if (p.shard.count > 0) p.tokens_out = &toks;
    cli_eval ev;
    int rc = cli_eval_open(&ev, "ppl", model, text, ids_path, dev);
    if (rc) {
        char msg[128];
        snprintf(msg, sizeof msg, "the evaluation could not start (exit %d; the job log has the error line)", rc);
        if (junit) junit_error(junit, model, msg);
        return rc;
    }
    p.backend = ev.be;
    qx_err e = {0};
    qx_progress prog;
    int64_t nw_est = (ev.n_ids + 1) / p.n_ctx;
    if (p.n_chunks > 0 && p.n_chunks < nw_est) nw_est = p.n_chunks;
    qx_shard part = p.shard;
    qx_shard_range(&part, nw_est);
    nw_est = part.n;
    qx_progress_begin(&prog, stderr, "ppl", (uint64_t)(nw_est * p.n_ctx), "tok");
    p.progress = cli_engine_progress;
    p.progress_ud = &prog;
    cal_ppl_result r;
    qx_status s = cal_ppl_run(ev.model, ev.ids, ev.n_ids, &p, &r, &e);
    qx_progress_end(&prog, (uint64_t)(nw_est * p.n_ctx));
    cli_eval_close(&ev);
    if (s != QX_OK) {
        if (junit) junit_error(junit, model, e.msg);
        return cli_fail(&e);
    }

    char summary[2048];
    cli_ppl_summary(&r, p.vs_kld, summary, sizeof summary);
    if (r.shard.count > 0)
        printf("shard %d/%d: windows [%lld, %lld) of %lld (qforge merge combines the shards' --json files)\n", r.shard.index,
               r.shard.count, (long long)r.shard.first, (long long)(r.shard.first + r.shard.n), (long long)r.shard.units);
    rc = json ? cli_ppl_write_json(json, &r, p.base, p.vs_kld, model, text ? text : ids_path, NULL, &toks) : 0;
    cal_ppl_tokens_free(&toks);
    if (rc || p.shard.count > 0) return rc;
    return gate(&r, &p, junit, model, text ? text : ids_path, summary, max_kld, max_ratio, min_top1, max_delta);
}
