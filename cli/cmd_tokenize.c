/* cli/cmd_tokenize.c — placeholder until the tokenize command lands (see the issues). */
#include "cli.h"
#include <stdio.h>
int cmd_tokenize(int argc, char **argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "qforge tokenize: not available in this build yet\n");
    return 2;
}
