/* tests/test_shard.c — `--shard I/N` and `qforge merge` without a cluster: the shard ranges
 * (disjoint, contiguous, complete), the exact imatrix accumulator (any split of the terms sums
 * to the same bits; NaN and overflow refused), shard imatrix files (round trip, a tampered
 * sum refused), and on mini-v3-moe (../shared) the merged imatrix, ppl and sensitivity
 * outputs against unsharded runs plus every refusal of merge.  tests/test_slurm.sh runs the
 * same passes through scripts/slurm/ on a real Slurm. */
#include "tests/util/tu.h"
#include "formats/formats.h"

#include <stdint.h>
#include <unistd.h>

static void test_parse_range(void) {
    qx_shard s;
    memset(&s, 0, sizeof s);
    TU_CHECK(qx_shard_parse("0/4", &s) && s.index == 0 && s.count == 4, "0/4");
    TU_CHECK(qx_shard_parse("15/16", &s) && s.index == 15 && s.count == 16, "15/16");
    const char *bad[] = {"4/4", "-1/4", "1/0", "a/b", "1/4x", "", "1", "/4", "1/", "+1/4", "0/70000"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) TU_CHECK(!qx_shard_parse(bad[i], &s), "'%s' accepted", bad[i]);
    const int64_t units[] = {0, 1, 3, 8, 101, 4000000000000LL};
    const int counts[] = {1, 2, 3, 4, 7, 16};
    for (size_t u = 0; u < sizeof units / sizeof *units; u++)
        for (size_t c = 0; c < sizeof counts / sizeof *counts; c++) {
            int64_t next = 0, lo = INT64_MAX, hi = 0;
            for (int i = 0; i < counts[c]; i++) {
                qx_shard t = {.index = i, .count = counts[c]};
                qx_shard_range(&t, units[u]);
                TU_CHECK(t.first == next && t.n >= 0, "units %lld, shard %d/%d starts at %lld, want %lld", (long long)units[u], i,
                         counts[c], (long long)t.first, (long long)next);
                next = t.first + t.n;
                lo = t.n < lo ? t.n : lo;
                hi = t.n > hi ? t.n : hi;
            }
            TU_CHECK(next == units[u] && hi - lo <= 1, "units %lld over %d shards: cover %lld, sizes %lld..%lld", (long long)units[u],
                     counts[c], (long long)next, (long long)lo, (long long)hi);
        }
    qx_shard w = {0};
    qx_shard_range(&w, 9);
    TU_CHECK(w.first == 0 && w.n == 9, "count 0 is the whole run");
    qx_shard_set_model(&w, "/data/DeepSeek-R1/");
    TU_CHECK(!strcmp(w.model, "DeepSeek-R1"), "model name '%s'", w.model);
}

/* A deterministic spread of magnitudes 2^-40 .. 2^20, both signs. */
static float term(uint32_t *st, int i) {
    *st = *st * 1664525u + 1013904223u;
    float m = 1.0f + (float)(*st >> 8) / 16777216.0f;
    return ldexpf(i % 2 ? -m : m, (int)(*st % 61) - 40);
}

static void test_fixed_point(void) {
    enum { N = 5000, COLS = 3 };
    static float x[N];
    uint32_t st = 7;
    for (int i = 0; i < N; i++) x[i] = term(&st, i);
    /* one pass against four parts merged, as imatrix shards are */
    qx_err e = {0};
    im_matrix *whole, *part[4], *sum;
    im_entry *w, *p;
    im_create(&whole, &e); im_create(&sum, &e);
    TU_OK(im_add(whole, "w", COLS, 1, &w, &e), &e);
    TU_OK(im_entry_exact(w, &e), &e);
    double ref = 0;
    for (int i = 0; i < N; i++) {
        TU_CHECK(im_fx_add_sq(w->sum_x, x[i]), "term %d refused", i);
        ref += (double)x[i] * x[i];
    }
    w->count_x[0] = N;
    im_entry_settle(w);
    TU_CHECK(fabs(w->in_sum2[0] - ref) <= 1e-6 * ref, "fixed point %.9g vs double %.9g", (double)w->in_sum2[0], ref);
    for (int k = 0; k < 4; k++) {
        im_create(&part[k], &e);
        im_add(part[k], "w", COLS, 1, &p, &e);
        im_entry_exact(p, &e);
        for (int i = N - 1; i >= 0; i--)   /* reversed order inside each part too */
            if (i % 4 == k) im_fx_add_sq(p->sum_x, x[i]);
        p->count_x[0] = (N + 3 - k) / 4;
        im_entry_settle(p);
        part[k]->chunk_count = 1;
    }
    for (int k = 3; k >= 0; k--) TU_OK(im_merge(sum, part[k], "part", &e), &e);
    im_entry *m = im_find(sum, "w");
    TU_CHECK(m && m->sum_x[0] == w->sum_x[0] && m->sum_x[1] == w->sum_x[1], "merged parts differ from the single pass");
    TU_CHECK(m && memcmp(&m->in_sum2[0], &w->in_sum2[0], 4) == 0 && m->counts[0] == N, "merged float or count differs");
    TU_CHECK(sum->chunk_count == 4, "chunk_count %u", sum->chunk_count);
    /* shapes must agree */
    im_matrix *odd;
    im_create(&odd, &e);
    im_add(odd, "w", COLS + 1, 1, &p, &e);
    im_entry_exact(p, &e);
    TU_FAILS(im_merge(sum, odd, "odd.gguf", &e), &e, QX_EINVAL, "odd.gguf: entry 'w' is [4, 1]");
    im_drop_exact(odd);
    TU_FAILS(im_merge(sum, odd, "plain.gguf", &e), &e, QX_EFORMAT, "plain.gguf: entry 'w' has no exact sums");
    /* refused terms leave the sum unchanged */
    uint64_t acc[2] = {5, 7};
    TU_CHECK(!im_fx_add_sq(acc, NAN) && !im_fx_add_sq(acc, INFINITY) && !im_fx_add_sq(acc, 1e19f), "NaN, Inf, 1e19 accepted");
    TU_CHECK(acc[0] == 5 && acc[1] == 7, "a refused term changed the sum");
    uint64_t full[2] = {UINT64_MAX, UINT64_MAX - 1};
    TU_CHECK(im_fx_add_sq(full, 1.0f) && full[1] == UINT64_MAX, "1 added below the limit");
    TU_CHECK(!im_fx_add_sq(full, 1.0f), "a sum reaching 2^64 accepted");
    uint64_t tiny[2] = {0, 0};
    TU_CHECK(im_fx_add_sq(tiny, 0x1p-40f) && tiny[0] == 0 && tiny[1] == 0, "2^-80 kept below the unit");
    TU_CHECK(im_fx_add_sq(tiny, 0x1p-30f) && tiny[0] == 16 && tiny[1] == 0, "2^-60 is 16 units");
    im_free(whole); im_free(sum); im_free(odd);
    for (int k = 0; k < 4; k++) im_free(part[k]);
}

static void test_shard_file(void) {
    const char *dir = tu_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/s.gguf", dir);
    qx_err e = {0};
    im_matrix *m;
    im_entry *en;
    im_create(&m, &e);
    im_add(m, "blk.0.ffn_down_exps.weight", 32, 2, &en, &e);
    im_entry_exact(en, &e);
    for (int i = 0; i < 64; i++) im_fx_add_sq(en->sum_x + 2 * i, 0.5f + (float)i);
    en->count_x[0] = 3; en->count_x[1] = 0;
    im_entry_settle(en);
    m->chunk_count = 2; m->chunk_size = 64;
    m->shard = (qx_shard){.index = 1, .count = 3, .input = 0x0123456789abcdefULL};
    qx_shard_range(&m->shard, 7);
    snprintf(m->shard.model, sizeof m->shard.model, "mini");
    TU_OK(im_write_gguf(m, path, &e), &e);
    im_matrix *r = NULL;
    TU_OK(im_load(&r, path, &e), &e);
    im_entry *b = r ? im_find(r, "blk.0.ffn_down_exps.weight") : NULL;
    TU_CHECK(b && b->sum_x && !memcmp(b->sum_x, en->sum_x, 64 * 16) && b->count_x[0] == 3, "exact sums did not round-trip");
    TU_CHECK(r && r->shard.index == 1 && r->shard.count == 3 && r->shard.units == 7 && r->shard.first == 2 && r->shard.n == 2 &&
             r->shard.input == 0x0123456789abcdefULL && !strcmp(r->shard.model, "mini"), "shard keys did not round-trip");
    im_free(r);
    en->in_sum2[5] += 1.0f;   /* a float that is not its exact sum */
    TU_OK(im_write_gguf(m, path, &e), &e);
    r = NULL;
    TU_FAILS(im_load(&r, path, &e), &e, QX_EFORMAT, "in_sum2[5] disagrees with its exact sum");
    im_free(r);
    im_drop_exact(m);   /* the whole-run form: no keys, no extra tensors */
    TU_OK(im_write_gguf(m, path, &e), &e);
    r = NULL;
    TU_OK(im_load(&r, path, &e), &e);
    TU_CHECK(r && r->shard.count == 0 && !r->entries[0].sum_x, "a plain file came back as a shard");
    im_free(r);
    im_free(m);
}

static int same_file(const char *a, const char *b) { return tu_system("cmp -s '%s' '%s'", a, b) == 0; }

/* Figures of a ppl --json without the timings. */
static int same_figures(const char *a, const char *b) {
    return tu_system("grep -v -e '\"seconds\"' -e '\"tokens_per_s\"' '%s' > '%s.f' && grep -v -e '\"seconds\"' -e '\"tokens_per_s\"' "
                     "'%s' > '%s.f' && cmp -s '%s.f' '%s.f'", a, a, b, b, a, b) == 0;
}

static int has(const char *path, const char *needle) {
    size_t n;
    char *b = tu_read_file(path, &n), *z = b ? realloc(b, n + 1) : NULL;
    if (!z) { free(b); return 0; }
    z[n] = 0;
    int found = strstr(z, needle) != NULL;
    free(z);
    return found;
}

static void test_cli(const char *model) {
    const char *q = tu_qforge(), *d = tu_tmpdir();
    char text[600], eval[600];
    snprintf(text, sizeof text, "%s/calib.txt", model);
    snprintf(eval, sizeof eval, "%s/eval.txt", model);
    /* imatrix: 3 shards in any order give the unsharded file */
    TU_CHECK(tu_system("%s imatrix %s --text %s --ctx 64 --chunks 7 -o %s/im.gguf >/dev/null 2>&1", q, model, text, d) == 0, "imatrix");
    for (int i = 0; i < 3; i++)
        TU_CHECK(tu_system("%s imatrix %s --text %s --ctx 64 --chunks 7 --shard %d/3 -o %s/im%d.gguf >/dev/null 2>&1", q, model, text, i,
                           d, i) == 0, "imatrix shard %d", i);
    TU_CHECK(tu_system("%s merge -o %s/imm.gguf %s/im2.gguf %s/im0.gguf %s/im1.gguf >/dev/null", q, d, d, d, d) == 0, "merge imatrix");
    char a[600], b[600];
    snprintf(a, sizeof a, "%s/im.gguf", d);
    snprintf(b, sizeof b, "%s/imm.gguf", d);
    TU_CHECK(same_file(a, b), "merged imatrix differs from the unsharded one");
    /* ppl: a build against the model's base, 3 shards */
    TU_CHECK(tu_system("%s convert %s -o %s/q.gguf --type Q4_K_M >/dev/null 2>&1 && %s ppl %s --text %s --ctx 64 --chunks 7 "
                       "--save-base %s/b.qfb >/dev/null 2>&1", q, model, d, q, model, eval, d) == 0, "build and base");
    TU_CHECK(tu_system("%s ppl %s/q.gguf --text %s --ctx 64 --chunks 7 --base %s/b.qfb --json %s/p.json > %s/p.txt 2>/dev/null", q, d,
                       eval, d, d, d) == 0, "ppl");
    for (int i = 0; i < 3; i++)
        TU_CHECK(tu_system("%s ppl %s/q.gguf --text %s --ctx 64 --chunks 7 --base %s/b.qfb --shard %d/3 --json %s/p%d.json >/dev/null 2>&1",
                           q, d, eval, d, i, d, i) == 0, "ppl shard %d", i);
    TU_CHECK(tu_system("%s merge -o %s/pm.json %s/p1.json %s/p0.json %s/p2.json > %s/pm.txt", q, d, d, d, d, d) == 0, "merge ppl");
    snprintf(a, sizeof a, "%s/p.json", d);
    snprintf(b, sizeof b, "%s/pm.json", d);
    TU_CHECK(same_figures(a, b), "merged ppl JSON differs from the unsharded one");
    TU_CHECK(tu_system("sed -n '2,8p' %s/p.txt > %s/p.l && sed -n '2,8p' %s/pm.txt > %s/pm.l && test -s %s/p.l && cmp -s %s/p.l %s/pm.l",
                       d, d, d, d, d, d, d) == 0,
             "merged summary lines differ from the unsharded ones");
    /* sensitivity: 2 shards of the tensor list */
    TU_CHECK(tu_system("%s convert %s -o %s/f.gguf --type F32 >/dev/null 2>&1", q, model, d) == 0, "F32");
    TU_CHECK(tu_system("%s sensitivity %s/f.gguf --text %s --ctx 16 --chunks 1 --measure 1 -o %s/s.json >/dev/null 2>&1", q, d, text, d) == 0,
             "sensitivity");
    for (int i = 0; i < 2; i++)
        TU_CHECK(tu_system("%s sensitivity %s/f.gguf --text %s --ctx 16 --chunks 1 --measure 1 --shard %d/2 -o %s/s%d.json >/dev/null 2>&1",
                           q, d, text, i, d, i) == 0, "sensitivity shard %d", i);
    TU_CHECK(tu_system("%s merge -o %s/sm.json %s/s0.json %s/s1.json >/dev/null", q, d, d, d) == 0, "merge sensitivity");
    snprintf(a, sizeof a, "%s/s.json", d);
    snprintf(b, sizeof b, "%s/sm.json", d);
    TU_CHECK(same_file(a, b), "merged sensitivity table differs from the unsharded one");

    /* refusals: exit 1 (2 for usage) and one line naming the file */
    struct { const char *args, *msg; int rc; } bad[] = {
        {"%s/im0.gguf %s/im2.gguf", "shard 1/3 is missing", 1},
        {"%s/im0.gguf %s/im1.gguf %s/im1.gguf %s/im2.gguf", "im1.gguf: shard 1/3 given twice", 1},
        {"%s/im0.gguf %s/p1.json %s/im2.gguf", "p1.json: a ppl shard, but", 1},
        {"%s/im.gguf %s/im1.gguf %s/im2.gguf", "im.gguf: an imatrix without qforge.shard keys", 1},
        {"%s/s0.json %s/p.json", "p.json: no 'shard' object", 1},
        {"%s/im0.gguf %s/x1.gguf %s/im2.gguf", "x1.gguf: model 'q.gguf', but", 1},
        {"%s/im0.gguf %s/e1.gguf %s/im2.gguf", "e1.gguf: another input", 1},
        {"%s/im0.gguf %s/n1.gguf %s/im2.gguf", "n1.gguf: shard of 4, but", 1},
    };
    TU_CHECK(tu_system("%s imatrix %s/q.gguf --text %s --ctx 64 --chunks 7 --shard 1/3 -o %s/x1.gguf >/dev/null 2>&1 && "
                       "%s imatrix %s --text %s --ctx 64 --chunks 7 --shard 1/3 -o %s/e1.gguf >/dev/null 2>&1 && "
                       "%s imatrix %s --text %s --ctx 64 --chunks 7 --shard 1/4 -o %s/n1.gguf >/dev/null 2>&1",
                       q, d, text, d, q, model, eval, d, q, model, text, d) == 0, "foreign shards");
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char args[2048], errp[600];
        snprintf(args, sizeof args, bad[i].args, d, d, d, d);
        snprintf(errp, sizeof errp, "%s/err%zu.txt", d, i);
        int rc = tu_system("%s merge -o %s/out %s 2>%s", q, d, args, errp);
        TU_CHECK(rc == bad[i].rc && has(errp, bad[i].msg), "merge %s: exit %d, want %d with '%s'", args, rc, bad[i].rc, bad[i].msg);
    }
    char errp[600];
    snprintf(errp, sizeof errp, "%s/errc.txt", d);
    TU_CHECK(tu_system("%s convert %s --dry-run --target-size 20M --sensitivity %s/s0.json 2>%s", q, model, d, errp) != 0 &&
             has(errp, "a partial table of qforge sensitivity --shard"), "convert accepted a partial sensitivity table");
    TU_CHECK(tu_system("%s ppl %s/q.gguf --text %s --shard 0/2 >/dev/null 2>&1", q, d, eval) == 2, "ppl --shard without --json");
    TU_CHECK(tu_system("%s ppl %s/q.gguf --text %s --shard 0/2 --json x --save-base y >/dev/null 2>&1", q, d, eval) == 2,
             "ppl --shard with --save-base");
    TU_CHECK(tu_system("%s imatrix %s --text %s --shard 3/3 -o x >/dev/null 2>&1", q, model, text) == 2, "imatrix --shard 3/3");
    TU_CHECK(tu_system("%s imatrix %s --text %s --ctx 64 --chunks 2 --shard 0/3 -o %s/none.gguf 2>%s", q, model, text, d, errp) == 1 &&
             has(errp, "shard 0/3 gets none of the 2 chunks"), "a shard without chunks");
}

int main(void) {
    test_parse_range();
    test_fixed_point();
    test_shard_file();
    const char *model = tu_shared_path("models/mini-v3-moe");
    char cfg[600];
    snprintf(cfg, sizeof cfg, "%s/config.json", model ? model : "");
    if (!model || access(cfg, R_OK) != 0) {
        int rc = tu_done("test_shard");
        if (rc) return rc;
        return tu_skip("../shared/models/mini-v3-moe is absent: the CLI part (merge against unsharded runs) did not run");
    }
    if (access(tu_qforge(), X_OK) != 0) return tu_skip("qforge binary not built (set QF_BIN)");
    test_cli(model);
    return tu_done("test_shard");
}
