/* calib/drift.c — reads back the JSON of `qforge ppl --json` (the drift of one build against
 * its base) for `qforge card` and `qforge report`.  The JSON stays the source of truth; this
 * parser only validates and copies it.  Works on a memory buffer so a fuzzer can call it;
 * every number is checked for type, finiteness and range before use.  It does not compute
 * anything (calib/ppl.c does). */
#include "calib.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static qx_status get_num(json_t *o, const char *key, bool required, double lo, double hi, double *out,
                         bool *present, const char *label, qx_err *e) {
    json_t *v = json_object_get(o, key);
    if (present) *present = v != NULL;
    if (!v) return required ? qx_fail(e, QX_EFORMAT, "%s: key '%s' missing", label, key) : QX_OK;
    if (!json_is_number(v)) return qx_fail(e, QX_EFORMAT, "%s: key '%s' is not a number", label, key);
    double x = json_number_value(v);
    if (!isfinite(x) || x < lo || x > hi)
        return qx_fail(e, QX_EFORMAT, "%s: key '%s' = %g is out of range [%g, %g]", label, key, x, lo, hi);
    *out = x;
    return QX_OK;
}

static qx_status get_int(json_t *o, const char *key, bool required, int64_t lo, int64_t hi, int64_t *out,
                         const char *label, qx_err *e) {
    json_t *v = json_object_get(o, key);
    if (!v) return required ? qx_fail(e, QX_EFORMAT, "%s: key '%s' missing", label, key) : QX_OK;
    if (!json_is_integer(v)) return qx_fail(e, QX_EFORMAT, "%s: key '%s' is not an integer", label, key);
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return qx_fail(e, QX_EFORMAT, "%s: key '%s' = %lld is out of range [%lld, %lld]", label, key, (long long)x,
                       (long long)lo, (long long)hi);
    *out = (int64_t)x;
    return QX_OK;
}

static qx_status get_str(json_t *o, const char *key, bool required, char *out, size_t cap, const char *label, qx_err *e) {
    json_t *v = json_object_get(o, key);
    out[0] = 0;
    if (!v) return required ? qx_fail(e, QX_EFORMAT, "%s: key '%s' missing", label, key) : QX_OK;
    if (!json_is_string(v)) return qx_fail(e, QX_EFORMAT, "%s: key '%s' is not a string", label, key);
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n >= cap || strlen(s) != n)
        return qx_fail(e, QX_EFORMAT, "%s: key '%s': string of %zu bytes (limit %zu, no NUL bytes)", label, key, n, cap - 1);
    memcpy(out, s, n + 1);
    return QX_OK;
}

static qx_status parse_base(json_t *o, cal_drift *d, const char *label, qx_err *e) {
    double ppl_cap = 1e30;
    QX_TRY(get_num(o, "ppl_base", true, 0, ppl_cap, &d->ppl_base, NULL, label, e));
    QX_TRY(get_num(o, "ln_ppl_ratio", true, -1e6, 1e6, &d->ln_ppl_ratio, NULL, label, e));
    QX_TRY(get_num(o, "kld_mean", true, 0, 1e6, &d->kld_mean, NULL, label, e));
    QX_TRY(get_num(o, "kld_err", true, 0, 1e6, &d->kld_err, NULL, label, e));
    QX_TRY(get_num(o, "kld_median", true, 0, 1e6, &d->kld_median, NULL, label, e));
    QX_TRY(get_num(o, "kld_p99", true, 0, 1e6, &d->kld_p99, NULL, label, e));
    QX_TRY(get_num(o, "kld_max", true, 0, 1e6, &d->kld_max, NULL, label, e));
    QX_TRY(get_num(o, "top1_agree", true, 0, 1, &d->top1, NULL, label, e));
    if (d->ppl_base <= 0) return qx_fail(e, QX_EFORMAT, "%s: 'ppl_base' must be > 0", label);
    json_t *q = json_object_get(o, "kld_quantiles");
    if (!q) return QX_OK;
    if (!json_is_array(q) || json_array_size(q) != CAL_KLD_NQ)
        return qx_fail(e, QX_EFORMAT, "%s: 'kld_quantiles' must be an array of %d numbers", label, CAL_KLD_NQ);
    for (int i = 0; i < CAL_KLD_NQ; i++) {
        json_t *v = json_array_get(q, (size_t)i);
        double x = json_is_number(v) ? json_number_value(v) : NAN;
        if (!isfinite(x) || x < 0 || x > 1e6 || (i > 0 && x < d->kld_q[i - 1]))
            return qx_fail(e, QX_EFORMAT, "%s: 'kld_quantiles'[%d] is not a finite KLD >= the previous one", label, i);
        d->kld_q[i] = x;
    }
    d->has_q = true;
    return QX_OK;
}

static qx_status parse_layers(json_t *o, cal_drift *d, const char *label, qx_err *e) {
    json_t *a = json_object_get(o, "per_layer");
    if (!a) return QX_OK;
    if (!json_is_array(a) || json_array_size(a) > CAL_DRIFT_MAX_LAYERS)
        return qx_fail(e, QX_EFORMAT, "%s: 'per_layer' must be an array of at most %d entries", label, CAL_DRIFT_MAX_LAYERS);
    size_t n = json_array_size(a);
    QX_TRY(get_str(o, "per_layer_metric", false, d->per_layer_metric, sizeof d->per_layer_metric, label, e));
    d->layer = malloc((n ? n : 1) * sizeof *d->layer);
    d->layer_err = malloc((n ? n : 1) * sizeof *d->layer_err);
    if (!d->layer || !d->layer_err) return qx_fail(e, QX_ENOMEM, "%s: out of memory", label);
    for (size_t i = 0; i < n; i++) {
        json_t *x = json_array_get(a, i);
        char what[48];
        snprintf(what, sizeof what, "%s per_layer[%zu]", label, i);
        if (!json_is_object(x)) return qx_fail(e, QX_EFORMAT, "%s: not an object", what);
        int64_t l = 0;
        QX_TRY(get_int(x, "layer", true, 0, CAL_DRIFT_MAX_LAYERS - 1, &l, what, e));
        QX_TRY(get_num(x, "error", true, 0, 1e30, &d->layer_err[i], NULL, what, e));
        d->layer[i] = (int)l;
        d->n_layers = (int)i + 1;
    }
    return QX_OK;
}

qx_status cal_drift_parse(const char *json, size_t len, const char *label, cal_drift *d, qx_err *e) {
    memset(d, 0, sizeof *d);
    json_error_t je;
    json_t *o = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!o) return qx_fail(e, QX_EFORMAT, "%s: not JSON (line %d: %s)", label, je.line, je.text);
    qx_status s = QX_OK;
    if (!json_is_object(o)) s = qx_fail(e, QX_EFORMAT, "%s: not a JSON object (want the output of qforge ppl --json)", label);
    if (s == QX_OK) s = get_num(o, "ppl", true, 0, 1e30, &d->ppl, NULL, label, e);
    if (s == QX_OK && d->ppl <= 0) s = qx_fail(e, QX_EFORMAT, "%s: 'ppl' must be > 0", label);
    if (s == QX_OK) s = get_str(o, "protocol", true, d->protocol, sizeof d->protocol, label, e);
    if (s == QX_OK) s = get_int(o, "n_ctx", true, 1, INT64_C(1) << 40, &d->n_ctx, label, e);
    if (s == QX_OK) s = get_int(o, "n_chunks", true, 0, INT64_C(1) << 40, &d->n_chunks, label, e);
    if (s == QX_OK) s = get_int(o, "n_tokens_scored", true, 0, INT64_C(1) << 50, &d->n_tokens, label, e);
    if (s == QX_OK) s = get_str(o, "model", false, d->model, sizeof d->model, label, e);
    if (s == QX_OK) s = get_str(o, "input", false, d->input, sizeof d->input, label, e);
    if (s == QX_OK) s = get_str(o, "base", false, d->base, sizeof d->base, label, e);
    bool pb = false, pw = false;
    if (s == QX_OK) s = get_num(o, "model_file_bytes", false, 1, 1e16, &d->file_bytes, &pb, label, e);
    if (s == QX_OK) s = get_num(o, "model_bpw", false, 0.01, 64, &d->bpw, &pw, label, e);
    if (s == QX_OK && pb != pw) s = qx_fail(e, QX_EFORMAT, "%s: 'model_file_bytes' and 'model_bpw' come together", label);
    d->has_size = s == QX_OK && pb && pw;
    if (s == QX_OK && json_object_get(o, "ppl_base")) {
        s = parse_base(o, d, label, e);
        d->has_base = s == QX_OK;
    }
    if (s == QX_OK) s = parse_layers(o, d, label, e);
    json_decref(o);
    if (s != QX_OK) cal_drift_free(d);
    return s;
}

qx_status cal_drift_load(const char *path, cal_drift *d, qx_err *e) {
    char *buf;
    size_t len;
    memset(d, 0, sizeof *d);
    QX_TRY(qx_read_file(path, &buf, &len, e));
    qx_status s = cal_drift_parse(buf, len, path, d, e);
    free(buf);
    return s;
}

void cal_drift_free(cal_drift *d) {
    if (!d) return;
    free(d->layer);
    free(d->layer_err);
    d->layer = NULL;
    d->layer_err = NULL;
    d->n_layers = 0;
}
