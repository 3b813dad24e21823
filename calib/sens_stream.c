/* calib/sens_stream.c — one-stream sensitivity (cal_sens_stream_run): every measured
 * (tensor, type) item is a residual state carried through ONE layer-major pass, so the
 * weights are read once instead of once per item.  At layer L: the live states (items of
 * earlier layers) go through L's own weights; each measured item of L branches off as a copy
 * of the unmodified state entering L, run through L with only its tensor replaced by the
 * quantized copy (cal_layer_swap); then the unmodified state goes through L.  At the end each
 * state goes through the head and is scored against the unmodified state's logits by the
 * perplexity code (cal_ppl_run_fwd) exactly as cal_sens_run scores a whole-model run.
 *
 * Memory model: a state is [n_win * n_ctx, W] f32 (S bytes; W = cal_state_width: n_embd, or
 * deepseek4's hc streams of n_embd).  The base and one work
 * buffer are always in memory; of the item states, the first K = mem / S - 2 (all when mem
 * is 0) stay in memory, the others live in a scratch file at (i - K) * S and pass through the
 * work buffer at every layer (read, run, written back).  The scratch file is unlinked as soon
 * as it is opened, so nothing is left behind even when the process is killed; hence no
 * resuming of an interrupted pass. */
#include "engine_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* The stage of an item: -1 the embedding, 0 .. n_layer - 1 a layer, n_layer the head; -2 none. */
static int item_stage(const char *name, int64_t n_layer) {
    if (!strcmp(name, "token_embd.weight")) return -1;
    if (!strcmp(name, "output.weight")) return (int)n_layer;
    int L, k = 0;
    if (sscanf(name, "blk.%d.%n", &L, &k) == 1 && k > 0 && L >= 0 && L < n_layer) return L;
    return -2;
}

typedef struct {
    cal_model *m;
    const cal_sens_params *p;
    int64_t n_win, n_ctx, wpb, T, E, SW;   /* E: embedding width, SW: state width */
    uint64_t sb;              /* bytes of one state */
    int64_t k_mem;            /* item states held in memory */
    float **mem;              /* [k_mem] state buffers, allocated on creation */
    float *h0, *work;         /* [T, SW] the unmodified state, the spill buffer */
    FILE *scr;                /* scratch file, opened at the first spill */
    int32_t *pos;             /* [wpb * n_ctx] */
    fwd_ctx c;
    cal_run_params rp;
    uint64_t scratch_io;
    double t_step, t_quant;   /* seconds in layer steps, in decoding and quantizing */
} stream;

static qx_status scr_io(stream *s, int64_t i, bool wr, qx_err *e) {
    const char *path = s->p->scratch;
    if (!s->scr) {
        if (!path) return qx_fail(e, QX_EINVAL, "sensitivity: states exceed the memory limit and no scratch file is given");
        s->scr = fopen(path, "w+b");
        if (!s->scr) return qx_fail(e, QX_EIO, "%s: cannot create scratch file: %s", path, strerror(errno));
        remove(path);   /* unlinked at once: its space is freed however the process ends */
    }
    off_t off = (off_t)((uint64_t)(i - s->k_mem) * s->sb);
    if (fseeko(s->scr, off, SEEK_SET) != 0) return qx_fail(e, QX_EIO, "%s: seek failed: %s", path, strerror(errno));
    size_t n = wr ? fwrite(s->work, 1, s->sb, s->scr) : fread(s->work, 1, s->sb, s->scr);
    if (n != s->sb) return qx_fail(e, errno == ENOSPC ? QX_ENOSPC : QX_EIO, "%s: %s of state %lld failed", path, wr ? "write" : "read", (long long)i);
    s->scratch_io += s->sb;
    return QX_OK;
}

/* State i's buffer (a spilled one read into the work buffer; fresh: not read). */
static qx_status state_get(stream *s, int64_t i, bool fresh, float **out, qx_err *e) {
    if (i >= s->k_mem) {
        *out = s->work;
        return fresh ? QX_OK : scr_io(s, i, false, e);
    }
    if (!s->mem[i] && !(s->mem[i] = malloc(s->sb))) return qx_fail(e, QX_ENOMEM, "sensitivity: out of memory for state %lld", (long long)i);
    *out = s->mem[i];
    return QX_OK;
}
static qx_status state_put(stream *s, int64_t i, qx_err *e) { return i >= s->k_mem ? scr_io(s, i, true, e) : QX_OK; }

/* h [T, SW] through layer l in the engine's window batches. */
static qx_status run_layer(stream *s, const cal_layer *l, float *h, qx_err *e) {
    qx_status st = QX_OK;
    double t0 = qx_now();
    for (int64_t w = 0; st == QX_OK && w < s->n_win; w += s->wpb) {
        int64_t nw = w + s->wpb <= s->n_win ? s->wpb : s->n_win - w;
        s->c.t0 = w * s->n_ctx;
        st = cal_layer_fwd(&s->c, l, h + s->c.t0 * s->SW, nw * s->n_ctx, e);
    }
    s->t_step += qx_now() - t0;
    return st;
}

/* The head over one state, as cal_ppl_run_fwd's forward (output: a replacement or NULL). */
typedef struct { stream *s; const float *h; const cal_w *output; } head_job;

static qx_status head_run(void *ud, const int32_t *win, int64_t n_win, int64_t n_ctx, const cal_run_params *rp,
                          const cal_observer *obs, qx_err *e) {
    head_job *j = ud;
    stream *s = j->s;
    (void)win;
    if (n_win != s->n_win || n_ctx != s->n_ctx) return qx_fail(e, QX_EINVAL, "sensitivity: %lld windows scored, %lld run", (long long)n_win, (long long)s->n_win);
    cal_model *m = s->m;
    cal_w keep = m->output;
    if (j->output) m->output = *j->output;
    fwd_ctx c = s->c;
    c.obs = obs;
    c.layer = (int)m->hp.n_layer;
    qx_status st = QX_OK;
    for (int64_t w = 0; st == QX_OK && w < n_win; w += s->wpb) {
        int64_t nw = w + s->wpb <= n_win ? s->wpb : n_win - w;
        c.t0 = w * n_ctx;
        st = cal_head_fwd(&c, j->h, w, w + nw, rp, e);
    }
    m->output = keep;
    qx_status sd = c.be->layer_done(c.be->ctx, st == QX_OK ? e : NULL);
    return st == QX_OK ? sd : st;
}

/* Quantizes every item of one tensor (items[i0, i1)) from src; for measured ones calls
 * branch(ud, item, q) with the quantized data (valid during the call). */
typedef qx_status (*branch_fn)(stream *s, void *ud, cal_sens_item *it, size_t idx, const uint8_t *q, qx_err *e);

static qx_status tensor_items(stream *s, const gf_tensor *t, cal_sens_item *items, const size_t *idx, size_t n,
                              branch_fn branch, void *ud, qx_err *e) {
    float *src = NULL;
    double t0 = qx_now();
    QX_TRY(cal_sens_decode(s->m, t, false, &src, e));
    s->t_quant += qx_now() - t0;
    qx_status st = QX_OK;
    for (size_t k = 0; st == QX_OK && k < n; k++) {
        cal_sens_item *it = &items[idx[k]];
        uint64_t bytes = qt_row_size(it->type, t->ne[0]) * (t->n_elems / (uint64_t)t->ne[0]);
        uint8_t *q = bytes ? malloc(bytes) : NULL;
        if (!q) { st = qx_fail(e, bytes ? QX_ENOMEM : QX_EINVAL, "tensor '%s': cannot hold type %s", it->name, qt_type_name(it->type)); break; }
        it->bytes = bytes;
        t0 = qx_now();
        st = cal_sens_quantize(t, src, it->type, it->matrices, s->p->im, s->p->ppl.n_threads, q, &it->werr, e);
        s->t_quant += qx_now() - t0;
        if (st == QX_OK && it->measure) st = branch(s, ud, it, idx[k], q, e);
        free(q);
    }
    free(src);
    return st;
}

typedef struct {
    stream *s;
    const int32_t *ids;       /* the text's tokens (for the scoring) */
    int64_t n_ids;
    const int32_t *win;       /* [n_win * n_ctx] the windows run */
    int64_t *sidx;            /* [n] state of each item, -1 for none */
    int64_t n_states;
    const cal_layer *l;       /* the layer being branched */
    int layer;
} pass;

/* The embedding of token id into a state row of sw floats (hyper-connection streams: copies). */
static void embed_row(const kn_weight *w, int32_t id, int64_t E, int64_t sw, float *row) {
    kn_weight_rows(w, id, id + 1, row);
    for (int64_t k = E; k < sw; k += E) memcpy(row + k, row, (size_t)E * sizeof(float));
}

static qx_status branch_embed(stream *s, void *ud, cal_sens_item *it, size_t idx, const uint8_t *q, qx_err *e) {
    pass *ps = ud;
    cal_model *m = s->m;
    if (!m->output.gt && m->output.w.data == m->embed.w.data)
        return qx_fail(e, QX_EUNSUPPORTED, "%s: token_embd is also the output head (tied): not measurable in one stream", m->path);
    kn_weight w;
    if (!kn_weight_init(&w, it->type, m->hp.n_vocab, s->E, q, NULL))
        return qx_fail(e, QX_EUNSUPPORTED, "tensor '%s': type %s cannot be decoded", it->name, qt_type_name(it->type));
    int64_t j = ps->n_states++;
    float *h;
    QX_TRY(state_get(s, j, true, &h, e));
    const int32_t *win = ps->win;
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
    for (int64_t t = 0; t < s->T; t++) embed_row(&w, win[t], s->E, s->SW, h + t * s->SW);
    ps->sidx[idx] = j;
    return state_put(s, j, e);
}

static qx_status branch_layer(stream *s, void *ud, cal_sens_item *it, size_t idx, const uint8_t *q, qx_err *e) {
    pass *ps = ud;
    cal_layer sw;
    QX_TRY(cal_layer_swap(s->m, ps->l, ps->layer, it->name, it->type, q, &sw, e));
    int64_t j = ps->n_states++;
    float *h;
    qx_status st = state_get(s, j, true, &h, e);
    if (st == QX_OK) {
        memcpy(h, s->h0, s->sb);
        st = run_layer(s, &sw, h, e);
    }
    cal_layer_swap_free(ps->l, &sw);
    if (st == QX_OK) st = state_put(s, j, e);
    ps->sidx[idx] = j;
    return st;
}

/* Scores h's logits (with output replaced when given) against the base into it. */
static qx_status score(stream *s, pass *ps, cal_sens_item *it, const float *h, const cal_w *output, qx_err *e) {
    cal_ppl_params pp = s->p->ppl;
    pp.save_base = NULL; pp.base = s->p->ppl.save_base;
    pp.save_kld = pp.vs_kld = NULL; pp.tokens_out = NULL; pp.progress = NULL;
    memset(&pp.shard, 0, sizeof pp.shard);
    head_job j = { s, h, output };
    cal_ppl_result r;
    QX_TRY(cal_ppl_run_fwd(s->m, ps->ids, ps->n_ids, &pp, head_run, &j, &r, e));
    it->kld = r.kld_mean;
    it->kld_err = r.kld_err;
    it->top1 = r.top1_agree;
    it->measured = true;
    return QX_OK;
}

static qx_status branch_output(stream *s, void *ud, cal_sens_item *it, size_t idx, const uint8_t *q, qx_err *e) {
    (void)idx;
    cal_w out = s->m->output;
    if (!kn_weight_init(&out.w, it->type, s->m->hp.n_vocab, s->E, q, NULL))
        return qx_fail(e, QX_EUNSUPPORTED, "tensor '%s': type %s cannot be decoded", it->name, qt_type_name(it->type));
    return score(s, ud, it, s->h0, &out, e);
}

/* Every item of stage L (runs of one tensor) through tensor_items with fn. */
static qx_status stage_items(stream *s, pass *ps, int L, cal_sens_item *items, size_t n, size_t *idx, branch_fn fn, qx_err *e) {
    for (size_t i = 0; i < n;) {
        if (item_stage(items[i].name, s->m->hp.n_layer) != L) { i++; continue; }
        size_t k = 0, j = i;
        for (; j < n && !strcmp(items[j].name, items[i].name); j++) idx[k++] = j;
        const gf_tensor *t = gf_find_tensor(s->m->gf, items[i].name);
        if (!t) return qx_fail(e, QX_ENOTFOUND, "%s: no tensor '%s'", s->m->path, items[i].name);
        QX_TRY(tensor_items(s, t, items, idx, k, fn, ps, e));
        i = j;
    }
    return QX_OK;
}

/* Layer L: live states through L, L's items branched off h0, then h0 through L. */
static qx_status stream_layer(stream *s, pass *ps, int L, cal_sens_item *items, size_t n, size_t *idx, qx_err *e) {
    cal_model *m = s->m;
    cal_layer l;
    QX_TRY(cal_layer_load(m, L, &l, e));
    s->c.layer = L;
    qx_status st = QX_OK;
    for (int64_t j = 0; st == QX_OK && j < ps->n_states; j++) {
        float *h;
        st = state_get(s, j, false, &h, e);
        if (st == QX_OK) st = run_layer(s, &l, h, e);
        if (st == QX_OK) st = state_put(s, j, e);
    }
    ps->l = &l;
    ps->layer = L;
    if (st == QX_OK) st = stage_items(s, ps, L, items, n, idx, branch_layer, e);
    if (st == QX_OK) st = run_layer(s, &l, s->h0, e);
    cal_layer_free(m, &l);
    qx_status sd = s->c.be->layer_done(s->c.be->ctx, st == QX_OK ? e : NULL);
    return st == QX_OK ? sd : st;
}

static qx_status stream_check(const cal_model *m, const cal_sens_item *items, size_t n, qx_err *e) {
    if (!m->gf) return qx_fail(e, QX_EUNSUPPORTED, "%s: sensitivity needs a GGUF model (F32/F16/BF16 or Q8_0)", m->path);
    for (size_t i = 0; i < n; i++) {
        if (item_stage(items[i].name, m->hp.n_layer) == -2)
            return qx_fail(e, QX_EUNSUPPORTED, "tensor '%s': not a layer, embedding or output weight", items[i].name);
        if (i == 0 || !strcmp(items[i - 1].name, items[i].name)) continue;
        for (size_t j = i + 1; j < n; j++)   /* a tensor's run of items ended at i - 1 */
            if (!strcmp(items[j].name, items[i - 1].name))
                return qx_fail(e, QX_EINVAL, "tensor '%s': its items are not adjacent", items[j].name);
    }
    return QX_OK;
}

static void stream_free(stream *s) {
    for (int64_t i = 0; s->mem && i < s->k_mem; i++) free(s->mem[i]);
    free(s->mem); free(s->h0); free(s->work); free(s->pos);
    if (s->scr) fclose(s->scr);
}

qx_status cal_sens_stream_run(cal_model *m, const int32_t *ids, int64_t n_ids, const cal_sens_params *p, cal_sens_item *items,
                              size_t n, cal_sens_stream_stats *stp, qx_err *e) {
    QX_TRY(stream_check(m, items, n, e));
    if (!p->ppl.save_base) return qx_fail(e, QX_EINVAL, "sensitivity: the one-stream pass needs a base file path (save_base)");
    const cal_hparams *hp = &m->hp;
    stream s;
    memset(&s, 0, sizeof s);
    s.m = m; s.p = p; s.E = hp->n_embd; s.SW = cal_state_width(hp); s.n_ctx = p->ppl.n_ctx;
    int32_t *win = NULL;
    QX_TRY(cal_ppl_windows(ids, n_ids, p->ppl.protocol, p->ppl.n_ctx, p->ppl.n_chunks, hp->bos_id, hp->add_bos, &win, &s.n_win, e));
    cal_sens_stream_stats est;
    qx_status st = cal_sens_stream_estimate(m, items, n, s.n_win, s.n_ctx, p->ppl.protocol == CAL_PPL_LLAMA ? s.n_ctx / 2 : 0,
                                            p->mem_bytes, p->ppl.n_threads, &est, e);
    if (st != QX_OK) { free(win); return st; }
    s.rp = cal_run_default_params();
    if (p->ppl.batch_tokens > 0) s.rp.batch_tokens = p->ppl.batch_tokens;
    s.wpb = s.rp.batch_tokens / s.n_ctx > 0 ? s.rp.batch_tokens / s.n_ctx : 1;
    s.T = s.n_win * s.n_ctx;
    s.sb = est.state_bytes;
    s.k_mem = est.states_in_memory;
    s.mem = calloc((size_t)s.k_mem + 1, sizeof *s.mem);
    s.h0 = malloc(s.sb);
    s.work = malloc(s.sb);
    s.pos = malloc((size_t)(s.wpb * s.n_ctx) * sizeof(int32_t));
    int64_t *sidx = malloc((n + 1) * sizeof *sidx);
    size_t *idx = malloc((n + 1) * sizeof *idx);
    if (!s.mem || !s.h0 || !s.work || !s.pos || !sidx || !idx) st = qx_fail(e, QX_ENOMEM, "sensitivity: out of memory for the states");
#ifdef _OPENMP
    if (p->ppl.n_threads > 0) omp_set_num_threads(p->ppl.n_threads);
#endif
    double t0 = qx_now(), t_embed = 0;
    pass ps = { &s, ids, n_ids, win, sidx, 0, NULL, 0 };
    if (st == QX_OK) {
        for (size_t i = 0; i < n; i++) sidx[i] = -1;
        for (int64_t t = 0; t < s.wpb * s.n_ctx; t++) s.pos[t] = (int32_t)(t % s.n_ctx);
        s.c = (fwd_ctx){ m, NULL, 0, s.n_ctx, 0, s.pos, false, p->ppl.backend ? p->ppl.backend : kn_backend_cpu(), win };
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
        for (int64_t t = 0; t < s.T; t++) embed_row(&m->embed.w, win[t], s.E, s.SW, s.h0 + t * s.SW);
        st = stage_items(&s, &ps, -1, items, n, idx, branch_embed, e);
        t_embed = qx_now() - t0;
    }
    for (int L = 0; st == QX_OK && L < hp->n_layer; L++) {
        st = stream_layer(&s, &ps, L, items, n, idx, e);
        if (p->ppl.progress) p->ppl.progress(p->ppl.progress_ud, L, (int)hp->n_layer, L + 1, hp->n_layer);
    }
    if (st == QX_OK) {   /* the base: the unmodified state's logits, saved for the scoring */
        cal_ppl_params pp = p->ppl;
        pp.base = NULL; pp.save_kld = pp.vs_kld = NULL; pp.tokens_out = NULL; pp.progress = NULL;
        memset(&pp.shard, 0, sizeof pp.shard);
        head_job j = { &s, s.h0, NULL };
        cal_ppl_result r;
        st = cal_ppl_run_fwd(m, ids, n_ids, &pp, head_run, &j, &r, e);
    }
    for (size_t i = 0; st == QX_OK && i < n; i++) {
        if (sidx[i] < 0) continue;
        float *h;
        st = state_get(&s, sidx[i], false, &h, e);
        if (st == QX_OK) st = score(&s, &ps, &items[i], h, NULL, e);
    }
    if (st == QX_OK) st = stage_items(&s, &ps, (int)hp->n_layer, items, n, idx, branch_output, e);
    for (size_t i = 0; st == QX_OK && p->item_done && i < n; i++) p->item_done(p->ud, i, n, &items[i]);
    if (stp) {
        *stp = est;
        stp->scratch_io_bytes = s.scratch_io;
        stp->seconds = qx_now() - t0;
        stp->step_seconds = s.t_step;
        stp->quant_seconds = s.t_quant;
        stp->head_seconds = stp->seconds - s.t_step - s.t_quant - t_embed;
    }
    stream_free(&s);
    free(sidx); free(idx); free(win);
    return st;
}

/* Matmul + attention FLOPs per token of layer L: 2 per weight used (an expert tensor by
 * n_exp_used of n_exp), 2 x (q.k + p.v) widths over the n_ctx / 2 keys a token sees on average. */
static double layer_flops(const cal_model *m, int L, int64_t n_ctx) {
    const cal_hparams *hp = &m->hp;
    char pre[32];
    int np = snprintf(pre, sizeof pre, "blk.%d.", L);
    double w = 0;
    for (size_t i = 0; i < gf_tensor_count(m->gf); i++) {
        const gf_tensor *t = gf_tensor_at(m->gf, i);
        if (strncmp(t->name, pre, (size_t)np) || t->ne[1] <= 1) continue;
        double k = (double)t->n_elems;
        if (strstr(t->name, "_exps.") && hp->n_exp > 0) k *= (double)hp->n_exp_used / (double)hp->n_exp;
        w += k;
    }
    double qk = hp->arch == CAL_ARCH_DEEPSEEK2 ? (double)(hp->qk_nope + hp->qk_rope + hp->v_dim) : 2.0 * (double)hp->head_dim;
    double keys = (double)(n_ctx + 1) / 2;
    if (hp->arch == CAL_ARCH_DEEPSEEK4) {   /* the window plus the compressed rows a token sees on average */
        const int r = m->v4_ratio[L];
        keys = (double)(hp->n_swa < (n_ctx + 1) / 2 ? hp->n_swa : (n_ctx + 1) / 2);
        if (r == 4) keys += (double)(hp->index_topk < n_ctx / 8 ? hp->index_topk : n_ctx / 8);
        else if (r > 0) keys += (double)n_ctx / (2.0 * r);
    }
    return 2 * w + 2 * (double)hp->n_head * qk * keys;
}

qx_status cal_sens_stream_estimate(const cal_model *m, const cal_sens_item *items, size_t n, int64_t n_win, int64_t n_ctx,
                                   int64_t logits_from, uint64_t mem_bytes, int n_threads, cal_sens_stream_stats *st,
                                   qx_err *e) {
    QX_TRY(stream_check(m, items, n, e));
    const cal_hparams *hp = &m->hp;
    const int64_t NL = hp->n_layer, T = n_win * n_ctx;
    memset(st, 0, sizeof *st);
    st->n_win = n_win; st->n_ctx = n_ctx;
    st->state_bytes = (uint64_t)T * (uint64_t)cal_state_width(hp) * sizeof(float);
    uint64_t big = 0, glob = 0, *lb = calloc((size_t)NL + 1, sizeof *lb);   /* [NL] file bytes of each layer */
    if (!lb) return qx_fail(e, QX_ENOMEM, "sensitivity: out of memory");
    for (size_t i = 0; i < gf_tensor_count(m->gf); i++) {
        const gf_tensor *t = gf_tensor_at(m->gf, i);
        st->weight_bytes_read += t->nbytes;
        int sg = item_stage(t->name, NL);
        if (sg >= 0 && sg < NL) lb[sg] += t->nbytes;
        else if (sg == NL || (!glob && sg == -1)) glob = t->nbytes;   /* the head (tied: token_embd); embedding rows are few */
    }
    for (size_t i = 0; i < n; i++) {   /* an item's f32 source and its quantized copy */
        const gf_tensor *t = gf_find_tensor(m->gf, items[i].name);
        uint64_t b = t ? t->n_elems * 4 + qt_row_size(items[i].type, t->ne[0]) * (t->n_elems / (uint64_t)t->ne[0]) : 0;
        if (b > big) big = b;
    }
    uint64_t maxl = 0;
    for (int L = 0; L < NL; L++) if (lb[L] > maxl) maxl = lb[L];
    free(lb);
    int64_t *born = calloc((size_t)NL + 2, sizeof *born);   /* [stage + 1] item states created there */
    double *lf = malloc(((size_t)NL + 1) * sizeof *lf);
    if (!born || !lf) { free(born); free(lf); return qx_fail(e, QX_ENOMEM, "sensitivity: out of memory"); }
    int64_t heads = 1;   /* the base */
    for (size_t i = 0; i < n; i++) {
        if (!items[i].measure) continue;
        int sg = item_stage(items[i].name, NL);
        heads++;
        if (sg < NL) { born[sg + 1]++; st->n_states++; }
    }
    if (mem_bytes == 0) st->states_in_memory = st->n_states;
    else if (mem_bytes < 2 * st->state_bytes) {
        free(born); free(lf);
        return qx_fail(e, QX_EINVAL, "sensitivity: --mem %.1f MiB holds less than the 2 states needed (%.1f MiB each)",
                       mem_bytes / 1048576.0, st->state_bytes / 1048576.0);
    } else {
        int64_t k = (int64_t)(mem_bytes / st->state_bytes) - 2;
        st->states_in_memory = k < st->n_states ? k : st->n_states;
    }
    int64_t live = born[0], spill = 0;
    for (int L = 0; L < NL; L++) {
        lf[L] = layer_flops(m, L, n_ctx);
        int64_t steps = live + born[L + 1] + 1;   /* live states, new branches, the base */
        st->layer_passes += steps;
        st->flops += (double)steps * (double)T * lf[L];
        int64_t sp = live > st->states_in_memory ? live - st->states_in_memory : 0;
        spill += 2 * sp;   /* read and written back */
        int64_t after = live + born[L + 1];
        if (after > st->states_in_memory) spill += (after - (live > st->states_in_memory ? live : st->states_in_memory));
        live = after;
    }
    int64_t sp_end = live > st->states_in_memory ? live - st->states_in_memory : 0;
    spill += sp_end;   /* read for the head */
    st->scratch_bytes = (uint64_t)sp_end * st->state_bytes;
    st->scratch_io_bytes = (uint64_t)spill * st->state_bytes;
    double step_flops = st->flops;
    st->flops += (double)heads * (double)n_win * (double)(n_ctx - logits_from) * 2.0 * (double)hp->n_embd * (double)hp->n_vocab;
    /* activations of one batch: layer buffers per token (norms, MLA q/k/v/o, the FFN's two
     * hidden rows) and the head's logits batch (cal_head_fwd: <= 2^26 floats or one window) */
    int64_t wpb = 4096 / n_ctx > 0 ? 4096 / n_ctx : 1, bt = (wpb < n_win ? wpb : n_win) * n_ctx, nr = n_ctx - logits_from;
    int64_t ff = hp->n_ff > hp->n_ff_exp * (hp->n_shared > 0 ? hp->n_shared : 1) ? hp->n_ff : hp->n_ff_exp * (hp->n_shared > 0 ? hp->n_shared : 1);
    int64_t qd = hp->arch == CAL_ARCH_DEEPSEEK2 ? hp->qk_nope + hp->qk_rope + hp->v_dim + hp->kv_lora : 3 * hp->head_dim;
    uint64_t act = (uint64_t)bt * 4 * (uint64_t)(4 * cal_state_width(hp) + 3 * hp->n_head * qd + 2 * ff);
    uint64_t lg = (uint64_t)nr * (uint64_t)hp->n_vocab, lgmax = (uint64_t)1 << 26;
    uint64_t head = 4 * (lg > lgmax ? lg : (lgmax / lg) * lg < (uint64_t)n_win * lg ? (lgmax / lg) * lg : (uint64_t)n_win * lg);
    st->memory_bytes = (uint64_t)(st->states_in_memory + 2) * st->state_bytes + maxl + glob + big + (act > head ? act : head);
    if (n_threads <= 0) n_threads = qx_default_threads();
    st->seconds = st->flops / (CAL_SENS_FLOPS_PER_THREAD * n_threads);
    st->step_seconds = step_flops / (CAL_SENS_FLOPS_PER_THREAD * n_threads);
    st->head_seconds = st->seconds - st->step_seconds;
    free(born); free(lf);
    return QX_OK;
}
