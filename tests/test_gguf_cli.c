/* tests/test_gguf_cli.c — `qforge verify` and `qforge inspect` on GGUF files: exit codes and
 * the one-line message naming the bad tensor; --json parsed back and compared with what
 * was written. */
#include "tests/util/tu.h"
#include "formats/formats.h"

#include <jansson.h>
#include <unistd.h>

static char g_path[512], g_log[512];

static void write_model(const char *path, bool checksums) {
    qx_err e = {0};
    gf_writer *w;
    gf_writer_create(&w, &e);
    gf_writer_set_str(w, "general.architecture", "deepseek2", &e);
    gf_writer_set_u32(w, "deepseek2.block_count", 3, &e);
    uint64_t big = 0xF000000000000001ull;
    gf_writer_set_u64(w, "qforge.big", big, &e);
    const char *toks[20];
    for (int i = 0; i < 20; i++) toks[i] = i % 2 ? "odd" : "even";
    gf_writer_set_str_arr(w, "tokenizer.ggml.tokens", toks, 20, &e);
    if (checksums) gf_writer_reserve_checksums(w, &e);
    int64_t a[2] = {256, 4}, b[1] = {64};
    gf_writer_add_tensor(w, "blk.0.ffn_up.weight", QT_Q4_K, 2, a, NULL, &e);
    gf_writer_add_tensor(w, "blk.0.attn_norm.weight", QT_F32, 1, b, NULL, &e);
    static uint8_t d0[576], d1[256];
    for (size_t i = 0; i < sizeof d0; i++) d0[i] = (uint8_t)(i * 31);
    for (size_t i = 0; i < sizeof d1; i++) d1[i] = (uint8_t)i;
    const void *d[2] = {d0, d1};
    TU_OK(gf_writer_write_file(w, path, d, &e), &e);
    gf_writer_free(w);
}

static bool log_has(const char *needle) {
    char *s;
    size_t n;
    qx_err e;
    if (qx_read_file(g_log, &s, &n, &e) != QX_OK) return false;
    bool ok = strstr(s, needle) != NULL;
    if (!ok) fprintf(stderr, "log was: %s\n", s);
    free(s);
    return ok;
}

int main(void) {
    FILE *q = fopen(tu_qforge(), "rb");
    if (!q) return tu_skip("qforge binary not built (set QF_BIN)");
    fclose(q);
    snprintf(g_path, sizeof g_path, "%s/m.gguf", tu_tmpdir());
    snprintf(g_log, sizeof g_log, "%s/log.txt", tu_tmpdir());
    write_model(g_path, true);
    TU_CHECK(tu_system("%s verify --quiet %s > %s 2>&1", tu_qforge(), g_path, g_log) == 0, "verify of a good file");

    /* flip one byte inside the second tensor */
    qx_err e = {0};
    gf_file *f;
    TU_OK(gf_open(&f, g_path, &e), &e);
    uint64_t off = f ? gf_tensor_at(f, 1)->file_offset + 10 : 0;
    gf_close(f);
    FILE *fp = fopen(g_path, "r+b");
    fseek(fp, (long)off, SEEK_SET);
    int c = fgetc(fp);
    fseek(fp, (long)off, SEEK_SET);
    fputc(c ^ 0x10, fp);
    fclose(fp);
    TU_CHECK(tu_system("%s verify --quiet %s > %s 2>&1", tu_qforge(), g_path, g_log) == 1, "verify of a corrupted file exits 1");
    TU_CHECK(log_has("tensor 'blk.0.attn_norm.weight' (2 of 2): checksum mismatch"), "message names the tensor");

    /* structural damage: truncated file */
    TU_CHECK(truncate(g_path, (off_t)off) == 0, "truncate");
    TU_CHECK(tu_system("%s verify %s > %s 2>&1", tu_qforge(), g_path, g_log) == 1, "verify of a truncated file exits 1");
    TU_CHECK(log_has("tensor 'blk.0.attn_norm.weight': data"), "truncation names the tensor");

    /* no checksums: ok unless required */
    write_model(g_path, false);
    TU_CHECK(tu_system("%s verify %s > %s 2>&1", tu_qforge(), g_path, g_log) == 0, "no checksums passes");
    TU_CHECK(log_has("no qforge checksums"), "and says so");
    TU_CHECK(tu_system("%s verify --require-checksums %s > %s 2>&1", tu_qforge(), g_path, g_log) == 1, "--require-checksums");
    TU_CHECK(tu_system("%s verify > %s 2>&1", tu_qforge(), g_log) == 2, "usage error");

    /* inspect --json */
    write_model(g_path, true);
    char jpath[512];
    snprintf(jpath, sizeof jpath, "%s/i.json", tu_tmpdir());
    TU_CHECK(tu_system("%s inspect %s --json --tensors > %s", tu_qforge(), g_path, jpath) == 0, "inspect --json");
    json_error_t je;
    json_t *o = json_load_file(jpath, 0, &je);
    TU_CHECK(o != NULL, "json parses: %s", je.text);
    if (o) {
        TU_CHECK(json_integer_value(json_object_get(o, "n_tensors")) == 2, "n_tensors");
        TU_CHECK(json_integer_value(json_object_get(o, "n_params")) == 1024 + 64, "n_params");
        TU_CHECK(json_integer_value(json_object_get(o, "tensor_bytes")) == 576 + 256, "tensor_bytes");
        TU_CHECK(json_is_true(json_object_get(o, "offsets_canonical")), "canonical");
        json_t *md = json_object_get(o, "metadata");
        TU_CHECK(json_array_size(md) == 5, "metadata entries %zu", json_array_size(md));
        json_t *big = json_array_get(md, 2), *tok = json_array_get(md, 3);
        TU_CHECK(!strcmp(json_string_value(json_object_get(big, "value")), "17293822569102704641"), "u64 above 2^63 as a string");
        TU_CHECK(json_integer_value(json_object_get(tok, "n")) == 20 && json_array_size(json_object_get(tok, "values")) == 16 &&
                 json_is_true(json_object_get(tok, "truncated")), "array shortened");
        json_t *q4 = json_object_get(json_object_get(o, "types"), "Q4_K");
        TU_NEAR(json_real_value(json_object_get(q4, "bits_per_weight")), 4.5, 1e-12, "Q4_K bpw");
        json_t *t0 = json_array_get(json_object_get(o, "tensors"), 0);
        TU_CHECK(!strcmp(json_string_value(json_object_get(t0, "name")), "blk.0.ffn_up.weight") &&
                 json_integer_value(json_array_get(json_object_get(t0, "shape"), 1)) == 4 &&
                 json_integer_value(json_object_get(t0, "bytes")) == 576, "tensor 0");
        json_decref(o);
    }
    TU_CHECK(tu_system("%s inspect %s --tensors > %s 2>&1", tu_qforge(), g_path, g_log) == 0, "inspect text");
    TU_CHECK(log_has("blk.0.ffn_up.weight") && log_has("[string x 20]") && log_has("4.5000"), "text listing");
    return tu_done("test_gguf_cli");
}
