build2/quant/unbias.o: quant/unbias.c quant/qt_internal.h quant/qt.h \
 quant/blocks.h
quant/qt_internal.h:
quant/qt.h:
quant/blocks.h:
