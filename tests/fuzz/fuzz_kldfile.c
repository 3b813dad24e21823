/* tests/fuzz/fuzz_kldfile.c — libFuzzer target over cal_kld_parse (the per-token KLD file of
 * `qforge ppl --save-kld`): a parse either fails with a message or yields n_rows finite,
 * non-negative values that can all be read. */
#include "calib/calib.h"
#include <math.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    qx_err e = {0};
    cal_kld_file f;
    if (cal_kld_parse(data, size, "fuzz.kld", &f, &e) != QX_OK) {
        if (e.code == QX_OK || !e.msg[0]) __builtin_trap();
        return 0;
    }
    if (f.n_rows < 0 || f.n_ctx < 2 || (size_t)f.n_rows * 4 + 40 != size) __builtin_trap();
    double s = 0;
    for (int64_t i = 0; i < f.n_rows; i++) s += f.kld[i];
    if (!isfinite(s)) __builtin_trap();
    cal_kld_file_free(&f);
    return 0;
}
