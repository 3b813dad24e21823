/* formats/formats.h — the one public header of formats/: safetensors checkpoints
 * (st_), HF config.json (hf_), GGUF files (gf_) and imatrix files (im_).
 * Parsers work on memory buffers so fuzzers can call them directly; every number read
 * from a file is validated before use.  Hard limits live in formats/limits.h. */
#ifndef FORMATS_H
#define FORMATS_H

#include "../common/qx.h"
#include "../quant/qt.h"

/* ======================= safetensors (st_) ======================= */

typedef enum {
    ST_F64, ST_F32, ST_F16, ST_BF16, ST_F8_E4M3, ST_F8_E5M2,
    ST_I64, ST_I32, ST_I16, ST_I8, ST_U8, ST_BOOL,
    ST_F8_E8M0,     /* OCP MX scale byte 2^(e-127) (DeepSeek-V4's `.scale` tensors) */
    ST_I4_PACKED,   /* never in a file: the logical weight st_open builds from a compressed-tensors
                       pack-quantized triple (see st_tensor.group) */
    ST_FP4_PACKED,  /* never in a file: a DeepSeek-V4 FP4 weight, see st_open */
    ST_DTYPE_COUNT
} st_dtype;

const char *st_dtype_name(st_dtype d);         /* "F8_E4M3" */
int st_dtype_size(st_dtype d);                 /* bytes per element */
bool st_dtype_from_name(const char *s, st_dtype *out);
/* The qt_type of a float dtype (F32/F16/BF16/F8_*); false for integer dtypes. */
bool st_dtype_to_qt(st_dtype d, qt_type *out);

#define ST_MAX_DIMS 8

/* A tensor of an open checkpoint.  Borrowed from its st_model; lives until st_close. */
typedef struct st_tensor {
    const char *name;
    st_dtype dtype;
    int n_dims;
    int64_t shape[ST_MAX_DIMS];     /* torch order: shape[0] outermost */
    uint64_t n_elems;
    uint64_t nbytes;
    uint64_t offset;                /* absolute byte offset in its shard file */
    const uint8_t *data;            /* into the shard's mapping (NULL if nbytes == 0) */
    int shard;                      /* index into the model's shards */
    const struct st_tensor *scale_inv; /* FP8 weight: its `<name>_scale_inv` (F32) or, DeepSeek-V4,
                                          its `<base>.scale` (F8_E8M0), else NULL;
                                          ST_I4_PACKED: its `<name>_scale` (BF16/F16/F32);
                                          ST_FP4_PACKED: its `<base>.scale` (F8_E8M0) */
    int64_t group;                  /* ST_I4_PACKED / ST_FP4_PACKED: columns per scale, else 0 */
} st_tensor;

typedef struct st_model st_model;  /* opaque */

/* Opens a .safetensors file, or a directory holding model.safetensors.index.json (or a
 * single model.safetensors).  Maps shards, validates every header and the index, links FP8
 * weights to their scale_inv companions (any shard).  No tensor data is read, except the
 * 2-element `_shape` of each compressed-tensors pack-quantized weight: every
 * `X.weight_packed` (I32 [rows, ceil(cols/8)]) with `X.weight_scale` ([rows, cols/group]) and
 * `X.weight_shape` (I32/I64 [2] = rows, cols) adds a logical tensor `X.weight` of dtype
 * ST_I4_PACKED, shape [rows, cols], data = the packed words (the three stay listed too).
 * A malformed triple (missing part, shapes that disagree, a zero point) is QX_ESHAPE /
 * QX_EUNSUPPORTED naming the tensor.  DeepSeek-V4 layout (`<base>.weight` + `<base>.scale`,
 * the scale F8_E8M0): an FP8 weight's scale is a [ceil(rows/128), ceil(cols/128)] grid (linked
 * as scale_inv); an I8/U8 weight [rows, k] whose scale is [rows, 2k/32] is FP4 E2M1, two codes
 * per byte: it becomes dtype ST_FP4_PACKED, shape [rows, 2k], group 32 (ST_FP4_GROUP).  Any
 * other `.scale` beside such a weight is QX_ESHAPE.  Multimodal checkpoints (Kimi-K2.5) store the text model
 * as `language_model.model.layers...`: that prefix is dropped from every name (as llama.cpp's
 * converter does); a name present with and without it is QX_EFORMAT.  Other tensors (vision
 * tower, projector) keep their names. */
qx_status st_open(st_model **out, const char *path, qx_err *e);
/* Same over one in-memory safetensors file (borrowed; must outlive the model). */
qx_status st_open_mem(st_model **out, const uint8_t *buf, uint64_t len, const char *label, qx_err *e);
void st_close(st_model *m);

size_t st_count(const st_model *m);                       /* tensors, scales included */
const st_tensor *st_at(const st_model *m, size_t i);      /* sorted by name */
const st_tensor *st_find(const st_model *m, const char *name);
int st_shard_count(const st_model *m);
const char *st_shard_path(const st_model *m, int i);
uint64_t st_shard_size(const st_model *m, int i);
const char *st_model_dir(const st_model *m);              /* dir of the checkpoint */
/* Releases the pages of t (read-once streaming: call after a tensor is consumed). */
void st_release(const st_model *m, const st_tensor *t);

/* Decodes rows [r0, r1) of a 2-D float tensor (FP8 with its scale grid, BF16, F16, F32)
 * into out ((r1-r0) x shape[1] floats).  1-D tensors are one row.  Integer dtypes and
 * FP8 without a scale return QX_EUNSUPPORTED/QX_EFORMAT. */
qx_status st_tensor_rows_f32(const st_tensor *t, int64_t r0, int64_t r1, float *out, qx_err *e);

/* Parses a safetensors header JSON (the bytes after the 8-byte length) for a file whose
 * data section has `data_len` bytes; used by st_open and by the fuzzer. */
typedef struct {
    char *name;
    st_dtype dtype;
    int n_dims;
    int64_t shape[ST_MAX_DIMS];
    uint64_t begin, end;            /* relative to data section */
} st_entry;
qx_status st_parse_header(const char *json, uint64_t json_len, uint64_t data_len, const char *label,
                          st_entry **entries, size_t *n_entries, qx_err *e);
void st_entries_free(st_entry *entries, size_t n);

/* Parses model.safetensors.index.json text: weight_map name -> shard file name. */
typedef struct { char *name; char *shard; } st_index_entry;
qx_status st_parse_index(const char *json, size_t len, const char *label,
                         st_index_entry **entries, size_t *n_entries, qx_err *e);
void st_index_free(st_index_entry *entries, size_t n);

/* Writer (synthetic checkpoints, tests): collects tensors then writes one file with
 * the official layout (u64 header length, JSON header padded with spaces to 8). */
typedef struct st_writer st_writer;
qx_status st_writer_create(st_writer **out, qx_err *e);
/* Adds a tensor; data is copied.  shape in torch order. */
qx_status st_writer_add(st_writer *w, const char *name, st_dtype dtype, int n_dims,
                        const int64_t *shape, const void *data, uint64_t nbytes, qx_err *e);
/* Adds a tensor whose bytes are left as a hole (sparse file); data never materialized. */
qx_status st_writer_add_sparse(st_writer *w, const char *name, st_dtype dtype, int n_dims,
                               const int64_t *shape, qx_err *e);
qx_status st_writer_write(st_writer *w, const char *path, qx_err *e);
uint64_t st_writer_data_bytes(const st_writer *w);
void st_writer_free(st_writer *w);

/* Synthetic checkpoints (formats/synth.c): writes `preset` into dir (created) with config.json,
 * tokenizer files, shards and index, from `seed`.  sparse: tensor bytes are file holes.
 * layers_override > 0 replaces the preset's layer count (benchmarks; not for the V4 presets).
 * Presets: st_synth_preset_names() (tiny-v3 ... tiny-v4, tiny-v4b, v4-flash (sparse only)). */
qx_status st_synth(const char *preset, const char *dir, uint64_t seed, bool sparse, int64_t layers_override, qx_err *e);
const char *st_synth_preset_names(void);

/* ======================= HF config.json (hf_) ======================= */

typedef enum { HF_ARCH_UNKNOWN, HF_ARCH_DEEPSEEK_V3, HF_ARCH_DEEPSEEK_V2, HF_ARCH_LLAMA, HF_ARCH_QWEN2, HF_ARCH_DEEPSEEK_V4 } hf_arch;

/* DeepSeek-V4 compress_ratios entries kept (one per layer, MTP layers included; V4-Flash has 44). */
#define HF_V4_MAX_RATIOS 1024

typedef struct {
    hf_arch arch;
    char architecture[64];          /* "DeepseekV3ForCausalLM" */
    char model_type[32];
    int64_t vocab_size, hidden_size, intermediate_size, n_layers, n_heads, n_kv_heads, head_dim;
    int64_t max_position_embeddings;
    double rms_norm_eps, rope_theta;
    bool tie_word_embeddings;
    int64_t bos_token_id, eos_token_id;   /* -1 when absent */
    bool attention_bias;                  /* qwen2: qkv biases (always true for Qwen2) */
    /* DeepSeek (0 when absent) */
    int64_t q_lora_rank, kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim, v_head_dim;
    int64_t moe_intermediate_size, n_routed_experts, n_shared_experts, n_experts_per_tok;
    int64_t n_group, topk_group, first_k_dense_replace, moe_layer_freq, num_nextn_predict_layers;
    double routed_scaling_factor;
    bool norm_topk_prob;
    char scoring_func[16];                /* "sigmoid" | "softmax" */
    char topk_method[16];                 /* "noaux_tc" | "greedy" | "group_limited_greedy" */
    /* rope scaling */
    char rope_type[16];                   /* "", "yarn", "llama3", "linear" */
    double rope_factor, rope_orig_max_pos, rope_beta_fast, rope_beta_slow;
    double rope_mscale, rope_mscale_all_dim, rope_low_freq_factor, rope_high_freq_factor;
    double rope_ext_factor, rope_attn_factor;   /* yarn extrapolation_factor / attention_factor */
    /* quantization_config */
    bool fp8;
    char fp8_fmt[8];
    int64_t fp8_block[2];
    char fp8_scale_fmt[16];               /* "" (F32 scales) or "ue8m0" (V3.1: F32 powers of two) */
    bool v32;                             /* DeepseekV32ForCausalLM (hf_arch stays DEEPSEEK_V3) */
    int64_t index_n_heads, index_head_dim, index_topk;   /* V3.2 lightning indexer */
    char wrapper_arch[64];                /* multimodal config (text_config inside): its top-level
                                             architecture, e.g. KimiK25ForConditionalGeneration; "" else */
    bool has_vision;                      /* ... with a vision_config (its tensors are not converted) */
    bool int4;                            /* compressed-tensors pack-quantized INT4 (K2-Thinking) */
    int64_t int4_group;                   /* its group_size (columns per scale) */
    /* DeepSeek-V4 (DeepseekV4ForCausalLM, arch deepseek4; 0 when absent).  V4 has no MLA:
     * head_dim is the one shared K=V head's width, n_kv_heads 1. */
    int64_t sliding_window, o_groups, o_lora_rank, hc_mult, hc_sinkhorn_iters, num_hash_layers;
    double hc_eps, compress_rope_theta, swiglu_limit;
    int64_t n_compress_ratios;            /* entries of compress_ratios (>= n_layers) */
    int32_t compress_ratios[HF_V4_MAX_RATIOS];   /* per layer: 0 (window only), 4 (+ indexer) or 128 */
    char torch_dtype[16];
    unsigned has;                         /* HF_HAS_*: which optional keys config.json sets */
} hf_config;

/* Optional config.json keys whose presence (not only value) decides what llama.cpp's
 * convert_hf_to_gguf.py writes. */
enum {
    HF_HAS_HEAD_DIM = 1u << 0, HF_HAS_N_GROUP = 1u << 1, HF_HAS_TOPK_GROUP = 1u << 2,
    HF_HAS_SCORING_FUNC = 1u << 3, HF_HAS_ROUTED_SCALE = 1u << 4, HF_HAS_BETA_FAST = 1u << 5,
    HF_HAS_BETA_SLOW = 1u << 6, HF_HAS_EXT_FACTOR = 1u << 7, HF_HAS_ATTN_FACTOR = 1u << 8,
    HF_HAS_MSCALE_ALL_DIM = 1u << 9, HF_HAS_INTERMEDIATE = 1u << 10, HF_HAS_KV_HEADS = 1u << 11,
};

qx_status hf_config_parse(const char *json, size_t len, const char *label, hf_config *cfg, qx_err *e);
qx_status hf_config_load(const char *dir, hf_config *cfg, qx_err *e);
/* Checks the config against the tensors present (names, shapes, dtypes, expert counts). */
qx_status hf_config_validate(const hf_config *cfg, const st_model *m, qx_err *e);
bool hf_is_moe_layer(const hf_config *cfg, int64_t layer);
/* Names the checkpoint family when config.json tells it ("DeepSeek-V3.1 / R1-0528 (ue8m0
 * scales)", "Kimi-K2", "Kimi-K2-Thinking (INT4 experts)", ...); "" when it cannot tell. */
const char *hf_variant(const hf_config *cfg);
/* V3.1 (scale_fmt ue8m0): counts FP8 scale_inv values that are not powers of two (zero,
 * negative, non-finite or with mantissa bits) over every scale of m; *first names the first
 * such tensor (borrowed from m) or is NULL.  Reads only the scale tensors. */
uint64_t hf_count_non_pow2_scales(const st_model *m, const char **first);

/* ======================= GGUF (gf_) ======================= */
/* (section owned by formats/gguf*.c and formats/imatrix_file.c)
 *
 * GGUF v3 container (little-endian; see ../shared/GGUF-DEEPSEEK2.md §3):
 *   "GGUF" u32 version, i64 n_tensors, i64 n_kv,
 *   n_kv x { string key, i32 gf_type, value },
 *   n_tensors x { string name, u32 n_dims, i64 ne[n_dims], i32 ggml type, u64 offset },
 *   zero padding to `general.alignment` (u32, power of two, default 32), tensor data.
 *   string = u64 length + bytes (no NUL); array = i32 elem type, u64 n, n items (no nesting).
 * Tensor offsets are relative to the data section and, in files we write, are exactly
 * Σ PAD(nbytes_j, alignment) over the preceding tensors in info order (what llama.cpp demands).
 * The reader accepts third-party files whose offsets are aligned, in bounds and
 * non-overlapping but not packed that way, and reports it via gf_offsets_canonical()
 * (llama.cpp refuses them; `qforge verify` fails on them).
 * Reader decisions beyond llama.cpp's own checks: versions 2 and 3 are read (1 and > 3 are
 * QX_EUNSUPPORTED); n_dims 0 is accepted as one element (llama.cpp does) but every ne must
 * be >= 1 (llama.cpp divides by ne[1..3]); bools must be 0 or 1; keys and tensor names must
 * be non-empty and free of NUL bytes; a ggml type id < QT_GGUF_COUNT that quant/ does not
 * know is QX_EUNSUPPORTED, any other unknown id QX_EFORMAT; every tensor must lie inside the
 * file (the padding after the last one may be missing).  An open gf_file is immutable:
 * any number of threads may read it at once.
 *
 * Checksums (our addition): key GF_KEY_TENSOR_XXH3, a u64 array with one element per tensor
 * in tensor-info order, element i = XXH3_64bits(data bytes of tensor i) (seed 0, exactly
 * nbytes, padding excluded).  `qforge verify` checks them. */

#define GF_MAGIC              "GGUF"
#define GF_VERSION            3u
#define GF_DEFAULT_ALIGNMENT  32u
#define GF_MAX_DIMS           4
#define GF_NAME_MAX           64     /* tensor names are < GF_NAME_MAX bytes */

/* Metadata keys used by the container itself and by qforge (one source of truth). */
#define GF_KEY_ALIGNMENT      "general.alignment"            /* u32 */
#define GF_KEY_ARCHITECTURE   "general.architecture"         /* string */
#define GF_KEY_TYPE           "general.type"                 /* string ("model", "imatrix") */
#define GF_KEY_NAME           "general.name"                 /* string */
#define GF_KEY_FILE_TYPE      "general.file_type"            /* u32 llama_ftype */
#define GF_KEY_QUANT_VERSION  "general.quantization_version" /* u32 = 2 */
#define GF_KEY_TENSOR_XXH3    "qforge.tensor_xxh3"           /* u64[n_tensors] */
#define GF_KEY_QFORGE_VERSION "qforge.version"               /* string */
#define GF_KEY_QFORGE_SOURCE  "qforge.source"                /* string: what it was made from */
/* Split sets (llama.cpp's gguf-split convention): files PREFIX-00001-of-0000N.gguf, each a
 * complete GGUF; the first carries all model metadata, every file carries these three keys;
 * tensors are never cut across files and keep their set order (file 1's, then file 2's...). */
#define GF_KEY_SPLIT_NO       "split.no"             /* u16: this file's index in the set, from 0 */
#define GF_KEY_SPLIT_COUNT    "split.count"          /* u16: files in the set */
#define GF_KEY_SPLIT_TENSORS  "split.tensors.count"  /* i32: tensors in the whole set */
#define GF_SPLIT_MAX_FILES    65535                  /* split.count is a u16 */

/* KV value types (GGUF's numbering). */
typedef enum {
    GF_U8 = 0, GF_I8 = 1, GF_U16 = 2, GF_I16 = 3, GF_U32 = 4, GF_I32 = 5, GF_F32 = 6,
    GF_BOOL = 7, GF_STRING = 8, GF_ARRAY = 9, GF_U64 = 10, GF_I64 = 11, GF_F64 = 12,
    GF_TYPE_COUNT
} gf_type;

const char *gf_type_name(gf_type t);      /* "u32", "string", "array"; "?" if unknown */
/* Bytes of one value of a fixed-size type (bool = 1); 0 for string, array, unknown. */
size_t gf_type_size(gf_type t);

/* Scalar value; bool is stored as 0/1. */
typedef union {
    uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32;
    float f32; uint8_t b; uint64_t u64; int64_t i64; double f64;
} gf_scalar;

/* One metadata pair of an open file.  Borrowed from its gf_file; lives until gf_close.
 * All pointers are native, aligned copies (not into the mapping); strings are
 * NUL-terminated (they may also contain NULs: use the lengths). */
typedef struct {
    const char *key;
    gf_type type;                 /* GF_ARRAY for arrays */
    gf_type arr_type;             /* element type when type == GF_ARRAY */
    uint64_t n;                   /* element count for arrays, 1 for scalars and strings */
    gf_scalar v;                  /* fixed-size scalar types */
    const char *str;              /* GF_STRING */
    uint64_t str_len;
    const void *arr;              /* array of fixed-size elements: n values (bool as uint8_t) */
    const char *const *strs;      /* array of strings: n strings */
    const uint64_t *str_lens;     /* their lengths */
} gf_kv;

/* One tensor of an open file.  Borrowed from its gf_file; lives until gf_close. */
typedef struct {
    const char *name;
    int n_dims;                   /* 1..4 */
    int64_t ne[GF_MAX_DIMS];      /* ggml order: ne[0] = row length; unused dims are 1 */
    qt_type type;
    uint64_t n_elems;
    uint64_t nbytes;              /* exact data bytes (padding excluded) */
    uint64_t offset;              /* relative to the data section */
    uint64_t file_offset;         /* absolute offset in its file */
    const uint8_t *data;          /* into the mapping / buffer (NULL if nbytes == 0) */
    int split;                    /* file of a split set holding it (0 for a single file) */
} gf_tensor;

typedef struct gf_file gf_file;   /* opaque */

/* Opens and fully validates a GGUF file (mmap).  Errors: QX_ENOTFOUND / QX_EIO for the
 * file itself, QX_EFORMAT for any violation (message names the file, key or tensor),
 * QX_EUNSUPPORTED for a valid file we cannot use (version 1, unknown tensor type).
 * A split set is opened by its first file (split.count > 1, split.no 0): the other files
 * are found by llama.cpp's naming rule, each validated, and the set reads as one model:
 * the first file's metadata, every tensor in set order (gf_tensor.split says which file).
 * Each file must carry split.no = its index, the same split.count, and the set exactly
 * split.tensors.count tensors with no duplicate names; a missing or foreign file is an
 * error naming it.  Opening a later file of a set is QX_EINVAL naming the first file. */
qx_status gf_open(gf_file **out, const char *path, qx_err *e);
/* Opens exactly one file, even when it belongs to a split set (split keys left as data). */
qx_status gf_open_part(gf_file **out, const char *path, qx_err *e);
/* Same over a buffer (borrowed; must outlive the file).  label names it in messages. */
qx_status gf_open_mem(gf_file **out, const uint8_t *buf, uint64_t len, const char *label, qx_err *e);
void gf_close(gf_file *f);

const char *gf_label(const gf_file *f);        /* path or label */
uint32_t gf_version(const gf_file *f);         /* 2 or 3 */
uint32_t gf_alignment(const gf_file *f);
uint64_t gf_data_offset(const gf_file *f);     /* absolute start of the (first) file's data section */
uint64_t gf_file_size(const gf_file *f);       /* bytes of the file, or of the whole split set */
int gf_split_count(const gf_file *f);          /* files in the set (1 for a single file) */
const char *gf_split_path(const gf_file *f, int k);     /* path of file k (gf_label for k = 0) */
uint64_t gf_split_file_size(const gf_file *f, int k);   /* bytes of file k */
/* llama.cpp's naming: buf = "PREFIX-%05d-of-%05d.gguf" of file k (from 0) of n.  False when
 * it does not fit in cap. */
bool gf_split_name(char *buf, size_t cap, const char *prefix, int k, int n);
/* The PREFIX of path when it ends in "-%05d-of-%05d.gguf" for file k of n; false otherwise. */
bool gf_split_prefix(char *buf, size_t cap, const char *path, int k, int n);
/* True when every tensor sits at the packed llama.cpp offset (always for files we write). */
bool gf_offsets_canonical(const gf_file *f);

size_t gf_kv_count(const gf_file *f);
const gf_kv *gf_kv_at(const gf_file *f, size_t i);          /* file order */
const gf_kv *gf_find_kv(const gf_file *f, const char *key);  /* NULL when absent */

/* Typed getters.  QX_ENOTFOUND when the key is absent; QX_EFORMAT when its type differs
 * (the message names the key, the wanted and the found type).  No conversions. */
qx_status gf_get_u32(const gf_file *f, const char *key, uint32_t *out, qx_err *e);
qx_status gf_get_i32(const gf_file *f, const char *key, int32_t *out, qx_err *e);
qx_status gf_get_u64(const gf_file *f, const char *key, uint64_t *out, qx_err *e);
qx_status gf_get_f32(const gf_file *f, const char *key, float *out, qx_err *e);
qx_status gf_get_bool(const gf_file *f, const char *key, bool *out, qx_err *e);
/* *out borrowed from f. */
qx_status gf_get_str(const gf_file *f, const char *key, const char **out, qx_err *e);
/* Array of fixed-size `elem` values: *data (aligned, native) and *n borrowed from f. */
qx_status gf_get_arr(const gf_file *f, const char *key, gf_type elem, const void **data,
                     uint64_t *n, qx_err *e);
qx_status gf_get_str_arr(const gf_file *f, const char *key, const char *const **strs,
                         uint64_t *n, qx_err *e);

size_t gf_tensor_count(const gf_file *f);
const gf_tensor *gf_tensor_at(const gf_file *f, size_t i);           /* info order */
const gf_tensor *gf_find_tensor(const gf_file *f, const char *name); /* NULL when absent */
/* Releases the pages of t (mmap'd files; no-op for buffers). */
void gf_release(const gf_file *f, const gf_tensor *t);

/* XXH3-64 of n bytes (seed 0): the per-tensor checksum convention above. */
uint64_t gf_checksum(const void *data, uint64_t n);
/* Re-hashes every tensor against GF_KEY_TENSOR_XXH3.  QX_ENOTFOUND when the file has no
 * checksums; QX_EFORMAT on a wrong-sized array or a mismatch (message names the tensor).
 * *bad_tensor (optional) gets the index of the first mismatch, or -1. */
qx_status gf_verify_checksums(const gf_file *f, int64_t *bad_tensor, qx_err *e);

/* ---- writer: plan, then execute ----
 * 1. gf_writer_create; set KVs (any order; a set on an existing key replaces its value in
 *    place) and add tensor infos (info order = file order).
 * 2. gf_writer_plan computes the header size, every tensor offset and the file size.  After
 *    it, only fixed-size values of existing keys may change (same type; arrays element-wise
 *    through gf_writer_set_u64_array_elem), so the header size never changes.
 * 3. gf_writer_write_header(fd) writes the header and its padding and sizes the file
 *    (ftruncate to gf_writer_file_size, so all padding reads as zeros).
 * 4. Tensor bytes go in with gf_writer_pwrite from any thread, in any order (the writer is
 *    read-only after plan; nothing is buffered).
 * 5. Optionally update fixed-size values (checksums) and gf_writer_rewrite_header(fd). */
typedef struct gf_writer gf_writer;

qx_status gf_writer_create(gf_writer **out, qx_err *e);
void gf_writer_free(gf_writer *w);

/* Scalars: val points to one value of `type` (bool: one uint8_t or bool, 0/1). */
qx_status gf_writer_set(gf_writer *w, const char *key, gf_type type, const void *val, qx_err *e);
qx_status gf_writer_set_u32(gf_writer *w, const char *key, uint32_t v, qx_err *e);
qx_status gf_writer_set_i32(gf_writer *w, const char *key, int32_t v, qx_err *e);
qx_status gf_writer_set_u64(gf_writer *w, const char *key, uint64_t v, qx_err *e);
qx_status gf_writer_set_f32(gf_writer *w, const char *key, float v, qx_err *e);
qx_status gf_writer_set_bool(gf_writer *w, const char *key, bool v, qx_err *e);
qx_status gf_writer_set_str(gf_writer *w, const char *key, const char *s, qx_err *e);
/* Arrays (copied): n values of fixed-size type elem (bool elements are uint8_t 0/1),
 * or n NUL-terminated strings. */
qx_status gf_writer_set_arr(gf_writer *w, const char *key, gf_type elem, const void *data,
                            uint64_t n, qx_err *e);
qx_status gf_writer_set_str_arr(gf_writer *w, const char *key, const char *const *strs,
                                uint64_t n, qx_err *e);
/* Copies one KV of an open file (any type), e.g. to carry metadata over. */
qx_status gf_writer_set_kv(gf_writer *w, const gf_kv *kv, qx_err *e);
bool gf_writer_has_key(const gf_writer *w, const char *key);
qx_status gf_writer_remove_key(gf_writer *w, const char *key, qx_err *e);  /* before plan */

/* generation_config.json -> general.sampling.* (formats/hf_config.c), as llama.cpp's converter
 * writes them (gguf-py metadata.py: temperature -> temp, top_k, top_p, min_p, xtc_probability,
 * xtc_threshold, penalty_last_n, penalty_repeat, mirostat, mirostat_tau, mirostat_eta,
 * sequence): each key only when present and not null; i32 for top_k, penalty_last_n and
 * mirostat (an integer in range, else not written), string for sequence, f32 otherwise.  A
 * document that is not a JSON object sets nothing (llama.cpp ignores an unreadable file);
 * hf_sampling_load without the file sets nothing either. */
qx_status hf_sampling_parse(const char *json, size_t len, gf_writer *w, qx_err *e);
qx_status hf_sampling_load(const char *dir, gf_writer *w, qx_err *e);
/* Reserves GF_KEY_TENSOR_XXH3 (u64 zeros, one per tensor, sized at plan time). */
qx_status gf_writer_reserve_checksums(gf_writer *w, qx_err *e);

/* Adds a tensor info: ne[0..n_dims) in ggml order, type a GGUF type with ne[0] a multiple
 * of its block size; nbytes = qt_row_size(type, ne0) * ne1 * ne2 * ne3.  n_dims is written
 * as given (ggml's own writer drops trailing 1s; pass that count for byte-identical files).
 * *index (optional) gets its position in info order. */
qx_status gf_writer_add_tensor(gf_writer *w, const char *name, qt_type type, int n_dims,
                               const int64_t *ne, size_t *index, qx_err *e);
size_t gf_writer_tensor_count(const gf_writer *w);
int64_t gf_writer_find_tensor(const gf_writer *w, const char *name);   /* -1 when absent */

qx_status gf_writer_plan(gf_writer *w, qx_err *e);
/* Valid after plan: */
uint64_t gf_writer_header_size(const gf_writer *w);   /* bytes before padding */
uint64_t gf_writer_data_offset(const gf_writer *w);   /* absolute start of data section */
uint64_t gf_writer_file_size(const gf_writer *w);     /* exact size of the whole file (set) */
uint64_t gf_writer_tensor_offset(const gf_writer *w, size_t i);   /* absolute file offset */
uint64_t gf_writer_tensor_nbytes(const gf_writer *w, size_t i);
const char *gf_writer_tensor_name(const gf_writer *w, size_t i);

/* Serializes the planned header (header_size bytes) into a malloc'd buffer (free()). */
qx_status gf_writer_header_bytes(const gf_writer *w, uint8_t **out, uint64_t *len, qx_err *e);
/* Writes header + zero padding at offset 0 of fd and ftruncates fd to the file size.
 * label (file name) is used in messages. */
qx_status gf_writer_write_header(const gf_writer *w, int fd, const char *label, qx_err *e);
/* Split output (llama.cpp's gguf-split rules; call before the plan; 0 = no limit): a new file
 * starts before tensor i when i is a positive multiple of max_tensors, or when the file's
 * tensor bytes (each padded to the alignment) would pass max_bytes; a tensor larger than
 * max_bytes gets a file of its own and no file is empty.  When the limits make one file the
 * output is an ordinary single GGUF without split keys.  With several files, file 0 gets every
 * KV plus split.*, files k > 0 only split.* (and general.alignment if not the default);
 * GF_KEY_TENSOR_XXH3 covers the whole set in set order.  The writer adds the split keys
 * itself: setting them is an error at plan time. */
qx_status gf_writer_set_split(gf_writer *w, uint64_t max_bytes, uint64_t max_tensors, qx_err *e);
/* After the plan: files in the set (1 when unsplit), the file of tensor i, the bytes of file k.
 * gf_writer_file_size is the whole set; header_size / data_offset are file 0's;
 * gf_writer_tensor_offset is the absolute offset in the tensor's own file. */
int gf_writer_split_count(const gf_writer *w);
int gf_writer_tensor_split(const gf_writer *w, size_t i);
uint64_t gf_writer_split_size(const gf_writer *w, int k);
/* Header of file k (gf_writer_write_header / rewrite_header are file 0). */
qx_status gf_writer_write_header_at(const gf_writer *w, int k, int fd, const char *label, qx_err *e);
qx_status gf_writer_rewrite_header_at(const gf_writer *w, int k, int fd, const char *label, qx_err *e);

/* Writes n bytes of tensor i at byte `off` within the tensor (off + n <= nbytes), retrying
 * short writes; fd is the file holding tensor i (gf_writer_tensor_split).  Thread-safe.  ENOSPC/EFBIG/EDQUOT -> QX_ENOSPC, other errors QX_EIO; the
 * message names the file and the tensor. */
qx_status gf_writer_pwrite(const gf_writer *w, int fd, const char *label, size_t i, uint64_t off,
                           const void *buf, uint64_t n, qx_err *e);
/* Changes element i of an existing u64-array KV (allowed after plan). */
qx_status gf_writer_set_u64_array_elem(gf_writer *w, const char *key, uint64_t i, uint64_t v, qx_err *e);
/* Sets element i of GF_KEY_TENSOR_XXH3 (reserved first). */
qx_status gf_writer_set_checksum(gf_writer *w, size_t tensor, uint64_t xxh3, qx_err *e);
/* Rewrites the header in place (same size as planned). */
qx_status gf_writer_rewrite_header(const gf_writer *w, int fd, const char *label, qx_err *e);

/* One-shot for small files (tests, imatrix): plans, creates path, writes header and
 * data[i] (nbytes of tensor i each) for every tensor, fills reserved checksums, fsyncs,
 * closes. */
qx_status gf_writer_write_file(gf_writer *w, const char *path, const void *const *data, qx_err *e);

/* ======================= imatrix files (im_) ======================= */
/* Importance-matrix statistics in memory, read from / written to llama.cpp's GGUF imatrix
 * (general.type "imatrix", imatrix.datasets, imatrix.chunk_count, imatrix.chunk_size,
 * per weight W: W.in_sum2 F32 [ne0, nmat] and W.counts F32 [1, nmat]) or its legacy .dat
 * (../shared/GGUF-DEEPSEEK2.md §7). */

#define IM_KEY_DATASETS    "imatrix.datasets"     /* string array */
#define IM_KEY_CHUNK_COUNT "imatrix.chunk_count"  /* u32 */
#define IM_KEY_CHUNK_SIZE  "imatrix.chunk_size"   /* u32 */
#define IM_SUFFIX_SUM2     ".in_sum2"
#define IM_SUFFIX_COUNTS   ".counts"

typedef struct {
    char *name;          /* GGUF weight name, "blk.3.ffn_down_exps.weight" */
    int64_t ne0;         /* in-features (row length of the weight) */
    int64_t nmat;        /* 1, or the number of experts of a stacked tensor */
    float *in_sum2;      /* (nmat, ne0): raw Σ x² of the inputs seen by matrix k */
    float *counts;       /* (nmat): tokens seen by matrix k */
    /* Exact statistics (NULL unless im_entry_exact was called): Σ x² as an unsigned 128-bit
     * fixed-point number in units of 2^-64 per (k, j): sum_x[(k*ne0 + j)*2] the fraction,
     * [.. + 1] the integer part; count_x[k] the token count.  Each term is truncated to the
     * unit on its own and the sums are integer additions, so any split of the tokens into
     * parts adds up to the same bits: shards merged (im_merge) equal the whole run. */
    uint64_t *sum_x;     /* (nmat, ne0, 2) */
    uint64_t *count_x;   /* (nmat) */
} im_entry;

typedef struct {
    im_entry *entries;   /* n_entries, in insertion (file) order */
    size_t n_entries, cap_entries;
    char **datasets;     /* n_datasets names */
    size_t n_datasets;
    uint32_t chunk_count;  /* chunks processed */
    uint32_t chunk_size;   /* tokens per chunk (0 when read from a .dat) */
    bool legacy;           /* read from a .dat: entries are flat (nmat 1, ne0 = all values),
                              counts[0] = ncall; see im_entry_reshape */
    qx_shard shard;        /* a `--shard` partial result (count > 0): written and read as the
                              qforge.shard.* keys, with the exact tensors W.in_sum2_x, W.counts_x */
} im_matrix;

qx_status im_create(im_matrix **out, qx_err *e);
void im_free(im_matrix *m);
/* Adds an entry with zeroed sums and counts (*out borrowed from m; valid until the next
 * im_add).  Duplicate names are QX_EINVAL. */
qx_status im_add(im_matrix *m, const char *name, int64_t ne0, int64_t nmat, im_entry **out, qx_err *e);
qx_status im_add_dataset(im_matrix *m, const char *name, qx_err *e);
im_entry *im_find(const im_matrix *m, const char *name);   /* NULL when absent */

qx_status im_write_gguf(const im_matrix *m, const char *path, qx_err *e);
/* Both writers store entries sorted by name (as llama.cpp does).  Legacy .dat: one
 * ncall = ceil(max count / chunk_size) per entry (chunk_size 0 counts as 1), values
 * in_sum2[k]/counts[k] * ncall (a matrix with count 0 stores ones); entries whose counts are
 * all zero are skipped; per-matrix counts are lost (as in llama.cpp). */
qx_status im_write_dat(const im_matrix *m, const char *path, qx_err *e);
/* Exact accumulation (`--shard` and qforge merge).  W.in_sum2_x is I64 [2, ne0, nmat] and
 * W.counts_x I64 [1, nmat] (llama.cpp ignores tensors of other suffixes). */
#define IM_SUFFIX_SUM2_X   ".in_sum2_x"
#define IM_SUFFIX_COUNTS_X ".counts_x"
#define IM_KEY_SHARD_INDEX "qforge.shard.index"   /* u32 */
#define IM_KEY_SHARD_COUNT "qforge.shard.count"   /* u32 */
#define IM_KEY_SHARD_UNITS "qforge.shard.units"   /* u64: chunks of the whole run */
#define IM_KEY_SHARD_FIRST "qforge.shard.first"   /* u64: this shard's first chunk */
#define IM_KEY_SHARD_N     "qforge.shard.n"       /* u64: its chunks */
#define IM_KEY_SHARD_INPUT "qforge.shard.input"   /* u64: XXH3-64 of all chunks' token ids */
#define IM_KEY_SHARD_MODEL "qforge.shard.model"   /* string */
/* Allocates en's exact arrays, zeroed (no-op when present). */
qx_status im_entry_exact(im_entry *en, qx_err *e);
/* Adds x*x to the fixed-point sum acc[0..1]; false (acc unchanged) when x is not finite or
 * the sum would reach 2^64. */
static inline bool im_fx_add_sq(uint64_t *acc, float x) {
    double t = (double)x * (double)x * 0x1p64;   /* exact: a float's square has 48 bits */
    if (!(t < 0x1p128)) return false;
    uint64_t hi = t < 0x1p64 ? 0 : (uint64_t)(t * 0x1p-64);
    uint64_t lo = (uint64_t)(t - (double)hi * 0x1p64);   /* exact: the low bits of t */
    uint64_t l = acc[0] + lo, c = l < lo, h = acc[1] + hi;
    if (h < hi || h + c < c) return false;
    acc[0] = l;
    acc[1] = h + c;
    return true;
}
/* The fixed-point value as a float (deterministic in the bits: what in_sum2 stores). */
float im_fx_float(const uint64_t *acc);
/* Sets en's in_sum2 and counts from its exact arrays. */
void im_entry_settle(im_entry *en);
/* Frees every entry's exact arrays and clears m->shard (the whole-run file form). */
void im_drop_exact(im_matrix *m);
/* Adds src's exact statistics into dst (both exact; entries matched by name, new ones
 * appended), and src's chunk_count.  QX_EINVAL naming label when an entry's shape differs,
 * QX_EFORMAT when src has no exact statistics, QX_EUNSUPPORTED when a sum reaches 2^64. */
qx_status im_merge(im_matrix *dst, const im_matrix *src, const char *label, qx_err *e);

/* Reads either format (GGUF when the file starts with "GGUF", else legacy .dat). */
qx_status im_load(im_matrix **out, const char *path, qx_err *e);
qx_status im_load_mem(im_matrix **out, const uint8_t *buf, uint64_t len, const char *label, qx_err *e);

/* Splits a flat entry (legacy .dat: nmat 1, ne0 = n_experts * in-features) into matrices of
 * ne0 columns, each with the entry's count; no-op when en->ne0 == ne0 already.  QX_ESHAPE
 * when the sizes do not divide. */
qx_status im_entry_reshape(im_entry *en, int64_t ne0, qx_err *e);
/* Makes en usable for a weight of rows ne0 and nmat stacked matrices (experts or heads):
 * splits a flat entry (a legacy .dat's, or llama-imatrix's of a per-head 3-D weight such as
 * attn_k_b/attn_v_b: a plain MUL_MAT, in_sum2 [ne0 * nmat, 1], one count) into rows of ne0,
 * then checks the shape.  QX_ESHAPE (message says why) when it does not fit. */
qx_status im_entry_fit(im_entry *en, bool legacy, int64_t ne0, int64_t nmat, qx_err *e);
/* Per-column importance of matrix k (0 <= k < nmat): out[j] = in_sum2[k][j] / counts[k],
 * all ones when counts[k] == 0.  out holds ne0 floats. */
qx_status im_importance(const im_entry *en, int64_t k, float *out, qx_err *e);

#endif
