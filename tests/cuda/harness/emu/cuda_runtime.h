/* tests/cuda/harness/emu/cuda_runtime.h — a single-threaded CPU emulation of the CUDA subset
 * that kernels/cuda/ops_v4.cu uses, so its kernels run (index arithmetic, launch bounds,
 * shared-memory sizes, barriers, warp shuffles) on a machine without a GPU; under
 * AddressSanitizer every out-of-bounds access to global or dynamic shared memory is caught.
 * tests/cuda/harness/check_v4_emu.sh compiles ops_v4.cu against it as host C++ (after
 * rewriting the <<<>>> launches and the extern __shared__ declaration, which C++ cannot
 * parse) and runs tests/cuda/test_cuda_v4.c on the result.
 *
 * Model: the blocks of a launch run one after another; the threads of a block are fibers
 * (ucontext stacks, switched with _setjmp/_longjmp) run until each finishes or waits, a warp
 * at a time between barriers, in thread order in even blocks and backwards in odd ones (a
 * read that misses a barrier then sees unwritten data in one of the two).  __syncthreads
 * waits until every unfinished thread of the block waits there; __shfl_xor_sync until all 32
 * lanes of the warp arrive (a lane that has returned or waits at __syncthreads meanwhile is
 * reported: a divergent shuffle, undefined with a full mask).  __shared__ variables are
 * static (one block at a time).
 * Math is the host's (glibc expf, IEEE + and *): the emulation checks logic, not CUDA's
 * rounding.  Not part of the library; a test tool only. */
#ifndef QF_CUDA_EMU_H
#define QF_CUDA_EMU_H

#include <cmath>
#include <csetjmp>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <ucontext.h>
#include <vector>

using std::isnan;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static

typedef int cudaError_t;
typedef int cudaStream_t;
enum { cudaSuccess = 0 };
enum { cudaDevAttrMaxSharedMemoryPerBlockOptin = 97 };
enum { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
#define cudaStreamPerThread 0

struct emu_dim3 { unsigned x, y, z; };

namespace emu {

enum { WAIT_NONE, WAIT_BLOCK, WAIT_WARP, DONE };
constexpr size_t STACK = 256 * 1024;
constexpr size_t OPTIN_SMEM = 227 * 1024;   /* what an H100/H200 block may opt in to */

struct fiber {
    ucontext_t uc;
    jmp_buf jb;
    int state;
    bool started;
    emu_dim3 tid;
    std::vector<char> stack;
};

struct block_state {
    std::vector<fiber> f;
    int cur = 0;
    jmp_buf sched;
    ucontext_t sched_uc;
    std::function<void()> body;
    float shfl_f[1024];
    emu_dim3 bid, bdim, gdim;
    char *dyn = nullptr;
};

inline block_state &bs() { static block_state s; return s; }

inline void yield(int why) {
    block_state &b = bs();
    fiber &f = b.f[(size_t)b.cur];
    f.state = why;
    if (!_setjmp(f.jb)) _longjmp(b.sched, 1);
}

inline void trampoline() {
    block_state &b = bs();
    b.body();
    b.f[(size_t)b.cur].state = DONE;
    _longjmp(b.sched, 1);
}

/* Runs fiber i until it finishes or waits. */
inline void step(int i) {
    block_state &b = bs();
    fiber &f = b.f[(size_t)i];
    b.cur = i;
    if (!_setjmp(b.sched)) {
        if (!f.started) {
            f.started = true;
            getcontext(&f.uc);
            f.uc.uc_stack.ss_sp = f.stack.data();
            f.uc.uc_stack.ss_size = f.stack.size();
            f.uc.uc_link = nullptr;
            makecontext(&f.uc, trampoline, 0);
            setcontext(&f.uc);
        }
        _longjmp(f.jb, 1);
    }
}

/* Runs warp w as far as it goes alone: through its shuffles, up to __syncthreads or the end. */
inline void run_warp(int w, bool back) {
    block_state &b = bs();
    const int l0 = w * 32, l1 = l0 + 32 < (int)b.f.size() ? l0 + 32 : (int)b.f.size();
    for (;;) {
        for (int k = l0; k < l1; k++) {
            const int i = back ? l1 - 1 - (k - l0) : k;
            if (b.f[(size_t)i].state == WAIT_NONE) step(i);
        }
        int at_warp = 0, fin = 0;
        for (int l = l0; l < l1; l++) {
            at_warp += b.f[(size_t)l].state == WAIT_WARP;
            fin += b.f[(size_t)l].state == DONE;
        }
        if (!at_warp) return;
        if (at_warp != l1 - l0) {
            fprintf(stderr, "cuda emu: block %u warp %d: %d lanes at a shuffle, %d finished, the rest at __syncthreads\n",
                    b.bid.x, w, at_warp, fin);
            abort();
        }
        for (int l = l0; l < l1; l++) b.f[(size_t)l].state = WAIT_NONE;
    }
}

/* Runs one block to completion, one warp at a time between barriers (in warp order in even
 * blocks, backwards in odd ones, so a read that misses a barrier sees the other warps' data
 * not yet written in one of the two); aborts on a divergent shuffle. */
inline void run_block() {
    block_state &b = bs();
    const int n = (int)b.f.size(), nw = (n + 31) / 32;
    const bool back = b.bid.x % 2;
    for (int i = 0; i < n; i++) { b.f[(size_t)i].state = WAIT_NONE; b.f[(size_t)i].started = false; }
    for (;;) {
        for (int k = 0; k < nw; k++) run_warp(back ? nw - 1 - k : k, back);
        int done = 0;
        for (int i = 0; i < n; i++) {
            done += b.f[(size_t)i].state == DONE;
            if (b.f[(size_t)i].state == WAIT_BLOCK) b.f[(size_t)i].state = WAIT_NONE;
        }
        if (done == n) return;
    }
}

template <typename... P, typename... A>
void launch(void (*k)(P...), unsigned grid, int block, size_t smem, int stream, A... args) {
    (void)stream;
    block_state &b = bs();
    if (grid == 0 || block <= 0 || block > 1024 || block % 32 || smem > OPTIN_SMEM) {
        fprintf(stderr, "cuda emu: bad launch (grid %u, block %d, smem %zu)\n", grid, block, smem);
        abort();
    }
    b.f.resize((size_t)block);
    for (int i = 0; i < block; i++) {
        b.f[(size_t)i].tid = emu_dim3{ (unsigned)i, 0, 0 };
        if (b.f[(size_t)i].stack.size() != STACK) b.f[(size_t)i].stack.assign(STACK, 0);
    }
    b.bdim = emu_dim3{ (unsigned)block, 1, 1 };
    b.gdim = emu_dim3{ grid, 1, 1 };
    b.body = [=]() { k(args...); };
    for (unsigned g = 0; g < grid; g++) {
        b.bid = emu_dim3{ g, 0, 0 };
        free(b.dyn);   /* exactly smem bytes, fresh each block: AddressSanitizer sees any overrun */
        b.dyn = (char *)malloc(smem ? smem : 1);
        memset(b.dyn, 0x5a, smem);
        run_block();
    }
}

inline void *dyn_smem() { return bs().dyn; }

}  // namespace emu

#define threadIdx (emu::bs().f[(size_t)emu::bs().cur].tid)
#define blockIdx (emu::bs().bid)
#define blockDim (emu::bs().bdim)
#define gridDim (emu::bs().gdim)

inline void __syncthreads() { emu::yield(emu::WAIT_BLOCK); }

inline float __shfl_xor_sync(unsigned mask, float v, int o) {
    (void)mask;
    emu::block_state &b = emu::bs();
    const int me = b.cur;
    b.shfl_f[me] = v;
    emu::yield(emu::WAIT_WARP);
    const float r = b.shfl_f[me ^ o];
    emu::yield(emu::WAIT_WARP);   /* nobody overwrites a slot before every lane has read */
    return r;
}

/* expf/logf off by -2..2 ulp (a fixed function of the argument): check_v4_emu.sh's third run
 * calls these instead of expf/logf, to see the tolerances hold with CUDA's error bound. */
inline float emu_ulps(float r, float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    u ^= u >> 15; u *= 0x2c1b3c6dU; u ^= u >> 12;
    const int k = (int)(u % 5) - 2;
    for (int i = 0; i < (k < 0 ? -k : k); i++) r = nextafterf(r, k < 0 ? -INFINITY : INFINITY);
    return r;
}
inline float emu_expf(float x) { return emu_ulps(expf(x), x); }
inline float emu_logf(float x) { return emu_ulps(logf(x), x); }

inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline int atomicOr(int *p, int v) { int o = *p; *p = o | v; return o; }

inline cudaError_t cudaMemsetAsync(void *p, int v, size_t n, int s) { (void)s; memset(p, v, n); return cudaSuccess; }
inline cudaError_t cudaGetDevice(int *d) { *d = 0; return cudaSuccess; }
inline cudaError_t cudaDeviceGetAttribute(int *v, int attr, int dev) {
    (void)attr; (void)dev;
    *v = (int)emu::OPTIN_SMEM;
    return cudaSuccess;
}
template <typename K> cudaError_t cudaFuncSetAttribute(K k, int attr, int v) { (void)k; (void)attr; (void)v; return cudaSuccess; }

#endif
