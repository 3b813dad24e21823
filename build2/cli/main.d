build2/cli/main.o: cli/main.c cli/cli.h common/qx.h
cli/cli.h:
common/qx.h:
