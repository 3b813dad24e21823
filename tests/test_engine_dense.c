/* tests/test_engine_dense.c — the forward engine on mini-llama (GQA, llama3 rope scaling) and
 * mini-qwen2 (qkv biases, tied output, BOS from generation_config) against their
 * independent torch references: hidden after layer 0, final norm and logits of window 0
 * within 1e-3 relative RMS. */
#include "tests/util/tu.h"
#include "calib/calib.h"

typedef struct { int64_t S, E, V; float *h0, *fn, *logits; } obs_t;

static void on_hidden(void *ud, int layer, int64_t t0, const float *h, int64_t T, int64_t E) {
    obs_t *o = ud;
    if (t0 != 0) return;
    float **dst = layer == 0 ? &o->h0 : layer == 4 ? &o->fn : NULL;
    if (!dst) return;
    *dst = malloc((size_t)(T * E) * sizeof(float));
    memcpy(*dst, h, (size_t)(T * E) * sizeof(float));
}
static qx_status on_logits(void *ud, int64_t win, int64_t p0, const float *l, int64_t n, int64_t V, qx_err *e) {
    obs_t *o = ud; (void)e;
    if (win == 0) memcpy(o->logits + p0 * V, l, (size_t)(n * V) * sizeof(float));
    return QX_OK;
}
static void cmp_file(const char *model, const char *file, const float *got, size_t n) {
    char rel[256], *buf; size_t len; qx_err e;
    snprintf(rel, sizeof rel, "models/%s/reference/%s", model, file);
    TU_CHECK(got != NULL, "%s %s observed", model, file);
    TU_OK(qx_read_file(tu_shared_path(rel), &buf, &len, &e), &e);
    if (!got || len != n * 4) { TU_CHECK(0, "%s %s size %zu", model, file, len); return; }
    double r = tu_rel_rms(got, (const float *)buf, n);
    fprintf(stderr, "%s %s: rel RMS %.3g\n", model, file, r);
    TU_CHECK(r < 1e-3, "%s %s rel RMS %g", model, file, r);
    free(buf);
}

static void run(const char *model, cal_arch arch, int32_t bos) {
    char rel[256];
    snprintf(rel, sizeof rel, "models/%s", model);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", tu_shared_path(rel));
    qx_err e = {0};
    cal_model *m = NULL;
    TU_OK(cal_model_open(&m, dir, &e), &e);
    if (!m) return;
    const cal_hparams *hp = cal_model_hparams(m);
    TU_CHECK(hp->arch == arch, "%s arch", model);
    TU_CHECK(hp->bos_id == bos, "%s bos %d, want %d", model, hp->bos_id, bos);
    const int64_t S = 256;
    obs_t o = { S, hp->n_embd, hp->n_vocab, NULL, NULL, NULL };
    o.logits = malloc((size_t)(S * o.V) * sizeof(float));
    char *idb; size_t idl;
    snprintf(rel, sizeof rel, "models/%s/reference/eval_ids.bin", model);
    TU_OK(qx_read_file(tu_shared_path(rel), &idb, &idl, &e), &e);
    cal_observer ob = { .ud = &o, .hidden = on_hidden, .logits = on_logits };
    TU_OK(cal_forward(m, (const int32_t *)idb, 1, S, NULL, &ob, &e), &e);
    cmp_file(model, "hidden_after_layer0_w0.f32", o.h0, (size_t)(S * o.E));
    cmp_file(model, "final_norm_w0.f32", o.fn, (size_t)(S * o.E));
    cmp_file(model, "logits_w0.f32", o.logits, (size_t)(S * o.V));
    free(o.h0); free(o.fn); free(o.logits); free(idb);
    cal_model_close(m);
}

int main(void) {
    const char *d = tu_shared_path("models/mini-llama");
    if (!d || !qx_is_dir(d)) return tu_skip("../shared/models/mini-llama not found");
    run("mini-llama", CAL_ARCH_LLAMA, 2040);
    run("mini-qwen2", CAL_ARCH_QWEN2, 2044);
    return tu_done("test_engine_dense");
}
