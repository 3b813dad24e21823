build2/formats/safetensors_write.o: formats/safetensors_write.c \
 formats/formats.h formats/../common/qx.h formats/../quant/qt.h
formats/formats.h:
formats/../common/qx.h:
formats/../quant/qt.h:
