/* cli/cmd_convert.c — placeholder until the convert command lands (see the issues). */
#include "cli.h"
#include <stdio.h>
int cmd_convert(int argc, char **argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "qforge convert: not available in this build yet\n");
    return 2;
}
