build2/kernels/cpu/gram.o: kernels/cpu/gram.c kernels/cpu/../kernels.h \
 kernels/cpu/../../common/qx.h kernels/cpu/../../quant/qt.h
kernels/cpu/../kernels.h:
kernels/cpu/../../common/qx.h:
kernels/cpu/../../quant/qt.h:
