/* formats/imatrix_file.c — importance-matrix statistics: the in-memory im_matrix and its two
 * llama.cpp file formats (contract in formats/formats.h; facts in ../shared/GGUF-DEEPSEEK2.md §7).
 *
 * GGUF imatrix: general.type "imatrix", imatrix.datasets (string array), imatrix.chunk_count
 * and imatrix.chunk_size (u32), qforge.version (the build that wrote it); per weight W two F32 tensors, W.in_sum2 [ne0, nmat] (raw sums
 * of squared inputs) and W.counts [1, nmat] (tokens per matrix); n_dims written the way ggml
 * does (trailing 1s dropped).  Legacy .dat (all little-endian):
 *   i32 n_entries; per entry { i32 len, name[len], i32 ncall, i32 nval, f32 values[nval] }
 *   where values = mean(x²)·ncall; optional trailer { i32 chunk_count, i32 len, dataset[len] }.
 * Readers reject negative, NaN or infinite sums and counts (importance must be >= 0). */
#include "formats.h"
#include "limits.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

qx_status im_create(im_matrix **out, qx_err *e) {
    *out = calloc(1, sizeof **out);
    return *out ? QX_OK : qx_fail(e, QX_ENOMEM, "imatrix: out of memory");
}

void im_free(im_matrix *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n_entries; i++) {
        free(m->entries[i].name);
        free(m->entries[i].in_sum2);
        free(m->entries[i].counts);
        free(m->entries[i].sum_x);
        free(m->entries[i].count_x);
    }
    for (size_t i = 0; i < m->n_datasets; i++) free(m->datasets[i]);
    free(m->datasets);
    free(m->entries);
    free(m);
}

im_entry *im_find(const im_matrix *m, const char *name) {
    for (size_t i = 0; i < m->n_entries; i++)
        if (strcmp(m->entries[i].name, name) == 0) return &m->entries[i];
    return NULL;
}

qx_status im_add(im_matrix *m, const char *name, int64_t ne0, int64_t nmat, im_entry **out, qx_err *e) {
    if (out) *out = NULL;
    if (!name || !name[0]) return qx_fail(e, QX_EINVAL, "imatrix: empty entry name");
    if (ne0 <= 0 || nmat <= 0 || ne0 > INT32_MAX || nmat > INT32_MAX || ne0 * nmat > INT32_MAX)
        return qx_fail(e, QX_EINVAL, "imatrix: entry '%s': bad size ne0 %lld x nmat %lld", name, (long long)ne0, (long long)nmat);
    if (im_find(m, name)) return qx_fail(e, QX_EINVAL, "imatrix: duplicate entry '%s'", name);
    if (m->n_entries == m->cap_entries) {
        size_t cap = m->cap_entries ? m->cap_entries * 2 : 64;
        im_entry *p = realloc(m->entries, cap * sizeof *p);
        if (!p) return qx_fail(e, QX_ENOMEM, "imatrix: out of memory");
        m->entries = p; m->cap_entries = cap;
    }
    im_entry en = {strdup(name), ne0, nmat, calloc((size_t)(ne0 * nmat), sizeof(float)), calloc((size_t)nmat, sizeof(float)),
                   NULL, NULL};
    if (!en.name || !en.in_sum2 || !en.counts) {
        free(en.name); free(en.in_sum2); free(en.counts);
        return qx_fail(e, QX_ENOMEM, "imatrix: entry '%s': out of memory", name);
    }
    m->entries[m->n_entries] = en;
    if (out) *out = &m->entries[m->n_entries];
    m->n_entries++;
    return QX_OK;
}

qx_status im_add_dataset(im_matrix *m, const char *name, qx_err *e) {
    char **p = realloc(m->datasets, (m->n_datasets + 1) * sizeof *p);
    if (!p) return qx_fail(e, QX_ENOMEM, "imatrix: out of memory");
    m->datasets = p;
    if (!(p[m->n_datasets] = strdup(name ? name : ""))) return qx_fail(e, QX_ENOMEM, "imatrix: out of memory");
    m->n_datasets++;
    return QX_OK;
}

qx_status im_entry_reshape(im_entry *en, int64_t ne0, qx_err *e) {
    if (ne0 == en->ne0) return QX_OK;
    if (ne0 <= 0 || en->nmat != 1 || en->ne0 % ne0 != 0)
        return qx_fail(e, QX_ESHAPE, "imatrix: entry '%s' has %lld x %lld values, cannot split into rows of %lld",
                       en->name, (long long)en->nmat, (long long)en->ne0, (long long)ne0);
    int64_t nmat = en->ne0 / ne0;
    float *c = malloc((size_t)nmat * sizeof *c);
    if (!c) return qx_fail(e, QX_ENOMEM, "imatrix: out of memory");
    for (int64_t k = 0; k < nmat; k++) c[k] = en->counts[0];
    free(en->counts);
    en->counts = c;
    en->ne0 = ne0;
    en->nmat = nmat;
    return QX_OK;
}

qx_status im_entry_fit(im_entry *en, bool legacy, int64_t ne0, int64_t nmat, qx_err *e) {
    bool flat = legacy || (en->nmat == 1 && nmat > 1 && en->ne0 == ne0 * nmat);
    if (flat) QX_TRY(im_entry_reshape(en, ne0, e));
    if (en->ne0 != ne0 || (en->nmat != 1 && en->nmat != nmat))
        return qx_fail(e, QX_ESHAPE, "shape [%lld, %lld] does not fit the tensor [%lld, .., %lld]", (long long)en->ne0,
                       (long long)en->nmat, (long long)ne0, (long long)nmat);
    return QX_OK;
}

qx_status im_importance(const im_entry *en, int64_t k, float *out, qx_err *e) {
    if (k < 0 || k >= en->nmat)
        return qx_fail(e, QX_EINVAL, "imatrix: entry '%s': matrix %lld out of range (%lld)", en->name, (long long)k, (long long)en->nmat);
    float c = en->counts[k];
    const float *s = en->in_sum2 + k * en->ne0;
    for (int64_t j = 0; j < en->ne0; j++) out[j] = c > 0 ? s[j] / c : 1.0f;
    return QX_OK;
}

/* ---- exact statistics (shards and qforge merge) ---- */
qx_status im_entry_exact(im_entry *en, qx_err *e) {
    if (en->sum_x) return QX_OK;
    en->sum_x = calloc((size_t)(en->ne0 * en->nmat) * 2, sizeof(uint64_t));
    en->count_x = calloc((size_t)en->nmat, sizeof(uint64_t));
    if (en->sum_x && en->count_x) return QX_OK;
    free(en->sum_x); free(en->count_x);
    en->sum_x = en->count_x = NULL;
    return qx_fail(e, QX_ENOMEM, "imatrix: entry '%s': out of memory", en->name);
}

float im_fx_float(const uint64_t *acc) {
    return (float)((double)acc[1] + (double)acc[0] * 0x1p-64);
}

void im_entry_settle(im_entry *en) {
    if (!en->sum_x) return;
    for (int64_t i = 0; i < en->ne0 * en->nmat; i++) en->in_sum2[i] = im_fx_float(en->sum_x + 2 * i);
    for (int64_t k = 0; k < en->nmat; k++) en->counts[k] = (float)en->count_x[k];
}

void im_drop_exact(im_matrix *m) {
    for (size_t i = 0; i < m->n_entries; i++) {
        free(m->entries[i].sum_x); free(m->entries[i].count_x);
        m->entries[i].sum_x = m->entries[i].count_x = NULL;
    }
    memset(&m->shard, 0, sizeof m->shard);
}

qx_status im_merge(im_matrix *dst, const im_matrix *src, const char *label, qx_err *e) {
    for (size_t i = 0; i < src->n_entries; i++) {
        const im_entry *a = &src->entries[i];
        if (!a->sum_x) return qx_fail(e, QX_EFORMAT, "%s: entry '%s' has no exact sums (not written with --shard)", label, a->name);
        im_entry *b = im_find(dst, a->name);
        if (!b) QX_TRY(im_add(dst, a->name, a->ne0, a->nmat, &b, e));
        else if (b->ne0 != a->ne0 || b->nmat != a->nmat)
            return qx_fail(e, QX_EINVAL, "%s: entry '%s' is [%lld, %lld], the other shards' [%lld, %lld]", label, a->name,
                           (long long)a->ne0, (long long)a->nmat, (long long)b->ne0, (long long)b->nmat);
        QX_TRY(im_entry_exact(b, e));
        for (int64_t k = 0; k < a->ne0 * a->nmat; k++) {
            uint64_t *d = b->sum_x + 2 * k;
            const uint64_t *x = a->sum_x + 2 * k;
            uint64_t l = d[0] + x[0], c = l < x[0], h = d[1] + x[1];
            if (h < x[1] || h + c < c)
                return qx_fail(e, QX_EUNSUPPORTED, "%s: entry '%s': the sum of squares reaches 2^64", label, a->name);
            d[0] = l;
            d[1] = h + c;
        }
        for (int64_t k = 0; k < a->nmat; k++) b->count_x[k] += a->count_x[k];
        im_entry_settle(b);
    }
    dst->chunk_count += src->chunk_count;
    return QX_OK;
}

static qx_status write_shard_keys(gf_writer *w, const qx_shard *sh, qx_err *e) {
    QX_TRY(gf_writer_set_u32(w, IM_KEY_SHARD_INDEX, (uint32_t)sh->index, e));
    QX_TRY(gf_writer_set_u32(w, IM_KEY_SHARD_COUNT, (uint32_t)sh->count, e));
    QX_TRY(gf_writer_set_u64(w, IM_KEY_SHARD_UNITS, (uint64_t)sh->units, e));
    QX_TRY(gf_writer_set_u64(w, IM_KEY_SHARD_FIRST, (uint64_t)sh->first, e));
    QX_TRY(gf_writer_set_u64(w, IM_KEY_SHARD_N, (uint64_t)sh->n, e));
    QX_TRY(gf_writer_set_u64(w, IM_KEY_SHARD_INPUT, sh->input, e));
    return gf_writer_set_str(w, IM_KEY_SHARD_MODEL, sh->model, e);
}

static qx_status read_shard_keys(const gf_file *f, qx_shard *sh, const char *label, qx_err *e) {
    uint32_t idx, cnt;
    uint64_t units, first, n;
    const char *model;
    QX_TRY(gf_get_u32(f, IM_KEY_SHARD_INDEX, &idx, e));
    QX_TRY(gf_get_u32(f, IM_KEY_SHARD_COUNT, &cnt, e));
    QX_TRY(gf_get_u64(f, IM_KEY_SHARD_UNITS, &units, e));
    QX_TRY(gf_get_u64(f, IM_KEY_SHARD_FIRST, &first, e));
    QX_TRY(gf_get_u64(f, IM_KEY_SHARD_N, &n, e));
    QX_TRY(gf_get_u64(f, IM_KEY_SHARD_INPUT, &sh->input, e));
    QX_TRY(gf_get_str(f, IM_KEY_SHARD_MODEL, &model, e));
    if (cnt < 1 || cnt > 65536 || idx >= cnt || units > INT64_MAX || first > units || n > units - first)
        return qx_fail(e, QX_EFORMAT, "%s: shard %u/%u of chunks [%llu, +%llu) of %llu is inconsistent", label, idx, cnt,
                       (unsigned long long)first, (unsigned long long)n, (unsigned long long)units);
    sh->index = (int32_t)idx; sh->count = (int32_t)cnt;
    sh->units = (int64_t)units; sh->first = (int64_t)first; sh->n = (int64_t)n;
    snprintf(sh->model, sizeof sh->model, "%s", model);
    return QX_OK;
}

/* ---- writing ---- */
static int cmp_entry_ptr(const void *a, const void *b) {
    return strcmp((*(const im_entry *const *)a)->name, (*(const im_entry *const *)b)->name);
}

/* Entries sorted by name (borrowed pointers; free() the array). */
static qx_status sorted_entries(const im_matrix *m, const im_entry ***out, qx_err *e) {
    const im_entry **v = malloc((m->n_entries ? m->n_entries : 1) * sizeof *v);
    if (!v) return qx_fail(e, QX_ENOMEM, "imatrix: out of memory");
    for (size_t i = 0; i < m->n_entries; i++) v[i] = &m->entries[i];
    qsort(v, m->n_entries, sizeof *v, cmp_entry_ptr);
    *out = v;
    return QX_OK;
}

qx_status im_write_gguf(const im_matrix *m, const char *path, qx_err *e) {
    gf_writer *w;
    const im_entry **v = NULL;
    const void **data = NULL;
    QX_TRY(gf_writer_create(&w, e));
    qx_status s = gf_writer_set_str(w, GF_KEY_TYPE, "imatrix", e);
    if (s == QX_OK) s = gf_writer_set_str_arr(w, IM_KEY_DATASETS, (const char *const *)m->datasets, m->n_datasets, e);
    if (s == QX_OK) s = gf_writer_set_u32(w, IM_KEY_CHUNK_COUNT, m->chunk_count, e);
    if (s == QX_OK) s = gf_writer_set_u32(w, IM_KEY_CHUNK_SIZE, m->chunk_size, e);
    if (s == QX_OK && m->shard.count > 0) s = write_shard_keys(w, &m->shard, e);
    if (s == QX_OK) s = gf_writer_set_str(w, GF_KEY_QFORGE_VERSION, qx_version(), e);   /* llama.cpp ignores it */
    if (s == QX_OK) s = sorted_entries(m, &v, e);
    if (s == QX_OK && !(data = malloc((4 * m->n_entries + 1) * sizeof *data))) s = qx_fail(e, QX_ENOMEM, "imatrix: out of memory");
    size_t nd_ = 0;
    for (size_t i = 0; s == QX_OK && i < m->n_entries; i++) {
        const im_entry *en = v[i];
        char name[GF_NAME_MAX + 16];
        int64_t ne_s[2] = {en->ne0, en->nmat}, ne_c[2] = {1, en->nmat};
        int nd = en->nmat > 1 ? 2 : 1;
        snprintf(name, sizeof name, "%s%s", en->name, IM_SUFFIX_SUM2);
        s = gf_writer_add_tensor(w, name, QT_F32, nd, ne_s, NULL, e);
        snprintf(name, sizeof name, "%s%s", en->name, IM_SUFFIX_COUNTS);
        if (s == QX_OK) s = gf_writer_add_tensor(w, name, QT_F32, nd, ne_c, NULL, e);
        data[nd_++] = en->in_sum2;
        data[nd_++] = en->counts;
        if (s != QX_OK || m->shard.count <= 0) continue;
        if (!en->sum_x) { s = qx_fail(e, QX_EINVAL, "imatrix: shard entry '%s' has no exact sums", en->name); break; }
        int64_t ne_x[3] = {2, en->ne0, en->nmat}, ne_cx[2] = {1, en->nmat};
        snprintf(name, sizeof name, "%s%s", en->name, IM_SUFFIX_SUM2_X);
        s = gf_writer_add_tensor(w, name, QT_I64, 3, ne_x, NULL, e);
        snprintf(name, sizeof name, "%s%s", en->name, IM_SUFFIX_COUNTS_X);
        if (s == QX_OK) s = gf_writer_add_tensor(w, name, QT_I64, 2, ne_cx, NULL, e);
        data[nd_++] = en->sum_x;
        data[nd_++] = en->count_x;
    }
    if (s == QX_OK) s = gf_writer_write_file(w, path, data, e);
    free(data);
    free(v);
    gf_writer_free(w);
    return s;
}

static int fwrite_ok(FILE *f, const void *p, size_t n) { return n == 0 || fwrite(p, 1, n, f) == n; }

qx_status im_write_dat(const im_matrix *m, const char *path, qx_err *e) {
    const im_entry **v;
    QX_TRY(sorted_entries(m, &v, e));
    FILE *f = fopen(path, "wb");
    if (!f) { free(v); return qx_fail(e, errno == ENOENT ? QX_ENOTFOUND : QX_EIO, "%s: %s", path, strerror(errno)); }
    int32_t n_store = 0;
    for (size_t i = 0; i < m->n_entries; i++) {
        bool any = false;
        for (int64_t k = 0; k < v[i]->nmat; k++) any |= v[i]->counts[k] > 0;
        if (any) n_store++;
    }
    const float chunk = m->chunk_size ? (float)m->chunk_size : 1.0f;
    int ok = fwrite_ok(f, &n_store, 4);
    float *tmp = NULL;
    size_t tmp_cap = 0;
    for (size_t i = 0; ok && i < m->n_entries; i++) {
        const im_entry *en = v[i];
        float maxc = 0;
        for (int64_t k = 0; k < en->nmat; k++) maxc = en->counts[k] > maxc ? en->counts[k] : maxc;
        if (!(maxc > 0)) continue;
        int64_t mc = (int64_t)maxc, cs = (int64_t)chunk;
        int32_t ncall = (int32_t)((mc + cs - 1) / cs);
        int32_t len = (int32_t)strlen(en->name), nval = (int32_t)(en->ne0 * en->nmat);
        if ((size_t)nval > tmp_cap) {
            float *p = realloc(tmp, (size_t)nval * sizeof *p);
            if (!p) { ok = 0; break; }
            tmp = p; tmp_cap = (size_t)nval;
        }
        for (int64_t k = 0; k < en->nmat; k++)
            for (int64_t j = 0; j < en->ne0; j++) {
                float c = en->counts[k], val = en->in_sum2[k * en->ne0 + j];
                if (c == 0) { val = 1; c = 1; }
                tmp[k * en->ne0 + j] = val / c * (float)ncall;
            }
        ok = fwrite_ok(f, &len, 4) && fwrite_ok(f, en->name, (size_t)len) && fwrite_ok(f, &ncall, 4) &&
             fwrite_ok(f, &nval, 4) && fwrite_ok(f, tmp, (size_t)nval * 4);
    }
    free(tmp);
    free(v);
    if (ok) {
        int32_t cc = (int32_t)m->chunk_count;
        const char *ds = m->n_datasets ? m->datasets[m->n_datasets - 1] : "";
        int32_t len = (int32_t)strlen(ds);
        ok = fwrite_ok(f, &cc, 4) && fwrite_ok(f, &len, 4) && fwrite_ok(f, ds, (size_t)len);
    }
    int er = ok ? 0 : (errno ? errno : EIO);
    if (fclose(f) != 0 && ok) { ok = 0; er = errno; }
    if (!ok) return qx_fail(e, (er == ENOSPC || er == EFBIG) ? QX_ENOSPC : QX_EIO, "%s: writing imatrix: %s", path, strerror(er));
    return QX_OK;
}

/* ---- reading ---- */
static qx_status check_values(const char *label, const char *name, const char *what, const float *v, int64_t n, qx_err *e) {
    for (int64_t i = 0; i < n; i++)
        if (!(v[i] >= 0) || isinf(v[i]))
            return qx_fail(e, QX_EFORMAT, "%s: entry '%s': %s[%lld] = %g (must be finite and >= 0)", label, name, what,
                           (long long)i, (double)v[i]);
    return QX_OK;
}

static bool strip_suffix(const char *s, const char *suf, char *out, size_t cap) {
    size_t n = strlen(s), k = strlen(suf);
    if (n <= k || strcmp(s + n - k, suf) != 0 || n - k >= cap) return false;
    memcpy(out, s, n - k);
    out[n - k] = 0;
    return true;
}

/* W.in_sum2_x / W.counts_x when present: shapes checked, and in_sum2 / counts must be their
 * float values exactly (a shard file is only valid as written). */
static qx_status load_exact(const gf_file *f, im_entry *en, const char *label, qx_err *e) {
    char nx[GF_NAME_MAX + 16], ncx[GF_NAME_MAX + 16];
    snprintf(nx, sizeof nx, "%s%s", en->name, IM_SUFFIX_SUM2_X);
    snprintf(ncx, sizeof ncx, "%s%s", en->name, IM_SUFFIX_COUNTS_X);
    const gf_tensor *tx = gf_find_tensor(f, nx), *tcx = gf_find_tensor(f, ncx);
    if (!tx && !tcx) return QX_OK;
    if (!tx || !tcx || tx->type != QT_I64 || tcx->type != QT_I64 || tx->ne[0] != 2 || tx->ne[1] != en->ne0 ||
        tx->ne[2] != en->nmat || tx->ne[3] != 1 || tcx->ne[0] != 1 || tcx->ne[1] != en->nmat || tcx->ne[2] != 1)
        return qx_fail(e, QX_EFORMAT, "%s: entry '%s': exact tensors missing or not I64 [2, %lld, %lld] and [1, %lld]", label,
                       en->name, (long long)en->ne0, (long long)en->nmat, (long long)en->nmat);
    QX_TRY(im_entry_exact(en, e));
    memcpy(en->sum_x, tx->data, tx->nbytes);
    memcpy(en->count_x, tcx->data, tcx->nbytes);
    for (int64_t i = 0; i < en->ne0 * en->nmat; i++)
        if (im_fx_float(en->sum_x + 2 * i) != en->in_sum2[i])
            return qx_fail(e, QX_EFORMAT, "%s: entry '%s': in_sum2[%lld] disagrees with its exact sum", label, en->name, (long long)i);
    for (int64_t k = 0; k < en->nmat; k++)
        if ((float)en->count_x[k] != en->counts[k])
            return qx_fail(e, QX_EFORMAT, "%s: entry '%s': counts[%lld] disagrees with its exact count", label, en->name, (long long)k);
    return QX_OK;
}

