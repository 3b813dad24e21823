/* cli/cmd_card.c — `qforge card BUILD.gguf [--drift drift.json]... -o README.md`: the model
 * hub's README for a build: YAML front matter (base model, license when the GGUF carries
 * one, tags), the files with sizes and bits per weight, the recipe (per-tensor types with the
 * block numbers folded into ranges), the imatrix provenance and the drift figures with the
 * text and protocol that produced them.  Everything comes from the GGUF's metadata and the
 * drift JSON files of `qforge ppl --json`; nothing is measured here.  Written to OUT.part,
 * renamed when complete. */
#include "cli.h"
#include "calib/calib.h"
#include "formats/formats.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *card_help =
    "usage: qforge card BUILD.gguf [--drift drift.json]... -o README.md [options]\n"
    "  writes the model hub's README (model card) of a build (a split set by its first file)\n"
    "  --drift F          the JSON of `qforge ppl BUILD --base ... --json F` (repeatable: one per text)\n"
    "  -o FILE            output Markdown ('-' = stdout)\n"
    "  --base-model NAME  the hub id of the source model (default: general.base_model.0.repo_url\n"
    "                     or general.base_model.0.name when the GGUF has them)\n"
    "  --license L        license id for the front matter (default: general.license when present)\n"
    "  The card names the qforge version that built BUILD (qforge.version) and its own.  OUT is\n"
    "  locked while written (OUT.lock beside it): a second writer of OUT stops at once.\n";

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

static const char *kv_str(const gf_file *f, const char *key) {
    const char *s;
    qx_err e;
    return gf_get_str(f, key, &s, &e) == QX_OK && s[0] ? s : NULL;
}

/* YAML scalar: double-quoted with escapes. */
static void yaml_str(FILE *o, const char *s) {
    fputc('"', o);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', o);
        if ((unsigned char)*s < 0x20) continue;
        fputc(*s, o);
    }
    fputc('"', o);
}

/* Markdown table cell: '|' escaped, newlines dropped. */
static void md_cell(FILE *o, const char *s) {
    for (; *s; s++) {
        if (*s == '|') fputs("\\|", o);
        else if (*s == '\n' || *s == '\r') fputc(' ', o);
        else fputc(*s, o);
    }
}

/* ---- the recipe: tensors grouped by (name with the block number folded, type) ---- */
typedef struct {
    char pattern[GF_NAME_MAX + 8];
    qt_type type;
    int n;
    uint64_t bytes, elems;
    char blocks[256];   /* "0-2, 5" */
    int last, run0;     /* block range being built */
} rgroup;

static void fold(const char *name, char *pat, size_t cap, int *blk) {
    *blk = -1;
    int b, k = 0;
    if (sscanf(name, "blk.%d.%n", &b, &k) == 1 && k > 0) {
        *blk = b;
        snprintf(pat, cap, "blk.N.%s", name + k);
    } else {
        snprintf(pat, cap, "%s", name);
    }
}

static void close_run(rgroup *g) {
    if (g->run0 < 0) return;
    size_t l = strlen(g->blocks);
    if (l + 24 >= sizeof g->blocks) return;
    if (g->run0 == g->last) snprintf(g->blocks + l, sizeof g->blocks - l, "%s%d", l ? ", " : "", g->last);
    else snprintf(g->blocks + l, sizeof g->blocks - l, "%s%d-%d", l ? ", " : "", g->run0, g->last);
}

static void recipe(FILE *o, const gf_file *f) {
    size_t nt = gf_tensor_count(f), ng = 0;
    rgroup *g = calloc(nt ? nt : 1, sizeof *g);
    if (!g) return;
    for (size_t i = 0; i < nt; i++) {
        const gf_tensor *t = gf_tensor_at(f, i);
        char pat[GF_NAME_MAX + 8];
        int blk;
        fold(t->name, pat, sizeof pat, &blk);
        size_t j = 0;
        while (j < ng && (g[j].type != t->type || strcmp(g[j].pattern, pat))) j++;
        if (j == ng) {
            snprintf(g[ng].pattern, sizeof g[ng].pattern, "%s", pat);
            g[ng].type = t->type;
            g[ng].run0 = g[ng].last = -1;
            ng++;
        }
        rgroup *x = &g[j];
        x->n++;
        x->bytes += t->nbytes;
        x->elems += t->n_elems;
        if (blk >= 0) {
            if (x->run0 >= 0 && blk == x->last + 1) x->last = blk;
            else { close_run(x); x->run0 = x->last = blk; }
        }
    }
    fprintf(o, "| tensors | type | blocks | count | MiB | bpw |\n|---|---|---|---:|---:|---:|\n");
    for (size_t j = 0; j < ng; j++) {
        close_run(&g[j]);
        fprintf(o, "| `%s` | %s | %s | %d | %.2f | %.3f |\n", g[j].pattern, qt_type_name(g[j].type), g[j].blocks[0] ? g[j].blocks : "—",
                g[j].n, g[j].bytes / 1048576.0, g[j].elems ? 8.0 * g[j].bytes / g[j].elems : 0.0);
    }
    free(g);
}

static void imatrix_section(FILE *o, const gf_file *f) {
    const char *file = kv_str(f, "quantize.imatrix.file"), *ds = kv_str(f, "quantize.imatrix.dataset");
    const char *src = kv_str(f, GF_KEY_QFORGE_SOURCE);
    fprintf(o, "## Importance matrix\n\n");
    if (file || ds) {
        fprintf(o, "Quantized with an importance matrix%s%s%s%s.\n", file ? " `" : "", file ? file : "", file ? "`" : "",
                ds ? " computed on " : "");
        if (ds) fprintf(o, "`%s`\n", ds);
        uint32_t v;
        qx_err e;
        if (gf_get_u32(f, "quantize.imatrix.chunks_count", &v, &e) == QX_OK) fprintf(o, "(%u chunks)\n", v);
        fprintf(o, "\n");
    } else if (src && strstr(src, "imatrix")) {
        fprintf(o, "Quantized with an importance matrix (`qforge.source`: \"%s\"); the file and its calibration text are not "
                   "recorded in the GGUF: name them here.\n\n", src);
    } else {
        fprintf(o, "None: this build was quantized without an importance matrix.\n\n");
    }
}

static void drift_section(FILE *o, const cal_drift *d, int nd, const char *const *paths, const char *build) {
    fprintf(o, "## Accuracy drift against the original\n\n");
    if (nd == 0) {
        fprintf(o, "Not measured yet.  Measure it with `qforge ppl` (base from the original checkpoint, then this build "
                   "with `--base` and `--json`) and pass the JSON to `qforge card --drift`.\n\n");
        return;
    }
    fprintf(o, "Measured by qforge's layer-major engine, the original checkpoint and this build over the same token windows.  "
               "PPL ratio = PPL(build) / PPL(original); KLD = KL(original ‖ build) of the next-token distributions per scored "
               "token, in nats; top-1 = share of tokens where both pick the same most likely token.\n\n");
    fprintf(o, "| text | protocol | ctx | chunks | tokens | PPL | PPL original | PPL ratio | KLD mean | KLD p99 | top-1 |\n"
               "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < nd; i++) {
        const cal_drift *x = &d[i];
        fprintf(o, "| ");
        md_cell(o, x->input[0] ? base_name(x->input) : base_name(paths[i]));
        fprintf(o, " | %s | %lld | %lld | %lld | %.4f | ", x->protocol, (long long)x->n_ctx, (long long)x->n_chunks,
                (long long)x->n_tokens, x->ppl);
        if (x->has_base)
            fprintf(o, "%.4f | %.4f | %.5f ± %.5f | %.4f | %.2f %% |\n", x->ppl_base, exp(x->ln_ppl_ratio), x->kld_mean, x->kld_err,
                    x->kld_p99, 100.0 * x->top1);
        else
            fprintf(o, "— | — | — | — | — |\n");
    }
    fprintf(o, "\nProtocols: `llama` is llama-perplexity's (BOS + text, windows of ctx tokens, the second half of each "
               "window scored), so PPL compares with `llama-perplexity -c ctx`; `all` scores every token after the first "
               "of each window.\n\n");
    for (int i = 0; i < nd; i++) {
        const cal_drift *x = &d[i];
        if (x->model[0] && strcmp(base_name(x->model), base_name(build)))
            fprintf(o, "Note: `%s` was measured on `%s`.\n\n", base_name(paths[i]), base_name(x->model));
    }
    const cal_drift *x = &d[0];
    fprintf(o, "Reproduce (first row):\n\n```sh\nqforge ppl %s --text %s --ctx %lld --chunks %lld --protocol %s --save-base base.qfb\n"
               "qforge ppl %s --text %s --ctx %lld --chunks %lld --protocol %s --base base.qfb --json drift.json\n```\n\n",
            "ORIGINAL_CHECKPOINT_DIR", x->input[0] ? x->input : "TEXT", (long long)x->n_ctx,
            (long long)x->n_chunks, x->protocol, base_name(build), x->input[0] ? x->input : "TEXT", (long long)x->n_ctx,
            (long long)x->n_chunks, x->protocol);
}

static void write_card(FILE *o, const gf_file *f, const char *build, const cal_drift *d, int nd, const char *const *dpaths,
                       const char *base_model, const char *license) {
    const char *arch = kv_str(f, GF_KEY_ARCHITECTURE), *name = kv_str(f, GF_KEY_NAME);
    const char *src = kv_str(f, GF_KEY_QFORGE_SOURCE);
    if (!base_model) base_model = kv_str(f, "general.base_model.0.repo_url");
    if (!base_model) base_model = kv_str(f, "general.base_model.0.name");
    if (!license) license = kv_str(f, "general.license");
    double tb = 0, ne = 0;
    for (size_t i = 0; i < gf_tensor_count(f); i++) { tb += (double)gf_tensor_at(f, i)->nbytes; ne += (double)gf_tensor_at(f, i)->n_elems; }
    double bpw = ne > 0 ? 8 * tb / ne : 0;
    char preset[64] = "";
    if (src && strstr(src, "preset ")) {
        sscanf(strstr(src, "preset ") + 7, "%63[^;]", preset);
    }
    fprintf(o, "---\n");
    if (base_model) { fprintf(o, "base_model: "); yaml_str(o, base_model); fprintf(o, "\n"); }
    if (license) { fprintf(o, "license: "); yaml_str(o, license); fprintf(o, "\n"); }
    fprintf(o, "tags:\n- gguf\n- quantized\n");
    if (arch) { fprintf(o, "- "); yaml_str(o, arch); fprintf(o, "\n"); }
    if (preset[0]) { fprintf(o, "- "); yaml_str(o, preset); fprintf(o, "\n"); }
    fprintf(o, "---\n\n");
    fprintf(o, "# %s%s%s GGUF\n\n", name ? name : base_name(build), preset[0] ? " " : "", preset);
    fprintf(o, "%s%s%s quantized to GGUF", base_model ? "`" : "", base_model ? base_model : (name ? name : "This model"),
            base_model ? "`" : "");
    if (preset[0]) fprintf(o, " (%s)", preset);
    const char *ver = kv_str(f, GF_KEY_QFORGE_VERSION);
    fprintf(o, " with qforge%s%s%s, in one streaming pass from the original checkpoint", ver ? " `" : "", ver ? ver : "", ver ? "`" : "");
    if (src) fprintf(o, " (`qforge.source`: %s)", src);
    fprintf(o, ".  Architecture `%s`: it loads in llama.cpp and the tools built on it.\n\n", arch ? arch : "?");
    fprintf(o, "## Files\n\n| file | bytes | GB |\n|---|---:|---:|\n");
    for (int k = 0; k < gf_split_count(f); k++)
        fprintf(o, "| `%s` | %llu | %.3f |\n", base_name(gf_split_path(f, k)), (unsigned long long)gf_split_file_size(f, k),
                gf_split_file_size(f, k) / 1e9);
    if (gf_split_count(f) > 1) fprintf(o, "| total | %llu | %.3f |\n", (unsigned long long)gf_file_size(f), gf_file_size(f) / 1e9);
    fprintf(o, "\n%zu tensors, %.0f weights, %.3f bits per weight (tensor data %.3f GB).\n\n", gf_tensor_count(f), ne, bpw, tb / 1e9);
    if (gf_split_count(f) > 1)
        fprintf(o, "A split set: download every file into one folder and give llama.cpp the first one; "
                   "`llama-gguf-split --merge %s merged.gguf` makes one file.\n\n", base_name(gf_split_path(f, 0)));
    fprintf(o, "```sh\nllama-cli -m %s -p \"Hello\"\n```\n\n", base_name(gf_split_path(f, 0)));
    fprintf(o, "## Recipe\n\nTypes per tensor (`blk.N` = the transformer blocks listed):\n\n");
    recipe(o, f);
    fprintf(o, "\n");
    imatrix_section(o, f);
    drift_section(o, d, nd, dpaths, build);
    fprintf(o, "Integrity: every tensor's XXH3-64 is stored in `qforge.tensor_xxh3`; `qforge verify %s` re-checks them.\n",
            base_name(gf_split_path(f, 0)));
    fprintf(o, "\nBuilt by qforge `%s` (`qforge.version`); this card written by qforge `%s`.\n", ver ? ver : "unknown", qx_version());
}

int cmd_card(int argc, char **argv) {
    const char *build = NULL, *out = NULL, *base_model = NULL, *license = NULL;
    const char **dpaths = calloc((size_t)argc + 1, sizeof *dpaths);
    int nd = 0;
    if (!dpaths) return 1;
    int rc = 0;
    for (int i = 1; i < argc && rc == 0; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { fputs(card_help, stdout); free(dpaths); return 0; }
        if (a[0] != '-') {
            if (build) rc = cli_usage_error("card", "unexpected argument '%s'", a);
            build = a;
            continue;
        }
        if (!val) { rc = cli_usage_error("card", "%s needs a value", a); break; }
        i++;
        if (!strcmp(a, "--drift")) dpaths[nd++] = val;
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) out = val;
        else if (!strcmp(a, "--base-model")) base_model = val;
        else if (!strcmp(a, "--license")) license = val;
        else rc = cli_usage_error("card", "unknown option '%s'", a);
    }
    if (rc == 0 && !build) rc = cli_usage_error("card", "missing BUILD.gguf");
    if (rc == 0 && !out) rc = cli_usage_error("card", "missing -o README.md");
    if (rc) { free(dpaths); return rc; }
    qx_lock lock = {-1, NULL};   /* one writer per OUT */
    if (strcmp(out, "-") && cli_lock_output("card", out, argc, argv, &lock)) { free(dpaths); return 1; }
    qx_err e = {0};
    gf_file *f;
    if (gf_open(&f, build, &e) != QX_OK) { qx_lock_release(&lock); free(dpaths); return cli_fail(&e); }
    cal_drift *d = calloc((size_t)nd + 1, sizeof *d);
    for (int i = 0; d && i < nd && rc == 0; i++)
        if (cal_drift_load(dpaths[i], &d[i], &e) != QX_OK) rc = cli_fail(&e);
    if (!d) rc = 1;
    if (rc == 0) {
        char part[4200];
        bool to_stdout = !strcmp(out, "-");
        snprintf(part, sizeof part, "%s.part", out);
        FILE *o = to_stdout ? stdout : fopen(part, "w");
        if (!o) {
            fprintf(stderr, "qforge: error: cannot write %s: %s\n", part, strerror(errno));
            rc = 1;
        } else {
            write_card(o, f, build, d, nd, dpaths, base_model, license);
            if (!to_stdout) {
                bool bad = ferror(o) != 0;
                if (fclose(o) != 0 || bad) { fprintf(stderr, "qforge: error: writing %s failed\n", part); unlink(part); rc = 1; }
                else if (rename(part, out) != 0) { fprintf(stderr, "qforge: error: rename %s -> %s: %s\n", part, out, strerror(errno)); rc = 1; }
            }
        }
    }
    for (int i = 0; d && i < nd; i++) cal_drift_free(&d[i]);
    free(d);
    gf_close(f);
    qx_lock_release(&lock);
    free(dpaths);
    return rc;
}
