build2/cli/cmd_quantize.o: cli/cmd_quantize.c cli/cli.h common/qx.h
cli/cli.h:
common/qx.h:
