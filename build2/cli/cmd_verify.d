build2/cli/cmd_verify.o: cli/cmd_verify.c cli/cli.h common/qx.h \
 formats/formats.h formats/../common/qx.h formats/../quant/qt.h
cli/cli.h:
common/qx.h:
formats/formats.h:
formats/../common/qx.h:
formats/../quant/qt.h:
