build2/cli/cmd_ppl.o: cli/cmd_ppl.c cli/cli.h common/qx.h calib/calib.h \
 calib/../common/qx.h calib/../quant/qt.h calib/../formats/formats.h \
 calib/../formats/../common/qx.h calib/../formats/../quant/qt.h tok/tok.h \
 tok/../common/qx.h tok/../formats/formats.h kernels/kernels.h \
 kernels/../common/qx.h kernels/../quant/qt.h formats/formats.h
cli/cli.h:
common/qx.h:
calib/calib.h:
calib/../common/qx.h:
calib/../quant/qt.h:
calib/../formats/formats.h:
calib/../formats/../common/qx.h:
calib/../formats/../quant/qt.h:
tok/tok.h:
tok/../common/qx.h:
tok/../formats/formats.h:
kernels/kernels.h:
kernels/../common/qx.h:
kernels/../quant/qt.h:
formats/formats.h:
