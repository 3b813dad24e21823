/* tests/util/tu_acts.h — an engine observer that keeps the input rows of chosen weights
 * (header-only: only the tests that run the engine include it).  Set
 * cal_observer.matmul_input = tu_acts_on_input and its user data to a tu_acts. */
#ifndef TU_ACTS_H
#define TU_ACTS_H
#include "calib/calib.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    cal_wkind kind;
    int layer, expert;
    float *x;            /* (n, cols) activation rows, malloc'd here; free() by the test */
    int64_t n, cap, cols;
} tu_act_w;

typedef struct {
    tu_act_w *w;
    int n;
    int64_t max_cols;    /* inputs wider than this are not kept */
} tu_acts;

static inline void tu_acts_on_input(void *ud, cal_wkind kind, int layer, int expert, const float *x, int64_t ld,
                                    int64_t T, int64_t cols) {
    tu_acts *c = ud;
    for (int i = 0; i < c->n; i++) {
        tu_act_w *s = &c->w[i];
        if (s->kind != kind || s->layer != layer || s->expert != expert || cols > c->max_cols) continue;
        if (s->n && s->cols != cols) return;
        s->cols = cols;
        if (s->n + T > s->cap) {
            const int64_t nc = (s->n + T) * 2;
            float *p = realloc(s->x, (size_t)(nc * cols) * sizeof(float));
            if (!p) return;
            s->x = p; s->cap = nc;
        }
        for (int64_t t = 0; t < T; t++) memcpy(s->x + (s->n + t) * cols, x + t * ld, (size_t)cols * sizeof(float));
        s->n += T;
    }
}
#endif
