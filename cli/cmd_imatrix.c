/* cli/cmd_imatrix.c — placeholder until the imatrix command lands (see the issues). */
#include "cli.h"
#include <stdio.h>
int cmd_imatrix(int argc, char **argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "qforge imatrix: not available in this build yet\n");
    return 2;
}
