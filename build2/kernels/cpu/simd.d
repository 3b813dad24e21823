build2/kernels/cpu/simd.o: kernels/cpu/simd.c kernels/cpu/kn_simd.h
kernels/cpu/kn_simd.h:
