build2/quant/gptq.o: quant/gptq.c quant/qt_internal.h quant/qt.h \
 quant/blocks.h quant/blocks_iq.h quant/../common/qx.h
quant/qt_internal.h:
quant/qt.h:
quant/blocks.h:
quant/blocks_iq.h:
quant/../common/qx.h:
