build2/tok/tokenizer.o: tok/tokenizer.c tok/tok_internal.h tok/tok.h \
 tok/../common/qx.h tok/../formats/formats.h \
 tok/../formats/../common/qx.h tok/../formats/../quant/qt.h
tok/tok_internal.h:
tok/tok.h:
tok/../common/qx.h:
tok/../formats/formats.h:
tok/../formats/../common/qx.h:
tok/../formats/../quant/qt.h:
