/* cli/cmd_sensitivity.c — `qforge sensitivity MODEL.gguf --text calib.txt -o S.json`: the
 * measured cost of each quantizable tensor at each candidate type (calib/sensitivity.c),
 * written as the table the allocator reads (convert/alloc.c, docs/allocation.md).  The
 * candidates and the tensor list come from a Q8_0 plan of MODEL (convert/), so they are the
 * tensors `convert`/`quantize` would quantize, with their row-length limits. */
#include "cli.h"
#include "calib/calib.h"
#include "convert/convert.h"
#include "pass/pass.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *help =
    "usage: qforge sensitivity MODEL --text FILE -o S.json [options]\n"
    "       qforge sensitivity MODEL --werr-only -o W.json [--imatrix F] [--tensors RE] [-t N] [--dry-run]\n"
    "  MODEL          an F32/F16/BF16 GGUF (qforge convert --type F32) of the model to allocate\n"
    "  --text FILE    calibration text (use another text than the one you evaluate on)\n"
    "  --imatrix F    importance matrix used by the quantizers (as for convert)\n"
    "  --ctx N        window (default 256);  --chunks N windows per measurement (default 16)\n"
    "  --measure N    candidate types measured per tensor, spread over its lower 70%% of sizes\n"
    "                 (default 3; the others are predicted from the weight error, see --help of convert)\n"
    "  --dry-run      print the tensors, candidates, runs and the estimated time and memory, and exit\n"
    "  --json F       with --dry-run: the estimate as JSON (weight_bytes_read, state_bytes, flops, seconds, ...)\n"
    "  --mem SIZE     one-stream pass: bytes of residual states held in memory (K/M/G or KiB/MiB/GiB;\n"
    "                 default: all), the rest spill to the scratch file.  Each measured candidate is one\n"
    "                 state of ctx x chunks x n_embd f32, carried from its layer to the head; the weights\n"
    "                 are read once (docs/allocation.md, \"One-stream sensitivity\")\n"
    "  --scratch F    the spill file (default S.json.scratch); unlinked once created, so never left behind\n"
    "  --per-candidate  the old path: a whole-model forward per measured candidate (weights read once\n"
    "                 per candidate); same table up to rounding, for comparison\n"
    "  --shard I/N    measure only shard I (0-based) of N: the tensors [I*n/N, (I+1)*n/N) of the n\n"
    "                 quantizable tensors (plan order); S.json is then a partial table with a\n"
    "                 \"shard\" object that convert refuses: `qforge merge -o S.json PART...` gives\n"
    "                 the unsharded table (every tensor's fit uses only its own candidates)\n"
    "  -t N           threads\n"
    "  --werr-only    no engine, no text: the layer-local weight error (werr) of every candidate of every\n"
    "                 tensor from MODEL's own weights (an HF checkpoint dir, FP8 included, or a GGUF) in one\n"
    "                 streaming pass, <= 256 MiB of f32 rows at a time, with --imatrix when given; the\n"
    "                 candidates add each tensor's type in llama.cpp's IQ1_S preset.  -o W.json is a table\n"
    "                 without measured points: give it to convert/quantize as --werr W.json next to\n"
    "                 --sensitivity S.json (docs/allocation.md).  --dry-run: tensors, candidates, bytes read,\n"
    "                 memory and the time at the measured rates\n"
    "  --tensors RE   with --werr-only: only the tensors whose GGUF name matches the POSIX ERE RE\n"
    "S.json is locked while written (S.json.lock beside it): a second writer of it stops at once.\n";

static void werr_done(void *ud, size_t k, size_t n, const cv_sens_tensor *t, double sec) {
    (void)ud;
    fprintf(stderr, "[%4zu/%zu] %-34s %2d types  werr %.3e (%s) .. %.3e (%s)  %.2f s\n", k + 1, n, t->name, t->n_opt, t->opt[0].werr,
            qt_type_name(t->opt[0].type), t->opt[t->n_opt - 1].werr, qt_type_name(t->opt[t->n_opt - 1].type), sec);
}

/* --werr-only: plans MODEL at Q8_0 (with the imatrix) and at IQ1_S (the floor candidates), runs
 * the weight-error pass (pass/werr.c) or, with dry, prints its estimate. */
static int werr_only(const char *model, const char *outp, const char *imp, const char *match, int64_t threads, bool dry) {
    qx_err e = {0};
    cv_params cp;
    cv_default_params(&cp);
    cp.preset = "Q8_0";
    cp.imatrix = imp;
    cv_plan *pl = NULL, *fl = NULL;
    if (cv_plan_open(&pl, model, &cp, &e) != QX_OK) return cli_fail(&e);
    cp.preset = "IQ1_S";
    if (cv_plan_open(&fl, model, &cp, &e) != QX_OK) { cv_plan_free(pl); return cli_fail(&e); }
    int nthr = threads > 0 ? (int)threads : qx_default_threads();
    int rc = 0;
    if (dry) {
        for (int k = 0; k < (imp ? 1 : 2) && !rc; k++) {
            ps_werr_estimate est;
            if (ps_werr_estimate_plan(pl, fl, match, nthr, k == 1, &est, &e) != QX_OK) { rc = cli_fail(&e); break; }
            if (k == 0) printf("weight-error pass of %s: %.2f GB read once; memory %.1f MiB (<= 256 MiB of rows in f32\n"
                               "  + 16 bytes per row)\n", model, est.bytes_read / 1e9,
                               est.memory_bytes / 1048576.0);
            printf("%s: %zu tensors, %zu candidates (%.3g weight-candidates); ~%.0f s with %d threads = %.0f thread-s quantizing\n"
                   "  at the rates measured per type (docs/allocation.md) / %d + %.0f s decoding at %.2f GB/s\n",
                   k == 0 ? (imp ? "with --imatrix" : "without --imatrix (no IQ1/IQ2/IQ3_XXS candidates)") : "with an imatrix",
                   est.tensors, est.candidates, (double)est.weight_candidates, est.seconds, nthr, est.quant_thread_seconds, nthr,
                   est.decode_seconds, PS_WERR_DECODE_GBPS);
        }
    } else {
        ps_werr_params wp = { (int)threads, match, 0, werr_done, NULL };
        ps_werr_stats st;
        cv_sens w = {0};
        qx_status s = ps_werr_run(pl, fl, &wp, &w, &st, &e);
        if (s == QX_OK) {
            char prov[4600];
            snprintf(prov, sizeof prov, "qforge sensitivity %s --werr-only%s%s%s%s (qforge %s)", model, imp ? " --imatrix " : "", imp ? imp : "",
                     match ? " --tensors " : "", match ? match : "", qx_version());
            s = cv_sens_write(&w, outp, prov, &e);
        }
        if (s == QX_OK) {
            printf("wrote %s: %zu tensors, %zu candidates, %.3g weights in %.1f s (decoding %.1f s); largest group %.1f MiB\n",
                   outp, st.tensors, st.candidates, (double)st.weights, st.seconds, st.decode_seconds, st.group_bytes / 1048576.0);
            printf("quantizing rate per type with %d threads (ns per weight, wall):", nthr);
            for (int t = 0; t < QT_GGUF_COUNT; t++)
                if (st.type_weights[t]) printf(" %s %.2f", qt_type_name((qt_type)t), 1e9 * st.type_seconds[t] / (double)st.type_weights[t]);
            printf("\n");
        }
        cv_sens_free(&w);
        if (s != QX_OK) rc = cli_fail(&e);
    }
    cv_plan_free(fl);
    cv_plan_free(pl);
    return rc;
}

/* The one-stream pass's options (cal_sens_stream_run) and the dry run's JSON. */
typedef struct {
    uint64_t mem;             /* 0: every state in memory */
    const char *scratch;      /* NULL: S.json.scratch */
    bool per_candidate;       /* cal_sens_run instead */
    const char *json;         /* --dry-run --json F */
} stream_opts;

/* A byte count as gptq's --gptq-mem and --target-size read them: plain, K/M/G/T (10^3k) or
 * KiB/MiB/GiB/TiB (2^10k); 0 on a bad value. */
static uint64_t parse_size(const char *v) {
    char *end;
    double x = strtod(v, &end);
    static const char *const sfx[] = { "K", "M", "G", "T", "KiB", "MiB", "GiB", "TiB" };
    double mul = *end ? 0 : 1;
    for (int k = 0; k < 8 && *end; k++)
        if (!strcmp(end, sfx[k])) mul = k < 4 ? pow(1e3, k + 1) : pow(1024.0, k - 3);
    if (end == v || !(x > 0) || !(mul > 0) || x * mul > 1.8e19) return 0;
    return (uint64_t)(x * mul);
}

/* --dry-run of the one-stream pass: opens MODEL (headers only), prints and writes the estimate. */
static int stream_dry(const char *model, const cal_sens_item *items, size_t n, size_t nm, int64_t ctx, int64_t chunks,
                      int64_t threads, const stream_opts *so) {
    qx_err e = {0};
    cal_model *m = NULL;
    if (cal_model_open(&m, model, &e) != QX_OK) return cli_fail(&e);
    cal_sens_stream_stats st;
    int nthr = threads > 0 ? (int)threads : qx_default_threads();
    qx_status s = cal_sens_stream_estimate(m, items, n, chunks, ctx, ctx / 2, so->mem, nthr, &st, &e);
    cal_model_close(m);
    if (s != QX_OK) return cli_fail(&e);
    const double G = 1e9, MiB = 1048576.0;
    printf("one-stream pass: weights %.3f GB read once (per-candidate path: %.3f GB, %zu + 1 forwards)\n", st.weight_bytes_read / G,
           st.weight_bytes_read * (double)(nm + 1) / G, nm);
    printf("  states: %lld of %.2f MiB (%lld windows x %lld tokens x n_embd f32), %lld in memory, %.2f GB spilled to scratch\n"
           "  (%.2f GB of scratch I/O); memory ~%.1f MiB (states + base + work buffer + the largest layer's weights + the head + the\n"
           "  largest candidate tensor in f32 and quantized + activations)\n", (long long)st.n_states, st.state_bytes / MiB, (long long)st.n_win, (long long)st.n_ctx,
           (long long)st.states_in_memory, st.scratch_bytes / G, st.scratch_io_bytes / G, st.memory_bytes / MiB);
    printf("  work: %lld (state, layer) steps, %.3g FLOP; ~%.1f s with %d threads at %.1f GFLOP/s per thread (the engine's\n"
           "  CPU matmul rate, docs/allocation.md): %.3f s per step + %.1f s of heads; quantizing the candidates and\n"
           "  reading the weights come on top\n", (long long)st.layer_passes, st.flops, st.seconds, nthr,
           CAL_SENS_FLOPS_PER_THREAD / 1e9, st.step_seconds / (double)st.layer_passes, st.head_seconds);
    if (!so->json) return 0;
    json_t *o = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:i}", "model", model,
                          "weight_bytes_read", (json_int_t)st.weight_bytes_read, "state_bytes", (json_int_t)st.state_bytes,
                          "states", (json_int_t)st.n_states, "states_in_memory", (json_int_t)st.states_in_memory,
                          "memory_bytes", (json_int_t)st.memory_bytes, "scratch_bytes", (json_int_t)st.scratch_bytes,
                          "scratch_io_bytes", (json_int_t)st.scratch_io_bytes, "layer_steps", (json_int_t)st.layer_passes,
                          "windows", (json_int_t)st.n_win, "ctx", (json_int_t)st.n_ctx, "flops", st.flops, "seconds", st.seconds,
                          "threads", nthr);
    if (o) {
        json_object_set_new(o, "step_seconds", json_real(st.step_seconds));
        json_object_set_new(o, "head_seconds", json_real(st.head_seconds));
    }
    int rc = o && json_dump_file(o, so->json, JSON_INDENT(2) | JSON_REAL_PRECISION(17)) == 0 ? 0 : 1;
    json_decref(o);
    if (rc) fprintf(stderr, "qforge: error: %s: cannot write the estimate\n", so->json);
    return rc;
}

static void done(void *ud, size_t i, size_t n, const cal_sens_item *it) {
    (void)ud;
    if (it->measured)
        fprintf(stderr, "[%4zu/%zu] %-34s %-8s werr %.3e  kld %.6f  top1 %.2f%%\n", i + 1, n, it->name, qt_type_name(it->type),
                it->werr, it->kld, 100 * it->top1);
}

/* A shard's table: the written table with its "shard" object (values kept to 17 digits). */
static int add_shard(const char *path, const qx_shard *sh) {
    json_t *o = json_load_file(path, 0, NULL);
    if (!o) return 1;
    json_object_set_new(o, "shard", cli_shard_json(sh));
    int rc = json_dump_file(o, path, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
    json_decref(o);
    return rc ? 1 : 0;
}

/* Plans MODEL at Q8_0, measures every candidate of shard sh0 (or with dry, prints the plan of
 * the runs) and writes outp.  Returns the exit code. */
static int measure(const char *model, const char *text, const char *outp, const char *imp, int64_t ctx, int64_t chunks,
                   int64_t nmeas, int64_t threads, bool dry, const qx_shard *sh0, const stream_opts *so) {
    qx_shard shard = *sh0;
    qx_err e = {0};
    cv_params cp;
    cv_default_params(&cp);
    cp.preset = "Q8_0";
    cv_plan *pl = NULL;
    if (cv_plan_open(&pl, model, &cp, &e) != QX_OK) return cli_fail(&e);
    im_matrix *im = NULL;
    if (imp && im_load(&im, imp, &e) != QX_OK) { cv_plan_free(pl); return cli_fail(&e); }
    /* items: every quantizable tensor x candidate, nmeas of them measured */
    size_t nt = cv_plan_tensor_count(pl), n = 0, nm = 0, ngroups = 0;
    uint64_t qelems = 0, maxbytes = 0;
    cal_sens_item *items = calloc(nt * CV_SENS_MAX_OPT + 1, sizeof *items);
    char (*names)[GF_NAME_MAX] = calloc(nt + 1, GF_NAME_MAX);
    size_t *grp = calloc(nt * CV_SENS_MAX_OPT + 1, sizeof *grp);
    int64_t *ne0s = calloc(nt + 1, sizeof *ne0s);
    uint64_t *nel = calloc(nt + 1, sizeof *nel);
    if (!items || !names || !grp || !ne0s || !nel) { fprintf(stderr, "qforge: error: out of memory\n"); return 1; }
    for (size_t i = 0; i < nt; i++) {
        cv_tensor_info t;
        cv_plan_tensor(pl, i, &t);
        if (t.wanted != QT_Q8_0 && !cv_alloc_exact(&t)) continue;
        snprintf(names[i], GF_NAME_MAX, "%s", t.name);
        qt_type c[CV_SENS_MAX_OPT];
        im_entry *en = im ? im_find(im, t.name) : NULL;   /* usable as convert/plan.c attaches it */
        qx_err e2;
        const int64_t nmat = cv_plan_matrices(pl, i);   /* deepseek4's attn_output_a: one per output group */
        bool have = en && im_entry_fit(en, im->legacy, t.ne[0], nmat, &e2) == QX_OK;
        int k = cv_alloc_candidates(&t, have, c);
        if (!k) continue;
        ngroups++;
        ne0s[i] = t.ne[0];
        nel[i] = t.n_elems;
        qelems += t.n_elems;
        if (t.n_elems * 4 > maxbytes) maxbytes = t.n_elems * 4;
        int m = (int)(nmeas < k ? nmeas : k);
        for (int j = 0; j < k; j++) {
            grp[n] = i;
            cal_sens_item *it = &items[n++];
            it->name = names[i];
            it->type = c[j];
            it->matrices = nmat;
            for (int r = 0; r < m; r++)
                if (j == (int)lround(m > 1 ? r * 0.7 * (k - 1) / (m - 1) : 0)) it->measure = true;
            nm += it->measure;
        }
    }
    if (shard.count > 0) {   /* keep the items of this shard's tensor groups (each group's items are adjacent) */
        qx_shard_range(&shard, (int64_t)ngroups);
        size_t k = 0, g = 0;
        nm = 0;
        for (size_t i = 0; i < n; i++) {
            if (i > 0 && grp[i] != grp[i - 1]) g++;
            if ((int64_t)g < shard.first || (int64_t)g >= shard.first + shard.n) continue;
            items[k] = items[i];
            grp[k++] = grp[i];
            nm += items[i].measure;
        }
        n = k;
        printf("shard %d/%d: tensors [%lld, %lld) of %zu\n", shard.index, shard.count, (long long)shard.first,
               (long long)(shard.first + shard.n), ngroups);
        ngroups = (size_t)shard.n;
        if (!n) { fprintf(stderr, "qforge: error: %s: shard %d/%d gets none of the %lld tensors\n", model, shard.index, shard.count, (long long)shard.units); return 1; }
    }
    int64_t tokens = ctx * chunks;
    printf("sensitivity of %s: %zu tensors, %zu candidates, %zu measured runs of %lld tokens (ctx %lld x %lld chunks)\n", model,
           ngroups, n, nm, (long long)tokens, (long long)ctx, (long long)chunks);
    if (dry) {
        /* cost: each run is a full forward; ~2 FLOP per weight used per token (MoE: active share) */
        double active = (double)qelems;   /* upper bound; the engine runs each expert over its tokens only */
        printf("work: %zu forwards x %lld tokens; at most %.3g weight-FLOP per run (dense bound 2 x %.3g weights x tokens)\n", nm + 1,
               (long long)tokens, 2.0 * active * tokens, active);
        printf("memory: the engine's (one layer's weights + activations %.1f MiB + base %.1f MiB) + one tensor in f32 (%.1f MiB) and quantized\n",
               tokens * 256.0 * 4 * 8 / 1048576.0, tokens / 2.0 * 2 * 32768 / 1048576.0, maxbytes / 1048576.0);
        printf("671B: see docs/allocation.md (measured runs per tensor group are a full forward each; the plan there\n"
               "      uses the layer-local proxy werr for every tensor and measured points per tensor role)\n");
        int rc = so->per_candidate ? 0 : stream_dry(model, items, n, nm, ctx, chunks, threads, so);
        free(items); free(names); free(grp); free(ne0s); free(nel); im_free(im); cv_plan_free(pl);
        return rc;
    }
    cv_plan_free(pl);
    cli_eval ev;
    int rc = cli_eval_open(&ev, "sensitivity", model, text, NULL, "cpu");
    if (rc) { free(items); free(names); free(grp); free(ne0s); free(nel); im_free(im); return rc; }
    shard.input = gf_checksum(ev.ids, (uint64_t)ev.n_ids * sizeof(int32_t));
    qx_shard_set_model(&shard, model);
    char base[4200];
    snprintf(base, sizeof base, "%s.base.qfb", outp);
    cal_sens_params sp = cal_sens_default_params();
    sp.ppl.n_ctx = ctx;
    sp.ppl.n_chunks = chunks;
    sp.ppl.n_threads = (int)threads;
    sp.ppl.save_base = base;
    char scratch[4200];
    snprintf(scratch, sizeof scratch, "%s.scratch", outp);
    sp.im = im;
    sp.item_done = done;
    sp.mem_bytes = so->mem;
    sp.scratch = so->scratch ? so->scratch : scratch;
    double t0 = qx_now();
    qx_status s = QX_OK;
    if (so->per_candidate) {
        cal_ppl_result r0;
        s = cal_ppl_run(ev.model, ev.ids, ev.n_ids, &sp.ppl, &r0, &e);
        sp.ppl.save_base = NULL;
        sp.ppl.base = base;
        if (s == QX_OK) s = cal_sens_run(ev.model, ev.ids, ev.n_ids, &sp, items, n, &e);
    } else {
        cal_sens_stream_stats st;
        s = cal_sens_stream_run(ev.model, ev.ids, ev.n_ids, &sp, items, n, &st, &e);
        if (s == QX_OK)
            printf("one stream: %lld states of %.2f MiB (%lld in memory, %.2f GB scratch I/O), %lld (state, layer) steps in %.1f s\n"
                   "  (%.3f s per step), quantizing %.1f s, heads %.1f s; total %.1f s\n", (long long)st.n_states,
                   st.state_bytes / 1048576.0, (long long)st.states_in_memory, st.scratch_io_bytes / 1e9, (long long)st.layer_passes,
                   st.step_seconds, st.step_seconds / (double)st.layer_passes, st.quant_seconds, st.head_seconds, st.seconds);
    }
    cli_eval_close(&ev);
    remove(base);
    cv_sens sens = {0};
    sens.base_kld = 0;
    for (size_t i = 0; s == QX_OK && i < n; i++) {
        size_t g = grp[i];
        cv_sens_tensor *t = (cv_sens_tensor *)cv_sens_find(&sens, items[i].name);
        if (!t) s = cv_sens_add(&sens, items[i].name, ne0s[g], nel[g], &t, &e);
        if (s != QX_OK) break;
        cv_sens_opt *o = &t->opt[t->n_opt++];
        o->type = items[i].type;
        o->bytes = items[i].bytes;
        o->werr = items[i].werr;
        o->kld = items[i].measured ? items[i].kld : -1;
    }
    if (s == QX_OK) {
        cv_sens_predict(&sens);
        char prov[4600];
        snprintf(prov, sizeof prov, "qforge sensitivity %s --text %s --ctx %lld --chunks %lld --measure %lld%s%s (qforge %s)", model, text,
                 (long long)ctx, (long long)chunks, (long long)nmeas, imp ? " --imatrix " : "", imp ? imp : "", qx_version());
        s = cv_sens_write(&sens, outp, prov, &e);
    }
    if (s == QX_OK && shard.count > 0 && add_shard(outp, &shard)) s = qx_fail(&e, QX_EIO, "%s: cannot add the shard object", outp);
    if (s == QX_OK) printf("wrote %s: %zu tensors, %zu measured runs in %.1f s\n", outp, sens.n, nm, qx_now() - t0);
    free(grp); free(ne0s); free(nel);
    free(names);
    cv_sens_free(&sens);
    free(items);
    im_free(im);
    return s == QX_OK ? 0 : cli_fail(&e);
}

int cmd_sensitivity(int argc, char **argv) {
    const char *model = NULL, *text = NULL, *outp = NULL, *imp = NULL, *match = NULL;
    int64_t ctx = 256, chunks = 16, nmeas = 3, threads = 0;
    bool dry = false, werr = false;
    stream_opts so = { 0, NULL, false, NULL };
    qx_shard shard;
    memset(&shard, 0, sizeof shard);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { fputs(help, stdout); return 0; }
        if (!strcmp(a, "--dry-run")) { dry = true; continue; }
        if (!strcmp(a, "--werr-only")) { werr = true; continue; }
        if (!strcmp(a, "--per-candidate")) { so.per_candidate = true; continue; }
        if (a[0] != '-') { if (model) return cli_usage_error("sensitivity", "unexpected argument '%s'", a); model = a; continue; }
        if (i + 1 >= argc) return cli_usage_error("sensitivity", "%s needs a value", a);
        const char *val = argv[++i];
        char *end;
        long long v = strtoll(val, &end, 10);
        bool num_ok = *val && !*end && v > 0 && v < (1 << 24);
        if (!strcmp(a, "--text")) text = val;
        else if (!strcmp(a, "--shard")) { if (!qx_shard_parse(val, &shard)) return cli_usage_error("sensitivity", "bad --shard '%s' (want I/N, 0 <= I < N)", val); }
        else if (!strcmp(a, "-o")) outp = val;
        else if (!strcmp(a, "--tensors")) match = val;
        else if (!strcmp(a, "--json")) so.json = val;
        else if (!strcmp(a, "--scratch")) so.scratch = val;
        else if (!strcmp(a, "--mem")) { if (!(so.mem = parse_size(val))) return cli_usage_error("sensitivity", "bad --mem '%s' (want bytes or a number with K, M, G, T, KiB, MiB, GiB or TiB)", val); }
        else if (!strcmp(a, "--imatrix")) imp = val;
        else if (!strcmp(a, "--ctx") && num_ok && v >= 4) ctx = v;
        else if (!strcmp(a, "--chunks") && num_ok) chunks = v;
        else if (!strcmp(a, "--measure") && num_ok && v <= CV_SENS_MAX_OPT) nmeas = v;
        else if (!strcmp(a, "-t") && num_ok && v <= 4096) threads = v;
        else return cli_usage_error("sensitivity", "bad option or value '%s %s'", a, val);
    }
    if (!model) return cli_usage_error("sensitivity", "MODEL is required");
    if (match && !werr) return cli_usage_error("sensitivity", "--tensors needs --werr-only");
    if (so.json && (!dry || werr)) return cli_usage_error("sensitivity", "--json F writes the one-stream pass's --dry-run estimate");
    if ((so.mem || so.scratch) && (werr || so.per_candidate)) return cli_usage_error("sensitivity", "--mem and --scratch are for the one-stream pass");
    if (werr && (text || shard.count > 0)) return cli_usage_error("sensitivity", "--werr-only reads no text and has no --shard (use --tensors)");
    if (!dry && !werr && (!text || !outp)) return cli_usage_error("sensitivity", "--text FILE and -o S.json are required");
    if (!dry && werr && !outp) return cli_usage_error("sensitivity", "-o W.json is required");
    qx_lock lock = {-1, NULL};   /* one writer per S.json (and its S.json.base.qfb) */
    if (!dry && cli_lock_output("sensitivity", outp, argc, argv, &lock)) return 1;
    int rc = werr ? werr_only(model, outp, imp, match, threads, dry) : measure(model, text, outp, imp, ctx, chunks, nmeas, threads, dry, &shard, &so);
    qx_lock_release(&lock);
    return rc;
}
