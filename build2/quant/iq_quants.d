build2/quant/iq_quants.o: quant/iq_quants.c quant/qt.h quant/blocks_iq.h
quant/qt.h:
quant/blocks_iq.h:
