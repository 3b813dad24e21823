/* kernels/cuda/matmul.cu — Y = X·Wᵀ on the GPU for every weight type the engine reads:
 * one fused kernel that decodes a tile of W (kernels/cuda/kn_dq.h, the same decoders
 * tests/test_kn_dq.c checks bit-exactly on the CPU) into BF16 in shared memory and
 * multiplies it with tensor cores (wmma 16x16x16, f32 accumulate).  Also the grouped
 * expert GEMM of the MoE layer (one launch over all experts' token ranges).
 *
 * Tile: 128 tokens x 64 weight rows per CTA, K steps of 32, 8 warps of 32x32.  Accuracy:
 * X and W are each split into BF16 hi + lo (x = hi + lo + O(2^-16 x)), and hi·hi + hi·lo +
 * lo·hi are accumulated (3 passes), so the result carries ~16 mantissa bits instead of
 * BF16's 8: the CUDA engine then reproduces the CPU's perplexity to well under 0.01%.
 * passes = 1 is plain BF16 (for speed measurements only). */
#include "kn_cuda.h"
#include "kn_dq.h"
/* The i-quant layouts compile here as well (their size asserts run under nvcc); IQ1/IQ2/IQ3
 * weights are not decoded on the device yet: kn_cuda_matmul_supported() is false for them
 * and the CUDA backend multiplies them on the CPU. */
#include "../../quant/blocks_iq.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <vector>

using namespace nvcuda;

namespace {

constexpr int BM = 128;      /* tokens per CTA */
constexpr int BN = 64;       /* weight rows per CTA */
constexpr int BK = 32;       /* K step */
constexpr int LDS = BK + 8;  /* shared row stride (bf16 elements; multiple of 8 for wmma) */
constexpr int NTHREADS = 256;

/* A weight view as the device reads it. */
struct dev_w {
    int type;
    const uint8_t *data;
    uint64_t row_bytes;
    const float *scale;      /* FP8 scale_inv grid or nullptr */
    int64_t rows, cols, scols;
};

/* One CTA row of work: tokens [t0, t1) of weight g (t1 - t0 <= BM). */
struct work_item {
    int g;
    int64_t t0, t1;
};

/* wmma fragment pointers must be 32-byte aligned: every array below starts at a multiple of 32. */
struct __align__(128) smem_t {
    __nv_bfloat16 a_hi[BM][LDS], a_lo[BM][LDS];
    __nv_bfloat16 b_hi[BN][LDS], b_lo[BN][LDS];
    float stage[NTHREADS / 32][16][16];
};

__device__ __forceinline__ void split_bf16(float v, __nv_bfloat16 *hi, __nv_bfloat16 *lo) {
    __nv_bfloat16 h = __float2bfloat16_rn(v);
    *hi = h;
    *lo = __float2bfloat16_rn(v - __bfloat162float(h));
}

template <int PASSES>
__device__ void gemm_tile(const dev_w &w, const float *__restrict__ x, int64_t ldx, int64_t t0, int64_t t1,
                          const float *__restrict__ bias, float *__restrict__ y, int64_t ldy, int64_t r0,
                          smem_t &sm) {
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int wm = warp / 2, wn = warp % 2;   /* warp tile: tokens wm*32.., rows wn*32.. */
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) wmma::fill_fragment(acc[i][j], 0.0f);

    const int a_row = tid / 2, a_col = (tid % 2) * 16;   /* 16 activations per thread */
    const int b_row = tid / 4, b_col = (tid % 4) * 8;    /* 8 weight elements per thread */
    const int64_t at = t0 + a_row, br = r0 + b_row;
    const float *xr = at < t1 ? x + at * ldx : nullptr;
    const uint8_t *wr = br < w.rows ? w.data + (uint64_t)br * w.row_bytes : nullptr;
    const float *sr = (w.scale && br < w.rows) ? w.scale + (br / 128) * w.scols : nullptr;

    for (int64_t k0 = 0; k0 < w.cols; k0 += BK) {
        for (int i = 0; i < 16; i++) {
            int64_t c = k0 + a_col + i;
            float v = (xr && c < w.cols) ? xr[c] : 0.0f;
            split_bf16(v, &sm.a_hi[a_row][a_col + i], &sm.a_lo[a_row][a_col + i]);
        }
        for (int i = 0; i < 8; i++) {
            int64_t c = k0 + b_col + i;
            float v = 0.0f;
            if (wr && c < w.cols) v = kn_dq_elem(w.type, wr, c, sr ? sr[c / 128] : 1.0f);
            split_bf16(v, &sm.b_hi[b_row][b_col + i], &sm.b_lo[b_row][b_col + i]);
        }
        __syncthreads();
        for (int kk = 0; kk < BK; kk += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> ah[2], al[2];
            wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> bh[2], bl[2];
            for (int i = 0; i < 2; i++) {
                wmma::load_matrix_sync(ah[i], &sm.a_hi[wm * 32 + i * 16][kk], LDS);
                wmma::load_matrix_sync(bh[i], &sm.b_hi[wn * 32 + i * 16][kk], LDS);
                if (PASSES == 3) {
                    wmma::load_matrix_sync(al[i], &sm.a_lo[wm * 32 + i * 16][kk], LDS);
                    wmma::load_matrix_sync(bl[i], &sm.b_lo[wn * 32 + i * 16][kk], LDS);
                }
            }
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 2; j++) {
                    if (PASSES == 3) {
                        wmma::mma_sync(acc[i][j], al[i], bh[j], acc[i][j]);
                        wmma::mma_sync(acc[i][j], ah[i], bl[j], acc[i][j]);
                    }
                    wmma::mma_sync(acc[i][j], ah[i], bh[j], acc[i][j]);
                }
        }
        __syncthreads();
    }
    /* epilogue through a per-warp 16x16 staging tile: bounds, bias, ldy */
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) {
            wmma::store_matrix_sync(&sm.stage[warp][0][0], acc[i][j], 16, wmma::mem_row_major);
            __syncwarp();
            for (int e = lane; e < 256; e += 32) {
                int m = e / 16, n = e % 16;
                int64_t t = t0 + wm * 32 + i * 16 + m, r = r0 + wn * 32 + j * 16 + n;
                if (t < t1 && r < w.rows) {
                    float v = sm.stage[warp][m][n];
                    y[t * ldy + r] = bias ? v + bias[r] : v;
                }
            }
            __syncwarp();
        }
}

template <int PASSES>
__global__ void __launch_bounds__(NTHREADS) k_matmul(dev_w w, const float *x, int64_t ldx, int64_t T,
                                                     const float *bias, float *y, int64_t ldy) {
    __shared__ smem_t sm;
    int64_t t0 = (int64_t)blockIdx.y * BM, t1 = t0 + BM < T ? t0 + BM : T;
    gemm_tile<PASSES>(w, x, ldx, t0, t1, bias, y, ldy, (int64_t)blockIdx.x * BN, sm);
}

template <int PASSES>
__global__ void __launch_bounds__(NTHREADS) k_matmul_grouped(const dev_w *ws, const work_item *items,
                                                             const float *x, int64_t ldx, float *y, int64_t ldy) {
    __shared__ smem_t sm;
    const work_item it = items[blockIdx.y];
    gemm_tile<PASSES>(ws[it.g], x, ldx, it.t0, it.t1, nullptr, y, ldy, (int64_t)blockIdx.x * BN, sm);
}

/* Tile blockIdx.y of the concatenated per-group tile lists (groups from device offsets). */
template <int PASSES>
__global__ void __launch_bounds__(NTHREADS) k_matmul_stacked(dev_w w0, uint64_t stride, int64_t sstride, int n_groups,
                                                             const int64_t *off, int64_t ybase, const float *x,
                                                             int64_t ldx, float *y, int64_t ldy) {
    __shared__ smem_t sm;
    int64_t acc = 0, want = ybase + blockIdx.y;
    for (int g = 0; g < n_groups; g++) {
        int64_t n = off[g + 1] - off[g], nt = (n + BM - 1) / BM;
        if (want < acc + nt) {
            dev_w w = w0;
            w.data += (uint64_t)g * stride;
            if (w.scale) w.scale += g * sstride;
            int64_t t0 = off[g] + (want - acc) * BM, t1 = t0 + BM < off[g + 1] ? t0 + BM : off[g + 1];
            gemm_tile<PASSES>(w, x, ldx, t0, t1, nullptr, y, ldy, (int64_t)blockIdx.x * BN, sm);
            return;
        }
        acc += nt;
    }
}

dev_w to_dev(const kn_weight *w) {
    dev_w d;
    d.type = (int)w->type;
    d.data = (const uint8_t *)w->data;
    d.row_bytes = w->row_bytes;
    d.scale = w->type == QT_F8_E4M3 ? w->scale_inv : nullptr;
    d.rows = w->rows;
    d.cols = w->cols;
    d.scols = (w->cols + 127) / 128;
    return d;
}

}  // namespace

extern "C" bool kn_cuda_matmul_supported(const kn_weight *w) {
    return w && kn_dq_supported((int)w->type) && w->cols > 0 && w->rows > 0;
}

extern "C" void kn_cuda_matmul_ex(const kn_weight *w, const float *x, int64_t ldx, int64_t T, const float *bias,
                                  float *y, int64_t ldy, int passes) {
    if (T <= 0 || w->rows <= 0) return;
    dim3 grid((unsigned)((w->rows + BN - 1) / BN), (unsigned)((T + BM - 1) / BM));
    if (passes == 1)
        k_matmul<1><<<grid, NTHREADS, 0, cudaStreamPerThread>>>(to_dev(w), x, ldx, T, bias, y, ldy);
    else
        k_matmul<3><<<grid, NTHREADS, 0, cudaStreamPerThread>>>(to_dev(w), x, ldx, T, bias, y, ldy);
}

extern "C" void kn_cuda_matmul(const kn_weight *w, const float *x, int64_t ldx, int64_t T, const float *bias,
                               float *y, int64_t ldy) {
    kn_cuda_matmul_ex(w, x, ldx, T, bias, y, ldy, 3);
}

extern "C" void kn_cuda_matmul_grouped(const kn_weight *ws, int n_groups, const int64_t *off, const float *x,
                                       int64_t ldx, float *y, int64_t ldy) {
    if (n_groups <= 0) return;
    std::vector<dev_w> dw((size_t)n_groups);
    std::vector<work_item> items;
    int64_t rows = 0;
    for (int g = 0; g < n_groups; g++) {
        dw[(size_t)g] = to_dev(&ws[g]);
        if (ws[g].rows > rows) rows = ws[g].rows;
        for (int64_t t = off[g]; t < off[g + 1]; t += BM)
            items.push_back(work_item{g, t, t + BM < off[g + 1] ? t + BM : off[g + 1]});
    }
    if (items.empty() || rows <= 0) return;
    /* descriptors travel with the launch's stream: one small device buffer, freed after it */
    size_t wbytes = dw.size() * sizeof(dev_w), ibytes = items.size() * sizeof(work_item);
    char *buf = nullptr;
    if (cudaMallocAsync((void **)&buf, wbytes + ibytes, cudaStreamPerThread) != cudaSuccess) return;
    cudaMemcpyAsync(buf, dw.data(), wbytes, cudaMemcpyHostToDevice, cudaStreamPerThread);
    cudaMemcpyAsync(buf + wbytes, items.data(), ibytes, cudaMemcpyHostToDevice, cudaStreamPerThread);
    for (size_t i0 = 0; i0 < items.size(); i0 += 65535) {
        size_t n = items.size() - i0 < 65535 ? items.size() - i0 : 65535;
        dim3 grid((unsigned)((rows + BN - 1) / BN), (unsigned)n);
        k_matmul_grouped<3><<<grid, NTHREADS, 0, cudaStreamPerThread>>>(
            (const dev_w *)buf, (const work_item *)(buf + wbytes) + i0, x, ldx, y, ldy);
    }
    /* cudaMemcpyAsync from pageable memory has consumed the host vectors on return */
    cudaFreeAsync(buf, cudaStreamPerThread);
}

extern "C" void kn_cuda_matmul_stacked(const kn_weight *w0, uint64_t stride, int64_t scale_stride, int n_groups,
                                       const int64_t *off, int64_t max_rows, const float *x, int64_t ldx, float *y,
                                       int64_t ldy) {
    if (n_groups <= 0 || max_rows <= 0 || w0->rows <= 0) return;
    int64_t tiles = (max_rows + BM - 1) / BM + n_groups;   /* >= Σ ceil(n_g / BM) */
    for (int64_t y0 = 0; y0 < tiles; y0 += 65535) {
        int64_t n = tiles - y0 < 65535 ? tiles - y0 : 65535;
        dim3 grid((unsigned)((w0->rows + BN - 1) / BN), (unsigned)n);
        k_matmul_stacked<3><<<grid, NTHREADS, 0, cudaStreamPerThread>>>(to_dev(w0), stride, scale_stride, n_groups,
                                                                        off, y0, x, ldx, y, ldy);
    }
}
