/* tests/fuzz/fuzz_hfjson.c — libFuzzer target: the JSON side files of an HF checkpoint
 * (model.safetensors.index.json, config.json and generation_config.json parsers). */
#include "formats/formats.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    qx_err e = {0};
    st_index_entry *ie;
    size_t n;
    if (st_parse_index((const char *)data, size, "fuzz.index.json", &ie, &n, &e) == QX_OK) st_index_free(ie, n);
    hf_config c;
    hf_config_parse((const char *)data, size, "fuzz.config.json", &c, &e);
    gf_writer *w;
    if (gf_writer_create(&w, &e) == QX_OK) {
        hf_sampling_parse((const char *)data, size, w, &e);
        gf_writer_free(w);
    }
    return 0;
}
