build2/formats/gguf_write.o: formats/gguf_write.c formats/formats.h \
 formats/../common/qx.h formats/../quant/qt.h formats/limits.h
formats/formats.h:
formats/../common/qx.h:
formats/../quant/qt.h:
formats/limits.h:
