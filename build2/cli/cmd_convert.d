build2/cli/cmd_convert.o: cli/cmd_convert.c cli/cli.h common/qx.h \
 convert/convert.h convert/../common/qx.h convert/../formats/formats.h \
 convert/../formats/../common/qx.h convert/../formats/../quant/qt.h \
 convert/../quant/qt.h cli/cli_gptq.h pass/pass.h pass/../common/qx.h \
 pass/../convert/convert.h pass/../calib/calib.h \
 pass/../calib/../common/qx.h pass/../calib/../quant/qt.h \
 pass/../calib/../formats/formats.h cli/cli_alloc.h
cli/cli.h:
common/qx.h:
convert/convert.h:
convert/../common/qx.h:
convert/../formats/formats.h:
convert/../formats/../common/qx.h:
convert/../formats/../quant/qt.h:
convert/../quant/qt.h:
cli/cli_gptq.h:
pass/pass.h:
pass/../common/qx.h:
pass/../convert/convert.h:
pass/../calib/calib.h:
pass/../calib/../common/qx.h:
pass/../calib/../quant/qt.h:
pass/../calib/../formats/formats.h:
cli/cli_alloc.h:
