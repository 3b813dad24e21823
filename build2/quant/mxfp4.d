build2/quant/mxfp4.o: quant/mxfp4.c quant/qt_internal.h quant/qt.h \
 quant/blocks.h
quant/qt_internal.h:
quant/qt.h:
quant/blocks.h:
