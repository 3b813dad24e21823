build2/kernels/stream.o: kernels/stream.c kernels/kernels.h \
 kernels/../common/qx.h kernels/../quant/qt.h
kernels/kernels.h:
kernels/../common/qx.h:
kernels/../quant/qt.h:
