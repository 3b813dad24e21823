/* tests/fuzz/fuzz_imatrix.c — libFuzzer target over im_load_mem (GGUF imatrix or legacy .dat,
 * autodetected): every entry's importance is computed for every matrix, flat legacy entries
 * are split, and the result must be finite and > 0 or exactly the stored ratio. */
#include "formats/formats.h"
#include <math.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    qx_err e = {0};
    im_matrix *m;
    if (im_load_mem(&m, data, size, "fuzz.imatrix", &e) != QX_OK) {
        if (e.code == QX_OK || !e.msg[0]) __builtin_trap();
        return 0;
    }
    for (size_t i = 0; i < m->n_entries; i++) {
        im_entry *en = &m->entries[i];
        if (m->legacy && en->ne0 % 4 == 0) im_entry_reshape(en, 4, &e);
        float *imp = malloc((size_t)en->ne0 * sizeof *imp);
        if (!imp) break;
        for (int64_t k = 0; k < en->nmat; k++) {
            if (im_importance(en, k, imp, &e) != QX_OK) __builtin_trap();
            for (int64_t j = 0; j < en->ne0; j++)
                if (!(imp[j] >= 0) && !isinf(imp[j])) __builtin_trap();
        }
        free(imp);
    }
    im_free(m);
    return 0;
}
