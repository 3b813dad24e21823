build2/kernels/cpu/ops.o: kernels/cpu/ops.c kernels/cpu/../kernels.h \
 kernels/cpu/../../common/qx.h kernels/cpu/../../quant/qt.h \
 kernels/cpu/kn_simd.h
kernels/cpu/../kernels.h:
kernels/cpu/../../common/qx.h:
kernels/cpu/../../quant/qt.h:
kernels/cpu/kn_simd.h:
