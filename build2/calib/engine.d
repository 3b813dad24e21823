build2/calib/engine.o: calib/engine.c calib/engine_int.h calib/calib.h \
 calib/../common/qx.h calib/../quant/qt.h calib/../formats/formats.h \
 calib/../formats/../common/qx.h calib/../formats/../quant/qt.h \
 calib/../kernels/kernels.h calib/../kernels/../common/qx.h \
 calib/../kernels/../quant/qt.h
calib/engine_int.h:
calib/calib.h:
calib/../common/qx.h:
calib/../quant/qt.h:
calib/../formats/formats.h:
calib/../formats/../common/qx.h:
calib/../formats/../quant/qt.h:
calib/../kernels/kernels.h:
calib/../kernels/../common/qx.h:
calib/../kernels/../quant/qt.h:
