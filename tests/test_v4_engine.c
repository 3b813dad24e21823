/* tests/test_v4_engine.c — the deepseek4 (DeepSeek-V4) forward pass of the engine against an
 * independent double-precision reference written here with plain loops (no engine or kernel
 * code), on a tiny random V4 model this test writes as a GGUF (llama.cpp's tensor names and
 * keys).  The window (160 tokens) is longer than the sliding window (8), so ratio-4 blocks
 * (40, with the indexer's top-2 choice) and a ratio-128 block are used; layer 0 routes by
 * token id.  Also: the V4 kernels' fast paths equal their _ref bit for bit (1 and N threads),
 * a perturbed compressor / indexer / hyper-connection weight moves the output (and the engine
 * still tracks the reference), and the imatrix has an entry for every matmul input.
 *
 * Tolerance (f32 engine vs double reference): |a - b| <= 2e-3 + 2e-3 |b| on every logit and on
 * every value of the last layer's residual streams. */
#include "calib/calib.h"
#include "formats/formats.h"
#include "kernels/kernels.h"
#include "util/tu.h"

#include <math.h>
#include <stdint.h>

/* ---- the tiny model ---- */
enum { E = 32, H = 4, D = 16, R = 8, NOPE = D - R, QL = 16, G = 2, OL = 8, OGD = H * D / G, HC = 4, MIX = (2 + HC) * HC,
       SWA = 8, IH = 2, ID = 16, TOPK = 2, X = 8, K = 2, F = 16, V = 64, NL = 3, ITERS = 20, S = 160, NWIN = 2 };
static const int ratio[NL] = { 4, 128, 0 };
static const int n_hash = 1;
static const double EPS = 1e-6, HC_EPS = 1e-6, BASE = 10000.0, CBASE = 160000.0, YARN_F = 4.0, YARN_ORIG = 64.0;
static const double CLAMP = 1.5, RSCALE = 1.5;

typedef struct { char name[64]; int nd; int64_t ne[3]; float *f; int32_t *i; } tens;
static tens T_[128];
static int n_t;

static uint64_t rng = 88172645463325252ull;
static double urand(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return (double)(rng >> 11) / 9007199254740992.0; }

static tens *add(const char *name, int nd, int64_t a, int64_t b, int64_t c, double scale, double offset) {
    tens *t = &T_[n_t++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->nd = nd; t->ne[0] = a; t->ne[1] = b; t->ne[2] = c;
    int64_t n = a * b * c;
    t->f = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) t->f[i] = (float)(offset + scale * (2.0 * urand() - 1.0));
    return t;
}
static tens *find(const char *name) {
    for (int i = 0; i < n_t; i++) if (!strcmp(T_[i].name, name)) return &T_[i];
    return NULL;
}
static const float *W(const char *fmt, int l) {
    char n[64];
    snprintf(n, sizeof n, fmt, l);
    tens *t = find(n);
    if (!t) { fprintf(stderr, "test bug: no tensor %s\n", n); exit(2); }
    return t->f;
}

static void build(void) {
    char n[64];
    add("token_embd.weight", 2, E, V, 1, 1.0, 0);
    add("output_norm.weight", 1, E, 1, 1, 0.2, 1.0);
    add("output.weight", 2, E, V, 1, 1.0 / sqrt(E), 0);
    add("output_hc_fn.weight", 2, HC * E, HC, 1, 1.0 / sqrt(HC * E), 0);
    add("output_hc_base.weight", 1, HC, 1, 1, 0.5, 0);
    add("output_hc_scale.weight", 1, 1, 1, 1, 0.3, 1.0);
    for (int l = 0; l < NL; l++) {
#define A(sfx, nd, a, b, c, sc, off) (snprintf(n, sizeof n, "blk.%d." sfx, l), add(n, nd, a, b, c, sc, off))
        A("attn_norm.weight", 1, E, 1, 1, 0.2, 1.0);
        A("ffn_norm.weight", 1, E, 1, 1, 0.2, 1.0);
        A("attn_sinks.weight", 1, H, 1, 1, 1.0, 0);
        A("attn_q_a.weight", 2, E, QL, 1, 1.0 / sqrt(E), 0);
        A("attn_q_a_norm.weight", 1, QL, 1, 1, 0.2, 1.0);
        A("attn_q_b.weight", 2, QL, H * D, 1, 1.0 / sqrt(QL), 0);
        A("attn_kv.weight", 2, E, D, 1, 1.0 / sqrt(E), 0);
        A("attn_kv_a_norm.weight", 1, D, 1, 1, 0.2, 1.0);
        A("attn_output_a.weight", 2, OGD, G * OL, 1, 1.0 / sqrt(OGD), 0);
        A("attn_output_b.weight", 2, G * OL, E, 1, 1.0 / sqrt(G * OL), 0);
        A("hc_attn_fn.weight", 2, HC * E, MIX, 1, 1.0 / sqrt(HC * E), 0);
        A("hc_attn_base.weight", 1, MIX, 1, 1, 0.5, 0);
        A("hc_attn_scale.weight", 1, 3, 1, 1, 0.3, 1.0);
        A("hc_ffn_fn.weight", 2, HC * E, MIX, 1, 1.0 / sqrt(HC * E), 0);
        A("hc_ffn_base.weight", 1, MIX, 1, 1, 0.5, 0);
        A("hc_ffn_scale.weight", 1, 3, 1, 1, 0.3, 1.0);
        if (ratio[l]) {
            const int cw = (ratio[l] == 4 ? 2 : 1) * D;
            A("attn_compressor_kv.weight", 2, E, cw, 1, 1.0 / sqrt(E), 0);
            A("attn_compressor_gate.weight", 2, E, cw, 1, 2.0 / sqrt(E), 0);
            A("attn_compressor_ape.weight", 2, cw, ratio[l], 1, 0.5, 0);
            A("attn_compressor_norm.weight", 1, D, 1, 1, 0.2, 1.0);
        }
        if (ratio[l] == 4) {
            A("indexer.proj.weight", 2, E, IH, 1, 1.0 / sqrt(E), 0);
            A("indexer.attn_q_b.weight", 2, QL, IH * ID, 1, 1.0 / sqrt(QL), 0);
            A("indexer_compressor_kv.weight", 2, E, 2 * ID, 1, 1.0 / sqrt(E), 0);
            A("indexer_compressor_gate.weight", 2, E, 2 * ID, 1, 2.0 / sqrt(E), 0);
            A("indexer_compressor_ape.weight", 2, 2 * ID, 4, 1, 0.5, 0);
            A("indexer_compressor_norm.weight", 1, ID, 1, 1, 0.2, 1.0);
        }
        A("ffn_gate_inp.weight", 2, E, X, 1, 1.0 / sqrt(E), 0);
        if (l < n_hash) {
            tens *t = A("ffn_gate_tid2eid.weight", 2, K, V, 1, 0, 0);
            t->i = malloc((size_t)(K * V) * sizeof(int32_t));
            for (int v = 0; v < V; v++) {
                int a = (int)(urand() * X), b = (a + 1 + (int)(urand() * (X - 1))) % X;
                t->i[v * K] = a; t->i[v * K + 1] = b;
            }
        } else {
            A("exp_probs_b.bias", 1, X, 1, 1, 0.1, 0);
        }
        A("ffn_gate_exps.weight", 3, E, F, X, 1.5 / sqrt(E), 0);
        A("ffn_up_exps.weight", 3, E, F, X, 1.5 / sqrt(E), 0);
        A("ffn_down_exps.weight", 3, F, E, X, 1.0 / sqrt(F), 0);
        A("ffn_gate_shexp.weight", 2, E, F, 1, 1.5 / sqrt(E), 0);
        A("ffn_up_shexp.weight", 2, E, F, 1, 1.5 / sqrt(E), 0);
        A("ffn_down_shexp.weight", 2, F, E, 1, 1.0 / sqrt(F), 0);
#undef A
    }
}

static int ku(gf_writer *w, const char *key, uint32_t v) {
    char k[128];
    qx_err e;
    snprintf(k, sizeof k, "deepseek4.%s", key);
    return gf_writer_set_u32(w, k, v, &e) != QX_OK;
}
static int kf(gf_writer *w, const char *key, double v) {
    char k[128];
    qx_err e;
    snprintf(k, sizeof k, "deepseek4.%s", key);
    return gf_writer_set_f32(w, k, (float)v, &e) != QX_OK;
}

static int write_gguf(const char *path) {
    qx_err e;
    gf_writer *w = NULL;
    if (gf_writer_create(&w, &e) != QX_OK) return -1;
    const char *a = "deepseek4";
    char k[128];
    int bad = 0;
    bad |= gf_writer_set_str(w, GF_KEY_ARCHITECTURE, a, &e) != QX_OK;
    bad |= ku(w, "block_count", NL); bad |= ku(w, "embedding_length", E); bad |= ku(w, "context_length", 4096);
    bad |= ku(w, "attention.head_count", H); bad |= ku(w, "attention.head_count_kv", 1);
    bad |= ku(w, "attention.key_length", D); bad |= ku(w, "attention.value_length", D);
    bad |= kf(w, "attention.layer_norm_rms_epsilon", EPS); bad |= ku(w, "rope.dimension_count", R);
    bad |= kf(w, "rope.freq_base", BASE); bad |= ku(w, "attention.q_lora_rank", QL);
    bad |= ku(w, "attention.sliding_window", SWA); bad |= ku(w, "expert_count", X); bad |= ku(w, "expert_used_count", K);
    bad |= ku(w, "expert_feed_forward_length", F); bad |= ku(w, "expert_shared_count", 1);
    bad |= kf(w, "expert_weights_scale", RSCALE); bad |= ku(w, "expert_gating_func", 4);
    snprintf(k, sizeof k, "%s.expert_weights_norm", a); bad |= gf_writer_set_bool(w, k, true, &e) != QX_OK;
    bad |= ku(w, "attention.indexer.head_count", IH); bad |= ku(w, "attention.indexer.key_length", ID);
    bad |= ku(w, "attention.indexer.top_k", TOPK); bad |= ku(w, "attention.output_group_count", G);
    bad |= ku(w, "attention.output_lora_rank", OL); bad |= kf(w, "attention.compress_rope_freq_base", CBASE);
    bad |= ku(w, "hyper_connection.count", HC); bad |= ku(w, "hyper_connection.sinkhorn_iterations", ITERS);
    bad |= kf(w, "hyper_connection.epsilon", HC_EPS); bad |= ku(w, "hash_layer_count", n_hash);
    snprintf(k, sizeof k, "%s.rope.scaling.type", a); bad |= gf_writer_set_str(w, k, "yarn", &e) != QX_OK;
    bad |= kf(w, "rope.scaling.factor", YARN_F); bad |= ku(w, "rope.scaling.original_context_length", (uint32_t)YARN_ORIG);
    int32_t rat[NL];
    float cl[NL];
    for (int l = 0; l < NL; l++) { rat[l] = ratio[l]; cl[l] = (float)CLAMP; }
    snprintf(k, sizeof k, "%s.attention.compress_ratios", a); bad |= gf_writer_set_arr(w, k, GF_I32, rat, NL, &e) != QX_OK;
    snprintf(k, sizeof k, "%s.swiglu_clamp_exp", a); bad |= gf_writer_set_arr(w, k, GF_F32, cl, NL, &e) != QX_OK;
    snprintf(k, sizeof k, "%s.swiglu_clamp_shexp", a); bad |= gf_writer_set_arr(w, k, GF_F32, cl, NL, &e) != QX_OK;
    const void *data[128];
    for (int i = 0; i < n_t; i++) {
        int64_t ne[3] = { T_[i].ne[0], T_[i].ne[1], T_[i].ne[2] };
        bad |= gf_writer_add_tensor(w, T_[i].name, T_[i].i ? QT_I32 : QT_F32, T_[i].nd, ne, NULL, &e) != QX_OK;
        data[i] = T_[i].i ? (const void *)T_[i].i : (const void *)T_[i].f;
    }
    bad |= gf_writer_write_file(w, path, data, &e) != QX_OK;
    if (bad) fprintf(stderr, "gguf write: %s\n", e.msg);
    gf_writer_free(w);
    return bad ? -1 : 0;
}

/* ---- the reference forward (double, plain loops) ---- */

static double rms_inv(const double *x, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += x[i] * x[i];
    return 1.0 / sqrt(s / n + EPS);
}
static void rmsnorm(double *x, int n, const float *w) {
    double r = rms_inv(x, n);
    for (int i = 0; i < n; i++) x[i] = x[i] * r * (w ? w[i] : 1.0);
}
/* y[rows] = M[rows, cols] · x (M row-major, float) */
static void matvec(const float *M, int rows, int cols, const double *x, double *y) {
    for (int r = 0; r < rows; r++) {
        double s = 0;
        for (int c = 0; c < cols; c++) s += (double)M[(int64_t)r * cols + c] * x[c];
        y[r] = s;
    }
}
static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

/* rope frequencies: plain base, or the compressed layers' base with YaRN (ggml's ramp) */
static double freq(int i, bool comp) {
    const double base = comp ? CBASE : BASE;
    double th = pow(base, -2.0 * i / R);
    if (!comp) return th;
    double lo = floor(R * log(YARN_ORIG / (32.0 * 2 * M_PI)) / (2 * log(base)));
    double hi = ceil(R * log(YARN_ORIG / (1.0 * 2 * M_PI)) / (2 * log(base)));
    if (lo < 0) lo = 0;
    if (hi > R - 1) hi = R - 1;
    double y = (i - lo) / fmax(0.001, hi - lo);
    double ramp = 1.0 - fmin(1.0, fmax(0.0, y));
    return th / YARN_F * (1 - ramp) + th * ramp;
}
/* rotates the last R dims of v (D) by pos (interleaved pairs); sign -1 undoes it */
static void rope(double *v, int pos, bool comp, int sign) {
    for (int i = 0; i < R / 2; i++) {
        double a = sign * pos * freq(i, comp), c = cos(a), s = sin(a);
        double x0 = v[NOPE + 2 * i], x1 = v[NOPE + 2 * i + 1];
        v[NOPE + 2 * i] = x0 * c - x1 * s;
        v[NOPE + 2 * i + 1] = x0 * s + x1 * c;
    }
}
static void rope_id(double *v, int pos) {   /* an indexer head: ID dims, rope part last */
    for (int i = 0; i < R / 2; i++) {
        double a = pos * freq(i, true), c = cos(a), s = sin(a);
        double x0 = v[ID - R + 2 * i], x1 = v[ID - R + 2 * i + 1];
        v[ID - R + 2 * i] = x0 * c - x1 * s;
        v[ID - R + 2 * i + 1] = x0 * s + x1 * c;
    }
}

/* hyper-connection coefficients from the streams hs [HC*E] */
static void hc_coef(const float *fn, const float *base, const float *scale, const double *hs, double *pre, double *post,
                    double c[HC][HC]) {
    double flat[HC * E], m[MIX];
    memcpy(flat, hs, sizeof flat);
    rmsnorm(flat, HC * E, NULL);
    matvec(fn, post ? MIX : HC, HC * E, flat, m);
    for (int h = 0; h < HC; h++) pre[h] = sigmoid(m[h] * scale[0] + base[h]) + HC_EPS;
    if (!post) return;
    for (int h = 0; h < HC; h++) post[h] = 2 * sigmoid(m[HC + h] * scale[1] + base[HC + h]);
    for (int s = 0; s < HC; s++) {
        double mx = -1e300, sum = 0;
        for (int d = 0; d < HC; d++) { c[s][d] = m[2 * HC + s * HC + d] * scale[2] + base[2 * HC + s * HC + d]; mx = fmax(mx, c[s][d]); }
        for (int d = 0; d < HC; d++) { c[s][d] = exp(c[s][d] - mx); sum += c[s][d]; }
        for (int d = 0; d < HC; d++) c[s][d] = c[s][d] / sum + HC_EPS;
    }
    for (int it = 0; it < ITERS; it++) {
        if (it)
            for (int s = 0; s < HC; s++) {
                double sum = HC_EPS;
                for (int d = 0; d < HC; d++) sum += c[s][d];
                for (int d = 0; d < HC; d++) c[s][d] /= sum;
            }
        for (int d = 0; d < HC; d++) {
            double sum = HC_EPS;
            for (int s = 0; s < HC; s++) sum += c[s][d];
            for (int s = 0; s < HC; s++) c[s][d] /= sum;
        }
    }
}

/* compressed rows of one window for a compressor (kv/gate [cw, E], ape [r, cw], norm [d]):
 * out [S / r][d], roped when rope_dims (the last R dims) */
static void ref_compress(const double (*xn)[E], const float *kvw, const float *gw, const float *ape, const float *norm,
                         int r, int d, bool overlap, double *out) {
    const int cw = overlap ? 2 * d : d, nb = S / r;
    double *kv = malloc(sizeof(double) * S * cw), *sc = malloc(sizeof(double) * S * cw);
    for (int t = 0; t < S; t++) {
        matvec(kvw, cw, E, xn[t], kv + t * cw);
        matvec(gw, cw, E, xn[t], sc + t * cw);
        for (int i = 0; i < cw; i++) sc[t * cw + i] += ape[(t % r) * cw + i];
    }
    for (int b = 0; b < nb; b++) {
        double *o = out + b * d;
        for (int i = 0; i < d; i++) {
            double vals[256], scs[256];
            int n = 0;
            if (overlap)
                for (int j = 0; j < r; j++, n++) {
                    int t = (b - 1) * r + j;
                    vals[n] = b ? kv[t * cw + i] : 0;
                    scs[n] = b ? sc[t * cw + i] : -INFINITY;
                }
            for (int j = 0; j < r; j++, n++) {
                int t = b * r + j;
                vals[n] = kv[t * cw + (overlap ? d : 0) + i];
                scs[n] = sc[t * cw + (overlap ? d : 0) + i];
            }
            double mx = -INFINITY, sum = 0, acc = 0;
            for (int j = 0; j < n; j++) mx = fmax(mx, scs[j]);
            for (int j = 0; j < n; j++) sum += exp(scs[j] - mx);
            for (int j = 0; j < n; j++) acc += vals[j] * exp(scs[j] - mx) / sum;
            o[i] = acc;
        }
        rmsnorm(o, d, norm);
        if (d == D) rope(o, b * r, true, 1);
        else rope_id(o, b * r);
    }
    free(kv); free(sc);
}

static void ref_attention(int l, const double (*xn)[E], double (*y)[E]) {
    const bool comp = ratio[l] != 0;
    static double q[S][H * D], kv[S][D], qa[S][QL];
    for (int t = 0; t < S; t++) {
        matvec(W("blk.%d.attn_q_a.weight", l), QL, E, xn[t], qa[t]);
        rmsnorm(qa[t], QL, W("blk.%d.attn_q_a_norm.weight", l));
        matvec(W("blk.%d.attn_q_b.weight", l), H * D, QL, qa[t], q[t]);
        for (int h = 0; h < H; h++) { rmsnorm(q[t] + h * D, D, NULL); rope(q[t] + h * D, t, comp, 1); }
        matvec(W("blk.%d.attn_kv.weight", l), D, E, xn[t], kv[t]);
        rmsnorm(kv[t], D, W("blk.%d.attn_kv_a_norm.weight", l));
        rope(kv[t], t, comp, 1);
    }
    const int r = ratio[l], nb = r ? S / r : 0;
    double *ck = r ? malloc(sizeof(double) * nb * D) : NULL;
    if (r) ref_compress(xn, W("blk.%d.attn_compressor_kv.weight", l), W("blk.%d.attn_compressor_gate.weight", l),
                        W("blk.%d.attn_compressor_ape.weight", l), W("blk.%d.attn_compressor_norm.weight", l), r, D, r == 4, ck);
    double *ik = r == 4 ? malloc(sizeof(double) * nb * ID) : NULL;
    if (r == 4) ref_compress(xn, W("blk.%d.indexer_compressor_kv.weight", l), W("blk.%d.indexer_compressor_gate.weight", l),
                             W("blk.%d.indexer_compressor_ape.weight", l), W("blk.%d.indexer_compressor_norm.weight", l), 4, ID, true, ik);
    const float *sinks = W("blk.%d.attn_sinks.weight", l);
    for (int t = 0; t < S; t++) {
        int blocks[S], n_blk = 0, nv = r ? (t + 1) / r : 0;
        if (r == 4 && nv > TOPK) {   /* the indexer: top TOPK by Σ_h relu(q_h·k)·w_h */
            double iq[IH * ID], iw[IH], sc[S];
            matvec(W("blk.%d.indexer.attn_q_b.weight", l), IH * ID, QL, qa[t], iq);
            for (int h = 0; h < IH; h++) rope_id(iq + h * ID, t);
            matvec(W("blk.%d.indexer.proj.weight", l), IH, E, xn[t], iw);
            for (int b = 0; b < nv; b++) {
                sc[b] = 0;
                for (int h = 0; h < IH; h++) {
                    double dd = 0;
                    for (int i = 0; i < ID; i++) dd += iq[h * ID + i] * ik[b * ID + i];
                    sc[b] += fmax(dd, 0) * iw[h] / sqrt((double)ID * IH);
                }
            }
            bool used[S] = { false };
            for (int m = 0; m < TOPK; m++) {
                int best = -1;
                for (int b = 0; b < nv; b++) if (!used[b] && (best < 0 || sc[b] > sc[best])) best = b;
                used[best] = true;
            }
            for (int b = 0; b < nv; b++) if (used[b]) blocks[n_blk++] = b;
        } else {
            for (int b = 0; b < nv; b++) blocks[n_blk++] = b;
        }
        double o[H * D];
        for (int h = 0; h < H; h++) {
            double p[S + S], mx = sinks[h], sum = 0;
            const double *qh = q[t] + h * D;
            const double *keys[S + S];
            int n = 0;
            for (int j = t - SWA + 1 < 0 ? 0 : t - SWA + 1; j <= t; j++) keys[n++] = kv[j];
            for (int b = 0; b < n_blk; b++) keys[n++] = ck + blocks[b] * D;
            for (int j = 0; j < n; j++) {
                double s = 0;
                for (int i = 0; i < D; i++) s += qh[i] * keys[j][i];
                p[j] = s / sqrt((double)D);
                mx = fmax(mx, p[j]);
            }
            for (int j = 0; j < n; j++) sum += exp(p[j] - mx);
            sum += exp(sinks[h] - mx);
            for (int i = 0; i < D; i++) {
                double a = 0;
                for (int j = 0; j < n; j++) a += exp(p[j] - mx) / sum * keys[j][i];
                o[h * D + i] = a;
            }
            rope(o + h * D, t, comp, -1);
        }
        double oa[G * OL];
        const float *wa = W("blk.%d.attn_output_a.weight", l);
        for (int g = 0; g < G; g++) matvec(wa + (int64_t)g * OL * OGD, OL, OGD, o + g * OGD, oa + g * OL);
        matvec(W("blk.%d.attn_output_b.weight", l), E, G * OL, oa, y[t]);
    }
    free(ck); free(ik);
}

static void ref_mlp(const float *g, const float *u, const float *d, const double *x, double *y) {
    double gv[F], uv[F];
    matvec(g, F, E, x, gv);
    matvec(u, F, E, x, uv);
    for (int i = 0; i < F; i++) {
        double z = fmin(gv[i], CLAMP), v = fmax(-CLAMP, fmin(CLAMP, uv[i]));
        gv[i] = z / (1 + exp(-z)) * v;
    }
    matvec(d, E, F, gv, y);
}

static void ref_ffn(int l, const int32_t *ids, const double (*xn)[E], double (*y)[E]) {
    tens *hash = NULL;
    char n[64];
    snprintf(n, sizeof n, "blk.%d.ffn_gate_tid2eid.weight", l);
    hash = find(n);
    for (int t = 0; t < S; t++) {
        double lg[X], p[X], w[K];
        int ex[K];
        matvec(W("blk.%d.ffn_gate_inp.weight", l), X, E, xn[t], lg);
        for (int x = 0; x < X; x++) p[x] = sqrt(log1p(exp(lg[x])));
        if (hash) {
            for (int j = 0; j < K; j++) ex[j] = hash->i[ids[t] * K + j];
        } else {
            const float *b = W("blk.%d.exp_probs_b.bias", l);
            bool used[X] = { false };
            for (int j = 0; j < K; j++) {
                int best = -1;
                for (int x = 0; x < X; x++) if (!used[x] && (best < 0 || p[x] + b[x] > p[best] + b[best])) best = x;
                used[best] = true;
                ex[j] = best;
            }
        }
        double sum = 0;
        for (int j = 0; j < K; j++) { w[j] = p[ex[j]]; sum += w[j]; }
        for (int i = 0; i < E; i++) y[t][i] = 0;
        for (int j = 0; j < K; j++) {
            double ye[E];
            const int64_t x = ex[j];
            ref_mlp(W("blk.%d.ffn_gate_exps.weight", l) + x * F * E, W("blk.%d.ffn_up_exps.weight", l) + x * F * E,
                    W("blk.%d.ffn_down_exps.weight", l) + x * E * F, xn[t], ye);
            for (int i = 0; i < E; i++) y[t][i] += w[j] / sum * RSCALE * ye[i];
        }
        double ys[E];
        ref_mlp(W("blk.%d.ffn_gate_shexp.weight", l), W("blk.%d.ffn_up_shexp.weight", l), W("blk.%d.ffn_down_shexp.weight", l),
                xn[t], ys);
        for (int i = 0; i < E; i++) y[t][i] += ys[i];
    }
}

/* One window: logits [S, V] and the last layer's streams [S, HC*E]. */
static void ref_forward(const int32_t *ids, double *logits, double *hid) {
    static double h[S][HC * E], xn[S][E], y[S][E];
    static double pre[S][HC], post[S][HC], comb[S][HC][HC];
    const float *emb = W("token_embd.weight", 0);
    for (int t = 0; t < S; t++)
        for (int s = 0; s < HC; s++)
            for (int i = 0; i < E; i++) h[t][s * E + i] = emb[(int64_t)ids[t] * E + i];
    for (int l = 0; l < NL; l++)
        for (int part = 0; part < 2; part++) {
            const char *p = part ? "ffn" : "attn";
            char n1[64], n2[64], n3[64], nn[64];
            snprintf(n1, sizeof n1, "blk.%%d.hc_%s_fn.weight", p);
            snprintf(n2, sizeof n2, "blk.%%d.hc_%s_base.weight", p);
            snprintf(n3, sizeof n3, "blk.%%d.hc_%s_scale.weight", p);
            snprintf(nn, sizeof nn, "blk.%%d.%s_norm.weight", p);
            for (int t = 0; t < S; t++) {
                hc_coef(W(n1, l), W(n2, l), W(n3, l), h[t], pre[t], post[t], comb[t]);
                for (int i = 0; i < E; i++) {
                    double a = 0;
                    for (int s = 0; s < HC; s++) a += pre[t][s] * h[t][s * E + i];
                    xn[t][i] = a;
                }
                rmsnorm(xn[t], E, W(nn, l));
            }
            if (part) ref_ffn(l, ids, (const double (*)[E])xn, y);
            else ref_attention(l, (const double (*)[E])xn, y);
            for (int t = 0; t < S; t++) {
                double hn[HC * E];
                for (int d = 0; d < HC; d++)
                    for (int i = 0; i < E; i++) {
                        double a = post[t][d] * y[t][i];
                        for (int s = 0; s < HC; s++) a += comb[t][s][d] * h[t][s * E + i];
                        hn[d * E + i] = a;
                    }
                memcpy(h[t], hn, sizeof hn);
            }
        }
    memcpy(hid, h, sizeof h);
    for (int t = 0; t < S; t++) {
        double pr[HC], x[E];
        hc_coef(W("output_hc_fn.weight", 0), W("output_hc_base.weight", 0), W("output_hc_scale.weight", 0), h[t], pr, NULL, NULL);
        for (int i = 0; i < E; i++) {
            double a = 0;
            for (int s = 0; s < HC; s++) a += pr[s] * h[t][s * E + i];
            x[i] = a;
        }
        rmsnorm(x, E, W("output_norm.weight", 0));
        matvec(W("output.weight", 0), V, E, x, logits + (int64_t)t * V);
    }
}

/* ---- the engine through observers ---- */
typedef struct { float *logits; float *hid; } cap;
static qx_status on_logits(void *ud, int64_t win, int64_t p0, const float *lg, int64_t n, int64_t nv, qx_err *e) {
    (void)e; (void)p0;
    memcpy(((cap *)ud)->logits + win * S * V, lg, (size_t)(n * nv) * sizeof(float));
    return QX_OK;
}
static qx_status on_logits_any(void *ud, int64_t win, int64_t p0, const float *lg, int64_t n, int64_t nv, qx_err *e) {
    (void)e; (void)p0; (void)win;
    memcpy(((cap *)ud)->logits, lg, (size_t)(n * nv) * sizeof(float));
    return QX_OK;
}
static void on_hidden(void *ud, int layer, int64_t t0, const float *h, int64_t T, int64_t n) {
    if (layer == NL - 1 && ((cap *)ud)->hid) memcpy(((cap *)ud)->hid + t0 * HC * E, h, (size_t)(T * n) * sizeof(float));
}

static qx_status run_engine(cal_model *m, const int32_t *ids, bool refk, float *logits, float *hid, qx_err *e) {
    cap c = { logits, hid };
    cal_observer o;
    memset(&o, 0, sizeof o);
    o.ud = &c; o.logits = on_logits; o.hidden = on_hidden;
    cal_run_params p = cal_run_default_params();
    p.ref_kernels = refk;
    p.batch_tokens = S;   /* one window per batch: two batches */
    return cal_forward(m, ids, NWIN, S, &p, &o, e);
}

/* max over entries of |a-b| / (2e-3 + 2e-3|b|); <= 1 passes */
static double worst(const float *a, const double *b, int64_t n, int64_t *at) {
    double w = 0;
    for (int64_t i = 0; i < n; i++) {
        double r = fabs((double)a[i] - b[i]) / (2e-3 + 2e-3 * fabs(b[i]));
        if (!(r <= w)) { w = r; *at = i; }
    }
    return w;
}

static void compare(cal_model *m, const int32_t *ids, const char *what, float *lg, double *ref_lg) {
    qx_err e;
    float *hid = malloc(sizeof(float) * NWIN * S * HC * E);
    double *rh = malloc(sizeof(double) * NWIN * S * HC * E);
    TU_OK(run_engine(m, ids, false, lg, hid, &e), &e);
    for (int w = 0; w < NWIN; w++) ref_forward(ids + w * S, ref_lg + (int64_t)w * S * V, rh + (int64_t)w * S * HC * E);
    int64_t at = 0;
    double wl = worst(lg, ref_lg, (int64_t)NWIN * S * V, &at);
    TU_CHECK(wl <= 1.0, "%s: logit %lld engine %g vs reference %g (%.2f x tolerance)", what, (long long)at, lg[at], ref_lg[at], wl);
    double wh = worst(hid, rh, (int64_t)NWIN * S * HC * E, &at);
    TU_CHECK(wh <= 1.0, "%s: last streams [%lld] engine %g vs reference %g (%.2f x tolerance)", what, (long long)at, hid[at], rh[at], wh);
    fprintf(stderr, "%s: worst logit %.3f, worst stream value %.3f of the tolerance\n", what, wl, wh);
    free(hid); free(rh);
}

static double max_change(const float *a, const float *b, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

/* ---- kernels: fast == _ref bit for bit, 1 and N threads ---- */
static void kernel_checks(void) {
    enum { T = 96, NS = 2, SS = 48 };
    float *a = malloc(sizeof(float) * T * 64), *b = malloc(sizeof(float) * T * 64), *c = malloc(sizeof(float) * T * 64);
    float *x1 = malloc(sizeof(float) * T * 256), *x2 = malloc(sizeof(float) * T * 256);
    for (int i = 0; i < T * 64; i++) { a[i] = (float)(2 * urand() - 1); b[i] = (float)(2 * urand() - 1); c[i] = (float)urand(); }
    float base[MIX], scale[3] = { 0.7f, 1.1f, 0.9f };
    for (int i = 0; i < MIX; i++) base[i] = (float)(urand() - 0.5);
    kn_hc_args ha = { HC, ITERS, 1e-6f, scale, base };
    static float att1[2][T * 32];
    float pr1[T * HC], po1[T * HC], co1[T * HC * HC], pr2[T * HC], po2[T * HC], co2[T * HC * HC];
    for (int th = 1; th <= 2; th++) {
        tu_set_threads(th);
        kn_hc_coeffs_ref(&ha, a, 64, T, pr1, po1, co1);
        kn_hc_coeffs(&ha, a, 64, T, pr2, po2, co2);
        TU_CHECK(!memcmp(pr1, pr2, sizeof pr1) && !memcmp(po1, po2, sizeof po1) && !memcmp(co1, co2, sizeof co1), "hc_coeffs %d threads", th);
        double worst_sum = 0;   /* Sinkhorn: columns sum to 1 (up to eps) */
        for (int t = 0; t < T; t++)
            for (int d = 0; d < HC; d++) {
                double s = 0;
                for (int q = 0; q < HC; q++) s += co1[t * HC * HC + q * HC + d];
                worst_sum = fmax(worst_sum, fabs(s - 1));
            }
        TU_CHECK(worst_sum < 1e-4, "Sinkhorn column sums off by %g", worst_sum);
        kn_hc_collapse_ref(a, pr1, HC, T, 16, x1);
        kn_hc_collapse(a, pr1, HC, T, 16, x2);
        TU_CHECK(!memcmp(x1, x2, sizeof(float) * T * 16), "hc_collapse %d threads", th);
        kn_hc_expand_ref(b, a, po1, co1, HC, T, 16, x1);
        kn_hc_expand(b, a, po1, co1, HC, T, 16, x2);
        TU_CHECK(!memcmp(x1, x2, sizeof(float) * T * 64), "hc_expand %d threads", th);
        for (int ov = 0; ov < 2; ov++) {
            kn_comp_args ca = { NS, SS, 4, 16, ov == 1, a, b, 64, c, 32, x1 };
            kn_v4_compress_ref(&ca);
            ca.out = x2;
            kn_v4_compress(&ca);
            TU_CHECK(!memcmp(x1, x2, sizeof(float) * NS * (SS / 4) * 16), "compress overlap %d, %d threads", ov, th);
        }
        int32_t s1[T * 3], s2[T * 3];
        kn_v4_sel_args sa = { NS, SS, 4, 2, 16, 3, a, 64, b, 16, c, 64, s1 };
        kn_v4_select_ref(&sa);
        sa.sel = s2;
        kn_v4_select(&sa);
        TU_CHECK(!memcmp(s1, s2, sizeof s1), "v4_select %d threads", th);
        TU_CHECK(s1[47 * 3 + 2] >= 0 && s1[2 * 3] == -1 && s1[3 * 3] == 0 && s1[3 * 3 + 1] == -1, "selection shape");
        for (int withsel = 0; withsel < 2; withsel++) {
            /* the fast path's SIMD dot products round differently: 1e-5 relative RMS against _ref,
             * and the same bits for any thread count */
            kn_v4_attn_args aa = { NS, SS, 2, 16, 5, a, 64, 32, b, 64, c, 16, 4, withsel ? s1 : NULL, 3, scale, 0.25f, x1, 32 };
            kn_v4_attention_ref(&aa);
            aa.o = x2;
            kn_v4_attention(&aa);
            TU_CHECK(tu_rel_rms(x2, x1, (size_t)T * 32) < 1e-5, "v4_attention sel %d: %g", withsel, tu_rel_rms(x2, x1, (size_t)T * 32));
            if (th == 1) memcpy(att1[withsel], x2, sizeof(float) * T * 32);
            else TU_CHECK(!memcmp(att1[withsel], x2, sizeof(float) * T * 32), "v4_attention sel %d: 1 vs 2 threads", withsel);
        }
    }
    tu_set_threads(0);
    free(a); free(b); free(c); free(x1); free(x2);
}

static void imatrix_check(cal_model *m, const int32_t *ids) {
    qx_err e;
    cal_imatrix_params p = cal_imatrix_default_params();
    p.n_ctx = S;
    p.bos_first = false;
    im_matrix *im = NULL;
    TU_OK(cal_imatrix_run(m, ids, (int64_t)NWIN * S, &p, &im, &e), &e);
    if (!im) return;
    int n_w = 0;
    for (int i = 0; i < n_t; i++) {   /* every matrix the forward multiplies by */
        const tens *t = &T_[i];
        if (t->nd < 2 || t->i || !strcmp(t->name, "token_embd.weight") || strstr(t->name, "_ape.")) continue;
        n_w++;
        const im_entry *en = im_find(im, t->name);
        TU_CHECK(en != NULL, "imatrix has no entry for %s", t->name);
        if (!en) continue;
        int64_t nmat = t->nd == 3 ? t->ne[2] : strstr(t->name, "attn_output_a") ? G : 1;
        TU_CHECK(en->ne0 == t->ne[0] && en->nmat == nmat, "%s: entry %lld x %lld, expected %lld x %lld", t->name,
                 (long long)en->ne0, (long long)en->nmat, (long long)t->ne[0], (long long)nmat);
        bool any = false;
        for (int64_t k = 0; k < en->nmat; k++) any |= en->counts[k] > 0;
        TU_CHECK(any, "%s: no tokens counted", t->name);
        if (strstr(t->name, "attn_output_a"))
            for (int64_t k = 0; k < en->nmat; k++)
                TU_CHECK(en->counts[k] == (float)(NWIN * S), "%s group %lld counted %g tokens", t->name, (long long)k, en->counts[k]);
    }
    TU_CHECK((size_t)n_w == im->n_entries, "imatrix has %zu entries for %d matrices", im->n_entries, n_w);
    im_free(im);
}

/* Perturbations: each path really feeds the output (the logits move), and the engine still
 * tracks the reference with the perturbed weight. */
static void perturb_check(cal_model *m, const int32_t *ids, const float *lg0, float *lg1, double *ref) {
    qx_err e;
    const int64_t NLG = (int64_t)NWIN * S * V;
    const char *pert[] = { "blk.1.attn_compressor_kv.weight", "blk.0.indexer.attn_q_b.weight",
                           "blk.0.indexer_compressor_gate.weight", "blk.2.hc_attn_fn.weight", "blk.1.hc_ffn_fn.weight",
                           "output_hc_fn.weight", "blk.0.attn_compressor_gate.weight" };
    for (size_t i = 0; i < sizeof pert / sizeof pert[0]; i++) {
        tens *t = find(pert[i]);
        const int64_t n = t->ne[0] * t->ne[1] * t->ne[2];
        float *old = malloc(sizeof(float) * n);
        memcpy(old, t->f, sizeof(float) * n);
        /* not a sign flip of the indexer's q: relu would zero most scores, and the reference
         * here breaks ties by index where llama.cpp's top_k (and the engine) do not */
        for (int64_t j = 0; j < n; j++) t->f[j] = t->f[j] * 1.5f + (j % 3 == 0 ? 0.2f : -0.05f);
        TU_OK(cal_model_override(m, pert[i], QT_F32, t->f, &e), &e);
        compare(m, ids, pert[i], lg1, ref);
        double ch = max_change(lg0, lg1, NLG);
        TU_CHECK(ch > 1e-3, "perturbing %s moved the logits by only %g", pert[i], ch);
        fprintf(stderr, "  %s: logits moved by up to %.4f\n", pert[i], ch);
        memcpy(t->f, old, sizeof(float) * n);
        TU_OK(cal_model_override(m, pert[i], QT_F32, NULL, &e), &e);
        free(old);
    }
}

/* `qforge ppl` and `qforge imatrix` on the V4 file: the perplexity equals the reference's to
 * 1e-4 relative; the imatrix file names attn_output_a with one matrix per group. */
static void cli_check(const char *tmp, const int32_t *ids, double ppl_ref) {
    char f[600];
    snprintf(f, sizeof f, "%s/ids.bin", tmp);
    TU_CHECK(tu_write_file(f, ids, sizeof(int32_t) * NWIN * S) == 0, "write ids");
    const char *q = tu_qforge();
    int rc = tu_system("%s ppl %s/tiny-v4.gguf --ids %s --ctx %d --protocol all --json %s/ppl.json > %s/ppl.out 2>&1", q, tmp, f, S,
                       tmp, tmp);
    TU_CHECK(rc == 0, "qforge ppl exit %d", rc);
    snprintf(f, sizeof f, "%s/ppl.json", tmp);
    size_t jn = 0;
    char *js = tu_read_file(f, &jn), *k = js ? strstr(js, "\"ppl\"") : NULL;
    double ppl = k ? strtod(strchr(k, ':') + 1, NULL) : 0;
    TU_CHECK(fabs(ppl / ppl_ref - 1) < 1e-4, "qforge ppl %.6f vs the reference's %.6f", ppl, ppl_ref);
    fprintf(stderr, "qforge ppl %.6f, reference %.6f\n", ppl, ppl_ref);
    free(js);
    rc = tu_system("%s imatrix %s/tiny-v4.gguf --ids %s/ids.bin --ctx %d -o %s/im.gguf > %s/im.out 2>&1", q, tmp, tmp, S, tmp, tmp);
    TU_CHECK(rc == 0, "qforge imatrix exit %d", rc);
    snprintf(f, sizeof f, "%s/im.gguf", tmp);
    im_matrix *im = NULL;
    qx_err e;
    TU_OK(im_load(&im, f, &e), &e);
    const im_entry *en = im ? im_find(im, "blk.0.attn_output_a.weight") : NULL;
    TU_CHECK(en && en->ne0 == OGD && en->nmat == G, "imatrix file: attn_output_a per group");
    TU_CHECK(im && im_find(im, "output_hc_fn.weight") && im_find(im, "blk.0.indexer_compressor_kv.weight") &&
             im_find(im, "blk.0.ffn_gate_inp.weight"), "imatrix file: hc head, indexer compressor, hash layer's router");
    im_free(im);
}

/* One-stream sensitivity (V4 states are hc * n_embd wide) against the per-candidate runs it
 * replaces, on tensors of the new kinds: the same KLD to 1e-6 relative (+1e-9). */
static void sens_check(cal_model *m, const char *tmp, const int32_t *ids) {
    static const char *const names[] = { "token_embd.weight", "blk.0.attn_output_a.weight", "blk.0.hc_attn_fn.weight",
                                         "blk.1.attn_compressor_kv.weight", "blk.0.indexer_compressor_gate.weight",
                                         "blk.2.ffn_gate_exps.weight", "output.weight" };
    enum { N = sizeof names / sizeof names[0] };
    cal_sens_item a[N], b[N];
    for (int i = 0; i < N; i++) {
        a[i] = (cal_sens_item){ .name = names[i], .type = QT_Q4_0, .measure = true };
        b[i] = a[i];
    }
    char base_a[600], base_b[600];
    snprintf(base_a, sizeof base_a, "%s/sens_a.qfb", tmp);
    snprintf(base_b, sizeof base_b, "%s/sens_b.qfb", tmp);
    qx_err e;
    cal_sens_params p = cal_sens_default_params();
    p.ppl.n_ctx = S;
    p.ppl.n_chunks = NWIN;
    p.ppl.protocol = CAL_PPL_ALL;
    cal_ppl_result r0;
    p.ppl.save_base = base_a;
    TU_OK(cal_ppl_run(m, ids, (int64_t)NWIN * S, &p.ppl, &r0, &e), &e);
    p.ppl.save_base = NULL;
    p.ppl.base = base_a;
    TU_OK(cal_sens_run(m, ids, (int64_t)NWIN * S, &p, a, N, &e), &e);
    p.ppl.base = NULL;
    p.ppl.save_base = base_b;
    TU_OK(cal_sens_stream_run(m, ids, (int64_t)NWIN * S, &p, b, N, NULL, &e), &e);
    for (int i = 0; i < N; i++) {
        TU_CHECK(a[i].measured && b[i].measured && a[i].kld > 0 &&
                 fabs(a[i].kld - b[i].kld) <= 1e-9 + 1e-6 * a[i].kld, "%s: KLD per candidate %.9g, one stream %.9g", names[i],
                 a[i].kld, b[i].kld);
        fprintf(stderr, "  sensitivity %-36s Q4_0 KLD %.6f (one stream %.6f)\n", names[i], a[i].kld, b[i].kld);
    }
}

/* GPTQ statistics: attn_output_a gets one H per output group, each the Gram matrix of that
 * group's input (the attention output of its heads, de-roped) over every token. */
static void hessian_check(cal_model *m, const int32_t *ids) {
    qx_err e;
    cal_hessian_params p = cal_hessian_default_params();
    p.n_ctx = S;
    p.bos_first = false;
    cal_hessians *h = NULL;
    TU_OK(cal_hessian_run(m, ids, (int64_t)NWIN * S, &p, &h, &e), &e);
    if (!h) return;
    int64_t c0 = 0, c1 = 0;
    double n0 = 0, n1 = 0;
    const float *h0 = cal_hessian_get(h, "blk.0.attn_output_a.weight", 0, &c0, &n0);
    float *keep = h0 ? malloc(sizeof(float) * (size_t)(c0 * c0)) : NULL;
    if (keep) memcpy(keep, h0, sizeof(float) * (size_t)(c0 * c0));
    const float *h1 = cal_hessian_get(h, "blk.0.attn_output_a.weight", 1, &c1, &n1);
    TU_CHECK(keep && h1 && c0 == OGD && c1 == OGD && n0 == NWIN * S && n1 == NWIN * S, "attn_output_a: H per group (%lld/%lld cols, %g/%g tokens)",
             (long long)c0, (long long)c1, n0, n1);
    if (keep && h1) TU_CHECK(memcmp(keep, h1, sizeof(float) * OGD * OGD) != 0, "the two groups' H are the same");
    TU_CHECK(cal_hessian_get(h, "blk.1.hc_attn_fn.weight", 0, &c0, &n0) && c0 == HC * E, "hc_attn_fn has an H");
    TU_CHECK(cal_hessian_get(h, "blk.0.indexer_compressor_kv.weight", 0, &c0, &n0) && c0 == E, "the indexer compressor has an H");
    free(keep);
    cal_hessian_free(h);
}

/* The HF checkpoint (DeepSeek's names, FP8 with E8M0 grids, FP4 experts) and its F32 GGUF
 * (`qforge synth --preset tiny-v4`, `qforge convert --type F32`: FP8 decoded exactly, experts
 * MXFP4) are the same model: equal logits (the views decode to the same values, the kernels
 * run the same sums). */
static void hf_check(const char *tmp) {
    const char *q = tu_qforge();
    int rc = tu_system("%s synth --preset tiny-v4 -o %s/hf > /dev/null 2>&1 && %s convert %s/hf -o %s/hf.gguf --type F32 --quiet > /dev/null 2>&1",
                       q, tmp, q, tmp, tmp);
    TU_CHECK(rc == 0, "synth + convert tiny-v4 (rc %d)", rc);
    if (rc) return;
    char a[600], b[600];
    snprintf(a, sizeof a, "%s/hf", tmp);
    snprintf(b, sizeof b, "%s/hf.gguf", tmp);
    qx_err e;
    cal_model *mh = NULL, *mg = NULL;
    TU_OK(cal_model_open(&mh, a, &e), &e);
    TU_OK(cal_model_open(&mg, b, &e), &e);
    if (mh && mg) {
        const cal_hparams *hp = cal_model_hparams(mh);
        enum { HS = 300 };   /* > 256: a ratio-128 block and the indexer's top-16 of 75 blocks are used */
        int32_t ids[HS];
        for (int i = 0; i < HS; i++) ids[i] = (int32_t)(urand() * hp->n_vocab);
        const int64_t n = (int64_t)HS * hp->n_vocab;
        float *la = malloc(sizeof(float) * n), *lb = malloc(sizeof(float) * n);
        cap ca = { la, NULL }, cb = { lb, NULL };
        cal_observer o;
        memset(&o, 0, sizeof o);
        o.logits = on_logits_any;
        o.ud = &ca;
        TU_OK(cal_forward(mh, ids, 1, HS, NULL, &o, &e), &e);
        o.ud = &cb;
        TU_OK(cal_forward(mg, ids, 1, HS, NULL, &o, &e), &e);
        double d = max_change(la, lb, n);
        TU_CHECK(d == 0, "HF checkpoint vs its F32 GGUF: logits differ by up to %g", d);
        free(la); free(lb);
    }
    cal_model_close(mh);
    cal_model_close(mg);
}

int main(void) {
    build();
    const char *tmp = tu_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/tiny-v4.gguf", tmp);
    TU_CHECK(write_gguf(path) == 0, "write %s", path);
    kernel_checks();

    int32_t ids[NWIN * S];
    for (int i = 0; i < NWIN * S; i++) ids[i] = (int32_t)(urand() * V);
    qx_err e;
    cal_model *m = NULL;
    TU_OK(cal_model_open(&m, path, &e), &e);
    if (!m) return tu_done("test_v4_engine");
    const cal_hparams *hp = cal_model_hparams(m);
    TU_CHECK(hp->arch == CAL_ARCH_DEEPSEEK4 && hp->hc == HC && hp->n_swa == SWA && hp->o_groups == G && hp->n_hash == n_hash,
             "hyper-parameters");
    const int64_t NLG = (int64_t)NWIN * S * V;
    float *lg0 = malloc(sizeof(float) * NLG), *lg1 = malloc(sizeof(float) * NLG), *lgr = malloc(sizeof(float) * NLG);
    double *ref = malloc(sizeof(double) * NLG);
    compare(m, ids, "tiny-v4", lg0, ref);
    double nll = 0;   /* the reference's perplexity under the "all" protocol (every next token) */
    for (int w = 0; w < NWIN; w++)
        for (int t = 0; t + 1 < S; t++) {
            const double *row = ref + ((int64_t)w * S + t) * V;
            double mx = -1e300, z = 0;
            for (int v = 0; v < V; v++) mx = fmax(mx, row[v]);
            for (int v = 0; v < V; v++) z += exp(row[v] - mx);
            nll += mx + log(z) - row[ids[w * S + t + 1]];
        }
    const double ppl_ref = exp(nll / (NWIN * (S - 1)));

    /* 1 and 2 threads: the same bits */
    tu_set_threads(1);
    TU_OK(run_engine(m, ids, false, lg1, NULL, &e), &e);
    tu_set_threads(2);
    TU_OK(run_engine(m, ids, false, lgr, NULL, &e), &e);
    tu_set_threads(0);
    TU_CHECK(!memcmp(lg1, lgr, sizeof(float) * NLG), "logits differ between 1 and 2 threads");
    TU_CHECK(!memcmp(lg0, lgr, sizeof(float) * NLG), "logits differ from the first run");

    /* the scalar reference kernels give the same logits within the tolerance */
    float *hid = malloc(sizeof(float) * NWIN * S * HC * E);
    TU_OK(run_engine(m, ids, true, lgr, hid, &e), &e);
    int64_t at = 0;
    TU_CHECK(worst(lgr, ref, NLG, &at) <= 1.0, "reference kernels: logit %lld %g vs %g", (long long)at, lgr[at], ref[at]);

    perturb_check(m, ids, lg0, lg1, ref);
    imatrix_check(m, ids);
    cli_check(tmp, ids, ppl_ref);
    sens_check(m, tmp, ids);
    hessian_check(m, ids);
    hf_check(tmp);

    /* a hash table entry out of range is a load error naming the tensor */
    cal_model_close(m);
    tens *hsh = find("blk.0.ffn_gate_tid2eid.weight");
    hsh->i[5] = X;
    snprintf(path, sizeof path, "%s/bad-hash.gguf", tmp);
    TU_CHECK(write_gguf(path) == 0, "write %s", path);
    m = NULL;
    TU_OK(cal_model_open(&m, path, &e), &e);
    if (m) TU_FAILS(cal_forward(m, ids, 1, S, NULL, NULL, &e), &e, QX_EFORMAT, "ffn_gate_tid2eid");
    cal_model_close(m);
    free(lg0); free(lg1); free(lgr); free(ref); free(hid);
    return tu_done("test_v4_engine");
}
