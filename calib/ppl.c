/* calib/ppl.c — perplexity and KL drift over the layer-major engine, and the base
 * log-probability file.
 *
 * Base file (qforge's own; written by `qforge ppl --save-base`, read with `--base`): one gzip
 * (zlib deflate) stream holding, little-endian:
 *   header  char magic[8] "QFBASE1\0", u32 version (1), u32 protocol (cal_ppl_protocol),
 *           i64 n_ctx, i64 n_vocab, i64 n_chunks, i64 n_rows (scored tokens), u32 top_k,
 *           u32 reserved (0), u64 XXH3-64 of the evaluated windows' token ids (int32 LE)
 *   then n_rows records, in window order then position order.  top_k == 0 (the default):
 *   full rows quantized to 16 bits over the row's own range,
 *           f32 logp_target          base log-probability of the scored (next) token (exact)
 *           i32 top1                 the base's most probable token
 *           f32 lo, f32 step         logp[j] ~ lo + step * u[j], lo = row min, step = range/65535
 *           u16 u[n_vocab]
 *   top_k > 0 (compact, opt-in):
 *           f32 logp_target
 *           f32 logp_rest            log of the probability mass outside the top-k (-inf: none)
 *           i32 id[top_k]            the top-k tokens, most probable first
 *           f32 logp[top_k]          their log-probabilities
 * The size/accuracy trade-off for a 129,280-token vocabulary: a full 16-bit row is 253 KiB
 * (like llama-perplexity's --kl-divergence-base, which however clamps to a 16-nat range:
 * we keep the whole range, so the step is ~40/65535 nat and after renormalizing the
 * decoded row the KLD error is second order, ~1e-8).  64 chunks x 256 scored tokens are then
 * ~4 GiB before deflate.  Top-k + remainder is ~(8k + 8) bytes per token (64: ~500x smaller)
 * but computes the KLD over k+1 bins (top-k + "everything else"): by the log-sum inequality
 * it never exceeds the true KLD and misses the divergence within the tail.  Measured on
 * mini-llama (vocab 2048, PPL ~100, a 4-bit-rounded build, tests/test_ppl.c): top-64 gives
 * ~70% of the exact KLD, so it is a lower bound for trend-watching only; the gate uses full
 * rows unless told otherwise.  PPL, ln PPL ratio, Δp and top-1 use exact stored values in
 * both modes and do not depend on k.
 *
 * Per-token KLD file (`--save-kld`, read by `--vs-kld`; uncompressed, little-endian):
 *   char magic[8] "QFKLD1\0\0", u32 version (1), u32 protocol, i64 n_ctx, i64 n_rows,
 *   u64 XXH3-64 of the evaluated windows' token ids, then f32 kld[n_rows] in the base file's
 *   row order.  Two builds measured against the same base can then be compared token by
 *   token: the paired difference has a smaller standard error than either mean (both
 *   builds see the same hard tokens; on mini-v3 it is 0.6-0.8 of the unpaired one). */
#include "engine_int.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define BASE_MAGIC "QFBASE1"
#define KLD_MAGIC "QFKLD1\0"

cal_ppl_params cal_ppl_default_params(void) {
    cal_ppl_params p;
    memset(&p, 0, sizeof p);
    p.protocol = CAL_PPL_LLAMA;
    p.n_ctx = 512;
    p.top_k = 0;
    return p;
}

qx_status cal_ppl_windows(const int32_t *ids, int64_t n_ids, cal_ppl_protocol proto, int64_t n_ctx,
                          int64_t n_chunks, int32_t bos, bool add_bos, int32_t **win,
                          int64_t *n_win, qx_err *e) {
    *win = NULL; *n_win = 0;
    if (n_ctx < 2) return qx_fail(e, QX_EINVAL, "ppl: context %lld is too small", (long long)n_ctx);
    bool with_bos = proto == CAL_PPL_LLAMA && add_bos && bos >= 0;
    int64_t n_tok = n_ids + (with_bos ? 1 : 0);
    int64_t n = n_tok / n_ctx;
    if (n_chunks > 0 && n_chunks < n) n = n_chunks;
    if (n < 1)
        return qx_fail(e, QX_EINVAL, "ppl: %lld tokens do not fill one window of %lld", (long long)n_tok, (long long)n_ctx);
    int32_t *w = malloc((size_t)(n * n_ctx) * sizeof *w);
    if (!w) return qx_fail(e, QX_ENOMEM, "ppl: out of memory");
    for (int64_t i = 0; i < n * n_ctx; i++) {
        int64_t src = with_bos ? i - 1 : i;
        w[i] = src < 0 ? bos : ids[src];
    }
    if (with_bos)
        for (int64_t c = 0; c < n; c++) w[c * n_ctx] = bos;
    *win = w; *n_win = n;
    return QX_OK;
}

typedef struct {
    float logp_target, logp_rest;
    int32_t *id;
    float *logp;
} base_row;

typedef struct {
    const cal_ppl_params *p;
    const int32_t *win;
    int64_t n_ctx, p0, n_rows_per_win, V;
    int k;                         /* top-k written to the save file */
    int base_k;                    /* top-k of the base file */
    gzFile save, base;
    const char *save_path, *base_path;
    double *lse;
    int32_t *am;
    /* top-k scratch */
    int32_t *hid; float *hval;
    uint16_t *hu;                  /* full-row scratch */
    double *dl;
    base_row br;
    /* per scored finite token, in window then position order (cal_ppl_tokens); statistics
     * are summed from these afterwards (cal_ppl_stats), so shards concatenate exactly */
    int64_t n, n_nonfinite;
    cal_ppl_tokens t;
    float *vs;                     /* the other build's per-token KLD (vs_kld) */
    cal_ppl_result *r;
} ppl_obs;

static qx_status gz_w(ppl_obs *o, const void *buf, unsigned n, qx_err *e) {
    if (gzwrite(o->save, buf, n) != (int)n)
        return qx_fail(e, QX_EIO, "%s: write failed", o->save_path);
    return QX_OK;
}
static qx_status gz_r(ppl_obs *o, void *buf, unsigned n, qx_err *e) {
    int got = gzread(o->base, buf, n);
    if (got != (int)n)
        return qx_fail(e, QX_EFORMAT, "%s: truncated or corrupt base file (read %d of %u bytes)", o->base_path, got, n);
    return QX_OK;
}

/* Min-heap on (val) of size k: keeps the k largest values; ties keep the lower id. */
static bool heap_less(const float *v, const int32_t *id, int a, int b) {
    return v[a] < v[b] || (v[a] == v[b] && id[a] > id[b]);
}
static void heap_down(float *v, int32_t *id, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && heap_less(v, id, l, m)) m = l;
        if (r < n && heap_less(v, id, r, m)) m = r;
        if (m == i) return;
        float tv = v[i]; v[i] = v[m]; v[m] = tv;
        int32_t ti = id[i]; id[i] = id[m]; id[m] = ti;
        i = m;
    }
}
/* Top-k of row l (k <= V) into id/val, most probable first (ties: lower id first). */
static void top_k(const float *l, int64_t V, int k, int32_t *id, float *val) {
    int n = 0;
    for (int64_t j = 0; j < V; j++) {
        if (n < k) {
            id[n] = (int32_t)j; val[n] = l[j]; n++;
            if (n == k) for (int i = k / 2 - 1; i >= 0; i--) heap_down(val, id, k, i);
        } else if (l[j] > val[0]) {
            val[0] = l[j]; id[0] = (int32_t)j;
            heap_down(val, id, k, 0);
        }
    }
    if (n < k) for (int i = n / 2 - 1; i >= 0; i--) heap_down(val, id, n, i);
    for (int m = n; m > 1; m--) {    /* heap sort: smallest to the end */
        float tv = val[0]; val[0] = val[m - 1]; val[m - 1] = tv;
        int32_t ti = id[0]; id[0] = id[m - 1]; id[m - 1] = ti;
        heap_down(val, id, m - 1, 0);
    }
}

static qx_status save_row_full(ppl_obs *o, const float *l, double lse, int32_t am, float logp_t, qx_err *e) {
    float lo = l[0], hi = l[0];
    for (int64_t j = 1; j < o->V; j++) { lo = fminf(lo, l[j]); hi = fmaxf(hi, l[j]); }
    double step = ((double)hi - lo) / 65535.0;
    for (int64_t j = 0; j < o->V; j++)
        o->hu[j] = step > 0 ? (uint16_t)lrint(((double)l[j] - lo) / step) : 0;
    float flo = (float)((double)lo - lse), fst = (float)step;
    QX_TRY(gz_w(o, &logp_t, 4, e));
    QX_TRY(gz_w(o, &am, 4, e));
    QX_TRY(gz_w(o, &flo, 4, e));
    QX_TRY(gz_w(o, &fst, 4, e));
    return gz_w(o, o->hu, (unsigned)(o->V * 2), e);
}

/* Full-row base: decode, renormalize, exact KLD over the vocabulary. */
static qx_status base_row_full(ppl_obs *o, const float *l, double lse, int32_t am, float logp_t, bool *ok,
                               qx_err *e) {
    float blt, lo, st; int32_t btop;
    QX_TRY(gz_r(o, &blt, 4, e)); QX_TRY(gz_r(o, &btop, 4, e));
    QX_TRY(gz_r(o, &lo, 4, e)); QX_TRY(gz_r(o, &st, 4, e));
    QX_TRY(gz_r(o, o->hu, (unsigned)(o->V * 2), e));
    if (btop < 0 || btop >= o->V) { *ok = false; return QX_OK; }
    double mx = -INFINITY, z = 0.0;
    for (int64_t j = 0; j < o->V; j++) { o->dl[j] = (double)lo + (double)st * o->hu[j]; mx = fmax(mx, o->dl[j]); }
    for (int64_t j = 0; j < o->V; j++) z += exp(o->dl[j] - mx);
    double blse = mx + log(z), kld = 0.0;
    for (int64_t j = 0; j < o->V; j++) {
        double lp = o->dl[j] - blse;
        kld += exp(lp) * (lp - ((double)l[j] - lse));
    }
    double d = -(double)logp_t + (double)blt;
    double dp = exp((double)logp_t) - exp((double)blt);
    if (!*ok || !isfinite(kld) || !isfinite(d)) { *ok = false; return QX_OK; }
    if (kld < 0) kld = 0;   /* rounding of a zero divergence */
    o->t.kld[o->n] = kld;
    o->t.d[o->n] = d;
    o->t.bnll[o->n] = -(double)blt;
    o->t.dp[o->n] = dp;
    o->t.top1[o->n] = btop == am;
    return QX_OK;
}

static qx_status save_row(ppl_obs *o, const float *l, double lse, float logp_t, qx_err *e) {
    top_k(l, o->V, o->k, o->hid, o->hval);
    double top = 0.0;
    for (int i = 0; i < o->k; i++) { o->hval[i] = (float)(o->hval[i] - lse); top += exp((double)o->hval[i]); }
    double rest = 0.0;
    if (o->k < o->V) {   /* mass outside the top-k: all minus top, both in double */
        double all = 0.0;
        for (int64_t j = 0; j < o->V; j++) all += exp((double)l[j] - lse);
        rest = all - top;
        if (rest < 0) rest = 0;
    }
    float lr = rest > 0 ? (float)log(rest) : -INFINITY;
    QX_TRY(gz_w(o, &logp_t, 4, e));
    QX_TRY(gz_w(o, &lr, 4, e));
    QX_TRY(gz_w(o, o->hid, (unsigned)(o->k * 4), e));
    QX_TRY(gz_w(o, o->hval, (unsigned)(o->k * 4), e));
    return QX_OK;
}

/* Reads the next base row and accumulates the drift of this row; *ok false (nothing
 * accumulated) when anything is non-finite. */
static qx_status base_row_cmp(ppl_obs *o, const float *l, double lse, int32_t am, float logp_t, bool *ok,
                              qx_err *e) {
    base_row *b = &o->br;
    QX_TRY(gz_r(o, &b->logp_target, 4, e));
    QX_TRY(gz_r(o, &b->logp_rest, 4, e));
    QX_TRY(gz_r(o, b->id, (unsigned)(o->base_k * 4), e));
    QX_TRY(gz_r(o, b->logp, (unsigned)(o->base_k * 4), e));
    double kld = 0.0, qtop = 0.0;
    for (int i = 0; i < o->base_k; i++) {
        if (b->id[i] < 0 || b->id[i] >= o->V)
            return qx_fail(e, QX_EFORMAT, "%s: token id %d outside the vocabulary", o->base_path, b->id[i]);
        double lp = b->logp[i], lq = (double)l[b->id[i]] - lse;
        double pp = exp(lp);
        kld += pp * (lp - lq);
        qtop += exp(lq);
    }
    if (b->logp_rest > -INFINITY) {
        double pr = exp((double)b->logp_rest), qr = 1.0 - qtop;
        if (qr < 1e-300) qr = 1e-300;
        kld += pr * ((double)b->logp_rest - log(qr));
    }
    double d = -(double)logp_t - -(double)b->logp_target;
    double dp = exp((double)logp_t) - exp((double)b->logp_target);
    if (!*ok || !isfinite(kld) || !isfinite(d)) { *ok = false; return QX_OK; }
    o->t.kld[o->n] = kld;
    o->t.d[o->n] = d;
    o->t.bnll[o->n] = -(double)b->logp_target;
    o->t.dp[o->n] = dp;
    o->t.top1[o->n] = b->id[0] == am;
    return QX_OK;
}

static qx_status on_logits(void *ud, int64_t win, int64_t p0, const float *lg, int64_t n_rows,
                           int64_t V, qx_err *e) {
    ppl_obs *o = ud;
    const int64_t ns = o->n_rows_per_win;
    (void)n_rows; (void)p0;
    kn_logsumexp(lg, V, ns, V, o->lse, o->am);
    for (int64_t i = 0; i < ns; i++) {
        const float *l = lg + i * V;
        int64_t p = o->p0 + i;
        int32_t tgt = o->win[win * o->n_ctx + p + 1];
        double lp = (double)l[tgt] - o->lse[i];
        bool fin = isfinite(lp) && isfinite(o->lse[i]);
        if (o->save) {
            if (fin && o->k == 0) QX_TRY(save_row_full(o, l, o->lse[i], o->am[i], (float)lp, e));
            else if (fin) QX_TRY(save_row(o, l, o->lse[i], (float)lp, e));
            else if (o->k == 0) {
                float z = NAN; int32_t zi = 0;
                QX_TRY(gz_w(o, &z, 4, e)); QX_TRY(gz_w(o, &zi, 4, e)); QX_TRY(gz_w(o, &z, 4, e)); QX_TRY(gz_w(o, &z, 4, e));
                memset(o->hu, 0, (size_t)o->V * 2);
                QX_TRY(gz_w(o, o->hu, (unsigned)(o->V * 2), e));
            } else {   /* a record of NaNs: a later --base run counts it non-finite */
                float z = NAN;
                QX_TRY(gz_w(o, &z, 4, e)); QX_TRY(gz_w(o, &z, 4, e));
                for (int j = 0; j < o->k; j++) o->hid[j] = 0, o->hval[j] = NAN;
                QX_TRY(gz_w(o, o->hid, (unsigned)(o->k * 4), e));
                QX_TRY(gz_w(o, o->hval, (unsigned)(o->k * 4), e));
            }
        }
        bool ok = fin;
        if (o->base && o->base_k == 0) QX_TRY(base_row_full(o, l, o->lse[i], o->am[i], (float)lp, &ok, e));
        else if (o->base) QX_TRY(base_row_cmp(o, l, o->lse[i], o->am[i], (float)lp, &ok, e));
        if (!ok) { o->n_nonfinite++; continue; }
        o->t.nll[o->n++] = -lp;
    }
    return QX_OK;
}

static void on_progress(void *ud, int layer, int n_layer, int64_t done, int64_t total) {
    ppl_obs *o = ud;
    o->p->progress(o->p->progress_ud, layer, n_layer, done, total);
}

static qx_status write_header(ppl_obs *o, int64_t n_chunks, uint64_t hash, qx_err *e) {
    char magic[8] = BASE_MAGIC;
    uint32_t ver = 1, proto = (uint32_t)o->p->protocol, k = (uint32_t)o->k, res = 0;
    int64_t nr = n_chunks * o->n_rows_per_win;
    QX_TRY(gz_w(o, magic, 8, e)); QX_TRY(gz_w(o, &ver, 4, e)); QX_TRY(gz_w(o, &proto, 4, e));
    QX_TRY(gz_w(o, &o->n_ctx, 8, e)); QX_TRY(gz_w(o, &o->V, 8, e)); QX_TRY(gz_w(o, &n_chunks, 8, e));
    QX_TRY(gz_w(o, &nr, 8, e)); QX_TRY(gz_w(o, &k, 4, e)); QX_TRY(gz_w(o, &res, 4, e));
    QX_TRY(gz_w(o, &hash, 8, e));
    return QX_OK;
}

static qx_status read_header(ppl_obs *o, int64_t n_chunks, uint64_t hash, qx_err *e) {
    char magic[8]; uint32_t ver, proto, k, res; int64_t nctx, V, nc, nr; uint64_t h;
    QX_TRY(gz_r(o, magic, 8, e));
    if (memcmp(magic, BASE_MAGIC, 8)) return qx_fail(e, QX_EFORMAT, "%s: not a qforge base file (bad magic)", o->base_path);
    QX_TRY(gz_r(o, &ver, 4, e)); QX_TRY(gz_r(o, &proto, 4, e)); QX_TRY(gz_r(o, &nctx, 8, e));
    QX_TRY(gz_r(o, &V, 8, e)); QX_TRY(gz_r(o, &nc, 8, e)); QX_TRY(gz_r(o, &nr, 8, e));
    QX_TRY(gz_r(o, &k, 4, e)); QX_TRY(gz_r(o, &res, 4, e)); QX_TRY(gz_r(o, &h, 8, e));
    if (ver != 1) return qx_fail(e, QX_EUNSUPPORTED, "%s: base file version %u", o->base_path, ver);
    if (proto != (uint32_t)o->p->protocol || nctx != o->n_ctx)
        return qx_fail(e, QX_EINVAL, "%s: base was made with protocol %s, ctx %lld; this run is %s, ctx %lld", o->base_path,
                       proto == CAL_PPL_LLAMA ? "llama" : "all", (long long)nctx,
                       o->p->protocol == CAL_PPL_LLAMA ? "llama" : "all", (long long)o->n_ctx);
    if (V != o->V) return qx_fail(e, QX_EINVAL, "%s: base vocabulary %lld, model has %lld", o->base_path, (long long)V, (long long)o->V);
    if (nc != n_chunks || nr != n_chunks * o->n_rows_per_win)
        return qx_fail(e, QX_EINVAL, "%s: base has %lld chunks, this run %lld (use the same --chunks)", o->base_path, (long long)nc, (long long)n_chunks);
    if (h != hash) return qx_fail(e, QX_EINVAL, "%s: base was computed on different tokens (text or tokenizer differ)", o->base_path);
    if (k > (uint32_t)V) return qx_fail(e, QX_EFORMAT, "%s: top_k %u outside [0, %lld]", o->base_path, k, (long long)V);
    o->base_k = (int)k;
    return QX_OK;
}

/* Passes over the base rows of the windows before a shard's first one. */
static qx_status skip_rows(ppl_obs *o, int64_t rows, qx_err *e) {
    int64_t row = o->base_k == 0 ? 16 + 2 * o->V : 8 + 8 * (int64_t)o->base_k;
    for (int64_t i = 0; i < rows; i++)
        if (gzseek(o->base, (z_off_t)row, SEEK_CUR) < 0)
            return qx_fail(e, QX_EFORMAT, "%s: truncated base file (row %lld of those before this shard)", o->base_path, (long long)i);
    return QX_OK;
}

typedef struct {
    char magic[8];
    uint32_t version, protocol;
    int64_t n_ctx, n_rows;
    uint64_t hash;
} kld_header;

/* "<path>.part" (malloc'd; NULL when out of memory).  Both output files of a run are written
 * there and renamed over path when complete: a killed run never leaves a file that looks whole. */
static char *part_name(const char *path) {
    size_t len = strlen(path);
    char *part = malloc(len + 6);
    if (part) { memcpy(part, path, len); memcpy(part + len, ".part", 6); }
    return part;
}

static qx_status save_klds(const char *path, const ppl_obs *o, uint64_t hash, qx_err *e) {
    kld_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, KLD_MAGIC, 8);
    h.version = 1; h.protocol = (uint32_t)o->p->protocol; h.n_ctx = o->n_ctx; h.n_rows = o->n; h.hash = hash;
    char *part = part_name(path);
    if (!part) return qx_fail(e, QX_ENOMEM, "ppl: out of memory");
    FILE *f = fopen(part, "wb");
    qx_status s = QX_OK;
    if (!f) s = qx_fail(e, QX_EIO, "%s: cannot create: %s", part, strerror(errno));
    if (s == QX_OK && fwrite(&h, sizeof h, 1, f) != 1) s = qx_fail(e, QX_EIO, "%s: write failed: %s", part, strerror(errno));
    for (int64_t i = 0; s == QX_OK && i < o->n; i++) {
        float v = (float)o->t.kld[i];
        if (fwrite(&v, 4, 1, f) != 1) s = qx_fail(e, errno == ENOSPC ? QX_ENOSPC : QX_EIO, "%s: write failed: %s", part, strerror(errno));
    }
    if (f && fclose(f) != 0 && s == QX_OK) s = qx_fail(e, errno == ENOSPC ? QX_ENOSPC : QX_EIO, "%s: write failed on close: %s", part, strerror(errno));
    if (s == QX_OK && rename(part, path) != 0) s = qx_fail(e, QX_EIO, "rename %s -> %s: %s", part, path, strerror(errno));
    if (s != QX_OK && f) remove(part);
    free(part);
    return s;
}

qx_status cal_kld_parse(const uint8_t *buf, size_t len, const char *label, cal_kld_file *out, qx_err *e) {
    memset(out, 0, sizeof *out);
    kld_header h;
    if (len < sizeof h) return qx_fail(e, QX_EFORMAT, "%s: %zu bytes is too short for a per-token KLD file", label, len);
    memcpy(&h, buf, sizeof h);
    if (memcmp(h.magic, KLD_MAGIC, 8)) return qx_fail(e, QX_EFORMAT, "%s: not a qforge per-token KLD file (bad magic)", label);
    if (h.version != 1) return qx_fail(e, QX_EUNSUPPORTED, "%s: per-token KLD file version %u", label, h.version);
    if (h.protocol != CAL_PPL_LLAMA && h.protocol != CAL_PPL_ALL)
        return qx_fail(e, QX_EFORMAT, "%s: unknown protocol %u", label, h.protocol);
    if (h.n_ctx < 2 || h.n_rows < 0) return qx_fail(e, QX_EFORMAT, "%s: n_ctx %lld, n_rows %lld", label, (long long)h.n_ctx, (long long)h.n_rows);
    if ((uint64_t)h.n_rows != (uint64_t)(len - sizeof h) / 4 || (len - sizeof h) % 4)
        return qx_fail(e, QX_EFORMAT, "%s: %zu bytes, a header of %lld tokens needs %llu (truncated or trailing data)", label, len,
                       (long long)h.n_rows, (unsigned long long)sizeof h + 4ull * (unsigned long long)h.n_rows);
    float *k = malloc((size_t)(h.n_rows > 0 ? h.n_rows : 1) * sizeof(float));
    if (!k) return qx_fail(e, QX_ENOMEM, "%s: out of memory", label);
    memcpy(k, buf + sizeof h, (size_t)h.n_rows * 4);
    for (int64_t i = 0; i < h.n_rows; i++)
        if (!isfinite(k[i]) || k[i] < 0) {
            double bad = (double)k[i];
            free(k);
            return qx_fail(e, QX_EFORMAT, "%s: token %lld has KLD %g", label, (long long)i, bad);
        }
    out->protocol = (cal_ppl_protocol)h.protocol;
    out->n_ctx = h.n_ctx; out->n_rows = h.n_rows; out->hash = h.hash; out->kld = k;
    return QX_OK;
}

void cal_kld_file_free(cal_kld_file *f) {
    if (!f) return;
    free(f->kld);
    memset(f, 0, sizeof *f);
}

/* Reads another build's per-token KLD; it must cover exactly this run's scored tokens. */
static qx_status load_klds(const char *path, ppl_obs *o, int64_t n_rows, uint64_t hash, qx_err *e) {
    char *buf; size_t len;
    QX_TRY(qx_read_file(path, &buf, &len, e));
    cal_kld_file f;
    qx_status s = cal_kld_parse((const uint8_t *)buf, len, path, &f, e);
    free(buf);
    if (s != QX_OK) return s;
    if (f.protocol != o->p->protocol || f.n_ctx != o->n_ctx)
        s = qx_fail(e, QX_EINVAL, "%s: made with protocol %s, ctx %lld; this run is %s, ctx %lld", path,
                    f.protocol == CAL_PPL_LLAMA ? "llama" : "all", (long long)f.n_ctx,
                    o->p->protocol == CAL_PPL_LLAMA ? "llama" : "all", (long long)o->n_ctx);
    else if (f.n_rows != n_rows) s = qx_fail(e, QX_EINVAL, "%s: %lld scored tokens, this run %lld (use the same --chunks)", path, (long long)f.n_rows, (long long)n_rows);
    else if (f.hash != hash) s = qx_fail(e, QX_EINVAL, "%s: computed on different tokens (text or tokenizer differ)", path);
    if (s != QX_OK) { cal_kld_file_free(&f); return s; }
    o->vs = f.kld;   /* ownership moves to the run */
    return QX_OK;
}

static int cmp_dbl(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

void cal_ppl_tokens_free(cal_ppl_tokens *t) {
    if (!t) return;
    free(t->nll); free(t->d); free(t->bnll); free(t->kld); free(t->dp); free(t->top1);
    memset(t, 0, sizeof *t);
}

qx_status cal_ppl_tokens_alloc(cal_ppl_tokens *t, int64_t n, bool has_base, qx_err *e) {
    memset(t, 0, sizeof *t);
    size_t c = (size_t)(n > 0 ? n : 1);
    t->has_base = has_base;
    t->nll = malloc(c * sizeof(double));
    if (has_base) {
        t->d = malloc(c * sizeof(double)); t->bnll = malloc(c * sizeof(double));
        t->kld = malloc(c * sizeof(double)); t->dp = malloc(c * sizeof(double));
        t->top1 = malloc(c);
    }
    if (t->nll && (!has_base || (t->d && t->bnll && t->kld && t->dp && t->top1))) return QX_OK;
    cal_ppl_tokens_free(t);
    return qx_fail(e, QX_ENOMEM, "ppl: out of memory");
}

qx_status cal_ppl_stats(const cal_ppl_tokens *t, cal_ppl_result *r, qx_err *e) {
    const int64_t N = t->n;
    const double n = (double)N;
    r->n_tokens_scored = N;
    r->has_base = false;
    if (N == 0) { r->ppl = NAN; return QX_OK; }
    double s_nll = 0, s_nll2 = 0;
    for (int64_t i = 0; i < N; i++) { s_nll += t->nll[i]; s_nll2 += t->nll[i] * t->nll[i]; }
    r->nll_mean = s_nll / n;
    r->ppl = exp(r->nll_mean);
    double var = N > 1 ? (s_nll2 / n - r->nll_mean * r->nll_mean) / (n - 1) : 0;
    r->ppl_err = r->ppl * sqrt(var > 0 ? var : 0);
    if (!t->has_base) return QX_OK;
    double s_d = 0, s_d2 = 0, s_bnll = 0, s_kld = 0, s_kld2 = 0, s_dp2 = 0;
    int64_t top1 = 0;
    for (int64_t i = 0; i < N; i++) {
        s_kld += t->kld[i]; s_kld2 += t->kld[i] * t->kld[i];
        s_d += t->d[i]; s_d2 += t->d[i] * t->d[i];
        s_bnll += t->bnll[i];
        s_dp2 += t->dp[i] * t->dp[i];
        top1 += t->top1[i] != 0;
    }
    r->has_base = true;
    r->ppl_base = exp(s_bnll / n);
    r->ln_ppl_ratio = s_d / n;
    var = N > 1 ? (s_d2 / n - r->ln_ppl_ratio * r->ln_ppl_ratio) / (n - 1) : 0;
    r->ln_ppl_ratio_err = sqrt(var > 0 ? var : 0);
    r->kld_mean = s_kld / n;
    var = N > 1 ? (s_kld2 / n - r->kld_mean * r->kld_mean) / (n - 1) : 0;
    r->kld_err = sqrt(var > 0 ? var : 0);
    double *k = malloc((size_t)N * sizeof(double));
    if (!k) return qx_fail(e, QX_ENOMEM, "ppl: out of memory");
    memcpy(k, t->kld, (size_t)N * sizeof(double));
    qsort(k, (size_t)N, sizeof(double), cmp_dbl);
    r->kld_median = N % 2 ? k[N / 2] : 0.5 * (k[N / 2 - 1] + k[N / 2]);
    r->kld_p99 = k[(int64_t)(0.99 * (n - 1))];
    r->kld_max = k[N - 1];
    for (int q = 0; q < CAL_KLD_NQ; q++) r->kld_q[q] = k[(int64_t)((double)q / (CAL_KLD_NQ - 1) * (double)(N - 1))];
    free(k);
    r->top1_agree = (double)top1 / n;
    r->dp_rms = sqrt(s_dp2 / n);
    return QX_OK;
}

static qx_status finish(ppl_obs *o, qx_err *e) {
    cal_ppl_result *r = o->r;
    const double n = (double)o->n;
    o->t.n = o->n;
    r->n_nonfinite = o->n_nonfinite;
    QX_TRY(cal_ppl_stats(&o->t, r, e));
    if (o->vs && o->n_nonfinite == 0 && o->n > 0) {   /* rows line up only when none was skipped */
        double sd = 0, sd2 = 0, sv = 0, var;
        int64_t lower = 0;
        for (int64_t i = 0; i < o->n; i++) {   /* both sides at the file's f32 precision */
            double a = (double)(float)o->t.kld[i], b = (double)o->vs[i], d = a - b;
            sd += d; sd2 += d * d; sv += b;
            lower += a < b;
        }
        r->has_vs = true;
        r->kld_delta = sd / n;
        var = o->n > 1 ? (sd2 / n - r->kld_delta * r->kld_delta) / (n - 1) : 0;
        r->kld_delta_err = sqrt(var > 0 ? var : 0);
        r->vs_kld_mean = sv / n;
        r->vs_lower_frac = (double)lower / n;
    }
    return QX_OK;
}

qx_status cal_ppl_run(cal_model *m, const int32_t *ids, int64_t n_ids, const cal_ppl_params *pp,
                      cal_ppl_result *r, qx_err *e) {
    return cal_ppl_run_fwd(m, ids, n_ids, pp, NULL, NULL, r, e);
}

qx_status cal_ppl_run_fwd(cal_model *m, const int32_t *ids, int64_t n_ids, const cal_ppl_params *pp, cal_fwd_fn fwd,
                          void *fwd_ud, cal_ppl_result *r, qx_err *e) {
    cal_ppl_params p = pp ? *pp : cal_ppl_default_params();
    const cal_hparams *hp = cal_model_hparams(m);
    memset(r, 0, sizeof *r);
    if (p.top_k < 0) p.top_k = 0;
    if ((p.save_kld || p.vs_kld) && !p.base)
        return qx_fail(e, QX_EINVAL, "ppl: a per-token KLD file (save_kld / vs_kld) needs a base");
    if (p.shard.count > 0 && (p.save_base || p.save_kld || p.vs_kld))
        return qx_fail(e, QX_EINVAL, "ppl: a shard cannot save a base or compare per-token KLD files (whole runs only)");
    int32_t *win;
    int64_t n_win;
    QX_TRY(cal_ppl_windows(ids, n_ids, p.protocol, p.n_ctx, p.n_chunks, hp->bos_id, hp->add_bos, &win, &n_win, e));
    qx_shard sh = p.shard;
    qx_shard_set_model(&sh, cal_model_path(m));
    qx_shard_range(&sh, n_win);
    if (sh.n < 1) {
        free(win);
        return qx_fail(e, QX_EINVAL, "ppl: shard %d/%d gets none of the %lld windows", sh.index, sh.count, (long long)n_win);
    }
    ppl_obs o;
    char *save_part = NULL;
    memset(&o, 0, sizeof o);
    o.p = &p; o.win = win + sh.first * p.n_ctx; o.n_ctx = p.n_ctx; o.V = hp->n_vocab; o.r = r;
    o.p0 = p.protocol == CAL_PPL_LLAMA ? p.n_ctx / 2 : 0;
    o.n_rows_per_win = p.n_ctx - 1 - o.p0;
    o.k = p.top_k < o.V ? p.top_k : (int)o.V;
    o.hu = malloc((size_t)o.V * sizeof(uint16_t));
    o.dl = malloc((size_t)o.V * sizeof(double));
    r->protocol = p.protocol; r->n_ctx = p.n_ctx; r->n_chunks = sh.n;
    uint64_t hash = gf_checksum(win, (uint64_t)(n_win * p.n_ctx) * sizeof(int32_t));
    sh.input = hash;
    r->shard = sh;
    qx_status s = cal_ppl_tokens_alloc(&o.t, sh.n * o.n_rows_per_win, p.base != NULL, e);
    o.lse = malloc((size_t)p.n_ctx * sizeof(double));
    o.am = malloc((size_t)p.n_ctx * sizeof(int32_t));
    o.hid = malloc((size_t)(o.k ? o.k : 1) * sizeof(int32_t));
    o.hval = malloc((size_t)(o.k ? o.k : 1) * sizeof(float));
    o.br.id = malloc((size_t)o.V * sizeof(int32_t));
    o.br.logp = malloc((size_t)o.V * sizeof(float));
    if (s == QX_OK && (!o.lse || !o.am || !o.hid || !o.hval || !o.br.id || !o.br.logp || !o.hu || !o.dl))
        s = qx_fail(e, QX_ENOMEM, "ppl: out of memory");
    if (s == QX_OK && p.base) {
        o.base_path = p.base;
        o.base = gzopen(p.base, "rb");
        if (!o.base) s = qx_fail(e, QX_ENOTFOUND, "%s: cannot open base file", p.base);
        else s = read_header(&o, n_win, hash, e);
        if (s == QX_OK && sh.first > 0) s = skip_rows(&o, sh.first * o.n_rows_per_win, e);
        if (s == QX_OK && p.vs_kld) s = load_klds(p.vs_kld, &o, n_win * o.n_rows_per_win, hash, e);
    }
    if (s == QX_OK && p.save_base) {
        if (!(save_part = part_name(p.save_base))) s = qx_fail(e, QX_ENOMEM, "ppl: out of memory");
        else {
            o.save_path = save_part;
            o.save = gzopen(save_part, "wb6");
            if (!o.save) s = qx_fail(e, QX_EIO, "%s: cannot create base file: %s", save_part, strerror(errno));
            else s = write_header(&o, n_win, hash, e);
        }
    }
    if (s == QX_OK) {
        cal_observer ob;
        memset(&ob, 0, sizeof ob);
        ob.ud = &o; ob.logits = on_logits;
        if (p.progress) ob.progress = on_progress;
        cal_run_params rp = cal_run_default_params();
        rp.n_threads = p.n_threads;
        rp.backend = p.backend;
        if (p.batch_tokens > 0) rp.batch_tokens = p.batch_tokens;
        rp.logits_from = o.p0;
        double t0 = qx_now();
        s = fwd ? fwd(fwd_ud, o.win, sh.n, p.n_ctx, &rp, &ob, e) : cal_forward(m, o.win, sh.n, p.n_ctx, &rp, &ob, e);
        r->seconds = qx_now() - t0;
        r->tokens_per_s = r->seconds > 0 ? (double)(sh.n * p.n_ctx) / r->seconds : 0;
    }
    if (s == QX_OK && o.base && sh.first + sh.n == n_win) {
        char extra;
        if (gzread(o.base, &extra, 1) != 0) s = qx_fail(e, QX_EFORMAT, "%s: trailing data after the last row", p.base);
    }
    if (o.save && gzclose(o.save) != Z_OK && s == QX_OK) s = qx_fail(e, QX_EIO, "%s: write failed on close", save_part);
    if (o.save && s == QX_OK && rename(save_part, p.save_base) != 0)
        s = qx_fail(e, QX_EIO, "rename %s -> %s: %s", save_part, p.save_base, strerror(errno));
    if (o.save && s != QX_OK) remove(save_part);
    free(save_part);
    if (o.base) gzclose(o.base);
    if (s == QX_OK && o.n_nonfinite == 0 && p.save_kld) s = save_klds(p.save_kld, &o, hash, e);
    if (s == QX_OK) s = finish(&o, e);
    if (s == QX_OK && p.tokens_out) { *p.tokens_out = o.t; memset(&o.t, 0, sizeof o.t); }
    cal_ppl_tokens_free(&o.t);
    free(o.vs);
    free(o.lse); free(o.am); free(o.hid); free(o.hval); free(o.hu); free(o.dl); free(o.br.id); free(o.br.logp); free(win);
    return s;
}
