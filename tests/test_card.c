/* tests/test_card.c — `qforge card` and `qforge report` without a browser, and the drift
 * JSON parser they share (cal_drift_parse).  On a synthetic tiny-v3 split build with drift
 * JSON from `qforge ppl --json`: the card's YAML front matter (base model, license only when
 * known, tags gguf/quantized/architecture), every file of the set with its bytes, bits per
 * weight, the folded recipe, the imatrix line and the drift numbers exactly as in the JSON; the
 * report's plots, table and embedded JSON.  Bad input: one-line error naming the file, no
 * output left.  (tests/test_report_render.c renders the report in headless Chromium.) */
#include "tests/util/tu.h"
#include "calib/calib.h"
#include "formats/formats.h"

#include <unistd.h>

static char tmp[1024];

static char *slurp(const char *path) {
    size_t n;
    return tu_read_file(path, &n);
}

static void test_parser(void) {
    cal_drift d;
    qx_err e;
    const char *ok = "{\"ppl\": 12.5, \"protocol\": \"all\", \"n_ctx\": 64, \"n_chunks\": 2, \"n_tokens_scored\": 126,"
                     " \"per_layer\": [{\"layer\": 0, \"error\": 0.5}, {\"layer\": 1, \"error\": 0.25}]}";
    TU_OK(cal_drift_parse(ok, strlen(ok), "ok.json", &d, &e), &e);
    TU_CHECK(d.ppl == 12.5 && !d.has_base && !d.has_size && d.n_layers == 2 && d.layer[1] == 1 && d.layer_err[1] == 0.25,
             "minimal drift JSON misread");
    cal_drift_free(&d);
    const struct { const char *json, *needle; } bad[] = {
        {"[1]", "not a JSON object"},
        {"{\"protocol\": \"all\"}", "'ppl' missing"},
        {"{\"ppl\": 0, \"protocol\": \"all\", \"n_ctx\": 4, \"n_chunks\": 1, \"n_tokens_scored\": 1}", "'ppl' must be > 0"},
        {"{\"ppl\": 2, \"protocol\": \"all\", \"n_ctx\": 4, \"n_chunks\": 1, \"n_tokens_scored\": 1, \"ppl_base\": 2}", "'ln_ppl_ratio' missing"},
        {"{\"ppl\": 2, \"protocol\": \"all\", \"n_ctx\": 4, \"n_chunks\": 1, \"n_tokens_scored\": 1, \"model_bpw\": 4}", "come together"},
        {"{\"ppl\": 2, \"protocol\": \"all\", \"n_ctx\": 4, \"n_chunks\": 1, \"n_tokens_scored\": 1, \"per_layer\": [{\"layer\": 1}]}", "'error' missing"},
        {"{\"ppl\": 2, \"protocol\": 7, \"n_ctx\": 4, \"n_chunks\": 1, \"n_tokens_scored\": 1}", "not a string"},
        {"{\"ppl\": 2", "not JSON"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        TU_FAILS(cal_drift_parse(bad[i].json, strlen(bad[i].json), "bad.json", &d, &e), &e, QX_EFORMAT, bad[i].needle);
}

int main(void) {
    snprintf(tmp, sizeof tmp, "%s", tu_tmpdir());
    test_parser();
    const char *Q = tu_qforge(), *common = "--ctx 64 --chunks 3 -t 1";
    char dir[1100], text[1100], base[1100], cmd[8192];
    qx_err e;
    snprintf(dir, sizeof dir, "%s/tiny", tmp);
    TU_OK(st_synth("tiny-v3", dir, 3, false, 0, &e), &e);
    snprintf(text, sizeof text, "%s/t.txt", tmp);
    snprintf(base, sizeof base, "%s/base.qfb", tmp);
    FILE *f = fopen(text, "w");
    for (int i = 0; f && i < 60; i++) fprintf(f, "one two three %d four five six seven. ", i);
    if (f) fclose(f);
    TU_CHECK(tu_system("%s ppl '%s' --text '%s' %s --save-base '%s' > /dev/null 2>&1", Q, dir, text, common, base) == 0, "base");
    const char *types[] = {"Q8_0", "Q4_K_M", "Q2_K"};
    for (int i = 0; i < 3; i++) {
        TU_CHECK(tu_system("%s convert '%s' -o '%s/%s.gguf' --type %s --quiet --split-max-tensors 40 > /dev/null 2>&1", Q, dir, tmp, types[i],
                           types[i]) == 0, "convert %s", types[i]);
        TU_CHECK(tu_system("%s ppl '%s/%s-00001-of-00002.gguf' --text '%s' %s --base '%s' --json '%s/%s.json' > /dev/null 2>&1", Q, tmp,
                           types[i], text, common, base, tmp, types[i]) == 0, "ppl %s", types[i]);
    }
    char js[1200];
    snprintf(js, sizeof js, "%s/Q4_K_M.json", tmp);
    cal_drift d;
    TU_OK(cal_drift_load(js, &d, &e), &e);
    TU_CHECK(d.has_base && d.has_q && d.has_size && d.bpw > 4 && d.bpw < 6 && strstr(d.model, "Q4_K_M-00001-of-00002.gguf"),
             "ppl --json lacks base numbers, percentiles or size (bpw %g, model '%s')", d.bpw, d.model);
    TU_CHECK(d.kld_q[50] > 0 && fabs(d.kld_q[99] - d.kld_p99) <= 1e-9 * (1 + d.kld_p99) && d.kld_q[100] == d.kld_max,
             "percentiles disagree with median/p99/max");

    /* the card */
    char card[1200];
    snprintf(card, sizeof card, "%s/README.md", tmp);
    TU_CHECK(tu_system("%s card '%s/Q4_K_M-00001-of-00002.gguf' --drift '%s' --base-model deepseek-ai/DeepSeek-V3 -o '%s'", Q, tmp, js, card) == 0,
             "card");
    char *txt = slurp(card);
    TU_CHECK(txt != NULL, "no card");
    if (txt) {
        char want[256];
        TU_CHECK(!strncmp(txt, "---\nbase_model: \"deepseek-ai/DeepSeek-V3\"\n", 42), "front matter start: %.80s", txt);
        TU_CHECK(strstr(txt, "tags:\n- gguf\n- quantized\n- \"deepseek2\"\n") != NULL, "tags");
        TU_CHECK(!strstr(txt, "license:"), "a license line without a license");
        TU_CHECK(strstr(txt, "`Q4_K_M-00001-of-00002.gguf`") && strstr(txt, "`Q4_K_M-00002-of-00002.gguf`"), "files of the set");
        snprintf(want, sizeof want, "%.3f bits per weight", d.bpw);
        TU_CHECK(strstr(txt, want) != NULL, "bpw '%s' missing", want);
        TU_CHECK(strstr(txt, "| `blk.N.ffn_gate_exps.weight` | Q4_K |") != NULL, "folded recipe row");
        TU_CHECK(strstr(txt, "without an importance matrix") != NULL, "imatrix line");
        snprintf(want, sizeof want, "| %.5f ± %.5f | %.4f | %.2f %% |", d.kld_mean, d.kld_err, d.kld_p99, 100.0 * d.top1);
        TU_CHECK(strstr(txt, want) != NULL, "drift row lacks '%s'", want);
        snprintf(want, sizeof want, "| t.txt | llama | 64 | 3 |");
        TU_CHECK(strstr(txt, want) != NULL, "text/protocol/ctx/chunks '%s' missing", want);
        free(txt);
    }
    TU_CHECK(tu_system("%s card '%s/Q2_K-00001-of-00002.gguf' --license mit -o - | grep -q '^license: \"mit\"$'", Q, tmp) == 0, "--license");
    /* bad drift file: one error line naming it, no card */
    char bad[1200], out2[1200];
    snprintf(bad, sizeof bad, "%s/bad.json", tmp);
    tu_write_file(bad, "{\"ppl\": -3}", 11);
    snprintf(out2, sizeof out2, "%s/README2.md", tmp);
    snprintf(cmd, sizeof cmd, "%s card '%s/Q2_K-00001-of-00002.gguf' --drift '%s' -o '%s' 2> '%s/err.txt'", Q, tmp, bad, out2, tmp);
    TU_CHECK(tu_system("%s", cmd) == 1, "bad drift: exit code");
    TU_CHECK(access(out2, F_OK) != 0, "card written despite a bad drift file");
    TU_CHECK(tu_system("grep -q 'bad.json' '%s/err.txt' && test $(wc -l < '%s/err.txt') -eq 1", tmp, tmp) == 0, "error line names the file");

    /* the report (structure; the rendering is test_report_render) */
    char html[1200];
    snprintf(html, sizeof html, "%s/report.html", tmp);
    TU_CHECK(tu_system("%s report '%s/Q8_0.json' '%s/Q4_K_M.json' '%s/Q2_K.json' -o '%s'", Q, tmp, tmp, tmp, html) == 0, "report");
    txt = slurp(html);
    TU_CHECK(txt != NULL, "no report");
    if (txt) {
        int pts = 0, cdf = 0, emb = 0;
        for (const char *p = txt; (p = strstr(p, "class=\"pt\"")); p++) pts++;
        for (const char *p = txt; (p = strstr(p, "class=\"cdf\"")); p++) cdf++;
        for (const char *p = txt; (p = strstr(p, "class=\"drift-json\"")); p++) emb++;
        TU_CHECK(pts == 6 && cdf == 3 && emb == 3, "report: %d points (want 2 x 3), %d CDFs, %d embedded files", pts, cdf, emb);
        TU_CHECK(strstr(txt, "id=\"plot-size-gb\"") && strstr(txt, "id=\"plot-size-bpw\"") && strstr(txt, "id=\"plot-kld-dist\""), "plot ids");
        TU_CHECK(!strstr(txt, "http://") || !strstr(txt, "src=\"http"), "report loads something from the network");
        TU_CHECK(!strstr(txt, "<script src") && !strstr(txt, "<link "), "report is not self-contained");
        free(txt);
    }
    cal_drift_free(&d);
    return tu_done("test_card");
}
