build2/cli/alloc.o: cli/alloc.c cli/cli.h common/qx.h cli/cli_alloc.h \
 convert/convert.h convert/../common/qx.h convert/../formats/formats.h \
 convert/../formats/../common/qx.h convert/../formats/../quant/qt.h \
 convert/../quant/qt.h
cli/cli.h:
common/qx.h:
cli/cli_alloc.h:
convert/convert.h:
convert/../common/qx.h:
convert/../formats/formats.h:
convert/../formats/../common/qx.h:
convert/../formats/../quant/qt.h:
convert/../quant/qt.h:
