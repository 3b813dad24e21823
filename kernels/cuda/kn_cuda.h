/* kernels/cuda/kn_cuda.h — the CUDA twins of the kn_ operations (kernels/kernels.h) and the
 * device plumbing they need.  Internal to kernels/ (the engine reaches the GPU through the
 * kn_backend of kernels.h); tests/cuda and bench/gpu include it directly.  C-callable, no
 * CUDA type appears here.
 *
 * Every kn_cuda_X has the signature of its CPU twin kn_X, with every data pointer a DEVICE
 * pointer: activations, outputs, bias, positions, inv_freq, router bias, and the weight
 * view's data and scale_inv (the kn_weight struct itself is read on the host).  Kernels
 * are queued on the calling thread's default stream (the library is built with
 * --default-stream per-thread) and return without waiting; kn_cuda_sync waits and reports
 * the first error.  Only the .cu files of kernels/cuda define these (there is no stub: code that calls
 * them is built only when nvcc exists). */
#ifndef KN_CUDA_H
#define KN_CUDA_H

#include "../kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- device, memory, errors ---- */
/* QX_OK when at least one device is usable; otherwise QX_EUNSUPPORTED (or QX_EIO) with
 * "no CUDA device available (cudaGetDeviceCount: <cuda message>)" in e.  Selects device 0. */
qx_status kn_cuda_init(qx_err *e);
/* "NVIDIA H200, 132 SMs, 139.8 GiB, cc 9.0" into buf. */
void kn_cuda_describe(char *buf, size_t cap);
/* Waits for the calling thread's stream; QX_EIO with the first CUDA error. */
qx_status kn_cuda_sync(qx_err *e);
/* Device memory (NULL on failure; free accepts NULL). */
void *kn_cuda_malloc(size_t bytes);
void kn_cuda_free(void *p);
/* Page-locked host memory for staging (NULL on failure; free accepts NULL). */
void *kn_cuda_host_alloc(size_t bytes);
void kn_cuda_host_free(void *p);
/* Synchronous copies and fill on the calling thread's stream. */
qx_status kn_cuda_upload(void *dst, const void *src, size_t bytes, qx_err *e);
qx_status kn_cuda_download(void *dst, const void *src, size_t bytes, qx_err *e);
void kn_cuda_memset(void *dst, int v, size_t bytes);
void kn_cuda_copy_d2d(void *dst, const void *src, size_t bytes);
/* rows rows of width bytes, dst/src rows dpitch/spitch bytes apart (device to device). */
void kn_cuda_copy_2d(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width, size_t rows);
/* Free and total device memory in bytes. */
void kn_cuda_mem_info(size_t *free_b, size_t *total_b);

/* ---- the kn_ twins (device pointers; see kernels.h for the contracts) ---- */
/* Fused dequantize + tensor-core GEMM: tiles of W are decoded (kernels/cuda/kn_dq.h) to
 * BF16 in shared memory and multiplied with mma (wmma, f32 accumulate).  Activations and
 * weights are each split into a BF16 high and low part and three products are summed
 * (hi·hi + hi·lo + lo·hi), which keeps ~16 mantissa bits: the result matches the f32 CPU
 * kernel to ~1e-5 relative (kn_cuda_matmul_passes(1) selects plain BF16 for speed tests).
 * Types: every kn_dq_supported type (F32, F16, BF16, FP8 e4m3 block-scaled, Q4_0, Q4_1,
 * Q5_0, Q5_1, Q8_0, Q2_K..Q6_K, IQ4_NL, IQ4_XS); cols must be a multiple of 32. */
void kn_cuda_matmul(const kn_weight *w, const float *x, int64_t ldx, int64_t T, const float *bias,
                    float *y, int64_t ldy);
/* Same, with passes 1 (BF16) or 3 (split BF16, the default of kn_cuda_matmul). */
void kn_cuda_matmul_ex(const kn_weight *w, const float *x, int64_t ldx, int64_t T, const float *bias,
                       float *y, int64_t ldy, int passes);
/* Whether kn_cuda_matmul handles this weight (type decodable, cols % 32 == 0). */
bool kn_cuda_matmul_supported(const kn_weight *w);

void kn_cuda_rmsnorm(const float *x, int64_t ldx, const float *w, int64_t T, int64_t n, float eps,
                     float *y, int64_t ldy);
void kn_cuda_rope(float *x, int64_t ldx, int64_t T, int n_heads, int64_t head_stride, int dim,
                  const int32_t *pos, const float *inv_freq, float mscale, bool neox);
/* Causal attention; S (tokens per sequence) up to 16384.  Dense only: a->sel (DeepSeek Sparse
 * Attention) must be NULL (aborts otherwise); the engine's CUDA backend runs attention, sparse
 * included, on the CPU (kn_attention). */
void kn_cuda_attention(const kn_attn_args *a);
void kn_cuda_silu_mul(const float *g, const float *u, int64_t ld, int64_t T, int64_t n, float *out,
                      int64_t ldo);
void kn_cuda_add_scaled(float *y, int64_t ldy, const float *x, int64_t ldx, const float *s, int64_t T,
                        int64_t n);
/* a->bias is a device pointer; n_exp up to 1024. */
void kn_cuda_moe_route(const kn_route_args *a, const float *logits, int64_t T, int32_t *ids, float *w);
void kn_cuda_logsumexp(const float *logits, int64_t ld, int64_t T, int64_t V, double *lse,
                       int32_t *argmax);

/* ---- MoE: grouped expert GEMM and the gather/combine around it ---- */
/* n_groups weights of identical type and shape (host array of views with device data);
 * group g multiplies rows [off[g], off[g+1]) of x (off: host array, n_groups+1 entries,
 * nondecreasing) into the same rows of y.  One launch for all groups. */
void kn_cuda_matmul_grouped(const kn_weight *ws, int n_groups, const int64_t *off, const float *x,
                            int64_t ldx, float *y, int64_t ldy);
/* The same without any host round trip (what a device-resident MoE layer uses): the
 * n_groups experts are one stacked tensor (expert g = w0's data + g * stride bytes, its FP8
 * scale grid w0->scale_inv + g * scale_stride floats), the offsets off (n_groups+1) are in
 * DEVICE memory (from kn_cuda_moe_bucket) and max_rows bounds off[n_groups]. */
void kn_cuda_matmul_stacked(const kn_weight *w0, uint64_t stride, int64_t scale_stride, int n_groups,
                            const int64_t *off, int64_t max_rows, const float *x, int64_t ldx, float *y,
                            int64_t ldy);
/* Buckets the T*k (token, slot) pairs of ids [T, k] by expert, on the device and in a fixed
 * order (tokens ascending within an expert): off[n_exp+1] (device int64) expert offsets,
 * rows[T*k] the token of each bucketed pair, slot[T*k] where pair i went (-1 for id -1). */
void kn_cuda_moe_bucket(const int32_t *ids, int64_t T, int k, int n_exp, int64_t *off, int32_t *rows,
                        int32_t *slot);
/* out[i] = x[rows[i]] for i < n (rows: device int32). */
void kn_cuda_gather_rows(const float *x, int64_t ldx, const int32_t *rows, int64_t n, int64_t cols,
                         float *out, int64_t ldo);
/* y[t] += Σ_j w[t*k+j] * ye[slot[t*k+j]] over j ascending (slot -1: skipped): the
 * deterministic combine of the k expert outputs of each token. */
void kn_cuda_moe_combine(float *y, int64_t ldy, const float *ye, int64_t ldye, const int32_t *slot,
                         const float *w, int64_t T, int k, int64_t n);

/* ---- log-softmax reductions for perplexity and drift ---- */
/* Per row t of logits [T, V]: lse[t], argmax[t] (lowest index on ties), nll[t] =
 * lse - l[target[t]] (target < 0: nll 0).  With base_k > 0 also kld[t] against a base row
 * given as top-k (base_id/base_logp [T, base_k]) plus remainder log-mass base_rest[t]
 * (-inf: none), the same formula as calib/ppl.c.  All pointers device; outputs may be NULL. */
void kn_cuda_logsoftmax_stats(const float *logits, int64_t ld, int64_t T, int64_t V,
                              const int32_t *target, int base_k, const int32_t *base_id,
                              const float *base_logp, const float *base_rest, double *lse,
                              int32_t *argmax, double *nll, double *kld);

/* ---- DeepSeek-V4 operations (kernels/cuda/ops_v4.cu; CPU twins in kernels/cpu/dsv4.c) ----
 * The contracts of kernels.h's "DeepSeek-V4 operations" with every pointer a DEVICE pointer,
 * the pointers inside the argument structs included (kn_hc_args scale/base, ape, q/k/w/sel,
 * kv/ck/sinks/o, route bias/hash/tok); the structs themselves are read on the host.
 * Results: collapse, expand and the indexer scores are the CPU _ref's bits (the kernels round
 * a*b + c twice, as gcc -std=c11 does); so v4_select keeps exactly the blocks kn_v4_select_ref
 * keeps, ties included (the same libstdc++ heap selection, run by one thread per query).  The
 * rest differ from the CPU by CUDA's expf/logf (within 2 ulp of glibc's) and, in attention,
 * by the order of the dot-product and softmax sums; v4_route's choice therefore equals the
 * CPU's unless two candidates' p + bias lie within those few ulp of each other.
 * Exact before fast: v4_select scores each block on one thread in the CPU's order
 * (n_heads*dh multiply-adds) and runs the heap on one thread per query (V4-Flash at S 16384:
 * ~2.7e11 multiply-adds per layer); attention is one block per (token, head).
 * Limits, checked on the host (abort: a programming error, as the CPU twins do for theirs):
 *   hc_coeffs      1 <= hc <= KN_V4_MAX_HC;
 *   v4_compress    1 <= r <= KN_V4_MAX_RATIO;
 *   v4_select      r >= 1, n_seq*S <= KN_CUDA_MAX_ITEMS, 5*(S/r) + 4*top_k <= KN_CUDA_V4_SELECT_SMEM
 *                  bytes (e.g. S/r 8192 with top_k 2048; V4-Flash S 16384, r 4, top_k 512: 22 KiB);
 *   v4_attention   n_swa >= 0, r >= 0, n_seq*S*n_heads <= KN_CUDA_MAX_ITEMS, and
 *                  4*(d + min(n_swa, S) + C) bytes + 1 KiB within the device's opt-in shared
 *                  memory per block (227 KiB on H100/H200), C = n_sel with sel, S/r without
 *                  (V4-Flash d 512, n_swa 128, S 16384, r 4 dense: 19 KiB);
 *   v4_route       1 <= n_exp <= KN_V4_MAX_EXPERTS, k >= 0, k <= n_exp without hash,
 *                  T <= KN_CUDA_MAX_ITEMS. */
#define KN_CUDA_MAX_ITEMS 2147483647LL        /* one CUDA block per item: the grid's x limit */
#define KN_CUDA_V4_SELECT_SMEM (48 * 1024)    /* default dynamic shared memory of a block */
void kn_cuda_hc_coeffs(const kn_hc_args *a, const float *mixes, int64_t ldm, int64_t T, float *pre, float *post,
                       float *comb);
void kn_cuda_hc_collapse(const float *x, const float *pre, int hc, int64_t T, int64_t n, float *y);
void kn_cuda_hc_expand(const float *y, const float *res, const float *post, const float *comb, int hc, int64_t T,
                       int64_t n, float *out);
void kn_cuda_v4_compress(const kn_comp_args *a);
void kn_cuda_v4_select(const kn_v4_sel_args *a);
void kn_cuda_v4_attention(const kn_v4_attn_args *a);
/* kn_v4_route's choice and weights; instead of returning false, it sets the device int
 * *bad to 1 when a hash entry lies outside [0, n_exp) (0 otherwise; the flag is cleared on the
 * stream first, so read it after kn_cuda_sync; bad NULL: not reported).  Ids and weights are
 * computed as the CPU's in every case (a bad entry counts as expert 0). */
void kn_cuda_v4_route(const kn_v4_route_args *a, const float *logits, int64_t T, int32_t *ids, float *w,
                      int32_t *bad);
void kn_cuda_silu_mul_clamp(const float *g, const float *u, int64_t ld, int64_t T, int64_t n, float limit,
                            float *out, int64_t ldo);

/* ---- layer streaming on the device ---- */
/* Runs a kn_stream plan (kernels.h) with two CUDA streams: uploads of layer L+1 (host
 * memory -> pinned staging buffers -> device slot, asynchronously on a copy stream) overlap
 * the compute of layer L on the calling thread's stream; events order slot reuse.
 * layer_src[L] / layer_bytes[L]: the host bytes of layer L (any memory: mmap, malloc);
 * compute(ud, L, slot_ptr) enqueues layer L's work on the calling thread's stream and
 * returns QX_OK (compute NULL: copies only, to measure them).  Slots are device buffers of max(layer_bytes) each, allocated here.
 * stage_bytes: size of each of the two pinned staging buffers (0: 64 MiB).
 * *copy_s / *compute_wait_s (may be NULL): seconds the host spent staging and waiting. */
typedef qx_status (*kn_cuda_layer_fn)(void *ud, int layer, void *slot, qx_err *e);
qx_status kn_cuda_stream_layers(int n_layers, const void *const *layer_src, const size_t *layer_bytes,
                                size_t stage_bytes, kn_cuda_layer_fn compute, void *ud,
                                double *copy_s, qx_err *e);

#ifdef __cplusplus
}
#endif

#endif
