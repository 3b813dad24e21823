/* tests/test_ppl.c — perplexity and drift against independent references:
 *  - mini-v3, fixture protocol: PPL of windows 0-1 equals the PPL computed here from the
 *    reference logits (1e-5 relative).  The 100-window (40.9730, ablations.json) and full
 *    1474-window (42.429705) checks take 14 s / 200 s of CPU and live in bench/bench_engine.c
 *    (`make bench`), to keep this test well under a minute under ASan;
 *  - mini-llama, llama-perplexity protocol (BOS, second half scored), ctx 256, 64 chunks:
 *    96.095642 (torch; llama-perplexity agrees to 3e-6) within 0.1%;
 *  - drift: a base compared with itself gives KLD 0 and top-1 100%; builds with weights
 *    rounded to 8 and 2 bits (block-32 absmax, like Q8_0 / a crude 2-bit type) pass / fail
 *    the CLI gate (exit 0 / 3 naming the threshold); the top-64 KLD approximation of the
 *    base file is compared to the exact full-vocabulary KLD (top_k = vocab). */
#include "tests/util/tu.h"
#include "calib/calib.h"

#include <sys/stat.h>

/* Under the sanitizer run (tu_quick(): `make test-asan`, -O1, instrumented SIMD loads, ~10x
 * slower) the 64-chunk llama-protocol reference check runs 8 chunks for memory-safety
 * coverage only (its reference value exists for 64 chunks); `make test` asserts it. */

static cal_model *open_model(const char *rel) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", tu_shared_path(rel));
    cal_model *m = NULL; qx_err e = {0};
    TU_OK(cal_model_open(&m, dir, &e), &e);
    return m;
}

static void v3_checks(void) {
    cal_model *m = open_model("models/mini-v3");
    if (!m) return;
    size_t il, ll;
    int32_t *ids = (int32_t *)(void *)tu_read_file(tu_shared_path("models/mini-v3/reference/eval_ids.bin"), &il);
    float *lg = (float *)(void *)tu_read_file(tu_shared_path("models/mini-v3/reference/logits_w0_w1.f32"), &ll);
    TU_CHECK(ids && lg && ll == 2 * 256 * 2048 * 4, "reference files");
    if (!ids || !lg) return;
    double s = 0; int n = 0;
    for (int w = 0; w < 2; w++)
        for (int p = 0; p < 255; p++) {
            const float *l = lg + ((size_t)w * 256 + p) * 2048;
            double mx = l[0], z = 0;
            for (int j = 1; j < 2048; j++) mx = fmax(mx, l[j]);
            for (int j = 0; j < 2048; j++) z += exp((double)l[j] - mx);
            s += mx + log(z) - l[ids[w * 256 + p + 1]]; n++;
        }
    double ppl_ref2 = exp(s / n);
    qx_err e = {0};
    cal_ppl_params p = cal_ppl_default_params();
    p.protocol = CAL_PPL_ALL; p.n_ctx = 256; p.n_chunks = 2;
    cal_ppl_result r;
    TU_OK(cal_ppl_run(m, ids, (int64_t)(il / 4), &p, &r, &e), &e);
    TU_CHECK(r.n_tokens_scored == 510, "scored %lld", (long long)r.n_tokens_scored);
    TU_NEAR(r.ppl / ppl_ref2, 1.0, 1e-5, "2-window PPL %.8f vs %.8f from reference logits", r.ppl, ppl_ref2);
    free(ids); free(lg);
    cal_model_close(m);
}

static void llama_protocol(void) {
    cal_model *m = open_model("models/mini-llama");
    if (!m) return;
    size_t il;
    int32_t *ids = (int32_t *)(void *)tu_read_file(tu_shared_path("models/mini-llama/reference/eval_ids.bin"), &il);
    TU_CHECK(ids != NULL, "eval ids");
    if (!ids) return;
    qx_err e = {0};
    cal_ppl_params p = cal_ppl_default_params();
    const int64_t LLAMA_CHUNKS = tu_quick() ? 8 : 64;
    p.protocol = CAL_PPL_LLAMA; p.n_ctx = 256; p.n_chunks = LLAMA_CHUNKS;
    cal_ppl_result r;
    TU_OK(cal_ppl_run(m, ids, (int64_t)(il / 4), &p, &r, &e), &e);
    fprintf(stderr, "mini-llama llama protocol: PPL %.6f (reference 96.095642), %lld scored\n", r.ppl, (long long)r.n_tokens_scored);
    TU_CHECK(r.n_tokens_scored == LLAMA_CHUNKS * 127, "scored %lld", (long long)r.n_tokens_scored);
    if (LLAMA_CHUNKS == 64) TU_NEAR(r.ppl / 96.095642, 1.0, 1e-3, "llama-protocol PPL %.6f", r.ppl);
    else TU_CHECK(isfinite(r.ppl) && r.ppl > 50 && r.ppl < 200, "llama-protocol PPL %.6f", r.ppl);
    /* windows: BOS first, then the text shifted by one */
    int32_t *win; int64_t nw;
    TU_OK(cal_ppl_windows(ids, 1000, CAL_PPL_LLAMA, 256, 0, 2040, true, &win, &nw, &e), &e);
    TU_CHECK(nw == 3 && win[0] == 2040 && win[1] == ids[0] && win[256] == 2040 && win[257] == ids[256],
             "llama windows layout");
    free(win);
    TU_FAILS(cal_ppl_windows(ids, 100, CAL_PPL_ALL, 256, 0, 2040, true, &win, &nw, &e), &e, QX_EINVAL, "do not fill");
    free(ids);
    cal_model_close(m);
}

/* Writes a copy of mini-llama whose 2-D weights are rounded to `bits` (symmetric absmax
 * per block of 32), as one F32 model.safetensors. */
static int damaged_copy(const char *out_dir, int bits) {
    char src[4096], p[4096];
    snprintf(src, sizeof src, "%s", tu_shared_path("models/mini-llama"));
    st_model *sm = NULL; st_writer *w = NULL; qx_err e = {0};
    if (st_open(&sm, src, &e) != QX_OK || st_writer_create(&w, &e) != QX_OK) return -1;
    mkdir(out_dir, 0755);
    const float qmax = (float)((1 << (bits - 1)) - 1);
    for (size_t i = 0; i < st_count(sm); i++) {
        const st_tensor *t = st_at(sm, i);
        float *f = malloc(t->n_elems * 4);
        int64_t rows = t->n_dims == 2 ? t->shape[0] : 1;
        if (st_tensor_rows_f32(t, 0, rows, f, &e) != QX_OK) return -1;
        if (t->n_dims == 2)
            for (uint64_t b = 0; b < t->n_elems; b += 32) {
                float amax = 0;
                for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(f[b + j]));
                float d = amax / qmax;
                for (int j = 0; j < 32 && d > 0; j++) f[b + j] = d * roundf(f[b + j] / d);
            }
        if (st_writer_add(w, t->name, ST_F32, t->n_dims, t->shape, f, t->n_elems * 4, &e) != QX_OK) return -1;
        free(f);
    }
    snprintf(p, sizeof p, "%s/model.safetensors", out_dir);
    if (st_writer_write(w, p, &e) != QX_OK) return -1;
    st_writer_free(w); st_close(sm);
    return tu_system("cp %s/config.json %s/generation_config.json %s/tokenizer_config.json %s/", src, src, src, out_dir);
}

typedef struct { float *l; } cap_t;
static qx_status cap_logits(void *ud, int64_t win, int64_t p0, const float *l, int64_t n, int64_t V, qx_err *e) {
    cap_t *c = ud; (void)e; (void)p0;
    if (win == 0) memcpy(c->l, l, (size_t)(n * V) * sizeof(float));
    return QX_OK;
}
/* Mean exact KLD(base || build) over window 0 positions 128..254, straight from logits
 * (plain window, no BOS: an independent rough check of the order of magnitude). */
static double exact_kld(cal_model *mb, cal_model *mq, const int32_t *ids) {
    const int64_t V = 2048, S = 256;
    cap_t a = { malloc(S * V * 4) }, b = { malloc(S * V * 4) };
    cal_observer oa = { .ud = &a, .logits = cap_logits }, ob = { .ud = &b, .logits = cap_logits };
    cal_run_params rp = cal_run_default_params();
    qx_err e = {0};
    if (cal_forward(mb, ids, 1, S, &rp, &oa, &e) != QX_OK || cal_forward(mq, ids, 1, S, &rp, &ob, &e) != QX_OK) return -1;
    double tot = 0;
    for (int64_t p = 128; p < S - 1; p++) {
        const float *x = a.l + p * V, *y = b.l + p * V;
        double mx = -INFINITY, my = -INFINITY, zx = 0, zy = 0, k = 0;
        for (int64_t j = 0; j < V; j++) { mx = fmax(mx, x[j]); my = fmax(my, y[j]); }
        for (int64_t j = 0; j < V; j++) { zx += exp(x[j] - mx); zy += exp(y[j] - my); }
        for (int64_t j = 0; j < V; j++) {
            double lp = x[j] - mx - log(zx), lq = y[j] - my - log(zy);
            k += exp(lp) * (lp - lq);
        }
        tot += k;
    }
    free(a.l); free(b.l);
    return tot / (double)(S - 1 - 128);
}

static void drift(void) {
    const char *tmp = tu_tmpdir(), *q = tu_qforge();
    char d8[512], d2[512], d4[512], base[512], ids[4096], model[4096];
    snprintf(d8, sizeof d8, "%s/q8", tmp); snprintf(d2, sizeof d2, "%s/q2", tmp); snprintf(d4, sizeof d4, "%s/q4", tmp);
    snprintf(base, sizeof base, "%s/base.qfb", tmp);
    snprintf(model, sizeof model, "%s", tu_shared_path("models/mini-llama"));
    snprintf(ids, sizeof ids, "%s", tu_shared_path("models/mini-llama/reference/eval_ids.bin"));
    TU_CHECK(damaged_copy(d8, 8) == 0 && damaged_copy(d2, 2) == 0 && damaged_copy(d4, 4) == 0, "damaged copies written");
    const char *common = "--ctx 256 --chunks 2";
    TU_CHECK(tu_system("%s ppl %s --ids %s %s --save-base %s > %s/base.out 2>&1", q, model, ids, common, base, tmp) == 0, "save base");
    TU_CHECK(tu_system("test -s %s && test ! -e %s.part", base, base) == 0, "base file renamed into place, no .part left");
    int brc = tu_system("%s ppl %s --ids %s %s --save-base %s/no/such/dir/b.qfb > %s/badbase.out 2>&1", q, model, ids, common, tmp, tmp);
    TU_CHECK(brc == 1 && tu_system("grep -q 'cannot create base file' %s/badbase.out", tmp) == 0, "unwritable base path: one clear error (rc %d)", brc);
    TU_CHECK(tu_system("%s ppl %s --ids %s %s --base %s --max-kld 0.000001 --min-top1 1 --json %s/self.json > %s/self.out 2>&1",
                       q, model, ids, common, base, tmp, tmp) == 0, "base vs itself passes a zero-drift gate");
    TU_CHECK(tu_system("%s ppl %s --ids %s %s --base %s --max-kld 0.01 --max-ppl-ratio 1.01 --json %s/q8.json > %s/q8.out 2>&1",
                       q, d8, ids, common, base, tmp, tmp) == 0, "8-bit build passes the gate");
    int rc = tu_system("%s ppl %s --ids %s %s --base %s --max-kld 0.01 --max-ppl-ratio 1.01 > %s/q2.out 2>&1",
                       q, d2, ids, common, base, tmp);
    TU_CHECK(rc == 3, "2-bit build must fail the gate with exit 3, got %d", rc);
    TU_CHECK(tu_system("grep -q 'FAIL: mean KLD' %s/q2.out", tmp) == 0, "failure line names the threshold");
    TU_CHECK(tu_system("grep -q '\"kld_p99\"' %s/q8.json && grep -q '\"top1_agree\": 1' %s/self.json", tmp, tmp) == 0, "json keys");
    rc = tu_system("%s ppl %s --ids %s --ctx 128 --chunks 2 --base %s > %s/mismatch.out 2>&1", q, model, ids, base, tmp);
    TU_CHECK(rc == 1 && tu_system("grep -q 'ctx 256' %s/mismatch.out", tmp) == 0, "mismatched base is refused (rc %d)", rc);
    /* per-token KLD files and the paired comparison (CLI) */
    TU_CHECK(tu_system("%s ppl %s --ids %s %s --base %s --save-kld %s/q8.kld > %s/q8k.out 2>&1", q, d8, ids, common, base, tmp, tmp) == 0,
             "--save-kld");
    TU_CHECK(tu_system("%s ppl %s --ids %s %s --base %s --vs-kld %s/q8.kld --max-kld-delta 0 --json %s/q8vs.json > %s/q8vs.out 2>&1",
                       q, d8, ids, common, base, tmp, tmp, tmp) == 0, "a build against its own per-token KLD: delta 0 passes");
    TU_CHECK(tu_system("grep -Eq '\"kld_delta\": -?0\\.0,?$' %s/q8vs.json", tmp) == 0, "delta of a build with itself is exactly 0");
    rc = tu_system("%s ppl %s --ids %s %s --base %s --vs-kld %s/q8.kld --max-kld-delta 0 > %s/q2vs.out 2>&1", q, d2, ids, common, base, tmp, tmp);
    TU_CHECK(rc == 3 && tu_system("grep -q 'FAIL: mean KLD .* exceeds' %s/q2vs.out", tmp) == 0, "2-bit worse than 8-bit fails --max-kld-delta (rc %d)", rc);
    rc = tu_system("%s ppl %s --ids %s --ctx 256 --chunks 1 --base %s --vs-kld %s/q8.kld > %s/vsbad.out 2>&1", q, d8, ids, base, tmp, tmp);
    TU_CHECK(rc == 1, "a per-token file of another run is refused (rc %d)", rc);
    rc = tu_system("%s ppl %s --ids %s %s --vs-kld %s/q8.kld > %s/vsnobase.out 2>&1", q, d8, ids, common, tmp, tmp);
    TU_CHECK(rc == 2, "--vs-kld without --base is a usage error (rc %d)", rc);
    rc = tu_system("%s ppl %s --ids %s %s --device cuda > %s/cuda.out 2>&1", q, model, ids, common, tmp);
    TU_CHECK(rc == 0 || rc == 1, "--device cuda: runs (GPU) or fails cleanly (exit %d; see test_kn_device)", rc);

    /* top-64 + remainder vs exact KLD, library level */
    cal_model *mb = open_model("models/mini-llama"), *m4 = NULL;
    qx_err e = {0};
    TU_OK(cal_model_open(&m4, d4, &e), &e);
    size_t il;
    int32_t *tid = (int32_t *)(void *)tu_read_file(ids, &il);
    if (mb && m4 && tid) {
        char b64[512], bfull[512];
        snprintf(b64, sizeof b64, "%s/b64.qfb", tmp); snprintf(bfull, sizeof bfull, "%s/bfull.qfb", tmp);
        cal_ppl_params p = cal_ppl_default_params();
        p.n_ctx = 256; p.n_chunks = 2; p.protocol = CAL_PPL_LLAMA;
        cal_ppl_result r64, rfull, rb;
        p.save_base = b64; p.top_k = 64;
        TU_OK(cal_ppl_run(mb, tid, (int64_t)(il / 4), &p, &rb, &e), &e);
        p.save_base = bfull; p.top_k = 0;
        TU_OK(cal_ppl_run(mb, tid, (int64_t)(il / 4), &p, &rb, &e), &e);
        p.save_base = NULL; p.base = b64;
        TU_OK(cal_ppl_run(m4, tid, (int64_t)(il / 4), &p, &r64, &e), &e);
        p.base = bfull;
        TU_OK(cal_ppl_run(m4, tid, (int64_t)(il / 4), &p, &rfull, &e), &e);
        struct stat s64, sfull;
        stat(b64, &s64); stat(bfull, &sfull);
        fprintf(stderr, "4-bit build: KLD exact %.6f, top-64 %.6f (%.2f%%); base file %lld vs %lld bytes; PPL %.4f vs base %.4f; top-1 %.4f\n",
                rfull.kld_mean, r64.kld_mean, 100 * r64.kld_mean / rfull.kld_mean, (long long)s64.st_size,
                (long long)sfull.st_size, rfull.ppl, rfull.ppl_base, rfull.top1_agree);
        TU_CHECK(rfull.kld_mean > 0.001, "4-bit build drifts: %g", rfull.kld_mean);
        /* top-k + remainder is a lower bound of the exact KLD (log-sum inequality) */
        TU_CHECK(r64.kld_mean <= rfull.kld_mean * (1 + 1e-4) && r64.kld_mean >= 0.3 * rfull.kld_mean,
                 "top-64 KLD %g vs exact %g", r64.kld_mean, rfull.kld_mean);
        /* exact KLD recomputed here from the two models' logits of window 0 (second half) */
        TU_NEAR(rfull.kld_mean, exact_kld(mb, m4, tid), 0.5 * rfull.kld_mean, "full-row KLD %g", rfull.kld_mean);
        TU_NEAR(r64.ln_ppl_ratio, rfull.ln_ppl_ratio, 1e-6, "ln PPL ratio independent of k");
        TU_NEAR(r64.top1_agree, rfull.top1_agree, 0, "top-1 independent of k");
        TU_NEAR(rfull.ppl_base, rb.ppl, 1e-4 * rb.ppl, "base PPL from the file equals the base run");

        /* per-token file: its floats average to the run's KLD; the paired comparison of the
         * base model against the 4-bit build is minus that mean, with the SE of the tokens */
        char kf[512];
        snprintf(kf, sizeof kf, "%s/q4.kld", tmp);
        p.save_kld = kf;
        TU_OK(cal_ppl_run(m4, tid, (int64_t)(il / 4), &p, &rfull, &e), &e);
        size_t kl;
        unsigned char *kb = (unsigned char *)tu_read_file(kf, &kl);
        TU_CHECK(kb && kl == 40 + 4 * (size_t)rfull.n_tokens_scored, "per-token file size %zu for %lld tokens", kl, (long long)rfull.n_tokens_scored);
        if (kb && kl == 40 + 4 * (size_t)rfull.n_tokens_scored) {
            double sum = 0, sum2 = 0;
            for (int64_t i = 0; i < rfull.n_tokens_scored; i++) {
                float v; memcpy(&v, kb + 40 + 4 * i, 4);
                sum += v; sum2 += (double)v * v;
            }
            double n = (double)rfull.n_tokens_scored, mean = sum / n;
            TU_NEAR(mean, rfull.kld_mean, 1e-6 * rfull.kld_mean, "per-token KLDs average to the mean");
            p.save_kld = NULL; p.vs_kld = kf;
            cal_ppl_result rv;
            TU_OK(cal_ppl_run(mb, tid, (int64_t)(il / 4), &p, &rv, &e), &e);
            double se = sqrt((sum2 / n - mean * mean) / (n - 1));
            TU_CHECK(rv.has_vs, "paired comparison filled");
            TU_NEAR(rv.kld_delta, -mean, 1e-6 * mean, "base vs 4-bit: delta = -KLD(4-bit)");
            TU_NEAR(rv.kld_delta_err, se, 1e-3 * se, "paired SE");
            TU_NEAR(rv.vs_lower_frac, 1.0, 1e-9, "base is lower on every token");
            kb[0] ^= 1;
            FILE *f = fopen(kf, "wb");
            if (f) { fwrite(kb, 1, kl, f); fclose(f); }
            TU_FAILS(cal_ppl_run(mb, tid, (int64_t)(il / 4), &p, &rv, &e), &e, QX_EFORMAT, "bad magic");
            p.vs_kld = NULL;
        }
        free(kb);
    }
    free(tid);
    cal_model_close(mb); cal_model_close(m4);
}

int main(void) {
    const char *d = tu_shared_path("models/mini-v3");
    if (!d || !qx_is_dir(d)) return tu_skip("../shared/models not found");
    v3_checks();
    llama_protocol();
    drift();
    return tu_done("test_ppl");
}
