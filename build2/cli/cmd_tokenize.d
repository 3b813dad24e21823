build2/cli/cmd_tokenize.o: cli/cmd_tokenize.c cli/cli.h common/qx.h \
 tok/tok.h tok/../common/qx.h tok/../formats/formats.h \
 tok/../formats/../common/qx.h tok/../formats/../quant/qt.h
cli/cli.h:
common/qx.h:
tok/tok.h:
tok/../common/qx.h:
tok/../formats/formats.h:
tok/../formats/../common/qx.h:
tok/../formats/../quant/qt.h:
