/* quant/unbias.c — the gain correction applied after the block quantizers of the K, legacy
 * and IQ4 types: each block's f16 scale (and, for the types with one, its f16 min scale) is
 * multiplied by the factor that makes the block's reconstruction unbiased in the importance
 * weighting, sum u*x*q = sum u*x^2 (u = imp, or 1 without an importance vector); the levels
 * are kept.  Why: a least-squares fit over a coarse grid shrinks every block toward zero
 * (sum q^2 < sum x^2); per tensor the error is minimal, but the model's activations shrink
 * layer after layer and the end-to-end KLD grows (issue 11: the IQ types lost 1.7-1.9x more
 * than ggml's for exactly this reason).  The factor is (B/C) * (AC/B^2)^theta with
 * A = sum u x^2, B = sum u x q, C = sum u q^2: theta = 0 is the least-squares rescale, 1 the
 * unbiased one; per type theta was chosen by held-out KLD (see g_theta). */
#include "qt_internal.h"

#include <math.h>
#include <stddef.h>

typedef struct {
    int d_off, m_off;      /* byte offsets of the f16 scale and min-scale (-1: none) */
} ub_layout;

static ub_layout ub_layout_of(qt_type t) {
    switch (t) {
    case QT_Q4_0: return (ub_layout){ offsetof(qt_block_q4_0, d), -1 };
    case QT_Q4_1: return (ub_layout){ offsetof(qt_block_q4_1, d), offsetof(qt_block_q4_1, m) };
    case QT_Q5_0: return (ub_layout){ offsetof(qt_block_q5_0, d), -1 };
    case QT_Q5_1: return (ub_layout){ offsetof(qt_block_q5_1, d), offsetof(qt_block_q5_1, m) };
    case QT_Q8_0: return (ub_layout){ offsetof(qt_block_q8_0, d), -1 };
    case QT_Q2_K: return (ub_layout){ offsetof(qt_block_q2_K, d), offsetof(qt_block_q2_K, dmin) };
    case QT_Q3_K: return (ub_layout){ offsetof(qt_block_q3_K, d), -1 };
    case QT_Q4_K: return (ub_layout){ offsetof(qt_block_q4_K, d), offsetof(qt_block_q4_K, dmin) };
    case QT_Q5_K: return (ub_layout){ offsetof(qt_block_q5_K, d), offsetof(qt_block_q5_K, dmin) };
    case QT_Q6_K: return (ub_layout){ offsetof(qt_block_q6_K, d), -1 };
    case QT_IQ4_NL: return (ub_layout){ offsetof(qt_block_iq4_nl, d), -1 };
    case QT_IQ4_XS: return (ub_layout){ offsetof(qt_block_iq4_xs, d), -1 };
    default: return (ub_layout){ -1, -1 };
    }
}

/* theta per type: 1 (unbiased) for every K, legacy and IQ4 type but Q8_0, whose rounding
 * error is too small to shrink anything (and whose bytes stay ggml's reference bytes).
 * Measured on mini-v3, held-out KLD (imatrix of calib.txt's first half, KLD on its second
 * half, ctx 256, 64 windows), Q2_K preset theta 0 / 0.5 / 1 / 1.5 / 2: 0.0478 / 0.0497 / 0.0437
 * / 0.0429 / 0.0477; Q3_K_M theta 0 / 1: 0.01488 / 0.01450; without an imatrix Q3_K_M 0.01549
 * -> 0.01512, Q4_K_M 0.00612 -> 0.00593. */
#define UB_THETA 1.0

static void scale_f16(uint8_t *p, float a) {
    uint16_t h;
    memcpy(&h, p, 2);
    h = qt_f32_to_f16(qt_f16_to_f32(h) * a);
    memcpy(p, &h, 2);
}

void qk_unbias_row(qt_type t, const float *x, const float *imp, void *dst, int64_t n) {
    const ub_layout L = ub_layout_of(t);
    const qt_traits *tr = qt_get_traits(t);
    if (L.d_off < 0 || t == QT_Q8_0 || !tr) return;
    const int bs = tr->blck;                /* 32 or 256 */
    float q[256];
    uint8_t *y = dst;
    for (int64_t b = 0; b < n / bs; b++) {
        uint8_t *blk = y + (size_t)b * (size_t)tr->type_size;
        const float *xb = x + b * bs, *ub = imp ? imp + b * bs : NULL;
        tr->to_float(blk, q, bs);
        double A = 0, B = 0, C = 0;
        for (int j = 0; j < bs; j++) {
            const double u = ub ? ub[j] : 1.0;
            A += u * xb[j] * xb[j]; B += u * xb[j] * q[j]; C += u * q[j] * q[j];
        }
        if (!(A > 0 && B > 0 && C > 0)) continue;
        const double r = A * C / (B * B);
        const double a = (B / C) * pow(r > 1 ? r : 1, UB_THETA);
        if (!(a > 0.5 && a < 2.0) || a == 1.0) continue;
        scale_f16(blk + L.d_off, (float)a);
        if (L.m_off >= 0) scale_f16(blk + L.m_off, (float)a);
    }
}
