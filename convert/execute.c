/* convert/execute.c — runs a plan (DESIGN.md decisions 2-3): work items in parallel (OpenMP,
 * dynamic schedule), each decoding its source rows tile by tile into a bounded per-thread
 * buffer, quantizing and pwrite-ing at its planned offset in OUT.part; consumed input pages
 * are released.  A journal OUT.part.journal gets one line per finished item with the
 * XXH3-64 of its bytes; --resume re-hashes those bytes in OUT.part and skips what matches.
 * When the last item of a tensor is done its bytes are read back and hashed into
 * qforge.tensor_xxh3; the header is rewritten, the file fsync'd and renamed to OUT.
 * Output bytes depend on neither the thread count nor interruptions.
 * A split plan (gf_writer_set_split) has one .part per file and one journal beside the
 * first; every file is fsync'd before any rename, the first file's old copy is removed,
 * files 2..N are renamed, the first file last. */
#include "cv_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <xxhash.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define TILE_ELEMS (1LL << 20)        /* floats decoded at a time per thread (4 MiB) */
#define HASH_CHUNK (4u << 20)         /* read-back buffer for tensor checksums */
#define JOURNAL_MAGIC "qforge-journal 1"

typedef struct {
    float *f, *tmp, *imp;
    uint8_t *q;
    size_t fcap, tcap, icap, qcap;
    XXH3_state_t *xs;
} tbuf;

static bool grow(void **p, size_t *cap, size_t need) {
    if (need <= *cap) return true;
    void *n = realloc(*p, need);
    if (!n) return false;
    *p = n;
    *cap = need;
    return true;
}

/* Drops the whole pages inside [p, p+len) of a read-only file mapping. */
static void release_range(const void *p, uint64_t len) {
    if (!p || len == 0) return;
    long pg = sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)p + (uintptr_t)pg - 1) / (uintptr_t)pg * (uintptr_t)pg;
    uintptr_t b = ((uintptr_t)p + len) / (uintptr_t)pg * (uintptr_t)pg;
    if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
}

static const qt_traits *traits_of(qt_type t) {
    const qt_traits *tr = qt_get_traits(t);
    if (!tr || !tr->from_float) {
        const qt_traits *iq = qt_iq_traits(t);
        if (iq) tr = iq;
    }
    return tr;
}

static int64_t tile_rows(const cv_out *o, int64_t n) {
    if (o->xf == XF_KB || o->xf == XF_VB || o->xf == XF_GEN || (o->xf == XF_PERM && o->n_dims == 1)) return n;
    int64_t t = TILE_ELEMS / o->ne[0];
    if (t < 1) t = 1;
    return t < n ? t : n;
}

/* Decodes output rows [r0, r0+n) of slice x of o (row length ne[0]) into dst. */
static qx_status decode(const cv_out *o, int64_t x, int64_t r0, int64_t n, float *dst, tbuf *b, qx_err *e) {
    int64_t ne0 = o->ne[0];
    if (o->gsrc) {
        const gf_tensor *g = o->gsrc;
        uint64_t rs = qt_row_size(g->type, ne0);
        const uint8_t *base = g->data + ((uint64_t)x * (uint64_t)o->ne[1] + (uint64_t)r0) * rs;
        const qt_traits *tr = qt_get_traits(g->type);
        for (int64_t r = 0; r < n; r++) tr->to_float(base + (uint64_t)r * rs, dst + r * ne0, ne0);
        release_range(base, (uint64_t)n * rs);
        return QX_OK;
    }
    if (o->xf == XF_GEN) {
        memcpy(dst, o->gen, (size_t)ne0 * sizeof(float));
        return QX_OK;
    }
    if (o->xf == XF_CAT) {   /* each source's rows into its own columns of dst */
        int64_t c0 = 0;
        for (int k = 0; k < 2; k++) {
            const st_tensor *t = o->src[k];
            int64_t ck = t->shape[1];
            if (!grow((void **)&b->tmp, &b->tcap, (size_t)(n * ck) * sizeof(float))) return qx_fail(e, QX_ENOMEM, "out of memory");
            QX_TRY(st_tensor_rows_f32(t, r0, r0 + n, b->tmp, e));
            for (int64_t r = 0; r < n; r++) memcpy(dst + r * ne0 + c0, b->tmp + r * ck, (size_t)ck * sizeof(float));
            uint64_t rowb = (uint64_t)ck * (uint64_t)st_dtype_size(t->dtype);
            release_range(t->data + (uint64_t)r0 * rowb, (uint64_t)n * rowb);
            c0 += ck;
        }
        return QX_OK;
    }
    const st_tensor *t = o->src[o->n_src > 1 ? x : 0];
    uint64_t esz = (uint64_t)st_dtype_size(t->dtype);
    if (o->xf == XF_ROWS) {
        uint64_t rowb = t->dtype == ST_FP4_PACKED ? (uint64_t)ne0 / 2 : (uint64_t)ne0 * esz;   /* FP4: two codes a byte */
        QX_TRY(st_tensor_rows_f32(t, r0, r0 + n, dst, e));
        release_range(t->data + (uint64_t)r0 * rowb, (uint64_t)n * rowb);
        return QX_OK;
    }
    if (o->xf == XF_INT) {   /* expert ids as floats (exact: ids < 2^24) */
        for (int64_t k = 0; k < n * ne0; k++) {
            const uint8_t *p = t->data + ((uint64_t)r0 * (uint64_t)ne0 + (uint64_t)k) * esz;
            int64_t v;
            if (esz == 8) memcpy(&v, p, 8);
            else { int32_t v4; memcpy(&v4, p, 4); v = v4; }
            dst[k] = (float)v;
        }
        return QX_OK;
    }
    if (o->xf == XF_PERM && o->n_dims == 1) {   /* bias: permute elements */
        if (!grow((void **)&b->tmp, &b->tcap, (size_t)ne0 * sizeof(float))) return qx_fail(e, QX_ENOMEM, "out of memory");
        QX_TRY(st_tensor_rows_f32(t, 0, 1, b->tmp, e));
        int64_t D = ne0 / o->perm_heads;
        for (int64_t r = 0; r < ne0; r++) {
            int64_t h = r / D, i = (r % D) / 2, j = r % 2;
            dst[r] = b->tmp[h * D + j * (D / 2) + i];
        }
        return QX_OK;
    }
    if (o->xf == XF_PERM) {
        int64_t D = o->ne[1] / o->perm_heads;
        for (int64_t k = 0; k < n; k++) {
            int64_t r = r0 + k, h = r / D, i = (r % D) / 2, j = r % 2;
            int64_t s = h * D + j * (D / 2) + i;
            QX_TRY(st_tensor_rows_f32(t, s, s + 1, dst + k * ne0, e));
        }
        return QX_OK;
    }
    /* XF_KB / XF_VB: slice x = head */
    int64_t KVL = o->KVL, N = o->N, Dv = o->Dv, hbase = x * (N + Dv);
    if (o->xf == XF_VB) {
        QX_TRY(st_tensor_rows_f32(t, hbase + N + r0, hbase + N + r0 + n, dst, e));
        release_range(t->data + (uint64_t)(hbase + N + r0) * (uint64_t)KVL * esz, (uint64_t)n * (uint64_t)KVL * esz);
        return QX_OK;
    }
    if (!grow((void **)&b->tmp, &b->tcap, (size_t)(N * KVL) * sizeof(float))) return qx_fail(e, QX_ENOMEM, "out of memory");
    QX_TRY(st_tensor_rows_f32(t, hbase, hbase + N, b->tmp, e));   /* [N, KVL] */
    for (int64_t k = 0; k < n; k++)                                 /* out row k = latent index */
        for (int64_t j = 0; j < N; j++) dst[k * N + j] = b->tmp[j * KVL + r0 + k];
    release_range(t->data + (uint64_t)hbase * (uint64_t)KVL * esz, (uint64_t)N * (uint64_t)KVL * esz);
    return QX_OK;
}

#define PATH_CAP 4200

/* The output files of a plan: their final and .part paths and open descriptors. */
typedef struct {
    int n;
    char (*final)[PATH_CAP];
    char (*part)[PATH_CAP];
    int *fd;
} outset;

typedef struct {
    cv_plan *pl;
    const outset *os;
    const cv_params *p;
} run_ctx;

static int fd_of(const cv_plan *pl, const outset *os, size_t tensor) { return os->fd[gf_writer_tensor_split(pl->w, tensor)]; }
static const char *part_of(const cv_plan *pl, const outset *os, size_t tensor) { return os->part[gf_writer_tensor_split(pl->w, tensor)]; }

/* Items whose bytes are moved, not computed: an FP4 expert slice repacked into MXFP4 blocks
 * (qt_mxfp4_repack_row), or an expert-id table written as I32 (each id checked < n_routed_experts). */
static qx_status copy_rows(const run_ctx *c, const cv_out *o, const cv_item *it, tbuf *b, qx_err *e) {
    const st_tensor *t = o->src[o->n_src > 1 ? it->slice : 0];
    int64_t ne0 = o->ne[0], n = it->r1 - it->r0;
    uint64_t rb = qt_row_size(o->type, ne0);
    if (!grow((void **)&b->q, &b->qcap, (size_t)((uint64_t)n * rb))) return qx_fail(e, QX_ENOMEM, "tensor '%s': out of memory", o->name);
    if (o->xf == XF_INT) {
        int esz = st_dtype_size(t->dtype);
        for (int64_t r = 0; r < n; r++)
            for (int64_t j = 0; j < ne0; j++) {
                const uint8_t *p = t->data + ((uint64_t)(it->r0 + r) * (uint64_t)ne0 + (uint64_t)j) * (uint64_t)esz;
                int64_t v;
                if (esz == 8) memcpy(&v, p, 8);
                else { int32_t v4; memcpy(&v4, p, 4); v = v4; }
                if (v < 0 || v >= c->pl->cfg.n_routed_experts)   /* an expert id */
                    return qx_fail(e, QX_EFORMAT, "tensor '%s': value %lld at row %lld is not an expert id (n_routed_experts %lld)", t->name,
                                   (long long)v, (long long)(it->r0 + r), (long long)c->pl->cfg.n_routed_experts);
                int32_t v32 = (int32_t)v;
                memcpy(b->q + ((uint64_t)r * (uint64_t)ne0 + (uint64_t)j) * 4, &v32, 4);
            }
    } else {
        uint64_t pb = (uint64_t)ne0 / 2, sb = (uint64_t)(ne0 / t->group);
        for (int64_t r = 0; r < n; r++)
            qt_mxfp4_repack_row(t->data + (uint64_t)(it->r0 + r) * pb, t->scale_inv->data + (uint64_t)(it->r0 + r) * sb, ne0,
                                b->q + (uint64_t)r * rb);
        release_range(t->data + (uint64_t)it->r0 * pb, (uint64_t)n * pb);
    }
    QX_TRY(gf_writer_pwrite(c->pl->w, fd_of(c->pl, c->os, it->tensor), part_of(c->pl, c->os, it->tensor), it->tensor, it->off, b->q,
                            (uint64_t)n * rb, e));
    XXH3_64bits_update(b->xs, b->q, (size_t)((uint64_t)n * rb));
    return QX_OK;
}

static qx_status run_item(const run_ctx *c, const cv_item *it, tbuf *b, uint64_t *hash, qx_err *e) {
    const cv_out *o = &c->pl->outs[it->tensor];
    int64_t ne0 = o->ne[0], n = it->r1 - it->r0, tr_rows = tile_rows(o, n);
    uint64_t rb = qt_row_size(o->type, ne0);
    XXH3_64bits_reset(b->xs);
    if (o->gsrc && o->gsrc->type == o->type) {   /* same type: copy bytes */
        const uint8_t *src = o->gsrc->data + ((uint64_t)it->slice * (uint64_t)o->ne[1] + (uint64_t)it->r0) * rb;
        for (int64_t r = 0; r < n; r += tr_rows) {
            int64_t m = r + tr_rows < n ? tr_rows : n - r;
            QX_TRY(gf_writer_pwrite(c->pl->w, fd_of(c->pl, c->os, it->tensor), part_of(c->pl, c->os, it->tensor), it->tensor,
                                    it->off + (uint64_t)r * rb, src + (uint64_t)r * rb, (uint64_t)m * rb, e));
            XXH3_64bits_update(b->xs, src + (uint64_t)r * rb, (size_t)((uint64_t)m * rb));
            release_range(src + (uint64_t)r * rb, (uint64_t)m * rb);
        }
        *hash = XXH3_64bits_digest(b->xs);
        return QX_OK;
    }
    if (!o->gsrc && (o->xf == XF_INT || (o->type == QT_MXFP4 && o->src[o->n_src > 1 ? it->slice : 0]->dtype == ST_FP4_PACKED))) {
        QX_TRY(copy_rows(c, o, it, b, e));   /* bits moved, nothing rounded */
        *hash = XXH3_64bits_digest(b->xs);
        return QX_OK;
    }
    const qt_traits *tr = traits_of(o->type);
    if (!tr || !tr->from_float) return qx_fail(e, QX_EUNSUPPORTED, "tensor '%s': no quantizer for %s", o->name, qt_type_name(o->type));
    if (!grow((void **)&b->f, &b->fcap, (size_t)(tr_rows * ne0) * sizeof(float)) ||
        !grow((void **)&b->q, &b->qcap, (size_t)((uint64_t)tr_rows * rb)))
        return qx_fail(e, QX_ENOMEM, "tensor '%s': out of memory for a %lld-row tile", o->name, (long long)tr_rows);
    const float *imp = NULL;
    if (o->imp) {
        if (!grow((void **)&b->imp, &b->icap, (size_t)ne0 * sizeof(float))) return qx_fail(e, QX_ENOMEM, "out of memory");
        int64_t k = o->imp->nmat <= 1 ? 0 : cv_item_matrix(c->pl, it);
        QX_TRY(im_importance(o->imp, k, b->imp, e));
        imp = b->imp;
    }
    const float *U = NULL;
    if (c->p->gptq_factor && qt_gptq_mode_of(o->type) != QT_GPTQ_NONE)
        QX_TRY(c->p->gptq_factor(c->p->gptq_ud, o->name, cv_item_matrix(c->pl, it), ne0, &U, e));
    for (int64_t r = 0; r < n; r += tr_rows) {
        int64_t m = r + tr_rows < n ? tr_rows : n - r;
        QX_TRY(decode(o, it->slice, it->r0 + r, m, b->f, b, e));
        if (!U || !qt_quantize_gptq(o->type, b->f, b->q, m, ne0, U, imp))
            for (int64_t k = 0; k < m; k++) tr->from_float(b->f + k * ne0, b->q + (uint64_t)k * rb, ne0, imp);
        QX_TRY(gf_writer_pwrite(c->pl->w, fd_of(c->pl, c->os, it->tensor), part_of(c->pl, c->os, it->tensor), it->tensor,
                                it->off + (uint64_t)r * rb, b->q, (uint64_t)m * rb, e));
        XXH3_64bits_update(b->xs, b->q, (size_t)((uint64_t)m * rb));
    }
    *hash = XXH3_64bits_digest(b->xs);
    return QX_OK;
}

/* XXH3-64 of n bytes at absolute offset off of fd (read back). */
static qx_status hash_range(int fd, const char *label, uint64_t off, uint64_t n, tbuf *b, uint64_t *out, qx_err *e) {
    if (!grow((void **)&b->q, &b->qcap, HASH_CHUNK)) return qx_fail(e, QX_ENOMEM, "out of memory");
    XXH3_64bits_reset(b->xs);
    uint64_t done = 0;
    while (done < n) {
        size_t want = (size_t)(n - done < HASH_CHUNK ? n - done : HASH_CHUNK);
        ssize_t got = pread(fd, b->q, want, (off_t)(off + done));
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return qx_fail(e, QX_EIO, "%s: reading back %" PRIu64 " bytes at %" PRIu64 ": %s", label, n, off,
                                     got < 0 ? strerror(errno) : "unexpected end of file");
        XXH3_64bits_update(b->xs, b->q, (size_t)got);
        done += (uint64_t)got;
    }
    *out = XXH3_64bits_digest(b->xs);
    posix_fadvise(fd, (off_t)off, (off_t)n, POSIX_FADV_DONTNEED);
    return QX_OK;
}

/* Reads the journal: *ok[i] / hashes[i] for items it lists.  QX_ENOTFOUND when absent,
 * QX_EINVAL when it belongs to another plan. */
static qx_status read_journal(const char *path, const cv_plan *pl, bool *ok, uint64_t *hashes, qx_err *e) {
    char *txt;
    size_t len;
    qx_status s = qx_read_file(path, &txt, &len, e);
    if (s != QX_OK) return s;
    char want[96];
    snprintf(want, sizeof want, JOURNAL_MAGIC " %016" PRIx64 " %zu\n", pl->plan_hash, pl->n_items);
    if (len < strlen(want) || strncmp(txt, want, strlen(want)) != 0) {
        free(txt);
        return qx_fail(e, QX_EINVAL, "%s: journal belongs to a different plan (inputs or options changed); "
                       "delete it and the .part, or run without --resume", path);
    }
    char *p = txt + strlen(want);
    while (*p) {
        char *nl = strchr(p, '\n');
        if (!nl) break;                      /* torn last line: ignored */
        unsigned long long idx, h;
        if (sscanf(p, "%llu %llx", &idx, &h) == 2 && idx < pl->n_items) {
            ok[idx] = true;
            hashes[idx] = h;
        }
        p = nl + 1;
    }
    free(txt);
    return QX_OK;
}

static qx_status write_all(int fd, const char *path, const char *buf, size_t n, qx_err *e) {
    while (n > 0) {
        ssize_t w = write(fd, buf, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return qx_fail(e, errno == ENOSPC || errno == EFBIG ? QX_ENOSPC : QX_EIO, "%s: %s", path, strerror(errno));
        buf += w;
        n -= (size_t)w;
    }
    return QX_OK;
}

static void fsync_dir_of(const char *path) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *sl = strrchr(dir, '/');
    if (sl) { if (sl == dir) sl[1] = 0; else *sl = 0; } else snprintf(dir, sizeof dir, ".");
    int d = open(dir, O_RDONLY | O_DIRECTORY);
    if (d >= 0) { fsync(d); close(d); }
}

static void tbuf_free(tbuf *b) {
    free(b->f); free(b->tmp); free(b->imp); free(b->q);
    if (b->xs) XXH3_freeState(b->xs);
    memset(b, 0, sizeof *b);
}

/* Opens (fresh or resumed) every OUT.part and the journal.  Resuming after a crash in the
 * rename phase: a file already renamed into place goes back to .part first. */
static qx_status open_outputs(cv_plan *pl, const cv_params *p, outset *os, const char *jpath, int *jfd,
                              bool *ok, uint64_t *jh, bool *resumed, qx_err *e) {
    *resumed = false;
    if (p->resume && access(jpath, F_OK) == 0) {
        bool have = true;
        for (int k = 0; k < os->n && have; k++) {
            struct stat sp;
            if (stat(os->part[k], &sp) == 0) continue;
            if (stat(os->final[k], &sp) == 0 && (uint64_t)sp.st_size == gf_writer_split_size(pl->w, k) &&
                rename(os->final[k], os->part[k]) == 0)
                continue;
            have = false;
        }
        if (have) {
            QX_TRY(read_journal(jpath, pl, ok, jh, e));
            for (int k = 0; k < os->n; k++) {
                struct stat sp;
                if (stat(os->part[k], &sp) != 0 || (uint64_t)sp.st_size != gf_writer_split_size(pl->w, k))
                    return qx_fail(e, QX_EINVAL, "%s: size %lld differs from the plan's %" PRIu64 "; delete it or run without --resume",
                                   os->part[k], (long long)sp.st_size, gf_writer_split_size(pl->w, k));
                os->fd[k] = open(os->part[k], O_RDWR);
                if (os->fd[k] < 0) return qx_fail(e, QX_EIO, "%s: %s", os->part[k], strerror(errno));
            }
            *jfd = open(jpath, O_WRONLY | O_APPEND);
            if (*jfd < 0) return qx_fail(e, QX_EIO, "%s: %s", jpath, strerror(errno));
            *resumed = true;
            return QX_OK;
        }
    }
    for (int k = 0; k < os->n; k++) {
        os->fd[k] = open(os->part[k], O_RDWR | O_CREAT | O_TRUNC, 0644);
        if (os->fd[k] < 0) return qx_fail(e, errno == ENOSPC ? QX_ENOSPC : QX_EIO, "cannot create %s: %s", os->part[k], strerror(errno));
    }
    *jfd = open(jpath, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
    if (*jfd < 0) return qx_fail(e, QX_EIO, "cannot create %s: %s", jpath, strerror(errno));
    char hdr[96];
    snprintf(hdr, sizeof hdr, JOURNAL_MAGIC " %016" PRIx64 " %zu\n", pl->plan_hash, pl->n_items);
    return write_all(*jfd, jpath, hdr, strlen(hdr), e);
}

static qx_status check_space(int fd, const char *part, uint64_t size, qx_err *e) {
    struct statvfs vs;
    struct stat st;
    if (fstatvfs(fd, &vs) != 0 || fstat(fd, &st) != 0) return QX_OK;
    uint64_t have = (uint64_t)vs.f_bavail * (uint64_t)vs.f_frsize, used = (uint64_t)st.st_blocks * 512u;
    uint64_t need = size > used ? size - used : 0;
    if (need > have)
        return qx_fail(e, QX_ENOSPC, "%s: not enough disk space: %.2f GB more needed, %.2f GB available", part, need / 1e9, have / 1e9);
    return QX_OK;
}

int cv_plan_split_count(const cv_plan *pl) { return gf_writer_split_count(pl->w); }
uint64_t cv_plan_split_size(const cv_plan *pl, int k) { return gf_writer_split_size(pl->w, k); }
size_t cv_plan_split_tensors(const cv_plan *pl, int k) {
    size_t n = 0;
    for (size_t i = 0; i < pl->n_outs; i++) n += gf_writer_tensor_split(pl->w, i) == k;
    return n;
}

bool cv_output_path(const cv_plan *pl, const char *out, int k, char *buf, size_t cap) {
    int n = gf_writer_split_count(pl->w);
    if (n <= 1) {
        int w = snprintf(buf, cap, "%s", out);
        return w >= 0 && (size_t)w < cap;
    }
    char prefix[4096];
    size_t len = strlen(out);
    if (len >= 5 && strcmp(out + len - 5, ".gguf") == 0) len -= 5;
    if (len >= sizeof prefix) return false;
    memcpy(prefix, out, len);
    prefix[len] = 0;
    return gf_split_name(buf, cap, prefix, k, n);
}

qx_status cv_write_skeleton(const cv_plan *pl, const char *out_path, qx_err *e) {
    for (int k = 0; k < gf_writer_split_count(pl->w); k++) {
        char path[PATH_CAP];
        if (!cv_output_path(pl, out_path, k, path, sizeof path)) return qx_fail(e, QX_EINVAL, "%s: path too long", out_path);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) return qx_fail(e, errno == ENOSPC ? QX_ENOSPC : QX_EIO, "cannot create %s: %s", path, strerror(errno));
        qx_status s = gf_writer_write_header_at(pl->w, k, fd, path, e);   /* header, then ftruncate: the data is a hole */
        if (close(fd) != 0 && s == QX_OK) s = qx_fail(e, QX_EIO, "%s: %s", path, strerror(errno));
        QX_TRY(s);
    }
    return QX_OK;
}

static void outset_free(outset *os) {
    free(os->final);
    free(os->part);
    free(os->fd);
    memset(os, 0, sizeof *os);
}

static qx_status outset_init(outset *os, const cv_plan *pl, const char *out_path, qx_err *e) {
    memset(os, 0, sizeof *os);
    os->n = gf_writer_split_count(pl->w);
    os->final = calloc((size_t)os->n, sizeof *os->final);
    os->part = calloc((size_t)os->n, sizeof *os->part);
    os->fd = malloc((size_t)os->n * sizeof *os->fd);
    if (!os->final || !os->part || !os->fd) { outset_free(os); return qx_fail(e, QX_ENOMEM, "out of memory"); }
    for (int k = 0; k < os->n; k++) {
        os->fd[k] = -1;
        if (!cv_output_path(pl, out_path, k, os->final[k], sizeof os->final[k]) ||
            snprintf(os->part[k], sizeof os->part[k], "%s.part", os->final[k]) >= (int)sizeof os->part[k]) {
            outset_free(os);
            return qx_fail(e, QX_EINVAL, "%s: path too long", out_path);
        }
    }
    return QX_OK;
}

/* Renames every .part into place: first file's old copy removed, files 2..N, then file 1. */
static qx_status publish(const outset *os, qx_err *e) {
    if (os->n > 1 && unlink(os->final[0]) != 0 && errno != ENOENT)
        return qx_fail(e, QX_EIO, "cannot remove the old %s: %s", os->final[0], strerror(errno));
    for (int j = 1; j <= os->n; j++) {
        int k = j % os->n;   /* 1, 2, ..., n-1, then 0 */
        if (rename(os->part[k], os->final[k]) != 0)
            return qx_fail(e, QX_EIO, "rename %s -> %s: %s", os->part[k], os->final[k], strerror(errno));
    }
    return QX_OK;
}

qx_status cv_execute(cv_plan *pl, const char *out_path, const cv_params *p, cv_result *r, qx_err *e) {
    double t0 = qx_now();
    QX_TRY(cv_check_imatrix(pl, e));
    outset os;
    QX_TRY(outset_init(&os, pl, out_path, e));
    char jpath[PATH_CAP + 16];
    snprintf(jpath, sizeof jpath, "%s.journal", os.part[0]);
    const char *part = os.part[0];
    size_t ni = pl->n_items, nt = pl->n_outs;
    bool *ok = calloc(ni ? ni : 1, sizeof *ok);
    uint64_t *jh = calloc(ni ? ni : 1, sizeof *jh);
    int64_t *left = calloc(nt ? nt : 1, sizeof *left);
    uint64_t *th = calloc(nt ? nt : 1, sizeof *th);
    int jfd = -1;
    bool resumed = false;
    qx_status s = (ok && jh && left && th) ? QX_OK : qx_fail(e, QX_ENOMEM, "out of memory");
    if (s == QX_OK) s = open_outputs(pl, p, &os, jpath, &jfd, ok, jh, &resumed, e);
    if (s == QX_OK && !resumed) s = check_space(os.fd[0], part, gf_writer_file_size(pl->w), e);
    for (int k = 0; s == QX_OK && k < os.n; k++) s = gf_writer_write_header_at(pl->w, k, os.fd[k], os.part[k], e);
    int nthr = p->n_threads > 0 ? p->n_threads : qx_default_threads();
    run_ctx c = {pl, &os, p};
    qx_err err1;
    qx_err_clear(&err1);
    volatile int failed = s != QX_OK;
    uint64_t n_skipped = 0, n_done = 0, in_done = 0, in_bytes_run = 0;
    int64_t budget = p->max_items > 0 ? p->max_items : -1;
    volatile bool stopped = false;

    /* 1. verify what the journal says is done */
    if (!failed && resumed) {
#pragma omp parallel num_threads(nthr)
        {
            tbuf b = {0};
            b.xs = XXH3_createState();
#pragma omp for schedule(dynamic, 1)
            for (size_t i = 0; i < ni; i++) {
                if (!ok[i] || failed || !b.xs) continue;
                const cv_item *it = &pl->items[i];
                uint64_t h;
                qx_err e2;
                if (hash_range(fd_of(pl, &os, it->tensor), part_of(pl, &os, it->tensor), gf_writer_tensor_offset(pl->w, it->tensor) + it->off,
                               it->nbytes, &b, &h, &e2) != QX_OK || h != jh[i])
                    ok[i] = false;
            }
            tbuf_free(&b);
        }
    }
    for (size_t i = 0; i < ni; i++) {
        if (ok[i]) { n_skipped++; in_done += pl->items[i].in_bytes; }
        else left[pl->items[i].tensor]++;
    }
    /* 2. tensors already complete: hash them now */
    if (!failed) {
#pragma omp parallel num_threads(nthr)
        {
            tbuf b = {0};
            b.xs = XXH3_createState();
#pragma omp for schedule(dynamic, 1)
            for (size_t t = 0; t < nt; t++) {
                if (left[t] != 0 || failed) continue;
                qx_err e2;
                if (!b.xs || hash_range(fd_of(pl, &os, t), part_of(pl, &os, t), gf_writer_tensor_offset(pl->w, t), pl->outs[t].nbytes, &b,
                                        &th[t], &e2) != QX_OK) {
#pragma omp critical(cv_err)
                    { if (!failed) { err1 = e2; failed = 1; } }
                } else if (p->tensor_done) p->tensor_done(p->tensor_done_ud, t);
            }
            tbuf_free(&b);
        }
    }
    /* 3. the work */
    if (!failed) {
#pragma omp parallel num_threads(nthr)
        {
            tbuf b = {0};
            b.xs = XXH3_createState();
            if (!b.xs) {
#pragma omp critical(cv_err)
                { if (!failed) { qx_fail(&err1, QX_ENOMEM, "out of memory"); failed = 1; } }
            }
#pragma omp for schedule(dynamic, 1)
            for (size_t i = 0; i < ni; i++) {
                if (ok[i] || failed || stopped) continue;
                bool go = true;
                if (budget >= 0) {
#pragma omp critical(cv_budget)
                    { if (budget == 0) { stopped = true; go = false; } else budget--; }
                }
                if (!go) continue;
                const cv_item *it = &pl->items[i];
                qx_err e2;
                uint64_t h = 0;
                qx_status si = run_item(&c, it, &b, &h, &e2);
                if (si == QX_OK && p->item_done) p->item_done(p->tensor_done_ud, it->tensor, cv_item_matrix(pl, it));
                if (si == QX_OK) {
                    char line[64];
                    int n = snprintf(line, sizeof line, "%zu %016" PRIx64 "\n", i, h);
#pragma omp critical(cv_journal)
                    si = write_all(jfd, jpath, line, (size_t)n, &e2);
                }
                if (si == QX_OK && __atomic_sub_fetch(&left[it->tensor], 1, __ATOMIC_ACQ_REL) == 0)
                {
                    si = hash_range(fd_of(pl, &os, it->tensor), part_of(pl, &os, it->tensor), gf_writer_tensor_offset(pl->w, it->tensor),
                                    pl->outs[it->tensor].nbytes, &b, &th[it->tensor], &e2);
                    if (si == QX_OK && p->tensor_done) p->tensor_done(p->tensor_done_ud, it->tensor);
                }
                if (si != QX_OK) {
#pragma omp critical(cv_err)
                    { if (!failed) { err1 = e2; failed = 1; } }
                    continue;
                }
#pragma omp critical(cv_progress)
                {
                    n_done++;
                    in_done += it->in_bytes;
                    in_bytes_run += it->in_bytes;
                    if (p->progress) {
                        char what[128];
                        snprintf(what, sizeof what, "items %" PRIu64 "/%zu  %s", n_done + n_skipped, ni, pl->outs[it->tensor].name);
                        qx_progress_update(p->progress, in_done, what);
                    }
                }
            }
            tbuf_free(&b);
        }
    }
    if (failed && s == QX_OK) { s = err1.code ? err1.code : QX_EIO; if (e) *e = err1; }
    if (s == QX_OK && stopped)
        s = qx_fail(e, QX_EINVAL, "stopped after %" PRIu64 " items as asked (--max-items); %s is incomplete, continue with --resume", n_done, part);
    /* 4. checksums, header, fsync, rename */
    for (size_t t = 0; s == QX_OK && t < nt; t++) s = gf_writer_set_checksum(pl->w, t, th[t], e);
    if (s == QX_OK) s = gf_writer_rewrite_header_at(pl->w, 0, os.fd[0], part, e);
    for (int k = 0; s == QX_OK && k < os.n; k++)
        if (fsync(os.fd[k]) != 0) s = qx_fail(e, errno == ENOSPC ? QX_ENOSPC : QX_EIO, "%s: fsync: %s", os.part[k], strerror(errno));
    for (int k = 0; k < os.n; k++)
        if (os.fd[k] >= 0 && close(os.fd[k]) != 0 && s == QX_OK) s = qx_fail(e, QX_EIO, "%s: close: %s", os.part[k], strerror(errno));
    if (jfd >= 0) close(jfd);
    if (s == QX_OK) s = publish(&os, e);
    if (s == QX_OK) {
        unlink(jpath);
        fsync_dir_of(out_path);
    }
    if (r) {
        memset(r, 0, sizeof *r);
        r->bytes = gf_writer_file_size(pl->w);
        r->n_tensors = nt;
        r->items_total = ni;
        r->items_done = n_done;
        r->items_skipped = n_skipped;
        r->input_bytes = in_bytes_run;
        r->seconds = qx_now() - t0;
        r->bpw = cv_plan_bpw(pl);
        r->peak_rss_bytes = qx_peak_rss_bytes();
    }
    if (p->progress && s == QX_OK) qx_progress_end(p->progress, in_done);
    free(ok);
    free(jh);
    free(left);
    free(th);
    outset_free(&os);
    return s;
}

qx_status cv_plan_read_f32(const cv_plan *pl, size_t i, int64_t r0, int64_t nr, float *dst, qx_err *e) {
    if (i >= pl->n_outs) return qx_fail(e, QX_EINVAL, "tensor index %zu out of range", i);
    const cv_out *o = &pl->outs[i];
    if (o->n_dims < 2 || o->xf == XF_GEN) return qx_fail(e, QX_EINVAL, "tensor '%s': not a matrix", o->name);
    const int64_t ne0 = o->ne[0], rps = o->ne[1], rows = (int64_t)(o->n_elems / (uint64_t)ne0);
    if (r0 < 0 || nr < 1 || r0 + nr > rows)
        return qx_fail(e, QX_EINVAL, "tensor '%s': rows [%lld, %lld) of %lld", o->name, (long long)r0, (long long)(r0 + nr), (long long)rows);
    tbuf b;
    memset(&b, 0, sizeof b);
    qx_status s = QX_OK;
    for (int64_t r = r0; r < r0 + nr && s == QX_OK;) {   /* pieces within one slice, at most a tile */
        int64_t x = r / rps, rr = r % rps, m = tile_rows(o, rps - rr);
        if (m > r0 + nr - r) m = r0 + nr - r;
        s = decode(o, x, rr, m, dst + (uint64_t)(r - r0) * (uint64_t)ne0, &b, e);
        r += m;
    }
    free(b.tmp);
    return s;
}

const im_entry *cv_plan_importance(const cv_plan *pl, size_t i) { return i < pl->n_outs ? pl->outs[i].imp : NULL; }
