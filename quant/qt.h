/* quant/qt.h — the one public header of quant/: tensor element types (GGUF's numbering),
 * their traits table, scalar decoders for FP8/BF16/F16, block-scaled FP8 dequantization,
 * and the row quantizers/dequantizers of the GGUF block types.  quant/ does no I/O.
 * Block layouts themselves live in quant/blocks.h (shared with CUDA). */
#ifndef QT_H
#define QT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* GGUF/ggml type ids; grows only at the end.  Types that are not GGUF types
 * (FP8 of the HF checkpoints) use ids from 1000 on and never reach a GGUF file. */
typedef enum {
    QT_F32 = 0, QT_F16 = 1, QT_Q4_0 = 2, QT_Q4_1 = 3,
    QT_Q5_0 = 6, QT_Q5_1 = 7, QT_Q8_0 = 8, QT_Q8_1 = 9,
    QT_Q2_K = 10, QT_Q3_K = 11, QT_Q4_K = 12, QT_Q5_K = 13, QT_Q6_K = 14, QT_Q8_K = 15,
    QT_IQ2_XXS = 16, QT_IQ2_XS = 17, QT_IQ3_XXS = 18, QT_IQ1_S = 19, QT_IQ4_NL = 20,
    QT_IQ3_S = 21, QT_IQ2_S = 22, QT_IQ4_XS = 23, QT_I8 = 24, QT_I16 = 25, QT_I32 = 26,
    QT_I64 = 27, QT_F64 = 28, QT_IQ1_M = 29, QT_BF16 = 30,
    QT_MXFP4 = 39,               /* OCP MX FP4: E2M1 codes, one E8M0 scale per 32 (quant/mxfp4.c) */
    QT_GGUF_COUNT = 40,          /* ids below this are GGUF ids */
    QT_F8_E4M3 = 1000, QT_F8_E5M2 = 1001,
} qt_type;

/* Row conversion functions: n is a multiple of the type's block size.
 * imp (optional, may be NULL): n per-column importance weights (>= 0) that the
 * quantizer uses to minimize sum imp[j] * (x[j] - q[j])^2. */
typedef void (*qt_to_float_fn)(const void *src, float *dst, int64_t n);
typedef void (*qt_from_float_fn)(const float *src, void *dst, int64_t n, const float *imp);

typedef struct {
    const char *name;        /* "Q4_K" */
    int blck;                /* elements per block */
    int type_size;           /* bytes per block */
    bool quantized;          /* block type (not a plain float) */
    bool needs_imatrix;      /* quantizer refuses to run without importance weights */
    qt_to_float_fn to_float;     /* NULL if decode unsupported */
    qt_from_float_fn from_float; /* NULL if encode unsupported */
} qt_traits;

/* Traits of t; NULL when the id is unknown. */
const qt_traits *qt_get_traits(qt_type t);
/* Traits of the IQ1/IQ2/IQ3 i-quant types (quant/iq_quants.c); NULL for any other type. */
const qt_traits *qt_iq_traits(qt_type t);
/* Looks up a type by name, case-insensitive ("q4_k", "BF16"); returns false if unknown. */
bool qt_type_from_name(const char *name, qt_type *out);
const char *qt_type_name(qt_type t);
/* Bytes of one row of n elements; 0 if n is not a multiple of the block size or t unknown. */
uint64_t qt_row_size(qt_type t, int64_t n);

/* ---- scalar decoders (exact) ---- */
float qt_fp8_e4m3_to_f32(uint8_t v);   /* e4m3fn: bias 7, no inf, 0x7F/0xFF NaN */
float qt_fp8_e5m2_to_f32(uint8_t v);   /* IEEE-like: bias 15, inf and NaN */
uint8_t qt_f32_to_fp8_e4m3(float f);   /* nearest, ties to even; saturates at +-448; NaN -> 0x7F */
float qt_bf16_to_f32(uint16_t v);
uint16_t qt_f32_to_bf16(float f);      /* round to nearest even, NaN kept quiet */
float qt_f16_to_f32(uint16_t v);
uint16_t qt_f32_to_f16(float f);       /* round to nearest even */

/* Block-scaled FP8 (DeepSeek): w[r][c] = e4m3(q[r*cols+c]) * scale_inv[(r/128)*scols + c/128]
 * with scols = ceil(cols/128).  Writes rows [r0, r1) into out ((r1-r0) x cols, row-major). */
void qt_fp8_block_dequant(const uint8_t *q, const float *scale_inv, int64_t rows, int64_t cols,
                          int64_t r0, int64_t r1, float *out);
/* The scalar reference of the same (the default above uses SIMD when the CPU has it). */
void qt_fp8_block_dequant_ref(const uint8_t *q, const float *scale_inv, int64_t rows, int64_t cols,
                              int64_t r0, int64_t r1, float *out);
/* One row of a compressed-tensors pack-quantized INT4 weight (quant/int4.c): packed holds
 * ceil(cols/8) little-endian int32 words (lowest nibble = lowest column), scales[ceil(cols/
 * group)] f32; out[c] = (nibble - 8) * scales[c / group]. */
void qt_int4_packed_dequant_row(const uint8_t *packed, const float *scales, int64_t cols, int64_t group,
                                float *out);

/* ---- FP4 E2M1 / E8M0 (DeepSeek-V4 routed experts, MXFP4; quant/mxfp4.c) ----
 * E2M1 code c (low 4 bits): sign bit 3, magnitude {0, 0.5, 1, 1.5, 2, 3, 4, 6}[c & 7].
 * E8M0 byte e: 2^(e - 127); 0xFF is NaN (OCP MX). */
float qt_e2m1_to_f32(uint8_t code);
float qt_e8m0_to_f32(uint8_t e);
/* One row of an FP4-packed weight: cols/2 bytes, element 2i in the low nibble of byte i and
 * 2i+1 in the high one; scales[cols/32] E8M0.  out[c] = e2m1(code c) * e8m0(scales[c/32]).
 * cols is a multiple of 32. */
void qt_fp4_dequant_row(const uint8_t *packed, const uint8_t *scales, int64_t cols, float *out);
/* The same row moved losslessly into ggml's block_mxfp4 (cols/32 blocks of 17 bytes: the scale
 * byte, then 16 bytes whose byte j holds element j low and j+16 high); only bits move, so the
 * bytes equal llama.cpp's converter's repack_mxfp4_blocks. */
void qt_mxfp4_repack_row(const uint8_t *packed, const uint8_t *scales, int64_t cols, void *dst);
/* ggml's quantize_row_mxfp4_ref (bytes equal to it for finite input with 2^-125 <= amax <
 * 2^128 per block; outside, the exponent is clamped to [0, 254] where ggml's cast is undefined):
 * e = floor(log2(amax)) - 2 + 127 per block of 32, each value the nearest of the 16 codes
 * (the first on ties).  The traits' from_float with importance (imp != NULL) tries e-1, e and
 * e+1 with those codes and keeps the exponent of least imp-weighted squared error (e on ties). */
void qt_quantize_row_mxfp4_ref(const float *x, void *dst, int64_t n);

/* Converts n elements of a plain type (F32, F16, BF16, F8_E4M3, F8_E5M2) to f32;
 * returns false for other types. */
bool qt_plain_to_f32(qt_type t, const void *src, float *dst, int64_t n);

/* Whole-row helpers over the traits table: quantize `nrows` rows of length n.  Thread-safe,
 * deterministic; dst holds nrows * qt_row_size(t, n) bytes. */
void qt_quantize_rows(qt_type t, const float *src, void *dst, int64_t nrows, int64_t n, const float *imp);
void qt_dequantize_rows(qt_type t, const void *src, float *dst, int64_t nrows, int64_t n);

/* ---- GPTQ error feedback inside the GGUF blocks (quant/gptq.c) ----
 * How qt_quantize_gptq re-chooses the codes of a block after the format's encoder fixed
 * its scales: per element (legacy, K, IQ4 types), per group of 8 (IQ2_XXS, IQ1_S), or not
 * at all, only the block's error being fed forward (the other IQ types). */
typedef enum { QT_GPTQ_NONE, QT_GPTQ_BLOCK, QT_GPTQ_ELEMENT, QT_GPTQ_GROUP } qt_gptq_mode;
qt_gptq_mode qt_gptq_mode_of(qt_type t);
/* U [n, n] (row-major, upper triangular, caller-allocated): U^T U = (H + lam I)^-1 with
 * H [n, n] the symmetric input second moment (sum over tokens of x x^T) and
 * lam = damp * mean(diag H); damp is raised x10 (up to 5 times) while the factorization
 * fails.  False when H has no positive diagonal or never factors (then quantize plainly). */
bool qt_gptq_factor(const double *H, int64_t n, double damp, float *U);
/* The same from a float H (the arithmetic stays in double); U may be H itself (H is read
 * completely before U is written). */
bool qt_gptq_factor_f32(const float *H, int64_t n, double damp, float *U);
/* qt_gptq_factor uses LAPACK (OpenBLAS dpotrf + dtrtri) when present; _own always our
 * blocked code; _ref the unblocked column-by-column form (tests, benchmark baseline). */
bool qt_gptq_factor_own(const double *H, int64_t n, double damp, float *U);
bool qt_gptq_factor_ref(const double *H, int64_t n, double damp, float *U);
/* Quantizes nrows rows of length n (a multiple of t's block size) with GPTQ error feedback
 * through U (from qt_gptq_factor, borrowed for the call); imp as for from_float (chooses
 * each block's scales).  Rows are independent and processed in order: the bytes depend on
 * nothing but the inputs.  False (dst untouched) when t has no encoder or n does not fit. */
bool qt_quantize_gptq(qt_type t, const float *src, void *dst, int64_t nrows, int64_t n, const float *U,
                      const float *imp);
/* qt_quantize_gptq moves each block's errors with OpenBLAS's sgemm when it is present
 * (common/ qx_blas_get: other rounding, so codes may differ in near-ties); _own always with
 * our kernels, whose bytes equal _ref's, the scalar walk (every column's error moved into the
 * whole rest of the row at once), which the lazy-batch form is tested against. */
bool qt_quantize_gptq_own(qt_type t, const float *src, void *dst, int64_t nrows, int64_t n, const float *U,
                          const float *imp);
bool qt_quantize_gptq_ref(qt_type t, const float *src, void *dst, int64_t nrows, int64_t n, const float *U,
                          const float *imp);
/* The lazy-batch product: W[r, k] -= sum_j E[r, j] * Ub[j, k] (r < R, k < nc; j < B in
 * order, one multiply and one subtract per term, so every path gives the same bits); W ld
 * ldw, E ld B, Ub ld ldu.  ref: the portable loop instead of the CPU's best (benchmarks). */
void qt_gptq_update(float *W, int64_t ldw, int64_t R, const float *E, int B, const float *Ub, int64_t ldu, int64_t nc,
                    bool ref);

#endif
