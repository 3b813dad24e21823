/* tests/test_alloc.c — the size-target allocator (convert/alloc.c, cli/alloc.c): the
 * knapsack meets the budget, lands within 0.5% under it when tensors are small, is monotone
 * in the budget and near the exact optimum on small instances; the sensitivity and recipe
 * JSON round-trip and refuse malformed input with the exact status; at the command level on
 * a synthetic tiny-v3, --target-size builds a file within the target and --recipe of the
 * saved recipe rebuilds it byte for byte; the shipped 671B recipes (recipes/) are what
 * --target-size plans from the shipped sensitivity table, within 0.5% under each size. */
#include "tests/util/tu.h"
#include "convert/convert.h"

#include <inttypes.h>
#include <sys/stat.h>

static uint64_t rng = 88172645463325252ull;
static double urand(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return (rng >> 11) * (1.0 / 9007199254740992.0); }

#define NT 200
#define NO 8

/* Random instance: option k of tensor i has bytes ~ n_i * bits_k and a cost that falls with
 * bits (not always convex, as measured costs are not). */
static void make(cv_alloc_tensor *ts, cv_alloc_opt (*o)[NO], int n) {
    for (int i = 0; i < n; i++) {
        double w = 1000 + 9000 * urand(), s = 0.1 + urand();
        for (int k = 0; k < NO; k++) {
            double bits = 1.5 + k;
            o[i][k].bytes = (uint64_t)(w * bits / 8) + 32;
            o[i][k].cost = s * exp2(-1.7 * bits) * (0.8 + 0.4 * urand());
        }
        ts[i].n_opt = NO;
        ts[i].opt = o[i];
    }
}

static void knapsack(void) {
    static cv_alloc_tensor ts[NT];
    static cv_alloc_opt o[NT][NO];
    static int pick[NT];
    make(ts, o, NT);
    uint64_t lo = 0, hi = 0;
    for (int i = 0; i < NT; i++) { lo += o[i][0].bytes; hi += o[i][NO - 1].bytes; }
    qx_err e = {0};
    cv_alloc_result r;
    TU_FAILS(cv_alloc_solve(ts, NT, lo - 1, pick, &r, &e), &e, QX_EINVAL, "below the smallest mix");
    double prev = INFINITY;
    int mono = 1, under = 1, close = 1;
    for (int s = 0; s <= 40; s++) {
        uint64_t b = lo + (hi - lo) * s / 40;
        TU_OK(cv_alloc_solve(ts, NT, b, pick, &r, &e), &e);
        uint64_t sum = 0;
        double c = 0;
        for (int i = 0; i < NT; i++) { sum += o[i][pick[i]].bytes; c += o[i][pick[i]].cost; }
        under &= sum <= b && sum == r.bytes;
        close &= s == 0 || b - sum <= b / 200;
        mono &= c <= prev * (1 + 1e-12);
        TU_NEAR(c, r.cost, 1e-9 * c, "reported cost");
        prev = c;
    }
    TU_CHECK(under, "a solution exceeds its budget or misreports its bytes");
    TU_CHECK(close, "a solution is more than 0.5%% under its budget");
    TU_CHECK(mono, "predicted cost is not monotone in the budget");
    /* exact optimum by enumeration on 6 tensors x 4 options */
    int worst = 0;
    for (int trial = 0; trial < 20; trial++) {
        cv_alloc_tensor t6[6];
        cv_alloc_opt o6[6][NO];
        make(t6, o6, 6);
        for (int i = 0; i < 6; i++) t6[i].n_opt = 4;
        uint64_t b = 0;
        for (int i = 0; i < 6; i++) b += o6[i][(i + trial) % 4].bytes;
        int p6[6];
        TU_OK(cv_alloc_solve(t6, 6, b, p6, &r, &e), &e);
        double best = INFINITY;
        for (int m = 0; m < 4096; m++) {
            uint64_t sb = 0;
            double c = 0;
            for (int i = 0, x = m; i < 6; i++, x /= 4) { sb += o6[i][x % 4].bytes; c += o6[i][x % 4].cost; }
            if (sb <= b && c < best) best = c;
        }
        if (r.cost > 1.25 * best) worst++;
    }
    TU_CHECK(worst == 0, "%d of 20 small instances more than 25%% above the exact optimum", worst);
}

static void json_cases(void) {
    qx_err e = {0};
    cv_sens s = {0}, b = {0};
    cv_sens_tensor *t;
    TU_OK(cv_sens_add(&s, "blk.0.ffn_up.weight", 256, 256 * 512, &t, &e), &e);
    qt_type ty[3] = { QT_IQ2_XXS, QT_Q4_K, QT_Q8_0 };
    double we[3] = { 0.1, 0.01, 0.0001 }, kl[3] = { 0.05, 0.004, -1 };
    for (int k = 0; k < 3; k++) t->opt[t->n_opt++] = (cv_sens_opt){ ty[k], qt_row_size(ty[k], 256) * 512, we[k], kl[k], -1 };
    cv_sens_predict(&s);
    TU_CHECK(t->opt[2].cost > 0 && t->opt[2].cost < t->opt[1].cost && t->opt[1].cost < t->opt[0].cost, "predicted costs not decreasing");
    TU_NEAR(t->opt[0].cost, 0.05, 0.002, "fit through the measured points");
    const char *path = "/tmp/qf_test_alloc_sens.json";
    TU_OK(cv_sens_write(&s, path, "test", &e), &e);
    TU_OK(cv_sens_load(path, &b, &e), &e);
    TU_CHECK(b.n == 1 && b.t[0].n_opt == 3 && b.t[0].opt[1].type == QT_Q4_K && b.t[0].opt[2].kld < 0, "sensitivity round trip");
    TU_NEAR(b.t[0].opt[1].cost, t->opt[1].cost, 1e-6 * t->opt[1].cost, "predicted cost after the round trip");
    remove(path);
    cv_sens_free(&b);
    cv_sens_free(&s);
    const char *bad[][3] = {
        { "{\"qforge_sensitivity\": 2, \"tensors\": []}", "out of range", "" },
        { "{\"qforge_sensitivity\": 1, \"tensors\": [{\"name\": \"a\", \"ne0\": 128, \"n_elems\": 256, \"types\": [{\"type\": \"Q4_K\", \"werr\": 0.1}]}]}", "does not fit rows", "" },
        { "{\"qforge_sensitivity\": 1, \"tensors\": [{\"name\": \"a\", \"ne0\": 256, \"n_elems\": 300, \"types\": []}]}", "not a multiple", "" },
        { "{\"qforge_sensitivity\": 1, \"tensors\": [{\"name\": \"a\", \"ne0\": 256, \"n_elems\": 256, \"types\": [{\"type\": \"Q9_K\", \"werr\": 0.1}]}]}", "not a GGUF type", "" },
        { "{\"qforge_sensitivity\": 1, \"tensors\": [{\"name\": \"a\", \"ne0\": 256, \"n_elems\": 256, \"types\": [{\"type\": \"Q4_K\", \"werr\": -1}]}]}", "out of range", "" },
        { "{\"qforge_sensitivity\": 1, \"tensors\": [{\"name\": \"a\", \"ne0\": 256, \"n_elems\": 256, \"types\": [{\"type\": \"Q4_K\", \"werr\": 1}]}, {\"name\": \"a\", \"ne0\": 256, \"n_elems\": 256, \"types\": []}]}", "repeated", "" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        TU_FAILS(cv_sens_parse(bad[i][0], strlen(bad[i][0]), "t.json", &b, &e), &e, QX_EFORMAT, bad[i][1]);
    cv_recipe_table r = {0}, r2 = {0};
    TU_OK(cv_recipe_table_add(&r, "blk.0.attn_q_a.weight", QT_IQ2_XS, &e), &e);
    TU_OK(cv_recipe_table_add(&r, "output.weight", QT_Q6_K, &e), &e);
    TU_FAILS(cv_recipe_table_add(&r, "output.weight", QT_Q6_K, &e), &e, QX_EINVAL, "repeated");
    const char *rp = "/tmp/qf_test_alloc_recipe.json";
    TU_OK(cv_recipe_write(&r, rp, "test", &e), &e);
    TU_OK(cv_recipe_load(rp, &r2, &e), &e);
    TU_CHECK(r2.n == 2 && !strcmp(r2.e[0].name, "blk.0.attn_q_a.weight") && r2.e[0].type == QT_IQ2_XS && r2.e[1].type == QT_Q6_K,
             "recipe round trip");
    remove(rp);
    char rule[256];
    TU_CHECK(cv_recipe_rule("blk.0.attn_q_a.weight", QT_IQ2_XS, rule, sizeof rule) && !strcmp(rule, "^blk\\.0\\.attn_q_a\\.weight$=IQ2_XS"),
             "rule '%s'", rule);
    cv_recipe_table_free(&r);
    cv_recipe_table_free(&r2);
    const char *rbad[][2] = {
        { "{\"qforge_recipe\": 1, \"tensors\": {}}", "non-empty" },
        { "{\"qforge_recipe\": 1, \"tensors\": {\"a\": \"Q4_K\", \"a\": \"Q5_K\"}}", "line" },
        { "{\"qforge_recipe\": 1, \"tensors\": {\"a\": 3}}", "not a GGUF type" },
        { "[1]", "not a JSON object" },
    };
    for (size_t i = 0; i < sizeof rbad / sizeof rbad[0]; i++)
        TU_FAILS(cv_recipe_parse(rbad[i][0], strlen(rbad[i][0]), "r.json", &r, &e), &e, QX_EFORMAT, rbad[i][1]);
}

/* Command level: a table for every tensor of tiny-v3 (costs from the type's bits), a target
 * between Q2_K and Q4_K, the file within it, then --recipe rebuilds the same bytes. */
static void command_level(void) {
    const char *tmp = tu_tmpdir(), *Q = tu_qforge();
    char dir[512], sp[600], rp[600], a[600], b[600];
    snprintf(dir, sizeof dir, "%s/m", tmp);
    qx_err e = {0};
    TU_OK(st_synth("tiny-v3", dir, 7, false, 0, &e), &e);
    cv_params p;
    cv_default_params(&p);
    p.preset = "Q8_0";
    cv_plan *pl = NULL;
    TU_OK(cv_plan_create(&pl, dir, &p, &e), &e);
    if (!pl) return;
    cv_sens s = {0};
    static const qt_type c256[] = { QT_Q2_K, QT_Q3_K, QT_Q4_K, QT_Q5_K, QT_Q6_K, QT_Q8_0 }, c32[] = { QT_Q4_0, QT_Q5_0, QT_Q8_0 };
    for (size_t i = 0; i < cv_plan_tensor_count(pl); i++) {
        cv_tensor_info t;
        cv_plan_tensor(pl, i, &t);
        if (t.wanted != QT_Q8_0 || t.ne[0] % 32) continue;
        cv_sens_tensor *st;
        TU_OK(cv_sens_add(&s, t.name, t.ne[0], t.n_elems, &st, &e), &e);
        bool k = t.ne[0] % 256 == 0;
        for (int j = 0; j < (k ? 6 : 3); j++) {
            qt_type ty = k ? c256[j] : c32[j];
            double bits = 8.0 * qt_row_size(ty, t.ne[0]) / t.ne[0];
            st->opt[st->n_opt++] = (cv_sens_opt){ ty, qt_row_size(ty, t.ne[0]) * (t.n_elems / t.ne[0]), exp2(-2 * bits),
                                                  (1 + (i % 5)) * exp2(-2 * bits) * t.n_elems, -1 };
        }
    }
    cv_plan_free(pl);
    snprintf(sp, sizeof sp, "%s/s.json", tmp);
    TU_OK(cv_sens_write(&s, sp, "test", &e), &e);
    cv_sens_free(&s);
    snprintf(rp, sizeof rp, "%s/r.json", tmp);
    snprintf(a, sizeof a, "%s/a.gguf", tmp);
    snprintf(b, sizeof b, "%s/b.gguf", tmp);
    char q2[600], q4[600];
    snprintf(q2, sizeof q2, "%s/q2.gguf", tmp);
    snprintf(q4, sizeof q4, "%s/q4.gguf", tmp);
    TU_CHECK(tu_system("%s convert '%s' -o '%s' --type Q2_K --quiet -t 2 >/dev/null 2>&1 && %s convert '%s' -o '%s' --type Q4_K_M --quiet -t 2 >/dev/null 2>&1",
                       Q, dir, q2, Q, dir, q4) == 0, "reference builds");
    struct stat s2, s4, sa, sb;
    if (stat(q2, &s2) || stat(q4, &s4)) return;
    uint64_t target = ((uint64_t)s2.st_size + (uint64_t)s4.st_size) / 2;
    TU_CHECK(tu_system("%s convert '%s' -o '%s' --target-size %" PRIu64 " --sensitivity '%s' --save-recipe '%s' --quiet -t 2 >/dev/null 2>&1",
                       Q, dir, a, target, sp, rp) == 0, "--target-size build");
    TU_CHECK(tu_system("%s convert '%s' -o '%s' --recipe '%s' --quiet -t 1 >/dev/null 2>&1", Q, dir, b, rp) == 0, "--recipe build");
    if (stat(a, &sa) || stat(b, &sb)) { TU_CHECK(0, "builds missing"); return; }
    TU_CHECK((uint64_t)sa.st_size <= target && (uint64_t)sa.st_size >= target - target / 200, "file %lld bytes, target %" PRIu64,
             (long long)sa.st_size, target);
    TU_CHECK(tu_system("cmp -s '%s' '%s'", a, b) == 0, "--recipe did not rebuild the same bytes");
    TU_CHECK(tu_system("%s convert '%s' --dry-run --target-size 1K --sensitivity '%s' >/dev/null 2>&1", Q, dir, sp) == 1,
             "an impossible target is not refused");
    TU_CHECK(tu_system("%s convert '%s' --dry-run --target-size 12Q --sensitivity '%s' >/dev/null 2>&1", Q, dir, sp) == 2,
             "a bad size is not a usage error");
}

/* recipes/deepseek-v3-671b-*GiB.json are the README's recommendation: each must be exactly
 * what `--target-size` plans from recipes/deepseek2-moe-sensitivity.json for the 671B's
 * tensor list (synth v3-671b, sparse), and land within 0.5% under its size. */
static void shipped_recipes(void) {
    const char *tmp = tu_tmpdir(), *Q = tu_qforge();
    char dir[512], rp[600], log[600], ship[128];
    snprintf(dir, sizeof dir, "%s/v3-671b", tmp);
    qx_err e = {0};
    TU_OK(st_synth("v3-671b", dir, 1, true, 0, &e), &e);
    static const int gib[] = { 131, 158, 183, 212 };
    for (int k = 0; k < 4; k++) {
        snprintf(rp, sizeof rp, "%s/r%d.json", tmp, gib[k]);
        snprintf(log, sizeof log, "%s/r%d.txt", tmp, gib[k]);
        snprintf(ship, sizeof ship, "recipes/deepseek-v3-671b-%dGiB.json", gib[k]);
        int rc = tu_system("%s convert '%s' --dry-run --quiet --target-size %dGiB --sensitivity recipes/deepseek2-moe-sensitivity.json"
                           " --save-recipe '%s' > '%s' 2>&1", Q, dir, gib[k], rp, log);
        TU_CHECK(rc == 0, "%d GiB: dry-run exit %d", gib[k], rc);
        if (rc) continue;
        size_t n;
        char *txt = tu_read_file(log, &n);
        const char *f = txt ? strstr(txt, "output file size ") : NULL;
        unsigned long long bytes = f ? strtoull(f + 17, NULL, 10) : 0, target = (unsigned long long)gib[k] << 30;
        TU_CHECK(bytes <= target && bytes >= target - target / 200, "%d GiB: planned %llu bytes", gib[k], bytes);
        free(txt);
        cv_recipe_table a = {0}, b = {0};
        TU_OK(cv_recipe_load(rp, &a, &e), &e);
        TU_OK(cv_recipe_load(ship, &b, &e), &e);
        TU_CHECK(a.n == b.n && a.n > 700, "%s: %zu tensors, the plan names %zu", ship, b.n, a.n);
        size_t diff = 0;
        for (size_t i = 0; i < a.n && i < b.n; i++) diff += strcmp(a.e[i].name, b.e[i].name) || a.e[i].type != b.e[i].type;
        TU_CHECK(diff == 0, "%s: %zu tensors differ from what --target-size plans", ship, diff);
        cv_recipe_table_free(&a);
        cv_recipe_table_free(&b);
    }
}

int main(void) {
    knapsack();
    json_cases();
    command_level();
    shipped_recipes();
    return tu_done("test_alloc");
}
