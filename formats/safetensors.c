/* formats/safetensors.c — safetensors files and sharded HF checkpoints: header and index
 * parsing with full validation, mmapped tensor views, FP8 scale companions, row decoding.
 * Not here: writing (safetensors_write.c), config.json (hf_config.c). */
#include "formats.h"
#include "limits.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const struct { const char *name; int size; qt_type qt; bool is_float; } dtypes[ST_DTYPE_COUNT] = {
    [ST_F64] = {"F64", 8, QT_F64, false},   [ST_F32] = {"F32", 4, QT_F32, true},
    [ST_F16] = {"F16", 2, QT_F16, true},    [ST_BF16] = {"BF16", 2, QT_BF16, true},
    [ST_F8_E4M3] = {"F8_E4M3", 1, QT_F8_E4M3, true}, [ST_F8_E5M2] = {"F8_E5M2", 1, QT_F8_E5M2, true},
    [ST_I64] = {"I64", 8, QT_I64, false},   [ST_I32] = {"I32", 4, QT_I32, false},
    [ST_I16] = {"I16", 2, QT_I16, false},   [ST_I8] = {"I8", 1, QT_I8, false},
    [ST_U8] = {"U8", 1, QT_I8, false},      [ST_BOOL] = {"BOOL", 1, QT_I8, false},
    [ST_F8_E8M0] = {"F8_E8M0", 1, QT_I8, false},
    /* logical only (size: bytes per element rounded up, for progress accounting) */
    [ST_I4_PACKED] = {"I4_PACKED", 1, QT_I8, false},
    [ST_FP4_PACKED] = {"FP4_PACKED", 1, QT_I8, false},
};

const char *st_dtype_name(st_dtype d) { return (unsigned)d < ST_DTYPE_COUNT ? dtypes[d].name : "?"; }
int st_dtype_size(st_dtype d) { return (unsigned)d < ST_DTYPE_COUNT ? dtypes[d].size : 0; }

bool st_dtype_from_name(const char *s, st_dtype *out) {
    for (int i = 0; i < ST_I4_PACKED; i++)
        if (!strcmp(s, dtypes[i].name)) { *out = (st_dtype)i; return true; }
    return false;
}

bool st_dtype_to_qt(st_dtype d, qt_type *out) {
    if ((unsigned)d >= ST_DTYPE_COUNT || !dtypes[d].is_float) return false;
    *out = dtypes[d].qt;
    return true;
}

/* ---------------- header parsing (memory only; fuzzed) ---------------- */

void st_entries_free(st_entry *entries, size_t n) {
    if (!entries) return;
    for (size_t i = 0; i < n; i++) free(entries[i].name);
    free(entries);
}

static int cmp_entry_begin(const void *a, const void *b) {
    const st_entry *x = *(const st_entry *const *)a, *y = *(const st_entry *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static qx_status parse_one(const char *label, const char *name, json_t *v, uint64_t data_len,
                           st_entry *out, qx_err *e) {
    if (strlen(name) >= ST_MAX_NAME)
        return qx_fail(e, QX_EFORMAT, "%s: tensor name longer than %d bytes", label, ST_MAX_NAME);
    if (!json_is_object(v)) return qx_fail(e, QX_EFORMAT, "%s: tensor '%s': entry is not an object", label, name);
    json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape"), *jo = json_object_get(v, "data_offsets");
    if (!json_is_string(jd)) return qx_fail(e, QX_EFORMAT, "%s: tensor '%s': missing dtype", label, name);
    if (!st_dtype_from_name(json_string_value(jd), &out->dtype))
        return qx_fail(e, QX_EFORMAT, "%s: tensor '%s': unknown dtype '%s'", label, name, json_string_value(jd));
    if (!json_is_array(js)) return qx_fail(e, QX_EFORMAT, "%s: tensor '%s': missing shape", label, name);
    size_t nd = json_array_size(js);
    if (nd > ST_MAX_DIMS) return qx_fail(e, QX_EFORMAT, "%s: tensor '%s': %zu dims (max %d)", label, name, nd, ST_MAX_DIMS);
    uint64_t nel = 1;
    out->n_dims = (int)nd;
    for (size_t i = 0; i < nd; i++) {
        json_t *x = json_array_get(js, i);
        if (!json_is_integer(x) || json_integer_value(x) < 0)
            return qx_fail(e, QX_EFORMAT, "%s: tensor '%s': shape[%zu] is not a non-negative integer", label, name, i);
        out->shape[i] = json_integer_value(x);
        if (!qx_mul_u64(nel, (uint64_t)out->shape[i], &nel))
            return qx_fail(e, QX_EFORMAT, "%s: tensor '%s': shape overflows", label, name);
    }
    if (!json_is_array(jo) || json_array_size(jo) != 2 || !json_is_integer(json_array_get(jo, 0)) ||
        !json_is_integer(json_array_get(jo, 1)))
        return qx_fail(e, QX_EFORMAT, "%s: tensor '%s': data_offsets must be [begin, end]", label, name);
    json_int_t b = json_integer_value(json_array_get(jo, 0)), en = json_integer_value(json_array_get(jo, 1));
    if (b < 0 || en < b) return qx_fail(e, QX_EFORMAT, "%s: tensor '%s': data_offsets [%lld, %lld] invalid", label, name, (long long)b, (long long)en);
    if ((uint64_t)en > data_len)
        return qx_fail(e, QX_EFORMAT, "%s: tensor '%s': data_offsets end %lld past data size %llu", label, name,
                       (long long)en, (unsigned long long)data_len);
    uint64_t nbytes;
    if (!qx_mul_u64(nel, (uint64_t)st_dtype_size(out->dtype), &nbytes))
        return qx_fail(e, QX_EFORMAT, "%s: tensor '%s': byte size overflows", label, name);
    if (nbytes != (uint64_t)(en - b))
        return qx_fail(e, QX_EFORMAT, "%s: tensor '%s': shape x %s = %llu bytes but data_offsets span %lld", label, name,
                       st_dtype_name(out->dtype), (unsigned long long)nbytes, (long long)(en - b));
    out->begin = (uint64_t)b;
    out->end = (uint64_t)en;
    out->name = strdup(name);
    return out->name ? QX_OK : qx_fail(e, QX_ENOMEM, "%s: out of memory", label);
}

qx_status st_parse_header(const char *json, uint64_t json_len, uint64_t data_len, const char *label,
                          st_entry **entries, size_t *n_entries, qx_err *e) {
    *entries = NULL;
    *n_entries = 0;
    json_error_t je;
    json_t *root = json_loadb(json, json_len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    if (!root) {
        if (strstr(je.text, "duplicate"))
            return qx_fail(e, QX_EFORMAT, "%s: header: %s", label, je.text);
        return qx_fail(e, QX_EFORMAT, "%s: header is not valid JSON: %s (line %d)", label, je.text, je.line);
    }
    if (!json_is_object(root)) { json_decref(root); return qx_fail(e, QX_EFORMAT, "%s: header is not a JSON object", label); }
    size_t cap = json_object_size(root);
    st_entry *ents = calloc(cap ? cap : 1, sizeof *ents);
    if (!ents) { json_decref(root); return qx_fail(e, QX_ENOMEM, "%s: out of memory", label); }
    size_t n = 0;
    qx_status s = QX_OK;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (!strcmp(key, "__metadata__")) {
            if (!json_is_object(val)) { s = qx_fail(e, QX_EFORMAT, "%s: __metadata__ is not an object", label); break; }
            continue;
        }
        s = parse_one(label, key, val, data_len, &ents[n], e);
        if (s != QX_OK) break;
        n++;
    }
    json_decref(root);
    if (s == QX_OK && n > 1) {
        const st_entry **by = malloc(n * sizeof *by);
        if (!by) s = qx_fail(e, QX_ENOMEM, "%s: out of memory", label);
        for (size_t i = 0; s == QX_OK && i < n; i++) by[i] = &ents[i];
        if (s == QX_OK) {
            qsort(by, n, sizeof *by, cmp_entry_begin);
            for (size_t i = 1; i < n; i++) {
                if (by[i]->begin < by[i - 1]->end && by[i]->begin != by[i]->end) {
                    s = qx_fail(e, QX_EFORMAT, "%s: tensors '%s' and '%s' overlap in the data section", label,
                                by[i - 1]->name, by[i]->name);
                    break;
                }
            }
        }
        free(by);
    }
    if (s != QX_OK) { st_entries_free(ents, n); return s; }
    *entries = ents;
    *n_entries = n;
    return QX_OK;
}

/* ---------------- index parsing ---------------- */

void st_index_free(st_index_entry *entries, size_t n) {
    if (!entries) return;
    for (size_t i = 0; i < n; i++) { free(entries[i].name); free(entries[i].shard); }
    free(entries);
}

qx_status st_parse_index(const char *json, size_t len, const char *label,
                         st_index_entry **entries, size_t *n_entries, qx_err *e) {
    *entries = NULL;
    *n_entries = 0;
    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) return qx_fail(e, QX_EFORMAT, "%s: not valid JSON: %s (line %d)", label, je.text, je.line);
    json_t *wm = json_object_get(root, "weight_map");
    if (!json_is_object(wm)) { json_decref(root); return qx_fail(e, QX_EFORMAT, "%s: missing \"weight_map\" object", label); }
    size_t cap = json_object_size(wm), n = 0;
    st_index_entry *ents = calloc(cap ? cap : 1, sizeof *ents);
    qx_status s = ents ? QX_OK : qx_fail(e, QX_ENOMEM, "%s: out of memory", label);
    const char *key;
    json_t *val;
    json_object_foreach(wm, key, val) {
        if (s != QX_OK) break;
        const char *sh = json_string_value(val);
        if (!sh) { s = qx_fail(e, QX_EFORMAT, "%s: weight_map['%s'] is not a string", label, key); break; }
        if (!*sh || strchr(sh, '/') || !strcmp(sh, "..")) {
            s = qx_fail(e, QX_EFORMAT, "%s: weight_map['%s'] names an invalid shard '%s'", label, key, sh);
            break;
        }
        ents[n].name = strdup(key);
        ents[n].shard = strdup(sh);
        n++;
        if (!ents[n - 1].name || !ents[n - 1].shard) s = qx_fail(e, QX_ENOMEM, "%s: out of memory", label);
    }
    json_decref(root);
    if (s != QX_OK) { st_index_free(ents, n); return s; }
    *entries = ents;
    *n_entries = n;
    return QX_OK;
}

/* ---------------- the model ---------------- */

typedef struct {
    char *path;
    qx_map map;
    uint64_t data_start;     /* 8 + header length */
} st_shard;

struct st_model {
    char *dir;
    st_shard *shards;
    int n_shards;
    st_tensor *tensors;      /* sorted by name */
    char **names;            /* owned name strings */
    size_t n_tensors;
};

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

void st_close(st_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n_shards; i++) { qx_map_close(&m->shards[i].map); free(m->shards[i].path); }
    for (size_t i = 0; i < m->n_tensors; i++) free(m->names[i]);
    free(m->names);
    free(m->shards);
    free(m->tensors);
    free(m->dir);
    free(m);
}

/* Parses one mapped shard and appends its tensors to m. */
static qx_status add_shard(st_model *m, int si, const uint8_t *buf, uint64_t len, const char *label, qx_err *e) {
    if (len < 8) return qx_fail(e, QX_EFORMAT, "%s: file is %llu bytes, too short for a safetensors header", label, (unsigned long long)len);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | buf[i];
    if (hl > ST_MAX_HEADER_BYTES)
        return qx_fail(e, QX_EFORMAT, "%s: header length %llu exceeds the %llu-byte limit", label, (unsigned long long)hl, (unsigned long long)ST_MAX_HEADER_BYTES);
    if (hl > len - 8)
        return qx_fail(e, QX_EFORMAT, "%s: header length %llu past end of file (%llu bytes): truncated?", label,
                       (unsigned long long)hl, (unsigned long long)len);
    st_entry *ents;
    size_t n;
    QX_TRY(st_parse_header((const char *)buf + 8, hl, len - 8 - hl, label, &ents, &n, e));
    st_tensor *nt = realloc(m->tensors, (m->n_tensors + n + 1) * sizeof *nt);
    char **nn = nt ? realloc(m->names, (m->n_tensors + n + 1) * sizeof *nn) : NULL;
    if (nt) m->tensors = nt;
    if (nn) m->names = nn;
    if (!nt || !nn) { st_entries_free(ents, n); return qx_fail(e, QX_ENOMEM, "%s: out of memory", label); }
    for (size_t i = 0; i < n; i++) {
        st_tensor *t = &m->tensors[m->n_tensors];
        memset(t, 0, sizeof *t);
        m->names[m->n_tensors] = ents[i].name;
        ents[i].name = NULL;
        t->name = m->names[m->n_tensors];
        t->dtype = ents[i].dtype;
        t->n_dims = ents[i].n_dims;
        memcpy(t->shape, ents[i].shape, sizeof t->shape);
        t->n_elems = 1;
        for (int d = 0; d < t->n_dims; d++) t->n_elems *= (uint64_t)t->shape[d];
        t->nbytes = ents[i].end - ents[i].begin;
        t->offset = 8 + hl + ents[i].begin;
        t->data = t->nbytes ? buf + t->offset : NULL;
        t->shard = si;
        m->n_tensors++;
    }
    st_entries_free(ents, n);
    if (si < m->n_shards) m->shards[si].data_start = 8 + hl;
    return QX_OK;
}

static qx_status sort_unique(st_model *m, qx_err *e) {
    /* sorting moves structs; names stay owned by m->names (pointer copies). */
    qsort(m->tensors, m->n_tensors, sizeof *m->tensors, cmp_tensor_name);
    for (size_t i = 1; i < m->n_tensors; i++)
        if (!strcmp(m->tensors[i].name, m->tensors[i - 1].name))
            return qx_fail(e, QX_EFORMAT, "tensor '%s' appears in both %s and %s", m->tensors[i].name,
                           st_shard_path(m, m->tensors[i - 1].shard), st_shard_path(m, m->tensors[i].shard));
    return QX_OK;
}

static bool has_suffix(const char *s, const char *suf) {
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && !strcmp(s + n - k, suf);
}

/* Checks one pack-quantized triple around `packed` (X.weight_packed) and fills the logical
 * tensor X.weight in *out (name not set).  Reads the 2 values of X.weight_shape. */
static qx_status packed_weight(const st_model *m, const st_tensor *p, st_tensor *out, qx_err *e) {
    char base[ST_MAX_NAME], buf[ST_MAX_NAME + 32];
    const char *file = st_shard_path(m, p->shard);
    snprintf(base, sizeof base, "%.*s", (int)(strlen(p->name) - strlen("_packed")), p->name);
    if (p->dtype != ST_I32 || p->n_dims != 2)
        return qx_fail(e, QX_ESHAPE, "%s: tensor '%s': %s %d-D, pack-quantized weights are I32 2-D", file, p->name,
                       st_dtype_name(p->dtype), p->n_dims);
    snprintf(buf, sizeof buf, "%s_zero_point", base);
    if (st_find(m, buf)) return qx_fail(e, QX_EUNSUPPORTED, "%s: tensor '%s': asymmetric INT4 (zero points) is not supported", file, buf);
    snprintf(buf, sizeof buf, "%s_shape", base);
    const st_tensor *sh = st_find(m, buf);
    if (!sh) return qx_fail(e, QX_ENOTFOUND, "%s: tensor '%s' has no '%s'", file, p->name, buf);
    if ((sh->dtype != ST_I32 && sh->dtype != ST_I64) || sh->n_elems != 2 || !sh->data)
        return qx_fail(e, QX_ESHAPE, "%s: tensor '%s': %s with %llu elements, expected I32/I64 [2]", st_shard_path(m, sh->shard),
                       buf, st_dtype_name(sh->dtype), (unsigned long long)sh->n_elems);
    /* read with pread, not through the mapping: touching one page per weight of a 1T
     * checkpoint (69,120 experts x 3) would keep ~280 MB of file pages resident */
    uint8_t raw[16];
    int fd = m->shards[sh->shard].map.fd;
    if (fd >= 0) {
        if (pread(fd, raw, (size_t)sh->nbytes, (off_t)sh->offset) != (ssize_t)sh->nbytes)
            return qx_fail(e, QX_EIO, "%s: tensor '%s': cannot read", st_shard_path(m, sh->shard), buf);
    } else {
        memcpy(raw, sh->data, (size_t)sh->nbytes);
    }
    int64_t dims[2];
    for (int i = 0; i < 2; i++) {
        int64_t v = 0;
        if (sh->dtype == ST_I32) { int32_t x; memcpy(&x, raw + 4 * i, 4); v = x; }
        else memcpy(&v, raw + 8 * i, 8);
        dims[i] = v;
    }
    if (dims[0] <= 0 || dims[1] <= 0 || dims[0] > (1LL << 40) || dims[1] > (1LL << 40))
        return qx_fail(e, QX_ESHAPE, "%s: tensor '%s': weight_shape [%lld, %lld] is not a positive shape", st_shard_path(m, sh->shard),
                       buf, (long long)dims[0], (long long)dims[1]);
    if (p->shape[0] != dims[0] || p->shape[1] != (dims[1] + 7) / 8)
        return qx_fail(e, QX_ESHAPE, "%s: tensor '%s': packed shape [%lld, %lld], weight_shape [%lld, %lld] needs [%lld, %lld]", file,
                       p->name, (long long)p->shape[0], (long long)p->shape[1], (long long)dims[0], (long long)dims[1],
                       (long long)dims[0], (long long)((dims[1] + 7) / 8));
    snprintf(buf, sizeof buf, "%s_scale", base);
    const st_tensor *sc = st_find(m, buf);
    if (!sc) return qx_fail(e, QX_ENOTFOUND, "%s: tensor '%s' has no '%s'", file, p->name, buf);
    if ((sc->dtype != ST_BF16 && sc->dtype != ST_F16 && sc->dtype != ST_F32) || sc->n_dims != 2 || sc->shape[0] != dims[0] ||
        sc->shape[1] <= 0 || dims[1] % sc->shape[1] != 0 || (dims[1] / sc->shape[1]) % 8 != 0)
        return qx_fail(e, QX_ESHAPE, "%s: tensor '%s': %s [%lld, %lld] is not a group scale grid for weight [%lld, %lld]",
                       st_shard_path(m, sc->shard), buf, st_dtype_name(sc->dtype), (long long)sc->shape[0],
                       (long long)(sc->n_dims > 1 ? sc->shape[1] : 0), (long long)dims[0], (long long)dims[1]);
    memset(out, 0, sizeof *out);
    out->dtype = ST_I4_PACKED;
    out->n_dims = 2;
    out->shape[0] = dims[0];
    out->shape[1] = dims[1];
    out->n_elems = (uint64_t)dims[0] * (uint64_t)dims[1];
    out->nbytes = p->nbytes;
    out->offset = p->offset;
    out->data = p->data;
    out->shard = p->shard;
    out->group = dims[1] / sc->shape[1];
    return QX_OK;
}

/* Adds the logical X.weight of every pack-quantized triple, then re-sorts (scale links are
 * made after this, by name). */
static qx_status add_packed(st_model *m, qx_err *e) {
    size_t n0 = m->n_tensors, n_new = 0;
    for (size_t i = 0; i < n0; i++) n_new += has_suffix(m->tensors[i].name, ".weight_packed");
    if (!n_new) return QX_OK;
    st_tensor *vt = calloc(n_new, sizeof *vt);
    char **vn = calloc(n_new, sizeof *vn);
    qx_status s = vt && vn ? QX_OK : qx_fail(e, QX_ENOMEM, "out of memory");
    size_t k = 0;
    for (size_t i = 0; s == QX_OK && i < n0; i++) {
        const st_tensor *p = &m->tensors[i];
        if (!has_suffix(p->name, ".weight_packed")) continue;
        s = packed_weight(m, p, &vt[k], e);
        if (s == QX_OK && !(vn[k] = strndup(p->name, strlen(p->name) - strlen("_packed")))) s = qx_fail(e, QX_ENOMEM, "out of memory");
        if (s == QX_OK) vt[k].name = vn[k];
        k++;
    }
    if (s == QX_OK) {
        st_tensor *nt = realloc(m->tensors, (n0 + n_new) * sizeof *nt);
        if (nt) m->tensors = nt;
        char **nn = nt ? realloc(m->names, (n0 + n_new) * sizeof *nn) : NULL;
        if (nn) m->names = nn;
        if (!nt || !nn) s = qx_fail(e, QX_ENOMEM, "out of memory");
    }
    if (s == QX_OK) {
        memcpy(m->tensors + n0, vt, n_new * sizeof *vt);
        memcpy(m->names + n0, vn, n_new * sizeof *vn);
        m->n_tensors += n_new;
        s = sort_unique(m, e);
    } else {
        for (size_t i = 0; vn && i < n_new; i++) free(vn[i]);
    }
    free(vt);
    free(vn);
    return s;
}

