build2/cli/cmd_merge.o: cli/cmd_merge.c cli/cli.h common/qx.h \
 calib/calib.h calib/../common/qx.h calib/../quant/qt.h \
 calib/../formats/formats.h calib/../formats/../common/qx.h \
 calib/../formats/../quant/qt.h convert/convert.h convert/../common/qx.h \
 convert/../formats/formats.h convert/../quant/qt.h
cli/cli.h:
common/qx.h:
calib/calib.h:
calib/../common/qx.h:
calib/../quant/qt.h:
calib/../formats/formats.h:
calib/../formats/../common/qx.h:
calib/../formats/../quant/qt.h:
convert/convert.h:
convert/../common/qx.h:
convert/../formats/formats.h:
convert/../quant/qt.h:
