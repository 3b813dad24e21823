/* kernels/cuda/ops_v4.cu — the DeepSeek-V4 operations on the GPU, twins of kernels/cpu/dsv4.c:
 * hyper-connection coefficients (Sinkhorn), stream collapse/expand, the KV compressor's
 * softmax pooling, the indexer's top-k over compressed blocks, attention over a sliding
 * window plus compressed rows with per-head sinks, sqrt-softplus/hash routing and the SwiGLU
 * clamp.  Contracts: kernels.h (CPU) and kn_cuda.h (the device differences and limits).
 *
 * Arithmetic follows the CPU code operation for operation.  Where the CPU computes a*b + c
 * (gcc -std=c11 does not contract it into an FMA), these kernels write mul_add (two
 * roundings, never fused), so collapse, expand and the indexer scores give the CPU _ref's
 * bits; the indexer must, because its top-k keeps exactly the blocks the CPU keeps, ties
 * included.  What remains different: expf/logf (CUDA's full-precision versions, within 2 ulp
 * of glibc's) and the attention's dot products and softmax sum (fixed warp/block trees).
 * Every output element comes from one fixed sequence of operations: deterministic run to
 * run, no float atomics.  No fast-math. */
#include "kn_cuda.h"
#include "kernels/cpu/kn_twin.h"

#include <cuda_runtime.h>
#include <math.h>
#include <stdlib.h>

namespace {

constexpr int EW = 256;    /* threads of the element-wise kernels */
constexpr int BLK = 128;   /* threads of the per-token / per-query kernels (4 warps) */

/* a*b + c with two roundings, as the CPU's C computes it (nvcc would fuse a plain a*b + c). */
__device__ __forceinline__ float mul_add(float a, float b, float c) { return __fadd_rn(__fmul_rn(a, b), c); }

__device__ __forceinline__ float sigm(float x) { return 1.0f / (1.0f + expf(-x)); }

/* Block-wide max / sum of one float per thread (blockDim.x a multiple of 32, at most 1024);
 * the partials combine in one fixed order, so every thread gets the same, reproducible value.
 * Also a barrier: shared-memory writes made before the call are visible after it. */
__device__ float blk_max(float v, float *sh) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    const int w = threadIdx.x / 32, nw = blockDim.x / 32;
    __syncthreads();
    if (threadIdx.x % 32 == 0) sh[w] = v;
    __syncthreads();
    float r = sh[0];
    for (int i = 1; i < nw; i++) r = fmaxf(r, sh[i]);
    return r;
}

__device__ float blk_sum(float v, float *sh) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    const int w = threadIdx.x / 32, nw = blockDim.x / 32;
    __syncthreads();
    if (threadIdx.x % 32 == 0) sh[w] = v;
    __syncthreads();
    float r = 0.0f;
    for (int i = 0; i < nw; i++) r += sh[i];
    return r;
}

unsigned blocks_for(int64_t n, int per) { return (unsigned)((n + per - 1) / per); }

/* ---- hyper-connections ---- */

/* One thread per token: the hc x hc Sinkhorn lives in the thread's local memory. */
__global__ void k_hc_coeffs(kn_hc_args a, const float *mixes, int64_t ldm, int64_t T, float *pre, float *post,
                            float *comb) {
    const int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= T) return;
    const int hc = a.hc;
    const float *m = mixes + t * ldm;
    for (int h = 0; h < hc; h++) pre[t * hc + h] = sigm(mul_add(m[h], a.scale[0], a.base[h])) + a.eps;
    if (!post || !comb) return;
    for (int h = 0; h < hc; h++) post[t * hc + h] = 2.0f * sigm(mul_add(m[hc + h], a.scale[1], a.base[hc + h]));
    float c[KN_V4_MAX_HC * KN_V4_MAX_HC];
    for (int s = 0; s < hc; s++) {   /* softmax over destinations d of each source s */
        float mx = -INFINITY, sum = 0.0f;
        for (int d = 0; d < hc; d++) {
            const int i = s * hc + d;
            c[i] = mul_add(m[2 * hc + i], a.scale[2], a.base[2 * hc + i]);
            mx = c[i] > mx ? c[i] : mx;
        }
        for (int d = 0; d < hc; d++) { c[s * hc + d] = expf(c[s * hc + d] - mx); sum += c[s * hc + d]; }
        const float inv = 1.0f / sum;
        for (int d = 0; d < hc; d++) c[s * hc + d] = mul_add(c[s * hc + d], inv, a.eps);
    }
    for (int it = 0; it < a.n_iter; it++) {
        if (it > 0)
            for (int s = 0; s < hc; s++) {   /* rows: sum over d */
                float sum = a.eps;
                for (int d = 0; d < hc; d++) sum += c[s * hc + d];
                const float inv = 1.0f / sum;
                for (int d = 0; d < hc; d++) c[s * hc + d] *= inv;
            }
        for (int d = 0; d < hc; d++) {   /* columns: sum over s */
            float sum = a.eps;
            for (int s = 0; s < hc; s++) sum += c[s * hc + d];
            const float inv = 1.0f / sum;
            for (int s = 0; s < hc; s++) c[s * hc + d] *= inv;
        }
    }
    float *ct = comb + t * hc * hc;
    for (int i = 0; i < hc * hc; i++) ct[i] = c[i];
}

/* One thread per (t, i). */
__global__ void k_hc_collapse(const float *x, const float *pre, int hc, int64_t T, int64_t n, float *y) {
    const int64_t id = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (id >= T * n) return;
    const int64_t t = id / n, i = id % n;
    const float *xt = x + t * hc * n, *pt = pre + t * hc;
    float s = 0.0f;
    for (int h = 0; h < hc; h++) s = mul_add(xt[h * n + i], pt[h], s);
    y[id] = s;
}

/* One thread per (t, d, i). */
__global__ void k_hc_expand(const float *y, const float *res, const float *post, const float *comb, int hc, int64_t T,
                            int64_t n, float *out) {
    const int64_t id = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (id >= T * hc * n) return;
    const int64_t i = id % n, t = id / ((int64_t)hc * n);
    const int d = (int)((id / n) % hc);
    const float *rt = res + t * hc * n, *ct = comb + t * hc * hc;
    float v = __fmul_rn(y[t * n + i], post[t * hc + d]);
    for (int s = 0; s < hc; s++) v = mul_add(rt[s * n + i], ct[s * hc + d], v);
    out[id] = v;
}

/* ---- KV compressor ----
 * One thread per (block, channel i).  The CPU keeps the block's scores in an array; here
 * three passes recompute them (max, sum of exps, weighted values): the same values in the
 * same order.  Block 0's overlap half (score -inf, weight exactly 0) is skipped. */
__global__ void k_v4_compress(kn_comp_args a, int64_t nb) {
    const int64_t id = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int r = a.r, d = a.d;
    if (id >= a.n_seq * nb * d) return;
    const int i = (int)(id % d);
    const int64_t k = id / d, s = k / nb, b = k % nb, t0 = s * a.S + b * r;
    const bool prev = a.overlap && b > 0;
    const int off = a.overlap ? d : 0;
    float mx = -INFINITY, sum = 0.0f, acc = 0.0f;
    if (prev)
        for (int j = 0; j < r; j++) {
            const float v = a.score[(t0 - r + j) * a.ld + i] + a.ape[(int64_t)j * a.ldape + i];
            mx = v > mx ? v : mx;
        }
    for (int j = 0; j < r; j++) {
        const float v = a.score[(t0 + j) * a.ld + off + i] + a.ape[(int64_t)j * a.ldape + off + i];
        mx = v > mx ? v : mx;
    }
    if (prev)
        for (int j = 0; j < r; j++)
            sum += expf(a.score[(t0 - r + j) * a.ld + i] + a.ape[(int64_t)j * a.ldape + i] - mx);
    for (int j = 0; j < r; j++)
        sum += expf(a.score[(t0 + j) * a.ld + off + i] + a.ape[(int64_t)j * a.ldape + off + i] - mx);
    const float inv = 1.0f / sum;
    if (prev)
        for (int j = 0; j < r; j++) {
            const float e = expf(a.score[(t0 - r + j) * a.ld + i] + a.ape[(int64_t)j * a.ldape + i] - mx);
            acc = mul_add(a.kv[(t0 - r + j) * a.ld + i], __fmul_rn(e, inv), acc);
        }
    for (int j = 0; j < r; j++) {
        const float e = expf(a.score[(t0 + j) * a.ld + off + i] + a.ape[(int64_t)j * a.ldape + off + i] - mx);
        acc = mul_add(a.kv[(t0 + j) * a.ld + off + i], __fmul_rn(e, inv), acc);
    }
    a.out[k * d + i] = acc;
}

/* ---- indexer top-k over compressed blocks ----
 * libstdc++'s heap selection, the same text kernels/cpu/dsa.c runs (kernels/cpu/kn_twin.h):
 * the same comparisons on the same scores keep the same blocks, ties included. */
/* One block per query t.  Shared memory: sc [nb] floats | heap [top_k] int32 | keep [nb] bytes.
 * Each thread scores whole blocks in the CPU's order (kn_dot_ref: left to right, then the
 * ReLU-weighted head sum), so sc[] holds the CPU _ref's bits; thread 0 then selects. */
__global__ void k_v4_select(kn_v4_sel_args a, int64_t nb) {
    extern __shared__ float sm[];
    float *sc = sm;
    int32_t *heap = (int32_t *)(sc + nb);
    unsigned char *keep = (unsigned char *)(heap + a.top_k);
    const int64_t t = blockIdx.x, s = t / a.S, i = t % a.S, nv = (i + 1) / a.r;
    int32_t *out = a.sel + t * a.top_k;
    if (nv <= a.top_k) {   /* every block */
        for (int64_t j = threadIdx.x; j < a.top_k; j += blockDim.x) out[j] = j < nv ? (int32_t)j : -1;
        return;
    }
    const float *qi = a.q + t * a.ldq, *wi = a.w + t * a.ldw, *kb = a.k + s * nb * a.ldk;
    for (int64_t j = threadIdx.x; j < nv; j += blockDim.x) {
        const float *kj = kb + j * a.ldk;
        float v = 0.0f;
        for (int h = 0; h < a.n_heads; h++) {
            const float *qh = qi + (int64_t)h * a.dh;
            float dot = 0.0f;
            for (int x = 0; x < a.dh; x++) dot = mul_add(qh[x], kj[x], dot);
            v = mul_add(dot > 0.0f ? dot : 0.0f, wi[h], v);
        }
        sc[j] = isnan(v) ? -INFINITY : v;
    }
    __syncthreads();
    if (threadIdx.x != 0) return;
    kn_twin_heap_select(heap, a.top_k, nv, sc);
    for (int64_t j = 0; j < nv; j++) keep[j] = 0;
    for (int64_t r = 0; r < a.top_k; r++) keep[heap[r]] = 1;
    int64_t n = 0;
    for (int64_t j = 0; j < nv; j++)
        if (keep[j]) out[n++] = (int32_t)j;
}

/* ---- attention with sinks over the window and compressed rows ----
 * One block per (token, head).  Shared memory: q [d] | p [cap] (the scores, then the
 * probabilities).  A warp per score row (lanes stride d, then a fixed xor tree); a thread per
 * output channel sums the rows in the CPU's order (window, then compressed). */
__global__ void k_v4_attention(kn_v4_attn_args a, int64_t nb) {
    extern __shared__ float sm[];
    __shared__ float red[32];
    __shared__ int64_t nc_sh;
    const int64_t t = blockIdx.x / a.n_heads, s = t / a.S, i = t % a.S;
    const int h = (int)(blockIdx.x % a.n_heads), d = a.d;
    const int64_t j0 = i - a.n_swa + 1 > 0 ? i - a.n_swa + 1 : 0, nr = i - j0 + 1;
    const float *q = a.q + t * a.ldq + (int64_t)h * a.dq;
    const float *kv0 = a.kv + s * a.S * a.ldkv, *ck0 = a.ck ? a.ck + s * nb * a.ldck : nullptr;
    const int32_t *sl = a.sel ? a.sel + t * a.n_sel : nullptr;
    float *qs = sm, *p = sm + d;
    for (int x = threadIdx.x; x < d; x += blockDim.x) qs[x] = q[x];
    if (threadIdx.x == 0) {
        int64_t nc = 0;
        if (a.r > 0) {
            if (sl) { while (nc < a.n_sel && sl[nc] >= 0) nc++; }
            else nc = (i + 1) / a.r;
        }
        nc_sh = nc;
    }
    __syncthreads();
    const int64_t nc = nc_sh, n = nr + nc;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
    for (int64_t j = warp; j < n; j += nw) {
        const float *row = j < nr ? kv0 + (j0 + j) * a.ldkv : ck0 + (sl ? (int64_t)sl[j - nr] : j - nr) * a.ldck;
        float acc = 0.0f;
        for (int x = lane; x < d; x += 32) acc = mul_add(qs[x], row[x], acc);
        for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
        if (lane == 0) p[j] = acc * a.scale;
    }
    __syncthreads();
    float m = -INFINITY;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) m = p[j] > m ? p[j] : m;
    m = blk_max(m, red);
    const float sink = a.sinks ? a.sinks[h] : -INFINITY;
    const float mx = sink > m ? sink : m;
    float sum = 0.0f;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
        const float e = expf(p[j] - mx);
        p[j] = e;
        sum += e;
    }
    sum = blk_sum(sum, red);   /* also the barrier before p[] is read by all */
    if (a.sinks) sum += expf(sink - mx);
    const float inv = 1.0f / sum;
    float *o = a.o + t * a.ldo + (int64_t)h * d;
    for (int x = threadIdx.x; x < d; x += blockDim.x) {
        float acc = 0.0f;
        for (int64_t j = 0; j < nr; j++) acc = mul_add(__fmul_rn(p[j], inv), kv0[(j0 + j) * a.ldkv + x], acc);
        for (int64_t c = 0; c < nc; c++) {
            const int64_t b = sl ? (int64_t)sl[c] : c;
            acc = mul_add(__fmul_rn(p[nr + c], inv), ck0[b * a.ldck + x], acc);
        }
        o[x] = acc;
    }
}

/* ---- routing and the SwiGLU clamp ---- */

/* One block per token: p in parallel into shared memory, then thread 0 chooses and weighs
 * exactly as the CPU loop does (the ids and weights are written in place, as there). */
__global__ void k_v4_route(kn_v4_route_args a, const float *logits, int32_t *ids, float *w, int32_t *bad) {
    __shared__ float p[KN_V4_MAX_EXPERTS];
    const int X = a.n_exp, k = a.k;
    const int64_t t = blockIdx.x;
    const float *l = logits + t * X;
    for (int x = threadIdx.x; x < X; x += blockDim.x) {
        const float sp = l[x] > 20.0f ? l[x] : logf(1.0f + expf(l[x]));
        p[x] = sqrtf(sp);
    }
    __syncthreads();
    if (threadIdx.x != 0) return;
    if (!kn_twin_v4_route_pick(&a, p, t, ids + t * k, w + t * k) && bad) atomicOr(bad, 1);   /* kn_twin.h: the CPU's text */
}

__global__ void k_silu_mul_clamp(const float *g, const float *u, int64_t ld, int64_t T, int64_t n, float limit,
                                 float *out, int64_t ldo) {
    const int64_t id = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (id >= T * n) return;
    const int64_t t = id / n, i = id % n;
    float z = g[t * ld + i], v = u[t * ld + i];
    z = z < limit ? z : limit;
    v = v < -limit ? -limit : v > limit ? limit : v;
    out[t * ldo + i] = z / (1.0f + expf(-z)) * v;
}

/* The most dynamic shared memory one block of the current device may use (opt-in). */
size_t smem_optin(void) {
    int dev = 0, v = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess || v < 48 * 1024)
        return 48 * 1024;
    return (size_t)v;
}

}  // namespace

#define KN_STREAM cudaStreamPerThread

extern "C" void kn_cuda_hc_coeffs(const kn_hc_args *a, const float *mixes, int64_t ldm, int64_t T, float *pre,
                                  float *post, float *comb) {
    if (a->hc < 1 || a->hc > KN_V4_MAX_HC) abort();   /* as kn_hc_coeffs: the engine checks hc at model open */
    if (T <= 0) return;
    k_hc_coeffs<<<blocks_for(T, BLK), BLK, 0, KN_STREAM>>>(*a, mixes, ldm, T, pre, post, comb);
}

extern "C" void kn_cuda_hc_collapse(const float *x, const float *pre, int hc, int64_t T, int64_t n, float *y) {
    if (T * n <= 0 || hc <= 0) return;
    k_hc_collapse<<<blocks_for(T * n, EW), EW, 0, KN_STREAM>>>(x, pre, hc, T, n, y);
}

extern "C" void kn_cuda_hc_expand(const float *y, const float *res, const float *post, const float *comb, int hc,
                                  int64_t T, int64_t n, float *out) {
    if (T * n <= 0 || hc <= 0) return;
    k_hc_expand<<<blocks_for(T * hc * n, EW), EW, 0, KN_STREAM>>>(y, res, post, comb, hc, T, n, out);
}

extern "C" void kn_cuda_v4_compress(const kn_comp_args *a) {
    if (a->r < 1 || a->r > KN_V4_MAX_RATIO) abort();   /* as kn_v4_compress */
    const int64_t nb = a->S / a->r, n = a->n_seq * nb * a->d;
    if (n <= 0) return;
    k_v4_compress<<<blocks_for(n, EW), EW, 0, KN_STREAM>>>(*a, nb);
}

extern "C" void kn_cuda_v4_select(const kn_v4_sel_args *a) {
    const int64_t T = a->n_seq * a->S;
    if (T <= 0 || a->top_k <= 0) return;
    if (a->r < 1 || T > KN_CUDA_MAX_ITEMS) abort();
    const int64_t nb = a->S / a->r;
    const size_t sm = (size_t)nb * sizeof(float) + (size_t)a->top_k * sizeof(int32_t) + (size_t)nb;
    if (sm > KN_CUDA_V4_SELECT_SMEM) abort();   /* S / r and top_k past kn_cuda.h's limit */
    k_v4_select<<<(unsigned)T, BLK, sm, KN_STREAM>>>(*a, nb);
}

extern "C" void kn_cuda_v4_attention(const kn_v4_attn_args *a) {
    const int64_t T = a->n_seq * a->S;
    if (T <= 0 || a->n_heads <= 0 || a->d <= 0) return;
    if (a->n_swa < 0 || a->r < 0 || T * a->n_heads > KN_CUDA_MAX_ITEMS) abort();
    const int64_t nb = a->r > 0 ? a->S / a->r : 0;
    const int64_t win = a->n_swa < a->S ? a->n_swa : a->S;
    const int64_t comp = a->r > 0 ? (a->sel ? a->n_sel : nb) : 0;
    const size_t sm = ((size_t)a->d + (size_t)win + (size_t)comp) * sizeof(float);
    if (sm + 1024 > smem_optin()) abort();   /* past kn_cuda.h's limit for this device (1 KiB: the static part) */
    if (sm + 1024 > 48 * 1024)   /* static + dynamic past the default 48 KiB: opt in */
        cudaFuncSetAttribute(k_v4_attention, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sm);
    static_assert(sizeof(kn_v4_attn_args) < 4096, "kernel parameter size");
    k_v4_attention<<<(unsigned)(T * a->n_heads), BLK, sm, KN_STREAM>>>(*a, nb);
}

extern "C" void kn_cuda_v4_route(const kn_v4_route_args *a, const float *logits, int64_t T, int32_t *ids, float *w,
                                 int32_t *bad) {
    if (a->n_exp < 1 || a->n_exp > KN_V4_MAX_EXPERTS || a->k < 0 || (!a->hash && a->k > a->n_exp) ||
        T > KN_CUDA_MAX_ITEMS)
        abort();   /* as kn_v4_route: the loader refuses more experts */
    if (bad) cudaMemsetAsync(bad, 0, sizeof(int32_t), KN_STREAM);
    if (T <= 0 || a->k == 0) return;
    k_v4_route<<<(unsigned)T, BLK, 0, KN_STREAM>>>(*a, logits, ids, w, bad);
}

extern "C" void kn_cuda_silu_mul_clamp(const float *g, const float *u, int64_t ld, int64_t T, int64_t n, float limit,
                                       float *out, int64_t ldo) {
    if (!(limit > 1e-6f)) { kn_cuda_silu_mul(g, u, ld, T, n, out, ldo); return; }
    if (T * n <= 0) return;
    k_silu_mul_clamp<<<blocks_for(T * n, EW), EW, 0, KN_STREAM>>>(g, u, ld, T, n, limit, out, ldo);
}
