build2/cli/inspect_gguf.o: cli/inspect_gguf.c cli/cli.h common/qx.h \
 formats/formats.h formats/../common/qx.h formats/../quant/qt.h
cli/cli.h:
common/qx.h:
formats/formats.h:
formats/../common/qx.h:
formats/../quant/qt.h:
