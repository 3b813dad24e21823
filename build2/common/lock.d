build2/common/lock.o: common/lock.c common/qx.h
common/qx.h:
