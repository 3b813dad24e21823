build2/common/blas.o: common/blas.c common/qx.h
common/qx.h:
