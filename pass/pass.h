/* pass/pass.h — the one public header of pass/: passes that interleave the engine (calib/)
 * and the writer (convert/) over one weight stream (DESIGN.md decision 10).  convert/ never
 * runs the model; calib/ never writes a GGUF; this module sits above both and below cli/.
 *
 *   ps_gptq_convert   `convert --gptq`: the calibration tokens' residual state is carried
 *                     through the model layer by layer; when layer L is through, its input
 *                     Hessians are complete (kept as the input rows themselves while fewer
 *                     than the columns): the writer quantizes L's tensors with GPTQ feedback
 *                     (cv_execute's workers wait for exactly that layer; each factors the
 *                     matrix its work item needs and frees it when done), then L's matrices
 *                     are freed and the engine goes on to L+1.  One layer's Hessians live at
 *                     a time, and one factor per worker.  The inputs of each layer come from
 *                     the original (unquantized) layers below (docs/gptq.md: the sequential
 *                     variant measured no gain). */
#ifndef PASS_H
#define PASS_H

#include "../common/qx.h"
#include "../convert/convert.h"
#include "../calib/calib.h"

typedef struct {
    const char *model;            /* HF dir or GGUF the engine runs: the conversion's source */
    const int32_t *ids;           /* calibration tokens without BOS [n_ids], borrowed */
    int64_t n_ids;
    int64_t n_ctx, n_chunks;      /* windows (n_chunks 0: all) */
    double damp;                  /* fraction of the mean Hessian diagonal */
    cal_hess_experts experts;
    double min_tokens;            /* a matrix that saw fewer rows is quantized plainly */
    const char *skip;             /* POSIX ERE: GGUF names quantized without feedback (NULL: none) */
    int n_threads;                /* engine threads (0: OpenMP default) */
    int factor_par;               /* matrices factored at once (0: the thread count); --gptq-mem sets it */
    const char *save_path;        /* --gptq-save: the statistics, layer by layer, to this file (via .part) */
    const char *load_path;        /* --gptq-load: the statistics from this file instead of running the engine */
    uint64_t settings;            /* the hash a statistics file is tied to (model, tokens, windows) */
    void (*progress)(void *ud, int layer, int n_layer, int64_t done, int64_t total);
    void *progress_ud;
} ps_gptq_params;

void ps_gptq_default_params(ps_gptq_params *p);

typedef struct {
    int n_layer;                          /* engine layers (+1: the output head) */
    int64_t n_matrices, n_failed, n_fallback;   /* over every layer, see cal_hessian_factor_stats */
    int64_t n_expert_matrices, n_expert_fallback, n_expert_empty;   /* routed experts only */
    uint64_t peak_hessian_bytes;          /* the most bytes of kept rows / H + factors + running factor workspaces (12 cols^2) at once */
    double seconds_engine, seconds_factor, seconds_waiting;   /* engine forward + Hessians; factoring (summed over the writer's
                                                                 threads); engine waiting for the writer */
    cal_hessian_count *counts;            /* routed experts' token counts [n_counts], names owned */
    size_t n_counts;
} ps_gptq_result;

void ps_gptq_result_free(ps_gptq_result *r);   /* accepts zeroed */

/* Executes plan pl into out (as cv_execute, with p; p's gptq_factor / tensor_done are
 * replaced for the call) with GPTQ feedback from the streamed Hessians of gp.  *gr is
 * filled (free with ps_gptq_result_free) even on failure. */
qx_status ps_gptq_convert(cv_plan *pl, const char *out, const cv_params *p, const ps_gptq_params *gp, cv_result *cr,
                          ps_gptq_result *gr, qx_err *e);

/* Per-layer memory model of the streamed pass for plan pl over a model of hyper-parameters
 * hp and T calibration tokens: the largest layer's Hessian bytes (float, gate/up shared; a
 * routed expert's as min(its average rows T k / n_exp, cols) x cols, the kept inputs; then
 * the factors, cols^2 each, in H's buffers), the factorization workspace of the n_par largest
 * matrices at once (12 cols^2: LAPACK's double copy and the H formed from kept rows), the
 * residual stream [T, n_embd], the engine's batch buffers (4096 tokens x (10 n_embd + 2
 * n_ff) floats) and the largest layer's source bytes (mapped while it runs); the sum is the
 * predicted peak above the plain conversion's own memory.  ws_per: the workspace of one
 * more matrix at once (the largest routed expert's, else the largest). */
typedef struct {
    uint64_t hessian_bytes, factor_bytes, workspace_bytes, state_bytes, engine_bytes, weight_bytes, peak_bytes, ws_per;
    int peak_layer;
    double flops_forward, flops_gram, flops_factor, flops_feedback;
} ps_gptq_estimate;
void ps_gptq_estimate_plan(const cv_plan *pl, const cal_hparams *hp, double T, cal_hess_experts experts, int n_par,
                           ps_gptq_estimate *out);

/* ---- the layer-local weight-error pass (pass/werr.c; `qforge sensitivity --werr-only`) ----
 * For every tensor the plan pl would quantize (a Q8_0 plan of the model, with its imatrix
 * when there is one: t.wanted == Q8_0) and every candidate type (cv_sens_candidates by its
 * row length and importance entry, plus its type in the optional plan `floor`, e.g. the
 * IQ1_S preset's with row-length fallbacks, when that type can be encoded), werr exactly as
 * cal_sens_run computes it, from pl's own source (HF checkpoint or GGUF) decoded <= 256 MiB
 * of f32 rows at a time (whole experts or heads when they fit).  `out` gets one table entry
 * per tensor (werr and bytes; no kld, cost -1), in plan order; free it with cv_sens_free.
 * The values do not depend on n_threads. */
typedef struct {
    int n_threads;                /* quantizer threads; 0: qx_default_threads() */
    const char *match;            /* POSIX ERE: only tensors whose GGUF name matches (NULL: all) */
    uint64_t group_bytes;         /* f32 bytes decoded at a time (0: 256 MiB; tests use less) */
    /* optional, after each tensor: k of n done, its entry, seconds it took */
    void (*tensor_done)(void *ud, size_t k, size_t n, const cv_sens_tensor *t, double seconds);
    void *ud;
} ps_werr_params;
typedef struct {
    size_t tensors, candidates;
    uint64_t weights;                       /* Σ weights of the tensors done */
    uint64_t group_bytes;                   /* largest f32 group decoded at once */
    double seconds, decode_seconds;
    double type_seconds[QT_GGUF_COUNT];     /* wall seconds quantizing to each type */
    uint64_t type_weights[QT_GGUF_COUNT];   /* weights quantized to each type */
} ps_werr_stats;
/* Candidate types of tensor i of pl (see above) into out [CV_SENS_MAX_OPT]; 0: not quantized. */
int ps_werr_candidates(const cv_plan *pl, const cv_plan *floor, size_t i, qt_type *out);
qx_status ps_werr_run(const cv_plan *pl, const cv_plan *floor, const ps_werr_params *p, cv_sens *out, ps_werr_stats *st,
                      qx_err *e);
/* What ps_werr_run would do (no weights read): tensors, candidates, Σ candidates x weights,
 * source bytes read (the whole checkpoint once), peak buffer bytes, and the time at the rates
 * measured per type (pass/werr.c) on n_threads plus decoding at PS_WERR_DECODE_GBPS; with
 * assume_imp as if every tensor had an importance entry (a plan made without the imatrix). */
#define PS_WERR_DECODE_GBPS 0.5   /* FP8 source decoded by one thread (measured with the rates) */
typedef struct {
    size_t tensors, candidates;
    uint64_t weight_candidates, bytes_read, memory_bytes;
    double quant_thread_seconds, decode_seconds, seconds;
} ps_werr_estimate;
qx_status ps_werr_estimate_plan(const cv_plan *pl, const cv_plan *floor, const char *match, int n_threads, bool assume_imp,
                                ps_werr_estimate *out, qx_err *e);

#endif
