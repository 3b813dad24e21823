build2/common/shard.o: common/shard.c common/qx.h
common/qx.h:
