/* bench/bench_convert.c — `qforge convert` throughput and memory on synthetic checkpoints with
 * the real DeepSeek-V3 matrix shapes (synth preset v3-layers: 7168 hidden, MLA attention,
 * 18432 dense MLP, 7168x2048 experts; 8 experts per layer, small vocabulary) at two sizes.
 * The tensor list comes from `st_synth(..., sparse)`; the holes are then filled with FP8 codes
 * of Gaussian values (fast, so the bench spends its time converting, not generating).
 * For each size, in a forked child (so peak RSS is per conversion): plan + execute, reporting
 * GB/s of FP8/BF16 input, output size, peak RSS.  Baseline in the same run: the bare
 * quantizer (traits from_float over rows already in memory, same thread count) on a decoded
 * expert of the checkpoint, per output type; the plan's weights per type / those rates give
 * the time a zero-overhead pipeline would take; ratio = measured / that.
 * usage: bench_convert [--preset Q4_K_M] [--layers 1,6] [--threads N] [--keep]
 * (env QF_BENCH_DIR: where to write the checkpoints, default /tmp) */
#include "convert/convert.h"
#include "formats/formats.h"

#include <fcntl.h>
#include <time.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static void die(const char *what, const qx_err *e) {
    fprintf(stderr, "bench_convert: %s: %s\n", what, e ? e->msg : "");
    exit(1);
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return rng;
}
static float gauss(void) {
    double u = ((next() >> 11) + 0.5) / 9007199254740992.0, v = ((next() >> 11) + 0.5) / 9007199254740992.0;
    return (float)(sqrt(-2 * log(u)) * cos(2 * M_PI * v));
}

/* Fills every tensor of the sparse checkpoint in dir with plausible values. */
static void fill(const char *dir) {
    static uint8_t fp8tab[65536];
    for (int i = 0; i < 65536; i++) fp8tab[i] = qt_f32_to_fp8_e4m3(gauss() * 48.0f);
    st_model *m;
    qx_err e;
    if (st_open(&m, dir, &e) != QX_OK) die(dir, &e);
    size_t cap = 8u << 20;
    uint8_t *buf = malloc(cap);
    for (size_t i = 0; i < st_count(m); i++) {
        const st_tensor *t = st_at(m, i);
        int fd = open(st_shard_path(m, t->shard), O_WRONLY);
        if (fd < 0) die(st_shard_path(m, t->shard), NULL);
        bool is_scale = qx_ends_with(t->name, "_scale_inv"), is_bias = qx_ends_with(t->name, "e_score_correction_bias");
        for (uint64_t done = 0; done < t->nbytes;) {
            size_t n = t->nbytes - done < cap ? (size_t)(t->nbytes - done) : cap;
            if (t->dtype == ST_F8_E4M3) {
                for (size_t k = 0; k < n; k++) buf[k] = fp8tab[next() & 0xFFFF];
            } else if (t->dtype == ST_F32) {
                float *f = (float *)(void *)buf;
                for (size_t k = 0; k < n / 4; k++) f[k] = is_scale ? 4e-4f * (1.0f + 0.25f * gauss() * gauss()) : is_bias ? 0.01f * gauss() : 1.0f;
            } else {
                uint16_t *h = (uint16_t *)(void *)buf;
                for (size_t k = 0; k < n / 2; k++) h[k] = qt_f32_to_bf16(t->n_dims == 1 ? 1.0f : 0.02f * gauss());
            }
            if (pwrite(fd, buf, n, (off_t)(t->offset + done)) != (ssize_t)n) die("pwrite", NULL);
            done += n;
        }
        close(fd);
    }
    free(buf);
    st_close(m);
}

typedef struct { double seconds, cpu; uint64_t in_bytes, out_bytes, rss; double bpw; int ok; } child_res;

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The conversion runs in a fresh process (this binary re-executed with --child), so that its
 * peak RSS is its own and no OpenMP pool crosses a fork. */
static int child_main(const char *dir, const char *out, const char *preset, int threads) {
    cv_params p;
    cv_default_params(&p);
    p.preset = preset;
    p.n_threads = threads;
    cv_plan *pl;
    qx_err e;
    cv_result cr;
    child_res c = {0};
    double t0 = qx_now(), c0 = cpu_now();
    if (cv_plan_create(&pl, dir, &p, &e) == QX_OK && cv_execute(pl, out, &p, &cr, &e) == QX_OK) {
        c.seconds = qx_now() - t0;
        c.cpu = cpu_now() - c0;
        c.in_bytes = cv_plan_input_bytes(pl);
        c.out_bytes = cr.bytes;
        c.bpw = cr.bpw;
        c.rss = qx_peak_rss_bytes();
        c.ok = 1;
        cv_plan_free(pl);
    } else {
        fprintf(stderr, "bench_convert: %s\n", e.msg);
    }
    printf("%.6f %.6f %llu %llu %llu %.6f %d\n", c.seconds, c.cpu, (unsigned long long)c.in_bytes, (unsigned long long)c.out_bytes,
           (unsigned long long)c.rss, c.bpw, c.ok);
    return c.ok ? 0 : 1;
}

static child_res convert_in_child(const char *dir, const char *out, const char *preset, int threads) {
    child_res r = {0};
    char cmd[4096], self[1024];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return r;
    self[n] = 0;
    snprintf(cmd, sizeof cmd, "'%s' --child '%s' '%s' '%s' %d", self, dir, out, preset, threads);
    FILE *f = popen(cmd, "r");
    if (!f) return r;
    unsigned long long a, b, c;
    if (fscanf(f, "%lf %lf %llu %llu %llu %lf %d", &r.seconds, &r.cpu, &a, &b, &c, &r.bpw, &r.ok) != 7) r.ok = 0;
    r.in_bytes = a;
    r.out_bytes = b;
    r.rss = c;
    if (pclose(f) != 0) r.ok = 0;
    return r;
}

/* Bare quantizer: M weights/s of type t over `rows` rows of n (already decoded), threads. */
static double bare_rate(qt_type t, const float *src, int64_t rows, int64_t n, int threads, double *cpu_rate) {
    const qt_traits *tr = qt_get_traits(t);
    if (!tr || !tr->from_float) tr = qt_iq_traits(t);
    if (!tr || !tr->from_float) return 0;
    uint64_t rs = qt_row_size(t, n);
    uint8_t *dst = malloc((size_t)(rs * (uint64_t)rows));
    double best = 0;
    *cpu_rate = 0;
    for (int rep = 0; rep < 2; rep++) {
        double t0 = qx_now(), c0 = cpu_now();
#pragma omp parallel for schedule(dynamic, 4) num_threads(threads)
        for (int64_t r = 0; r < rows; r++) tr->from_float(src + r * n, dst + (uint64_t)r * rs, n, NULL);
        double rate = (double)(rows * n) / (qx_now() - t0), crate = (double)(rows * n) / (cpu_now() - c0);
        if (rate > best) best = rate;
        if (crate > *cpu_rate) *cpu_rate = crate;
    }
    free(dst);
    return best;
}

int main(int argc, char **argv) {
    const char *preset = "Q4_K_M", *layers_arg = "1,6";
    bool keep = false;
    int threads = qx_default_threads();
    if (argc == 6 && !strcmp(argv[1], "--child")) return child_main(argv[2], argv[3], argv[4], atoi(argv[5]));
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--preset") && i + 1 < argc) preset = argv[++i];
        else if (!strcmp(argv[i], "--layers") && i + 1 < argc) layers_arg = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--keep")) keep = true;
        else { fprintf(stderr, "usage: bench_convert [--preset P] [--layers 1,6] [--threads N] [--keep]\n"); return 2; }
    }
    const char *base = getenv("QF_BENCH_DIR") ? getenv("QF_BENCH_DIR") : "/tmp";
    int64_t sizes[2] = {1, 6};
    if (sscanf(layers_arg, "%lld,%lld", (long long *)&sizes[0], (long long *)&sizes[1]) != 2) return 2;
    printf("bench_convert: preset %s, %d threads, v3-layers checkpoints (real V3 shapes, 8 experts/layer)\n", preset, threads);
    double rss[2] = {0};
    for (int k = 0; k < 2; k++) {
        char dir[1024], out[1100];
        snprintf(dir, sizeof dir, "%s/qf-bench-v3-%lld-%d", base, (long long)sizes[k], (int)getpid());
        snprintf(out, sizeof out, "%s.gguf", dir);
        qx_err e;
        double t0 = qx_now();
        if (st_synth("v3-layers", dir, 5, true, sizes[k], &e) != QX_OK) die("synth", &e);
        fill(dir);
        double tgen = qx_now() - t0;
        child_res r = convert_in_child(dir, out, preset, threads);
        if (!r.ok) die("convert failed", NULL);
        /* baseline: bare quantizer per output type on one decoded expert-sized block of this checkpoint */
        cv_params p;
        cv_default_params(&p);
        p.preset = preset;
        cv_plan *pl;
        if (cv_plan_create(&pl, dir, &p, &e) != QX_OK) die("plan", &e);
        st_model *m;
        if (st_open(&m, dir, &e) != QX_OK) die("open", &e);
        const st_tensor *x = st_find(m, "model.layers.0.mlp.down_proj.weight");   /* [7168, 18432] */
        int64_t rows = 256, n = x->shape[1];
        float *src = malloc((size_t)(rows * n) * sizeof *src);
        if (st_tensor_rows_f32(x, 0, rows, src, &e) != QX_OK) die("decode", &e);
        double bare_s = 0, bare_cpu = 0;
        uint64_t per_type[QT_GGUF_COUNT] = {0};
        for (size_t i = 0; i < cv_plan_tensor_count(pl); i++) {
            cv_tensor_info t;
            cv_plan_tensor(pl, i, &t);
            if (t.type < QT_GGUF_COUNT) per_type[t.type] += t.n_elems;
        }
        printf("\n%lld layers: %.2f GB input (%s in %.0f s)\n", (long long)sizes[k], r.in_bytes / 1e9, "written", tgen);
        for (int t = 0; t < QT_GGUF_COUNT; t++) {
            if (!per_type[t]) continue;
            /* rows of the decoded block cut to a width that fits the type (attn_k_b uses 32-blocks) */
            int64_t w = qt_row_size((qt_type)t, n) ? n : 4096;
            double crate = 0;
            double rate = bare_rate((qt_type)t, src, rows * n / w, w, threads, &crate);
            double s = rate > 0 ? (double)per_type[t] / rate : 0;
            bare_s += s;
            bare_cpu += crate > 0 ? (double)per_type[t] / crate : 0;
            printf("  bare quantizer %-5s %8.1f M weights/s (%6.1f per CPU-s) x %6.3f G weights = %6.2f s\n", qt_type_name((qt_type)t),
                   rate / 1e6, crate / 1e6, per_type[t] / 1e9, s);
        }
        free(src);
        st_close(m);
        cv_plan_free(pl);
        double ratio = bare_s > 0 ? r.seconds / bare_s : 0;
        printf("  convert: %.2f s, %.3f GB/s of input (page cache), %.2f GB out (%.3f bpw), peak RSS %.1f MiB\n", r.seconds,
               r.in_bytes / r.seconds / 1e9, r.out_bytes / 1e9, r.bpw, r.rss / 1048576.0);
        printf("  ratio to the bare quantizer (same types, same threads): wall %.3f (overhead %+.1f%%), CPU time %.1f s vs %.1f s: %.3f "
               "(overhead %+.1f%%)\n", ratio, (ratio - 1) * 100, r.cpu, bare_cpu, bare_cpu > 0 ? r.cpu / bare_cpu : 0,
               bare_cpu > 0 ? (r.cpu / bare_cpu - 1) * 100 : 0);
        printf("  (wall-clock ratios are only meaningful on an idle machine; CPU time is robust to other load)\n");
        rss[k] = r.rss / 1048576.0;
        if (!keep) {
            char cmd[2300];
            snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", dir, out);
            if (system(cmd) != 0) fprintf(stderr, "bench_convert: could not remove %s\n", dir);
        }
    }
    printf("\npeak RSS: %.1f MiB (%lld layers) vs %.1f MiB (%lld layers): ratio %.2f (goal: flat, < 1024 MiB)\n", rss[0],
           (long long)sizes[0], rss[1], (long long)sizes[1], rss[0] > 0 ? rss[1] / rss[0] : 0);
    return 0;
}
