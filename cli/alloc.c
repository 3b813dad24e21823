/* cli/alloc.c — the size-target options of convert and quantize: reads the sensitivity
 * table, builds the knapsack from a Q8_0 plan of the input (the tensors convert would
 * quantize, their rows and the file's fixed bytes), solves it (convert/alloc.c), prints and
 * saves the chosen table, and turns it (or a saved recipe) into exact --tensor-type rules.
 * Tensors the table does not name take the costs of the measured tensor of the same role
 * (name without "blk.N.") at the nearest relative depth, scaled by weight count: that is how
 * a fixture's table plans the 671B (docs/allocation.md); with --werr the werr of the model's
 * own tensors replace the role's, mapped to ΔKLD by the role's fit.  Every tensor's candidates
 * include the type llama.cpp's smallest preset (IQ1_S) gives it and the row-length fallbacks
 * of the table's types, so any target down to that preset's file size is reachable. */
#include "cli.h"
#include "cli_alloc.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ALIGN 32   /* GGUF tensor data alignment (general.alignment default) */

const char *cli_alloc_usage(void) {
    return "  --target-size SIZE        choose each tensor's type to minimize the predicted KLD with the whole file within SIZE\n"
           "                            (bytes, or with K/M/G = 10^3/6/9 or KiB/MiB/GiB); needs --sensitivity\n"
           "  --target-bpw X            the same for a bits-per-weight target (tensor bytes * 8 / weights)\n"
           "  --sensitivity S.json      table of `qforge sensitivity` (measured cost per tensor and type)\n"
           "  --werr W.json             this model's own weight errors (qforge sensitivity MODEL --werr-only): every\n"
           "                            tensor S.json did not measure takes them, mapped to ΔKLD by its role's fit\n"
           "  --save-recipe F.json      save the chosen types (one per tensor)\n"
           "  --recipe F.json           apply a saved recipe exactly (a reproducible release)\n";
}

static bool parse_target(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !(v > 0)) return false;
    double mul = 1;
    if (!strcmp(end, "K")) mul = 1e3;
    else if (!strcmp(end, "M")) mul = 1e6;
    else if (!strcmp(end, "G")) mul = 1e9;
    else if (!strcmp(end, "KiB")) mul = 1024.0;
    else if (!strcmp(end, "MiB")) mul = 1048576.0;
    else if (!strcmp(end, "GiB")) mul = 1073741824.0;
    else if (*end) return false;
    double b = floor(v * mul);
    if (b < 1 || b > 1.8e19) return false;
    *out = (uint64_t)b;
    return true;
}

int cli_alloc_arg(cli_alloc_opts *o, const char *cmd, int argc, char **argv, int *i, int *rc) {
    const char *a = argv[*i];
    const char **dst = !strcmp(a, "--target-size") ? &o->target : !strcmp(a, "--sensitivity") ? &o->sens
                     : !strcmp(a, "--save-recipe") ? &o->save_recipe : !strcmp(a, "--recipe") ? &o->recipe
                     : !strcmp(a, "--werr") ? &o->werr : NULL;
    bool bpw = !strcmp(a, "--target-bpw");
    if (!dst && !bpw) return 0;
    if (*i + 1 >= argc) { *rc = cli_usage_error(cmd, "%s needs a value", a); return 1; }
    const char *v = argv[++*i];
    if (bpw) {
        char *end;
        o->target_bpw = strtod(v, &end);
        if (end == v || *end || !(o->target_bpw > 0.5 && o->target_bpw < 33)) *rc = cli_usage_error(cmd, "--target-bpw '%s': want 0.5..33", v);
    } else {
        *dst = v;
        if (dst == &o->target && !parse_target(v, &o->target_bytes))
            *rc = cli_usage_error(cmd, "--target-size '%s': want bytes or a number with K, M, G, KiB, MiB or GiB", v);
    }
    return 1;
}

static const char *role_of(const char *name, int *layer) {
    *layer = -1;
    if (strncmp(name, "blk.", 4)) return name;
    char *end;
    long l = strtol(name + 4, &end, 10);
    if (end == name + 4 || *end != '.') return name;
    *layer = (int)l;
    return end + 1;
}

/* The table entry for tensor `name` of the plan: its own, or the same role's at the nearest
 * relative depth (n_layer: blocks of the plan, sn_layer: of the table). */
static const cv_sens_tensor *lookup(const cv_sens *s, const char *name, int n_layer, int sn_layer) {
    const cv_sens_tensor *t = cv_sens_find(s, name);
    if (t) return t;
    int l;
    const char *role = role_of(name, &l);
    double rel = l >= 0 && n_layer > 1 ? (double)l / (n_layer - 1) : 0, best = 1e9;
    for (size_t i = 0; i < s->n; i++) {
        int sl;
        const char *sr = role_of(s->t[i].name, &sl);
        if (strcmp(sr, role) || (sl < 0) != (l < 0)) continue;
        double d = fabs((sl >= 0 && sn_layer > 1 ? (double)sl / (sn_layer - 1) : 0) - rel);
        if (d < best) { best = d; t = &s->t[i]; }
    }
    return t;
}

static int table_layers(const cv_sens *s) {
    int m = 0;
    for (size_t i = 0; i < s->n; i++) {
        int l;
        role_of(s->t[i].name, &l);
        if (l + 1 > m) m = l + 1;
    }
    return m;
}

/* The fit that predicts a tensor's costs: its role's entry when fitted, else the pooled fit. */
typedef struct {
    const cv_sens *s;          /* the measured table */
    const cv_sens *w;          /* the model's own weight errors (--werr), or NULL */
    bool pooled;
    double pa, pb;             /* cv_sens_pooled_fit */
} cost_model;

static int add_type(qt_type *ty, int k, qt_type t, int64_t ne0) {
    if (!qt_row_size(t, ne0) || k >= CV_SENS_MAX_OPT) return k;
    for (int j = 0; j < k; j++)
        if (ty[j] == t) return k;
    ty[k] = t;
    return k + 1;
}

static const cv_sens_opt *opt_of(const cv_sens_tensor *t, qt_type type) {
    for (int j = 0; t && j < t->n_opt; j++)
        if (t->opt[j].type == type) return &t->opt[j];
    return NULL;
}

/* The table's entry was measured on the weights --werr saw (not a same-named tensor of another
 * model): its werr agree with theirs at every common type (1e-3: another imatrix may differ). */
static bool same_weights(const cv_sens_tensor *st, const cv_sens_tensor *own) {
    int k = 0;
    for (int j = 0; j < st->n_opt; j++) {
        const cv_sens_opt *o = opt_of(own, st->opt[j].type);
        if (!o) continue;
        if (fabs(o->werr - st->opt[j].werr) > 1e-3 * st->opt[j].werr) return false;
        k++;
    }
    return k > 0;
}

/* Candidates of plan tensor t and their predicted costs (op/ty [CV_SENS_MAX_OPT]); st is its
 * table entry (own or its role's, NULL: none), floor_t the type of the smallest preset (IQ1_S,
 * after the row-length fallback) that is always a candidate.  A tensor the table measured keeps
 * its measured costs (with --werr: only when its werr are those of these weights); any other
 * takes werr from --werr (the model's own), else from its role's entry, else
 * cv_sens_werr_estimate, and maps it through its role's fit (the pooled fit without one),
 * scaled by weight count.  Returns the count, 0 when nothing is predictable. */
static int tensor_options(const cost_model *cm, const cv_sens_tensor *st, const cv_tensor_info *t, int floor_t,
                          cv_alloc_opt *op, qt_type *ty) {
    const int64_t ne0 = t->ne[0];
    const uint64_t rows = t->n_elems / (uint64_t)ne0;
    const cv_sens_tensor *own = cm->w ? cv_sens_find(cm->w, t->name) : NULL;
    bool measured = st && st->fitted && !strcmp(st->name, t->name) && st->ne0 == ne0 && st->n_elems == t->n_elems &&
                    (!own || same_weights(st, own));
    int k = 0;
    if (own && !measured)
        for (int j = 0; j < own->n_opt; j++) k = add_type(ty, k, own->opt[j].type, ne0);
    else if (st)
        for (int j = 0; j < st->n_opt; j++) k = add_type(ty, k, cv_type_fallback(st->opt[j].type, ne0), ne0);
    else
        k = cv_sens_candidates(ne0, true, ty);
    if (floor_t >= 0) k = add_type(ty, k, (qt_type)floor_t, ne0);
    int n = 0;
    for (int j = 0; j < k; j++) {
        const cv_sens_opt *m = opt_of(st, ty[j]), *o = own && !measured ? opt_of(own, ty[j]) : NULL;
        double werr = o ? o->werr : m ? m->werr : cv_sens_werr_estimate(cm->s, st, ty[j], ne0), cost;
        if (measured && m) cost = m->cost * (double)t->n_elems / (double)st->n_elems;
        else if (st && st->fitted) cost = cv_sens_cost_at(st, werr) * (double)t->n_elems / (double)st->n_elems;
        else if (cm->pooled) cost = werr > 0 ? exp(cm->pa + cm->pb * log(werr)) * (double)t->n_elems : 0.0;
        else continue;
        op[n].bytes = qx_pad(qt_row_size(ty[j], ne0) * rows, ALIGN);
        op[n].cost = cost;
        ty[n++] = ty[j];
    }
    return n;
}

/* The type each tensor of the input gets from the smallest preset, IQ1_S (with llama-quantize's
 * row-length fallbacks), in plan order; -1 where it cannot be planned. */
static int *floor_types(const char *in, bool gguf, const cv_params *p, const cv_plan *pl, qx_err *e) {
    size_t nt = cv_plan_tensor_count(pl);
    cv_params fp = *p;
    fp.preset = "IQ1_S";
    fp.n_tensor_types = 0;
    fp.tensor_types = NULL;
    fp.output_tensor_type = fp.token_embedding_type = NULL;
    fp.pure = false;
    int *ft = malloc((nt + 1) * sizeof *ft);
    cv_plan *fl = NULL;
    if (!ft) { qx_fail(e, QX_ENOMEM, "out of memory"); return NULL; }
    if ((gguf ? cv_plan_from_gguf(&fl, in, &fp, e) : cv_plan_create(&fl, in, &fp, e)) != QX_OK) { free(ft); return NULL; }
    for (size_t i = 0; i < nt; i++) {
        cv_tensor_info t, f;
        cv_plan_tensor(pl, i, &t);
        ft[i] = -1;
        for (size_t k = 0; k < cv_plan_tensor_count(fl) && ft[i] < 0; k++) {   /* the same index unless the maps differ */
            cv_plan_tensor(fl, (i + k) % cv_plan_tensor_count(fl), &f);
            if (!strcmp(f.name, t.name)) ft[i] = (int)f.type;
        }
    }
    cv_plan_free(fl);
    return ft;
}

static int allocate(cli_alloc_opts *o, const char *cmd, const char *in, bool gguf, const cv_params *p, bool quiet) {
    qx_err e = {0};
    cv_sens s = {0};
    if (!o->sens) return cli_usage_error(cmd, "--target-size/--target-bpw need --sensitivity S.json (qforge sensitivity)");
    if (cv_sens_load(o->sens, &s, &e) != QX_OK) return cli_fail(&e);
    cv_params bp = *p;
    bp.preset = "Q8_0";
    bp.n_tensor_types = 0;
    bp.tensor_types = NULL;
    bp.output_tensor_type = bp.token_embedding_type = NULL;
    cv_plan *pl = NULL;
    if ((gguf ? cv_plan_from_gguf(&pl, in, &bp, &e) : cv_plan_create(&pl, in, &bp, &e)) != QX_OK) { cv_sens_free(&s); return cli_fail(&e); }
    size_t nt = cv_plan_tensor_count(pl), n = 0;
    cost_model cm = { &s, NULL, false, 0, 0 };
    cm.pooled = cv_sens_pooled_fit(&s, &cm.pa, &cm.pb);
    cv_sens w = {0};
    if (o->werr && cv_sens_load(o->werr, &w, &e) != QX_OK) { cv_plan_free(pl); cv_sens_free(&s); return cli_fail(&e); }
    cm.w = o->werr ? &w : NULL;
    int *ft = floor_types(in, gguf, p, pl, &e);
    if (!ft) { cv_plan_free(pl); cv_sens_free(&s); cv_sens_free(&w); return cli_fail(&e); }
    cv_alloc_tensor *ts = calloc(nt + 1, sizeof *ts);
    cv_alloc_opt *opts = calloc((nt + 1) * CV_SENS_MAX_OPT, sizeof *opts);
    qt_type *types = calloc((nt + 1) * CV_SENS_MAX_OPT, sizeof *types);
    size_t *which = calloc(nt + 1, sizeof *which);
    int *pick = calloc(nt + 1, sizeof *pick);
    int rc = 0;
    if (!ts || !opts || !types || !which || !pick) { fprintf(stderr, "qforge: error: out of memory\n"); rc = 1; }
    uint64_t fixed = cv_plan_file_size(pl), quant_elems = 0;
    int n_layer = 0, sn_layer = table_layers(&s);
    for (size_t i = 0; i < nt; i++) {
        cv_tensor_info t;
        cv_plan_tensor(pl, i, &t);
        if (t.layer + 1 > n_layer) n_layer = t.layer + 1;
    }
    for (size_t i = 0; i < nt && !rc; i++) {
        cv_tensor_info t;
        cv_plan_tensor(pl, i, &t);
        bool exact = cv_alloc_exact(&t);
        if (t.wanted != QT_Q8_0 && !exact) continue;
        const cv_sens_tensor *st = lookup(&s, t.name, n_layer, sn_layer);
        fixed -= qx_pad(t.nbytes, ALIGN);
        quant_elems += t.n_elems;
        cv_alloc_opt *op = opts + n * CV_SENS_MAX_OPT;
        qt_type *ty = types + n * CV_SENS_MAX_OPT;
        int k = tensor_options(&cm, st, &t, ft ? ft[i] : -1, op, ty);
        if (exact) {   /* an exact MXFP4 expert: the smaller candidates, and keeping it at no cost */
            int m = 0;
            for (int j = 0; j < k; j++)
                if (cv_alloc_allows(&t, ty[j])) { op[m] = op[j]; ty[m++] = ty[j]; }
            if (m < CV_SENS_MAX_OPT) { op[m].bytes = qx_pad(t.nbytes, ALIGN); op[m].cost = 0.0; ty[m++] = QT_MXFP4; }
            k = m;
        }
        if (!k) { fprintf(stderr, "qforge %s: error: tensor '%s': %s has no measured point to predict its costs from\n", cmd, t.name, o->sens); rc = 1; break; }
        ts[n].n_opt = k;
        ts[n].opt = op;
        which[n++] = i;
    }
    uint64_t budget = 0;
    if (!rc) {
        uint64_t target = o->target_bytes;
        if (o->target_bpw > 0) {   /* tensor bytes * 8 / weights = X, the non-quantized tensors included */
            uint64_t other = cv_plan_tensor_bytes(pl);
            for (size_t j = 0; j < n; j++) { cv_tensor_info t; cv_plan_tensor(pl, which[j], &t); other -= t.nbytes; }
            double tb = o->target_bpw * (double)cv_plan_n_elems(pl) / 8.0;
            if (tb <= (double)other) target = 0;
            else target = fixed - other + (uint64_t)(tb - (double)other);   /* header and padding on top */
        }
        if (target <= fixed) { fprintf(stderr, "qforge %s: error: target %llu bytes is below the fixed part (%llu bytes)\n", cmd,
                                       (unsigned long long)target, (unsigned long long)fixed); rc = 1; }
        else budget = target - fixed;
        o->target_bytes = target;
    }
    cv_alloc_result r;
    if (!rc && cv_alloc_solve(ts, n, budget, pick, &r, &e) != QX_OK) rc = cli_fail(&e);
    for (size_t j = 0; j < n && !rc; j++) {
        cv_tensor_info t;
        cv_plan_tensor(pl, which[j], &t);
        if (cv_recipe_table_add(&o->table, t.name, types[j * CV_SENS_MAX_OPT + pick[j]], &e) != QX_OK) rc = cli_fail(&e);
    }
    if (!rc && !quiet) {
        printf("allocation to %llu bytes (%.2f GiB) from %s: predicted ΔKLD %.5f (sum over tensors)\n",
               (unsigned long long)o->target_bytes, o->target_bytes / 1073741824.0, o->sens, r.cost);
        printf("%-40s %-8s %12s %12s\n", "tensor", "type", "MiB", "pred. ΔKLD");
        for (size_t j = 0; j < n; j++) {
            const cv_alloc_opt *op = &ts[j].opt[pick[j]];
            printf("%-40s %-8s %12.3f %12.6f\n", o->table.e[j].name, qt_type_name(o->table.e[j].type), op->bytes / 1048576.0, op->cost);
        }
        printf("file %llu bytes = fixed %llu + chosen %llu (%.3f%% under the target)\n",
               (unsigned long long)(fixed + r.bytes), (unsigned long long)fixed, (unsigned long long)r.bytes,
               100.0 * (double)(o->target_bytes - fixed - r.bytes) / (double)o->target_bytes);
    }
    (void)quant_elems;
    free(ts); free(opts); free(types); free(which); free(pick); free(ft);
    cv_plan_free(pl);
    cv_sens_free(&s);
    cv_sens_free(&w);
    return rc;
}

int cli_alloc_prepare(cli_alloc_opts *o, const char *cmd, const char *in, bool gguf_input, cv_params *p, const char **tt,
                      bool quiet) {
    bool target = o->target || o->target_bpw > 0;
    if (!target && !o->recipe) {
        if (o->save_recipe || o->sens || o->werr) return cli_usage_error(cmd, "--save-recipe/--sensitivity/--werr need --target-size or --target-bpw");
        return 0;
    }
    if (target && o->recipe) return cli_usage_error(cmd, "give either --recipe or a target, not both");
    if (o->target && o->target_bpw > 0) return cli_usage_error(cmd, "give either --target-size or --target-bpw");
    qx_err e = {0};
    int rc = 0;
    if (o->recipe) {
        if (cv_recipe_load(o->recipe, &o->table, &e) != QX_OK) return cli_fail(&e);
    } else if ((rc = allocate(o, cmd, in, gguf_input, p, quiet)))
        return rc;
    if (o->save_recipe) {
        char c[512];
        snprintf(c, sizeof c, "qforge %s --target-size %llu --sensitivity %s%s%s", cmd, (unsigned long long)o->target_bytes, o->sens ? o->sens : "",
                 o->werr ? " --werr " : "", o->werr ? o->werr : "");
        if (cv_recipe_write(&o->table, o->save_recipe, c, &e) != QX_OK) return cli_fail(&e);
    }
    o->rules = calloc(o->table.n + 1, sizeof *o->rules);
    if (!o->rules) return 1;
    for (size_t i = 0; i < o->table.n; i++) {
        o->rules[i] = malloc(GF_NAME_MAX * 2 + 32);
        if (!o->rules[i] || !cv_recipe_rule(o->table.e[i].name, o->table.e[i].type, o->rules[i], GF_NAME_MAX * 2 + 32)) return 1;
    }
    /* rules first: exact names win over the user's --tensor-type */
    const char **all = malloc((o->table.n + (size_t)p->n_tensor_types + 1) * sizeof *all);
    if (!all) return 1;
    for (size_t i = 0; i < o->table.n; i++) all[i] = o->rules[i];
    for (int i = 0; i < p->n_tensor_types; i++) all[o->table.n + (size_t)i] = tt[i];
    p->tensor_types = all;
    p->n_tensor_types += (int)o->table.n;
    o->all = all;
    return 0;
}

int cli_alloc_check(const cli_alloc_opts *o, const char *cmd, const cv_plan *pl) {
    if (!o->table.n) return 0;
    size_t nt = cv_plan_tensor_count(pl), hit = 0;
    for (size_t i = 0; i < nt; i++) {
        cv_tensor_info t;
        cv_plan_tensor(pl, i, &t);
        for (size_t k = 0; k < o->table.n; k++) {
            if (strcmp(o->table.e[k].name, t.name)) continue;
            hit++;
            if (t.type != o->table.e[k].type) {
                fprintf(stderr, "qforge %s: error: tensor '%s' planned as %s, the recipe says %s\n", cmd, t.name, qt_type_name(t.type),
                        qt_type_name(o->table.e[k].type));
                return 1;
            }
        }
    }
    if (hit != o->table.n) { fprintf(stderr, "qforge %s: error: %zu recipe tensors are not in the model\n", cmd, o->table.n - hit); return 1; }
    if (o->target_bytes && cv_plan_file_size(pl) > o->target_bytes && !o->target_bpw) {
        fprintf(stderr, "qforge %s: error: planned file %llu bytes exceeds the target %llu\n", cmd,
                (unsigned long long)cv_plan_file_size(pl), (unsigned long long)o->target_bytes);
        return 1;
    }
    return 0;
}

void cli_alloc_free(cli_alloc_opts *o) {
    for (size_t i = 0; o->rules && i < o->table.n; i++) free(o->rules[i]);
    free(o->rules);
    free(o->all);
    cv_recipe_table_free(&o->table);
}
