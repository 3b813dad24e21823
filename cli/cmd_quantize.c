/* cli/cmd_quantize.c — placeholder until the quantize command lands (see the issues). */
#include "cli.h"
#include <stdio.h>
int cmd_quantize(int argc, char **argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "qforge quantize: not available in this build yet\n");
    return 2;
}
