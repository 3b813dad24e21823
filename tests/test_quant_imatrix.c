/* tests/test_quant_imatrix.c — an importance matrix must make the quantizers better where
 * it matters: the output error of the layer, E = sum_t ||(W - Wq) x_t||^2, over real
 * mini-v3 activations x_t.  The activations come from the engine (cal_forward on
 * calibration windows of reference/calib_ids.bin); the first half of the rows gives the
 * importance (mean x^2 per input channel, as llama-imatrix computes it), the other half
 * (held out) gives the error.  Weights of every kind: attention projections, dense FFN,
 * routed and shared experts, lm_head; 256/512-wide rows at Q2_K and Q3_K, 128/192-wide rows
 * at Q4_0 (the presets' fallback).  The imatrix must lower the error clearly (geometric
 * mean over the weights and total), and no single weight may get clearly worse.  Before
 * the fix in quant/search.c (importance alone as the element weight, instead of
 * imp * sqrt(sigma^2 + x^2)) Q2_K and Q3_K failed the geometric-mean bounds, and
 * convert --imatrix at Q2_K raised the KLD of mini-v3 from 0.0565 to 0.0616. */
#include "tests/util/tu.h"
#include "tests/util/tu_acts.h"
#include "calib/calib.h"
#include "formats/formats.h"
#include "quant/qt.h"

#include <math.h>

#define MAXC 512

typedef tu_act_w sel_w;

/* E = sum_r d_r C d_r^T with d = W - deq(quant(W, imp)), C = sum_t x_t x_t^T. */
static double out_err(qt_type t, const float *W, int64_t rows, int64_t nc, const float *imp, const double *C,
                      float *deq, void *q) {
    qt_quantize_rows(t, W, q, rows, nc, imp);
    qt_dequantize_rows(t, q, deq, rows, nc);
    double E = 0;
    double d[MAXC];
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t j = 0; j < nc; j++) d[j] = (double)W[r * nc + j] - deq[r * nc + j];
        for (int64_t i = 0; i < nc; i++) {
            double a = 0;
            for (int64_t j = 0; j < nc; j++) a += C[i * nc + j] * d[j];
            E += d[i] * a;
        }
    }
    return E;
}

int main(void) {
    const char *d = tu_shared_path("models/mini-v3");
    if (!d || !qx_is_dir(d)) return tu_skip("../shared/models/mini-v3 not found");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", d);
    qx_err e = {0};
    cal_model *m = NULL;
    st_model *st = NULL;
    TU_OK(cal_model_open(&m, dir, &e), &e);
    TU_OK(st_open(&st, dir, &e), &e);
    char *idb = NULL; size_t idl = 0;
    TU_OK(qx_read_file(tu_shared_path("models/mini-v3/reference/calib_ids.bin"), &idb, &idl, &e), &e);
    if (!m || !st || !idb) return tu_done("test_quant_imatrix");

    sel_w ws[] = {
        { CAL_W_Q_A, 1, -1, NULL, 0, 0, 0 },      { CAL_W_KV_A, 2, -1, NULL, 0, 0, 0 },
        { CAL_W_GATE, 0, -1, NULL, 0, 0, 0 },     { CAL_W_UP, 0, -1, NULL, 0, 0, 0 },
        { CAL_W_EXP_GATE, 1, 3, NULL, 0, 0, 0 },  { CAL_W_EXP_UP, 2, 7, NULL, 0, 0, 0 },
        { CAL_W_EXP_GATE, 3, 11, NULL, 0, 0, 0 }, { CAL_W_SH_UP, 3, -1, NULL, 0, 0, 0 },
        { CAL_W_OUTPUT, -1, -1, NULL, 0, 0, 0 },  { CAL_W_DOWN, 0, -1, NULL, 0, 0, 0 },
        /* rows of 128/192: the presets' Q4_0 fallback (row length not a multiple of 256) */
        { CAL_W_Q_B, 1, -1, NULL, 0, 0, 0 },      { CAL_W_O, 2, -1, NULL, 0, 0, 0 },
        { CAL_W_EXP_DOWN, 1, 5, NULL, 0, 0, 0 },  { CAL_W_EXP_DOWN, 3, 11, NULL, 0, 0, 0 },
        { CAL_W_SH_DOWN, 2, -1, NULL, 0, 0, 0 },
    };
    const int nw = (int)(sizeof ws / sizeof ws[0]);
    tu_acts c = { ws, nw, MAXC };
    cal_observer obs = {0};
    obs.ud = &c;
    obs.matmul_input = tu_acts_on_input;
    cal_run_params rp = cal_run_default_params();
    rp.want_logits = true;
    const int64_t n_ctx = 128, n_win = tu_quick() ? 8 : 24;
    TU_CHECK((int64_t)(idl / 4) >= n_win * n_ctx, "calib_ids too short");
    double t0 = qx_now();
    TU_OK(cal_forward(m, (const int32_t *)(void *)idb, n_win, n_ctx, &rp, &obs, &e), &e);
    fprintf(stderr, "forward %lld x %lld tokens: %.2f s\n", (long long)n_win, (long long)n_ctx, qx_now() - t0);

    const qt_type types[] = { QT_Q2_K, QT_Q3_K, QT_Q4_0 };
    /* The total error (dominated by lm_head) must drop by `margin`, the geometric mean over
     * the weights of (error with / error without) by `gmargin`, and no weight may get worse
     * by more than worst_ok (held-out activations of rarely routed experts are noisy).
     * Q4_0 is the presets' fallback for rows of 128/192: it must not get worse overall.
     * Measured at 24 windows: Q2_K total -10.9%, geomean 0.906; Q3_K -6.2%, 0.943; Q4_0
     * -1.8%, 0.832, worst +4.2% (an expert down_proj, 931 activation rows).  The sigma2
     * factors of quant/k_quants.c were chosen by end-to-end KLD, not by this error: Q3_K's
     * f = 4 gave -7.9% here but a smaller KLD gain than f = 0.5; Q2_K's f = 1 gave -12.6%.
     * Before the fix (importance alone as the element weight): Q2_K -9.2%, 0.935 and +2.6%
     * on blk.0 ffn_gate; Q3_K -6.3%, 0.954 and +3.0% on an expert up_proj; Q4_0 -1.2%, 0.843.
     * Since issue 11 every block's scale is rescaled to the unbiased value (quant/unbias.c),
     * which costs some of this least-squares error and some of the imatrix's gain on it:
     * Q2_K total -6.3%, geomean 0.960; Q3_K -4.9%, 0.956 (the end-to-end KLD with imatrix fell
     * 8.5% / 2.6% with that change). */
    const double margin[] = { 0.04, 0.03, 0.0 }, gmargin[] = { 0.03, 0.03, 0.0 };
    const double worst_ok = tu_quick() ? 1.12 : 1.08;
    double tot_none[3] = { 0, 0, 0 }, tot_imp[3] = { 0, 0, 0 }, logr[3] = { 0, 0, 0 };
    int nlog[3] = { 0, 0, 0 };
    for (int i = 0; i < nw; i++) {
        sel_w *s = &ws[i];
        char name[256];
        TU_CHECK(cal_weight_name(s->kind, s->layer, s->expert, false, name, sizeof name), "name of kind %d", (int)s->kind);
        const st_tensor *t = st_find(st, name);
        TU_CHECK(t != NULL, "%s not in the checkpoint", name);
        TU_CHECK(s->n >= 64, "%s: only %lld activation rows", name, (long long)s->n);
        if (!t || s->n < 64 || t->n_dims != 2 || t->shape[1] != s->cols) continue;
        const int64_t nc = s->cols;
        int64_t rows = t->shape[0], nfit = s->n / 2;
        float *W = malloc((size_t)(rows * nc) * sizeof(float)), *deq = malloc((size_t)(rows * nc) * sizeof(float));
        void *q = malloc((size_t)rows * qt_row_size(QT_Q8_0, nc) * 2);
        double *C = calloc((size_t)(nc * nc), sizeof(double));
        float imp[MAXC];
        TU_OK(st_tensor_rows_f32(t, 0, rows, W, &e), &e);
        /* importance from the fit half: mean x^2 */
        for (int64_t j = 0; j < nc; j++) {
            double a = 0;
            for (int64_t r = 0; r < nfit; r++) a += (double)s->x[r * nc + j] * s->x[r * nc + j];
            imp[j] = (float)(a / (double)nfit);
        }
        /* covariance of the held-out half */
        for (int64_t r = nfit; r < s->n; r++) {
            const float *x = s->x + r * nc;
            for (int64_t a = 0; a < nc; a++) {
                double xa = x[a];
                for (int64_t b = 0; b < nc; b++) C[a * nc + b] += xa * x[b];
            }
        }
        for (int k = 0; k < 3; k++) {
            if ((nc % 256 == 0) != (types[k] != QT_Q4_0)) continue;
            double en = out_err(types[k], W, rows, nc, NULL, C, deq, q);
            double ei = out_err(types[k], W, rows, nc, imp, C, deq, q);
            fprintf(stderr, "%-48s %-5s rows %4lld act %5lld: E none %.4e  imatrix %.4e  (%+.1f%%)\n", name,
                    qt_type_name(types[k]), (long long)rows, (long long)s->n, en, ei, 100 * (ei / en - 1));
            TU_CHECK(ei <= en * worst_ok, "%s %s: imatrix error %.4e more than %.0f%% above the plain error %.4e", name,
                     qt_type_name(types[k]), ei, 100 * (worst_ok - 1), en);
            tot_none[k] += en; tot_imp[k] += ei;
            logr[k] += log(ei / en); nlog[k]++;
        }
        free(W); free(deq); free(q); free(C);
    }
    for (int k = 0; k < 3; k++) {
        double g = nlog[k] ? exp(logr[k] / nlog[k]) : 1;
        fprintf(stderr, "%s total: none %.4e imatrix %.4e (%+.1f%%); geometric mean of the ratios %.4f\n", qt_type_name(types[k]),
                tot_none[k], tot_imp[k], 100 * (tot_imp[k] / tot_none[k] - 1), g);
        TU_CHECK(g < 1 - gmargin[k], "%s: geometric mean error ratio %.4f not below %.2f", qt_type_name(types[k]), g, 1 - gmargin[k]);
        TU_CHECK(tot_imp[k] < tot_none[k] * (1 - margin[k]), "%s: imatrix total error %.4e not %.0f%% below %.4e",
                 qt_type_name(types[k]), tot_imp[k], 100 * margin[k], tot_none[k]);
    }
    for (int i = 0; i < nw; i++) free(ws[i].x);
    free(idb);
    st_close(st);
    cal_model_close(m);
    return tu_done("test_quant_imatrix");
}
