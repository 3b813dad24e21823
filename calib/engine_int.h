/* calib/engine_int.h — internal to calib/engine*.c and calib/model*.c: the model struct and
 * one decoder layer's weight views.  Not a public header. */
#ifndef CALIB_ENGINE_INT_H
#define CALIB_ENGINE_INT_H

#include "calib.h"
#include "../kernels/kernels.h"

/* One weight of the current layer: a view into the mapping plus what owns its pages. */
typedef struct {
    kn_weight w;
    bool present;
    float *scale;              /* owned aligned copy of an FP8 scale_inv grid */
    const st_tensor *st;       /* source tensor (HF), released after the layer */
    const gf_tensor *gt;       /* source tensor (GGUF), released after the layer */
} cal_w;

typedef struct {
    float *attn_norm, *ffn_norm, *q_a_norm, *kv_a_norm;   /* owned f32 vectors */
    float *bq, *bk, *bv;                                  /* qwen2 biases */
    cal_w q, k, v, o;
    cal_w q_a, q_b, kv_a, kv_b;
    cal_w k_b, v_b;            /* GGUF MLA split: [H*KVL, N] and [H*Dv, KVL] (absorbed attention) */
    /* V3.2 lightning indexer (present when hp.index_topk > 0): IH heads of ID */
    cal_w idx_q_b;             /* [IH*ID, q_lora] from the normed q latent */
    cal_w idx_k;               /* [ID, E] */
    cal_w idx_proj;            /* [IH, E] head weights */
    float *idx_k_norm, *idx_k_norm_b;                     /* [ID] LayerNorm weight, bias */
    cal_w gate, up, down;
    bool moe;
    cal_w router;
    float *exp_bias;                                      /* [n_exp] or NULL */
    cal_w *eg, *eu, *ed;                                  /* [n_exp] each */
    cal_w sg, su, sd;
    bool has_shared;
} cal_layer;

struct cal_model {
    char *path;
    cal_hparams hp;
    st_model *st;              /* HF checkpoint, or */
    gf_file *gf;               /* GGUF file */
    hf_config cfg;             /* HF: as read; GGUF: the rope/arch fields derived from metadata */
    int64_t n_dense_first;     /* layers < this are dense (GGUF: leading_dense_block_count) */
    cal_w embed, output;
    float *out_norm;
    /* cal_model_override: GGUF tensors whose data is replaced (borrowed from the caller) */
    struct cal_override { char name[GF_NAME_MAX]; qt_type type; const void *data; } *ovr;
    int n_ovr;
};

qx_status cal_layer_load(cal_model *m, int layer, cal_layer *l, qx_err *e);
/* calib/model_gguf.c: hyper-parameters and global tensors of m->path (a GGUF), one layer. */
qx_status cal_model_open_gguf(cal_model *m, qx_err *e);
qx_status cal_layer_load_gguf(cal_model *m, int layer, cal_layer *l, qx_err *e);
/* calib/model.c, shared: inv_freq/mscale from the rope fields of c into hp. */
void cal_rope_freqs(cal_hparams *hp, const hf_config *c);
float cal_yarn_mscale(double scale, double m);
/* Frees owned copies and releases the pages of every tensor of the layer. */
void cal_layer_free(cal_model *m, cal_layer *l);
void cal_w_release(cal_model *m, cal_w *w);

#endif
