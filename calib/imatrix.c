/* calib/imatrix.c — importance-matrix statistics over the layer-major engine: for every
 * weight, per input channel Σ x² (exact 128-bit fixed point, im_fx_add_sq: the sum does not
 * depend on how the chunks are split, so `--shard` parts merge to the whole run's bits) and
 * the number of rows that reached it, per
 * matrix of a stacked tensor (routed experts; attn_k_b/attn_v_b heads in GGUF naming).
 * Windows follow llama-imatrix: consecutive n_ctx-token chunks of the text, the first token
 * of each overwritten by BOS when bos_first (the fixtures' reference uses no BOS). */
#include "engine_int.h"

#include <stdlib.h>
#include <string.h>

cal_imatrix_params cal_imatrix_default_params(void) {
    cal_imatrix_params p;
    memset(&p, 0, sizeof p);
    p.n_ctx = 512;
    p.bos_first = true;
    p.gguf_names = true;
    return p;
}

typedef struct {
    bool used;
    char name[128];
    int64_t cols, nmat;
    uint64_t *sum;      /* [nmat, cols, 2]: im_entry.sum_x */
    uint64_t *count;    /* [nmat] */
    int order;          /* first-seen order */
} acc_entry;

typedef struct {
    const cal_imatrix_params *p;
    const cal_hparams *hp;
    acc_entry *ent;     /* [(n_layer + 1) * CAL_W_KIND_COUNT * slots] */
    int64_t slots;      /* HF naming: one slot per expert, else 1 */
    int n_seen;
    bool oom;
    const char *bad;    /* a weight whose input was not finite or whose Σ x² reached 2^64 */
} im_obs;

static acc_entry *find_entry(im_obs *o, cal_wkind kind, int layer, int expert, int64_t cols, int64_t *mat) {
    const bool gg = o->p->gguf_names;
    const bool stacked = kind == CAL_W_EXP_GATE || kind == CAL_W_EXP_UP || kind == CAL_W_EXP_DOWN ||
                         kind == CAL_W_K_B || kind == CAL_W_V_B || kind == CAL_W_O_A;
    int64_t slot = 0, nmat = 1;
    *mat = 0;
    if (stacked && gg) {   /* one matrix per expert, per MLA head, per V4 output group (llama-imatrix's layout) */
        nmat = kind == CAL_W_K_B || kind == CAL_W_V_B ? o->hp->n_head : kind == CAL_W_O_A ? o->hp->o_groups : o->hp->n_exp;
        *mat = expert;
    }
    else if (stacked) slot = expert;
    if (slot < 0 || slot >= o->slots || *mat < 0 || *mat >= nmat) return NULL;
    int64_t idx = (((int64_t)(layer + 1) * CAL_W_KIND_COUNT) + kind) * o->slots + slot;
    acc_entry *a = &o->ent[idx];
    if (!a->used) {
        if (!cal_weight_name(kind, layer, expert, gg, a->name, sizeof a->name)) return NULL;
        a->cols = cols; a->nmat = nmat;
        a->sum = calloc((size_t)(nmat * cols) * 2, sizeof(uint64_t));
        a->count = calloc((size_t)nmat, sizeof(uint64_t));
        if (!a->sum || !a->count) { free(a->sum); free(a->count); a->sum = NULL; a->count = NULL; o->oom = true; return NULL; }
        a->used = true;
        a->order = o->n_seen++;
    }
    return a->cols == cols ? a : NULL;
}

static void on_input(void *ud, cal_wkind kind, int layer, int expert, const float *x, int64_t ld,
                     int64_t T, int64_t cols) {
    im_obs *o = ud;
    if (o->p->gguf_names ? kind == CAL_W_KV_B : (kind == CAL_W_K_B || kind == CAL_W_V_B)) return;
    int64_t mat;
    acc_entry *a = find_entry(o, kind, layer, expert, cols, &mat);
    if (!a) return;
    uint64_t *s = a->sum + mat * cols * 2;
    a->count[mat] += (uint64_t)T;
    int bad = 0;
    /* columns are independent: split them across threads (integer sums: any order is exact) */
#ifdef _OPENMP
#pragma omp parallel for schedule(static) reduction(| : bad) if (T * cols >= (1 << 16))
#endif
    for (int64_t j = 0; j < cols; j++) {
        uint64_t acc[2] = {s[2 * j], s[2 * j + 1]};
        for (int64_t t = 0; t < T; t++) bad |= !im_fx_add_sq(acc, x[t * ld + j]);
        s[2 * j] = acc[0];
        s[2 * j + 1] = acc[1];
    }
    if (bad && !o->bad) o->bad = a->name;
}

static void on_progress(void *ud, int layer, int n_layer, int64_t done, int64_t total) {
    im_obs *o = ud;
    o->p->progress(o->p->progress_ud, layer, n_layer, done, total);
}

static int cmp_order(const void *a, const void *b) {
    const acc_entry *x = *(acc_entry *const *)a, *y = *(acc_entry *const *)b;
    return x->order - y->order;
}

qx_status cal_imatrix_run(cal_model *m, const int32_t *ids, int64_t n_ids, const cal_imatrix_params *pp,
                          im_matrix **out, qx_err *e) {
    *out = NULL;
    cal_imatrix_params p = pp ? *pp : cal_imatrix_default_params();
    const cal_hparams *hp = cal_model_hparams(m);
    int32_t *win;
    int64_t n_win;
    /* llama-imatrix chunks the BOS-less text and overwrites each chunk's first token */
    QX_TRY(cal_ppl_windows(ids, n_ids, CAL_PPL_ALL, p.n_ctx, p.n_chunks, hp->bos_id, false, &win, &n_win, e));
    if (p.bos_first && hp->bos_id >= 0)
        for (int64_t c = 0; c < n_win; c++) win[c * p.n_ctx] = hp->bos_id;
    qx_shard sh = p.shard;
    sh.input = gf_checksum(win, (uint64_t)(n_win * p.n_ctx) * sizeof(int32_t));
    qx_shard_set_model(&sh, cal_model_path(m));
    qx_shard_range(&sh, n_win);
    if (sh.n < 1) {
        free(win);
        return qx_fail(e, QX_EINVAL, "imatrix: shard %d/%d gets none of the %lld chunks", sh.index, sh.count, (long long)n_win);
    }
    const int32_t *run = win + sh.first * p.n_ctx;
    im_obs o;
    memset(&o, 0, sizeof o);
    o.p = &p; o.hp = hp;
    o.slots = p.gguf_names || hp->n_exp < 1 ? 1 : hp->n_exp;
    int64_t n_ent = (hp->n_layer + 1) * CAL_W_KIND_COUNT * o.slots;
    o.ent = calloc((size_t)n_ent, sizeof *o.ent);
    qx_status s = o.ent ? QX_OK : qx_fail(e, QX_ENOMEM, "imatrix: out of memory");
    if (s == QX_OK) {
        cal_observer ob;
        memset(&ob, 0, sizeof ob);
        ob.ud = &o; ob.matmul_input = on_input; ob.want_mla_split = p.gguf_names;
        if (p.progress) ob.progress = on_progress;
        cal_run_params rp = cal_run_default_params();
        rp.n_threads = p.n_threads;
        rp.backend = p.backend;
        if (p.batch_tokens > 0) rp.batch_tokens = p.batch_tokens;
        rp.want_logits = false;   /* the output head's input is observed; logits are not needed */
        s = cal_forward(m, run, sh.n, p.n_ctx, &rp, &ob, e);
    }
    if (s == QX_OK && o.oom) s = qx_fail(e, QX_ENOMEM, "imatrix: out of memory");
    if (s == QX_OK && o.bad) s = qx_fail(e, QX_EINVAL, "imatrix: weight '%s': an input is NaN/Inf or its sum of squares reaches 2^64", o.bad);
    im_matrix *im = NULL;
    if (s == QX_OK) s = im_create(&im, e);
    if (s == QX_OK) {
        acc_entry **list = malloc((size_t)(o.n_seen ? o.n_seen : 1) * sizeof *list);
        int n = 0;
        for (int64_t i = 0; list && i < n_ent; i++) if (o.ent[i].used) list[n++] = &o.ent[i];
        if (!list) s = qx_fail(e, QX_ENOMEM, "imatrix: out of memory");
        else qsort(list, (size_t)n, sizeof *list, cmp_order);
        for (int i = 0; s == QX_OK && i < n; i++) {
            im_entry *en;
            const acc_entry *a = list[i];
            if ((s = im_add(im, a->name, a->cols, a->nmat, &en, e)) != QX_OK) break;
            if ((s = im_entry_exact(en, e)) != QX_OK) break;
            memcpy(en->sum_x, a->sum, (size_t)(a->nmat * a->cols) * 2 * sizeof(uint64_t));
            memcpy(en->count_x, a->count, (size_t)a->nmat * sizeof(uint64_t));
            im_entry_settle(en);
        }
        free(list);
        im->shard = sh;
        im->chunk_count = (uint32_t)sh.n;
        im->chunk_size = (uint32_t)p.n_ctx;
    }
    for (int64_t i = 0; o.ent && i < n_ent; i++) { free(o.ent[i].sum); free(o.ent[i].count); }
    free(o.ent); free(win);
    if (s != QX_OK) { im_free(im); return s; }
    *out = im;
    return QX_OK;
}
