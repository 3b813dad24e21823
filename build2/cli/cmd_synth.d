build2/cli/cmd_synth.o: cli/cmd_synth.c cli/cli.h common/qx.h \
 formats/formats.h formats/../common/qx.h formats/../quant/qt.h
cli/cli.h:
common/qx.h:
formats/formats.h:
formats/../common/qx.h:
formats/../quant/qt.h:
