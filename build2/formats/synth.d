build2/formats/synth.o: formats/synth.c formats/formats.h \
 formats/../common/qx.h formats/../quant/qt.h
formats/formats.h:
formats/../common/qx.h:
formats/../quant/qt.h:
