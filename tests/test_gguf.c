/* tests/test_gguf.c — GGUF reader and writer: exact layout against bytes built by hand from
 * the format definition (../shared/GGUF-DEEPSEEK2.md §3), round trip of every KV type and
 * several tensor types, pwrite out of order and from threads, checksum header rewrite, and
 * one hand-made bad file per fault class with the exact status and message fragment. */
#include "tests/util/tu.h"
#include "formats/formats.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdint.h>
#include <unistd.h>

/* ---- an independent byte builder (not the writer under test) ---- */
typedef struct { uint8_t *p; size_t n, cap; } bb;

static void bb_put(bb *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void bb_u32(bb *b, uint32_t v) { bb_put(b, &v, 4); }
static void bb_i32(bb *b, int32_t v) { bb_put(b, &v, 4); }
static void bb_u64(bb *b, uint64_t v) { bb_put(b, &v, 8); }
static void bb_i64(bb *b, int64_t v) { bb_put(b, &v, 8); }
static void bb_str(bb *b, const char *s) { bb_u64(b, strlen(s)); bb_put(b, s, strlen(s)); }
static void bb_pad(bb *b, size_t a) { while (b->n % a) { uint8_t z = 0; bb_put(b, &z, 1); } }
static void bb_hdr(bb *b, uint32_t ver, int64_t nt, int64_t nkv) {
    bb_put(b, "GGUF", 4); bb_u32(b, ver); bb_i64(b, nt); bb_i64(b, nkv);
}
static void bb_kv_u32(bb *b, const char *k, uint32_t v) { bb_str(b, k); bb_i32(b, GF_U32); bb_u32(b, v); }
static void bb_kv_str(bb *b, const char *k, const char *v) { bb_str(b, k); bb_i32(b, GF_STRING); bb_str(b, v); }
static void bb_tinfo(bb *b, const char *name, uint32_t nd, const int64_t *ne, int32_t type, uint64_t off) {
    bb_str(b, name); bb_u32(b, nd);
    for (uint32_t i = 0; i < nd; i++) bb_i64(b, ne[i]);
    bb_i32(b, type); bb_u64(b, off);
}
static void bb_zeros(bb *b, size_t n) { for (size_t i = 0; i < n; i++) { uint8_t z = 0; bb_put(b, &z, 1); } }

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng(void) {
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return rng_state;
}
static void fill_random(uint8_t *p, size_t n) { for (size_t i = 0; i < n; i++) p[i] = (uint8_t)rng(); }

/* ---- 1. exact layout: writer bytes == hand-built bytes ---- */
static void test_layout_exact(void) {
    qx_err e = {0};
    gf_writer *w;
    TU_OK(gf_writer_create(&w, &e), &e);
    TU_OK(gf_writer_set_str(w, "general.architecture", "llama", &e), &e);
    TU_OK(gf_writer_set_u32(w, "general.alignment", 64, &e), &e);
    int64_t ne_a[2] = {32, 3}, ne_b[1] = {5}, ne_c[2] = {256, 2};
    TU_OK(gf_writer_add_tensor(w, "a", QT_Q8_0, 2, ne_a, NULL, &e), &e);    /* 3 rows * 34 B = 102 */
    TU_OK(gf_writer_add_tensor(w, "b", QT_F32, 1, ne_b, NULL, &e), &e);     /* 20 B */
    TU_OK(gf_writer_add_tensor(w, "c", QT_Q4_K, 2, ne_c, NULL, &e), &e);    /* 2 * 144 = 288 B */
    TU_OK(gf_writer_plan(w, &e), &e);

    bb b = {0};
    bb_hdr(&b, 3, 3, 2);
    bb_kv_str(&b, "general.architecture", "llama");
    bb_kv_u32(&b, "general.alignment", 64);
    bb_tinfo(&b, "a", 2, ne_a, 8, 0);
    bb_tinfo(&b, "b", 1, ne_b, 0, 128);          /* PAD(102, 64) */
    bb_tinfo(&b, "c", 2, ne_c, 12, 128 + 64);    /* + PAD(20, 64) */
    size_t hs = b.n;
    bb_pad(&b, 64);
    TU_CHECK(gf_writer_header_size(w) == hs, "header size %llu, hand-built %zu", (unsigned long long)gf_writer_header_size(w), hs);
    TU_CHECK(gf_writer_data_offset(w) == b.n, "data offset %llu, want %zu", (unsigned long long)gf_writer_data_offset(w), b.n);
    TU_CHECK(gf_writer_tensor_offset(w, 0) == b.n, "offset of a");
    TU_CHECK(gf_writer_tensor_offset(w, 1) == b.n + 128, "offset of b");
    TU_CHECK(gf_writer_tensor_offset(w, 2) == b.n + 192, "offset of c");
    TU_CHECK(gf_writer_tensor_nbytes(w, 0) == 102 && gf_writer_tensor_nbytes(w, 1) == 20 && gf_writer_tensor_nbytes(w, 2) == 288,
             "nbytes");
    TU_CHECK(gf_writer_file_size(w) == b.n + 192 + 320, "file size %llu want %zu", (unsigned long long)gf_writer_file_size(w),
             b.n + 512);
    uint8_t *hdr;
    uint64_t hl;
    TU_OK(gf_writer_header_bytes(w, &hdr, &hl, &e), &e);
    TU_CHECK(hl == hs && memcmp(hdr, b.p, hs) == 0, "header bytes differ from the hand-built header");

    /* whole file: data with zero padding between */
    uint8_t da[102], db[20], dc[288];
    fill_random(da, sizeof da); fill_random(db, sizeof db); fill_random(dc, sizeof dc);
    bb_put(&b, da, 102); bb_zeros(&b, 26); bb_put(&b, db, 20); bb_zeros(&b, 44); bb_put(&b, dc, 288); bb_zeros(&b, 32);
    char path[512];
    snprintf(path, sizeof path, "%s/layout.gguf", tu_tmpdir());
    const void *data[3] = {da, db, dc};
    TU_OK(gf_writer_write_file(w, path, data, &e), &e);
    size_t n;
    uint8_t *got = tu_read_file(path, &n);
    TU_CHECK(got && n == b.n && memcmp(got, b.p, n) == 0, "file bytes differ from the hand-built file (%zu vs %zu)", n, b.n);
    free(got);
    free(hdr);
    free(b.p);
    gf_writer_free(w);
}

/* ---- 2. round trip of every KV type and several tensor types ---- */
static const char *const STRS[] = {"alpha", "", "ünïcode ✓", "a b"};

static gf_writer *build_roundtrip(qx_err *e, uint8_t **tdata, size_t *nt, bool checksums) {
    gf_writer *w;
    gf_writer_create(&w, e);
    uint8_t u8 = 250; int8_t i8 = -7; uint16_t u16 = 65000; int16_t i16 = -30000;
    int64_t i64 = -1234567890123ll; double f64 = 3.25e-300;
    gf_writer_set(w, "t.u8", GF_U8, &u8, e);
    gf_writer_set(w, "t.i8", GF_I8, &i8, e);
    gf_writer_set(w, "t.u16", GF_U16, &u16, e);
    gf_writer_set(w, "t.i16", GF_I16, &i16, e);
    gf_writer_set_u32(w, "t.u32", 4000000000u, e);
    gf_writer_set_i32(w, "t.i32", -2000000000, e);
    gf_writer_set_f32(w, "t.f32", 1.5f, e);
    gf_writer_set_bool(w, "t.bool", true, e);
    gf_writer_set_str(w, "t.str", "hello", e);
    gf_writer_set_u64(w, "t.u64", 0xFEDCBA9876543210ull, e);
    gf_writer_set(w, "t.i64", GF_I64, &i64, e);
    gf_writer_set(w, "t.f64", GF_F64, &f64, e);
    uint8_t a_u8[3] = {1, 2, 255}; int8_t a_i8[2] = {-1, 1}; uint16_t a_u16[2] = {7, 65535}; int16_t a_i16[1] = {-5};
    uint32_t a_u32[4] = {0, 1, 2, 0xFFFFFFFFu}; int32_t a_i32[3] = {1, 3, 5}; float a_f32[2] = {0.25f, -8.0f};
    uint8_t a_b[3] = {1, 0, 1}; uint64_t a_u64[2] = {1, UINT64_MAX}; int64_t a_i64[2] = {INT64_MIN, 9}; double a_f64[1] = {-0.5};
    gf_writer_set_arr(w, "a.u8", GF_U8, a_u8, 3, e);
    gf_writer_set_arr(w, "a.i8", GF_I8, a_i8, 2, e);
    gf_writer_set_arr(w, "a.u16", GF_U16, a_u16, 2, e);
    gf_writer_set_arr(w, "a.i16", GF_I16, a_i16, 1, e);
    gf_writer_set_arr(w, "a.u32", GF_U32, a_u32, 4, e);
    gf_writer_set_arr(w, "a.i32", GF_I32, a_i32, 3, e);
    gf_writer_set_arr(w, "a.f32", GF_F32, a_f32, 2, e);
    gf_writer_set_arr(w, "a.bool", GF_BOOL, a_b, 3, e);
    gf_writer_set_str_arr(w, "a.str", STRS, 4, e);
    gf_writer_set_arr(w, "a.u64", GF_U64, a_u64, 2, e);
    gf_writer_set_arr(w, "a.i64", GF_I64, a_i64, 2, e);
    gf_writer_set_arr(w, "a.f64", GF_F64, a_f64, 1, e);
    gf_writer_set_arr(w, "a.empty", GF_U32, NULL, 0, e);
    gf_writer_set_u32(w, "t.replaced", 1, e);
    gf_writer_set_str(w, "t.replaced", "now a string", e);   /* replaces in place */
    if (checksums) gf_writer_reserve_checksums(w, e);
    static const struct { const char *name; qt_type t; int nd; int64_t ne[4]; } T[] = {
        {"token_embd.weight", QT_F16, 2, {64, 10, 1, 1}},
        {"blk.0.attn_norm.weight", QT_F32, 1, {64, 1, 1, 1}},
        {"blk.0.ffn_down_exps.weight", QT_Q4_K, 3, {256, 4, 3, 1}},
        {"blk.0.attn_q.weight", QT_Q8_0, 2, {96, 7, 1, 1}},
        {"blk.0.x.weight", QT_BF16, 4, {8, 3, 2, 2}},
        {"output.weight", QT_Q6_K, 2, {512, 3, 1, 1}},
    };
    *nt = sizeof T / sizeof T[0];
    for (size_t i = 0; i < *nt; i++) {
        size_t idx = 99;
        gf_writer_add_tensor(w, T[i].name, T[i].t, T[i].nd, T[i].ne, &idx, e);
        TU_CHECK(idx == i, "index %zu for tensor %zu", idx, i);
    }
    for (size_t i = 0; i < *nt; i++) {
        uint64_t nb = qt_row_size(T[i].t, T[i].ne[0]) * (uint64_t)(T[i].ne[1] * T[i].ne[2] * T[i].ne[3]);
        tdata[i] = malloc(nb);
        fill_random(tdata[i], nb);
    }
    return w;
}

static void test_roundtrip(void) {
    qx_err e = {0};
    uint8_t *td[8];
    size_t nt;
    gf_writer *w = build_roundtrip(&e, td, &nt, true);
    TU_CHECK(e.code == QX_OK, "building: %s", e.msg);
    char path[512];
    snprintf(path, sizeof path, "%s/rt.gguf", tu_tmpdir());
    TU_OK(gf_writer_write_file(w, path, (const void *const *)td, &e), &e);
    gf_file *f;
    TU_OK(gf_open(&f, path, &e), &e);
    if (!f) { gf_writer_free(w); return; }
    TU_CHECK(gf_version(f) == 3 && gf_alignment(f) == 32 && gf_offsets_canonical(f), "version/alignment/canonical");
    TU_CHECK(gf_kv_count(f) == 27, "kv count %zu", gf_kv_count(f));
    uint32_t u32; int32_t i32; uint64_t u64; float f32; bool b; const char *s;
    TU_OK(gf_get_u32(f, "t.u32", &u32, &e), &e); TU_CHECK(u32 == 4000000000u, "u32");
    TU_OK(gf_get_i32(f, "t.i32", &i32, &e), &e); TU_CHECK(i32 == -2000000000, "i32");
    TU_OK(gf_get_u64(f, "t.u64", &u64, &e), &e); TU_CHECK(u64 == 0xFEDCBA9876543210ull, "u64");
    TU_OK(gf_get_f32(f, "t.f32", &f32, &e), &e); TU_CHECK(f32 == 1.5f, "f32");
    TU_OK(gf_get_bool(f, "t.bool", &b, &e), &e); TU_CHECK(b, "bool");
    TU_OK(gf_get_str(f, "t.str", &s, &e), &e); TU_CHECK(strcmp(s, "hello") == 0, "str");
    TU_OK(gf_get_str(f, "t.replaced", &s, &e), &e); TU_CHECK(strcmp(s, "now a string") == 0, "replaced");
    TU_CHECK(strcmp(gf_kv_at(f, 25)->key, "t.replaced") == 0 && gf_kv_at(f, 25)->type == GF_STRING, "replaced key kept its place");
    const gf_kv *kv;
    kv = gf_find_kv(f, "t.u8"); TU_CHECK(kv && kv->type == GF_U8 && kv->v.u8 == 250, "u8");
    kv = gf_find_kv(f, "t.i8"); TU_CHECK(kv && kv->type == GF_I8 && kv->v.i8 == -7, "i8");
    kv = gf_find_kv(f, "t.u16"); TU_CHECK(kv && kv->type == GF_U16 && kv->v.u16 == 65000, "u16");
    kv = gf_find_kv(f, "t.i16"); TU_CHECK(kv && kv->type == GF_I16 && kv->v.i16 == -30000, "i16");
    kv = gf_find_kv(f, "t.i64"); TU_CHECK(kv && kv->type == GF_I64 && kv->v.i64 == -1234567890123ll, "i64");
    kv = gf_find_kv(f, "t.f64"); TU_CHECK(kv && kv->type == GF_F64 && kv->v.f64 == 3.25e-300, "f64");
    TU_FAILS(gf_get_u32(f, "t.i32", &u32, &e), &e, QX_EFORMAT, "key 't.i32' has type i32, expected u32");
    TU_FAILS(gf_get_u32(f, "nope", &u32, &e), &e, QX_ENOTFOUND, "key 'nope' not found");
    const void *arr; uint64_t n;
    TU_OK(gf_get_arr(f, "a.u8", GF_U8, &arr, &n, &e), &e); TU_CHECK(n == 3 && memcmp(arr, (uint8_t[]){1, 2, 255}, 3) == 0, "a.u8");
    TU_OK(gf_get_arr(f, "a.i8", GF_I8, &arr, &n, &e), &e); TU_CHECK(n == 2 && ((const int8_t *)arr)[0] == -1, "a.i8");
    TU_OK(gf_get_arr(f, "a.u16", GF_U16, &arr, &n, &e), &e); TU_CHECK(n == 2 && ((const uint16_t *)arr)[1] == 65535, "a.u16");
    TU_OK(gf_get_arr(f, "a.i16", GF_I16, &arr, &n, &e), &e); TU_CHECK(n == 1 && ((const int16_t *)arr)[0] == -5, "a.i16");
    TU_OK(gf_get_arr(f, "a.u32", GF_U32, &arr, &n, &e), &e); TU_CHECK(n == 4 && ((const uint32_t *)arr)[3] == 0xFFFFFFFFu, "a.u32");
    TU_OK(gf_get_arr(f, "a.i32", GF_I32, &arr, &n, &e), &e); TU_CHECK(n == 3 && ((const int32_t *)arr)[2] == 5, "a.i32");
    TU_OK(gf_get_arr(f, "a.f32", GF_F32, &arr, &n, &e), &e); TU_CHECK(n == 2 && ((const float *)arr)[1] == -8.0f, "a.f32");
    TU_OK(gf_get_arr(f, "a.bool", GF_BOOL, &arr, &n, &e), &e); TU_CHECK(n == 3 && memcmp(arr, (uint8_t[]){1, 0, 1}, 3) == 0, "a.bool");
    TU_OK(gf_get_arr(f, "a.u64", GF_U64, &arr, &n, &e), &e); TU_CHECK(n == 2 && ((const uint64_t *)arr)[1] == UINT64_MAX, "a.u64");
    TU_OK(gf_get_arr(f, "a.i64", GF_I64, &arr, &n, &e), &e); TU_CHECK(n == 2 && ((const int64_t *)arr)[0] == INT64_MIN, "a.i64");
    TU_OK(gf_get_arr(f, "a.f64", GF_F64, &arr, &n, &e), &e); TU_CHECK(n == 1 && ((const double *)arr)[0] == -0.5, "a.f64");
    TU_OK(gf_get_arr(f, "a.empty", GF_U32, &arr, &n, &e), &e); TU_CHECK(n == 0, "a.empty");
    TU_FAILS(gf_get_arr(f, "a.u32", GF_I32, &arr, &n, &e), &e, QX_EFORMAT, "array of u32, expected array of i32");
    const char *const *strs;
    TU_OK(gf_get_str_arr(f, "a.str", &strs, &n, &e), &e);
    TU_CHECK(n == 4, "a.str n");
    for (uint64_t i = 0; i < n && i < 4; i++) TU_CHECK(strcmp(strs[i], STRS[i]) == 0, "a.str[%llu]", (unsigned long long)i);
    TU_CHECK(gf_tensor_count(f) == nt, "tensor count");
    for (size_t i = 0; i < nt; i++) {
        const gf_tensor *t = gf_tensor_at(f, i);
        TU_CHECK(strcmp(t->name, gf_writer_tensor_name(w, i)) == 0, "name %zu", i);
        TU_CHECK(gf_find_tensor(f, t->name) == t, "find %s", t->name);
        TU_CHECK(t->nbytes == gf_writer_tensor_nbytes(w, i) && t->file_offset == gf_writer_tensor_offset(w, i),
                 "tensor %s size/offset", t->name);
        TU_CHECK(memcmp(t->data, td[i], t->nbytes) == 0, "tensor %s bytes", t->name);
    }
    const gf_tensor *t = gf_find_tensor(f, "blk.0.ffn_down_exps.weight");
    TU_CHECK(t && t->type == QT_Q4_K && t->n_dims == 3 && t->ne[0] == 256 && t->ne[1] == 4 && t->ne[2] == 3 && t->ne[3] == 1 &&
             t->nbytes == 144 * 12, "stacked tensor info");
    t = gf_find_tensor(f, "blk.0.x.weight");
    TU_CHECK(t && t->n_dims == 4 && t->ne[3] == 2 && t->n_elems == 96 && t->nbytes == 192, "4-d tensor");
    TU_CHECK(gf_find_tensor(f, "missing") == NULL, "missing tensor");
    TU_CHECK(gf_file_size(f) == gf_writer_file_size(w), "file size");
    int64_t bad = 0;
    TU_OK(gf_verify_checksums(f, &bad, &e), &e);
    TU_CHECK(bad == -1, "bad tensor %lld", (long long)bad);

    /* copy every KV through gf_writer_set_kv: the header bytes must be identical */
    gf_writer *w2;
    TU_OK(gf_writer_create(&w2, &e), &e);
    for (size_t i = 0; i < gf_kv_count(f); i++) TU_OK(gf_writer_set_kv(w2, gf_kv_at(f, i), &e), &e);
    for (size_t i = 0; i < gf_tensor_count(f); i++) {
        const gf_tensor *ti = gf_tensor_at(f, i);
        TU_OK(gf_writer_add_tensor(w2, ti->name, ti->type, ti->n_dims, ti->ne, NULL, &e), &e);
    }
    TU_OK(gf_writer_plan(w2, &e), &e);
    uint8_t *h2; uint64_t l2;
    TU_OK(gf_writer_header_bytes(w2, &h2, &l2, &e), &e);
    size_t flen;
    uint8_t *fbytes = tu_read_file(path, &flen);
    TU_CHECK(fbytes && l2 <= flen && memcmp(h2, fbytes, l2) == 0, "copied metadata gives the same header");
    free(fbytes);
    free(h2);
    gf_writer_free(w2);

    /* a corrupted byte is reported naming the tensor */
    size_t len;
    uint8_t *bytes = tu_read_file(path, &len);
    const gf_tensor *t5 = gf_tensor_at(f, 5);
    bytes[t5->file_offset + 7] ^= 0x40;
    gf_file *g;
    TU_OK(gf_open_mem(&g, bytes, len, "corrupt.gguf", &e), &e);
    if (g) {
        TU_FAILS(gf_verify_checksums(g, &bad, &e), &e, QX_EFORMAT, "tensor 'output.weight': checksum mismatch");
        TU_CHECK(bad == 5, "bad index %lld", (long long)bad);
        gf_close(g);
    }
    free(bytes);
    gf_close(f);
    for (size_t i = 0; i < nt; i++) free(td[i]);
    gf_writer_free(w);
}

/* ---- 3. pwrite in any order, from threads, with a header rewrite ---- */
typedef struct { const gf_writer *w; int fd; uint8_t **td; size_t nt; int tid, nthreads; qx_status s; } job;

static void *worker(void *arg) {
    job *j = arg;
    qx_err e = {0};
    /* reverse order, tensor i by thread i % n, each tensor in two halves written back to front */
    for (size_t k = j->nt; k-- > 0;) {
        if ((int)(k % (size_t)j->nthreads) != j->tid) continue;
        uint64_t nb = gf_writer_tensor_nbytes(j->w, k), h = nb / 2;
        qx_status s = gf_writer_pwrite(j->w, j->fd, "mt.gguf", k, h, j->td[k] + h, nb - h, &e);
        if (s == QX_OK) s = gf_writer_pwrite(j->w, j->fd, "mt.gguf", k, 0, j->td[k], h, &e);
        if (s != QX_OK) j->s = s;
    }
    return NULL;
}

static void test_pwrite_threads(void) {
    qx_err e = {0};
    uint8_t *td[8];
    size_t nt;
    rng_state = 12345;
    gf_writer *w1 = build_roundtrip(&e, td, &nt, true);
    char p1[512], p2[512];
    snprintf(p1, sizeof p1, "%s/seq.gguf", tu_tmpdir());
    snprintf(p2, sizeof p2, "%s/mt.gguf", tu_tmpdir());
    TU_OK(gf_writer_write_file(w1, p1, (const void *const *)td, &e), &e);

    for (size_t i = 0; i < nt; i++) free(td[i]);
    rng_state = 12345;
    gf_writer *w = build_roundtrip(&e, td, &nt, true);
    TU_OK(gf_writer_plan(w, &e), &e);
    int fd = open(p2, O_RDWR | O_CREAT | O_TRUNC, 0644);
    TU_OK(gf_writer_write_header(w, fd, p2, &e), &e);
    pthread_t th[3];
    job jobs[3];
    for (int i = 0; i < 3; i++) {
        jobs[i] = (job){w, fd, td, nt, i, 3, QX_OK};
        pthread_create(&th[i], NULL, worker, &jobs[i]);
    }
    for (int i = 0; i < 3; i++) { pthread_join(th[i], NULL); TU_CHECK(jobs[i].s == QX_OK, "thread %d", i); }
    for (size_t i = 0; i < nt; i++) TU_OK(gf_writer_set_checksum(w, i, gf_checksum(td[i], gf_writer_tensor_nbytes(w, i)), &e), &e);
    TU_OK(gf_writer_rewrite_header(w, fd, p2, &e), &e);
    close(fd);
    size_t n1, n2;
    uint8_t *b1 = tu_read_file(p1, &n1), *b2 = tu_read_file(p2, &n2);
    TU_CHECK(b1 && b2 && n1 == n2 && memcmp(b1, b2, n1) == 0, "threaded out-of-order file differs from sequential (%zu vs %zu)", n1, n2);
    /* the checksums really are in the header: an all-zero reservation would differ */
    gf_file *f;
    TU_OK(gf_open_mem(&f, b2, n2, "mt.gguf", &e), &e);
    if (f) {
        const void *arr; uint64_t n;
        TU_OK(gf_get_arr(f, GF_KEY_TENSOR_XXH3, GF_U64, &arr, &n, &e), &e);
        TU_CHECK(n == nt && ((const uint64_t *)arr)[2] == gf_checksum(td[2], gf_tensor_at(f, 2)->nbytes), "stored checksum");
        gf_close(f);
    }

    /* misuse and bounds */
    TU_FAILS(gf_writer_pwrite(w, 1, "x.gguf", 0, gf_writer_tensor_nbytes(w, 0), td[0], 1, &e), &e, QX_EINVAL,
             "tensor 'token_embd.weight': write");
    TU_FAILS(gf_writer_set_str(w, "t.str", "longer string now", &e), &e, QX_EINVAL, "after the plan");
    TU_FAILS(gf_writer_set_u32(w, "t.new", 1, &e), &e, QX_EINVAL, "after the plan");
    TU_OK(gf_writer_set_u32(w, "t.u32", 7, &e), &e);   /* fixed-size value of an existing key: allowed */
    int64_t ne[1] = {32};
    TU_FAILS(gf_writer_add_tensor(w, "late", QT_F32, 1, ne, NULL, &e), &e, QX_EINVAL, "after the plan");
    /* a write error names the file and the tensor (read-only fd) */
    int rfd = open(p1, O_RDONLY);
    TU_FAILS(gf_writer_pwrite(w, rfd, "ro.gguf", 1, 0, td[1], 4, &e), &e, QX_EIO, "ro.gguf: writing tensor 'blk.0.attn_norm.weight'");
    close(rfd);
    /* ENOSPC: /dev/full if present */
    int ffd = open("/dev/full", O_WRONLY);
    if (ffd >= 0) {
        TU_FAILS(gf_writer_pwrite(w, ffd, "full.gguf", 2, 0, td[2], 100, &e), &e, QX_ENOSPC,
                 "full.gguf: writing tensor 'blk.0.ffn_down_exps.weight'");
        close(ffd);
    }
    /* EFBIG (file size limit) is reported as QX_ENOSPC naming the file */
    struct rlimit old_lim;
    if (getrlimit(RLIMIT_FSIZE, &old_lim) == 0) {
        struct rlimit lim = old_lim;
        lim.rlim_cur = 1024;
        void (*old_sig)(int) = signal(SIGXFSZ, SIG_IGN);
        if (setrlimit(RLIMIT_FSIZE, &lim) == 0) {
            char p3[512];
            snprintf(p3, sizeof p3, "%s/big.gguf", tu_tmpdir());
            int bfd = open(p3, O_RDWR | O_CREAT | O_TRUNC, 0644);
            qx_status s3 = gf_writer_write_header(w, bfd, p3, &e);
            setrlimit(RLIMIT_FSIZE, &old_lim);
            TU_FAILS(s3, &e, QX_ENOSPC, "big.gguf: ");
            close(bfd);
        }
        signal(SIGXFSZ, old_sig);
    }
    free(b1); free(b2);
    for (size_t i = 0; i < nt; i++) free(td[i]);
    gf_writer_free(w1);
    gf_writer_free(w);
}

/* ---- 4. writer argument checks ---- */
static void test_writer_rejects(void) {
    qx_err e = {0};
    gf_writer *w;
    TU_OK(gf_writer_create(&w, &e), &e);
    int64_t ne[2] = {33, 2}, ok_ne[2] = {32, 2}, neg[2] = {32, -1};
    TU_FAILS(gf_writer_add_tensor(w, "q", QT_Q8_0, 2, ne, NULL, &e), &e, QX_ESHAPE, "ne[0] = 33 is not a multiple of the Q8_0 block size 32");
    TU_FAILS(gf_writer_add_tensor(w, "q", QT_F32, 5, ne, NULL, &e), &e, QX_EINVAL, "n_dims 5");
    TU_FAILS(gf_writer_add_tensor(w, "q", QT_F32, 2, neg, NULL, &e), &e, QX_EINVAL, "ne[1] = -1");
    TU_FAILS(gf_writer_add_tensor(w, "q", QT_F8_E4M3, 2, ok_ne, NULL, &e), &e, QX_EINVAL, "not a GGUF type");
    TU_FAILS(gf_writer_add_tensor(w, "0123456789012345678901234567890123456789012345678901234567890123", QT_F32, 2, ok_ne, NULL, &e),
             &e, QX_EINVAL, "must be < 64");
    TU_OK(gf_writer_add_tensor(w, "q", QT_F32, 2, ok_ne, NULL, &e), &e);
    TU_FAILS(gf_writer_add_tensor(w, "q", QT_F32, 2, ok_ne, NULL, &e), &e, QX_EINVAL, "duplicate tensor name 'q'");
    TU_FAILS(gf_writer_set_u32(w, "general.alignment", 48, &e), &e, QX_EINVAL, "not a power of two");
    TU_FAILS(gf_writer_set_i32(w, "general.alignment", 64, &e), &e, QX_EINVAL, "must be u32");
    TU_FAILS(gf_writer_set_str(w, "", "x", &e), &e, QX_EINVAL, "empty key");
    TU_FAILS(gf_writer_set(w, "k", GF_STRING, "x", &e), &e, QX_EINVAL, "not a scalar type");
    TU_FAILS(gf_writer_set_arr(w, "k", GF_ARRAY, NULL, 0, &e), &e, QX_EINVAL, "not fixed-size");
    /* many tensors: the name index must stay exact */
    for (int i = 0; i < 3000; i++) {
        char nm[32];
        snprintf(nm, sizeof nm, "blk.%d.w", i);
        qx_status s = gf_writer_add_tensor(w, nm, QT_F32, 1, ok_ne, NULL, &e);
        if (s != QX_OK) { TU_OK(s, &e); break; }
    }
    TU_CHECK(gf_writer_find_tensor(w, "blk.2999.w") == 3000 && gf_writer_find_tensor(w, "q") == 0 &&
             gf_writer_find_tensor(w, "blk.3000.w") == -1, "find_tensor");
    TU_FAILS(gf_writer_add_tensor(w, "blk.1234.w", QT_F32, 2, ok_ne, NULL, &e), &e, QX_EINVAL, "duplicate tensor name 'blk.1234.w'");
    gf_writer_free(w);
}

/* ---- 5. one bad file per fault class ---- */
static qx_status open_bb(bb *b, gf_file **f, qx_err *e) {
    qx_status s = gf_open_mem(f, b->p, b->n, "bad.gguf", e);
    if (*f) gf_close(*f);
    free(b->p);
    memset(b, 0, sizeof *b);
    return s;
}

/* A valid one-tensor file with a KV: start point for tensor-level faults. */
static void tensor_file(bb *b, const char *name, uint32_t nd, const int64_t *ne, int32_t type, uint64_t off, size_t data_bytes) {
    bb_hdr(b, 3, 1, 1);
    bb_kv_u32(b, "k", 1);
    bb_tinfo(b, name, nd, ne, type, off);
    bb_pad(b, 32);
    bb_zeros(b, data_bytes);
}

static void test_bad_files(void) {
    qx_err e = {0};
    gf_file *f;
    bb b = {0};
    int64_t ne2[2] = {32, 2};

    /* sanity: the base file is valid */
    tensor_file(&b, "w", 2, ne2, 0, 0, 256);
    TU_OK(open_bb(&b, &f, &e), &e);

    bb_put(&b, "GGUX", 4); bb_u32(&b, 3); bb_i64(&b, 0); bb_i64(&b, 0);
    TU_FAILS(open_bb(&b, &f, &e), &e, QX_EFORMAT, "bad.gguf: not a GGUF file (magic 'GGUX')");
    bb_put(&b, "GG", 2);
    TU_FAILS(open_bb(&b, &f, &e), &e, QX_EFORMAT, "not a GGUF file (2 bytes)");
    bb_hdr(&b, 1, 0, 0);
    TU_FAILS(open_bb(&b, &f, &e), &e, QX_EUNSUPPORTED, "GGUF version 1 is not supported");
    bb_hdr(&b, 0x03000000u, 0, 0);
    TU_FAILS(open_bb(&b, &f, &e), &e, QX_EUNSUPPORTED, "big-endian");
    bb_hdr(&b, 2, 0, 0);
    TU_OK(open_bb(&b, &f, &e), &e);   /* v2 has the same layout */
    bb_put(&b, "GGUF", 4); bb_u32(&b, 3); bb_i64(&b, 0);
    TU_FAILS(open_bb(&b, &f, &e), &e, QX_EFORMAT, "truncated: key count needs 8 bytes");
    bb_hdr(&b, 3, 0, -1);
    TU_FAILS(open_bb(&b, &f, &e), &e, QX_EFORMAT, "key count -1 cannot fit");
    bb_hdr(&b, 3, 0, 1000000);
    TU_FAILS(open_bb(&b, &f, &e), &e, QX_EFORMAT, "key count 1000000 cannot fit in the 0 bytes left");
    bb_hdr(&b, 3, INT64_MAX, 0);
    TU_FAILS(open_bb(&b, &f, &e), &e, QX_EFORMAT, "tensor count 9223372036854775807 cannot fit");
    /* string length larger than the file */
    bb_hdr(&b, 3, 0, 1); bb_u64(&b, 1000); bb_put(&b, "abcdefghijklmn", 14);
    TU_FAILS(open_bb(&b, &f, &e), &e, QX_EFORMAT, "truncated: key 0 needs 1000 bytes");
    bb_hdr(&b, 3, 0, 1); bb_u64(&b, (1ull << 30) + 1); bb_zeros(&b, 14);
    TU_FAILS(open_bb(&b, &f, &e), &e, QX_EFORMAT, "string length 1073741825 exceeds the limit");
    bb_hdr(&b, 3, 0, 1); bb_str(&b, ""); bb_i32(&b, GF_U8); bb_zeros(&b, 8);
    TU_FAILS(open_bb(&b, &f, &e), &e, QX_EFORMAT, "key 0 is empty");
    bb_hdr(&b, 3, 0, 2); bb_kv_u32(&b, "dup.key", 1); bb_kv_str(&b, "dup.key", "x");
    TU_FAILS(open_bb(&b, &f, &e), &e, QX_EFORMAT, "duplicate key 'dup.key' (pairs 0 and 1)");
    bb_hdr(&b, 3, 0, 1); bb_str(&b, "bad.type"); bb_i32(&b, 13); bb_u64(&b, 0);
    TU_FAILS(open_bb(&b, &f, &e), &e, QX_EFORMAT, "key 'bad.type': invalid value type 13");
    bb_hdr(&b, 3, 0, 1); bb_str(&b, "neg.type"); bb_i32(&b, -1); bb_u64(&b, 0);
    TU_FAILS(open_bb(&b, &f, &e), &e, QX_EFORMAT, "key 'neg.type': invalid value type -1");
    bb_hdr(&b, 3, 0, 1); bb_str(&b, "nest"); bb_i32(&b, GF_ARRAY); bb_i32(&b, GF_ARRAY); bb_u64(&b, 1); bb_zeros(&b, 16);
    TU_FAILS(open_bb(&b, &f, &e), &e, QX_EFORMAT, "key 'nest': nested arrays are not allowed");
    bb_hdr(&b, 3, 0, 1); bb_str(&b, "arr"); bb_i32(&b, GF_ARRAY); bb_i32(&b, 77); bb_u64(&b, 1); bb_zeros(&b, 16);
    TU_FAILS(open_bb(&b, &f, &e), &e, QX_EFORMAT, "key 'arr': invalid array element type 77");
    bb_hdr(&b, 3, 0, 1); bb_str(&b, "big"); bb_i32(&b, GF_ARRAY); bb_i32(&b, GF_U32); bb_u64(&b, 1ull << 60); bb_zeros(&b, 16);
    TU_FAILS(open_bb(&b, &f, &e), &e, QX_EFORMAT, "key 'big': array of 1152921504606846976 u32 cannot fit in the 16 bytes left");
    bb_hdr(&b, 3, 0, 1); bb_str(&b, "bigs"); bb_i32(&b, GF_ARRAY); bb_i32(&b, GF_STRING); bb_u64(&b, 3); bb_zeros(&b, 16);
    TU_FAILS(open_bb(&b, &f, &e), &e, QX_EFORMAT, "key 'bigs': array of 3 strings cannot fit in the 16 bytes left");
    bb_hdr(&b, 3, 0, 1); bb_str(&b, "flag"); bb_i32(&b, GF_BOOL); { uint8_t two = 2; bb_put(&b, &two, 1); }
    TU_FAILS(open_bb(&b, &f, &e), &e, QX_EFORMAT, "key 'flag': bool value 2");
    bb_hdr(&b, 3, 0, 1); bb_str(&b, "flags"); bb_i32(&b, GF_ARRAY); bb_i32(&b, GF_BOOL); bb_u64(&b, 2); bb_put(&b, "\x01\x05", 2);
    TU_FAILS(open_bb(&b, &f, &e), &e, QX_EFORMAT, "key 'flags': bool element 1 has value 5");
    bb_hdr(&b, 3, 0, 1); bb_str(&b, "trunc"); bb_i32(&b, GF_U64); bb_zeros(&b, 3);
    TU_FAILS(open_bb(&b, &f, &e), &e, QX_EFORMAT, "truncated: trunc needs 8 bytes");
    /* alignment */
    bb_hdr(&b, 3, 0, 1); bb_str(&b, "general.alignment"); bb_i32(&b, GF_U64); bb_u64(&b, 32);
    TU_FAILS(open_bb(&b, &f, &e), &e, QX_EFORMAT, "key 'general.alignment' has type u64 (must be u32)");
    bb_hdr(&b, 3, 0, 1); bb_kv_u32(&b, "general.alignment", 48);
    TU_FAILS(open_bb(&b, &f, &e), &e, QX_EFORMAT, "general.alignment = 48 is not a power of two");
    bb_hdr(&b, 3, 0, 1); bb_kv_u32(&b, "general.alignment", 0);
    TU_FAILS(open_bb(&b, &f, &e), &e, QX_EFORMAT, "general.alignment = 0 is not a power of two");
    /* tensor infos */
    tensor_file(&b, "", 2, ne2, 0, 0, 256);
    TU_FAILS(open_bb(&b, &f, &e), &e, QX_EFORMAT, "tensor 0 has an empty name");
    tensor_file(&b, "0123456789012345678901234567890123456789012345678901234567890123", 2, ne2, 0, 0, 256);
    TU_FAILS(open_bb(&b, &f, &e), &e, QX_EFORMAT, "is 64 bytes (must be < 64)");
    tensor_file(&b, "w", 5, (int64_t[]){32, 2, 1, 1, 1}, 0, 0, 256);
    TU_FAILS(open_bb(&b, &f, &e), &e, QX_EFORMAT, "tensor 'w': n_dims 5 > 4");
    tensor_file(&b, "w", 2, (int64_t[]){32, -2}, 0, 0, 256);
    TU_FAILS(open_bb(&b, &f, &e), &e, QX_EFORMAT, "tensor 'w': ne[1] = -2 (must be > 0)");
    tensor_file(&b, "w", 2, (int64_t[]){32, 0}, 0, 0, 256);
    TU_FAILS(open_bb(&b, &f, &e), &e, QX_EFORMAT, "tensor 'w': ne[1] = 0 (must be > 0)");
    tensor_file(&b, "w", 3, (int64_t[]){1ll << 32, 1ll << 31, 4}, 0, 0, 256);
    TU_FAILS(open_bb(&b, &f, &e), &e, QX_EFORMAT, "tensor 'w': element count overflows int64");
    tensor_file(&b, "w", 4, (int64_t[]){1ll << 40, 1ll << 20, 1, 1}, 2, 0, 256);   /* Q4_0: elements fit, bytes do not */
    TU_FAILS(open_bb(&b, &f, &e), &e, QX_EFORMAT, "runs past the end of the file");
    tensor_file(&b, "w", 2, ne2, 4, 0, 256);
    TU_FAILS(open_bb(&b, &f, &e), &e, QX_EUNSUPPORTED, "tensor 'w': ggml type 4 is not supported");
    tensor_file(&b, "w", 2, ne2, 1000, 0, 256);
    TU_FAILS(open_bb(&b, &f, &e), &e, QX_EFORMAT, "tensor 'w': invalid ggml type 1000");
    tensor_file(&b, "w", 2, (int64_t[]){48, 2}, 8, 0, 256);
    TU_FAILS(open_bb(&b, &f, &e), &e, QX_EFORMAT, "tensor 'w': ne[0] = 48 is not a multiple of the Q8_0 block size 32");
    tensor_file(&b, "w", 2, ne2, 0, 16, 512);
    TU_FAILS(open_bb(&b, &f, &e), &e, QX_EFORMAT, "tensor 'w': offset 16 is not a multiple of the alignment 32");
    tensor_file(&b, "w", 2, ne2, 0, 0, 255);
    TU_FAILS(open_bb(&b, &f, &e), &e, QX_EFORMAT, "tensor 'w': data [0, +256) runs past the end of the file (data section 255 bytes)");
    tensor_file(&b, "w", 2, ne2, 0, UINT64_MAX - 31, 256);
    TU_FAILS(open_bb(&b, &f, &e), &e, QX_EFORMAT, "runs past the end of the file");
    /* header ends, padding to the data section missing */
    bb_hdr(&b, 3, 1, 0); bb_tinfo(&b, "w", 1, (int64_t[]){1}, 0, 0);
    TU_FAILS(open_bb(&b, &f, &e), &e, QX_EFORMAT, "truncated: data section would start at");
    /* truncated inside the tensor infos */
    bb_hdr(&b, 3, 2, 0); bb_tinfo(&b, "w", 1, (int64_t[]){1}, 0, 0); bb_str(&b, "v"); bb_u32(&b, 2); bb_i64(&b, 8); bb_zeros(&b, 4);
    TU_FAILS(open_bb(&b, &f, &e), &e, QX_EFORMAT, "truncated: v needs 8 bytes");
    /* duplicate tensor names */
    bb_hdr(&b, 3, 2, 0); bb_tinfo(&b, "w", 1, (int64_t[]){8}, 0, 0); bb_tinfo(&b, "w", 1, (int64_t[]){8}, 0, 32); bb_pad(&b, 32);
    bb_zeros(&b, 64);
    TU_FAILS(open_bb(&b, &f, &e), &e, QX_EFORMAT, "duplicate tensor name 'w' (tensors 0 and 1)");
    /* overlapping tensors (non-canonical layout) */
    bb_hdr(&b, 3, 2, 0); bb_tinfo(&b, "a", 1, (int64_t[]){16}, 0, 0); bb_tinfo(&b, "b", 1, (int64_t[]){8}, 0, 32); bb_pad(&b, 32);
    bb_zeros(&b, 96);
    TU_FAILS(open_bb(&b, &f, &e), &e, QX_EFORMAT, "tensor 'a' [0, +64) overlaps tensor 'b' at 32");
    /* non-canonical but valid: accepted and reported */
    bb_hdr(&b, 3, 2, 0); bb_tinfo(&b, "a", 1, (int64_t[]){8}, 0, 64); bb_tinfo(&b, "b", 1, (int64_t[]){8}, 0, 0); bb_pad(&b, 32);
    size_t doff = b.n;
    bb_zeros(&b, 96);
    TU_OK(gf_open_mem(&f, b.p, b.n, "perm.gguf", &e), &e);
    if (f) {
        TU_CHECK(!gf_offsets_canonical(f), "permuted offsets must be reported");
        TU_CHECK(gf_find_tensor(f, "a")->file_offset == doff + 64, "offset of a");
        gf_close(f);
    }
    free(b.p);
    memset(&b, 0, sizeof b);
    /* no tensors, no padding: valid */
    bb_hdr(&b, 3, 0, 1); bb_kv_str(&b, "general.name", "x");
    TU_OK(open_bb(&b, &f, &e), &e);
    /* checksums: wrong type */
    bb_hdr(&b, 3, 0, 1); bb_kv_u32(&b, GF_KEY_TENSOR_XXH3, 1);
    TU_OK(gf_open_mem(&f, b.p, b.n, "ck.gguf", &e), &e);
    if (f) {
        TU_FAILS(gf_verify_checksums(f, NULL, &e), &e, QX_EFORMAT, "must be an array of 0 u64");
        gf_close(f);
    }
    free(b.p);
    memset(&b, 0, sizeof b);
    TU_FAILS(gf_open(&f, "/nonexistent/x.gguf", &e), &e, QX_ENOTFOUND, "/nonexistent/x.gguf");
}

int main(void) {
    test_layout_exact();
    test_roundtrip();
    test_pwrite_threads();
    test_writer_rejects();
    test_bad_files();
    return tu_done("test_gguf");
}
