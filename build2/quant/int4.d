build2/quant/int4.o: quant/int4.c quant/qt.h
quant/qt.h:
