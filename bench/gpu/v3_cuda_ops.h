/* bench/gpu/v3_cuda_ops.h — the v3_ops table (bench/gpu/v3_layer.h) of the CUDA twins:
 * buffers are device memory, every operation is queued on the calling thread's stream.
 * Internal header of bench/gpu (also used by tests/cuda).  Header-only. */
#ifndef V3_CUDA_OPS_H
#define V3_CUDA_OPS_H

#include "bench/gpu/v3_layer.h"
#include "kernels/cuda/kn_cuda.h"

static inline void *v3_cu_alloc(size_t n) {
    void *p = kn_cuda_malloc(n ? n : 1);
    if (p) kn_cuda_memset(p, 0, n ? n : 1);
    return p;
}

static const v3_ops v3_ops_cuda = {
    v3_cu_alloc, kn_cuda_free, kn_cuda_upload, kn_cuda_download, kn_cuda_copy_2d, kn_cuda_memset, kn_cuda_matmul,
    kn_cuda_matmul_stacked, kn_cuda_rmsnorm, kn_cuda_rope, kn_cuda_attention, kn_cuda_silu_mul, kn_cuda_add_scaled,
    kn_cuda_moe_route, kn_cuda_moe_bucket, kn_cuda_gather_rows, kn_cuda_moe_combine
};

#endif
