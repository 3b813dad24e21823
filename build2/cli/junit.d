build2/cli/junit.o: cli/junit.c cli/cli.h common/qx.h
cli/cli.h:
common/qx.h:
