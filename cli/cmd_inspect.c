/* cli/cmd_inspect.c — `qforge inspect PATH [--json] [--tensors]`: summary of an HF
 * checkpoint dir, a .safetensors file or a .gguf file. */
#include "cli.h"
#include "formats/formats.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *inspect_help =
    "usage: qforge inspect PATH [--json] [--tensors]\n"
    "  PATH       an HF checkpoint directory, a .safetensors file or a .gguf file\n"
    "  --json     machine-readable summary on stdout (stable keys: architecture, n_tensors,\n"
    "             n_params, n_params_active, n_params_no_mtp, bytes, n_shards, dtypes, config)\n"
    "  --tensors  also list every tensor (name, dtype, shape, bytes, shard)\n";

typedef struct {
    uint64_t n_params, n_active, n_no_mtp, n_expert, bytes;
    uint64_t dtype_count[ST_DTYPE_COUNT], dtype_bytes[ST_DTYPE_COUNT];
} st_summary;

/* Parts of a weight that are not parameters of their own: FP8 scale grids, and the three
 * stored parts of a pack-quantized INT4 weight (its logical X.weight carries the count). */
static bool is_scale(const char *name) {
    return qx_ends_with(name, "_scale_inv") || qx_ends_with(name, ".weight_packed") || qx_ends_with(name, ".weight_scale") ||
           qx_ends_with(name, ".weight_shape");
}

/* Layer index of "model.layers.N.*" (DeepSeek-V4: "layers.N.*"), or -1. */
static long layer_of(const char *name) {
    if (!strncmp(name, "layers.", 7)) return strtol(name + 7, NULL, 10);
    if (strncmp(name, "model.layers.", 13)) return -1;
    return strtol(name + 13, NULL, 10);
}

static void summarize(const st_model *m, const hf_config *cfg, bool have_cfg, st_summary *s) {
    memset(s, 0, sizeof *s);
    for (int i = 0; i < st_shard_count(m); i++) s->bytes += st_shard_size(m, i);
    for (size_t i = 0; i < st_count(m); i++) {
        const st_tensor *t = st_at(m, i);
        if (t->dtype != ST_I4_PACKED) {   /* logical INT4 weights are not stored tensors */
            s->dtype_count[t->dtype]++;
            s->dtype_bytes[t->dtype] += t->nbytes;
        }
        if (is_scale(t->name) || t->dtype == ST_F8_E8M0) continue;   /* FP8/FP4 scales (V4: `.scale` E8M0) */
        s->n_params += t->n_elems;
        long l = layer_of(t->name);
        bool mtp = (have_cfg && l >= cfg->n_layers) || !strncmp(t->name, "mtp.", 4);   /* V4's MTP block: mtp.N.* */
        if (!mtp) s->n_no_mtp += t->n_elems;
        if (strstr(t->name, ".mlp.experts.") || strstr(t->name, ".ffn.experts.")) { if (!mtp) s->n_expert += t->n_elems; }
    }
    s->n_active = s->n_no_mtp;
    if (have_cfg && cfg->n_routed_experts > 0 && s->n_expert) {
        s->n_active = s->n_no_mtp - s->n_expert +
                      (uint64_t)((double)s->n_expert * (double)cfg->n_experts_per_tok / (double)cfg->n_routed_experts + 0.5);
    }
}

static void print_shape(FILE *f, const st_tensor *t) {
    fputc('[', f);
    for (int d = 0; d < t->n_dims; d++) fprintf(f, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    fputc(']', f);
}

static json_t *config_json(const hf_config *c) {
    json_t *o = json_object();
    json_object_set_new(o, "vocab_size", json_integer(c->vocab_size));
    json_object_set_new(o, "hidden_size", json_integer(c->hidden_size));
    json_object_set_new(o, "n_layers", json_integer(c->n_layers));
    json_object_set_new(o, "n_heads", json_integer(c->n_heads));
    json_object_set_new(o, "n_kv_heads", json_integer(c->n_kv_heads));
    json_object_set_new(o, "intermediate_size", json_integer(c->intermediate_size));
    if (c->kv_lora_rank) {
        json_object_set_new(o, "q_lora_rank", json_integer(c->q_lora_rank));
        json_object_set_new(o, "kv_lora_rank", json_integer(c->kv_lora_rank));
        json_object_set_new(o, "qk_nope_head_dim", json_integer(c->qk_nope_head_dim));
        json_object_set_new(o, "qk_rope_head_dim", json_integer(c->qk_rope_head_dim));
        json_object_set_new(o, "v_head_dim", json_integer(c->v_head_dim));
        json_object_set_new(o, "n_routed_experts", json_integer(c->n_routed_experts));
        json_object_set_new(o, "n_shared_experts", json_integer(c->n_shared_experts));
        json_object_set_new(o, "n_experts_per_tok", json_integer(c->n_experts_per_tok));
        json_object_set_new(o, "moe_intermediate_size", json_integer(c->moe_intermediate_size));
        json_object_set_new(o, "n_group", json_integer(c->n_group));
        json_object_set_new(o, "topk_group", json_integer(c->topk_group));
        json_object_set_new(o, "first_k_dense_replace", json_integer(c->first_k_dense_replace));
        json_object_set_new(o, "num_nextn_predict_layers", json_integer(c->num_nextn_predict_layers));
        json_object_set_new(o, "scoring_func", json_string(c->scoring_func));
    }
    json_object_set_new(o, "rope_theta", json_real(c->rope_theta));
    json_object_set_new(o, "rope_scaling", json_string(c->rope_type));
    json_object_set_new(o, "fp8", json_boolean(c->fp8));
    return o;
}

static int inspect_safetensors(const char *path, bool as_json, bool tensors) {
    qx_err e = {0};
    st_model *m;
    if (st_open(&m, path, &e) != QX_OK) return cli_fail(&e);
    hf_config cfg;
    bool have_cfg = false;
    char cfgpath[4096];
    if (qx_path_join(cfgpath, sizeof cfgpath, st_model_dir(m), "config.json")) {
        qx_err ce = {0};
        qx_status cs = hf_config_load(st_model_dir(m), &cfg, &ce);
        if (cs == QX_OK) have_cfg = true;
        else if (cs != QX_ENOTFOUND) { st_close(m); return cli_fail(&ce); }
    }
    if (have_cfg) {
        qx_err ve = {0};
        if (hf_config_validate(&cfg, m, &ve) != QX_OK) fprintf(stderr, "qforge inspect: warning: %s\n", ve.msg);
    }
    st_summary s;
    summarize(m, &cfg, have_cfg, &s);
    if (as_json) {
        json_t *o = json_object();
        json_object_set_new(o, "format", json_string("safetensors"));
        json_object_set_new(o, "path", json_string(path));
        json_object_set_new(o, "architecture", json_string(have_cfg ? cfg.architecture : ""));
        json_object_set_new(o, "variant", json_string(have_cfg ? hf_variant(&cfg) : ""));
        json_object_set_new(o, "n_tensors", json_integer((json_int_t)st_count(m)));
        json_object_set_new(o, "n_params", json_integer((json_int_t)s.n_params));
        json_object_set_new(o, "n_params_no_mtp", json_integer((json_int_t)s.n_no_mtp));
        json_object_set_new(o, "n_params_active", json_integer((json_int_t)s.n_active));
        json_object_set_new(o, "n_params_experts", json_integer((json_int_t)s.n_expert));
        json_object_set_new(o, "bytes", json_integer((json_int_t)s.bytes));
        json_object_set_new(o, "n_shards", json_integer(st_shard_count(m)));
        json_t *d = json_object();
        for (int i = 0; i < ST_DTYPE_COUNT; i++) {
            if (!s.dtype_count[i]) continue;
            json_t *x = json_object();
            json_object_set_new(x, "tensors", json_integer((json_int_t)s.dtype_count[i]));
            json_object_set_new(x, "bytes", json_integer((json_int_t)s.dtype_bytes[i]));
            json_object_set_new(d, st_dtype_name((st_dtype)i), x);
        }
        json_object_set_new(o, "dtypes", d);
        if (have_cfg) json_object_set_new(o, "config", config_json(&cfg));
        if (tensors) {
            json_t *arr = json_array();
            for (size_t i = 0; i < st_count(m); i++) {
                const st_tensor *t = st_at(m, i);
                json_t *x = json_object(), *sh = json_array();
                json_object_set_new(x, "name", json_string(t->name));
                json_object_set_new(x, "dtype", json_string(st_dtype_name(t->dtype)));
                for (int k = 0; k < t->n_dims; k++) json_array_append_new(sh, json_integer(t->shape[k]));
                json_object_set_new(x, "shape", sh);
                json_object_set_new(x, "bytes", json_integer((json_int_t)t->nbytes));
                json_object_set_new(x, "shard", json_integer(t->shard));
                json_array_append_new(arr, x);
            }
            json_object_set_new(o, "tensors", arr);
        }
        json_dumpf(o, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        fputc('\n', stdout);
        json_decref(o);
    } else {
        printf("%s\n", path);
        printf("  format        safetensors, %d shard%s, %.3f GB on disk\n", st_shard_count(m), st_shard_count(m) == 1 ? "" : "s", (double)s.bytes / 1e9);
        if (have_cfg) {
            printf("  architecture  %s\n", cfg.architecture);
            if (hf_variant(&cfg)[0]) printf("  variant       %s\n", hf_variant(&cfg));
            printf("  shape         vocab %lld, hidden %lld, layers %lld, heads %lld (kv %lld), ffn %lld\n",
                   (long long)cfg.vocab_size, (long long)cfg.hidden_size, (long long)cfg.n_layers,
                   (long long)cfg.n_heads, (long long)cfg.n_kv_heads, (long long)cfg.intermediate_size);
            if (cfg.kv_lora_rank)
                printf("  MLA           q_lora %lld, kv_lora %lld, nope %lld, rope %lld, v %lld\n",
                       (long long)cfg.q_lora_rank, (long long)cfg.kv_lora_rank, (long long)cfg.qk_nope_head_dim,
                       (long long)cfg.qk_rope_head_dim, (long long)cfg.v_head_dim);
            if (cfg.n_routed_experts)
                printf("  MoE           %lld routed (top-%lld, %lld groups keep %lld) + %lld shared, ffn %lld, %lld dense first, %s scoring\n",
                       (long long)cfg.n_routed_experts, (long long)cfg.n_experts_per_tok, (long long)cfg.n_group,
                       (long long)cfg.topk_group, (long long)cfg.n_shared_experts, (long long)cfg.moe_intermediate_size,
                       (long long)cfg.first_k_dense_replace, cfg.scoring_func);
            if (cfg.num_nextn_predict_layers) printf("  MTP           %lld block(s)\n", (long long)cfg.num_nextn_predict_layers);
            printf("  rope          theta %g%s%s", cfg.rope_theta, cfg.rope_type[0] ? ", " : "", cfg.rope_type);
            if (cfg.rope_type[0]) printf(" factor %g", cfg.rope_factor);
            printf("\n");
            if (cfg.fp8) printf("  quantization  fp8 %s, block %lldx%lld%s\n", cfg.fp8_fmt, (long long)cfg.fp8_block[0], (long long)cfg.fp8_block[1],
                                !strcmp(cfg.fp8_scale_fmt, "ue8m0") ? ", ue8m0 (power-of-two) scales" : "");
            if (cfg.int4) printf("  quantization  compressed-tensors pack-quantized INT4, group %lld (symmetric)\n", (long long)cfg.int4_group);
        } else {
            printf("  architecture  (no config.json)\n");
        }
        printf("  tensors       %zu (scales included)\n", st_count(m));
        printf("  parameters    %llu total, %llu without MTP, %llu active per token\n",
               (unsigned long long)s.n_params, (unsigned long long)s.n_no_mtp, (unsigned long long)s.n_active);
        printf("  dtypes       ");
        for (int i = 0; i < ST_DTYPE_COUNT; i++)
            if (s.dtype_count[i]) printf(" %s %llu (%.3f GB)", st_dtype_name((st_dtype)i), (unsigned long long)s.dtype_count[i], (double)s.dtype_bytes[i] / 1e9);
        printf("\n");
        if (tensors) {
            for (size_t i = 0; i < st_count(m); i++) {
                const st_tensor *t = st_at(m, i);
                printf("  %-64s %-8s ", t->name, st_dtype_name(t->dtype));
                print_shape(stdout, t);
                printf(" %llu B shard %d\n", (unsigned long long)t->nbytes, t->shard);
            }
        }
    }
    st_close(m);
    return 0;
}

int cmd_inspect(int argc, char **argv) {
    const char *path = NULL;
    bool as_json = false, tensors = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { fputs(inspect_help, stdout); return 0; }
        else if (!strcmp(argv[i], "--json")) as_json = true;
        else if (!strcmp(argv[i], "--tensors")) tensors = true;
        else if (argv[i][0] == '-') return cli_usage_error("inspect", "unknown option '%s'", argv[i]);
        else if (path) return cli_usage_error("inspect", "one PATH only");
        else path = argv[i];
    }
    if (!path) { fputs(inspect_help, stderr); return 2; }
    if (qx_ends_with(path, ".gguf")) return cli_inspect_gguf(path, as_json, tensors);
    return inspect_safetensors(path, as_json, tensors);
}
