/* tests/test_install.c — a build says what made it, and installs cleanly (issue 21 item 5).
 * `qforge --version` equals `git describe --always --dirty` of this tree (the VERSION file or
 * "unknown" outside git); a convert, a quantize and an imatrix of a synthetic tiny-v3 carry
 * that string as qforge.version; `qforge card` names it; `make install PREFIX=tmp` puts the
 * binary, recipes, scripts/slurm (when the tree has it) and docs in place, the installed
 * binary runs from elsewhere, and `make uninstall` leaves no file behind.  Run from the source
 * tree (make test does); SKIP when there is no Makefile here.  Needs no ../shared. */
#include "tests/util/tu.h"
#include "formats/formats.h"

#include <sys/stat.h>
#include <unistd.h>

static char tmp[1024];

/* First line of a command's stdout (newline dropped) into buf; false when it fails. */
static bool first_line(char *buf, size_t cap, const char *cmd) {
    FILE *p = popen(cmd, "r");
    if (!p) return false;
    buf[0] = 0;
    bool got = fgets(buf, (int)cap, p) != NULL;
    while (got && fgetc(p) != EOF) {}
    int st = pclose(p);
    buf[strcspn(buf, "\n")] = 0;
    return got && st == 0;
}

static bool exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

/* The version this tree should report, as the Makefile computes it. */
static void expected_version(char *buf, size_t cap) {
    char top[4096], cwd[4096];
    if (first_line(top, sizeof top, "git rev-parse --show-toplevel 2>/dev/null") && getcwd(cwd, sizeof cwd) && !strcmp(top, cwd) &&
        first_line(buf, cap, "git describe --always --dirty 2>/dev/null"))
        return;
    if (first_line(buf, cap, "cat VERSION 2>/dev/null") && buf[0]) {
        buf[strcspn(buf, " \t")] = 0;
        return;
    }
    snprintf(buf, cap, "unknown");
}

static void check_key(const char *path, const char *want) {
    gf_file *f;
    qx_err e;
    const char *v = NULL;
    TU_OK(gf_open(&f, path, &e), &e);
    if (e.code != QX_OK) return;
    TU_OK(gf_get_str(f, GF_KEY_QFORGE_VERSION, &v, &e), &e);
    TU_CHECK(v && !strcmp(v, want), "%s: qforge.version '%s', want '%s'", path, v ? v : "(none)", want);
    gf_close(f);
}

/* make's BUILD for the binary under test: the directory of QF_BIN (build, build-asan), else build. */
static void build_dir(char *buf, size_t cap) {
    const char *q = getenv("QF_BIN");
    const char *slash = q ? strrchr(q, '/') : NULL;
    if (slash && slash > q && !strcmp(slash, "/qforge")) snprintf(buf, cap, "%.*s", (int)(slash - q), q);
    else snprintf(buf, cap, "build");
}

static void test_install(const char *ver) {
    char pre[1100], b[1100], got[512], path[1300];
    snprintf(pre, sizeof pre, "%s/prefix", tmp);
    build_dir(b, sizeof b);
    const char *make = "env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS make --no-print-directory -s";
    TU_CHECK(tu_system("%s install PREFIX='%s' BUILD='%s' > '%s/install.log' 2>&1", make, pre, b, tmp) == 0, "make install failed (%s/install.log)", tmp);
    const char *want[] = {"bin/qforge", "share/doc/qforge/README.md", "share/doc/qforge/docs/commands.md",
                          "share/qforge/recipes/deepseek-v3-671b-183GiB.json", "share/qforge/recipes/deepseek2-moe-sensitivity.json"};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        snprintf(path, sizeof path, "%s/%s", pre, want[i]);
        TU_CHECK(exists(path), "make install did not put %s", path);
    }
    if (exists("scripts/slurm")) {
        snprintf(path, sizeof path, "%s/share/qforge/slurm", pre);
        TU_CHECK(exists(path), "scripts/slurm is here but not installed");
    }
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cd / && '%s/bin/qforge' --version", pre);
    TU_CHECK(first_line(got, sizeof got, cmd) && !strncmp(got, "qforge ", 7) && !strcmp(got + 7, ver),
             "installed binary says '%s', want 'qforge %s'", got, ver);
    TU_CHECK(tu_system("%s uninstall PREFIX='%s' BUILD='%s' > '%s/uninstall.log' 2>&1", make, pre, b, tmp) == 0, "make uninstall failed");
    snprintf(cmd, sizeof cmd, "test -z \"$(find '%s' ! -type d)\" && test ! -e '%s/share/qforge' && test ! -e '%s/share/doc/qforge'", pre, pre, pre);
    TU_CHECK(tu_system("%s", cmd) == 0, "make uninstall left files under %s", pre);
}

int main(void) {
    if (!exists("Makefile") || !exists("common/version.c")) return tu_skip("SKIP: not run from the qforge source tree (no Makefile here)");
    snprintf(tmp, sizeof tmp, "%s", tu_tmpdir());
    const char *Q = tu_qforge();
    char ver[256], got[512], cmd[2400];
    expected_version(ver, sizeof ver);
    snprintf(cmd, sizeof cmd, "%s --version", Q);
    TU_CHECK(first_line(got, sizeof got, cmd) && !strncmp(got, "qforge ", 7) && !strcmp(got + 7, ver),
             "--version says '%s', want 'qforge %s' (rebuild after changing the tree)", got, ver);
    TU_CHECK(strcmp(ver, "unknown") != 0 || !exists(".git"), "a git tree reports 'unknown'");

    char dir[1100], c[1100], f16[1100], q[1100], im[1100], text[1100], card[1100];
    qx_err e;
    snprintf(dir, sizeof dir, "%s/tiny", tmp);
    TU_OK(st_synth("tiny-v3", dir, 7, false, 0, &e), &e);
    snprintf(c, sizeof c, "%s/c.gguf", tmp);
    snprintf(f16, sizeof f16, "%s/f16.gguf", tmp);
    snprintf(q, sizeof q, "%s/q.gguf", tmp);
    snprintf(im, sizeof im, "%s/im.gguf", tmp);
    snprintf(text, sizeof text, "%s/text.txt", tmp);
    snprintf(card, sizeof card, "%s/card.md", tmp);
    FILE *f = fopen(text, "w");
    for (int i = 0; f && i < 100; i++) fprintf(f, "Every file says which build made it, line %d. ", i);
    if (f) fclose(f);
    TU_CHECK(tu_system("%s convert '%s' -o '%s' --type Q4_K_M --quiet -t 2 > /dev/null 2>&1", Q, dir, c) == 0, "convert");
    check_key(c, ver);
    TU_CHECK(tu_system("%s convert '%s' -o '%s' --type F16 --quiet -t 2 > /dev/null 2>&1", Q, dir, f16) == 0, "convert F16");
    TU_CHECK(tu_system("%s quantize '%s' '%s' Q4_K_M --quiet -t 2 > /dev/null 2>&1", Q, f16, q) == 0, "quantize");
    check_key(q, ver);
    TU_CHECK(tu_system("%s imatrix '%s' --text '%s' --ctx 64 --chunks 1 -t 2 -o '%s' > /dev/null 2>&1", Q, f16, text, im) == 0, "imatrix");
    check_key(im, ver);
    TU_CHECK(tu_system("%s card '%s' -o '%s' > /dev/null 2>&1", Q, c, card) == 0, "card");
    size_t n;
    char *md = tu_read_file(card, &n);
    char needle[300];
    snprintf(needle, sizeof needle, "Built by qforge `%s`", ver);
    TU_CHECK(md && memmem(md, n, needle, strlen(needle)), "the card lacks '%s'", needle);
    free(md);

    test_install(ver);
    return tu_done("test_install");
}
