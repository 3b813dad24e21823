build2/quant/gptq_search.o: quant/gptq_search.c quant/qt_internal.h \
 quant/qt.h quant/blocks.h quant/blocks_iq.h
quant/qt_internal.h:
quant/qt.h:
quant/blocks.h:
quant/blocks_iq.h:
