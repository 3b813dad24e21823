/* pass/gptq_estimate.c — the memory and work model of the streamed GPTQ pass
 * (ps_gptq_estimate_plan), for `convert --dry-run --gptq` and --gptq-mem: what
 * pass/gptq_stream.c and calib/hessian.c hold per layer, from the plan's shapes alone. */
#include "pass.h"

#include <stdlib.h>
#include <string.h>

/* Tensors whose input Hessian the engine gathers: every matrix it multiplies by, except the
 * router, token_embd and the up projections (they share their gate's H). */
static bool has_hessian(const cv_tensor_info *t) {
    if (t->n_dims < 2 || !strstr(t->name, ".weight")) return false;
    if (!strcmp(t->name, "token_embd.weight") || strstr(t->name, "ffn_gate_inp") || strstr(t->name, "ffn_up")) return false;
    return true;
}

static int layer_index(const cv_tensor_info *t, int n_layer) {
    if (!strcmp(t->name, "output.weight")) return n_layer;
    return t->layer >= 0 && t->layer < n_layer ? t->layer : -1;
}

static int cmp_desc(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Workspace of factoring the n_par largest of the n matrices (cols^2 each in sq[]) at once. */
static double workspace(double *sq, size_t n, int n_par) {
    qsort(sq, n, sizeof *sq, cmp_desc);
    double w = 0;
    for (size_t i = 0; i < n && (int)i < n_par; i++) w += 12.0 * sq[i];
    return w;
}

void ps_gptq_estimate_plan(const cv_plan *pl, const cal_hparams *hp, double T, cal_hess_experts experts, int n_par,
                           ps_gptq_estimate *out) {
    memset(out, 0, sizeof *out);
    out->peak_layer = -1;
    if (n_par < 1) n_par = 1;
    const int n_layer = (int)hp->n_layer;
    const int64_t n_exp = hp->n_exp, k_used = hp->n_exp_used, n_embd = hp->n_embd;
    const double src_per_elem = cv_plan_n_elems(pl) ? (double)cv_plan_input_bytes(pl) / (double)cv_plan_n_elems(pl) : 1;
    size_t n = cv_plan_tensor_count(pl), nsq = 0, capsq = 64;
    double *sq = malloc(capsq * sizeof *sq);   /* cols^2 of every matrix of the current layer */
    double lay_h = 0, lay_w = 0, best_ws = 0, exp_ws = 0;
    int cur = -2;
    for (size_t i = 0; i <= n; i++) {
        cv_tensor_info t;
        int L = -3;
        if (i < n) {
            cv_plan_tensor(pl, i, &t);
            L = layer_index(&t, n_layer);
        }
        if (L != cur) {   /* a layer ended: the kept rows/H, then the factors, were its live set */
            double ws = sq ? workspace(sq, nsq, n_par) : 0;
            double live = lay_h + ws;
            if (cur >= 0 && live > (double)(out->hessian_bytes + out->workspace_bytes)) {
                out->hessian_bytes = (uint64_t)lay_h;
                out->workspace_bytes = (uint64_t)ws;
                out->peak_layer = cur;
                best_ws = nsq ? 12.0 * sq[0] : 0;
            }
            if (cur >= 0 && lay_w > (double)out->weight_bytes) out->weight_bytes = (uint64_t)lay_w;
            lay_h = lay_w = 0;
            nsq = 0;
            cur = L;
        }
        if (i == n || L < 0) continue;
        lay_w += (double)t.n_elems * src_per_elem;
        if (t.n_dims < 2 || !strstr(t.name, ".weight")) continue;
        double cols = (double)t.ne[0], rows = (double)t.ne[1], nmat = t.n_dims > 2 ? (double)t.ne[2] : 1;
        bool ex = strstr(t.name, "_exps.") != NULL && n_exp > 0;
        double tok = ex ? T * (double)k_used / (double)n_exp : T;
        out->flops_forward += 2.0 * rows * cols * nmat * tok;
        if (!has_hessian(&t)) {
            if (strstr(t.name, "ffn_up") && qt_gptq_mode_of(t.type) != QT_GPTQ_NONE) out->flops_feedback += rows * cols * cols * nmat;
            continue;
        }
        double nh = ex && experts == CAL_HESS_SHARED ? 1 : nmat, tok_h = ex && experts == CAL_HESS_SHARED ? T * (double)k_used : tok;
        double nf = ex && experts != CAL_HESS_SHARED && strstr(t.name, "ffn_gate_exps") ? 2 : 1;   /* gate and up each factor it */
        lay_h += 4.0 * cols * (tok_h < cols ? tok_h : cols) * nh;   /* kept rows until there are as many as columns */
        for (double k = 0; k < nh && k < n_par; k++) {
            if (nsq == capsq) { double *g = realloc(sq, (capsq *= 2) * sizeof *sq); if (!g) break; sq = g; }
            if (sq) sq[nsq++] = cols * cols;
        }
        if (ex && 12.0 * cols * cols > exp_ws) exp_ws = 12.0 * cols * cols;
        out->flops_gram += cols * cols * nmat * tok;                 /* upper triangle: cols^2/2 multiply-adds per row */
        out->flops_factor += 4.0 / 3.0 * cols * cols * cols * nmat * nf;   /* Cholesky + triangular inverse, per matrix written */
        out->flops_gram += ex && tok < cols ? cols * cols * tok * nmat * (nf - 1) : 0;   /* H formed again from kept rows */
        if (qt_gptq_mode_of(t.type) != QT_GPTQ_NONE) out->flops_feedback += rows * cols * cols * nmat;   /* rows * cols^2/2 multiply-adds */
    }
    free(sq);
    out->factor_bytes = out->hessian_bytes;
    out->ws_per = (uint64_t)(exp_ws > 0 ? exp_ws : best_ws);
    out->state_bytes = (uint64_t)(T * (double)n_embd * 4.0);
    int64_t F = hp->n_ff > hp->n_ff_exp ? hp->n_ff : hp->n_ff_exp;
    double bt = T < 4096 ? T : 4096;
    out->engine_bytes = (uint64_t)(bt * (10.0 * (double)n_embd + 2.0 * (double)F) * 4.0);
    out->peak_bytes = out->hessian_bytes + out->workspace_bytes + out->state_bytes + out->engine_bytes + out->weight_bytes;
}
