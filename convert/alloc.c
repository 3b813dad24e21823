/* convert/alloc.c — measured bit allocation to a size target: the sensitivity table
 * (`qforge sensitivity`'s JSON: per tensor and candidate type its bytes, the weighted
 * weight error and, where measured, the model's KLD with only that tensor quantized), the
 * cost model that predicts every candidate's ΔKLD from it, the multiple-choice knapsack that
 * picks one type per tensor under a byte budget, and the recipe JSON (one exact type per
 * tensor) that makes a build reproducible.  Parsers work on memory buffers (fuzzed).  It does
 * not measure anything (calib/sensitivity.c does) and does not plan files (plan.c does). */
#include "cv_internal.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------- sensitivity table ---------------- */

static qx_status sens_grow(cv_sens *s, qx_err *e) {
    if (s->n < s->cap) return QX_OK;
    size_t c = s->cap ? 2 * s->cap : 64;
    void *p = realloc(s->t, c * sizeof *s->t);
    if (!p) return qx_fail(e, QX_ENOMEM, "out of memory");
    s->t = p;
    s->cap = c;
    return QX_OK;
}

qx_status cv_sens_add(cv_sens *s, const char *name, int64_t ne0, uint64_t n_elems, cv_sens_tensor **out, qx_err *e) {
    if (strlen(name) >= GF_NAME_MAX) return qx_fail(e, QX_EINVAL, "tensor name '%.40s...' too long", name);
    QX_TRY(sens_grow(s, e));
    cv_sens_tensor *t = &s->t[s->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ne0 = ne0;
    t->n_elems = n_elems;
    *out = t;
    return QX_OK;
}

void cv_sens_free(cv_sens *s) {
    if (!s) return;
    free(s->t);
    memset(s, 0, sizeof *s);
}

const cv_sens_tensor *cv_sens_find(const cv_sens *s, const char *name) {
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->t[i].name, name)) return &s->t[i];
    return NULL;
}

/* Fit of log kld = a + b log werr over the measured options (b in [0.5, 2]; 1 with one point). */
static bool fit(const cv_sens_tensor *t, double *a, double *b) {
    double sx = 0, sy = 0, sxx = 0, sxy = 0;
    int k = 0;
    for (int i = 0; i < t->n_opt; i++) {
        const cv_sens_opt *o = &t->opt[i];
        if (o->kld <= 0 || o->werr <= 0) continue;
        double x = log(o->werr), y = log(o->kld);
        sx += x; sy += y; sxx += x * x; sxy += x * y;
        k++;
    }
    if (!k) return false;
    double bb = 1.0;
    if (k >= 2 && k * sxx - sx * sx > 1e-9) bb = (k * sxy - sx * sy) / (k * sxx - sx * sx);
    if (bb < 0.5) bb = 0.5;
    if (bb > 2.0) bb = 2.0;
    *b = bb;
    *a = (sy - bb * sx) / k;
    return true;
}

double cv_sens_cost_at(const cv_sens_tensor *t, double werr) {
    if (!t->fitted) return -1.0;
    return werr > 0 ? exp(t->fit_a + t->fit_b * log(werr)) : 0.0;
}

void cv_sens_predict(cv_sens *s) {
    for (size_t i = 0; i < s->n; i++) {
        cv_sens_tensor *t = &s->t[i];
        t->fitted = fit(t, &t->fit_a, &t->fit_b);
        for (int j = 0; j < t->n_opt; j++) t->opt[j].cost = cv_sens_cost_at(t, t->opt[j].werr);
    }
}

bool cv_sens_pooled_fit(const cv_sens *s, double *a, double *b) {
    double sx = 0, sy = 0, sxx = 0, sxy = 0;
    size_t k = 0;
    for (size_t i = 0; i < s->n; i++)
        for (int j = 0; j < s->t[i].n_opt; j++) {
            const cv_sens_opt *o = &s->t[i].opt[j];
            if (o->kld <= 0 || o->werr <= 0) continue;
            double x = log(o->werr), y = log(o->kld / (double)s->t[i].n_elems);
            sx += x; sy += y; sxx += x * x; sxy += x * y;
            k++;
        }
    if (!k) return false;
    double bb = k >= 2 && k * sxx - sx * sx > 1e-9 ? (k * sxy - sx * sy) / (k * sxx - sx * sx) : 1.0;
    *b = bb < 0.5 ? 0.5 : bb > 2.0 ? 2.0 : bb;
    *a = (sy - *b * sx) / (double)k;
    return true;
}

static double bits_of(qt_type t, int64_t ne0) { return 8.0 * (double)qt_row_size(t, ne0) / (double)ne0; }

/* log of the table's geometric-mean werr of `type` (0 in *have when no tensor has it). */
static double log_mean_werr(const cv_sens *s, qt_type type, bool *have) {
    double sum = 0;
    size_t k = 0;
    for (size_t i = 0; i < s->n; i++)
        for (int j = 0; j < s->t[i].n_opt; j++)
            if (s->t[i].opt[j].type == type && s->t[i].opt[j].werr > 0) { sum += log(s->t[i].opt[j].werr); k++; }
    *have = k > 0;
    return k ? sum / (double)k : 0.0;
}

/* log G(type): the table's mean, or the log-linear fit in bits over the types it has. */
static double log_g(const cv_sens *s, qt_type type, int64_t ne0) {
    bool have;
    double g = log_mean_werr(s, type, &have);
    if (have) return g;
    double sx = 0, sy = 0, sxx = 0, sxy = 0;
    int k = 0;
    for (int t = 0; t < QT_GGUF_COUNT; t++) {
        uint64_t rs = qt_row_size((qt_type)t, 256);
        if (!rs || t == QT_F32 || t == QT_F16 || t == QT_BF16) continue;
        double y = log_mean_werr(s, (qt_type)t, &have), x = bits_of((qt_type)t, 256);
        if (!have) continue;
        sx += x; sy += y; sxx += x * x; sxy += x * y;
        k++;
    }
    double x = bits_of(type, ne0);
    if (k >= 2 && k * sxx - sx * sx > 1e-9) {
        double b = (k * sxy - sx * sy) / (k * sxx - sx * sx);
        return (sy - b * sx) / k + b * x;
    }
    return log(0.25) - 1.386 * x;   /* ~4x less error per added bit (uniform quantizer) */
}

double cv_sens_werr_estimate(const cv_sens *s, const cv_sens_tensor *t, qt_type type, int64_t ne0) {
    double dev = 0;
    int k = 0;
    for (int j = 0; t && j < t->n_opt; j++) {
        bool have;
        double g = log_mean_werr(s, t->opt[j].type, &have);
        if (!have || t->opt[j].werr <= 0) continue;
        dev += log(t->opt[j].werr) - g;
        k++;
    }
    return exp(log_g(s, type, ne0) + (k ? dev / k : 0.0));
}

/* Candidates by row length: 256-block types when ne0 % 256 == 0, 32-block ones else. */
static const qt_type cand256[] = { QT_IQ1_S, QT_IQ1_M, QT_IQ2_XXS, QT_IQ2_XS, QT_IQ2_S, QT_Q2_K, QT_IQ3_XXS, QT_Q3_K,
                                   QT_IQ3_S, QT_IQ4_XS, QT_Q4_K, QT_Q5_K, QT_Q6_K, QT_Q8_0 };
static const qt_type cand32[] = { QT_IQ4_NL, QT_Q4_0, QT_Q5_0, QT_Q8_0 };

int cv_sens_candidates(int64_t ne0, bool have_imp, qt_type *out) {
    if (ne0 <= 0 || ne0 % 32) return 0;
    bool k = ne0 % 256 == 0;
    const qt_type *c = k ? cand256 : cand32;
    int n = 0, nc = k ? (int)(sizeof cand256 / sizeof *cand256) : (int)(sizeof cand32 / sizeof *cand32);
    for (int i = 0; i < nc; i++) {
        const qt_traits *tr = qt_iq_traits(c[i]) ? qt_iq_traits(c[i]) : qt_get_traits(c[i]);
        if (tr && tr->needs_imatrix && !have_imp) continue;
        out[n++] = c[i];
    }
    return n;
}

bool cv_alloc_exact(const cv_tensor_info *t) { return t->wanted == QT_MXFP4 && t->n_dims >= 2; }

bool cv_alloc_allows(const cv_tensor_info *t, qt_type q) {
    return !cv_alloc_exact(t) || qt_row_size(q, t->ne[0]) < qt_row_size(QT_MXFP4, t->ne[0]);
}

int cv_alloc_candidates(const cv_tensor_info *t, bool have_imp, qt_type *out) {
    if (t->n_dims < 2 || (t->wanted != QT_Q8_0 && !cv_alloc_exact(t))) return 0;
    int n = cv_sens_candidates(t->ne[0], have_imp, out), k = 0;
    for (int i = 0; i < n; i++)
        if (cv_alloc_allows(t, out[i])) out[k++] = out[i];
    return k;
}

/* ---------------- JSON ---------------- */

static qx_status jnum(json_t *o, const char *key, bool req, double lo, double hi, double *out, const char *label, qx_err *e) {
    json_t *v = json_object_get(o, key);
    if (!v) return req ? qx_fail(e, QX_EFORMAT, "%s: key '%s' missing", label, key) : QX_OK;
    if (!json_is_number(v)) return qx_fail(e, QX_EFORMAT, "%s: key '%s' is not a number", label, key);
    double x = json_number_value(v);
    if (!isfinite(x) || x < lo || x > hi) return qx_fail(e, QX_EFORMAT, "%s: key '%s' = %g out of range", label, key, x);
    *out = x;
    return QX_OK;
}

static qx_status jtype(json_t *v, const char *label, const char *what, qt_type *out, qx_err *e) {
    if (!json_is_string(v) || !qt_type_from_name(json_string_value(v), out) || (int)*out >= QT_GGUF_COUNT)
        return qx_fail(e, QX_EFORMAT, "%s: %s: not a GGUF type name", label, what);
    return QX_OK;
}

static qx_status parse_tensor(json_t *jt, cv_sens *s, const char *label, qx_err *e) {
    if (!json_is_object(jt)) return qx_fail(e, QX_EFORMAT, "%s: tensor entry is not an object", label);
    json_t *jn = json_object_get(jt, "name");
    if (!json_is_string(jn)) return qx_fail(e, QX_EFORMAT, "%s: tensor without a name", label);
    const char *name = json_string_value(jn);
    if (!*name || strlen(name) >= GF_NAME_MAX || cv_sens_find(s, name))
        return qx_fail(e, QX_EFORMAT, "%s: tensor name '%.60s' empty, too long or repeated", label, name);
    double ne0, ne;
    QX_TRY(jnum(jt, "ne0", true, 1, 1e9, &ne0, label, e));
    QX_TRY(jnum(jt, "n_elems", true, 1, 1e15, &ne, label, e));
    if (ne0 != floor(ne0) || ne != floor(ne) || fmod(ne, ne0) != 0)
        return qx_fail(e, QX_EFORMAT, "%s: tensor '%s': n_elems %g is not a multiple of ne0 %g", label, name, ne, ne0);
    cv_sens_tensor *t;
    QX_TRY(cv_sens_add(s, name, (int64_t)ne0, (uint64_t)ne, &t, e));
    json_t *jo = json_object_get(jt, "types");
    if (!json_is_array(jo) || json_array_size(jo) > CV_SENS_MAX_OPT)
        return qx_fail(e, QX_EFORMAT, "%s: tensor '%s': 'types' is not an array of at most %d", label, name, CV_SENS_MAX_OPT);
    for (size_t k = 0; k < json_array_size(jo); k++) {
        json_t *o = json_array_get(jo, k);
        if (!json_is_object(o)) return qx_fail(e, QX_EFORMAT, "%s: tensor '%s': type entry is not an object", label, name);
        cv_sens_opt *op = &t->opt[t->n_opt];
        QX_TRY(jtype(json_object_get(o, "type"), label, name, &op->type, e));
        for (int j = 0; j < t->n_opt; j++)
            if (t->opt[j].type == op->type) return qx_fail(e, QX_EFORMAT, "%s: tensor '%s': type repeated", label, name);
        uint64_t rs = qt_row_size(op->type, t->ne0);
        if (!rs) return qx_fail(e, QX_EFORMAT, "%s: tensor '%s': type %s does not fit rows of %lld", label, name,
                                qt_type_name(op->type), (long long)t->ne0);
        op->bytes = rs * (t->n_elems / (uint64_t)t->ne0);
        op->kld = -1;
        QX_TRY(jnum(o, "werr", true, 0, 1e6, &op->werr, label, e));
        QX_TRY(jnum(o, "kld", false, 0, 1e6, &op->kld, label, e));
        t->n_opt++;
    }
    if (!t->n_opt) return qx_fail(e, QX_EFORMAT, "%s: tensor '%s' has no types", label, name);
    return QX_OK;
}

qx_status cv_sens_parse(const char *buf, size_t len, const char *label, cv_sens *s, qx_err *e) {
    memset(s, 0, sizeof *s);
    json_error_t je;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) return qx_fail(e, QX_EFORMAT, "%s: line %d: %s", label, je.line, je.text);
    qx_status st = QX_OK;
    json_t *ts = json_object_get(root, "tensors");
    double ver = 0;
    if (!json_is_object(root)) st = qx_fail(e, QX_EFORMAT, "%s: not a JSON object", label);
    else st = jnum(root, "qforge_sensitivity", true, 1, 1, &ver, label, e);
    if (st == QX_OK && json_object_get(root, "shard"))
        st = qx_fail(e, QX_EINVAL, "%s: a partial table of qforge sensitivity --shard: combine the shards with qforge merge", label);
    if (st == QX_OK && !json_is_array(ts)) st = qx_fail(e, QX_EFORMAT, "%s: 'tensors' is not an array", label);
    if (st == QX_OK) st = jnum(root, "base_kld", false, 0, 1e6, &s->base_kld, label, e);
    for (size_t i = 0; st == QX_OK && i < json_array_size(ts); i++) st = parse_tensor(json_array_get(ts, i), s, label, e);
    json_decref(root);
    if (st != QX_OK) { cv_sens_free(s); return st; }
    cv_sens_predict(s);
    return QX_OK;
}

qx_status cv_sens_load(const char *path, cv_sens *s, qx_err *e) {
    char *buf;
    size_t len;
    QX_TRY(qx_read_file(path, &buf, &len, e));
    qx_status st = cv_sens_parse(buf, len, path, s, e);
    free(buf);
    return st;
}

static void put_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        if ((unsigned char)*s < 0x20) fprintf(f, "\\u%04x", *s);
        else fputc(*s, f);
    }
    fputc('"', f);
}

qx_status cv_sens_write(const cv_sens *s, const char *path, const char *provenance, qx_err *e) {
    FILE *f = fopen(path, "w");
    if (!f) return qx_fail(e, QX_EIO, "%s: cannot write", path);
    fprintf(f, "{\n  \"qforge_sensitivity\": 1,\n  \"provenance\": ");
    put_str(f, provenance ? provenance : "");
    fprintf(f, ",\n  \"base_kld\": %.9g,\n  \"tensors\": [", s->base_kld);
    for (size_t i = 0; i < s->n; i++) {
        const cv_sens_tensor *t = &s->t[i];
        fprintf(f, "%s\n    {\"name\": ", i ? "," : "");
        put_str(f, t->name);
        fprintf(f, ", \"ne0\": %lld, \"n_elems\": %llu, \"types\": [", (long long)t->ne0, (unsigned long long)t->n_elems);
        for (int j = 0; j < t->n_opt; j++) {
            const cv_sens_opt *o = &t->opt[j];
            fprintf(f, "%s\n      {\"type\": \"%s\", \"bytes\": %llu, \"werr\": %.9g", j ? "," : "", qt_type_name(o->type),
                    (unsigned long long)o->bytes, o->werr);
            if (o->kld >= 0) fprintf(f, ", \"kld\": %.9g", o->kld);
            if (o->cost >= 0) fprintf(f, ", \"predicted\": %.9g", o->cost);
            fputc('}', f);
        }
        fprintf(f, "]}");
    }
    fprintf(f, "\n  ]\n}\n");
    if (fclose(f) != 0) return qx_fail(e, QX_EIO, "%s: write failed", path);
    return QX_OK;
}

/* ---------------- the knapsack ---------------- */

/* Option of tensor i minimizing cost + lam * bytes (ties: fewer bytes). */
static int best_at(const cv_alloc_tensor *t, double lam) {
    int b = 0;
    for (int j = 1; j < t->n_opt; j++) {
        double v = t->opt[j].cost + lam * (double)t->opt[j].bytes, w = t->opt[b].cost + lam * (double)t->opt[b].bytes;
        if (v < w || (v == w && t->opt[j].bytes < t->opt[b].bytes)) b = j;
    }
    return b;
}

static uint64_t total_at(const cv_alloc_tensor *ts, size_t n, double lam, int *pick) {
    uint64_t s = 0;
    for (size_t i = 0; i < n; i++) {
        pick[i] = best_at(&ts[i], lam);
        s += ts[i].opt[pick[i]].bytes;
    }
    return s;
}

qx_status cv_alloc_solve(const cv_alloc_tensor *ts, size_t n, uint64_t budget, int *pick, cv_alloc_result *r, qx_err *e) {
    memset(r, 0, sizeof *r);
    uint64_t minb = 0;
    for (size_t i = 0; i < n; i++) {
        if (ts[i].n_opt < 1) return qx_fail(e, QX_EINVAL, "tensor %zu has no candidate type", i);
        uint64_t m = UINT64_MAX;
        for (int j = 0; j < ts[i].n_opt; j++) {
            if (!(ts[i].opt[j].cost >= 0) || !isfinite(ts[i].opt[j].cost))
                return qx_fail(e, QX_EINVAL, "tensor %zu: candidate %d has no cost", i, j);
            if (ts[i].opt[j].bytes < m) m = ts[i].opt[j].bytes;
        }
        minb += m;
    }
    if (minb > budget)
        return qx_fail(e, QX_EINVAL, "budget %llu bytes is below the smallest mix of the candidates (%llu bytes)",
                       (unsigned long long)budget, (unsigned long long)minb);
    /* bisection on lam (in log space) for the largest total within the budget */
    double lo = 0, hi = 1.0;
    int *tmp = malloc((n ? n : 1) * sizeof *tmp);
    if (!tmp) return qx_fail(e, QX_ENOMEM, "out of memory");
    if (total_at(ts, n, 0, pick) <= budget) hi = 0;
    else {
        while (total_at(ts, n, hi, tmp) > budget && hi < 1e30) hi *= 4;
        lo = hi / 4;
        if (total_at(ts, n, lo, tmp) <= budget) lo = 0;
        for (int it = 0; it < 200; it++) {
            double mid = lo > 0 ? sqrt(lo * hi) : hi / 2;
            if (mid <= lo || mid >= hi) break;
            if (total_at(ts, n, mid, tmp) > budget) lo = mid;
            else hi = mid;
        }
        total_at(ts, n, hi, pick);
    }
    free(tmp);
    uint64_t used = 0;
    for (size_t i = 0; i < n; i++) used += ts[i].opt[pick[i]].bytes;
    /* greedy fill: the upgrade with the best cost drop per byte that still fits */
    for (;;) {
        double best = 0;
        size_t bi = 0;
        int bj = -1;
        for (size_t i = 0; i < n; i++) {
            const cv_alloc_opt *c = &ts[i].opt[pick[i]];
            for (int j = 0; j < ts[i].n_opt; j++) {
                const cv_alloc_opt *o = &ts[i].opt[j];
                if (o->bytes <= c->bytes || o->cost >= c->cost || used - c->bytes + o->bytes > budget) continue;
                double g = (c->cost - o->cost) / (double)(o->bytes - c->bytes);
                if (g > best) { best = g; bi = i; bj = j; }
            }
        }
        if (bj < 0) break;
        used = used - ts[bi].opt[pick[bi]].bytes + ts[bi].opt[bj].bytes;
        pick[bi] = bj;
    }
    r->bytes = used;
    r->lambda = hi;
    for (size_t i = 0; i < n; i++) r->cost += ts[i].opt[pick[i]].cost;
    return QX_OK;
}

/* ---------------- recipe JSON ---------------- */

void cv_recipe_table_free(cv_recipe_table *t) {
    if (!t) return;
    free(t->e);
    memset(t, 0, sizeof *t);
}

qx_status cv_recipe_table_add(cv_recipe_table *t, const char *name, qt_type type, qx_err *e) {
    if (!*name || strlen(name) >= GF_NAME_MAX) return qx_fail(e, QX_EINVAL, "recipe: tensor name empty or too long");
    for (size_t i = 0; i < t->n; i++)
        if (!strcmp(t->e[i].name, name)) return qx_fail(e, QX_EINVAL, "recipe: tensor '%s' repeated", name);
    if (t->n == t->cap) {
        size_t c = t->cap ? 2 * t->cap : 64;
        void *p = realloc(t->e, c * sizeof *t->e);
        if (!p) return qx_fail(e, QX_ENOMEM, "out of memory");
        t->e = p;
        t->cap = c;
    }
    snprintf(t->e[t->n].name, GF_NAME_MAX, "%s", name);
    t->e[t->n++].type = type;
    return QX_OK;
}

qx_status cv_recipe_parse(const char *buf, size_t len, const char *label, cv_recipe_table *t, qx_err *e) {
    memset(t, 0, sizeof *t);
    json_error_t je;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) return qx_fail(e, QX_EFORMAT, "%s: line %d: %s", label, je.line, je.text);
    qx_status st = QX_OK;
    double ver = 0;
    json_t *ts = json_object_get(root, "tensors");
    if (!json_is_object(root)) st = qx_fail(e, QX_EFORMAT, "%s: not a JSON object", label);
    else st = jnum(root, "qforge_recipe", true, 1, 1, &ver, label, e);
    if (st == QX_OK && (!json_is_object(ts) || json_object_size(ts) == 0))
        st = qx_fail(e, QX_EFORMAT, "%s: 'tensors' is not a non-empty object of name: type", label);
    const char *k;
    json_t *v;
    if (st == QX_OK) json_object_foreach(ts, k, v) {
        qt_type ty;
        if ((st = jtype(v, label, k, &ty, e)) != QX_OK) break;
        if (!qt_get_traits(ty) || qt_get_traits(ty)->blck < 1) { st = qx_fail(e, QX_EFORMAT, "%s: %s: unusable type", label, k); break; }
        if ((st = cv_recipe_table_add(t, k, ty, e)) != QX_OK) { st = qx_fail(e, QX_EFORMAT, "%s: %s", label, e->msg); break; }
    }
    json_decref(root);
    if (st != QX_OK) cv_recipe_table_free(t);
    return st;
}

qx_status cv_recipe_load(const char *path, cv_recipe_table *t, qx_err *e) {
    char *buf;
    size_t len;
    QX_TRY(qx_read_file(path, &buf, &len, e));
    qx_status st = cv_recipe_parse(buf, len, path, t, e);
    free(buf);
    return st;
}

qx_status cv_recipe_write(const cv_recipe_table *t, const char *path, const char *comment, qx_err *e) {
    FILE *f = fopen(path, "w");
    if (!f) return qx_fail(e, QX_EIO, "%s: cannot write", path);
    fprintf(f, "{\n  \"qforge_recipe\": 1,\n  \"comment\": ");
    put_str(f, comment ? comment : "");
    fprintf(f, ",\n  \"tensors\": {");
    for (size_t i = 0; i < t->n; i++) {
        fprintf(f, "%s\n    ", i ? "," : "");
        put_str(f, t->e[i].name);
        fprintf(f, ": \"%s\"", qt_type_name(t->e[i].type));
    }
    fprintf(f, "\n  }\n}\n");
    if (fclose(f) != 0) return qx_fail(e, QX_EIO, "%s: write failed", path);
    return QX_OK;
}

bool cv_recipe_rule(const char *name, qt_type type, char *buf, size_t cap) {
    size_t k = 0;
    if (cap < 4) return false;
    buf[k++] = '^';
    for (const char *s = name; *s; s++) {
        bool meta = strchr(".^$|()[]{}*+?\\", *s) != NULL;
        if (k + 2 >= cap) return false;
        if (meta) buf[k++] = '\\';
        buf[k++] = *s;
    }
    int w = snprintf(buf + k, cap - k, "$=%s", qt_type_name(type));
    return w > 0 && (size_t)w < cap - k;
}
