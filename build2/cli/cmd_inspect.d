build2/cli/cmd_inspect.o: cli/cmd_inspect.c cli/cli.h common/qx.h \
 formats/formats.h formats/../common/qx.h formats/../quant/qt.h
cli/cli.h:
common/qx.h:
formats/formats.h:
formats/../common/qx.h:
formats/../quant/qt.h:
