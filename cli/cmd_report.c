/* cli/cmd_report.c — `qforge report drift*.json -o report.html`: one self-contained HTML file
 * (inline SVG and CSS, no script, no network) that draws the drift JSON of `qforge ppl
 * --json`: size (GB and bits per weight) against mean KLD for every build, each build's
 * per-token KLD distribution (from its percentiles), per-layer error where the JSON has it,
 * and the numbers as a table.  The JSON stays the source of truth: each file is embedded
 * verbatim in a <script type="application/json"> block and the report computes nothing but
 * plot coordinates.  Written to OUT.part, renamed when complete. */
#include "cli.h"
#include "calib/calib.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *report_help =
    "usage: qforge report DRIFT.json... -o report.html [--title T]\n"
    "  one self-contained HTML file (no network) with plots of the drift JSON files of\n"
    "  `qforge ppl --base ... --json`: size (GB, bpw) vs mean KLD, KLD distributions,\n"
    "  per-layer error when present, and a table; the JSON files are embedded verbatim\n"
    "  OUT is locked while written (OUT.lock beside it): a second writer of OUT stops at once\n";

static const char *const palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"};
#define NPAL (sizeof palette / sizeof palette[0])

#define W 560
#define H 340
#define ML 70
#define MR 20
#define MT 20
#define MB 50

typedef struct {
    double lo, hi;
    bool log;
} axis;

static double ax_map(const axis *a, double v, double p0, double p1) {
    double t = a->log ? (log10(v) - log10(a->lo)) / (log10(a->hi) - log10(a->lo)) : (v - a->lo) / (a->hi - a->lo);
    if (!isfinite(t)) t = 0.5;
    return p0 + t * (p1 - p0);
}

/* Widens [lo, hi] to a plotting range: powers of ten for a log axis, 8% margins otherwise. */
static axis ax_make(double lo, double hi, bool lg) {
    axis a = {lo, hi, lg};
    if (lg) {
        if (!(lo > 0)) lo = 1e-6;
        if (!(hi > lo)) hi = lo * 10;
        a.lo = pow(10, floor(log10(lo)));
        a.hi = pow(10, ceil(log10(hi)));
        if (a.hi <= a.lo) a.hi = a.lo * 10;
    } else {
        double m = (hi - lo) * 0.08;
        if (!(m > 0)) m = fabs(hi) * 0.1 + 1e-3;
        a.lo = lo - m;
        a.hi = hi + m;
        if (lo >= 0 && a.lo < 0) a.lo = 0;
    }
    return a;
}

static void esc(FILE *o, const char *s) {
    for (; s && *s; s++) {
        if (*s == '&') fputs("&amp;", o);
        else if (*s == '<') fputs("&lt;", o);
        else if (*s == '>') fputs("&gt;", o);
        else if (*s == '"') fputs("&quot;", o);
        else fputc(*s, o);
    }
}

/* Frame, grid, tick labels and axis titles of one plot. */
static void frame(FILE *o, const axis *x, const axis *y, const char *xt, const char *yt) {
    fprintf(o, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"#fff\" stroke=\"#444\"/>\n", ML, MT, W - ML - MR, H - MT - MB);
    for (int pass = 0; pass < 2; pass++) {
        const axis *a = pass ? y : x;
        double ticks[32];
        int nt = 0;
        if (a->log) {
            for (double v = a->lo; v <= a->hi * 1.0001 && nt < 32; v *= 10) ticks[nt++] = v;
        } else {
            double span = a->hi - a->lo, step = pow(10, floor(log10(span / 5)));
            if (span / step > 10) step *= 2;
            if (span / step > 10) step *= 2.5;
            for (double v = ceil(a->lo / step) * step; v <= a->hi + 1e-12 && nt < 32; v += step) ticks[nt++] = v;
        }
        for (int i = 0; i < nt; i++) {
            char lab[32];
            if (a->log) snprintf(lab, sizeof lab, "%g", ticks[i]);
            else snprintf(lab, sizeof lab, "%.4g", fabs(ticks[i]) < 1e-12 ? 0.0 : ticks[i]);
            if (pass == 0) {
                double px = ax_map(a, ticks[i], ML, W - MR);
                fprintf(o, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/>"
                           "<text x=\"%.1f\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\">%s</text>\n",
                        px, MT, px, H - MB, px, H - MB + 15, lab);
            } else {
                double py = ax_map(a, ticks[i], H - MB, MT);
                fprintf(o, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                           "<text x=\"%d\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%s</text>\n",
                        ML, py, W - MR, py, ML - 5, py + 4, lab);
            }
        }
    }
    fprintf(o, "<text x=\"%d\" y=\"%d\" font-size=\"12\" text-anchor=\"middle\">", (ML + W - MR) / 2, H - 12);
    esc(o, xt);
    fprintf(o, "</text>\n<text x=\"14\" y=\"%d\" font-size=\"12\" text-anchor=\"middle\" transform=\"rotate(-90 14 %d)\">", (MT + H - MB) / 2,
            (MT + H - MB) / 2);
    esc(o, yt);
    fprintf(o, "</text>\n");
}

static const char *label_of(const cal_drift *d, const char *path) {
    const char *s = d->model[0] ? d->model : path;
    const char *b = strrchr(s, '/');
    return b ? b + 1 : s;
}

/* Size (GB or bpw) against mean KLD, error bars = 1 standard error. */
static void plot_size(FILE *o, const cal_drift *d, int n, const char *const *paths, bool bpw) {
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (!d[i].has_size || !d[i].has_base) continue;
        double x = bpw ? d[i].bpw : d[i].file_bytes / 1e9, y = d[i].kld_mean > 0 ? d[i].kld_mean : 1e-9;
        xlo = fmin(xlo, x); xhi = fmax(xhi, x);
        ylo = fmin(ylo, fmax(y - d[i].kld_err, y / 2)); yhi = fmax(yhi, y + d[i].kld_err);
        m++;
    }
    fprintf(o, "<figure><svg id=\"plot-size-%s\" class=\"plot\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "viewBox=\"0 0 %d %d\">\n", bpw ? "bpw" : "gb", W, H, W, H);
    if (m == 0) {
        fprintf(o, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">no file with both a size and a base</text></svg></figure>\n", W / 2, H / 2);
        return;
    }
    axis ax = ax_make(xlo, xhi, false), ay = ax_make(ylo, yhi, true);
    frame(o, &ax, &ay, bpw ? "bits per weight" : "file size (GB)", "mean KLD (nats, log scale)");
    for (int i = 0; i < n; i++) {
        if (!d[i].has_size || !d[i].has_base) continue;
        double x = bpw ? d[i].bpw : d[i].file_bytes / 1e9, y = d[i].kld_mean > 0 ? d[i].kld_mean : 1e-9;
        double px = ax_map(&ax, x, ML, W - MR), py = ax_map(&ay, y, H - MB, MT);
        double e0 = ax_map(&ay, fmax(y - d[i].kld_err, ay.lo), H - MB, MT), e1 = ax_map(&ay, fmin(y + d[i].kld_err, ay.hi), H - MB, MT);
        const char *c = palette[(size_t)i % NPAL];
        fprintf(o, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"/>\n", px, e0, px, e1, c);
        fprintf(o, "<circle class=\"pt\" cx=\"%.1f\" cy=\"%.1f\" r=\"6\" fill=\"%s\"><title>", px, py, c);
        esc(o, label_of(&d[i], paths[i]));
        fprintf(o, ": %.3f %s, KLD %.5f</title></circle>\n<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"%s\">", x,
                bpw ? "bpw" : "GB", d[i].kld_mean, px > W / 2 ? px - 8 : px + 8, py - 8, px > W / 2 ? "end" : "start");
        esc(o, label_of(&d[i], paths[i]));
        fprintf(o, "</text>\n");
    }
    fprintf(o, "</svg><figcaption>Mean KLD against %s (error bars: one standard error).</figcaption></figure>\n",
            bpw ? "bits per weight" : "file size");
}

/* Cumulative distribution of per-token KLD from the percentiles (x log scale). */
static void plot_dist(FILE *o, const cal_drift *d, int n, const char *const *paths) {
    double lo = INFINITY, hi = -INFINITY;
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (!d[i].has_q) continue;
        for (int q = 0; q < CAL_KLD_NQ; q++)
            if (d[i].kld_q[q] > 0) { lo = fmin(lo, d[i].kld_q[q]); hi = fmax(hi, d[i].kld_q[q]); }
        m++;
    }
    fprintf(o, "<figure><svg id=\"plot-kld-dist\" class=\"plot\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "viewBox=\"0 0 %d %d\">\n", W, H, W, H);
    if (m == 0 || !(hi > 0)) {
        fprintf(o, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">no KLD percentiles in these files</text></svg></figure>\n", W / 2, H / 2);
        return;
    }
    lo = fmax(lo, hi * 1e-6);
    axis ax = ax_make(lo, hi, true), ay = {0, 100, false};
    frame(o, &ax, &ay, "per-token KLD (nats, log scale)", "tokens at or below (%)");
    for (int i = 0, li = 0; i < n; i++) {
        if (!d[i].has_q) continue;
        const char *c = palette[(size_t)i % NPAL];
        fprintf(o, "<polyline class=\"cdf\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", c);
        for (int q = 0; q < CAL_KLD_NQ; q++) {
            double v = fmax(d[i].kld_q[q], ax.lo);
            fprintf(o, "%.1f,%.1f ", ax_map(&ax, v, ML, W - MR), ax_map(&ay, 100.0 * q / (CAL_KLD_NQ - 1), H - MB, MT));
        }
        fprintf(o, "\"/>\n<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"4\" fill=\"%s\"/><text x=\"%d\" y=\"%d\" font-size=\"11\">", ML + 10,
                MT + 12 + 16 * li, c, ML + 26, MT + 17 + 16 * li);
        esc(o, label_of(&d[i], paths[i]));
        fprintf(o, "</text>\n");
        li++;
    }
    fprintf(o, "</svg><figcaption>Distribution of the per-token KLD (cumulative, from the 101 percentiles in the JSON).</figcaption></figure>\n");
}

static void plot_layers(FILE *o, const cal_drift *d, int n, const char *const *paths) {
    double xhi = 0, ylo = INFINITY, yhi = -INFINITY;
    int m = 0;
    const char *metric = "";
    for (int i = 0; i < n; i++) {
        if (!d[i].n_layers) continue;
        m++;
        if (d[i].per_layer_metric[0]) metric = d[i].per_layer_metric;
        for (int k = 0; k < d[i].n_layers; k++) {
            xhi = fmax(xhi, d[i].layer[k]);
            if (d[i].layer_err[k] > 0) { ylo = fmin(ylo, d[i].layer_err[k]); yhi = fmax(yhi, d[i].layer_err[k]); }
        }
    }
    if (m == 0) {
        fprintf(o, "<p class=\"note\">None of these files has per-layer error (<code>per_layer</code>); nothing to draw.</p>\n");
        return;
    }
    fprintf(o, "<figure><svg id=\"plot-per-layer\" class=\"plot\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "viewBox=\"0 0 %d %d\">\n", W, H, W, H);
    axis ax = ax_make(0, xhi > 0 ? xhi : 1, false), ay = ax_make(ylo, yhi, true);
    char yt[96];
    snprintf(yt, sizeof yt, "%s (log scale)", metric[0] ? metric : "error");
    frame(o, &ax, &ay, "layer", yt);
    for (int i = 0; i < n; i++) {
        if (!d[i].n_layers) continue;
        const char *c = palette[(size_t)i % NPAL];
        fprintf(o, "<polyline class=\"layer\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", c);
        for (int k = 0; k < d[i].n_layers; k++)
            fprintf(o, "%.1f,%.1f ", ax_map(&ax, d[i].layer[k], ML, W - MR), ax_map(&ay, fmax(d[i].layer_err[k], ay.lo), H - MB, MT));
        fprintf(o, "\"><title>");
        esc(o, label_of(&d[i], paths[i]));
        fprintf(o, "</title></polyline>\n");
    }
    fprintf(o, "</svg><figcaption>Per-layer error.</figcaption></figure>\n");
}

static void table(FILE *o, const cal_drift *d, int n, const char *const *paths) {
    fprintf(o, "<table id=\"drift-table\"><tr><th>build</th><th>GB</th><th>bpw</th><th>text</th><th>protocol</th><th>ctx</th>"
               "<th>tokens</th><th>PPL</th><th>PPL base</th><th>PPL ratio</th><th>KLD mean</th><th>KLD p99</th><th>top-1</th></tr>\n");
    for (int i = 0; i < n; i++) {
        const cal_drift *x = &d[i];
        fprintf(o, "<tr><td><span class=\"sw\" style=\"background:%s\"></span>", palette[(size_t)i % NPAL]);
        esc(o, label_of(x, paths[i]));
        if (x->has_size) fprintf(o, "</td><td>%.3f</td><td>%.3f</td><td>", x->file_bytes / 1e9, x->bpw);
        else fprintf(o, "</td><td>—</td><td>—</td><td>");
        esc(o, x->input);
        fprintf(o, "</td><td>%s</td><td>%lld</td><td>%lld</td><td>%.4f</td>", x->protocol, (long long)x->n_ctx, (long long)x->n_tokens, x->ppl);
        if (x->has_base)
            fprintf(o, "<td>%.4f</td><td>%.4f</td><td>%.5f ± %.5f</td><td>%.4f</td><td>%.2f %%</td></tr>\n", x->ppl_base,
                    exp(x->ln_ppl_ratio), x->kld_mean, x->kld_err, x->kld_p99, 100 * x->top1);
        else
            fprintf(o, "<td>—</td><td>—</td><td>—</td><td>—</td><td>—</td></tr>\n");
    }
    fprintf(o, "</table>\n");
}

/* The source JSON verbatim; "</" is written "<\/" (the same JSON) so it cannot close the block. */
static void embed(FILE *o, const char *path, int i) {
    char *buf;
    size_t len;
    qx_err e;
    if (qx_read_file(path, &buf, &len, &e) != QX_OK) return;
    fprintf(o, "<script type=\"application/json\" class=\"drift-json\" id=\"drift-json-%d\" data-file=\"", i);
    esc(o, path);
    fprintf(o, "\">");
    for (size_t k = 0; k < len; k++) {
        if (buf[k] == '<' && k + 1 < len && buf[k + 1] == '/') { fputs("<\\/", o); k++; }
        else fputc(buf[k], o);
    }
    fprintf(o, "</script>\n");
    free(buf);
}

static void write_report(FILE *o, const cal_drift *d, int n, const char *const *paths, const char *title) {
    fprintf(o, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>");
    esc(o, title);
    fprintf(o, "</title>\n<style>body{font-family:sans-serif;margin:24px;color:#222;background:#fff}"
               "figure{display:inline-block;margin:8px}figcaption{font-size:12px;color:#555;max-width:%dpx}"
               "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}"
               "td:first-child,th:first-child{text-align:left}.sw{display:inline-block;width:10px;height:10px;margin-right:5px}"
               ".note{color:#555}</style></head><body>\n<h1>", W);
    esc(o, title);
    fprintf(o, "</h1>\n<p>%d build%s. Drawn by <code>qforge report</code> (qforge <code>", n, n == 1 ? "" : "s");
    esc(o, qx_version());
    fprintf(o, "</code>) from the JSON of <code>qforge ppl --json</code>; "
               "the files are embedded below and are the source of every number.</p>\n<h2>Size against drift</h2>\n");
    plot_size(o, d, n, paths, false);
    plot_size(o, d, n, paths, true);
    fprintf(o, "<h2>KLD distribution</h2>\n");
    plot_dist(o, d, n, paths);
    fprintf(o, "<h2>Per-layer error</h2>\n");
    plot_layers(o, d, n, paths);
    fprintf(o, "<h2>Numbers</h2>\n");
    table(o, d, n, paths);
    for (int i = 0; i < n; i++) embed(o, paths[i], i);
    fprintf(o, "</body></html>\n");
}

int cmd_report(int argc, char **argv) {
    const char *out = NULL, *title = "qforge drift report";
    const char **paths = calloc((size_t)argc + 1, sizeof *paths);
    int n = 0, rc = 0;
    if (!paths) return 1;
    for (int i = 1; i < argc && rc == 0; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { fputs(report_help, stdout); free(paths); return 0; }
        if (a[0] != '-') { paths[n++] = a; continue; }
        if (i + 1 >= argc) { rc = cli_usage_error("report", "%s needs a value", a); break; }
        if (!strcmp(a, "-o") || !strcmp(a, "--output")) out = argv[++i];
        else if (!strcmp(a, "--title")) title = argv[++i];
        else rc = cli_usage_error("report", "unknown option '%s'", a);
    }
    if (rc == 0 && n == 0) rc = cli_usage_error("report", "give at least one drift JSON file");
    if (rc == 0 && !out) rc = cli_usage_error("report", "missing -o report.html");
    if (rc) { free(paths); return rc; }
    qx_lock lock = {-1, NULL};   /* one writer per OUT */
    if (cli_lock_output("report", out, argc, argv, &lock)) { free(paths); return 1; }
    cal_drift *d = calloc((size_t)n, sizeof *d);
    qx_err e = {0};
    if (!d) rc = 1;
    for (int i = 0; d && i < n && rc == 0; i++)
        if (cal_drift_load(paths[i], &d[i], &e) != QX_OK) rc = cli_fail(&e);
    if (rc == 0) {
        char part[4200];
        snprintf(part, sizeof part, "%s.part", out);
        FILE *o = fopen(part, "w");
        if (!o) {
            fprintf(stderr, "qforge: error: cannot write %s: %s\n", part, strerror(errno));
            rc = 1;
        } else {
            write_report(o, d, n, paths, title);
            bool bad = ferror(o) != 0;
            if (fclose(o) != 0 || bad) { fprintf(stderr, "qforge: error: writing %s failed\n", part); unlink(part); rc = 1; }
            else if (rename(part, out) != 0) { fprintf(stderr, "qforge: error: rename %s -> %s: %s\n", part, out, strerror(errno)); rc = 1; }
        }
    }
    for (int i = 0; d && i < n; i++) cal_drift_free(&d[i]);
    free(d);
    qx_lock_release(&lock);
    free(paths);
    return rc;
}
