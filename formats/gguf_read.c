/* formats/gguf_read.c — GGUF v3 (and v2) reader with strict validation, over an mmap or a
 * memory buffer (see the GGUF section of formats/formats.h for the layout and the contract).
 * It is not a writer (gguf_write.c) and does not interpret model metadata.
 *
 * Every number read from the file is checked before use: counts against the bytes left,
 * string lengths against GF_MAX_STRING_LEN and the bytes left, shapes for overflow, tensor
 * byte ranges against the file.  Metadata values are copied into an arena as aligned native
 * values, so accessors never hand out unaligned pointers into the mapping.
 * Offsets: files laid out the llama.cpp way (each tensor at Σ PAD(nbytes, align) of the
 * preceding ones) are canonical.  Other layouts are accepted when every tensor is aligned,
 * in bounds and non-overlapping; gf_offsets_canonical() reports false for them (llama.cpp
 * itself would refuse such a file, our writer never makes one).
 * Split sets (llama.cpp's gguf-split naming and keys) are assembled by gf_open: each file is
 * parsed and validated alone, then the later files' tensors are appended to the first's
 * list; their data pointers stay in their own mappings. */
#include "formats.h"
#include "limits.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "GGUF files are little-endian; this reader assumes a little-endian host"
#endif

/* ---- arena: every allocation of a gf_file, freed at once ---- */
typedef struct arena_chunk { struct arena_chunk *next; size_t used, cap; max_align_t data[]; } arena_chunk;

static void *arena_alloc(arena_chunk **head, size_t n) {
    n = (n + 15) & ~(size_t)15;
    arena_chunk *c = *head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > (64u << 10) ? n : (64u << 10);
        c = malloc(sizeof *c + cap);
        if (!c) return NULL;
        c->cap = cap; c->used = 0;
        if (*head && n > (64u << 10)) { c->next = (*head)->next; (*head)->next = c; }
        else { c->next = *head; *head = c; }
    }
    void *p = (uint8_t *)c->data + c->used;
    c->used += n;
    return p;
}

static void arena_free(arena_chunk *c) {
    while (c) { arena_chunk *n = c->next; free(c); c = n; }
}

struct gf_file {
    char *label;
    qx_map map;
    bool mapped;
    const uint8_t *buf;
    uint64_t len;
    uint32_t version, alignment;
    uint64_t data_offset;
    bool canonical;
    gf_kv *kv;
    size_t n_kv;
    gf_tensor *t;
    size_t n_t;
    uint32_t *kv_sorted;   /* kv indices sorted by key */
    uint32_t *t_sorted;    /* tensor indices sorted by name */
    arena_chunk *arena;
    struct gf_file **parts;   /* split set: files 1..n_parts-1 (parts[0] unused = this file) */
    int n_parts;              /* 1 for a single file */
    uint64_t set_len;         /* bytes of the whole set */
};

/* ---- bounded cursor ---- */
typedef struct {
    const uint8_t *p;
    uint64_t len, pos;
    const char *label;
    qx_err *e;
} cursor;

static qx_status truncated(cursor *c, const char *what, uint64_t need) {
    return qx_fail(c->e, QX_EFORMAT, "%s: truncated: %s needs %llu bytes at offset %llu, file has %llu",
                   c->label, what, (unsigned long long)need, (unsigned long long)c->pos,
                   (unsigned long long)c->len);
}

static qx_status rd_bytes(cursor *c, void *dst, uint64_t n, const char *what) {
    if (c->len - c->pos < n) return truncated(c, what, n);
    memcpy(dst, c->p + c->pos, n);
    c->pos += n;
    return QX_OK;
}

#define RD(c, v, what) rd_bytes((c), &(v), sizeof(v), (what))

/* Reads a GGUF string into the arena (NUL-terminated). */
static qx_status rd_string(cursor *c, arena_chunk **ar, char **out, uint64_t *out_len, const char *what) {
    uint64_t n;
    QX_TRY(RD(c, n, what));
    if (n > GF_MAX_STRING_LEN)
        return qx_fail(c->e, QX_EFORMAT, "%s: %s: string length %llu exceeds the limit %llu",
                       c->label, what, (unsigned long long)n, (unsigned long long)GF_MAX_STRING_LEN);
    if (c->len - c->pos < n) return truncated(c, what, n);
    char *s = arena_alloc(ar, (size_t)n + 1);
    if (!s) return qx_fail(c->e, QX_ENOMEM, "%s: %s: out of memory", c->label, what);
    memcpy(s, c->p + c->pos, n);
    s[n] = 0;
    c->pos += n;
    *out = s;
    if (out_len) *out_len = n;
    return QX_OK;
}

/* ---- types ---- */
const char *gf_type_name(gf_type t) {
    static const char *const names[GF_TYPE_COUNT] = {
        "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"};
    return (unsigned)t < GF_TYPE_COUNT ? names[t] : "?";
}

size_t gf_type_size(gf_type t) {
    switch (t) {
    case GF_U8: case GF_I8: case GF_BOOL: return 1;
    case GF_U16: case GF_I16: return 2;
    case GF_U32: case GF_I32: case GF_F32: return 4;
    case GF_U64: case GF_I64: case GF_F64: return 8;
    default: return 0;
    }
}

static bool valid_kv_type(int32_t t) { return t >= 0 && t < GF_TYPE_COUNT; }

/* ---- sorted indices for lookup and duplicate detection ---- */
/* Sorts 0..n-1 by the names of f's keys or tensors: a merge sort over an explicit
 * comparator argument (no global state; qsort_r is not C11). */
typedef int (*name_cmp)(const gf_file *f, uint32_t a, uint32_t b);
static int name_cmp_kv(const gf_file *f, uint32_t a, uint32_t b) { return strcmp(f->kv[a].key, f->kv[b].key); }
static int name_cmp_t(const gf_file *f, uint32_t a, uint32_t b) { return strcmp(f->t[a].name, f->t[b].name); }

static void merge_sort(const gf_file *f, uint32_t *v, uint32_t *tmp, size_t n, name_cmp cmp) {
    if (n < 2) return;
    size_t h = n / 2;
    merge_sort(f, v, tmp, h, cmp);
    merge_sort(f, v + h, tmp, n - h, cmp);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) tmp[k++] = cmp(f, v[j], v[i]) < 0 ? v[j++] : v[i++];
    while (i < h) tmp[k++] = v[i++];
    while (j < n) tmp[k++] = v[j++];
    memcpy(v, tmp, n * sizeof *v);
}

static qx_status build_index(gf_file *f, size_t n, name_cmp cmp, uint32_t **out, qx_err *e) {
    uint32_t *v = arena_alloc(&f->arena, (n ? n : 1) * sizeof *v);
    uint32_t *tmp = malloc((n ? n : 1) * sizeof *tmp);
    if (!v || !tmp) { free(tmp); return qx_fail(e, QX_ENOMEM, "%s: out of memory", f->label); }
    for (size_t i = 0; i < n; i++) v[i] = (uint32_t)i;
    merge_sort(f, v, tmp, n, cmp);
    free(tmp);
    *out = v;
    return QX_OK;
}

/* ---- KV pairs ---- */
static qx_status read_array(cursor *c, gf_file *f, gf_kv *kv) {
    int32_t et;
    uint64_t n;
    QX_TRY(RD(c, et, "array element type"));
    QX_TRY(RD(c, n, "array length"));
    if (et == GF_ARRAY)
        return qx_fail(c->e, QX_EFORMAT, "%s: key '%s': nested arrays are not allowed", c->label, kv->key);
    if (!valid_kv_type(et))
        return qx_fail(c->e, QX_EFORMAT, "%s: key '%s': invalid array element type %d", c->label, kv->key, (int)et);
    kv->arr_type = (gf_type)et;
    kv->n = n;
    if (et == GF_STRING) {
        /* each element needs at least its 8-byte length */
        if (n > (c->len - c->pos) / 8)
            return qx_fail(c->e, QX_EFORMAT, "%s: key '%s': array of %llu strings cannot fit in the %llu bytes left",
                           c->label, kv->key, (unsigned long long)n, (unsigned long long)(c->len - c->pos));
        char **strs = arena_alloc(&f->arena, (size_t)(n ? n : 1) * sizeof *strs);
        uint64_t *lens = arena_alloc(&f->arena, (size_t)(n ? n : 1) * sizeof *lens);
        if (!strs || !lens) return qx_fail(c->e, QX_ENOMEM, "%s: key '%s': out of memory", c->label, kv->key);
        for (uint64_t i = 0; i < n; i++) QX_TRY(rd_string(c, &f->arena, &strs[i], &lens[i], kv->key));
        kv->strs = (const char *const *)strs;
        kv->str_lens = lens;
        return QX_OK;
    }
    size_t es = gf_type_size((gf_type)et);
    if (n > (c->len - c->pos) / es)
        return qx_fail(c->e, QX_EFORMAT, "%s: key '%s': array of %llu %s cannot fit in the %llu bytes left",
                       c->label, kv->key, (unsigned long long)n, gf_type_name((gf_type)et),
                       (unsigned long long)(c->len - c->pos));
    void *a = arena_alloc(&f->arena, (size_t)(n ? n * es : 1));
    if (!a) return qx_fail(c->e, QX_ENOMEM, "%s: key '%s': out of memory", c->label, kv->key);
    memcpy(a, c->p + c->pos, (size_t)(n * es));
    c->pos += n * es;
    if (et == GF_BOOL) {
        for (uint64_t i = 0; i < n; i++)
            if (((uint8_t *)a)[i] > 1)
                return qx_fail(c->e, QX_EFORMAT, "%s: key '%s': bool element %llu has value %u (must be 0 or 1)",
                               c->label, kv->key, (unsigned long long)i, ((uint8_t *)a)[i]);
    }
    kv->arr = a;
    return QX_OK;
}

static qx_status read_kv(cursor *c, gf_file *f, uint64_t i, gf_kv *kv) {
    char what[48];
    snprintf(what, sizeof what, "key %llu", (unsigned long long)i);
    char *key;
    uint64_t klen;
    QX_TRY(rd_string(c, &f->arena, &key, &klen, what));
    if (klen == 0) return qx_fail(c->e, QX_EFORMAT, "%s: key %llu is empty", c->label, (unsigned long long)i);
    if (strlen(key) != klen)
        return qx_fail(c->e, QX_EFORMAT, "%s: key %llu ('%s') contains a NUL byte", c->label, (unsigned long long)i, key);
    kv->key = key;
    int32_t t;
    QX_TRY(RD(c, t, "value type"));
    if (!valid_kv_type(t))
        return qx_fail(c->e, QX_EFORMAT, "%s: key '%s': invalid value type %d", c->label, key, (int)t);
    kv->type = (gf_type)t;
    kv->n = 1;
    if (t == GF_ARRAY) return read_array(c, f, kv);
    if (t == GF_STRING) {
        char *s;
        QX_TRY(rd_string(c, &f->arena, &s, &kv->str_len, key));
        kv->str = s;
        return QX_OK;
    }
    size_t sz = gf_type_size((gf_type)t);
    if (c->len - c->pos < sz) return truncated(c, key, sz);
    memcpy(&kv->v, c->p + c->pos, sz);
    c->pos += sz;
    if (t == GF_BOOL && kv->v.b > 1)
        return qx_fail(c->e, QX_EFORMAT, "%s: key '%s': bool value %u (must be 0 or 1)", c->label, key, kv->v.b);
    return QX_OK;
}

/* ---- tensor infos ---- */
static qx_status read_tensor_info(cursor *c, gf_file *f, uint64_t i, gf_tensor *t) {
    char what[48];
    snprintf(what, sizeof what, "tensor %llu name", (unsigned long long)i);
    char *name;
    uint64_t nlen;
    QX_TRY(rd_string(c, &f->arena, &name, &nlen, what));
    if (nlen == 0) return qx_fail(c->e, QX_EFORMAT, "%s: tensor %llu has an empty name", c->label, (unsigned long long)i);
    if (nlen >= GF_NAME_MAX)
        return qx_fail(c->e, QX_EFORMAT, "%s: tensor %llu: name '%.40s...' is %llu bytes (must be < %d)",
                       c->label, (unsigned long long)i, name, (unsigned long long)nlen, GF_NAME_MAX);
    if (strlen(name) != nlen)
        return qx_fail(c->e, QX_EFORMAT, "%s: tensor %llu ('%s') name contains a NUL byte", c->label, (unsigned long long)i, name);
    t->name = name;
    uint32_t nd;
    QX_TRY(RD(c, nd, name));
    /* llama.cpp accepts n_dims 0 (one element) and writes at least 1. */
    if (nd > GF_MAX_DIMS)
        return qx_fail(c->e, QX_EFORMAT, "%s: tensor '%s': n_dims %u > %d", c->label, name, nd, GF_MAX_DIMS);
    t->n_dims = (int)nd;
    uint64_t n_elems = 1;
    for (int d = 0; d < GF_MAX_DIMS; d++) {
        t->ne[d] = 1;
        if ((uint32_t)d < nd) {
            QX_TRY(RD(c, t->ne[d], name));
            if (t->ne[d] <= 0)
                return qx_fail(c->e, QX_EFORMAT, "%s: tensor '%s': ne[%d] = %lld (must be > 0)",
                               c->label, name, d, (long long)t->ne[d]);
            if (!qx_mul_u64(n_elems, (uint64_t)t->ne[d], &n_elems) || n_elems > (uint64_t)INT64_MAX)
                return qx_fail(c->e, QX_EFORMAT, "%s: tensor '%s': element count overflows int64", c->label, name);
        }
    }
    t->n_elems = n_elems;
    int32_t ty;
    QX_TRY(RD(c, ty, name));
    const qt_traits *tr = (ty >= 0 && ty < QT_GGUF_COUNT) ? qt_get_traits((qt_type)ty) : NULL;
    if (!tr) {
        if (ty >= 0 && ty < QT_GGUF_COUNT)
            return qx_fail(c->e, QX_EUNSUPPORTED, "%s: tensor '%s': ggml type %d is not supported", c->label, name, (int)ty);
        return qx_fail(c->e, QX_EFORMAT, "%s: tensor '%s': invalid ggml type %d", c->label, name, (int)ty);
    }
    t->type = (qt_type)ty;
    if (t->ne[0] % tr->blck != 0)
        return qx_fail(c->e, QX_EFORMAT, "%s: tensor '%s': ne[0] = %lld is not a multiple of the %s block size %d",
                       c->label, name, (long long)t->ne[0], tr->name, tr->blck);
    uint64_t nb = (uint64_t)(t->ne[0] / tr->blck) * (uint64_t)tr->type_size;
    for (int d = 1; d < GF_MAX_DIMS; d++)
        if (!qx_mul_u64(nb, (uint64_t)t->ne[d], &nb))
            return qx_fail(c->e, QX_EFORMAT, "%s: tensor '%s': byte size overflows", c->label, name);
    t->nbytes = nb;
    QX_TRY(RD(c, t->offset, name));
    return QX_OK;
}

/* Checks every tensor's byte range; sets f->canonical. */
static qx_status check_offsets(gf_file *f, qx_err *e) {
    uint64_t data_len = f->len - f->data_offset;
    uint64_t expect = 0;   /* stays below len + n * alignment: no overflow */
    f->canonical = true;
    for (size_t i = 0; i < f->n_t; i++) {
        const gf_tensor *t = &f->t[i];
        if (t->offset % f->alignment != 0)
            return qx_fail(e, QX_EFORMAT, "%s: tensor '%s': offset %llu is not a multiple of the alignment %u",
                           f->label, t->name, (unsigned long long)t->offset, f->alignment);
        if (t->offset > data_len || t->nbytes > data_len - t->offset)
            return qx_fail(e, QX_EFORMAT, "%s: tensor '%s': data [%llu, +%llu) runs past the end of the file (data section %llu bytes)",
                           f->label, t->name, (unsigned long long)t->offset, (unsigned long long)t->nbytes,
                           (unsigned long long)data_len);
        if (t->offset != expect) f->canonical = false;
        expect += qx_pad(t->nbytes, f->alignment);
    }
    if (f->canonical) return QX_OK;
    /* Any other layout: no two tensors may overlap (sort by offset). */
    uint32_t *v = malloc((f->n_t ? f->n_t : 1) * sizeof *v), *tmp = malloc((f->n_t ? f->n_t : 1) * sizeof *tmp);
    if (!v || !tmp) { free(v); free(tmp); return qx_fail(e, QX_ENOMEM, "%s: out of memory", f->label); }
    for (size_t i = 0; i < f->n_t; i++) v[i] = (uint32_t)i;
    /* bottom-up merge sort of the indices by offset */
    for (size_t w = 1; w < f->n_t; w *= 2) {
        for (size_t lo = 0; lo < f->n_t; lo += 2 * w) {
            size_t mid = lo + w < f->n_t ? lo + w : f->n_t, hi = lo + 2 * w < f->n_t ? lo + 2 * w : f->n_t;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) tmp[k++] = f->t[v[j]].offset < f->t[v[i]].offset ? v[j++] : v[i++];
            while (i < mid) tmp[k++] = v[i++];
            while (j < hi) tmp[k++] = v[j++];
        }
        memcpy(v, tmp, f->n_t * sizeof *v);
    }
    qx_status s = QX_OK;
    for (size_t i = 1; i < f->n_t; i++) {
        const gf_tensor *a = &f->t[v[i - 1]], *b = &f->t[v[i]];
        if (a->nbytes > 0 && b->nbytes > 0 && a->offset + a->nbytes > b->offset) {
            s = qx_fail(e, QX_EFORMAT, "%s: tensor '%s' [%llu, +%llu) overlaps tensor '%s' at %llu",
                        f->label, a->name, (unsigned long long)a->offset, (unsigned long long)a->nbytes,
                        b->name, (unsigned long long)b->offset);
            break;
        }
    }
    free(v); free(tmp);
    return s;
}

static qx_status parse(gf_file *f, qx_err *e) {
    cursor c = {f->buf, f->len, 0, f->label, e};
    char magic[4];
    if (f->len < 4) return qx_fail(e, QX_EFORMAT, "%s: not a GGUF file (%llu bytes)", f->label, (unsigned long long)f->len);
    QX_TRY(RD(&c, magic, "magic"));
    if (memcmp(magic, GF_MAGIC, 4) != 0) {
        char m[5];
        for (int i = 0; i < 4; i++) m[i] = (magic[i] >= 32 && magic[i] < 127) ? magic[i] : '?';
        m[4] = 0;
        return qx_fail(e, QX_EFORMAT, "%s: not a GGUF file (magic '%s')", f->label, m);
    }
    QX_TRY(RD(&c, f->version, "version"));
    if (f->version != 2 && f->version != 3) {
        if ((f->version & 0xFFFFu) == 0)
            return qx_fail(e, QX_EUNSUPPORTED, "%s: GGUF version 0x%08x: a big-endian file?", f->label, f->version);
        return qx_fail(e, QX_EUNSUPPORTED, "%s: GGUF version %u is not supported (2 and 3 are)", f->label, f->version);
    }
    int64_t n_t, n_kv;
    QX_TRY(RD(&c, n_t, "tensor count"));
    QX_TRY(RD(&c, n_kv, "key count"));
    /* smallest KV: 8 (key length) + 1 (key) + 4 (type) + 1 (u8); smallest tensor info:
     * 8 + 1 + 4 + 4 + 8 */
    uint64_t left = c.len - c.pos;
    if (n_kv < 0 || (uint64_t)n_kv > left / 14)
        return qx_fail(e, QX_EFORMAT, "%s: key count %lld cannot fit in the %llu bytes left", f->label,
                       (long long)n_kv, (unsigned long long)left);
    if (n_t < 0 || (uint64_t)n_t > left / 25 || (uint64_t)n_t > UINT32_MAX)
        return qx_fail(e, QX_EFORMAT, "%s: tensor count %lld cannot fit in the %llu bytes left", f->label,
                       (long long)n_t, (unsigned long long)left);
    f->n_kv = (size_t)n_kv;
    f->n_t = (size_t)n_t;
    f->kv = arena_alloc(&f->arena, (f->n_kv ? f->n_kv : 1) * sizeof *f->kv);
    f->t = arena_alloc(&f->arena, (f->n_t ? f->n_t : 1) * sizeof *f->t);
    if (!f->kv || !f->t) return qx_fail(e, QX_ENOMEM, "%s: out of memory", f->label);
    memset(f->kv, 0, (f->n_kv ? f->n_kv : 1) * sizeof *f->kv);
    memset(f->t, 0, (f->n_t ? f->n_t : 1) * sizeof *f->t);
    for (size_t i = 0; i < f->n_kv; i++) QX_TRY(read_kv(&c, f, i, &f->kv[i]));
    QX_TRY(build_index(f, f->n_kv, name_cmp_kv, &f->kv_sorted, e));
    for (size_t i = 1; i < f->n_kv; i++) {
        const gf_kv *a = &f->kv[f->kv_sorted[i - 1]], *b = &f->kv[f->kv_sorted[i]];
        if (strcmp(a->key, b->key) == 0)
            return qx_fail(e, QX_EFORMAT, "%s: duplicate key '%s' (pairs %u and %u)", f->label, a->key,
                           f->kv_sorted[i - 1], f->kv_sorted[i]);
    }
    f->alignment = GF_DEFAULT_ALIGNMENT;
    const gf_kv *al = gf_find_kv(f, GF_KEY_ALIGNMENT);
    if (al) {
        if (al->type != GF_U32)
            return qx_fail(e, QX_EFORMAT, "%s: key '%s' has type %s (must be u32)", f->label, GF_KEY_ALIGNMENT,
                           al->type == GF_ARRAY ? "array" : gf_type_name(al->type));
        uint32_t a = al->v.u32;
        if (a == 0 || (a & (a - 1)) != 0 || a > GF_MAX_ALIGNMENT)
            return qx_fail(e, QX_EFORMAT, "%s: %s = %u is not a power of two <= %u", f->label, GF_KEY_ALIGNMENT,
                           a, (unsigned)GF_MAX_ALIGNMENT);
        f->alignment = a;
    }
    for (size_t i = 0; i < f->n_t; i++) QX_TRY(read_tensor_info(&c, f, i, &f->t[i]));
    QX_TRY(build_index(f, f->n_t, name_cmp_t, &f->t_sorted, e));
    for (size_t i = 1; i < f->n_t; i++) {
        const gf_tensor *a = &f->t[f->t_sorted[i - 1]], *b = &f->t[f->t_sorted[i]];
        if (strcmp(a->name, b->name) == 0)
            return qx_fail(e, QX_EFORMAT, "%s: duplicate tensor name '%s' (tensors %u and %u)", f->label, a->name,
                           f->t_sorted[i - 1], f->t_sorted[i]);
    }
    uint64_t doff = qx_pad(c.pos, f->alignment);
    if (doff > f->len) {
        if (f->n_t > 0)
            return qx_fail(e, QX_EFORMAT, "%s: truncated: data section would start at %llu, file has %llu bytes",
                           f->label, (unsigned long long)doff, (unsigned long long)f->len);
        doff = f->len;
    }
    f->data_offset = doff;
    QX_TRY(check_offsets(f, e));
    for (size_t i = 0; i < f->n_t; i++) {
        gf_tensor *t = &f->t[i];
        t->file_offset = f->data_offset + t->offset;
        t->data = t->nbytes ? f->buf + t->file_offset : NULL;
    }
    return QX_OK;
}

static qx_status open_common(gf_file **out, gf_file *f, qx_err *e) {
    qx_status s = parse(f, e);
    if (s != QX_OK) { gf_close(f); *out = NULL; return s; }
    f->set_len = f->len;
    *out = f;
    return QX_OK;
}

static gf_file *new_file(const char *label) {
    gf_file *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->map.fd = -1;
    f->n_parts = 1;
    f->label = strdup(label ? label : "(buffer)");
    if (!f->label) { free(f); return NULL; }
    return f;
}

qx_status gf_open_mem(gf_file **out, const uint8_t *buf, uint64_t len, const char *label, qx_err *e) {
    *out = NULL;
    gf_file *f = new_file(label);
    if (!f) return qx_fail(e, QX_ENOMEM, "%s: out of memory", label ? label : "(buffer)");
    f->buf = buf;
    f->len = buf ? len : 0;
    return open_common(out, f, e);
}

qx_status gf_open_part(gf_file **out, const char *path, qx_err *e) {
    *out = NULL;
    gf_file *f = new_file(path);
    if (!f) return qx_fail(e, QX_ENOMEM, "%s: out of memory", path);
    qx_status s = qx_map_open(&f->map, path, e);
    if (s != QX_OK) { gf_close(f); return s; }
    f->mapped = true;
    f->buf = f->map.data;
    f->len = f->map.size;
    return open_common(out, f, e);
}

/* ---- split sets ---- */
bool gf_split_name(char *buf, size_t cap, const char *prefix, int k, int n) {
    int w = snprintf(buf, cap, "%s-%05d-of-%05d.gguf", prefix, k + 1, n);
    return w > 0 && (size_t)w < cap;
}

bool gf_split_prefix(char *buf, size_t cap, const char *path, int k, int n) {
    char tail[48];
    snprintf(tail, sizeof tail, "-%05d-of-%05d.gguf", k + 1, n);
    size_t lp = strlen(path), lt = strlen(tail);
    if (lp <= lt || strcmp(path + lp - lt, tail) != 0 || lp - lt >= cap) return false;
    memcpy(buf, path, lp - lt);
    buf[lp - lt] = 0;
    return true;
}

/* The split keys of one file: *count 0 when it is not part of a set. */
static qx_status split_keys(const gf_file *f, uint16_t *no, uint16_t *count, int32_t *n_tensors, qx_err *e) {
    *no = 0; *count = 0; *n_tensors = -1;
    const gf_kv *c = gf_find_kv(f, GF_KEY_SPLIT_COUNT);
    if (!c) return QX_OK;
    const gf_kv *k = gf_find_kv(f, GF_KEY_SPLIT_NO), *t = gf_find_kv(f, GF_KEY_SPLIT_TENSORS);
    if (c->type != GF_U16) return qx_fail(e, QX_EFORMAT, "%s: key '%s' has type %s (must be u16)", f->label, GF_KEY_SPLIT_COUNT, gf_type_name(c->type));
    if (!k || k->type != GF_U16) return qx_fail(e, QX_EFORMAT, "%s: split file without a u16 '%s'", f->label, GF_KEY_SPLIT_NO);
    if (!t || t->type != GF_I32) return qx_fail(e, QX_EFORMAT, "%s: split file without an i32 '%s'", f->label, GF_KEY_SPLIT_TENSORS);
    *count = c->v.u16;
    *no = k->v.u16;
    *n_tensors = t->v.i32;
    if (*count > 0 && *no >= *count)
        return qx_fail(e, QX_EFORMAT, "%s: %s = %u but %s = %u", f->label, GF_KEY_SPLIT_NO, *no, GF_KEY_SPLIT_COUNT, *count);
    return QX_OK;
}

/* Opens files 1..n-1 of the set whose first file is f and appends their tensors. */
static qx_status assemble_set(gf_file *f, uint16_t n, int32_t n_tensors, qx_err *e) {
    char prefix[4096], path[4200];
    if (!gf_split_prefix(prefix, sizeof prefix, f->label, 0, n))
        return qx_fail(e, QX_EFORMAT, "%s: first file of a %u-file split set, but not named PREFIX-00001-of-%05u.gguf", f->label, n, n);
    f->parts = calloc(n, sizeof *f->parts);
    if (!f->parts) return qx_fail(e, QX_ENOMEM, "%s: out of memory", f->label);
    f->n_parts = n;
    size_t total = f->n_t;
    for (int k = 1; k < n; k++) {
        gf_split_name(path, sizeof path, prefix, k, n);
        QX_TRY(gf_open_part(&f->parts[k], path, e));
        uint16_t no, cnt;
        int32_t nt;
        QX_TRY(split_keys(f->parts[k], &no, &cnt, &nt, e));
        if (cnt != n || no != k || nt != n_tensors)
            return qx_fail(e, QX_EFORMAT, "%s: does not belong to the set of %s (split.no %u, split.count %u, split.tensors.count %d; expected %d, %u, %d)",
                           path, f->label, no, cnt, (int)nt, k, n, (int)n_tensors);
        total += f->parts[k]->n_t;
        f->set_len += f->parts[k]->len;
        if (!f->parts[k]->canonical) f->canonical = false;
    }
    if (n_tensors < 0 || total != (size_t)n_tensors)
        return qx_fail(e, QX_EFORMAT, "%s: the set's %u files hold %zu tensors, split.tensors.count says %d", f->label, n, total, (int)n_tensors);
    gf_tensor *t = arena_alloc(&f->arena, (total ? total : 1) * sizeof *t);
    if (!t) return qx_fail(e, QX_ENOMEM, "%s: out of memory", f->label);
    size_t j = 0;
    for (size_t i = 0; i < f->n_t; i++) t[j++] = f->t[i];
    for (int k = 1; k < n; k++)
        for (size_t i = 0; i < f->parts[k]->n_t; i++) { t[j] = f->parts[k]->t[i]; t[j++].split = k; }
    f->t = t;
    f->n_t = total;
    QX_TRY(build_index(f, f->n_t, name_cmp_t, &f->t_sorted, e));
    for (size_t i = 1; i < f->n_t; i++) {
        const gf_tensor *a = &f->t[f->t_sorted[i - 1]], *b = &f->t[f->t_sorted[i]];
        if (strcmp(a->name, b->name) == 0)
            return qx_fail(e, QX_EFORMAT, "%s: tensor '%s' appears in files %d and %d of the split set", f->label, a->name,
                           a->split + 1, b->split + 1);
    }
    return QX_OK;
}

qx_status gf_open(gf_file **out, const char *path, qx_err *e) {
    QX_TRY(gf_open_part(out, path, e));
    gf_file *f = *out;
    uint16_t no, n;
    int32_t nt;
    qx_status s = split_keys(f, &no, &n, &nt, e);
    if (s == QX_OK && no != 0) {
        char prefix[4096], first[4200];
        if (gf_split_prefix(prefix, sizeof prefix, path, no, n) && gf_split_name(first, sizeof first, prefix, 0, n))
            s = qx_fail(e, QX_EINVAL, "%s: file %u of a %u-file split set; open the set by its first file, %s", path, no + 1, n, first);
        else
            s = qx_fail(e, QX_EINVAL, "%s: file %u of a %u-file split set; open the set by its first file", path, no + 1, n);
    }
    if (s == QX_OK && n > 1) s = assemble_set(f, n, nt, e);
    else if (s == QX_OK && n == 1 && (nt < 0 || (size_t)nt != f->n_t))
        s = qx_fail(e, QX_EFORMAT, "%s: one-file split set holds %zu tensors, split.tensors.count says %d", path, f->n_t, (int)nt);
    if (s != QX_OK) { gf_close(f); *out = NULL; }
    return s;
}

void gf_close(gf_file *f) {
    if (!f) return;
    if (f->parts)
        for (int k = 1; k < f->n_parts; k++) gf_close(f->parts[k]);
    free(f->parts);
    if (f->mapped) qx_map_close(&f->map);
    arena_free(f->arena);
    free(f->label);
    free(f);
}

const char *gf_label(const gf_file *f) { return f->label; }
uint32_t gf_version(const gf_file *f) { return f->version; }
uint32_t gf_alignment(const gf_file *f) { return f->alignment; }
uint64_t gf_data_offset(const gf_file *f) { return f->data_offset; }
uint64_t gf_file_size(const gf_file *f) { return f->set_len; }
int gf_split_count(const gf_file *f) { return f->n_parts; }
const char *gf_split_path(const gf_file *f, int k) {
    if (k <= 0 || k >= f->n_parts) return f->label;
    return f->parts[k]->label;
}
uint64_t gf_split_file_size(const gf_file *f, int k) {
    if (k <= 0 || k >= f->n_parts) return f->len;
    return f->parts[k]->len;
}
bool gf_offsets_canonical(const gf_file *f) { return f->canonical; }

size_t gf_kv_count(const gf_file *f) { return f->n_kv; }
const gf_kv *gf_kv_at(const gf_file *f, size_t i) { return i < f->n_kv ? &f->kv[i] : NULL; }

const gf_kv *gf_find_kv(const gf_file *f, const char *key) {
    size_t lo = 0, hi = f->n_kv;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->kv[f->kv_sorted[mid]].key, key);
        if (c == 0) return &f->kv[f->kv_sorted[mid]];
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    return NULL;
}

size_t gf_tensor_count(const gf_file *f) { return f->n_t; }
const gf_tensor *gf_tensor_at(const gf_file *f, size_t i) { return i < f->n_t ? &f->t[i] : NULL; }

const gf_tensor *gf_find_tensor(const gf_file *f, const char *name) {
    size_t lo = 0, hi = f->n_t;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->t[f->t_sorted[mid]].name, name);
        if (c == 0) return &f->t[f->t_sorted[mid]];
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    return NULL;
}

void gf_release(const gf_file *f, const gf_tensor *t) {
    if (!t) return;
    if (t->split > 0 && t->split < f->n_parts) f = f->parts[t->split];
    if (f->mapped) qx_map_release(&f->map, t->file_offset, t->nbytes);
}

/* ---- typed getters ---- */
static const char *kv_type_desc(const gf_kv *kv, char *buf, size_t n) {
    if (kv->type == GF_ARRAY) snprintf(buf, n, "array of %s", gf_type_name(kv->arr_type));
    else snprintf(buf, n, "%s", gf_type_name(kv->type));
    return buf;
}

static qx_status get_kv(const gf_file *f, const char *key, gf_type type, gf_type elem, const gf_kv **out, qx_err *e) {
    const gf_kv *kv = gf_find_kv(f, key);
    if (!kv) return qx_fail(e, QX_ENOTFOUND, "%s: key '%s' not found", f->label, key);
    if (kv->type != type || (type == GF_ARRAY && kv->arr_type != elem)) {
        char want[32], got[32];
        gf_kv w = {.type = type, .arr_type = elem};
        return qx_fail(e, QX_EFORMAT, "%s: key '%s' has type %s, expected %s", f->label, key,
                       kv_type_desc(kv, got, sizeof got), kv_type_desc(&w, want, sizeof want));
    }
    *out = kv;
    return QX_OK;
}

#define GETTER(fn, T, gt, field) \
    qx_status fn(const gf_file *f, const char *key, T *out, qx_err *e) { \
        const gf_kv *kv; QX_TRY(get_kv(f, key, gt, 0, &kv, e)); *out = kv->v.field; return QX_OK; }
GETTER(gf_get_u32, uint32_t, GF_U32, u32)
GETTER(gf_get_i32, int32_t, GF_I32, i32)
GETTER(gf_get_u64, uint64_t, GF_U64, u64)
GETTER(gf_get_f32, float, GF_F32, f32)

qx_status gf_get_bool(const gf_file *f, const char *key, bool *out, qx_err *e) {
    const gf_kv *kv;
    QX_TRY(get_kv(f, key, GF_BOOL, 0, &kv, e));
    *out = kv->v.b != 0;
    return QX_OK;
}

qx_status gf_get_str(const gf_file *f, const char *key, const char **out, qx_err *e) {
    const gf_kv *kv;
    QX_TRY(get_kv(f, key, GF_STRING, 0, &kv, e));
    *out = kv->str;
    return QX_OK;
}

qx_status gf_get_arr(const gf_file *f, const char *key, gf_type elem, const void **data, uint64_t *n, qx_err *e) {
    if (gf_type_size(elem) == 0) return qx_fail(e, QX_EINVAL, "gf_get_arr: element type %s is not fixed-size", gf_type_name(elem));
    const gf_kv *kv;
    QX_TRY(get_kv(f, key, GF_ARRAY, elem, &kv, e));
    *data = kv->arr;
    *n = kv->n;
    return QX_OK;
}

qx_status gf_get_str_arr(const gf_file *f, const char *key, const char *const **strs, uint64_t *n, qx_err *e) {
    const gf_kv *kv;
    QX_TRY(get_kv(f, key, GF_ARRAY, GF_STRING, &kv, e));
    *strs = kv->strs;
    *n = kv->n;
    return QX_OK;
}

/* ---- checksums ---- */
uint64_t gf_checksum(const void *data, uint64_t n) {
    return (uint64_t)XXH3_64bits(data, (size_t)n);
}

qx_status gf_verify_checksums(const gf_file *f, int64_t *bad_tensor, qx_err *e) {
    if (bad_tensor) *bad_tensor = -1;
    const gf_kv *kv = gf_find_kv(f, GF_KEY_TENSOR_XXH3);
    if (!kv) return qx_fail(e, QX_ENOTFOUND, "%s: no per-tensor checksums (key '%s' absent)", f->label, GF_KEY_TENSOR_XXH3);
    if (kv->type != GF_ARRAY || kv->arr_type != GF_U64 || kv->n != f->n_t)
        return qx_fail(e, QX_EFORMAT, "%s: key '%s' must be an array of %zu u64", f->label, GF_KEY_TENSOR_XXH3, f->n_t);
    const uint64_t *want = kv->arr;
    for (size_t i = 0; i < f->n_t; i++) {
        const gf_tensor *t = &f->t[i];
        uint64_t h = gf_checksum(t->data ? (const void *)t->data : (const void *)"", t->nbytes);
        if (h != want[i]) {
            if (bad_tensor) *bad_tensor = (int64_t)i;
            return qx_fail(e, QX_EFORMAT, "%s: tensor '%s': checksum mismatch (xxh3 %016llx, stored %016llx)",
                           f->label, t->name, (unsigned long long)h, (unsigned long long)want[i]);
        }
    }
    return QX_OK;
}
