/* bench/bench_tokenizer.c — tokenizer speed on one core: load time of the real DeepSeek-V3
 * tokenizer.json (128k merges) and of its GGUF-form vocabulary, and MB/s of encoding
 * ../shared/models/mini-v3/eval.txt, next to two baselines measured in the same run: the
 * pre-tokenizer regex split alone (no BPE) and the 5 MB/s target.  Best of 3 runs. */
#include "tok/tok.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <time.h>

/* CPU seconds of this thread: the machine may be shared, so MB/s per core uses these. */
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double best_of(int reps, double (*fn)(void *), void *arg) {
    double best = 1e30;
    for (int i = 0; i < reps; i++) { double s = fn(arg); if (s < best) best = s; }
    return best;
}

typedef struct { const tk_tok *t; const char *text; size_t len; size_t out; } job;

static double run_split(void *p) {
    job *j = p; qx_err e;
    double t0 = cpu_now();
    if (tk_count_pieces(j->t, j->text, j->len, &j->out, &e) != QX_OK) { fprintf(stderr, "%s\n", e.msg); exit(1); }
    return cpu_now() - t0;
}

static double run_encode(void *p) {
    job *j = p; qx_err e; int32_t *ids; size_t n;
    double t0 = cpu_now();
    if (tk_encode(j->t, j->text, j->len, false, &ids, &n, &e) != QX_OK) { fprintf(stderr, "%s\n", e.msg); exit(1); }
    double s = cpu_now() - t0;
    free(ids);
    j->out = n;
    return s;
}

static void bench_one(const char *name, const tk_tok *t, const char *text, size_t len) {
    job j = {t, text, len, 0};
    double ts = best_of(3, run_split, &j);
    size_t pieces = j.out;
    double te = best_of(3, run_encode, &j);
    double mb = (double)len / 1e6;
    printf("%-28s %8.2f MB/s encode (%zu ids)   %8.2f MB/s regex split only (%zu pieces)\n", name, mb / te, j.out,
           mb / ts, pieces);
    printf("%-28s ratio encode/split-only %.2f   ratio encode/target(5 MB/s) %.2f  -> %s\n", "", (mb / te) / (mb / ts),
           (mb / te) / 5.0, mb / te >= 5.0 ? "meets target" : "BELOW target");
}

int main(void) {
    const char *shared = getenv("QF_SHARED") ? getenv("QF_SHARED") : "../shared";
    char p[1024];
    snprintf(p, sizeof p, "%s/models/mini-v3/eval.txt", shared);
    char *text; size_t len; qx_err e;
    if (qx_read_file(p, &text, &len, &e) != QX_OK) { printf("bench_tokenizer: skipped (%s)\n", e.msg); return 0; }
    printf("text: %s, %zu bytes, one thread; times are thread CPU seconds, best of 3\n", p, len);

    snprintf(p, sizeof p, "%s/fixtures/deepseek-v3-tokenizer", shared);
    tk_tok *ds = NULL;
    double w0 = qx_now(), t0 = cpu_now();
    if (tk_load(p, &ds, &e) != QX_OK) { fprintf(stderr, "%s\n", e.msg); return 1; }
    double tload = cpu_now() - t0, wload = qx_now() - w0;
    tk_vocab v;
    if (tk_export(ds, 129280, "deepseek2", &v, &e) != QX_OK) { fprintf(stderr, "%s\n", e.msg); return 1; }
    tk_tok *ds2 = NULL;
    t0 = cpu_now();
    if (tk_from_vocab(&v, "vocab", &ds2, &e) != QX_OK) { fprintf(stderr, "%s\n", e.msg); return 1; }
    double tvocab = cpu_now() - t0;
    printf("DeepSeek-V3 tokenizer load: %.3f s CPU (%.3f s wall) from tokenizer.json (target < 1 s), %.3f s CPU from the "
           "GGUF-form vocab\n", tload, wload, tvocab);
    tk_vocab_free(&v);
    tk_free(ds2);
    bench_one("DeepSeek-V3 (128k merges)", ds, text, len);
    tk_free(ds);

    const char *minis[] = {"mini-v3", "mini-llama", "mini-qwen2"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/models/%s", shared, minis[i]);
        tk_tok *t = NULL;
        if (tk_load(p, &t, &e) != QX_OK) { fprintf(stderr, "%s\n", e.msg); return 1; }
        bench_one(minis[i], t, text, len);
        tk_free(t);
    }
    free(text);
    return 0;
}
