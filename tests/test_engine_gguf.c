/* tests/test_engine_gguf.c — the engine on GGUF files written by `qforge convert`:
 *  - mini-v3 F32 and BF16 (MLA split attn_k_b/attn_v_b run in absorbed form, stacked
 *    experts), mini-llama F32 (permuted q/k + NORM rope + rope_freqs) and mini-qwen2 F32
 *    (biases, tied output): logits of window 0 against the torch references (F32: 1e-3
 *    relative RMS; BF16 re-rounds the weights, so its bound is 2e-2 and its PPL is checked);
 *  - imatrix in GGUF naming from the GGUF (absorbed attention) equals the one from the HF
 *    checkpoint (engine computes the split inputs there) for attn_k_b / attn_v_b / experts;
 *  - the CI gate: Q8_0 passes a strict KLD threshold against the FP8 base, Q2_K fails it. */
#include "tests/util/tu.h"
#include "calib/calib.h"

static qx_status cap(void *ud, int64_t win, int64_t p0, const float *l, int64_t n, int64_t V, qx_err *e) {
    (void)e;
    if (win == 0) memcpy((float *)ud + p0 * V, l, (size_t)(n * V) * sizeof(float));
    return QX_OK;
}
static void logits_check(const char *gguf, const char *model, const char *ref_file, double tol) {
    char rel[256], *idb, *refb; size_t il, rl; qx_err e = {0};
    cal_model *m = NULL;
    TU_OK(cal_model_open(&m, gguf, &e), &e);
    if (!m) return;
    snprintf(rel, sizeof rel, "models/%s/reference/eval_ids.bin", model);
    TU_OK(qx_read_file(tu_shared_path(rel), &idb, &il, &e), &e);
    snprintf(rel, sizeof rel, "models/%s/reference/%s", model, ref_file);
    TU_OK(qx_read_file(tu_shared_path(rel), &refb, &rl, &e), &e);
    const int64_t V = cal_model_hparams(m)->n_vocab;
    float *lg = malloc((size_t)(256 * V) * sizeof(float));
    cal_observer ob = { .ud = lg, .logits = cap };
    TU_OK(cal_forward(m, (const int32_t *)(void *)idb, 1, 256, NULL, &ob, &e), &e);
    double r = tu_rel_rms(lg, (const float *)(void *)refb, (size_t)(256 * V));
    fprintf(stderr, "%s: logits w0 rel RMS %.3g\n", gguf, r);
    TU_CHECK(r < tol, "%s logits rel RMS %g >= %g", gguf, r, tol);
    free(lg); free(idb); free(refb);
    cal_model_close(m);
}

static void imatrix_cross(const char *hf, const char *gguf) {
    char *idb; size_t il; qx_err e = {0};
    TU_OK(qx_read_file(tu_shared_path("models/mini-v3/reference/calib_ids.bin"), &idb, &il, &e), &e);
    cal_imatrix_params p = cal_imatrix_default_params();
    p.n_ctx = 128; p.n_chunks = 4; p.bos_first = false;
    cal_model *a = NULL, *b = NULL;
    im_matrix *ia = NULL, *ib = NULL;
    TU_OK(cal_model_open(&a, hf, &e), &e);
    TU_OK(cal_model_open(&b, gguf, &e), &e);
    if (a) TU_OK(cal_imatrix_run(a, (const int32_t *)(void *)idb, (int64_t)(il / 4), &p, &ia, &e), &e);
    if (b) TU_OK(cal_imatrix_run(b, (const int32_t *)(void *)idb, (int64_t)(il / 4), &p, &ib, &e), &e);
    if (ia && ib) {
        TU_CHECK(ia->n_entries == ib->n_entries, "entries %zu vs %zu", ia->n_entries, ib->n_entries);
        double worst = 0; const char *wn = "";
        for (size_t i = 0; i < ia->n_entries; i++) {
            const im_entry *x = &ia->entries[i], *y = im_find(ib, x->name);
            TU_CHECK(y && y->ne0 == x->ne0 && y->nmat == x->nmat, "%s in both", x->name);
            if (!y || y->ne0 != x->ne0 || y->nmat != x->nmat) continue;
            for (int64_t k = 0; k < x->nmat; k++) TU_CHECK(x->counts[k] == y->counts[k], "%s counts", x->name);
            for (int64_t j = 0; j < x->nmat * x->ne0; j++) {
                double d = fabs((double)x->in_sum2[j] - y->in_sum2[j]) / (fabs(x->in_sum2[j]) + 1e-6);
                if (d > worst) { worst = d; wn = x->name; }
            }
        }
        fprintf(stderr, "imatrix HF (split computed) vs GGUF (absorbed): worst rel diff %.3g (%s)\n", worst, wn);
        TU_CHECK(worst < 1e-3, "imatrix HF vs GGUF %g in %s", worst, wn);
    }
    im_free(ia); im_free(ib); cal_model_close(a); cal_model_close(b); free(idb);
}

int main(void) {
    const char *d = tu_shared_path("models/mini-v3");
    if (!d || !qx_is_dir(d)) return tu_skip("../shared/models not found");
    const char *tmp = tu_tmpdir(), *q = tu_qforge();
    char v3[4096], ll[4096], qw[4096], g[8][600];
    snprintf(v3, sizeof v3, "%s", tu_shared_path("models/mini-v3"));
    snprintf(ll, sizeof ll, "%s", tu_shared_path("models/mini-llama"));
    snprintf(qw, sizeof qw, "%s", tu_shared_path("models/mini-qwen2"));
    static const char *names[] = { "v3-F32", "v3-BF16", "llama-F32", "qwen2-F32", "v3-Q8_0", "v3-Q2_K" };
    static const char *types[] = { "F32", "BF16", "F32", "F32", "Q8_0", "Q2_K" };
    const char *srcs[] = { v3, v3, ll, qw, v3, v3 };
    for (int i = 0; i < 6; i++) {
        snprintf(g[i], sizeof g[i], "%s/%s.gguf", tmp, names[i]);
        int rc = tu_system("%s convert %s -o %s --type %s --quiet > %s/conv%d.log 2>&1", q, srcs[i], g[i], types[i], tmp, i);
        TU_CHECK(rc == 0, "convert %s (rc %d, see %s/conv%d.log)", names[i], rc, tmp, i);
        if (rc) return tu_done("test_engine_gguf");
    }
    {   /* files that are not models: exact status and a message naming the fault */
        qx_err e = {0};
        cal_model *m = NULL;
        char nm[700];
        snprintf(nm, sizeof nm, "%s/notmodel.gguf", tmp);
        gf_writer *w = NULL;
        TU_OK(gf_writer_create(&w, &e), &e);
        if (w) {
            TU_OK(gf_writer_set_str(w, GF_KEY_ARCHITECTURE, "gpt2", &e), &e);
            TU_OK(gf_writer_write_file(w, nm, NULL, &e), &e);
            gf_writer_free(w);
            TU_FAILS(cal_model_open(&m, nm, &e), &e, QX_EUNSUPPORTED, "gpt2");
            TU_CHECK(m == NULL, "no model on failure");
        }
        TU_CHECK(cal_model_open(&m, "no/such/model.gguf", &e) != QX_OK && m == NULL, "missing file");
        TU_FAILS(cal_model_open(&m, tmp, &e), &e, QX_ENOTFOUND, "config.json");
    }
    logits_check(g[0], "mini-v3", "logits_w0_w1.f32", 1e-3);
    logits_check(g[1], "mini-v3", "logits_w0_w1.f32", 2e-2);
    logits_check(g[2], "mini-llama", "logits_w0.f32", 1e-3);
    logits_check(g[3], "mini-qwen2", "logits_w0.f32", 1e-3);
    imatrix_cross(v3, g[0]);

    char ids[4096];
    snprintf(ids, sizeof ids, "%s", tu_shared_path("models/mini-v3/reference/eval_ids.bin"));
    const char *common = "--ctx 256 --chunks 2";
    TU_CHECK(tu_system("%s ppl %s --ids %s %s --save-base %s/base.qfb > %s/base.out 2>&1", q, v3, ids, common, tmp, tmp) == 0, "base");
    int rc8 = tu_system("%s ppl %s --ids %s %s --base %s/base.qfb --max-kld 0.01 --min-top1 0.9 > %s/q8.out 2>&1", q, g[4], ids, common, tmp, tmp);
    int rc2 = tu_system("%s ppl %s --ids %s %s --base %s/base.qfb --max-kld 0.01 --min-top1 0.9 > %s/q2.out 2>&1", q, g[5], ids, common, tmp, tmp);
    int rcb = tu_system("%s ppl %s --ids %s %s --base %s/base.qfb --max-kld 0.001 > %s/bf16.out 2>&1", q, g[1], ids, common, tmp, tmp);
    tu_system("grep -h 'KLD mean\\|same top\\|FAIL' %s/q8.out %s/q2.out %s/bf16.out >&2", tmp, tmp, tmp);
    TU_CHECK(rc8 == 0, "Q8_0 must pass the gate (rc %d)", rc8);
    TU_CHECK(rc2 == 3, "Q2_K must fail the gate with exit 3 (rc %d)", rc2);
    TU_CHECK(rcb == 0, "BF16 must pass a 0.001 KLD gate (rc %d)", rcb);
    return tu_done("test_engine_gguf");
}
