/* quant/blocks_iq.h — block layouts of the ggml i-quant types (IQ2_XXS, IQ2_XS, IQ2_S,
 * IQ3_XXS, IQ3_S, IQ1_S, IQ1_M), byte-identical to ggml's ggml-common.h, plus the
 * declarations of their constant tables (quant/iq_tables.c).  Internal to quant/ (and
 * shared with CUDA code): C and CUDA compile the same structs, each followed by a size assert.
 *
 * All blocks hold QT_IQ_QK = 256 weights.  `d` fields are IEEE half floats stored as raw
 * bits.  Value formulas (y = one weight; g = a grid byte; sign from the sign bits):
 *   IQ2_XXS  per 32: db = d*(0.5+s4)*0.25, y = db*g*sign; g in {8,25,43}; 7 sign bits per 8
 *            (ksigns adds an even-parity 8th); qs[2*ib] = 4 grid indices (bytes),
 *            qs[2*ib+1] = 4x7 sign bits | s4 << 28 (as one little-endian uint32 over 2 u16).
 *   IQ2_XS   per 16: db = d*(0.5+s4)*0.25; qs[k] = grid index (9 bits) | 7 sign bits << 9.
 *   IQ2_S    per 16: same scale; grid index 10 bits (qs byte + 2 bits of qh); 8 free signs.
 *   IQ3_XXS  per 32: db = d*(0.5+s4)*0.5; grid of 4-vectors, g in {4,12,...,52,62};
 *            qs[0..63] grid indices, then 8 uint32: 4x7 sign bits | s4 << 28.
 *   IQ3_S    per 32: db = d*(1+2*s4); g odd 1..15; 9-bit grid index (qs + qh bit); 8 free signs.
 *   IQ1_S    per 32: dl = d*(2*s3+1), y = dl*(g + delta), g in {-1,0,1}, delta = +-1/8;
 *            qh[ib] = three 3-bit high index parts | s3 << 12 | delta sign << 15.
 *   IQ1_M    per 16: dl = d*(2*s3+1); delta per 8; d's 16 bits are spread over the top
 *            nibbles of the four uint16 scale words. */
#ifndef QT_BLOCKS_IQ_H
#define QT_BLOCKS_IQ_H

#include <stdint.h>

#define QT_IQ_QK 256
#define QT_IQ1S_DELTA 0.125f
#define QT_IQ1S_NGRID 2048

#if defined(__CUDACC__) || defined(__cplusplus)
#define QT_IQ_STATIC_ASSERT(c, m) static_assert(c, m)
#else
#define QT_IQ_STATIC_ASSERT(c, m) _Static_assert(c, m)
#endif

typedef struct {
    uint16_t d;                      /* f16 super-block scale */
    uint16_t qs[QT_IQ_QK/8];         /* per 32: 4 grid bytes, then signs+scale */
} qt_block_iq2_xxs;
QT_IQ_STATIC_ASSERT(sizeof(qt_block_iq2_xxs) == 2 + QT_IQ_QK/4, "iq2_xxs block size");

typedef struct {
    uint16_t d;
    uint16_t qs[QT_IQ_QK/8];         /* 9-bit grid index | 7 sign bits << 9 */
    uint8_t  scales[QT_IQ_QK/32];    /* two 4-bit scales per 32 */
} qt_block_iq2_xs;
QT_IQ_STATIC_ASSERT(sizeof(qt_block_iq2_xs) == 2 + QT_IQ_QK/4 + QT_IQ_QK/32, "iq2_xs block size");

typedef struct {
    uint16_t d;
    uint8_t qs[QT_IQ_QK/4];          /* [0,32): low 8 index bits, [32,64): sign bytes */
    uint8_t qh[QT_IQ_QK/32];         /* 2 high index bits per 8 */
    uint8_t scales[QT_IQ_QK/32];
} qt_block_iq2_s;
QT_IQ_STATIC_ASSERT(sizeof(qt_block_iq2_s) == 2 + QT_IQ_QK/4 + QT_IQ_QK/16, "iq2_s block size");

typedef struct {
    uint16_t d;
    uint8_t qs[3*QT_IQ_QK/8];        /* 64 grid bytes, then 8 x uint32 signs+scale */
} qt_block_iq3_xxs;
QT_IQ_STATIC_ASSERT(sizeof(qt_block_iq3_xxs) == 2 + 3*(QT_IQ_QK/8), "iq3_xxs block size");

typedef struct {
    uint16_t d;
    uint8_t qs[QT_IQ_QK/4];          /* low 8 index bits per 4 */
    uint8_t qh[QT_IQ_QK/32];         /* 9th index bit per 4 */
    uint8_t signs[QT_IQ_QK/8];
    uint8_t scales[QT_IQ_QK/64];     /* two 4-bit scales per 64 */
} qt_block_iq3_s;
QT_IQ_STATIC_ASSERT(sizeof(qt_block_iq3_s) == 2 + 13*(QT_IQ_QK/32) + QT_IQ_QK/64, "iq3_s block size");

typedef struct {
    uint16_t d;
    uint8_t  qs[QT_IQ_QK/8];         /* low 8 index bits per 8 */
    uint16_t qh[QT_IQ_QK/32];        /* 4x3 high bits | scale << 12 | delta sign << 15 */
} qt_block_iq1_s;
QT_IQ_STATIC_ASSERT(sizeof(qt_block_iq1_s) == 2 + QT_IQ_QK/8 + QT_IQ_QK/16, "iq1_s block size");

typedef struct {
    uint8_t qs[QT_IQ_QK/8];          /* low 8 index bits per 8 */
    uint8_t qh[QT_IQ_QK/16];         /* per 8: 3 high index bits | delta sign << 3 (nibbles) */
    uint8_t scales[QT_IQ_QK/32];     /* 4 little-endian u16: 4x3-bit scales | d nibble << 12 */
} qt_block_iq1_m;
QT_IQ_STATIC_ASSERT(sizeof(qt_block_iq1_m) == QT_IQ_QK/8 + QT_IQ_QK/16 + QT_IQ_QK/32, "iq1_m block size");

/* Tables (quant/iq_tables.c), values exactly ggml's. */
extern const uint8_t  qt_iq_kmask[8];          /* 1 << j */
extern const uint8_t  qt_iq_ksigns[128];       /* 7 sign bits -> 8 with even parity */
extern const uint64_t qt_iq2xxs_grid[256];     /* 8 bytes each from {8,25,43} */
extern const uint64_t qt_iq2xs_grid[512];
extern const uint64_t qt_iq2s_grid[1024];
extern const uint32_t qt_iq3xxs_grid[256];     /* 4 bytes each from {4,12,...,52,62} */
extern const uint32_t qt_iq3s_grid[512];       /* 4 bytes each, odd 1..15 */
extern const uint64_t qt_iq1s_grid[QT_IQ1S_NGRID]; /* 8 int8 each from {-1,0,1} */

#endif
