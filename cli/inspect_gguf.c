/* cli/inspect_gguf.c — `qforge inspect FILE.gguf [--json] [--tensors]`: the container
 * (version, alignment, sizes), every metadata pair (arrays shortened to their first items),
 * a per-type summary, and with --tensors each tensor's type, shape, bytes and bits per
 * weight.  --json prints one object with stable keys:
 *   file, file_size, version, alignment, data_offset, offsets_canonical, n_kv, n_tensors,
 *   n_params, tensor_bytes, bits_per_weight,
 *   metadata: [{key, type, value} | {key, type:"array", elem, n, values (first 16), truncated}],
 *   types: {TYPE: {n_tensors, n_params, bytes, bits_per_weight}},
 *   tensors (with --tensors): [{name, type, shape, n_elems, bytes, offset, bits_per_weight}]
 * u64 values above 2^63-1 are JSON strings; non-finite floats are null. */
#include "cli.h"
#include "formats/formats.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define ARR_SHOW_TEXT 6
#define ARR_SHOW_JSON 16
#define STR_SHOW_TEXT 72

static double bpw(uint64_t bytes, uint64_t elems) { return elems ? 8.0 * (double)bytes / (double)elems : 0.0; }

/* Prints s (len bytes) quoted, control characters escaped, cut at max bytes. */
static void print_str(const char *s, uint64_t len, uint64_t max) {
    putchar('"');
    for (uint64_t i = 0; i < len && i < max; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c == '\n') fputs("\\n", stdout);
        else if (c < 32 || c == 127) printf("\\x%02x", c);
        else putchar(c);
    }
    putchar('"');
    if (len > max) printf("...(%llu bytes)", (unsigned long long)len);
}

static void print_scalar(gf_type t, const void *p) {
    gf_scalar v;
    memset(&v, 0, sizeof v);
    memcpy(&v, p, gf_type_size(t));
    switch (t) {
    case GF_U8: printf("%u", v.u8); break;
    case GF_I8: printf("%d", v.i8); break;
    case GF_U16: printf("%u", v.u16); break;
    case GF_I16: printf("%d", v.i16); break;
    case GF_U32: printf("%u", v.u32); break;
    case GF_I32: printf("%d", v.i32); break;
    case GF_F32: printf("%.9g", (double)v.f32); break;
    case GF_BOOL: fputs(v.b ? "true" : "false", stdout); break;
    case GF_U64: printf("%llu", (unsigned long long)v.u64); break;
    case GF_I64: printf("%lld", (long long)v.i64); break;
    case GF_F64: printf("%.17g", v.f64); break;
    default: fputs("?", stdout);
    }
}

static void print_kv_text(const gf_kv *kv) {
    printf("  %-44s ", kv->key);
    if (kv->type == GF_STRING) { printf("%-8s ", "string"); print_str(kv->str, kv->str_len, STR_SHOW_TEXT); }
    else if (kv->type != GF_ARRAY) { printf("%-8s ", gf_type_name(kv->type)); print_scalar(kv->type, &kv->v); }
    else {
        char ty[32];
        snprintf(ty, sizeof ty, "[%s x %llu]", gf_type_name(kv->arr_type), (unsigned long long)kv->n);
        printf("%-8s [", ty);
        size_t es = gf_type_size(kv->arr_type);
        for (uint64_t i = 0; i < kv->n && i < ARR_SHOW_TEXT; i++) {
            if (i) fputs(", ", stdout);
            if (kv->arr_type == GF_STRING) print_str(kv->strs[i], kv->str_lens[i], 32);
            else print_scalar(kv->arr_type, (const uint8_t *)kv->arr + i * es);
        }
        if (kv->n > ARR_SHOW_TEXT) fputs(", ...", stdout);
        putchar(']');
    }
    putchar('\n');
}

static json_t *json_u64(uint64_t v) {
    if (v <= (uint64_t)INT64_MAX) return json_integer((json_int_t)v);
    char b[24];
    snprintf(b, sizeof b, "%llu", (unsigned long long)v);
    return json_string(b);
}

static json_t *json_num(double d) { return isfinite(d) ? json_real(d) : json_null(); }

static json_t *json_scalar(gf_type t, const void *p) {
    gf_scalar v;
    memset(&v, 0, sizeof v);
    memcpy(&v, p, gf_type_size(t));
    switch (t) {
    case GF_U8: return json_integer(v.u8);
    case GF_I8: return json_integer(v.i8);
    case GF_U16: return json_integer(v.u16);
    case GF_I16: return json_integer(v.i16);
    case GF_U32: return json_integer(v.u32);
    case GF_I32: return json_integer(v.i32);
    case GF_F32: return json_num(v.f32);
    case GF_BOOL: return json_boolean(v.b);
    case GF_U64: return json_u64(v.u64);
    case GF_I64: return json_integer(v.i64);
    case GF_F64: return json_num(v.f64);
    default: return json_null();
    }
}

static json_t *json_kv(const gf_kv *kv) {
    json_t *o = json_object();
    json_object_set_new(o, "key", json_string(kv->key));
    json_object_set_new(o, "type", json_string(gf_type_name(kv->type)));
    if (kv->type == GF_STRING) {
        json_object_set_new(o, "value", json_stringn(kv->str, (size_t)kv->str_len));
        return o;
    }
    if (kv->type != GF_ARRAY) {
        json_object_set_new(o, "value", json_scalar(kv->type, &kv->v));
        return o;
    }
    json_object_set_new(o, "elem", json_string(gf_type_name(kv->arr_type)));
    json_object_set_new(o, "n", json_u64(kv->n));
    json_t *a = json_array();
    size_t es = gf_type_size(kv->arr_type);
    for (uint64_t i = 0; i < kv->n && i < ARR_SHOW_JSON; i++) {
        if (kv->arr_type == GF_STRING) json_array_append_new(a, json_stringn(kv->strs[i], (size_t)kv->str_lens[i]));
        else json_array_append_new(a, json_scalar(kv->arr_type, (const uint8_t *)kv->arr + i * es));
    }
    json_object_set_new(o, "values", a);
    json_object_set_new(o, "truncated", json_boolean(kv->n > ARR_SHOW_JSON));
    return o;
}

typedef struct { uint64_t n, params, bytes; } type_sum;

static void shape_str(const gf_tensor *t, char *b, size_t n) {
    int nd = t->n_dims ? t->n_dims : 1;
    size_t k = (size_t)snprintf(b, n, "[");
    for (int d = 0; d < nd && k < n; d++) k += (size_t)snprintf(b + k, n - k, "%s%lld", d ? ", " : "", (long long)t->ne[d]);
    if (k < n) snprintf(b + k, n - k, "]");
}

int cli_inspect_gguf(const char *path, bool json, bool tensors) {
    qx_err e = {0};
    gf_file *f;
    if (gf_open(&f, path, &e) != QX_OK) return cli_fail(&e);
    type_sum ts[QT_GGUF_COUNT];
    memset(ts, 0, sizeof ts);
    uint64_t params = 0, bytes = 0;
    for (size_t i = 0; i < gf_tensor_count(f); i++) {
        const gf_tensor *t = gf_tensor_at(f, i);
        ts[t->type].n++;
        ts[t->type].params += t->n_elems;
        ts[t->type].bytes += t->nbytes;
        params += t->n_elems;
        bytes += t->nbytes;
    }
    if (json) {
        json_t *o = json_object();
        json_object_set_new(o, "file", json_string(path));
        json_object_set_new(o, "file_size", json_u64(gf_file_size(f)));
        if (gf_split_count(f) > 1) {
            json_t *sf = json_array();
            for (int k = 0; k < gf_split_count(f); k++) {
                json_t *x = json_object();
                json_object_set_new(x, "path", json_string(gf_split_path(f, k)));
                json_object_set_new(x, "bytes", json_u64(gf_split_file_size(f, k)));
                json_array_append_new(sf, x);
            }
            json_object_set_new(o, "split_files", sf);
        }
        json_object_set_new(o, "version", json_integer(gf_version(f)));
        json_object_set_new(o, "alignment", json_integer(gf_alignment(f)));
        json_object_set_new(o, "data_offset", json_u64(gf_data_offset(f)));
        json_object_set_new(o, "offsets_canonical", json_boolean(gf_offsets_canonical(f)));
        json_object_set_new(o, "n_kv", json_u64(gf_kv_count(f)));
        json_object_set_new(o, "n_tensors", json_u64(gf_tensor_count(f)));
        json_object_set_new(o, "n_params", json_u64(params));
        json_object_set_new(o, "tensor_bytes", json_u64(bytes));
        json_object_set_new(o, "bits_per_weight", json_num(bpw(bytes, params)));
        json_t *md = json_array();
        for (size_t i = 0; i < gf_kv_count(f); i++) json_array_append_new(md, json_kv(gf_kv_at(f, i)));
        json_object_set_new(o, "metadata", md);
        json_t *ty = json_object();
        for (int t = 0; t < QT_GGUF_COUNT; t++) {
            if (!ts[t].n) continue;
            json_t *x = json_object();
            json_object_set_new(x, "n_tensors", json_u64(ts[t].n));
            json_object_set_new(x, "n_params", json_u64(ts[t].params));
            json_object_set_new(x, "bytes", json_u64(ts[t].bytes));
            json_object_set_new(x, "bits_per_weight", json_num(bpw(ts[t].bytes, ts[t].params)));
            json_object_set_new(ty, qt_type_name((qt_type)t), x);
        }
        json_object_set_new(o, "types", ty);
        if (tensors) {
            json_t *ta = json_array();
            for (size_t i = 0; i < gf_tensor_count(f); i++) {
                const gf_tensor *t = gf_tensor_at(f, i);
                json_t *x = json_object(), *sh = json_array();
                json_object_set_new(x, "name", json_string(t->name));
                json_object_set_new(x, "type", json_string(qt_type_name(t->type)));
                for (int d = 0; d < (t->n_dims ? t->n_dims : 1); d++) json_array_append_new(sh, json_integer(t->ne[d]));
                json_object_set_new(x, "shape", sh);
                json_object_set_new(x, "n_elems", json_u64(t->n_elems));
                json_object_set_new(x, "bytes", json_u64(t->nbytes));
                json_object_set_new(x, "offset", json_u64(t->file_offset));
                if (gf_split_count(f) > 1) json_object_set_new(x, "split", json_integer(t->split));
                json_object_set_new(x, "bits_per_weight", json_num(bpw(t->nbytes, t->n_elems)));
                json_array_append_new(ta, x);
            }
            json_object_set_new(o, "tensors", ta);
        }
        json_dumpf(o, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
        putchar('\n');
        json_decref(o);
        gf_close(f);
        return 0;
    }
    printf("%s: GGUF v%u, %llu bytes, alignment %u, data at %llu%s\n", path, gf_version(f),
           (unsigned long long)gf_file_size(f), gf_alignment(f), (unsigned long long)gf_data_offset(f),
           gf_offsets_canonical(f) ? "" : " (offsets NOT in llama.cpp's packed order)");
    if (gf_split_count(f) > 1) {
        printf("split set of %d files (metadata from the first; offsets are within each file):\n", gf_split_count(f));
        for (int k = 0; k < gf_split_count(f); k++) {
            size_t nt = 0;
            for (size_t i = 0; i < gf_tensor_count(f); i++) nt += gf_tensor_at(f, i)->split == k;
            printf("  %s  %zu tensors, %llu bytes\n", gf_split_path(f, k), nt, (unsigned long long)gf_split_file_size(f, k));
        }
    }
    printf("metadata: %zu keys\n", gf_kv_count(f));
    for (size_t i = 0; i < gf_kv_count(f); i++) print_kv_text(gf_kv_at(f, i));
    printf("tensors: %zu, %llu parameters, %llu bytes, %.4f bits per weight\n", gf_tensor_count(f),
           (unsigned long long)params, (unsigned long long)bytes, bpw(bytes, params));
    printf("  %-8s %8s %16s %16s %8s\n", "type", "tensors", "params", "bytes", "bpw");
    for (int t = 0; t < QT_GGUF_COUNT; t++)
        if (ts[t].n)
            printf("  %-8s %8llu %16llu %16llu %8.4f\n", qt_type_name((qt_type)t), (unsigned long long)ts[t].n,
                   (unsigned long long)ts[t].params, (unsigned long long)ts[t].bytes, bpw(ts[t].bytes, ts[t].params));
    if (tensors) {
        printf("  %-48s %-7s %-28s %14s %8s %14s\n", "name", "type", "shape", "bytes", "bpw", "offset");
        for (size_t i = 0; i < gf_tensor_count(f); i++) {
            const gf_tensor *t = gf_tensor_at(f, i);
            char sh[96];
            shape_str(t, sh, sizeof sh);
            printf("  %-48s %-7s %-28s %14llu %8.4f %14llu\n", t->name, qt_type_name(t->type), sh,
                   (unsigned long long)t->nbytes, bpw(t->nbytes, t->n_elems), (unsigned long long)t->file_offset);
        }
    }
    gf_close(f);
    return 0;
}
