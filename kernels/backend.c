/* kernels/backend.c — the CPU backend table (the kn_ functions behind kn_backend) and the
 * run-time selection of a backend.  The CUDA backend lives in kernels/cuda/backend.cu (or
 * kernels/cuda/backend_stub.c in a build without nvcc), reached through kn_cuda_backend_open. */
#include "kernels.h"

#include <string.h>

/* Defined by kernels/cuda/backend.cu or kernels/cuda/backend_stub.c. */
qx_status kn_cuda_backend_open(kn_backend **out, qx_err *e);
void kn_cuda_backend_close(kn_backend *b);

static void cpu_matmul(void *c, const kn_weight *w, const float *x, int64_t ldx, int64_t T, const float *bias,
                       float *y, int64_t ldy) {
    (void)c;
    kn_matmul(w, x, ldx, T, bias, y, ldy);
}
static void cpu_rmsnorm(void *c, const float *x, int64_t ldx, const float *w, int64_t T, int64_t n, float eps,
                        float *y, int64_t ldy) {
    (void)c;
    kn_rmsnorm(x, ldx, w, T, n, eps, y, ldy);
}
static void cpu_rope(void *c, float *x, int64_t ldx, int64_t T, int n_heads, int64_t head_stride, int dim,
                     const int32_t *pos, const float *inv_freq, float mscale, bool neox) {
    (void)c;
    kn_rope(x, ldx, T, n_heads, head_stride, dim, pos, inv_freq, mscale, neox);
}
static void cpu_attention(void *c, const kn_attn_args *a) { (void)c; kn_attention(a); }
static void cpu_silu_mul(void *c, const float *g, const float *u, int64_t ld, int64_t T, int64_t n, float *out,
                         int64_t ldo) {
    (void)c;
    kn_silu_mul(g, u, ld, T, n, out, ldo);
}
static void cpu_add_scaled(void *c, float *y, int64_t ldy, const float *x, int64_t ldx, const float *s, int64_t T,
                           int64_t n) {
    (void)c;
    kn_add_scaled(y, ldy, x, ldx, s, T, n);
}
static void cpu_moe_route(void *c, const kn_route_args *a, const float *logits, int64_t T, int32_t *ids, float *w) {
    (void)c;
    kn_moe_route(a, logits, T, ids, w);
}
static void cpu_logsumexp(void *c, const float *logits, int64_t ld, int64_t T, int64_t V, double *lse,
                          int32_t *argmax) {
    (void)c;
    kn_logsumexp(logits, ld, T, V, lse, argmax);
}
static qx_status cpu_layer_done(void *c, qx_err *e) { (void)c; (void)e; return QX_OK; }

static const kn_backend cpu_backend = {
    KN_DEVICE_CPU, "cpu", NULL, cpu_matmul, cpu_rmsnorm, cpu_rope, cpu_attention, cpu_silu_mul,
    cpu_add_scaled, cpu_moe_route, cpu_logsumexp, cpu_layer_done
};

const kn_backend *kn_backend_cpu(void) { return &cpu_backend; }

qx_status kn_backend_open(kn_device dev, kn_backend **out, qx_err *e) {
    *out = NULL;
    switch (dev) {
    case KN_DEVICE_CPU: *out = (kn_backend *)&cpu_backend; return QX_OK;
    case KN_DEVICE_CUDA: return kn_cuda_backend_open(out, e);
    }
    return qx_fail(e, QX_EINVAL, "backend: unknown device %d", (int)dev);
}

void kn_backend_close(kn_backend *b) {
    if (!b || b == &cpu_backend) return;
    if (b->device == KN_DEVICE_CUDA) kn_cuda_backend_close(b);
}

bool kn_device_from_name(const char *name, kn_device *out) {
    if (!strcmp(name, "cpu")) { *out = KN_DEVICE_CPU; return true; }
    if (!strcmp(name, "cuda")) { *out = KN_DEVICE_CUDA; return true; }
    return false;
}
