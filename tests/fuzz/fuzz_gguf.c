/* tests/fuzz/fuzz_gguf.c — libFuzzer target over gf_open_mem: a whole GGUF file in memory is
 * validated; every KV, tensor and checksum is touched; a valid file's metadata and tensor
 * infos are re-serialized by the writer and parsed again, and must come back identical
 * (any difference traps). */
#include "formats/formats.h"
#include <stdlib.h>
#include <string.h>

static void check(bool ok) { if (!ok) __builtin_trap(); }

static uint64_t touch_kv(const gf_kv *kv) {
    uint64_t h = strlen(kv->key);
    if (kv->type == GF_STRING) return h + kv->str_len + (kv->str[kv->str_len] == 0);
    if (kv->type != GF_ARRAY) return h + kv->v.u8;
    if (kv->arr_type == GF_STRING) {
        for (uint64_t i = 0; i < kv->n; i++) h += kv->str_lens[i] + (uint8_t)kv->strs[i][kv->str_lens[i]];
        return h;
    }
    const uint8_t *p = kv->arr;
    for (uint64_t i = 0; i < kv->n * gf_type_size(kv->arr_type); i++) h += p[i];
    return h;
}

static bool same_kv(const gf_kv *a, const gf_kv *b) {
    if (strcmp(a->key, b->key) || a->type != b->type || a->n != b->n) return false;
    if (a->type == GF_STRING) return a->str_len == b->str_len && memcmp(a->str, b->str, a->str_len) == 0;
    if (a->type != GF_ARRAY) return memcmp(&a->v, &b->v, gf_type_size(a->type)) == 0;
    if (a->arr_type != b->arr_type) return false;
    if (a->arr_type != GF_STRING) return a->n == 0 || memcmp(a->arr, b->arr, a->n * gf_type_size(a->arr_type)) == 0;
    for (uint64_t i = 0; i < a->n; i++)
        if (a->str_lens[i] != b->str_lens[i] || memcmp(a->strs[i], b->strs[i], a->str_lens[i])) return false;
    return true;
}

/* Writes f's metadata and tensors again (canonical layout) and re-reads it. */
static void reserialize(const gf_file *f) {
    qx_err e = {0};
    gf_writer *w;
    if (gf_writer_create(&w, &e) != QX_OK) return;
    for (size_t i = 0; i < gf_kv_count(f); i++) check(gf_writer_set_kv(w, gf_kv_at(f, i), &e) == QX_OK);
    for (size_t i = 0; i < gf_tensor_count(f); i++) {
        const gf_tensor *t = gf_tensor_at(f, i);
        check(gf_writer_add_tensor(w, t->name, t->type, t->n_dims ? t->n_dims : 1, t->ne, NULL, &e) == QX_OK);
    }
    check(gf_writer_plan(w, &e) == QX_OK);
    uint64_t size = gf_writer_file_size(w);
    if (size <= (4u << 20)) {
        uint8_t *hdr, *buf = calloc(1, size ? size : 1);
        uint64_t hl;
        check(buf && gf_writer_header_bytes(w, &hdr, &hl, &e) == QX_OK);
        memcpy(buf, hdr, gf_writer_data_offset(w));
        free(hdr);
        for (size_t i = 0; i < gf_tensor_count(f); i++)
            memcpy(buf + gf_writer_tensor_offset(w, i), gf_tensor_at(f, i)->data, gf_tensor_at(f, i)->nbytes);
        gf_file *g;
        check(gf_open_mem(&g, buf, size, "again.gguf", &e) == QX_OK);
        check(gf_kv_count(g) == gf_kv_count(f) && gf_tensor_count(g) == gf_tensor_count(f) && gf_offsets_canonical(g));
        for (size_t i = 0; i < gf_kv_count(f); i++) check(same_kv(gf_kv_at(f, i), gf_kv_at(g, i)));
        for (size_t i = 0; i < gf_tensor_count(f); i++) {
            const gf_tensor *a = gf_tensor_at(f, i), *b = gf_tensor_at(g, i);
            check(!strcmp(a->name, b->name) && a->type == b->type && a->nbytes == b->nbytes &&
                  !memcmp(a->ne, b->ne, sizeof a->ne) && !memcmp(a->data, b->data, a->nbytes));
        }
        gf_close(g);
        free(buf);
    }
    gf_writer_free(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    qx_err e = {0};
    gf_file *f;
    if (gf_open_mem(&f, data, size, "fuzz.gguf", &e) != QX_OK) {
        check(e.code != QX_OK && e.msg[0] != 0);
        return 0;
    }
    volatile uint64_t sink = 0;
    for (size_t i = 0; i < gf_kv_count(f); i++) {
        const gf_kv *kv = gf_kv_at(f, i);
        sink += touch_kv(kv);
        check(gf_find_kv(f, kv->key) == kv);
    }
    uint64_t end = gf_data_offset(f);
    for (size_t i = 0; i < gf_tensor_count(f); i++) {
        const gf_tensor *t = gf_tensor_at(f, i);
        check(gf_find_tensor(f, t->name) == t);
        check(t->file_offset + t->nbytes <= size && t->data == data + t->file_offset);
        if (t->file_offset + t->nbytes > end) end = t->file_offset + t->nbytes;
        sink += gf_checksum(t->data, t->nbytes);
    }
    int64_t bad;
    gf_verify_checksums(f, &bad, &e);
    if (gf_offsets_canonical(f)) reserialize(f);
    (void)sink;
    gf_close(f);
    return 0;
}
