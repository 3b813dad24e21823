/* cli/cmd_merge.c — `qforge merge -o OUT IN...`: combines the `--shard I/N` outputs of one
 * imatrix, sensitivity or ppl run into what the unsharded run writes (DESIGN.md decision 9).
 * The kind is read from the inputs: a GGUF imatrix with qforge.shard.* keys (exact sums
 * added, im_merge), a sensitivity table or a ppl --json with a "shard" object (tensors or
 * per-token values concatenated in shard order).  All N shards of one run must be given, each
 * once; anything else is refused with one line naming the file.  Also holds the "shard" JSON
 * object shared with cmd_ppl.c and cmd_sensitivity.c. */
#include "cli.h"
#include "calib/calib.h"
#include "convert/convert.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char *help =
    "usage: qforge merge -o OUT SHARD...\n"
    "  Combines the outputs of one run split with --shard I/N (all N of them, any order):\n"
    "  imatrix GGUF shards   the exact sums and counts are added: OUT is the imatrix the\n"
    "                        unsharded run writes, bit for bit\n"
    "  sensitivity tables    the shards' tensors in order: OUT is the unsharded table\n"
    "  ppl --json files      the scored tokens' values in window order: prints the summary and\n"
    "                        writes OUT (the ppl --json) with the unsharded run's figures\n"
    "                        (seconds are summed; tokens/s follows)\n"
    "Refused (one line naming the file): inputs of different kinds, models, texts or settings,\n"
    "a shard given twice, a missing shard, a file that is not a --shard output.\n";

json_t *cli_shard_json(const qx_shard *s) {
    char hex[17];
    snprintf(hex, sizeof hex, "%016" PRIx64, s->input);
    return json_pack("{s:i, s:i, s:I, s:I, s:I, s:s, s:s}", "index", (int)s->index, "count", (int)s->count, "units",
                     (json_int_t)s->units, "first", (json_int_t)s->first, "n", (json_int_t)s->n, "input", hex, "model",
                     s->model);
}

int cli_shard_from_json(json_t *o, const char *label, qx_shard *s) {
    int idx, cnt;
    json_int_t units, first, n;
    const char *hex, *model;
    memset(s, 0, sizeof *s);
    if (!json_is_object(o) || json_unpack(o, "{s:i, s:i, s:I, s:I, s:I, s:s, s:s}", "index", &idx, "count", &cnt, "units",
                                          &units, "first", &first, "n", &n, "input", &hex, "model", &model)) {
        fprintf(stderr, "qforge: error: %s: 'shard' is not an object with index, count, units, first, n, input, model\n", label);
        return 1;
    }
    char *end;
    s->input = strtoull(hex, &end, 16);
    if (cnt < 1 || cnt > 65536 || idx < 0 || idx >= cnt || units < 0 || first < 0 || n < 0 || first > units ||
        n > units - first || strlen(hex) != 16 || *end || strlen(model) >= QX_SHARD_NAME) {
        fprintf(stderr, "qforge: error: %s: shard %d/%d of [%lld, +%lld) of %lld is inconsistent\n", label, idx, cnt,
                (long long)first, (long long)n, (long long)units);
        return 1;
    }
    s->index = idx; s->count = cnt;
    s->units = units; s->first = first; s->n = n;
    snprintf(s->model, sizeof s->model, "%s", model);
    return 0;
}

typedef enum { K_IMATRIX, K_SENS, K_PPL } merge_kind;
static const char *kind_name[] = {"an imatrix shard", "a sensitivity shard", "a ppl shard"};

typedef struct {
    const char *path;
    merge_kind kind;
    qx_shard sh;
    im_matrix *im;   /* K_IMATRIX */
    json_t *js;      /* K_SENS, K_PPL */
} merge_in;

static int fail(const char *path, const char *msg) {
    fprintf(stderr, "qforge: error: %s: %s\n", path, msg);
    return 1;
}

static int load_input(merge_in *in) {
    char magic[4] = {0};
    FILE *f = fopen(in->path, "rb");
    if (!f) return fail(in->path, "cannot open");
    size_t got = fread(magic, 1, 4, f);
    fclose(f);
    qx_err e = {0};
    if (got == 4 && !memcmp(magic, "GGUF", 4)) {
        in->kind = K_IMATRIX;
        if (im_load(&in->im, in->path, &e) != QX_OK) return cli_fail(&e);
        if (in->im->shard.count == 0) return fail(in->path, "an imatrix without qforge.shard keys (not written with --shard)");
        in->sh = in->im->shard;
        return 0;
    }
    json_error_t je;
    in->js = json_load_file(in->path, JSON_REJECT_DUPLICATES, &je);
    if (!in->js || !json_is_object(in->js))
        return fail(in->path, "neither a GGUF imatrix nor a JSON object (sensitivity table or ppl --json)");
    if (json_object_get(in->js, "qforge_sensitivity")) in->kind = K_SENS;
    else if (json_object_get(in->js, "ppl")) in->kind = K_PPL;
    else return fail(in->path, "a JSON file that is neither a sensitivity table nor a ppl --json");
    json_t *sh = json_object_get(in->js, "shard");
    if (!sh) return fail(in->path, "no 'shard' object (not written with --shard)");
    return cli_shard_from_json(sh, in->path, &in->sh);
}

static int cmp_index(const void *a, const void *b) {
    const merge_in *x = a, *y = b;
    return x->sh.index - y->sh.index;
}

/* Same run, each shard once, none missing, ranges as --shard assigns them; sorts v by index. */
static int check_set(merge_in *v, int n) {
    const merge_in *a = &v[0];
    char msg[512];
    for (int i = 1; i < n; i++) {
        const merge_in *b = &v[i];
        if (b->kind != a->kind) snprintf(msg, sizeof msg, "%s, but %s is %s", kind_name[b->kind], a->path, kind_name[a->kind]);
        else if (strcmp(b->sh.model, a->sh.model)) snprintf(msg, sizeof msg, "model '%s', but %s is of model '%s'", b->sh.model, a->path, a->sh.model);
        else if (b->sh.input != a->sh.input || b->sh.units != a->sh.units)
            snprintf(msg, sizeof msg, "another input (%lld units, tokens %016" PRIx64 ") than %s (%lld, %016" PRIx64 ")",
                     (long long)b->sh.units, b->sh.input, a->path, (long long)a->sh.units, a->sh.input);
        else if (b->sh.count != a->sh.count) snprintf(msg, sizeof msg, "shard of %d, but %s is a shard of %d", b->sh.count, a->path, a->sh.count);
        else continue;
        return fail(b->path, msg);
    }
    qsort(v, (size_t)n, sizeof *v, cmp_index);
    for (int i = 0; i < n; i++) {
        qx_shard want = v[i].sh;
        qx_shard_range(&want, v[i].sh.units);
        if (i > 0 && v[i].sh.index == v[i - 1].sh.index) {
            snprintf(msg, sizeof msg, "shard %d/%d given twice (also %s)", v[i].sh.index, v[i].sh.count, v[i - 1].path);
            return fail(v[i].path, msg);
        }
        if (want.first != v[i].sh.first || want.n != v[i].sh.n) {
            snprintf(msg, sizeof msg, "shard %d/%d covers [%lld, %lld), --shard assigns [%lld, %lld)", v[i].sh.index, v[i].sh.count,
                     (long long)v[i].sh.first, (long long)(v[i].sh.first + v[i].sh.n), (long long)want.first,
                     (long long)(want.first + want.n));
            return fail(v[i].path, msg);
        }
    }
    for (int k = 0, i = 0; k < a->sh.count; k++) {
        if (i < n && v[i].sh.index == k) { i++; continue; }
        fprintf(stderr, "qforge: error: shard %d/%d is missing (given %d of %d, e.g. %s)\n", k, v[0].sh.count, n, v[0].sh.count, v[0].path);
        return 1;
    }
    return 0;
}

static int merge_imatrix(merge_in *v, int n, const char *out) {
    qx_err e = {0};
    im_matrix *m = NULL;
    qx_status s = im_create(&m, &e);
    for (size_t i = 0; s == QX_OK && i < v[0].im->n_datasets; i++) s = im_add_dataset(m, v[0].im->datasets[i], &e);
    if (s == QX_OK) m->chunk_size = v[0].im->chunk_size;
    for (int i = 0; s == QX_OK && i < n; i++) {
        if (v[i].im->chunk_size != m->chunk_size) {
            s = qx_fail(&e, QX_EINVAL, "%s: chunks of %u tokens, %s has %u", v[i].path, v[i].im->chunk_size, v[0].path, m->chunk_size);
            break;
        }
        s = im_merge(m, v[i].im, v[i].path, &e);
    }
    if (s == QX_OK) {
        im_drop_exact(m);
        s = im_write_gguf(m, out, &e);
    }
    if (s == QX_OK)
        printf("merge: %d imatrix shards of %s, %zu weights, %u chunks of %u tokens -> %s\n", n, v[0].sh.model, m->n_entries,
               m->chunk_count, m->chunk_size, out);
    im_free(m);
    return s == QX_OK ? 0 : cli_fail(&e);
}

/* One shard's table, validated by the allocator's own parser (without its "shard"); the
 * predicted costs are the file's (the parser would refit them from the 9-digit values). */
static qx_status sens_shard(json_t *js, const char *label, cv_sens *t, qx_err *e) {
    json_t *copy = json_deep_copy(js);
    json_object_del(copy, "shard");
    char *text = json_dumps(copy, JSON_REAL_PRECISION(17));
    json_decref(copy);
    if (!text) return qx_fail(e, QX_ENOMEM, "%s: out of memory", label);
    qx_status s = cv_sens_parse(text, strlen(text), label, t, e);
    free(text);
    json_t *ts = json_object_get(js, "tensors");
    for (size_t i = 0; s == QX_OK && i < t->n; i++) {
        json_t *ty = json_object_get(json_array_get(ts, i), "types");
        for (int j = 0; j < t->t[i].n_opt; j++) {
            json_t *pr = json_object_get(json_array_get(ty, (size_t)j), "predicted");
            t->t[i].opt[j].cost = json_is_number(pr) ? json_number_value(pr) : -1;
        }
    }
    return s;
}

static int merge_sens(merge_in *v, int n, const char *out) {
    qx_err e = {0};
    cv_sens all = {0};
    qx_status s = QX_OK;
    const char *prov0 = json_string_value(json_object_get(v[0].js, "provenance"));
    for (int i = 0; s == QX_OK && i < n; i++) {
        const char *prov = json_string_value(json_object_get(v[i].js, "provenance"));
        if (!prov || !prov0 || strcmp(prov, prov0)) {
            s = qx_fail(&e, QX_EINVAL, "%s: made by '%s', %s by '%s'", v[i].path, prov ? prov : "?", v[0].path, prov0 ? prov0 : "?");
            break;
        }
        cv_sens t = {0};
        s = sens_shard(v[i].js, v[i].path, &t, &e);
        if (s == QX_OK && (int64_t)t.n != v[i].sh.n)
            s = qx_fail(&e, QX_EFORMAT, "%s: %zu tensors, its shard header says %lld", v[i].path, t.n, (long long)v[i].sh.n);
        if (i == 0) all.base_kld = t.base_kld;
        for (size_t k = 0; s == QX_OK && k < t.n; k++) {
            cv_sens_tensor *d;
            if (cv_sens_find(&all, t.t[k].name)) { s = qx_fail(&e, QX_EINVAL, "%s: tensor '%s' is also in an earlier shard", v[i].path, t.t[k].name); break; }
            s = cv_sens_add(&all, t.t[k].name, t.t[k].ne0, t.t[k].n_elems, &d, &e);
            if (s == QX_OK) *d = t.t[k];
        }
        cv_sens_free(&t);
    }
    if (s == QX_OK) s = cv_sens_write(&all, out, prov0, &e);
    if (s == QX_OK) printf("merge: %d sensitivity shards of %s, %zu tensors -> %s\n", n, v[0].sh.model, all.n, out);
    cv_sens_free(&all);
    return s == QX_OK ? 0 : cli_fail(&e);
}

/* The per-token arrays of a ppl shard appended to t (t->n grows). */
static int ppl_tokens(const merge_in *in, cal_ppl_tokens *t, int64_t cap) {
    json_t *tk = json_object_get(in->js, "tokens");
    const char *names[] = {"nll", "d", "bnll", "kld", "dp", "top1"};
    json_t *arr[6] = {0};
    size_t len = 0;
    for (int k = 0; k < (t->has_base ? 6 : 1); k++) {
        arr[k] = json_object_get(tk, names[k]);
        if (!json_is_array(arr[k]) || (k && json_array_size(arr[k]) != len)) return fail(in->path, "'tokens' arrays missing or of different lengths");
        len = json_array_size(arr[k]);
    }
    if ((int64_t)len > cap - t->n) return fail(in->path, "more scored tokens than the shard's windows hold");
    json_t *nt = json_object_get(in->js, "n_tokens_scored");
    if (!json_is_integer(nt) || json_integer_value(nt) != (json_int_t)len) return fail(in->path, "'tokens' disagree with n_tokens_scored");
    double *dst[5] = {t->nll, t->d, t->bnll, t->kld, t->dp};
    for (size_t i = 0; i < len; i++) {
        for (int k = 0; k < (t->has_base ? 5 : 1); k++) {
            json_t *x = json_array_get(arr[k], i);
            if (!json_is_number(x)) return fail(in->path, "a per-token value is not a number");
            dst[k][t->n + (int64_t)i] = json_number_value(x);
        }
        if (t->has_base) t->top1[t->n + (int64_t)i] = json_integer_value(json_array_get(arr[5], i)) != 0;
    }
    t->n += (int64_t)len;
    return 0;
}

