build2/tok/tok_nfc.o: tok/tok_nfc.c tok/tok_internal.h tok/tok.h \
 tok/../common/qx.h tok/../formats/formats.h \
 tok/../formats/../common/qx.h tok/../formats/../quant/qt.h \
 tok/tok_nfc_tables.h
tok/tok_internal.h:
tok/tok.h:
tok/../common/qx.h:
tok/../formats/formats.h:
tok/../formats/../common/qx.h:
tok/../formats/../quant/qt.h:
tok/tok_nfc_tables.h:
