/* quant/fp8.c — exact decoders for FP8 (e4m3fn, e5m2), BF16 and F16, and block-scaled
 * FP8 dequantization of DeepSeek checkpoints.  Table-driven where it pays. */
#include "qt.h"

#include <math.h>
#include <string.h>

static float bits_to_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static uint32_t f32_to_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/* Builds the float bit pattern of an FP8 value with `eb` exponent bits, `mb` mantissa bits. */
static float fp8_decode(uint8_t v, int eb, int mb, int bias, bool has_inf) {
    int sign = v >> 7;
    int exp = (v >> mb) & ((1 << eb) - 1);
    int man = v & ((1 << mb) - 1);
    float r;
    if (has_inf && exp == (1 << eb) - 1) {
        r = man ? NAN : INFINITY;
    } else if (!has_inf && exp == (1 << eb) - 1 && man == (1 << mb) - 1) {
        r = NAN;
    } else if (exp == 0) {
        r = ldexpf((float)man, 1 - bias - mb);
    } else {
        r = ldexpf((float)((1 << mb) | man), exp - bias - mb);
    }
    return sign ? -r : r;
}

float qt_fp8_e4m3_to_f32(uint8_t v) { return fp8_decode(v, 4, 3, 7, false); }
float qt_fp8_e5m2_to_f32(uint8_t v) { return fp8_decode(v, 5, 2, 15, true); }

float qt_bf16_to_f32(uint16_t v) { return bits_to_f32((uint32_t)v << 16); }

uint16_t qt_f32_to_bf16(float f) {
    uint32_t u = f32_to_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

float qt_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    int exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    float r;
    if (exp == 0) r = ldexpf((float)man, -24);
    else if (exp == 31) r = man ? NAN : INFINITY;
    else return bits_to_f32(sign | ((uint32_t)(exp - 15 + 127) << 23) | (man << 13));
    return sign ? -r : r;
}

uint16_t qt_f32_to_f16(float f) {
    uint32_t u = f32_to_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00;              /* NaN */
    if (a >= 0x477ff000u) return sign | 0x7c00;             /* overflow to inf (>= 65520) */
    if (a < 0x38800000u) {                                  /* subnormal or zero in f16 */
        float af = bits_to_f32(a);
        /* value in units of 2^-24, rounded to nearest even by the FPU */
        float q = af * 16777216.0f;
        return sign | (uint16_t)lrintf(q);
    }
    uint32_t e = ((a >> 23) - 127 + 15);
    uint32_t m = a & 0x7fffff;
    uint32_t hm = m >> 13, rem = m & 0x1fff;
    uint32_t h = (e << 10) | hm;
    if (rem > 0x1000 || (rem == 0x1000 && (hm & 1))) h++;
    return sign | (uint16_t)h;
}

static float e4m3_table[256];
static float e5m2_table[256];
static int tables_ready;

static void fp8_tables_init(void) {
    /* Idempotent and race-benign: every writer stores the same values. */
    if (__atomic_load_n(&tables_ready, __ATOMIC_ACQUIRE)) return;
    for (int i = 0; i < 256; i++) {
        e4m3_table[i] = qt_fp8_e4m3_to_f32((uint8_t)i);
        e5m2_table[i] = qt_fp8_e5m2_to_f32((uint8_t)i);
    }
    __atomic_store_n(&tables_ready, 1, __ATOMIC_RELEASE);
}

/* Scalar reference: table lookup times the tile's scale. */
static void dequant_span_ref(const uint8_t *q, float s, float *o, int64_t n) {
    for (int64_t c = 0; c < n; c++) o[c] = e4m3_table[q[c]] * s;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/* AVX2: rebuild the float bits from the code.  Normal codes: exponent re-biased by +120,
 * mantissa shifted; subnormals (exponent field 0): m * 2^-9 via an int->float convert;
 * 0x7F/0xFF: NaN.  Bit-identical to the table (each step is exact). */
__attribute__((target("avx2")))
static void dequant_span_avx2(const uint8_t *q, float s, float *o, int64_t n) {
    const __m256 vs = _mm256_set1_ps(s), sub_scale = _mm256_set1_ps(0x1p-9f);
    const __m256i m7f = _mm256_set1_epi32(0x7F), m78 = _mm256_set1_epi32(0x78), m80 = _mm256_set1_epi32(0x80);
    const __m256i m07 = _mm256_set1_epi32(0x07), bias = _mm256_set1_epi32(120 << 23), zero = _mm256_setzero_si256();
    const __m256 qnan = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FC00000));
    int64_t c = 0;
    for (; c + 8 <= n; c += 8) {
        __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(q + c)));
        __m256i mag = _mm256_and_si256(v, m7f);
        __m256 normal = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_slli_epi32(mag, 20), bias));
        __m256 sub = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_and_si256(v, m07)), sub_scale);
        __m256 is_sub = _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(v, m78), zero));
        __m256 is_nan = _mm256_castsi256_ps(_mm256_cmpeq_epi32(mag, m7f));
        __m256 x = _mm256_blendv_ps(normal, sub, is_sub);
        x = _mm256_blendv_ps(x, qnan, is_nan);
        x = _mm256_or_ps(x, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_and_si256(v, m80), 24)));
        x = _mm256_mul_ps(x, vs);
        _mm256_storeu_ps(o + c, x);
    }
    dequant_span_ref(q + c, s, o + c, n - c);
}
#endif

