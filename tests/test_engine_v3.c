/* tests/test_engine_v3.c — the forward engine on the mini-v3 FP8 checkpoint against the
 * independent torch reference (../shared/models/mini-v3/reference): hidden states after
 * every layer and the final norm (window 0), logits of windows 0-1 (relative RMS < 1e-3,
 * expected ~1e-5), expert sets of window 0 (routing_w0.json), the YaRN inverse frequencies,
 * results identical for 1 and N threads, and the CPU kernels against their references. */
#include "tests/util/tu.h"
#include "calib/calib.h"
#include "kernels/kernels.h"

#include <jansson.h>
#ifdef _OPENMP
#include <omp.h>
#endif

typedef struct {
    int64_t n_ctx;
    float *hidden[8];        /* per layer (4 = final norm): window 0 [n_ctx, E] */
    float *logits;           /* [2 * n_ctx, V] */
    int32_t *route[8];       /* window 0: [n_ctx, k] */
    int k;
    int64_t E, V;
} obs_t;

static void on_hidden(void *ud, int layer, int64_t t0, const float *h, int64_t T, int64_t E) {
    obs_t *o = ud;
    if (t0 != 0 || layer > 7) return;
    if (!o->hidden[layer]) o->hidden[layer] = malloc((size_t)(o->n_ctx * E) * sizeof(float));
    memcpy(o->hidden[layer], h, (size_t)((T < o->n_ctx ? T : o->n_ctx) * E) * sizeof(float));
}
static void on_routing(void *ud, int layer, int64_t t0, int64_t T, int k, const int32_t *ids, const float *w) {
    obs_t *o = ud; (void)w;
    if (t0 != 0 || layer > 7) return;
    o->k = k;
    if (!o->route[layer]) o->route[layer] = malloc((size_t)(o->n_ctx * k) * sizeof(int32_t));
    memcpy(o->route[layer], ids, (size_t)((T < o->n_ctx ? T : o->n_ctx) * k) * sizeof(int32_t));
}
static qx_status on_logits(void *ud, int64_t win, int64_t p0, const float *l, int64_t n, int64_t V, qx_err *e) {
    obs_t *o = ud; (void)e;
    if (win < 2) memcpy(o->logits + (win * o->n_ctx + p0) * V, l, (size_t)(n * V) * sizeof(float));
    return QX_OK;
}

static void check_kernels(void) {
    /* matmul fast vs reference over several storage types and odd shapes */
    const int64_t R = 37, C = 200, T = 13;
    float *w = malloc(R * C * 4), *x = malloc(T * C * 4), *y0 = malloc(T * R * 4), *y1 = malloc(T * R * 4), *b = malloc(R * 4);
    uint16_t *wb = malloc(R * C * 2);
    uint32_t s = 12345;
    for (int64_t i = 0; i < R * C; i++) { s = s * 1103515245u + 12345u; w[i] = ((int)(s >> 9 & 0xffff) - 32768) / 32768.0f; wb[i] = qt_f32_to_bf16(w[i]); }
    for (int64_t i = 0; i < T * C; i++) { s = s * 1103515245u + 12345u; x[i] = ((int)(s >> 9 & 0xffff) - 32768) / 16384.0f; }
    for (int64_t i = 0; i < R; i++) b[i] = (float)i * 0.01f;
    kn_weight kw;
    TU_CHECK(kn_weight_init(&kw, QT_F32, R, C, w, NULL), "init f32");
    kn_matmul_ref(&kw, x, C, T, b, y0, R);
    kn_matmul(&kw, x, C, T, b, y1, R);
    TU_CHECK(tu_rel_rms(y1, y0, T * R) < 1e-6, "f32 matmul fast vs ref %g", tu_rel_rms(y1, y0, T * R));
    double want = 0; for (int64_t c = 0; c < C; c++) want += (double)w[5 * C + c] * x[3 * C + c];
    TU_NEAR(y0[3 * R + 5], want + 0.05, 1e-4, "matmul element %g vs %g", y0[3 * R + 5], want + 0.05);
    TU_CHECK(kn_weight_init(&kw, QT_BF16, R, C, wb, NULL), "init bf16");
    kn_matmul_ref(&kw, x, C, T, NULL, y0, R);
    kn_matmul(&kw, x, C, T, NULL, y1, R);
    TU_CHECK(tu_rel_rms(y1, y0, T * R) < 1e-6, "bf16 matmul fast vs ref %g", tu_rel_rms(y1, y0, T * R));
    /* attention fast vs reference (GQA, 2 sequences) */
    const int S = 9, H = 4, KV = 2, D = 8;
    float *q = malloc(2 * S * H * D * 4), *k = malloc(2 * S * KV * D * 4), *v = malloc(2 * S * KV * D * 4);
    float *o0 = malloc(2 * S * H * D * 4), *o1 = malloc(2 * S * H * D * 4);
    for (int i = 0; i < 2 * S * H * D; i++) { s = s * 1103515245u + 12345u; q[i] = ((int)(s >> 9 & 0xffff) - 32768) / 16384.0f; }
    for (int i = 0; i < 2 * S * KV * D; i++) { s = s * 1103515245u + 12345u; k[i] = ((int)(s >> 9 & 0xffff) - 32768) / 16384.0f; v[i] = k[i] * 0.5f + 0.1f; }
    kn_attn_args a = { 2, S, H, KV, D, D, q, H * D, D, k, KV * D, D, v, KV * D, D, o0, H * D, 0.3f, NULL, 0 };
    kn_attention_ref(&a);
    a.o = o1;
    kn_attention(&a);
    TU_CHECK(tu_rel_rms(o1, o0, 2 * S * H * D) < 1e-6, "attention fast vs ref");
    /* position 0 attends only to itself: o = v_0 of its kv head */
    TU_NEAR(o0[1 * D + 3], v[0 * D + 3], 1e-6, "attention at position 0");
    free(w); free(x); free(y0); free(y1); free(b); free(wb); free(q); free(k); free(v); free(o0); free(o1);
}

static void check_routing(obs_t *o) {
    const char *p = tu_shared_path("models/mini-v3/reference/routing_w0.json");
    json_error_t je;
    json_t *root = json_load_file(p, 0, &je);
    TU_CHECK(root != NULL, "routing_w0.json: %s", je.text);
    if (!root) return;
    json_t *layers = json_object_get(root, "layers");
    const char *key; json_t *lv;
    int diff = 0, n = 0;
    json_object_foreach(layers, key, lv) {
        int L = atoi(key);
        json_t *ex = json_object_get(lv, "experts");
        TU_CHECK(L < 8 && o->route[L], "routing of layer %d observed", L);
        if (L >= 8 || !o->route[L]) continue;
        for (size_t t = 0; t < json_array_size(ex); t++) {
            json_t *row = json_array_get(ex, t);
            bool same = true;
            for (int j = 0; j < o->k; j++) if (json_integer_value(json_array_get(row, j)) != o->route[L][t * o->k + j]) same = false;
            diff += !same; n++;
        }
    }
    TU_CHECK(n == 3 * 256, "routing rows compared: %d", n);
    TU_CHECK(diff == 0, "routing: %d of %d expert sets differ from the reference", diff, n);
    fprintf(stderr, "routing: %d/%d expert sets identical\n", n - diff, n);
    json_decref(root);
}

int main(void) {
    check_kernels();
    const char *dir = tu_shared_path("models/mini-v3");
    if (!dir || !qx_is_dir(dir)) return tu_skip("../shared/models/mini-v3 not found");
    char mdir[4096];
    snprintf(mdir, sizeof mdir, "%s", dir);
    qx_err e = {0};
    cal_model *m = NULL;
    TU_OK(cal_model_open(&m, mdir, &e), &e);
    if (!m) return tu_done("test_engine_v3");
    const cal_hparams *hp = cal_model_hparams(m);
    static const float yarn[8] = { 1, 0.25693506f, 0.0625f, 0.0138349654f, 0.00249999994f, 0.000790569466f, 0.000250000012f, 7.90569466e-05f };
    for (int j = 0; j < 8; j++) TU_NEAR(hp->rope_inv_freq[j], yarn[j], 1e-6 * yarn[j], "yarn inv_freq[%d] = %.9g", j, hp->rope_inv_freq[j]);
    TU_NEAR(hp->attn_scale, 0.187130335, 1e-7, "softmax scale %.9g", hp->attn_scale);
    TU_CHECK(hp->bos_id == 0, "bos %d", hp->bos_id);

    const int64_t S = 256, E = hp->n_embd, V = hp->n_vocab;
    char *idb; size_t idl;
    TU_OK(qx_read_file(tu_shared_path("models/mini-v3/reference/eval_ids.bin"), &idb, &idl, &e), &e);
    const int32_t *ids = (const int32_t *)idb;
    obs_t o = { .n_ctx = S, .E = E, .V = V };
    o.logits = malloc((size_t)(2 * S * V) * sizeof(float));
    cal_observer ob = { .ud = &o, .hidden = on_hidden, .routing = on_routing, .logits = on_logits };
    cal_run_params rp = cal_run_default_params();
    rp.batch_tokens = 256;   /* one window per batch: exercises the batch loop */
    double t0 = qx_now();
    TU_OK(cal_forward(m, ids, 2, S, &rp, &ob, &e), &e);
    fprintf(stderr, "forward 2 windows: %.2f s\n", qx_now() - t0);
    static const char *hn[5] = { "hidden_after_layer0_w0.f32", "hidden_after_layer1_w0.f32",
                                 "hidden_after_layer2_w0.f32", "hidden_after_layer3_w0.f32", "final_norm_w0.f32" };
    for (int L = 0; L < 5; L++) {
        char rel[256];
        snprintf(rel, sizeof rel, "models/mini-v3/reference/%s", hn[L]);
        float *ref = tu_load_shared_f32(rel, (size_t)(S * E));
        TU_CHECK(ref && o.hidden[L], "%s loaded and observed", hn[L]);
        if (!ref || !o.hidden[L]) continue;
        double r = tu_rel_rms(o.hidden[L], ref, (size_t)(S * E));
        fprintf(stderr, "%s: rel RMS %.3g\n", hn[L], r);
        TU_CHECK(r < 1e-3, "%s rel RMS %g", hn[L], r);
        free(ref);
    }
    float *ref = tu_load_shared_f32("models/mini-v3/reference/logits_w0_w1.f32", (size_t)(2 * S * V));
    TU_CHECK(ref != NULL, "logits reference");
    if (ref) {
        double r = tu_rel_rms(o.logits, ref, (size_t)(2 * S * V)), mx = 0;
        for (size_t i = 0; i < (size_t)(2 * S * V); i++) mx = fmax(mx, fabs((double)o.logits[i] - ref[i]));
        fprintf(stderr, "logits w0-w1: rel RMS %.3g, max |diff| %.3g\n", r, mx);
        TU_CHECK(r < 1e-3, "logits rel RMS %g", r);
        free(ref);
    }
    check_routing(&o);

#ifdef _OPENMP
    /* identical bytes for 1 and N threads */
    float *l1 = malloc((size_t)(2 * S * V) * sizeof(float));
    memcpy(l1, o.logits, (size_t)(2 * S * V) * sizeof(float));
    int nt = omp_get_max_threads();
    rp.n_threads = nt > 1 ? 1 : 2;
    TU_OK(cal_forward(m, ids, 2, S, &rp, &ob, &e), &e);
    TU_CHECK(!memcmp(l1, o.logits, (size_t)(2 * S * V) * sizeof(float)), "logits differ between thread counts");
    omp_set_num_threads(nt);
    free(l1);
#endif
    /* bad input: id out of range */
    int32_t bad[4] = { 1, 2, 99999, 3 };
    TU_FAILS(cal_forward(m, bad, 1, 4, &rp, &ob, &e), &e, QX_EINVAL, "outside the vocabulary");
    for (int i = 0; i < 8; i++) { free(o.hidden[i]); free(o.route[i]); }
    free(o.logits); free(idb);
    cal_model_close(m);
    return tu_done("test_engine_v3");
}
