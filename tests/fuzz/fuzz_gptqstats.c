/* tests/fuzz/fuzz_gptqstats.c — libFuzzer target over cal_hessian_parse_layer (one layer's
 * payload of a --gptq-save statistics file, calib/hessian_file.c) for a small fixed model
 * shape: the first byte picks the layer; a parse either fails with a message or leaves
 * matrices whose every value is finite and whose factor, when asked, is finite too. */
#include "calib/calib.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    cal_hparams hp;
    memset(&hp, 0, sizeof hp);
    hp.n_layer = 2; hp.n_embd = 8; hp.n_exp = 4; hp.n_exp_used = 2; hp.n_head = 2;
    cal_hessians *h = NULL;
    qx_err e = {0};
    if (cal_hessian_create(&hp, NULL, &h, &e) != QX_OK) return 0;
    int layer = data[0] % 4 - 1;   /* -1 .. 2: out-of-range layers must be refused */
    if (cal_hessian_parse_layer(h, layer, data + 1, size - 1, "fuzz.qfh", &e) != QX_OK) {
        if (e.code == QX_OK || !e.msg[0]) __builtin_trap();
    } else {
        cal_hessian_count c[64];
        size_t n = cal_hessian_counts(h, layer, c, 64);
        for (size_t i = 0; i < n && i < 64; i++) {
            float *U = NULL;
            int64_t cols = 0;
            const float *H = cal_hessian_get(h, c[i].name, c[i].mat, &cols, NULL);
            if (H && cols > 0 && cols <= 64) {
                for (int64_t j = 0; j < cols * cols; j++) if (!isfinite(H[j])) __builtin_trap();
                if (cal_hessian_factor_one(h, c[i].name, c[i].mat, cols, 0.1, 0, &U, NULL, &e) != QX_OK) {}
                for (int64_t j = 0; U && j < cols * cols; j++) if (!isfinite(U[j])) __builtin_trap();
                free(U);
            }
        }
    }
    cal_hessian_free(h);
    return 0;
}
