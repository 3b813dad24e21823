build2/cli/cmd_card.o: cli/cmd_card.c cli/cli.h common/qx.h calib/calib.h \
 calib/../common/qx.h calib/../quant/qt.h calib/../formats/formats.h \
 calib/../formats/../common/qx.h calib/../formats/../quant/qt.h \
 formats/formats.h
cli/cli.h:
common/qx.h:
calib/calib.h:
calib/../common/qx.h:
calib/../quant/qt.h:
calib/../formats/formats.h:
calib/../formats/../common/qx.h:
calib/../formats/../quant/qt.h:
formats/formats.h:
