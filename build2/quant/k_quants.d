build2/quant/k_quants.o: quant/k_quants.c quant/qt_internal.h quant/qt.h \
 quant/blocks.h
quant/qt_internal.h:
quant/qt.h:
quant/blocks.h:
