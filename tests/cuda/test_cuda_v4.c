/* tests/cuda/test_cuda_v4.c — the DeepSeek-V4 CUDA twins (kernels/cuda/ops_v4.cu) against the
 * CPU _ref of kernels/cpu/dsv4.c on random data of V4-like shapes: hyper-connections (hc 4,
 * Sinkhorn n_iter 20, and the head's pre-only form), the compressor (ratio 4 with overlap,
 * ratio 128 without, a partial last block), the indexer selection (top_k below the number of
 * blocks, exact score ties planted; V4-Flash's 64 heads x 128, top_k 512), attention (window
 * below S; compressed rows listed by sel, dense, and none; sinks on and off; V4-Flash's 64
 * heads x 512 with window 128), routing (256 experts, k 6, bias on/off, hash with a bad
 * entry) and the SwiGLU clamp (on and off).  Tolerances:
 *   hc_collapse, hc_expand: bit-identical (both sides round a*b + c twice), and within the
 *     element-wise bound below;
 *   hc_coeffs, v4_compress, silu_mul_clamp, route weights: |gpu - cpu| <= 1e-6 + 1e-5 |cpu|
 *     per element (CUDA's expf within 2 ulp of glibc's; no fast-math on either side);
 *   v4_attention: |gpu - cpu| <= 1e-6 + 1e-5 * max |cpu| over the element's (token, head)
 *     row (the output is a softmax average of rows; its rounding scales with the row, not
 *     with an element that happens to cancel to ~0);
 *   v4_select: identical selections (the GPU's scores are the _ref's bits and its heap
 *     selection is the CPU's), with boundary ties present and resolved unlike a
 *     lowest-index rule at least once, so the tie rule is what is compared;
 *   v4_route: identical expert ids (the data is checked to hold no k-th/(k+1)-th candidates
 *     closer than 2e-6 relative, 16+ ulp, well above the few ulp by which CUDA's expf/logf
 *     can move p) and the same hash-out-of-range verdict.
 * Live checks: a query whose head weights are negated must select differently from the
 * unperturbed reference (and equal the perturbed one), and one token's logit raised to 30
 * must change its routed ids.
 * QF_QUICK=1 leaves out the two V4-Flash-size cases (for the CPU emulation of
 * tests/cuda/harness/check_v4_emu.sh).
 * Needs a GPU (make test-cuda); exits 1 with the CUDA error when there is none. */
#define TU_CUDA_SEED 0x9e3779b97f4a7c15ull
#include "tests/cuda/tu_cuda.h"
#include "kernels/kernels.h"
#include "kernels/cuda/kn_cuda.h"

#include <stdint.h>

static float *falloc(int64_t n) { return calloc((size_t)(n > 0 ? n : 1), sizeof(float)); }

/* ---- hyper-connections ---- */

static void test_hc(void) {
    const int hc = 4;
    const int64_t T = 300, n = 1024;
    /* coefficients: the layer's form (pre, post, Sinkhorn comb) and the output head's (pre only) */
    for (int head = 0; head < 2; head++) {
        const int64_t nm = head ? hc : (2 + hc) * hc, ldm = nm + 3;
        float scale[3] = { 0.8f, 0.5f, 1.3f }, base[(2 + 4) * 4];
        fill(base, nm, 0.5f);
        float *mx = falloc(T * ldm);
        fill(mx, T * ldm, 2.0f);
        kn_hc_args a = { hc, 20, 1e-6f, scale, base };
        float *pre0 = falloc(T * hc), *post0 = falloc(T * hc), *comb0 = falloc(T * hc * hc);
        float *pre1 = falloc(T * hc), *post1 = falloc(T * hc), *comb1 = falloc(T * hc * hc);
        kn_hc_coeffs_ref(&a, mx, ldm, T, pre0, head ? NULL : post0, head ? NULL : comb0);
        kn_hc_args d = a;
        d.scale = up(scale, sizeof scale);
        d.base = up(base, sizeof base);
        float *dm = up(mx, (size_t)(T * ldm) * 4), *dpre = up(pre1, (size_t)(T * hc) * 4);
        float *dpost = head ? NULL : up(post1, (size_t)(T * hc) * 4), *dcomb = head ? NULL : up(comb1, (size_t)(T * hc * hc) * 4);
        kn_cuda_hc_coeffs(&d, dm, ldm, T, dpre, dpost, dcomb);
        down(pre1, dpre, (size_t)(T * hc) * 4);
        TU_CHECK(worst(pre1, pre0, NULL, T * hc, 1e-6, 1e-5) <= 1, "hc_coeffs pre (%s)", head ? "head" : "layer");
        if (!head) {
            down(post1, dpost, (size_t)(T * hc) * 4);
            down(comb1, dcomb, (size_t)(T * hc * hc) * 4);
            TU_CHECK(worst(post1, post0, NULL, T * hc, 1e-6, 1e-5) <= 1, "hc_coeffs post");
            double wc = worst(comb1, comb0, NULL, T * hc * hc, 1e-6, 1e-5);
            TU_CHECK(wc <= 1, "hc_coeffs comb (Sinkhorn, 20 iterations) off by %.3g of its tolerance", wc);
            fprintf(stderr, "  hc_coeffs comb (Sinkhorn, 20 iterations)    %.3g of the tolerance\n", wc);
        }
        kn_cuda_free((void *)d.scale); kn_cuda_free((void *)d.base); kn_cuda_free(dm); kn_cuda_free(dpre);
        kn_cuda_free(dpost); kn_cuda_free(dcomb);
        free(mx); free(pre0); free(post0); free(comb0); free(pre1); free(post1); free(comb1);
    }

    /* collapse [T, hc, n] -> [T, n] and expand back */
    float *x = falloc(T * hc * n), *pre = falloc(T * hc), *post = falloc(T * hc), *comb = falloc(T * hc * hc);
    float *y0 = falloc(T * n), *y1 = falloc(T * n), *o0 = falloc(T * hc * n), *o1 = falloc(T * hc * n);
    fill(x, T * hc * n, 3.0f); fill(pre, T * hc, 1.0f); fill(post, T * hc, 2.0f); fill(comb, T * hc * hc, 1.0f);
    kn_hc_collapse_ref(x, pre, hc, T, n, y0);
    kn_hc_expand_ref(y0, x, post, comb, hc, T, n, o0);
    float *dx = up(x, (size_t)(T * hc * n) * 4), *dpre = up(pre, (size_t)(T * hc) * 4), *dpost = up(post, (size_t)(T * hc) * 4);
    float *dcomb = up(comb, (size_t)(T * hc * hc) * 4), *dy = up(y1, (size_t)(T * n) * 4), *dout = up(o1, (size_t)(T * hc * n) * 4);
    kn_cuda_hc_collapse(dx, dpre, hc, T, n, dy);
    down(y1, dy, (size_t)(T * n) * 4);
    TU_CHECK(worst(y1, y0, NULL, T * n, 1e-6, 1e-5) <= 1, "hc_collapse");
    TU_CHECK(!memcmp(y1, y0, (size_t)(T * n) * 4), "hc_collapse is not the _ref's bits");
    kn_cuda_hc_expand(dy, dx, dpost, dcomb, hc, T, n, dout);
    down(o1, dout, (size_t)(T * hc * n) * 4);
    TU_CHECK(worst(o1, o0, NULL, T * hc * n, 1e-6, 1e-5) <= 1, "hc_expand");
    TU_CHECK(!memcmp(o1, o0, (size_t)(T * hc * n) * 4), "hc_expand is not the _ref's bits");
    kn_cuda_free(dx); kn_cuda_free(dpre); kn_cuda_free(dpost); kn_cuda_free(dcomb); kn_cuda_free(dy); kn_cuda_free(dout);
    free(x); free(pre); free(post); free(comb); free(y0); free(y1); free(o0); free(o1);
}

/* ---- KV compressor ---- */

static void check_compress(int r, bool overlap, int64_t n_seq, int64_t S, int d) {
    const int w = overlap ? 2 * d : d;
    const int64_t T = n_seq * S, ld = w + 5, ldape = w + 1, nb = S / r, no = n_seq * nb * d;
    float *kv = falloc(T * ld), *sc = falloc(T * ld), *ape = falloc(r * ldape), *o0 = falloc(no), *o1 = falloc(no);
    fill(kv, T * ld, 1.0f); fill(sc, T * ld, 3.0f); fill(ape, r * ldape, 1.0f);
    kn_comp_args a = { n_seq, S, r, d, overlap, kv, sc, ld, ape, ldape, o0 };
    kn_v4_compress_ref(&a);
    kn_comp_args g = a;
    g.kv = up(kv, (size_t)(T * ld) * 4); g.score = up(sc, (size_t)(T * ld) * 4);
    g.ape = up(ape, (size_t)(r * ldape) * 4); g.out = up(o1, (size_t)no * 4);
    kn_cuda_v4_compress(&g);
    down(o1, g.out, (size_t)no * 4);
    double wv = worst(o1, o0, NULL, no, 1e-6, 1e-5);
    TU_CHECK(wv <= 1, "v4_compress r=%d overlap=%d off by %.3g of its tolerance", r, overlap, wv);
    fprintf(stderr, "  v4_compress r=%-3d overlap=%d d=%-3d             %.3g of the tolerance\n", r, overlap, d, wv);
    kn_cuda_free((void *)g.kv); kn_cuda_free((void *)g.score); kn_cuda_free((void *)g.ape); kn_cuda_free(g.out);
    free(kv); free(sc); free(ape); free(o0); free(o1);
}

static void test_compress(void) {
    check_compress(4, true, 2, 4 * 16 + 3, 512);   /* the main compressor: ratio 4, overlapping windows */
    check_compress(4, true, 1, 64, 128);           /* the indexer's (head dim 128) */
    check_compress(128, false, 2, 300, 512);       /* ratio 128: two blocks and a partial one per sequence */
}

/* ---- indexer selection ---- */

/* The score kn_index_topk computes with kn_dot_ref (same operations, same order). */
static float host_score(const float *q, const float *w, const float *k, int H, int dh) {
    float v = 0.0f;
    for (int h = 0; h < H; h++) {
        float d = 0.0f;
        for (int x = 0; x < dh; x++) d += q[(int64_t)h * dh + x] * k[x];
        v += (d > 0.0f ? d : 0.0f) * w[h];
    }
    return isnan(v) ? -INFINITY : v;
}

static int cmp_desc(const void *x, const void *y) {
    float a = *(const float *)x, b = *(const float *)y;
    return (a < b) - (a > b);
}

/* Queries whose top_k boundary falls inside a run of equal scores (*ties), and those where
 * the reference's choice there differs from keeping the lowest indices (*not_lowest). */
static void count_ties(const kn_v4_sel_args *a, const int32_t *sel, int64_t *ties, int64_t *not_lowest) {
    const int64_t nb = a->S / a->r;
    float *sc = falloc(nb), *sorted = falloc(nb);
    *ties = *not_lowest = 0;
    for (int64_t t = 0; t < a->n_seq * a->S; t++) {
        const int64_t s = t / a->S, nv = (t % a->S + 1) / a->r;
        if (nv <= a->top_k) continue;
        for (int64_t j = 0; j < nv; j++)
            sc[j] = host_score(a->q + t * a->ldq, a->w + t * a->ldw, a->k + (s * nb + j) * a->ldk, a->n_heads, a->dh);
        memcpy(sorted, sc, (size_t)nv * 4);
        qsort(sorted, (size_t)nv, 4, cmp_desc);
        const float edge = sorted[a->top_k - 1];
        if (sorted[a->top_k] != edge) continue;
        (*ties)++;
        int64_t above = 0, n = 0;
        for (int64_t j = 0; j < nv; j++) above += sc[j] > edge;
        int64_t room = a->top_k - above;
        bool same = true;
        for (int64_t j = 0; j < nv; j++) {
            bool lowest = sc[j] > edge || (sc[j] == edge && room-- > 0);
            if (lowest) same &= sel[t * a->top_k + n++] == (int32_t)j;
        }
        *not_lowest += !same;
    }
    free(sc); free(sorted);
}

static int64_t rows_differ(const int32_t *x, const int32_t *y, int64_t T, int64_t k) {
    int64_t n = 0;
    for (int64_t t = 0; t < T; t++) n += memcmp(x + t * k, y + t * k, (size_t)k * 4) != 0;
    return n;
}

/* Runs the GPU selection on the host arrays of a into sel (host). */
static void gpu_select(const kn_v4_sel_args *a, int32_t *sel) {
    const int64_t T = a->n_seq * a->S, nb = a->S / a->r;
    kn_v4_sel_args g = *a;
    g.q = up(a->q, (size_t)(T * a->ldq) * 4);
    g.k = up(a->k, (size_t)(a->n_seq * nb * a->ldk) * 4);
    g.w = up(a->w, (size_t)(T * a->ldw) * 4);
    g.sel = kn_cuda_malloc((size_t)(T * a->top_k) * 4);
    kn_cuda_memset(g.sel, 0x7f, (size_t)(T * a->top_k) * 4);   /* every entry must be written */
    kn_cuda_v4_select(&g);
    down(sel, g.sel, (size_t)(T * a->top_k) * 4);
    kn_cuda_free((void *)g.q); kn_cuda_free((void *)g.k); kn_cuda_free((void *)g.w); kn_cuda_free(g.sel);
}

/* Random q/k/w (ties planted when tied: blocks b % 3 == 2 copy block 1, b % 7 == 6 are zero). */
static void make_sel(kn_v4_sel_args *a, int64_t n_seq, int64_t S, int r, int H, int dh, int64_t top_k, bool tied) {
    const int64_t T = n_seq * S, nb = S / r;
    *a = (kn_v4_sel_args){ n_seq, S, r, H, dh, top_k, NULL, (int64_t)H * dh + 1, NULL, dh + 2, NULL, H + 1, NULL };
    float *q = falloc(T * a->ldq), *k = falloc(n_seq * nb * a->ldk), *w = falloc(T * a->ldw);
    fill(q, T * a->ldq, 1.0f); fill(k, n_seq * nb * a->ldk, 1.0f); fill(w, T * a->ldw, 0.3f);
    if (tied)
        for (int64_t s = 0; s < n_seq; s++)
            for (int64_t b = 2; b < nb; b++) {
                float *kb = k + (s * nb + b) * a->ldk;
                if (b % 7 == 6) memset(kb, 0, (size_t)dh * 4);
                else if (b % 3 == 2) memcpy(kb, k + (s * nb + 1) * a->ldk, (size_t)dh * 4);
            }
    a->q = q; a->k = k; a->w = w;
    a->sel = malloc((size_t)(T * top_k) * 4);
}
static void free_sel(kn_v4_sel_args *a) { free((void *)a->q); free((void *)a->k); free((void *)a->w); free(a->sel); }

static void test_select(void) {
    /* small, with planted ties: selections, the tie statistics, and the live check */
    kn_v4_sel_args a;
    make_sel(&a, 2, 203, 4, 8, 32, 16, true);
    const int64_t T = a.n_seq * a.S;
    int32_t *s1 = malloc((size_t)(T * a.top_k) * 4);
    kn_v4_select_ref(&a);
    gpu_select(&a, s1);
    int64_t nd = rows_differ(s1, a.sel, T, a.top_k), ties, not_lowest;
    TU_CHECK(nd == 0, "v4_select (ties planted): %lld of %lld queries select differently", (long long)nd, (long long)T);
    count_ties(&a, a.sel, &ties, &not_lowest);
    fprintf(stderr, "  v4_select: %lld queries with a tie at the top_k boundary, %lld resolved unlike lowest-index\n",
            (long long)ties, (long long)not_lowest);
    TU_CHECK(ties > 0 && not_lowest > 0, "the planted ties must reach the boundary (%lld) and test the heap rule (%lld)",
             (long long)ties, (long long)not_lowest);
    /* live: negate the head weights of the last query of sequence 0 (50 blocks, top 16) */
    float *w = (float *)a.w;
    const int64_t tl = a.S - 1;
    for (int h = 0; h < a.n_heads; h++) w[tl * a.ldw + h] = -w[tl * a.ldw + h];
    gpu_select(&a, s1);
    nd = rows_differ(s1, a.sel, T, a.top_k);
    TU_CHECK(nd == 1 && memcmp(s1 + tl * a.top_k, a.sel + tl * a.top_k, (size_t)a.top_k * 4),
             "live check: negated weights of query %lld must change exactly its selection (rows differing: %lld)",
             (long long)tl, (long long)nd);
    kn_v4_select_ref(&a);
    nd = rows_differ(s1, a.sel, T, a.top_k);
    TU_CHECK(nd == 0, "v4_select after the perturbation: %lld queries differ from the reference", (long long)nd);
    free(s1);
    free_sel(&a);

    /* V4-Flash's indexer: 64 heads of 128, top_k 512 of up to 640 blocks (ratio 4) */
    if (tu_quick()) return;
    make_sel(&a, 1, 2560, 4, 64, 128, 512, false);
    s1 = malloc((size_t)(a.S * a.top_k) * 4);
    kn_v4_select_ref(&a);
    gpu_select(&a, s1);
    nd = rows_differ(s1, a.sel, a.S, a.top_k);
    TU_CHECK(nd == 0, "v4_select (64 x 128, top 512): %lld of %lld queries select differently", (long long)nd, (long long)a.S);
    free(s1);
    free_sel(&a);
}

/* ---- attention ---- */

/* r > 0 with sel_k > 0: each query lists up to sel_k of its blocks, ascending (stride picks). */
static void check_attention(int64_t n_seq, int64_t S, int H, int d, int64_t n_swa, int r, int64_t sel_k, bool sinks,
                            const char *label) {
    const int64_t T = n_seq * S, dq = d + 8, ldq = H * dq + 1, ldkv = d + 3, ldck = d + 1, ldo = (int64_t)H * d + 2;
    const int64_t nb = r > 0 ? S / r : 0;
    float *q = falloc(T * ldq), *kv = falloc(T * ldkv), *ck = falloc(n_seq * nb * ldck), *sk = falloc(H);
    float *o0 = falloc(T * ldo), *o1 = falloc(T * ldo);
    int32_t *sel = NULL;
    fill(q, T * ldq, 1.0f); fill(kv, T * ldkv, 1.0f); fill(ck, n_seq * nb * ldck, 1.0f); fill(sk, H, 2.0f);
    if (sel_k > 0) {
        sel = malloc((size_t)(T * sel_k) * 4);
        for (int64_t t = 0; t < T; t++) {
            const int64_t nv = (t % S + 1) / r, step = nv > sel_k ? 1 + (int64_t)(ru() % 3) : 1;
            int64_t m = 0;
            for (int64_t b = (int64_t)(ru() % 2); b < nv && m < sel_k; b += step) sel[t * sel_k + m++] = (int32_t)b;
            for (; m < sel_k; m++) sel[t * sel_k + m] = -1;
        }
    }
    kn_v4_attn_args a = { n_seq, S, H, d, n_swa, q, ldq, dq, kv, ldkv, r > 0 ? ck : NULL, ldck, r, sel, sel_k,
                          sinks ? sk : NULL, 1.0f / sqrtf((float)d), o0, ldo };
    kn_v4_attention_ref(&a);
    kn_v4_attn_args g = a;
    g.q = up(q, (size_t)(T * ldq) * 4); g.kv = up(kv, (size_t)(T * ldkv) * 4);
    g.ck = r > 0 ? up(ck, (size_t)(n_seq * nb * ldck) * 4) : NULL;
    g.sel = sel ? up(sel, (size_t)(T * sel_k) * 4) : NULL;
    g.sinks = sinks ? up(sk, (size_t)H * 4) : NULL;
    g.o = up(o1, (size_t)(T * ldo) * 4);
    kn_cuda_v4_attention(&g);
    down(o1, g.o, (size_t)(T * ldo) * 4);
    double *scale = calloc((size_t)(T * ldo), sizeof *scale);
    for (int64_t t = 0; t < T; t++)
        for (int h = 0; h < H; h++) {
            double m = 0;
            for (int x = 0; x < d; x++) m = fmax(m, fabs((double)o0[t * ldo + (int64_t)h * d + x]));
            for (int x = 0; x < d; x++) scale[t * ldo + (int64_t)h * d + x] = m;
        }
    double wv = worst(o1, o0, scale, T * ldo, 1e-6, 1e-5);
    TU_CHECK(wv <= 1, "v4_attention %s off by %.3g of its tolerance", label, wv);
    fprintf(stderr, "  v4_attention %-34s %.3g of the tolerance\n", label, wv);
    kn_cuda_free((void *)g.q); kn_cuda_free((void *)g.kv); kn_cuda_free((void *)g.ck); kn_cuda_free((void *)g.sel);
    kn_cuda_free((void *)g.sinks); kn_cuda_free(g.o);
    free(q); free(kv); free(ck); free(sk); free(o0); free(o1); free(sel); free(scale);
}

static void test_attention(void) {
    check_attention(2, 203, 8, 64, 32, 4, 16, true, "ratio 4, sel 16, sinks");
    check_attention(2, 203, 8, 64, 32, 4, 0, false, "ratio 4, dense, no sinks");
    check_attention(2, 300, 4, 64, 64, 128, 0, true, "ratio 128, dense, sinks");
    check_attention(1, 150, 4, 64, 16, 0, 0, true, "window only, sinks");
    if (!tu_quick()) check_attention(1, 384, 64, 512, 128, 4, 64, true, "64 heads x 512, window 128, sel 64");
}

/* ---- routing ---- */

/* The smallest gap, relative, between the k-th and (k+1)-th best p + bias of any token: the
 * ids can only differ from the CPU's where CUDA's expf/logf move a candidate across it. */
static double route_margin(const kn_v4_route_args *a, const float *lg, int64_t T) {
    const int X = a->n_exp;
    float *v = falloc(X);
    double m = INFINITY;
    for (int64_t t = 0; t < T; t++) {
        for (int x = 0; x < X; x++) {
            const float l = lg[t * X + x];
            v[x] = sqrtf(l > 20.0f ? l : logf(1.0f + expf(l))) + (a->bias ? a->bias[x] : 0.0f);
        }
        qsort(v, (size_t)X, sizeof *v, cmp_desc);
        const double g = ((double)v[a->k - 1] - v[a->k]) / fabs((double)v[a->k - 1]);
        if (g < m) m = g;
    }
    free(v);
    return m;
}

static void check_route(const char *label, kn_v4_route_args a, int64_t T, int32_t n_vocab, bool live) {
    const int X = a.n_exp, k = a.k;
    float *lg = falloc(T * X), *w0 = falloc(T * k), *w1 = falloc(T * k);
    int32_t *i0 = malloc((size_t)(T * k) * 4), *i1 = malloc((size_t)(T * k) * 4), bad = -1;
    fill(lg, T * X, 4.0f);
    bool ok = kn_v4_route(&a, lg, T, i0, w0);
    if (!a.hash) {   /* CUDA's expf/logf/sqrtf move p by a few ulp (~1e-7 each): the data must keep clear */
        double m = route_margin(&a, lg, T);
        TU_CHECK(m > 2e-6, "v4_route %s: the test data has a near tie at the k boundary (%.3g relative)", label, m);
        fprintf(stderr, "  v4_route %-28s closest call at the k boundary: %.2g relative\n", label, m);
    }
    kn_v4_route_args g = a;
    g.bias = a.bias ? up(a.bias, (size_t)X * 4) : NULL;
    g.hash = a.hash ? up(a.hash, (size_t)n_vocab * k * 4) : NULL;
    g.tok = a.tok ? up(a.tok, (size_t)T * 4) : NULL;
    float *dl = up(lg, (size_t)(T * X) * 4), *dw = up(w1, (size_t)(T * k) * 4);
    int32_t *di = up(i1, (size_t)(T * k) * 4), *db = up(&bad, 4);
    kn_cuda_v4_route(&g, dl, T, di, dw, db);
    down(i1, di, (size_t)(T * k) * 4); down(w1, dw, (size_t)(T * k) * 4); down(&bad, db, 4);
    int64_t nd = rows_differ(i1, i0, T, k);
    TU_CHECK(nd == 0, "v4_route %s: ids of %lld tokens differ", label, (long long)nd);
    TU_CHECK(worst(w1, w0, NULL, T * k, 1e-6, 1e-5) <= 1, "v4_route %s: weights", label);
    TU_CHECK(bad == !ok, "v4_route %s: device flag %d, CPU returned %s", label, (int)bad, ok ? "true" : "false");
    if (live) {   /* token 5's first unchosen expert gets logit 30: its ids must change */
        int x = 0;
        for (bool taken = true; taken; x += taken) {
            taken = false;
            for (int j = 0; j < k; j++) taken |= i0[5 * k + j] == x;
        }
        lg[5 * X + x] = 30.0f;
        qx_err e = {0};
        TU_OK(kn_cuda_upload(dl, lg, (size_t)(T * X) * 4, &e), &e);
        kn_cuda_v4_route(&g, dl, T, di, dw, db);
        down(i1, di, (size_t)(T * k) * 4);
        nd = rows_differ(i1, i0, T, k);
        TU_CHECK(nd == 1 && memcmp(i1 + 5 * k, i0 + 5 * k, (size_t)k * 4),
                 "live check: raising one logit of token 5 must change exactly its ids (rows differing: %lld)", (long long)nd);
    }
    kn_cuda_free((void *)g.bias); kn_cuda_free((void *)g.hash); kn_cuda_free((void *)g.tok);
    kn_cuda_free(dl); kn_cuda_free(dw); kn_cuda_free(di); kn_cuda_free(db);
    free(lg); free(w0); free(w1); free(i0); free(i1);
}

static void test_route(void) {
    enum { X = 256, K = 6, V = 1000 };
    const int64_t T = 300;
    float *bias = falloc(X);
    int32_t *hash = malloc((size_t)V * K * 4), *tok = malloc((size_t)T * 4);
    fill(bias, X, 0.05f);
    for (int64_t i = 0; i < (int64_t)V * K; i++) hash[i] = (int32_t)(ru() % X);
    for (int64_t t = 0; t < T; t++) tok[t] = (int32_t)(ru() % V);
    check_route("bias, norm, scale 1.5", (kn_v4_route_args){ X, K, true, 1.5f, bias, NULL, NULL }, T, V, true);
    check_route("no bias, no norm", (kn_v4_route_args){ X, K, false, 1.0f, NULL, NULL, NULL }, T, V, false);
    check_route("hash", (kn_v4_route_args){ X, K, true, 1.5f, NULL, hash, tok }, T, V, false);
    hash[(int64_t)tok[17] * K + 2] = X;   /* out of range for token 17 */
    check_route("hash, one entry out of range", (kn_v4_route_args){ X, K, true, 1.5f, NULL, hash, tok }, T, V, false);
    free(bias); free(hash); free(tok);
}

/* ---- SwiGLU clamp ---- */

static void test_silu_clamp(void) {
    const int64_t T = 37, n = 1000, ld = 1003;
    float *g = falloc(T * ld), *u = falloc(T * ld), *y0 = falloc(T * ld), *y1 = falloc(T * ld);
    fill(g, T * ld, 12.0f); fill(u, T * ld, 12.0f);
    float *dg = up(g, (size_t)(T * ld) * 4), *du = up(u, (size_t)(T * ld) * 4), *dy = up(y1, (size_t)(T * ld) * 4);
    static const float limits[] = { 7.0f, 0.0f };
    for (int i = 0; i < 2; i++) {
        memset(y0, 0, (size_t)(T * ld) * 4);
        kn_silu_mul_clamp(g, u, ld, T, n, limits[i], y0, ld);
        kn_cuda_memset(dy, 0, (size_t)(T * ld) * 4);
        kn_cuda_silu_mul_clamp(dg, du, ld, T, n, limits[i], dy, ld);
        down(y1, dy, (size_t)(T * ld) * 4);
        double wv = worst(y1, y0, NULL, T * ld, 1e-6, 1e-5);
        TU_CHECK(wv <= 1, "silu_mul_clamp (limit %g) off by %.3g of its tolerance", limits[i], wv);
        fprintf(stderr, "  silu_mul_clamp limit %-3g                      %.3g of the tolerance\n", limits[i], wv);
    }
    kn_cuda_free(dg); kn_cuda_free(du); kn_cuda_free(dy);
    free(g); free(u); free(y0); free(y1);
}

int main(void) {
    if (!tu_cuda_start()) return 1;
    test_hc();
    test_compress();
    test_select();
    test_attention();
    test_route();
    test_silu_clamp();
    return tu_done("test_cuda_v4");
}
