/* tests/test_family.c — the rest of the DeepseekV3ForCausalLM family (issue 15):
 *  - V3.1 / R1-0528: quantization_config.scale_fmt "ue8m0" is accepted, the power-of-two check
 *    counts exactly the scales an independent scan finds, conversion warns once when they are
 *    not powers of two, inspect names the variant;
 *  - Kimi-K2-Thinking INT4 (compressed-tensors pack-quantized): the stream decoder equals an
 *    independent nibble-by-byte computation bit for bit, and so does the converted F32 GGUF;
 *    every malformed packed triple and quantization_config is one error with its status;
 *  - Kimi-K2: n_group 1 keys as llama.cpp writes them, 384-expert 1T sparse plan in seconds.
 * Checkpoints come from `qforge synth` (tiny-v31, tiny-k2, tiny-k2-int4, k2-1t --sparse). */
#include "tests/util/tu.h"
#include "formats/formats.h"
#include "convert/convert.h"

#include <jansson.h>
#include <unistd.h>

static const char *tmp;

static const char *path_in(const char *name) {
    static char buf[8][1024];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmp, name);
    return buf[k];
}

/* Independent INT4 decode: byte b of a row holds columns 2b (low nibble) and 2b+1 (high);
 * the BF16 scale is the upper half of an f32. */
static float ref_int4(const st_tensor *packed, const st_tensor *scale, int64_t cols, int64_t r, int64_t c) {
    int64_t pcols = packed->shape[1], ng = scale->shape[1];
    uint8_t byte = packed->data[(uint64_t)(r * pcols * 4 + c / 2)];
    int nib = c % 2 ? byte >> 4 : byte & 15;
    uint16_t hb;
    memcpy(&hb, scale->data + 2 * (uint64_t)(r * ng + c / (cols / ng)), 2);
    uint32_t u = (uint32_t)hb << 16;
    float s;
    memcpy(&s, &u, 4);
    return (float)(nib - 8) * s;
}

static void test_int4_decode(void) {
    const char *dir = path_in("k2int4");
    qx_err e;
    TU_OK(st_synth("tiny-k2-int4", dir, 5, false, 0, &e), &e);
    st_model *m;
    TU_OK(st_open(&m, dir, &e), &e);
    if (!m) return;
    size_t n_checked = 0, n_logical = 0;
    for (size_t i = 0; i < st_count(m); i++) {
        const st_tensor *t = st_at(m, i);
        if (t->dtype != ST_I4_PACKED) continue;
        n_logical++;
        char pn[600], sn[600];
        snprintf(pn, sizeof pn, "%s_packed", t->name);
        snprintf(sn, sizeof sn, "%s_scale", t->name);
        const st_tensor *p = st_find(m, pn), *s = st_find(m, sn);
        TU_CHECK(p && s && t->group == 32, "%s: parts or group %lld", t->name, (long long)t->group);
        if (!p || !s || n_checked >= 6) continue;
        int64_t rows = t->shape[0], cols = t->shape[1];
        float *out = malloc((size_t)(rows * cols) * sizeof *out);
        TU_OK(st_tensor_rows_f32(t, 0, rows, out, &e), &e);
        int64_t bad = 0, nz = 0;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++) {
                float want = ref_int4(p, s, cols, r, c);
                bad += memcmp(&want, &out[r * cols + c], 4) != 0;
                nz += want != 0;
            }
        TU_CHECK(bad == 0, "%s: %lld of %lld values differ from the independent decode", t->name, (long long)bad, (long long)(rows * cols));
        TU_CHECK(nz > rows * cols / 2, "%s: decode mostly zero (%lld)", t->name, (long long)nz);
        /* a row range in the middle equals the same rows of the whole decode */
        float *part = malloc((size_t)(3 * cols) * sizeof *part);
        TU_OK(st_tensor_rows_f32(t, 5, 8, part, &e), &e);
        TU_CHECK(!memcmp(part, out + 5 * cols, (size_t)(3 * cols) * sizeof *part), "%s: rows [5,8) differ", t->name);
        free(part);
        free(out);
        n_checked++;
    }
    /* 2 MoE layers x 12 experts x 3 projections */
    TU_CHECK(n_logical == 72, "logical INT4 weights %zu, want 72", n_logical);
    TU_CHECK(n_checked == 6, "checked %zu", n_checked);

    /* the converted F32 GGUF holds the same values (stacked experts [in, out, X]) */
    const char *out = path_in("k2int4.gguf");
    int rc = tu_system("%s convert '%s' -o '%s' --type F32 --quiet", tu_qforge(), dir, out);
    TU_CHECK(rc == 0, "convert tiny-k2-int4 exit %d", rc);
    gf_file *g;
    if (rc == 0 && gf_open(&g, out, &e) == QX_OK) {
        const gf_tensor *gt = gf_find_tensor(g, "blk.2.ffn_down_exps.weight");
        TU_CHECK(gt && gt->type == QT_F32, "blk.2.ffn_down_exps.weight F32");
        for (int x = 0; gt && x < 12; x += 11) {
            char pn[128], sn[128];
            snprintf(pn, sizeof pn, "model.layers.2.mlp.experts.%d.down_proj.weight_packed", x);
            snprintf(sn, sizeof sn, "model.layers.2.mlp.experts.%d.down_proj.weight_scale", x);
            const st_tensor *p = st_find(m, pn), *s = st_find(m, sn);
            if (!p || !s) { TU_CHECK(false, "%s missing", pn); continue; }
            int64_t in = gt->ne[0], outf = gt->ne[1], bad = 0;
            const float *v = (const float *)(const void *)gt->data + (size_t)x * (size_t)(in * outf);
            for (int64_t r = 0; r < outf; r++)
                for (int64_t c = 0; c < in; c++) {
                    float want = ref_int4(p, s, in, r, c);
                    bad += memcmp(&want, &v[r * in + c], 4) != 0;
                }
            TU_CHECK(bad == 0, "GGUF expert %d: %lld values differ from the independent INT4 decode", x, (long long)bad);
        }
        uint32_t u;
        TU_OK(gf_get_u32(g, "deepseek2.expert_count", &u, &e), &e);
        TU_CHECK(u == 12, "expert_count %u", u);
        gf_close(g);
    }
    unlink(out);
    st_close(m);
}

/* A one-file checkpoint in memory with a pack-quantized triple; `fault` damages one part. */
static qx_status open_triple(const char *fault, qx_err *e) {
    st_writer *w;
    qx_err e2;
    TU_OK(st_writer_create(&w, &e2), &e2);
    int64_t rows = 4, cols = 64;
    int64_t psh[2] = {rows, cols / 8}, ssh[2] = {rows, cols / 32}, hsh[1] = {2};
    int32_t packed[4 * 8] = {0}, shape[3] = {(int32_t)rows, (int32_t)cols, 0};
    uint16_t sc[4 * 2] = {0};
    if (!strcmp(fault, "packed-shape")) psh[1] = 7;
    if (!strcmp(fault, "scale-grid")) ssh[1] = 3;
    if (!strcmp(fault, "shape-values")) shape[1] = 65;
    if (!strcmp(fault, "shape-negative")) shape[0] = -4;
    if (!strcmp(fault, "shape-3")) hsh[0] = 3;
    st_writer_add(w, "x.weight_packed", strcmp(fault, "packed-dtype") ? ST_I32 : ST_F32, 2, psh, packed,
                  (uint64_t)(psh[0] * psh[1]) * 4, &e2);
    if (strcmp(fault, "no-scale")) st_writer_add(w, "x.weight_scale", ST_BF16, 2, ssh, sc, (uint64_t)(ssh[0] * ssh[1]) * 2, &e2);
    if (strcmp(fault, "no-shape")) st_writer_add(w, "x.weight_shape", ST_I32, 1, hsh, shape, (uint64_t)hsh[0] * 4, &e2);
    if (!strcmp(fault, "zero-point")) st_writer_add(w, "x.weight_zero_point", ST_I32, 2, ssh, packed, (uint64_t)(ssh[0] * ssh[1]) * 4, &e2);
    if (!strcmp(fault, "duplicate")) st_writer_add(w, "x.weight", ST_BF16, 2, ssh, sc, (uint64_t)(ssh[0] * ssh[1]) * 2, &e2);
    const char *f = path_in("triple.safetensors");
    TU_OK(st_writer_write(w, f, &e2), &e2);
    st_writer_free(w);
    size_t n;
    uint8_t *buf = tu_read_file(f, &n);
    st_model *m = NULL;
    qx_status s = st_open_mem(&m, buf, n, "triple", e);
    if (s == QX_OK) {
        const st_tensor *t = st_find(m, "x.weight");
        TU_CHECK(t && t->dtype == ST_I4_PACKED && t->shape[0] == rows && t->shape[1] == cols && t->group == 32, "valid triple: logical x.weight");
        float out[4 * 64];
        if (t) TU_OK(st_tensor_rows_f32(t, 0, rows, out, e), e);
        TU_CHECK(t && out[0] == -8.0f * 0.0f, "zero scale decodes to zero");
    }
    st_close(m);
    free(buf);
    return s;
}

static void test_int4_faults(void) {
    qx_err e;
    TU_OK(open_triple("none", &e), &e);
    TU_FAILS(open_triple("packed-shape", &e), &e, QX_ESHAPE, "packed shape [4, 7]");
    TU_FAILS(open_triple("packed-dtype", &e), &e, QX_ESHAPE, "pack-quantized weights are I32");
    TU_FAILS(open_triple("scale-grid", &e), &e, QX_ESHAPE, "is not a group scale grid");
    TU_FAILS(open_triple("shape-values", &e), &e, QX_ESHAPE, "weight_shape [4, 65] needs [4, 9]");
    TU_FAILS(open_triple("shape-negative", &e), &e, QX_ESHAPE, "is not a positive shape");
    TU_FAILS(open_triple("shape-3", &e), &e, QX_ESHAPE, "expected I32/I64 [2]");
    TU_FAILS(open_triple("no-scale", &e), &e, QX_ENOTFOUND, "has no 'x.weight_scale'");
    TU_FAILS(open_triple("no-shape", &e), &e, QX_ENOTFOUND, "has no 'x.weight_shape'");
    TU_FAILS(open_triple("zero-point", &e), &e, QX_EUNSUPPORTED, "zero points");
    TU_FAILS(open_triple("duplicate", &e), &e, QX_EFORMAT, "'x.weight' appears in both");
}

/* quantization_config variants through hf_config_parse on a tiny-k2-int4 config. */
static void test_quant_config(void) {
    char *txt;
    size_t n;
    qx_err e;
    TU_OK(qx_read_file(path_in("k2int4/config.json"), &txt, &n, &e), &e);
    json_t *base = json_loadb(txt, n, 0, NULL);
    free(txt);
    if (!base) { TU_CHECK(false, "config"); return; }
    hf_config c;
    struct { const char *path, *value; bool is_int; qx_status want; const char *needle; } cases[] = {
        {NULL, NULL, false, QX_OK, ""},
        {"format", "int-quantized", false, QX_EUNSUPPORTED, "format 'int-quantized'"},
        {"num_bits", "8", true, QX_EUNSUPPORTED, "8-bit int group"},
        {"strategy", "channel", false, QX_EUNSUPPORTED, "int channel"},
        {"group_size", "30", true, QX_EFORMAT, "group_size 30"},
        {"type", "float", false, QX_EUNSUPPORTED, "4-bit float"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *cfg = json_deep_copy(base);
        json_t *qc = json_object_get(cfg, "quantization_config");
        json_t *w = json_object_get(json_object_get(json_object_get(qc, "config_groups"), "group_0"), "weights");
        if (cases[i].path) {
            json_t *target = !strcmp(cases[i].path, "format") ? qc : w;
            json_object_set_new(target, cases[i].path, cases[i].is_int ? json_integer(atoi(cases[i].value)) : json_string(cases[i].value));
        }
        char *s = json_dumps(cfg, 0);
        qx_status st = hf_config_parse(s, strlen(s), "cfg.json", &c, &e);
        if (cases[i].want == QX_OK) {
            TU_OK(st, &e);
            TU_CHECK(c.int4 && c.int4_group == 32, "int4 group %lld", (long long)c.int4_group);
            TU_CHECK(!strcmp(hf_variant(&c), "Kimi-K2-Thinking (INT4 routed experts)"), "variant '%s'", hf_variant(&c));
        } else {
            TU_FAILS(st, &e, cases[i].want, cases[i].needle);
        }
        free(s);
        json_decref(cfg);
    }
    /* two config groups, and an unknown quant_method */
    json_t *cfg = json_deep_copy(base);
    json_t *groups = json_object_get(json_object_get(cfg, "quantization_config"), "config_groups");
    json_object_set(groups, "group_1", json_object_get(groups, "group_0"));
    char *s = json_dumps(cfg, 0);
    TU_FAILS(hf_config_parse(s, strlen(s), "cfg.json", &c, &e), &e, QX_EUNSUPPORTED, "exactly one config group");
    free(s);
    json_object_set_new(json_object_get(cfg, "quantization_config"), "quant_method", json_string("awq"));
    s = json_dumps(cfg, 0);
    TU_FAILS(hf_config_parse(s, strlen(s), "cfg.json", &c, &e), &e, QX_EUNSUPPORTED, "quant_method 'awq'");
    free(s);
    json_decref(cfg);
    json_decref(base);
}

/* Independent power-of-two count over every FP8 scale grid: frexp gives mantissa 0.5 exactly
 * for a positive normal power of two. */
static uint64_t ref_non_pow2(const st_model *m) {
    uint64_t bad = 0;
    for (size_t i = 0; i < st_count(m); i++) {
        const st_tensor *t = st_at(m, i);
        if (t->dtype != ST_F8_E4M3 || !t->scale_inv) continue;
        for (uint64_t k = 0; k < t->scale_inv->n_elems; k++) {
            float v;
            memcpy(&v, t->scale_inv->data + 4 * k, 4);
            int ex;
            bool p2 = isfinite(v) && v > 0 && fpclassify(v) == FP_NORMAL && frexpf(v, &ex) == 0.5f;
            bad += !p2;
        }
    }
    return bad;
}

static void set_scale_fmt(const char *dir, const char *fmt) {
    char p[1200];
    snprintf(p, sizeof p, "%s/config.json", dir);
    json_t *c = json_load_file(p, 0, NULL);
    json_object_set_new(json_object_get(c, "quantization_config"), "scale_fmt", json_string(fmt));
    TU_CHECK(json_dump_file(c, p, JSON_INDENT(1)) == 0, "write %s", p);
    json_decref(c);
}

static void test_v31(void) {
    qx_err e;
    const char *d31 = path_in("v31"), *d3 = path_in("v3ue");
    TU_OK(st_synth("tiny-v31", d31, 7, false, 0, &e), &e);
    TU_OK(st_synth("tiny-v3", d3, 7, false, 0, &e), &e);
    set_scale_fmt(d3, "ue8m0");   /* claims ue8m0, scales are amax/448 */
    hf_config c;
    TU_OK(hf_config_load(d31, &c, &e), &e);
    TU_CHECK(!strcmp(c.fp8_scale_fmt, "ue8m0"), "scale_fmt '%s'", c.fp8_scale_fmt);
    TU_CHECK(!strcmp(hf_variant(&c), "DeepSeek-V3.1 / R1-0528 (ue8m0 scales)"), "variant '%s'", hf_variant(&c));
    const char *dirs[2] = {d31, d3};
    for (int k = 0; k < 2; k++) {
        st_model *m;
        TU_OK(st_open(&m, dirs[k], &e), &e);
        if (!m) continue;
        const char *first;
        uint64_t got = hf_count_non_pow2_scales(m, &first), want = ref_non_pow2(m);
        TU_CHECK(got == want, "%s: non-power-of-two scales %llu, independent scan %llu", dirs[k], (unsigned long long)got,
                 (unsigned long long)want);
        TU_CHECK(k == 0 ? want == 0 : want > 100, "%s: %llu non-power-of-two scales", dirs[k], (unsigned long long)want);
        st_close(m);
        cv_params p;
        cv_default_params(&p);
        p.preset = "F32";
        cv_plan *pl;
        TU_OK(cv_plan_create(&pl, dirs[k], &p, &e), &e);
        if (!pl) continue;
        const char *wn = cv_plan_warnings(pl);
        const char *hit = strstr(wn, "are not powers of two");
        TU_CHECK(k == 0 ? !hit : hit && !strstr(hit + 1, "are not powers of two"), "%s: warnings '%s'", dirs[k], wn);
        cv_plan_free(pl);
    }
    set_scale_fmt(d3, "e8m0x");
    TU_FAILS(hf_config_load(d3, &c, &e), &e, QX_EUNSUPPORTED, "scale_fmt 'e8m0x'");
    /* inspect names the variant */
    char log[1200];
    snprintf(log, sizeof log, "%s/inspect31.txt", tmp);
    TU_CHECK(tu_system("%s inspect '%s' > '%s'", tu_qforge(), d31, log) == 0, "inspect v31");
    size_t n;
    char *txt = tu_read_file(log, &n);
    TU_CHECK(txt && strstr(txt, "variant       DeepSeek-V3.1 / R1-0528 (ue8m0 scales)"), "inspect: %s", txt ? txt : "");
    free(txt);
}

static void test_k2(void) {
    qx_err e;
    const char *dir = path_in("k2");
    TU_OK(st_synth("tiny-k2", dir, 3, false, 0, &e), &e);
    const char *out = path_in("k2.gguf");
    TU_CHECK(tu_system("%s convert '%s' -o '%s' --type Q8_0 --quiet", tu_qforge(), dir, out) == 0, "convert tiny-k2");
    gf_file *g;
    if (gf_open(&g, out, &e) == QX_OK) {
        uint32_t u;
        float f;
        /* n_group 1 / topk_group 1: written as convert_hf_to_gguf.py writes them */
        TU_OK(gf_get_u32(g, "deepseek2.expert_group_count", &u, &e), &e);
        TU_CHECK(u == 1, "expert_group_count %u", u);
        TU_OK(gf_get_u32(g, "deepseek2.expert_group_used_count", &u, &e), &e);
        TU_CHECK(u == 1, "expert_group_used_count %u", u);
        TU_OK(gf_get_f32(g, "deepseek2.expert_weights_scale", &f, &e), &e);
        TU_CHECK(f == 2.827f, "expert_weights_scale %g", f);
        TU_OK(gf_get_u32(g, "deepseek2.expert_gating_func", &u, &e), &e);
        TU_CHECK(u == 2, "expert_gating_func %u", u);
        TU_OK(gf_get_f32(g, "deepseek2.rope.freq_base", &f, &e), &e);
        TU_CHECK(f == 50000.0f, "rope.freq_base %g", f);
        gf_close(g);
    }
    unlink(out);

    /* the 1.04T K2 and the INT4 K2-Thinking: real names and shapes, sparse; plan in seconds */
    const char *presets[2] = {"k2-1t", "k2-thinking-1t"};
    for (int k = 0; k < 2; k++) {
        const char *d = path_in(presets[k]);
        double t0 = qx_now();
        TU_OK(st_synth(presets[k], d, 1, true, 0, &e), &e);
        double t1 = qx_now();
        cv_params p;
        cv_default_params(&p);
        p.preset = "Q4_K_M";
        cv_plan *pl;
        TU_OK(cv_plan_create(&pl, d, &p, &e), &e);
        double t2 = qx_now();
        if (!pl) continue;
        uint64_t n = cv_plan_n_elems(pl);
        /* Kimi-K2: 1,026,408,232,448 parameters without MTP (independent count from the shapes) */
        int64_t E = 7168, V = 163840, H = 64, QL = 1536, KVL = 512, R = 64, N = 128, Dv = 128, F = 18432, Fe = 2048, X = 384;
        int64_t attn = E + QL + E * QL + QL * H * (N + R) + E * (KVL + R) + KVL + N * KVL * H + KVL * Dv * H + H * Dv * E + E;
        int64_t moe = E * X + X + 3 * E * Fe * X + 3 * E * Fe;
        int64_t want = 2 * E * V + E + 61 * attn + 3 * E * F + 60 * moe;
        TU_CHECK(n == (uint64_t)want, "%s: %llu parameters planned, want %lld", presets[k], (unsigned long long)n, (long long)want);
        TU_CHECK(t2 - t1 < 20, "%s: plan took %.1f s", presets[k], t2 - t1);
        printf("  %s: synth %.1f s, Q4_K_M plan %.2f s, %.2f MiB, %.3f bpw\n", presets[k], t1 - t0, t2 - t1,
               (double)cv_plan_tensor_bytes(pl) / 1048576.0, cv_plan_bpw(pl));
        cv_plan_free(pl);
    }
    /* peak RSS of the dry-run plan, in its own process */
    for (int k = 0; k < 2; k++) {
        char log[1200];
        snprintf(log, sizeof log, "%s/rss%d.txt", tmp, k);
        int rc = tu_system("%s convert '%s' -o '%s/x.gguf' --type Q4_K_M --dry-run --json '%s' > /dev/null 2>&1", tu_qforge(),
                           path_in(presets[k]), tmp, log);
        TU_CHECK(rc == 0, "%s: dry-run exit %d", presets[k], rc);
        size_t n;
        char *txt = tu_read_file(log, &n);
        json_t *j = txt ? json_loadb(txt, n, 0, NULL) : NULL;
        json_t *rss = json_object_get(j, "peak_rss_bytes");
        TU_CHECK(json_is_integer(rss) && json_integer_value(rss) < 200LL << 20, "%s: dry-run peak RSS %lld bytes (want < 200 MiB)",
                 presets[k], json_is_integer(rss) ? (long long)json_integer_value(rss) : -1LL);
        json_decref(j);
        free(txt);
    }
}

int main(void) {
    tmp = tu_tmpdir();
    test_int4_decode();
    test_int4_faults();
    test_quant_config();
    test_v31();
    test_k2();
    return tu_done("test_family");
}
