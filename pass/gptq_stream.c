/* pass/gptq_stream.c — `convert --gptq` in one layer-major pass (pass.h).
 *
 * Two threads: the engine (calib/cal_hessian_run with a layer_done hook, or
 * cal_hessian_replay of a --gptq-load file) and the writer (convert/cv_execute, its OpenMP
 * workers).  After layer L the engine publishes L's statistics (saving them first with
 * --gptq-save) and waits until every output tensor of layer L is written; a writer worker
 * asking for a factor of layer L (cv_params.gptq_factor) waits until L is published, factors
 * the matrix its item needs (at most factor_par at once: --gptq-mem) and the factor is freed
 * when that matrix's items are done (cv_params.item_done).  Then L's statistics are freed
 * and the engine moves on.  Plan items are in
 * tensor order and tensors in layer order, so the workers never wait on a layer beyond the
 * one whose tensors are still being written: no deadlock.  Tensors outside the engine's
 * layers (token_embd, MTP blocks) get no factor and never wait.
 * Bytes do not depend on the thread count: H, the factors and every row's walk are each
 * deterministic, and nothing depends on which thread runs what. */
#include "pass.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ps_gptq_default_params(ps_gptq_params *p) {
    memset(p, 0, sizeof *p);
    p->n_ctx = 512;
    p->damp = 0.1;
    p->experts = CAL_HESS_PER_EXPERT;
}

void ps_gptq_result_free(ps_gptq_result *r) {
    if (!r) return;
    for (size_t i = 0; i < r->n_counts; i++) free((void *)r->counts[i].name);
    free(r->counts);
    r->counts = NULL;
    r->n_counts = 0;
}

/* Engine layer of a GGUF tensor name: blk.L.* with L < n_layer, n_layer for output.weight,
 * -1 for anything else (no Hessian: never waits). */
static int layer_of(const char *name, int n_layer) {
    if (!strcmp(name, "output.weight")) return n_layer;
    int L = -1, k = 0;
    if (sscanf(name, "blk.%d.%n", &L, &k) == 1 && k > 0 && L >= 0 && L < n_layer) return L;
    return -1;
}

/* A factor in use: matrix `slice` of tensor `name`, alive until the items that need it are
 * done (one per routed expert; a few for a big 2-D tensor).  Gate and up projections each
 * factor the shared H (twice the factor work for experts, but one U per worker alive instead
 * of a whole layer's). */
typedef struct uent {
    const char *name;        /* plan's name (borrowed) */
    int64_t slice, left, cols;
    int layer;
    bool ready;
    float *U;                /* NULL: plain */
    struct uent *next;
} uent;

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    const cv_plan *pl;
    const ps_gptq_params *gp;
    cal_model *m;
    int n_layer;
    int64_t *pending;        /* [n_layer + 1] output tensors of the layer not yet written */
    int ready;               /* layer whose matrices are published, -1 none */
    const cal_hessians *h;
    bool stop;               /* the writer is done (or failed): the engine stops waiting */
    bool engine_failed;
    qx_err engine_err;
    qx_status engine_status;
    regex_t skip;
    bool has_skip;
    ps_gptq_result *r;
    double t_factor, t_wait;
    uent *cache;             /* factors in use */
    int active, par;         /* factorizations running, allowed at once */
    uint64_t kept_bytes, live_bytes;   /* the layer's H / kept rows; factors alive + running workspaces */
    int save_fd;             /* --gptq-save's .part, -1 none */
    char save_part[4200];
    int saved;
} stream;

static void note_peak(stream *s) {
    if (s->kept_bytes + s->live_bytes > s->r->peak_hessian_bytes) s->r->peak_hessian_bytes = s->kept_bytes + s->live_bytes;
}

static size_t tensor_index(const cv_plan *pl, const char *name) {
    for (size_t i = 0, n = cv_plan_tensor_count(pl); i < n; i++) {
        cv_tensor_info t;
        cv_plan_tensor(pl, i, &t);
        if (!strcmp(t.name, name)) return i;
    }
    return (size_t)-1;
}

static qx_status factor_cb(void *ud, const char *name, int64_t slice, int64_t cols, const float **U, qx_err *e) {
    stream *s = ud;
    *U = NULL;
    int L = layer_of(name, s->n_layer);
    if (L < 0 || (s->has_skip && regexec(&s->skip, name, 0, NULL, 0) == 0)) return QX_OK;
    pthread_mutex_lock(&s->mu);
    while (s->ready != L && !s->engine_failed) pthread_cond_wait(&s->cv, &s->mu);
    if (s->ready != L) {
        qx_status st = qx_fail(e, s->engine_err.code ? s->engine_err.code : QX_EIO, "tensor '%s': the GPTQ calibration stopped: %s", name,
                               s->engine_err.msg);
        pthread_mutex_unlock(&s->mu);
        return st;
    }
    uent *u = s->cache;
    while (u && !(u->slice == slice && !strcmp(u->name, name))) u = u->next;
    if (u) {   /* another item of the same matrix: wait for (or take) its factor */
        while (!u->ready) pthread_cond_wait(&s->cv, &s->mu);
        *U = u->U;
        pthread_mutex_unlock(&s->mu);
        return QX_OK;
    }
    size_t ti = tensor_index(s->pl, name);
    u = calloc(1, sizeof *u);
    if (!u) { pthread_mutex_unlock(&s->mu); return qx_fail(e, QX_ENOMEM, "tensor '%s': out of memory", name); }
    cv_tensor_info t;
    cv_plan_tensor(s->pl, ti, &t);
    u->name = t.name; u->slice = slice; u->cols = cols; u->layer = L;
    u->left = cv_plan_items_per_slice(s->pl, ti);
    u->next = s->cache;
    s->cache = u;
    while (s->active >= s->par) pthread_cond_wait(&s->cv, &s->mu);   /* --gptq-mem: factorizations at once */
    s->active++;
    uint64_t ws = 12u * (uint64_t)(cols * cols);
    s->live_bytes += ws;
    note_peak(s);
    const cal_hessians *h = s->h;
    pthread_mutex_unlock(&s->mu);
    cal_hessian_factor_stats st = {0};
    float *F = NULL;
    double t0 = qx_now();
    qx_status rs = cal_hessian_factor_one(h, name, slice, cols, s->gp->damp, s->gp->min_tokens, &F, &st, e);
    double dt = qx_now() - t0;
    pthread_mutex_lock(&s->mu);
    s->active--;
    s->live_bytes -= ws;
    if (F) s->live_bytes += 4u * (uint64_t)(cols * cols);
    note_peak(s);
    s->t_factor += dt;
    s->r->n_matrices += st.n_matrices;
    s->r->n_failed += st.n_failed;
    s->r->n_fallback += st.n_fallback;
    u->U = F;
    u->ready = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    *U = F;
    return rs;
}

static void drop(stream *s, uent **pp) {   /* under s->mu */
    uent *u = *pp;
    if (u->U) s->live_bytes -= 4u * (uint64_t)(u->cols * u->cols);
    free(u->U);
    *pp = u->next;
    free(u);
}

static void item_done(void *ud, size_t t, int64_t slice) {
    stream *s = ud;
    cv_tensor_info ti;
    cv_plan_tensor(s->pl, t, &ti);
    pthread_mutex_lock(&s->mu);
    for (uent **pp = &s->cache; *pp; pp = &(*pp)->next)
        if ((*pp)->slice == slice && !strcmp((*pp)->name, ti.name)) {
            if (--(*pp)->left <= 0 && (*pp)->ready) drop(s, pp);
            break;
        }
    pthread_mutex_unlock(&s->mu);
}

static void tensor_done(void *ud, size_t t) {
    stream *s = ud;
    cv_tensor_info ti;
    cv_plan_tensor(s->pl, t, &ti);
    int L = layer_of(ti.name, s->n_layer);
    if (L < 0) return;
    pthread_mutex_lock(&s->mu);
    if (--s->pending[L] == 0) pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* Appends layer's routed-expert token counts to the result. */
static void keep_counts(stream *s, cal_hessians *h, int layer) {
    size_t n = cal_hessian_counts(h, layer, NULL, 0);
    cal_hessian_count *c = malloc((n ? n : 1) * sizeof *c);
    if (!c) return;
    cal_hessian_counts(h, layer, c, n);
    ps_gptq_result *r = s->r;
    for (size_t i = 0; i < n; i++) {
        if (!strstr(c[i].name, "_exps.")) continue;
        if (strstr(c[i].name, "ffn_up_exps.")) continue;   /* the gate's matrix: counted once */
        cal_hessian_count *g = realloc(r->counts, (r->n_counts + 1) * sizeof *g);
        if (!g) break;
        r->counts = g;
        g[r->n_counts] = c[i];
        g[r->n_counts].name = strdup(c[i].name);
        r->n_counts++;
        r->n_expert_matrices++;
        if (c[i].tokens <= 0) r->n_expert_empty++;
        else if (c[i].tokens < s->gp->min_tokens) r->n_expert_fallback++;
    }
    free(c);
}

static qx_status on_layer(void *ud, cal_hessians *h, int layer, qx_err *e) {
    stream *s = ud;
    if (s->save_fd >= 0) {
        QX_TRY(cal_hessian_file_layer(h, layer, s->save_fd, s->save_part, e));
        s->saved++;
    }
    keep_counts(s, h, layer);
    double t1 = qx_now();
    pthread_mutex_lock(&s->mu);
    s->kept_bytes = cal_hessian_bytes(h);
    note_peak(s);
    s->h = h;
    s->ready = layer;
    pthread_cond_broadcast(&s->cv);
    while (s->pending[layer] > 0 && !s->stop) pthread_cond_wait(&s->cv, &s->mu);
    bool stopped = s->pending[layer] > 0;
    if (!stopped) {   /* every item of the layer is done: factors left (items verified from a journal) go */
        s->ready = -1;
        for (uent **pp = &s->cache; *pp;)
            if ((*pp)->layer == layer) drop(s, pp);
            else pp = &(*pp)->next;
        s->kept_bytes = 0;
    }
    s->t_wait += qx_now() - t1;
    pthread_mutex_unlock(&s->mu);
    if (stopped) return qx_fail(e, QX_EINVAL, "gptq: the conversion stopped before layer %d was written", layer);
    cal_hessian_release_layer(h, layer);
    return QX_OK;
}

static void *engine_main(void *ud) {
    stream *s = ud;
    const ps_gptq_params *gp = s->gp;
    cal_hessian_params hp = cal_hessian_default_params();
    hp.n_ctx = gp->n_ctx;
    hp.n_chunks = gp->n_chunks;
    hp.n_threads = gp->n_threads;
    hp.experts = gp->experts;
    hp.progress = gp->progress;
    hp.progress_ud = gp->progress_ud;
    hp.layer_done = on_layer;
    hp.layer_done_ud = s;
    cal_hessians *h = NULL;
    qx_err e;
    qx_err_clear(&e);
    double t0 = qx_now();
    qx_status st = gp->load_path ? cal_hessian_replay(gp->load_path, cal_model_hparams(s->m), (int)gp->experts, gp->settings, &hp, &e)
                                 : cal_hessian_run(s->m, gp->ids, gp->n_ids, &hp, &h, &e);
    cal_hessian_free(h);
    pthread_mutex_lock(&s->mu);
    s->r->seconds_engine = qx_now() - t0 - s->t_wait;
    s->engine_status = st;
    if (st != QX_OK) { s->engine_failed = true; s->engine_err = e; }
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

qx_status ps_gptq_convert(cv_plan *pl, const char *out, const cv_params *p, const ps_gptq_params *gp, cv_result *cr,
                          ps_gptq_result *gr, qx_err *e) {
    memset(gr, 0, sizeof *gr);
    stream s;
    memset(&s, 0, sizeof s);
    s.pl = pl; s.gp = gp; s.r = gr; s.ready = -1;
    s.par = gp->factor_par > 0 ? gp->factor_par : (p->n_threads > 0 ? p->n_threads : qx_default_threads());
    if (gp->skip && regcomp(&s.skip, gp->skip, REG_EXTENDED | REG_NOSUB) != 0)
        return qx_fail(e, QX_EINVAL, "--gptq-skip '%s': not a regular expression", gp->skip);
    s.has_skip = gp->skip != NULL;
    qx_status st = cal_model_open(&s.m, gp->model, e);
    if (st != QX_OK) { if (s.has_skip) regfree(&s.skip); return st; }
    s.n_layer = (int)cal_model_hparams(s.m)->n_layer;
    gr->n_layer = s.n_layer;
    s.pending = calloc((size_t)s.n_layer + 1, sizeof *s.pending);
    if (!s.pending) { cal_model_close(s.m); if (s.has_skip) regfree(&s.skip); return qx_fail(e, QX_ENOMEM, "gptq: out of memory"); }
    for (size_t i = 0, n = cv_plan_tensor_count(pl); i < n; i++) {
        cv_tensor_info ti;
        cv_plan_tensor(pl, i, &ti);
        int L = layer_of(ti.name, s.n_layer);
        if (L >= 0) s.pending[L]++;
    }
    s.save_fd = -1;
    if (gp->save_path) {
        snprintf(s.save_part, sizeof s.save_part, "%s.part", gp->save_path);
        s.save_fd = open(s.save_part, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (s.save_fd < 0) st = qx_fail(e, QX_EIO, "%s: %s", s.save_part, strerror(errno));
        else st = cal_hessian_file_begin(s.save_fd, s.save_part, s.n_layer, (int)gp->experts, gp->settings, e);
        if (st != QX_OK) {
            if (s.save_fd >= 0) { close(s.save_fd); unlink(s.save_part); }
            free(s.pending); cal_model_close(s.m); if (s.has_skip) regfree(&s.skip);
            return st;
        }
    }
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    pthread_t th;
    if (pthread_create(&th, NULL, engine_main, &s) != 0) st = qx_fail(e, QX_EIO, "gptq: cannot start the engine thread");
    else {
        cv_params q = *p;
        q.gptq_factor = factor_cb;
        q.gptq_ud = &s;
        q.tensor_done = tensor_done;
        q.item_done = item_done;
        q.tensor_done_ud = &s;
        st = cv_execute(pl, out, &q, cr, e);
        pthread_mutex_lock(&s.mu);
        s.stop = true;
        pthread_cond_broadcast(&s.cv);
        pthread_mutex_unlock(&s.mu);
        pthread_join(th, NULL);
        if (st == QX_OK && s.engine_status != QX_OK) { *e = s.engine_err; st = s.engine_status; }
    }
    if (s.save_fd >= 0) {   /* complete only when every layer is in: then renamed into place */
        if (st == QX_OK && s.saved != s.n_layer + 1)
            st = qx_fail(e, QX_EIO, "%s: %d of %d layers saved", s.save_part, s.saved, s.n_layer + 1);
        if (st == QX_OK) st = cal_hessian_file_end(s.save_fd, s.save_part, s.saved, e);
        if (st == QX_OK && fsync(s.save_fd) != 0) st = qx_fail(e, QX_EIO, "%s: fsync: %s", s.save_part, strerror(errno));
        if (close(s.save_fd) != 0 && st == QX_OK) st = qx_fail(e, QX_EIO, "%s: close: %s", s.save_part, strerror(errno));
        if (st == QX_OK && rename(s.save_part, gp->save_path) != 0)
            st = qx_fail(e, QX_EIO, "rename %s -> %s: %s", s.save_part, gp->save_path, strerror(errno));
        if (st != QX_OK) unlink(s.save_part);
    }
    gr->seconds_factor = s.t_factor;
    gr->seconds_waiting = s.t_wait;
    while (s.cache) drop(&s, &s.cache);
    pthread_cond_destroy(&s.cv);
    pthread_mutex_destroy(&s.mu);
    free(s.pending);
    cal_model_close(s.m);
    if (s.has_skip) regfree(&s.skip);
    return st;
}
