build2/convert/plan.o: convert/plan.c convert/cv_internal.h \
 convert/convert.h convert/../common/qx.h convert/../formats/formats.h \
 convert/../formats/../common/qx.h convert/../formats/../quant/qt.h \
 convert/../quant/qt.h convert/../tok/tok.h convert/../tok/../common/qx.h \
 convert/../tok/../formats/formats.h
convert/cv_internal.h:
convert/convert.h:
convert/../common/qx.h:
convert/../formats/formats.h:
convert/../formats/../common/qx.h:
convert/../formats/../quant/qt.h:
convert/../quant/qt.h:
convert/../tok/tok.h:
convert/../tok/../common/qx.h:
convert/../tok/../formats/formats.h:
