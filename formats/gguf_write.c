/* formats/gguf_write.c — GGUF v3 writer, plan-then-execute (contract in formats/formats.h).
 * The caller declares every KV and tensor info; gf_writer_plan fixes the header size, each
 * tensor's offset (Σ PAD(nbytes, alignment) in info order, as llama.cpp demands) and the
 * file size.  Tensor bytes then go straight to their offsets with pwrite, from any thread.
 * Only fixed-size values may change after the plan, so a final header rewrite (e.g. the
 * per-tensor XXH3 checksums) never moves anything.  Nothing here buffers tensor data. */
#include "formats.h"
#include "limits.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    char *key;
    gf_type type, arr_type;
    uint64_t n;               /* array elements */
    gf_scalar v;
    char *str;
    uint64_t str_len;
    void *arr;                /* fixed-size elements, n * gf_type_size(arr_type) bytes */
    char **strs;
    uint64_t *str_lens;
    uint64_t val_off;         /* after plan: header offset of the value (arrays: of element 0) */
} wkv;

typedef struct {
    char *name;
    qt_type type;
    int n_dims;
    int64_t ne[GF_MAX_DIMS];
    uint64_t nbytes;
    uint64_t offset;          /* relative to its file's data section (after plan) */
    int split;                /* file of the set holding it (after plan; 0 unsplit) */
} wtensor;

/* One file of the output set (one entry when unsplit). */
typedef struct {
    size_t t0, t1;            /* tensors [t0, t1) in info order */
    uint64_t header_size, data_offset, file_size;
} wsplit;

/* Open-addressing set of tensor indices keyed by name. */
typedef struct { uint32_t *slot; size_t cap; } name_set;

struct gf_writer {
    wkv *kv;
    size_t n_kv, cap_kv;
    wtensor *t;
    size_t n_t, cap_t;
    name_set names;
    bool planned;
    bool reserve_xxh3;
    uint32_t alignment;
    uint64_t split_max_bytes, split_max_tensors;   /* 0: no limit */
    wsplit *splits;           /* n_splits files (after plan) */
    int n_splits;
    bool split_keys;          /* more than one file: every header carries split.* */
    uint64_t header_size, data_offset, file_size;  /* file 0; file_size: the whole set */
};

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull;
    while (*s) { h ^= (uint8_t)*s++; h *= 1099511628211ull; }
    return h;
}

/* Returns the slot of name (empty slot = UINT32_MAX) in set s over tensors t. */
static size_t set_probe(const name_set *s, const wtensor *t, const char *name) {
    size_t m = s->cap - 1, i = (size_t)hash_str(name) & m;
    while (s->slot[i] != UINT32_MAX && strcmp(t[s->slot[i]].name, name) != 0) i = (i + 1) & m;
    return i;
}

static bool set_grow(name_set *s, const wtensor *t, size_t n) {
    if (s->cap && n * 2 < s->cap) return true;
    size_t cap = s->cap ? s->cap * 2 : 64;
    uint32_t *old = s->slot;
    size_t old_cap = s->cap;
    s->slot = malloc(cap * sizeof *s->slot);
    if (!s->slot) { s->slot = old; return false; }
    s->cap = cap;
    for (size_t i = 0; i < cap; i++) s->slot[i] = UINT32_MAX;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i] != UINT32_MAX) s->slot[set_probe(s, t, t[old[i]].name)] = old[i];
    free(old);
    return true;
}

qx_status gf_writer_create(gf_writer **out, qx_err *e) {
    *out = calloc(1, sizeof **out);
    if (!*out) return qx_fail(e, QX_ENOMEM, "gguf writer: out of memory");
    (*out)->alignment = GF_DEFAULT_ALIGNMENT;
    return QX_OK;
}

static void kv_clear(wkv *kv) {
    free(kv->str);
    free(kv->arr);
    if (kv->strs) for (uint64_t i = 0; i < kv->n; i++) free(kv->strs[i]);
    free(kv->strs);
    free(kv->str_lens);
    kv->str = NULL; kv->arr = NULL; kv->strs = NULL; kv->str_lens = NULL;
}

void gf_writer_free(gf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) { kv_clear(&w->kv[i]); free(w->kv[i].key); }
    for (size_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->kv);
    free(w->t);
    free(w->names.slot);
    free(w->splits);
    free(w);
}

static wkv *find_kv(const gf_writer *w, const char *key) {
    for (size_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->kv[i].key, key) == 0) return &w->kv[i];
    return NULL;
}

bool gf_writer_has_key(const gf_writer *w, const char *key) { return find_kv(w, key) != NULL; }

/* Returns the (cleared) slot for key: the existing pair, or a new one at the end. */
static qx_status kv_slot(gf_writer *w, const char *key, wkv **out, qx_err *e) {
    if (!key || !key[0]) return qx_fail(e, QX_EINVAL, "gguf writer: empty key");
    if (strlen(key) > GF_MAX_STRING_LEN) return qx_fail(e, QX_EINVAL, "gguf writer: key too long");
    wkv *kv = find_kv(w, key);
    if (w->planned)
        return qx_fail(e, QX_EINVAL, "gguf writer: key '%s': only fixed-size values of existing keys may change after the plan", key);
    if (kv) { kv_clear(kv); *out = kv; return QX_OK; }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? w->cap_kv * 2 : 32;
        wkv *p = realloc(w->kv, cap * sizeof *p);
        if (!p) return qx_fail(e, QX_ENOMEM, "gguf writer: out of memory");
        w->kv = p; w->cap_kv = cap;
    }
    kv = &w->kv[w->n_kv];
    memset(kv, 0, sizeof *kv);
    kv->key = strdup(key);
    if (!kv->key) return qx_fail(e, QX_ENOMEM, "gguf writer: out of memory");
    w->n_kv++;
    *out = kv;
    return QX_OK;
}

qx_status gf_writer_set(gf_writer *w, const char *key, gf_type type, const void *val, qx_err *e) {
    size_t sz = gf_type_size(type);
    if (sz == 0) return qx_fail(e, QX_EINVAL, "gguf writer: key '%s': type %s is not a scalar type", key ? key : "", gf_type_name(type));
    gf_scalar v;
    memset(&v, 0, sizeof v);
    memcpy(&v, val, sz);
    if (type == GF_BOOL) v.b = v.b != 0;
    if (key && strcmp(key, GF_KEY_ALIGNMENT) == 0) {
        if (type != GF_U32) return qx_fail(e, QX_EINVAL, "gguf writer: %s must be u32", GF_KEY_ALIGNMENT);
        if (v.u32 == 0 || (v.u32 & (v.u32 - 1)) || v.u32 > GF_MAX_ALIGNMENT)
            return qx_fail(e, QX_EINVAL, "gguf writer: %s = %u is not a power of two <= %u", GF_KEY_ALIGNMENT, v.u32,
                           (unsigned)GF_MAX_ALIGNMENT);
        if (w->planned && v.u32 != w->alignment)
            return qx_fail(e, QX_EINVAL, "gguf writer: %s cannot change after the plan", GF_KEY_ALIGNMENT);
    }
    if (w->planned) {
        wkv *kv = key ? find_kv(w, key) : NULL;
        if (!kv || kv->type != type)
            return qx_fail(e, QX_EINVAL, "gguf writer: key '%s': only fixed-size values of existing keys may change after the plan",
                           key ? key : "");
        kv->v = v;
        return QX_OK;
    }
    wkv *kv;
    QX_TRY(kv_slot(w, key, &kv, e));
    kv->type = type;
    kv->n = 1;
    kv->v = v;
    if (strcmp(key, GF_KEY_ALIGNMENT) == 0) w->alignment = v.u32;
    return QX_OK;
}

qx_status gf_writer_set_u32(gf_writer *w, const char *key, uint32_t v, qx_err *e) { return gf_writer_set(w, key, GF_U32, &v, e); }
qx_status gf_writer_set_i32(gf_writer *w, const char *key, int32_t v, qx_err *e) { return gf_writer_set(w, key, GF_I32, &v, e); }
qx_status gf_writer_set_u64(gf_writer *w, const char *key, uint64_t v, qx_err *e) { return gf_writer_set(w, key, GF_U64, &v, e); }
qx_status gf_writer_set_f32(gf_writer *w, const char *key, float v, qx_err *e) { return gf_writer_set(w, key, GF_F32, &v, e); }
qx_status gf_writer_set_bool(gf_writer *w, const char *key, bool v, qx_err *e) {
    uint8_t b = v ? 1 : 0;
    return gf_writer_set(w, key, GF_BOOL, &b, e);
}

static char *dup_bytes(const char *s, uint64_t n) {
    char *p = malloc((size_t)n + 1);
    if (p) { memcpy(p, s, (size_t)n); p[n] = 0; }
    return p;
}

static qx_status set_str_len(gf_writer *w, const char *key, const char *s, uint64_t n, qx_err *e) {
    if (n > GF_MAX_STRING_LEN) return qx_fail(e, QX_EINVAL, "gguf writer: key '%s': string too long", key);
    if (strcmp(key, GF_KEY_ALIGNMENT) == 0) return qx_fail(e, QX_EINVAL, "gguf writer: %s must be u32", GF_KEY_ALIGNMENT);
    wkv *kv;
    QX_TRY(kv_slot(w, key, &kv, e));
    kv->type = GF_STRING;
    kv->n = 1;
    kv->str = dup_bytes(s, n);
    kv->str_len = n;
    if (!kv->str) return qx_fail(e, QX_ENOMEM, "gguf writer: out of memory");
    return QX_OK;
}

qx_status gf_writer_set_str(gf_writer *w, const char *key, const char *s, qx_err *e) {
    return set_str_len(w, key ? key : "", s ? s : "", s ? strlen(s) : 0, e);
}

qx_status gf_writer_set_arr(gf_writer *w, const char *key, gf_type elem, const void *data, uint64_t n, qx_err *e) {
    size_t es = gf_type_size(elem);
    if (es == 0) return qx_fail(e, QX_EINVAL, "gguf writer: key '%s': array element type %s is not fixed-size (use gf_writer_set_str_arr)",
                                key ? key : "", gf_type_name(elem));
    if (key && strcmp(key, GF_KEY_ALIGNMENT) == 0) return qx_fail(e, QX_EINVAL, "gguf writer: %s must be u32", GF_KEY_ALIGNMENT);
    uint64_t bytes;
    if (!qx_mul_u64(n, es, &bytes) || bytes > SIZE_MAX / 2) return qx_fail(e, QX_EINVAL, "gguf writer: key '%s': array too large", key);
    wkv *kv;
    QX_TRY(kv_slot(w, key, &kv, e));
    kv->type = GF_ARRAY;
    kv->arr_type = elem;
    kv->arr = malloc(bytes ? (size_t)bytes : 1);
    if (!kv->arr) { kv->n = 0; return qx_fail(e, QX_ENOMEM, "gguf writer: key '%s': out of memory", key); }
    kv->n = n;
    if (bytes) memcpy(kv->arr, data, (size_t)bytes);
    if (elem == GF_BOOL)
        for (uint64_t i = 0; i < n; i++) ((uint8_t *)kv->arr)[i] = ((uint8_t *)kv->arr)[i] != 0;
    return QX_OK;
}

static qx_status set_str_arr_len(gf_writer *w, const char *key, const char *const *strs, const uint64_t *lens,
                                 uint64_t n, qx_err *e) {
    if (key && strcmp(key, GF_KEY_ALIGNMENT) == 0) return qx_fail(e, QX_EINVAL, "gguf writer: %s must be u32", GF_KEY_ALIGNMENT);
    if (n > SIZE_MAX / 16) return qx_fail(e, QX_EINVAL, "gguf writer: key '%s': array too large", key);
    wkv *kv;
    QX_TRY(kv_slot(w, key, &kv, e));
    kv->type = GF_ARRAY;
    kv->arr_type = GF_STRING;
    kv->n = 0;
    kv->strs = calloc(n ? (size_t)n : 1, sizeof *kv->strs);
    kv->str_lens = calloc(n ? (size_t)n : 1, sizeof *kv->str_lens);
    if (!kv->strs || !kv->str_lens) return qx_fail(e, QX_ENOMEM, "gguf writer: key '%s': out of memory", key);
    for (uint64_t i = 0; i < n; i++) {
        const char *s = strs[i] ? strs[i] : "";
        uint64_t len = lens ? lens[i] : strlen(s);
        if (len > GF_MAX_STRING_LEN) return qx_fail(e, QX_EINVAL, "gguf writer: key '%s': element %llu too long", key, (unsigned long long)i);
        kv->strs[i] = dup_bytes(s, len);
        kv->n = i + 1;   /* kv_clear frees what exists */
        if (!kv->strs[i]) return qx_fail(e, QX_ENOMEM, "gguf writer: key '%s': out of memory", key);
        kv->str_lens[i] = len;
    }
    kv->n = n;
    return QX_OK;
}

qx_status gf_writer_set_str_arr(gf_writer *w, const char *key, const char *const *strs, uint64_t n, qx_err *e) {
    return set_str_arr_len(w, key ? key : "", strs, NULL, n, e);
}

qx_status gf_writer_set_kv(gf_writer *w, const gf_kv *kv, qx_err *e) {
    if (kv->type == GF_STRING) return set_str_len(w, kv->key, kv->str, kv->str_len, e);
    if (kv->type == GF_ARRAY) {
        if (kv->arr_type == GF_STRING) return set_str_arr_len(w, kv->key, kv->strs, kv->str_lens, kv->n, e);
        return gf_writer_set_arr(w, kv->key, kv->arr_type, kv->arr, kv->n, e);
    }
    return gf_writer_set(w, kv->key, kv->type, &kv->v, e);
}

qx_status gf_writer_remove_key(gf_writer *w, const char *key, qx_err *e) {
    if (w->planned) return qx_fail(e, QX_EINVAL, "gguf writer: key '%s' cannot be removed after the plan", key);
    wkv *kv = find_kv(w, key);
    if (!kv) return qx_fail(e, QX_ENOTFOUND, "gguf writer: key '%s' not set", key);
    kv_clear(kv);
    free(kv->key);
    size_t i = (size_t)(kv - w->kv);
    memmove(&w->kv[i], &w->kv[i + 1], (w->n_kv - i - 1) * sizeof *kv);
    w->n_kv--;
    if (strcmp(key, GF_KEY_ALIGNMENT) == 0) w->alignment = GF_DEFAULT_ALIGNMENT;
    return QX_OK;
}

qx_status gf_writer_reserve_checksums(gf_writer *w, qx_err *e) {
    if (w->planned) return qx_fail(e, QX_EINVAL, "gguf writer: checksums must be reserved before the plan");
    w->reserve_xxh3 = true;
    return QX_OK;
}

/* ---- tensors ---- */
qx_status gf_writer_add_tensor(gf_writer *w, const char *name, qt_type type, int n_dims, const int64_t *ne,
                               size_t *index, qx_err *e) {
    if (w->planned) return qx_fail(e, QX_EINVAL, "gguf writer: tensor '%s' added after the plan", name ? name : "");
    if (!name || !name[0]) return qx_fail(e, QX_EINVAL, "gguf writer: empty tensor name");
    if (strlen(name) >= GF_NAME_MAX)
        return qx_fail(e, QX_EINVAL, "gguf writer: tensor '%s': name is %zu bytes (must be < %d)", name, strlen(name), GF_NAME_MAX);
    if (n_dims < 1 || n_dims > GF_MAX_DIMS)
        return qx_fail(e, QX_EINVAL, "gguf writer: tensor '%s': n_dims %d not in 1..%d", name, n_dims, GF_MAX_DIMS);
    const qt_traits *tr = ((int)type >= 0 && type < QT_GGUF_COUNT) ? qt_get_traits(type) : NULL;
    if (!tr) return qx_fail(e, QX_EINVAL, "gguf writer: tensor '%s': type %d is not a GGUF type", name, (int)type);
    wtensor t = {.type = type, .n_dims = n_dims, .ne = {1, 1, 1, 1}};
    uint64_t n_el = 1;
    for (int d = 0; d < n_dims; d++) {
        if (ne[d] <= 0) return qx_fail(e, QX_EINVAL, "gguf writer: tensor '%s': ne[%d] = %lld (must be > 0)", name, d, (long long)ne[d]);
        if (!qx_mul_u64(n_el, (uint64_t)ne[d], &n_el) || n_el > (uint64_t)INT64_MAX)
            return qx_fail(e, QX_EINVAL, "gguf writer: tensor '%s': element count overflows", name);
        t.ne[d] = ne[d];
    }
    uint64_t row = qt_row_size(type, t.ne[0]);
    if (row == 0)
        return qx_fail(e, QX_ESHAPE, "gguf writer: tensor '%s': ne[0] = %lld is not a multiple of the %s block size %d",
                       name, (long long)t.ne[0], tr->name, tr->blck);
    uint64_t nb = row;
    for (int d = 1; d < GF_MAX_DIMS; d++)
        if (!qx_mul_u64(nb, (uint64_t)t.ne[d], &nb)) return qx_fail(e, QX_EINVAL, "gguf writer: tensor '%s': byte size overflows", name);
    t.nbytes = nb;
    if (w->n_t >= UINT32_MAX - 1) return qx_fail(e, QX_EINVAL, "gguf writer: too many tensors");
    if (!set_grow(&w->names, w->t, w->n_t + 1)) return qx_fail(e, QX_ENOMEM, "gguf writer: out of memory");
    size_t slot = set_probe(&w->names, w->t, name);
    if (w->names.slot[slot] != UINT32_MAX)
        return qx_fail(e, QX_EINVAL, "gguf writer: duplicate tensor name '%s' (tensors %u and %zu)", name, w->names.slot[slot], w->n_t);
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? w->cap_t * 2 : 64;
        wtensor *p = realloc(w->t, cap * sizeof *p);
        if (!p) return qx_fail(e, QX_ENOMEM, "gguf writer: out of memory");
        w->t = p; w->cap_t = cap;
    }
    t.name = strdup(name);
    if (!t.name) return qx_fail(e, QX_ENOMEM, "gguf writer: out of memory");
    w->t[w->n_t] = t;
    w->names.slot[slot] = (uint32_t)w->n_t;
    if (index) *index = w->n_t;
    w->n_t++;
    return QX_OK;
}

size_t gf_writer_tensor_count(const gf_writer *w) { return w->n_t; }

int64_t gf_writer_find_tensor(const gf_writer *w, const char *name) {
    if (!w->names.cap) return -1;
    uint32_t i = w->names.slot[set_probe(&w->names, w->t, name)];
    return i == UINT32_MAX ? -1 : (int64_t)i;
}

/* ---- serialization: one routine that sizes (dst NULL) or fills the header ---- */
typedef struct { uint8_t *dst; uint64_t pos; } sink;

static void put(sink *s, const void *p, uint64_t n) {
    if (s->dst && n) memcpy(s->dst + s->pos, p, (size_t)n);
    s->pos += n;
}
static void put_u64(sink *s, uint64_t v) { put(s, &v, 8); }
static void put_i32(sink *s, int32_t v) { put(s, &v, 4); }
static void put_str(sink *s, const char *p, uint64_t n) { put_u64(s, n); put(s, p, n); }

static void put_kv_head(sink *s, const char *key, gf_type t) { put_str(s, key, strlen(key)); put_i32(s, (int32_t)t); }

/* Serializes the header of file k of the set; records value offsets in kv (file 0 only,
 * non-const only through the plan).  File 0 carries every KV; the others only the split
 * keys (and general.alignment when it is not the default, so each file reads alone). */
static void serialize(const gf_writer *w, int k, sink *s, wkv *kv_off) {
    const wsplit *sp = &w->splits[k];
    uint32_t ver = GF_VERSION;
    bool own_align = k > 0 && w->alignment != GF_DEFAULT_ALIGNMENT;
    uint64_t n_kv = (k == 0 ? (uint64_t)w->n_kv : 0) + (w->split_keys ? 3u : 0u) + (own_align ? 1u : 0u);
    put(s, GF_MAGIC, 4);
    put(s, &ver, 4);
    put_u64(s, (uint64_t)(sp->t1 - sp->t0));
    put_u64(s, n_kv);
    for (size_t i = 0; k == 0 && i < w->n_kv; i++) {
        const wkv *kv = &w->kv[i];
        put_kv_head(s, kv->key, kv->type);
        if (kv->type == GF_ARRAY) {
            put_i32(s, (int32_t)kv->arr_type);
            put_u64(s, kv->n);
            if (kv_off) kv_off[i].val_off = s->pos;
            if (kv->arr_type == GF_STRING)
                for (uint64_t j = 0; j < kv->n; j++) put_str(s, kv->strs[j], kv->str_lens[j]);
            else
                put(s, kv->arr, kv->n * gf_type_size(kv->arr_type));
        } else if (kv->type == GF_STRING) {
            if (kv_off) kv_off[i].val_off = s->pos;
            put_str(s, kv->str, kv->str_len);
        } else {
            if (kv_off) kv_off[i].val_off = s->pos;
            put(s, &kv->v, gf_type_size(kv->type));
        }
    }
    if (own_align) { put_kv_head(s, GF_KEY_ALIGNMENT, GF_U32); put(s, &w->alignment, 4); }
    if (w->split_keys) {
        uint16_t no = (uint16_t)k, count = (uint16_t)w->n_splits;
        int32_t nt = (int32_t)w->n_t;
        put_kv_head(s, GF_KEY_SPLIT_NO, GF_U16); put(s, &no, 2);
        put_kv_head(s, GF_KEY_SPLIT_COUNT, GF_U16); put(s, &count, 2);
        put_kv_head(s, GF_KEY_SPLIT_TENSORS, GF_I32); put(s, &nt, 4);
    }
    for (size_t i = sp->t0; i < sp->t1; i++) {
        const wtensor *t = &w->t[i];
        put_str(s, t->name, strlen(t->name));
        uint32_t nd = (uint32_t)t->n_dims;
        put(s, &nd, 4);
        put(s, t->ne, 8 * (uint64_t)t->n_dims);
        put_i32(s, (int32_t)t->type);
        put_u64(s, t->offset);
    }
}

qx_status gf_writer_set_split(gf_writer *w, uint64_t max_bytes, uint64_t max_tensors, qx_err *e) {
    if (w->planned) return qx_fail(e, QX_EINVAL, "gguf writer: the split must be set before the plan");
    w->split_max_bytes = max_bytes;
    w->split_max_tensors = max_tensors;
    return QX_OK;
}

/* Cuts the tensors into files the way llama-gguf-split does: a new file starts before
 * tensor i when i is a positive multiple of max_tensors, or when the file's padded tensor
 * bytes would pass max_bytes (a tensor larger than max_bytes gets a file of its own; no
 * file is ever empty). */
static qx_status cut_splits(gf_writer *w, qx_err *e) {
    size_t cap = 1;
    wsplit *sp = calloc(1, sizeof *sp);
    if (!sp) return qx_fail(e, QX_ENOMEM, "gguf writer: out of memory");
    int n = 1;
    uint64_t cur = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        uint64_t nb = qx_pad(w->t[i].nbytes, w->alignment);
        bool empty = sp[n - 1].t1 == sp[n - 1].t0;
        bool by_count = w->split_max_tensors && i > 0 && i % w->split_max_tensors == 0;
        bool by_size = w->split_max_bytes && cur + nb > w->split_max_bytes;
        if (!empty && (by_count || by_size)) {
            if ((size_t)n == cap) {
                wsplit *p = realloc(sp, 2 * cap * sizeof *sp);
                if (!p) { free(sp); return qx_fail(e, QX_ENOMEM, "gguf writer: out of memory"); }
                sp = p; cap *= 2;
            }
            if (n == GF_SPLIT_MAX_FILES) {
                free(sp);
                return qx_fail(e, QX_EINVAL, "gguf writer: the split limits make more than %d files", GF_SPLIT_MAX_FILES);
            }
            memset(&sp[n], 0, sizeof *sp);
            sp[n].t0 = sp[n].t1 = i;
            n++;
            cur = 0;
        }
        w->t[i].split = n - 1;
        sp[n - 1].t1 = i + 1;
        cur += nb;
    }
    free(w->splits);
    w->splits = sp;
    w->n_splits = n;
    w->split_keys = n > 1;
    return QX_OK;
}

qx_status gf_writer_plan(gf_writer *w, qx_err *e) {
    if (w->planned) return QX_OK;
    if (w->reserve_xxh3) {
        wkv *old = find_kv(w, GF_KEY_TENSOR_XXH3);
        if (old) QX_TRY(gf_writer_remove_key(w, GF_KEY_TENSOR_XXH3, e));
        uint64_t *zeros = calloc(w->n_t ? w->n_t : 1, sizeof *zeros);
        if (!zeros) return qx_fail(e, QX_ENOMEM, "gguf writer: out of memory");
        qx_status s = gf_writer_set_arr(w, GF_KEY_TENSOR_XXH3, GF_U64, zeros, w->n_t, e);
        free(zeros);
        QX_TRY(s);
    }
    if (w->split_keys || find_kv(w, GF_KEY_SPLIT_NO) || find_kv(w, GF_KEY_SPLIT_COUNT) || find_kv(w, GF_KEY_SPLIT_TENSORS))
        return qx_fail(e, QX_EINVAL, "gguf writer: split.* keys are written by the writer itself (gf_writer_set_split)");
    QX_TRY(cut_splits(w, e));
    uint64_t total = 0;
    for (int k = 0; k < w->n_splits; k++) {
        wsplit *sp = &w->splits[k];
        uint64_t off = 0;
        for (size_t i = sp->t0; i < sp->t1; i++) {
            w->t[i].offset = off;
            if (!qx_add_u64(off, qx_pad(w->t[i].nbytes, w->alignment), &off))
                return qx_fail(e, QX_EINVAL, "gguf writer: tensor '%s': data section size overflows", w->t[i].name);
        }
        sink s = {NULL, 0};
        serialize(w, k, &s, k == 0 ? w->kv : NULL);
        sp->header_size = s.pos;
        sp->data_offset = qx_pad(s.pos, w->alignment);
        if (!qx_add_u64(sp->data_offset, off, &sp->file_size) || sp->file_size > (uint64_t)INT64_MAX ||
            !qx_add_u64(total, sp->file_size, &total) || total > (uint64_t)INT64_MAX)
            return qx_fail(e, QX_EINVAL, "gguf writer: file size overflows");
    }
    w->header_size = w->splits[0].header_size;
    w->data_offset = w->splits[0].data_offset;
    w->file_size = total;
    w->planned = true;
    return QX_OK;
}

uint64_t gf_writer_header_size(const gf_writer *w) { return w->header_size; }
uint64_t gf_writer_data_offset(const gf_writer *w) { return w->data_offset; }
uint64_t gf_writer_file_size(const gf_writer *w) { return w->file_size; }
uint64_t gf_writer_tensor_offset(const gf_writer *w, size_t i) { return w->splits[w->t[i].split].data_offset + w->t[i].offset; }
uint64_t gf_writer_tensor_nbytes(const gf_writer *w, size_t i) { return w->t[i].nbytes; }
const char *gf_writer_tensor_name(const gf_writer *w, size_t i) { return w->t[i].name; }
int gf_writer_split_count(const gf_writer *w) { return w->planned ? w->n_splits : 1; }
int gf_writer_tensor_split(const gf_writer *w, size_t i) { return w->planned ? w->t[i].split : 0; }
uint64_t gf_writer_split_size(const gf_writer *w, int k) { return w->planned && k >= 0 && k < w->n_splits ? w->splits[k].file_size : 0; }

static qx_status header_bytes_at(const gf_writer *w, int k, uint8_t **out, qx_err *e) {
    *out = NULL;
    if (!w->planned) return qx_fail(e, QX_EINVAL, "gguf writer: header requested before the plan");
    if (k < 0 || k >= w->n_splits) return qx_fail(e, QX_EINVAL, "gguf writer: file %d of a set of %d", k, w->n_splits);
    const wsplit *sp = &w->splits[k];
    uint8_t *b = malloc(sp->data_offset ? (size_t)sp->data_offset : 1);
    if (!b) return qx_fail(e, QX_ENOMEM, "gguf writer: out of memory (%llu byte header)", (unsigned long long)sp->data_offset);
    sink s = {b, 0};
    serialize(w, k, &s, NULL);
    memset(b + s.pos, 0, (size_t)(sp->data_offset - s.pos));
    *out = b;
    return QX_OK;
}

qx_status gf_writer_header_bytes(const gf_writer *w, uint8_t **out, uint64_t *len, qx_err *e) {
    QX_TRY(header_bytes_at(w, 0, out, e));
    *len = w->header_size;
    return QX_OK;
}

static qx_status io_fail(qx_err *e, int er, const char *label, const char *what) {
    qx_status code = (er == ENOSPC || er == EFBIG || er == EDQUOT) ? QX_ENOSPC : QX_EIO;
    return qx_fail(e, code, "%s: %s: %s", label, what, strerror(er));
}

/* pwrite of the whole range, retrying short writes and EINTR. */
static int pwrite_all(int fd, const void *buf, uint64_t n, uint64_t off) {
    const uint8_t *p = buf;
    while (n > 0) {
        size_t chunk = n > (1u << 30) ? (1u << 30) : (size_t)n;
        ssize_t k = pwrite(fd, p, chunk, (off_t)off);
        if (k < 0) { if (errno == EINTR) continue; return errno; }
        if (k == 0) return EIO;
        p += k; off += (uint64_t)k; n -= (uint64_t)k;
    }
    return 0;
}

static qx_status write_hdr(const gf_writer *w, int k, int fd, const char *label, bool resize, qx_err *e) {
    const char *lb = label ? label : "(gguf)";
    uint8_t *b;
    QX_TRY(header_bytes_at(w, k, &b, e));
    int er = pwrite_all(fd, b, w->splits[k].data_offset, 0);
    free(b);
    if (er) return io_fail(e, er, lb, "writing the GGUF header");
    if (resize && ftruncate(fd, (off_t)w->splits[k].file_size) != 0)
        return io_fail(e, errno, lb, "sizing the file");
    return QX_OK;
}

qx_status gf_writer_write_header(const gf_writer *w, int fd, const char *label, qx_err *e) {
    return write_hdr(w, 0, fd, label, true, e);
}

qx_status gf_writer_rewrite_header(const gf_writer *w, int fd, const char *label, qx_err *e) {
    return write_hdr(w, 0, fd, label, false, e);
}

qx_status gf_writer_write_header_at(const gf_writer *w, int k, int fd, const char *label, qx_err *e) {
    return write_hdr(w, k, fd, label, true, e);
}

qx_status gf_writer_rewrite_header_at(const gf_writer *w, int k, int fd, const char *label, qx_err *e) {
    return write_hdr(w, k, fd, label, false, e);
}

qx_status gf_writer_pwrite(const gf_writer *w, int fd, const char *label, size_t i, uint64_t off,
                           const void *buf, uint64_t n, qx_err *e) {
    const char *lb = label ? label : "(gguf)";
    if (!w->planned) return qx_fail(e, QX_EINVAL, "%s: tensor data written before the plan", lb);
    if (i >= w->n_t) return qx_fail(e, QX_EINVAL, "%s: tensor index %zu out of range (%zu tensors)", lb, i, w->n_t);
    const wtensor *t = &w->t[i];
    if (off > t->nbytes || n > t->nbytes - off)
        return qx_fail(e, QX_EINVAL, "%s: tensor '%s': write [%llu, +%llu) past its %llu bytes", lb, t->name,
                       (unsigned long long)off, (unsigned long long)n, (unsigned long long)t->nbytes);
    int er = pwrite_all(fd, buf, n, w->splits[t->split].data_offset + t->offset + off);
    if (er) {
        char what[GF_NAME_MAX + 32];
        snprintf(what, sizeof what, "writing tensor '%s'", t->name);
        return io_fail(e, er, lb, what);
    }
    return QX_OK;
}

qx_status gf_writer_set_u64_array_elem(gf_writer *w, const char *key, uint64_t i, uint64_t v, qx_err *e) {
    wkv *kv = find_kv(w, key);
    if (!kv) return qx_fail(e, QX_ENOTFOUND, "gguf writer: key '%s' not set", key);
    if (kv->type != GF_ARRAY || kv->arr_type != GF_U64)
        return qx_fail(e, QX_EINVAL, "gguf writer: key '%s' is not a u64 array", key);
    if (i >= kv->n) return qx_fail(e, QX_EINVAL, "gguf writer: key '%s': index %llu >= %llu", key, (unsigned long long)i,
                                   (unsigned long long)kv->n);
    ((uint64_t *)kv->arr)[i] = v;
    return QX_OK;
}

qx_status gf_writer_set_checksum(gf_writer *w, size_t tensor, uint64_t xxh3, qx_err *e) {
    if (!w->planned || !w->reserve_xxh3)
        return qx_fail(e, QX_EINVAL, "gguf writer: checksums not reserved (or not planned yet)");
    return gf_writer_set_u64_array_elem(w, GF_KEY_TENSOR_XXH3, tensor, xxh3, e);
}

qx_status gf_writer_write_file(gf_writer *w, const char *path, const void *const *data, qx_err *e) {
    QX_TRY(gf_writer_plan(w, e));
    if (w->n_splits > 1) return qx_fail(e, QX_EINVAL, "%s: gf_writer_write_file writes one file; this plan is a set of %d", path, w->n_splits);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return qx_fail(e, errno == ENOENT ? QX_ENOTFOUND : QX_EIO, "%s: %s", path, strerror(errno));
    qx_status s = gf_writer_write_header(w, fd, path, e);
    for (size_t i = 0; s == QX_OK && i < w->n_t; i++) {
        if (w->t[i].nbytes == 0) continue;
        if (!data || !data[i]) { s = qx_fail(e, QX_EINVAL, "%s: tensor '%s': no data given", path, w->t[i].name); break; }
        s = gf_writer_pwrite(w, fd, path, i, 0, data[i], w->t[i].nbytes, e);
        if (s == QX_OK && w->reserve_xxh3) s = gf_writer_set_checksum(w, i, gf_checksum(data[i], w->t[i].nbytes), e);
    }
    if (s == QX_OK && w->reserve_xxh3) s = gf_writer_rewrite_header(w, fd, path, e);
    if (s == QX_OK && fsync(fd) != 0) s = io_fail(e, errno, path, "fsync");
    if (close(fd) != 0 && s == QX_OK) s = io_fail(e, errno, path, "close");
    return s;
}
