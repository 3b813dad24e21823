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
    ST_I64, ST_I32, ST_I16, ST_I8, ST_U8, ST_BOOL, ST_DTYPE_COUNT
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
    const struct st_tensor *scale_inv; /* FP8 weight: its `<name>_scale_inv`, else NULL */
} st_tensor;

typedef struct st_model st_model;  /* opaque */

/* Opens a .safetensors file, or a directory holding model.safetensors.index.json (or a
 * single model.safetensors).  Maps shards, validates every header and the index, links FP8
 * weights to their scale_inv companions (any shard).  No tensor data is read. */
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

/* ======================= HF config.json (hf_) ======================= */

typedef enum { HF_ARCH_UNKNOWN, HF_ARCH_DEEPSEEK_V3, HF_ARCH_DEEPSEEK_V2, HF_ARCH_LLAMA, HF_ARCH_QWEN2 } hf_arch;

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
    /* quantization_config */
    bool fp8;
    char fp8_fmt[8];
    int64_t fp8_block[2];
    char torch_dtype[16];
} hf_config;

qx_status hf_config_parse(const char *json, size_t len, const char *label, hf_config *cfg, qx_err *e);
qx_status hf_config_load(const char *dir, hf_config *cfg, qx_err *e);
/* Checks the config against the tensors present (names, shapes, dtypes, expert counts). */
qx_status hf_config_validate(const hf_config *cfg, const st_model *m, qx_err *e);
bool hf_is_moe_layer(const hf_config *cfg, int64_t layer);

/* ======================= GGUF (gf_) ======================= */
/* (section owned by formats/gguf.c) */

#endif
