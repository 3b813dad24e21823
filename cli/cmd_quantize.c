/* cli/cmd_quantize.c — `qforge quantize IN.gguf OUT.gguf TYPE [...]`: requantize an
 * F32/F16/BF16 GGUF with llama-quantize's flags; shares the convert pipeline and recipes
 * (cli/cmd_convert.c, convert/). */
#include "cli.h"

int cmd_quantize(int argc, char **argv) { return cli_convert_main(argc, argv, true); }
