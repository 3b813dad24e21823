/* tests/test_safetensors.c — the safetensors reader and writer: round trip, sharded index,
 * cross-shard scale companions, and one hand-made bad file per fault class asserting the
 * exact status and the message naming the file and tensor; config validation faults. */
#include "tests/util/tu.h"
#include "formats/formats.h"

#include <stdint.h>

/* Writes a safetensors file with the given header JSON and `data_len` data bytes (0x11). */
static const char *mkfile(const char *name, const char *hdr, size_t data_len) {
    static char path[8][512];
    static int k;
    k = (k + 1) & 7;
    snprintf(path[k], sizeof path[k], "%s/%s", tu_tmpdir(), name);
    size_t hl = strlen(hdr);
    uint8_t *buf = malloc(8 + hl + data_len);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, hdr, hl);
    memset(buf + 8 + hl, 0x11, data_len);
    tu_write_file(path[k], buf, 8 + hl + data_len);
    free(buf);
    return path[k];
}

static void bad(const char *hdr, size_t data_len, qx_status code, const char *needle) {
    qx_err e = {0};
    st_model *m = NULL;
    const char *p = mkfile("bad.safetensors", hdr, data_len);
    qx_status s = st_open(&m, p, &e);
    TU_FAILS(s, &e, code, needle);
    TU_CHECK(s != QX_OK || m != NULL, "model set on success");
    if (s == QX_OK) st_close(m);
    else TU_CHECK(strstr(e.msg, "bad.safetensors") != NULL, "message names the file: %s", e.msg);
}

static void test_header_faults(void) {
    const char *ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}";
    qx_err e = {0};
    st_model *m;
    qx_status so = st_open(&m, mkfile("ok.safetensors", ok, 16), &e);
    TU_OK(so, &e);
    if (so == QX_OK) { TU_CHECK(st_count(m) == 1 && st_find(m, "a")->nbytes == 16, "ok file"); st_close(m); }

    /* too short */
    const char *p = mkfile("short.safetensors", "", 0);
    tu_write_file(p, "\x05\x00", 2);
    TU_FAILS(st_open(&m, p, &e), &e, QX_EFORMAT, "too short");
    /* header length past end (truncated file) */
    uint8_t hb[16] = {0xff, 0x00, 0, 0, 0, 0, 0, 0, '{', '}'};
    tu_write_file(p, hb, 10);
    TU_FAILS(st_open(&m, p, &e), &e, QX_EFORMAT, "past end of file");
    /* header length above the limit */
    uint8_t hb2[10] = {0, 0, 0, 0, 0, 0, 0, 0x10, '{', '}'};
    tu_write_file(p, hb2, 10);
    TU_FAILS(st_open(&m, p, &e), &e, QX_EFORMAT, "limit");

    bad("{\"a\":", 0, QX_EFORMAT, "not valid JSON");
    bad("[1,2]", 0, QX_EFORMAT, "not a JSON object");
    bad("{\"a\":{\"dtype\":\"F31\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, QX_EFORMAT, "tensor 'a': unknown dtype 'F31'");
    bad("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, QX_EFORMAT, "tensor 'a': missing shape");
    bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, QX_EFORMAT, "tensor 'a': shape[0]");
    bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, QX_EFORMAT, "tensor 'a': data_offsets must be");
    bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, QX_EFORMAT, "tensor 'a': data_offsets [4, 0] invalid");
    bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 12, QX_EFORMAT, "tensor 'a': data_offsets end 16 past data size 12");
    bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}", 16, QX_EFORMAT, "tensor 'a': shape x F32 = 12 bytes but data_offsets span 16");
    bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,16]}}", 16, QX_EFORMAT, "tensor 'a': shape overflows");
    bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, QX_EFORMAT, "overlap");
    bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, QX_EFORMAT, "duplicate");
    bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,2,3,4,5,6,7,8,9],\"data_offsets\":[0,4]}}", 4, QX_EFORMAT, "tensor 'a': 9 dims");
    /* FP8 weight whose scale grid has the wrong shape */
    bad("{\"w\":{\"dtype\":\"F8_E4M3\",\"shape\":[200,100],\"data_offsets\":[0,20000]},"
        "\"w_scale_inv\":{\"dtype\":\"F32\",\"shape\":[1,1],\"data_offsets\":[20000,20004]}}", 20004, QX_ESHAPE, "'w_scale_inv'");
    /* a missing file */
    TU_FAILS(st_open(&m, "/nonexistent/x.safetensors", &e), &e, QX_ENOTFOUND, "/nonexistent/x.safetensors");
}

static void write_shard(const char *dir, const char *file, const char *hdr, size_t n) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    const char *tmp = mkfile("tmp.st", hdr, n);
    tu_system("mv '%s' '%s'", tmp, path);
}
static void write_index(const char *dir, const char *json) {
    char path[1024];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    tu_write_file(path, json, strlen(json));
}

static void test_index_faults(void) {
    char dir[600];
    snprintf(dir, sizeof dir, "%s/idx", tu_tmpdir());
    tu_system("rm -rf '%s' && mkdir -p '%s'", dir, dir);
    write_shard(dir, "s1.safetensors", "{\"w\":{\"dtype\":\"F8_E4M3\",\"shape\":[4,4],\"data_offsets\":[0,16]}}", 16);
    write_shard(dir, "s2.safetensors", "{\"w_scale_inv\":{\"dtype\":\"F32\",\"shape\":[1,1],\"data_offsets\":[0,4]}}", 4);
    write_index(dir, "{\"weight_map\":{\"w\":\"s1.safetensors\",\"w_scale_inv\":\"s2.safetensors\"}}");
    qx_err e = {0};
    st_model *m;
    qx_status so = st_open(&m, dir, &e);
    TU_OK(so, &e);
    if (so == QX_OK) {
        const st_tensor *w = st_find(m, "w");
        TU_CHECK(w && w->scale_inv && w->scale_inv->shard != w->shard, "cross-shard scale companion linked");
        st_close(m);
    }
    write_index(dir, "{\"weight_map\":{\"w\":\"s1.safetensors\",\"w_scale_inv\":\"s3.safetensors\"}}");
    TU_FAILS(st_open(&m, dir, &e), &e, QX_ENOTFOUND, "shard 's3.safetensors' listed in the index is missing");
    write_index(dir, "{\"weight_map\":{\"w\":\"s1.safetensors\",\"w_scale_inv\":\"s2.safetensors\",\"x\":\"s1.safetensors\"}}");
    TU_FAILS(st_open(&m, dir, &e), &e, QX_ENOTFOUND, "tensor 'x' is in the index but not in shard 's1.safetensors'");
    write_index(dir, "{\"weight_map\":{\"w\":\"s2.safetensors\",\"w_scale_inv\":\"s2.safetensors\",\"q\":\"s1.safetensors\"}}");
    TU_FAILS(st_open(&m, dir, &e), &e, QX_EFORMAT, "tensor 'w' is indexed in 's2.safetensors' but found in 's1.safetensors'");
    write_index(dir, "{\"metadata\":{}}");
    TU_FAILS(st_open(&m, dir, &e), &e, QX_EFORMAT, "missing \"weight_map\"");
    write_index(dir, "{\"weight_map\":{\"w\":\"../etc/passwd\"}}");
    TU_FAILS(st_open(&m, dir, &e), &e, QX_EFORMAT, "invalid shard");
    write_index(dir, "{\"weight_map\":{\"w\":");
    TU_FAILS(st_open(&m, dir, &e), &e, QX_EFORMAT, "model.safetensors.index.json: not valid JSON");
    /* the same tensor in two shards */
    write_shard(dir, "s2.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4);
    write_index(dir, "{\"weight_map\":{\"w\":\"s1.safetensors\",\"v\":\"s2.safetensors\"}}");
    TU_FAILS(st_open(&m, dir, &e), &e, QX_EFORMAT, "tensor 'w' appears in both");
    /* a shard tensor the index does not list */
    write_shard(dir, "s2.safetensors", "{\"v\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"u\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8);
    TU_FAILS(st_open(&m, dir, &e), &e, QX_EFORMAT, "tensor 'u' is not listed in the index");
}

static void test_writer_roundtrip(void) {
    qx_err e = {0};
    st_writer *w;
    TU_OK(st_writer_create(&w, &e), &e);
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint16_t b[3] = {0x3F80, 0x4000, 0xC040};
    int64_t sa[2] = {2, 3}, sb[1] = {3};
    TU_OK(st_writer_add(w, "z.a", ST_F32, 2, sa, a, sizeof a, &e), &e);
    TU_OK(st_writer_add(w, "b", ST_BF16, 1, sb, b, sizeof b, &e), &e);
    TU_FAILS(st_writer_add(w, "c", ST_F32, 1, sb, a, 8, &e), &e, QX_EINVAL, "tensor 'c'");
    char path[600];
    snprintf(path, sizeof path, "%s/rt.safetensors", tu_tmpdir());
    TU_OK(st_writer_write(w, path, &e), &e);
    st_writer_free(w);
    st_model *m;
    qx_status so = st_open(&m, path, &e);
    TU_OK(so, &e);
    if (so != QX_OK) return;
    const st_tensor *t = st_find(m, "z.a");
    TU_CHECK(t && t->dtype == ST_F32 && t->n_dims == 2 && t->shape[1] == 3 && !memcmp(t->data, a, sizeof a), "F32 tensor round trip");
    float rows[3];
    TU_OK(st_tensor_rows_f32(t, 1, 2, rows, &e), &e);
    TU_CHECK(rows[0] == 4 && rows[2] == 6, "row 1 decode");
    t = st_find(m, "b");
    float bf[3];
    TU_OK(st_tensor_rows_f32(t, 0, 1, bf, &e), &e);
    TU_CHECK(bf[0] == 1 && bf[1] == 2 && bf[2] == -3, "BF16 decode %g %g %g", bf[0], bf[1], bf[2]);
    TU_FAILS(st_tensor_rows_f32(t, 0, 2, bf, &e), &e, QX_EINVAL, "tensor 'b': rows [0, 2)");
    /* header is padded with spaces to a multiple of 8 */
    qx_map mp;
    TU_OK(qx_map_open(&mp, path, &e), &e);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | mp.data[i];
    TU_CHECK(mp.data[8 + hl - 1] == ' ' || mp.data[8 + hl - 1] == '}', "header ends with padding or '}'");
    TU_CHECK(hl % 8 == 0, "header length %llu multiple of 8", (unsigned long long)hl);
    qx_map_close(&mp);
    st_close(m);
}

static void test_synth_and_config(void) {
    char dir[600];
    snprintf(dir, sizeof dir, "%s/tiny", tu_tmpdir());
    qx_err e = {0};
    TU_OK(st_synth("tiny-v3", dir, 7, false, 0, &e), &e);
    st_model *m;
    qx_status so = st_open(&m, dir, &e);
    TU_OK(so, &e);
    if (so != QX_OK) return;
    hf_config c;
    TU_OK(hf_config_load(dir, &c, &e), &e);
    TU_OK(hf_config_validate(&c, m, &e), &e);
    TU_CHECK(st_shard_count(m) == 3, "3 shards");
    /* one layer's experts straddle a shard boundary; one scale lives in another shard */
    int s0 = st_find(m, "model.layers.1.mlp.experts.0.down_proj.weight")->shard;
    int s7 = st_find(m, "model.layers.1.mlp.experts.7.down_proj.weight")->shard;
    TU_CHECK(s0 != s7, "layer 1 experts split across shards (%d, %d)", s0, s7);
    const st_tensor *w = st_find(m, "model.layers.1.mlp.experts.7.down_proj.weight");
    TU_CHECK(w->scale_inv && w->scale_inv->shard != w->shard, "scale in another shard");
    const st_tensor *kva = st_find(m, "model.layers.0.self_attn.kv_a_proj_with_mqa.weight");
    TU_CHECK(kva->shape[0] % 128 != 0 && kva->scale_inv->shape[0] == (kva->shape[0] + 127) / 128, "partial edge tile");
    /* synthetic FP8 decodes near the weights' scale: every value finite, amax per tile > 0 */
    float *rows = malloc((size_t)kva->shape[0] * kva->shape[1] * sizeof *rows);
    TU_OK(st_tensor_rows_f32(kva, 0, kva->shape[0], rows, &e), &e);
    int finite = 1;
    for (long i = 0; i < kva->shape[0] * kva->shape[1]; i++) finite &= isfinite(rows[i]);
    TU_CHECK(finite, "finite values");
    free(rows);
    /* config faults against these tensors */
    hf_config bad = c;
    bad.n_routed_experts = 4;
    bad.n_group = 2;
    TU_FAILS(hf_config_validate(&bad, m, &e), &e, QX_ESHAPE, "mlp.gate.weight");
    bad = c;
    bad.moe_intermediate_size = 128;
    TU_FAILS(hf_config_validate(&bad, m, &e), &e, QX_ESHAPE, "model.layers.1.mlp.experts.0.gate_proj.weight': shape [256, 512], config.json implies [128, 512]");
    bad = c;
    bad.n_layers = 5;
    TU_FAILS(hf_config_validate(&bad, m, &e), &e, QX_ENOTFOUND, "model.layers.4.input_layernorm.weight' missing");
    bad = c;
    bad.n_routed_experts = 6;
    bad.n_group = 2;
    TU_FAILS(hf_config_validate(&bad, m, &e), &e, QX_ESHAPE, "mlp.gate.weight");
    st_close(m);
    /* a weight whose scale_inv is missing */
    char idx[700];
    snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", dir);
    tu_system("sed -i 's/\"model.layers.0.mlp.up_proj.weight_scale_inv\"/\"model.layers.0.mlp.up_proj.weight_scale_inX\"/' '%s'", idx);
    TU_FAILS(st_open(&m, dir, &e), &e, QX_ENOTFOUND, "up_proj.weight_scale_inX");
    const char *cfgs[][2] = {
        {"{\"architectures\":[\"MistralForCausalLM\"],\"vocab_size\":1}", "unsupported architecture 'MistralForCausalLM'"},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":10,\"hidden_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":3,\"num_key_value_heads\":2,\"intermediate_size\":4}", "num_key_value_heads 2 does not divide"},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":10}", "\"hidden_size\" missing"},
        {"{\"architectures\":", "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++) {
        qx_status s = hf_config_parse(cfgs[i][0], strlen(cfgs[i][0]), "config.json", &c, &e);
        TU_CHECK(s != QX_OK && strstr(e.msg, cfgs[i][1]), "config %zu: '%s'", i, e.msg);
    }
}

