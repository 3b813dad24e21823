build2/cli/gptq.o: cli/gptq.c cli/cli.h common/qx.h cli/cli_gptq.h \
 convert/convert.h convert/../common/qx.h convert/../formats/formats.h \
 convert/../formats/../common/qx.h convert/../formats/../quant/qt.h \
 convert/../quant/qt.h pass/pass.h pass/../common/qx.h \
 pass/../convert/convert.h pass/../calib/calib.h \
 pass/../calib/../common/qx.h pass/../calib/../quant/qt.h \
 pass/../calib/../formats/formats.h calib/calib.h
cli/cli.h:
common/qx.h:
cli/cli_gptq.h:
convert/convert.h:
convert/../common/qx.h:
convert/../formats/formats.h:
convert/../formats/../common/qx.h:
convert/../formats/../quant/qt.h:
convert/../quant/qt.h:
pass/pass.h:
pass/../common/qx.h:
pass/../convert/convert.h:
pass/../calib/calib.h:
pass/../calib/../common/qx.h:
pass/../calib/../quant/qt.h:
pass/../calib/../formats/formats.h:
calib/calib.h:
