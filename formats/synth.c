/* formats/synth.c — synthetic checkpoints in the official HF layouts, from a seed:
 * DeepSeek-V3 (FP8 + 128x128 scale_inv, MLA, grouped MoE, dense first layers, MTP block,
 * shards with an expert run split across a boundary and a scale in another shard than its
 * weight), Llama and Qwen2 (BF16).  `sparse` writes full-size shapes as holes (no disk).
 * Weights have realistic structure: log-normal per-row scales and a few outlier columns. */
#include "formats.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    const char *name;
    hf_arch arch;
    int64_t vocab, tok_vocab, hidden, ffn, layers, heads, kv_heads, head_dim;
    int64_t q_lora, kv_lora, nope, rope, v, moe_ffn, experts, shared, topk, groups, topk_group, dense, mtp;
    int shards;
    bool fp8;
    bool full_scale;         /* real 671B: MTP eh_proj BF16, sparse only */
    bool qkv_bias, tie;
    double rope_theta;
    int variant;             /* SV_*: which member of the V3 family */
} synth_preset;

/* Members of the DeepseekV3ForCausalLM family the presets imitate. */
enum {
    SV_V3 = 0,       /* DeepSeek-V3 / R1 */
    SV_V31,          /* V3.1 / R1-0528: quantization_config.scale_fmt ue8m0, power-of-two scales */
    SV_K2,           /* Kimi-K2(-Instruct): model_type kimi_k2, n_group 1, FP8 like V3 */
    SV_K2_INT4,      /* Kimi-K2-Thinking: BF16 except routed experts, compressed-tensors INT4 g32 */
    SV_V32,          /* DeepSeek-V3.2: DeepseekV32ForCausalLM, lightning indexer per layer */
    SV_K25,          /* Kimi-K2.5: K2-Thinking's text model under `language_model.` inside a
                        KimiK25ForConditionalGeneration (text_config + vision_config), plus a
                        small MoonViT-style vision tower and projector */
};
#define SV_IS_KIMI(p) ((p)->variant == SV_K2 || (p)->variant == SV_K2_INT4 || (p)->variant == SV_K25)
#define SV_IS_INT4(p) ((p)->variant == SV_K2_INT4 || (p)->variant == SV_K25)

/* V3.2 indexer sizes: real (64 heads of 128, top 2048) and tiny (4 heads of 64, top 64) */
#define V32_IDX_HEADS(full) ((full) ? 64 : 4)
#define V32_IDX_DIM(full) ((full) ? 128 : 64)
#define V32_IDX_TOPK(full) ((full) ? 2048 : 64)
/* K2.5 synthetic vision tower width */
#define K25_VT 64

static const synth_preset presets[] = {
    {"tiny-v3", HF_ARCH_DEEPSEEK_V3, 320, 0, 512, 1024, 3, 4, 4, 0, 256, 256, 64, 32, 64, 256, 8, 1, 2, 4, 2, 1, 1, 3, true, false, false, false, 10000, SV_V3},
    {"v3-671b", HF_ARCH_DEEPSEEK_V3, 129280, 0, 7168, 18432, 61, 128, 128, 0, 1536, 512, 128, 64, 128, 2048, 256, 1, 8, 8, 4, 3, 1, 163, true, true, false, false, 10000, SV_V3},
    /* benchmarks: real V3 matrix shapes (attention, dense MLP, 7168x2048 experts), 8 experts per
     * layer and a small vocabulary so that a few layers make a 1-8 GB checkpoint */
    {"v3-layers", HF_ARCH_DEEPSEEK_V3, 8192, 0, 7168, 18432, 2, 128, 128, 0, 1536, 512, 128, 64, 128, 2048, 8, 1, 2, 4, 2, 1, 0, 8, true, false, false, false, 10000, SV_V3},
    {"tiny-v31", HF_ARCH_DEEPSEEK_V3, 320, 0, 512, 1024, 3, 4, 4, 0, 256, 256, 64, 32, 64, 256, 8, 1, 2, 4, 2, 1, 1, 3, true, false, false, false, 10000, SV_V31},
    {"tiny-v32", HF_ARCH_DEEPSEEK_V3, 320, 0, 512, 1024, 3, 4, 4, 0, 256, 256, 64, 32, 64, 256, 8, 1, 2, 4, 2, 1, 1, 3, true, false, false, false, 10000, SV_V32},
    {"v32-685b", HF_ARCH_DEEPSEEK_V3, 129280, 0, 7168, 18432, 61, 128, 128, 0, 1536, 512, 128, 64, 128, 2048, 256, 1, 8, 8, 4, 3, 1, 163, true, true, false, false, 10000, SV_V32},
    /* expert-heavy, with head and expert shapes off the fixtures': q_lora 384, kv_lora 192, heads of
     * 96 + 32, v 96 (attn_output rows of 576), 16 experts of 320 (rows not a multiple of 256) */
    {"tiny-v3-odd", HF_ARCH_DEEPSEEK_V3, 320, 0, 512, 1280, 3, 6, 6, 0, 384, 192, 96, 32, 96, 320, 16, 1, 2, 4, 2, 1, 0, 3, true, false, false, false, 10000, SV_V3},
    {"tiny-k2", HF_ARCH_DEEPSEEK_V3, 320, 0, 512, 1024, 3, 4, 4, 0, 256, 256, 64, 32, 64, 256, 12, 1, 2, 1, 1, 1, 0, 3, true, false, false, false, 50000, SV_K2},
    {"tiny-k2-int4", HF_ARCH_DEEPSEEK_V3, 320, 0, 512, 1024, 3, 4, 4, 0, 256, 256, 64, 32, 64, 256, 12, 1, 2, 1, 1, 1, 0, 3, false, false, false, false, 50000, SV_K2_INT4},
    /* Kimi-K2.5: tiny-k2-int4's text model (same values for the same seed) + vision tensors */
    {"tiny-k25", HF_ARCH_DEEPSEEK_V3, 320, 0, 512, 1024, 3, 4, 4, 0, 256, 256, 64, 32, 64, 256, 12, 1, 2, 1, 1, 1, 0, 3, false, false, false, false, 50000, SV_K25},
    /* Kimi-K2 (1.04T): 384 experts, 64 heads, vocab 163840, one dense layer, no MTP */
    {"k2-1t", HF_ARCH_DEEPSEEK_V3, 163840, 0, 7168, 18432, 61, 64, 64, 0, 1536, 512, 128, 64, 128, 2048, 384, 1, 8, 1, 1, 1, 0, 61, true, true, false, false, 50000, SV_K2},
    {"k2-thinking-1t", HF_ARCH_DEEPSEEK_V3, 163840, 0, 7168, 18432, 61, 64, 64, 0, 1536, 512, 128, 64, 128, 2048, 384, 1, 8, 1, 1, 1, 0, 62, false, true, false, false, 50000, SV_K2_INT4},
    {"tiny-llama", HF_ARCH_LLAMA, 320, 0, 256, 512, 2, 8, 4, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, false, false, false, false, 500000, SV_V3},
    {"tiny-qwen2", HF_ARCH_QWEN2, 320, 0, 256, 512, 2, 8, 2, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, false, false, true, true, 10000, SV_V3},
};

const char *st_synth_preset_names(void) {
    return "tiny-v3, tiny-v31, tiny-v32, tiny-v3-odd, tiny-k2, tiny-k2-int4, tiny-k25, tiny-v4, tiny-v4b, "
           "v3-671b, v32-685b, k2-1t, k2-thinking-1t, v4-flash (the last five with --sparse), "
           "v3-layers (benchmarks), tiny-llama, tiny-qwen2";
}

/* ---- deterministic RNG (splitmix64 + Box-Muller) ---- */
typedef struct { uint64_t s; } rng_t;
static uint64_t rng_u64(rng_t *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double rng_unif(rng_t *r) { return ((double)(rng_u64(r) >> 11) + 0.5) / 9007199254740992.0; }
static float rng_gauss(rng_t *r) {
    double u = rng_unif(r), v = rng_unif(r);
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}
static uint64_t hash_name(const char *s, uint64_t seed) {
    uint64_t h = 1469598103934665603ull ^ seed;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

/* Weight [rows, cols] with per-row log-normal scale, ~1% outlier columns, std ~ 1/sqrt(cols). */
static float *gen_matrix(const char *name, uint64_t seed, int64_t rows, int64_t cols, float base) {
    float *w = malloc((size_t)(rows * cols) * sizeof *w);
    if (!w) return NULL;
    rng_t r = {hash_name(name, seed)};
    float *colf = malloc((size_t)cols * sizeof *colf);
    if (!colf) { free(w); return NULL; }
    for (int64_t c = 0; c < cols; c++) colf[c] = (rng_unif(&r) < 0.01) ? 8.0f : 1.0f;
    float sd = base / sqrtf((float)cols);
    for (int64_t i = 0; i < rows; i++) {
        float rs = expf(0.5f * rng_gauss(&r)) * sd;
        for (int64_t c = 0; c < cols; c++) w[i * cols + c] = rng_gauss(&r) * rs * colf[c];
    }
    free(colf);
    return w;
}

typedef struct {
    st_writer **w;      /* one writer per shard */
    int n;
    int cur;
    uint64_t *bytes;    /* bytes per shard so far */
    uint64_t target;    /* bytes per shard */
    json_t *weight_map;
    const char *dir;
    uint64_t seed;
    bool sparse;
    bool ue8m0;              /* FP8 scales rounded up to powers of two (V3.1) */
    const char *prefix;      /* prepended to every tensor name written (K2.5: "language_model."), or NULL */
} sctx;

static const char *shard_file(int i, int n, char *buf, size_t cap) {
    snprintf(buf, cap, "model-%05d-of-%06d.safetensors", i + 1, n);
    return buf;
}

static qx_status put(sctx *c, const char *name, st_dtype dt, int nd, const int64_t *shape, const void *data, uint64_t nbytes, qx_err *e) {
    char full[512];
    if (c->prefix) {   /* values stay those of the unprefixed name (they are seeded by it) */
        snprintf(full, sizeof full, "%s%s", c->prefix, name);
        name = full;
    }
    uint64_t sz = (uint64_t)st_dtype_size(dt);
    for (int i = 0; i < nd; i++) sz *= (uint64_t)shape[i];
    if (c->bytes[c->cur] > 0 && c->bytes[c->cur] + sz / 2 > c->target && c->cur + 1 < c->n) c->cur++;
    qx_status s = c->sparse ? st_writer_add_sparse(c->w[c->cur], name, dt, nd, shape, e)
                            : st_writer_add(c->w[c->cur], name, dt, nd, shape, data, nbytes, e);
    if (s != QX_OK) return s;
    c->bytes[c->cur] += sz;
    char f[64];
    json_object_set_new(c->weight_map, name, json_string(shard_file(c->cur, c->n, f, sizeof f)));
    return QX_OK;
}

static qx_status put_f32(sctx *c, const char *name, int nd, const int64_t *shape, const float *v, qx_err *e) {
    uint64_t n = 1;
    for (int i = 0; i < nd; i++) n *= (uint64_t)shape[i];
    return put(c, name, ST_F32, nd, shape, v, n * 4, e);
}

static qx_status put_bf16(sctx *c, const char *name, int nd, const int64_t *shape, const float *v, qx_err *e) {
    uint64_t n = 1;
    for (int i = 0; i < nd; i++) n *= (uint64_t)shape[i];
    if (c->sparse) return put(c, name, ST_BF16, nd, shape, NULL, 0, e);
    uint16_t *b = malloc(n * 2);
    if (!b) return qx_fail(e, QX_ENOMEM, "out of memory");
    for (uint64_t i = 0; i < n; i++) b[i] = qt_f32_to_bf16(v[i]);
    qx_status s = put(c, name, ST_BF16, nd, shape, b, n * 2, e);
    free(b);
    return s;
}

/* A norm weight: values around 1. */
static qx_status put_norm(sctx *c, const char *name, int64_t n, qx_err *e) {
    int64_t sh[1] = {n};
    if (c->sparse) return put(c, name, ST_BF16, 1, sh, NULL, 0, e);
    float *v = malloc((size_t)n * sizeof *v);
    if (!v) return qx_fail(e, QX_ENOMEM, "out of memory");
    rng_t r = {hash_name(name, c->seed)};
    for (int64_t i = 0; i < n; i++) v[i] = 1.0f + 0.1f * rng_gauss(&r);
    qx_status s = put_bf16(c, name, 1, sh, v, e);
    free(v);
    return s;
}

/* A linear weight [rows, cols]: FP8 e4m3 + F32 scale_inv (amax/448 per 128x128 tile), or BF16.
 * scale_shard_shift puts the scale in the next shard (tests cross-shard companions). */
static qx_status put_linear(sctx *c, const char *name, int64_t rows, int64_t cols, bool fp8, bool scale_next, qx_err *e) {
    int64_t sh[2] = {rows, cols};
    char sname[512];
    snprintf(sname, sizeof sname, "%s_scale_inv", name);
    int64_t ssh[2] = {(rows + 127) / 128, (cols + 127) / 128};
    if (c->sparse) {
        QX_TRY(put(c, name, fp8 ? ST_F8_E4M3 : ST_BF16, 2, sh, NULL, 0, e));
        return fp8 ? put(c, sname, ST_F32, 2, ssh, NULL, 0, e) : QX_OK;
    }
    float *w = gen_matrix(name, c->seed, rows, cols, 1.0f);
    if (!w) return qx_fail(e, QX_ENOMEM, "out of memory");
    qx_status s;
    if (!fp8) {
        s = put_bf16(c, name, 2, sh, w, e);
    } else {
        uint8_t *q = malloc((size_t)(rows * cols));
        float *sc = calloc((size_t)(ssh[0] * ssh[1]), sizeof *sc);
        if (!q || !sc) { free(w); free(q); free(sc); return qx_fail(e, QX_ENOMEM, "out of memory"); }
        for (int64_t i = 0; i < rows * cols; i++) {
            int64_t k = (i / cols / 128) * ssh[1] + (i % cols) / 128;
            float a = fabsf(w[i]);
            if (a > sc[k]) sc[k] = a;
        }
        for (int64_t k = 0; k < ssh[0] * ssh[1]; k++) sc[k] = sc[k] > 0 ? sc[k] / 448.0f : 1.0f;
        if (c->ue8m0)   /* V3.1: scales rounded up to a power of two (UE8M0), so |w/s| <= 448 */
            for (int64_t k = 0; k < ssh[0] * ssh[1]; k++) sc[k] = exp2f(ceilf(log2f(sc[k])));
        for (int64_t i = 0; i < rows * cols; i++)
            q[i] = qt_f32_to_fp8_e4m3(w[i] / sc[(i / cols / 128) * ssh[1] + (i % cols) / 128]);
        s = put(c, name, ST_F8_E4M3, 2, sh, q, (uint64_t)(rows * cols), e);
        if (s == QX_OK) {
            int saved = c->cur;
            if (scale_next && c->cur + 1 < c->n) c->cur++;
            s = put_f32(c, sname, 2, ssh, sc, e);
            if (scale_next) c->cur = saved;
        }
        free(q);
        free(sc);
    }
    free(w);
    return s;
}

/* A routed expert of K2-Thinking: compressed-tensors pack-quantized INT4, symmetric, one BF16
 * scale per 32 columns (amax/7), eight nibbles per little-endian I32 (lowest column lowest):
 * <name>_packed I32 [rows, cols/8], <name>_scale BF16 [rows, cols/32], <name>_shape I32 [2].
 * name is "....weight", so the parts are "....weight_packed" etc. */
static qx_status put_int4(sctx *c, const char *name, int64_t rows, int64_t cols, qx_err *e) {
    char pn[512], sn[512], hn[512];
    snprintf(pn, sizeof pn, "%s_packed", name);
    snprintf(sn, sizeof sn, "%s_scale", name);
    snprintf(hn, sizeof hn, "%s_shape", name);
    const int64_t G = 32;
    int64_t psh[2] = {rows, (cols + 7) / 8}, ssh[2] = {rows, cols / G}, hsh[1] = {2};
    int32_t shape[2] = {(int32_t)rows, (int32_t)cols};
    if (c->sparse) {
        QX_TRY(put(c, pn, ST_I32, 2, psh, NULL, 0, e));
        QX_TRY(put(c, sn, ST_BF16, 2, ssh, NULL, 0, e));
        c->sparse = false;   /* the shape must be real data: the reader needs it */
        qx_status s = put(c, hn, ST_I32, 1, hsh, shape, sizeof shape, e);
        c->sparse = true;
        return s;
    }
    float *w = gen_matrix(name, c->seed, rows, cols, 1.0f);
    uint32_t *q = calloc((size_t)(psh[0] * psh[1]), sizeof *q);
    uint16_t *sc = malloc((size_t)(ssh[0] * ssh[1]) * sizeof *sc);
    qx_status s = (w && q && sc) ? QX_OK : qx_fail(e, QX_ENOMEM, "out of memory");
    for (int64_t r = 0; s == QX_OK && r < rows; r++)
        for (int64_t g = 0; g < cols / G; g++) {
            float amax = 0;
            for (int64_t j = 0; j < G; j++) amax = fmaxf(amax, fabsf(w[r * cols + g * G + j]));
            sc[r * ssh[1] + g] = qt_f32_to_bf16(amax > 0 ? amax / 7.0f : 1.0f);
            float d = qt_bf16_to_f32(sc[r * ssh[1] + g]);
            for (int64_t j = 0; j < G; j++) {
                int64_t col = g * G + j;
                int v = (int)lrintf(w[r * cols + col] / d);
                v = v < -8 ? -8 : v > 7 ? 7 : v;
                q[r * psh[1] + col / 8] |= (uint32_t)(v + 8) << (4 * (col % 8));
            }
        }
    if (s == QX_OK) s = put(c, pn, ST_I32, 2, psh, q, (uint64_t)(psh[0] * psh[1]) * 4, e);
    if (s == QX_OK) s = put(c, sn, ST_BF16, 2, ssh, sc, (uint64_t)(ssh[0] * ssh[1]) * 2, e);
    if (s == QX_OK) s = put(c, hn, ST_I32, 1, hsh, shape, sizeof shape, e);
    free(w);
    free(q);
    free(sc);
    return s;
}

/* A BF16 matrix [rows, cols] of gen_matrix values: an embedding (base 16: rows of std ~0.7),
 * an output head (base 1: logits of std ~1, so a synthetic model has a finite, sane
 * perplexity) or one of V4's BF16 linears. */
static qx_status put_bf16_matrix(sctx *c, const char *name, int64_t rows, int64_t cols, float base, qx_err *e) {
    int64_t sh[2] = {rows, cols};
    if (c->sparse) return put(c, name, ST_BF16, 2, sh, NULL, 0, e);
    float *w = gen_matrix(name, c->seed, rows, cols, base);
    if (!w) return qx_fail(e, QX_ENOMEM, "out of memory");
    qx_status s = put_bf16(c, name, 2, sh, w, e);
    free(w);
    return s;
}

/* Kimi-K2.5's vision tower and projector (names as in the checkpoint, no prefix; BF16/F32).
 * Converters of the text model skip them. */
static qx_status k25_vision(sctx *c, const synth_preset *p, qx_err *e) {
    const int64_t D = K25_VT;
    const char *pre = c->prefix;
    c->prefix = NULL;
    int64_t sh4[4] = {D, 3, 14, 14};   /* a conv patch embedding: 4-D */
    float *pe = c->sparse ? NULL : gen_matrix("vision_tower.patch_embed.proj.weight", c->seed, D, 3 * 14 * 14, 1.0f);
    qx_status s = c->sparse || pe ? put_bf16(c, "vision_tower.patch_embed.proj.weight", 4, sh4, pe, e)
                                  : qx_fail(e, QX_ENOMEM, "out of memory");
    free(pe);
    if (s == QX_OK) s = put_norm(c, "vision_tower.patch_embed.proj.bias", D, e);
    if (s == QX_OK) s = put_linear(c, "vision_tower.patch_embed.pos_emb.weight", 64, D, false, false, e);
    if (s == QX_OK) s = put_linear(c, "vision_tower.encoder.blocks.0.wqkv.weight", 3 * D, D, false, false, e);
    if (s == QX_OK) s = put_norm(c, "vision_tower.encoder.blocks.0.norm0.weight", D, e);
    if (s == QX_OK) s = put_linear(c, "vision_tower.encoder.blocks.0.wo.weight", D, D, false, false, e);
    if (s == QX_OK) s = put_linear(c, "vision_tower.encoder.blocks.0.mlp.fc0.weight", 2 * D, D, false, false, e);
    if (s == QX_OK) s = put_linear(c, "vision_tower.encoder.blocks.0.mlp.fc1.weight", D, 2 * D, false, false, e);
    if (s == QX_OK) s = put_norm(c, "vision_tower.encoder.final_layernorm.weight", D, e);
    if (s == QX_OK) s = put_norm(c, "mm_projector.pre_norm.weight", 4 * D, e);
    if (s == QX_OK) s = put_linear(c, "mm_projector.proj.0.weight", 4 * D, 4 * D, false, false, e);
    if (s == QX_OK) s = put_linear(c, "mm_projector.proj.2.weight", p->hidden, 4 * D, false, false, e);
    c->prefix = pre;
    return s;
}

static qx_status deepseek_layer(sctx *c, const synth_preset *p, int64_t l, bool mtp, qx_err *e) {
    char n[256];
    int64_t E = p->hidden, H = p->heads;
#define N(fmt, ...) (snprintf(n, sizeof n, "model.layers.%lld." fmt, (long long)l, ##__VA_ARGS__), n)
    if (mtp) {
        QX_TRY(put_bf16_matrix(c, N("embed_tokens.weight"), p->vocab, E, 16.0f, e));
        QX_TRY(put_norm(c, N("enorm.weight"), E, e));
        QX_TRY(put_norm(c, N("hnorm.weight"), E, e));
        QX_TRY(put_linear(c, N("eh_proj.weight"), E, 2 * E, p->fp8 && !p->full_scale, false, e));
        QX_TRY(put_norm(c, N("shared_head.norm.weight"), E, e));
        QX_TRY(put_bf16_matrix(c, N("shared_head.head.weight"), p->vocab, E, 1.0f, e));
    }
    QX_TRY(put_norm(c, N("input_layernorm.weight"), E, e));
    QX_TRY(put_norm(c, N("post_attention_layernorm.weight"), E, e));
    QX_TRY(put_linear(c, N("self_attn.q_a_proj.weight"), p->q_lora, E, p->fp8, false, e));
    QX_TRY(put_norm(c, N("self_attn.q_a_layernorm.weight"), p->q_lora, e));
    QX_TRY(put_linear(c, N("self_attn.q_b_proj.weight"), H * (p->nope + p->rope), p->q_lora, p->fp8, false, e));
    QX_TRY(put_linear(c, N("self_attn.kv_a_proj_with_mqa.weight"), p->kv_lora + p->rope, E, p->fp8, false, e));
    QX_TRY(put_norm(c, N("self_attn.kv_a_layernorm.weight"), p->kv_lora, e));
    QX_TRY(put_linear(c, N("self_attn.kv_b_proj.weight"), H * (p->nope + p->v), p->kv_lora, p->fp8, false, e));
    QX_TRY(put_linear(c, N("self_attn.o_proj.weight"), E, H * p->v, p->fp8, false, e));
    if (p->variant == SV_V32) {   /* lightning indexer: wq_b/wk FP8, k_norm F32 weight+bias, weights_proj BF16 */
        int64_t IH = V32_IDX_HEADS(p->full_scale), ID = V32_IDX_DIM(p->full_scale), sh1[1] = {ID};
        QX_TRY(put_linear(c, N("self_attn.indexer.wq_b.weight"), IH * ID, p->q_lora, p->fp8, false, e));
        QX_TRY(put_linear(c, N("self_attn.indexer.wk.weight"), ID, E, p->fp8, false, e));
        if (c->sparse) {
            QX_TRY(put(c, N("self_attn.indexer.k_norm.weight"), ST_F32, 1, sh1, NULL, 0, e));
            QX_TRY(put(c, N("self_attn.indexer.k_norm.bias"), ST_F32, 1, sh1, NULL, 0, e));
        } else {
            float v[1024];
            rng_t r = {hash_name(N("self_attn.indexer.k_norm"), c->seed)};
            for (int64_t i = 0; i < ID; i++) v[i] = 1.0f + 0.1f * rng_gauss(&r);
            QX_TRY(put_f32(c, N("self_attn.indexer.k_norm.weight"), 1, sh1, v, e));
            for (int64_t i = 0; i < ID; i++) v[i] = 0.05f * rng_gauss(&r);
            QX_TRY(put_f32(c, N("self_attn.indexer.k_norm.bias"), 1, sh1, v, e));
        }
        QX_TRY(put_linear(c, N("self_attn.indexer.weights_proj.weight"), IH, E, false, false, e));
    }
    if (l < p->dense) {
        QX_TRY(put_linear(c, N("mlp.gate_proj.weight"), p->ffn, E, p->fp8, false, e));
        QX_TRY(put_linear(c, N("mlp.up_proj.weight"), p->ffn, E, p->fp8, false, e));
        QX_TRY(put_linear(c, N("mlp.down_proj.weight"), E, p->ffn, p->fp8, false, e));
        return QX_OK;
    }
    int64_t sh[2] = {p->experts, E};
    if (c->sparse) {
        QX_TRY(put(c, N("mlp.gate.weight"), ST_BF16, 2, sh, NULL, 0, e));
        QX_TRY(put(c, N("mlp.gate.e_score_correction_bias"), ST_F32, 1, sh, NULL, 0, e));
    } else {
        float *g = gen_matrix(N("mlp.gate.weight"), c->seed, p->experts, E, 4.0f);
        if (!g) return qx_fail(e, QX_ENOMEM, "out of memory");
        qx_status s = put_bf16(c, n, 2, sh, g, e);
        free(g);
        QX_TRY(s);
        float bias[4096];
        rng_t r = {hash_name(N("mlp.gate.e_score_correction_bias"), c->seed)};
        for (int64_t x = 0; x < p->experts && x < 4096; x++) bias[x] = 0.05f * rng_gauss(&r);
        QX_TRY(put_f32(c, n, 1, sh, bias, e));
    }
    for (int64_t x = 0; x < p->experts; x++) {
        /* tiny presets: the scale of one expert's down_proj sits in the next shard */
        bool scale_next = !c->sparse && l == p->dense && x == p->experts - 1;
        if (SV_IS_INT4(p)) {
            QX_TRY(put_int4(c, N("mlp.experts.%lld.gate_proj.weight", (long long)x), p->moe_ffn, E, e));
            QX_TRY(put_int4(c, N("mlp.experts.%lld.up_proj.weight", (long long)x), p->moe_ffn, E, e));
            QX_TRY(put_int4(c, N("mlp.experts.%lld.down_proj.weight", (long long)x), E, p->moe_ffn, e));
            continue;
        }
        QX_TRY(put_linear(c, N("mlp.experts.%lld.gate_proj.weight", (long long)x), p->moe_ffn, E, p->fp8, false, e));
        QX_TRY(put_linear(c, N("mlp.experts.%lld.up_proj.weight", (long long)x), p->moe_ffn, E, p->fp8, false, e));
        QX_TRY(put_linear(c, N("mlp.experts.%lld.down_proj.weight", (long long)x), E, p->moe_ffn, p->fp8, scale_next, e));
    }
    int64_t Fs = p->moe_ffn * p->shared;
    QX_TRY(put_linear(c, N("mlp.shared_experts.gate_proj.weight"), Fs, E, p->fp8, false, e));
    QX_TRY(put_linear(c, N("mlp.shared_experts.up_proj.weight"), Fs, E, p->fp8, false, e));
    QX_TRY(put_linear(c, N("mlp.shared_experts.down_proj.weight"), E, Fs, p->fp8, false, e));
#undef N
    return QX_OK;
}

static qx_status dense_layer(sctx *c, const synth_preset *p, int64_t l, qx_err *e) {
    char n[256];
    int64_t E = p->hidden, D = p->head_dim;
#define N(s) (snprintf(n, sizeof n, "model.layers.%lld." s, (long long)l), n)
    QX_TRY(put_norm(c, N("input_layernorm.weight"), E, e));
    QX_TRY(put_norm(c, N("post_attention_layernorm.weight"), E, e));
    QX_TRY(put_linear(c, N("self_attn.q_proj.weight"), p->heads * D, E, false, false, e));
    QX_TRY(put_linear(c, N("self_attn.k_proj.weight"), p->kv_heads * D, E, false, false, e));
    QX_TRY(put_linear(c, N("self_attn.v_proj.weight"), p->kv_heads * D, E, false, false, e));
    QX_TRY(put_linear(c, N("self_attn.o_proj.weight"), E, p->heads * D, false, false, e));
    if (p->qkv_bias) {
        QX_TRY(put_norm(c, N("self_attn.q_proj.bias"), p->heads * D, e));
        QX_TRY(put_norm(c, N("self_attn.k_proj.bias"), p->kv_heads * D, e));
        QX_TRY(put_norm(c, N("self_attn.v_proj.bias"), p->kv_heads * D, e));
    }
    QX_TRY(put_linear(c, N("mlp.gate_proj.weight"), p->ffn, E, false, false, e));
    QX_TRY(put_linear(c, N("mlp.up_proj.weight"), p->ffn, E, false, false, e));
    QX_TRY(put_linear(c, N("mlp.down_proj.weight"), E, p->ffn, false, false, e));
#undef N
    return QX_OK;
}

static json_t *config_for(const synth_preset *p) {
    json_t *o = json_object();
    const char *arch = p->variant == SV_V32 ? "DeepseekV32ForCausalLM" : p->arch == HF_ARCH_DEEPSEEK_V3 ? "DeepseekV3ForCausalLM" : p->arch == HF_ARCH_LLAMA ? "LlamaForCausalLM" : "Qwen2ForCausalLM";
    json_t *a = json_array();
    json_array_append_new(a, json_string(arch));
    json_object_set_new(o, "architectures", a);
    bool kimi = SV_IS_KIMI(p);
    json_object_set_new(o, "model_type", json_string(p->arch == HF_ARCH_DEEPSEEK_V3 ? (kimi ? "kimi_k2" : p->variant == SV_V32 ? "deepseek_v32" : "deepseek_v3")
                                                     : p->arch == HF_ARCH_LLAMA ? "llama" : "qwen2"));
    json_object_set_new(o, "vocab_size", json_integer(p->vocab));
    json_object_set_new(o, "hidden_size", json_integer(p->hidden));
    json_object_set_new(o, "intermediate_size", json_integer(p->ffn));
    json_object_set_new(o, "num_hidden_layers", json_integer(p->layers));
    json_object_set_new(o, "num_attention_heads", json_integer(p->heads));
    json_object_set_new(o, "num_key_value_heads", json_integer(p->kv_heads));
    json_object_set_new(o, "rms_norm_eps", json_real(p->arch == HF_ARCH_DEEPSEEK_V3 ? 1e-6 : 1e-5));
    json_object_set_new(o, "rope_theta", json_real(p->rope_theta));
    json_object_set_new(o, "bos_token_id", json_integer(0));
    json_object_set_new(o, "eos_token_id", json_integer(1));
    json_object_set_new(o, "tie_word_embeddings", json_boolean(p->tie));
    json_object_set_new(o, "torch_dtype", json_string("bfloat16"));
    json_object_set_new(o, "hidden_act", json_string("silu"));
    if (p->arch == HF_ARCH_DEEPSEEK_V3) {
        json_object_set_new(o, "max_position_embeddings", json_integer(p->full_scale ? (kimi ? 131072 : 163840) : 1024));
        json_object_set_new(o, "q_lora_rank", json_integer(p->q_lora));
        json_object_set_new(o, "kv_lora_rank", json_integer(p->kv_lora));
        json_object_set_new(o, "qk_nope_head_dim", json_integer(p->nope));
        json_object_set_new(o, "qk_rope_head_dim", json_integer(p->rope));
        json_object_set_new(o, "v_head_dim", json_integer(p->v));
        json_object_set_new(o, "moe_intermediate_size", json_integer(p->moe_ffn));
        json_object_set_new(o, "n_routed_experts", json_integer(p->experts));
        json_object_set_new(o, "n_shared_experts", json_integer(p->shared));
        json_object_set_new(o, "num_experts_per_tok", json_integer(p->topk));
        json_object_set_new(o, "n_group", json_integer(p->groups));
        json_object_set_new(o, "topk_group", json_integer(p->topk_group));
        json_object_set_new(o, "first_k_dense_replace", json_integer(p->dense));
        json_object_set_new(o, "moe_layer_freq", json_integer(1));
        json_object_set_new(o, "num_nextn_predict_layers", json_integer(p->mtp));
        if (p->variant == SV_V32) {
            json_object_set_new(o, "index_n_heads", json_integer(V32_IDX_HEADS(p->full_scale)));
            json_object_set_new(o, "index_head_dim", json_integer(V32_IDX_DIM(p->full_scale)));
            json_object_set_new(o, "index_topk", json_integer(V32_IDX_TOPK(p->full_scale)));
        }
        json_object_set_new(o, "routed_scaling_factor", json_real(kimi ? 2.827 : 2.5));
        json_object_set_new(o, "scoring_func", json_string("sigmoid"));
        json_object_set_new(o, "topk_method", json_string("noaux_tc"));
        json_object_set_new(o, "norm_topk_prob", json_true());
        json_t *rs = json_object();
        json_object_set_new(rs, "type", json_string("yarn"));
        json_object_set_new(rs, "factor", json_real(p->full_scale ? (kimi ? 32 : 40) : 4));
        json_object_set_new(rs, "original_max_position_embeddings", json_integer(p->full_scale ? 4096 : 256));
        /* the real K2 configs say beta_fast 1 (llama.cpp assumes 32): the tiny ones keep 32/1
         * so that our engine and llama.cpp agree on them */
        json_object_set_new(rs, "beta_fast", json_real(kimi && p->full_scale ? 1.0 : 32.0));
        json_object_set_new(rs, "beta_slow", json_real(1.0));
        json_object_set_new(rs, "mscale", json_real(1.0));
        json_object_set_new(rs, "mscale_all_dim", json_real(1.0));
        json_object_set_new(o, "rope_scaling", rs);
        if (SV_IS_INT4(p)) {
            json_t *qc = json_object(), *groups = json_object(), *g0 = json_object(), *w = json_object(), *tg = json_array();
            json_object_set_new(w, "num_bits", json_integer(4));
            json_object_set_new(w, "type", json_string("int"));
            json_object_set_new(w, "symmetric", json_true());
            json_object_set_new(w, "strategy", json_string("group"));
            json_object_set_new(w, "group_size", json_integer(32));
            json_object_set_new(w, "dynamic", json_false());
            json_array_append_new(tg, json_string("Linear"));
            json_object_set_new(g0, "targets", tg);
            json_object_set_new(g0, "weights", w);
            json_object_set_new(groups, "group_0", g0);
            json_object_set_new(qc, "config_groups", groups);
            json_object_set_new(qc, "format", json_string("pack-quantized"));
            json_object_set_new(qc, "quant_method", json_string("compressed-tensors"));
            json_object_set_new(qc, "quantization_status", json_string("compressed"));
            json_object_set_new(o, "quantization_config", qc);
        } else if (p->fp8) {
            json_t *qc = json_object(), *bs = json_array();
            json_object_set_new(qc, "activation_scheme", json_string("dynamic"));
            json_object_set_new(qc, "fmt", json_string("e4m3"));
            json_object_set_new(qc, "quant_method", json_string("fp8"));
            if (p->variant == SV_V31) json_object_set_new(qc, "scale_fmt", json_string("ue8m0"));
            json_array_append_new(bs, json_integer(128));
            json_array_append_new(bs, json_integer(128));
            json_object_set_new(qc, "weight_block_size", bs);
            json_object_set_new(o, "quantization_config", qc);
        }
    } else {
        json_object_set_new(o, "max_position_embeddings", json_integer(1024));
        json_object_set_new(o, "head_dim", json_integer(p->head_dim));
        if (p->arch == HF_ARCH_LLAMA) {
            json_t *rs = json_object();
            json_object_set_new(rs, "rope_type", json_string("llama3"));
            json_object_set_new(rs, "factor", json_real(8.0));
            json_object_set_new(rs, "low_freq_factor", json_real(1.0));
            json_object_set_new(rs, "high_freq_factor", json_real(4.0));
            json_object_set_new(rs, "original_max_position_embeddings", json_integer(256));
            json_object_set_new(o, "rope_scaling", rs);
        }
    }
    return o;
}

/* Kimi-K2.5's config.json: the text model's config as text_config of a
 * KimiK25ForConditionalGeneration, beside a vision_config (MoonViT3d keys, tiny sizes).
 * Takes ownership of text. */
static json_t *k25_wrap(json_t *text, const synth_preset *p) {
    json_t *o = json_object(), *a = json_array(), *v = json_object(), *mk = json_array();
    json_array_append_new(a, json_string("KimiK25ForConditionalGeneration"));
    json_object_set_new(o, "architectures", a);
    json_object_set_new(o, "model_type", json_string("kimi_k25"));
    json_object_set_new(o, "text_config", text);
    json_object_set_new(v, "model_type", json_string("moonvit3d"));
    json_object_set_new(v, "patch_size", json_integer(14));
    json_object_set_new(v, "init_pos_emb_height", json_integer(8));
    json_object_set_new(v, "init_pos_emb_width", json_integer(8));
    json_object_set_new(v, "init_pos_emb_time", json_integer(4));
    json_array_append_new(mk, json_integer(2));
    json_array_append_new(mk, json_integer(2));
    json_object_set_new(v, "merge_kernel_size", mk);
    json_object_set_new(v, "vt_hidden_size", json_integer(K25_VT));
    json_object_set_new(v, "vt_num_attention_heads", json_integer(2));
    json_object_set_new(v, "vt_num_hidden_layers", json_integer(1));
    json_object_set_new(v, "vt_intermediate_size", json_integer(2 * K25_VT));
    json_object_set_new(v, "mm_hidden_size", json_integer(K25_VT));
    json_object_set_new(v, "text_hidden_size", json_integer(p->hidden));
    json_object_set_new(o, "vision_config", v);
    json_object_set_new(o, "media_placeholder_token_id", json_integer(p->vocab - 1));
    return o;
}

/* GPT-2 byte-level alphabet: printable bytes map to themselves, the rest to U+0100.. */
static int byte_to_cp(int b) {
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) return b;
    int k = 0;
    for (int x = 0; x < b; x++)
        if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255))) k++;
    return 256 + k;
}
static void cp_utf8(int cp, char *out) {
    if (cp < 0x80) { out[0] = (char)cp; out[1] = 0; }
    else if (cp < 0x800) { out[0] = (char)(0xC0 | (cp >> 6)); out[1] = (char)(0x80 | (cp & 63)); out[2] = 0; }
    else { out[0] = (char)(0xE0 | (cp >> 12)); out[1] = (char)(0x80 | ((cp >> 6) & 63)); out[2] = (char)(0x80 | (cp & 63)); out[3] = 0; }
}

/* A small byte-level BPE tokenizer.json with DeepSeek-V3's pre-tokenizer and some merges. */
static json_t *tokenizer_for(const synth_preset *p, const char *bos, const char *eos) {
    static const char *merges[] = {"Ġ t", "h e", "i n", "e r", "a n", "Ġ a", "o n", "r e", "Ġt he", "Ġ s",
        "e n", "a t", "o r", "Ġ w", "Ġ o", "e s", "i s", "Ġ c", "i t", "Ġ b", "a r", "Ġ f", "Ġ p", "a l",
        "Ġ m", "Ġ d", "l e", "Ġ in", "e d", "in g", "Ġ h", "o u", "Ġt o", "Ġo f", "Ġa n", "Ġan d", "a s", "Ġ l"};
    size_t nm = sizeof merges / sizeof merges[0];
    json_t *t = json_object(), *added = json_array(), *vocab = json_object(), *mj = json_array();
    json_object_set_new(t, "version", json_string("1.0"));
    json_object_set_new(t, "truncation", json_null());
    json_object_set_new(t, "padding", json_null());
    const char *sp[2] = {bos, eos};
    for (int i = 0; i < 2; i++) {
        json_t *a = json_object();
        json_object_set_new(a, "id", json_integer(i));
        json_object_set_new(a, "content", json_string(sp[i]));
        json_object_set_new(a, "single_word", json_false());
        json_object_set_new(a, "lstrip", json_false());
        json_object_set_new(a, "rstrip", json_false());
        json_object_set_new(a, "normalized", json_false());
        json_object_set_new(a, "special", json_true());
        json_array_append_new(added, a);
        json_object_set_new(vocab, sp[i], json_integer(i));
    }
    json_object_set_new(t, "added_tokens", added);
    json_object_set_new(t, "normalizer", json_null());
    json_error_t je;
    const char *pre = p->arch == HF_ARCH_DEEPSEEK_V3 ?
        "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\p{N}{1,3}\"},\"behavior\":\"Isolated\",\"invert\":false},"
        "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"[\\u4e00-\\u9fa5\\u3040-\\u309f\\u30a0-\\u30ff]+\"},\"behavior\":\"Isolated\",\"invert\":false},"
        "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"[!\\\"#$%&'()*+,\\\\-./:;<=>?@\\\\[\\\\\\\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\\\p{L}\\\\p{P}\\\\p{S}]?[\\\\p{L}\\\\p{M}]+| ?[\\\\p{P}\\\\p{S}]+[\\r\\n]*|\\\\s*[\\r\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"},\"behavior\":\"Isolated\",\"invert\":false},"
        "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":false}]}" :
        "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"},\"behavior\":\"Isolated\",\"invert\":false},"
        "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":false}]}";
    json_object_set_new(t, "pre_tokenizer", json_loads(pre, 0, &je));
    json_object_set_new(t, "post_processor", json_null());
    json_t *dec = json_object();
    json_object_set_new(dec, "type", json_string("ByteLevel"));
    json_object_set_new(dec, "add_prefix_space", json_true());
    json_object_set_new(dec, "trim_offsets", json_true());
    json_object_set_new(dec, "use_regex", json_true());
    json_object_set_new(t, "decoder", dec);
    for (int b = 0; b < 256; b++) {
        char u[8];
        cp_utf8(byte_to_cp(b), u);
        json_object_set_new(vocab, u, json_integer(2 + b));
    }
    int64_t id = 258;
    for (size_t i = 0; i < nm && id < p->vocab; i++) {
        char a[32], c[32];
        const char *sp2 = strchr(merges[i], ' ');
        snprintf(a, sizeof a, "%.*s%s", (int)(sp2 - merges[i]), merges[i], sp2 + 1);
        (void)c;
        if (json_object_get(vocab, a)) continue;
        json_object_set_new(vocab, a, json_integer(id++));
        json_array_append_new(mj, json_string(merges[i]));
    }
    json_t *m = json_object();
    json_object_set_new(m, "type", json_string("BPE"));
    json_object_set_new(m, "dropout", json_null());
    json_object_set_new(m, "unk_token", json_null());
    json_object_set_new(m, "continuing_subword_prefix", json_null());
    json_object_set_new(m, "end_of_word_suffix", json_null());
    json_object_set_new(m, "fuse_unk", json_false());
    json_object_set_new(m, "byte_fallback", json_false());
    json_object_set_new(m, "vocab", vocab);
    json_object_set_new(m, "merges", mj);
    json_object_set_new(t, "model", m);
    return t;
}

static qx_status dump_json(json_t *o, const char *dir, const char *name, qx_err *e) {
    char path[4096];
    if (!qx_path_join(path, sizeof path, dir, name)) return qx_fail(e, QX_EINVAL, "%s: path too long", dir);
    int r = json_dump_file(o, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    return r == 0 ? QX_OK : qx_fail(e, QX_EIO, "%s: cannot write", path);
}

static int b64_char(int v) { return "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[v]; }

/* Base64 (with padding) of n bytes into out (NUL-terminated). */
static void b64_encode(const uint8_t *s, size_t n, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t w = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0) | (i + 2 < n ? s[i + 2] : 0);
        out[o++] = (char)b64_char((int)(w >> 18) & 63);
        out[o++] = (char)b64_char((int)(w >> 12) & 63);
        out[o++] = i + 1 < n ? (char)b64_char((int)(w >> 6) & 63) : '=';
        out[o++] = i + 2 < n ? (char)b64_char((int)w & 63) : '=';
    }
    out[o] = 0;
}

/* Kimi-K2 tokenizer files: tiktoken.model with the same known vocabulary as tokenizer_for
 * (the 256 bytes at ranks 0-255, then each merge result at the next rank, as raw bytes),
 * and a tokenizer_config.json whose added_tokens_decoder names [BOS]/[EOS] at the first two
 * special ids (n_ranks, n_ranks+1).  Returns n_ranks in *n_base. */
static qx_status write_tiktoken(const char *dir, int64_t vocab, int64_t *n_base, qx_err *e) {
    json_t *tj = tokenizer_for(&presets[0], "<bos>", "<eos>");   /* vocabulary only */
    json_t *merges = json_object_get(json_object_get(tj, "model"), "merges");
    char path[4096];
    if (!qx_path_join(path, sizeof path, dir, "tiktoken.model")) { json_decref(tj); return qx_fail(e, QX_EINVAL, "%s: path too long", dir); }
    FILE *f = fopen(path, "w");
    if (!f) { json_decref(tj); return qx_fail(e, QX_EIO, "%s: cannot write", path); }
    char b64[64];
    int64_t r = 0;
    for (int b = 0; b < 256; b++, r++) {
        uint8_t byte = (uint8_t)b;
        b64_encode(&byte, 1, b64);
        fprintf(f, "%s %lld\n", b64, (long long)r);
    }
    for (size_t i = 0; i < json_array_size(merges) && r < vocab - 2; i++, r++) {
        const char *m = json_string_value(json_array_get(merges, i));
        uint8_t raw[64];
        size_t n = 0;
        for (const char *q = m; *q && n < sizeof raw; ) {   /* unmap the GPT-2 alphabet, skip the space */
            if (*q == ' ') { q++; continue; }
            uint32_t cp = (uint8_t)*q;
            int len = 1;
            if (cp >= 0xc0) { cp = ((cp & 0x1f) << 6) | ((uint8_t)q[1] & 0x3f); len = 2; }
            int byte = -1;
            for (int b = 0; b < 256; b++) if (byte_to_cp(b) == (int)cp) byte = b;
            raw[n++] = (uint8_t)byte;
            q += len;
        }
        b64_encode(raw, n, b64);
        fprintf(f, "%s %lld\n", b64, (long long)r);
    }
    fclose(f);
    json_decref(tj);
    *n_base = r;
    json_t *tc = json_object(), *dec = json_object();
    const char *names[2] = {"[BOS]", "[EOS]"};
    for (int i = 0; i < 2; i++) {
        json_t *a = json_object();
        char id[32];
        snprintf(id, sizeof id, "%lld", (long long)(r + i));
        json_object_set_new(a, "content", json_string(names[i]));
        json_object_set_new(a, "special", json_true());
        json_object_set_new(dec, id, a);
    }
    json_object_set_new(tc, "added_tokens_decoder", dec);
    json_object_set_new(tc, "add_bos_token", json_true());
    json_object_set_new(tc, "add_eos_token", json_false());
    json_object_set_new(tc, "bos_token", json_string("[BOS]"));
    json_object_set_new(tc, "eos_token", json_string("[EOS]"));
    json_object_set_new(tc, "tokenizer_class", json_string("TikTokenTokenizer"));
    json_object_set_new(tc, "chat_template", json_string("{{ bos_token }}{% for message in messages %}{{ message['content'] }}{% endfor %}"));
    qx_status s = dump_json(tc, dir, "tokenizer_config.json", e);
    json_decref(tc);
    return s;
}

static qx_status write_side_files_tok(const synth_preset *p, const char *dir, qx_err *e);

static qx_status write_side_files(const synth_preset *p, const char *dir, qx_err *e) {
    if (SV_IS_KIMI(p)) {
        int64_t n_base = 0;
        QX_TRY(write_tiktoken(dir, p->vocab, &n_base, e));
        json_t *cfg = config_for(p);
        json_object_set_new(cfg, "bos_token_id", json_integer(n_base));
        json_object_set_new(cfg, "eos_token_id", json_integer(n_base + 1));
        if (p->variant == SV_K25) cfg = k25_wrap(cfg, p);
        qx_status s = dump_json(cfg, dir, "config.json", e);
        json_decref(cfg);
        return s;
    }
    json_t *cfg = config_for(p);
    qx_status s = dump_json(cfg, dir, "config.json", e);
    json_decref(cfg);
    QX_TRY(s);
    return write_side_files_tok(p, dir, e);
}

/* tokenizer.json and tokenizer_config.json of a BPE preset. */
static qx_status write_side_files_tok(const synth_preset *p, const char *dir, qx_err *e) {
    qx_status s;
    const char *bos = p->arch == HF_ARCH_DEEPSEEK_V3 ? "<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>" : "<|begin_of_text|>";
    const char *eos = p->arch == HF_ARCH_DEEPSEEK_V3 ? "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>" : "<|end_of_text|>";
    if (p->arch == HF_ARCH_QWEN2) { bos = "<|im_start|>"; eos = "<|endoftext|>"; }
    json_t *tok = tokenizer_for(p, bos, eos);
    s = dump_json(tok, dir, "tokenizer.json", e);
    json_decref(tok);
    QX_TRY(s);
    json_t *tc = json_object();
    json_object_set_new(tc, "add_bos_token", json_boolean(p->arch != HF_ARCH_QWEN2));
    json_object_set_new(tc, "add_eos_token", json_false());
    json_object_set_new(tc, "bos_token", json_string(bos));
    json_object_set_new(tc, "eos_token", json_string(eos));
    json_object_set_new(tc, "model_max_length", json_integer(1024));
    json_object_set_new(tc, "tokenizer_class", json_string("LlamaTokenizerFast"));
    json_object_set_new(tc, "chat_template", json_string("{{ bos_token }}{% for message in messages %}{{ message['content'] }}{% endfor %}"));
    s = dump_json(tc, dir, "tokenizer_config.json", e);
    json_decref(tc);
    return s;
}

