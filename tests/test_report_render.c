/* tests/test_report_render.c — `qforge report` rendered by a real browser: headless Chromium
 * loads the HTML from disk (no network), its DOM must hold the plots (svg ids, one marker per
 * build and panel, one CDF per build, the per-layer lines) and its screenshot must not be
 * blank: the PNG is decoded here (zlib) and must show every build's palette colour over a
 * sizeable non-white area.  SKIP (77) when no chromium is installed (scripts/deps.sh installs
 * it when run as root; QF_CHROMIUM names another binary). */
#include "tests/util/tu.h"

#include <zlib.h>

static char tmp[1024];

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

static int paeth(int a, int b, int c) {
    int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/* Decodes an 8-bit RGB or RGBA, non-interlaced PNG into *rgb (w*h*3, malloc'd). */
static bool png_rgb(const uint8_t *b, size_t n, int *w, int *h, uint8_t **rgb) {
    if (n < 33 || memcmp(b, "\x89PNG\r\n\x1a\n", 8)) return false;
    *w = (int)be32(b + 16); *h = (int)be32(b + 20);
    int depth = b[24], ct = b[25], inter = b[28];
    if (depth != 8 || (ct != 2 && ct != 6) || inter || *w <= 0 || *h <= 0 || *w > 20000 || *h > 20000) return false;
    int bpp = ct == 6 ? 4 : 3;
    size_t cap = 0, len = 0;
    uint8_t *z = NULL;
    for (size_t p = 8; p + 12 <= n;) {
        uint32_t L = be32(b + p);
        if (p + 12 + L > n) break;
        if (!memcmp(b + p + 4, "IDAT", 4)) {
            if (len + L > cap) { cap = (len + L) * 2; z = realloc(z, cap); }
            memcpy(z + len, b + p + 8, L);
            len += L;
        }
        p += 12 + L;
    }
    size_t stride = (size_t)*w * bpp, raw_n = (stride + 1) * (size_t)*h;
    uint8_t *raw = malloc(raw_n);
    uLongf got = raw_n;
    bool ok = z && raw && uncompress(raw, &got, z, len) == Z_OK && got == raw_n;
    free(z);
    if (!ok) { free(raw); return false; }
    *rgb = malloc((size_t)*w * *h * 3);
    uint8_t *prev = calloc(stride, 1), *cur = malloc(stride);
    for (int y = 0; y < *h; y++) {
        const uint8_t *r = raw + (size_t)y * (stride + 1);
        for (size_t i = 0; i < stride; i++) {
            int a = i >= (size_t)bpp ? cur[i - bpp] : 0, up = prev[i], c = i >= (size_t)bpp ? prev[i - bpp] : 0, x = r[1 + i];
            switch (r[0]) {
            case 1: x += a; break;
            case 2: x += up; break;
            case 3: x += (a + up) / 2; break;
            case 4: x += paeth(a, up, c); break;
            default: break;
            }
            cur[i] = (uint8_t)x;
        }
        for (int xx = 0; xx < *w; xx++) memcpy(*rgb + ((size_t)y * *w + xx) * 3, cur + (size_t)xx * bpp, 3);
        memcpy(prev, cur, stride);
    }
    free(prev); free(cur); free(raw);
    return true;
}

static void write_json(const char *path, const char *model, double gb, double bpw, double kld, bool layers) {
    FILE *f = fopen(path, "w");
    if (!f) return;
    fprintf(f, "{\"model\": \"%s\", \"input\": \"eval.txt\", \"protocol\": \"llama\", \"n_ctx\": 512, \"n_chunks\": 40, "
               "\"n_tokens_scored\": 10200, \"ppl\": %g, \"ppl_base\": 5.0, \"ln_ppl_ratio\": %g, \"kld_mean\": %g, \"kld_err\": %g, "
               "\"kld_median\": %g, \"kld_p99\": %g, \"kld_max\": %g, \"top1_agree\": %g, \"model_file_bytes\": %g, \"model_bpw\": %g,"
               " \"kld_quantiles\": [", model, 5.0 * (1 + kld), log1p(kld), kld, kld / 20, kld / 2, kld * 8, kld * 20, 1 - kld, gb * 1e9, bpw);
    for (int q = 0; q <= 100; q++) fprintf(f, "%s%g", q ? ", " : "", kld * 1e-3 * pow(2e4, q / 100.0));
    fprintf(f, "]");
    if (layers) {
        fprintf(f, ", \"per_layer_metric\": \"relative RMS output error\", \"per_layer\": [");
        for (int l = 0; l < 61; l++) fprintf(f, "%s{\"layer\": %d, \"error\": %g}", l ? ", " : "", l, kld * (1 + 0.5 * sin(l / 5.0)));
        fprintf(f, "]");
    }
    fprintf(f, "}\n");
    fclose(f);
}

int main(void) {
    snprintf(tmp, sizeof tmp, "%s", tu_tmpdir());
    const char *chrome = getenv("QF_CHROMIUM");
    static const char *const names[] = {"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"};
    for (size_t i = 0; !chrome && i < sizeof names / sizeof names[0]; i++)
        if (tu_system("command -v %s > /dev/null 2>&1", names[i]) == 0) chrome = names[i];
    if (!chrome) return tu_skip("no chromium found (apt-get install chromium, or set QF_CHROMIUM): the report is not rendered");
    char a[1200], b[1200], c[1200], html[1200], png[1200], dom[1200];
    snprintf(a, sizeof a, "%s/q2.json", tmp);
    snprintf(b, sizeof b, "%s/q3.json", tmp);
    snprintf(c, sizeof c, "%s/q4.json", tmp);
    write_json(a, "DeepSeek-R1-Q2_K_XL-00001-of-00005.gguf", 231.7, 2.76, 0.21, true);
    write_json(b, "DeepSeek-R1-Q3_K_XL-00001-of-00006.gguf", 250.0, 2.98, 0.12, true);
    write_json(c, "DeepSeek-R1-Q4_K_M-00001-of-00009.gguf", 404.5, 4.82, 0.03, false);
    snprintf(html, sizeof html, "%s/report.html", tmp);
    snprintf(png, sizeof png, "%s/shot.png", tmp);
    snprintf(dom, sizeof dom, "%s/dom.html", tmp);
    TU_CHECK(tu_system("%s report '%s' '%s' '%s' -o '%s'", tu_qforge(), a, b, c, html) == 0, "qforge report");
    const char *flags = "--headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run --disable-extensions "
                        "--user-data-dir=%s/chrome-profile";
    char fl[1400];
    snprintf(fl, sizeof fl, flags, tmp);
    int rc = tu_system("timeout 120 %s %s --window-size=1280,2200 --screenshot='%s' 'file://%s' > '%s/chrome.log' 2>&1", chrome, fl, png, html, tmp);
    TU_CHECK(rc == 0, "chromium --screenshot: exit %d (see %s/chrome.log)", rc, tmp);
    rc = tu_system("timeout 120 %s %s --dump-dom 'file://%s' > '%s' 2> '%s/chrome2.log'", chrome, fl, html, dom, tmp);
    TU_CHECK(rc == 0, "chromium --dump-dom: exit %d", rc);
    size_t n = 0;
    char *d = tu_read_file(dom, &n);
    TU_CHECK(d && n > 1000, "empty DOM dump");
    if (d) {
        int pts = 0, cdf = 0, lay = 0;
        for (const char *p = d; (p = strstr(p, "class=\"pt\"")); p++) pts++;
        for (const char *p = d; (p = strstr(p, "class=\"cdf\"")); p++) cdf++;
        for (const char *p = d; (p = strstr(p, "class=\"layer\"")); p++) lay++;
        TU_CHECK(strstr(d, "id=\"plot-size-gb\"") && strstr(d, "id=\"plot-size-bpw\"") && strstr(d, "id=\"plot-kld-dist\"") &&
                 strstr(d, "id=\"plot-per-layer\"") && strstr(d, "id=\"drift-table\""), "DOM lacks a plot or the table");
        TU_CHECK(pts == 6 && cdf == 3 && lay == 2, "DOM: %d markers (want 6), %d CDFs (3), %d layer lines (2)", pts, cdf, lay);
        free(d);
    }
    uint8_t *buf = tu_read_file(png, &n), *rgb = NULL;
    int w = 0, h = 0;
    bool dec = buf && png_rgb(buf, n, &w, &h, &rgb);
    TU_CHECK(dec, "screenshot %s is not a decodable 8-bit RGB(A) PNG", png);
    if (dec) {
        static const uint8_t pal[3][3] = {{0x1f, 0x77, 0xb4}, {0xd6, 0x27, 0x28}, {0x2c, 0xa0, 0x2c}};
        size_t nonwhite = 0, hits[3] = {0};
        for (size_t i = 0; i < (size_t)w * h; i++) {
            const uint8_t *p = rgb + i * 3;
            if (p[0] < 240 || p[1] < 240 || p[2] < 240) nonwhite++;
            for (int k = 0; k < 3; k++)
                if (abs(p[0] - pal[k][0]) < 6 && abs(p[1] - pal[k][1]) < 6 && abs(p[2] - pal[k][2]) < 6) hits[k]++;
        }
        double frac = (double)nonwhite / ((double)w * h);
        TU_CHECK(w == 1280 && h == 2200, "screenshot %dx%d", w, h);
        TU_CHECK(frac > 0.01, "screenshot nearly blank: %.4f of pixels are not white", frac);
        TU_CHECK(hits[0] > 200 && hits[1] > 200 && hits[2] > 200, "build colours missing from the screenshot: %zu %zu %zu pixels",
                 hits[0], hits[1], hits[2]);
        printf("screenshot %dx%d: %.1f %% non-white, build colours %zu/%zu/%zu pixels\n", w, h, 100 * frac, hits[0], hits[1], hits[2]);
    }
    free(rgb);
    free(buf);
    return tu_done("test_report_render");
}
