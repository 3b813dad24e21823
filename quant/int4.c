/* quant/int4.c — decoding of compressed-tensors "pack-quantized" INT4 weights (Kimi-K2-Thinking
 * and K2.5 routed experts): eight 4-bit values per little-endian int32, the lowest nibble
 * first (column 8k+j is bits [4j, 4j+4) of word k), symmetric with offset 8, one scale per
 * group of `group` columns:  w[r][c] = (nibble(r, c) - 8) * scale[r][c / group].
 * Decoding only; no I/O.  The scales arrive as f32 (the caller decodes BF16). */
#include "qt.h"

void qt_int4_packed_dequant_row(const uint8_t *packed, const float *scales, int64_t cols, int64_t group,
                                float *out) {
    for (int64_t c = 0; c < cols; c++) {
        const uint8_t *w = packed + (c / 8) * 4;
        uint32_t word = (uint32_t)w[0] | (uint32_t)w[1] << 8 | (uint32_t)w[2] << 16 | (uint32_t)w[3] << 24;
        int nib = (int)((word >> (4 * (c % 8))) & 15u);
        out[c] = (float)(nib - 8) * scales[c / group];
    }
}