/* Writes the shards and the index (when s is QX_OK) and frees c; returns the first error. */
static qx_status finish_shards(sctx *c, const char *dir, qx_status s, qx_err *e) {
    uint64_t total_size = 0;
    for (int i = 0; s == QX_OK && i < c->n; i++) {
        char f[64], path[4096];
        shard_file(i, c->n, f, sizeof f);
        if (!qx_path_join(path, sizeof path, dir, f)) { s = qx_fail(e, QX_EINVAL, "%s: path too long", dir); break; }
        total_size += st_writer_data_bytes(c->w[i]);
        s = st_writer_write(c->w[i], path, e);
    }
    if (s == QX_OK) {
        json_t *idx = json_object(), *meta = json_object();
        json_object_set_new(meta, "total_size", json_integer((json_int_t)total_size));
        json_object_set_new(idx, "metadata", meta);
        json_object_set(idx, "weight_map", c->weight_map);
        s = dump_json(idx, dir, "model.safetensors.index.json", e);
        json_decref(idx);
    }
    for (int i = 0; c->w && i < c->n; i++) st_writer_free(c->w[i]);
    free(c->w);
    free(c->bytes);
    json_decref(c->weight_map);
    return s;
}

/* ======================= DeepSeek-V4 (DeepseekV4ForCausalLM) =======================
 * The official layout under DeepSeek's own names (embed.weight, layers.N.attn.wq_a.weight,
 * layers.N.ffn.experts.E.w1.weight, mtp.0.*): FP8 e4m3 linears with an F8_E8M0 128x128
 * `.scale`, routed experts FP4 E2M1 (two codes per I8/U8 byte, element 2i low) with an F8_E8M0
 * `.scale` per 32 columns, hyper-connection, sink and compressor-position tensors F32, the
 * rest BF16, `ffn.gate.tid2eid` integer tables for the hash-routed first layers. */
typedef struct {
    const char *name;
    int64_t vocab, hidden, layers, heads, head_dim, rope, q_lora, o_groups, o_lora;
    int64_t experts, topk, moe_ffn, shared, hc, idx_heads, idx_dim, idx_topk, window, hash_layers, mtp;
    int32_t ratios[64];      /* layers + mtp entries (full size: see v4_ratio) */
    bool comp_fp8;           /* compressor kv/gate FP8 (else BF16) */
    st_dtype fp4_dt;         /* ST_I8 or ST_U8 */
    st_dtype tid_dt;         /* ST_I64 or ST_I32 */
    int64_t max_pos, rope_orig;
    int shards;
    bool full;               /* sparse only */
} v4_preset;

static const v4_preset v4_presets[] = {
    /* every layer kind: ratio 0 (window only), 4 (+ indexer over 4-token blocks), 128; layers 0-1
     * hash-routed; window 32 < ctx 256; 64 ratio-4 blocks at ctx 256 > index_topk 16 */
    {"tiny-v4", 320, 256, 4, 4, 128, 32, 128, 2, 64, 8, 2, 128, 1, 4, 4, 64, 16, 32, 2, 1,
     {0, 4, 128, 4, 0}, false, ST_I8, ST_I64, 4096, 256, 3, false},
    /* other shapes: 6 heads of 64 in 3 output groups, 6 experts of 96 (top 3), FP8 tiles cut at
     * 96/192 columns, U8 FP4 bytes, I32 tid2eid, compressor FP8.  (index_head_dim stays 64:
     * llama.cpp rotates indexer keys with Hadamard matrices of 64 and up and aborts on 32) */
    {"tiny-v4b", 320, 192, 3, 6, 64, 16, 96, 3, 32, 6, 3, 96, 1, 4, 2, 64, 8, 16, 1, 1,
     {4, 0, 128, 0}, true, ST_U8, ST_I32, 2048, 128, 2, false},
    /* DeepSeek-V4-Flash (config.json of the release): 43 layers + 1 MTP */
    {"v4-flash", 129280, 4096, 43, 64, 512, 64, 1024, 8, 1024, 256, 6, 2048, 1, 4, 64, 128, 512, 128, 3, 1,
     {0}, false, ST_I8, ST_I64, 1048576, 65536, 46, true},
};

/* compress_ratios: the preset's list, or V4-Flash's 0, 0, (4, 128) x 20, 4, and 0 for the MTP layer. */
static int32_t v4_ratio(const v4_preset *p, int64_t l) {
    if (!p->full) return p->ratios[l];
    if (l < 2) return 0;
    if (l >= p->layers) return 0;
    return (l - 2) % 2 == 0 ? 4 : 128;
}

static bool v4_find(const char *name, const v4_preset **out) {
    for (size_t i = 0; i < sizeof v4_presets / sizeof v4_presets[0]; i++)
        if (!strcmp(v4_presets[i].name, name)) { *out = &v4_presets[i]; return true; }
    return false;
}

/* FP8 e4m3 weight <base>.weight [rows, cols] with its F8_E8M0 <base>.scale
 * [ceil(rows/128), ceil(cols/128)]: each tile's scale is the power of two 2^ceil(log2(amax/448)). */
static qx_status put_fp8_e8m0(sctx *c, const char *base, int64_t rows, int64_t cols, qx_err *e) {
    char wn[512], sn[512];
    snprintf(wn, sizeof wn, "%s.weight", base);
    snprintf(sn, sizeof sn, "%s.scale", base);
    int64_t sh[2] = {rows, cols}, ssh[2] = {(rows + 127) / 128, (cols + 127) / 128};
    if (c->sparse) {
        QX_TRY(put(c, wn, ST_F8_E4M3, 2, sh, NULL, 0, e));
        return put(c, sn, ST_F8_E8M0, 2, ssh, NULL, 0, e);
    }
    float *w = gen_matrix(wn, c->seed, rows, cols, 1.0f);
    uint8_t *q = malloc((size_t)(rows * cols)), *sc = malloc((size_t)(ssh[0] * ssh[1]));
    float *amax = calloc((size_t)(ssh[0] * ssh[1]), sizeof *amax);
    qx_status s = (w && q && sc && amax) ? QX_OK : qx_fail(e, QX_ENOMEM, "out of memory");
    for (int64_t i = 0; s == QX_OK && i < rows * cols; i++) {
        int64_t k = (i / cols / 128) * ssh[1] + (i % cols) / 128;
        amax[k] = fmaxf(amax[k], fabsf(w[i]));
    }
    for (int64_t k = 0; s == QX_OK && k < ssh[0] * ssh[1]; k++) {
        int ex = amax[k] > 0 ? (int)ceilf(log2f(amax[k] / 448.0f)) : 0;
        sc[k] = (uint8_t)(127 + ex);
    }
    for (int64_t i = 0; s == QX_OK && i < rows * cols; i++)
        q[i] = qt_f32_to_fp8_e4m3(w[i] / qt_e8m0_to_f32(sc[(i / cols / 128) * ssh[1] + (i % cols) / 128]));
    if (s == QX_OK) s = put(c, wn, ST_F8_E4M3, 2, sh, q, (uint64_t)(rows * cols), e);
    if (s == QX_OK) s = put(c, sn, ST_F8_E8M0, 2, ssh, sc, (uint64_t)(ssh[0] * ssh[1]), e);
    free(w); free(q); free(sc); free(amax);
    return s;
}

/* FP4 E2M1 routed-expert weight <base>.weight (dt I8/U8 [rows, cols/2], element 2i in the low
 * nibble) with <base>.scale F8_E8M0 [rows, cols/32], scale 2^ceil(log2(amax/6)) per group;
 * each value the nearest code (negative values that round to zero keep the sign: code 8). */
static qx_status put_fp4(sctx *c, const char *base, int64_t rows, int64_t cols, st_dtype dt, qx_err *e) {
    char wn[512], sn[512];
    snprintf(wn, sizeof wn, "%s.weight", base);
    snprintf(sn, sizeof sn, "%s.scale", base);
    const int64_t G = 32;
    int64_t sh[2] = {rows, cols / 2}, ssh[2] = {rows, cols / G};
    if (c->sparse) {
        QX_TRY(put(c, wn, dt, 2, sh, NULL, 0, e));
        return put(c, sn, ST_F8_E8M0, 2, ssh, NULL, 0, e);
    }
    float *w = gen_matrix(wn, c->seed, rows, cols, 1.0f);
    uint8_t *q = calloc((size_t)(rows * cols / 2), 1), *sc = malloc((size_t)(rows * cols / G));
    qx_status s = (w && q && sc) ? QX_OK : qx_fail(e, QX_ENOMEM, "out of memory");
    for (int64_t r = 0; s == QX_OK && r < rows; r++)
        for (int64_t g = 0; g < cols / G; g++) {
            float amax = 0;
            for (int64_t j = 0; j < G; j++) amax = fmaxf(amax, fabsf(w[r * cols + g * G + j]));
            int ex = amax > 0 ? (int)ceilf(log2f(amax / 6.0f)) : 0;
            sc[r * ssh[1] + g] = (uint8_t)(127 + ex);
            float d = qt_e8m0_to_f32(sc[r * ssh[1] + g]);
            for (int64_t j = 0; j < G; j++) {
                int64_t col = g * G + j;
                float v = w[r * cols + col] / d, best = INFINITY;
                uint8_t code = 0;
                for (uint8_t k = 0; k < 8; k++) {
                    float err = fabsf(fabsf(v) - qt_e2m1_to_f32(k));
                    if (err < best) { best = err; code = k; }
                }
                if (v < 0) code |= 8;
                q[r * sh[1] + col / 2] |= (uint8_t)(col % 2 ? code << 4 : code);
            }
        }
    if (s == QX_OK) s = put(c, wn, dt, 2, sh, q, (uint64_t)(rows * cols / 2), e);
    if (s == QX_OK) s = put(c, sn, ST_F8_E8M0, 2, ssh, sc, (uint64_t)(rows * cols / G), e);
    free(w); free(q); free(sc);
    return s;
}

/* An F32 tensor of n values, gaussian with the given mean and spread. */
static qx_status put_f32_gauss(sctx *c, const char *name, int nd, const int64_t *shape, float mean, float sd, qx_err *e) {
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= shape[i];
    if (c->sparse) return put(c, name, ST_F32, nd, shape, NULL, 0, e);
    float *v = malloc((size_t)n * sizeof *v);
    if (!v) return qx_fail(e, QX_ENOMEM, "out of memory");
    rng_t r = {hash_name(name, c->seed)};
    for (int64_t i = 0; i < n; i++) v[i] = mean + sd * rng_gauss(&r);
    qx_status s = put_f32(c, name, nd, shape, v, e);
    free(v);
    return s;
}

