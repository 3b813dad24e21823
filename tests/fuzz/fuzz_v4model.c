/* tests/fuzz/fuzz_v4model.c — libFuzzer target over the engine's GGUF model source for
 * deepseek4 (calib/model_gguf.c: cal_model_open_gguf_v4 and the per-layer loader): the input
 * is written to a temporary file (the engine opens models by path) and opened; a model that
 * opens runs one 16-token window through every layer.  Either step may fail, but only with a
 * status and a message; nothing may crash, hang or read outside the file. */
#include "calib/calib.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[] = "/tmp/qf_fuzz_v4_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return 0;
    size_t done = 0;
    while (done < size) {
        ssize_t w = write(fd, data + done, size - done);
        if (w <= 0) break;
        done += (size_t)w;
    }
    close(fd);
    qx_err e = {0};
    cal_model *m = NULL;
    qx_status s = cal_model_open(&m, path, &e);
    if (s != QX_OK && (m != NULL || !e.msg[0])) __builtin_trap();
    if (s == QX_OK) {
        const cal_hparams *hp = cal_model_hparams(m);
        enum { N = 16 };
        int32_t ids[N];
        for (int i = 0; i < N; i++) ids[i] = hp->n_vocab > 0 ? (int32_t)(i * 7 % hp->n_vocab) : 0;
        /* bounded work: only small models run (the input's size bounds the weights, not the
         * hyper-parameters that size the activations) */
        if (hp->n_vocab > 0 && cal_state_width(hp) <= 4096 && hp->n_head * hp->head_dim <= 4096 && hp->n_layer <= 64) {
            cal_run_params p = cal_run_default_params();
            p.n_threads = 1;
            e.msg[0] = 0;
            s = cal_forward(m, ids, 1, N, &p, NULL, &e);
            if (s != QX_OK && !e.msg[0]) __builtin_trap();
        }
    }
    cal_model_close(m);
    unlink(path);
    return 0;
}
