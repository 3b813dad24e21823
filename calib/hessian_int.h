/* calib/hessian_int.h — the statistics of GPTQ's input Hessians, shared by calib/hessian.c
 * (gathering, factors) and calib/hessian_file.c (--gptq-save / --gptq-load).  Internal. */
#ifndef CALIB_HESSIAN_INT_H
#define CALIB_HESSIAN_INT_H
#include "engine_int.h"

typedef struct h_entry {
    bool used;
    char name[128];
    int layer;          /* engine layer, n_layer for the output head */
    struct h_entry *alias;   /* the gate whose H this up projection uses, else NULL */
    int64_t cols, nmat;
    float **H;          /* [nmat] -> [cols, cols] (upper triangle while accumulating) */
    float **X;          /* [nmat] -> [xrows, cols]: the inputs themselves while fewer rows than
                           columns arrived (cheaper than H); H = X^T X is formed when factored */
    int64_t *xrows, *xcap;
    double *count;      /* [nmat] tokens */
} h_entry;

struct cal_hessians {
    const cal_hessian_params *p;
    cal_hparams hp;
    h_entry *ent;       /* [(n_layer + 1) * CAL_W_KIND_COUNT] */
    int64_t n_ent;
    bool oom;
};

/* Allocates an entry's per-matrix arrays (all NULL / 0) and marks it used; false when out of
 * memory (hs_entry_free then undoes what was allocated). */
bool hs_entry_alloc(h_entry *a, int64_t nmat);
/* Frees an entry's matrices and arrays and clears it. */
void hs_entry_free(h_entry *a);


#endif
