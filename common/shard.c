/* common/shard.c — `--shard I/N`: which contiguous units a shard of a calibration pass takes
 * (contract in common/qx.h).  Contiguous ranges keep every shard's windows in the whole
 * run's order, so a merge that concatenates shards in index order sees the same sequence. */
#include "qx.h"

#include <stdlib.h>
#include <string.h>

bool qx_shard_parse(const char *text, qx_shard *s) {
    char *end;
    long i = strtol(text, &end, 10);
    if (end == text || *end != '/' || text[0] == '-' || text[0] == '+') return false;
    const char *d = end + 1;
    long n = strtol(d, &end, 10);
    if (end == d || *end || d[0] == '-' || d[0] == '+') return false;
    if (n < 1 || n > 65536 || i < 0 || i >= n) return false;
    s->index = (int32_t)i;
    s->count = (int32_t)n;
    return true;
}

void qx_shard_range(qx_shard *s, int64_t units) {
    s->units = units;
    if (s->count <= 0) { s->first = 0; s->n = units; return; }
    /* floor(index * units / count) without overflow for any units < 2^62 */
    int64_t q = units / s->count, r = units % s->count;
    int64_t a = q * s->index + r * s->index / s->count;
    int64_t b = q * (s->index + 1) + r * (s->index + 1) / s->count;
    s->first = a;
    s->n = b - a;
}

void qx_shard_set_model(qx_shard *s, const char *path) {
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/') len--;
    size_t start = len;
    while (start > 0 && path[start - 1] != '/') start--;
    size_t n = len - start < QX_SHARD_NAME - 1 ? len - start : QX_SHARD_NAME - 1;
    memcpy(s->model, path + start, n);
    s->model[n] = 0;
}
