/* tests/test_sens_stream.c — one-stream sensitivity (cal_sens_stream_run) against the
 * per-candidate runs it replaces (cal_sens_run): on mini-v3-moe in F32, a few tensors of every
 * kind (embedding, attention, dense and expert FFN, shared expert, head) at two types each,
 * 4 windows of 64.  The one-stream table must equal the per-candidate one (KLD within 1e-3
 * relative, werr and bytes exactly), be identical for 1 and 2 threads and when a small memory
 * limit spills states to the scratch file, which is gone afterwards, also after a failure. */
#include "tests/util/tu.h"
#include "calib/calib.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const struct { const char *name; qt_type type; bool measure; } want[] = {
    { "token_embd.weight", QT_Q4_0, true },       { "token_embd.weight", QT_Q8_0, false },
    { "blk.0.attn_kv_a_mqa.weight", QT_Q2_K, true }, { "blk.0.ffn_down.weight", QT_Q4_0, true },
    { "blk.1.attn_k_b.weight", QT_Q4_0, true },   { "blk.1.ffn_gate_exps.weight", QT_Q2_K, true },
    { "blk.1.ffn_gate_exps.weight", QT_Q4_K, true }, { "blk.2.ffn_down_exps.weight", QT_Q3_K, true },
    { "blk.3.ffn_down_shexp.weight", QT_Q2_K, true }, { "blk.3.attn_output.weight", QT_Q4_0, true },
    { "output.weight", QT_Q2_K, true },           { "output.weight", QT_Q6_K, false },
};
#define N_ITEMS (sizeof want / sizeof want[0])

static void items_init(cal_sens_item *it) {
    memset(it, 0, N_ITEMS * sizeof *it);
    for (size_t i = 0; i < N_ITEMS; i++) { it[i].name = want[i].name; it[i].type = want[i].type; it[i].measure = want[i].measure; }
}

static bool same_table(const cal_sens_item *a, const cal_sens_item *b, const char *what, double rel) {
    bool ok = true;
    for (size_t i = 0; i < N_ITEMS; i++) {
        double d = fabs(a[i].kld - b[i].kld), tol = rel * fmax(fabs(a[i].kld), 1e-12);
        if (a[i].measured != b[i].measured || a[i].werr != b[i].werr || a[i].bytes != b[i].bytes || d > tol ||
            (rel == 0 && a[i].top1 != b[i].top1)) {
            fprintf(stderr, "%s: %s %s: kld %.9g vs %.9g (rel %.2e), werr %.9g vs %.9g, measured %d vs %d\n", what, a[i].name,
                    qt_type_name(a[i].type), a[i].kld, b[i].kld, d / fmax(fabs(a[i].kld), 1e-12), a[i].werr, b[i].werr,
                    a[i].measured, b[i].measured);
            ok = false;
        }
    }
    return ok;
}

int main(void) {
    const char *dir = tu_shared_path("models/mini-v3-moe");
    if (!dir || !qx_is_dir(dir)) return tu_skip("../shared/models not found");
    const char *tmp = tu_tmpdir(), *q = tu_qforge();
    char f32[600], ids_path[4200], base_a[600], base_b[600], scr[600];
    snprintf(f32, sizeof f32, "%s/f32.gguf", tmp);
    snprintf(ids_path, sizeof ids_path, "%s/reference/calib_ids.bin", dir);
    snprintf(base_a, sizeof base_a, "%s/a.qfb", tmp);
    snprintf(base_b, sizeof base_b, "%s/b.qfb", tmp);
    snprintf(scr, sizeof scr, "%s/states.scratch", tmp);
    TU_CHECK(tu_system("%s convert %s -o %s --type F32 --quiet > /dev/null 2>&1", q, dir, f32) == 0, "F32 conversion");
    size_t il;
    int32_t *ids = tu_read_file(ids_path, &il);
    TU_CHECK(ids && il >= 4 * 256 * 4, "calib ids");
    qx_err e = {0};
    cal_model *m = NULL;
    TU_OK(cal_model_open(&m, f32, &e), &e);
    if (!m || !ids) return tu_done("test_sens_stream");
    const int64_t n_ids = (int64_t)(il / 4);

    cal_sens_params p = cal_sens_default_params();
    p.ppl.n_ctx = 64;
    p.ppl.n_chunks = 4;
    p.ppl.n_threads = 1;
    cal_sens_item a[N_ITEMS], b[N_ITEMS], c[N_ITEMS], d[N_ITEMS];
    /* per candidate: a base, then a whole-model run per measured item */
    items_init(a);
    cal_ppl_result r0;
    p.ppl.save_base = base_a;
    TU_OK(cal_ppl_run(m, ids, n_ids, &p.ppl, &r0, &e), &e);
    p.ppl.save_base = NULL;
    p.ppl.base = base_a;
    double t0 = qx_now();
    TU_OK(cal_sens_run(m, ids, n_ids, &p, a, N_ITEMS, &e), &e);
    double t_per = qx_now() - t0;
    p.ppl.base = NULL;

    /* one stream, 1 thread, every state in memory */
    items_init(b);
    p.ppl.save_base = base_b;
    cal_sens_stream_stats st;
    t0 = qx_now();
    TU_OK(cal_sens_stream_run(m, ids, n_ids, &p, b, N_ITEMS, &st, &e), &e);
    double t_one = qx_now() - t0;
    fprintf(stderr, "per-candidate %.2f s, one stream %.2f s; %lld states of %.1f KiB, %lld layer steps, %.3g FLOP\n", t_per, t_one,
            (long long)st.n_states, st.state_bytes / 1024.0, (long long)st.layer_passes, st.flops);
    for (size_t i = 0; i < N_ITEMS; i++)
        fprintf(stderr, "  %-28s %-5s werr %.4e  kld per-candidate %.9f  one-stream %.9f\n", a[i].name, qt_type_name(a[i].type),
                a[i].werr, a[i].kld, b[i].kld);
    TU_CHECK(same_table(a, b, "one stream vs per candidate", 1e-3), "one-stream table differs from the per-candidate one");
    TU_CHECK(st.n_states == 9 && st.states_in_memory == 9 && st.state_bytes == 4 * 64 * 256 * 4, "states %lld (%lld in memory) of %llu bytes",
             (long long)st.n_states, (long long)st.states_in_memory, (unsigned long long)st.state_bytes);
    /* 4 layers each for the base and token_embd's state, then the layer items' states from their layer on */
    TU_CHECK(st.layer_passes == 4 + 4 + 2 * 4 + 3 * 3 + 2 + 2 * 1, "layer steps %lld", (long long)st.layer_passes);
    size_t na, nb;
    char *fa = tu_read_file(base_a, &na), *fb = tu_read_file(base_b, &nb);
    TU_CHECK(fa && fb && na == nb && !memcmp(fa, fb, na), "the one-stream base file differs from cal_ppl_run's");
    free(fa); free(fb);

    /* 2 threads: the same bits */
    items_init(c);
    p.ppl.n_threads = 2;
    t0 = qx_now();
    TU_OK(cal_sens_stream_run(m, ids, n_ids, &p, c, N_ITEMS, NULL, &e), &e);
    fprintf(stderr, "one stream with 2 threads %.2f s\n", qx_now() - t0);
    TU_CHECK(same_table(b, c, "2 threads vs 1", 0), "one-stream table depends on the thread count");

    /* room for one item state: the other 8 spill to the scratch file */
    items_init(d);
    p.ppl.n_threads = 1;
    p.mem_bytes = 3 * st.state_bytes;
    p.scratch = scr;
    t0 = qx_now();
    TU_OK(cal_sens_stream_run(m, ids, n_ids, &p, d, N_ITEMS, &st, &e), &e);
    fprintf(stderr, "one stream spilling %.2f s\n", qx_now() - t0);
    TU_CHECK(same_table(b, d, "spilled vs in memory", 0), "spilling changed the table");
    TU_CHECK(st.states_in_memory == 1 && st.scratch_io_bytes > 0 && st.scratch_bytes == 8 * st.state_bytes,
             "spill: %lld states in memory, %llu bytes of scratch, %llu moved", (long long)st.states_in_memory,
             (unsigned long long)st.scratch_bytes, (unsigned long long)st.scratch_io_bytes);
    TU_CHECK(access(scr, F_OK) != 0, "scratch file %s left behind", scr);

    /* a failure after spilling began (a type the last layer's rows cannot hold) removes it too */
    items_init(d);
    d[9].type = QT_Q4_K;   /* attn_k_b rows are 64 wide: no 256-blocks */
    d[9].name = "blk.3.attn_k_b.weight";
    TU_FAILS(cal_sens_stream_run(m, ids, n_ids, &p, d, N_ITEMS, NULL, &e), &e, QX_EINVAL, "cannot hold");
    TU_CHECK(access(scr, F_OK) != 0, "scratch file %s left behind after a failure", scr);
    p.mem_bytes = st.state_bytes;
    TU_FAILS(cal_sens_stream_run(m, ids, n_ids, &p, d, N_ITEMS, NULL, &e), &e, QX_EINVAL, "less than the 2 states");
    TU_CHECK(access(scr, F_OK) != 0, "scratch file %s left behind", scr);

    cal_model_close(m);
    free(ids);
    return tu_done("test_sens_stream");
}
