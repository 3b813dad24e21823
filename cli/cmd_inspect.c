#include "cli.h"
#include <stdio.h>
int cmd_inspect(int argc, char **argv) { (void)argc; (void)argv; fprintf(stderr, "qforge inspect: not available yet\n"); return 2; }
