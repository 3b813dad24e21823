build2/quant/qk_kern_avx2.o: quant/qk_kern_avx2.c quant/qt_internal.h \
 quant/qt.h quant/blocks.h
quant/qt_internal.h:
quant/qt.h:
quant/blocks.h:
