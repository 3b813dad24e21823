/* tests/test_quant_types.c — quant/ traits table and decoding of hand-built blocks.
 * Every block below is filled byte by byte; the expected value of each element is
 * derived here, element by element, from the written format definition (ggml's
 * layouts as documented in quant/blocks.h), independently of the library's loops.
 * All scales are powers of two and all levels small integers, so the expected values
 * are exact and the comparison is bit-exact. */
#include "tests/util/tu.h"
#include "quant/qt.h"
#include "quant/blocks.h"

#include <ctype.h>
#include <stdint.h>

static uint32_t rng = 12345;
static uint8_t rb(void) { rng = rng * 1103515245u + 12345u; return (uint8_t)(rng >> 16); }
static void fill(void *p, size_t n) { uint8_t *b = p; for (size_t i = 0; i < n; i++) b[i] = rb(); }

static const int kv[16] = { -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113 };

/* f16 bits of 2^e for small e */
static uint16_t h_pow2(int e) { return (uint16_t)((15 + e) << 10); }
static float f_pow2(int e) { return ldexpf(1.f, e); }

static int nib(const uint8_t *qs, int e) {     /* 32-block nibble layout: e<16 low, else high */
    return e < 16 ? qs[e] & 15 : qs[e - 16] >> 4;
}

static void check(qt_type t, const void *blk, const float *want, int n) {
    float got[256];
    const qt_traits *tr = qt_get_traits(t);
    TU_CHECK(tr && tr->to_float, "%s has a decoder", qt_type_name(t));
    if (!tr || !tr->to_float) return;
    tr->to_float(blk, got, n);
    int bad = 0;
    for (int i = 0; i < n; i++)
        if (memcmp(&got[i], &want[i], 4) && bad++ < 3)
            fprintf(stderr, "  %s elem %d: got %.9g want %.9g\n", tr->name, i, got[i], want[i]);
    TU_CHECK(bad == 0, "%s: %d of %d elements differ", tr->name, bad, n);
}

/* 6-bit scale/min j of the Q4_K/Q5_K 12-byte packing, written from the spec:
 * j<4: scale = b[j] & 63, min = b[j+4] & 63;
 * j>=4: scale = (b[j+4] & 15) | (b[j-4] >> 6) << 4, min = (b[j+4] >> 4) | (b[j] >> 6) << 4. */
static void k4_scale(const uint8_t *b, int j, int *sc, int *mn) {
    if (j < 4) { *sc = b[j] & 63; *mn = b[j + 4] & 63; }
    else { *sc = (b[j + 4] & 15) | ((b[j - 4] >> 6) << 4); *mn = (b[j + 4] >> 4) | ((b[j] >> 6) << 4); }
}

int main(void) {
    float want[256];

    /* ---- traits, names, sizes ---- */
    struct { qt_type t; const char *name; int blck, size; } tab[] = {
        { QT_F32, "F32", 1, 4 }, { QT_F16, "F16", 1, 2 }, { QT_BF16, "BF16", 1, 2 },
        { QT_Q4_0, "Q4_0", 32, 18 }, { QT_Q4_1, "Q4_1", 32, 20 }, { QT_Q5_0, "Q5_0", 32, 22 },
        { QT_Q5_1, "Q5_1", 32, 24 }, { QT_Q8_0, "Q8_0", 32, 34 }, { QT_Q2_K, "Q2_K", 256, 84 },
        { QT_Q3_K, "Q3_K", 256, 110 }, { QT_Q4_K, "Q4_K", 256, 144 }, { QT_Q5_K, "Q5_K", 256, 176 },
        { QT_Q6_K, "Q6_K", 256, 210 }, { QT_IQ4_NL, "IQ4_NL", 32, 18 }, { QT_IQ4_XS, "IQ4_XS", 256, 136 },
    };
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++) {
        const qt_traits *tr = qt_get_traits(tab[i].t);
        TU_CHECK(tr != NULL, "traits of %s", tab[i].name);
        if (!tr) continue;
        TU_CHECK(!strcmp(tr->name, tab[i].name) && tr->blck == tab[i].blck && tr->type_size == tab[i].size,
                 "%s: got %s blck %d size %d", tab[i].name, tr->name, tr->blck, tr->type_size);
        TU_CHECK(tr->to_float && tr->from_float, "%s has both converters", tab[i].name);
        qt_type t;
        char lower[16];
        for (int c = 0; ; c++) { lower[c] = (char)tolower((unsigned char)tab[i].name[c]); if (!lower[c]) break; }
        TU_CHECK(qt_type_from_name(lower, &t) && t == tab[i].t, "name lookup %s", lower);
        TU_CHECK(qt_row_size(tab[i].t, 4096) == (uint64_t)(4096 / tab[i].blck * tab[i].size), "row size %s", tab[i].name);
        TU_CHECK(tab[i].blck == 1 || qt_row_size(tab[i].t, tab[i].blck + 1) == 0, "ragged row %s", tab[i].name);
    }
    qt_type dummy;
    TU_CHECK(!qt_type_from_name("Q4_2", &dummy), "unknown name rejected");
    TU_CHECK(qt_get_traits((qt_type)4) == NULL && qt_get_traits((qt_type)-1) == NULL, "unknown ids");
    TU_CHECK(qt_row_size(QT_IQ2_XXS, 256) == 66 && qt_row_size(QT_IQ1_M, 256) == 56, "IQ sizes known");

    /* ---- Q4_0: x = d * (q - 8) ---- */
    { qt_block_q4_0 b; fill(&b, sizeof b); b.d = h_pow2(-3);
      for (int e = 0; e < 32; e++) want[e] = f_pow2(-3) * (float)(nib(b.qs, e) - 8);
      check(QT_Q4_0, &b, want, 32); }
    /* ---- Q4_1: x = d * q + m ---- */
    { qt_block_q4_1 b; fill(&b, sizeof b); b.d = h_pow2(-2); b.m = (uint16_t)(h_pow2(1) | 0x8000); /* m = -2 */
      for (int e = 0; e < 32; e++) want[e] = f_pow2(-2) * (float)nib(b.qs, e) - 2.f;
      check(QT_Q4_1, &b, want, 32); }
    /* ---- Q5_0: q = nibble | bit e of qh (LE uint32) << 4; x = d*(q-16) ---- */
    { qt_block_q5_0 b; fill(&b, sizeof b); b.d = h_pow2(-4);
      for (int e = 0; e < 32; e++) {
          int hb = (b.qh[e / 8] >> (e % 8)) & 1;
          want[e] = f_pow2(-4) * (float)((nib(b.qs, e) | hb << 4) - 16);
      }
      check(QT_Q5_0, &b, want, 32); }
    /* ---- Q5_1 ---- */
    { qt_block_q5_1 b; fill(&b, sizeof b); b.d = h_pow2(0); b.m = h_pow2(2);
      for (int e = 0; e < 32; e++) {
          int hb = (b.qh[e / 8] >> (e % 8)) & 1;
          want[e] = (float)(nib(b.qs, e) | hb << 4) + 4.f;
      }
      check(QT_Q5_1, &b, want, 32); }
    /* ---- Q8_0 ---- */
    { qt_block_q8_0 b; fill(&b, sizeof b); b.d = h_pow2(-7);
      for (int e = 0; e < 32; e++) want[e] = f_pow2(-7) * (float)b.qs[e];
      check(QT_Q8_0, &b, want, 32); }
    /* ---- IQ4_NL: x = d * kv[nibble] ---- */
    { qt_block_iq4_nl b; fill(&b, sizeof b); b.d = h_pow2(-6);
      for (int e = 0; e < 32; e++) want[e] = f_pow2(-6) * (float)kv[nib(b.qs, e)];
      check(QT_IQ4_NL, &b, want, 32); }
    /* ---- Q2_K: element e: half h = e/128, r = e%128, shift 2*(r/32), byte qs[32h + r%32];
     *      sub-block s = e/16: scale = sc[s] & 15, min = sc[s] >> 4; x = d*scale*q - dmin*min ---- */
    { qt_block_q2_K b; fill(&b, sizeof b); b.d = h_pow2(-3); b.dmin = h_pow2(-5);
      for (int e = 0; e < 256; e++) {
          int h = e / 128, r = e % 128, q = (b.qs[32 * h + r % 32] >> (2 * (r / 32))) & 3, s = e / 16;
          want[e] = f_pow2(-3) * (float)(b.scales[s] & 15) * (float)q - f_pow2(-5) * (float)(b.scales[s] >> 4);
      }
      check(QT_Q2_K, &b, want, 256); }
    /* ---- Q3_K: low 2 bits as Q2_K; high bit = hmask[e%32] bit e/32, level = low + 4*hbit - 4;
     *      6-bit scale s: low 4 bits = s<8 ? sc[s]&15 : sc[s-8]>>4, high 2 = sc[8+s%4]>>(2*(s/4)) ---- */
    { qt_block_q3_K b; fill(&b, sizeof b); b.d = h_pow2(-8);
      for (int e = 0; e < 256; e++) {
          int h = e / 128, r = e % 128, lo2 = (b.qs[32 * h + r % 32] >> (2 * (r / 32))) & 3;
          int hb = (b.hmask[e % 32] >> (e / 32)) & 1, s = e / 16;
          int sl = s < 8 ? b.scales[s] & 15 : b.scales[s - 8] >> 4;
          int sc = (sl | (((b.scales[8 + s % 4] >> (2 * (s / 4))) & 3) << 4)) - 32;
          want[e] = f_pow2(-8) * (float)sc * (float)(lo2 + 4 * hb - 4);
      }
      check(QT_Q3_K, &b, want, 256); }
    /* ---- Q4_K: chunk c = e/64, byte qs[32c + e%32], nibble (e%64)/32; sub-block e/32 ---- */
    { qt_block_q4_K b; fill(&b, sizeof b); b.d = h_pow2(-4); b.dmin = h_pow2(-6);
      for (int e = 0; e < 256; e++) {
          int c = e / 64, byte = b.qs[32 * c + e % 32], q = (e % 64) < 32 ? byte & 15 : byte >> 4, sc, mn;
          k4_scale(b.scales, e / 32, &sc, &mn);
          want[e] = f_pow2(-4) * (float)sc * (float)q - f_pow2(-6) * (float)mn;
      }
      check(QT_Q4_K, &b, want, 256); }
    /* ---- Q5_K: as Q4_K plus 16 * (qh[e%32] bit (e/32)) ---- */
    { qt_block_q5_K b; fill(&b, sizeof b); b.d = h_pow2(-5); b.dmin = h_pow2(-4);
      for (int e = 0; e < 256; e++) {
          int c = e / 64, byte = b.qs[32 * c + e % 32], q = (e % 64) < 32 ? byte & 15 : byte >> 4, sc, mn;
          q += 16 * ((b.qh[e % 32] >> (e / 32)) & 1);
          k4_scale(b.scales, e / 32, &sc, &mn);
          want[e] = f_pow2(-5) * (float)sc * (float)q - f_pow2(-4) * (float)mn;
      }
      check(QT_Q5_K, &b, want, 256); }
    /* ---- Q6_K: half h = e/128, r = e%128, k = r/32, l = r%32: low 4 bits from
     *      ql[64h + l + 32*(k&1)] (high nibble if k>=2), high 2 from qh[32h + l] >> 2k;
     *      x = d * scales[e/16] * (q - 32) ---- */
    { qt_block_q6_K b; fill(&b, sizeof b); b.d = h_pow2(-9);
      for (int e = 0; e < 256; e++) {
          int h = e / 128, r = e % 128, k = r / 32, l = r % 32;
          int lb = b.ql[64 * h + l + 32 * (k & 1)], lo4 = k >= 2 ? lb >> 4 : lb & 15;
          int hi2 = (b.qh[32 * h + l] >> (2 * k)) & 3;
          want[e] = f_pow2(-9) * (float)b.scales[e / 16] * (float)((lo4 | hi2 << 4) - 32);
      }
      check(QT_Q6_K, &b, want, 256); }
    /* ---- IQ4_XS: sub-block ib = e/32: ls = nibble ib%2 of scales_l[ib/2] | (scales_h >> 2ib & 3) << 4;
     *      x = d * (ls - 32) * kv[nibble(qs + 16 ib, e%32)] ---- */
    { qt_block_iq4_xs b; fill(&b, sizeof b); b.d = h_pow2(-10);
      for (int e = 0; e < 256; e++) {
          int ib = e / 32, ls = ((b.scales_l[ib / 2] >> (4 * (ib % 2))) & 15) | (((b.scales_h >> (2 * ib)) & 3) << 4);
          want[e] = f_pow2(-10) * (float)(ls - 32) * (float)kv[nib(b.qs + 16 * ib, e % 32)];
      }
      check(QT_IQ4_XS, &b, want, 256); }

    /* ---- plain types round trip exactly representable values ---- */
    {
        float src[8] = { 0.f, -1.f, 0.5f, 65504.f, -0.00006103515625f, 3.f, 1024.f, -2.5f }, back[8];
        uint8_t buf[32];
        qt_type pt[3] = { QT_F32, QT_F16, QT_BF16 };
        for (int i = 0; i < 3; i++) {
            const qt_traits *tr = qt_get_traits(pt[i]);
            tr->from_float(src, buf, 8, NULL);
            tr->to_float(buf, back, 8);
            int ok = 1;
            for (int j = 0; j < 8; j++) {
                float w = pt[i] == QT_BF16 && j == 3 ? 65536.f : src[j];   /* 65504 rounds to 2^16 in bf16 */
                ok &= back[j] == w;
            }
            TU_CHECK(ok, "%s round trip of representable values", tr->name);
        }
    }
    return tu_done("test_quant_types");
}
