/* calib/hessian.c — input second moments H = sum_t x_t x_t^T [cols, cols] of every weight the
 * layer-major engine multiplies by, for GPTQ error feedback (quant/gptq.c), and the factor
 * U (U^T U = (H + lam I)^-1) of one matrix on request (cal_hessian_factor_one).  Names and matrices follow the GGUF imatrix convention
 * (calib/imatrix.c): "blk.L.ffn_down_exps.weight" matrix e for routed expert e,
 * attn_k_b/attn_v_b per head, deepseek4's attn_output_a per output group.  Routed experts get one H each (CAL_HESS_PER_EXPERT, from the
 * tokens routed to them) or one H per layer and kind shared by all experts
 * (CAL_HESS_SHARED, from all routed tokens).  A gate and its up projection multiply the
 * same rows, so the up projection's H is the gate's (one matrix, gathered once).  H is
 * kept in float, every element summed in token order (kernels/ kn_gram_accumulate).  While
 * a matrix has seen fewer rows than it has columns (a routed expert of the 671B: ~2,000
 * tokens for 7,168 columns) its input rows are kept instead, in order, and H = X^T X is
 * formed only when it is factored: min(rows, cols) x cols floats per matrix.
 * Streaming: with params.layer_done the caller is called after each layer (and after the
 * head, layer n_layer) when that layer's matrices are complete, may factor them there and
 * release them (cal_hessian_release_layer) so that one layer's matrices live at a time.  Token windows as cal_imatrix_run.
 * Not here: quantization (quant/gptq.c) and which tensors use it (cli/, pass/). */
#include "engine_int.h"
#include "hessian_int.h"

#include <stdlib.h>
#include <string.h>

cal_hessian_params cal_hessian_default_params(void) {
    cal_hessian_params p;
    memset(&p, 0, sizeof p);
    p.n_ctx = 512;
    p.bos_first = true;
    p.experts = CAL_HESS_PER_EXPERT;
    return p;
}

static bool is_expert(cal_wkind k) { return k == CAL_W_EXP_GATE || k == CAL_W_EXP_UP || k == CAL_W_EXP_DOWN; }
static bool is_up(cal_wkind k) { return k == CAL_W_UP || k == CAL_W_EXP_UP || k == CAL_W_SH_UP; }

bool hs_entry_alloc(h_entry *a, int64_t nmat) {
    a->nmat = nmat;
    a->H = calloc((size_t)nmat, sizeof *a->H);
    a->X = calloc((size_t)nmat, sizeof *a->X);
    a->xrows = calloc((size_t)nmat, sizeof *a->xrows);
    a->xcap = calloc((size_t)nmat, sizeof *a->xcap);
    a->count = calloc((size_t)nmat, sizeof *a->count);
    a->used = true;   /* hs_entry_free undoes a partial allocation too */
    return a->H && a->X && a->xrows && a->xcap && a->count;
}

static void free_mats(h_entry *a) {
    for (int64_t k = 0; k < a->nmat; k++) {
        if (a->H) { free(a->H[k]); a->H[k] = NULL; }
        if (a->X) { free(a->X[k]); a->X[k] = NULL; }
        if (a->xrows) a->xrows[k] = 0;
        if (a->xcap) a->xcap[k] = 0;
    }
}

void hs_entry_free(h_entry *a) {
    free_mats(a);
    free(a->H); free(a->X); free(a->xrows); free(a->xcap); free(a->count);
    memset(a, 0, sizeof *a);
}

/* H [n, n] (full, symmetric) of matrix k into dst: a copy of H, or X^T X of the kept rows. */
static void form_h(const h_entry *a, int64_t k, float *dst) {
    const int64_t n = a->cols;
    if (a->H[k]) { memcpy(dst, a->H[k], (size_t)(n * n) * sizeof(float)); return; }
    memset(dst, 0, (size_t)(n * n) * sizeof(float));
    kn_gram_accumulate(dst, n, a->X[k], n, a->xrows[k]);
    for (int64_t r = 0; r < n; r++)
        for (int64_t c = 0; c < r; c++) dst[r * n + c] = dst[c * n + r];
}

static h_entry *slot_of(cal_hessians *o, cal_wkind kind, int layer) {
    return &o->ent[(int64_t)(layer + 1) * CAL_W_KIND_COUNT + kind];
}

/* The entry of (kind, layer), created on first use; *mat its matrix for `expert`. */
static h_entry *entry_of(cal_hessians *o, cal_wkind kind, int layer, int expert, int64_t cols, int64_t *mat) {
    bool stacked = is_expert(kind) || kind == CAL_W_K_B || kind == CAL_W_V_B || kind == CAL_W_O_A;
    int64_t nmat = 1;
    *mat = 0;
    if (stacked) {   /* one H per expert, per MLA head, per V4 output group (its rows see only its heads) */
        nmat = is_expert(kind) ? o->hp.n_exp : kind == CAL_W_O_A ? o->hp.o_groups : o->hp.n_head;
        *mat = expert;
        if (is_expert(kind) && o->p->experts == CAL_HESS_SHARED) { nmat = 1; *mat = 0; }
    }
    if (*mat < 0 || *mat >= nmat) return NULL;
    h_entry *a = slot_of(o, kind, layer);
    if (!a->used) {
        if (!cal_weight_name(kind, layer, expert, true, a->name, sizeof a->name)) return NULL;
        a->layer = layer < 0 ? (int)o->hp.n_layer : layer;
        a->cols = cols;
        if (!hs_entry_alloc(a, nmat)) { o->oom = true; return NULL; }
    }
    if (a->cols != cols) return NULL;
    return a;
}

static void on_input(void *ud, cal_wkind kind, int layer, int expert, const float *x, int64_t ld,
                     int64_t T, int64_t cols) {
    cal_hessians *o = ud;
    if (kind == CAL_W_KV_B || kind == CAL_W_ROUTER) return;
    int64_t mat;
    h_entry *a = entry_of(o, kind, layer, expert, cols, &mat);
    if (!a) return;
    if (is_up(kind)) {   /* the gate (reported just before, same rows) holds this H */
        h_entry *g = slot_of(o, (cal_wkind)(kind - 1), layer);
        if (g->used && g->cols == cols && g->nmat == a->nmat) { a->alias = g; return; }
    }
    if (T <= 0) return;
    a->count[mat] += (double)T;
    if (!a->H[mat] && a->xrows[mat] + T < cols) {   /* still fewer rows than columns: keep the rows */
        if (a->xrows[mat] + T > a->xcap[mat]) {
            int64_t cap = a->xcap[mat] ? a->xcap[mat] : 64;
            while (cap < a->xrows[mat] + T) cap *= 2;
            if (cap > cols) cap = cols;
            float *nx = realloc(a->X[mat], (size_t)(cap * cols) * sizeof(float));
            if (!nx) { o->oom = true; return; }
            a->X[mat] = nx;
            a->xcap[mat] = cap;
        }
        for (int64_t t = 0; t < T; t++) memcpy(a->X[mat] + (a->xrows[mat] + t) * cols, x + t * ld, (size_t)cols * sizeof(float));
        a->xrows[mat] += T;
        return;
    }
    if (!a->H[mat]) {   /* from here on H: the rows kept so far first, in order */
        if (!(a->H[mat] = calloc((size_t)(cols * cols), sizeof(float)))) { o->oom = true; return; }
        if (a->X[mat]) kn_gram_accumulate(a->H[mat], cols, a->X[mat], cols, a->xrows[mat]);
        free(a->X[mat]); a->X[mat] = NULL; a->xrows[mat] = a->xcap[mat] = 0;
    }
    kn_gram_accumulate(a->H[mat], cols, x, ld, T);   /* token order per element: thread-count independent */
}

static void on_progress(void *ud, int layer, int n_layer, int64_t done, int64_t total) {
    cal_hessians *o = ud;
    o->p->progress(o->p->progress_ud, layer, n_layer, done, total);
}

/* H of matrix k from its kept rows (full, symmetric); false when out of memory. */
static bool materialize(h_entry *a, int64_t k) {
    if (a->H[k] || !a->X[k]) return true;
    float *H = malloc((size_t)(a->cols * a->cols) * sizeof(float));
    if (!H) return false;
    form_h(a, k, H);
    a->H[k] = H;
    free(a->X[k]); a->X[k] = NULL; a->xrows[k] = a->xcap[k] = 0;
    return true;
}

/* Mirrors the upper triangles of the layer's matrices: they are complete. */
static void layer_complete(cal_hessians *o, int layer) {
    for (int64_t i = 0; i < o->n_ent; i++) {
        h_entry *a = &o->ent[i];
        if (!a->used || a->alias || a->layer != layer) continue;
        for (int64_t k = 0; k < a->nmat; k++) {
            float *H = a->H[k];
            for (int64_t r = 0; H && r < a->cols; r++)
                for (int64_t c = 0; c < r; c++) H[r * a->cols + c] = H[c * a->cols + r];
        }
    }
}

static qx_status on_layer_done(void *ud, int layer, qx_err *e) {
    cal_hessians *o = ud;
    if (o->oom) return qx_fail(e, QX_ENOMEM, "hessians: out of memory in layer %d", layer);
    layer_complete(o, layer);
    return o->p->layer_done ? o->p->layer_done(o->p->layer_done_ud, o, layer, e) : QX_OK;
}

void cal_hessian_free(cal_hessians *h) {
    if (!h) return;
    for (int64_t i = 0; h->ent && i < h->n_ent; i++)
        if (h->ent[i].used) hs_entry_free(&h->ent[i]);
    free(h->ent);
    free((void *)h->p);
    free(h);
}

qx_status cal_hessian_create(const cal_hparams *hp, const cal_hessian_params *pp, cal_hessians **out, qx_err *e) {
    *out = NULL;
    cal_hessian_params *p = malloc(sizeof *p);
    cal_hessians *o = calloc(1, sizeof *o);
    if (!p || !o) { free(p); free(o); return qx_fail(e, QX_ENOMEM, "hessians: out of memory"); }
    *p = pp ? *pp : cal_hessian_default_params();
    o->p = p;
    o->hp = *hp;
    o->n_ent = (o->hp.n_layer + 1) * CAL_W_KIND_COUNT;
    o->ent = calloc((size_t)o->n_ent, sizeof *o->ent);
    if (!o->ent) { cal_hessian_free(o); return qx_fail(e, QX_ENOMEM, "hessians: out of memory"); }
    *out = o;
    return QX_OK;
}

qx_status cal_hessian_run(cal_model *m, const int32_t *ids, int64_t n_ids, const cal_hessian_params *pp,
                          cal_hessians **out, qx_err *e) {
    *out = NULL;
    cal_hessians *o;
    QX_TRY(cal_hessian_create(cal_model_hparams(m), pp, &o, e));
    const cal_hessian_params *p = o->p;
    int32_t *win = NULL;
    int64_t n_win = 0;
    qx_status s = cal_ppl_windows(ids, n_ids, CAL_PPL_ALL, p->n_ctx, p->n_chunks, o->hp.bos_id, false, &win, &n_win, e);
    if (s == QX_OK) {
        if (p->bos_first && o->hp.bos_id >= 0)
            for (int64_t c = 0; c < n_win; c++) win[c * p->n_ctx] = o->hp.bos_id;
        cal_observer ob;
        memset(&ob, 0, sizeof ob);
        ob.ud = o; ob.matmul_input = on_input; ob.want_mla_split = true; ob.layer_done = on_layer_done;
        if (p->progress) ob.progress = on_progress;
        cal_run_params rp = cal_run_default_params();
        rp.n_threads = p->n_threads;
        rp.backend = p->backend;
        if (p->batch_tokens > 0) rp.batch_tokens = p->batch_tokens;
        rp.want_logits = false;
        s = cal_forward(m, win, n_win, p->n_ctx, &rp, &ob, e);
    }
    free(win);
    if (s == QX_OK && o->oom) s = qx_fail(e, QX_ENOMEM, "hessians: out of memory");
    if (s != QX_OK) { cal_hessian_free(o); return s; }
    *out = o;
    return QX_OK;
}

static h_entry *find(const cal_hessians *h, const char *name) {
    for (int64_t i = 0; i < h->n_ent; i++)
        if (h->ent[i].used && !strcmp(h->ent[i].name, name)) return h->ent[i].alias ? h->ent[i].alias : &h->ent[i];
    return NULL;
}

const float *cal_hessian_get(cal_hessians *h, const char *name, int64_t mat, int64_t *cols, double *count) {
    h_entry *a = find(h, name);
    if (!a) return NULL;
    if (a->nmat == 1) mat = 0;
    if (mat < 0 || mat >= a->nmat || !materialize(a, mat)) return NULL;
    if (cols) *cols = a->cols;
    if (count) *count = a->count[mat];
    return a->H[mat];
}

void cal_hessian_release_layer(cal_hessians *h, int layer) {
    for (int64_t i = 0; i < h->n_ent; i++)
        if (h->ent[i].used && h->ent[i].layer == layer) free_mats(&h->ent[i]);
}

qx_status cal_hessian_factor_one(const cal_hessians *h, const char *name, int64_t mat, int64_t cols, double damp, double min_tokens,
                                 float **U, cal_hessian_factor_stats *st, qx_err *e) {
    *U = NULL;
    h_entry *a = find(h, name);
    if (!a || a->cols != cols) return QX_OK;
    if (a->nmat == 1) mat = 0;
    if (mat < 0 || mat >= a->nmat) return QX_OK;
    if (st) st->n_matrices++;
    if (a->count[mat] <= 0 || (!a->H[mat] && !a->X[mat])) { if (st) st->n_failed++; return QX_OK; }
    if (a->count[mat] < min_tokens) { if (st) st->n_fallback++; return QX_OK; }
    const int64_t n = cols;
    float *H = malloc((size_t)(n * n) * sizeof(float));
    if (!H) return qx_fail(e, QX_ENOMEM, "tensor '%s' matrix %lld: out of memory for its factor (%lld columns)", name, (long long)mat, (long long)n);
    form_h(a, mat, H);
    if (qt_gptq_factor_f32(H, n, damp, H)) *U = H;
    else { free(H); if (st) st->n_failed++; }
    return QX_OK;
}

size_t cal_hessian_counts(const cal_hessians *h, int layer, cal_hessian_count *out, size_t cap) {
    size_t n = 0;
    for (int64_t i = 0; i < h->n_ent; i++) {
        const h_entry *a = &h->ent[i];
        if (!a->used || a->layer != layer) continue;
        for (int64_t k = 0; k < a->nmat; k++, n++)
            if (n < cap) {
                out[n].name = a->name;
                out[n].mat = k;
                out[n].tokens = (a->alias ? a->alias : a)->count[k];
            }
    }
    return n;
}

uint64_t cal_hessian_bytes(const cal_hessians *h) {
    uint64_t b = 0;
    for (int64_t i = 0; i < h->n_ent; i++) {
        const h_entry *a = &h->ent[i];
        for (int64_t k = 0; a->used && k < a->nmat; k++)
            b += (a->H[k] ? 4u : 0u) * (uint64_t)(a->cols * a->cols) + 4u * (uint64_t)(a->xcap[k] * a->cols);
    }
    return b;
}
