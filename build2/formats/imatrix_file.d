build2/formats/imatrix_file.o: formats/imatrix_file.c formats/formats.h \
 formats/../common/qx.h formats/../quant/qt.h formats/limits.h
formats/formats.h:
formats/../common/qx.h:
formats/../quant/qt.h:
formats/limits.h:
