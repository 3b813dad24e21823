/* tests/cuda/test_cuda_layer.c — the device-resident DeepSeek-V3 MoE layer (bench/gpu/
 * v3_layer.h with the CUDA twins: activations never leave the GPU inside a layer) on mini-v3:
 * from the reference hidden state after layer 0, layers 1..3 on the GPU must match the torch
 * reference (rel RMS < 1e-3, the engine's bound) and the same composition on the CPU
 * (rel RMS < 1e-4).  Needs a GPU (make test-cuda). */
#include "tests/util/tu.h"
#include "bench/gpu/v3_hf.h"
#include "bench/gpu/v3_cuda_ops.h"

int main(void) {
    qx_err e = {0};
    if (kn_cuda_init(&e) != QX_OK) { fprintf(stderr, "FAIL: needs a GPU: %s\n", e.msg); return 1; }
    const char *dir = tu_shared_path("models/mini-v3");
    if (!dir) { fprintf(stderr, "FAIL: mini-v3 is absent (set QF_SHARED)\n"); return 1; }
    char path[4096];
    snprintf(path, sizeof path, "%s", dir);
    cal_model *cm = NULL;
    st_model *m = NULL;
    TU_OK(cal_model_open(&cm, path, &e), &e);
    TU_OK(st_open(&m, path, &e), &e);
    if (!cm || !m) return tu_done("test_cuda_layer");
    const cal_hparams *hp = cal_model_hparams(cm);
    v3_dims d;
    v3_dims_from(hp, &d);
    const int64_t S = 256, T = S;
    const size_t hb = (size_t)(T * d.E) * sizeof(float);
    float *h = tu_load_shared_f32("models/mini-v3/reference/hidden_after_layer0_w0.f32", (size_t)(T * d.E));
    float *hc = malloc(hb), *hg = malloc(hb);
    TU_CHECK(h != NULL, "reference hidden state after layer 0");
    if (!h) return tu_done("test_cuda_layer");
    memcpy(hc, h, hb);
    int32_t *pos = malloc((size_t)T * sizeof *pos);
    for (int64_t t = 0; t < T; t++) pos[t] = (int32_t)t;
    const v3_ops *cu = &v3_ops_cuda, *cpu = &v3_ops_cpu;
    v3_acts ac, ag;
    TU_OK(v3_acts_alloc(cpu, &d, T, &ac, &e), &e);
    TU_OK(v3_acts_alloc(cu, &d, T, &ag, &e), &e);
    float *dh = v3_cu_alloc(hb), *dinv = v3_cu_alloc((size_t)d.ROPE / 2 * sizeof(float));
    int32_t *dpos = v3_cu_alloc((size_t)T * sizeof *pos);
    TU_OK(kn_cuda_upload(dh, h, hb, &e), &e);
    TU_OK(kn_cuda_upload(dpos, pos, (size_t)T * sizeof *pos, &e), &e);
    TU_OK(kn_cuda_upload(dinv, hp->rope_inv_freq, (size_t)d.ROPE / 2 * sizeof(float), &e), &e);
    for (int L = 1; L <= 3; L++) {
        v3_weights wc, wg;
        v3_owned oc = {0}, og = {0};
        TU_OK(v3_load_layer(cpu, m, &d, L, &wc, &oc, &e), &e);
        TU_OK(v3_load_layer(cu, m, &d, L, &wg, &og, &e), &e);
        if (e.code != QX_OK) break;
        v3_layer_fwd(cpu, &d, &wc, &ac, hc, T, S, pos, hp->rope_inv_freq);
        v3_layer_fwd(cu, &d, &wg, &ag, dh, T, S, dpos, dinv);
        TU_OK(kn_cuda_sync(&e), &e);
        TU_OK(kn_cuda_download(hg, dh, hb, &e), &e);
        v3_owned_free(cpu, &oc);
        v3_owned_free(cu, &og);
        char rel[128];
        snprintf(rel, sizeof rel, "models/mini-v3/reference/hidden_after_layer%d_w0.f32", L);
        float *ref = tu_load_shared_f32(rel, (size_t)(T * d.E));
        TU_CHECK(ref != NULL, "%s", rel);
        if (!ref) break;
        double rg = tu_rel_rms(hg, ref, (size_t)(T * d.E)), rc = tu_rel_rms(hg, hc, (size_t)(T * d.E));
        fprintf(stderr, "layer %d on the GPU: rel RMS %.3g vs reference, %.3g vs the CPU composition\n", L, rg, rc);
        TU_CHECK(rg < 1e-3, "layer %d: GPU vs reference rel RMS %g", L, rg);
        TU_CHECK(rc < 1e-4, "layer %d: GPU vs CPU composition rel RMS %g", L, rc);
        free(ref);
    }
    v3_acts_free(cpu, &ac);
    v3_acts_free(cu, &ag);
    kn_cuda_free(dh); kn_cuda_free(dinv); kn_cuda_free(dpos);
    free(h); free(hc); free(hg); free(pos);
    st_close(m);
    cal_model_close(cm);
    return tu_done("test_cuda_layer");
}