typedef void (*span_fn)(const uint8_t *, float, float *, int64_t);

static span_fn pick_span(bool force_ref) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (!force_ref && __builtin_cpu_supports("avx2")) return dequant_span_avx2;
#endif
    (void)force_ref;
    return dequant_span_ref;
}

static void block_dequant(span_fn span, const uint8_t *q, const float *scale_inv, int64_t cols,
                          int64_t r0, int64_t r1, float *out) {
    int64_t scols = (cols + 127) / 128;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *qr = q + r * cols;
        const float *sr = scale_inv + (r / 128) * scols;
        float *o = out + (r - r0) * cols;
        for (int64_t cb = 0; cb < scols; cb++) {
            int64_t c0 = cb * 128, c1 = c0 + 128 < cols ? c0 + 128 : cols;
            span(qr + c0, sr[cb], o + c0, c1 - c0);
        }
    }
}

void qt_fp8_block_dequant(const uint8_t *q, const float *scale_inv, int64_t rows, int64_t cols,
                          int64_t r0, int64_t r1, float *out) {
    fp8_tables_init();
    (void)rows;
    block_dequant(pick_span(false), q, scale_inv, cols, r0, r1, out);
}

void qt_fp8_block_dequant_ref(const uint8_t *q, const float *scale_inv, int64_t rows, int64_t cols,
                              int64_t r0, int64_t r1, float *out) {
    fp8_tables_init();
    (void)rows;
    block_dequant(pick_span(true), q, scale_inv, cols, r0, r1, out);
}

bool qt_plain_to_f32(qt_type t, const void *src, float *dst, int64_t n) {
    fp8_tables_init();
    switch (t) {
    case QT_F32: memcpy(dst, src, (size_t)n * 4); return true;
    case QT_F16: {
        const uint8_t *s = src;
        for (int64_t i = 0; i < n; i++) { uint16_t h; memcpy(&h, s + 2 * i, 2); dst[i] = qt_f16_to_f32(h); }
        return true;
    }
    case QT_BF16: {
        const uint8_t *s = src;
        for (int64_t i = 0; i < n; i++) { uint16_t h; memcpy(&h, s + 2 * i, 2); dst[i] = qt_bf16_to_f32(h); }
        return true;
    }
    case QT_F8_E4M3: { const uint8_t *s = src; for (int64_t i = 0; i < n; i++) dst[i] = e4m3_table[s[i]]; return true; }
    case QT_F8_E5M2: { const uint8_t *s = src; for (int64_t i = 0; i < n; i++) dst[i] = e5m2_table[s[i]]; return true; }
    default: return false;
    }
}

uint8_t qt_f32_to_fp8_e4m3(float f) {
    if (isnan(f)) return 0x7F;
    fp8_tables_init();
    uint8_t sign = signbit(f) ? 0x80 : 0;
    float a = fabsf(f);
    if (a >= 448.0f) return sign | 0x7E;
    /* positive codes 0x00..0x7E are increasing: binary search the last code <= a */
    int lo = 0, hi = 0x7E;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (e4m3_table[mid] <= a) lo = mid; else hi = mid - 1;
    }
    int c = lo;
    if (c < 0x7E) {
        float d0 = a - e4m3_table[c], d1 = e4m3_table[c + 1] - a;
        if (d1 < d0 || (d1 == d0 && (c & 1))) c++;
    }
    return sign | (uint8_t)c;
}
