build2/formats/gguf_read.o: formats/gguf_read.c formats/formats.h \
 formats/../common/qx.h formats/../quant/qt.h formats/limits.h
formats/formats.h:
formats/../common/qx.h:
formats/../quant/qt.h:
formats/limits.h:
