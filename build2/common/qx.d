build2/common/qx.o: common/qx.c common/qx.h
common/qx.h:
