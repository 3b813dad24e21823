/* cli/cmd_synth.c — `qforge synth --preset NAME -o DIR [--seed N] [--sparse] [--layers N]`. */
#include "cli.h"
#include "formats/formats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void synth_help(FILE *f) {
    fprintf(f, "usage: qforge synth --preset NAME -o DIR [--seed N] [--sparse] [--layers N]\n"
               "  writes a synthetic checkpoint in the official HF layout (config.json, tokenizer,\n"
               "  shards + model.safetensors.index.json), deterministic for a seed.\n"
               "  presets: %s\n"
               "  --sparse     tensor bytes are file holes: full-size shapes with almost no disk\n"
               "  --layers N   override the preset's layer count (e.g. benchmark sizes)\n", st_synth_preset_names());
}

int cmd_synth(int argc, char **argv) {
    const char *preset = NULL, *out = NULL;
    uint64_t seed = 1;
    bool sparse = false;
    long long layers = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { synth_help(stdout); return 0; }
        else if (!strcmp(a, "--sparse")) sparse = true;
        else if (!strcmp(a, "--preset") && i + 1 < argc) preset = argv[++i];
        else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && i + 1 < argc) out = argv[++i];
        else if (!strcmp(a, "--seed") && i + 1 < argc) seed = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "--layers") && i + 1 < argc) layers = atoll(argv[++i]);
        else return cli_usage_error("synth", "unknown or incomplete option '%s'", a);
    }
    if (!preset || !out) { synth_help(stderr); return 2; }
    qx_err e = {0};
    double t0 = qx_now();
    if (st_synth(preset, out, seed, sparse, layers, &e) != QX_OK) return cli_fail(&e);
    fprintf(stderr, "qforge synth: wrote %s (%s%s) in %.1f s\n", out, preset, sparse ? ", sparse" : "", qx_now() - t0);
    return 0;
}
