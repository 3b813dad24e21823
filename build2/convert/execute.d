build2/convert/execute.o: convert/execute.c convert/cv_internal.h \
 convert/convert.h convert/../common/qx.h convert/../formats/formats.h \
 convert/../formats/../common/qx.h convert/../formats/../quant/qt.h \
 convert/../quant/qt.h
convert/cv_internal.h:
convert/convert.h:
convert/../common/qx.h:
convert/../formats/formats.h:
convert/../formats/../common/qx.h:
convert/../formats/../quant/qt.h:
convert/../quant/qt.h:
