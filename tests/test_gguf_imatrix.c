/* tests/test_gguf_imatrix.c — imatrix files: GGUF and legacy .dat bytes against files built
 * by hand from llama.cpp's layout (../shared/GGUF-DEEPSEEK2.md §7), round trips through the
 * autodetecting reader, per-expert importance, and one bad file per fault class. */
#include "tests/util/tu.h"
#include "formats/formats.h"

#include <stdint.h>

typedef struct { uint8_t *p; size_t n, cap; } bb;
static void bb_put(bb *b, const void *src, size_t n) {
    if (b->n + n > b->cap) { b->cap = (b->n + n) * 2 + 64; b->p = realloc(b->p, b->cap); }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void bb_u32(bb *b, uint32_t v) { bb_put(b, &v, 4); }
static void bb_i32(bb *b, int32_t v) { bb_put(b, &v, 4); }
static void bb_u64(bb *b, uint64_t v) { bb_put(b, &v, 8); }
static void bb_i64(bb *b, int64_t v) { bb_put(b, &v, 8); }
static void bb_f32(bb *b, float v) { bb_put(b, &v, 4); }
static void bb_str(bb *b, const char *s) { bb_u64(b, strlen(s)); bb_put(b, s, strlen(s)); }
static void bb_pad(bb *b, size_t a) { while (b->n % a) { uint8_t z = 0; bb_put(b, &z, 1); } }

/* Three entries: a stacked expert tensor with one idle expert, a plain weight, and one
 * with no data at all.  Inserted out of name order on purpose. */
static im_matrix *make_matrix(void) {
    qx_err e = {0};
    im_matrix *m;
    im_create(&m, &e);
    im_entry *x, *q, *z;
    im_add(m, "blk.0.ffn_down_exps.weight", 32, 3, &x, &e);
    for (int k = 0; k < 3; k++)
        for (int j = 0; j < 32; j++) x->in_sum2[k * 32 + j] = (float)(k + 1) * 0.5f + (float)j * 0.25f;
    x->counts[0] = 10; x->counts[1] = 0; x->counts[2] = 4;
    im_add(m, "blk.0.attn_q.weight", 64, 1, &q, &e);
    for (int j = 0; j < 64; j++) q->in_sum2[j] = 3.0f + (float)j;
    q->counts[0] = 10;
    im_add(m, "a.weight", 8, 1, &z, &e);
    im_add_dataset(m, "wiki.train.raw", &e);
    im_add_dataset(m, "more.txt", &e);
    m->chunk_count = 5;
    m->chunk_size = 4;
    TU_CHECK(e.code == QX_OK, "building: %s", e.msg);
    return m;
}

/* The GGUF llama-imatrix writes for make_matrix(), by hand, plus our qforge.version last. */
static void expected_gguf(bb *b, const im_matrix *m) {
    static const char *const order[3] = {"a.weight", "blk.0.attn_q.weight", "blk.0.ffn_down_exps.weight"};
    bb_put(b, "GGUF", 4); bb_u32(b, 3); bb_i64(b, 6); bb_i64(b, 5);
    bb_str(b, "general.type"); bb_i32(b, GF_STRING); bb_str(b, "imatrix");
    bb_str(b, "imatrix.datasets"); bb_i32(b, GF_ARRAY); bb_i32(b, GF_STRING); bb_u64(b, 2);
    bb_str(b, "wiki.train.raw"); bb_str(b, "more.txt");
    bb_str(b, "imatrix.chunk_count"); bb_i32(b, GF_U32); bb_u32(b, 5);
    bb_str(b, "imatrix.chunk_size"); bb_i32(b, GF_U32); bb_u32(b, 4);
    bb_str(b, "qforge.version"); bb_i32(b, GF_STRING); bb_str(b, qx_version());
    uint64_t off = 0;
    for (int i = 0; i < 3; i++) {
        const im_entry *en = im_find(m, order[i]);
        char nm[96];
        uint32_t nd = en->nmat > 1 ? 2 : 1;   /* ggml_n_dims drops trailing 1s */
        snprintf(nm, sizeof nm, "%s.in_sum2", en->name);
        bb_str(b, nm); bb_u32(b, nd); bb_i64(b, en->ne0); if (nd == 2) bb_i64(b, en->nmat);
        bb_i32(b, 0); bb_u64(b, off);
        off += (uint64_t)(en->ne0 * en->nmat * 4 + 31) / 32 * 32;
        snprintf(nm, sizeof nm, "%s.counts", en->name);
        bb_str(b, nm); bb_u32(b, nd); bb_i64(b, 1); if (nd == 2) bb_i64(b, en->nmat);
        bb_i32(b, 0); bb_u64(b, off);
        off += (uint64_t)(en->nmat * 4 + 31) / 32 * 32;
    }
    bb_pad(b, 32);
    for (int i = 0; i < 3; i++) {
        const im_entry *en = im_find(m, order[i]);
        bb_put(b, en->in_sum2, (size_t)(en->ne0 * en->nmat) * 4); bb_pad(b, 32);
        bb_put(b, en->counts, (size_t)en->nmat * 4); bb_pad(b, 32);
    }
}

/* The legacy .dat llama-imatrix --output-format dat writes, by hand: sorted names, the
 * all-zero entry skipped, ncall = ceil(max count / chunk_size), values = sum/count*ncall. */
static void expected_dat(bb *b, const im_matrix *m) {
    bb_i32(b, 2);
    const im_entry *q = im_find(m, "blk.0.attn_q.weight"), *x = im_find(m, "blk.0.ffn_down_exps.weight");
    bb_i32(b, 19); bb_put(b, "blk.0.attn_q.weight", 19);
    bb_i32(b, 3);            /* ceil(10 / 4) */
    bb_i32(b, 64);
    for (int j = 0; j < 64; j++) bb_f32(b, q->in_sum2[j] / 10.0f * 3.0f);
    bb_i32(b, 26); bb_put(b, "blk.0.ffn_down_exps.weight", 26);
    bb_i32(b, 3); bb_i32(b, 96);
    for (int j = 0; j < 32; j++) bb_f32(b, x->in_sum2[j] / 10.0f * 3.0f);
    for (int j = 0; j < 32; j++) bb_f32(b, 1.0f / 1.0f * 3.0f);    /* idle expert: ones */
    for (int j = 0; j < 32; j++) bb_f32(b, x->in_sum2[64 + j] / 4.0f * 3.0f);
    bb_i32(b, 5); bb_i32(b, 8); bb_put(b, "more.txt", 8);
}

static void test_gguf_format(void) {
    qx_err e = {0};
    im_matrix *m = make_matrix();
    char path[512];
    snprintf(path, sizeof path, "%s/imatrix.gguf", tu_tmpdir());
    TU_OK(im_write_gguf(m, path, &e), &e);
    bb want = {0};
    expected_gguf(&want, m);
    size_t n;
    uint8_t *got = tu_read_file(path, &n);
    TU_CHECK(got && n == want.n && memcmp(got, want.p, n) == 0, "imatrix GGUF differs from the hand-built file (%zu vs %zu bytes)", n, want.n);
    free(got);
    free(want.p);

    im_matrix *r;
    TU_OK(im_load(&r, path, &e), &e);
    if (r) {
        TU_CHECK(!r->legacy && r->n_entries == 3 && r->chunk_count == 5 && r->chunk_size == 4, "header values");
        TU_CHECK(r->n_datasets == 2 && strcmp(r->datasets[1], "more.txt") == 0, "datasets");
        for (size_t i = 0; i < m->n_entries; i++) {
            const im_entry *a = &m->entries[i], *b = im_find(r, a->name);
            TU_CHECK(b && b->ne0 == a->ne0 && b->nmat == a->nmat, "entry %s shape", a->name);
            if (!b) continue;
            TU_CHECK(memcmp(a->in_sum2, b->in_sum2, (size_t)(a->ne0 * a->nmat) * 4) == 0, "entry %s sums", a->name);
            TU_CHECK(memcmp(a->counts, b->counts, (size_t)a->nmat * 4) == 0, "entry %s counts", a->name);
        }
        const im_entry *x = im_find(r, "blk.0.ffn_down_exps.weight");
        float imp[32];
        TU_OK(im_importance(x, 0, imp, &e), &e);
        TU_CHECK(imp[5] == x->in_sum2[5] / 10.0f, "expert 0 importance");
        TU_OK(im_importance(x, 1, imp, &e), &e);
        int ones = 0;
        for (int j = 0; j < 32; j++) ones += imp[j] == 1.0f;
        TU_CHECK(ones == 32, "idle expert gives ones (%d)", ones);
        TU_OK(im_importance(x, 2, imp, &e), &e);
        TU_CHECK(imp[31] == x->in_sum2[64 + 31] / 4.0f, "expert 2 importance");
        TU_FAILS(im_importance(x, 3, imp, &e), &e, QX_EINVAL, "matrix 3 out of range");
        im_free(r);
    }
    im_free(m);
}

static void test_dat_format(void) {
    qx_err e = {0};
    im_matrix *m = make_matrix();
    char path[512];
    snprintf(path, sizeof path, "%s/imatrix.dat", tu_tmpdir());
    TU_OK(im_write_dat(m, path, &e), &e);
    bb want = {0};
    expected_dat(&want, m);
    size_t n;
    uint8_t *got = tu_read_file(path, &n);
    TU_CHECK(got && n == want.n && memcmp(got, want.p, n) == 0, "legacy .dat differs from the hand-built file (%zu vs %zu bytes)", n, want.n);
    free(got);
    free(want.p);
    im_matrix *r;
    TU_OK(im_load(&r, path, &e), &e);
    if (r) {
        TU_CHECK(r->legacy && r->n_entries == 2 && r->chunk_count == 5 && r->chunk_size == 0, "legacy header values");
        TU_CHECK(r->n_datasets == 1 && strcmp(r->datasets[0], "more.txt") == 0, "legacy dataset");
        TU_CHECK(im_find(r, "a.weight") == NULL, "all-zero entry skipped");
        im_entry *x = im_find(r, "blk.0.ffn_down_exps.weight");
        TU_CHECK(x && x->nmat == 1 && x->ne0 == 96, "flat legacy entry");
        if (x) {
            TU_FAILS(im_entry_reshape(x, 40, &e), &e, QX_ESHAPE, "cannot split into rows of 40");
            TU_OK(im_entry_reshape(x, 32, &e), &e);
            TU_CHECK(x->nmat == 3 && x->ne0 == 32, "reshaped");
            const im_entry *o = im_find(m, x->name);
            float imp[32];
            for (int k = 0; k < 3; k++) {
                TU_OK(im_importance(x, k, imp, &e), &e);
                for (int j = 0; j < 32; j++) {
                    float ref = o->counts[k] > 0 ? o->in_sum2[k * 32 + j] / o->counts[k] : 1.0f;
                    TU_NEAR(imp[j], ref, 1e-6 * fabs(ref), "legacy importance expert %d col %d: %g vs %g", k, j, imp[j], ref);
                }
            }
        }
        im_free(r);
    }
    im_free(m);
}

static qx_status load_bb(bb *b, qx_err *e) {
    im_matrix *m;
    qx_status s = im_load_mem(&m, b->p, b->n, "bad.imatrix", e);
    im_free(m);
    free(b->p);
    memset(b, 0, sizeof *b);
    return s;
}

static void dat_entry(bb *b, const char *name, int32_t ncall, int32_t nval, float v) {
    bb_i32(b, (int32_t)strlen(name)); bb_put(b, name, strlen(name)); bb_i32(b, ncall); bb_i32(b, nval);
    for (int32_t i = 0; i < nval; i++) bb_f32(b, v);
}

/* A GGUF imatrix with one entry whose tensors are given by the caller. */
static void gguf_im(bb *b, const char *sname, int32_t stype, int64_t s0, int64_t s1, const char *cname, int64_t c0, int64_t c1,
                    float val) {
    bb_put(b, "GGUF", 4); bb_u32(b, 3); bb_i64(b, cname ? 2 : 1); bb_i64(b, 0);
    bb_str(b, sname); bb_u32(b, 2); bb_i64(b, s0); bb_i64(b, s1); bb_i32(b, stype); bb_u64(b, 0);
    uint64_t sb = (uint64_t)(s0 * s1) * (stype == 1 ? 2 : 4), off = (sb + 31) / 32 * 32;
    if (cname) { bb_str(b, cname); bb_u32(b, 2); bb_i64(b, c0); bb_i64(b, c1); bb_i32(b, 0); bb_u64(b, off); }
    bb_pad(b, 32);
    size_t start = b->n;
    for (uint64_t i = 0; i < sb / 4; i++) bb_f32(b, val);
    while (b->n < start + sb) { uint8_t z = 0; bb_put(b, &z, 1); }
    bb_pad(b, 32);
    if (cname) { for (int64_t i = 0; i < c0 * c1; i++) bb_f32(b, 2.0f); bb_pad(b, 32); }
}

static void test_bad_files(void) {
    qx_err e = {0};
    bb b = {0};
    /* sanity: the base files load */
    bb_i32(&b, 1); dat_entry(&b, "w", 2, 4, 1.0f);
    TU_OK(load_bb(&b, &e), &e);
    gguf_im(&b, "w.in_sum2", 0, 8, 2, "w.counts", 1, 2, 1.0f);
    TU_OK(load_bb(&b, &e), &e);

    bb_i32(&b, 0);
    TU_FAILS(load_bb(&b, &e), &e, QX_EFORMAT, "legacy imatrix entry count 0");
    bb_i32(&b, 1000); dat_entry(&b, "w", 2, 4, 1.0f);
    TU_FAILS(load_bb(&b, &e), &e, QX_EFORMAT, "legacy imatrix entry count 1000 does not fit");
    bb_put(&b, "ab", 2);
    TU_FAILS(load_bb(&b, &e), &e, QX_EFORMAT, "truncated reading entry count");
    bb_i32(&b, 1); bb_i32(&b, -3); bb_put(&b, "abcdefghijklmnopqrstuvwxyz", 26);
    TU_FAILS(load_bb(&b, &e), &e, QX_EFORMAT, "entry 0: bad name length -3");
    bb_i32(&b, 1); dat_entry(&b, "w", -1, 4, 1.0f);
    TU_FAILS(load_bb(&b, &e), &e, QX_EFORMAT, "entry 'w': ncall -1 < 0");
    bb_i32(&b, 1); dat_entry(&b, "w", 1, 0, 1.0f);
    bb_put(&b, "0123456789abcdef", 16);
    TU_FAILS(load_bb(&b, &e), &e, QX_EFORMAT, "entry 'w': 0 values do not fit");
    bb_i32(&b, 1); bb_i32(&b, 1); bb_put(&b, "w", 1); bb_i32(&b, 1); bb_i32(&b, 100); bb_f32(&b, 1); bb_f32(&b, 1);
    TU_FAILS(load_bb(&b, &e), &e, QX_EFORMAT, "entry 'w': 100 values do not fit the 8 bytes left");
    bb_i32(&b, 1); dat_entry(&b, "w", 1, 4, NAN);
    TU_FAILS(load_bb(&b, &e), &e, QX_EFORMAT, "entry 'w': values[0] = nan (must be finite and >= 0)");
    bb_i32(&b, 1); dat_entry(&b, "w", 1, 4, -1.0f);
    TU_FAILS(load_bb(&b, &e), &e, QX_EFORMAT, "entry 'w': values[0] = -1");
    bb_i32(&b, 2); dat_entry(&b, "w", 1, 4, 1.0f); dat_entry(&b, "w", 1, 4, 1.0f);
    TU_FAILS(load_bb(&b, &e), &e, QX_EFORMAT, "duplicate entry 'w'");
    bb_i32(&b, 1); dat_entry(&b, "w", 1, 4, 1.0f); bb_i32(&b, 3); bb_i32(&b, 50); bb_put(&b, "x", 1);
    TU_FAILS(load_bb(&b, &e), &e, QX_EFORMAT, "dataset name length 50 does not fit");
    bb_i32(&b, 1); dat_entry(&b, "w", 1, 4, 1.0f); bb_i32(&b, 3); bb_i32(&b, 1); bb_put(&b, "xyz", 3);
    TU_FAILS(load_bb(&b, &e), &e, QX_EFORMAT, "2 unexpected bytes after the legacy imatrix trailer");
    bb_i32(&b, 1); dat_entry(&b, "w", 1, 4, 1.0f); bb_i32(&b, -2);
    TU_FAILS(load_bb(&b, &e), &e, QX_EFORMAT, "chunk count -2 < 0");
    /* GGUF imatrix */
    gguf_im(&b, "w.in_sum2", 0, 8, 2, NULL, 0, 0, 1.0f);
    TU_FAILS(load_bb(&b, &e), &e, QX_EFORMAT, "'w.in_sum2' has no matching 'w.counts'");
    gguf_im(&b, "w.in_sum2", 1, 8, 2, "w.counts", 1, 2, 0.0f);
    TU_FAILS(load_bb(&b, &e), &e, QX_EFORMAT, "entry 'w': sums and counts must be F32");
    gguf_im(&b, "w.in_sum2", 0, 8, 2, "w.counts", 1, 3, 1.0f);
    TU_FAILS(load_bb(&b, &e), &e, QX_EFORMAT, "entry 'w': in_sum2 [8, 2, 1, 1] and counts [1, 3, 1, 1] disagree");
    gguf_im(&b, "w.in_sum2", 0, 8, 2, "w.counts", 1, 2, -INFINITY);
    TU_FAILS(load_bb(&b, &e), &e, QX_EFORMAT, "entry 'w': in_sum2[0] = -inf");
    gguf_im(&b, "w.counts", 0, 1, 2, NULL, 0, 0, 1.0f);
    TU_FAILS(load_bb(&b, &e), &e, QX_EFORMAT, "'w.counts' has no matching 'w.in_sum2'");
    gguf_im(&b, "other", 0, 8, 2, NULL, 0, 0, 1.0f);
    TU_FAILS(load_bb(&b, &e), &e, QX_EFORMAT, "imatrix has no entries");
    /* a broken GGUF container is reported by the GGUF reader */
    bb_put(&b, "GGUF", 4); bb_u32(&b, 3); bb_i64(&b, 5); bb_i64(&b, 0);
    TU_FAILS(load_bb(&b, &e), &e, QX_EFORMAT, "bad.imatrix: tensor count 5 cannot fit");
}

int main(void) {
    test_gguf_format();
    test_dat_format();
    test_bad_files();
    return tu_done("test_gguf_imatrix");
}
