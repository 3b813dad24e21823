/* cli/cmd_verify.c — `qforge verify FILE.gguf`: re-validates the whole container (the strict
 * reader), checks that tensor offsets are packed the way llama.cpp requires, and re-hashes
 * every tensor against the XXH3-64 checksums qforge stores under qforge.tensor_xxh3.
 * Exit 0 when all holds, 1 with one line naming the file and the first bad tensor, 2 on
 * usage errors.  A file without checksums (not written by qforge) passes on structure alone
 * and says so, unless --require-checksums is given. */
#include "cli.h"
#include "formats/formats.h"

#include <stdio.h>
#include <string.h>

static const char *verify_help =
    "usage: qforge verify FILE.gguf [--require-checksums] [--quiet]\n"
    "  (a split set by its first file, PREFIX-00001-of-0000N.gguf: every file is checked)\n"
    "  re-checks the GGUF structure and every tensor's XXH3-64 checksum (qforge.tensor_xxh3)\n"
    "  --require-checksums  fail when the file carries no checksums\n"
    "  --quiet              no progress, print only failures\n";

int cmd_verify(int argc, char **argv) {
    const char *path = NULL;
    bool require = false, quiet = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { fputs(verify_help, stdout); return 0; }
        else if (!strcmp(argv[i], "--require-checksums")) require = true;
        else if (!strcmp(argv[i], "--quiet") || !strcmp(argv[i], "-q")) quiet = true;
        else if (argv[i][0] == '-') return cli_usage_error("verify", "unknown option '%s'", argv[i]);
        else if (path) return cli_usage_error("verify", "one file at a time");
        else path = argv[i];
    }
    if (!path) return cli_usage_error("verify", "missing FILE.gguf");
    qx_err e = {0};
    gf_file *f;
    if (gf_open(&f, path, &e) != QX_OK) return cli_fail(&e);
    size_t n = gf_tensor_count(f);
    if (!gf_offsets_canonical(f)) {
        uint64_t expect = 0;
        int split = 0;
        for (size_t i = 0; i < n; i++) {
            const gf_tensor *t = gf_tensor_at(f, i);
            if (t->split != split) { split = t->split; expect = 0; }   /* each file of a set packs its own */
            if (t->offset != expect) {
                qx_fail(&e, QX_EFORMAT, "%s: tensor '%s': offset %llu, llama.cpp requires %llu (packed in info order)",
                        gf_split_path(f, t->split), t->name, (unsigned long long)t->offset, (unsigned long long)expect);
                break;
            }
            expect += qx_pad(t->nbytes, gf_alignment(f));
        }
        gf_close(f);
        return cli_fail(&e);
    }
    const void *arr;
    uint64_t na;
    qx_status s = gf_get_arr(f, GF_KEY_TENSOR_XXH3, GF_U64, &arr, &na, &e);
    if (s == QX_ENOTFOUND) {
        gf_close(f);
        if (require) {
            qx_fail(&e, QX_ENOTFOUND, "%s: no per-tensor checksums (%s absent)", path, GF_KEY_TENSOR_XXH3);
            return cli_fail(&e);
        }
        if (!quiet) printf("%s: structure ok (%zu tensors); no qforge checksums to check\n", path, n);
        return 0;
    }
    if (s == QX_OK && na != n)
        s = qx_fail(&e, QX_EFORMAT, "%s: %s has %llu entries for %zu tensors", path, GF_KEY_TENSOR_XXH3, (unsigned long long)na, n);
    if (s != QX_OK) { gf_close(f); return cli_fail(&e); }
    const uint64_t *want = arr;
    uint64_t total = 0, done = 0;
    for (size_t i = 0; i < n; i++) total += gf_tensor_at(f, i)->nbytes;
    qx_progress p;
    qx_progress_begin(&p, quiet ? NULL : stderr, "verify", total, "B");
    for (size_t i = 0; i < n; i++) {
        const gf_tensor *t = gf_tensor_at(f, i);
        uint64_t h = gf_checksum(t->data ? (const void *)t->data : (const void *)"", t->nbytes);
        gf_release(f, t);
        if (h != want[i]) {
            qx_fail(&e, QX_EFORMAT, "%s: tensor '%s' (%zu of %zu): checksum mismatch (xxh3 %016llx, stored %016llx)", gf_split_path(f, t->split),
                    t->name, i + 1, n, (unsigned long long)h, (unsigned long long)want[i]);
            gf_close(f);
            return cli_fail(&e);
        }
        done += t->nbytes;
        qx_progress_update(&p, done, t->name);
    }
    if (!quiet) qx_progress_end(&p, done);
    if (!quiet && gf_split_count(f) > 1)
        printf("%s: ok (split set of %d files, %zu tensors, %llu bytes, checksums match)\n", path, gf_split_count(f), n,
               (unsigned long long)total);
    else if (!quiet) printf("%s: ok (%zu tensors, %llu bytes, checksums match)\n", path, n, (unsigned long long)total);
    gf_close(f);
    return 0;
}
