/* kernels/kernels.h — the one public header of kernels/: the engine's operations (kn_),
 * each with a plain C reference, an OpenMP/SIMD CPU version (kernels/cpu) and a CUDA twin
 * (kernels/cuda) of the same signature.
 *
 * Conventions: activations are row-major f32 with one row per token ([T, n]); a weight is a
 * kn_weight view ([rows = out_features, cols = in_features], torch order), never copied or
 * dequantized as a whole: kernels dequantize tiles of rows on the fly.  Every kernel's
 * output is independent of the thread count (OpenMP only splits independent output rows or
 * items; each output element is computed by one fixed sequence of operations). */
#ifndef KERNELS_H
#define KERNELS_H

#ifdef __cplusplus   /* the CUDA twins (kernels/cuda, .cu files) include this from C++ */
extern "C" {
#endif

#include "../common/qx.h"
#include "../quant/qt.h"

/* A borrowed rows x cols weight matrix in any storage type:
 *   QT_F32/F16/BF16         plain rows,
 *   QT_F8_E4M3 (+scale_inv) DeepSeek block-scaled FP8 (w = e4m3(q) * scale_inv[r/128][c/128],
 *                           scale_inv NULL means scale 1),
 *   any GGUF block type     rows of qt_row_size(type, cols) bytes, decoded by its to_float.
 * Row r starts at data + r * row_bytes.  The memory (a file mapping) outlives the view. */
typedef struct {
    qt_type type;
    int64_t rows, cols;
    const void *data;
    uint64_t row_bytes;
    const float *scale_inv;   /* F8 only: [ceil(rows/128), ceil(cols/128)], row-major */
} kn_weight;

/* Fills a view of a contiguous matrix (row_bytes from the type); false if cols is not a
 * multiple of the type's block size or the type has no decoder. */
bool kn_weight_init(kn_weight *w, qt_type type, int64_t rows, int64_t cols, const void *data,
                    const float *scale_inv);
/* Decodes rows [r0, r1) into out ((r1-r0) x cols f32). */
void kn_weight_rows(const kn_weight *w, int64_t r0, int64_t r1, float *out);

/* Y[T, w->rows] = X[T, w->cols] · Wᵀ (+ bias[w->rows] when bias != NULL).
 * X rows are ldx floats apart, Y rows ldy floats apart (ldx >= cols, ldy >= rows). */
void kn_matmul(const kn_weight *w, const float *x, int64_t ldx, int64_t T, const float *bias,
               float *y, int64_t ldy);
/* Scalar reference (dequantizes one row at a time, plain loops, double-free f32 math). */
void kn_matmul_ref(const kn_weight *w, const float *x, int64_t ldx, int64_t T, const float *bias,
                   float *y, int64_t ldy);

/* y[t] = w ⊙ x[t] / sqrt(mean(x[t]²) + eps) for T rows of n (rows ldx/ldy floats apart;
 * y may equal x). */
void kn_rmsnorm(const float *x, int64_t ldx, const float *w, int64_t T, int64_t n, float eps,
                float *y, int64_t ldy);

/* Rotary embedding in place on T rows: in each row, heads h = 0..n_heads-1 start at
 * x + t*ldx + h*head_stride; the rotated part is dims [0, dim) of the head.
 * Pair i (i < dim/2) is (x[2i], x[2i+1]) when !neox (interleaved, DeepSeek/ggml NORM)
 * or (x[i], x[i+dim/2]) when neox (HF rotate-half); angle = float(pos[t]) * inv_freq[i]
 * (f32), then (x0 cos - x1 sin, x0 sin + x1 cos) with cos/sin times mscale. */
void kn_rope(float *x, int64_t ldx, int64_t T, int n_heads, int64_t head_stride, int dim,
             const int32_t *pos, const float *inv_freq, float mscale, bool neox);

/* Causal self-attention of n_seq independent sequences of S tokens each (T = n_seq*S rows).
 * For query head h (kv head g = h / (n_heads/n_kv_heads)):
 *   score(i,j) = (q_i·k_j) * scale for j <= i, p = softmax_j (f32), o_i = Σ_j p_ij v_j.
 * q rows: q + t*ldq + h*dq (dq floats per head, the first dk used);
 * k rows: k + t*ldk + g*dk_stride (dk floats), v rows: v + t*ldv + g*dv_stride (dv floats);
 * o rows: o + t*ldo + h*dv.  Threads split (sequence, head) items.
 * Sparse attention (DeepSeek-V3.2): when sel != NULL, query row t attends only to the keys
 * sel[t*n_sel + m] (positions within its sequence, ascending, each <= its own position; the
 * list ends at n_sel entries or at the first -1), summed in that order, so a list holding
 * every causal key gives the dense result bit for bit.  sel NULL: plain causal attention. */
typedef struct {
    int64_t n_seq, S;
    int n_heads, n_kv_heads;
    int dk, dv;
    const float *q; int64_t ldq, dq;
    const float *k; int64_t ldk, dk_stride;
    const float *v; int64_t ldv, dv_stride;
    float *o; int64_t ldo;
    float scale;
    const int32_t *sel; int64_t n_sel;   /* [n_seq*S, n_sel] selected keys, or NULL */
} kn_attn_args;
void kn_attention(const kn_attn_args *a);
void kn_attention_ref(const kn_attn_args *a);

/* y[t] = (x[t] - mean) / sqrt(var + eps) * w + b (LayerNorm; mean and variance of the row in
 * double, as ggml_norm; b may be NULL) for T rows of n; y may equal x. */
void kn_layernorm(const float *x, int64_t ldx, const float *w, const float *b, int64_t T, int64_t n,
                  float eps, float *y, int64_t ldy);

/* The lightning indexer's key selection of DeepSeek Sparse Attention (V3.2), for n_seq
 * sequences of S tokens (T = n_seq*S rows):
 *   score(i, j) = Σ_h relu(q_ih · k_j) · w_ih   for j <= i (keys after i never qualify)
 * with q rows q + t*ldq + h*dh (n_heads heads of dh), k rows k + t*ldk (dh), weights w rows
 * w + t*ldw (n_heads; any scale already applied).  Query i keeps the top_k keys of highest
 * score (every key when i < top_k); among equal scores at the boundary, the ones llama.cpp's
 * CPU backend keeps (libstdc++'s std::partial_sort heap selection over positions 0..i, see
 * kernels/cpu/dsa.c); NaN scores rank last; sel[t*top_k ..] gets the kept positions
 * ascending, padded with -1.
 * The h-sum runs in f32 in head order, the dot product as kn_dot (ref: kn_dot_ref); OpenMP
 * over queries, so sel does not depend on the thread count. */
typedef struct {
    int64_t n_seq, S;
    int n_heads, dh;
    int64_t top_k;
    const float *q; int64_t ldq;
    const float *k; int64_t ldk;
    const float *w; int64_t ldw;
    int32_t *sel;
} kn_dsa_args;
void kn_dsa_select(const kn_dsa_args *a);
void kn_dsa_select_ref(const kn_dsa_args *a);

/* out[t, i] = silu(g[t, i]) * u[t, i], silu(z) = z / (1 + e^-z); n per row, rows ld apart. */
/* GPTQ input Hessians (kernels/cpu/gram.c): H[i, j] += sum_t x[t, i] x[t, j] for j >= i,
 * H [n, n] float (upper triangle), x [T, n] with row stride ld; every element summed in token
 * order, so the fast path (register tiles, OpenMP over tiles) gives the reference's bits. */
void kn_gram_accumulate(float *H, int64_t n, const float *x, int64_t ld, int64_t T);   /* OpenBLAS when present */
void kn_gram_accumulate_own(float *H, int64_t n, const float *x, int64_t ld, int64_t T);   /* our tiles: _ref's bits */
void kn_gram_accumulate_ref(float *H, int64_t n, const float *x, int64_t ld, int64_t T);
void kn_silu_mul(const float *g, const float *u, int64_t ld, int64_t T, int64_t n, float *out,
                 int64_t ldo);
/* y[t] += s[t] * x[t] (s == NULL: s = 1) over T rows of n. */
void kn_add_scaled(float *y, int64_t ldy, const float *x, int64_t ldx, const float *s, int64_t T,
                   int64_t n);

/* DeepSeek-V3 router (noaux_tc) for T tokens: logits [T, n_exp] (x·Wgᵀ) ->
 * s = sigmoid (or softmax over experts when !sigmoid), b = s + bias (bias may be NULL);
 * groups of n_exp/n_group experts scored by the sum of their top-2 b (top-1 b when the group
 * has one expert), the topk_group best groups kept, then the k best b among kept experts.
 * Chosen ids are written ascending to ids[t*k..] with weights s_e (normalized to sum 1 when
 * norm, + 1e-20) times scale to w[t*k..].  Ties break toward the lower index. */
typedef struct {
    int n_exp, k, n_group, topk_group;
    bool sigmoid, norm;
    float scale;
    const float *bias;
} kn_route_args;
void kn_moe_route(const kn_route_args *a, const float *logits, int64_t T, int32_t *ids, float *w);

/* Per-row log-softmax statistics of logits [T, V] (rows ld apart), computed in double:
 * lse[t] = log Σ exp(l) ; argmax[t] (lowest index on ties). */
void kn_logsumexp(const float *logits, int64_t ld, int64_t T, int64_t V, double *lse,
                  int32_t *argmax);

/* ============ DeepSeek-V4 operations (kernels/cpu/dsv4.c) ============
 * Each has a scalar _ref; the plain name runs the same per-item arithmetic with OpenMP over
 * independent tokens (or blocks), so both give the same bits for any thread count. */
#define KN_V4_MAX_HC 16       /* hyper-connection streams (V4: 4): one token's mix lives on the stack */
#define KN_V4_MAX_RATIO 256   /* compression ratio (V4: 4 and 128): a block's pooling weights on the stack */
#define KN_V4_MAX_EXPERTS 1024   /* routed experts kn_v4_route scores on the stack */

/* Hyper-connection coefficients of T tokens from mixes [T, ldm] (fn · RMS-normed streams):
 *   pre[t, h]  = sigmoid(m[h] * scale[0] + base[h]) + eps                       (h < hc)
 *   post[t, h] = 2 * sigmoid(m[hc + h] * scale[1] + base[hc + h])
 *   comb[t, s*hc + d] (source stream s into destination d) = Sinkhorn of
 *       c = m[2hc + s*hc + d] * scale[2] + base[2hc + s*hc + d]: a softmax over d for each s,
 *       + eps, then columns (sums over s, + eps) normalised, then n_iter - 1 times rows (sums
 *       over d, + eps) then columns again; f32, sums in index order.
 * post and comb NULL: only pre (the output head's mixes, ldm >= hc). */
typedef struct {
    int hc, n_iter;
    float eps;
    const float *scale;   /* [3] (head: [1]) */
    const float *base;    /* [(2 + hc) * hc] (head: [hc]) */
} kn_hc_args;
void kn_hc_coeffs(const kn_hc_args *a, const float *mixes, int64_t ldm, int64_t T, float *pre, float *post,
                  float *comb);
void kn_hc_coeffs_ref(const kn_hc_args *a, const float *mixes, int64_t ldm, int64_t T, float *pre, float *post,
                      float *comb);
/* y[t] = Σ_h pre[t, h] · x[t, h] (h in order) for x [T, hc, n] and y [T, n]. */
void kn_hc_collapse(const float *x, const float *pre, int hc, int64_t T, int64_t n, float *y);
void kn_hc_collapse_ref(const float *x, const float *pre, int hc, int64_t T, int64_t n, float *y);
/* out[t, d] = y[t] · post[t, d] + Σ_s res[t, s] · comb[t, s*hc + d] (s in order) for y [T, n],
 * res and out [T, hc, n] (out != res). */
void kn_hc_expand(const float *y, const float *res, const float *post, const float *comb, int hc, int64_t T,
                  int64_t n, float *out);
void kn_hc_expand_ref(const float *y, const float *res, const float *post, const float *comb, int hc, int64_t T,
                      int64_t n, float *out);

/* The KV compressor of n_seq sequences of S tokens: block b of a sequence (tokens [b*r,
 * (b+1)*r), complete blocks only: n_blk = S / r) pools, per channel i < d, the tokens' values
 * with softmax weights of their scores plus ape[token % r]:
 *   plain (overlap false): kv/score columns [0, d) of the block's r tokens;
 *   overlap: columns [0, d) of the previous block's r tokens (block 0: value 0, score -inf)
 *            then columns [d, 2d) of its own r tokens.
 * kv, score rows [T, ld] (ld >= d or 2d), ape [r, ldape]; out [n_seq * n_blk, d]. */
typedef struct {
    int64_t n_seq, S;
    int r, d;
    bool overlap;
    const float *kv, *score; int64_t ld;
    const float *ape; int64_t ldape;
    float *out;
} kn_comp_args;
void kn_v4_compress(const kn_comp_args *a);
void kn_v4_compress_ref(const kn_comp_args *a);

/* The V4 indexer's choice among compressed blocks: query i of a sequence sees the blocks
 * b < nv = (i + 1) / r; when nv <= top_k it keeps them all, else the top_k of
 *   score(i, b) = Σ_h relu(q_ih · k_b) · w_ih      (h-sum in f32, head order)
 * by kn_heap_select (llama.cpp's CPU top_k ties).  sel[t*top_k ..] gets the kept block indices
 * ascending, padded with -1.  q rows [T, ldq] (n_heads of dh), k [n_seq * n_blk, ldk] with
 * n_blk = S / r blocks per sequence, w [T, ldw]. */
typedef struct {
    int64_t n_seq, S;
    int r, n_heads, dh;
    int64_t top_k;
    const float *q; int64_t ldq;
    const float *k; int64_t ldk;
    const float *w; int64_t ldw;
    int32_t *sel;
} kn_v4_sel_args;
void kn_v4_select(const kn_v4_sel_args *a);
void kn_v4_select_ref(const kn_v4_sel_args *a);

/* V4 attention of n_seq sequences of S tokens: every head h of query i (q rows [T, ldq], heads
 * dq floats apart, d used) attends to one shared key=value head: the raw rows kv[j] (ldkv) for
 * i - n_swa < j <= i, then the compressed rows ck[b] (sequence s's blocks at ck + s*n_blk*ldck;
 * every b < (i + 1) / r, or only the listed sel[t*n_sel ..] up to -1 when sel != NULL; r 0: no
 * compressed rows).  p = softmax over those scores (q·k · scale) and the head's sink logit
 * sinks[h] (in the denominator only; sinks NULL: none); o = Σ p v into o rows [T, ldo], heads
 * d apart.  Threads split (token, head) items. */
typedef struct {
    int64_t n_seq, S;
    int n_heads, d;
    int64_t n_swa;
    const float *q; int64_t ldq, dq;
    const float *kv; int64_t ldkv;
    const float *ck; int64_t ldck; int r;
    const int32_t *sel; int64_t n_sel;
    const float *sinks;
    float scale;
    float *o; int64_t ldo;
} kn_v4_attn_args;
void kn_v4_attention(const kn_v4_attn_args *a);
void kn_v4_attention_ref(const kn_v4_attn_args *a);

/* V4 routing (sqrt-softplus) for T tokens from logits [T, n_exp]: p = sqrt(softplus(l))
 * (softplus(x) = x for x > 20 as ggml); chosen experts: hash[tok[t] * k ..] when hash != NULL
 * (hash routing by token id), else the k highest p + bias (bias may be NULL; ties toward the
 * lower index); weights p[chosen], divided by their sum (clamped to >= 2^-14) when norm, times
 * scale.  ids[t*k ..] ascending with their weights in w.  Hash entries outside [0, n_exp) make
 * the function return false (nothing else fails). */
typedef struct {
    int n_exp, k;
    bool norm;
    float scale;
    const float *bias;
    const int32_t *hash;   /* [n_vocab, k] or NULL */
    const int32_t *tok;    /* [T] token ids (hash only) */
} kn_v4_route_args;
bool kn_v4_route(const kn_v4_route_args *a, const float *logits, int64_t T, int32_t *ids, float *w);

/* out = silu(min(g, limit)) * clamp(u, -limit, limit) (V4's SwiGLU clamp; limit <= 0: plain
 * kn_silu_mul) over T rows of n. */
void kn_silu_mul_clamp(const float *g, const float *u, int64_t ld, int64_t T, int64_t n, float limit, float *out,
                       int64_t ldo);

/* ============ backends: where the engine's operations run (kernels/backend.c, kernels/cuda) ============
 * A kn_backend is a table of the operations above, chosen at run time (`--device`).  Its
 * functions take a context first and otherwise the CPU signatures; all data pointers are
 * HOST pointers (the engine's buffers, the weight views' mappings).  The CPU backend calls
 * the kn_ functions.  The CUDA backend (kernels/cuda/backend.cu) runs matmul on the GPU:
 * each weight is uploaded once (through pinned staging buffers) and kept on the device
 * until layer_done; activations are copied per call; the other operations run on the CPU
 * there (moving their activations over PCIe would cost more than computing them).  The
 * device-resident twins of every operation (kernels/cuda/kn_cuda.h) are what the bench and
 * a device-resident engine use.  A backend is used from one thread at a time. */
typedef enum { KN_DEVICE_CPU = 0, KN_DEVICE_CUDA = 1 } kn_device;

typedef struct kn_backend {
    kn_device device;
    char name[128];              /* "cpu", "cuda: NVIDIA H200, 132 SMs, ..." */
    void *ctx;
    void (*matmul)(void *ctx, const kn_weight *w, const float *x, int64_t ldx, int64_t T,
                   const float *bias, float *y, int64_t ldy);
    void (*rmsnorm)(void *ctx, const float *x, int64_t ldx, const float *w, int64_t T, int64_t n,
                    float eps, float *y, int64_t ldy);
    void (*rope)(void *ctx, float *x, int64_t ldx, int64_t T, int n_heads, int64_t head_stride,
                 int dim, const int32_t *pos, const float *inv_freq, float mscale, bool neox);
    void (*attention)(void *ctx, const kn_attn_args *a);
    void (*silu_mul)(void *ctx, const float *g, const float *u, int64_t ld, int64_t T, int64_t n,
                     float *out, int64_t ldo);
    void (*add_scaled)(void *ctx, float *y, int64_t ldy, const float *x, int64_t ldx,
                       const float *s, int64_t T, int64_t n);
    void (*moe_route)(void *ctx, const kn_route_args *a, const float *logits, int64_t T,
                      int32_t *ids, float *w);
    void (*logsumexp)(void *ctx, const float *logits, int64_t ld, int64_t T, int64_t V,
                      double *lse, int32_t *argmax);
    /* The weights seen since the last call may be dropped (their mappings may go away).
     * Returns the first device error since the last call (QX_OK on the CPU). */
    qx_status (*layer_done)(void *ctx, qx_err *e);
} kn_backend;

/* The CPU backend: a static table, never freed (kn_backend_close ignores it). */
const kn_backend *kn_backend_cpu(void);
/* Opens a backend.  KN_DEVICE_CUDA fails with QX_EUNSUPPORTED and the message
 * "--device cuda: no CUDA device available (cudaGetDeviceCount: <reason>)" when no GPU is
 * usable, or "--device cuda: this build has no CUDA support (nvcc was absent)" in a build
 * without nvcc.  Close with kn_backend_close. */
qx_status kn_backend_open(kn_device dev, kn_backend **out, qx_err *e);
void kn_backend_close(kn_backend *b);   /* accepts NULL and the CPU table */
/* "cpu" / "cuda" -> device; false for anything else. */
bool kn_device_from_name(const char *name, kn_device *out);

/* ============ layer streaming plan (kernels/stream.c) ============
 * How n_layers layers whose weights live in host memory run through n_slots device buffers
 * (2 = double buffering): layer L lives in slot L % n_slots; the copy of a later layer into
 * a slot waits until the compute of the slot's previous layer is done, and is issued after
 * the compute of the layer before it is queued, so copies overlap computes.  The plan is
 * backend-agnostic: a CPU executor (memcpy) and the CUDA one (two streams, events, pinned
 * staging) run the same steps, and tests/test_kn_stream.c checks it under every
 * interleaving an asynchronous executor may choose. */
typedef enum {
    KN_STEP_COPY,         /* start filling `slot` with `layer` (may be asynchronous) */
    KN_STEP_WAIT_COPY,    /* computes queued after this see the slot's copy complete */
    KN_STEP_COMPUTE,      /* queue layer's compute on the slot */
    KN_STEP_RECORD_DONE,  /* mark the end of layer's compute */
    KN_STEP_WAIT_DONE     /* copies queued after this start after layer's compute is done */
} kn_step_op;

typedef struct {
    kn_step_op op;
    int layer, slot;
} kn_stream_step;

/* Writes the plan into steps (room for cap; 5 * n_layers always suffices) and returns the
 * number of steps, or -1 when n_layers < 0, n_slots < 1 or cap is too small. */
int64_t kn_stream_plan(int n_layers, int n_slots, kn_stream_step *steps, int64_t cap);

typedef struct {
    void *ud;
    qx_status (*step[5])(void *ud, int layer, int slot, qx_err *e);   /* indexed by kn_step_op */
} kn_stream_ops;
/* Runs the steps in order through ops (a NULL entry is a no-op); stops at the first error. */
qx_status kn_stream_run(const kn_stream_step *steps, int64_t n, const kn_stream_ops *ops, qx_err *e);

/* The CPU executor: n_slots host buffers of max(layer_bytes); COPY is a memcpy of
 * layer_src[L]; compute(ud, L, slot bytes) runs synchronously. */
typedef qx_status (*kn_layer_fn)(void *ud, int layer, const void *slot, qx_err *e);
qx_status kn_stream_layers_host(int n_layers, int n_slots, const void *const *layer_src,
                                const size_t *layer_bytes, kn_layer_fn compute, void *ud, qx_err *e);

#ifdef __cplusplus
}
#endif

#endif
