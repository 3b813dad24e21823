build2/formats/hf_config.o: formats/hf_config.c formats/formats.h \
 formats/../common/qx.h formats/../quant/qt.h
formats/formats.h:
formats/../common/qx.h:
formats/../quant/qt.h:
