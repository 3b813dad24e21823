/* convert/plan.c — the conversion plan (DESIGN.md decision 1): output tensors, their types,
 * the GGUF layout and metadata, and the list of independent work items, all from headers.
 * Sources: an HF checkpoint dir (arch maps in convert/arch.c) or a GGUF file (requantize). */
#include "cv_internal.h"
#include "../tok/tok.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* An item covers at most this many weights (rows of one slice): big 2-D tensors split into
 * row ranges so they spread over threads; an expert slice of V3 (14.7M) is one item. */
#define CV_ITEM_ELEMS (16LL << 20)

static const char *const cat_names[CV_CAT_COUNT] = {
    "token embedding", "output", "attention", "dense ffn", "shared experts", "routed experts",
    "norms/router/1-D (F32)", "MTP (nextn)"};

const char *cv_category_name(cv_category c) { return (unsigned)c < CV_CAT_COUNT ? cat_names[c] : "?"; }

void cv_default_params(cv_params *p) {
    memset(p, 0, sizeof *p);
    p->preset = "Q4_K_M";
}

void cv_warn(cv_plan *pl, const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n >= sizeof line) n = sizeof line - 1;
    if (pl->warn_len + (size_t)n + 2 > pl->warn_cap) {
        size_t cap = pl->warn_cap ? pl->warn_cap * 2 : 1024;
        while (cap < pl->warn_len + (size_t)n + 2) cap *= 2;
        char *w = realloc(pl->warn, cap);
        if (!w) return;
        pl->warn = w;
        pl->warn_cap = cap;
    }
    memcpy(pl->warn + pl->warn_len, line, (size_t)n);
    pl->warn_len += (size_t)n;
    pl->warn[pl->warn_len++] = '\n';
    pl->warn[pl->warn_len] = 0;
}

cv_out *cv_add_out(cv_plan *pl, const char *name, int n_dims, const int64_t *ne, cv_category cat,
                   int layer, cv_xform xf, qx_err *e) {
    if (strlen(name) >= GF_NAME_MAX) { qx_fail(e, QX_EINVAL, "tensor name '%s' too long for GGUF", name); return NULL; }
    if (pl->n_outs == pl->cap_outs) {
        size_t cap = pl->cap_outs ? pl->cap_outs * 2 : 256;
        cv_out *o = realloc(pl->outs, cap * sizeof *o);
        if (!o) { qx_fail(e, QX_ENOMEM, "out of memory"); return NULL; }
        pl->outs = o;
        pl->cap_outs = cap;
    }
    cv_out *o = &pl->outs[pl->n_outs];
    memset(o, 0, sizeof *o);
    snprintf(o->name, sizeof o->name, "%s", name);
    o->n_dims = n_dims;
    o->n_elems = 1;
    for (int d = 0; d < GF_MAX_DIMS; d++) {
        o->ne[d] = d < n_dims ? ne[d] : 1;
        o->n_elems *= (uint64_t)o->ne[d];
    }
    o->cat = cat;
    o->layer = layer;
    o->xf = xf;
    o->src_type = QT_F32;
    o->idx = pl->n_outs;
    pl->n_outs++;
    return o;
}

static qx_status add_item(cv_plan *pl, const cv_item *it, qx_err *e) {
    if (pl->n_items == pl->cap_items) {
        size_t cap = pl->cap_items ? pl->cap_items * 2 : 1024;
        cv_item *n = realloc(pl->items, cap * sizeof *n);
        if (!n) return qx_fail(e, QX_ENOMEM, "out of memory");
        pl->items = n;
        pl->cap_items = cap;
    }
    pl->items[pl->n_items++] = *it;
    return QX_OK;
}

/* Source bytes of one row of tensor o's slice (for progress and the input total). */
static uint64_t src_row_bytes(const cv_out *o, int64_t slice) {
    if (o->gsrc) return qt_row_size(o->gsrc->type, o->ne[0]);
    if (o->xf == XF_GEN || !o->src) return 0;
    if (o->xf == XF_CAT)
        return (uint64_t)o->src[0]->shape[1] * (uint64_t)st_dtype_size(o->src[0]->dtype) +
               (uint64_t)o->src[1]->shape[1] * (uint64_t)st_dtype_size(o->src[1]->dtype);
    const st_tensor *t = o->src[o->n_src > 1 ? slice : 0];
    int64_t cols = o->xf == XF_KB || o->xf == XF_VB ? o->KVL : o->xf == XF_INT ? t->shape[1] : o->ne[0];
    if (t->dtype == ST_FP4_PACKED) return (uint64_t)cols / 2 + (uint64_t)cols / (uint64_t)t->group;   /* codes + E8M0 scales */
    return (uint64_t)cols * (uint64_t)st_dtype_size(t->dtype);
}

static qx_status cut_items(cv_plan *pl, cv_out *o, qx_err *e) {
    o->item0 = pl->n_items;
    uint64_t row_bytes = qt_row_size(o->type, o->ne[0]);
    int64_t slices = o->ne[2] * o->ne[3], rows = o->ne[1];
    int64_t chunk = (o->xf == XF_KB || o->xf == XF_VB || o->xf == XF_GEN || o->xf == XF_INT) ? rows
                  : (CV_ITEM_ELEMS / o->ne[0] > 0 ? CV_ITEM_ELEMS / o->ne[0] : 1);
    if (o->imp_rows > 0 && chunk > o->imp_rows) chunk = o->imp_rows;   /* an item within one importance group */
    while (o->imp_rows > 0 && o->imp_rows % chunk) chunk--;
    for (int64_t x = 0; x < slices; x++) {
        for (int64_t r = 0; r < rows; r += chunk) {
            cv_item it = {0};
            it.tensor = (uint32_t)o->idx;
            it.slice = x;
            it.r0 = r;
            it.r1 = r + chunk < rows ? r + chunk : rows;
            it.off = ((uint64_t)x * (uint64_t)rows + (uint64_t)r) * row_bytes;
            it.nbytes = (uint64_t)(it.r1 - it.r0) * row_bytes;
            /* KB/VB read N or Dv source rows of KVL per slice */
            int64_t src_rows = o->xf == XF_KB ? o->N : o->xf == XF_VB ? o->Dv : it.r1 - it.r0;
            it.in_bytes = (uint64_t)src_rows * src_row_bytes(o, x);
            pl->input_bytes += it.in_bytes;
            QX_TRY(add_item(pl, &it, e));
        }
    }
    o->n_items = pl->n_items - o->item0;
    return QX_OK;
}

/* Attaches importance entries to the quantized tensors. */
static void attach_imatrix(cv_plan *pl) {
    if (!pl->im) return;
    for (size_t i = 0; i < pl->n_outs; i++) {
        cv_out *o = &pl->outs[i];
        if (!cv_quantizable(o->name, o->n_dims)) continue;
        im_entry *en = im_find(pl->im, o->name);
        if (!en) continue;
        qx_err e2;
        /* a grouped 2-D weight (imp_rows): one matrix per group, as ours and llama-imatrix's
         * (flat [ne0 * groups]) files store it; a single vector then serves every group */
        int64_t groups = o->imp_rows > 0 ? o->ne[1] / o->imp_rows : 0;
        if (groups > 1 && im_entry_fit(en, pl->im->legacy, o->ne[0], groups, &e2) == QX_OK) {
            o->imp = en;
            pl->n_imatrix_used++;
            continue;
        }
        if (im_entry_fit(en, pl->im->legacy, o->ne[0], o->ne[2], &e2) != QX_OK) {
            cv_warn(pl, "imatrix entry '%s' ignored: %s", o->name, e2.msg);
            continue;
        }
        o->imp = en;
        pl->n_imatrix_used++;
    }
}

qx_status cv_finish_plan(cv_plan *pl, const cv_params *p, int n_layer, int n_expert, int n_gqa, qx_err *e) {
    if (p->imatrix) QX_TRY(im_load(&pl->im, p->imatrix, e));
    cv_recipe *r;
    QX_TRY(cv_recipe_create(&r, p, e));
    snprintf(pl->preset, sizeof pl->preset, "%s", cv_recipe_name(r));
    pl->ftype = cv_recipe_ftype(r);
    qx_status s = cv_recipe_apply(r, pl, n_layer, n_expert, n_gqa, e);
    cv_recipe_free(r);
    QX_TRY(s);
    if (pl->n_fallback)
        cv_warn(pl, "%zu tensors take a fallback type (row length not a multiple of the block size; llama-quantize does the same, see --dry-run)", pl->n_fallback);
    attach_imatrix(pl);
    if (pl->im && pl->n_imatrix_used == 0) cv_warn(pl, "the imatrix has no entry for any quantized tensor of this model");
    if (pl->im) {
        size_t n_miss = 0;
        const cv_out *first = NULL;
        for (size_t i = 0; i < pl->n_outs; i++) {
            const cv_out *o = &pl->outs[i];
            if (!cv_quantizable(o->name, o->n_dims) || !cv_requires_imatrix(o) || o->imp) continue;
            if (n_miss++ == 0) first = o;
        }
        if (n_miss)
            cv_warn(pl, "%zu tensors (first: %s at %s) need an importance matrix and the imatrix has no usable entry for them: "
                    "only --dry-run works (give them other types with --tensor-type)", n_miss, first->name, qt_type_name(first->type));
    }

    bool all_f32 = true, mxfp4 = false;
    for (size_t i = 0; i < pl->n_outs; i++) {
        all_f32 &= pl->outs[i].type == QT_F32 || pl->outs[i].type == QT_I32;
        mxfp4 |= pl->outs[i].type == QT_MXFP4;
    }
    /* float presets that keep MXFP4 experts say so, as llama.cpp's V4 converter does */
    uint32_t ft = mxfp4 && (pl->ftype == CV_FTYPE_F32 || pl->ftype == CV_FTYPE_F16 || pl->ftype == CV_FTYPE_BF16) ? CV_FTYPE_MXFP4_MOE
                : all_f32 ? CV_FTYPE_F32 : pl->ftype;
    QX_TRY(gf_writer_set_u32(pl->w, GF_KEY_FILE_TYPE, ft, e));
    QX_TRY(gf_writer_set_u32(pl->w, GF_KEY_QUANT_VERSION, 2, e));
    QX_TRY(gf_writer_set_str(pl->w, GF_KEY_QFORGE_VERSION, qx_version(), e));   /* the build that wrote it */
    char src[sizeof pl->label + sizeof pl->preset + 32];
    snprintf(src, sizeof src, "%s; preset %s%s", pl->label, pl->preset, pl->im ? "; imatrix" : "");
    QX_TRY(gf_writer_set_str(pl->w, GF_KEY_QFORGE_SOURCE, src, e));
    QX_TRY(gf_writer_reserve_checksums(pl->w, e));
    for (size_t i = 0; i < pl->n_outs; i++) {
        cv_out *o = &pl->outs[i];
        size_t idx;
        QX_TRY(gf_writer_add_tensor(pl->w, o->name, o->type, o->n_dims, o->ne, &idx, e));
        if (idx != i) return qx_fail(e, QX_EINVAL, "tensor '%s': writer index mismatch", o->name);
    }
    QX_TRY(gf_writer_set_split(pl->w, p->split_max_bytes, p->split_max_tensors, e));
    QX_TRY(gf_writer_plan(pl->w, e));
    pl->tensor_bytes = pl->n_elems = 0;
    for (size_t i = 0; i < pl->n_outs; i++) {
        cv_out *o = &pl->outs[i];
        o->nbytes = gf_writer_tensor_nbytes(pl->w, i);
        pl->tensor_bytes += o->nbytes;
        pl->n_elems += o->n_elems;
        QX_TRY(cut_items(pl, o, e));
    }
    uint8_t *hdr;
    uint64_t hlen;
    QX_TRY(gf_writer_header_bytes(pl->w, &hdr, &hlen, e));
    XXH3_state_t *st = XXH3_createState();
    if (!st) { free(hdr); return qx_fail(e, QX_ENOMEM, "out of memory"); }
    XXH3_64bits_reset(st);
    XXH3_64bits_update(st, hdr, hlen);
    XXH3_64bits_update(st, pl->items, pl->n_items * sizeof *pl->items);
    if (p->imatrix) XXH3_64bits_update(st, p->imatrix, strlen(p->imatrix));
    if (p->plan_salt) XXH3_64bits_update(st, p->plan_salt, strlen(p->plan_salt));
    for (int k = 0; k < gf_writer_split_count(pl->w); k++) {   /* split output: where each file is cut */
        uint64_t sz = gf_writer_split_size(pl->w, k);
        if (gf_writer_split_count(pl->w) > 1) XXH3_64bits_update(st, &sz, sizeof sz);
    }
    pl->plan_hash = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    free(hdr);
    return QX_OK;
}

void cv_plan_free(cv_plan *pl) {
    if (!pl) return;
    for (size_t i = 0; i < pl->n_outs; i++) {
        free(pl->outs[i].gen);
        free((void *)pl->outs[i].src);
    }
    free(pl->outs);
    free(pl->items);
    free(pl->warn);
    gf_writer_free(pl->w);
    im_free(pl->im);
    st_close(pl->st);
    gf_close(pl->gf);
    free(pl);
}

static qx_status new_plan(cv_plan **out, qx_err *e) {
    *out = calloc(1, sizeof **out);
    if (!*out) return qx_fail(e, QX_ENOMEM, "out of memory");
    return gf_writer_create(&(*out)->w, e);
}

static const char *base_name(const char *path, char *buf, size_t cap) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    size_t b = n;
    while (b > 0 && path[b - 1] != '/') b--;
    snprintf(buf, cap, "%.*s", (int)(n - b), path + b);
    return buf;
}

static qx_status plan_hf(cv_plan *pl, const char *dir, const cv_params *p, qx_err *e) {
    QX_TRY(hf_config_load(dir, &pl->cfg, e));
    QX_TRY(st_open(&pl->st, dir, e));
    QX_TRY(hf_config_validate(&pl->cfg, pl->st, e));
    char bn[200];
    base_name(dir, bn, sizeof bn);
    snprintf(pl->label, sizeof pl->label, "HF %.120s (%.60s)", bn, pl->cfg.architecture);
    const char *arch = pl->cfg.v32 ? "deepseek32" : pl->cfg.arch == HF_ARCH_DEEPSEEK_V3 || pl->cfg.arch == HF_ARCH_DEEPSEEK_V2 ? "deepseek2"
                     : pl->cfg.arch == HF_ARCH_DEEPSEEK_V4 ? "deepseek4"
                     : pl->cfg.arch == HF_ARCH_LLAMA ? "llama" : pl->cfg.arch == HF_ARCH_QWEN2 ? "qwen2" : NULL;
    if (!arch) return qx_fail(e, QX_EUNSUPPORTED, "%s: unsupported architecture '%s'", dir, pl->cfg.architecture);
    if (p->mtp_only && strcmp(arch, "deepseek4") && strcmp(arch, "deepseek32"))   /* llama.cpp's converter: supports_mtp_export */
        return qx_fail(e, QX_EUNSUPPORTED, "%s: --mtp (an MTP-only file) is for DeepSeek-V4 and V3.2; %s", dir,
                       !strcmp(arch, "deepseek2") ? "deepseek2 drops its MTP block unless --keep-mtp keeps it in the model file"
                                                  : "this architecture has no MTP block");
    snprintf(pl->arch, sizeof pl->arch, "%s", arch);
    QX_TRY(gf_writer_set_str(pl->w, GF_KEY_ARCHITECTURE, arch, e));
    QX_TRY(gf_writer_set_str(pl->w, GF_KEY_TYPE, "model", e));
    QX_TRY(gf_writer_set_str(pl->w, GF_KEY_NAME, bn, e));
    QX_TRY(hf_sampling_load(dir, pl->w, e));

    tk_tok *tok = NULL;
    tk_vocab v;
    memset(&v, 0, sizeof v);
    qx_status s = tk_load(dir, &tok, e);
    if (s == QX_OK) s = tk_export(tok, pl->cfg.vocab_size, arch, &v, e);
    if (s == QX_OK) s = tk_vocab_write(&v, pl->w, e);
    if (s == QX_OK && v.pre[0] == 0) cv_warn(pl, "tokenizer: pre-tokenizer family not recognized");
    tk_vocab_free(&v);
    tk_free(tok);
    QX_TRY(s);

    int n_layer, n_expert = 0, n_gqa = 1;
    if (!strcmp(arch, "deepseek4")) {
        QX_TRY(cv_map_deepseek4(pl, p, e));
        n_layer = (int)(pl->cfg.n_layers + cv_v4_mtp_layers(&pl->cfg, p));   /* block_count, as llama-quantize's n_layer_all */
        n_expert = (int)pl->cfg.n_routed_experts;
        n_gqa = (int)pl->cfg.n_heads;   /* one shared K=V head */
    } else if (!strcmp(arch, "deepseek2") || !strcmp(arch, "deepseek32")) {
        QX_TRY(cv_map_deepseek2(pl, p, e));
        n_layer = (int)(pl->cfg.n_layers + cv_ds_mtp_layers(&pl->cfg, p));
        n_expert = (int)pl->cfg.n_routed_experts;
        n_gqa = 1;   /* llama.cpp: head_count_kv 1 in the MLA layout, n_gqa = n_head; no attn_v here */
    } else {
        QX_TRY(cv_map_dense(pl, p, e));
        n_layer = (int)pl->cfg.n_layers;
        n_gqa = pl->cfg.n_kv_heads > 0 ? (int)(pl->cfg.n_heads / pl->cfg.n_kv_heads) : 1;
    }
    return cv_finish_plan(pl, p, n_layer, n_expert, n_gqa, e);
}

qx_status cv_plan_create(cv_plan **out, const char *hf_dir, const cv_params *p, qx_err *e) {
    *out = NULL;
    cv_plan *pl;
    qx_status s = new_plan(&pl, e);
    if (s == QX_OK) s = plan_hf(pl, hf_dir, p, e);
    if (s != QX_OK) { cv_plan_free(pl); return s; }
    *out = pl;
    return QX_OK;
}

/* ---- requantize a GGUF ---- */

static int layer_of(const char *name) {
    int l;
    return sscanf(name, "blk.%d.", &l) == 1 ? l : -1;
}

static cv_category category_of(const char *name, int n_dims) {
    if (!strcmp(name, "token_embd.weight")) return CV_CAT_EMBD;
    if (!strcmp(name, "output.weight")) return CV_CAT_OUTPUT;
    if (strstr(name, ".nextn.")) return CV_CAT_MTP;
    if (!cv_quantizable(name, n_dims)) return CV_CAT_F32;
    if (strstr(name, "_exps.")) return CV_CAT_EXPS;
    if (strstr(name, "_shexp.")) return CV_CAT_SHEXP;
    if (strstr(name, "ffn_")) return CV_CAT_FFN;
    return CV_CAT_ATTN;
}

static int64_t kv_u32_or(const gf_file *g, const char *arch, const char *key, int64_t dflt) {
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    uint32_t v;
    qx_err e;
    return gf_get_u32(g, k, &v, &e) == QX_OK ? (int64_t)v : dflt;
}

static qx_status plan_gguf(cv_plan *pl, const char *path, const cv_params *p, qx_err *e) {
    QX_TRY(gf_open(&pl->gf, path, e));
    const gf_file *g = pl->gf;
    const char *arch = "";
    qx_err e2;
    if (gf_get_str(g, GF_KEY_ARCHITECTURE, &arch, &e2) != QX_OK) arch = "";
    snprintf(pl->arch, sizeof pl->arch, "%s", arch);
    char bn[200];
    snprintf(pl->label, sizeof pl->label, "GGUF %s", base_name(path, bn, sizeof bn));
    for (size_t i = 0; i < gf_kv_count(g); i++) {
        const gf_kv *kv = gf_kv_at(g, i);
        if (!strcmp(kv->key, GF_KEY_TENSOR_XXH3) || !strcmp(kv->key, GF_KEY_FILE_TYPE) ||
            !strcmp(kv->key, GF_KEY_QUANT_VERSION) || !strcmp(kv->key, GF_KEY_QFORGE_SOURCE) ||
            !strncmp(kv->key, "split.", 6))   /* a split source: the output has its own split */
            continue;
        QX_TRY(gf_writer_set_kv(pl->w, kv, e));
    }
    for (size_t i = 0; i < gf_tensor_count(g); i++) {
        const gf_tensor *t = gf_tensor_at(g, i);
        cv_out *o = cv_add_out(pl, t->name, t->n_dims, t->ne, category_of(t->name, t->n_dims), layer_of(t->name), XF_ROWS, e);
        if (!o) return e->code;
        o->gsrc = t;
        o->src_type = t->type;
    }
    if (!strcmp(arch, "deepseek4")) {   /* attn_output_a: one importance matrix per output group, as from the checkpoint */
        int64_t og = kv_u32_or(g, arch, "attention.output_group_count", 0);
        for (size_t i = 0; og > 1 && i < pl->n_outs; i++) {
            cv_out *o = &pl->outs[i];
            if (o->n_dims == 2 && o->ne[1] % og == 0 && qx_ends_with(o->name, ".attn_output_a.weight")) o->imp_rows = o->ne[1] / og;
        }
    }
    int n_layer = (int)kv_u32_or(g, arch, "block_count", 1);
    int n_expert = (int)kv_u32_or(g, arch, "expert_count", 0);
    int64_t hc = kv_u32_or(g, arch, "attention.head_count", 1), hkv = kv_u32_or(g, arch, "attention.head_count_kv", hc);
    int n_gqa = hkv > 0 ? (int)(hc / hkv) : 1;
    QX_TRY(cv_finish_plan(pl, p, n_layer, n_expert, n_gqa, e));
    for (size_t i = 0; i < pl->n_outs; i++) {
        const cv_out *o = &pl->outs[i];
        if (o->type == o->gsrc->type) continue;
        const qt_traits *tr = qt_get_traits(o->gsrc->type);
        if (!tr || !tr->to_float)
            return qx_fail(e, QX_EUNSUPPORTED, "%s: tensor '%s' is %s and cannot be decoded", path, o->name, qt_type_name(o->gsrc->type));
        if (tr->quantized && o->gsrc->type != QT_MXFP4)   /* MXFP4 experts hold a V4 checkpoint's exact FP4 values */
            return qx_fail(e, QX_EUNSUPPORTED, "%s: tensor '%s' is already quantized (%s); requantizing needs an F32/F16/BF16 (or MXFP4) source",
                           path, o->name, qt_type_name(o->gsrc->type));
    }
    return QX_OK;
}

qx_status cv_plan_from_gguf(cv_plan **out, const char *gguf_path, const cv_params *p, qx_err *e) {
    *out = NULL;
    cv_plan *pl;
    qx_status s = new_plan(&pl, e);
    if (s == QX_OK) s = plan_gguf(pl, gguf_path, p, e);
    if (s != QX_OK) { cv_plan_free(pl); return s; }
    *out = pl;
    return QX_OK;
}

qx_status cv_plan_open(cv_plan **out, const char *path, const cv_params *p, qx_err *e) {
    return qx_ends_with(path, ".gguf") ? cv_plan_from_gguf(out, path, p, e) : cv_plan_create(out, path, p, e);
}

/* ---- accessors ---- */
size_t cv_plan_tensor_count(const cv_plan *pl) { return pl->n_outs; }
void cv_plan_tensor(const cv_plan *pl, size_t i, cv_tensor_info *out) {
    const cv_out *o = &pl->outs[i];
    memset(out, 0, sizeof *out);
    out->name = o->name;
    out->type = o->type;
    out->wanted = o->wanted;
    out->n_dims = o->n_dims;
    memcpy(out->ne, o->ne, sizeof out->ne);
    out->n_elems = o->n_elems;
    out->nbytes = o->nbytes;
    out->offset = gf_writer_tensor_offset(pl->w, i);
    out->cat = o->cat;
    out->layer = o->layer;
    out->split = gf_writer_tensor_split(pl->w, i);
}
uint64_t cv_plan_file_size(const cv_plan *pl) { return gf_writer_file_size(pl->w); }
uint64_t cv_plan_tensor_bytes(const cv_plan *pl) { return pl->tensor_bytes; }
uint64_t cv_plan_n_elems(const cv_plan *pl) { return pl->n_elems; }
uint64_t cv_plan_input_bytes(const cv_plan *pl) { return pl->input_bytes; }
size_t cv_plan_item_count(const cv_plan *pl) { return pl->n_items; }
/* The importance (and GPTQ) matrices of o: its output groups, else its ne[2] x ne[3] slices. */
static int64_t out_matrices(const cv_out *o) { return o->imp_rows > 0 ? o->ne[1] / o->imp_rows : o->ne[2] * o->ne[3]; }

int64_t cv_item_matrix(const cv_plan *pl, const cv_item *it) {
    const cv_out *o = &pl->outs[it->tensor];
    return o->imp_rows > 0 ? it->r0 / o->imp_rows : it->slice;
}
int64_t cv_plan_matrices(const cv_plan *pl, size_t i) {
    if (i >= pl->n_outs) return 1;
    const cv_out *o = &pl->outs[i];
    int64_t m = out_matrices(o);
    return m > 0 ? m : 1;
}
int64_t cv_plan_items_per_slice(const cv_plan *pl, size_t i) {
    if (i >= pl->n_outs) return 0;
    const cv_out *o = &pl->outs[i];
    int64_t slices = out_matrices(o);
    return slices > 0 ? (int64_t)o->n_items / slices : 0;
}
size_t cv_plan_fallback_count(const cv_plan *pl) { return pl->n_fallback; }
const char *cv_plan_arch(const cv_plan *pl) { return pl->arch; }
const char *cv_plan_preset(const cv_plan *pl) { return pl->preset; }
const char *cv_plan_warnings(const cv_plan *pl) { return pl->warn ? pl->warn : ""; }
double cv_plan_bpw(const cv_plan *pl) { return pl->n_elems ? 8.0 * (double)pl->tensor_bytes / (double)pl->n_elems : 0; }
