/* cli/cmd_verify.c — placeholder until the verify command lands (see the issues). */
#include "cli.h"
#include <stdio.h>
int cmd_verify(int argc, char **argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "qforge verify: not available in this build yet\n");
    return 2;
}
