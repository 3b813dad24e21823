/* common/blas.c — the optional OpenBLAS, loaded once at run time (qx.h).  No build-time
 * dependency: a machine without libopenblas0 runs qforge's own kernels. */
#include "qx.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>

static qx_blas g_blas;
static const qx_blas *g_ptr;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void load(void) {
    const char *off = getenv("QF_NO_BLAS");
    if (off && *off && *off != '0') return;
    void *h = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!h) return;
    void (*setthr)(int) = (void (*)(int))dlsym(h, "openblas_set_num_threads");
    g_blas.sgemm = (void (*)(int, int, int, int, int, int, float, const float *, int, const float *, int, float, float *, int))dlsym(h, "cblas_sgemm");
    g_blas.dpotrf = (void (*)(const char *, const int *, double *, const int *, int *))dlsym(h, "dpotrf_");
    g_blas.dtrtri = (void (*)(const char *, const char *, const int *, double *, const int *, int *))dlsym(h, "dtrtri_");
    g_blas.name = "OpenBLAS (libopenblas.so.0)";
    if (!setthr || !g_blas.sgemm || !g_blas.dpotrf || !g_blas.dtrtri) { dlclose(h); return; }
    setthr(1);
    g_ptr = &g_blas;
}

const qx_blas *qx_blas_get(void) {
    pthread_once(&g_once, load);
    return g_ptr;
}
