build2/formats/safetensors.o: formats/safetensors.c formats/formats.h \
 formats/../common/qx.h formats/../quant/qt.h formats/limits.h
formats/formats.h:
formats/../common/qx.h:
formats/../quant/qt.h:
formats/limits.h:
