build2/quant/fp8.o: quant/fp8.c quant/qt.h
quant/qt.h:
