/* calib/calib.h — the one public header of calib/: the layer-major forward engine over
 * weight views of any type (cal_model_, cal_engine_), and its observers: importance matrix,
 * perplexity and KL drift (cal_ppl_, cal_imatrix_).  The tokenizer is tok/tok.h. */
#ifndef CALIB_H
#define CALIB_H

#include "../common/qx.h"
#include "../quant/qt.h"
#include "../formats/formats.h"

/* ======================= engine (cal_) — calib/engine*.c ======================= */
/* The layer-major forward engine (DESIGN.md decisions 4-6).  A cal_model is a source of
 * weight views (an HF checkpoint dir: FP8 block-scaled / BF16 / F16 / F32 safetensors)
 * plus hyper-parameters; cal_forward runs n_win independent token windows through layer L
 * for all windows before touching layer L+1, mapping only that layer's weights and
 * releasing their pages afterwards.  Activations of all windows are kept ([T, n_embd] f32,
 * T = n_win * n_ctx); per-layer temporaries are bounded by cal_run_params.batch_tokens.
 * What the caller wants to know (logits, importance statistics, hidden states, routing)
 * arrives through cal_observer callbacks, always from the calling thread. */

typedef struct cal_model cal_model;   /* opaque */

typedef enum { CAL_ARCH_DEEPSEEK2, CAL_ARCH_LLAMA, CAL_ARCH_QWEN2, CAL_ARCH_DEEPSEEK4 } cal_arch;

#define CAL_MAX_ROPE_PAIRS 256

typedef struct {
    cal_arch arch;
    int64_t n_vocab, n_embd, n_layer, n_ff;      /* n_ff: dense MLP width */
    int64_t n_head, n_head_kv, head_dim;         /* llama/qwen2 attention */
    float norm_eps;
    /* deepseek2 (0 elsewhere) */
    int64_t q_lora, kv_lora, qk_nope, qk_rope, v_dim;
    int64_t n_exp, n_exp_used, n_shared, n_ff_exp, n_group, topk_group, n_dense_first;
    float route_scale;
    bool route_sigmoid, route_norm;
    /* rotary embedding: rope_dim dims of each head, pairs (neox: i, i+dim/2; else 2i, 2i+1) */
    int rope_dim;
    bool rope_neox;
    float rope_inv_freq[CAL_MAX_ROPE_PAIRS];   /* f32 values as the reference computes them */
    float rope_mscale;                         /* cos/sin factor (YaRN: 1 for V3) */
    float attn_scale;                          /* softmax scale */
    int32_t bos_id;                            /* -1 when unknown */
    bool add_bos;
    /* deepseek32 (V3.2): DeepSeek Sparse Attention, as llama.cpp's deepseek32 graph computes it
     * (calib/engine.c, docs/family.md): the lightning indexer (index_n_head heads of
     * index_head_dim) scores every causal key and MLA attends only to the index_topk best.
     * index_topk 0: dense attention.  Windows of n_ctx <= index_topk keep every key, so the
     * indexer is skipped there (exactly dense MLA). */
    int64_t index_topk, index_n_head, index_head_dim;
    /* deepseek4 (V4; 0 elsewhere), as llama.cpp's deepseek4 graph computes it (calib/engine_v4.c):
     * hc hyper-connection streams of n_embd each (the residual state is [T, hc * n_embd]),
     * mixed per token by hc_iters Sinkhorn iterations with hc_eps; MQA with one K=V head of
     * head_dim (the last qk_rope dims roped), a sliding window of n_swa tokens on every layer,
     * compressed rows per layer (calib/engine_int.h: ratio 4 with the indexer's index_topk,
     * ratio 128 all), grouped output projection (o_groups groups of o_lora), hash routing in
     * the first n_hash layers.  rope_inv_freq is the plain rope (ratio-0 layers);
     * rope_c_inv_freq the compressed layers' (compress_rope_freq_base, YaRN when configured). */
    int64_t hc, hc_iters, n_swa, o_groups, o_lora, n_hash;
    float hc_eps;
    float rope_c_inv_freq[CAL_MAX_ROPE_PAIRS];
} cal_hparams;

/* Floats per token of the residual state: n_embd, or hc * n_embd with hyper-connections. */
static inline int64_t cal_state_width(const cal_hparams *hp) { return hp->hc > 0 ? hp->hc * hp->n_embd : hp->n_embd; }

/* Weights the engine multiplies by (observer identity).  Expert kinds carry an expert
 * index; CAL_W_K_B/CAL_W_V_B are the MLA halves of kv_b in GGUF form (attn_k_b: input q_nope
 * per head, N wide; attn_v_b: input the per-head attention output in the latent space, KVL
 * wide), reported only when cal_observer.want_mla_split is set.  The V3.2 indexer's inputs are
 * reported at every context length (llama.cpp's graph always runs the indexer, so
 * llama-imatrix has entries for it), even where the engine skips it (n_ctx <= top_k). */
typedef enum {
    CAL_W_Q, CAL_W_K, CAL_W_V, CAL_W_O,
    CAL_W_Q_A, CAL_W_Q_B, CAL_W_KV_A, CAL_W_KV_B, CAL_W_K_B, CAL_W_V_B,
    CAL_W_GATE, CAL_W_UP, CAL_W_DOWN,
    CAL_W_ROUTER, CAL_W_EXP_GATE, CAL_W_EXP_UP, CAL_W_EXP_DOWN,
    CAL_W_SH_GATE, CAL_W_SH_UP, CAL_W_SH_DOWN,
    CAL_W_IDX_Q_B, CAL_W_IDX_K, CAL_W_IDX_PROJ,   /* V3.2 lightning indexer (wq_b, wk, weights_proj) */
    CAL_W_OUTPUT,
    /* deepseek4 (after OUTPUT: the statistics files store kind numbers) */
    CAL_W_KV,                                     /* attn_kv: the shared K=V head */
    CAL_W_O_A, CAL_W_O_B,                         /* attn_output_a (one matrix per group), attn_output_b */
    CAL_W_HC_ATTN, CAL_W_HC_FFN, CAL_W_HC_HEAD,   /* hc_attn_fn, hc_ffn_fn, output_hc_fn (layer -1) */
    CAL_W_COMP_KV, CAL_W_COMP_GATE,               /* attn_compressor_kv / _gate */
    CAL_W_IDX_COMP_KV, CAL_W_IDX_COMP_GATE,       /* indexer_compressor_kv / _gate */
    CAL_W_KIND_COUNT
} cal_wkind;

/* Writes the HF name ("model.layers.1.mlp.experts.3.down_proj.weight") or, when gguf, the
 * GGUF name of the (stacked) tensor ("blk.1.ffn_down_exps.weight") into buf.  Returns false
 * when it does not fit or the kind has no name in that scheme (K_B/V_B in HF). */
bool cal_weight_name(cal_wkind kind, int layer, int expert, bool gguf, char *buf, size_t cap);

typedef struct {
    void *ud;
    /* Input rows x[T, cols] (ld floats apart) about to be multiplied by weight (kind, layer,
     * expert: -1 when not an expert); layer -1 for CAL_W_OUTPUT. */
    void (*matmul_input)(void *ud, cal_wkind kind, int layer, int expert, const float *x,
                         int64_t ld, int64_t T, int64_t cols);
    bool want_mla_split;   /* also report CAL_W_K_B / CAL_W_V_B inputs (costs extra work) */
    /* Residual stream after decoder layer `layer` for global tokens [t0, t0+T); layer ==
     * n_layer is the output of the final norm. */
    void (*hidden)(void *ud, int layer, int64_t t0, const float *h, int64_t T, int64_t n_embd);
    /* MoE routing of tokens [t0, t0+T): ids/w [T, k], ids ascending. */
    void (*routing)(void *ud, int layer, int64_t t0, int64_t T, int k, const int32_t *ids,
                    const float *w);
    /* Logits of window `win` for positions [p0, n_ctx): rows [n_ctx - p0, n_vocab].  A
     * non-OK return stops the run with that status. */
    qx_status (*logits)(void *ud, int64_t win, int64_t p0, const float *logits, int64_t n_rows,
                        int64_t n_vocab, qx_err *e);
    /* Progress: layer being processed (n_layer = output head), tokens of it done. */
    void (*progress)(void *ud, int layer, int n_layer, int64_t done, int64_t total);
    /* Every token has been through decoder layer `layer` (n_layer: through the output head):
     * all of that layer's matmul_input calls are made.  A non-OK return stops the run. */
    qx_status (*layer_done)(void *ud, int layer, qx_err *e);
} cal_observer;

typedef struct {
    int n_threads;          /* 0: OpenMP default */
    int64_t batch_tokens;   /* tokens per internal batch within a layer (0: 4096) */
    int64_t logits_from;    /* first position of each window whose logits are wanted */
    bool want_logits;       /* compute the output head at all */
    bool ref_kernels;       /* scalar reference matmul/attention (tests, benchmark baseline) */
    const struct kn_backend *backend;   /* where matmuls run (kernels/kernels.h); NULL: CPU */
} cal_run_params;

cal_run_params cal_run_default_params(void);

/* Opens MODEL: an HF checkpoint dir (config.json + safetensors).  Reads headers and small
 * metadata only. */
qx_status cal_model_open(cal_model **out, const char *path, qx_err *e);
void cal_model_close(cal_model *m);    /* accepts NULL */
const cal_hparams *cal_model_hparams(const cal_model *m);
const char *cal_model_path(const cal_model *m);

/* Runs n_win windows of n_ctx tokens (ids[n_win * n_ctx]); window w is an independent
 * sequence at positions 0..n_ctx-1.  Ids out of range are QX_EINVAL. */
qx_status cal_forward(cal_model *m, const int32_t *ids, int64_t n_win, int64_t n_ctx,
                      const cal_run_params *p, const cal_observer *obs, qx_err *e);


/* ---- perplexity and KL drift (cal_ppl_) — calib/ppl.c ----
 * Protocols (ids = the text's tokens without BOS):
 *   CAL_PPL_LLAMA  llama-perplexity's: tokens = [BOS] + ids when add_bos; chunk i =
 *                  tokens[i*n_ctx, (i+1)*n_ctx) with its first token overwritten by BOS (when
 *                  add_bos); logits at positions n_ctx/2 .. n_ctx-2 scored against the next
 *                  token (the second half of each window).
 *   CAL_PPL_ALL    the fixtures' protocol: window w = ids[w*n_ctx, (w+1)*n_ctx), no BOS, every
 *                  position 0 .. n_ctx-2 scored.
 * NLL = -log_softmax(logits)[target] in double.  With a base file (written by an earlier run
 * with save_base, see calib/ppl.c for its format: 16-bit full rows or top-k log-probs plus
 * remainder mass per scored token, zlib-compressed), KL divergence, top-1 agreement and Δp are computed per
 * scored token. */
typedef enum { CAL_PPL_LLAMA, CAL_PPL_ALL } cal_ppl_protocol;

typedef struct {
    cal_ppl_protocol protocol;
    int64_t n_ctx;            /* window length (default 512) */
    int64_t n_chunks;         /* windows to evaluate; 0 = all that fit */
    int n_threads;            /* 0 = default */
    int64_t batch_tokens;     /* engine batch (0 = default) */
    const char *save_base;    /* write base log-probs here (NULL: no) */
    const char *base;         /* compare against this base file (NULL: no) */
    int top_k;                /* save_base: 0 (default) = full rows as 16-bit log-probs (exact
                                 KLD); k > 0 = top-k + remainder only (compact, KLD lower bound) */
    void (*progress)(void *ud, int layer, int n_layer, int64_t done, int64_t total);
    void *progress_ud;
    const struct kn_backend *backend;   /* NULL: CPU (see cal_run_params) */
    /* With base only: per-token KLD file (format in calib/ppl.c).  save_kld writes this run's
     * per-token KLD (atomically); vs_kld reads another build's, measured against the same
     * base and tokens, and fills the paired comparison (r->has_vs). */
    const char *save_kld;
    const char *vs_kld;
    /* `--shard`: evaluate only the windows [first, first + n) of the shard (qx_shard_range
     * over all windows); the base file stays the whole run's.  Not with save_base/save_kld/vs_kld. */
    qx_shard shard;
    struct cal_ppl_tokens *tokens_out;   /* non-NULL: receives the per-token values */
} cal_ppl_params;

cal_ppl_params cal_ppl_default_params(void);

/* Per scored token with finite values, in window then position order: nll = -log p(target);
 * with a base, d = nll - nll_base (f32 log-probs), nll_base, kld, dp = p - p_base, top1 (1
 * when both argmaxes agree).  Every statistic of cal_ppl_result is a function of these
 * (cal_ppl_stats), so shards' arrays concatenated in window order give the whole run's bits. */
typedef struct cal_ppl_tokens {
    int64_t n;
    bool has_base;
    double *nll, *d, *bnll, *kld, *dp;   /* [n]; all but nll NULL without a base */
    uint8_t *top1;                       /* [n] */
} cal_ppl_tokens;
/* Arrays for n tokens (t->n left 0); free with cal_ppl_tokens_free (accepts a zeroed struct). */
qx_status cal_ppl_tokens_alloc(cal_ppl_tokens *t, int64_t n, bool has_base, qx_err *e);
void cal_ppl_tokens_free(cal_ppl_tokens *t);

#define CAL_KLD_NQ 101                        /* percentiles 0..100 of the per-token KLD */

typedef struct cal_ppl_result {
    cal_ppl_protocol protocol;
    int64_t n_ctx, n_chunks, n_tokens_scored;
    double nll_mean, ppl, ppl_err;            /* ppl_err: 1 standard error */
    int64_t n_nonfinite;                      /* scored rows with NaN/Inf logits or KLD */
    bool has_base;
    double ppl_base, ln_ppl_ratio, ln_ppl_ratio_err;
    double kld_mean, kld_err, kld_median, kld_p99, kld_max;
    double kld_q[CAL_KLD_NQ];                 /* kld_q[i]: the i-th percentile of per-token KLD */
    double top1_agree;                        /* fraction of tokens with the same argmax */
    double dp_rms;                            /* RMS of p(target) - p_base(target) */
    double seconds, tokens_per_s;             /* forward throughput (all tokens run) */
    /* paired comparison with vs_kld: d_i = kld_i(this) - kld_i(other) over the same tokens */
    bool has_vs;
    double vs_kld_mean;                       /* the other build's mean KLD */
    double kld_delta, kld_delta_err;          /* mean d and its standard error (paired) */
    double vs_lower_frac;                     /* fraction of tokens where this build's KLD is lower */
    qx_shard shard;                           /* the windows run (count 0: all); model, input hash */
} cal_ppl_result;

/* The statistics of t (n_tokens_scored, PPL, and with a base the drift numbers) into r;
 * other fields of r are left as they are.  Only ENOMEM can fail. */
qx_status cal_ppl_stats(const cal_ppl_tokens *t, cal_ppl_result *r, qx_err *e);

/* Builds the windows of a protocol: *win (malloc'd, n_win * n_ctx ids; free()) and the
 * number of windows that fit (limited by n_chunks when > 0).  QX_EINVAL when not one fits. */
qx_status cal_ppl_windows(const int32_t *ids, int64_t n_ids, cal_ppl_protocol proto, int64_t n_ctx,
                          int64_t n_chunks, int32_t bos, bool add_bos, int32_t **win,
                          int64_t *n_win, qx_err *e);
/* Runs the perplexity (and, with p->base, the drift) evaluation of ids (the text's tokens
 * without BOS).  A base file that does not match (protocol, n_ctx, vocab, rows, tokens)
 * is QX_EINVAL.  NaN/Inf are counted in r->n_nonfinite (the caller decides; the CLI fails). */
qx_status cal_ppl_run(cal_model *m, const int32_t *ids, int64_t n_ids, const cal_ppl_params *p,
                      cal_ppl_result *r, qx_err *e);

/* ---- drift JSON (calib/drift.c): `qforge ppl --json` read back for `card` and `report` ----
 * The keys `qforge ppl --json` writes (schema in docs/drift-json.md): required "ppl" (> 0),
 * "protocol", "n_ctx", "n_chunks", "n_tokens_scored"; with a base also "ppl_base",
 * "ln_ppl_ratio", "kld_mean", "kld_err", "kld_median", "kld_p99", "kld_max", "top1_agree",
 * optionally "kld_quantiles" (CAL_KLD_NQ values, non-decreasing); optional provenance "model",
 * "input", "base", and size "model_file_bytes", "model_bpw"; optional "per_layer": an array
 * of {"layer": i >= 0, "error": x >= 0} (any per-layer error measure, named by
 * "per_layer_metric").  Every number must be finite and in range; strings are limited to
 * CAL_DRIFT_STR - 1 bytes. */
#define CAL_DRIFT_STR 512
#define CAL_DRIFT_MAX_LAYERS 4096
typedef struct {
    char model[CAL_DRIFT_STR], input[CAL_DRIFT_STR], base[CAL_DRIFT_STR];
    char protocol[16], per_layer_metric[64];
    int64_t n_ctx, n_chunks, n_tokens;
    double ppl;
    bool has_base;                     /* the drift numbers below are valid */
    double ppl_base, ln_ppl_ratio, kld_mean, kld_err, kld_median, kld_p99, kld_max, top1;
    bool has_q;
    double kld_q[CAL_KLD_NQ];
    bool has_size;
    double file_bytes, bpw;
    int n_layers;                      /* per_layer entries (0: none) */
    int *layer;                        /* n_layers block indices (malloc'd) */
    double *layer_err;                 /* n_layers values (malloc'd) */
} cal_drift;
/* Parses one drift JSON document (buffer of len bytes; label names it in messages).  On
 * success free with cal_drift_free (accepts a zeroed struct). */
qx_status cal_drift_parse(const char *json, size_t len, const char *label, cal_drift *d, qx_err *e);
qx_status cal_drift_load(const char *path, cal_drift *d, qx_err *e);
void cal_drift_free(cal_drift *d);

/* A per-token KLD file (`--save-kld`; format in calib/ppl.c) parsed from memory: header
 * fields and the n_rows values (finite, >= 0), kld malloc'd (free with cal_kld_file_free).
 * Any malformed input is QX_EFORMAT / QX_EUNSUPPORTED naming label. */
typedef struct {
    cal_ppl_protocol protocol;
    int64_t n_ctx, n_rows;
    uint64_t hash;            /* XXH3-64 of the evaluated windows' token ids */
    float *kld;
} cal_kld_file;
qx_status cal_kld_parse(const uint8_t *buf, size_t len, const char *label, cal_kld_file *out, qx_err *e);
void cal_kld_file_free(cal_kld_file *f);

/* ---- importance matrix (cal_imatrix_) — calib/imatrix.c ----
 * Windows of n_ctx tokens (CAL_PPL_LLAMA layout with BOS when add_bos and bos_first, else
 * the plain split); for every weight the engine multiplies by, Σ x² per input channel and
 * the number of rows, per expert for MoE (experts that got no token keep zero counts),
 * attn_k_b/attn_v_b per head in GGUF naming.  Names are GGUF names when gguf_names, else
 * HF names (one entry per expert, nmat 1). */
typedef struct {
    int64_t n_ctx;            /* default 512 */
    int64_t n_chunks;         /* 0 = all */
    bool bos_first;           /* overwrite each window's first token with BOS (llama-imatrix) */
    bool gguf_names;          /* default true */
    int n_threads;
    int64_t batch_tokens;
    void (*progress)(void *ud, int layer, int n_layer, int64_t done, int64_t total);
    void *progress_ud;
    const struct kn_backend *backend;   /* NULL: CPU (see cal_run_params) */
    qx_shard shard;           /* index/count: run only that shard's chunks (count 0: all) */
} cal_imatrix_params;

cal_imatrix_params cal_imatrix_default_params(void);
/* Computes the statistics into a new im_matrix (free with im_free); chunk_count/chunk_size
 * are filled, datasets left to the caller.  Every entry carries its exact sums (sum_x,
 * count_x; im_drop_exact for the plain file) and im->shard says which chunks of how many
 * were run, of which model and input. */
qx_status cal_imatrix_run(cal_model *m, const int32_t *ids, int64_t n_ids, const cal_imatrix_params *p,
                          im_matrix **out, qx_err *e);

/* ---- input Hessians for GPTQ (cal_hessian_) — calib/hessian.c ----
 * H = sum over tokens of x x^T [cols, cols] for every weight the engine multiplies by, named
 * as in the GGUF imatrix (matrix index = expert for *_exps, head for attn_k_b/attn_v_b).
 * Windows as cal_imatrix_run.  Memory: min(rows seen, cols) x cols floats per matrix (the
 * rows themselves until there are as many as columns, then H) per expert with
 * CAL_HESS_PER_EXPERT, one per layer and kind for all experts with CAL_HESS_SHARED; an up
 * projection shares its gate's matrix (same input rows).  With layer_done set, matrices can
 * be factored and released layer by layer while the engine runs (one layer alive). */
typedef enum { CAL_HESS_PER_EXPERT, CAL_HESS_SHARED } cal_hess_experts;

typedef struct cal_hessians cal_hessians;   /* opaque */

typedef struct {
    int64_t n_ctx;            /* default 512 */
    int64_t n_chunks;         /* 0 = all */
    bool bos_first;           /* default true (as cal_imatrix_params) */
    cal_hess_experts experts;
    int n_threads;
    int64_t batch_tokens;
    void (*progress)(void *ud, int layer, int n_layer, int64_t done, int64_t total);
    void *progress_ud;
    const struct kn_backend *backend;
    /* Optional: layer `layer`'s matrices are complete (n_layer: the output head's); called
     * from the engine's thread between layers.  A non-OK return stops the run. */
    qx_status (*layer_done)(void *ud, cal_hessians *h, int layer, qx_err *e);
    void *layer_done_ud;
} cal_hessian_params;

typedef struct {
    int64_t n_matrices;       /* matrices considered */
    int64_t n_failed;         /* no token at all, or not factorable: no factor */
    int64_t n_fallback;       /* fewer tokens than min_tokens: no factor */
} cal_hessian_factor_stats;

typedef struct {
    const char *name;         /* GGUF name (borrowed from h) */
    int64_t mat;              /* expert / head */
    double tokens;            /* rows that reached it */
} cal_hessian_count;

cal_hessian_params cal_hessian_default_params(void);
/* Runs the model over ids (the text's tokens without BOS) and gathers every H (those not
 * released by layer_done stay). */
qx_status cal_hessian_run(cal_model *m, const int32_t *ids, int64_t n_ids, const cal_hessian_params *p,
                          cal_hessians **out, qx_err *e);
void cal_hessian_free(cal_hessians *h);   /* accepts NULL */
/* Borrowed H [cols, cols] (full, symmetric; formed from the kept rows if need be) of GGUF
 * weight `name`, matrix mat (ignored for single or shared matrices), with cols and the token
 * count; NULL when not gathered, already replaced by its factor, or out of memory. */
const float *cal_hessian_get(cal_hessians *h, const char *name, int64_t mat, int64_t *cols, double *count);
/* The factor of one matrix of a complete layer into a new *U [cols, cols] (free()), formed
 * from its H or kept rows, which stay: NULL (and QX_OK) when absent, of another width,
 * without tokens, below min_tokens or not factorable (counted in *st when given; st is not
 * locked).  Thread-safe against other readers of the same layer.  Memory: ~12 cols^2 bytes
 * while it runs, 4 cols^2 after. */
qx_status cal_hessian_factor_one(const cal_hessians *h, const char *name, int64_t mat, int64_t cols, double damp, double min_tokens,
                                 float **U, cal_hessian_factor_stats *st, qx_err *e);
/* An empty set for a model of hyper-parameters hp (p copied): for cal_hessian_replay. */
qx_status cal_hessian_create(const cal_hparams *hp, const cal_hessian_params *p, cal_hessians **out, qx_err *e);
/* The statistics file of --gptq-save / --gptq-load (calib/hessian_file.c has the layout):
 * begin (header: n_layer, experts mode, the caller's hash of model, tokens and windows), one
 * block per layer (cal_hessian_file_layer, from a complete layer: call it from
 * params.layer_done before releasing), end.  cal_hessian_replay reads a file written for the
 * same settings and calls p->layer_done for each layer in order, as cal_hessian_run does,
 * one layer in memory at a time; a truncated or altered file is an error naming it and the
 * layer.  cal_hessian_parse_layer parses one layer's payload from memory (fuzzed). */
qx_status cal_hessian_file_begin(int fd, const char *path, int n_layer, int experts, uint64_t settings, qx_err *e);
qx_status cal_hessian_file_layer(const cal_hessians *h, int layer, int fd, const char *path, qx_err *e);
qx_status cal_hessian_file_end(int fd, const char *path, int layers, qx_err *e);
qx_status cal_hessian_replay(const char *path, const cal_hparams *hp, int experts, uint64_t settings, const cal_hessian_params *p,
                             qx_err *e);
qx_status cal_hessian_parse_layer(cal_hessians *h, int layer, const uint8_t *buf, size_t len, const char *label, qx_err *e);
/* Checks that path is a statistics file for these settings (its header only): before a run. */
qx_status cal_hessian_file_check(const char *path, const cal_hparams *hp, int experts, uint64_t settings, qx_err *e);
/* Frees every H and U of one layer (n_layer: the output head's). */
void cal_hessian_release_layer(cal_hessians *h, int layer);
/* Token counts of every matrix of one layer (n_layer: the head): fills up to cap, returns
 * how many there are. */
size_t cal_hessian_counts(const cal_hessians *h, int layer, cal_hessian_count *out, size_t cap);
/* Bytes held by the H and U matrices now. */
uint64_t cal_hessian_bytes(const cal_hessians *h);

/* Substitutes the data of GGUF tensor `name` of m (a GGUF model) by `data` of `type`
 * (rows x qt_row_size(type, ne0) bytes, borrowed until the override is cleared or m
 * closed) for every later cal_forward; data NULL restores the file's tensor.  QX_ENOTFOUND
 * for an unknown name, QX_EUNSUPPORTED for an HF model. */
qx_status cal_model_override(cal_model *m, const char *name, qt_type type, const void *data, qx_err *e);

/* ---- tensor sensitivity (cal_sens_) — calib/sensitivity.c ----
 * For each item: tensor `name` quantized to `type` in memory as convert/ writes it (row by
 * row, with the importance of its expert slice from im), werr = Σ imp (w - q)^2 / Σ imp w^2
 * over the tensor (imp = 1 without an entry); with `measure`, the model runs over the
 * windows with only that tensor replaced and kld/top1 are its drift against p->ppl.base
 * (a base saved from the unmodified model with the same protocol and windows).  Items of
 * one tensor should be adjacent (its source is decoded once per run of them).  Only GGUF
 * models (F32/F16/BF16 or any decodable source). */
typedef struct {
    const char *name;         /* GGUF tensor name (borrowed) */
    qt_type type;
    bool measure;             /* run the model (else only werr and bytes) */
    int64_t matrices;         /* importance matrices over its rows, as equal row groups in order (0:
                                 ne[2] x ne[3], i.e. per expert or head; deepseek4's attn_output_a
                                 has one per output group: cv_plan_matrices) */
    /* out */
    uint64_t bytes;           /* tensor bytes at this type */
    double werr;              /* importance-weighted relative squared error */
    bool measured;
    double kld, kld_err, top1;
} cal_sens_item;

typedef struct {
    cal_ppl_params ppl;       /* protocol, n_ctx, n_chunks, threads, base (needed to measure) */
    const im_matrix *im;      /* importance (borrowed), NULL for none */
    void (*item_done)(void *ud, size_t i, size_t n, const cal_sens_item *it);
    void *ud;
    /* cal_sens_stream_run only: bytes of residual states held in memory (0: all; else at
     * least 2 states: the base and a work buffer), the rest go to the scratch file `scratch`
     * (created when needed and unlinked at once: nothing is left however the run ends) */
    uint64_t mem_bytes;
    const char *scratch;
} cal_sens_params;

cal_sens_params cal_sens_default_params(void);
/* The weight error of a tensor at a type, as cal_sens_run computes it, added part by part:
 * src [nr, n] f32 holds rows [r0, r0 + nr) of a tensor of `rows` rows of n in `slices` equal
 * slices (slice = expert or head); each row is quantized exactly as convert/ writes it with
 * the importance of its slice from en (NULL, or an entry of another shape: none; a type that
 * needs one then fails) and Σ imp (w - q)^2, Σ imp w^2 are added to sum row by row in row
 * order, so calls over consecutive row ranges give the bits of one call over all, for any
 * n_threads (0: qx_default_threads()).  q (nr x qt_row_size(type, n) bytes) receives the
 * data unless NULL.  werr = cal_werr_of(sum). */
typedef struct { double num, den; } cal_werr_sum;
qx_status cal_werr_add(const char *name, const float *src, int64_t n, int64_t rows, int64_t slices, int64_t r0, int64_t nr,
                       qt_type type, const im_entry *en, int n_threads, uint8_t *q, cal_werr_sum *sum, qx_err *e);
double cal_werr_of(const cal_werr_sum *sum);
qx_status cal_sens_run(cal_model *m, const int32_t *ids, int64_t n_ids, const cal_sens_params *p, cal_sens_item *items,
                       size_t n, qx_err *e);

/* One-stream sensitivity (calib/sens_stream.c): the items of cal_sens_run measured in ONE
 * layer-major pass that reads each weight once.  Every measured item is a residual state
 * [windows x ctx, n_embd] f32: at layer L the states of earlier layers' items go through
 * L's own weights, and each measured item of L branches off as a copy of the unmodified
 * state entering L run through L with only its tensor quantized (token_embd: at the
 * embedding; output: at the head).  The unmodified state's logits are saved as the base
 * (p->ppl.save_base, required: written, then read back) and every item's KLD is measured
 * against it exactly as cal_sens_run measures against a base of the same windows: the same
 * batches, kernels and scoring, so the numbers agree with cal_sens_run's up to the
 * thread-independent rounding of the engine (tests/test_sens_stream.c).  Items are taken in
 * layer order whatever their order in items[]; werr/bytes as cal_sens_run.  p->ppl.base is
 * ignored.  Only GGUF models whose output head is not tied to token_embd when token_embd
 * is measured. */
typedef struct {
    int64_t n_win, n_ctx;          /* windows run */
    int64_t n_states;              /* measured items (+ the base, not counted here) */
    int64_t states_in_memory;      /* of n_states; the rest spill */
    uint64_t state_bytes;          /* one state: n_win * n_ctx * n_embd * 4 */
    uint64_t weight_bytes_read;    /* every tensor of the file, once */
    uint64_t memory_bytes;         /* peak estimate: states in memory + base + work + the
                                      largest layer's weights (mapped) + the global tensors +
                                      the largest item tensor in f32 and quantized + activations */
    uint64_t scratch_bytes;        /* peak size of the scratch file */
    uint64_t scratch_io_bytes;     /* written + read back over the pass */
    int64_t layer_passes;          /* (state, layer) steps, base included */
    double flops;                  /* matmul + attention FLOPs of all steps and heads */
    double seconds;                /* run: measured wall time; estimate: flops at CAL_SENS_FLOPS_PER_THREAD */
    double step_seconds;           /* in the layer steps (estimate: their FLOPs at the rate) */
    double quant_seconds;          /* run only: decoding and quantizing the items' tensors */
    double head_seconds;           /* heads and scoring (estimate: the head's FLOPs) */
} cal_sens_stream_stats;

/* FLOP/s of one thread on the engine's f32/Q8_0 CPU matmuls (measured, docs/allocation.md):
 * the --dry-run time projection. */
#define CAL_SENS_FLOPS_PER_THREAD 8e9

/* The plan of cal_sens_stream_run over n_win windows of n_ctx without running anything. */
qx_status cal_sens_stream_estimate(const cal_model *m, const cal_sens_item *items, size_t n, int64_t n_win, int64_t n_ctx,
                                   int64_t logits_from, uint64_t mem_bytes, int n_threads, cal_sens_stream_stats *st,
                                   qx_err *e);
qx_status cal_sens_stream_run(cal_model *m, const int32_t *ids, int64_t n_ids, const cal_sens_params *p, cal_sens_item *items,
                              size_t n, cal_sens_stream_stats *st, qx_err *e);

#endif