/* Multimodal checkpoints (Kimi-K2.5) keep the text model under this prefix; it is dropped from
 * every name, as llama.cpp's converter drops it (conversion/base.py, filter_tensors). */
#define ST_LM_PREFIX "language_model."

static const char *lm_name(const char *name) {
    return strncmp(name, ST_LM_PREFIX, sizeof ST_LM_PREFIX - 1) ? name : name + sizeof ST_LM_PREFIX - 1;
}

/* Drops ST_LM_PREFIX (names point into their own strings, still owned by m->names) and
 * re-sorts; a name that then exists twice is QX_EFORMAT. */
static qx_status strip_lm_prefix(st_model *m, qx_err *e) {
    size_t n = 0;
    for (size_t i = 0; i < m->n_tensors; i++)
        if (lm_name(m->tensors[i].name) != m->tensors[i].name) { m->tensors[i].name = lm_name(m->tensors[i].name); n++; }
    if (!n) return QX_OK;
    qsort(m->tensors, m->n_tensors, sizeof *m->tensors, cmp_tensor_name);
    for (size_t i = 1; i < m->n_tensors; i++)
        if (!strcmp(m->tensors[i].name, m->tensors[i - 1].name))
            return qx_fail(e, QX_EFORMAT, "%s: tensor '%s' exists both with and without the '" ST_LM_PREFIX "' prefix",
                           st_shard_path(m, m->tensors[i].shard), m->tensors[i].name);
    return QX_OK;
}

/* DeepSeek-V4: `<base>.weight` with a `<base>.scale` in F8_E8M0.  An FP8 weight gets the scale
 * as its 128x128 grid; an I8/U8 weight [rows, k] with a [rows, 2k/32] scale becomes the FP4
 * weight [rows, 2k] (ST_FP4_PACKED, in place: it stays the stored tensor of its name). */
static qx_status link_v4_scale(st_model *m, st_tensor *t, qx_err *e) {
    char buf[ST_MAX_NAME + 16];
    size_t n = strlen(t->name);
    if (!has_suffix(t->name, ".weight") || n - strlen(".weight") + strlen(".scale") >= sizeof buf) return QX_OK;
    snprintf(buf, sizeof buf, "%.*s.scale", (int)(n - strlen(".weight")), t->name);
    const st_tensor *s = st_find(m, buf);
    if (!s || s->dtype != ST_F8_E8M0) return QX_OK;
    const char *file = st_shard_path(m, s->shard);
    int64_t rows = t->n_dims == 2 ? t->shape[0] : 0, cols = t->n_dims == 2 ? t->shape[1] : 0;
    int64_t s0 = s->n_dims == 2 ? s->shape[0] : -1, s1 = s->n_dims == 2 ? s->shape[1] : -1;
    if (t->dtype == ST_F8_E4M3) {
        int64_t w0 = (rows + ST_FP8_BLOCK - 1) / ST_FP8_BLOCK, w1 = (cols + ST_FP8_BLOCK - 1) / ST_FP8_BLOCK;
        if (t->n_dims != 2 || s0 != w0 || s1 != w1)
            return qx_fail(e, QX_ESHAPE, "%s: tensor '%s': F8_E8M0 [%lld, %lld], expected [%lld, %lld] for the FP8 weight [%lld, %lld]",
                           file, s->name, (long long)s0, (long long)s1, (long long)w0, (long long)w1, (long long)rows, (long long)cols);
        t->scale_inv = s;
        return QX_OK;
    }
    if (t->dtype == ST_I8 || t->dtype == ST_U8) {
        if (t->n_dims != 2 || (2 * cols) % ST_FP4_GROUP != 0 || s0 != rows || s1 != 2 * cols / ST_FP4_GROUP)
            return qx_fail(e, QX_ESHAPE, "%s: tensor '%s': F8_E8M0 [%lld, %lld] is not the group-%d scale of an FP4 weight packed as %s [%lld, %lld]",
                           file, s->name, (long long)s0, (long long)s1, ST_FP4_GROUP, st_dtype_name(t->dtype), (long long)rows, (long long)cols);
        t->dtype = ST_FP4_PACKED;
        t->shape[1] = 2 * cols;
        t->n_elems = (uint64_t)rows * (uint64_t)(2 * cols);
        t->group = ST_FP4_GROUP;
        t->scale_inv = s;
        return QX_OK;
    }
    return qx_fail(e, QX_ESHAPE, "%s: tensor '%s' is %s beside the F8_E8M0 scale '%s' (expected F8_E4M3, or I8/U8 packed FP4)",
                   st_shard_path(m, t->shard), t->name, st_dtype_name(t->dtype), s->name);
}

/* Sorts tensors, rejects duplicates across shards, drops the language_model. prefix, builds the
 * logical INT4 weights, links FP8 weights to their scales and INT4 weights to their group
 * scales. */
static qx_status finish_model(st_model *m, qx_err *e) {
    QX_TRY(sort_unique(m, e));
    QX_TRY(strip_lm_prefix(m, e));
    QX_TRY(add_packed(m, e));
    char buf[ST_MAX_NAME + 16];
    for (size_t i = 0; i < m->n_tensors; i++) {
        st_tensor *t = &m->tensors[i];
        if (t->dtype != ST_I4_PACKED) continue;
        snprintf(buf, sizeof buf, "%s_scale", t->name);
        t->scale_inv = st_find(m, buf);
    }
    for (size_t i = 0; i < m->n_tensors; i++) QX_TRY(link_v4_scale(m, &m->tensors[i], e));
    for (size_t i = 0; i < m->n_tensors; i++) {
        st_tensor *t = &m->tensors[i];
        if (t->dtype != ST_F8_E4M3 && t->dtype != ST_F8_E5M2) continue;
        snprintf(buf, sizeof buf, "%s_scale_inv", t->name);
        const st_tensor *s = st_find(m, buf);
        if (!s) continue;
        int64_t rows = t->n_dims >= 1 ? t->shape[0] : 1, cols = t->n_dims >= 2 ? t->shape[1] : 1;
        if (t->n_dims == 1) { cols = rows; rows = 1; }
        int64_t want0 = (rows + ST_FP8_BLOCK - 1) / ST_FP8_BLOCK, want1 = (cols + ST_FP8_BLOCK - 1) / ST_FP8_BLOCK;
        bool ok = s->dtype == ST_F32 && t->n_dims == 2 && s->n_dims == 2 && s->shape[0] == want0 && s->shape[1] == want1;
        if (!ok)
            return qx_fail(e, QX_ESHAPE, "%s: tensor '%s': %s [%lld, %lld] expected F32 [%lld, %lld] for weight [%lld, %lld]",
                           st_shard_path(m, s->shard), s->name, st_dtype_name(s->dtype),
                           (long long)s->shape[0], (long long)(s->n_dims > 1 ? s->shape[1] : 0),
                           (long long)want0, (long long)want1, (long long)rows, (long long)cols);
        t->scale_inv = s;
    }
    return QX_OK;
}

static qx_status open_shard(st_model *m, const char *path, qx_err *e) {
    int si = m->n_shards;
    st_shard *ns = realloc(m->shards, (size_t)(si + 1) * sizeof *ns);
    if (!ns) return qx_fail(e, QX_ENOMEM, "out of memory");
    m->shards = ns;
    memset(&ns[si], 0, sizeof ns[si]);
    ns[si].map.fd = -1;
    ns[si].path = strdup(path);
    m->n_shards++;
    if (!ns[si].path) return qx_fail(e, QX_ENOMEM, "out of memory");
    QX_TRY(qx_map_open(&ns[si].map, path, e));
    return add_shard(m, si, ns[si].map.data, ns[si].map.size, path, e);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static qx_status open_index(st_model *m, const char *dir, const char *index_path, qx_err *e) {
    char *text;
    size_t len;
    QX_TRY(qx_read_file(index_path, &text, &len, e));
    if (len > ST_MAX_INDEX_BYTES) { free(text); return qx_fail(e, QX_EFORMAT, "%s: index larger than %llu bytes", index_path, (unsigned long long)ST_MAX_INDEX_BYTES); }
    st_index_entry *ie;
    size_t ni;
    qx_status s = st_parse_index(text, len, index_path, &ie, &ni, e);
    free(text);
    if (s != QX_OK) return s;
    /* unique shard names, sorted */
    char **names = malloc((ni ? ni : 1) * sizeof *names);
    if (!names) { st_index_free(ie, ni); return qx_fail(e, QX_ENOMEM, "out of memory"); }
    for (size_t i = 0; i < ni; i++) names[i] = ie[i].shard;
    qsort(names, ni, sizeof *names, cmp_str);
    size_t nu = 0;
    for (size_t i = 0; i < ni; i++) if (nu == 0 || strcmp(names[i], names[nu - 1])) names[nu++] = names[i];
    if (nu > ST_MAX_SHARDS) s = qx_fail(e, QX_EFORMAT, "%s: %zu shards exceeds limit %d", index_path, nu, ST_MAX_SHARDS);
    char path[4096];
    for (size_t i = 0; s == QX_OK && i < nu; i++) {
        if (!qx_path_join(path, sizeof path, dir, names[i])) { s = qx_fail(e, QX_EINVAL, "%s: path too long", dir); break; }
        s = open_shard(m, path, e);
        if (s == QX_ENOTFOUND) qx_fail(e, QX_ENOTFOUND, "%s: shard '%s' listed in the index is missing", index_path, names[i]);
    }
    if (s == QX_OK) s = finish_model(m, e);
    for (size_t i = 0; s == QX_OK && i < ni; i++) {
        const st_tensor *t = st_find(m, lm_name(ie[i].name));
        if (!t) { s = qx_fail(e, QX_ENOTFOUND, "%s: tensor '%s' is in the index but not in shard '%s'", index_path, ie[i].name, ie[i].shard); break; }
        const char *sp = st_shard_path(m, t->shard);
        const char *base = strrchr(sp, '/');
        base = base ? base + 1 : sp;
        if (strcmp(base, ie[i].shard)) {
            s = qx_fail(e, QX_EFORMAT, "%s: tensor '%s' is indexed in '%s' but found in '%s'", index_path, ie[i].name, ie[i].shard, base);
            break;
        }
    }
    size_t n_file = 0;   /* tensors stored in the shards (the logical INT4 weights are not) */
    for (size_t i = 0; i < m->n_tensors; i++) n_file += m->tensors[i].dtype != ST_I4_PACKED;
    if (s == QX_OK && n_file != ni) {
        /* some tensor in a shard is not in the index: name the first */
        for (size_t i = 0; i < m->n_tensors; i++) {
            if (m->tensors[i].dtype == ST_I4_PACKED) continue;
            bool found = false;
            for (size_t k = 0; k < ni && !found; k++) found = !strcmp(lm_name(ie[k].name), m->tensors[i].name);
            if (!found) { s = qx_fail(e, QX_EFORMAT, "%s: tensor '%s' is not listed in the index", st_shard_path(m, m->tensors[i].shard), m->tensors[i].name); break; }
        }
    }
    free(names);
    st_index_free(ie, ni);
    return s;
}

qx_status st_open(st_model **out, const char *path, qx_err *e) {
    *out = NULL;
    st_model *m = calloc(1, sizeof *m);
    if (!m) return qx_fail(e, QX_ENOMEM, "out of memory");
    qx_status s;
    char buf[4096];
    if (qx_is_dir(path)) {
        m->dir = strdup(path);
        if (qx_path_join(buf, sizeof buf, path, "model.safetensors.index.json") && access(buf, F_OK) == 0) {
            s = open_index(m, path, buf, e);
        } else if (qx_path_join(buf, sizeof buf, path, "model.safetensors") && access(buf, F_OK) == 0) {
            s = open_shard(m, buf, e);
            if (s == QX_OK) s = finish_model(m, e);
        } else {
            s = qx_fail(e, QX_ENOTFOUND, "%s: no model.safetensors.index.json or model.safetensors", path);
        }
    } else {
        const char *slash = strrchr(path, '/');
        m->dir = slash ? strndup(path, (size_t)(slash - path)) : strdup(".");
        s = open_shard(m, path, e);
        if (s == QX_OK) s = finish_model(m, e);
    }
    if (s != QX_OK) { st_close(m); return s; }
    *out = m;
    return QX_OK;
}

qx_status st_open_mem(st_model **out, const uint8_t *buf, uint64_t len, const char *label, qx_err *e) {
    *out = NULL;
    st_model *m = calloc(1, sizeof *m);
    if (!m) return qx_fail(e, QX_ENOMEM, "out of memory");
    m->shards = calloc(1, sizeof *m->shards);
    m->dir = strdup(".");
    if (!m->shards || !m->dir) { st_close(m); return qx_fail(e, QX_ENOMEM, "out of memory"); }
    m->shards[0].path = strdup(label);
    m->shards[0].map.fd = -1;   /* borrowed buffer: not mapped by us */
    m->n_shards = 1;
    qx_status s = add_shard(m, 0, buf, len, label, e);
    if (s == QX_OK) s = finish_model(m, e);
    if (s != QX_OK) { st_close(m); return s; }
    *out = m;
    return QX_OK;
}

size_t st_count(const st_model *m) { return m->n_tensors; }
const st_tensor *st_at(const st_model *m, size_t i) { return i < m->n_tensors ? &m->tensors[i] : NULL; }
int st_shard_count(const st_model *m) { return m->n_shards; }
const char *st_shard_path(const st_model *m, int i) { return (i >= 0 && i < m->n_shards) ? m->shards[i].path : "?"; }
uint64_t st_shard_size(const st_model *m, int i) { return (i >= 0 && i < m->n_shards) ? m->shards[i].map.size : 0; }
const char *st_model_dir(const st_model *m) { return m->dir; }

const st_tensor *st_find(const st_model *m, const char *name) {
    size_t lo = 0, hi = m->n_tensors;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(m->tensors[mid].name, name);
        if (c == 0) return &m->tensors[mid];
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    return NULL;
}

void st_release(const st_model *m, const st_tensor *t) {
    if (!t || t->shard < 0 || t->shard >= m->n_shards || m->shards[t->shard].map.fd < 0) return;
    qx_map_release(&m->shards[t->shard].map, t->offset, t->nbytes);
}

/* Rows of a logical pack-quantized INT4 weight (checked by packed_weight at open). */
static qx_status int4_rows(const st_tensor *t, int64_t r0, int64_t r1, float *out, qx_err *e) {
    const st_tensor *s = t->scale_inv;
    int64_t cols = t->shape[1], pcols = (cols + 7) / 8, ng = cols / t->group;
    qt_type sq;
    if (!s || t->group <= 0 || !st_dtype_to_qt(s->dtype, &sq))
        return qx_fail(e, QX_EFORMAT, "tensor '%s': INT4 weight without its group scales", t->name);
    float *sc = malloc((size_t)ng * sizeof *sc);
    if (!sc) return qx_fail(e, QX_ENOMEM, "tensor '%s': out of memory", t->name);
    int ssz = st_dtype_size(s->dtype);
    for (int64_t r = r0; r < r1; r++) {
        qt_plain_to_f32(sq, s->data + (uint64_t)r * (uint64_t)ng * (uint64_t)ssz, sc, ng);
        qt_int4_packed_dequant_row(t->data + (uint64_t)r * (uint64_t)pcols * 4, sc, cols, t->group, out + (r - r0) * cols);
    }
    free(sc);
    return QX_OK;
}

/* Rows of an FP8 weight with an E8M0 128x128 grid (DeepSeek-V4): the grid rows it needs are
 * decoded to f32, then as the F32 grids of V3. */
static qx_status fp8_e8m0_rows(const st_tensor *t, int64_t r0, int64_t r1, float *out, qx_err *e) {
    int64_t cols = t->shape[1], sc = (cols + ST_FP8_BLOCK - 1) / ST_FP8_BLOCK;
    int64_t b0 = r0 / ST_FP8_BLOCK, b1 = (r1 + ST_FP8_BLOCK - 1) / ST_FP8_BLOCK;
    if (r0 == r1) return QX_OK;
    float *grid = malloc((size_t)((b1 - b0) * sc) * sizeof *grid);
    if (!grid) return qx_fail(e, QX_ENOMEM, "tensor '%s': out of memory", t->name);
    for (int64_t k = 0; k < (b1 - b0) * sc; k++) grid[k] = qt_e8m0_to_f32(t->scale_inv->data[b0 * sc + k]);
    /* the grid starts at tile row b0: shift the weight and the row range with it */
    int64_t base = b0 * ST_FP8_BLOCK;
    qt_fp8_block_dequant(t->data + (uint64_t)base * (uint64_t)cols, grid, t->shape[0] - base, cols, r0 - base, r1 - base, out);
    free(grid);
    return QX_OK;
}

qx_status st_tensor_rows_f32(const st_tensor *t, int64_t r0, int64_t r1, float *out, qx_err *e) {
    int64_t rows = t->n_dims == 2 ? t->shape[0] : 1;
    int64_t cols = t->n_dims == 2 ? t->shape[1] : (int64_t)t->n_elems;
    if (t->n_dims > 2) return qx_fail(e, QX_EUNSUPPORTED, "tensor '%s': %d-D, rows need a 1-D or 2-D tensor", t->name, t->n_dims);
    if (r0 < 0 || r1 > rows || r0 > r1) return qx_fail(e, QX_EINVAL, "tensor '%s': rows [%lld, %lld) outside [0, %lld)", t->name, (long long)r0, (long long)r1, (long long)rows);
    if (t->dtype == ST_F8_E4M3 && t->scale_inv && t->scale_inv->dtype == ST_F8_E8M0) return fp8_e8m0_rows(t, r0, r1, out, e);
    if (t->dtype == ST_FP4_PACKED) {
        const st_tensor *s = t->scale_inv;
        int64_t ng = cols / ST_FP4_GROUP;
        if (!s || s->dtype != ST_F8_E8M0 || !s->data) return qx_fail(e, QX_EFORMAT, "tensor '%s': FP4 weight without its E8M0 scales", t->name);
        for (int64_t r = r0; r < r1; r++)
            qt_fp4_dequant_row(t->data + (uint64_t)r * (uint64_t)(cols / 2), s->data + (uint64_t)r * (uint64_t)ng, cols, out + (r - r0) * cols);
        return QX_OK;
    }
    if (t->dtype == ST_F8_E4M3 && t->scale_inv) {
        const uint8_t *sd = t->scale_inv->data;
        if (((uintptr_t)sd & 3) == 0) {
            qt_fp8_block_dequant(t->data, (const float *)(const void *)sd, rows, cols, r0, r1, out);
            return QX_OK;
        }
        float *tmp = malloc(t->scale_inv->nbytes ? t->scale_inv->nbytes : 4);  /* unaligned file */
        if (!tmp) return qx_fail(e, QX_ENOMEM, "tensor '%s': out of memory", t->name);
        memcpy(tmp, sd, t->scale_inv->nbytes);
        qt_fp8_block_dequant(t->data, tmp, rows, cols, r0, r1, out);
        free(tmp);
        return QX_OK;
    }
    if ((t->dtype == ST_F8_E4M3 || t->dtype == ST_F8_E5M2) && t->n_dims == 2 && !t->scale_inv)
        return qx_fail(e, QX_EFORMAT, "tensor '%s': FP8 weight without its '%s_scale_inv'", t->name, t->name);
    if (t->dtype == ST_I4_PACKED) return int4_rows(t, r0, r1, out, e);
    qt_type q;
    if (!st_dtype_to_qt(t->dtype, &q))
        return qx_fail(e, QX_EUNSUPPORTED, "tensor '%s': dtype %s is not a float type", t->name, st_dtype_name(t->dtype));
    int sz = st_dtype_size(t->dtype);
    qt_plain_to_f32(q, t->data + (uint64_t)r0 * (uint64_t)cols * (uint64_t)sz, out, (r1 - r0) * cols);
    return QX_OK;
}
