/* tests/test_engine_imatrix.c — importance matrix of mini-v3 (32 calibration windows of
 * 128 tokens, no BOS, HF names) against the independent reference
 * (reference/imatrix.f32 + imatrix.json: 180 entries, per element within 1e-4 relative),
 * GGUF naming (stacked experts nmat 16, attn_k_b/attn_v_b per head) and a GGUF imatrix
 * file round trip. */
#include "tests/util/tu.h"
#include "calib/calib.h"

#include <jansson.h>

int main(void) {
    const char *d = tu_shared_path("models/mini-v3");
    if (!d || !qx_is_dir(d)) return tu_skip("../shared/models/mini-v3 not found");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", d);
    qx_err e = {0};
    cal_model *m = NULL;
    TU_OK(cal_model_open(&m, dir, &e), &e);
    if (!m) return tu_done("test_engine_imatrix");
    char *idb, *refb; size_t idl, refl;
    TU_OK(qx_read_file(tu_shared_path("models/mini-v3/reference/calib_ids.bin"), &idb, &idl, &e), &e);
    TU_OK(qx_read_file(tu_shared_path("models/mini-v3/reference/imatrix.f32"), &refb, &refl, &e), &e);
    const float *ref = (const float *)(void *)refb;
    json_error_t je;
    json_t *js = json_load_file(tu_shared_path("models/mini-v3/reference/imatrix.json"), 0, &je);
    TU_CHECK(js != NULL, "imatrix.json: %s", je.text);

    cal_imatrix_params p = cal_imatrix_default_params();
    p.n_ctx = 128; p.n_chunks = 32; p.bos_first = false; p.gguf_names = false;
    im_matrix *im = NULL;
    double t0 = qx_now();
    TU_OK(cal_imatrix_run(m, (const int32_t *)(void *)idb, (int64_t)(idl / 4), &p, &im, &e), &e);
    fprintf(stderr, "imatrix 32 x 128 tokens: %.2f s\n", qx_now() - t0);
    if (im && js) {
        json_t *ents = json_object_get(js, "entries");
        TU_CHECK(im->n_entries == json_array_size(ents), "entries: %zu, reference %zu", im->n_entries, json_array_size(ents));
        double worst = 0; const char *worst_name = "";
        size_t idx; json_t *v;
        json_array_foreach(ents, idx, v) {
            const char *name = json_string_value(json_object_get(v, "name"));
            int64_t off = json_integer_value(json_object_get(v, "offset"));
            int64_t nc = json_integer_value(json_object_get(v, "n_cols"));
            int64_t nr = json_integer_value(json_object_get(v, "n_rows"));
            im_entry *en = im_find(im, name);
            TU_CHECK(en != NULL, "entry %s missing", name);
            if (!en || (uint64_t)(off + nc) * 4 > refl) continue;
            TU_CHECK(en->ne0 == nc && en->nmat == 1, "%s: ne0 %lld", name, (long long)en->ne0);
            TU_CHECK(en->counts[0] == (float)nr, "%s: rows %g, reference %lld", name, en->counts[0], (long long)nr);
            double mx = 0;
            for (int64_t j = 0; j < nc; j++) mx = fmax(mx, fabs(ref[off + j]));
            for (int64_t j = 0; j < nc && en->ne0 == nc; j++) {
                double r = fabs((double)en->in_sum2[j] - ref[off + j]) / (fabs(ref[off + j]) + 1e-6 * mx + 1e-30);
                if (r > worst) { worst = r; worst_name = name; }
            }
        }
        fprintf(stderr, "imatrix: worst element relative error %.3g (%s)\n", worst, worst_name);
        TU_CHECK(worst < 1e-4, "imatrix relative error %g in %s", worst, worst_name);
    }
    im_free(im);

    /* GGUF naming: stacked experts, MLA split per head, and a file round trip */
    p.gguf_names = true; p.n_chunks = 4;
    im = NULL;
    TU_OK(cal_imatrix_run(m, (const int32_t *)(void *)idb, (int64_t)(idl / 4), &p, &im, &e), &e);
    if (im) {
        im_entry *x = im_find(im, "blk.1.ffn_down_exps.weight");
        TU_CHECK(x && x->nmat == 16 && x->ne0 == 128, "ffn_down_exps nmat/ne0");
        if (x) { double c = 0; for (int i = 0; i < 16; i++) c += x->counts[i]; TU_NEAR(c, 4 * 128 * 4, 0, "expert counts sum to k * tokens: %g", c); }
        im_entry *kb = im_find(im, "blk.0.attn_k_b.weight"), *vb = im_find(im, "blk.0.attn_v_b.weight");
        TU_CHECK(kb && kb->nmat == 4 && kb->ne0 == 32 && kb->counts[3] == 512, "attn_k_b per head");
        TU_CHECK(vb && vb->nmat == 4 && vb->ne0 == 128 && vb->counts[0] == 512, "attn_v_b per head");
        TU_CHECK(!im_find(im, "blk.0.attn_kv_b.weight"), "no attn_kv_b in MLA naming");
        TU_CHECK(im_find(im, "output.weight") && im_find(im, "blk.3.ffn_gate_inp.weight"), "output and router present");
        char path[4096];
        snprintf(path, sizeof path, "%s/im.gguf", tu_tmpdir());
        TU_OK(im_add_dataset(im, "calib.txt", &e), &e);
        TU_OK(im_write_gguf(im, path, &e), &e);
        im_matrix *back = NULL;
        TU_OK(im_load(&back, path, &e), &e);
        if (back) {
            TU_CHECK(back->n_entries == im->n_entries, "round trip entries");
            im_entry *y = im_find(back, "blk.1.ffn_down_exps.weight");
            TU_CHECK(y && x && !memcmp(y->in_sum2, x->in_sum2, 16 * 128 * 4), "round trip sums");
            im_free(back);
        }
    }
    im_free(im);
    json_decref(js);
    free(idb); free(refb);
    cal_model_close(m);
    return tu_done("test_engine_imatrix");
}
