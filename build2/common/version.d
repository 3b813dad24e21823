build2/common/version.o: common/version.c common/qx.h
common/qx.h:
