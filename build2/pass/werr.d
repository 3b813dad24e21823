build2/pass/werr.o: pass/werr.c pass/pass.h pass/../common/qx.h \
 pass/../convert/convert.h pass/../convert/../common/qx.h \
 pass/../convert/../formats/formats.h \
 pass/../convert/../formats/../common/qx.h \
 pass/../convert/../formats/../quant/qt.h pass/../convert/../quant/qt.h \
 pass/../calib/calib.h pass/../calib/../common/qx.h \
 pass/../calib/../quant/qt.h pass/../calib/../formats/formats.h
pass/pass.h:
pass/../common/qx.h:
pass/../convert/convert.h:
pass/../convert/../common/qx.h:
pass/../convert/../formats/formats.h:
pass/../convert/../formats/../common/qx.h:
pass/../convert/../formats/../quant/qt.h:
pass/../convert/../quant/qt.h:
pass/../calib/calib.h:
pass/../calib/../common/qx.h:
pass/../calib/../quant/qt.h:
pass/../calib/../formats/formats.h:
