/* common/qx.c — errors, file mapping, time, RSS, paths, progress (see qx.h). */
#include "qx.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

qx_status qx_fail(qx_err *e, qx_status code, const char *fmt, ...) {
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
        e->code = code;
    }
    return code;
}

void qx_err_clear(qx_err *e) {
    if (e) { e->code = QX_OK; e->msg[0] = 0; }
}

const char *qx_status_name(qx_status s) {
    switch (s) {
    case QX_OK: return "ok";
    case QX_EINVAL: return "invalid argument";
    case QX_EIO: return "i/o error";
    case QX_EFORMAT: return "format error";
    case QX_ENOMEM: return "out of memory";
    case QX_ENOTFOUND: return "not found";
    case QX_EUNSUPPORTED: return "unsupported";
    case QX_ESHAPE: return "shape error";
    case QX_ETHRESHOLD: return "threshold crossed";
    case QX_ENOSPC: return "no space";
    case QX_EBUSY: return "busy";
    }
    return "unknown";
}

qx_status qx_map_open(qx_map *m, const char *path, qx_err *e) {
    m->data = NULL; m->size = 0; m->fd = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return qx_fail(e, errno == ENOENT ? QX_ENOTFOUND : QX_EIO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) { int er = errno; close(fd); return qx_fail(e, QX_EIO, "%s: %s", path, strerror(er)); }
    if (!S_ISREG(st.st_mode)) { close(fd); return qx_fail(e, QX_EIO, "%s: not a regular file", path); }
    m->fd = fd;
    m->size = (uint64_t)st.st_size;
    if (m->size > 0) {
        void *p = mmap(NULL, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) { int er = errno; close(fd); m->fd = -1; return qx_fail(e, QX_EIO, "%s: mmap: %s", path, strerror(er)); }
        m->data = p;
    }
    return QX_OK;
}

void qx_map_close(qx_map *m) {
    if (!m) return;
    if (m->data) munmap((void *)m->data, m->size);
    if (m->fd >= 0) close(m->fd);
    m->data = NULL; m->size = 0; m->fd = -1;
}

void qx_map_release(const qx_map *m, uint64_t off, uint64_t len) {
    if (!m || !m->data || len == 0) return;
    long pg = sysconf(_SC_PAGESIZE);
    uint64_t a = (off + (uint64_t)pg - 1) / (uint64_t)pg * (uint64_t)pg;
    uint64_t b = (off + len) / (uint64_t)pg * (uint64_t)pg;
    if (b > a) madvise((void *)(m->data + a), b - a, MADV_DONTNEED);
}

qx_status qx_read_file(const char *path, char **out, size_t *out_len, qx_err *e) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return qx_fail(e, errno == ENOENT ? QX_ENOTFOUND : QX_EIO, "%s: %s", path, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    if (!buf) { fclose(f); return qx_fail(e, QX_ENOMEM, "%s: out of memory", path); }
    for (;;) {
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (len < cap) break;
        char *nb = realloc(buf, cap * 2 + 1);
        if (!nb) { free(buf); fclose(f); return qx_fail(e, QX_ENOMEM, "%s: out of memory", path); }
        buf = nb; cap *= 2;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) { free(buf); return qx_fail(e, QX_EIO, "%s: read error", path); }
    buf[len] = 0;
    *out = buf;
    if (out_len) *out_len = len;
    return QX_OK;
}

double qx_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

uint64_t qx_peak_rss_bytes(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    uint64_t kb = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmHWM:", 6) == 0) { kb = strtoull(line + 6, NULL, 10); break; }
    }
    fclose(f);
    return kb * 1024;
}

int qx_default_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

bool qx_path_join(char *buf, size_t cap, const char *dir, const char *name) {
    size_t dl = strlen(dir);
    int n = snprintf(buf, cap, "%s%s%s", dir, (dl && dir[dl - 1] == '/') ? "" : "/", name);
    return n >= 0 && (size_t)n < cap;
}

bool qx_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

bool qx_ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

void qx_progress_begin(qx_progress *p, FILE *out, const char *label, uint64_t total, const char *unit) {
    memset(p, 0, sizeof *p);
    p->out = out;
    p->tty = out && isatty(fileno(out));
    p->t0 = p->last = qx_now();
    p->interval = p->tty ? 0.2 : 5.0;
    snprintf(p->label, sizeof p->label, "%s", label);
    p->total = total;
    p->unit = unit ? unit : "items";
}

static void progress_line(qx_progress *p, uint64_t done, const char *what, bool final) {
    double t = qx_now() - p->t0;
    double rate = t > 0 ? (double)done / t : 0;
    double pct = p->total ? 100.0 * (double)done / (double)p->total : 100.0;
    double eta = (rate > 0 && p->total > done) ? (double)(p->total - done) / rate : 0;
    char rs[48];
    if (strcmp(p->unit, "B") == 0) snprintf(rs, sizeof rs, "%.1f MB/s", rate / 1e6);
    else snprintf(rs, sizeof rs, "%.1f %s/s", rate, p->unit);
    fprintf(p->out, "%s%s %5.1f%%  %s  %s %.0fs  %s%s",
            p->tty ? "\r\033[K" : "", p->label, pct, rs, final ? "elapsed" : "ETA",
            final ? t : eta, what ? what : "", (p->tty && !final) ? "" : "\n");
    fflush(p->out);
}

void qx_progress_update(qx_progress *p, uint64_t done, const char *what) {
    if (!p || !p->out) return;
    double now = qx_now();
    if (now - p->last < p->interval) return;
    p->last = now;
    progress_line(p, done, what, false);
}

void qx_progress_end(qx_progress *p, uint64_t done) {
    if (!p || !p->out) return;
    progress_line(p, done, "", true);
}
