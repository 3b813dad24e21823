/* tests/fuzz/fuzz_recipe.c — libFuzzer target over cv_recipe_parse (the --recipe JSON): a
 * parse either fails with a message or yields unique, non-empty names of GGUF types. */
#include "convert/convert.h"
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    qx_err e = {0};
    cv_recipe_table t;
    if (cv_recipe_parse((const char *)data, size, "fuzz.json", &t, &e) != QX_OK) {
        if (e.code == QX_OK || !e.msg[0]) __builtin_trap();
        return 0;
    }
    for (size_t i = 0; i < t.n; i++) {
        if (!t.e[i].name[0] || !qt_get_traits(t.e[i].type)) __builtin_trap();
        for (size_t j = 0; j < i; j++)
            if (!strcmp(t.e[i].name, t.e[j].name)) __builtin_trap();
    }
    cv_recipe_table_free(&t);
    return 0;
}
