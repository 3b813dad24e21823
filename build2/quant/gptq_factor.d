build2/quant/gptq_factor.o: quant/gptq_factor.c quant/qt_internal.h \
 quant/qt.h quant/blocks.h quant/../common/qx.h
quant/qt_internal.h:
quant/qt.h:
quant/blocks.h:
quant/../common/qx.h:
