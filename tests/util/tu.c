/* tests/util/tu.c — see tu.h. */
#include "tu.h"
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

int tu_failures, tu_checks;
static char tmpdir[256];

const char *tu_shared_dir(void) {
    const char *d = getenv("QF_SHARED");
    if (!d) d = "../shared";
    return qx_is_dir(d) ? d : NULL;
}

const char *tu_shared_path(const char *rel) {
    static char buf[4][1024];
    static int k;
    const char *d = tu_shared_dir();
    if (!d) return NULL;
    k = (k + 1) & 3;
    snprintf(buf[k], sizeof buf[k], "%s/%s", d, rel);
    return buf[k];
}

const char *tu_tmpdir(void) {
    if (!tmpdir[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(tmpdir, sizeof tmpdir, "%s/qftest.XXXXXX", base ? base : "/tmp");
        if (!mkdtemp(tmpdir)) { perror("mkdtemp"); exit(1); }
    }
    return tmpdir;
}

const char *tu_tmp_path(const char *name) {
    static char buf[8][1024];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tu_tmpdir(), name);
    return buf[k];
}

int tu_write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(data, 1, n, f);
    return (fclose(f) == 0 && w == n) ? 0 : -1;
}

void *tu_read_file(const char *path, size_t *n) {
    char *b = NULL;
    qx_err e = {0};
    *n = 0;
    if (!path || qx_read_file(path, &b, n, &e) != QX_OK) return NULL;
    return b;
}

int tu_system(const char *fmt, ...) {
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int r = system(cmd);
    if (r == -1) return -1;
    return WIFEXITED(r) ? WEXITSTATUS(r) : 128 + WTERMSIG(r);
}

const char *tu_qforge(void) {
    const char *b = getenv("QF_BIN");
    return b ? b : "./qforge";
}

int tu_done(const char *name) {
    if (tmpdir[0] && !getenv("QF_KEEP_TMP")) tu_system("rm -rf '%s'", tmpdir);
    if (tu_failures) {
        fprintf(stderr, "%s: %d of %d checks FAILED\n", name, tu_failures, tu_checks);
        return 1;
    }
    printf("%s: %d checks passed\n", name, tu_checks);
    return 0;
}

double tu_rel_rms(const float *a, const float *b, size_t n) {
    double d = 0, r = 0;
    for (size_t i = 0; i < n; i++) { d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]); r += (double)b[i] * b[i]; }
    return sqrt(d / (r > 0 ? r : 1));
}

float *tu_load_shared_f32(const char *rel, size_t n) {
    const char *p = tu_shared_path(rel);
    char *b = NULL;
    size_t len = 0;
    qx_err e = {0};
    if (!p || qx_read_file(p, &b, &len, &e) != QX_OK || len != n * sizeof(float)) { free(b); return NULL; }
    return (float *)(void *)b;
}

void tu_set_threads(int n) {
#ifdef _OPENMP
    omp_set_num_threads(n);
#else
    (void)n;
#endif
}

int tu_quick(void) {
    const char *q = getenv("QF_QUICK");
    return q && *q && strcmp(q, "0") != 0;
}

int tu_skip(const char *why) {
    fprintf(stderr, "SKIP: %s\n", why);
    return 77;
}