static void test_sparse_671b(void) {
    char dir[600];
    snprintf(dir, sizeof dir, "%s/v3", tu_tmpdir());
    qx_err e = {0};
    TU_OK(st_synth("v3-671b", dir, 1, true, 0, &e), &e);
    st_model *m;
    qx_status so = st_open(&m, dir, &e);
    TU_OK(so, &e);
    if (so != QX_OK) return;
    TU_CHECK(st_count(m) == 91991, "91,991 tensors, got %zu", st_count(m));
    TU_CHECK(st_shard_count(m) == 163, "163 shards, got %d", st_shard_count(m));
    uint64_t np = 0;
    for (size_t i = 0; i < st_count(m); i++)
        if (!qx_ends_with(st_at(m, i)->name, "_scale_inv")) np += st_at(m, i)->n_elems;
    TU_CHECK(np == 684489845504ull, "n_params %llu", (unsigned long long)np);
    hf_config c;
    TU_OK(hf_config_load(dir, &c, &e), &e);
    TU_OK(hf_config_validate(&c, m, &e), &e);
    st_close(m);
}

int main(void) {
    test_header_faults();
    test_index_faults();
    test_writer_roundtrip();
    test_synth_and_config();
    test_sparse_671b();
    return tu_done("test_safetensors");
}