static int merge_ppl(merge_in *v, int n, const char *out) {
    json_t *a = v[0].js;
    const char *same[] = {"protocol", "base"};
    for (int i = 1; i < n; i++)
        for (int k = 0; k < 2; k++) {
            json_t *x = json_object_get(a, same[k]), *y = json_object_get(v[i].js, same[k]);
            if (!x != !y || (x && !json_equal(x, y))) {
                char msg[256];
                snprintf(msg, sizeof msg, "'%s' differs from %s's", same[k], v[0].path);
                return fail(v[i].path, msg);
            }
        }
    json_t *ctx = json_object_get(a, "n_ctx");
    if (!json_is_integer(ctx) || json_integer_value(ctx) < 2) return fail(v[0].path, "no n_ctx");
    for (int i = 1; i < n; i++)
        if (!json_equal(json_object_get(v[i].js, "n_ctx"), ctx)) return fail(v[i].path, "'n_ctx' differs from the first shard's");
    cal_ppl_result r;
    memset(&r, 0, sizeof r);
    r.n_ctx = json_integer_value(ctx);
    r.protocol = !strcmp(json_string_value(json_object_get(a, "protocol")) ? json_string_value(json_object_get(a, "protocol")) : "",
                         "all") ? CAL_PPL_ALL : CAL_PPL_LLAMA;
    r.n_chunks = v[0].sh.units;
    int64_t rows = r.n_ctx - 1 - (r.protocol == CAL_PPL_LLAMA ? r.n_ctx / 2 : 0);
    cal_ppl_tokens t;
    qx_err e = {0};
    bool base = json_object_get(a, "base") != NULL;
    if (cal_ppl_tokens_alloc(&t, r.n_chunks * rows, base, &e) != QX_OK) return cli_fail(&e);
    int rc = 0;
    for (int i = 0; !rc && i < n; i++) {
        rc = ppl_tokens(&v[i], &t, r.n_chunks * rows);
        json_t *nf = json_object_get(v[i].js, "n_nonfinite"), *sec = json_object_get(v[i].js, "seconds");
        r.n_nonfinite += json_is_integer(nf) ? json_integer_value(nf) : 0;
        r.seconds += json_is_number(sec) ? json_number_value(sec) : 0;
    }
    if (!rc && cal_ppl_stats(&t, &r, &e) != QX_OK) rc = cli_fail(&e);
    cal_ppl_tokens_free(&t);
    if (rc) return rc;
    r.tokens_per_s = r.seconds > 0 ? (double)(r.n_chunks * r.n_ctx) / r.seconds : 0;
    char summary[2048];
    cli_ppl_summary(&r, NULL, summary, sizeof summary);
    json_t *fb = json_object_get(a, "model_file_bytes"), *bpw = json_object_get(a, "model_bpw");
    double size[2] = {json_number_value(fb), json_number_value(bpw)};
    const char *model = json_string_value(json_object_get(a, "model")), *input = json_string_value(json_object_get(a, "input"));
    const char *bp = json_string_value(json_object_get(a, "base"));
    rc = cli_ppl_write_json(out, &r, bp, NULL, model ? model : v[0].sh.model, input ? input : "", fb && bpw ? size : NULL, NULL);
    if (!rc) printf("merge: %d ppl shards of %s, %lld windows -> %s\n", n, v[0].sh.model, (long long)r.n_chunks, out);
    return rc;
}

int cmd_merge(int argc, char **argv) {
    const char *out = NULL;
    merge_in *v = calloc((size_t)argc, sizeof *v);
    int n = 0;
    if (!v) return fail("merge", "out of memory");
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { fputs(help, stdout); free(v); return 0; }
        if (!strcmp(argv[i], "-o")) {
            if (i + 1 >= argc) { free(v); return cli_usage_error("merge", "-o needs a value"); }
            out = argv[++i];
        } else if (argv[i][0] == '-' && argv[i][1]) { free(v); return cli_usage_error("merge", "unknown option '%s'", argv[i]); }
        else v[n++].path = argv[i];
    }
    int rc = 0;
    if (!out) rc = cli_usage_error("merge", "-o OUT is required");
    else if (n < 1) rc = cli_usage_error("merge", "no input files");
    for (int i = 0; !rc && i < n; i++) rc = load_input(&v[i]);
    if (!rc) rc = check_set(v, n);
    if (!rc) rc = v[0].kind == K_IMATRIX ? merge_imatrix(v, n, out) : v[0].kind == K_SENS ? merge_sens(v, n, out) : merge_ppl(v, n, out);
    for (int i = 0; i < n; i++) { im_free(v[i].im); json_decref(v[i].js); }
    free(v);
    return rc;
}
