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
    void *own;                 /* owned data the view points into (V4 FP4 experts repacked to MXFP4), or NULL */
    const st_tensor *st;       /* source tensor (HF), released after the layer */
    const gf_tensor *gt;       /* source tensor (GGUF), released after the layer */
} cal_w;

/* Rows [r0, r0 + n) of w as a view (same pages, owner and scale pointer): a head of k_b/v_b, a
 * group of attn_output_a, an expert of a stacked GGUF tensor.  Only for unscaled weights. */
static inline cal_w cal_w_rows(const cal_w *w, int64_t r0, int64_t n) {
    cal_w v = *w;
    v.w.rows = n;
    v.w.data = (const uint8_t *)w->w.data + (uint64_t)r0 * w->w.row_bytes;
    return v;
}

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
    /* deepseek4 (calib/engine_v4.c); q_a, q_a_norm, q_b, idx_q_b, idx_proj, router, exp_bias,
     * experts and shared expert as above */
    float *sinks;                                         /* [H] attention sink logits */
    cal_w kv;                                             /* [D, E] shared K=V head */
    float *kv_norm;                                       /* [D] */
    cal_w o_a, o_b;                                       /* [G*OL, H*D/G], [E, G*OL] */
    cal_w hc_attn, hc_ffn;                                /* [(2+hc)*hc, hc*E] */
    float *hc_attn_base, *hc_attn_scale, *hc_ffn_base, *hc_ffn_scale;   /* [(2+hc)*hc], [3] */
    int ratio;                                            /* 0, 4 or 128 */
    cal_w comp_kv, comp_gate;                             /* [coff*D, E], coff = 2 at ratio 4 */
    float *comp_ape, *comp_norm;                          /* [ratio, coff*D], [D] */
    cal_w icomp_kv, icomp_gate;                           /* ratio 4: [2*ID, E] */
    float *icomp_ape, *icomp_norm;                        /* [4, 2*ID], [ID] */
    int32_t *tid2eid;                                     /* hash layers: [n_vocab, k] */
    float clamp_exp, clamp_shexp;                         /* SwiGLU limits (0: none) */
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
    /* deepseek4: output_hc_fn [hc, hc*E] and its base [hc] / scale [1]; per-layer compression
     * ratios and SwiGLU limits [n_layer] */
    cal_w hc_head;
    float *hc_head_base, *hc_head_scale;
    int32_t *v4_ratio;
    float *v4_clamp_exp, *v4_clamp_shexp;
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

/* What one forward pass shares between the layer functions of calib/engine.c. */
typedef struct {
    cal_model *m;
    const cal_observer *obs;
    int layer;
    int64_t n_ctx;
    int64_t t0;          /* global index of the batch's first token */
    int32_t *pos;        /* [T] positions of the batch */
    bool ref;            /* reference kernels */
    const kn_backend *be;   /* where matmuls run */
    const int32_t *ids;     /* token ids of the whole run, global index (V4 hash routing); may be NULL */
} fwd_ctx;

/* One decoder layer on the batch h [T, E] of c->t0's windows (updated in place); the
 * engine's own step, shared with the one-stream sensitivity pass (calib/sens_stream.c). */
/* SwiGLU MLP on x [T, E] -> y [T, E] (gate g, up u, down d; kg the gate's observer kind,
 * expert -1 for a dense or shared MLP); limit > 0 clamps as deepseek4's SwiGLU does
 * (kn_silu_mul_clamp), else plain SwiGLU (kn_silu_mul). */
qx_status cal_mlp(fwd_ctx *c, const cal_w *g, const cal_w *u, const cal_w *d, cal_wkind kg, int expert, float limit,
                  const float *x, int64_t T, float *y, qx_err *e);
qx_status cal_layer_fwd(fwd_ctx *c, const cal_layer *l, float *h, int64_t T, qx_err *e);
/* calib/engine_v4.c: one deepseek4 layer on the state h [T, hc*E] (updated in place), and the
 * hyper-connection head: h [T, hc*E] -> x [T, E] (what output_norm reads). */
qx_status cal_layer_fwd_v4(fwd_ctx *c, const cal_layer *l, float *h, int64_t T, qx_err *e);
qx_status cal_hc_head_fwd(fwd_ctx *c, const float *h, int64_t T, float *x, qx_err *e);
/* calib/model.c: a deepseek4 HF checkpoint (DeepseekV4ForCausalLM): hyper-parameters and
 * global tensors, one layer (FP8 with E8M0 grids decoded on the fly, FP4 experts repacked). */
qx_status cal_model_open_hf_v4(cal_model *m, qx_err *e);
qx_status cal_layer_load_hf_v4(cal_model *m, int layer, cal_layer *l, qx_err *e);
/* calib/model_gguf.c: the deepseek4 hyper-parameters, global tensors and one layer. */
qx_status cal_model_open_gguf_v4(cal_model *m, qx_err *e);
qx_status cal_layer_load_gguf_v4(cal_model *m, int layer, cal_layer *l, qx_err *e);
void cal_mm(fwd_ctx *c, const cal_w *w, cal_wkind kind, int expert, const float *x, int64_t ldx, int64_t T,
            const float *bias, float *y, int64_t ldy);

/* model.norm and the output head (c->m->output) for windows [w0, w1) of h [n_win * S, E]:
 * logits of positions p->logits_from.. to c->obs->logits, as cal_forward computes them. */
qx_status cal_head_fwd(fwd_ctx *c, const float *h, int64_t w0, int64_t w1, const cal_run_params *p, qx_err *e);
/* A view of l with the data of its tensor `name` (GGUF, "blk.N.*.weight") replaced by data of
 * type (borrowed): *out shares every other view with l (never cal_layer_free it; free with
 * cal_layer_swap_free).  QX_ENOTFOUND when l has no such tensor. */
qx_status cal_layer_swap(const cal_model *m, const cal_layer *l, int layer, const char *name, qt_type type,
                         const void *data, cal_layer *out, qx_err *e);
void cal_layer_swap_free(const cal_layer *l, cal_layer *out);

/* calib/ppl.c: cal_ppl_run with the forward pass replaced by fwd (NULL: cal_forward of m):
 * fwd must hand the logits of the windows win[n_win * n_ctx] to obs as cal_forward would. */
typedef qx_status (*cal_fwd_fn)(void *ud, const int32_t *win, int64_t n_win, int64_t n_ctx, const cal_run_params *rp,
                                const cal_observer *obs, qx_err *e);
qx_status cal_ppl_run_fwd(cal_model *m, const int32_t *ids, int64_t n_ids, const cal_ppl_params *p, cal_fwd_fn fwd,
                          void *fwd_ud, cal_ppl_result *r, qx_err *e);

/* calib/sensitivity.c: tensor t of m decoded to f32 [n_elems] (*out malloc'd; its pages
 * released when release), and src quantized to type into q (rows x qt_row_size bytes) as
 * convert/ writes it, with *werr its importance-weighted relative error (matrices: as
 * cal_sens_item's, 0 for ne[2] x ne[3]). */
qx_status cal_sens_decode(cal_model *m, const gf_tensor *t, bool release, float **out, qx_err *e);
qx_status cal_sens_quantize(const gf_tensor *t, const float *src, qt_type type, int64_t matrices, const im_matrix *im,
                            int n_threads, uint8_t *q, double *werr, qx_err *e);

#endif
