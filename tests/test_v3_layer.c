/* tests/test_v3_layer.c — the device-style DeepSeek-V3 MoE layer composition that the GPU
 * bench and tests/cuda run (bench/gpu/v3_layer.h: MLA, routing, device-side bucketing,
 * stacked experts, combine, shared expert), executed with the CPU table on mini-v3: starting
 * from the reference hidden state after layer 0, layers 1..3 must reproduce the reference
 * (torch) hidden states with the same bound the engine's own test uses (rel RMS < 1e-3).
 * This checks on the CPU the composition the GPU executes with the CUDA twins. */
#include "tests/util/tu.h"
#include "bench/gpu/v3_hf.h"

int main(void) {
    const char *dir = tu_shared_path("models/mini-v3");
    if (!dir) return tu_skip("../shared/models/mini-v3 is absent");
    char path[4096];
    snprintf(path, sizeof path, "%s", dir);
    qx_err e = {0};
    cal_model *cm = NULL;
    st_model *m = NULL;
    TU_OK(cal_model_open(&cm, path, &e), &e);
    TU_OK(st_open(&m, path, &e), &e);
    if (!cm || !m) return tu_done("test_v3_layer");
    v3_dims d;
    v3_dims_from(cal_model_hparams(cm), &d);
    const int64_t S = 256, T = S;
    float *h = tu_load_shared_f32("models/mini-v3/reference/hidden_after_layer0_w0.f32", (size_t)(T * d.E));
    TU_CHECK(h != NULL, "reference hidden state after layer 0");
    int32_t *pos = malloc((size_t)T * sizeof *pos);
    for (int64_t t = 0; t < T; t++) pos[t] = (int32_t)t;
    const v3_ops *ops = &v3_ops_cpu;
    v3_acts a;
    TU_OK(v3_acts_alloc(ops, &d, T, &a, &e), &e);
    for (int L = 1; h && L <= 3; L++) {
        v3_weights w;
        v3_owned own = {0};
        TU_OK(v3_load_layer(ops, m, &d, L, &w, &own, &e), &e);
        if (e.code != QX_OK) break;
        v3_layer_fwd(ops, &d, &w, &a, h, T, S, pos, cal_model_hparams(cm)->rope_inv_freq);
        v3_owned_free(ops, &own);
        char rel[128];
        snprintf(rel, sizeof rel, "models/mini-v3/reference/hidden_after_layer%d_w0.f32", L);
        float *ref = tu_load_shared_f32(rel, (size_t)(T * d.E));
        TU_CHECK(ref != NULL, "%s", rel);
        if (!ref) break;
        double r = tu_rel_rms(h, ref, (size_t)(T * d.E));
        fprintf(stderr, "layer %d: rel RMS vs reference %.3g\n", L, r);
        TU_CHECK(r < 1e-3, "layer %d through the v3_layer composition: rel RMS %g vs the reference", L, r);
        free(ref);
    }
    v3_acts_free(ops, &a);
    free(h); free(pos);
    st_close(m);
    cal_model_close(cm);
    return tu_done("test_v3_layer");
}
