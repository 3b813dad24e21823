/* kernels/cuda/backend.cu — the device side of kernels/: device selection and the clean "no
 * GPU" error, memory helpers, the layer-streaming executor (two streams, events, pinned
 * staging buffers) of the kn_stream plan, and the CUDA kn_backend the engine selects with
 * --device cuda (matmul on the GPU with weights kept on the device per layer; see
 * kernels.h for what runs where). */
#include "kn_cuda.h"

#include <cuda_runtime.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <new>
#include <vector>

extern "C" qx_status kn_cuda_backend_open(kn_backend **out, qx_err *e);
extern "C" void kn_cuda_backend_close(kn_backend *b);

#define KN_STREAM cudaStreamPerThread

namespace {

qx_status cuda_fail(qx_err *e, cudaError_t err, const char *what) {
    return qx_fail(e, QX_EIO, "cuda: %s: %s (%s)", what, cudaGetErrorString(err), cudaGetErrorName(err));
}

#define CU_TRY(call, what) do { cudaError_t cu_e_ = (call); if (cu_e_ != cudaSuccess) return cuda_fail(e, cu_e_, what); } while (0)

/* Copies n bytes of host memory into page-locked memory, split over threads by fixed
 * 4 MiB pieces (the bytes do not depend on the split). */
void stage_copy(char *dst, const char *src, size_t n) {
    const size_t piece = (size_t)4 << 20;
    const int64_t np = (int64_t)((n + piece - 1) / piece);
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (np > 1)
#endif
    for (int64_t i = 0; i < np; i++) {
        size_t o = (size_t)i * piece, m = n - o < piece ? n - o : piece;
        memcpy(dst + o, src + o, m);
    }
}

/* Two pinned buffers that host->device copies go through on `copy` (host writes buffer b
 * only after the previous copy out of b has finished). */
struct stager {
    cudaStream_t copy = nullptr;
    char *buf[2] = {nullptr, nullptr};
    cudaEvent_t ev[2] = {nullptr, nullptr};
    bool used[2] = {false, false};
    int next = 0;
    size_t cap = 0;
    double host_s = 0.0;

    qx_status init(size_t bytes, qx_err *e) {
        cap = bytes;
        CU_TRY(cudaStreamCreateWithFlags(&copy, cudaStreamNonBlocking), "copy stream");
        for (int i = 0; i < 2; i++) {
            CU_TRY(cudaHostAlloc((void **)&buf[i], cap, cudaHostAllocDefault), "pinned staging buffer");
            CU_TRY(cudaEventCreateWithFlags(&ev[i], cudaEventDisableTiming), "staging event");
        }
        return QX_OK;
    }
    void release() {
        if (copy) cudaStreamSynchronize(copy);
        for (int i = 0; i < 2; i++) {
            if (buf[i]) cudaFreeHost(buf[i]);
            if (ev[i]) cudaEventDestroy(ev[i]);
            buf[i] = nullptr; ev[i] = nullptr;
        }
        if (copy) cudaStreamDestroy(copy);
        copy = nullptr;
    }
    /* Queues dst <- src (n bytes) on the copy stream. */
    qx_status put(void *dst, const void *src, size_t n, qx_err *e) {
        for (size_t o = 0; o < n; o += cap) {
            size_t m = n - o < cap ? n - o : cap;
            int b = next;
            next ^= 1;
            if (used[b]) CU_TRY(cudaEventSynchronize(ev[b]), "staging buffer wait");
            double t0 = qx_now();
            stage_copy(buf[b], (const char *)src + o, m);
            host_s += qx_now() - t0;
            CU_TRY(cudaMemcpyAsync((char *)dst + o, buf[b], m, cudaMemcpyHostToDevice, copy), "host-to-device copy");
            CU_TRY(cudaEventRecord(ev[b], copy), "staging event record");
            used[b] = true;
        }
        return QX_OK;
    }
};

/* ---------------- the streaming executor ---------------- */
struct stream_exec {
    const void *const *src;
    const size_t *bytes;
    void *slot[2] = {nullptr, nullptr};
    cudaEvent_t copied[2] = {nullptr, nullptr}, done[2] = {nullptr, nullptr};
    stager st;
    kn_cuda_layer_fn compute;
    void *ud;
};

qx_status ex_copy(void *u, int layer, int slot, qx_err *e) {
    stream_exec *x = (stream_exec *)u;
    QX_TRY(x->st.put(x->slot[slot], x->src[layer], x->bytes[layer], e));
    CU_TRY(cudaEventRecord(x->copied[slot], x->st.copy), "copy event record");
    return QX_OK;
}
qx_status ex_wait_copy(void *u, int layer, int slot, qx_err *e) {
    (void)layer;
    CU_TRY(cudaStreamWaitEvent(KN_STREAM, ((stream_exec *)u)->copied[slot], 0), "wait for copy");
    return QX_OK;
}
qx_status ex_compute(void *u, int layer, int slot, qx_err *e) {
    stream_exec *x = (stream_exec *)u;
    return x->compute ? x->compute(x->ud, layer, x->slot[slot], e) : QX_OK;
}
qx_status ex_record_done(void *u, int layer, int slot, qx_err *e) {
    (void)layer;
    CU_TRY(cudaEventRecord(((stream_exec *)u)->done[slot], KN_STREAM), "compute event record");
    return QX_OK;
}
qx_status ex_wait_done(void *u, int layer, int slot, qx_err *e) {
    (void)layer;
    stream_exec *x = (stream_exec *)u;
    CU_TRY(cudaStreamWaitEvent(x->st.copy, x->done[slot], 0), "wait for compute");
    return QX_OK;
}

}  // namespace

/* ---------------- device, memory ---------------- */
extern "C" qx_status kn_cuda_init(qx_err *e) {
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess)
        return qx_fail(e, QX_EUNSUPPORTED, "--device cuda: no CUDA device available (cudaGetDeviceCount: %s)",
                       cudaGetErrorString(err));
    if (n <= 0)
        return qx_fail(e, QX_EUNSUPPORTED, "--device cuda: no CUDA device available (cudaGetDeviceCount: 0 devices)");
    CU_TRY(cudaSetDevice(0), "cudaSetDevice(0)");
    cudaMemPool_t pool;
    if (cudaDeviceGetDefaultMemPool(&pool, 0) == cudaSuccess) {
        uint64_t keep = UINT64_MAX;   /* keep freed blocks for the next layer */
        cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
    }
    return QX_OK;
}

extern "C" void kn_cuda_describe(char *buf, size_t cap) {
    cudaDeviceProp p;
    int dev = 0;
    cudaGetDevice(&dev);
    if (cudaGetDeviceProperties(&p, dev) != cudaSuccess) { snprintf(buf, cap, "unknown CUDA device"); return; }
    snprintf(buf, cap, "%s, %d SMs, %.1f GiB, cc %d.%d", p.name, p.multiProcessorCount,
             (double)p.totalGlobalMem / (1024.0 * 1024.0 * 1024.0), p.major, p.minor);
}

extern "C" qx_status kn_cuda_sync(qx_err *e) {
    CU_TRY(cudaStreamSynchronize(KN_STREAM), "stream synchronize");
    CU_TRY(cudaGetLastError(), "kernel");
    return QX_OK;
}

extern "C" void *kn_cuda_malloc(size_t bytes) {
    void *p = nullptr;
    if (cudaMalloc(&p, bytes ? bytes : 1) != cudaSuccess) { cudaGetLastError(); return nullptr; }
    return p;
}
extern "C" void kn_cuda_free(void *p) { if (p) cudaFree(p); }
extern "C" void *kn_cuda_host_alloc(size_t bytes) {
    void *p = nullptr;
    if (cudaHostAlloc(&p, bytes ? bytes : 1, cudaHostAllocDefault) != cudaSuccess) { cudaGetLastError(); return nullptr; }
    return p;
}
extern "C" void kn_cuda_host_free(void *p) { if (p) cudaFreeHost(p); }

extern "C" qx_status kn_cuda_upload(void *dst, const void *src, size_t bytes, qx_err *e) {
    CU_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, KN_STREAM), "upload");
    CU_TRY(cudaStreamSynchronize(KN_STREAM), "upload");
    return QX_OK;
}
extern "C" qx_status kn_cuda_download(void *dst, const void *src, size_t bytes, qx_err *e) {
    CU_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, KN_STREAM), "download");
    CU_TRY(cudaStreamSynchronize(KN_STREAM), "download");
    return QX_OK;
}
extern "C" void kn_cuda_memset(void *dst, int v, size_t bytes) { cudaMemsetAsync(dst, v, bytes, KN_STREAM); }
extern "C" void kn_cuda_copy_d2d(void *dst, const void *src, size_t bytes) {
    cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, KN_STREAM);
}
extern "C" void kn_cuda_copy_2d(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width, size_t rows) {
    if (rows && width) cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, rows, cudaMemcpyDeviceToDevice, KN_STREAM);
}
extern "C" void kn_cuda_mem_info(size_t *free_b, size_t *total_b) {
    size_t f = 0, t = 0;
    cudaMemGetInfo(&f, &t);
    if (free_b) *free_b = f;
    if (total_b) *total_b = t;
}

/* ---------------- layer streaming ---------------- */
extern "C" qx_status kn_cuda_stream_layers(int n_layers, const void *const *layer_src, const size_t *layer_bytes,
                                           size_t stage_bytes, kn_cuda_layer_fn compute, void *ud,
                                           double *copy_s, qx_err *e) {
    if (n_layers < 0) return qx_fail(e, QX_EINVAL, "stream: %d layers", n_layers);
    size_t maxb = 1;
    for (int L = 0; L < n_layers; L++) if (layer_bytes[L] > maxb) maxb = layer_bytes[L];
    std::vector<kn_stream_step> steps((size_t)(5 * n_layers + 1));
    int64_t n = kn_stream_plan(n_layers, 2, steps.data(), (int64_t)steps.size());
    if (n < 0) return qx_fail(e, QX_EINVAL, "stream: plan does not fit");
    stream_exec x;
    x.src = layer_src; x.bytes = layer_bytes; x.compute = compute; x.ud = ud;
    qx_status s = x.st.init(stage_bytes ? stage_bytes : ((size_t)64 << 20), e);
    for (int i = 0; s == QX_OK && i < 2; i++) {
        cudaError_t err = cudaMalloc(&x.slot[i], maxb);
        if (err == cudaSuccess) err = cudaEventCreateWithFlags(&x.copied[i], cudaEventDisableTiming);
        if (err == cudaSuccess) err = cudaEventCreateWithFlags(&x.done[i], cudaEventDisableTiming);
        if (err != cudaSuccess) s = cuda_fail(e, err, "stream slot");
    }
    if (s == QX_OK) {
        kn_stream_ops ops = { &x, { ex_copy, ex_wait_copy, ex_compute, ex_record_done, ex_wait_done } };
        s = kn_stream_run(steps.data(), n, &ops, e);
    }
    if (s == QX_OK) s = kn_cuda_sync(e);
    cudaStreamSynchronize(KN_STREAM);
    x.st.release();
    for (int i = 0; i < 2; i++) {
        if (x.slot[i]) cudaFree(x.slot[i]);
        if (x.copied[i]) cudaEventDestroy(x.copied[i]);
        if (x.done[i]) cudaEventDestroy(x.done[i]);
    }
    if (copy_s) *copy_s = x.st.host_s;
    return s;
}

/* ---------------- the CUDA kn_backend (host pointers) ---------------- */
namespace {

struct cached_w {
    const void *host;
    const float *host_scale;
    uint64_t bytes;
    void *dev;
    float *dev_scale;
};

struct cuda_be {
    kn_backend b;
    std::vector<cached_w> cache;
    stager st;
    float *dx = nullptr, *dy = nullptr, *dbias = nullptr;
    size_t cap_x = 0, cap_y = 0, cap_bias = 0;
    qx_status err = QX_OK;
    qx_err msg;
};

void be_note(cuda_be *c, cudaError_t err, const char *what) {
    if (err == cudaSuccess || c->err != QX_OK) return;
    c->err = cuda_fail(&c->msg, err, what);
}

bool grow(cuda_be *c, float **p, size_t *cap, size_t n) {
    if (n <= *cap) return true;
    if (*p) cudaFreeAsync(*p, KN_STREAM);
    *p = nullptr;
    *cap = 0;
    cudaError_t err = cudaMallocAsync((void **)p, n * sizeof(float), KN_STREAM);
    if (err != cudaSuccess) { be_note(c, err, "device buffer"); *p = nullptr; return false; }
    *cap = n;
    return true;
}

/* The device copy of a weight's bytes (uploaded through the stager on first use). */
const cached_w *weight_on_device(cuda_be *c, const kn_weight *w) {
    for (const cached_w &cw : c->cache)
        if (cw.host == w->data && cw.host_scale == w->scale_inv && cw.bytes == (uint64_t)w->rows * w->row_bytes)
            return &cw;
    cached_w cw = { w->data, w->scale_inv, (uint64_t)w->rows * w->row_bytes, nullptr, nullptr };
    size_t sbytes = 0;
    if (w->type == QT_F8_E4M3 && w->scale_inv)
        sbytes = (size_t)((w->rows + 127) / 128) * (size_t)((w->cols + 127) / 128) * sizeof(float);
    cudaError_t err = cudaMallocAsync(&cw.dev, cw.bytes, c->st.copy);
    if (err == cudaSuccess && sbytes) err = cudaMallocAsync((void **)&cw.dev_scale, sbytes, c->st.copy);
    if (err != cudaSuccess) { be_note(c, err, "device memory for a weight"); return nullptr; }
    qx_err e2 = {};
    if (c->st.put(cw.dev, w->data, cw.bytes, &e2) != QX_OK ||
        (sbytes && c->st.put(cw.dev_scale, w->scale_inv, sbytes, &e2) != QX_OK)) {
        if (c->err == QX_OK) { c->err = QX_EIO; c->msg = e2; }
        return nullptr;
    }
    cudaEvent_t ev;
    cudaEventCreateWithFlags(&ev, cudaEventDisableTiming);
    cudaEventRecord(ev, c->st.copy);
    cudaStreamWaitEvent(KN_STREAM, ev, 0);
    cudaEventDestroy(ev);
    c->cache.push_back(cw);
    return &c->cache.back();
}

void be_matmul(void *ctx, const kn_weight *w, const float *x, int64_t ldx, int64_t T, const float *bias, float *y,
               int64_t ldy) {
    cuda_be *c = (cuda_be *)ctx;
    if (T <= 0 || w->rows <= 0) return;
    if (!kn_cuda_matmul_supported(w)) { kn_matmul(w, x, ldx, T, bias, y, ldy); return; }
    if (c->err != QX_OK) return;
    const cached_w *cw = weight_on_device(c, w);
    const int64_t K = w->cols, R = w->rows;
    if (!cw || !grow(c, &c->dx, &c->cap_x, (size_t)(T * K)) || !grow(c, &c->dy, &c->cap_y, (size_t)(T * R)) ||
        (bias && !grow(c, &c->dbias, &c->cap_bias, (size_t)R)))
        return;
    be_note(c, cudaMemcpy2DAsync(c->dx, (size_t)K * 4, x, (size_t)ldx * 4, (size_t)K * 4, (size_t)T,
                                 cudaMemcpyHostToDevice, KN_STREAM), "activations upload");
    if (bias) be_note(c, cudaMemcpyAsync(c->dbias, bias, (size_t)R * 4, cudaMemcpyHostToDevice, KN_STREAM), "bias upload");
    kn_weight dw = *w;
    dw.data = cw->dev;
    dw.scale_inv = cw->dev_scale;
    kn_cuda_matmul(&dw, c->dx, K, T, bias ? c->dbias : nullptr, c->dy, R);
    be_note(c, cudaGetLastError(), "matmul kernel");
    be_note(c, cudaMemcpy2DAsync(y, (size_t)ldy * 4, c->dy, (size_t)R * 4, (size_t)R * 4, (size_t)T,
                                 cudaMemcpyDeviceToHost, KN_STREAM), "result download");
    be_note(c, cudaStreamSynchronize(KN_STREAM), "matmul");
}

qx_status be_layer_done(void *ctx, qx_err *e) {
    cuda_be *c = (cuda_be *)ctx;
    cudaStreamSynchronize(c->st.copy);
    cudaStreamSynchronize(KN_STREAM);
    for (cached_w &cw : c->cache) {
        if (cw.dev) cudaFreeAsync(cw.dev, KN_STREAM);
        if (cw.dev_scale) cudaFreeAsync(cw.dev_scale, KN_STREAM);
    }
    c->cache.clear();
    if (c->err != QX_OK) {
        qx_status s = c->err;
        if (e) *e = c->msg;
        c->err = QX_OK;
        return s;
    }
    return QX_OK;
}

/* The operations the CUDA backend leaves on the CPU (see kernels.h). */
void be_rmsnorm(void *c, const float *x, int64_t ldx, const float *w, int64_t T, int64_t n, float eps, float *y,
                int64_t ldy) {
    (void)c;
    kn_rmsnorm(x, ldx, w, T, n, eps, y, ldy);
}
void be_rope(void *c, float *x, int64_t ldx, int64_t T, int n_heads, int64_t head_stride, int dim, const int32_t *pos,
             const float *inv_freq, float mscale, bool neox) {
    (void)c;
    kn_rope(x, ldx, T, n_heads, head_stride, dim, pos, inv_freq, mscale, neox);
}
void be_attention(void *c, const kn_attn_args *a) { (void)c; kn_attention(a); }
void be_silu_mul(void *c, const float *g, const float *u, int64_t ld, int64_t T, int64_t n, float *out, int64_t ldo) {
    (void)c;
    kn_silu_mul(g, u, ld, T, n, out, ldo);
}
void be_add_scaled(void *c, float *y, int64_t ldy, const float *x, int64_t ldx, const float *s, int64_t T, int64_t n) {
    (void)c;
    kn_add_scaled(y, ldy, x, ldx, s, T, n);
}
void be_moe_route(void *c, const kn_route_args *a, const float *logits, int64_t T, int32_t *ids, float *w) {
    (void)c;
    kn_moe_route(a, logits, T, ids, w);
}
void be_logsumexp(void *c, const float *logits, int64_t ld, int64_t T, int64_t V, double *lse, int32_t *argmax) {
    (void)c;
    kn_logsumexp(logits, ld, T, V, lse, argmax);
}

}  // namespace

extern "C" qx_status kn_cuda_backend_open(kn_backend **out, qx_err *e) {
    *out = nullptr;
    QX_TRY(kn_cuda_init(e));
    cuda_be *c = new (std::nothrow) cuda_be();
    if (!c) return qx_fail(e, QX_ENOMEM, "cuda backend: out of memory");
    qx_status s = c->st.init((size_t)64 << 20, e);
    if (s != QX_OK) { c->st.release(); delete c; return s; }
    kn_backend *b = &c->b;
    b->device = KN_DEVICE_CUDA;
    char desc[96];
    kn_cuda_describe(desc, sizeof desc);
    snprintf(b->name, sizeof b->name, "cuda: %s", desc);
    b->ctx = c;
    b->matmul = be_matmul;
    b->rmsnorm = be_rmsnorm;
    b->rope = be_rope;
    b->attention = be_attention;
    b->silu_mul = be_silu_mul;
    b->add_scaled = be_add_scaled;
    b->moe_route = be_moe_route;
    b->logsumexp = be_logsumexp;
    b->layer_done = be_layer_done;
    *out = b;
    return QX_OK;
}

extern "C" void kn_cuda_backend_close(kn_backend *b) {
    if (!b) return;
    cuda_be *c = (cuda_be *)b->ctx;
    be_layer_done(c, nullptr);
    if (c->dx) cudaFreeAsync(c->dx, KN_STREAM);
    if (c->dy) cudaFreeAsync(c->dy, KN_STREAM);
    if (c->dbias) cudaFreeAsync(c->dbias, KN_STREAM);
    cudaStreamSynchronize(KN_STREAM);
    c->st.release();
    delete c;
}