static qx_status load_gguf(im_matrix *m, const uint8_t *buf, uint64_t len, const char *label, qx_err *e) {
    gf_file *f;
    QX_TRY(gf_open_mem(&f, buf, len, label, e));
    qx_status s = QX_OK;
    const gf_kv *kv = gf_find_kv(f, IM_KEY_DATASETS);
    if (kv) {
        const char *const *strs;
        uint64_t n;
        s = gf_get_str_arr(f, IM_KEY_DATASETS, &strs, &n, e);
        for (uint64_t i = 0; s == QX_OK && i < n; i++) s = im_add_dataset(m, strs[i], e);
    }
    if (s == QX_OK && gf_find_kv(f, IM_KEY_CHUNK_COUNT)) s = gf_get_u32(f, IM_KEY_CHUNK_COUNT, &m->chunk_count, e);
    if (s == QX_OK && gf_find_kv(f, IM_KEY_CHUNK_SIZE)) s = gf_get_u32(f, IM_KEY_CHUNK_SIZE, &m->chunk_size, e);
    size_t nt = gf_tensor_count(f);
    for (size_t i = 0; s == QX_OK && i < nt; i++) {
        const gf_tensor *ts = gf_tensor_at(f, i), *tc;
        char base[GF_NAME_MAX], cname[GF_NAME_MAX + 16];
        if (!strip_suffix(ts->name, IM_SUFFIX_SUM2, base, sizeof base)) {
            if (strip_suffix(ts->name, IM_SUFFIX_COUNTS, base, sizeof base)) {
                snprintf(cname, sizeof cname, "%s%s", base, IM_SUFFIX_SUM2);
                if (!gf_find_tensor(f, cname))
                    s = qx_fail(e, QX_EFORMAT, "%s: '%s' has no matching '%s'", label, ts->name, cname);
            }
            continue;   /* other tensors are not ours to judge */
        }
        snprintf(cname, sizeof cname, "%s%s", base, IM_SUFFIX_COUNTS);
        if (!(tc = gf_find_tensor(f, cname))) { s = qx_fail(e, QX_EFORMAT, "%s: '%s' has no matching '%s'", label, ts->name, cname); break; }
        if (ts->type != QT_F32 || tc->type != QT_F32) { s = qx_fail(e, QX_EFORMAT, "%s: entry '%s': sums and counts must be F32", label, base); break; }
        if (ts->ne[2] != 1 || ts->ne[3] != 1 || tc->ne[0] != 1 || tc->ne[2] != 1 || tc->ne[3] != 1 || tc->ne[1] != ts->ne[1]) {
            s = qx_fail(e, QX_EFORMAT, "%s: entry '%s': in_sum2 [%lld, %lld, %lld, %lld] and counts [%lld, %lld, %lld, %lld] disagree",
                        label, base, (long long)ts->ne[0], (long long)ts->ne[1], (long long)ts->ne[2], (long long)ts->ne[3],
                        (long long)tc->ne[0], (long long)tc->ne[1], (long long)tc->ne[2], (long long)tc->ne[3]);
            break;
        }
        if (ts->ne[0] > INT32_MAX || ts->ne[1] > INT32_MAX || ts->ne[0] * ts->ne[1] > INT32_MAX) {
            s = qx_fail(e, QX_EFORMAT, "%s: entry '%s': too many values", label, base);
            break;
        }
        im_entry *en;
        s = im_add(m, base, ts->ne[0], ts->ne[1], &en, e);
        if (s != QX_OK) break;   /* sizes were checked above: only ENOMEM is left */
        memcpy(en->in_sum2, ts->data, ts->nbytes);
        memcpy(en->counts, tc->data, tc->nbytes);
        s = check_values(label, base, "in_sum2", en->in_sum2, en->ne0 * en->nmat, e);
        if (s == QX_OK) s = check_values(label, base, "counts", en->counts, en->nmat, e);
        if (s == QX_OK) s = load_exact(f, en, label, e);
    }
    if (s == QX_OK && gf_find_kv(f, IM_KEY_SHARD_COUNT)) s = read_shard_keys(f, &m->shard, label, e);
    for (size_t i = 0; s == QX_OK && i < m->n_entries; i++)
        if (!m->entries[i].sum_x != !m->shard.count)
            s = qx_fail(e, QX_EFORMAT, "%s: entry '%s': exact sums %s without shard keys", label, m->entries[i].name,
                        m->entries[i].sum_x ? "present" : "missing");
    if (s == QX_OK && m->n_entries == 0) s = qx_fail(e, QX_EFORMAT, "%s: imatrix has no entries", label);
    gf_close(f);
    return s;
}

typedef struct { const uint8_t *p; uint64_t len, pos; const char *label; } dat_cursor;

static qx_status dat_i32(dat_cursor *c, int32_t *v, const char *what, qx_err *e) {
    if (c->len - c->pos < 4)
        return qx_fail(e, QX_EFORMAT, "%s: truncated reading %s at offset %llu", c->label, what, (unsigned long long)c->pos);
    memcpy(v, c->p + c->pos, 4);
    c->pos += 4;
    return QX_OK;
}

static qx_status load_dat(im_matrix *m, const uint8_t *buf, uint64_t len, const char *label, qx_err *e) {
    dat_cursor c = {buf, len, 0, label};
    int32_t n = 0;
    QX_TRY(dat_i32(&c, &n, "entry count", e));
    /* smallest entry: len, 1 name byte, ncall, nval, one value = 17 bytes */
    if (n < 1 || (uint64_t)n > (len - c.pos) / 17)
        return qx_fail(e, QX_EFORMAT, "%s: legacy imatrix entry count %d does not fit the %llu bytes left", label, n,
                       (unsigned long long)(len - c.pos));
    m->legacy = true;
    char name[IM_MAX_NAME + 1];
    for (int32_t i = 0; i < n; i++) {
        int32_t nl = 0, ncall = 0, nval = 0;
        QX_TRY(dat_i32(&c, &nl, "name length", e));
        if (nl < 1 || nl > IM_MAX_NAME || (uint64_t)nl > len - c.pos)
            return qx_fail(e, QX_EFORMAT, "%s: entry %d: bad name length %d", label, i, nl);
        memcpy(name, c.p + c.pos, (size_t)nl);
        name[nl] = 0;
        c.pos += (uint64_t)nl;
        if (strlen(name) != (size_t)nl) return qx_fail(e, QX_EFORMAT, "%s: entry %d: name contains a NUL byte", label, i);
        QX_TRY(dat_i32(&c, &ncall, name, e));
        QX_TRY(dat_i32(&c, &nval, name, e));
        if (ncall < 0) return qx_fail(e, QX_EFORMAT, "%s: entry '%s': ncall %d < 0", label, name, ncall);
        if (nval < 1 || (uint64_t)nval > (len - c.pos) / 4)
            return qx_fail(e, QX_EFORMAT, "%s: entry '%s': %d values do not fit the %llu bytes left", label, name, nval,
                           (unsigned long long)(len - c.pos));
        if (im_find(m, name)) return qx_fail(e, QX_EFORMAT, "%s: duplicate entry '%s'", label, name);
        im_entry *en;
        QX_TRY(im_add(m, name, nval, 1, &en, e));
        memcpy(en->in_sum2, c.p + c.pos, (size_t)nval * 4);
        c.pos += (uint64_t)nval * 4;
        /* values = mean·ncall, so in_sum2/counts = mean; ncall 0 keeps the values as they are
         * (what llama-quantize does) */
        en->counts[0] = ncall > 0 ? (float)ncall : 1.0f;
        QX_TRY(check_values(label, name, "values", en->in_sum2, nval, e));
    }
    if (c.pos == len) return QX_OK;
    int32_t cc = 0, dl = 0;
    QX_TRY(dat_i32(&c, &cc, "chunk count", e));
    if (cc < 0) return qx_fail(e, QX_EFORMAT, "%s: chunk count %d < 0", label, cc);
    m->chunk_count = (uint32_t)cc;
    if (c.pos == len) return QX_OK;
    QX_TRY(dat_i32(&c, &dl, "dataset name length", e));
    if (dl < 0 || (uint64_t)dl > len - c.pos)
        return qx_fail(e, QX_EFORMAT, "%s: dataset name length %d does not fit the %llu bytes left", label, dl,
                       (unsigned long long)(len - c.pos));
    if (dl > 0) {
        char *ds = malloc((size_t)dl + 1);
        if (!ds) return qx_fail(e, QX_ENOMEM, "%s: out of memory", label);
        memcpy(ds, c.p + c.pos, (size_t)dl);
        ds[dl] = 0;
        qx_status s = im_add_dataset(m, ds, e);
        free(ds);
        QX_TRY(s);
        c.pos += (uint64_t)dl;
    }
    if (c.pos != len)
        return qx_fail(e, QX_EFORMAT, "%s: %llu unexpected bytes after the legacy imatrix trailer", label,
                       (unsigned long long)(len - c.pos));
    return QX_OK;
}

qx_status im_load_mem(im_matrix **out, const uint8_t *buf, uint64_t len, const char *label, qx_err *e) {
    *out = NULL;
    if (!label) label = "(imatrix)";
    im_matrix *m;
    QX_TRY(im_create(&m, e));
    qx_status s = (len >= 4 && memcmp(buf, GF_MAGIC, 4) == 0) ? load_gguf(m, buf, len, label, e)
                                                            : load_dat(m, buf ? buf : (const uint8_t *)"", buf ? len : 0, label, e);
    if (s != QX_OK) { im_free(m); return s; }
    *out = m;
    return QX_OK;
}

qx_status im_load(im_matrix **out, const char *path, qx_err *e) {
    *out = NULL;
    qx_map map;
    QX_TRY(qx_map_open(&map, path, e));
    qx_status s = im_load_mem(out, map.data, map.size, path, e);
    qx_map_close(&map);
    return s;
}
