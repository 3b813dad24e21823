/* kernels/cuda/ops.cu — the engine's element-wise and per-token operations on the GPU, twins
 * of kernels/cpu/ops.c: RMSNorm, rotary embedding (YaRN factors arrive as inv_freq/mscale),
 * causal attention, SwiGLU, residual adds, MoE routing (noaux_tc) with the gather/combine
 * around the grouped expert GEMM, log-sum-exp and the per-row NLL/KLD/top-1 reductions.
 * Each output element is computed by one fixed sequence of operations (block reductions
 * in a fixed tree), so results are deterministic run to run.  No fast-math: expf/cosf/sinf
 * are CUDA's full-precision versions (within 2 ulp of the CPU's). */
#include "kn_cuda.h"

#include <cuda_runtime.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>

namespace {

constexpr int RED = 256;   /* threads of the per-row reduction kernels */

template <typename T>
__device__ T block_sum(T v, T *sh) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    const int w = threadIdx.x / 32, l = threadIdx.x % 32, nw = blockDim.x / 32;
    __syncthreads();
    if (l == 0) sh[w] = v;
    __syncthreads();
    T r = 0;
    for (int i = 0; i < nw; i++) r += sh[i];   /* same order in every thread */
    return r;
}

__device__ float block_max(float v, float *sh) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    const int w = threadIdx.x / 32, l = threadIdx.x % 32, nw = blockDim.x / 32;
    __syncthreads();
    if (l == 0) sh[w] = v;
    __syncthreads();
    float r = sh[0];
    for (int i = 1; i < nw; i++) r = fmaxf(r, sh[i]);
    return r;
}

/* (value, index) maximum with the lowest index on ties; NaN never wins. */
__device__ void block_argmax(float &v, int64_t &ix, float *shv, int64_t *shi) {
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, v, o);
        int64_t oi = __shfl_xor_sync(0xffffffffu, ix, o);
        if (ov > v || (ov == v && oi < ix) || (v != v && ov == ov)) { v = ov; ix = oi; }
    }
    const int w = threadIdx.x / 32, l = threadIdx.x % 32, nw = blockDim.x / 32;
    __syncthreads();
    if (l == 0) { shv[w] = v; shi[w] = ix; }
    __syncthreads();
    v = shv[0]; ix = shi[0];
    for (int i = 1; i < nw; i++)
        if (shv[i] > v || (shv[i] == v && shi[i] < ix) || (v != v && shv[i] == shv[i])) { v = shv[i]; ix = shi[i]; }
}

__global__ void k_rmsnorm(const float *x, int64_t ldx, const float *w, int64_t n, float eps, float *y, int64_t ldy) {
    __shared__ double sh[32];
    const float *xt = x + (int64_t)blockIdx.x * ldx;
    float *yt = y + (int64_t)blockIdx.x * ldy;
    double ss = 0.0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) ss += (double)xt[i] * xt[i];
    ss = block_sum(ss, sh);
    float r = 1.0f / sqrtf((float)(ss / (double)n) + eps);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) yt[i] = w[i] * (xt[i] * r);
}

__global__ void k_rope(float *x, int64_t ldx, int64_t T, int n_heads, int64_t head_stride, int half,
                       const int32_t *pos, const float *inv_freq, float mscale, bool neox) {
    int64_t id = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    int64_t n = T * n_heads * half;
    if (id >= n) return;
    int i = (int)(id % half);
    int h = (int)((id / half) % n_heads);
    int64_t t = id / ((int64_t)half * n_heads);
    float ang = (float)pos[t] * inv_freq[i];
    float cs = cosf(ang) * mscale, sn = sinf(ang) * mscale;
    float *p = x + t * ldx + h * head_stride;
    int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
    float x0 = p[a], x1 = p[b];
    p[a] = x0 * cs - x1 * sn;
    p[b] = x0 * sn + x1 * cs;
}

/* One block per (sequence, head, query i): scores of keys 0..i in shared memory. */
__global__ void k_attention(kn_attn_args a) {
    extern __shared__ float smem[];
    __shared__ float red[32];
    const int64_t item = blockIdx.x;
    const int64_t i = item % a.S;
    const int h = (int)((item / a.S) % a.n_heads);
    const int64_t s = item / (a.S * a.n_heads);
    const int g = h / (a.n_heads / a.n_kv_heads);
    const int64_t base = s * a.S;
    float *qs = smem, *sc = smem + a.dk;
    const float *qi = a.q + (base + i) * a.ldq + (int64_t)h * a.dq;
    for (int d = threadIdx.x; d < a.dk; d += blockDim.x) qs[d] = qi[d];
    __syncthreads();
    float m = -INFINITY;
    for (int64_t j = threadIdx.x; j <= i; j += blockDim.x) {
        const float *kj = a.k + (base + j) * a.ldk + (int64_t)g * a.dk_stride;
        float dot = 0.0f;
        for (int d = 0; d < a.dk; d++) dot += qs[d] * kj[d];
        float v = dot * a.scale;
        sc[j] = v;
        m = fmaxf(m, v);
    }
    m = block_max(m, red);
    float sum = 0.0f;
    for (int64_t j = threadIdx.x; j <= i; j += blockDim.x) {
        float p = expf(sc[j] - m);
        sc[j] = p;
        sum += p;
    }
    sum = block_sum(sum, red);   /* also the barrier before sc[] is read by all */
    const float inv = 1.0f / sum;
    float *oi = a.o + (base + i) * a.ldo + (int64_t)h * a.dv;
    for (int d = threadIdx.x; d < a.dv; d += blockDim.x) {
        float acc = 0.0f;
        const float *vd = a.v + base * a.ldv + (int64_t)g * a.dv_stride + d;
        for (int64_t j = 0; j <= i; j++) acc += (sc[j] * inv) * vd[j * a.ldv];
        oi[d] = acc;
    }
}

__global__ void k_silu_mul(const float *g, const float *u, int64_t ld, int64_t T, int64_t n, float *out, int64_t ldo) {
    int64_t id = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (id >= T * n) return;
    int64_t t = id / n, i = id % n;
    float z = g[t * ld + i];
    out[t * ldo + i] = z / (1.0f + expf(-z)) * u[t * ld + i];
}

__global__ void k_add_scaled(float *y, int64_t ldy, const float *x, int64_t ldx, const float *s, int64_t T, int64_t n) {
    int64_t id = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (id >= T * n) return;
    int64_t t = id / n, i = id % n;
    float f = s ? s[t] : 1.0f;
    y[t * ldy + i] += f * x[t * ldx + i];
}

/* Index of the largest v[i] among i with ok[i]; lowest index on ties; -1 if none. */
__device__ int argmax_masked(const float *v, const bool *ok, int n) {
    int best = -1;
    for (int i = 0; i < n; i++)
        if (ok[i] && (best < 0 || v[i] > v[best])) best = i;
    return best;
}

/* One warp per token: scores in parallel, the (small, serial) selection on lane 0 in the
 * CPU's exact order. */
__global__ void k_moe_route(kn_route_args a, const float *logits, int32_t *ids, float *w) {
    enum { MAXE = 1024 };
    __shared__ float s[MAXE], b[MAXE], gs[MAXE];
    __shared__ bool ok[MAXE], gok[MAXE], chosen[MAXE], keep[MAXE], in[MAXE];
    const int n = a.n_exp;
    const float *l = logits + (int64_t)blockIdx.x * n;
    int32_t *oid = ids + (int64_t)blockIdx.x * a.k;
    float *ow = w + (int64_t)blockIdx.x * a.k;
    if (a.sigmoid) {
        for (int e = threadIdx.x; e < n; e += blockDim.x) s[e] = 1.0f / (1.0f + expf(-l[e]));
    } else if (threadIdx.x == 0) {
        float m = l[0];
        for (int e = 1; e < n; e++) if (l[e] > m) m = l[e];
        float sum = 0.0f;
        for (int e = 0; e < n; e++) { s[e] = expf(l[e] - m); sum += s[e]; }
        for (int e = 0; e < n; e++) s[e] /= sum;
    }
    __syncthreads();
    for (int e = threadIdx.x; e < n; e += blockDim.x) {
        b[e] = a.bias ? s[e] + a.bias[e] : s[e];
        ok[e] = true;
        chosen[e] = false;
    }
    __syncthreads();
    if (threadIdx.x != 0) return;
    const int ng = a.n_group > 1 ? a.n_group : 1, per = n / ng;
    if (ng > 1 && a.topk_group < ng) {
        for (int gi = 0; gi < ng; gi++) {
            for (int e = 0; e < per; e++) in[e] = true;
            int i1 = argmax_masked(b + gi * per, in, per);
            float sc = b[gi * per + i1];
            if (per > 1) { in[i1] = false; sc += b[gi * per + argmax_masked(b + gi * per, in, per)]; }
            gs[gi] = sc; gok[gi] = true;
        }
        for (int gi = 0; gi < ng; gi++) keep[gi] = false;
        for (int r = 0; r < a.topk_group; r++) {
            int gi = argmax_masked(gs, gok, ng);
            keep[gi] = true; gok[gi] = false;
        }
        for (int e = 0; e < n; e++) ok[e] = keep[e / per];
    }
    float sum = 0.0f;
    for (int r = 0; r < a.k; r++) {
        int e = argmax_masked(b, ok, n);
        if (e < 0) break;
        chosen[e] = true; ok[e] = false; sum += s[e];
    }
    int j = 0;
    for (int e = 0; e < n && j < a.k; e++)
        if (chosen[e]) {
            oid[j] = e;
            ow[j] = (a.norm ? s[e] / (sum + 1e-20f) : s[e]) * a.scale;
            j++;
        }
    for (; j < a.k; j++) { oid[j] = -1; ow[j] = 0.0f; }
}

__global__ void k_gather_rows(const float *x, int64_t ldx, const int32_t *rows, int64_t n, int64_t cols, float *out, int64_t ldo) {
    int64_t id = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (id >= n * cols) return;
    int64_t i = id / cols, c = id % cols;
    out[i * ldo + c] = x[(int64_t)rows[i] * ldx + c];
}

__global__ void k_moe_combine(float *y, int64_t ldy, const float *ye, int64_t ldye, const int32_t *slot,
                              const float *w, int64_t T, int k, int64_t n) {
    int64_t id = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (id >= T * n) return;
    int64_t t = id / n, i = id % n;
    float acc = y[t * ldy + i];
    for (int j = 0; j < k; j++) {
        int32_t sl = slot[t * k + j];
        if (sl >= 0) acc += w[t * k + j] * ye[(int64_t)sl * ldye + i];
    }
    y[t * ldy + i] = acc;
}

/* One block per row: argmax, log-sum-exp in double, then the optional NLL and KLD. */
__global__ void k_lse_stats(const float *logits, int64_t ld, int64_t V, const int32_t *target, int base_k,
                            const int32_t *base_id, const float *base_logp, const float *base_rest,
                            double *lse, int32_t *argmax, double *nll, double *kld) {
    __shared__ float shv[32];
    __shared__ int64_t shi[32];
    __shared__ double shd[32];
    const int64_t t = blockIdx.x;
    const float *l = logits + t * ld;
    float bv = -INFINITY;
    int64_t bi = V;
    for (int64_t i = threadIdx.x; i < V; i += blockDim.x)
        if (bi == V || l[i] > bv) { bv = l[i]; bi = i; }
    if (bi == V) bv = -INFINITY;
    block_argmax(bv, bi, shv, shi);
    if (bi >= V) bi = 0;
    const double m = l[bi];
    double s = 0.0;
    for (int64_t i = threadIdx.x; i < V; i += blockDim.x) s += exp((double)l[i] - m);
    s = block_sum(s, shd);
    const double ls = m + log(s);
    double kl = 0.0, qtop = 0.0;
    if (base_k > 0) {
        for (int i = threadIdx.x; i < base_k; i += blockDim.x) {
            int32_t id = base_id[t * base_k + i];
            double lp = base_logp[t * base_k + i];
            double lq = (id >= 0 && id < V) ? (double)l[id] - ls : -INFINITY;
            kl += exp(lp) * (lp - lq);
            qtop += exp(lq);
        }
        kl = block_sum(kl, shd);
        qtop = block_sum(qtop, shd);
    }
    if (threadIdx.x != 0) return;
    if (lse) lse[t] = ls;
    if (argmax) argmax[t] = (int32_t)bi;
    if (nll) nll[t] = (target && target[t] >= 0 && target[t] < V) ? ls - (double)l[target[t]] : 0.0;
    if (kld && base_k > 0) {
        double rest = base_rest ? (double)base_rest[t] : -INFINITY;
        if (rest > -INFINITY) {
            double qr = 1.0 - qtop;
            if (qr < 1e-300) qr = 1e-300;
            kl += exp(rest) * (rest - log(qr));
        }
        kld[t] = kl;
    }
}

/* Bucketing, pass 1: pairs per expert (block e counts ids == e). */
__global__ void k_bucket_count(const int32_t *ids, int64_t n, int64_t *off) {
    __shared__ int64_t sh[32];
    const int e = blockIdx.x;
    int64_t c = 0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) c += ids[i] == e;
    c = block_sum(c, sh);
    if (threadIdx.x == 0) off[e + 1] = c;
}

__global__ void k_bucket_scan(int64_t *off, int n_exp) {
    off[0] = 0;
    for (int e = 0; e < n_exp; e++) off[e + 1] += off[e];
}

/* Pass 3: block e walks the pairs in order, placing its matches at off[e] + rank. */
__global__ void k_bucket_fill(const int32_t *ids, int64_t n, int k, const int64_t *off, int32_t *rows, int32_t *slot) {
    __shared__ int wsum[32];
    const int e = blockIdx.x, lane = threadIdx.x % 32, w = threadIdx.x / 32, nw = blockDim.x / 32;
    int64_t base = off[e];
    for (int64_t c0 = 0; c0 < n; c0 += blockDim.x) {
        int64_t i = c0 + threadIdx.x;
        bool hit = i < n && ids[i] == e;
        unsigned m = __ballot_sync(0xffffffffu, hit);
        if (lane == 0) wsum[w] = __popc(m);
        __syncthreads();
        int before = 0, total = 0;
        for (int j = 0; j < nw; j++) { if (j < w) before += wsum[j]; total += wsum[j]; }
        if (hit) {
            int64_t p = base + before + __popc(m & ((1u << lane) - 1u));
            rows[p] = (int32_t)(i / k);
            slot[i] = (int32_t)p;
        }
        base += total;
        __syncthreads();
    }
}

unsigned blocks_for(int64_t n, int per) { return (unsigned)((n + per - 1) / per); }

}  // namespace

#define KN_STREAM cudaStreamPerThread

extern "C" void kn_cuda_rmsnorm(const float *x, int64_t ldx, const float *w, int64_t T, int64_t n, float eps,
                                float *y, int64_t ldy) {
    if (T <= 0) return;
    for (int64_t t0 = 0; t0 < T; t0 += 1 << 30) {
        int64_t nt = T - t0 < (1 << 30) ? T - t0 : (1 << 30);
        k_rmsnorm<<<(unsigned)nt, RED, 0, KN_STREAM>>>(x + t0 * ldx, ldx, w, n, eps, y + t0 * ldy, ldy);
    }
}

extern "C" void kn_cuda_rope(float *x, int64_t ldx, int64_t T, int n_heads, int64_t head_stride, int dim,
                             const int32_t *pos, const float *inv_freq, float mscale, bool neox) {
    int half = dim / 2 < 256 ? dim / 2 : 256;
    int64_t n = T * n_heads * half;
    if (n <= 0) return;
    k_rope<<<blocks_for(n, 256), 256, 0, KN_STREAM>>>(x, ldx, T, n_heads, head_stride, half, pos, inv_freq, mscale, neox);
}

extern "C" void kn_cuda_attention(const kn_attn_args *a) {
    /* DSA selection lists (a->sel) have no device kernel: stop rather than attend densely. */
    if (a->sel) abort();
    if (a->n_seq <= 0 || a->S <= 0 || a->n_heads <= 0) return;
    size_t sm = ((size_t)a->dk + (size_t)a->S) * sizeof(float);
    static_assert(sizeof(kn_attn_args) < 4096, "kernel parameter size");
    /* static (red[32]) + dynamic past the default 48 KiB: opt in (1 KiB covers the static part) */
    if (sm + 1024 > 48 * 1024) cudaFuncSetAttribute(k_attention, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sm);
    int64_t items = a->n_seq * a->n_heads * a->S;
    k_attention<<<(unsigned)items, 128, sm, KN_STREAM>>>(*a);
}

extern "C" void kn_cuda_silu_mul(const float *g, const float *u, int64_t ld, int64_t T, int64_t n, float *out,
                                 int64_t ldo) {
    if (T * n <= 0) return;
    k_silu_mul<<<blocks_for(T * n, 256), 256, 0, KN_STREAM>>>(g, u, ld, T, n, out, ldo);
}

extern "C" void kn_cuda_add_scaled(float *y, int64_t ldy, const float *x, int64_t ldx, const float *s, int64_t T,
                                   int64_t n) {
    if (T * n <= 0) return;
    k_add_scaled<<<blocks_for(T * n, 256), 256, 0, KN_STREAM>>>(y, ldy, x, ldx, s, T, n);
}

extern "C" void kn_cuda_moe_route(const kn_route_args *a, const float *logits, int64_t T, int32_t *ids, float *w) {
    if (T <= 0 || a->n_exp <= 0 || a->n_exp > 1024) return;
    k_moe_route<<<(unsigned)T, 32, 0, KN_STREAM>>>(*a, logits, ids, w);
}

extern "C" void kn_cuda_logsumexp(const float *logits, int64_t ld, int64_t T, int64_t V, double *lse,
                                  int32_t *argmax) {
    kn_cuda_logsoftmax_stats(logits, ld, T, V, nullptr, 0, nullptr, nullptr, nullptr, lse, argmax, nullptr, nullptr);
}

extern "C" void kn_cuda_logsoftmax_stats(const float *logits, int64_t ld, int64_t T, int64_t V,
                                         const int32_t *target, int base_k, const int32_t *base_id,
                                         const float *base_logp, const float *base_rest, double *lse,
                                         int32_t *argmax, double *nll, double *kld) {
    if (T <= 0 || V <= 0) return;
    k_lse_stats<<<(unsigned)T, RED, 0, KN_STREAM>>>(logits, ld, V, target, base_k, base_id, base_logp, base_rest,
                                                    lse, argmax, nll, kld);
}

extern "C" void kn_cuda_gather_rows(const float *x, int64_t ldx, const int32_t *rows, int64_t n, int64_t cols,
                                    float *out, int64_t ldo) {
    if (n * cols <= 0) return;
    k_gather_rows<<<blocks_for(n * cols, 256), 256, 0, KN_STREAM>>>(x, ldx, rows, n, cols, out, ldo);
}

extern "C" void kn_cuda_moe_combine(float *y, int64_t ldy, const float *ye, int64_t ldye, const int32_t *slot,
                                    const float *w, int64_t T, int k, int64_t n) {
    if (T * n <= 0) return;
    k_moe_combine<<<blocks_for(T * n, 256), 256, 0, KN_STREAM>>>(y, ldy, ye, ldye, slot, w, T, k, n);
}

extern "C" void kn_cuda_moe_bucket(const int32_t *ids, int64_t T, int k, int n_exp, int64_t *off, int32_t *rows,
                                   int32_t *slot) {
    const int64_t n = T * k;
    if (n_exp <= 0) return;
    cudaMemsetAsync(off, 0, (size_t)(n_exp + 1) * sizeof(int64_t), KN_STREAM);
    if (n <= 0) return;
    cudaMemsetAsync(slot, 0xff, (size_t)n * sizeof(int32_t), KN_STREAM);
    k_bucket_count<<<(unsigned)n_exp, RED, 0, KN_STREAM>>>(ids, n, off);
    k_bucket_scan<<<1, 1, 0, KN_STREAM>>>(off, n_exp);
    k_bucket_fill<<<(unsigned)n_exp, RED, 0, KN_STREAM>>>(ids, n, k, off, rows, slot);
}
