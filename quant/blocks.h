/* quant/blocks.h — byte layouts of the GGUF block types quant/ encodes and decodes
 * (Q4_0 … Q8_0, the K-quants, IQ4_NL, IQ4_XS).  Each struct is byte-identical to ggml's
 * (ggml/src/ggml-common.h), so llama.cpp reads our blocks unchanged.  Plain C, no
 * anonymous unions, compiled by C and nvcc alike.  f16 fields are stored as raw uint16_t
 * (IEEE half bits, little endian).  IQ1/IQ2/IQ3 blocks live in quant/blocks_iq.h.
 * Not a public header: only quant/, kernels/ and tests include it. */
#ifndef QT_BLOCKS_H
#define QT_BLOCKS_H

#include <stdint.h>

#define QT_QK4_0 32
#define QT_QK4_1 32
#define QT_QK5_0 32
#define QT_QK5_1 32
#define QT_QK8_0 32
#define QT_QK4_NL 32
#define QT_QK_K 256            /* super-block size of the K-quants and IQ4_XS */
#define QT_K_SCALE_SIZE 12     /* packed 6-bit scales+mins of Q4_K/Q5_K */

#if defined(__CUDACC__) || defined(__cplusplus)
#define QT_BLOCK_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define QT_BLOCK_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

/* x = d * (q - 8), q in 0..15; qs[j] holds element j (low nibble) and j+16 (high). */
typedef struct {
    uint16_t d;                  /* f16 scale */
    uint8_t qs[QT_QK4_0 / 2];
} qt_block_q4_0;
QT_BLOCK_ASSERT(sizeof(qt_block_q4_0) == 2 + 16, "q4_0 size");

/* x = d * q + m, q in 0..15. */
typedef struct {
    uint16_t d;                  /* f16 scale */
    uint16_t m;                  /* f16 min (added) */
    uint8_t qs[QT_QK4_1 / 2];
} qt_block_q4_1;
QT_BLOCK_ASSERT(sizeof(qt_block_q4_1) == 4 + 16, "q4_1 size");

/* x = d * (q - 16), q = low nibble | bit j of qh << 4 (elements j, j+16 as in Q4_0). */
typedef struct {
    uint16_t d;
    uint8_t qh[4];               /* 5th bits, little-endian uint32: bit j = element j */
    uint8_t qs[QT_QK5_0 / 2];
} qt_block_q5_0;
QT_BLOCK_ASSERT(sizeof(qt_block_q5_0) == 2 + 4 + 16, "q5_0 size");

/* x = d * q + m, q in 0..31. */
typedef struct {
    uint16_t d;
    uint16_t m;
    uint8_t qh[4];
    uint8_t qs[QT_QK5_1 / 2];
} qt_block_q5_1;
QT_BLOCK_ASSERT(sizeof(qt_block_q5_1) == 4 + 4 + 16, "q5_1 size");

/* x = d * q, q in -128..127 (quantizers use -127..127). */
typedef struct {
    uint16_t d;
    int8_t qs[QT_QK8_0];
} qt_block_q8_0;
QT_BLOCK_ASSERT(sizeof(qt_block_q8_0) == 2 + 32, "q8_0 size");

/* MXFP4: x = kvalues_mxfp4[q] * 2^(e - 128) (the doubled E2M1 magnitudes with half the E8M0
 * scale, as ggml stores them); qs[j] holds element j (low nibble) and j+16 (high). */
#define QT_QK_MXFP4 32
typedef struct {
    uint8_t e;                   /* E8M0 exponent */
    uint8_t qs[QT_QK_MXFP4 / 2];
} qt_block_mxfp4;
QT_BLOCK_ASSERT(sizeof(qt_block_mxfp4) == 1 + 16, "mxfp4 size");

/* Q8_1: intermediate type of ggml's dot products; here only for its size. */
typedef struct {
    uint16_t d;
    uint16_t s;                  /* f16 d * sum(qs) */
    int8_t qs[32];
} qt_block_q8_1;
QT_BLOCK_ASSERT(sizeof(qt_block_q8_1) == 4 + 32, "q8_1 size");

/* Q2_K: 16 sub-blocks of 16; x = d*(sc&15)*q - dmin*(sc>>4), q in 0..3.
 * qs: for each half (128 elements) 32 bytes; element 32*s + l of the half sits in
 * byte l at bits 2s..2s+1. */
