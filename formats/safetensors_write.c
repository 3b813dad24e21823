/* formats/safetensors_write.c — a small safetensors writer for synthetic checkpoints:
 * tensors ordered by dtype width (widest first, as the reference writer does, which keeps
 * every tensor aligned) then by name; header JSON padded with spaces to a multiple of 8.
 * Sparse tensors are left as holes so full-size shapes cost no disk. */
#include "formats.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    char *name;
    st_dtype dtype;
    int n_dims;
    int64_t shape[ST_MAX_DIMS];
    uint64_t nbytes;
    void *data;           /* NULL for sparse */
} w_entry;

struct st_writer {
    w_entry *e;
    size_t n, cap;
};

qx_status st_writer_create(st_writer **out, qx_err *e) {
    *out = calloc(1, sizeof **out);
    return *out ? QX_OK : qx_fail(e, QX_ENOMEM, "out of memory");
}

void st_writer_free(st_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n; i++) { free(w->e[i].name); free(w->e[i].data); }
    free(w->e);
    free(w);
}

static qx_status add(st_writer *w, const char *name, st_dtype dtype, int n_dims, const int64_t *shape,
                     const void *data, uint64_t nbytes, bool sparse, qx_err *e) {
    if (n_dims < 0 || n_dims > ST_MAX_DIMS) return qx_fail(e, QX_EINVAL, "tensor '%s': %d dims", name, n_dims);
    uint64_t want = (uint64_t)st_dtype_size(dtype);
    for (int i = 0; i < n_dims; i++)
        if (shape[i] < 0 || !qx_mul_u64(want, (uint64_t)shape[i], &want))
            return qx_fail(e, QX_EINVAL, "tensor '%s': bad shape", name);
    if (!sparse && want != nbytes)
        return qx_fail(e, QX_EINVAL, "tensor '%s': %llu bytes given, shape needs %llu", name,
                       (unsigned long long)nbytes, (unsigned long long)want);
    if (w->n == w->cap) {
        size_t nc = w->cap ? w->cap * 2 : 64;
        w_entry *ne = realloc(w->e, nc * sizeof *ne);
        if (!ne) return qx_fail(e, QX_ENOMEM, "out of memory");
        w->e = ne;
        w->cap = nc;
    }
    w_entry *x = &w->e[w->n];
    memset(x, 0, sizeof *x);
    x->name = strdup(name);
    x->dtype = dtype;
    x->n_dims = n_dims;
    memcpy(x->shape, shape, (size_t)n_dims * sizeof *shape);
    x->nbytes = want;
    if (!x->name) return qx_fail(e, QX_ENOMEM, "out of memory");
    if (!sparse && want) {
        x->data = malloc(want);
        if (!x->data) { free(x->name); return qx_fail(e, QX_ENOMEM, "out of memory"); }
        memcpy(x->data, data, want);
    }
    w->n++;
    return QX_OK;
}

qx_status st_writer_add(st_writer *w, const char *name, st_dtype dtype, int n_dims,
                        const int64_t *shape, const void *data, uint64_t nbytes, qx_err *e) {
    return add(w, name, dtype, n_dims, shape, data, nbytes, false, e);
}

qx_status st_writer_add_sparse(st_writer *w, const char *name, st_dtype dtype, int n_dims,
                               const int64_t *shape, qx_err *e) {
    return add(w, name, dtype, n_dims, shape, NULL, 0, true, e);
}

uint64_t st_writer_data_bytes(const st_writer *w) {
    uint64_t s = 0;
    for (size_t i = 0; i < w->n; i++) s += w->e[i].nbytes;
    return s;
}

static int cmp_w(const void *a, const void *b) {
    const w_entry *x = a, *y = b;
    int sx = st_dtype_size(x->dtype), sy = st_dtype_size(y->dtype);
    if (sx != sy) return sy - sx;
    return strcmp(x->name, y->name);
}

static qx_status write_all(int fd, const void *buf, uint64_t n, uint64_t off, const char *path, qx_err *e) {
    const uint8_t *p = buf;
    while (n) {
        ssize_t k = pwrite(fd, p, n > (1u << 30) ? (1u << 30) : n, (off_t)off);
        if (k < 0) {
            if (errno == EINTR) continue;
            return qx_fail(e, (errno == ENOSPC || errno == EFBIG) ? QX_ENOSPC : QX_EIO, "%s: write: %s", path, strerror(errno));
        }
        p += k; n -= (uint64_t)k; off += (uint64_t)k;
    }
    return QX_OK;
}

qx_status st_writer_write(st_writer *w, const char *path, qx_err *e) {
    if (w->n > 1) qsort(w->e, w->n, sizeof *w->e, cmp_w);   /* w->e is NULL while empty */
    json_t *root = json_object();
    json_t *meta = json_object();
    json_object_set_new(meta, "format", json_string("pt"));
    json_object_set_new(root, "__metadata__", meta);
    uint64_t off = 0;
    for (size_t i = 0; i < w->n; i++) {
        json_t *t = json_object(), *sh = json_array(), *of = json_array();
        json_object_set_new(t, "dtype", json_string(st_dtype_name(w->e[i].dtype)));
        for (int d = 0; d < w->e[i].n_dims; d++) json_array_append_new(sh, json_integer(w->e[i].shape[d]));
        json_object_set_new(t, "shape", sh);
        json_array_append_new(of, json_integer((json_int_t)off));
        json_array_append_new(of, json_integer((json_int_t)(off + w->e[i].nbytes)));
        json_object_set_new(t, "data_offsets", of);
        json_object_set_new(root, w->e[i].name, t);
        off += w->e[i].nbytes;
    }
    char *hdr = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!hdr) return qx_fail(e, QX_ENOMEM, "%s: out of memory", path);
    uint64_t hl = strlen(hdr), hp = qx_pad(hl, 8);
    uint8_t *head = malloc(8 + hp);
    if (!head) { free(hdr); return qx_fail(e, QX_ENOMEM, "%s: out of memory", path); }
    for (int i = 0; i < 8; i++) head[i] = (uint8_t)(hp >> (8 * i));
    memcpy(head + 8, hdr, hl);
    memset(head + 8 + hl, ' ', hp - hl);
    free(hdr);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) { free(head); return qx_fail(e, QX_EIO, "%s: %s", path, strerror(errno)); }
    qx_status s = write_all(fd, head, 8 + hp, 0, path, e);
    free(head);
    uint64_t pos = 8 + hp;
    for (size_t i = 0; s == QX_OK && i < w->n; i++) {
        if (w->e[i].data) s = write_all(fd, w->e[i].data, w->e[i].nbytes, pos, path, e);
        pos += w->e[i].nbytes;
    }
    if (s == QX_OK && ftruncate(fd, (off_t)pos) != 0)
        s = qx_fail(e, errno == EFBIG ? QX_ENOSPC : QX_EIO, "%s: %s", path, strerror(errno));
    if (close(fd) != 0 && s == QX_OK) s = qx_fail(e, QX_EIO, "%s: close: %s", path, strerror(errno));
    return s;
}
