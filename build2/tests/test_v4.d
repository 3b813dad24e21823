build2/tests/test_v4: tests/test_v4.c tests/util/tu.h common/qx.h \
 formats/formats.h formats/../common/qx.h formats/../quant/qt.h \
 convert/convert.h convert/../common/qx.h convert/../formats/formats.h \
 convert/../quant/qt.h quant/qt.h
tests/util/tu.h:
common/qx.h:
formats/formats.h:
formats/../common/qx.h:
formats/../quant/qt.h:
convert/convert.h:
convert/../common/qx.h:
convert/../formats/formats.h:
convert/../quant/qt.h:
quant/qt.h:
