/* common/qx.h — the one public header of common/: status codes and the caller-owned
 * error record, checked arithmetic, file mapping, timing, peak RSS and a progress
 * reporter.  Nothing here prints except the progress reporter, which writes only to the
 * FILE* its owner hands it.  No global mutable state. */
#ifndef QX_H
#define QX_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdbool.h>

typedef enum {
    QX_OK = 0,
    QX_EINVAL,       /* bad argument or option value */
    QX_EIO,          /* open/read/write/mmap failed (errno text in msg) */
    QX_EFORMAT,      /* input file violates its format */
    QX_ENOMEM,
    QX_ENOTFOUND,    /* missing file, tensor, key */
    QX_EUNSUPPORTED, /* valid input we do not handle */
    QX_ESHAPE,       /* shape or dtype disagrees with what is required */
    QX_ETHRESHOLD,   /* a quality gate was crossed */
    QX_ENOSPC,       /* disk full or file size limit */
    QX_EBUSY,        /* another process holds the lock on an output (qx_lock_acquire) */
} qx_status;

/* Caller-owned error record: functions fill it when they return non-QX_OK. */
typedef struct {
    qx_status code;
    char msg[256];
} qx_err;

/* Fills e (if non-NULL) with code and a printf-formatted message; returns code. */
qx_status qx_fail(qx_err *e, qx_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void qx_err_clear(qx_err *e);
const char *qx_status_name(qx_status s);

#define QX_TRY(expr) do { qx_status qx_s_ = (expr); if (qx_s_ != QX_OK) return qx_s_; } while (0)

/* Checked size arithmetic: return false on overflow. */
static inline bool qx_mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool qx_add_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return !__builtin_add_overflow(a, b, out);
}
static inline uint64_t qx_pad(uint64_t n, uint64_t align) {
    return (n + align - 1) / align * align;
}

/* Read-only mapping of a whole file.  data is NULL for an empty file. */
typedef struct {
    const uint8_t *data;
    uint64_t size;
    int fd;
} qx_map;

qx_status qx_map_open(qx_map *m, const char *path, qx_err *e);
void qx_map_close(qx_map *m);
/* Tell the kernel the byte range [off, off+len) of a mapping is no longer needed. */
void qx_map_release(const qx_map *m, uint64_t off, uint64_t len);

/* Reads a whole small file into a malloc'd NUL-terminated buffer (free with free()). */
qx_status qx_read_file(const char *path, char **out, size_t *out_len, qx_err *e);

double qx_now(void);              /* monotonic seconds */
uint64_t qx_peak_rss_bytes(void); /* VmHWM of this process, 0 if unknown */
int qx_default_threads(void);

/* Path helpers: join dir and name into buf (returns false if it does not fit). */
bool qx_path_join(char *buf, size_t cap, const char *dir, const char *name);
bool qx_is_dir(const char *path);
bool qx_ends_with(const char *s, const char *suffix);

/* Progress reporter for long work.  Writes to `out` (normally stderr): a redrawn line on
 * a TTY, a plain line every `interval` seconds otherwise.  Not thread-safe: call update
 * from one thread (e.g. inside an omp critical or from the master). */
typedef struct {
    FILE *out;
    bool tty;
    double t0, last;
    double interval;
    char label[64];
    uint64_t total;      /* units of work (bytes, items, tokens) */
    const char *unit;    /* "B" gives MB/s, else "<unit>/s" */
} qx_progress;

void qx_progress_begin(qx_progress *p, FILE *out, const char *label, uint64_t total, const char *unit);
void qx_progress_update(qx_progress *p, uint64_t done, const char *what);
void qx_progress_end(qx_progress *p, uint64_t done);

/* ---- optional BLAS/LAPACK (common/blas.c) ----
 * OpenBLAS (libopenblas.so.0, Debian's libopenblas0) loaded at run time when present, set to
 * one thread per call (callers parallelize over independent blocks, so results do not depend
 * on the thread count).  GPTQ's products and factors use it: measured 7-12x our own kernels
 * (docs/gptq.md); without it the own kernels run.  QF_NO_BLAS=1 in the environment disables
 * it.  Row-major CBLAS enums as in cblas.h; LAPACK routines take column-major arrays. */
typedef struct {
    void (*sgemm)(int order, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb,
                  float beta, float *c, int ldc);
    void (*dpotrf)(const char *uplo, const int *n, double *a, const int *lda, int *info);
    void (*dtrtri)(const char *uplo, const char *diag, const int *n, double *a, const int *lda, int *info);
    const char *name;
} qx_blas;
enum { QX_CBLAS_ROW_MAJOR = 101, QX_CBLAS_NO_TRANS = 111, QX_CBLAS_TRANS = 112 };
/* The loaded library, or NULL (absent, or QF_NO_BLAS set).  Thread-safe. */
const qx_blas *qx_blas_get(void);

/* A shard of a calibration pass (`--shard I/N`, DESIGN.md decision 9): shard `index` of
 * `count` takes the contiguous units [first, first + n) of the whole run's `units` (windows,
 * chunks or tensors), first = floor(index * units / count).  count 0 means a whole run.
 * model and input identify the run so that `qforge merge` can refuse shards of another one. */
#define QX_SHARD_NAME 256
typedef struct {
    int32_t index, count;
    int64_t units, first, n;
    uint64_t input;               /* XXH3-64 of the whole run's input (token windows) */
    char model[QX_SHARD_NAME];    /* the model's file or directory name, without its path */
} qx_shard;
/* Parses "I/N" (0 <= I < N <= 65536) into s->index and s->count; false when malformed. */
bool qx_shard_parse(const char *text, qx_shard *s);
/* Sets s->units and s's range for a run of `units` units (the whole run when s->count is 0). */
void qx_shard_range(qx_shard *s, int64_t units);
/* Copies the last component of path (trailing '/' ignored) into s->model. */
void qx_shard_set_model(qx_shard *s, const char *path);

/* The version of this build: `git describe --always --dirty` of the tree it was built from,
 * else the VERSION file, else "unknown" (the Makefile passes it; common/version.c).  Static
 * storage; written into every GGUF qforge makes (qforge.version) and shown by --version. */
const char *qx_version(void);

/* One writer per output (common/lock.c).  An exclusive flock(2) on the sidecar file
 * "<path>.lock", taken before anything of the output is written and held until the output is
 * in place: a second writer of the same path gets QX_EBUSY at once, with a message naming
 * path and the holder recorded in the sidecar (pid, host, start time, `holder` text).  The
 * kernel drops the lock when the holder exits or is killed, so a lock is never stale; a
 * sidecar left by a killed run is taken over.  qx_lock_release unlinks the sidecar while still
 * holding the lock, and qx_lock_acquire re-checks after locking that the sidecar path still
 * names the inode it locked (else it retries): so unlinking is race-free as long as nobody
 * deletes a held sidecar by hand.  Advisory: it binds qforge processes (on NFS too, where
 * Linux maps flock to POSIX locks), not other programs.  A file system without locks (e.g.
 * Lustre mounted without -o flock) gives QX_EUNSUPPORTED naming the sidecar. */
typedef struct {
    int fd;        /* the locked sidecar, -1 when not held */
    char *path;    /* "<path>.lock" (malloc'd) */
} qx_lock;

/* Takes the lock of the output `path` into *l (initialized here whatever the result; on
 * failure nothing is held and nothing needs releasing).  holder: a short description of the
 * writer for others' error messages (e.g. the command line); may be NULL. */
qx_status qx_lock_acquire(qx_lock *l, const char *path, const char *holder, qx_err *e);
/* Releases a lock taken by qx_lock_acquire and removes its sidecar; no-op when not held. */
void qx_lock_release(qx_lock *l);

#endif
