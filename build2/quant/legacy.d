build2/quant/legacy.o: quant/legacy.c quant/qt_internal.h quant/qt.h \
 quant/blocks.h
quant/qt_internal.h:
quant/qt.h:
quant/blocks.h:
