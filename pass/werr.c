/* pass/werr.c — the layer-local weight-error pass (ps_werr_run): for every tensor a plan
 * would quantize, its importance-weighted relative weight error at every candidate type,
 * from the model's own weights (an HF checkpoint, FP8 included, or a GGUF) in one streaming
 * pass: the source is decoded a group of rows (whole experts or heads when they fit) at a time by convert/
 * (cv_plan_read_f32, as cv_execute reads it) and quantized in memory to each candidate by
 * calib/ (cal_werr_add, as `qforge sensitivity` does), so its werr are those bits.  No
 * engine, no output file; memory is one slice group in f32 plus two doubles per row.  It
 * measures no KLD: the allocator maps werr to ΔKLD with a sensitivity table's fits
 * (docs/allocation.md). */
#include "pass.h"

#include <regex.h>
#include <stdlib.h>
#include <string.h>

#define GROUP_BYTES (256ull << 20)   /* f32 bytes decoded at a time (at least one row) */

static bool has(const qt_type *c, int n, qt_type t) {
    for (int i = 0; i < n; i++)
        if (c[i] == t) return true;
    return false;
}

/* The floor plan's type of tensor `name` (index i when the plans agree), or -1. */
static int floor_type(const cv_plan *floor, size_t i, const char *name) {
    if (!floor) return -1;
    cv_tensor_info f;
    if (i < cv_plan_tensor_count(floor)) {
        cv_plan_tensor(floor, i, &f);
        if (!strcmp(f.name, name)) return (int)f.type;
    }
    for (size_t k = 0; k < cv_plan_tensor_count(floor); k++) {
        cv_plan_tensor(floor, k, &f);
        if (!strcmp(f.name, name)) return (int)f.type;
    }
    return -1;
}

static bool encodable(qt_type t, bool have_imp) {
    const qt_traits *tr = qt_iq_traits(t) ? qt_iq_traits(t) : qt_get_traits(t);
    return tr && tr->from_float && tr->to_float && (have_imp || !tr->needs_imatrix);
}

static int candidates(const cv_plan *pl, const cv_plan *floor, size_t i, bool assume_imp, qt_type *out) {
    cv_tensor_info t;
    cv_plan_tensor(pl, i, &t);
    bool have = assume_imp || cv_plan_importance(pl, i) != NULL;
    int n = cv_alloc_candidates(&t, have, out);
    if (!n) return 0;
    int ft = floor_type(floor, i, t.name);
    if (ft >= 0 && n < CV_SENS_MAX_OPT && !has(out, n, (qt_type)ft) && qt_row_size((qt_type)ft, t.ne[0]) &&
        encodable((qt_type)ft, have) && cv_alloc_allows(&t, (qt_type)ft))
        out[n++] = (qt_type)ft;
    return n;
}

int ps_werr_candidates(const cv_plan *pl, const cv_plan *floor, size_t i, qt_type *out) {
    return candidates(pl, floor, i, false, out);
}

static qx_status compile_match(regex_t *re, const char *pattern, qx_err *e) {
    if (regcomp(re, pattern, REG_EXTENDED | REG_NOSUB))
        return qx_fail(e, QX_EINVAL, "tensor pattern '%.80s' is not a POSIX extended regex", pattern);
    return QX_OK;
}

/* Rows decoded at a time for a tensor of rows of ne0 in slices of rps rows: whole slices up to
 * max_bytes, else max_bytes of rows (at least one). */
static int64_t group_rows(int64_t ne0, int64_t rows, int64_t rps, uint64_t max_bytes) {
    uint64_t rb = (uint64_t)ne0 * sizeof(float), sb = rb * (uint64_t)rps;
    int64_t g = sb <= max_bytes ? (int64_t)(max_bytes / sb) * rps : (int64_t)(max_bytes / rb);
    if (g < 1) g = 1;
    return g < rows ? g : rows;
}

/* One tensor: decodes it group by group and adds each candidate's sums. */
static qx_status run_tensor(const cv_plan *pl, size_t i, const qt_type *c, int nc, const ps_werr_params *p, float **buf,
                            uint64_t *cap, cal_werr_sum *sum, ps_werr_stats *st, qx_err *e) {
    cv_tensor_info t;
    cv_plan_tensor(pl, i, &t);
    const int64_t ne0 = t.ne[0], rows = (int64_t)(t.n_elems / (uint64_t)ne0), slices = cv_plan_matrices(pl, i);
    const int64_t g = group_rows(ne0, rows, rows / slices, p->group_bytes ? p->group_bytes : GROUP_BYTES);
    const uint64_t need = (uint64_t)g * (uint64_t)ne0 * sizeof(float);
    if (need > *cap) {
        free(*buf);
        *buf = malloc(need);
        *cap = *buf ? need : 0;
        if (!*buf) return qx_fail(e, QX_ENOMEM, "tensor '%s': out of memory for %lld rows in f32", t.name, (long long)g);
    }
    if (need > st->group_bytes) st->group_bytes = need;
    const im_entry *en = cv_plan_importance(pl, i);
    for (int j = 0; j < nc; j++) sum[j] = (cal_werr_sum){0, 0};
    for (int64_t r0 = 0; r0 < rows; r0 += g) {
        int64_t nr = r0 + g <= rows ? g : rows - r0;
        double t0 = qx_now();
        QX_TRY(cv_plan_read_f32(pl, i, r0, nr, *buf, e));
        st->decode_seconds += qx_now() - t0;
        for (int j = 0; j < nc; j++) {
            double t1 = qx_now();
            QX_TRY(cal_werr_add(t.name, *buf, ne0, rows, slices, r0, nr, c[j], en, p->n_threads, NULL, &sum[j], e));
            st->type_seconds[c[j]] += qx_now() - t1;
            st->type_weights[c[j]] += (uint64_t)nr * (uint64_t)ne0;
        }
    }
    return QX_OK;
}

qx_status ps_werr_run(const cv_plan *pl, const cv_plan *floor, const ps_werr_params *p, cv_sens *out, ps_werr_stats *st,
                      qx_err *e) {
    memset(out, 0, sizeof *out);
    memset(st, 0, sizeof *st);
    regex_t re;
    if (p->match) QX_TRY(compile_match(&re, p->match, e));
    size_t nt = cv_plan_tensor_count(pl), todo = 0;
    for (size_t i = 0; i < nt; i++) {
        cv_tensor_info t;
        cv_plan_tensor(pl, i, &t);
        qt_type c[CV_SENS_MAX_OPT];
        todo += ps_werr_candidates(pl, floor, i, c) > 0 && (!p->match || !regexec(&re, t.name, 0, NULL, 0));
    }
    float *buf = NULL;
    uint64_t cap = 0;
    qx_status s = QX_OK;
    double t0 = qx_now();
    for (size_t i = 0; i < nt && s == QX_OK; i++) {
        cv_tensor_info t;
        cv_plan_tensor(pl, i, &t);
        qt_type c[CV_SENS_MAX_OPT];
        int nc = ps_werr_candidates(pl, floor, i, c);
        if (!nc || (p->match && regexec(&re, t.name, 0, NULL, 0))) continue;
        cal_werr_sum sum[CV_SENS_MAX_OPT];
        double t1 = qx_now();
        s = run_tensor(pl, i, c, nc, p, &buf, &cap, sum, st, e);
        cv_sens_tensor *ot = NULL;
        if (s == QX_OK) s = cv_sens_add(out, t.name, t.ne[0], t.n_elems, &ot, e);
        for (int j = 0; s == QX_OK && j < nc; j++)
            ot->opt[ot->n_opt++] = (cv_sens_opt){ c[j], qt_row_size(c[j], t.ne[0]) * (t.n_elems / (uint64_t)t.ne[0]),
                                                  cal_werr_of(&sum[j]), -1, -1 };
        if (s != QX_OK) break;
        st->tensors++;
        st->candidates += (size_t)nc;
        st->weights += t.n_elems;
        if (p->tensor_done) p->tensor_done(p->ud, st->tensors - 1, todo, ot, qx_now() - t1);
    }
    st->seconds = qx_now() - t0;
    free(buf);
    if (p->match) regfree(&re);
    if (s != QX_OK) cv_sens_free(out);
    return s;
}

/* Quantizing rates of the pass, ns per weight per thread (calib/cal_werr_add: quantize with the
 * importance, dequantize, two sums), measured with `qforge sensitivity V3L --werr-only -t 1
 * --tensors 'blk\.1\.ffn_down_exps|blk\.0\.attn_k_b|blk\.0\.attn_q_b'` on a v3-layers
 * checkpoint (the 671B's shapes: experts 2048 x 7168, q_b 1536 x 24576, k_b 128 x 512 x 128)
 * on the project's shared 2-core build machine (docs/allocation.md); rows are independent, so
 * the estimate divides by the thread count.  Types not listed take RATE_DEFAULT. */
typedef struct { qt_type type; double ns; } rate;
static const rate rates[] = {
    {QT_IQ1_S, 28.1}, {QT_IQ1_M, 49.6}, {QT_IQ2_XXS, 33.1}, {QT_IQ2_XS, 35.5}, {QT_IQ2_S, 35.8}, {QT_Q2_K, 20.3},
    {QT_IQ3_XXS, 78.1}, {QT_Q3_K, 8.8}, {QT_IQ3_S, 63.1}, {QT_IQ4_XS, 41.0}, {QT_Q4_K, 17.3}, {QT_Q5_K, 18.4},
    {QT_Q6_K, 9.5}, {QT_Q8_0, 2.3}, {QT_IQ4_NL, 40.7}, {QT_Q4_0, 11.4}, {QT_Q5_0, 12.8},
};
#define RATE_DEFAULT 50.0

static double rate_ns(qt_type t) {
    for (size_t i = 0; i < sizeof rates / sizeof *rates; i++)
        if (rates[i].type == t) return rates[i].ns;
    return RATE_DEFAULT;
}

qx_status ps_werr_estimate_plan(const cv_plan *pl, const cv_plan *floor, const char *match, int n_threads, bool assume_imp,
                                ps_werr_estimate *out, qx_err *e) {
    memset(out, 0, sizeof *out);
    regex_t re;
    if (match) QX_TRY(compile_match(&re, match, e));
    if (n_threads <= 0) n_threads = qx_default_threads();
    for (size_t i = 0; i < cv_plan_tensor_count(pl); i++) {
        cv_tensor_info t;
        cv_plan_tensor(pl, i, &t);
        qt_type c[CV_SENS_MAX_OPT];
        int nc = candidates(pl, floor, i, assume_imp, c);
        if (!nc || (match && regexec(&re, t.name, 0, NULL, 0))) continue;
        out->tensors++;
        out->candidates += (size_t)nc;
        out->weight_candidates += (uint64_t)nc * t.n_elems;
        for (int j = 0; j < nc; j++) out->quant_thread_seconds += 1e-9 * rate_ns(c[j]) * (double)t.n_elems;
        int64_t slices = cv_plan_matrices(pl, i), rows = (int64_t)(t.n_elems / (uint64_t)t.ne[0]);
        uint64_t g = (uint64_t)group_rows(t.ne[0], rows, rows / slices, GROUP_BYTES), mem = g * ((uint64_t)t.ne[0] * sizeof(float) + 16);
        if (mem > out->memory_bytes) out->memory_bytes = mem;
    }
    if (match) regfree(&re);
    out->bytes_read = cv_plan_input_bytes(pl);
    out->decode_seconds = (double)out->bytes_read / (PS_WERR_DECODE_GBPS * 1e9);
    out->seconds = out->quant_thread_seconds / n_threads + out->decode_seconds;
    return QX_OK;
}