/* The hyper-connection mixer of one site (`pfx` + "hc_attn" etc.): fn [mix, hc*E] F32,
 * base [mix], scale [n_scale]. */
static qx_status put_hc(sctx *c, const char *pfx, const char *site, const v4_preset *p, int64_t mix, int64_t n_scale, qx_err *e) {
    char n[256];
    int64_t fsh[2] = {mix, p->hc * p->hidden}, bsh[1] = {mix}, ssh[1] = {n_scale};
    snprintf(n, sizeof n, "%s%s_fn", pfx, site);
    QX_TRY(put_f32_gauss(c, n, 2, fsh, 0.0f, 0.5f / sqrtf((float)fsh[1]), e));
    snprintf(n, sizeof n, "%s%s_base", pfx, site);
    QX_TRY(put_f32_gauss(c, n, 1, bsh, 0.0f, 0.1f, e));
    snprintf(n, sizeof n, "%s%s_scale", pfx, site);
    return put_f32_gauss(c, n, 1, ssh, 1.0f, 0.05f, e);
}

/* A compressor (`pfx` ends in "compressor."): wkv, wgate [coff*D, E], ape F32 [ratio, coff*D],
 * norm [D]. */
static qx_status put_compressor(sctx *c, const char *pfx, const v4_preset *p, int64_t D, int64_t coff, int64_t ratio, bool fp8, qx_err *e) {
    char n[256];
    const char *parts[2] = {"wkv", "wgate"};
    for (int i = 0; i < 2; i++) {
        snprintf(n, sizeof n, "%s%s", pfx, parts[i]);
        if (fp8) QX_TRY(put_fp8_e8m0(c, n, coff * D, p->hidden, e));
        else {
            char wn[280];
            snprintf(wn, sizeof wn, "%s.weight", n);
            QX_TRY(put_bf16_matrix(c, wn, coff * D, p->hidden, 1.0f, e));
        }
    }
    int64_t ash[2] = {ratio, coff * D};
    snprintf(n, sizeof n, "%sape", pfx);
    QX_TRY(put_f32_gauss(c, n, 2, ash, 0.0f, 0.1f, e));
    snprintf(n, sizeof n, "%snorm.weight", pfx);
    return put_norm(c, n, D, e);
}

/* One block under `pfx` ("layers.3." or "mtp.0."); ratio its compress ratio, hash its routing. */
static qx_status v4_block(sctx *c, const v4_preset *p, const char *pfx, int32_t ratio, bool hash, qx_err *e) {
    char n[256];
    int64_t E = p->hidden, H = p->heads, D = p->head_dim, QL = p->q_lora, OG = p->o_groups, OL = p->o_lora;
    int64_t X = p->experts, mix = (2 + p->hc) * p->hc;
#define N(fmt, ...) (snprintf(n, sizeof n, "%s" fmt, pfx, ##__VA_ARGS__), n)
    QX_TRY(put_hc(c, pfx, "hc_attn", p, mix, 3, e));
    QX_TRY(put_hc(c, pfx, "hc_ffn", p, mix, 3, e));
    QX_TRY(put_norm(c, N("attn_norm.weight"), E, e));
    QX_TRY(put_norm(c, N("ffn_norm.weight"), E, e));
    int64_t hsh[1] = {H};
    QX_TRY(put_f32_gauss(c, N("attn.attn_sink"), 1, hsh, 0.0f, 0.5f, e));
    QX_TRY(put_fp8_e8m0(c, N("attn.wq_a"), QL, E, e));
    QX_TRY(put_norm(c, N("attn.q_norm.weight"), QL, e));
    QX_TRY(put_fp8_e8m0(c, N("attn.wq_b"), H * D, QL, e));
    QX_TRY(put_fp8_e8m0(c, N("attn.wkv"), D, E, e));
    QX_TRY(put_norm(c, N("attn.kv_norm.weight"), D, e));
    QX_TRY(put_fp8_e8m0(c, N("attn.wo_a"), OG * OL, H * D / OG, e));
    QX_TRY(put_fp8_e8m0(c, N("attn.wo_b"), E, OG * OL, e));
    if (ratio) {
        char cp[200];
        snprintf(cp, sizeof cp, "%sattn.compressor.", pfx);
        QX_TRY(put_compressor(c, cp, p, D, ratio == 4 ? 2 : 1, ratio, p->comp_fp8, e));
    }
    if (ratio == 4) {
        QX_TRY(put_fp8_e8m0(c, N("attn.indexer.wq_b"), p->idx_heads * p->idx_dim, QL, e));
        QX_TRY(put_bf16_matrix(c, N("attn.indexer.weights_proj.weight"), p->idx_heads, E, 1.0f, e));
        char cp[200];
        snprintf(cp, sizeof cp, "%sattn.indexer.compressor.", pfx);
        QX_TRY(put_compressor(c, cp, p, p->idx_dim, 2, 4, p->comp_fp8, e));
    }
    QX_TRY(put_bf16_matrix(c, N("ffn.gate.weight"), X, E, 4.0f, e));
    if (hash) {   /* token id -> its topk experts (distinct) */
        int64_t tsh[2] = {p->vocab, p->topk}, cnt = p->vocab * p->topk;
        int esz = st_dtype_size(p->tid_dt);
        if (c->sparse) QX_TRY(put(c, N("ffn.gate.tid2eid"), p->tid_dt, 2, tsh, NULL, 0, e));
        else {
            uint8_t *t = malloc((size_t)(cnt * esz));
            if (!t) return qx_fail(e, QX_ENOMEM, "out of memory");
            rng_t r = {hash_name(N("ffn.gate.tid2eid"), c->seed)};
            int64_t perm[1024];
            for (int64_t v = 0; v < p->vocab; v++) {   /* the first topk of a partial shuffle: distinct */
                for (int64_t x = 0; x < X; x++) perm[x] = x;
                for (int64_t k = 0; k < p->topk; k++) {
                    int64_t j = k + (int64_t)(rng_u64(&r) % (uint64_t)(X - k)), x = perm[j];
                    perm[j] = perm[k];
                    perm[k] = x;
                    if (esz == 8) memcpy(t + (v * p->topk + k) * 8, &x, 8);
                    else { int32_t x4 = (int32_t)x; memcpy(t + (v * p->topk + k) * 4, &x4, 4); }
                }
            }
            qx_status s = put(c, n, p->tid_dt, 2, tsh, t, (uint64_t)(cnt * esz), e);
            free(t);
            QX_TRY(s);
        }
    } else {
        int64_t bsh[1] = {X};
        QX_TRY(put_f32_gauss(c, N("ffn.gate.bias"), 1, bsh, 0.0f, 0.05f, e));
    }
    for (int64_t x = 0; x < X; x++) {
        QX_TRY(put_fp4(c, N("ffn.experts.%lld.w1", (long long)x), p->moe_ffn, E, p->fp4_dt, e));
        QX_TRY(put_fp4(c, N("ffn.experts.%lld.w2", (long long)x), E, p->moe_ffn, p->fp4_dt, e));
        QX_TRY(put_fp4(c, N("ffn.experts.%lld.w3", (long long)x), p->moe_ffn, E, p->fp4_dt, e));
    }
    int64_t Fs = p->moe_ffn * p->shared;
    QX_TRY(put_fp8_e8m0(c, N("ffn.shared_experts.w1"), Fs, E, e));
    QX_TRY(put_fp8_e8m0(c, N("ffn.shared_experts.w2"), E, Fs, e));
    QX_TRY(put_fp8_e8m0(c, N("ffn.shared_experts.w3"), Fs, E, e));
#undef N
    return QX_OK;
}

static json_t *v4_config(const v4_preset *p) {
    json_t *o = json_object(), *a = json_array(), *cr = json_array(), *rs = json_object(), *qc = json_object(), *bs = json_array();
    json_array_append_new(a, json_string("DeepseekV4ForCausalLM"));
    json_object_set_new(o, "architectures", a);
    json_object_set_new(o, "model_type", json_string("deepseek_v4"));
    json_object_set_new(o, "vocab_size", json_integer(p->vocab));
    json_object_set_new(o, "hidden_size", json_integer(p->hidden));
    json_object_set_new(o, "moe_intermediate_size", json_integer(p->moe_ffn));
    json_object_set_new(o, "num_hidden_layers", json_integer(p->layers));
    json_object_set_new(o, "num_attention_heads", json_integer(p->heads));
    json_object_set_new(o, "num_key_value_heads", json_integer(1));
    json_object_set_new(o, "n_routed_experts", json_integer(p->experts));
    json_object_set_new(o, "n_shared_experts", json_integer(p->shared));
    json_object_set_new(o, "num_experts_per_tok", json_integer(p->topk));
    json_object_set_new(o, "first_k_dense_replace", json_integer(0));
    json_object_set_new(o, "max_position_embeddings", json_integer(p->max_pos));
    json_object_set_new(o, "rms_norm_eps", json_real(1e-6));
    json_object_set_new(o, "rope_theta", json_integer(10000));
    json_object_set_new(o, "q_lora_rank", json_integer(p->q_lora));
    json_object_set_new(o, "qk_rope_head_dim", json_integer(p->rope));
    json_object_set_new(o, "head_dim", json_integer(p->head_dim));
    for (int64_t l = 0; l < p->layers + p->mtp; l++) json_array_append_new(cr, json_integer(v4_ratio(p, l)));
    json_object_set_new(o, "compress_ratios", cr);
    json_object_set_new(o, "sliding_window", json_integer(p->window));
    json_object_set_new(o, "compress_rope_theta", json_integer(160000));
    json_object_set_new(o, "o_lora_rank", json_integer(p->o_lora));
    json_object_set_new(o, "o_groups", json_integer(p->o_groups));
    json_object_set_new(o, "index_n_heads", json_integer(p->idx_heads));
    json_object_set_new(o, "index_head_dim", json_integer(p->idx_dim));
    json_object_set_new(o, "index_topk", json_integer(p->idx_topk));
    json_object_set_new(o, "num_hash_layers", json_integer(p->hash_layers));
    json_object_set_new(o, "num_nextn_predict_layers", json_integer(p->mtp));
    json_object_set_new(o, "hc_mult", json_integer(p->hc));
    json_object_set_new(o, "hc_eps", json_real(1e-6));
    json_object_set_new(o, "hc_sinkhorn_iters", json_integer(20));
    json_object_set_new(o, "swiglu_limit", json_real(10.0));
    json_object_set_new(o, "routed_scaling_factor", json_real(1.5));
    json_object_set_new(o, "norm_topk_prob", json_true());
    json_object_set_new(o, "scoring_func", json_string("sqrtsoftplus"));
    json_object_set_new(o, "topk_method", json_string("noaux_tc"));
    json_object_set_new(o, "hidden_act", json_string("silu"));
    json_object_set_new(o, "tie_word_embeddings", json_false());
    json_object_set_new(o, "torch_dtype", json_string("bfloat16"));
    json_object_set_new(o, "bos_token_id", json_integer(0));
    json_object_set_new(o, "eos_token_id", json_integer(1));
    json_object_set_new(rs, "type", json_string("yarn"));
    json_object_set_new(rs, "factor", json_integer(16));
    json_object_set_new(rs, "original_max_position_embeddings", json_integer(p->rope_orig));
    json_object_set_new(rs, "beta_fast", json_integer(32));
    json_object_set_new(rs, "beta_slow", json_integer(1));
    json_object_set_new(o, "rope_scaling", rs);
    json_object_set_new(qc, "activation_scheme", json_string("dynamic"));
    json_object_set_new(qc, "fmt", json_string("e4m3"));
    json_object_set_new(qc, "quant_method", json_string("fp8"));
    json_object_set_new(qc, "scale_fmt", json_string("ue8m0"));
    json_array_append_new(bs, json_integer(128));
    json_array_append_new(bs, json_integer(128));
    json_object_set_new(qc, "weight_block_size", bs);
    json_object_set_new(o, "quantization_config", qc);
    return o;
}

static qx_status v4_synth(const v4_preset *p, const char *dir, uint64_t seed, bool sparse, qx_err *e) {
    if (p->full && !sparse) return qx_fail(e, QX_EINVAL, "preset '%s' is ~160 GB at full size: use --sparse", p->name);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) return qx_fail(e, QX_EIO, "%s: %s", dir, strerror(errno));
    json_t *cfg = v4_config(p);
    qx_status s = dump_json(cfg, dir, "config.json", e);
    json_decref(cfg);
    QX_TRY(s);
    synth_preset tp = presets[0];   /* the tokenizer files of the DeepSeek presets, this vocabulary */
    tp.vocab = p->vocab;
    QX_TRY(write_side_files_tok(&tp, dir, e));

    sctx c = {0};
    c.n = p->shards;
    c.dir = dir;
    c.seed = seed;
    c.sparse = sparse;
    c.w = calloc((size_t)c.n, sizeof *c.w);
    c.bytes = calloc((size_t)c.n, sizeof *c.bytes);
    c.weight_map = json_object();
    s = (c.w && c.bytes) ? QX_OK : qx_fail(e, QX_ENOMEM, "out of memory");
    for (int i = 0; s == QX_OK && i < c.n; i++) s = st_writer_create(&c.w[i], e);
    uint64_t E = (uint64_t)p->hidden, L = (uint64_t)(p->layers + p->mtp);
    uint64_t attn = E * (uint64_t)p->q_lora + (uint64_t)(p->q_lora * p->heads * p->head_dim) + 2 * E * (uint64_t)(p->heads * p->head_dim);
    uint64_t moe = 3 * E * (uint64_t)p->moe_ffn * ((uint64_t)p->experts / 2 + (uint64_t)p->shared);
    c.target = (L * (attn + moe) + 4 * E * (uint64_t)p->vocab) / (uint64_t)c.n + 1;
    int64_t hsh[2] = {p->hc, p->hc * p->hidden}, bsh[1] = {p->hc}, one[1] = {1};
    if (s == QX_OK) s = put_bf16_matrix(&c, "embed.weight", p->vocab, p->hidden, 16.0f, e);
    char pfx[64];
    for (int64_t l = 0; s == QX_OK && l < p->layers; l++) {
        snprintf(pfx, sizeof pfx, "layers.%lld.", (long long)l);
        s = v4_block(&c, p, pfx, v4_ratio(p, l), l < p->hash_layers, e);
    }
    for (int64_t m = 0; s == QX_OK && m < p->mtp; m++) {   /* the MTP block: a layer plus its own head mixer */
        snprintf(pfx, sizeof pfx, "mtp.%lld.", (long long)m);
        s = v4_block(&c, p, pfx, v4_ratio(p, p->layers + m), false, e);
        char n[96];
#define M(x) (snprintf(n, sizeof n, "%s" x, pfx), n)
        if (s == QX_OK) s = put_fp8_e8m0(&c, M("e_proj"), p->hidden, p->hidden, e);
        if (s == QX_OK) s = put_fp8_e8m0(&c, M("h_proj"), p->hidden, p->hidden, e);
        if (s == QX_OK) s = put_norm(&c, M("enorm.weight"), p->hidden, e);
        if (s == QX_OK) s = put_norm(&c, M("hnorm.weight"), p->hidden, e);
        if (s == QX_OK) s = put_norm(&c, M("norm.weight"), p->hidden, e);
        if (s == QX_OK) s = put_f32_gauss(&c, M("hc_head_fn"), 2, hsh, 0.0f, 0.5f / sqrtf((float)hsh[1]), e);
        if (s == QX_OK) s = put_f32_gauss(&c, M("hc_head_base"), 1, bsh, 0.0f, 0.1f, e);
        if (s == QX_OK) s = put_f32_gauss(&c, M("hc_head_scale"), 1, one, 1.0f, 0.05f, e);
#undef M
    }
    if (s == QX_OK) s = put_norm(&c, "norm.weight", p->hidden, e);
    if (s == QX_OK) s = put_f32_gauss(&c, "hc_head_fn", 2, hsh, 0.0f, 0.5f / sqrtf((float)hsh[1]), e);
    if (s == QX_OK) s = put_f32_gauss(&c, "hc_head_base", 1, bsh, 0.0f, 0.1f, e);
    if (s == QX_OK) s = put_f32_gauss(&c, "hc_head_scale", 1, one, 1.0f, 0.05f, e);
    if (s == QX_OK) s = put_bf16_matrix(&c, "head.weight", p->vocab, p->hidden, 0.5f, e);
    s = finish_shards(&c, dir, s, e);
    return s;
}

qx_status st_synth(const char *preset, const char *dir, uint64_t seed, bool sparse, int64_t layers_override, qx_err *e) {
    const v4_preset *p4;
    if (v4_find(preset, &p4)) return v4_synth(p4, dir, seed, sparse, e);   /* fixed layer count */
    const synth_preset *p = NULL;
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (!strcmp(presets[i].name, preset)) p = &presets[i];
    if (!p) return qx_fail(e, QX_EINVAL, "unknown synth preset '%s' (known: %s)", preset, st_synth_preset_names());
    if (p->full_scale && !sparse)
        return qx_fail(e, QX_EINVAL, "preset '%s' is %s at full size: use --sparse", preset, p->variant >= SV_K2 ? "~1 TB" : "689 GB");
    synth_preset pp = *p;
    if (layers_override > 0) {
        pp.layers = layers_override;
        if (pp.dense > pp.layers) pp.dense = pp.layers;
    }
    p = &pp;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) return qx_fail(e, QX_EIO, "%s: %s", dir, strerror(errno));
    QX_TRY(write_side_files(p, dir, e));

    sctx c = {0};
    c.n = p->shards;
    c.dir = dir;
    c.seed = seed;
    c.sparse = sparse;
    c.ue8m0 = p->variant == SV_V31;
    c.prefix = p->variant == SV_K25 ? "language_model." : NULL;
    c.w = calloc((size_t)c.n, sizeof *c.w);
    c.bytes = calloc((size_t)c.n, sizeof *c.bytes);
    c.weight_map = json_object();
    qx_status s = (c.w && c.bytes) ? QX_OK : qx_fail(e, QX_ENOMEM, "out of memory");
    for (int i = 0; s == QX_OK && i < c.n; i++) s = st_writer_create(&c.w[i], e);
    /* estimate total bytes to size shards evenly */
    uint64_t E = (uint64_t)p->hidden, total;
    if (p->arch == HF_ARCH_DEEPSEEK_V3) {
        uint64_t attn = E * (uint64_t)p->q_lora + (uint64_t)(p->q_lora * p->heads * (p->nope + p->rope)) +
                        E * (uint64_t)(p->kv_lora + p->rope) + (uint64_t)(p->kv_lora * p->heads * (p->nope + p->v)) + E * (uint64_t)(p->heads * p->v);
        uint64_t moe = 3 * E * (uint64_t)(p->moe_ffn * (p->experts + p->shared));
        total = (uint64_t)(p->layers + p->mtp) * attn + (uint64_t)p->dense * 3 * E * (uint64_t)p->ffn +
                (uint64_t)(p->layers + p->mtp - p->dense) * moe + 4 * E * (uint64_t)p->vocab * 2;
    } else {
        total = (uint64_t)p->layers * (E * (uint64_t)(p->heads * p->head_dim) * 2 * 2 + 2 * E * (uint64_t)(p->kv_heads * p->head_dim) * 2 + 3 * E * (uint64_t)p->ffn * 2) +
                2 * E * (uint64_t)p->vocab * 2;
    }
    c.target = total / (uint64_t)c.n + 1;
    int64_t sh1[1] = {p->hidden};
    (void)sh1;
    if (s == QX_OK) s = put_bf16_matrix(&c, "model.embed_tokens.weight", p->vocab, p->hidden, 16.0f, e);
    for (int64_t l = 0; s == QX_OK && l < p->layers; l++)
        s = p->arch == HF_ARCH_DEEPSEEK_V3 ? deepseek_layer(&c, p, l, false, e) : dense_layer(&c, p, l, e);
    for (int64_t l = 0; s == QX_OK && l < p->mtp; l++) s = deepseek_layer(&c, p, p->layers + l, true, e);
    if (s == QX_OK) s = put_norm(&c, "model.norm.weight", p->hidden, e);
    if (s == QX_OK && !p->tie) s = put_bf16_matrix(&c, "lm_head.weight", p->vocab, p->hidden, 1.0f, e);
    if (s == QX_OK && p->variant == SV_K25) s = k25_vision(&c, p, e);
    return finish_shards(&c, dir, s, e);
}
