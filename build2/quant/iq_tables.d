build2/quant/iq_tables.o: quant/iq_tables.c quant/blocks_iq.h
quant/blocks_iq.h:
