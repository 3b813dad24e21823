build2/tests/util/tu.o: tests/util/tu.c tests/util/tu.h common/qx.h
tests/util/tu.h:
common/qx.h:
