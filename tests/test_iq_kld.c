/* tests/test_iq_kld.c — end-to-end KL divergence of every llama.cpp IQ preset on mini-v3,
 * against llama.cpp's own build of the same preset (issue 11: our IQ quantizers beat ggml's
 * per-tensor weighted error and still lost 1.7-1.9x more KLD end to end).
 *
 * Protocol, all through the CLI as a user runs it: `qforge imatrix` of calib.txt (ctx 128,
 * 64 chunks), `qforge convert --type P --imatrix`, `qforge ppl --base` on eval.txt (ctx 256,
 * 64 chunks, llama-perplexity's protocol; qforge ppl agrees with llama-perplexity
 * --kl-divergence, see docs/llama-cpp-crosschecks.md).
 *
 * LLAMA_KLD: llama.cpp 34af94cd9ab2 (unslothai/llama.cpp mirror, CPU build outside the repo),
 * 2026-12-03: llama-imatrix -f calib.txt -c 128 --chunks 64 on qforge's F32 GGUF of mini-v3,
 * llama-quantize --imatrix, llama-perplexity --kl-divergence against the F32 model on eval.txt
 * (-c 256 -b 256 --chunks 64).  The IQ1_S/IQ1_M/IQ2_XXS/IQ2_XS figures equal the issue's.
 * RATIO: the bound on ours / llama.cpp's, 0.04 above what was measured here (0.85-1.04; the
 * issue's goal of 0.9 is not reached by the imatrix alone, see docs/iq-vs-ggml.md).  Before
 * the fix the ratios were 1.17-1.94: every IQ1/IQ2 preset failed.
 * GPTQ: the same preset, imatrix and bytes with `--gptq calib.txt --gptq-chunks 16` (the
 * error feedback of docs/gptq.md, every IQ type with its group search); bound min(0.9, measured
 * + 0.04): the goal.  Measured 0.60-0.83x with 16 windows (64 windows: 0.61-0.81x).
 * ~3.5 minutes on 2 cores; SKIP under QF_QUICK. */
#include "tests/util/tu.h"

#include <jansson.h>
#include <math.h>

static const struct { const char *preset; double llama_kld, ratio, gptq_ratio; } cases[] = {
    { "IQ1_S", 0.161213, 1.08, 0.76 },   /* measured 0.16708 (1.04x); --gptq 0.11555 (0.72x) */
    { "IQ1_M", 0.132107, 0.96, 0.78 },   /* 0.12068 (0.91x); 0.09818 (0.74x) */
    { "IQ2_XXS", 0.086353, 0.98, 0.79 }, /* 0.08128 (0.94x); 0.06485 (0.75x) */
    { "IQ2_XS", 0.066299, 1.04, 0.87 },  /* 0.06634 (1.00x); 0.05477 (0.83x) */
    { "IQ2_M", 0.039640, 1.04, 0.70 },   /* 0.03948 (1.00x); 0.02630 (0.66x) */
    { "IQ3_XXS", 0.028282, 0.95, 0.65 }, /* 0.02568 (0.91x); 0.01710 (0.60x) */
    { "IQ3_S", 0.020635, 0.89, 0.67 },   /* 0.01755 (0.85x); 0.01295 (0.63x) */
};

static double kld_of(const char *tmp, const char *m, const char *q, const char *name) {
    TU_CHECK(tu_system("%s ppl %s/%s.gguf --text %s/eval.txt --ctx 256 --chunks 64 --base %s/base.qfb --json %s/%s.json"
                       " > %s/%s.out 2>&1", q, tmp, name, m, tmp, tmp, name, tmp, name) == 0, "%s KLD run", name);
    char jp[600];
    snprintf(jp, sizeof jp, "%s/%s.json", tmp, name);
    json_error_t je;
    json_t *o = json_load_file(jp, 0, &je);
    json_t *v = o ? json_object_get(o, "kld_mean") : NULL;
    const double kld = json_is_number(v) ? json_number_value(v) : NAN;
    json_decref(o);
    tu_system("rm -f %s/%s.gguf", tmp, name);
    return kld;
}

int main(void) {
    const char *model = tu_shared_path("models/mini-v3");
    if (!model || !qx_is_dir(model)) return tu_skip("../shared/models not found");
    if (tu_quick()) return tu_skip("QF_QUICK: fourteen conversions and 64-window KLD runs (~3.5 min)");
    char m[4096];
    snprintf(m, sizeof m, "%s", model);
    const char *tmp = tu_tmpdir(), *q = tu_qforge();
    double t0 = qx_now();
    TU_CHECK(tu_system("%s imatrix %s --text %s/calib.txt --ctx 128 --chunks 64 -o %s/im.gguf > %s/im.out 2>&1", q, m, m, tmp,
                       tmp) == 0, "imatrix of calib.txt");
    TU_CHECK(tu_system("%s ppl %s --text %s/eval.txt --ctx 256 --chunks 64 --save-base %s/base.qfb > %s/base.out 2>&1", q, m,
                       m, tmp, tmp) == 0, "base log-probs of eval.txt");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *p = cases[i].preset;
        TU_CHECK(tu_system("%s convert %s -o %s/%s.gguf --type %s --imatrix %s/im.gguf > %s/cv.out 2>&1", q, m, tmp, p, p, tmp,
                           tmp) == 0, "%s conversion", p);
        const double kld = kld_of(tmp, m, q, p);
        const double bound = cases[i].llama_kld * cases[i].ratio;
        fprintf(stderr, "%-8s KLD %.5f, llama.cpp %.5f: %.3fx (bound %.2fx)\n", p, kld, cases[i].llama_kld,
                kld / cases[i].llama_kld, cases[i].ratio);
        TU_CHECK(isfinite(kld) && kld > 0, "%s: finite KLD", p);
        TU_CHECK(kld <= bound, "%s: KLD %.5f above %.2f x llama.cpp's %.5f", p, kld, cases[i].ratio, cases[i].llama_kld);
        char g[64];
        snprintf(g, sizeof g, "%s-gptq", p);
        TU_CHECK(tu_system("%s convert %s -o %s/%s.gguf --type %s --imatrix %s/im.gguf --gptq %s/calib.txt --gptq-chunks 16"
                           " > %s/cv.out 2>&1", q, m, tmp, g, p, tmp, m, tmp) == 0, "%s --gptq conversion", p);
        const double kg = kld_of(tmp, m, q, g);
        fprintf(stderr, "%-8s --gptq KLD %.5f: %.3fx (bound %.2fx)\n", p, kg, kg / cases[i].llama_kld, cases[i].gptq_ratio);
        TU_CHECK(isfinite(kg) && kg > 0 && cases[i].gptq_ratio <= 0.9, "%s: --gptq finite KLD, bound within the goal", p);
        TU_CHECK(kg <= cases[i].llama_kld * cases[i].gptq_ratio, "%s: --gptq KLD %.5f above %.2f x llama.cpp's %.5f", p, kg,
                 cases[i].gptq_ratio, cases[i].llama_kld);
    }
    fprintf(stderr, "%.1f s\n", qx_now() - t0);
    return tu_done("test_iq_kld");
}
