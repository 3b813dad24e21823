/* tests/test_convert_errors.c — `qforge convert` on damaged checkpoints and hostile
 * environments: each case must exit non-zero with one clear message naming the fault, and
 * must never leave a complete-looking OUT file.  Cases: missing shard, tensor missing from the
 * index, missing and wrong-shaped _scale_inv, dtype and shape not matching config.json,
 * unsupported architecture, output directory not writable, file size limit (ulimit -f),
 * kill -9 mid-run (then --resume gives the bytes of an uninterrupted run), bad options.
 * Damaged copies are made from `qforge synth --preset tiny-v3` checkpoints. */
#include "tests/util/tu.h"
#include "formats/formats.h"

#include <jansson.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp[1024];
static int case_no;

static void fresh(char *dir, size_t cap) {
    snprintf(dir, cap, "%s/ck%d", tmp, ++case_no);
    qx_err e;
    TU_OK(st_synth("tiny-v3", dir, 11, false, 0, &e), &e);
}

static bool exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

/* Runs qforge convert DIR -o OUT EXTRA (stderr to a file); returns the exit code and checks
 * that no OUT exists afterwards and that stderr names the fault. */
static int run_bad(const char *dir, const char *out, const char *extra, const char *needle, const char *what) {
    char log[1200];
    snprintf(log, sizeof log, "%s/err%d.log", tmp, case_no);
    int rc = tu_system("%s convert '%s' -o '%s' --type Q4_K_M --quiet %s 2> '%s' > /dev/null", tu_qforge(), dir, out, extra, log);
    TU_CHECK(rc != 0, "%s: exit code 0", what);
    TU_CHECK(!exists(out), "%s: %s exists after a failed run", what, out);
    char *txt = NULL;
    size_t n = 0;
    qx_err e;
    if (qx_read_file(log, &txt, &n, &e) == QX_OK) {
        TU_CHECK(strstr(txt, needle) != NULL, "%s: stderr lacks '%s': %s", what, needle, txt);
        TU_CHECK(strstr(txt, "error") != NULL, "%s: no error line: %s", what, txt);
        free(txt);
    } else {
        TU_CHECK(false, "%s: no stderr log", what);
    }
    return rc;
}

/* Rewrites one shard of dir: drops `drop`, or gives `bad` a wrong shape / integer dtype. */
static void rewrite_shard(const char *shard, const char *drop, const char *bad_shape, const char *bad_dtype) {
    st_model *m;
    st_writer *w;
    qx_err e;
    TU_OK(st_open(&m, shard, &e), &e);
    TU_OK(st_writer_create(&w, &e), &e);
    if (!m || !w) return;
    for (size_t i = 0; i < st_count(m); i++) {
        const st_tensor *t = st_at(m, i);
        if (drop && !strcmp(t->name, drop)) continue;
        if (bad_shape && !strcmp(t->name, bad_shape)) {
            int64_t sh[2] = {1, 1};
            float one = 1;
            TU_OK(st_writer_add(w, t->name, ST_F32, 2, sh, &one, 4, &e), &e);
            continue;
        }
        st_dtype dt = bad_dtype && !strcmp(t->name, bad_dtype) ? ST_I8 : t->dtype;
        TU_OK(st_writer_add(w, t->name, dt, t->n_dims, t->shape, t->data, t->nbytes, &e), &e);
    }
    char tmpf[1300];
    snprintf(tmpf, sizeof tmpf, "%s.new", shard);
    TU_OK(st_writer_write(w, tmpf, &e), &e);
    st_writer_free(w);
    st_close(m);
    TU_CHECK(rename(tmpf, shard) == 0, "rename %s", tmpf);
}

/* Shard file holding `name` according to the index. */
static const char *shard_of(const char *dir, const char *name, char *buf, size_t cap) {
    char p[1200];
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    json_error_t je;
    json_t *idx = json_load_file(p, 0, &je);
    const char *f = json_string_value(json_object_get(json_object_get(idx, "weight_map"), name));
    snprintf(buf, cap, "%s/%s", dir, f ? f : "?");
    json_decref(idx);
    return buf;
}

static void index_drop(const char *dir, const char *name) {
    char p[1200];
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    json_error_t je;
    json_t *idx = json_load_file(p, 0, &je);
    json_object_del(json_object_get(idx, "weight_map"), name);
    TU_CHECK(json_dump_file(idx, p, JSON_INDENT(1)) == 0, "writing %s", p);
    json_decref(idx);
}

static void config_set(const char *dir, const char *key, json_t *v) {
    char p[1200];
    snprintf(p, sizeof p, "%s/config.json", dir);
    json_error_t je;
    json_t *c = json_load_file(p, 0, &je);
    json_object_set_new(c, key, v);
    TU_CHECK(json_dump_file(c, p, JSON_INDENT(1)) == 0, "writing %s", p);
    json_decref(c);
}

#define W_SCALE "model.layers.1.self_attn.q_b_proj.weight_scale_inv"

int main(void) {
    snprintf(tmp, sizeof tmp, "%s", tu_tmpdir());
    if (access(tu_qforge(), X_OK) != 0) return tu_skip("qforge binary not built (set QF_BIN)");
    char dir[1100], out[1200], sh[1300];
    snprintf(out, sizeof out, "%s/out.gguf", tmp);

    /* missing shard */
    fresh(dir, sizeof dir);
    shard_of(dir, "model.layers.0.input_layernorm.weight", sh, sizeof sh);
    unlink(sh);
    run_bad(dir, out, "", strrchr(sh, '/') + 1, "missing shard");

    /* tensor missing from the index */
    fresh(dir, sizeof dir);
    index_drop(dir, "model.layers.1.mlp.experts.3.up_proj.weight");
    run_bad(dir, out, "", "model.layers.1.mlp.experts.3.up_proj.weight", "tensor missing from the index");

    /* missing _scale_inv (gone from shard and index) */
    fresh(dir, sizeof dir);
    shard_of(dir, W_SCALE, sh, sizeof sh);
    rewrite_shard(sh, W_SCALE, NULL, NULL);
    index_drop(dir, W_SCALE);
    run_bad(dir, out, "", "scale_inv", "missing _scale_inv");

    /* wrong-shaped _scale_inv */
    fresh(dir, sizeof dir);
    shard_of(dir, W_SCALE, sh, sizeof sh);
    rewrite_shard(sh, NULL, W_SCALE, NULL);
    run_bad(dir, out, "", "scale", "wrong-shaped _scale_inv");

    /* dtype not matching: an FP8 weight stored as I8 */
    fresh(dir, sizeof dir);
    shard_of(dir, "model.layers.0.mlp.up_proj.weight", sh, sizeof sh);
    rewrite_shard(sh, NULL, NULL, "model.layers.0.mlp.up_proj.weight");
    run_bad(dir, out, "", "model.layers.0.mlp.up_proj.weight", "integer dtype");

    /* shape not matching config.json */
    fresh(dir, sizeof dir);
    config_set(dir, "intermediate_size", json_integer(768));
    run_bad(dir, out, "", "config.json", "shape vs config.json");

    /* unsupported architecture */
    fresh(dir, sizeof dir);
    json_t *arr = json_array();
    json_array_append_new(arr, json_string("MistralForCausalLM"));
    config_set(dir, "architectures", arr);
    run_bad(dir, out, "", "MistralForCausalLM", "unsupported architecture");

    /* output directory not writable / missing */
    fresh(dir, sizeof dir);
    char bad_out[1300];
    snprintf(bad_out, sizeof bad_out, "%s/no-such-dir/x.gguf", tmp);
    run_bad(dir, bad_out, "", "no-such-dir", "output dir missing");
    if (geteuid() != 0) {
        char ro[1100];
        snprintf(ro, sizeof ro, "%s/ro", tmp);
        mkdir(ro, 0555);
        snprintf(bad_out, sizeof bad_out, "%s/x.gguf", ro);
        run_bad(dir, bad_out, "", "Permission denied", "output dir not writable");
    }

    /* bad options */
    run_bad(dir, out, "--type Q9_K", "Q9_K", "unknown preset");
    run_bad(dir, out, "--tensor-type 'attn_(=Q4_K'", "regular expression", "bad regex");
    run_bad(dir, out, "--type IQ2_XXS", "importance matrix", "IQ type without imatrix");
    run_bad(dir, out, "--imatrix /nonexistent.imatrix", "nonexistent", "missing imatrix file");

    /* file size limit (the shell's ulimit -f, in KiB): EFBIG is reported, no OUT */
    {
        char log[1200];
        snprintf(log, sizeof log, "%s/ulimit.log", tmp);
        int rc = tu_system("(ulimit -f 64; %s convert '%s' -o '%s' --type Q8_0 --quiet) 2> '%s' > /dev/null", tu_qforge(), dir, out, log);
        TU_CHECK(rc != 0, "ulimit -f: exit code 0");
        TU_CHECK(!exists(out), "ulimit -f: output exists");
        char *txt = NULL;
        size_t n;
        qx_err e;
        if (qx_read_file(log, &txt, &n, &e) == QX_OK) {
            TU_CHECK(strstr(txt, "File too large") || strstr(txt, "disk"), "ulimit -f: message: %s", txt);
            TU_CHECK(strchr(txt, '\n') == txt + strlen(txt) - 1, "ulimit -f: more than one line: %s", txt);
            free(txt);
        }
    }

    /* kill -9 mid-run, then --resume: same bytes as an uninterrupted run */
    {
        char ref[1200], part[1300], cmp[2600];
        snprintf(ref, sizeof ref, "%s/ref.gguf", tmp);
        snprintf(part, sizeof part, "%s.part", out);
        unlink(out);
        TU_CHECK(tu_system("%s convert '%s' -o '%s' --type Q4_K_M --quiet -t 2 > /dev/null 2>&1", tu_qforge(), dir, ref) == 0, "reference run");
        int rc = tu_system("QF_TEST_SIGKILL_AT_STOP=1 %s convert '%s' -o '%s' --type Q4_K_M --quiet -t 2 --max-items 30 > /dev/null 2>&1",
                           tu_qforge(), dir, out);
        TU_CHECK(rc == 128 + 9, "killed run: exit %d, want %d (SIGKILL)", rc, 128 + 9);
        TU_CHECK(!exists(out) && exists(part), "after kill -9: want only %s", part);
        rc = tu_system("%s convert '%s' -o '%s' --type Q4_K_M --quiet -t 1 --resume > /dev/null 2>&1", tu_qforge(), dir, out);
        TU_CHECK(rc == 0, "resume: exit %d", rc);
        snprintf(cmp, sizeof cmp, "cmp -s '%s' '%s'", ref, out);
        TU_CHECK(tu_system("%s", cmp) == 0, "resumed file differs from the uninterrupted run");
        TU_CHECK(tu_system("%s verify '%s' > /dev/null 2>&1", tu_qforge(), out) == 0, "qforge verify fails on the resumed file");
        TU_CHECK(!exists(part), ".part left after a successful resume");
    }
    return tu_done("test_convert_errors");
}
