/* common/lock.c — one writer per output: an exclusive flock(2) on the sidecar "<path>.lock",
 * held for the whole write (contract and races in qx.h above qx_lock).  The sidecar's one line
 * of text says who holds it: "pid P on HOST since YYYY-MM-DDTHH:MM:SSZ: HOLDER".  It is
 * information only: the lock is the flock, never the file's existence or content. */
#include "qx.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define HOLDER_MAX 200   /* bytes of holder text kept in the sidecar and quoted in errors */
#define LOCK_TRIES 16    /* re-opens after losing a race with a releasing holder */

/* The sidecar's first line (at most cap-1 bytes), "" when empty or unreadable: a holder
 * that has locked but not yet written its line reads as unknown. */
static void read_holder(int fd, char *buf, size_t cap) {
    ssize_t n = pread(fd, buf, cap - 1, 0);
    buf[n > 0 ? n : 0] = 0;
    buf[strcspn(buf, "\n")] = 0;
}

static void write_holder(int fd, const char *holder) {
    char host[64] = "?", when[32] = "?", line[HOLDER_MAX + 160];
    if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "?");
    host[sizeof host - 1] = 0;
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm)) strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    int n = snprintf(line, sizeof line, "pid %ld on %s since %s: %.*s\n", (long)getpid(), host, when, HOLDER_MAX,
                     holder && *holder ? holder : "qforge");
    /* Best effort: the lock is already held; a sidecar we cannot fill only makes another
     * writer's message say "holder unknown". */
    if (n < 0 || ftruncate(fd, 0) != 0) return;
    ssize_t w = pwrite(fd, line, strlen(line), 0);
    (void)w;
}

static bool same_file(int fd, const char *path) {
    struct stat a, b;
    return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

qx_status qx_lock_acquire(qx_lock *l, const char *path, const char *holder, qx_err *e) {
    l->fd = -1;
    l->path = NULL;
    size_t len = strlen(path);
    char *lp = malloc(len + 6);
    if (!lp) return qx_fail(e, QX_ENOMEM, "%s: out of memory for its lock", path);
    memcpy(lp, path, len);
    memcpy(lp + len, ".lock", 6);
    for (int t = 0; t < LOCK_TRIES; t++) {
        int fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) {
            qx_status s = qx_fail(e, errno == ENOENT ? QX_ENOTFOUND : QX_EIO, "cannot create the lock file %s: %s", lp, strerror(errno));
            free(lp);
            return s;
        }
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            int er = errno;
            qx_status s;
            if (er == EWOULDBLOCK) {
                char who[HOLDER_MAX + 160];
                read_holder(fd, who, sizeof who);
                s = qx_fail(e, QX_EBUSY, "%s: another writer holds its lock %s (%s); not touched", path, lp,
                            who[0] ? who : "holder unknown");
            } else if (er == ENOSYS || er == EOPNOTSUPP || er == ENOLCK) {
                s = qx_fail(e, QX_EUNSUPPORTED, "%s: cannot lock %s: %s (the file system does not support flock)", path, lp, strerror(er));
            } else {
                s = qx_fail(e, QX_EIO, "%s: cannot lock %s: %s", path, lp, strerror(er));
            }
            close(fd);
            free(lp);
            return s;
        }
        if (same_file(fd, lp)) {
            write_holder(fd, holder);
            l->fd = fd;
            l->path = lp;
            return QX_OK;
        }
        close(fd);   /* locked a sidecar its holder had just unlinked on release: open the new one */
    }
    qx_status s = qx_fail(e, QX_EBUSY, "%s: its lock %s changed hands %d times while being taken; try again", path, lp, LOCK_TRIES);
    free(lp);
    return s;
}

void qx_lock_release(qx_lock *l) {
    if (!l) return;
    if (l->fd >= 0) {
        unlink(l->path);   /* while still locked: see qx.h */
        close(l->fd);
    }
    free(l->path);
    l->fd = -1;
    l->path = NULL;
}
