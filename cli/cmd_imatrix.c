/* cli/cmd_imatrix.c — `qforge imatrix`: importance-matrix statistics of a model over a text,
 * written in llama.cpp's GGUF imatrix format (or its legacy .dat). */
#include "cli.h"
#include "calib/calib.h"

#include <stdlib.h>
#include <string.h>

static const char *imatrix_help =
    "usage: qforge imatrix MODEL (--text FILE | --ids FILE) -o OUT [options]\n"
    "  MODEL            an HF checkpoint dir (FP8 / BF16 safetensors) or a GGUF file\n"
    "  --text FILE      calibration text (UTF-8), tokenized with MODEL's tokenizer\n"
    "  --ids FILE       pre-tokenized input instead: int32 little-endian token ids, no BOS\n"
    "  -o OUT           output file\n"
    "  --format F       gguf (default: llama.cpp's GGUF imatrix, general.type \"imatrix\", per weight\n"
    "                   W.in_sum2 [ne0, nmat] and W.counts [1, nmat]) or dat (legacy imatrix.dat)\n"
    "  --ctx N          tokens per chunk (default 512)\n"
    "  --chunks N       use only the first N chunks (default: all)\n"
    "  --no-bos         keep each chunk's first token (default: overwrite it with BOS, as\n"
    "                   llama-imatrix does)\n"
    "  --hf-names       name entries by HF tensor (one per expert) instead of GGUF names\n"
    "  --shard I/N      run only shard I (0-based) of N: the chunks [I*n/N, (I+1)*n/N) of the n\n"
    "                   chunks; OUT then also holds exact sums (W.in_sum2_x, W.counts_x) and the\n"
    "                   qforge.shard.* keys; `qforge merge -o imatrix.gguf SHARD...` adds the N\n"
    "                   files into the bits the unsharded run writes (llama.cpp ignores the extras)\n"
    "  -t N             threads;  --batch N tokens per engine batch;  --device cpu|cuda\n"
    "Statistics per weight and input channel: sum of squared inputs and token counts, per\n"
    "expert for MoE (experts that received no token are listed with count 0) and per head for\n"
    "the MLA attn_k_b / attn_v_b.  The file records the qforge version (qforge.version).\n"
    "OUT is locked while written (OUT.lock beside it): a second writer of OUT stops at once.\n";

/* Runs the model over the text and writes outp in format fmt.  Returns the exit code. */
static int run_imatrix(const char *model, const char *text, const char *ids_path, const char *outp, const char *fmt,
                       const char *dev, const cal_imatrix_params *pp) {
    cal_imatrix_params p = *pp;
    cli_eval ev;
    int rc = cli_eval_open(&ev, "imatrix", model, text, ids_path, dev);
    if (rc) return rc;
    p.backend = ev.be;
    qx_err e = {0};
    int64_t nw = ev.n_ids / p.n_ctx;
    if (p.n_chunks > 0 && p.n_chunks < nw) nw = p.n_chunks;
    qx_shard part = p.shard;
    qx_shard_range(&part, nw);
    nw = part.n;
    qx_progress prog;
    uint64_t total = (uint64_t)(nw * p.n_ctx);
    qx_progress_begin(&prog, stderr, "imatrix", total, "tok");
    p.progress = cli_engine_progress;
    p.progress_ud = &prog;
    im_matrix *im = NULL;
    qx_status s = cal_imatrix_run(ev.model, ev.ids, ev.n_ids, &p, &im, &e);
    qx_progress_end(&prog, total);
    cli_eval_close(&ev);
    if (s == QX_OK) {
        const char *ds = text ? text : ids_path, *slash = strrchr(ds, '/');
        s = im_add_dataset(im, slash ? slash + 1 : ds, &e);
    }
    if (s == QX_OK && im->shard.count == 0) im_drop_exact(im);
    if (s == QX_OK) s = !strcmp(fmt, "dat") ? im_write_dat(im, outp, &e) : im_write_gguf(im, outp, &e);
    if (s != QX_OK) { im_free(im); return cli_fail(&e); }
    size_t unused = 0, total_m = 0;
    for (size_t i = 0; i < im->n_entries; i++)
        for (int64_t k = 0; k < im->entries[i].nmat; k++) { total_m++; unused += im->entries[i].counts[k] == 0; }
    printf("imatrix: %zu weights (%zu matrices, %zu received no token), %u chunks of %u tokens -> %s (%s)\n",
           im->n_entries, total_m, unused, im->chunk_count, im->chunk_size, outp, fmt);
    if (unused) {
        for (size_t i = 0; i < im->n_entries; i++)
            for (int64_t k = 0; k < im->entries[i].nmat; k++)
                if (im->entries[i].counts[k] == 0) printf("  no tokens: %s [%lld]\n", im->entries[i].name, (long long)k);
    }
    im_free(im);
    return 0;
}

int cmd_imatrix(int argc, char **argv) {
    const char *model = NULL, *text = NULL, *ids_path = NULL, *outp = NULL, *fmt = "gguf", *dev = "cpu";
    cal_imatrix_params p = cal_imatrix_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { fputs(imatrix_help, stdout); return 0; }
        if (!strcmp(a, "--no-bos")) { p.bos_first = false; continue; }
        if (!strcmp(a, "--hf-names")) { p.gguf_names = false; continue; }
        if (a[0] != '-') { if (model) return cli_usage_error("imatrix", "unexpected argument '%s'", a); model = a; continue; }
        if (i + 1 >= argc) return cli_usage_error("imatrix", "%s needs a value", a);
        const char *val = argv[++i];
        char *end;
        long long v = strtoll(val, &end, 10);
        bool num_ok = *val && !*end && v > 0;
        if (!strcmp(a, "--text")) text = val;
        else if (!strcmp(a, "--ids")) ids_path = val;
        else if (!strcmp(a, "-o")) outp = val;
        else if (!strcmp(a, "--format")) fmt = val;
        else if (!strcmp(a, "--device")) dev = val;
        else if (!strcmp(a, "--shard")) { if (!qx_shard_parse(val, &p.shard)) return cli_usage_error("imatrix", "bad --shard '%s' (want I/N, 0 <= I < N)", val); }
        else if (!strcmp(a, "--ctx")) { if (!num_ok || v < 2 || v > (1 << 20)) return cli_usage_error("imatrix", "bad --ctx '%s'", val); p.n_ctx = v; }
        else if (!strcmp(a, "--chunks")) { if (!num_ok) return cli_usage_error("imatrix", "bad --chunks '%s'", val); p.n_chunks = v; }
        else if (!strcmp(a, "--batch")) { if (!num_ok) return cli_usage_error("imatrix", "bad --batch '%s'", val); p.batch_tokens = v; }
        else if (!strcmp(a, "-t")) { if (!num_ok || v > 4096) return cli_usage_error("imatrix", "bad -t '%s'", val); p.n_threads = (int)v; }
        else return cli_usage_error("imatrix", "unknown option '%s'", a);
    }
    if (!model) return cli_usage_error("imatrix", "MODEL is required");
    if (!outp) return cli_usage_error("imatrix", "-o OUT is required");
    if (!text == !ids_path) return cli_usage_error("imatrix", "give exactly one of --text FILE or --ids FILE");
    if (strcmp(fmt, "gguf") && strcmp(fmt, "dat")) return cli_usage_error("imatrix", "--format must be gguf or dat, not '%s'", fmt);
    if (p.shard.count > 0 && strcmp(fmt, "gguf")) return cli_usage_error("imatrix", "--shard writes GGUF only (the exact sums need it)");
    qx_lock lock = {-1, NULL};   /* one writer per OUT */
    if (cli_lock_output("imatrix", outp, argc, argv, &lock)) return 1;
    int rc = run_imatrix(model, text, ids_path, outp, fmt, dev, &p);
    qx_lock_release(&lock);
    return rc;
}
