/* tests/fuzz/fuzz_sens.c — libFuzzer target over cv_sens_parse (the sensitivity table of
 * `qforge sensitivity`): a parse either fails with a message or yields tensors whose every
 * candidate fits its rows, with finite non-negative errors and costs, and the allocator
 * accepts the costs it predicts. */
#include "convert/convert.h"
#include <math.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    qx_err e = {0};
    cv_sens s;
    if (cv_sens_parse((const char *)data, size, "fuzz.json", &s, &e) != QX_OK) {
        if (e.code == QX_OK || !e.msg[0]) __builtin_trap();
        return 0;
    }
    for (size_t i = 0; i < s.n; i++) {
        const cv_sens_tensor *t = &s.t[i];
        if (t->n_opt < 1 || t->n_opt > CV_SENS_MAX_OPT || t->n_elems % (uint64_t)t->ne0) __builtin_trap();
        cv_alloc_tensor at = { 0, NULL };
        cv_alloc_opt o[CV_SENS_MAX_OPT];
        for (int j = 0; j < t->n_opt; j++) {
            const cv_sens_opt *op = &t->opt[j];
            if (!qt_row_size(op->type, t->ne0) || !isfinite(op->werr) || op->werr < 0) __builtin_trap();
            if (op->cost >= 0) o[at.n_opt++] = (cv_alloc_opt){ op->bytes, op->cost };
            if (!(op->cost >= 0) && op->cost != -1.0) __builtin_trap();
        }
        at.opt = o;
        int pick;
        cv_alloc_result r;
        if (at.n_opt && (cv_alloc_solve(&at, 1, UINT64_MAX / 2, &pick, &r, &e) != QX_OK || pick < 0 || pick >= at.n_opt)) __builtin_trap();
    }
    cv_sens_free(&s);
    return 0;
}
