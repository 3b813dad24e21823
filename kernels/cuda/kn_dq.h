/* kernels/cuda/kn_dq.h — per-element decoders of every weight type the CUDA matmul reads
 * (F32, F16, BF16, block-scaled FP8 e4m3, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K…Q6_K, IQ4_NL,
 * IQ4_XS), written once and compiled by nvcc (device code of the fused dequant-GEMM) and by
 * the C compiler (tests/test_kn_dq.c checks every decoder against quant/'s to_float on the
 * CPU, so the device math is verified without a GPU).  Block layouts come from
 * quant/blocks.h.  Not a public header: kernels/cuda and tests include it.
 *
 * kn_dq_elem(type, row, c) is element c of one weight row (row = start of the row's bytes);
 * FP8 returns the unscaled e4m3 value (the caller multiplies by its 128x128 block scale). */
#ifndef KN_DQ_H
#define KN_DQ_H

#include <stdint.h>
#include "../../quant/blocks.h"

#ifdef __CUDACC__
#define KN_HD __host__ __device__ __forceinline__
#else
#define KN_HD static inline
#endif

/* Type ids as in quant/qt.h (qt_type); repeated here as plain ints so that device code
 * needs no C enum from a C header. */
enum {
    KN_DQ_F32 = 0, KN_DQ_F16 = 1, KN_DQ_Q4_0 = 2, KN_DQ_Q4_1 = 3, KN_DQ_Q5_0 = 6, KN_DQ_Q5_1 = 7,
    KN_DQ_Q8_0 = 8, KN_DQ_Q2_K = 10, KN_DQ_Q3_K = 11, KN_DQ_Q4_K = 12, KN_DQ_Q5_K = 13,
    KN_DQ_Q6_K = 14, KN_DQ_IQ4_NL = 20, KN_DQ_IQ4_XS = 23, KN_DQ_BF16 = 30, KN_DQ_F8_E4M3 = 1000
};

#ifdef __CUDACC__
static __constant__ int8_t kn_dq_iq4nl_dev[16] = QT_IQ4NL_VALUES;
#endif
static const int8_t kn_dq_iq4nl_host[16] = QT_IQ4NL_VALUES;

/* The IQ4_NL level of a 4-bit index (constant memory on the device). */
KN_HD float kn_dq_iq4nl(int q) {
#ifdef __CUDA_ARCH__
    return (float)kn_dq_iq4nl_dev[q];
#else
    return (float)kn_dq_iq4nl_host[q];
#endif
}

KN_HD float kn_dq_bits_f32(uint32_t u) {
    union { uint32_t u; float f; } v;
    v.u = u;
    return v.f;
}

KN_HD uint16_t kn_dq_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

/* IEEE half bits to float, exact (subnormals, inf, NaN). */
KN_HD float kn_dq_f16(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0) {
        float r = (float)man * 5.9604644775390625e-8f;   /* man * 2^-24, exact */
        return sign ? -r : r;
    }
    if (exp == 31) return kn_dq_bits_f32(sign | 0x7f800000u | (man << 13));
    return kn_dq_bits_f32(sign | ((exp - 15 + 127) << 23) | (man << 13));
}

KN_HD float kn_dq_bf16(uint16_t h) { return kn_dq_bits_f32((uint32_t)h << 16); }

/* e4m3fn: bias 7, no infinities, 0x7F/0xFF NaN. */
KN_HD float kn_dq_e4m3(uint8_t v) {
    uint32_t sign = (uint32_t)(v & 0x80u) << 24;
    uint32_t exp = (v >> 3) & 0xfu, man = v & 7u;
    if (exp == 15 && man == 7) return kn_dq_bits_f32(0x7fc00000u | sign);
    if (exp == 0) {
        float r = (float)man * 0.001953125f;              /* man * 2^-9, exact */
        return sign ? -r : r;
    }
    return kn_dq_bits_f32(sign | ((exp - 7 + 127) << 23) | (man << 20));
}

/* 6-bit scale and min j (0..7) of Q4_K/Q5_K from their 12 packed bytes. */
KN_HD void kn_dq_scale_min_k4(int j, const uint8_t *q, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* Element c of a row of a GGUF block type (not FP8/F32/F16/BF16). */
KN_HD float kn_dq_block_elem(int type, const uint8_t *row, int64_t c) {
    switch (type) {
    case KN_DQ_Q4_0: {
        const qt_block_q4_0 *b = (const qt_block_q4_0 *)(const void *)(row + (c / 32) * sizeof(qt_block_q4_0));
        int j = (int)(c % 32), q = j < 16 ? (b->qs[j] & 0xF) : (b->qs[j - 16] >> 4);
        return (float)(q - 8) * kn_dq_f16(b->d);
    }
    case KN_DQ_Q4_1: {
        const qt_block_q4_1 *b = (const qt_block_q4_1 *)(const void *)(row + (c / 32) * sizeof(qt_block_q4_1));
        int j = (int)(c % 32), q = j < 16 ? (b->qs[j] & 0xF) : (b->qs[j - 16] >> 4);
        return (float)q * kn_dq_f16(b->d) + kn_dq_f16(b->m);
    }
    case KN_DQ_Q5_0: {
        const qt_block_q5_0 *b = (const qt_block_q5_0 *)(const void *)(row + (c / 32) * sizeof(qt_block_q5_0));
        uint32_t qh = (uint32_t)b->qh[0] | ((uint32_t)b->qh[1] << 8) | ((uint32_t)b->qh[2] << 16) | ((uint32_t)b->qh[3] << 24);
        int j = (int)(c % 32);
        int lo = j < 16 ? (b->qs[j] & 0xF) : (b->qs[j - 16] >> 4);
        int q = lo | (int)(((qh >> j) & 1u) << 4);
        return (float)(q - 16) * kn_dq_f16(b->d);
    }
    case KN_DQ_Q5_1: {
        const qt_block_q5_1 *b = (const qt_block_q5_1 *)(const void *)(row + (c / 32) * sizeof(qt_block_q5_1));
        uint32_t qh = (uint32_t)b->qh[0] | ((uint32_t)b->qh[1] << 8) | ((uint32_t)b->qh[2] << 16) | ((uint32_t)b->qh[3] << 24);
        int j = (int)(c % 32);
        int lo = j < 16 ? (b->qs[j] & 0xF) : (b->qs[j - 16] >> 4);
        int q = lo | (int)(((qh >> j) & 1u) << 4);
        return (float)q * kn_dq_f16(b->d) + kn_dq_f16(b->m);
    }
    case KN_DQ_Q8_0: {
        const qt_block_q8_0 *b = (const qt_block_q8_0 *)(const void *)(row + (c / 32) * sizeof(qt_block_q8_0));
        return (float)b->qs[c % 32] * kn_dq_f16(b->d);
    }
    case KN_DQ_IQ4_NL: {
        const qt_block_iq4_nl *b = (const qt_block_iq4_nl *)(const void *)(row + (c / 32) * sizeof(qt_block_iq4_nl));
        int j = (int)(c % 32), q = j < 16 ? (b->qs[j] & 0xF) : (b->qs[j - 16] >> 4);
        return kn_dq_f16(b->d) * kn_dq_iq4nl(q);
    }
    case KN_DQ_Q2_K: {
        const qt_block_q2_K *b = (const qt_block_q2_K *)(const void *)(row + (c / 256) * sizeof(qt_block_q2_K));
        int e = (int)(c % 256), half = e / 128, r = e % 128, j = r / 32, l = r % 32;
        int sc = b->scales[e / 16];
        int q = (b->qs[half * 32 + l] >> (2 * j)) & 3;
        float dl = kn_dq_f16(b->d) * (float)(sc & 0xF), ml = kn_dq_f16(b->dmin) * (float)(sc >> 4);
        return dl * (float)q - ml;
    }
    case KN_DQ_Q3_K: {
        const qt_block_q3_K *b = (const qt_block_q3_K *)(const void *)(row + (c / 256) * sizeof(qt_block_q3_K));
        int e = (int)(c % 256), half = e / 128, r = e % 128, j = r / 32, l = r % 32, is = e / 16;
        int lo = is < 8 ? (b->scales[is] & 0xF) : (b->scales[is - 8] >> 4);
        int hi = (b->scales[8 + is % 4] >> (2 * (is / 4))) & 3;
        int s = (lo | (hi << 4)) - 32;
        int q = (b->qs[half * 32 + l] >> (2 * j)) & 3;
        if (!(b->hmask[l] & (1 << (half * 4 + j)))) q -= 4;
        return kn_dq_f16(b->d) * (float)s * (float)q;
    }
    case KN_DQ_Q4_K: {
        const qt_block_q4_K *b = (const qt_block_q4_K *)(const void *)(row + (c / 256) * sizeof(qt_block_q4_K));
        int e = (int)(c % 256), ch = e / 64, w = e % 64, sc, m;
        kn_dq_scale_min_k4(e / 32, b->scales, &sc, &m);
        int q = w < 32 ? (b->qs[ch * 32 + w] & 0xF) : (b->qs[ch * 32 + w - 32] >> 4);
        return kn_dq_f16(b->d) * (float)sc * (float)q - kn_dq_f16(b->dmin) * (float)m;
    }
    case KN_DQ_Q5_K: {
        const qt_block_q5_K *b = (const qt_block_q5_K *)(const void *)(row + (c / 256) * sizeof(qt_block_q5_K));
        int e = (int)(c % 256), ch = e / 64, w = e % 64, l = w % 32, sc, m;
        kn_dq_scale_min_k4(e / 32, b->scales, &sc, &m);
        int q = w < 32 ? (b->qs[ch * 32 + l] & 0xF) : (b->qs[ch * 32 + l] >> 4);
        if (b->qh[l] & (1 << (2 * ch + w / 32))) q += 16;
        return kn_dq_f16(b->d) * (float)sc * (float)q - kn_dq_f16(b->dmin) * (float)m;
    }
    case KN_DQ_Q6_K: {
        const qt_block_q6_K *b = (const qt_block_q6_K *)(const void *)(row + (c / 256) * sizeof(qt_block_q6_K));
        int e = (int)(c % 256), half = e / 128, r = e % 128, k = r / 32, l = r % 32;
        int lq = b->ql[half * 64 + l + 32 * (k & 1)];
        int q = ((k >> 1) ? (lq >> 4) : (lq & 0xF)) | (((b->qh[half * 32 + l] >> (2 * k)) & 3) << 4);
        return kn_dq_f16(b->d) * (float)b->scales[e / 16] * (float)(q - 32);
    }
    case KN_DQ_IQ4_XS: {
        const qt_block_iq4_xs *b = (const qt_block_iq4_xs *)(const void *)(row + (c / 256) * sizeof(qt_block_iq4_xs));
        int e = (int)(c % 256), ib = e / 32, j = e % 32;
        int ls = ((b->scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((b->scales_h >> (2 * ib)) & 3) << 4);
        float dl = kn_dq_f16(b->d) * (float)(ls - 32);
        int q = j < 16 ? (b->qs[ib * 16 + j] & 0xF) : (b->qs[ib * 16 + j - 16] >> 4);
        return dl * kn_dq_iq4nl(q);
    }
    default:
        return 0.0f;
    }
}

/* Element (r, c) of a weight: row = start of row r; fp8_scale = its 128x128 block scale
 * (ignored by other types). */
KN_HD float kn_dq_elem(int type, const uint8_t *row, int64_t c, float fp8_scale) {
    switch (type) {
    case KN_DQ_F32: return ((const float *)(const void *)row)[c];
    case KN_DQ_F16: return kn_dq_f16(kn_dq_u16(row + 2 * c));
    case KN_DQ_BF16: return kn_dq_bf16(kn_dq_u16(row + 2 * c));
    case KN_DQ_F8_E4M3: return kn_dq_e4m3(row[c]) * fp8_scale;
    default: return kn_dq_block_elem(type, row, c);
    }
}

/* Whether kn_dq_elem decodes this type. */
KN_HD int kn_dq_supported(int type) {
    switch (type) {
    case KN_DQ_F32: case KN_DQ_F16: case KN_DQ_BF16: case KN_DQ_F8_E4M3:
    case KN_DQ_Q4_0: case KN_DQ_Q4_1: case KN_DQ_Q5_0: case KN_DQ_Q5_1: case KN_DQ_Q8_0:
    case KN_DQ_Q2_K: case KN_DQ_Q3_K: case KN_DQ_Q4_K: case KN_DQ_Q5_K: case KN_DQ_Q6_K:
    case KN_DQ_IQ4_NL: case KN_DQ_IQ4_XS:
        return 1;
    default:
        return 0;
    }
}

#endif
