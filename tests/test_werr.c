/* tests/test_werr.c — the 671B's own tensors for the allocation (issue 21, item 2).
 * (a) Reachability: on a synthetic expert-heavy model whose head and expert rows are not the
 *     fixture's (synth tiny-v3-odd: rows of 320, 384, 576, 96, 192), the shipped mini-v3-moe
 *     table transferred to it must reach a --target-size equal to the IQ1_S preset's file
 *     (it used to stop at "below the smallest mix of the candidates": the table's 256-block
 *     types do not fit those rows), also with a role missing from the table.
 * (b) The weight-error pass (pass/werr.c, `sensitivity --werr-only`): its werr are the bits
 *     cal_sens_run computes for the same tensors and types, the same from the HF checkpoint
 *     as from its F32 GGUF, for 1 and 2 threads and any decode group size; every tensor has
 *     its IQ1_S-preset type among the candidates; convert --werr uses them. */
#include "tests/util/tu.h"
#include "calib/calib.h"
#include "convert/convert.h"
#include "pass/pass.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define TABLE "recipes/deepseek2-moe-sensitivity.json"
/* experts (partial slices with small groups), transposed k_b heads, v_b heads, 2-D tensors */
#define SUBSET "blk\\.1\\.(ffn_down_exps|attn_k_b|attn_v_b|attn_q_b)|token_embd|blk\\.0\\.ffn_down\\."

static unsigned long long file_size_of(const char *log) {
    size_t n;
    char *txt = tu_read_file(log, &n);
    const char *f = txt ? strstr(txt, "output file size ") : NULL;
    unsigned long long b = f ? strtoull(f + 17, NULL, 10) : 0;
    free(txt);
    return b;
}

static void reachable(const char *dir) {
    const char *tmp = tu_tmpdir(), *Q = tu_qforge();
    char log[600], part[600];
    snprintf(log, sizeof log, "%s/iq1s.txt", tmp);
    TU_CHECK(tu_system("%s convert '%s' --type IQ1_S --dry-run > '%s' 2>&1", Q, dir, log) == 0, "IQ1_S dry run");
    unsigned long long iq1s = file_size_of(log);
    TU_CHECK(iq1s > 0, "no IQ1_S size");
    int rc = tu_system("%s convert '%s' --dry-run --quiet --target-size %llu --sensitivity " TABLE " > '%s' 2>&1", Q, dir, iq1s, log);
    unsigned long long got = file_size_of(log);
    TU_CHECK(rc == 0 && got <= iq1s && got >= iq1s - iq1s / 200,
             "target = IQ1_S's %llu bytes: exit %d, planned %llu (see %s)", iq1s, rc, got, log);
    TU_CHECK(tu_system("%s convert '%s' --dry-run --quiet --target-size %llu --sensitivity " TABLE " > /dev/null 2>&1", Q, dir,
                       iq1s * 3 / 4) == 1, "a target 25%% below IQ1_S's is not refused");
    /* the table without a role (attn_kv_a_mqa): those tensors take the pooled fit */
    qx_err e = {0};
    cv_sens s = {0}, t = {0};
    TU_OK(cv_sens_load(TABLE, &s, &e), &e);
    for (size_t i = 0; i < s.n; i++) {
        if (strstr(s.t[i].name, "attn_kv_a_mqa")) continue;
        cv_sens_tensor *d;
        TU_OK(cv_sens_add(&t, s.t[i].name, s.t[i].ne0, s.t[i].n_elems, &d, &e), &e);
        if (!d) break;
        d->n_opt = s.t[i].n_opt;
        memcpy(d->opt, s.t[i].opt, sizeof d->opt);
    }
    snprintf(part, sizeof part, "%s/part.json", tmp);
    TU_OK(cv_sens_write(&t, part, "test: no attn_kv_a_mqa", &e), &e);
    TU_CHECK(t.n + 4 == s.n, "removed %zu entries, want 4 (one per layer)", s.n - t.n);
    cv_sens_free(&s);
    cv_sens_free(&t);
    rc = tu_system("%s convert '%s' --dry-run --quiet --target-size %llu --sensitivity '%s' > '%s' 2>&1", Q, dir, iq1s, part, log);
    got = file_size_of(log);
    TU_CHECK(rc == 0 && got <= iq1s, "a role absent from the table: exit %d, planned %llu of %llu (see %s)", rc, got, iq1s, log);
}

static bool same_table(const cv_sens *a, const cv_sens *b, const char *what) {
    bool ok = a->n == b->n && a->n > 0;
    for (size_t i = 0; ok && i < a->n; i++) {
        ok = !strcmp(a->t[i].name, b->t[i].name) && a->t[i].n_opt == b->t[i].n_opt;
        for (int j = 0; ok && j < a->t[i].n_opt; j++)
            ok = a->t[i].opt[j].type == b->t[i].opt[j].type && a->t[i].opt[j].werr == b->t[i].opt[j].werr &&
                 a->t[i].opt[j].bytes == b->t[i].opt[j].bytes;
        if (!ok) fprintf(stderr, "%s: tensor %zu (%s) differs\n", what, i, a->t[i].name);
    }
    TU_CHECK(ok, "%s: the weight errors differ (%zu vs %zu tensors)", what, a->n, b->n);
    return ok;
}

static void pass_run(const char *model, const char *im, int threads, uint64_t group, cv_sens *out) {
    qx_err e = {0};
    cv_params cp;
    cv_default_params(&cp);
    cp.preset = "Q8_0";
    cp.imatrix = im;
    cv_plan *pl = NULL, *fl = NULL;
    TU_OK(cv_plan_open(&pl, model, &cp, &e), &e);
    cp.preset = "IQ1_S";
    TU_OK(cv_plan_open(&fl, model, &cp, &e), &e);
    ps_werr_params wp = { threads, SUBSET, group, NULL, NULL };
    ps_werr_stats st;
    memset(out, 0, sizeof *out);
    if (pl && fl) TU_OK(ps_werr_run(pl, fl, &wp, out, &st, &e), &e);
    if (pl && fl) {   /* every tensor has its IQ1_S-preset type (with the fallback) */
        size_t miss = 0;
        for (size_t i = 0; i < out->n; i++) {
            for (size_t k = 0; k < cv_plan_tensor_count(fl); k++) {
                cv_tensor_info f;
                cv_plan_tensor(fl, k, &f);
                if (strcmp(f.name, out->t[i].name)) continue;
                bool has = false;
                for (int j = 0; j < out->t[i].n_opt; j++) has |= out->t[i].opt[j].type == f.type;
                if (!has) { miss++; fprintf(stderr, "%s: no %s candidate\n", f.name, qt_type_name(f.type)); }
            }
        }
        TU_CHECK(miss == 0, "%zu tensors lack their IQ1_S-preset type", miss);
    }
    cv_plan_free(pl);
    cv_plan_free(fl);
}

/* cal_sens_run's werr (no measurement) for every tensor and type of w, as `qforge sensitivity`
 * attaches the imatrix (im_entry_fit first). */
static void sens_werr(const char *f32, const char *imp, const cv_sens *w, cv_sens *out) {
    qx_err e = {0};
    im_matrix *im = NULL;
    cal_model *m = NULL;
    TU_OK(im_load(&im, imp, &e), &e);
    TU_OK(cal_model_open(&m, f32, &e), &e);
    cv_params cp;
    cv_default_params(&cp);
    cp.preset = "Q8_0";
    cv_plan *pl = NULL;
    TU_OK(cv_plan_from_gguf(&pl, f32, &cp, &e), &e);
    memset(out, 0, sizeof *out);
    if (!im || !m || !pl) { im_free(im); cal_model_close(m); cv_plan_free(pl); return; }
    size_t n = 0;
    for (size_t i = 0; i < w->n; i++) n += (size_t)w->t[i].n_opt;
    cal_sens_item *it = calloc(n + 1, sizeof *it);
    n = 0;
    for (size_t i = 0; it && i < w->n; i++) {
        im_entry *en = im_find(im, w->t[i].name);
        qx_err e2;
        for (size_t k = 0; en && k < cv_plan_tensor_count(pl); k++) {
            cv_tensor_info t;
            cv_plan_tensor(pl, k, &t);
            if (!strcmp(t.name, w->t[i].name)) im_entry_fit(en, im->legacy, t.ne[0], t.ne[2], &e2);
        }
        for (int j = 0; j < w->t[i].n_opt; j++) it[n++] = (cal_sens_item){ .name = w->t[i].name, .type = w->t[i].opt[j].type };
    }
    cal_sens_params sp = cal_sens_default_params();
    sp.im = im;
    sp.ppl.n_threads = 2;
    if (it) TU_OK(cal_sens_run(m, NULL, 0, &sp, it, n, &e), &e);
    for (size_t k = 0; it && k < n; k++) {
        cv_sens_tensor *d = (cv_sens_tensor *)cv_sens_find(out, it[k].name);
        if (!d) TU_OK(cv_sens_add(out, it[k].name, w->t[out->n].ne0, w->t[out->n].n_elems, &d, &e), &e);
        if (!d) break;
        d->opt[d->n_opt++] = (cv_sens_opt){ it[k].type, it[k].bytes, it[k].werr, -1, -1 };
    }
    free(it);
    cv_plan_free(pl);
    cal_model_close(m);
    im_free(im);
}

static void werr_pass(const char *dir) {
    const char *tmp = tu_tmpdir(), *Q = tu_qforge();
    char txt[600], im[600], f32[600], wp[600], a[600], b[600];
    snprintf(txt, sizeof txt, "%s/calib.txt", tmp);
    snprintf(im, sizeof im, "%s/im.gguf", tmp);
    snprintf(f32, sizeof f32, "%s/f32.gguf", tmp);
    snprintf(wp, sizeof wp, "%s/w.json", tmp);
    snprintf(a, sizeof a, "%s/a.txt", tmp);
    snprintf(b, sizeof b, "%s/b.txt", tmp);
    static const char *words[] = { "the", "model", "weights", "of", "a", "layer", "quantized", "to", "one", "bit", "and", "more" };
    FILE *f = fopen(txt, "w");
    uint32_t x = 12345;
    for (int i = 0; f && i < 3000; i++) { x = x * 1103515245u + 12345u; fprintf(f, "%s%c", words[(x >> 16) % 12], i % 17 == 16 ? '\n' : ' '); }
    if (f) fclose(f);
    TU_CHECK(tu_system("%s imatrix '%s' --text '%s' --ctx 64 --chunks 4 -o '%s' > /dev/null 2>&1", Q, dir, txt, im) == 0, "imatrix");
    TU_CHECK(tu_system("%s convert '%s' -o '%s' --type F32 --quiet > /dev/null 2>&1", Q, dir, f32) == 0, "F32 conversion");
    cv_sens g1, g2, hf, sens;
    pass_run(f32, im, 1, 0, &g1);
    pass_run(f32, im, 2, 100000, &g2);   /* 100 kB: ~80 rows at a time, expert slices cut in pieces */
    pass_run(dir, im, 2, 0, &hf);
    TU_CHECK(g1.n == 6, "%zu tensors match the subset, want 6", g1.n);
    same_table(&g1, &g2, "1 thread vs 2 threads and 100 kB groups");
    same_table(&g1, &hf, "F32 GGUF vs the HF checkpoint");
    sens_werr(f32, im, &g1, &sens);
    same_table(&g1, &sens, "the pass vs cal_sens_run");
    /* allocation with --werr: the own werr replace the transferred ones */
    TU_OK(cv_sens_write(&g1, wp, "test", &(qx_err){0}), &(qx_err){0});
    int r1 = tu_system("%s quantize '%s' /dev/null --dry-run --target-size 9M --sensitivity " TABLE " > '%s' 2>&1", Q, f32, a);
    int r2 = tu_system("%s quantize '%s' /dev/null --dry-run --target-size 9M --sensitivity " TABLE " --werr '%s' > '%s' 2>&1", Q, f32, wp, b);
    TU_CHECK(r1 == 0 && r2 == 0, "allocation without/with --werr: exit %d/%d", r1, r2);
    TU_CHECK(tu_system("grep -q 'blk.1.ffn_down_exps' '%s' && ! cmp -s '%s' '%s'", a, a, b) == 0, "--werr changed nothing in the plan (%s, %s)", a, b);
    cv_sens_free(&g1);
    cv_sens_free(&g2);
    cv_sens_free(&hf);
    cv_sens_free(&sens);
}

int main(void) {
    void *tb = tu_read_file(TABLE, &(size_t){0});
    if (!tb) return tu_skip(TABLE " not found (run from the repository root)");
    free(tb);
    char dir[600];
    snprintf(dir, sizeof dir, "%s/odd", tu_tmpdir());
    qx_err e = {0};
    TU_OK(st_synth("tiny-v3-odd", dir, 3, false, 0, &e), &e);
    reachable(dir);
    werr_pass(dir);
    return tu_done("test_werr");
}
