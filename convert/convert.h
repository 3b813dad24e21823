/* convert/convert.h — the one public header of convert/: HF checkpoint (DeepSeek-V3/V2 FP8,
 * Llama/Qwen2 BF16) or F32/F16/BF16 GGUF -> one quantized GGUF, in one streaming pass
 * (DESIGN.md decisions 1-3).
 *
 *   cv_plan_create / cv_plan_from_gguf   headers only: every output tensor, its type (preset
 *                                        rules, --tensor-type overrides, row-length fallbacks),
 *                                        size, offset, the metadata and the exact file size;
 *   cv_execute                           independent work items (a tensor, a row range of one,
 *                                        or one expert's slice of a stacked tensor) decoded
 *                                        tile by tile, quantized and pwrite-n at planned
 *                                        offsets into OUT.part; a journal OUT.part.journal
 *                                        (finished items + XXH3-64) allows --resume; per-tensor
 *                                        checksums (qforge.tensor_xxh3) go into the header and
 *                                        OUT.part is renamed to OUT only when complete.
 *
 * Architecture maps follow ../shared/GGUF-DEEPSEEK2.md §4-§6 (deepseek2 MLA layout with
 * attn_k_b/attn_v_b, *_exps stacks, exp_probs_b.bias, MTP dropped unless keep_mtp; deepseek4's MTP
 * block only as a separate MTP-only file, mtp_only) and
 * llama.cpp's converter for llama (q/k row permutation, rope_freqs for llama3 scaling) and
 * qwen2 (qkv biases).  Presets reproduce llama-quantize's per-tensor rules (§10); the DS-*
 * mixes are rule tables (convert/recipe.c) and easy to extend.
 * The library never prints: warnings are returned as text (cv_plan_warnings), progress goes
 * through a caller-owned qx_progress. */
#ifndef CONVERT_H
#define CONVERT_H

#include "../common/qx.h"
#include "../formats/formats.h"
#include "../quant/qt.h"

/* Broad groups for the dry-run totals. */
typedef enum {
    CV_CAT_EMBD, CV_CAT_OUTPUT, CV_CAT_ATTN, CV_CAT_FFN, CV_CAT_SHEXP, CV_CAT_EXPS,
    CV_CAT_F32, CV_CAT_MTP, CV_CAT_COUNT
} cv_category;
const char *cv_category_name(cv_category c);   /* "routed experts" */

typedef struct {
    const char *preset;                 /* "Q4_K_M", "DS-Q2_K_XL", ... or a bare type "Q4_K" */
    const char *const *tensor_types;    /* n_tensor_types strings "REGEX=TYPE" (first match wins) */
    int n_tensor_types;
    const char *imatrix;                /* llama.cpp GGUF imatrix or legacy .dat, NULL for none */
    const char *output_tensor_type;     /* NULL: preset rule */
    const char *token_embedding_type;   /* NULL: preset rule */
    bool pure;                          /* every quantizable tensor at the default type */
    bool llama_types;                   /* deepseek4: llama-quantize's types exactly (no protection of the
                                           hc/compressor/indexer tensors, FP4 experts re-quantized to the
                                           preset's type instead of kept MXFP4); other archs: no effect */
    bool keep_mtp;                      /* deepseek2: write the MTP block (nextn_predict_layers) */
    bool no_mtp;                        /* deepseek32 (which keeps it by default, as llama.cpp): drop it */
    bool mtp_only;                      /* deepseek4 / deepseek32: write only the MTP block (with the embedding,
                                           head and output norm it shares), as llama.cpp's converter --mtp does */
    int n_threads;                      /* 0: qx_default_threads() */
    bool resume;                        /* continue from OUT.part + OUT.part.journal */
    uint64_t split_max_bytes;           /* split output: max tensor bytes per file (0: none) */
    uint64_t split_max_tensors;         /* split output: max tensors per file (0: none) */
    int64_t max_items;                  /* test/debug: stop after this many items (0: all);
                                           cv_execute then returns QX_EINVAL "stopped" */
    qx_progress *progress;              /* optional, updated from one thread at a time */
    /* GPTQ error feedback (optional, quant/gptq.c): *U = the factor [cols, cols] (U^T U = H^-1)
     * of matrix `slice` (expert / head; 0 for 2-D, except deepseek4's attn_output_a, whose rows
     * [k * o_lora_rank, (k+1) * o_lora_rank) read output group k's input: slice k) of output
     * tensor `name`, borrowed until
     * cv_execute returns, or NULL to quantize that tensor plainly; a non-OK status stops
     * the run with that error.  Called from worker threads at once (it may block until its
     * factor exists, e.g. while a streamed pass computes that layer): must be thread-safe.
     * Whoever gathers H (calib/, through a pass module or cli/) fills it; convert/ never
     * runs the model. */
    qx_status (*gptq_factor)(void *ud, const char *name, int64_t slice, int64_t cols, const float **U, qx_err *e);
    void *gptq_ud;
    /* Optional: called once per output tensor (index as cv_plan_tensor) when all its bytes
     * are written (or verified from the journal on --resume), from a worker thread. */
    void (*tensor_done)(void *ud, size_t tensor);
    void *tensor_done_ud;
    /* Optional: called after each work item this run executes (matrix `slice` of `tensor`,
     * rows of it), from its worker thread, with tensor_done_ud; not for journal-verified
     * items. */
    void (*item_done)(void *ud, size_t tensor, int64_t slice);
    /* Optional text hashed into the plan hash (the --resume journal's identity): settings
     * that change the written bytes without changing the plan, e.g. GPTQ's. */
    const char *plan_salt;
} cv_params;

void cv_default_params(cv_params *p);

/* Names of the presets, comma separated. */
const char *cv_preset_names(void);
/* Describes a preset into buf (snprintf-style: always terminated when cap > 0, returns the
 * length it needed): a rule table's lines "REGEX -> TYPE [first k MoE blocks]" or one line
 * naming llama-quantize's rules.  0 for a name that is not a preset (a bare type). */
size_t cv_preset_describe(const char *preset, char *buf, size_t cap);

typedef struct cv_plan cv_plan;   /* opaque */

/* One planned output tensor (borrowed from the plan). */
typedef struct {
    const char *name;               /* GGUF name */
    qt_type type;
    qt_type wanted;                 /* type before the row-length fallback (== type if none) */
    int n_dims;
    int64_t ne[GF_MAX_DIMS];
    uint64_t n_elems, nbytes;
    uint64_t offset;                /* absolute file offset */
    cv_category cat;
    int layer;                      /* block index, -1 for none */
    int split;                      /* output file holding it (0 unless split) */
} cv_tensor_info;

/* Plans the conversion of an HF checkpoint directory.  Reads config.json, the safetensors
 * headers, the tokenizer and (if given) the imatrix; validates shapes and dtypes against
 * config.json.  No tensor data is read. */
qx_status cv_plan_create(cv_plan **out, const char *hf_dir, const cv_params *p, qx_err *e);
/* Plans requantizing an F32/F16/BF16 (or any decodable) GGUF of any architecture: all
 * metadata is carried over (general.file_type updated), every tensor kept in order. */
qx_status cv_plan_from_gguf(cv_plan **out, const char *gguf_path, const cv_params *p, qx_err *e);
/* cv_plan_from_gguf for a path ending in ".gguf", else cv_plan_create (an HF checkpoint dir). */
qx_status cv_plan_open(cv_plan **out, const char *path, const cv_params *p, qx_err *e);
void cv_plan_free(cv_plan *pl);

size_t cv_plan_tensor_count(const cv_plan *pl);
void cv_plan_tensor(const cv_plan *pl, size_t i, cv_tensor_info *out);
uint64_t cv_plan_file_size(const cv_plan *pl);        /* exact bytes of the output file (all files) */
/* Split output (params split_max_bytes / split_max_tensors, llama-gguf-split's rules, see
 * gf_writer_set_split): the number of files (1: an ordinary single file), the bytes and
 * tensor count of file k. */
int cv_plan_split_count(const cv_plan *pl);
uint64_t cv_plan_split_size(const cv_plan *pl, int k);
size_t cv_plan_split_tensors(const cv_plan *pl, int k);
/* Path of output file k for the -o argument `out`: `out` itself when the plan is one file,
 * else llama.cpp's PREFIX-%05d-of-%05d.gguf with PREFIX = out less a trailing ".gguf".
 * False when it does not fit in cap. */
bool cv_output_path(const cv_plan *pl, const char *out, int k, char *buf, size_t cap);
/* The planned output without its tensor data (--dry-run --skeleton): every file of the plan
 * (cv_output_path) gets its exact header (metadata, tensor infos; qforge.tensor_xxh3 left at
 * zeros) and is sized to its exact length, the data a hole (a sparse file reading as zeros).
 * For tools that read headers only, e.g. llama-quantize --dry-run on the same tensor list. */
qx_status cv_write_skeleton(const cv_plan *pl, const char *out_path, qx_err *e);
uint64_t cv_plan_tensor_bytes(const cv_plan *pl);     /* Σ tensor nbytes (llama.cpp's "size") */
uint64_t cv_plan_n_elems(const cv_plan *pl);          /* Σ weights */
uint64_t cv_plan_input_bytes(const cv_plan *pl);      /* source bytes read by execution */
size_t cv_plan_item_count(const cv_plan *pl);
/* Work items of each matrix (expert / head slice; deepseek4 attn_output_a: output group; the
 * whole tensor when 2-D) of tensor i:
 * how many gptq_factor requests one matrix gets in a full run. */
int64_t cv_plan_items_per_slice(const cv_plan *pl, size_t i);
/* Matrices of tensor i with their own input statistics (importance, Hessian): ne[2] * ne[3]
 * (experts, heads), or deepseek4 attn_output_a's output groups (consecutive row blocks); >= 1. */
int64_t cv_plan_matrices(const cv_plan *pl, size_t i);
size_t cv_plan_fallback_count(const cv_plan *pl);     /* tensors that hit the row-length fallback */
const char *cv_plan_arch(const cv_plan *pl);          /* "deepseek2", "llama", "qwen2", ... */
const char *cv_plan_preset(const cv_plan *pl);
/* Newline-separated warnings (unusual configs, fallbacks, ignored imatrix entries); "" if none. */
const char *cv_plan_warnings(const cv_plan *pl);
/* Bits per weight of the plan: 8 * tensor bytes / weights. */
double cv_plan_bpw(const cv_plan *pl);
/* Rows [r0, r0 + nr) of output tensor i (a matrix; row r is row r % ne[1] of slice r / ne[1],
 * slice = expert or head) decoded to f32 into dst [nr, ne[0]] exactly as cv_execute reads
 * them (FP8/BF16 dequantized, experts stacked, attn_k_b/attn_v_b cut from kv_b); consumed
 * source pages are released.  Reentrant for distinct i. */
qx_status cv_plan_read_f32(const cv_plan *pl, size_t i, int64_t r0, int64_t nr, float *dst, qx_err *e);
/* The importance entry cv_execute uses for output tensor i (borrowed from the plan), or NULL. */
const im_entry *cv_plan_importance(const cv_plan *pl, size_t i);

typedef struct {
    uint64_t bytes;                 /* output file size */
    uint64_t n_tensors;
    uint64_t items_total, items_done, items_skipped;   /* skipped: verified from the journal */
    uint64_t input_bytes;           /* source bytes decoded in this run */
    double seconds, bpw;
    uint64_t peak_rss_bytes;
} cv_result;

/* Executes the plan into out_path (via out_path.part + .part.journal).  On any error the
 * .part and journal are left for --resume and no out_path is created.  A split plan writes
 * every file k as cv_output_path(k).part with one journal beside the first; at the end the
 * first file's old copy (if any) is removed, files 2..N are renamed into place and the first
 * file last, so a first file on disk always means a complete set.  Deterministic: the
 * bytes never depend on the thread count or on interruptions.  r is optional. */
qx_status cv_execute(cv_plan *pl, const char *out_path, const cv_params *p, cv_result *r, qx_err *e);

/* ---- measured bit allocation (convert/alloc.c, docs/allocation.md) ----
 * The sensitivity table `qforge sensitivity` writes (JSON, "qforge_sensitivity": 1): per
 * tensor its row length, weights and candidate types, each with its bytes, the weighted
 * relative weight error werr (layer-local proxy) and, where measured, kld = the mean KLD of
 * the model with only this tensor at this type.  cv_sens_predict fits log kld = a + b log
 * werr per tensor over its measured points (b in [0.5, 2], 1 for one point) and sets every
 * candidate's cost (predicted ΔKLD; -1 when the tensor has no measured point). */
#define CV_SENS_MAX_OPT 24
typedef struct {
    qt_type type;
    uint64_t bytes;     /* tensor bytes at this type */
    double werr;        /* Σ imp (w - q)^2 / Σ imp w^2 */
    double kld;         /* measured, < 0 when not */
    double cost;        /* predicted ΔKLD (cv_sens_predict), < 0 when unknown */
} cv_sens_opt;
typedef struct {
    char name[GF_NAME_MAX];
    int64_t ne0;
    uint64_t n_elems;
    int n_opt;
    cv_sens_opt opt[CV_SENS_MAX_OPT];
    bool fitted;        /* cv_sens_predict: log kld = fit_a + fit_b log werr holds */
    double fit_a, fit_b;
} cv_sens_tensor;
typedef struct {
    double base_kld;    /* KLD of the unmodified source against the base (informational) */
    cv_sens_tensor *t;
    size_t n, cap;
} cv_sens;
qx_status cv_sens_add(cv_sens *s, const char *name, int64_t ne0, uint64_t n_elems, cv_sens_tensor **out, qx_err *e);
void cv_sens_free(cv_sens *s);   /* accepts a zeroed struct */
const cv_sens_tensor *cv_sens_find(const cv_sens *s, const char *name);
void cv_sens_predict(cv_sens *s);
/* Parses (validating every number and type against the row length) and predicts. */
qx_status cv_sens_parse(const char *buf, size_t len, const char *label, cv_sens *s, qx_err *e);
qx_status cv_sens_load(const char *path, cv_sens *s, qx_err *e);
qx_status cv_sens_write(const cv_sens *s, const char *path, const char *provenance, qx_err *e);
/* Predicted ΔKLD of tensor t's fit at weight error werr (-1 without a fit; 0 at werr 0). */
double cv_sens_cost_at(const cv_sens_tensor *t, double werr);
/* One fit through every measured point of s, per weight: log(kld / n_elems) = a + b log werr
 * (b in [0.5, 2]); for a tensor whose role the table lacks.  False without measured points. */
bool cv_sens_pooled_fit(const cv_sens *s, double *a, double *b);
/* werr of `type` for a tensor like t (row length ne0) when neither the table nor a weight-error
 * pass has it: the table's geometric mean for the type (log-linear in bits per weight across
 * types where no tensor has it) times t's mean ratio to the table at the types t has.  > 0. */
double cv_sens_werr_estimate(const cv_sens *s, const cv_sens_tensor *t, qt_type type, int64_t ne0);
/* The candidate types of a tensor with rows of ne0 (sensitivity and the weight-error pass):
 * the 256-block K/IQ types when ne0 % 256 == 0, else IQ4_NL/Q4_0/Q5_0/Q8_0; the types that
 * need an importance matrix only with have_imp.  Returns the count (<= CV_SENS_MAX_OPT). */
int cv_sens_candidates(int64_t ne0, bool have_imp, qt_type *out);
/* Whether a planned tensor takes part in sensitivity, the weight-error pass and --target-size,
 * and its candidates: a tensor a Q8_0 plan quantizes gets cv_sens_candidates; an FP4 expert
 * that the Q8_0 plan keeps at MXFP4 (DeepSeek-V4: its exact checkpoint values) gets those of
 * them that are smaller than MXFP4 (the exact MXFP4 itself is the allocation's free option,
 * cv_alloc_exact).  Returns the count; 0: the tensor is not allocated. */
int cv_alloc_candidates(const cv_tensor_info *t, bool have_imp, qt_type *out);
/* True for a tensor whose Q8_0 plan keeps its source's exact quantized values (MXFP4 experts):
 * --target-size may keep that type at no cost. */
bool cv_alloc_exact(const cv_tensor_info *t);
/* Whether type q is a candidate for t: any type for a tensor the Q8_0 plan quantizes, only the
 * types with smaller rows than MXFP4 for an exact one (cv_alloc_exact). */
bool cv_alloc_allows(const cv_tensor_info *t, qt_type q);
/* llama-quantize's row-length fallback (tensor_type_fallback): t when its block divides ne0. */
qt_type cv_type_fallback(qt_type t, int64_t ne0);

/* Multiple-choice knapsack: one option per tensor, Σ bytes <= budget, Σ cost minimal
 * (Lagrangian relaxation with bisection on lambda, then greedy upgrades by cost drop per
 * byte while they fit).  pick[n] receives the option indices.  QX_EINVAL when even the
 * smallest options exceed the budget.  Deterministic; O(n * options) per step. */
typedef struct { uint64_t bytes; double cost; } cv_alloc_opt;
typedef struct { int n_opt; const cv_alloc_opt *opt; } cv_alloc_tensor;
typedef struct { uint64_t bytes; double cost, lambda; } cv_alloc_result;
qx_status cv_alloc_solve(const cv_alloc_tensor *ts, size_t n, uint64_t budget, int *pick, cv_alloc_result *r, qx_err *e);

/* A recipe: one exact type per tensor name (JSON {"qforge_recipe": 1, "tensors": {name:
 * type}}), applied through --tensor-type rules "^name$=TYPE" (cv_recipe_rule). */
typedef struct { char name[GF_NAME_MAX]; qt_type type; } cv_recipe_entry;
typedef struct { cv_recipe_entry *e; size_t n, cap; } cv_recipe_table;
qx_status cv_recipe_table_add(cv_recipe_table *t, const char *name, qt_type type, qx_err *e);
void cv_recipe_table_free(cv_recipe_table *t);   /* accepts a zeroed struct */
qx_status cv_recipe_parse(const char *buf, size_t len, const char *label, cv_recipe_table *t, qx_err *e);
qx_status cv_recipe_load(const char *path, cv_recipe_table *t, qx_err *e);
qx_status cv_recipe_write(const cv_recipe_table *t, const char *path, const char *comment, qx_err *e);
/* "^escaped-name$=TYPE" into buf; false when it does not fit. */
bool cv_recipe_rule(const char *name, qt_type type, char *buf, size_t cap);

#endif
