build2/tok/tok_encode.o: tok/tok_encode.c tok/tok_internal.h tok/tok.h \
 tok/../common/qx.h tok/../formats/formats.h \
 tok/../formats/../common/qx.h tok/../formats/../quant/qt.h
tok/tok_internal.h:
tok/tok.h:
tok/../common/qx.h:
tok/../formats/formats.h:
tok/../formats/../common/qx.h:
tok/../formats/../quant/qt.h:
