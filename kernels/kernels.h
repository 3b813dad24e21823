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
 * o rows: o + t*ldo + h*dv.  Threads split (sequence, head) items. */
typedef struct {
    int64_t n_seq, S;
    int n_heads, n_kv_heads;
    int dk, dv;
    const float *q; int64_t ldq, dq;
    const float *k; int64_t ldk, dk_stride;
    const float *v; int64_t ldv, dv_stride;
    float *o; int64_t ldo;
    float scale;
} kn_attn_args;
void kn_attention(const kn_attn_args *a);
void kn_attention_ref(const kn_attn_args *a);

/* out[t, i] = silu(g[t, i]) * u[t, i], silu(z) = z / (1 + e^-z); n per row, rows ld apart. */
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

#endif
