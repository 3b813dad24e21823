build2/kernels/cpu/dsa.o: kernels/cpu/dsa.c kernels/cpu/../kernels.h \
 kernels/cpu/../../common/qx.h kernels/cpu/../../quant/qt.h \
 kernels/cpu/kn_simd.h
kernels/cpu/../kernels.h:
kernels/cpu/../../common/qx.h:
kernels/cpu/../../quant/qt.h:
kernels/cpu/kn_simd.h:
