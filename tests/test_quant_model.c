/* tests/test_quant_model.c — per-type round-trip error of the block quantizers on real
 * weights: the FP8 (e4m3, 128x128 block scales) matrices of ../shared/models/mini-v3,
 * dequantized with qt_fp8_block_dequant, quantized to every type without and with a
 * skewed importance vector, decoded, and compared in double against the float weights.
 * Bounds are per type (measured + 5%; ggml's figures on the same weights are in the
 * comment).  Skips (77) when ../shared is absent. */
#include "tests/util/tu.h"
#include "formats/formats.h"
#include "quant/qt.h"
#include "quant/qt_internal.h"

#include <stdlib.h>

#define MAX_TENSORS 8

static uint64_t s_ = 0x1234567ull;
static double urand(void) { s_ ^= s_ << 13; s_ ^= s_ >> 7; s_ ^= s_ << 17; return ((double)(s_ >> 11) + 0.5) / 9007199254740992.0; }
static double gauss(void) { return sqrt(-2 * log(urand())) * cos(6.283185307179586 * urand()); }

/* measured + 5%.  ggml's quantizers on the same weights and imp (no imp / imp), for scale:
 * Q4_0 .0866/.0706 Q4_1 .0783/.0537 Q5_0 .0424/.0349 Q5_1 .0376/.0257 Q8_0 .00546/.00550
 * Q2_K .296/.191 Q3_K .151/.118 Q4_K .0712/.0549 Q5_K .0356/.0286 Q6_K .0173/.0141
 * IQ4_NL .0761/.0623 IQ4_XS .0767/.0632; ours are 0.3-13% below these, except Q2_K and
 * Q3_K with imp (.1992 and .1196, 4.3% and 1.4% above ggml): their element weights are
 * tuned for end-to-end KLD with a real imatrix (quant/k_quants.c: the KLD with imatrix is
 * 9% / 2% below llama-quantize's on mini-v3), not for this imp-weighted error. */
static const struct { qt_type t; double no_imp, imp; } bounds[] = {
    { QT_Q4_0, 0.0854, 0.0727 }, { QT_Q4_1, 0.0732, 0.0552 }, { QT_Q5_0, 0.0419, 0.0358 },
    { QT_Q5_1, 0.0346, 0.0264 }, { QT_Q8_0, 0.00572, 0.00576 }, { QT_Q2_K, 0.281, 0.209 },
    { QT_Q3_K, 0.153, 0.1256 }, { QT_Q4_K, 0.0739, 0.0563 }, { QT_Q5_K, 0.0360, 0.0285 },
    { QT_Q6_K, 0.0177, 0.0146 }, { QT_IQ4_NL, 0.0777, 0.0629 }, { QT_IQ4_XS, 0.0782, 0.0635 },
};

int main(void) {
    const char *dir = tu_shared_path("models/mini-v3");
    if (!dir) return tu_skip("../shared/models/mini-v3 absent");
    st_model *m = NULL;
    qx_err e;
    TU_OK(st_open(&m, dir, &e), &e);
    if (!m) return tu_done("test_quant_model");

    /* the first MAX_TENSORS FP8 matrices whose rows are a multiple of 256 */
    float *w[MAX_TENSORS] = { 0 };
    int64_t rows[MAX_TENSORS], cols[MAX_TENSORS], nt = 0, maxel = 0;
    for (size_t i = 0; i < st_count(m) && nt < MAX_TENSORS; i++) {
        const st_tensor *t = st_at(m, i);
        if (t->n_dims != 2 || !t->scale_inv || t->dtype != ST_F8_E4M3 || t->shape[1] % 256) continue;
        int64_t r = t->shape[0], c = t->shape[1], sr = (r + 127) / 128, sc = (c + 127) / 128;
        if ((uint64_t)(sr * sc) * 4 != t->scale_inv->nbytes) continue;
        float *scale = malloc((size_t)(sr * sc) * 4);
        memcpy(scale, t->scale_inv->data, (size_t)(sr * sc) * 4);
        w[nt] = malloc(sizeof(float) * (size_t)(r * c));
        qt_fp8_block_dequant(t->data, scale, r, c, 0, r, w[nt]);
        free(scale);
        rows[nt] = r; cols[nt] = c;
        if (r * c > maxel) maxel = r * c;
        nt++;
    }
    TU_CHECK(nt >= 4, "found %lld FP8 matrices with 256-multiple rows", (long long)nt);
    int64_t maxcols = 0;
    for (int k = 0; k < nt; k++) maxcols = cols[k] > maxcols ? cols[k] : maxcols;
    float *imp = malloc(sizeof(float) * (size_t)maxcols), *y = malloc(sizeof(float) * (size_t)maxel);
    uint8_t *q = malloc((size_t)maxel * 4);
    for (int64_t j = 0; j < maxcols; j++) imp[j] = (float)exp(1.5 * gauss());

    for (size_t b = 0; b < sizeof bounds / sizeof bounds[0]; b++) {
        const qt_traits *tr = qt_get_traits(bounds[b].t);
        for (int wi = 0; wi < 2; wi++) {
            double se = 0, sx = 0;
            for (int k = 0; k < nt; k++) {
                qt_quantize_rows(bounds[b].t, w[k], q, rows[k], cols[k], wi ? imp : NULL);
                qt_dequantize_rows(bounds[b].t, q, y, rows[k], cols[k]);
                for (int64_t r = 0; r < rows[k]; r++)
                    for (int64_t j = 0; j < cols[k]; j++) {
                        double ww = wi ? imp[j] : 1.0, x = w[k][r * cols[k] + j], d = x - y[r * cols[k] + j];
                        se += ww * d * d; sx += ww * x * x;
                    }
            }
            /* the fast path matches the scalar _ref bytes on real weights too (last tensor) */
            {
                int k = nt - 1;
                uint64_t rs = qt_row_size(bounds[b].t, cols[k]);
                uint8_t *q2 = malloc(rs * (uint64_t)rows[k]);
                qt_from_float_fn ref = qt_ref_from_float(bounds[b].t);
                for (int64_t r = 0; r < rows[k]; r++) ref(w[k] + r * cols[k], q2 + r * rs, cols[k], wi ? imp : NULL);
                TU_CHECK(!memcmp(q, q2, rs * (uint64_t)rows[k]), "%s imp=%d: fast != _ref on mini-v3", tr->name, wi);
                free(q2);
            }
            double rel = sqrt(se / sx), bound = wi ? bounds[b].imp : bounds[b].no_imp;
            fprintf(stderr, "%-7s imp=%d rel-RMSE %.5f (bound %.4f)\n", tr->name, wi, rel, bound);
            TU_CHECK(rel <= bound, "%s imp=%d: mini-v3 rel-RMSE %.5f > %.4f", tr->name, wi, rel, bound);
        }
    }
    for (int k = 0; k < nt; k++) free(w[k]);
    free(imp); free(y); free(q);
    st_close(m);
    return tu_done("test_quant_model");
}
