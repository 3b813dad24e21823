/* tests/test_sens_imatrix.c — `qforge sensitivity` reads an importance matrix the way convert
 * attaches it: llama-imatrix stores the per-head 3-D weights attn_k_b/attn_v_b as one flat
 * row (in_sum2 [ne0 * heads, 1], one count: a plain MUL_MAT), qforge imatrix per head
 * ([ne0, heads]).  Both layouts must give the same candidate types (IQ1/IQ2 types are offered
 * only where the tensor has a usable entry).  On mini-v3-moe, whose attn_v_b rows are 256
 * wide, the flat layout used to lose those candidates (598 instead of 614 with this imatrix). */
#include "tests/util/tu.h"
#include "formats/formats.h"

#include <stdlib.h>
#include <string.h>

static long candidates(const char *q, const char *model, const char *im, const char *log) {
    if (tu_system("%s sensitivity '%s' --imatrix '%s' --dry-run > '%s' 2>&1", q, model, im, log) != 0) return -1;
    size_t n;
    char *txt = tu_read_file(log, &n);
    const char *p = txt ? strstr(txt, "tensors, ") : NULL;
    long c = p ? strtol(p + 9, NULL, 10) : -1;
    free(txt);
    return c;
}

int main(void) {
    const char *model = tu_shared_path("models/mini-v3-moe");
    if (!model || !qx_is_dir(model)) return tu_skip("../shared/models not found");
    char m[4096], f32[600], ph[600], fl[600], log[600];
    snprintf(m, sizeof m, "%s", model);
    const char *tmp = tu_tmpdir(), *q = tu_qforge();
    snprintf(f32, sizeof f32, "%s/f32.gguf", tmp);
    snprintf(ph, sizeof ph, "%s/per-head.gguf", tmp);
    snprintf(fl, sizeof fl, "%s/flat.gguf", tmp);
    snprintf(log, sizeof log, "%s/dry.txt", tmp);
    TU_CHECK(tu_system("%s convert %s -o %s --type F32 --quiet > /dev/null 2>&1", q, m, f32) == 0, "F32 conversion");
    TU_CHECK(tu_system("%s imatrix %s --text %s/calib.txt --ctx 64 --chunks 2 -o %s > /dev/null 2>&1", q, m, m, ph) == 0, "imatrix");
    qx_err e = {0};
    im_matrix *a = NULL, *b = NULL;
    TU_OK(im_load(&a, ph, &e), &e);
    TU_OK(im_create(&b, &e), &e);
    if (!a || !b) return tu_done("test_sens_imatrix");
    int flat = 0;
    for (size_t i = 0; i < a->n_entries; i++) {
        const im_entry *s = &a->entries[i];
        bool split = s->nmat > 1 && (strstr(s->name, "attn_k_b") || strstr(s->name, "attn_v_b"));
        im_entry *d;
        TU_OK(im_add(b, s->name, split ? s->ne0 * s->nmat : s->ne0, split ? 1 : s->nmat, &d, &e), &e);
        if (!d) continue;
        memcpy(d->in_sum2, s->in_sum2, (size_t)(s->ne0 * s->nmat) * sizeof(float));
        if (split) d->counts[0] = s->counts[0];
        else memcpy(d->counts, s->counts, (size_t)s->nmat * sizeof(float));
        flat += split;
    }
    TU_OK(im_add_dataset(b, "calib.txt", &e), &e);
    TU_OK(im_write_gguf(b, fl, &e), &e);
    im_free(a);
    im_free(b);
    TU_CHECK(flat == 8, "%d attn_k_b/attn_v_b entries written flat, want 8 (4 layers)", flat);
    long cp = candidates(q, f32, ph, log), cf = candidates(q, f32, fl, log);
    fprintf(stderr, "candidates: per-head imatrix %ld, flat (llama-imatrix layout) %ld\n", cp, cf);
    TU_CHECK(cp > 0 && cp == cf, "candidates per-head %ld vs flat %ld", cp, cf);
    TU_CHECK(cp == 614, "mini-v3-moe: %ld candidates, 614 expected (47 tensors; IQ types where rows are 256-wide and the imatrix has an entry)", cp);
    return tu_done("test_sens_imatrix");
}
