build2/kernels/backend.o: kernels/backend.c kernels/kernels.h \
 kernels/../common/qx.h kernels/../quant/qt.h
kernels/kernels.h:
kernels/../common/qx.h:
kernels/../quant/qt.h:
