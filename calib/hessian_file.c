/* calib/hessian_file.c — the GPTQ statistics file (`--gptq-save F` / `--gptq-load F`): the
 * layer-by-layer content of a cal_hessians (kept input rows or H per matrix, token counts), so
 * that several builds (presets, damping, --gptq-min-tokens) share one calibration run
 * without running the engine again.  Written and read one layer at a time, as the streamed
 * pass produces and consumes them.
 *
 * Layout (little-endian):
 *   header   "QFGPTQS1" | u32 n_layer | u32 experts mode | u64 settings (caller's hash of the
 *            model, tokens, windows) | u64 XXH3 of these 24 bytes
 *   layer    "LAYR" | i32 layer | u64 payload bytes | payload | u64 XXH3 of the payload
 *   payload  u32 n_entries, then per entry:
 *              u16 name length | name | u32 kind | u8 alias (1: an up projection using the
 *              gate's matrices; nothing follows) | i64 cols | i64 nmat, then per matrix:
 *              f64 tokens | u8 form (0 none, 1 rows, 2 H) | i64 rows (form 1) |
 *              f32 data [rows, cols] or [cols, cols]
 *   end      "DONE" | i32 layers written
 * Every count is checked against the payload bytes left before anything is allocated;
 * truncation, a bad checksum or a layer out of order is an error naming the file and layer. */
#include "hessian_int.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#define HF_MAGIC "QFGPTQS1"
#define HF_MAX_COLS (1 << 20)
#define HF_MAX_NMAT (1 << 20)

static qx_status write_all(int fd, const char *path, const void *p, size_t n, qx_err *e) {
    const uint8_t *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return qx_fail(e, errno == ENOSPC ? QX_ENOSPC : QX_EIO, "%s: write: %s", path, w < 0 ? strerror(errno) : "no progress");
        c += w; n -= (size_t)w;
    }
    return QX_OK;
}

qx_status cal_hessian_file_begin(int fd, const char *path, int n_layer, int experts, uint64_t settings, qx_err *e) {
    uint8_t h[32];
    memcpy(h, HF_MAGIC, 8);
    uint32_t nl = (uint32_t)n_layer, ex = (uint32_t)experts;
    memcpy(h + 8, &nl, 4); memcpy(h + 12, &ex, 4); memcpy(h + 16, &settings, 8);
    uint64_t x = XXH3_64bits(h, 24);
    memcpy(h + 24, &x, 8);
    return write_all(fd, path, h, 32, e);
}

/* Where a layer's payload goes: counted only (its length, written before it), or written
 * through a small buffer (large matrices go straight from their arrays) and hashed.  Nothing
 * the size of a layer is copied. */
typedef struct {
    bool count_only;
    uint64_t n;              /* bytes put */
    int fd;
    const char *path;
    XXH3_state_t *xs;
    qx_status s;
    qx_err *e;
    size_t nb;
    uint8_t buf[1 << 16];
} hsink;

static void sink_flush(hsink *k) {
    if (k->s == QX_OK && k->nb) k->s = write_all(k->fd, k->path, k->buf, k->nb, k->e);
    k->nb = 0;
}

static void put(hsink *k, const void *src, size_t n) {
    k->n += n;
    if (k->count_only || k->s != QX_OK) return;
    XXH3_64bits_update(k->xs, src, n);
    if (k->nb + n > sizeof k->buf) sink_flush(k);
    if (n >= sizeof k->buf) { if (k->s == QX_OK) k->s = write_all(k->fd, k->path, src, n, k->e); return; }
    memcpy(k->buf + k->nb, src, n);
    k->nb += n;
}

/* The payload of one layer (layout at the top). */
static void emit_layer(hsink *k, const cal_hessians *o, int layer) {
    uint32_t n = 0;
    for (int64_t i = 0; i < o->n_ent; i++) n += o->ent[i].used && o->ent[i].layer == layer;
    put(k, &n, 4);
    for (int64_t i = 0; i < o->n_ent; i++) {
        const h_entry *a = &o->ent[i];
        if (!a->used || a->layer != layer) continue;
        uint16_t nl = (uint16_t)strlen(a->name);
        uint32_t kind = (uint32_t)(i % CAL_W_KIND_COUNT);
        uint8_t alias = a->alias != NULL;
        put(k, &nl, 2); put(k, a->name, nl); put(k, &kind, 4); put(k, &alias, 1);
        if (alias) continue;
        put(k, &a->cols, 8); put(k, &a->nmat, 8);
        for (int64_t m = 0; m < a->nmat; m++) {
            uint8_t form = a->H[m] ? 2 : a->X[m] ? 1 : 0;
            put(k, &a->count[m], 8); put(k, &form, 1);
            if (form == 1) {
                put(k, &a->xrows[m], 8);
                put(k, a->X[m], (size_t)(a->xrows[m] * a->cols) * sizeof(float));
            } else if (form == 2)
                put(k, a->H[m], (size_t)(a->cols * a->cols) * sizeof(float));
        }
    }
}

qx_status cal_hessian_file_layer(const cal_hessians *o, int layer, int fd, const char *path, qx_err *e) {
    hsink *k = calloc(1, sizeof *k);
    if (!k) return qx_fail(e, QX_ENOMEM, "%s: out of memory writing layer %d", path, layer);
    k->count_only = true;
    emit_layer(k, o, layer);
    uint8_t head[16];
    memcpy(head, "LAYR", 4);
    int32_t L = layer;
    uint64_t len = k->n;
    memcpy(head + 4, &L, 4); memcpy(head + 8, &len, 8);
    qx_status s = write_all(fd, path, head, 16, e);
    if (s == QX_OK && !(k->xs = XXH3_createState())) s = qx_fail(e, QX_ENOMEM, "%s: out of memory", path);
    if (s == QX_OK) {
        XXH3_64bits_reset(k->xs);
        *k = (hsink){ .fd = fd, .path = path, .xs = k->xs, .s = QX_OK, .e = e };
        emit_layer(k, o, layer);
        sink_flush(k);
        s = k->s;
        uint64_t x = XXH3_64bits_digest(k->xs);
        if (s == QX_OK) s = write_all(fd, path, &x, 8, e);
    }
    if (k->xs) XXH3_freeState(k->xs);
    free(k);
    return s;
}

qx_status cal_hessian_file_end(int fd, const char *path, int layers, qx_err *e) {
    uint8_t t[8];
    memcpy(t, "DONE", 4);
    int32_t n = layers;
    memcpy(t + 4, &n, 4);
    return write_all(fd, path, t, 8, e);
}

/* ---- reading: one layer's payload through a reader (a file, or memory for the fuzzer) ---- */

typedef struct {
    bool (*get)(void *ud, void *dst, size_t n);
    void *ud;
    uint64_t left;        /* payload bytes not read yet */
    XXH3_state_t *xs;     /* hash of what was read */
} hread;

static bool rget(hread *r, void *dst, size_t n) {
    if (n > r->left || !r->get(r->ud, dst, n)) return false;
    r->left -= n;
    XXH3_64bits_update(r->xs, dst, n);
    return true;
}

static void drop_layer(cal_hessians *o, int layer) {
    for (int64_t i = 0; i < o->n_ent; i++)
        if (o->ent[i].used && o->ent[i].layer == layer) hs_entry_free(&o->ent[i]);
}

static qx_status parse_payload(cal_hessians *o, int layer, hread *r, const char *label, qx_err *e) {
    uint32_t n;
#define BAD(...) do { qx_fail(e, QX_EFORMAT, __VA_ARGS__); goto fail; } while (0)
    if (layer < 0 || layer > (int)o->hp.n_layer) BAD("%s: layer %d outside the model's %lld", label, layer, (long long)o->hp.n_layer);
    if (!rget(r, &n, 4)) BAD("%s: layer %d: truncated", label, layer);
    for (uint32_t i = 0; i < n; i++) {
        uint16_t nl;
        char name[128];
        uint32_t kind;
        uint8_t alias;
        if (!rget(r, &nl, 2) || nl == 0 || nl >= sizeof name || !rget(r, name, nl)) BAD("%s: layer %d entry %u: bad name", label, layer, i);
        name[nl] = 0;
        if (!rget(r, &kind, 4) || kind >= CAL_W_KIND_COUNT || !rget(r, &alias, 1) || alias > 1)
            BAD("%s: layer %d entry '%s': bad kind", label, layer, name);
        int slot = layer == (int)o->hp.n_layer ? -1 : layer;
        h_entry *a = &o->ent[(int64_t)(slot + 1) * CAL_W_KIND_COUNT + kind];
        if (a->used) BAD("%s: layer %d entry '%s': given twice", label, layer, name);
        snprintf(a->name, sizeof a->name, "%s", name);
        a->layer = layer;
        if (alias) {
            h_entry *g = kind > 0 ? &o->ent[(int64_t)(slot + 1) * CAL_W_KIND_COUNT + kind - 1] : NULL;
            if (!g || !g->used || g->alias) BAD("%s: layer %d entry '%s': alias of nothing", label, layer, name);
            a->alias = g; a->cols = g->cols;   /* arrays of NULLs, as the engine's entries */
            if (!hs_entry_alloc(a, g->nmat)) { qx_fail(e, QX_ENOMEM, "%s: out of memory", label); goto fail; }
            continue;
        }
        int64_t cols, nmat;
        if (!rget(r, &cols, 8) || !rget(r, &nmat, 8) || cols <= 0 || cols > HF_MAX_COLS || nmat <= 0 || nmat > HF_MAX_NMAT ||
            (uint64_t)nmat * 9 > r->left)
            BAD("%s: layer %d entry '%s': bad shape", label, layer, name);
        a->cols = cols;
        if (!hs_entry_alloc(a, nmat)) { qx_fail(e, QX_ENOMEM, "%s: out of memory", label); goto fail; }
        for (int64_t k = 0; k < nmat; k++) {
            uint8_t form;
            double cnt;
            if (!rget(r, &cnt, 8) || !rget(r, &form, 1) || form > 2 || !(cnt >= 0) || cnt > 1e15)
                BAD("%s: layer %d entry '%s' matrix %lld: bad header", label, layer, name, (long long)k);
            a->count[k] = cnt;
            if (form == 0) continue;
            int64_t rows = cols;
            if (form == 1 && (!rget(r, &rows, 8) || rows <= 0 || rows >= cols))
                BAD("%s: layer %d entry '%s' matrix %lld: bad row count", label, layer, name, (long long)k);
            uint64_t bytes = (uint64_t)rows * (uint64_t)cols * sizeof(float);
            if (bytes > r->left) BAD("%s: layer %d entry '%s' matrix %lld: %llu data bytes, %llu left", label, layer, name, (long long)k,
                                     (unsigned long long)bytes, (unsigned long long)r->left);
            float *d = malloc((size_t)bytes);
            if (!d) { qx_fail(e, QX_ENOMEM, "%s: out of memory", label); goto fail; }
            if (form == 1) { a->X[k] = d; a->xrows[k] = a->xcap[k] = rows; }
            else a->H[k] = d;
            if (!rget(r, d, (size_t)bytes)) BAD("%s: layer %d entry '%s' matrix %lld: truncated", label, layer, name, (long long)k);
            /* input rows are squared and summed over up to ~1e9 rows when H is formed: |x| <= 1e12
             * keeps every sum finite; an H element is itself such a sum */
            const float lim = form == 1 ? 1e12f : 1e30f;
            for (uint64_t j = 0; j < bytes / sizeof(float); j++)
                if (!(fabsf(d[j]) <= lim))
                    BAD("%s: layer %d entry '%s' matrix %lld: value %g out of range (non-finite or |v| > %g)", label, layer, name,
                        (long long)k, (double)d[j], (double)lim);
        }
    }
    if (r->left) BAD("%s: layer %d: %llu bytes after the last entry", label, layer, (unsigned long long)r->left);
    return QX_OK;
fail:
    drop_layer(o, layer);
    return e->code;
#undef BAD
}

typedef struct { const uint8_t *p; size_t n; } memsrc;
static bool mem_get(void *ud, void *dst, size_t n) {
    memsrc *m = ud;
    if (n > m->n) return false;
    memcpy(dst, m->p, n);
    m->p += n; m->n -= n;
    return true;
}

qx_status cal_hessian_parse_layer(cal_hessians *o, int layer, const uint8_t *buf, size_t len, const char *label, qx_err *e) {
    memsrc m = { buf, len };
    hread r = { mem_get, &m, len, XXH3_createState() };
    if (!r.xs) return qx_fail(e, QX_ENOMEM, "out of memory");
    XXH3_64bits_reset(r.xs);
    qx_status s = parse_payload(o, layer, &r, label, e);
    XXH3_freeState(r.xs);
    return s;
}

typedef struct { int fd; } fdsrc;
static bool fd_get(void *ud, void *dst, size_t n) {
    fdsrc *f = ud;
    uint8_t *c = dst;
    while (n) {
        ssize_t got = read(f->fd, c, n);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return false;
        c += got; n -= (size_t)got;
    }
    return true;
}

/* Opens path and checks its header against the run; *fd open on success. */
static qx_status open_checked(const char *path, const cal_hparams *hp, int experts, uint64_t settings, int *fd, qx_err *e) {
    *fd = open(path, O_RDONLY);
    if (*fd < 0) return qx_fail(e, QX_EIO, "%s: %s", path, strerror(errno));
    fdsrc src = { *fd };
    uint8_t h[32];
    qx_status s = QX_OK;
    if (!fd_get(&src, h, 32) || memcmp(h, HF_MAGIC, 8) != 0) s = qx_fail(e, QX_EFORMAT, "%s: not a qforge GPTQ statistics file", path);
    uint64_t x;
    if (s == QX_OK) { memcpy(&x, h + 24, 8); if (x != XXH3_64bits(h, 24)) s = qx_fail(e, QX_EFORMAT, "%s: header checksum mismatch", path); }
    uint32_t nl = 0, ex = 0;
    uint64_t set = 0;
    if (s == QX_OK) {
        memcpy(&nl, h + 8, 4); memcpy(&ex, h + 12, 4); memcpy(&set, h + 16, 8);
        if ((int64_t)nl != hp->n_layer || (int)ex != experts || set != settings)
            s = qx_fail(e, QX_EINVAL, "%s: gathered for another model, text, window or --gptq-experts setting (only --gptq-damp, "
                        "--gptq-min-tokens and --gptq-skip may change); run the calibration again with --gptq-save", path);
    }
    if (s != QX_OK) { close(*fd); *fd = -1; }
    return s;
}

qx_status cal_hessian_file_check(const char *path, const cal_hparams *hp, int experts, uint64_t settings, qx_err *e) {
    int fd;
    QX_TRY(open_checked(path, hp, experts, settings, &fd, e));
    close(fd);
    return QX_OK;
}

qx_status cal_hessian_replay(const char *path, const cal_hparams *hp, int experts, uint64_t settings, const cal_hessian_params *p,
                             qx_err *e) {
    int fd;
    QX_TRY(open_checked(path, hp, experts, settings, &fd, e));
    fdsrc src = { fd };
    qx_status s = QX_OK;
    cal_hessians *o = NULL;
    if (s == QX_OK) s = cal_hessian_create(hp, p, &o, e);
    XXH3_state_t *xs = XXH3_createState();
    if (s == QX_OK && !xs) s = qx_fail(e, QX_ENOMEM, "out of memory");
    for (int want = 0; s == QX_OK && want <= (int)hp->n_layer; want++) {
        uint8_t bh[16];
        if (!fd_get(&src, bh, 16) || memcmp(bh, "LAYR", 4) != 0) { s = qx_fail(e, QX_EFORMAT, "%s: layer %d missing (truncated file?)", path, want); break; }
        int32_t L;
        uint64_t len;
        memcpy(&L, bh + 4, 4); memcpy(&len, bh + 8, 8);
        if (L != want) { s = qx_fail(e, QX_EFORMAT, "%s: layer %d where %d was expected", path, L, want); break; }
        XXH3_64bits_reset(xs);
        hread r = { fd_get, &src, len, xs };
        s = parse_payload(o, L, &r, path, e);
        uint64_t want_x, got_x = XXH3_64bits_digest(xs);
        if (s == QX_OK && (!fd_get(&src, &want_x, 8) || want_x != got_x)) {
            drop_layer(o, L);
            s = qx_fail(e, QX_EFORMAT, "%s: layer %d checksum mismatch", path, L);
        }
        if (s == QX_OK && p->layer_done) s = p->layer_done(p->layer_done_ud, o, L, e);
        drop_layer(o, L);
    }
    if (xs) XXH3_freeState(xs);
    cal_hessian_free(o);
    close(fd);
    return s;
}
