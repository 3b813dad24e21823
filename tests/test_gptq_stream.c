/* tests/test_gptq_stream.c — `convert --gptq` as one streamed pass (pass/gptq_stream.c), run
 * through the qforge binary on mini-v3-moe (32 experts) with a short calibration:
 *  1. the bytes do not depend on the thread count (-t 1 vs -t 2);
 *  2. one layer's Hessians at a time: the measured peak of Hessians+factors (--json) is at
 *     most the dry run's largest layer (and far below the sum over layers);
 *  3. --gptq-min-tokens: above every matrix's count, no matrix gets a factor and the bytes
 *     equal the plain build's; between the experts' counts, exactly the experts below it
 *     (from the per-expert counts in --json) are reported plain, and the build differs from
 *     both;
 *  4. --gptq-mem below the predicted peak: refused before starting, no output written;
 *  5. kill -9 mid-run, then --resume: byte-identical to the uninterrupted build; a resume
 *     with other GPTQ settings is refused (they are in the plan hash);
 *  6. --gptq-save on one build, --gptq-load on another preset: the same bytes as that preset
 *     built directly; a file of other windows, or truncated, refused with a one-line error and
 *     no output. */
#include "tests/util/tu.h"

#include <jansson.h>
#include <sys/stat.h>

static bool same_file(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    void *x = tu_read_file(a, &na), *y = tu_read_file(b, &nb);
    bool eq = x && y && na == nb && !memcmp(x, y, na);
    free(x); free(y);
    return eq;
}

static json_t *gptq_json(const char *path) {
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    json_t *g = j ? json_object_get(j, "gptq") : NULL;
    if (g) json_incref(g);
    json_decref(j);
    return g;
}

static double num(json_t *o, const char *k) { return json_number_value(json_object_get(o, k)); }

int main(void) {
    const char *m0 = tu_shared_path("models/mini-v3-moe");
    if (!m0 || !qx_is_dir(m0)) return tu_skip("../shared/models/mini-v3-moe not found");
    char m[4096];
    snprintf(m, sizeof m, "%s", m0);
    const char *q = tu_qforge(), *t = tu_tmpdir();
    const char *g = "--gptq-chunks 6 --gptq-ctx 128";   /* 768 tokens: ~190 per expert (k 8 of 32), some below 256 columns */
    TU_CHECK(tu_system("%s imatrix %s --text %s/calib.txt --chunks 8 --ctx 128 -o %s/im.gguf > %s/log 2>&1", q, m, m, t, t) == 0, "imatrix");

    /* 1. threads */
    for (int k = 1; k <= 2; k++)
        TU_CHECK(tu_system("%s convert %s -o %s/t%d.gguf --type Q2_K --imatrix %s/im.gguf --gptq %s/calib.txt %s -t %d --json %s/t%d.json"
                           " > %s/t%d.log 2>&1", q, m, t, k, t, m, g, k, t, k, t, k) == 0, "convert --gptq -t %d", k);
    char a[4200], b[4200];
    snprintf(a, sizeof a, "%s/t1.gguf", t); snprintf(b, sizeof b, "%s/t2.gguf", t);
    TU_CHECK(same_file(a, b), "--gptq bytes differ between 1 and 2 threads");
    TU_CHECK(tu_system("%s convert %s -o %s/plain.gguf --type Q2_K --imatrix %s/im.gguf > %s/log 2>&1", q, m, t, t, t) == 0, "plain");
    snprintf(b, sizeof b, "%s/plain.gguf", t);
    TU_CHECK(!same_file(a, b), "the --gptq build equals the plain one: no feedback happened");

    /* 2. one layer of Hessians at a time */
    char jp[4200];
    snprintf(jp, sizeof jp, "%s/t2.json", t);
    json_t *run = gptq_json(jp);
    TU_CHECK(tu_system("%s convert %s --type Q2_K --gptq %s/calib.txt %s -t 2 --dry-run --json %s/dry.json > %s/dry.out 2>&1", q, m, m, g, t, t) == 0,
             "dry run");
    snprintf(jp, sizeof jp, "%s/dry.json", t);
    json_t *dry = gptq_json(jp);
    TU_CHECK(run && dry, "gptq members in --json");
    if (run && dry) {
        double peak = num(run, "peak_hessian_bytes"), lay = num(dry, "hessian_bytes"), ws = num(dry, "workspace_bytes");
        fprintf(stderr, "measured peak Hessians+factors %.0f bytes; dry run: largest layer %.0f + factor workspaces %.0f, pass peak %.0f\n", peak,
                lay, ws, num(dry, "peak_bytes"));
        /* mini-v3-moe: 3 MoE layers of 32 experts, all at once ~3x the largest; the model uses average
         * rows per expert, the run has busier experts and grown buffers: within 1.3x (the bench goal) */
        TU_CHECK(peak > 0.5 * lay && peak <= 1.3 * (lay + ws), "peak %.0f not within the largest layer's %.0f + %.0f", peak, lay, ws);
    }

    /* 3. the expert fallback (under the sanitizers, QF_QUICK: sections 3 and 6 are left to the
     * plain `make test`, their builds are the slowest part of the instrumented suite) */
    bool quick = tu_quick();
    json_t *mj = NULL;
    double lo = 1e30, hi = 0;
    json_t *cnt = run ? json_object_get(run, "expert_tokens") : NULL;
    size_t ne = json_array_size(cnt);
    for (size_t i = 0; i < ne; i++) {
        double v = num(json_array_get(cnt, i), "tokens");
        if (v < lo) lo = v;
        if (v > hi) hi = v;
    }
    TU_CHECK(ne == 192 && lo < hi, "192 routed-expert matrices (3 layers x 32 experts x gate/up and down), not all equal: %zu, %.0f..%.0f", ne, lo, hi);
    double mid = (lo + hi) / 2;
    size_t below = 0;
    if (!quick) {
    for (size_t i = 0; i < ne; i++) below += num(json_array_get(cnt, i), "tokens") < mid;
    TU_CHECK(tu_system("%s convert %s -o %s/mid.gguf --type Q2_K --imatrix %s/im.gguf --gptq %s/calib.txt %s --gptq-min-tokens %.0f"
                       " --json %s/mid.json > %s/mid.log 2>&1", q, m, t, t, m, g, mid, t, t) == 0, "convert --gptq-min-tokens %.0f", mid);
    snprintf(jp, sizeof jp, "%s/mid.json", t);
    mj = gptq_json(jp);
    TU_CHECK(mj && (size_t)num(mj, "experts_plain") == below && below > 0 && below < ne,
             "--gptq-min-tokens %.0f: %.0f experts reported plain, %zu of %zu are below it", mid, mj ? num(mj, "experts_plain") : -1, below, ne);
    TU_CHECK(tu_system("grep -q 'routed experts: %zu of 192 plain' %s/mid.log", below, t) == 0, "the build log reports the fallback");
    snprintf(a, sizeof a, "%s/mid.gguf", t);
    snprintf(b, sizeof b, "%s/t1.gguf", t);
    TU_CHECK(!same_file(a, b), "the fallback changed nothing");
    TU_CHECK(tu_system("%s convert %s -o %s/all.gguf --type Q2_K --imatrix %s/im.gguf --gptq %s/calib.txt %s --gptq-min-tokens 1e9"
                       " > %s/log 2>&1", q, m, t, t, m, g, t) == 0, "convert --gptq-min-tokens 1e9");
    snprintf(a, sizeof a, "%s/all.gguf", t);
    snprintf(b, sizeof b, "%s/plain.gguf", t);
    TU_CHECK(same_file(a, b), "every matrix below --gptq-min-tokens: the bytes must be the plain build's");
    }

    /* 4. the memory cap */
    int rc = tu_system("%s convert %s -o %s/cap.gguf --type Q2_K --gptq %s/calib.txt %s --gptq-mem 1M > %s/cap.log 2>&1", q, m, t, m, g, t);
    TU_CHECK(rc != 0 && tu_system("grep -q -- '--gptq-mem' %s/cap.log", t) == 0, "--gptq-mem 1M must refuse (rc %d)", rc);
    struct stat st;
    snprintf(a, sizeof a, "%s/cap.gguf", t);
    TU_CHECK(stat(a, &st) != 0, "refused run left %s", a);
    snprintf(a, sizeof a, "%s/cap.gguf.part", t);
    TU_CHECK(stat(a, &st) != 0, "refused run left %s", a);

    /* 5. kill -9 and --resume */
    rc = tu_system("QF_TEST_SIGKILL_AT_STOP=1 %s convert %s -o %s/r.gguf --type Q2_K --imatrix %s/im.gguf --gptq %s/calib.txt %s"
                   " --max-items 60 > %s/r1.log 2>&1", q, m, t, t, m, g, t);
    TU_CHECK(rc != 0, "the killed run exited 0");
    snprintf(a, sizeof a, "%s/r.gguf", t);
    TU_CHECK(stat(a, &st) != 0, "a killed run left a complete-looking %s", a);
    rc = tu_system("%s convert %s -o %s/r.gguf --type Q2_K --imatrix %s/im.gguf --gptq %s/calib.txt %s --gptq-damp 0.2 --resume"
                   " > %s/r2.log 2>&1", q, m, t, t, m, g, t);
    TU_CHECK(rc != 0 && tu_system("grep -q 'different plan' %s/r2.log", t) == 0, "resume with another --gptq-damp must be refused");
    TU_CHECK(tu_system("%s convert %s -o %s/r.gguf --type Q2_K --imatrix %s/im.gguf --gptq %s/calib.txt %s --resume > %s/r3.log 2>&1",
                       q, m, t, t, m, g, t) == 0, "resume");
    TU_CHECK(tu_system("grep -q 'resumed:' %s/r3.log", t) == 0, "the resumed run skipped nothing");
    snprintf(b, sizeof b, "%s/t1.gguf", t);
    TU_CHECK(same_file(a, b), "resumed --gptq build differs from the uninterrupted one");
    /* 6. the statistics file */
    if (quick) { json_decref(run); json_decref(dry); json_decref(mj); return tu_done("test_gptq_stream"); }
    TU_CHECK(tu_system("%s convert %s -o %s/sv.gguf --type Q2_K --imatrix %s/im.gguf --gptq %s/calib.txt %s --gptq-save %s/st.qfh > %s/log 2>&1",
                       q, m, t, t, m, g, t, t) == 0, "--gptq-save");
    snprintf(a, sizeof a, "%s/sv.gguf", t);
    snprintf(b, sizeof b, "%s/t1.gguf", t);
    TU_CHECK(same_file(a, b), "--gptq-save changed the build");
    TU_CHECK(tu_system("%s convert %s -o %s/ld.gguf --type IQ2_XXS --imatrix %s/im.gguf --gptq %s/calib.txt %s --gptq-load %s/st.qfh > %s/log 2>&1",
                       q, m, t, t, m, g, t, t) == 0, "--gptq-load");
    TU_CHECK(tu_system("%s convert %s -o %s/dir.gguf --type IQ2_XXS --imatrix %s/im.gguf --gptq %s/calib.txt %s > %s/log 2>&1",
                       q, m, t, t, m, g, t) == 0, "IQ2_XXS --gptq");
    snprintf(a, sizeof a, "%s/ld.gguf", t);
    snprintf(b, sizeof b, "%s/dir.gguf", t);
    TU_CHECK(same_file(a, b), "--gptq-load build differs from the direct --gptq build of the same preset");
    rc = tu_system("%s convert %s -o %s/bad.gguf --type IQ2_XXS --imatrix %s/im.gguf --gptq %s/calib.txt --gptq-chunks 5 --gptq-ctx 128"
                   " --gptq-load %s/st.qfh > %s/bad.log 2>&1", q, m, t, t, m, t, t);
    TU_CHECK(rc != 0 && tu_system("grep -q 'gathered for another' %s/bad.log", t) == 0, "other windows must be refused");
    TU_CHECK(tu_system("head -c 300000 %s/st.qfh > %s/tr.qfh", t, t) == 0, "truncate");
    rc = tu_system("%s convert %s -o %s/bad.gguf --type IQ2_XXS --imatrix %s/im.gguf --gptq %s/calib.txt %s --gptq-load %s/tr.qfh > %s/bad.log 2>&1",
                   q, m, t, t, m, g, t, t);
    TU_CHECK(rc != 0 && tu_system("test $(grep -c 'error:.*tr.qfh: layer' %s/bad.log) -eq 1 && test $(grep -c 'error' %s/bad.log) -eq 1", t, t) == 0,
             "a truncated statistics file must be refused naming it and the layer");
    snprintf(a, sizeof a, "%s/bad.gguf", t);
    TU_CHECK(stat(a, &st) != 0, "a refused --gptq-load left %s", a);
    json_decref(run); json_decref(dry); json_decref(mj);
    return tu_done("test_gptq_stream");
}
