/* calib/calib.h — the one public header of calib/: the tokenizer (cal_tok_), the
 * layer-major forward engine over weight views of any type (cal_model_, cal_engine_), and its
 * observers: importance matrix, perplexity and KL drift (cal_ppl_, cal_imatrix_). */
#ifndef CALIB_H
#define CALIB_H

#include "../common/qx.h"
#include "../quant/qt.h"
#include "../formats/formats.h"

/* ======================= tokenizer (cal_tok_) — calib/tokenizer.c ======================= */

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

typedef enum { CAL_ARCH_DEEPSEEK2, CAL_ARCH_LLAMA, CAL_ARCH_QWEN2 } cal_arch;

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
} cal_hparams;

/* Weights the engine multiplies by (observer identity).  Expert kinds carry an expert
 * index; CAL_W_K_B/CAL_W_V_B are the MLA halves of kv_b in GGUF form (attn_k_b: input q_nope
 * per head, N wide; attn_v_b: input the per-head attention output in the latent space, KVL
 * wide), reported only when cal_observer.want_mla_split is set. */
typedef enum {
    CAL_W_Q, CAL_W_K, CAL_W_V, CAL_W_O,
    CAL_W_Q_A, CAL_W_Q_B, CAL_W_KV_A, CAL_W_KV_B, CAL_W_K_B, CAL_W_V_B,
    CAL_W_GATE, CAL_W_UP, CAL_W_DOWN,
    CAL_W_ROUTER, CAL_W_EXP_GATE, CAL_W_EXP_UP, CAL_W_EXP_DOWN,
    CAL_W_SH_GATE, CAL_W_SH_UP, CAL_W_SH_DOWN,
    CAL_W_OUTPUT,
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
} cal_observer;

typedef struct {
    int n_threads;          /* 0: OpenMP default */
    int64_t batch_tokens;   /* tokens per internal batch within a layer (0: 4096) */
    int64_t logits_from;    /* first position of each window whose logits are wanted */
    bool want_logits;       /* compute the output head at all */
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


#endif
