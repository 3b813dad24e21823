/* tests/test_cli_inspect.c — `qforge inspect --json` and `qforge synth` through the binary:
 * the stable JSON keys and their values for synthetic checkpoints (tiny-v3 and the
 * full-size sparse 671B), counts computed independently from the safetensors headers. */
#include "tests/util/tu.h"
#include "formats/formats.h"

#include <jansson.h>

static json_t *inspect_json(const char *dir) {
    char out[700];
    snprintf(out, sizeof out, "%s/inspect.json", tu_tmpdir());
    int rc = tu_system("%s inspect '%s' --json > '%s'", tu_qforge(), dir, out);
    TU_CHECK(rc == 0, "inspect exit %d", rc);
    json_error_t je;
    json_t *j = json_load_file(out, 0, &je);
    TU_CHECK(j != NULL, "inspect --json output parses: %s", je.text);
    return j;
}

static int64_t geti(json_t *j, const char *k) { return json_integer_value(json_object_get(j, k)); }

int main(void) {
    char tiny[600], big[600];
    snprintf(tiny, sizeof tiny, "%s/tiny", tu_tmpdir());
    snprintf(big, sizeof big, "%s/v3", tu_tmpdir());
    TU_CHECK(tu_system("%s synth --preset tiny-v3 -o '%s' 2>/dev/null", tu_qforge(), tiny) == 0, "synth tiny-v3");
    TU_CHECK(tu_system("%s synth --preset v3-671b --sparse -o '%s' 2>/dev/null", tu_qforge(), big) == 0, "synth v3-671b");
    TU_CHECK(tu_system("%s synth --preset v3-671b -o '%s/x' 2>/dev/null", tu_qforge(), tu_tmpdir()) == 1, "full-size without --sparse refused");
    TU_CHECK(tu_system("%s synth --preset nope -o '%s/y' 2>/dev/null", tu_qforge(), tu_tmpdir()) == 1, "unknown preset refused");

    json_t *j = inspect_json(tiny);
    if (j) {
        /* independent count: walk the headers ourselves */
        qx_err e = {0};
        st_model *m;
        TU_OK(st_open(&m, tiny, &e), &e);
        uint64_t np = 0, nexp = 0, nmtp = 0;
        for (size_t i = 0; i < st_count(m); i++) {
            const st_tensor *t = st_at(m, i);
            if (qx_ends_with(t->name, "_scale_inv")) continue;
            np += t->n_elems;
            if (!strncmp(t->name, "model.layers.3.", 15)) nmtp += t->n_elems;      /* MTP = layer 3 */
            else if (strstr(t->name, ".experts.")) nexp += t->n_elems;
        }
        TU_CHECK(!strcmp(json_string_value(json_object_get(j, "architecture")), "DeepseekV3ForCausalLM"), "architecture");
        TU_CHECK(geti(j, "n_tensors") == (int64_t)st_count(m), "n_tensors");
        TU_CHECK(geti(j, "n_params") == (int64_t)np, "n_params %lld vs %llu", (long long)geti(j, "n_params"), (unsigned long long)np);
        TU_CHECK(geti(j, "n_params_no_mtp") == (int64_t)(np - nmtp), "n_params_no_mtp");
        /* 8 experts, top-2: active = non-expert + 2/8 of experts */
        TU_CHECK(geti(j, "n_params_active") == (int64_t)(np - nmtp - nexp + nexp / 4), "n_params_active");
        TU_CHECK(geti(j, "n_shards") == 3, "n_shards");
        uint64_t bytes = 0;
        for (int i = 0; i < st_shard_count(m); i++) bytes += st_shard_size(m, i);
        TU_CHECK(geti(j, "bytes") == (int64_t)bytes, "bytes");
        st_close(m);
        json_decref(j);
    }
    j = inspect_json(big);
    if (j) {
        TU_CHECK(geti(j, "n_tensors") == 91991, "671B n_tensors %lld", (long long)geti(j, "n_tensors"));
        TU_CHECK(geti(j, "n_params") == 684489845504ll, "671B n_params %lld", (long long)geti(j, "n_params"));
        TU_CHECK(geti(j, "n_params_no_mtp") == 671026419200ll, "671B without MTP %lld", (long long)geti(j, "n_params_no_mtp"));
        TU_CHECK(geti(j, "n_shards") == 163, "163 shards");
        json_t *d = json_object_get(json_object_get(j, "dtypes"), "F8_E4M3");
        TU_CHECK(d && json_integer_value(json_object_get(d, "tensors")) == 45808, "F8 tensor count");
        json_decref(j);
    }
    TU_CHECK(tu_system("%s inspect /nonexistent/dir 2>/dev/null", tu_qforge()) == 1, "missing path exits 1");
    TU_CHECK(tu_system("%s inspect 2>/dev/null", tu_qforge()) == 2, "no path is a usage error");
    return tu_done("test_cli_inspect");
}
