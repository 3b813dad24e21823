/* convert/cv_internal.h — shared between the files of convert/ only: the plan's tensors
 * and work items, the recipe (type choice) and the architecture maps. */
#ifndef CV_INTERNAL_H
#define CV_INTERNAL_H

#include "convert.h"

/* How an output tensor's rows come from its source. */
typedef enum {
    XF_ROWS,     /* row r of slice x = source row r of src[x] (or of the GGUF tensor, row x*ne1+r) */
    XF_PERM,     /* llama q/k: row h*D+2i+j = source row h*D+j*D/2+i (D = ne1/perm_heads) */
    XF_KB,       /* attn_k_b slice h = transpose of kv_b rows [h(N+Dv), h(N+Dv)+N) -> [KVL, N] */
    XF_VB,       /* attn_v_b slice h = kv_b rows [h(N+Dv)+N, (h+1)(N+Dv)) -> [Dv, KVL] */
    XF_GEN,      /* values computed by the planner (rope_freqs) */
    XF_INT,      /* an integer table (I32/I64 source) written as I32 (deepseek4 ffn_gate_tid2eid) */
    XF_CAT,      /* row r = [src[0] row r | src[1] row r] (deepseek4 nextn.eh_proj = [e_proj | h_proj]) */
} cv_xform;

typedef struct {
    char name[GF_NAME_MAX];
    qt_type type, wanted;
    int n_dims;
    int64_t ne[GF_MAX_DIMS];          /* ggml order */
    uint64_t n_elems, nbytes;
    cv_category cat;
    int layer;                        /* -1: none */
    cv_xform xf;
    const st_tensor **src;            /* n_src sources: one per slice (experts), one, or two (XF_CAT) */
    int64_t n_src;
    const gf_tensor *gsrc;            /* requantize: the GGUF source tensor */
    qt_type src_type;                 /* type a non-quantizable tensor keeps (F32 for HF) */
    int64_t perm_heads;               /* XF_PERM */
    int64_t H, N, Dv, KVL;            /* XF_KB / XF_VB */
    float *gen;                       /* XF_GEN: ne[0] values (owned) */
    im_entry *imp;                    /* importance entry (borrowed from the plan's imatrix) */
    int64_t imp_rows;                 /* > 0: a 2-D weight whose rows [k*imp_rows, (k+1)*imp_rows) see
                                         their own input (deepseek4 attn_output_a, one group each):
                                         importance matrix k of ne[1]/imp_rows; items never cross */
    size_t idx;                       /* index in the gf_writer (== position in outs) */
    size_t item0, n_items;
} cv_out;

typedef struct {
    uint32_t tensor;                  /* index into outs */
    int64_t slice;                    /* ne[2] index (expert / head), 0 for 2-D */
    int64_t r0, r1;                   /* rows of the slice (ne[1] index) */
    uint64_t off;                     /* byte offset inside the output tensor */
    uint64_t nbytes;                  /* output bytes of this item */
    uint64_t in_bytes;                /* source bytes it reads */
} cv_item;

struct cv_plan {
    char arch[32], preset[32], label[256];
    hf_config cfg;
    st_model *st;                     /* HF source, or NULL */
    gf_file *gf;                      /* GGUF source, or NULL */
    im_matrix *im;
    gf_writer *w;
    cv_out *outs;
    size_t n_outs, cap_outs;
    cv_item *items;
    size_t n_items, cap_items;
    char *warn;
    size_t warn_len, warn_cap;
    uint64_t input_bytes, tensor_bytes, n_elems;
    size_t n_fallback, n_imatrix_used;
    uint64_t plan_hash;               /* identifies the plan in the journal */
    uint32_t ftype;
};

/* llama_ftype numbers plan.c needs (recipe.c has the whole list). */
enum { CV_FTYPE_F32 = 0, CV_FTYPE_F16 = 1, CV_FTYPE_BF16 = 32, CV_FTYPE_MXFP4_MOE = 38 };

/* ---- plan.c ---- */
/* The matrix an item belongs to: its slice (expert / head), or for a grouped 2-D weight
 * (imp_rows > 0) its row group; importance, GPTQ factors and item_done use this index. */
int64_t cv_item_matrix(const cv_plan *pl, const cv_item *it);
void cv_warn(cv_plan *pl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends an output tensor (type chosen later by cv_assign_types); returns it or NULL (ENOMEM). */
cv_out *cv_add_out(cv_plan *pl, const char *name, int n_dims, const int64_t *ne, cv_category cat,
                   int layer, cv_xform xf, qx_err *e);
/* Assigns types (recipe), adds tensor infos to the writer, cuts items, plans the layout. */
qx_status cv_finish_plan(cv_plan *pl, const cv_params *p, int n_layer, int n_expert, int n_gqa, qx_err *e);

/* ---- recipe.c ---- */
typedef struct cv_recipe cv_recipe;
qx_status cv_recipe_create(cv_recipe **out, const cv_params *p, qx_err *e);
void cv_recipe_free(cv_recipe *r);
uint32_t cv_recipe_ftype(const cv_recipe *r);
const char *cv_recipe_name(const cv_recipe *r);
/* True when llama-quantize would quantize a tensor of this name and rank. */
bool cv_quantizable(const char *name, int n_dims);
/* Chooses the type of every tensor of outs in file order (llama.cpp's counters need it).
 * n_layer: block count; n_expert, n_gqa: as llama.cpp's hparams. */
qx_status cv_recipe_apply(cv_recipe *r, cv_plan *pl, int n_layer, int n_expert, int n_gqa, qx_err *e);
/* llama-quantize's rule: this output tensor's type needs importance data. */
bool cv_requires_imatrix(const cv_out *o);
/* QX_EINVAL naming the first such tensor that has no attached imatrix entry, the plan having
 * no imatrix or one without a usable entry for it (cv_execute calls it). */
qx_status cv_check_imatrix(const cv_plan *pl, qx_err *e);

/* ---- arch.c ---- */
qx_status cv_map_deepseek2(cv_plan *pl, const cv_params *p, qx_err *e);   /* deepseek2 and deepseek32 */
/* MTP blocks written: deepseek2 only with keep_mtp; deepseek32 unless no_mtp (llama.cpp's
 * converter keeps V3.2's NextN block by default). */
int64_t cv_ds_mtp_layers(const hf_config *c, const cv_params *p);
qx_status cv_map_dense(cv_plan *pl, const cv_params *p, qx_err *e);   /* llama, qwen2 */
/* Finds HF tensor hf and checks its torch shape against the GGUF ne (reversed) and its dtype
 * (float, FP8 with its scale, or packed INT4/FP4). */
qx_status cv_need(cv_plan *pl, const char *hf, int n_dims, const int64_t *ne, const st_tensor **out, qx_err *e);
/* The category an output tensor takes: mtp -> MTP, not quantizable -> F32, else c. */
cv_category cv_cat_for(const char *gguf, int n_dims, cv_category c, bool mtp);
/* One output tensor from one HF tensor (cv_need, then cv_add_out); *out optional. */
qx_status cv_add1(cv_plan *pl, const char *gguf, const char *hf, int n_dims, const int64_t *ne, cv_category c,
                  int layer, bool mtp, cv_xform xf, cv_out **out, qx_err *e);

/* ---- arch_v4.c ---- */
/* deepseek4 (DeepSeek-V4): keys and tensors as llama.cpp's DeepseekV4Model writes them; the
 * routed experts stacked per layer (MXFP4 repack or re-quantized from FP4), FP8 decoded,
 * ffn_gate_tid2eid as I32 (XF_INT), MTP dropped; with p->mtp_only the MTP-only file of its
 * --mtp instead (cv_v4_mtp_layers blocks after the main ones). */
qx_status cv_map_deepseek4(cv_plan *pl, const cv_params *p, qx_err *e);
/* MTP blocks a deepseek4 plan writes: the config's num_nextn_predict_layers with mtp_only, else 0. */
int64_t cv_v4_mtp_layers(const hf_config *c, const cv_params *p);

#endif
