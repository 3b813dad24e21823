build2/quant/search.o: quant/search.c quant/qt_internal.h quant/qt.h \
 quant/blocks.h
quant/qt_internal.h:
quant/qt.h:
quant/blocks.h:
