/* tests/util/tu.h — tiny test harness shared by every test binary.
 * A test binary exits 0 when all checks pass, 1 on any failure, and 77 only when a
 * needed external input (../shared) is absent — the runner reports 77 as SKIP, never PASS. */
#ifndef TU_H
#define TU_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "common/qx.h"

extern int tu_failures;
extern int tu_checks;

#define TU_CHECK(cond, ...) do { tu_checks++; if (!(cond)) { tu_failures++; \
    fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); fprintf(stderr, __VA_ARGS__); \
    fputc('\n', stderr); } } while (0)
#define TU_OK(status, err) do { qx_status tu_s_ = (status); tu_checks++; if (tu_s_ != QX_OK) { \
    tu_failures++; fprintf(stderr, "FAIL %s:%d: %s -> %s: %s\n", __FILE__, __LINE__, #status, \
    qx_status_name(tu_s_), (err)->msg); } } while (0)
/* Asserts a call fails with exactly `code` and that its message contains `needle`. */
#define TU_FAILS(status, err, code, needle) do { qx_status tu_s_ = (status); tu_checks++; \
    if (tu_s_ != (code) || !strstr((err)->msg, (needle))) { tu_failures++; \
    fprintf(stderr, "FAIL %s:%d: %s: want %s containing '%s', got %s: '%s'\n", __FILE__, __LINE__, \
    #status, qx_status_name(code), (needle), qx_status_name(tu_s_), (err)->msg); } } while (0)
#define TU_NEAR(a, b, tol, ...) TU_CHECK(fabs((double)(a) - (double)(b)) <= (tol), __VA_ARGS__)

/* Returns the shared fixtures dir (env QF_SHARED, else ../shared) or NULL if absent. */
const char *tu_shared_dir(void);
/* Builds "<shared>/<rel>" into a static buffer; NULL if shared is absent. */
const char *tu_shared_path(const char *rel);
/* Makes a fresh temporary directory (removed by tu_done unless QF_KEEP_TMP is set). */
const char *tu_tmpdir(void);
/* "<tu_tmpdir()>/<name>" in one of 8 rotating static buffers (valid until 8 more calls). */
const char *tu_tmp_path(const char *name);
/* Writes bytes to path; returns 0 on success. */
int tu_write_file(const char *path, const void *data, size_t n);
/* The whole file (malloc'd; free()) and its length in *n, or NULL (path NULL or unreadable). */
void *tu_read_file(const char *path, size_t *n);
/* Runs a shell command, returns its exit status (or -1). */
int tu_system(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Path of the qforge binary under test (env QF_BIN, else ./qforge). */
const char *tu_qforge(void);
/* sqrt(sum (a-b)^2 / sum b^2) in double: relative RMS error of a against reference b. */
double tu_rel_rms(const float *a, const float *b, size_t n);
/* Reads "<shared>/<rel>" holding exactly n little-endian f32 values (malloc'd; NULL if absent
 * or of another size). */
float *tu_load_shared_f32(const char *rel, size_t n);
/* Prints the summary, cleans up, returns the process exit code. */
int tu_done(const char *name);
/* True under the sanitizer build (`make test-asan` sets QF_QUICK=1): heavy tests then check
 * a bounded subset (fewer windows, fewer presets) so the instrumented suite stays fast; the
 * plain `make test` always runs the full set. */
int tu_quick(void);
/* OpenMP threads for what follows (1 vs N comparisons); no-op without OpenMP. */
void tu_set_threads(int n);
/* Exit code 77 with a reason when an input is missing. */
int tu_skip(const char *why);

#endif