typedef struct {
    uint8_t scales[QT_QK_K / 16];  /* low nibble: scale, high nibble: min */
    uint8_t qs[QT_QK_K / 4];
    uint16_t d;                    /* f16 super-block scale of the scales */
    uint16_t dmin;                 /* f16 super-block scale of the mins */
} qt_block_q2_K;
QT_BLOCK_ASSERT(sizeof(qt_block_q2_K) == 16 + 64 + 4, "q2_K size");

/* Q3_K: 16 sub-blocks of 16; x = d*(s-32)*(q - 4*!hbit), q low 2 bits as in Q2_K,
 * hmask bit b of byte m holds the high bit of element 32*b + m; 6-bit scales s packed:
 * low nibbles in bytes 0..7 (sub-blocks 0..7 low, 8..15 high nibble), top 2 bits in
 * bytes 8..11 (sub-block j: byte 8 + j%4, bits 2*(j/4)). */
typedef struct {
    uint8_t hmask[QT_QK_K / 8];
    uint8_t qs[QT_QK_K / 4];
    uint8_t scales[12];
    uint16_t d;
} qt_block_q3_K;
QT_BLOCK_ASSERT(sizeof(qt_block_q3_K) == 32 + 64 + 12 + 2, "q3_K size");

/* Q4_K: 8 sub-blocks of 32; x = d*sc*q - dmin*m, q in 0..15, 6-bit sc/m packed in 12
 * bytes (see qt_get_scale_min_k4); qs: 4 chunks of 64 elements, 32 bytes each, low
 * nibble first 32 elements, high nibble next 32. */
typedef struct {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[QT_K_SCALE_SIZE];
    uint8_t qs[QT_QK_K / 2];
} qt_block_q4_K;
QT_BLOCK_ASSERT(sizeof(qt_block_q4_K) == 4 + 12 + 128, "q4_K size");

/* Q5_K: Q4_K plus a 5th bit: qh[l] bit 2c (bit 2c+1) is the high bit of element
 * 64c + l (64c + 32 + l). */
typedef struct {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[QT_K_SCALE_SIZE];
    uint8_t qh[QT_QK_K / 8];
    uint8_t qs[QT_QK_K / 2];
} qt_block_q5_K;
QT_BLOCK_ASSERT(sizeof(qt_block_q5_K) == 4 + 12 + 32 + 128, "q5_K size");

/* Q6_K: 16 sub-blocks of 16; x = d*scales[s]*(q - 32), q 6 bits: per half (128
 * elements) ql 64 bytes, qh 32 bytes; element 32*k + l of the half: low 4 bits in
 * ql[l + 32*(k&1)] (nibble k>>1), high 2 bits in qh[l] bits 2k. */
typedef struct {
    uint8_t ql[QT_QK_K / 2];
    uint8_t qh[QT_QK_K / 4];
    int8_t scales[QT_QK_K / 16];
    uint16_t d;
} qt_block_q6_K;
QT_BLOCK_ASSERT(sizeof(qt_block_q6_K) == 128 + 64 + 16 + 2, "q6_K size");

/* Q8_K: intermediate of ggml's K dot products (float d). */
typedef struct {
    float d;
    int8_t qs[QT_QK_K];
    int16_t bsums[QT_QK_K / 16];
} qt_block_q8_K;
QT_BLOCK_ASSERT(sizeof(qt_block_q8_K) == 4 + 256 + 32, "q8_K size");

/* IQ4_NL: x = d * kvalues[q], q 4-bit index, nibble layout as Q4_0. */
typedef struct {
    uint16_t d;
    uint8_t qs[QT_QK4_NL / 2];
} qt_block_iq4_nl;
QT_BLOCK_ASSERT(sizeof(qt_block_iq4_nl) == 2 + 16, "iq4_nl size");

/* IQ4_XS: 8 sub-blocks of 32; x = d * (ls - 32) * kvalues[q]; 6-bit ls: low nibble in
 * scales_l[ib/2] (nibble ib%2), high 2 bits in scales_h bits 2ib. */
typedef struct {
    uint16_t d;
    uint16_t scales_h;
    uint8_t scales_l[QT_QK_K / 64];
    uint8_t qs[QT_QK_K / 2];
} qt_block_iq4_xs;
QT_BLOCK_ASSERT(sizeof(qt_block_iq4_xs) == 2 + 2 + 4 + 128, "iq4_xs size");

/* The 16 non-linear levels of IQ4_NL / IQ4_XS (ggml's kvalues_iq4nl). */
#define QT_IQ4NL_VALUES { -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113 }

#endif
