build2/cli/cmd_report.o: cli/cmd_report.c cli/cli.h common/qx.h \
 calib/calib.h calib/../common/qx.h calib/../quant/qt.h \
 calib/../formats/formats.h calib/../formats/../common/qx.h \
 calib/../formats/../quant/qt.h
cli/cli.h:
common/qx.h:
calib/calib.h:
calib/../common/qx.h:
calib/../quant/qt.h:
calib/../formats/formats.h:
calib/../formats/../common/qx.h:
calib/../formats/../quant/qt.h:
