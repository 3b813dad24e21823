/* cli/cmd_convert.c — `qforge convert` (HF checkpoint -> GGUF) and, through the same code,
 * `qforge quantize` (F32/F16/BF16 GGUF -> GGUF): argument parsing, the dry-run table,
 * progress and the final summary.  The work is convert/ (cv_plan_*, cv_execute). */
#include "cli.h"
#include "convert/convert.h"
#include "cli_gptq.h"
#include "cli_alloc.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f, bool quantize) {
    if (quantize)
        fprintf(f, "usage: qforge quantize IN.gguf OUT.gguf TYPE [options]\n"
                   "  requantize an F32/F16/BF16 GGUF (any architecture); TYPE is a preset or a bare type\n");
    else
        fprintf(f, "usage: qforge convert HFDIR -o OUT.gguf --type PRESET [options]\n"
                   "  DeepSeek-V3/R1 (FP8), DeepSeek-V2, Llama, Qwen2 (BF16) checkpoint -> one GGUF, one streaming pass\n");
    fprintf(f, "options:\n"
               "  --type PRESET             %s (default Q4_K_M)\n"
               "  --tensor-type REGEX=TYPE  override (lower-cased regex searched in the GGUF name; first match wins; repeatable)\n"
               "  --output-tensor-type T    type of output.weight\n"
               "  --token-embedding-type T  type of token_embd.weight\n"
               "  --pure                    every quantizable tensor at the preset's default type\n"
               "  --llama-types             deepseek4: the types llama-quantize gives, exactly: no protection of the\n"
               "                            hyper-connection, compressor and indexer tensors, and FP4 experts re-quantized\n"
               "                            to the preset's type even where it is >= 4.25 bits (default: protected, kept\n"
               "                            MXFP4; docs/family.md 'Types on purpose')\n"
               "  --imatrix FILE            importance matrix (llama.cpp GGUF imatrix or legacy .dat)\n"
               "  --keep-mtp                deepseek2: keep the MTP block (nextn_predict_layers)\n"
               "  --no-mtp                  deepseek32 (V3.2, which keeps it by default): drop the MTP block\n"
               "  --mtp                     deepseek4 (V4, whose model file drops it) and deepseek32: write only the MTP\n"
               "                            block with the embedding, norm and head it shares, the speculative-draft file\n"
               "                            llama.cpp's converter --mtp writes (block_count = layers + 1,\n"
               "                            nextn_predict_layers 1; V4: nextn.eh_proj Q8_0 in every preset)\n"
               "  --split-max-size SIZE     split the output llama.cpp's way (PREFIX-00001-of-0000N.gguf): at most SIZE\n"
               "                            tensor bytes per file; SIZE in bytes or with M / G (10^6 / 10^9, as llama-gguf-split)\n"
               "  --split-max-tensors N     split the output: at most N tensors per file\n"
               "  --dry-run                 print the plan (every tensor, type, size, totals, exact file size) and exit\n"
               "  --skeleton                with --dry-run and -o: also write OUT as the planned file with its tensor data\n"
               "                            a hole (sparse; exact header and size, data zeros, checksums unset), e.g. as\n"
               "                            input to llama-quantize --dry-run\n"
               "  --resume                  continue an interrupted run from OUT.part and its journal\n"
               "  -t, --threads N           worker threads (default: all)\n"
               "  --json FILE               write the summary as JSON\n"
               "  --quiet                   no per-tensor table in --dry-run, no progress\n"
               "OUT is locked while written (OUT.lock beside it, removed when done; a split set locks its -o name),\n"
               "--resume and --skeleton included: a second writer of the same OUT stops at once, naming the holder.\n"
               "The file records the qforge version that wrote it (qforge.version; see qforge --version).\n", cv_preset_names());
    fputs(cli_gptq_usage(), f);
    fputs(cli_alloc_usage(), f);
}

static const char *human(double bytes, char *buf, size_t cap) {
    if (bytes >= 1e9) snprintf(buf, cap, "%.2f GB", bytes / 1e9);
    else if (bytes >= 1e6) snprintf(buf, cap, "%.2f MB", bytes / 1e6);
    else snprintf(buf, cap, "%.1f kB", bytes / 1e3);
    return buf;
}

static void fmt_shape(const cv_tensor_info *t, char *buf, size_t cap) {
    int k = 0;
    for (int d = 0; d < t->n_dims && k < (int)cap; d++) k += snprintf(buf + k, cap - (size_t)k, "%s%lld", d ? " x " : "", (long long)t->ne[d]);
}

static void print_plan(const cv_plan *pl, bool table, size_t n_exact) {
    size_t n = cv_plan_tensor_count(pl);
    uint64_t cat_bytes[CV_CAT_COUNT] = {0}, cat_elems[CV_CAT_COUNT] = {0}, cat_n[CV_CAT_COUNT] = {0};
    if (table) printf("%-40s %-8s %-24s %14s\n", "tensor", "type", "shape (ne)", "MiB");
    for (size_t i = 0; i < n; i++) {
        cv_tensor_info t;
        cv_plan_tensor(pl, i, &t);
        cat_bytes[t.cat] += t.nbytes;
        cat_elems[t.cat] += t.n_elems;
        cat_n[t.cat]++;
        if (!table) continue;
        char sh[64];
        fmt_shape(&t, sh, sizeof sh);
        printf("%-40s %-8s %-24s %14.3f%s%s%s\n", t.name, qt_type_name(t.type), sh, t.nbytes / 1048576.0,
               t.type != t.wanted ? "  (fallback from " : "", t.type != t.wanted ? qt_type_name(t.wanted) : "",
               t.type != t.wanted ? ")" : "");
    }
    printf("\n%-26s %8s %16s %14s %7s\n", "category", "tensors", "weights", "MiB", "bpw");
    for (int c = 0; c < CV_CAT_COUNT; c++) {
        if (!cat_n[c]) continue;
        printf("%-26s %8" PRIu64 " %16" PRIu64 " %14.2f %7.3f\n", cv_category_name((cv_category)c), cat_n[c], cat_elems[c],
               cat_bytes[c] / 1048576.0, cat_elems[c] ? 8.0 * cat_bytes[c] / cat_elems[c] : 0.0);
    }
    printf("%-26s %8zu %16" PRIu64 " %14.2f %7.3f\n", "total", n, cv_plan_n_elems(pl), cv_plan_tensor_bytes(pl) / 1048576.0,
           cv_plan_bpw(pl));
    char desc[2048];
    if (n_exact)   /* --recipe / --target-size: every quantized tensor named exactly, the preset only labels the file */
        printf("\ntypes: %zu tensors named by the recipe or allocation; preset %s gives the file type label and any tensor not named\n",
               n_exact, cv_plan_preset(pl));
    else if (cv_preset_describe(cv_plan_preset(pl), desc, sizeof desc))
        printf("\n%s", desc);
    printf("\narch %s, preset %s: %zu tensors, %zu work items, %zu row-length fallbacks\n", cv_plan_arch(pl), cv_plan_preset(pl), n,
           cv_plan_item_count(pl), cv_plan_fallback_count(pl));
    printf("tensor data %.2f MiB (%.2f GB), %.3f bits per weight\n", cv_plan_tensor_bytes(pl) / 1048576.0,
           cv_plan_tensor_bytes(pl) / 1e9, cv_plan_bpw(pl));
    printf("output file size %" PRIu64 " bytes (%.2f GB, %.2f GiB); source bytes to read %.2f GB\n", cv_plan_file_size(pl),
           cv_plan_file_size(pl) / 1e9, cv_plan_file_size(pl) / 1073741824.0, cv_plan_input_bytes(pl) / 1e9);
}

/* The files of a split plan, one line each (nothing for a single file). */
static void print_files(const cv_plan *pl, const char *out, FILE *f) {
    int n = cv_plan_split_count(pl);
    if (n <= 1) return;
    fprintf(f, "split into %d files:\n", n);
    for (int k = 0; k < n; k++) {
        char path[4200];
        if (!cv_output_path(pl, out, k, path, sizeof path)) snprintf(path, sizeof path, "(file %d)", k + 1);
        fprintf(f, "  %-48s %6zu tensors %16" PRIu64 " bytes (%.2f GB)\n", path, cv_plan_split_tensors(pl, k),
                cv_plan_split_size(pl, k), cv_plan_split_size(pl, k) / 1e9);
    }
}

/* SIZE of --split-max-size: bytes, or a positive integer with M or G (10^6, 10^9), as
 * llama-gguf-split reads it; also K (10^3). */
static bool parse_size(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || errno || v == 0 || *s == '-') return false;
    uint64_t mul = 1;
    if (*end == 'K') mul = 1000, end++;
    else if (*end == 'M') mul = 1000000, end++;
    else if (*end == 'G') mul = 1000000000, end++;
    if (*end || v > UINT64_MAX / mul) return false;
    *out = v * mul;
    return true;
}

static int write_json(const char *path, const char *out, const cv_result *r, const cv_plan *pl, bool dry, const cli_gptq_opts *gq,
                      const ps_gptq_estimate *est) {
    FILE *f = fopen(path, "w");
    if (!f) { fprintf(stderr, "qforge: error: cannot write %s\n", path); return 1; }
    fprintf(f, "{\n  \"output\": \"");
    for (const char *s = out; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        fputc(*s, f);
    }
    fprintf(f, "\",\n  \"dry_run\": %s,\n  \"preset\": \"%s\",\n  \"arch\": \"%s\",\n  \"bytes\": %" PRIu64 ",\n"
               "  \"tensor_bytes\": %" PRIu64 ",\n  \"bpw\": %.6f,\n  \"seconds\": %.3f,\n  \"peak_rss_bytes\": %" PRIu64 ",\n"
               "  \"n_tensors\": %zu,\n  \"items\": %zu,\n  \"items_skipped\": %" PRIu64 ",\n  \"input_bytes\": %" PRIu64 ",\n"
               "  \"input_gb_per_s\": %.4f",
            dry ? "true" : "false", cv_plan_preset(pl), cv_plan_arch(pl), cv_plan_file_size(pl), cv_plan_tensor_bytes(pl), cv_plan_bpw(pl),
            r->seconds, r->peak_rss_bytes, cv_plan_tensor_count(pl), cv_plan_item_count(pl), r->items_skipped, r->input_bytes,
            r->seconds > 0 ? r->input_bytes / r->seconds / 1e9 : 0.0);
    if (cv_plan_split_count(pl) > 1) {   /* split output: one entry per file */
        fprintf(f, ",\n  \"files\": [");
        for (int k = 0; k < cv_plan_split_count(pl); k++) {
            char path[4200];
            if (!cv_output_path(pl, out, k, path, sizeof path)) path[0] = 0;
            fprintf(f, "%s\n    {\"path\": \"", k ? "," : "");
            for (const char *c = path; *c; c++) { if (*c == '"' || *c == '\\') fputc('\\', f); fputc(*c, f); }
            fprintf(f, "\", \"tensors\": %zu, \"bytes\": %" PRIu64 "}", cv_plan_split_tensors(pl, k), cv_plan_split_size(pl, k));
        }
        fprintf(f, "\n  ]");
    }
    if (gq && gq->text) cli_gptq_json(gq, dry ? est : NULL, f);
    fprintf(f, "\n}\n");
    return fclose(f) == 0 ? 0 : 1;
}

/* Plans and runs (or with dry, prints) one convert/quantize once its arguments are checked
 * and OUT is locked.  Returns the exit code. */
static int run_plan(const char *cmd, bool quantize, const char *in, const char *out, const char *json, bool dry, bool quiet,
                    bool skeleton, cv_params *p, cli_gptq_opts *gq, cli_alloc_opts *ao) {
    int rc;
    signal(SIGXFSZ, SIG_IGN);   /* file size limit: let write() fail with EFBIG and report it */
    qx_err e;
    qx_err_clear(&e);
    double t0 = qx_now();
    cv_plan *pl = NULL;
    qx_status s = quantize ? cv_plan_from_gguf(&pl, in, p, &e) : cv_plan_create(&pl, in, p, &e);
    if (s == QX_OK && (rc = cli_alloc_check(ao, cmd, pl))) { cv_plan_free(pl); return rc; }
    if (s != QX_OK) return cli_fail(&e);
    const char *w = cv_plan_warnings(pl);
    if (*w) {
        for (const char *l = w; *l;) {
            const char *nl = strchr(l, '\n');
            int len = nl ? (int)(nl - l) : (int)strlen(l);
            fprintf(stderr, "qforge %s: warning: %.*s\n", cmd, len, l);
            l += len + (nl ? 1 : 0);
        }
    }
    cv_result r;
    memset(&r, 0, sizeof r);
    if (dry) {
        print_plan(pl, !quiet, ao->table.n);
        ps_gptq_estimate est;
        memset(&est, 0, sizeof est);
        rc = gq->text && cli_gptq_dry_run(gq, pl, p->n_threads, &est) ? 1 : 0;
        print_files(pl, out ? out : "OUT.gguf", stdout);
        r.seconds = qx_now() - t0;
        r.peak_rss_bytes = qx_peak_rss_bytes();
        printf("planned in %.2f s\n", r.seconds);
        if (rc == 0 && json) rc = write_json(json, out ? out : "", &r, pl, true, gq, &est);
        if (rc == 0 && skeleton) {
            if (cv_write_skeleton(pl, out, &e) != QX_OK) rc = cli_fail(&e);
            else printf("skeleton written: %s (tensor data a hole)\n", out);
        }
        cv_plan_free(pl);
        return rc;
    }
    qx_progress prog;
    char label[64];
    snprintf(label, sizeof label, "%s", cmd);
    qx_progress_begin(&prog, quiet ? NULL : stderr, label, cv_plan_input_bytes(pl), "B");
    p->progress = quiet ? NULL : &prog;
    if (!quiet)
        fprintf(stderr, "qforge %s: %s -> %s, %s, %zu tensors in %zu items, %.1f MB\n", cmd, in, out, cv_plan_preset(pl),
                cv_plan_tensor_count(pl), cv_plan_item_count(pl), cv_plan_file_size(pl) / 1e6);
    if (gq->text) {
        int grc = cli_gptq_execute(gq, cmd, in, out, pl, p, &r, quiet, &e);
        if (grc) {
            if (p->max_items > 0 && getenv("QF_TEST_SIGKILL_AT_STOP")) raise(SIGKILL);   /* tests: a real kill -9 mid-run */
            cv_plan_free(pl);
            return grc;
        }
        s = QX_OK;
    } else
        s = cv_execute(pl, out, p, &r, &e);
    if (s != QX_OK) {
        if (p->max_items > 0 && getenv("QF_TEST_SIGKILL_AT_STOP")) raise(SIGKILL);   /* tests: a real kill -9 mid-run */
        cv_plan_free(pl);
        return cli_fail(&e);
    }
    double secs = qx_now() - t0;
    r.seconds = secs;
    char h1[32], h2[32];
    char first[4200];
    if (!cv_output_path(pl, out, 0, first, sizeof first)) snprintf(first, sizeof first, "%s", out);
    printf("qforge %s: wrote %s (%s, %s)\n", cmd, first, cv_plan_arch(pl), cv_plan_preset(pl));
    print_files(pl, out, stdout);
    printf("  size      %s (%" PRIu64 " bytes), %" PRIu64 " tensors, %.3f bits per weight\n", human((double)r.bytes, h1, sizeof h1),
           r.bytes, r.n_tensors, r.bpw);
    printf("  time      %.2f s; input %s read at %.3f GB/s\n", secs, human((double)r.input_bytes, h2, sizeof h2),
           secs > 0 ? r.input_bytes / secs / 1e9 : 0.0);
    printf("  peak RSS  %.1f MiB\n", r.peak_rss_bytes / 1048576.0);
    printf("  checksums qforge.tensor_xxh3 (check with: qforge verify %s)\n", first);
    if (r.items_skipped) printf("  resumed: %" PRIu64 " of %" PRIu64 " items verified from the journal and skipped\n", r.items_skipped, r.items_total);
    rc = json ? write_json(json, out, &r, pl, false, gq, NULL) : 0;
    cv_plan_free(pl);
    return rc;
}

int cli_convert_main(int argc, char **argv, bool quantize) {
    const char *cmd = quantize ? "quantize" : "convert";
    cv_params p;
    cv_default_params(&p);
    const char *in = NULL, *out = NULL, *json = NULL, *type_pos = NULL;
    bool dry = false, quiet = false, skeleton = false;
    cli_gptq_opts gq;
    cli_gptq_defaults(&gq);
    cli_alloc_opts ao = {0};
    const char **tt = calloc((size_t)argc + 1, sizeof *tt);
    if (!tt) return 1;
    int rc = 0;
    for (int i = 1; i < argc && rc == 0; i++) {
        const char *a = argv[i];
#define VAL() (i + 1 < argc ? argv[++i] : (rc = cli_usage_error(cmd, "%s needs a value", a), (char *)NULL))
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout, quantize); free(tt); return 0; }
        else if (cli_gptq_arg(&gq, cmd, argc, argv, &i, &rc)) continue;
        else if (cli_alloc_arg(&ao, cmd, argc, argv, &i, &rc)) continue;
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) out = VAL();
        else if (!strcmp(a, "--type")) p.preset = VAL();
        else if (!strcmp(a, "--tensor-type")) { const char *v = VAL(); if (v) tt[p.n_tensor_types++] = v; }
        else if (!strcmp(a, "--output-tensor-type")) p.output_tensor_type = VAL();
        else if (!strcmp(a, "--token-embedding-type")) p.token_embedding_type = VAL();
        else if (!strcmp(a, "--imatrix")) p.imatrix = VAL();
        else if (!strcmp(a, "--pure")) p.pure = true;
        else if (!strcmp(a, "--llama-types")) p.llama_types = true;
        else if (!strcmp(a, "--keep-mtp")) p.keep_mtp = true;
        else if (!strcmp(a, "--no-mtp")) p.no_mtp = true;
        else if (!strcmp(a, "--mtp") && !quantize) p.mtp_only = true;
        else if (!strcmp(a, "--split-max-size")) {
            const char *v = VAL();
            if (v && !parse_size(v, &p.split_max_bytes))
                rc = cli_usage_error(cmd, "--split-max-size '%s': want a positive size in bytes or with M or G (e.g. 45G)", v);
        } else if (!strcmp(a, "--split-max-tensors")) {
            const char *v = VAL();
            char *end;
            long long n = v ? strtoll(v, &end, 10) : 0;
            if (v && (end == v || *end || n <= 0)) rc = cli_usage_error(cmd, "--split-max-tensors '%s': want a positive count", v);
            else if (v) p.split_max_tensors = (uint64_t)n;
        }
        else if (!strcmp(a, "--dry-run")) dry = true;
        else if (!strcmp(a, "--skeleton")) skeleton = true;
        else if (!strcmp(a, "--resume")) p.resume = true;
        else if (!strcmp(a, "--quiet")) quiet = true;
        else if (!strcmp(a, "--json")) json = VAL();
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { const char *v = VAL(); if (v) p.n_threads = atoi(v); }
        else if (!strcmp(a, "--max-items")) { const char *v = VAL(); if (v) p.max_items = atoll(v); }   /* testing */
        else if (a[0] == '-' && a[1]) rc = cli_usage_error(cmd, "unknown option '%s'", a);
        else if (!in) in = a;
        else if (quantize && !out) out = a;
        else if (quantize && !type_pos) type_pos = a;
        else rc = cli_usage_error(cmd, "unexpected argument '%s'", a);
#undef VAL
    }
    p.tensor_types = tt;
    if (type_pos) p.preset = type_pos;
    if (rc == 0 && !in) rc = cli_usage_error(cmd, quantize ? "missing IN.gguf" : "missing HFDIR");
    if (rc == 0 && !out && !dry) rc = cli_usage_error(cmd, "missing %s", quantize ? "OUT.gguf" : "-o OUT.gguf");
    if (rc == 0 && p.mtp_only && (gq.text || ao.target || ao.target_bpw > 0))   /* they run or measure the main model */
        rc = cli_usage_error(cmd, "--mtp with %s: an MTP-only file holds no main model to measure", gq.text ? "--gptq" : "--target-size/--target-bpw");
    if (rc == 0 && skeleton && (!dry || !out))
        rc = cli_usage_error(cmd, "--skeleton needs --dry-run and %s", quantize ? "OUT.gguf" : "-o OUT.gguf");
    qx_lock lock = {-1, NULL};   /* one writer per OUT (split sets: the -o name), before any work */
    if (rc == 0 && out && (!dry || skeleton)) rc = cli_lock_output(cmd, out, argc, argv, &lock);
    if (rc == 0) rc = cli_alloc_prepare(&ao, cmd, in, quantize, &p, tt, quiet && !dry);
    if (rc == 0 && gq.text) rc = cli_gptq_prepare(&gq, cmd, in, &p);
    if (rc == 0) rc = run_plan(cmd, quantize, in, out, json, dry, quiet, skeleton, &p, &gq, &ao);
    qx_lock_release(&lock);
    cli_alloc_free(&ao);
    cli_gptq_free(&gq);
    free(tt);
    return rc;
}

int cmd_convert(int argc, char **argv) { return cli_convert_main(argc, argv, false); }
