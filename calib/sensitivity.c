/* calib/sensitivity.c — measured sensitivity of a model's output to the type of each of its
 * tensors (cal_sens_run): the tensor is quantized in memory exactly as convert/ would write
 * it (row by row, importance of its expert slice), substituted for the file's data
 * (cal_model_override) and the whole model is run over the windows against a base of the
 * unmodified model: the mean KLD is that tensor's cost at that type.  Also the
 * importance-weighted relative squared error of the weights, the layer-local proxy the
 * allocator interpolates with.  It does not choose types (convert/alloc.c does) and does not
 * write files. */
#include "engine_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

cal_sens_params cal_sens_default_params(void) {
    cal_sens_params p;
    memset(&p, 0, sizeof p);
    p.ppl = cal_ppl_default_params();
    return p;
}

static const qt_traits *enc_traits(qt_type t) {
    const qt_traits *tr = qt_get_traits(t);
    if (!tr || !tr->from_float) {
        const qt_traits *iq = qt_iq_traits(t);
        if (iq) tr = iq;
    }
    return tr && tr->from_float && tr->to_float ? tr : NULL;
}

qx_status cal_sens_decode(cal_model *m, const gf_tensor *t, bool release, float **out, qx_err *e) {
    *out = malloc(t->n_elems * sizeof(float));
    if (!*out) return qx_fail(e, QX_ENOMEM, "tensor '%s': out of memory", t->name);
    const qt_traits *tr = qt_get_traits(t->type);
    if (!tr || !tr->to_float) { free(*out); *out = NULL; return qx_fail(e, QX_EUNSUPPORTED, "tensor '%s': type %s cannot be decoded", t->name, qt_type_name(t->type)); }
    qt_dequantize_rows(t->type, t->data, *out, (int64_t)(t->n_elems / (uint64_t)t->ne[0]), t->ne[0]);
    if (release) gf_release(m->gf, t);
    return QX_OK;
}

qx_status cal_werr_add(const char *name, const float *src, int64_t n, int64_t rows, int64_t slices, int64_t r0, int64_t nr,
                       qt_type type, const im_entry *en, int n_threads, uint8_t *q, cal_werr_sum *sum, qx_err *e) {
    const qt_traits *tr = enc_traits(type);
    const uint64_t rs = qt_row_size(type, n);
    if (!tr || !rs || slices < 1 || rows % slices || r0 < 0 || nr < 1 || r0 + nr > rows)
        return qx_fail(e, QX_EINVAL, "tensor '%s': cannot quantize rows of %lld to %s", name, (long long)n, qt_type_name(type));
    const int64_t rps = rows / slices, x0 = r0 / rps, nx = (r0 + nr - 1) / rps - x0 + 1;
    if (en && (en->ne0 != n || (en->nmat != 1 && en->nmat != slices))) en = NULL;
    if (tr->needs_imatrix && !en) return qx_fail(e, QX_EINVAL, "tensor '%s': type %s needs an importance matrix entry", name, qt_type_name(type));
    float *imp = en ? malloc((size_t)(nx * n) * sizeof(float)) : NULL;   /* [nx, n]: slices x0 .. x0 + nx - 1 */
    double *acc = malloc((size_t)(2 * nr + 1) * sizeof(double));         /* [nr][2]: Σ imp (w-q)^2, Σ imp w^2 */
    if ((en && !imp) || !acc) { free(imp); free(acc); return qx_fail(e, QX_ENOMEM, "tensor '%s': out of memory", name); }
    for (int64_t x = 0; en && x < nx; x++) {
        qx_status s = im_importance(en, en->nmat > 1 ? x0 + x : 0, imp + x * n, e);
        if (s != QX_OK) { free(imp); free(acc); return s; }
    }
    int fail = 0;
    if (n_threads <= 0) n_threads = qx_default_threads();
#ifdef _OPENMP
#pragma omp parallel num_threads(n_threads) reduction(+ : fail)
#endif
    {
        float *d = malloc((size_t)n * sizeof(float));
        uint8_t *scratch = q ? NULL : malloc(rs);
        if (!d || (!q && !scratch)) fail++;
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 4)
#endif
        for (int64_t r = 0; r < nr; r++) {
            if (fail) continue;
            const float *w = src + r * n, *ip = imp ? imp + ((r0 + r) / rps - x0) * n : NULL;
            uint8_t *qr = q ? q + (uint64_t)r * rs : scratch;
            tr->from_float(w, qr, n, ip);
            tr->to_float(qr, d, n);
            double a = 0, b = 0;
            for (int64_t j = 0; j < n; j++) {
                double wt = ip ? ip[j] : 1.0, dd = (double)w[j] - d[j];
                a += wt * dd * dd;
                b += wt * (double)w[j] * w[j];
            }
            acc[2 * r] = a;
            acc[2 * r + 1] = b;
        }
        free(d);
        free(scratch);
    }
    for (int64_t r = 0; r < nr && !fail; r++) { sum->num += acc[2 * r]; sum->den += acc[2 * r + 1]; }
    free(imp);
    free(acc);
    if (fail) return qx_fail(e, QX_ENOMEM, "tensor '%s': out of memory", name);
    return QX_OK;
}

double cal_werr_of(const cal_werr_sum *sum) { return sum->den > 0 ? sum->num / sum->den : 0.0; }

qx_status cal_sens_quantize(const gf_tensor *t, const float *src, qt_type type, int64_t matrices, const im_matrix *im,
                            int n_threads, uint8_t *q, double *werr, qx_err *e) {
    const int64_t n = t->ne[0], rows = (int64_t)(t->n_elems / (uint64_t)n);
    const im_entry *en = im ? im_find(im, t->name) : NULL;
    const int64_t slices = matrices > 0 ? matrices : t->ne[2] * t->ne[3];
    cal_werr_sum sum = {0, 0};
    QX_TRY(cal_werr_add(t->name, src, n, rows, slices, 0, rows, type, en, n_threads, q, &sum, e));
    *werr = cal_werr_of(&sum);
    return QX_OK;
}

qx_status cal_sens_run(cal_model *m, const int32_t *ids, int64_t n_ids, const cal_sens_params *p, cal_sens_item *items,
                       size_t n, qx_err *e) {
    if (!m->gf) return qx_fail(e, QX_EUNSUPPORTED, "%s: sensitivity needs a GGUF model (F32/F16/BF16 or Q8_0)", m->path);
    for (size_t i = 0; i < n; i++)
        if (items[i].measure && !p->ppl.base) return qx_fail(e, QX_EINVAL, "sensitivity: measuring needs a base file");
    float *src = NULL;
    uint8_t *q = NULL;
    const char *cur = NULL;
    qx_status s = QX_OK;
    for (size_t i = 0; i < n && s == QX_OK; i++) {
        cal_sens_item *it = &items[i];
        const gf_tensor *t = gf_find_tensor(m->gf, it->name);
        if (!t) { s = qx_fail(e, QX_ENOTFOUND, "%s: no tensor '%s'", m->path, it->name); break; }
        if (!cur || strcmp(cur, it->name)) {
            free(src);
            src = NULL;
            s = cal_sens_decode(m, t, true, &src, e);
            if (s != QX_OK) break;
            cur = it->name;
        }
        uint64_t bytes = qt_row_size(it->type, t->ne[0]) * (t->n_elems / (uint64_t)t->ne[0]);
        free(q);
        q = bytes ? malloc(bytes) : NULL;
        if (!q) { s = qx_fail(e, bytes ? QX_ENOMEM : QX_EINVAL, "tensor '%s': cannot hold type %s", it->name, qt_type_name(it->type)); break; }
        it->bytes = bytes;
        s = cal_sens_quantize(t, src, it->type, it->matrices, p->im, p->ppl.n_threads, q, &it->werr, e);
        if (s == QX_OK && it->measure) {
            s = cal_model_override(m, it->name, it->type, q, e);
            cal_ppl_result r;
            if (s == QX_OK) s = cal_ppl_run(m, ids, n_ids, &p->ppl, &r, e);
            qx_err e2;
            qx_err_clear(&e2);
            cal_model_override(m, it->name, it->type, NULL, &e2);
            if (s == QX_OK) {
                it->kld = r.kld_mean;
                it->kld_err = r.kld_err;
                it->top1 = r.top1_agree;
                it->measured = true;
            }
        }
        if (s == QX_OK && p->item_done) p->item_done(p->ud, i, n, it);
    }
    free(src);
    free(q);
    return s;
}
