/* cli/cmd_ppl.c — placeholder until the ppl command lands (see the issues). */
#include "cli.h"
#include <stdio.h>
int cmd_ppl(int argc, char **argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "qforge ppl: not available in this build yet\n");
    return 2;
}
