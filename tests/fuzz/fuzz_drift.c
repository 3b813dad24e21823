/* tests/fuzz/fuzz_drift.c — libFuzzer target over cal_drift_parse (the JSON of `qforge ppl
 * --json` read back by `qforge card` and `qforge report`): a parse either fails with a
 * message or yields finite, in-range numbers and per-layer arrays that can all be read. */
#include "calib/calib.h"
#include <math.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    qx_err e = {0};
    cal_drift d;
    if (cal_drift_parse((const char *)data, size, "fuzz.json", &d, &e) != QX_OK) {
        if (e.code == QX_OK || !e.msg[0]) __builtin_trap();
        return 0;
    }
    double s = d.ppl + (d.has_base ? d.kld_mean + d.ppl_base + d.top1 : 0) + (d.has_size ? d.file_bytes + d.bpw : 0);
    for (int i = 0; d.has_q && i < CAL_KLD_NQ; i++) s += d.kld_q[i];
    for (int i = 0; i < d.n_layers; i++) s += d.layer_err[i] + d.layer[i];
    if (!isfinite(s) || d.ppl <= 0 || d.n_layers < 0 || d.n_layers > CAL_DRIFT_MAX_LAYERS) __builtin_trap();
    cal_drift_free(&d);
    return 0;
}
