/* tests/test_split.c — split GGUF sets (llama.cpp's gguf-split convention) written and read
 * by qforge.  Library level: the writer's cut rules (size, tensor count, an oversized tensor,
 * one-file plans stay plain), the keys of every file, the set read back as one model, and one
 * failing case per fault (missing file, foreign file, later file opened first, tensor count,
 * duplicate tensor, split keys set by the caller).  Command level on a synthetic tiny-v3:
 * `convert --split-max-size/--split-max-tensors` gives the unsplit build's tensor bytes;
 * `verify`, `inspect`, `tokenize`, `ppl` and `quantize` read the set by its first file; a
 * kill -9 mid-run plus --resume (also after a crash in the rename phase) gives the bytes of an
 * uninterrupted run.  Needs no ../shared. */
#include "tests/util/tu.h"
#include "formats/formats.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp[1024];

static bool exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

/* A writer with n tensors "t.<i>" of F32 [len_i] (len_i = 8 * (i % 5 + 1)); data[i] filled. */
static gf_writer *make_writer(int n, float **data) {
    gf_writer *w;
    qx_err e;
    TU_OK(gf_writer_create(&w, &e), &e);
    TU_OK(gf_writer_set_str(w, GF_KEY_ARCHITECTURE, "llama", &e), &e);
    TU_OK(gf_writer_set_u32(w, "llama.block_count", 7, &e), &e);
    TU_OK(gf_writer_reserve_checksums(w, &e), &e);
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "t.%d", i);
        int64_t ne = 8 * (i % 5 + 1);
        TU_OK(gf_writer_add_tensor(w, name, QT_F32, 1, &ne, NULL, &e), &e);
        data[i] = malloc((size_t)ne * sizeof(float));
        for (int64_t j = 0; j < ne; j++) data[i][j] = (float)(i * 1000 + j);
    }
    return w;
}

/* Writes a planned split writer to PREFIX-*.gguf with data (checksums filled). */
static void write_set(gf_writer *w, const char *prefix, float **data) {
    qx_err e;
    int n = gf_writer_split_count(w);
    int fd[16];
    for (int k = 0; k < n && k < 16; k++) {
        char path[1200];
        gf_split_name(path, sizeof path, prefix, k, n);
        fd[k] = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
        TU_CHECK(fd[k] >= 0, "create %s", path);
        TU_OK(gf_writer_write_header_at(w, k, fd[k], path, &e), &e);
    }
    for (size_t i = 0; i < gf_writer_tensor_count(w); i++) {
        uint64_t nb = gf_writer_tensor_nbytes(w, i);
        TU_OK(gf_writer_pwrite(w, fd[gf_writer_tensor_split(w, i)], prefix, i, 0, data[i], nb, &e), &e);
        TU_OK(gf_writer_set_checksum(w, i, gf_checksum(data[i], nb), &e), &e);
    }
    TU_OK(gf_writer_rewrite_header_at(w, 0, fd[0], prefix, &e), &e);
    for (int k = 0; k < n && k < 16; k++) close(fd[k]);
}

static void test_writer_reader(void) {
    qx_err e;
    float *data[40];
    char prefix[1100], path[1200], p2[1200];

    /* by tensor count: 23 tensors, 10 per file -> 10, 10, 3 */
    gf_writer *w = make_writer(23, data);
    TU_OK(gf_writer_set_split(w, 0, 10, &e), &e);
    TU_OK(gf_writer_plan(w, &e), &e);
    TU_CHECK(gf_writer_split_count(w) == 3, "split count %d, want 3", gf_writer_split_count(w));
    TU_CHECK(gf_writer_tensor_split(w, 9) == 0 && gf_writer_tensor_split(w, 10) == 1 && gf_writer_tensor_split(w, 22) == 2,
             "tensor-count cut at the wrong place");
    uint64_t sum = 0;
    for (int k = 0; k < 3; k++) sum += gf_writer_split_size(w, k);
    TU_CHECK(sum == gf_writer_file_size(w), "file sizes %llu != total %llu", (unsigned long long)sum,
             (unsigned long long)gf_writer_file_size(w));
    snprintf(prefix, sizeof prefix, "%s/cnt", tmp);
    write_set(w, prefix, data);
    gf_split_name(path, sizeof path, prefix, 0, 3);
    TU_CHECK(strstr(path, "cnt-00001-of-00003.gguf") != NULL, "name %s", path);
    for (int k = 0; k < 3; k++) {
        gf_file *f;
        gf_split_name(p2, sizeof p2, prefix, k, 3);
        TU_OK(gf_open_part(&f, p2, &e), &e);
        if (!f) continue;
        uint16_t no = 0, cnt = 0;
        int32_t nt = 0;
        const gf_kv *a = gf_find_kv(f, GF_KEY_SPLIT_NO), *b = gf_find_kv(f, GF_KEY_SPLIT_COUNT), *c = gf_find_kv(f, GF_KEY_SPLIT_TENSORS);
        TU_CHECK(a && a->type == GF_U16 && b && b->type == GF_U16 && c && c->type == GF_I32, "file %d: split key types", k);
        if (a && b && c) { no = a->v.u16; cnt = b->v.u16; nt = c->v.i32; }
        TU_CHECK(no == k && cnt == 3 && nt == 23, "file %d: split.no %u count %u tensors %d", k, no, cnt, (int)nt);
        TU_CHECK((k == 0) == (gf_find_kv(f, GF_KEY_ARCHITECTURE) != NULL), "file %d: model metadata only in the first", k);
        TU_CHECK(k == 0 || gf_kv_count(f) == 3, "file %d: %zu keys, want the 3 split keys", k, gf_kv_count(f));
        TU_CHECK(gf_offsets_canonical(f), "file %d: offsets not packed", k);
        gf_close(f);
    }
    gf_file *f;
    TU_OK(gf_open(&f, path, &e), &e);
    if (f) {
        TU_CHECK(gf_split_count(f) == 3 && gf_tensor_count(f) == 23, "set: %d files, %zu tensors", gf_split_count(f), gf_tensor_count(f));
        bool same = true;
        for (int i = 0; i < 23; i++) {
            const gf_tensor *t = gf_tensor_at(f, (size_t)i);
            char name[32];
            snprintf(name, sizeof name, "t.%d", i);
            same &= !strcmp(t->name, name) && t->data && !memcmp(t->data, data[i], t->nbytes) && t->split == (i < 10 ? 0 : i < 20 ? 1 : 2);
            same &= gf_find_tensor(f, name) == t;
        }
        TU_CHECK(same, "the set does not read back as written");
        TU_OK(gf_verify_checksums(f, NULL, &e), &e);
        TU_CHECK(gf_file_size(f) == gf_writer_file_size(w), "set size %llu", (unsigned long long)gf_file_size(f));
        gf_close(f);
    }
    /* faults */
    gf_split_name(p2, sizeof p2, prefix, 1, 3);
    TU_FAILS(gf_open(&f, p2, &e), &e, QX_EINVAL, "cnt-00001-of-00003.gguf");
    char p3[1200], moved[1300];
    gf_split_name(p3, sizeof p3, prefix, 2, 3);
    snprintf(moved, sizeof moved, "%s.away", p3);
    TU_CHECK(rename(p3, moved) == 0, "rename");
    TU_FAILS(gf_open(&f, path, &e), &e, QX_ENOTFOUND, "cnt-00003-of-00003.gguf");
    /* a foreign file in place of file 3: file 1 of another set */
    TU_CHECK(tu_system("cp '%s' '%s'", path, p3) == 0, "cp");
    TU_FAILS(gf_open(&f, path, &e), &e, QX_EFORMAT, "does not belong to the set");
    TU_CHECK(rename(moved, p3) == 0, "rename back");
    gf_writer_free(w);

    /* by size: 24 tensors of 32..160 bytes, at most 400 bytes per file; one 2000-byte tensor */
    gf_writer *w2;
    TU_OK(gf_writer_create(&w2, &e), &e);
    uint64_t max = 400, cur = 0;
    int files = 1;
    bool files_ok = true;
    for (int i = 0; i < 25; i++) {
        char name[32];
        snprintf(name, sizeof name, "s.%d", i);
        int64_t ne = i == 12 ? 500 : 8 * (i % 5 + 1);
        TU_OK(gf_writer_add_tensor(w2, name, QT_F32, 1, &ne, NULL, &e), &e);
        uint64_t nb = qx_pad((uint64_t)ne * 4, 32);
        if (i > 0 && cur + nb > max) { files++; cur = 0; }   /* llama-gguf-split's rule */
        cur += nb;
    }
    TU_OK(gf_writer_set_split(w2, max, 0, &e), &e);
    TU_OK(gf_writer_plan(w2, &e), &e);
    TU_CHECK(gf_writer_split_count(w2) == files, "size split: %d files, want %d", gf_writer_split_count(w2), files);
    int k12 = gf_writer_tensor_split(w2, 12);
    TU_CHECK(k12 != gf_writer_tensor_split(w2, 11) && k12 != gf_writer_tensor_split(w2, 13), "oversized tensor shares a file");
    for (int k = 0; k < gf_writer_split_count(w2); k++) {
        uint64_t tb = 0;
        int nk = 0;
        for (size_t i = 0; i < gf_writer_tensor_count(w2); i++)
            if (gf_writer_tensor_split(w2, i) == k) { tb += qx_pad(gf_writer_tensor_nbytes(w2, i), 32); nk++; }
        files_ok &= nk > 0 && (tb <= max || nk == 1);
    }
    TU_CHECK(files_ok, "a file is empty or over the limit with more than one tensor");
    gf_writer_free(w2);

    /* limits that make one file: a plain GGUF, no split keys */
    gf_writer *w3 = make_writer(5, data + 30);
    TU_OK(gf_writer_set_split(w3, 1000000, 0, &e), &e);
    snprintf(path, sizeof path, "%s/one.gguf", tmp);
    TU_OK(gf_writer_write_file(w3, path, (const void *const *)(data + 30), &e), &e);
    TU_OK(gf_open(&f, path, &e), &e);
    if (f) {
        TU_CHECK(gf_split_count(f) == 1 && !gf_find_kv(f, GF_KEY_SPLIT_COUNT), "one-file plan carries split keys");
        gf_close(f);
    }
    gf_writer_free(w3);

    /* the caller may not set split keys itself */
    gf_writer *w4 = make_writer(3, data + 35);
    TU_OK(gf_writer_set(w4, GF_KEY_SPLIT_COUNT, GF_U16, &(uint16_t){2}, &e), &e);
    TU_FAILS(gf_writer_plan(w4, &e), &e, QX_EINVAL, "split.* keys");
    gf_writer_free(w4);
    for (int i = 0; i < 23; i++) free(data[i]);
    for (int i = 30; i < 38; i++) free(data[i]);
}

/* Tensor-by-tensor byte equality of two GGUF models (sets or files). */
static bool same_tensors(const char *a, const char *b) {
    gf_file *fa, *fb;
    qx_err e;
    if (gf_open(&fa, a, &e) != QX_OK) { fprintf(stderr, "%s\n", e.msg); return false; }
    if (gf_open(&fb, b, &e) != QX_OK) { fprintf(stderr, "%s\n", e.msg); gf_close(fa); return false; }
    bool same = gf_tensor_count(fa) == gf_tensor_count(fb);
    for (size_t i = 0; same && i < gf_tensor_count(fa); i++) {
        const gf_tensor *x = gf_tensor_at(fa, i), *y = gf_tensor_at(fb, i);
        same = !strcmp(x->name, y->name) && x->type == y->type && x->nbytes == y->nbytes &&
               (x->nbytes == 0 || !memcmp(x->data, y->data, x->nbytes));
        if (!same) fprintf(stderr, "tensor %zu ('%s') differs\n", i, x->name);
    }
    gf_close(fa);
    gf_close(fb);
    return same;
}

static bool same_output(const char *cmd_a, const char *cmd_b) {
    return tu_system("%s > '%s/out_a' 2>&1", cmd_a, tmp) == 0 && tu_system("%s > '%s/out_b' 2>&1", cmd_b, tmp) == 0 &&
           tu_system("cmp -s '%s/out_a' '%s/out_b'", tmp, tmp) == 0;
}

/* The set count of PREFIX-00001-of-0000N.gguf on disk (its path into first), 0 if none. */
static int find_set(const char *prefix, char *first, size_t cap) {
    for (int k = 1; k < 100; k++) {
        snprintf(first, cap, "%s-00001-of-%05d.gguf", prefix, k);
        if (exists(first)) return k;
    }
    return 0;
}

static void test_cli(void) {
    char dir[1100], one[1100], sp[1100], first[1200], cmd[4096];
    qx_err e;
    snprintf(dir, sizeof dir, "%s/tiny", tmp);
    TU_OK(st_synth("tiny-v3", dir, 7, false, 0, &e), &e);
    snprintf(one, sizeof one, "%s/one.gguf", tmp);
    snprintf(sp, sizeof sp, "%s/set.gguf", tmp);
    const char *Q = tu_qforge();
    TU_CHECK(tu_system("%s convert '%s' -o '%s' --type Q4_K_M --quiet -t 2 > /dev/null 2>&1", Q, dir, one) == 0, "unsplit convert");
    struct stat st;
    uint64_t total = stat(one, &st) == 0 ? (uint64_t)st.st_size : 0;
    TU_CHECK(total > 0, "no unsplit output");
    /* dry run: lists the files */
    char lim[32];
    snprintf(lim, sizeof lim, "%llu", (unsigned long long)(total / 3));
    snprintf(cmd, sizeof cmd, "%s convert '%s' -o '%s' --type Q4_K_M --quiet --dry-run --split-max-size %s | grep -c -- '-of-0000'", Q, dir, sp, lim);
    TU_CHECK(tu_system("test $(%s) -ge 3", cmd) == 0, "dry run does not list 3+ files");
    TU_CHECK(tu_system("%s convert '%s' -o '%s' --type Q4_K_M --quiet -t 2 --split-max-size %s > /dev/null 2>&1", Q, dir, sp, lim) == 0,
             "split convert");
    TU_CHECK(!exists(sp), "split run wrote the plain name %s", sp);
    char pre[1100];
    snprintf(pre, sizeof pre, "%s/set", tmp);
    int n = find_set(pre, first, sizeof first);
    TU_CHECK(n >= 3, "no set of 3+ files (%d)", n);
    if (n < 3) return;
    TU_CHECK(same_tensors(one, first), "split set's tensors differ from the unsplit build's");
    TU_CHECK(tu_system("%s verify '%s' > /dev/null 2>&1", Q, first) == 0, "verify of the set fails");
    TU_CHECK(tu_system("%s inspect '%s' --json | grep -q '\"split_files\"'", Q, first) == 0, "inspect --json lacks split_files");
    snprintf(cmd, sizeof cmd, "%s tokenize '%s' 'The quick brown fox' --ids", Q, one);
    char cmd2[4096];
    snprintf(cmd2, sizeof cmd2, "%s tokenize '%s' 'The quick brown fox' --ids", Q, first);
    TU_CHECK(same_output(cmd, cmd2), "tokenize differs on the set");
    char text[1200];
    snprintf(text, sizeof text, "%s/text.txt", tmp);
    FILE *tf = fopen(text, "w");
    for (int i = 0; tf && i < 60; i++) fprintf(tf, "the cat sat on the mat and looked at %d birds. ", i);
    if (tf) fclose(tf);
    snprintf(cmd, sizeof cmd, "%s ppl '%s' --text '%s' --ctx 64 --chunks 4 -t 1 --json - | grep '\"ppl\"'", Q, one, text);
    snprintf(cmd2, sizeof cmd2, "%s ppl '%s' --text '%s' --ctx 64 --chunks 4 -t 1 --json - | grep '\"ppl\"'", Q, first, text);
    TU_CHECK(same_output(cmd, cmd2), "ppl differs on the set");
    /* damage one byte in the last file: verify names that file */
    char last[1200];
    snprintf(last, sizeof last, "%s/set-%05d-of-%05d.gguf", tmp, n, n);
    char dam[1300];
    snprintf(dam, sizeof dam, "%s/damaged-%05d-of-%05d.gguf", tmp, n, n);
    for (int k = 1; k <= n; k++)
        tu_system("cp '%s/set-%05d-of-%05d.gguf' '%s/damaged-%05d-of-%05d.gguf'", tmp, k, n, tmp, k, n);
    tu_system("printf 'Z' | dd of='%s' bs=1 seek=$(( $(stat -c %%s '%s') - 40 )) conv=notrunc 2>/dev/null", dam, dam);
    snprintf(cmd, sizeof cmd, "%s verify '%s/damaged-00001-of-%05d.gguf' 2>&1 | grep -q 'damaged-%05d-of-%05d.gguf.*checksum mismatch'", Q, tmp, n, n, n);
    TU_CHECK(tu_system("%s", cmd) == 0, "verify does not name the damaged file");

    /* quantize reads a split F16 set and writes a split set (by tensor count) */
    char f16[1100], f16first[1200], q1[1100], q2[1100], q2first[1200];
    snprintf(f16, sizeof f16, "%s/f16.gguf", tmp);
    TU_CHECK(tu_system("%s convert '%s' -o '%s' --type F16 --quiet -t 2 --split-max-tensors 20 > /dev/null 2>&1", Q, dir, f16) == 0, "F16 split");
    snprintf(pre, sizeof pre, "%s/f16", tmp);
    int nf = find_set(pre, f16first, sizeof f16first);
    TU_CHECK(nf >= 2, "F16 set (20 tensors per file): %d files", nf);
    snprintf(q1, sizeof q1, "%s/q1.gguf", tmp);
    snprintf(q2, sizeof q2, "%s/q2.gguf", tmp);
    TU_CHECK(tu_system("%s convert '%s' -o '%s' --type F16 --quiet -t 2 > /dev/null 2>&1 && %s quantize '%s' '%s' Q4_K_M --quiet > /dev/null 2>&1",
                       Q, dir, f16, Q, f16, q1) == 0, "quantize of the unsplit F16");
    TU_CHECK(tu_system("%s quantize '%s' '%s' Q4_K_M --quiet --split-max-tensors 25 > /dev/null 2>&1", Q, f16first, q2) == 0,
             "quantize of the split F16 set");
    snprintf(pre, sizeof pre, "%s/q2", tmp);
    TU_CHECK(find_set(pre, q2first, sizeof q2first) >= 2, "quantize split output missing");
    TU_CHECK(same_tensors(q1, q2first), "quantize: split in/out tensors differ from the unsplit run");
    TU_CHECK(tu_system("%s verify '%s' > /dev/null 2>&1", Q, q2first) == 0, "verify of the quantized set");

    /* kill -9 mid-run, then --resume: the bytes of an uninterrupted run */
    char rs[1100];
    snprintf(rs, sizeof rs, "%s/rs.gguf", tmp);
    int rc = tu_system("QF_TEST_SIGKILL_AT_STOP=1 %s convert '%s' -o '%s' --type Q4_K_M --quiet -t 2 --split-max-size %s --max-items 30 > /dev/null 2>&1",
                       Q, dir, rs, lim);
    TU_CHECK(rc == 128 + 9, "killed run: exit %d, want %d", rc, 128 + 9);
    char p1[1200], p1part[1300], pk[1200], pkpart[1300];
    snprintf(p1, sizeof p1, "%s/rs-00001-of-%05d.gguf", tmp, n);
    snprintf(p1part, sizeof p1part, "%s.part", p1);
    snprintf(pk, sizeof pk, "%s/rs-00002-of-%05d.gguf", tmp, n);
    snprintf(pkpart, sizeof pkpart, "%s.part", pk);
    TU_CHECK(!exists(p1) && exists(p1part) && exists(pkpart), "after kill -9: want .part files only");
    /* as if the crash had come in the rename phase: file 2 already in place */
    TU_CHECK(rename(pkpart, pk) == 0, "rename");
    rc = tu_system("%s convert '%s' -o '%s' --type Q4_K_M --quiet -t 1 --split-max-size %s --resume > /dev/null 2>&1", Q, dir, rs, lim);
    TU_CHECK(rc == 0, "resume: exit %d", rc);
    bool ident = true;
    for (int k = 1; k <= n; k++) {
        ident &= tu_system("cmp -s '%s/set-%05d-of-%05d.gguf' '%s/rs-%05d-of-%05d.gguf'", tmp, k, n, tmp, k, n) == 0;
        char pp[1300];
        snprintf(pp, sizeof pp, "%s/rs-%05d-of-%05d.gguf.part", tmp, k, n);
        ident &= !exists(pp);
    }
    TU_CHECK(ident, "resumed split set differs from the uninterrupted one (or .part left)");
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -c journal", tmp);
    TU_CHECK(tu_system("test $(%s) -eq 0", cmd) == 0, "journal left behind");
}

int main(void) {
    snprintf(tmp, sizeof tmp, "%s", tu_tmpdir());
    test_writer_reader();
    test_cli();
    return tu_done("test_split");
}
