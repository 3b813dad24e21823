/* bench/bench_engine.c — forward-pass throughput of the layer-major engine on mini-v3 (FP8
 * checkpoint read directly): tokens/s with the scalar reference kernels (baseline: naive
 * dequantize-a-row-then-dot matmul, plain attention) vs the tiled AVX2/OpenMP kernels on 1
 * thread and on all threads, in the same run; then perplexity of the first 100 windows
 * against the reference 40.9730 (ablations.json), and with --full all 1474 windows against
 * 42.429705 (~200 s of CPU); peak RSS.
 * usage: bench_engine [--full] [--windows N]   (run from the repo root; needs ../shared) */
#include "calib/calib.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static qx_status sink(void *ud, int64_t w, int64_t p0, const float *l, int64_t n, int64_t V, qx_err *e) {
    (void)w; (void)p0; (void)e;
    *(double *)ud += l[(n - 1) * V];
    return QX_OK;
}

static double run(cal_model *m, const int32_t *ids, int64_t nw, int threads, bool ref) {
    cal_run_params rp = cal_run_default_params();
    rp.n_threads = threads; rp.ref_kernels = ref;
    double acc = 0;
    cal_observer ob = { .ud = &acc, .logits = sink };
    qx_err e = {0};
    double t0 = qx_now();
    if (cal_forward(m, ids, nw, 256, &rp, &ob, &e) != QX_OK) { fprintf(stderr, "forward: %s\n", e.msg); exit(1); }
    return (double)(nw * 256) / (qx_now() - t0);
}

int main(int argc, char **argv) {
    bool full = false;
    int64_t nw = 8;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--full")) full = true;
        else if (!strcmp(argv[i], "--windows") && i + 1 < argc) nw = atoll(argv[++i]);
    }
    const char *dir = "../shared/models/mini-v3";
    if (!qx_is_dir(dir)) { printf("bench_engine: SKIP (../shared/models/mini-v3 not found)\n"); return 0; }
    qx_err e = {0};
    cal_model *m = NULL;
    if (cal_model_open(&m, dir, &e) != QX_OK) { fprintf(stderr, "%s\n", e.msg); return 1; }
    char *idb; size_t idl;
    if (qx_read_file("../shared/models/mini-v3/reference/eval_ids.bin", &idb, &idl, &e) != QX_OK) { fprintf(stderr, "%s\n", e.msg); return 1; }
    const int32_t *ids = (const int32_t *)(void *)idb;
    int nt = qx_default_threads();
    run(m, ids, 1, 1, false);   /* warm the page cache */
    double ref = run(m, ids, nw, 1, true);
    double f1 = run(m, ids, nw, 1, false);
    double fn = run(m, ids, nw, nt, false);
    printf("mini-v3 forward, %lld windows x 256 tokens (FP8 weights, all logits):\n", (long long)nw);
    printf("  reference kernels, 1 thread : %8.0f tokens/s  (baseline)\n", ref);
    printf("  fast kernels,      1 thread : %8.0f tokens/s  (%.2fx baseline)\n", f1, f1 / ref);
    printf("  fast kernels, %2d threads    : %8.0f tokens/s  (%.2fx baseline)\n", nt, fn, fn / ref);

    cal_ppl_params p = cal_ppl_default_params();
    p.protocol = CAL_PPL_ALL; p.n_ctx = 256; p.n_chunks = full ? 0 : 100; p.n_threads = nt;
    cal_ppl_result r;
    if (cal_ppl_run(m, ids, (int64_t)(idl / 4), &p, &r, &e) != QX_OK) { fprintf(stderr, "%s\n", e.msg); return 1; }
    double want = full ? 42.429705 : 40.9730;
    printf("perplexity, %lld windows: %.6f (reference %.6f, rel. diff %.2e), %.0f tokens/s\n",
           (long long)r.n_chunks, r.ppl, want, r.ppl / want - 1, r.tokens_per_s);
    printf("peak RSS %.1f MiB\n", (double)qx_peak_rss_bytes() / (1 << 20));
    free(idb);
    cal_model_close(m);
    return fabs(r.ppl / want - 1) < 1e-3 ? 0 : 1;
}
