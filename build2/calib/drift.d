build2/calib/drift.o: calib/drift.c calib/calib.h calib/../common/qx.h \
 calib/../quant/qt.h calib/../formats/formats.h \
 calib/../formats/../common/qx.h calib/../formats/../quant/qt.h
calib/calib.h:
calib/../common/qx.h:
calib/../quant/qt.h:
calib/../formats/formats.h:
calib/../formats/../common/qx.h:
calib/../formats/../quant/qt.h:
