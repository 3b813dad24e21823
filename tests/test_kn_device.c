/* tests/test_kn_device.c — backend selection (kernels/backend.c) and `--device cuda`:
 *  - the CPU backend table computes exactly what the kn_ functions compute;
 *  - without a usable GPU (CI, this machine) opening the CUDA backend fails with
 *    QX_EUNSUPPORTED and the documented message, and `qforge ppl ... --device cuda` prints
 *    exactly one line "qforge: error: --device cuda: no CUDA device available
 *    (cudaGetDeviceCount: ...)" (or "... has no CUDA support" in a build without nvcc) and
 *    exits 1;
 *  - with a GPU, success is accepted only then: the backend's matmul is compared with the
 *    CPU (tolerance 1e-4 relative to the row scale) and `qforge ppl --device cuda` must run.
 *    (The full GPU comparison is `make test-cuda`.) */
#include "tests/util/tu.h"
#include "kernels/kernels.h"

static uint64_t rs = 0x2545f4914f6cdd1dull;
static float rnd(void) {
    rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17;
    return (float)((rs >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

/* Q4_K weight 40 x 256, 9 tokens; returns max |a-b| / max |b|. */
static double matmul_vs_cpu(const kn_backend *be, bool *bitwise) {
    enum { R = 40, K = 256, T = 9 };
    float *wf = malloc(R * K * sizeof(float)), *x = malloc(T * K * sizeof(float));
    float *y0 = malloc(T * R * sizeof(float)), *y1 = malloc(T * R * sizeof(float)), bias[R];
    uint8_t *wq = malloc(R * qt_row_size(QT_Q4_K, K));
    for (int i = 0; i < R * K; i++) wf[i] = rnd();
    for (int i = 0; i < T * K; i++) x[i] = rnd();
    for (int i = 0; i < R; i++) bias[i] = rnd();
    qt_quantize_rows(QT_Q4_K, wf, wq, R, K, NULL);
    kn_weight w;
    TU_CHECK(kn_weight_init(&w, QT_Q4_K, R, K, wq, NULL), "weight view");
    kn_matmul(&w, x, K, T, bias, y0, R);
    be->matmul(be->ctx, &w, x, K, T, bias, y1, R);
    double md = 0, mx = 0;
    for (int i = 0; i < T * R; i++) {
        md = fmax(md, fabs((double)y0[i] - y1[i]));
        mx = fmax(mx, fabs((double)y0[i]));
    }
    *bitwise = !memcmp(y0, y1, T * R * sizeof(float));
    qx_err e = {0};
    TU_OK(be->layer_done(be->ctx, &e), &e);
    free(wf); free(x); free(y0); free(y1); free(wq);
    return md / (mx > 0 ? mx : 1);
}

static void test_cpu_backend(void) {
    kn_backend *b = NULL;
    qx_err e = {0};
    kn_device d;
    TU_CHECK(kn_device_from_name("cpu", &d) && d == KN_DEVICE_CPU, "cpu name");
    TU_CHECK(kn_device_from_name("cuda", &d) && d == KN_DEVICE_CUDA, "cuda name");
    TU_CHECK(!kn_device_from_name("gpu", &d), "unknown device name refused");
    TU_OK(kn_backend_open(KN_DEVICE_CPU, &b, &e), &e);
    TU_CHECK(b == kn_backend_cpu() && !strcmp(b->name, "cpu"), "cpu backend is the static table");
    bool same = false;
    matmul_vs_cpu(b, &same);
    TU_CHECK(same, "cpu backend matmul is kn_matmul bit for bit");
    kn_backend_close(b);
}

static void test_cuda_backend(void) {
    kn_backend *b = NULL;
    qx_err e = {0};
    qx_status s = kn_backend_open(KN_DEVICE_CUDA, &b, &e);
    const char *tmp = tu_tmpdir(), *q = tu_qforge();
    if (s == QX_OK) {
        fprintf(stderr, "a GPU is present: %s\n", b->name);
        TU_CHECK(b->device == KN_DEVICE_CUDA && !strncmp(b->name, "cuda: ", 6), "cuda backend named '%s'", b->name);
        bool same;
        double rel = matmul_vs_cpu(b, &same);
        TU_CHECK(rel < 1e-4, "cuda backend matmul vs CPU: max diff %.3g of the output scale", rel);
        kn_backend_close(b);
        const char *model = tu_shared_path("models/mini-v3");
        if (model) {
            int rc = tu_system("%s ppl %s --ids %s/reference/eval_ids.bin --protocol all --ctx 128 --chunks 2 --device cuda > %s/gpu.out 2>&1",
                               q, model, model, tmp);
            TU_CHECK(rc == 0, "qforge ppl --device cuda on mini-v3 with a GPU present: exit %d", rc);
        }
        return;
    }
    TU_CHECK(b == NULL, "no backend on failure");
    TU_CHECK(s == QX_EUNSUPPORTED, "status %s", qx_status_name(s));
#ifdef QF_HAVE_CUDA
    const char *want = "--device cuda: no CUDA device available (cudaGetDeviceCount: ";
#else
    const char *want = "--device cuda: this build has no CUDA support";
#endif
    TU_CHECK(!strncmp(e.msg, want, strlen(want)), "message '%s' should start with '%s'", e.msg, want);
    /* the device is opened before the model, so the model path need not exist */
    int rc = tu_system("%s ppl no-such-model --text no-such-file --device cuda > %s/out.txt 2> %s/err.txt", q, tmp, tmp);
    TU_CHECK(rc == 1, "qforge ppl --device cuda without a GPU: exit %d, want 1", rc);
    char path[1024], line[1024] = "";
    snprintf(path, sizeof path, "%s/err.txt", tmp);
    FILE *f = fopen(path, "r");
    int lines = 0;
    if (f) {
        char buf[1024];
        while (fgets(buf, sizeof buf, f)) { if (!lines) snprintf(line, sizeof line, "%s", buf); lines++; }
        fclose(f);
    }
    char expect[512];
    snprintf(expect, sizeof expect, "qforge: error: %s", want);
    TU_CHECK(lines == 1, "stderr has %d lines, want exactly 1", lines);
    TU_CHECK(!strncmp(line, expect, strlen(expect)), "stderr '%s' should start with '%s'", line, expect);
    rc = tu_system("%s imatrix no-such-model --text no-such-file -o %s/x.gguf --device cuda > /dev/null 2> %s/err2.txt", q, tmp, tmp);
    TU_CHECK(rc == 1 && tu_system("grep -q 'qforge: error: --device cuda: ' %s/err2.txt", tmp) == 0,
             "qforge imatrix --device cuda without a GPU: exit %d and the same error", rc);
    rc = tu_system("%s ppl no-such-model --text no-such-file --device tpu > /dev/null 2>&1", q);
    TU_CHECK(rc == 2, "unknown --device is a usage error (exit %d)", rc);
}

int main(void) {
    test_cpu_backend();
    test_cuda_backend();
    return tu_done("test_kn_device");
}
