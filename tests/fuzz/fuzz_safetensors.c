/* tests/fuzz/fuzz_safetensors.c — libFuzzer target: a whole safetensors file in memory
 * (header length, JSON header, data), opened, every tensor decoded. */
#include "formats/formats.h"
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    qx_err e = {0};
    st_model *m;
    if (st_open_mem(&m, data, size, "fuzz.safetensors", &e) != QX_OK) return 0;
    for (size_t i = 0; i < st_count(m); i++) {
        const st_tensor *t = st_at(m, i);
        if (t->n_dims > 2 || t->n_elems > (1u << 20)) continue;
        int64_t rows = t->n_dims == 2 ? t->shape[0] : 1;
        float *out = malloc((size_t)t->n_elems * sizeof *out + 4);
        if (out) st_tensor_rows_f32(t, 0, rows, out, &e);
        free(out);
    }
    st_close(m);
    return 0;
}
