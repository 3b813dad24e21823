build2/kernels/cpu/matmul.o: kernels/cpu/matmul.c \
 kernels/cpu/../kernels.h kernels/cpu/../../common/qx.h \
 kernels/cpu/../../quant/qt.h kernels/cpu/kn_simd.h
kernels/cpu/../kernels.h:
kernels/cpu/../../common/qx.h:
kernels/cpu/../../quant/qt.h:
kernels/cpu/kn_simd.h:
